//! Logging setup. Logs always go to stderr (stdout may carry events); JSON lines when stderr is
//! not a terminal (journald, containers, tests), human text on a terminal, above the backfill's
//! progress bar when one is shown.
//!
//! Levels mean something: ERROR = data at risk or an operator must act; WARN = a retried or
//! degraded condition; INFO = lifecycle; DEBUG = per window and per batch.

mod above_bar;
pub mod metrics;

pub use above_bar::{AboveBar, LogsAboveBar, StderrAboveBar, logs_above};

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// JSON when stderr is not a terminal, text otherwise.
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// Installs the global subscriber. The filter comes from `RUST_LOG` (default `info`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Above the backfill's progress bar while one is shown (see `above_bar`).
        .with_writer(StderrAboveBar)
        .with_target(false);
    // try_init: a second initialisation (tests) is not an error worth dying for.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
}
