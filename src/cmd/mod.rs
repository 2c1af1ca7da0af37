//! The commands, one module each: what `sigsci-export <command>` does once `main.rs` has parsed
//! the command line, set up logging and started the runtime.
//!
//! Each module's `command` takes the command's parsed arguments ([`crate::cli`]) and returns how
//! it ended: a [`Failure`] decides the exit code (a contract systemd relies on: 0 clean stop,
//! 1 runtime failure, 2 bad configuration or arguments), and the commands that answer a person
//! (`check`, `status`, `dead-letters`, `healthcheck`) return their text as [`Output`] for
//! `main.rs` to print, since the library prints nothing. The long-running ones log through
//! `tracing` instead; only the simulator's and the demo's start-up banners are printed where
//! they happen (see [`simulate`]).
//!
//! The commands live in the library, not in the binary, so that their unit tests run with the
//! library's and `cargo doc` (which skips a binary named like its library) checks their docs.
//! `anyhow` lives here only: a command is the edge where errors become a message.
//!
//! What more than one command uses is written once: [`common`] (loading the config, opening the
//! state file, the state file `status` and `dead-letters` read) and [`preflight`] (building
//! what `run` builds, which `check` reports on and `run` and `backfill` start from).

pub mod backfill;
pub mod check;
pub mod common;
pub mod dead_letters;
pub mod demo;
pub mod healthcheck;
pub mod preflight;
pub mod run;
pub mod simulate;
pub mod status;

use crate::config::ConfigError;

/// How a command failed, which decides the exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad configuration or arguments: exit 2, restarting will not help.
    Config(String),
    /// Anything else: exit 1.
    Runtime(anyhow::Error),
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Config(format!("configuration error: {e}"))
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

/// What a command leaves for `main.rs` to print, in this order, before it logs a failure.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// For standard output: the command's answer (check lines, the status report, dead letters).
    pub stdout: String,
    /// For standard error: a note for the person at the terminal, not a log line.
    pub stderr: String,
}

impl Output {
    /// Only an answer on standard output.
    pub fn stdout(text: String) -> Self {
        Output {
            stdout: text,
            stderr: String::new(),
        }
    }
}

/// A command that answers nothing prints nothing.
impl From<()> for Output {
    fn from((): ()) -> Self {
        Output::default()
    }
}

/// How a command ended: what to print, and then the exit code. A command can print and fail
/// (`check` prints every line, then exits 1 or 2 when one failed).
#[derive(Debug)]
pub struct Outcome {
    /// Printed first, whatever the result.
    pub output: Output,
    /// `Ok`: exit 0; a failure is logged once and decides the code.
    pub result: Result<(), Failure>,
}

impl From<Failure> for Outcome {
    fn from(e: Failure) -> Self {
        Outcome {
            output: Output::default(),
            result: Err(e),
        }
    }
}

impl<T: Into<Output>> From<Result<T, Failure>> for Outcome {
    fn from(result: Result<T, Failure>) -> Self {
        match result {
            Ok(out) => Outcome {
                output: out.into(),
                result: Ok(()),
            },
            Err(e) => e.into(),
        }
    }
}
