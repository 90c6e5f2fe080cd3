//! The `statemanager` binary: `serve`, plus CLI commands.

mod client_cli;
mod cluster_cli;
mod config;
mod listener;
mod logging;
mod notify;
mod serve;
mod size;
mod telemetry;
mod tls;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// A fast, distributed, persistent key-value store: a drop-in for the Opsview State Manager.
#[derive(Debug, Parser)]
#[command(name = "statemanager", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    ///
    /// With no configuration it serves plain HTTP on 127.0.0.1:8184 with its data in
    /// ./statemanager-data. Settings come from the YAML file, then STATEMANAGER_<KEY>
    /// environment variables, then these flags.
    ///
    /// Examples:
    ///   statemanager serve
    ///   statemanager serve --config /opt/opsview/cachemanager/etc/cachemanager.yaml
    ///   statemanager serve -d --port 0 --addr-file /tmp/sm.addr
    #[command(verbatim_doc_comment)]
    Serve(ServeArgs),
    /// Mint a protected-namespace token with the first configured key.
    ///
    /// The keys come from the configuration (`namespace_keys`, `namespace_keys_file`) or
    /// STATEMANAGER_NAMESPACE_KEYS. The token is printed on stdout; it is valid for
    /// `timestamp_error_margin` seconds (or `token_max_age`) from now.
    ///
    /// Examples:
    ///   statemanager token --namespace 'PLUGIN#check_disk' --config /etc/statemanager.yaml
    ///   STATEMANAGER_NAMESPACE_KEYS=base64key statemanager token --namespace 'PLUGIN#x'
    #[command(verbatim_doc_comment)]
    Token(TokenArgs),
    /// Recover from a lost quorum: turn this stopped node into a one-member cluster.
    ///
    /// Use only when a majority of the cluster is gone for good. The node must be stopped.
    /// It keeps everything in its log and snapshot; start it again afterwards (it elects
    /// itself) and re-add other nodes with `cluster add`, each with an empty data directory
    /// and a new id.
    ///
    /// Writes acknowledged by a quorum that did not include this node are lost: run it with
    /// --dry-run on every survivor first, and recover the one whose last log entry has the
    /// highest term, then the highest index.
    ///
    /// Examples:
    ///   statemanager recover --config /etc/statemanager.yaml --dry-run
    ///   statemanager recover --config /etc/statemanager.yaml
    #[command(verbatim_doc_comment)]
    Recover {
        /// YAML configuration file (for data_dir, node_id and peer_listen).
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
        /// Override `data_dir`.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Only report what this node holds (items, last log entry); change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Cluster membership, through a node's peer port.
    ///
    /// Examples:
    ///   statemanager cluster --peer 10.0.0.1:8186 status
    ///   statemanager cluster --peer 10.0.0.1:8186 add 4 10.0.0.4:8186
    ///   statemanager cluster --peer 10.0.0.1:8186 remove 2
    #[command(verbatim_doc_comment)]
    Cluster {
        /// A node's peer address (its `peer_listen`).
        #[arg(
            long,
            env = "STATEMANAGER_PEER",
            default_value = "127.0.0.1:8186",
            global = true
        )]
        peer: String,
        /// Print JSON instead of text.
        #[arg(long, global = true)]
        json: bool,
        #[command(flatten)]
        auth: cluster_cli::PeerAuthArgs,
        #[command(subcommand)]
        command: cluster_cli::ClusterCommand,
    },
    /// Restore a backup into an empty data directory (the node must not be running).
    ///
    /// The whole file is verified first; a damaged file or a used directory changes nothing.
    /// A restore cut short (crash, power cut) leaves a RESTORING file in the directory, which
    /// `serve` refuses; run the same restore again and it starts over.
    /// The restored node's membership comes from the configuration: its `peers` (restore the
    /// same file into every member's data directory before starting any of them), or this
    /// node alone (then add others with `cluster add`). See docs/operations.md.
    ///
    /// Examples:
    ///   statemanager restore backup.smbackup --data-dir /var/lib/statemanager
    ///   statemanager restore backup.smbackup --config /etc/statemanager/statemanager.yaml
    #[command(verbatim_doc_comment)]
    Restore {
        /// The backup file.
        file: PathBuf,
        /// YAML configuration file (for data_dir, node_id, peers, peer_listen).
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
        /// Override `data_dir`.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Client(client_cli::ClientCommand),
}

/// Flags of `token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The namespace the token grants.
    #[arg(long)]
    namespace: String,
    /// YAML configuration file holding the keys.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Flags of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// YAML configuration file (flat keys, or Opsview's cachemanager.yaml).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Debug mode: DEBUG-level logs to stderr.
    #[arg(short = 'd', long = "debug")]
    debug: bool,
    /// Log to stderr instead of syslog.
    #[arg(long)]
    log_stderr: bool,
    /// Write the bound addresses as JSON to this file once listening (for tests and scripts).
    #[arg(long, value_name = "PATH")]
    addr_file: Option<PathBuf>,
    /// Override `data_dir`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Override `host`.
    #[arg(long)]
    host: Option<String>,
    /// Override `port` (0: any free port).
    #[arg(long)]
    port: Option<u16>,
}

