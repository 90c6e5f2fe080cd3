//! `statemanager cluster status | add ID PEER_ADDR | remove ID`: membership through the peer
//! port's admin endpoints. Membership changes go to the leader; if `--peer` names another
//! node, the command follows its answer to the leader.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use serde_json::{json, Value};
use statemanager_client::{Client, ClientOptions, Method};

use statemanager_core::error_chain::Chain;

/// What to do.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show the members as this node sees them.
    Status,
    /// Add node ID at PEER_ADDR: as a learner, then as a voter once it has caught up.
    Add {
        /// The new node's id (≥ 1, unused).
        id: u64,
        /// Its peer address (its `peer_listen`).
        peer_addr: String,
    },
    /// Remove node ID from the cluster.
    Remove {
        /// The node's id.
        id: u64,
    },
}

/// Credentials for the peer port (flags of `statemanager cluster`).
#[derive(Debug, clap::Args)]
pub struct PeerAuthArgs {
    /// The cluster secret, when one is configured.
    #[arg(
        long,
        env = "STATEMANAGER_CLUSTER_SECRET",
        hide_env_values = true,
        global = true
    )]
    secret: Option<String>,
    /// The cluster's CA (PEM), when peer_tls is configured: the peer port is then HTTPS.
    #[arg(long, value_name = "FILE", global = true)]
    cacert: Option<PathBuf>,
    /// A client certificate signed by the cluster's CA (PEM), for peer_tls.
    #[arg(long, value_name = "FILE", requires = "client_key", global = true)]
    cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(
        long = "key",
        id = "client_key",
        value_name = "FILE",
        requires = "cert",
        global = true
    )]
    client_key: Option<PathBuf>,
}

/// Why a cluster command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterCliError {
    /// The client could not be built, or the request got no usable answer.
    #[error(transparent)]
    Client(#[from] statemanager_client::Error),
    /// A node answered 421 without naming a leader.
    #[error("no leader is known; try again shortly")]
    NoLeader,
    /// The node refused the command.
    #[error("{message} ({status})")]
    Refused {
        /// The answer's `error.message`.
        message: String,
        /// Its HTTP status.
        status: u16,
    },
    /// Each node asked named another leader.
    #[error("the leader kept moving; try again")]
    LeaderKeptMoving,
}

fn client_for(target: &str, auth: &PeerAuthArgs) -> Result<Client, ClusterCliError> {
    let scheme = if auth.cacert.is_some() {
        "https"
    } else {
        "http"
    };
    let mut options = ClientOptions::new(&format!("{scheme}://{target}"));
    options.timeout = Duration::from_secs(120);
    options.secret = auth.secret.clone();
    options.ca_cert = auth.cacert.clone();
    options.client_cert = auth.cert.clone();
    options.client_key = auth.client_key.clone();
    Ok(Client::new(options)?)
}

async fn call(
    peer: &str,
    auth: &PeerAuthArgs,
    command: &ClusterCommand,
) -> Result<Value, ClusterCliError> {
    let mut target = peer.to_string();
    for _ in 0..3 {
        let client = client_for(&target, auth)?;
        let (status, body) = match command {
            ClusterCommand::Status => client.raw(Method::GET, "/admin/cluster", None).await,
            ClusterCommand::Add { id, peer_addr } => {
                let body = json!({"id": id, "peer_addr": peer_addr});
                client.raw(Method::POST, "/admin/add", Some(&body)).await
            }
            ClusterCommand::Remove { id } => {
                let body = json!({"id": id});
                client.raw(Method::POST, "/admin/remove", Some(&body)).await
            }
        }?;
        if status == 421 {
            match body["leader_peer"].as_str() {
                Some(leader) => {
                    target = leader.to_string();
                    continue;
                }
                None => return Err(ClusterCliError::NoLeader),
            }
        }
        if !(200..300).contains(&status) {
            return Err(ClusterCliError::Refused {
                message: body["error"]["message"]
                    .as_str()
                    .unwrap_or("request failed")
                    .to_string(),
                status,
            });
        }
        return Ok(body);
    }
    Err(ClusterCliError::LeaderKeptMoving)
}

/// Runs a cluster command against `peer`; `json` prints machine-readable output.
pub fn run(peer: &str, auth: &PeerAuthArgs, command: ClusterCommand, as_json: bool) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("statemanager: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(call(peer, auth, &command)) {
        Ok(body) => {
            if as_json {
                println!("{body}");
            } else {
                print_human(&command, &body);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("statemanager: {}", Chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn print_human(command: &ClusterCommand, body: &Value) {
    match command {
        ClusterCommand::Status => {
            println!(
                "node {} is {} (leader: {}, term {}, applied {})",
                body["node_id"],
                body["role"].as_str().unwrap_or("?"),
                body["leader"],
                body["term"],
                body["applied_index"]
            );
            println!(
                "{:>4}  {:<8}  {:<24}  matched",
                "id", "state", "peer address"
            );
            for m in body["members"].as_array().into_iter().flatten() {
                println!(
                    "{:>4}  {:<8}  {:<24}  {}",
                    m["id"].as_u64().unwrap_or(0),
                    m["state"].as_str().unwrap_or("?"),
                    m["peer_addr"].as_str().unwrap_or("?"),
                    m["matched_index"]
                );
            }
        }
        ClusterCommand::Add { id, peer_addr } => {
            println!("node {id} ({peer_addr}) added as a voter")
        }
        ClusterCommand::Remove { id } => println!("node {id} removed"),
    }
}
