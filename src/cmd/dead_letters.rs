//! `sigsci-export dead-letters`: list the events a sink rejected for good, or put them back in
//! the spool for the running service to deliver again.
//!
//! The replay policy lives here: a letter goes back only to the sink that rejected it, and only
//! when that sink is still configured (or, with `--state`, was in the last `run`); otherwise it
//! would hold the spool rows after it forever.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;

use super::common::{self, StateTarget};
use super::{Failure, Output};
use crate::cli::{ConfigArg, DeadLetterAction};
use crate::scheduler;
use crate::store::Store;
use crate::time;

/// `dead-letters list` or `dead-letters replay` on the state file the config (or `--state`)
/// names.
pub async fn command(
    config: &ConfigArg,
    state: Option<PathBuf>,
    action: DeadLetterAction,
) -> Result<Output, Failure> {
    let target = common::state_target(config, state)?;
    match action {
        DeadLetterAction::List { sink, limit, json } => {
            list(&target, sink.as_deref(), limit, json).await
        }
        DeadLetterAction::Replay { sink, ids, all } => replay(&target, sink, ids, all).await,
    }
}

/// One line per letter (tab-separated, or one JSON object with the event), and the count on
/// standard error for text.
async fn list(
    target: &StateTarget,
    sink: Option<&str>,
    limit: usize,
    json: bool,
) -> Result<Output, Failure> {
    let store = common::open_read_only(target)?;
    let letters = store
        .dead_letters(sink, limit)
        .await
        .context("reading dead letters")?;
    let mut out = Output::default();
    for d in &letters {
        if json {
            let body: serde_json::Value = serde_json::from_str(&d.body)
                .unwrap_or_else(|_| serde_json::Value::String(d.body.clone()));
            let line = serde_json::json!({
                "dl_id": d.rowid, "ns": d.ns, "sink": d.sink, "corp": d.corp,
                "site": d.site, "id": d.id, "ts": time::rfc3339(d.ts),
                "reason": d.reason, "at": time::rfc3339(d.at), "event": body,
            });
            let _ = writeln!(out.stdout, "{line}");
        } else {
            let _ = writeln!(
                out.stdout,
                "{}\t{}\t{}/{}\t{}\t{}\t{}",
                d.rowid,
                d.sink,
                d.corp,
                d.site,
                d.id,
                time::rfc3339(d.at),
                d.reason
            );
        }
    }
    if !json {
        let _ = writeln!(out.stderr, "{} dead letter(s) shown", letters.len());
    }
    Ok(out)
}

/// Re-queues the selected letters in `run`'s namespace, after checking that each one's sink
/// can still receive it.
async fn replay(
    target: &StateTarget,
    sink: Option<String>,
    ids: Vec<i64>,
    all: bool,
) -> Result<Output, Failure> {
    if sink.is_none() && ids.is_empty() && !all {
        return Err(Failure::Config(
            "dead-letters replay: say which: --sink NAME, --id N (repeatable) or --all".to_string(),
        ));
    }
    if !target.path.is_file() {
        // Opening read-write would create an empty state file.
        return Err(Failure::Runtime(anyhow::anyhow!(
            "no state file at `{}` (has `run` or `backfill` been started with this config?)",
            target.path.display()
        )));
    }
    // No namespace lock: the re-queue is one SQLite transaction that appends rows after
    // every seq a running `run` has read, which is how that service picks them up.
    let store = Store::open(&target.path).map_err(|e| common::store_failure(e, &target.path))?;
    // A letter goes back to the sink that rejected it: one that is no longer configured
    // would hold it (and the spool rows after it) forever.
    let (known, known_as) = match &target.sinks {
        Some(names) => (names.clone(), "the config"),
        None => (
            store
                .sink_states()
                .await
                .context("reading the state file's sinks")?
                .into_iter()
                .filter(|s| s.ns == scheduler::RUN_NS)
                .map(|s| s.sink)
                .collect(),
            "the last `run` on this state file",
        ),
    };
    if let Some(s) = &sink
        && !known.contains(s)
    {
        return Err(Failure::Config(format!(
            "dead-letters replay: no sink named `{s}` in {known_as} (sinks: {})",
            known.join(", ")
        )));
    }
    let selected = store
        .dead_letter_sinks(sink.as_deref(), ids.clone())
        .await
        .context("reading dead letters")?;
    let unknown: Vec<String> = selected
        .iter()
        .filter(|(s, _)| !known.contains(s))
        .map(|(s, n)| format!("{n} for `{s}`"))
        .collect();
    if !unknown.is_empty() {
        return Err(Failure::Config(format!(
            "dead-letters replay: the selection holds dead letters of sinks not in {known_as} ({}); \
             nothing was re-queued. Add the sink back, or narrow the selection with --sink NAME or --id N",
            unknown.join(", ")
        )));
    }
    let n = store
        .replay_dead_letters(scheduler::RUN_NS, sink.as_deref(), ids)
        .await
        .context("re-queueing dead letters")?;
    Ok(Output::stdout(format!(
        "{n} dead letter(s) re-queued; the running service (`sigsci-export run`) delivers them to the sink that rejected each\n"
    )))
}
