//! `sigsci-export demo`: the feed simulator in-process, and the exporter run against it to
//! stdout with the embedded default config: no account, no files. Ctrl-C stops it.
//!
//! Like `simulate`, it prints where things are as it starts (a long-running command for a
//! person at a terminal), so this module may print, unlike the rest of the library.
#![allow(clippy::print_stderr)]

use std::time::Duration;

use anyhow::Context;

use super::Failure;
use super::run::run;
use crate::config;
use crate::sim::{SimConfig, Simulator};

/// `demo` with its flags.
pub async fn command(grace_secs: u64) -> Result<(), Failure> {
    demo(Duration::from_secs(grace_secs)).await
}

async fn demo(grace: Duration) -> Result<(), Failure> {
    let sim = Simulator::start(SimConfig::default(), ([127, 0, 0, 1], 0).into())
        .await
        .context("cannot start the simulator")?;
    let dir = tempfile::Builder::new()
        .prefix("sigsci-export-demo")
        .tempdir()
        .context("cannot create a temporary state directory")?;
    let db = dir.path().join("state.db");
    let base = sim.base_url();
    let db_str = db.to_string_lossy().into_owned();
    let cfg = config::load(
        config::Source::Embedded(config::DEMO_DEFAULT),
        &[
            ("api.base_url", base.as_str()),
            ("spool.path", db_str.as_str()),
        ],
    )?;
    eprintln!(
        "demo: simulator at {base}, state in {}; events follow on stdout, logs on stderr. Ctrl-C stops.",
        dir.path().display()
    );
    let result = run(cfg, grace).await;
    sim.shutdown().await;
    result
}