/// mimalloc instead of glibc's allocator: a server that allocates small buffers per request on
/// several threads spent about 15 % of its CPU in glibc's malloc and free (see
/// `docs/design.md` for the measurement).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::main(args),
        Command::Token(args) => mint_token(args),
        Command::Recover {
            config,
            data_dir,
            dry_run,
        } => recover(config, data_dir, dry_run),
        Command::Cluster {
            peer,
            json,
            auth,
            command,
        } => cluster_cli::run(&peer, &auth, command, json),
        Command::Restore {
            file,
            config,
            data_dir,
            json,
        } => restore(&file, config, data_dir, json),
        Command::Client(command) => client_cli::run(command),
    }
}

fn mint_token(args: TokenArgs) -> ExitCode {
    let fail = |message: String| {
        eprintln!("statemanager: {message}");
        ExitCode::from(2)
    };
    let loaded = match config::load(args.config.as_deref(), &|var| std::env::var(var).ok()) {
        Ok(loaded) => loaded,
        Err(message) => return fail(message.to_string()),
    };
    let keys = match loaded.config.keyring() {
        Ok(Some(keys)) => keys,
        Ok(None) => return fail("no namespace keys are configured (namespace_keys)".into()),
        Err(message) => return fail(message.to_string()),
    };
    if args.namespace.is_empty() || args.namespace.len() > 1000 {
        return fail("--namespace must be 1 to 1000 bytes".into());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    println!("{}", keys.mint(&args.namespace, now));
    ExitCode::SUCCESS
}

/// The configuration for an offline command, or exit code 2 after saying why.
fn load_config(path: Option<&Path>) -> Result<config::Config, ExitCode> {
    config::load(path, &|var| std::env::var(var).ok())
        .map(|loaded| loaded.config)
        .map_err(|message| {
            eprintln!("statemanager: {message}");
            ExitCode::from(2)
        })
}

/// "index 31, term 2" (or "none").
fn describe_log_id(id: Option<statemanager_raft::types::LogId>) -> String {
    match id {
        Some(id) => format!("index {}, term {}", id.index, id.leader_id.term),
        None => "none".into(),
    }
}

fn recover(config: Option<PathBuf>, data_dir: Option<PathBuf>, dry_run: bool) -> ExitCode {
    let cfg = match load_config(config.as_deref()) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    let dir = data_dir.unwrap_or(cfg.data_dir.clone());
    if dry_run {
        return match statemanager_raft::recovery::inspect(&dir) {
            Ok(summary) => {
                println!(
                    "node {} in {} holds {} items; last log entry: {} ({} entries after the snapshot); nothing was changed",
                    cfg.node_id,
                    dir.display(),
                    summary.items,
                    describe_log_id(summary.last_log_id),
                    summary.replayed,
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("statemanager: cannot read the node: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let peer_addr = cfg.peer_listen.clone().unwrap_or_default();
    match statemanager_raft::recovery::force_single_member(&dir, cfg.node_id, &peer_addr) {
        Ok(summary) => {
            println!(
                "node {} in {} is now a one-member cluster: {} items, {} log entries replayed, last log entry: {}",
                cfg.node_id,
                dir.display(),
                summary.items,
                summary.replayed,
                describe_log_id(summary.last_log_id),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("statemanager: recovery failed, nothing was changed beyond this point: {e}");
            ExitCode::FAILURE
        }
    }
}

fn restore(
    file: &Path,
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    json: bool,
) -> ExitCode {
    let cfg = match load_config(config.as_deref()) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    let dir = data_dir.unwrap_or(cfg.data_dir.clone());
    let members: BTreeMap<u64, String> = if cfg.peers.is_empty() {
        let addr = cfg
            .peer_listen
            .clone()
            .unwrap_or_else(|| format!("{}:{}", cfg.host, cfg.port));
        BTreeMap::from([(cfg.node_id, addr)])
    } else {
        cfg.peers.clone()
    };
    match statemanager_raft::backup::restore(file, &dir, &members) {
        Ok(summary) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "items": summary.items,
                        "data_dir": dir.display().to_string(),
                        "members": members.keys().collect::<Vec<_>>(),
                        "cluster_id": summary.cluster_id,
                        "backup_applied_index": summary.header.applied_index,
                        "backup_source_node": summary.header.source_node,
                    })
                );
            } else {
                println!(
                    "restored {} item(s) into {} (members {:?}, cluster id {}); start the node(s) now",
                    summary.items,
                    dir.display(),
                    members.keys().collect::<Vec<_>>(),
                    summary.cluster_id
                );
            }
            ExitCode::SUCCESS
        }
        Err(statemanager_raft::backup::RestoreError::Untouched(e)) => {
            eprintln!("statemanager: restore failed, nothing was changed: {e}");
            ExitCode::FAILURE
        }
        Err(statemanager_raft::backup::RestoreError::Unfinished(e)) => {
            eprintln!(
                "statemanager: restore failed: {e}; {} is not served until a restore into it finishes: run it again",
                dir.display()
            );
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
