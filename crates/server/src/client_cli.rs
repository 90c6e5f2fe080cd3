//! `statemanager put | get | delete | list | status | backup`: the HTTP API for people and
//! scripts, through `statemanager-client`.
//!
//! Exit codes (documented in `docs/operations.md`): 0 success; 1 the item or key does not
//! exist; 2 usage or local error (flags, files); 3 the server refused the request (400, 401,
//! 403, 409, 413, 507); 4 the server is unavailable or unreachable (503, connection errors:
//! retrying may help; a store's outcome is then unknown); 5 an unexpected answer.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use statemanager_client::{Client, ClientOptions, Error};

/// Where the server is and how to talk to it (shared by every client command).
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The server, `http(s)://host:port`. Default: the address in `--config` (or the
    /// embedded default, http://127.0.0.1:8184).
    #[arg(long, short = 's', env = "STATEMANAGER_SERVER")]
    server: Option<String>,
    /// Configuration file to take the default server address from.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// PEM CA certificate to trust for HTTPS.
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// PEM client certificate (servers with check_client_cert).
    #[arg(long, value_name = "FILE", requires = "client_key")]
    cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(
        long = "key",
        id = "client_key",
        value_name = "FILE",
        requires = "cert"
    )]
    client_key: Option<PathBuf>,
    /// The cluster secret, for admin commands (list, backup) when one is configured.
    #[arg(long, env = "STATEMANAGER_CLUSTER_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Request timeout in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

/// A client command.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Store an item: `put NS KEY DATA --ttl SECONDS` (DATA `-` reads standard input).
    ///
    /// Prints the stored timestamp and expiry. A newer item already stored is a conflict
    /// (exit 3).
    ///
    /// Examples:
    ///   statemanager put 'PLUGIN#check_disk' last '{"used":42}' --ttl 3600
    ///   echo hello | statemanager put 'PLUGIN#x' greeting - --ttl 60 --json
    #[command(verbatim_doc_comment)]
    Put {
        #[command(flatten)]
        server: ServerArgs,
        /// Namespace (or a protected-namespace token).
        namespace: String,
        /// Key.
        key: String,
        /// The data; `-` reads it from standard input.
        data: String,
        /// Time to live in seconds (1 to 315360000).
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// Unix timestamp of the data (default: the server's clock).
        #[arg(long)]
        timestamp: Option<f64>,
    },
    /// Print an item's data (exit 1 when it does not exist or has expired).
    ///
    /// Examples:
    ///   statemanager get 'PLUGIN#check_disk' last
    ///   statemanager get 'PLUGIN#check_disk' last --json
    #[command(verbatim_doc_comment)]
    Get {
        #[command(flatten)]
        server: ServerArgs,
        /// Namespace.
        namespace: String,
        /// Key.
        key: String,
    },
    /// Delete an item (exit 1 when there was nothing to delete).
    ///
    /// Example:
    ///   statemanager delete 'PLUGIN#check_disk' last
    #[command(verbatim_doc_comment)]
    Delete {
        #[command(flatten)]
        server: ServerArgs,
        /// Namespace.
        namespace: String,
        /// Key.
        key: String,
    },
    /// List the live keys of a namespace (admin endpoint; for debugging).
    ///
    /// Examples:
    ///   statemanager list 'PLUGIN#check_disk'
    ///   statemanager list 'PLUGIN#check_disk' --limit 10 --json
    #[command(verbatim_doc_comment)]
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Namespace.
        namespace: String,
        /// Most keys to show (server default 1000, at most 100000).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show the node's status: role, leader, items, cache, peers.
    ///
    /// Example:
    ///   statemanager status --server http://10.0.0.2:8184
    #[command(verbatim_doc_comment)]
    Status {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Take a consistent backup from a running node (admin endpoint) into FILE.
    ///
    /// The backup holds every item acknowledged before the command started; the node keeps
    /// serving. The file is verified before it is put in place (it never overwrites one).
    ///
    /// Example:
    ///   statemanager backup --out /var/backups/statemanager-$(date +%F).smbackup
    #[command(verbatim_doc_comment)]
    Backup {
        #[command(flatten)]
        server: ServerArgs,
        /// Where to write the backup (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// Exit codes.
mod exit {
    pub const NOT_FOUND: u8 = 1;
    pub const LOCAL: u8 = 2;
    pub const REFUSED: u8 = 3;
    pub const UNAVAILABLE: u8 = 4;
    pub const UNEXPECTED: u8 = 5;
}

struct Failure(u8, String);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::Server { status, .. } if *status == 503 => exit::UNAVAILABLE,
            // Only a missing item: a 404 for a path the server does not have (a `--server`
            // naming another port) is a refusal, so a script never reads it as "not stored".
            Error::Server { status, code, .. } if *status == 404 && code == "not_found" => {
                exit::NOT_FOUND
            }
            Error::Server { status, .. } if (400..500).contains(status) || *status == 507 => {
                exit::REFUSED
            }
            Error::Server { .. } | Error::Protocol(_) => exit::UNEXPECTED,
            Error::Transport { .. } => exit::UNAVAILABLE,
            Error::Config(_) | Error::Io(_) => exit::LOCAL,
        };
        Failure(code, e.to_string())
    }
}

