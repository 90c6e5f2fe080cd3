//! Logging in Opsview's forms.
//!
//! - Default: syslog, ident `statemanager`, facility daemon, each line `[LEVEL] message`. If no
//!   syslog socket answers at `/dev/log`, stderr instead, with one warning saying so.
//! - `log_stderr: true` / `--log-stderr`: stderr, for systemd and tests.
//! - `-d` (debug mode): DEBUG to stderr.
//!
//! On stderr every line reads `2025-10-16 10:25:16,458 NOTICE [statemanager <pid>] message`.
//! tracing's INFO is shown as NOTICE (syslog's "normal but significant"), WARN as WARNING.

use std::fmt;

use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogLevel;

const TIME_FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second],[subsecond digits:3]");

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// syslog (falls back to stderr when there is no syslog socket).
    Syslog,
    /// stderr.
    Stderr,
}

/// Formats events as Opsview does.
struct OpsviewFormat {
    /// `Some` on stderr: prefix each line with local time and `[statemanager <pid>]`.
    stderr: Option<UtcOffset>,
    pid: u32,
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "NOTICE",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

impl<S, N> FormatEvent<S, N> for OpsviewFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = level_name(event.metadata().level());
        match self.stderr {
            Some(offset) => {
                let now = OffsetDateTime::now_utc().to_offset(offset);
                let stamp = now.format(TIME_FORMAT).map_err(|_| fmt::Error)?;
                write!(writer, "{stamp} {level} [statemanager <{}>] ", self.pid)?;
            }
            None => write!(writer, "[{level}] ")?,
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

fn syslog_socket_answers() -> bool {
    std::os::unix::net::UnixDatagram::unbound()
        .and_then(|s| s.connect("/dev/log"))
        .is_ok()
}

/// The pinned openraft's notices that it dropped a message sent under a vote this node no
/// longer holds (`RaftCore::does_vote_match`, `core/raft_core.rs` of 0.10.0-alpha.37, the
/// two `warn!`s at these lines). They come with every election, a new single node's first
/// start included (its own vote of term 0 answered after it has voted in term 1), and mean
/// nothing is wrong, but openraft logs them as warnings. They are shown from `debug` on.
/// `process::a_first_start_logs_no_warning` fails if an upgrade moves them.
const STALE_VOTE_NOTICE_LINES: [u32; 2] = [2259, 2270];

/// Whether an event is one of openraft's stale-vote notices ([`STALE_VOTE_NOTICE_LINES`]).
fn is_stale_vote_notice(meta: &tracing::Metadata<'_>) -> bool {
    meta.target() == "openraft::core::raft_core"
        && *meta.level() == Level::WARN
        && meta
            .file()
            .is_some_and(|f| f.ends_with("core/raft_core.rs"))
        && meta
            .line()
            .is_some_and(|l| STALE_VOTE_NOTICE_LINES.contains(&l))
}

/// Installs the global logger. Call once, early, while the process is still single-threaded
/// (the local UTC offset can only be read safely then).
pub fn init(level: LogLevel, sink: Sink) {
    let offset = UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC);
    let threshold = match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warning => LevelFilter::WARN,
        LogLevel::Notice => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    };
    // Our own crates log at the chosen level; libraries (openraft is chatty at DEBUG) only
    // their warnings, unless tracing everything.
    let library_level = if level == LogLevel::Trace {
        LevelFilter::TRACE
    } else {
        LevelFilter::WARN.min(threshold)
    };
    // openraft 0.10 warns on every failed heartbeat (ten times a second per unreachable
    // peer); its replication errors, logged with a back-off, already say a peer is down.
    let filter = Targets::new()
        .with_target("statemanager", threshold)
        .with_target(
            "openraft::core::heartbeat",
            LevelFilter::ERROR.min(library_level),
        )
        .with_default(library_level);
    let show_stale_votes = threshold >= LevelFilter::DEBUG;
    let stale_votes = tracing_subscriber::filter::filter_fn(move |meta| {
        show_stale_votes || !is_stale_vote_notice(meta)
    });
    let pid = std::process::id();

    let mut fell_back = false;
    if sink == Sink::Syslog {
        if syslog_socket_answers() {
            if let Some(syslog) = syslog_tracing::Syslog::new(
                c"statemanager",
                syslog_tracing::Options::LOG_PID,
                syslog_tracing::Facility::Daemon,
            ) {
                let layer = tracing_subscriber::fmt::layer()
                    .event_format(OpsviewFormat { stderr: None, pid })
                    .with_ansi(false)
                    .with_writer(syslog);
                tracing_subscriber::registry()
                    .with(filter)
                    .with(stale_votes)
                    .with(layer)
                    .init();
                return;
            }
        }
        fell_back = true;
    }
    let layer = tracing_subscriber::fmt::layer()
        .event_format(OpsviewFormat {
            stderr: Some(offset),
            pid,
        })
        .with_ansi(false)
        .with_writer(std::io::stderr);
    tracing_subscriber::registry()
        .with(filter)
        .with(stale_votes)
        .with(layer)
        .init();
    if fell_back {
        tracing::warn!("no syslog socket answers at /dev/log; logging to stderr instead");
    }
}
