//! `statemanager serve`: configuration, logging and the runtime, then the server in four
//! steps: [`bind`] the listeners, [`build`] the node, the cache and the API's state,
//! [`spawn`] the background tasks and the listeners, and [`drain`] on a signal.

mod bind;
mod build;
mod drain;
mod spawn;

use std::path::Path;
use std::process::ExitCode;

use statemanager_core::{Clock, Timestamp};

use crate::config::{self, Config, LogLevel};
use crate::listener::threads::{ConnectionThreads, Spread};
use crate::logging::{self, Sink};
use crate::notify::Notifier;
use crate::ServeArgs;

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Timestamp::from_micros(micros)
    }
}

/// Entry point of `serve`: loads the configuration, starts logging and the runtime.
pub fn main(args: ServeArgs) -> ExitCode {
    let loaded = match config::load(args.config.as_deref(), &|var| std::env::var(var).ok()) {
        Ok(loaded) => loaded,
        Err(message) => {
            eprintln!("statemanager: {message}");
            return ExitCode::from(2);
        }
    };
    let mut config = loaded.config;
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(host) = args.host {
        config.host = host;
    }
    if let Some(port) = args.port {
        config.port = port;
    }
    if args.log_stderr {
        config.log_stderr = true;
    }
    if args.debug {
        config.log_level = config.log_level.max_verbose(LogLevel::Debug);
    }
    let sink = if args.debug || config.log_stderr {
        Sink::Stderr
    } else {
        Sink::Syslog
    };
    logging::init(config.log_level, sink);
    let notifier = Notifier::from_env();
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(config.runtime_workers(cores));
    if let Some(slice) = config.thread_slice() {
        // Every runtime thread: a worker woken for the Raft core or a request starts sooner.
        builder.on_thread_start(move || {
            if let Err(e) = statemanager_raft::thread_slice::request(slice) {
                tracing::debug!(error = %e, "a runtime thread keeps the default scheduler slice");
            }
        });
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let workers = runtime.metrics().num_workers();
    let connection_threads = match ConnectionThreads::start(
        config.connection_threads(cores),
        workers,
        config.thread_slice(),
    ) {
        Ok(threads) => threads,
        Err(e) => {
            tracing::error!("cannot start the connection threads: {e}");
            return ExitCode::FAILURE;
        }
    };
    let plural = if workers == 1 { "" } else { "s" };
    let own = connection_threads.len();
    let own_plural = if own == 1 { "" } else { "s" };
    tracing::info!(
        "async runtime: {workers} worker thread{plural} and {own} connection thread{own_plural} on {cores} CPU cores"
    );
    log_thread_slice(config.thread_slice());
    let spread = connection_threads.spread();
    let result = runtime.block_on(run(config, args.addr_file.as_deref(), notifier, spread));
    // The listeners have drained (or given up waiting): what is left on the threads ends.
    connection_threads.stop();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            if sink == Sink::Syslog {
                // The operator starting us by hand should see why, not only syslog.
                eprintln!("statemanager: {e:#}");
            }
            exit_code_of(&e)
        }
    }
}

/// 2 for an error in the configuration, as for one found while loading it: a TLS setting
/// (`tls`, `peer_tls`) missing, or naming a certificate, key or CA file that cannot be read or
/// used (found only when the listeners are bound). A restart cannot fix either (the packaged
/// unit does not restart after 2). 1 for anything else.
fn exit_code_of(error: &anyhow::Error) -> ExitCode {
    let in_configuration = error
        .chain()
        .any(|cause| cause.downcast_ref::<crate::tls::TlsError>().is_some());
    match in_configuration {
        true => ExitCode::from(2),
        false => ExitCode::FAILURE,
    }
}

/// Says once, at start, whether the write path's threads run with the configured scheduler
/// slice: the main thread asks for it too, and the kernel's answer is logged (the runtime's
/// threads log theirs only at debug level).
fn log_thread_slice(slice: Option<std::time::Duration>) {
    let Some(slice) = slice else {
        return;
    };
    match statemanager_raft::thread_slice::request(slice)
        .and_then(|()| statemanager_raft::thread_slice::current())
    {
        Ok(now) if now == slice => {
            tracing::info!("threads ask for a {} µs scheduler slice", slice.as_micros())
        }
        Ok(now) if now.is_zero() => tracing::info!(
            "this kernel has no per-thread scheduler slices (Linux 6.12 and later do); \
             thread_slice_us has no effect"
        ),
        Ok(now) => tracing::info!(
            "threads ask for a {} µs scheduler slice; the kernel gives {} µs",
            slice.as_micros(),
            now.as_micros()
        ),
        Err(e) => tracing::warn!(
            error = %e,
            "threads keep the default scheduler slice (thread_slice_us has no effect)"
        ),
    }
}

impl LogLevel {
    fn max_verbose(self, other: LogLevel) -> LogLevel {
        let rank = |l: LogLevel| match l {
            LogLevel::Error => 0,
            LogLevel::Warning => 1,
            LogLevel::Notice => 2,
            LogLevel::Debug => 3,
            LogLevel::Trace => 4,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

/// The server: bind, build, spawn, serve until stopped, drain.
async fn run(
    config: Config,
    addr_file: Option<&Path>,
    notifier: Notifier,
    spread: Spread,
) -> anyhow::Result<()> {
    // Before anything records a metric: handles taken earlier would record nowhere.
    let metrics_handle = crate::telemetry::install();
    let bound = bind::bind(&config).await?;
    let peer_credentials = config.peer_credentials()?;
    let mut built = build::build(&config, &bound, &peer_credentials, addr_file).await?;
    let tasks = spawn::background(&config, &mut built, metrics_handle);
    let draining = built.api_state.draining.clone();
    let announce = tokio::spawn(spawn::announce_ready(
        built.api_state.clone(),
        notifier.clone(),
        bound.describe(),
    ));
    let listeners = spawn::listeners(&config, bound, &built.node, built.api_state, spread)?;
    drain::until_stopped(built.node, listeners, announce, draining, notifier, tasks).await
}