/// The server address: `--server`, else the configuration's plain (or HTTPS) listener.
fn server_address(args: &ServerArgs) -> Result<String, Failure> {
    if let Some(server) = &args.server {
        return Ok(server.clone());
    }
    let loaded = crate::config::load(args.config.as_deref(), &|var| std::env::var(var).ok())
        .map_err(|m| Failure(exit::LOCAL, m.to_string()))?;
    let c = loaded.config;
    let host = match c.host.as_str() {
        "0.0.0.0" | "" => "127.0.0.1".to_string(),
        "::" => "[::1]".to_string(),
        h if h.contains(':') => format!("[{h}]"),
        h => h.to_string(),
    };
    Ok(if c.http_enabled {
        format!("http://{host}:{}", c.port)
    } else {
        format!("https://{host}:{}", c.tls_port)
    })
}

fn client(args: &ServerArgs) -> Result<Client, Failure> {
    let mut options = ClientOptions::new(&server_address(args)?);
    options.timeout = Duration::from_secs(args.timeout.max(1));
    options.ca_cert = args.cacert.clone();
    options.client_cert = args.cert.clone();
    options.client_key = args.client_key.clone();
    options.secret = args.secret.clone();
    Ok(Client::new(options)?)
}

/// Unix seconds as RFC 3339 UTC (microseconds), for people.
fn human_time(secs: f64) -> String {
    let nanos = (secs * 1e9).round() as i128;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| format!("{secs}"))
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

impl ClientCommand {
    fn server_args(&self) -> &ServerArgs {
        match self {
            ClientCommand::Put { server, .. }
            | ClientCommand::Get { server, .. }
            | ClientCommand::Delete { server, .. }
            | ClientCommand::List { server, .. }
            | ClientCommand::Status { server }
            | ClientCommand::Backup { server, .. } => server,
        }
    }
}

/// Runs a client command; prints its result and returns the exit code.
pub fn run(command: ClientCommand) -> ExitCode {
    let as_json = command.server_args().json;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("statemanager: cannot start the runtime: {e}");
            return ExitCode::from(exit::LOCAL);
        }
    };
    match runtime.block_on(execute(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, message)) => {
            if as_json {
                print_json(&json!({"error": {"exit_code": code, "message": message}}));
            }
            eprintln!("statemanager: {message}");
            ExitCode::from(code)
        }
    }
}

