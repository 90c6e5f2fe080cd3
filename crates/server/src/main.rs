//! The `statemanager` binary: `serve`, plus CLI commands.

mod config;
mod logging;
mod serve;
mod size;
mod telemetry;

use std::path::PathBuf;
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
    Serve(ServeArgs),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::main(args),
    }
}
