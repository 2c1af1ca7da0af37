//! The binary: parse the command line, set up logging, start the runtime, run the command
//! (each one's body is in the library's `cmd` module), print what it answers and map how it
//! ended to an exit code. Exit codes are a contract (systemd relies on them): 0 clean stop,
//! 1 runtime failure, 2 bad configuration or arguments.

use std::process::ExitCode;

use clap::Parser;
use sigsci_export::cli::{Cli, Command};
use sigsci_export::cmd::{self, Failure, Outcome};
use sigsci_export::telemetry;
use tracing::error;

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Blocking work is SQLite behind two connections: more threads only wait on their
        // locks, and each idle thread keeps its allocator cache (peak RSS).
        .max_blocking_threads(4)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sigsci-export: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let Outcome { output, result } = runtime.block_on(dispatch(cli.command));
    print!("{}", output.stdout);
    eprint!("{}", output.stderr);
    // Once, through the log: an ERROR line keeps its level in journald and JSON collectors,
    // and reads as plain text on a terminal.
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(msg)) => {
            error!("{msg}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            error!("{e:#}");
            ExitCode::from(1)
        }
    }
}

async fn dispatch(command: Command) -> Outcome {
    match command {
        Command::Run { config, grace_secs } => cmd::run::command(&config, grace_secs).await.into(),
        Command::Backfill {
            config,
            from,
            until,
            sites,
        } => cmd::backfill::command(&config, &from, &until, sites)
            .await
            .into(),
        Command::Check { config, offline } => cmd::check::command(&config, offline).await,
        Command::Status {
            config,
            state,
            json,
        } => cmd::status::command(&config, state, json).await.into(),
        Command::DeadLetters {
            config,
            state,
            action,
        } => cmd::dead_letters::command(&config, state, action)
            .await
            .into(),
        Command::Healthcheck { url } => cmd::healthcheck::command(&url).await.into(),
        command @ Command::Simulate { .. } => cmd::simulate::command(command).await.into(),
        Command::Demo { grace_secs } => cmd::demo::command(grace_secs).await.into(),
    }
}