async fn execute(command: ClientCommand) -> Result<(), Failure> {
    let args = command.server_args();
    let client = client(args)?;
    let as_json = args.json;
    match command {
        ClientCommand::Put {
            namespace,
            key,
            data,
            ttl,
            timestamp,
            ..
        } => {
            let data = if data == "-" {
                let mut buf = String::new();
                std::io::stdin()
                    .read_to_string(&mut buf)
                    .map_err(|e| Failure(exit::LOCAL, format!("reading standard input: {e}")))?;
                buf
            } else {
                data
            };
            let stored = client
                .store(&namespace, &key, &data, ttl, timestamp)
                .await?;
            if as_json {
                print_json(&json!(stored));
            } else {
                println!(
                    "stored {namespace} {key}: timestamp {}, expires {}",
                    human_time(stored.timestamp),
                    human_time(stored.expires_at)
                );
            }
        }
        ClientCommand::Get { namespace, key, .. } => match client.fetch(&namespace, &key).await? {
            Some(item) if as_json => print_json(&json!(item)),
            Some(item) => println!("{}", item.data),
            None => {
                return Err(Failure(
                    exit::NOT_FOUND,
                    format!("no item {namespace} {key} (never stored, expired or deleted)"),
                ))
            }
        },
        ClientCommand::Delete { namespace, key, .. } => {
            if !client.delete(&namespace, &key).await? {
                return Err(Failure(
                    exit::NOT_FOUND,
                    format!("no item {namespace} {key} to delete"),
                ));
            }
            if as_json {
                print_json(&json!({"deleted": true}));
            } else {
                println!("deleted {namespace} {key}");
            }
        }
        ClientCommand::List {
            namespace, limit, ..
        } => {
            let list = client.list(&namespace, limit).await?;
            if as_json {
                print_json(&json!(list));
            } else {
                println!("{:<40} {:>8}  {:<27}  EXPIRES", "KEY", "BYTES", "TIMESTAMP");
                for k in &list.keys {
                    println!(
                        "{:<40} {:>8}  {:<27}  {}",
                        k.key,
                        k.bytes,
                        human_time(k.timestamp),
                        human_time(k.expires_at)
                    );
                }
                println!(
                    "{} key(s){}",
                    list.keys.len(),
                    if list.truncated {
                        " shown; more exist (raise --limit)"
                    } else {
                        ""
                    }
                );
            }
        }
        ClientCommand::Status { .. } => {
            let status = client.status().await?;
            if as_json {
                print_json(&status);
            } else {
                print_status(&status);
            }
        }
        ClientCommand::Backup { out, .. } => backup(&client, &out, as_json).await?,
    }
    Ok(())
}

fn print_status(status: &Value) {
    let Some(map) = status.as_object() else {
        print_json(status);
        return;
    };
    for (name, value) in map {
        match value {
            Value::Array(list) => {
                println!("{name}:");
                for entry in list {
                    println!("  {entry}");
                }
            }
            Value::String(s) => println!("{name}: {s}"),
            other => println!("{name}: {other}"),
        }
    }
}

/// Downloads into `<out>.partial`, verifies every record, then renames into place.
async fn backup(client: &Client, out: &Path, as_json: bool) -> Result<(), Failure> {
    if out.exists() {
        return Err(Failure(
            exit::LOCAL,
            format!("{} exists; a backup never overwrites a file", out.display()),
        ));
    }
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    let bytes = match client.download_backup(&partial).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
    };
    let verified = {
        let partial = partial.clone();
        tokio::task::spawn_blocking(move || statemanager_backup::read_backup(&partial))
            .await
            .map_err(|e| Failure(exit::LOCAL, e.to_string()))?
    };
    let header = match verified {
        Ok(capture) => capture.header,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(Failure(
                exit::UNEXPECTED,
                format!("the backup received is damaged ({e}); nothing was written"),
            ));
        }
    };
    std::fs::rename(&partial, out)
        .map_err(|e| Failure(exit::LOCAL, format!("renaming to {}: {e}", out.display())))?;
    // The rename is durable once the directory that holds the name is: without this a power
    // cut could leave the `.partial` name (or none) after a backup reported as written.
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| {
            Failure(
                exit::LOCAL,
                format!(
                    "the backup was written to {} but syncing its directory {} failed ({e}): \
                     a power cut could still lose the file's name: remove it (or choose another \
                     name) and run the backup again",
                    out.display(),
                    parent.display()
                ),
            )
        })?;
    if as_json {
        print_json(&json!({
            "file": out.display().to_string(),
            "bytes": bytes,
            "items": header.items,
            "applied_index": header.applied_index,
            "source_node": header.source_node,
            "cluster_id": header.cluster_id,
        }));
    } else {
        println!(
            "backup of {} item(s) from node {} at applied index {} written to {} ({} bytes)",
            header.items,
            header.source_node,
            header.applied_index,
            out.display(),
            bytes
        );
    }
    Ok(())
}
