//! `statemanager cluster status | add ID PEER_ADDR | remove ID`: membership through the peer
//! port's admin endpoints. Membership changes go to the leader; if `--peer` names another
//! node, the command follows its answer to the leader.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use serde_json::{json, Value};

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

async fn call(
    http: &reqwest::Client,
    peer: &str,
    command: &ClusterCommand,
) -> Result<Value, String> {
    let mut target = peer.to_string();
    for _ in 0..3 {
        let request = match command {
            ClusterCommand::Status => http.get(format!("http://{target}/admin/cluster")),
            ClusterCommand::Add { id, peer_addr } => http
                .post(format!("http://{target}/admin/add"))
                .json(&json!({"id": id, "peer_addr": peer_addr})),
            ClusterCommand::Remove { id } => http
                .post(format!("http://{target}/admin/remove"))
                .json(&json!({"id": id})),
        };
        let response = request
            .send()
            .await
            .map_err(|e| format!("cannot reach {target}: {e}"))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| format!("{target} answered {status} without JSON: {e}"))?;
        if status.as_u16() == 421 {
            match body["leader_peer"].as_str() {
                Some(leader) => {
                    target = leader.to_string();
                    continue;
                }
                None => return Err("no leader is known; try again shortly".into()),
            }
        }
        if !status.is_success() {
            return Err(body["error"]["message"]
                .as_str()
                .unwrap_or("request failed")
                .to_string());
        }
        return Ok(body);
    }
    Err("the leader kept moving; try again".into())
}

/// Runs a cluster command against `peer`; `json` prints machine-readable output.
pub fn run(peer: &str, command: ClusterCommand, as_json: bool) -> ExitCode {
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
    crate::tls::install_crypto_provider();
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            eprintln!("statemanager: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(call(&http, peer, &command)) {
        Ok(body) => {
            if as_json {
                println!("{body}");
            } else {
                print_human(&command, &body);
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("statemanager: {message}");
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
