//! `sigsci-export status`: where every site and sink stands, read from the state file.
//!
//! It opens the store read-only (WAL lets it read while `run` writes), so it is safe against a
//! running service, and it never reads event bodies except through SQLite's aggregate queries.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use super::{Failure, Output, common};
use crate::cli::ConfigArg;
use crate::store::{Store, StoreError};
use crate::time::{self, rfc3339};

mod text;

pub use text::render_text;

/// `status`: the report on the state file the config (or `--state`) names, as text or JSON.
pub async fn command(
    config: &ConfigArg,
    state: Option<PathBuf>,
    json: bool,
) -> Result<Output, Failure> {
    let target = common::state_target(config, state)?;
    let store = common::open_read_only(&target)?;
    let report = report(&store, &target.path.display().to_string(), time::now())
        .await
        .context("reading the state file")?;
    if json {
        Ok(Output::stdout(format!(
            "{}\n",
            serde_json::to_string_pretty(&report).context("encoding the report")?
        )))
    } else {
        Ok(Output::stdout(render_text(&report)))
    }
}

/// The whole report (`--json` prints it as is).
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// When the report was made (RFC 3339).
    pub generated_at: String,
    /// The state file read.
    pub state_file: String,
    /// One entry per (namespace, corp, site) with a cursor, an error or a feed dead letter:
    /// a site that fails before its first window is listed too.
    pub sites: Vec<SiteStatus>,
    /// One entry per active sink and namespace.
    pub sinks: Vec<SinkStatus>,
    /// The spool as a whole.
    pub spool: SpoolStatus,
}

/// One site.
#[derive(Debug, Serialize)]
pub struct SiteStatus {
    /// `run` for the service, `backfill:<from>-<until>` (Unix seconds) for a backfill.
    pub ns: String,
    /// A backfill's range in RFC 3339 (`None` for `run`).
    pub backfill_range: Option<Range>,
    /// Corp.
    pub corp: String,
    /// Site.
    pub site: String,
    /// Everything before this instant is spooled (RFC 3339); `None` before the first window.
    pub cursor: Option<String>,
    /// The latest fetch failed and no window was committed since (or none ever was).
    pub failing: bool,
    /// now - cursor, seconds (service namespace only).
    pub lag_secs: Option<i64>,
    /// Events of this site still in the spool.
    pub spooled_events: i64,
    /// Their bytes.
    pub spooled_bytes: i64,
    /// The latest fetch error, if any.
    pub last_error: Option<ErrorStatus>,
    /// Ranges lost for good (older than the feed's retention when reached).
    pub lost_ranges: Vec<LostRange>,
    /// Feed records that could not be read, kept as dead letters (`poll.skip_bad_records`).
    pub feed_dead_letters: i64,
}

/// A backfill's range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Range {
    /// Start (RFC 3339).
    pub from: String,
    /// End, exclusive (RFC 3339).
    pub until: String,
}

/// The range of a `backfill:<from>-<until>` namespace.
pub fn backfill_range(ns: &str) -> Option<Range> {
    let (from, until) = ns.strip_prefix("backfill:")?.split_once('-')?;
    Some(Range {
        from: rfc3339(from.parse().ok()?),
        until: rfc3339(until.parse().ok()?),
    })
}

/// A namespace as a person reads it: `run`, or `backfill 2026-11-24T00:00:00Z..2026-11-25T00:00:00Z`.
pub fn ns_label(ns: &str) -> String {
    match backfill_range(ns) {
        Some(r) => format!("backfill {}..{}", r.from, r.until),
        None => ns.to_string(),
    }
}

/// A recorded error.
#[derive(Debug, Serialize)]
pub struct ErrorStatus {
    /// The message.
    pub error: String,
    /// When (RFC 3339).
    pub at: String,
}

/// A lost range.
#[derive(Debug, Serialize)]
pub struct LostRange {
    /// Start (RFC 3339).
    pub from: String,
    /// End, exclusive (RFC 3339).
    pub until: String,
    /// Length.
    pub seconds: i64,
}

/// One sink in one namespace.
#[derive(Debug, Serialize)]
pub struct SinkStatus {
    /// Namespace.
    pub ns: String,
    /// A backfill's range in RFC 3339 (`None` for `run`).
    pub backfill_range: Option<Range>,
    /// Sink name.
    pub sink: String,
    /// Spool position settled so far.
    pub offset: i64,
    /// Events not yet settled.
    pub backlog_events: i64,
    /// Their bytes.
    pub backlog_bytes: i64,
    /// Age of the oldest of them since it was fetched, seconds.
    pub oldest_pending_age_secs: Option<i64>,
    /// Dead letters, total.
    pub dead_letters: i64,
    /// Dead letters by reason, most frequent first.
    pub dead_letters_by_reason: Vec<ReasonCount>,
    /// Why the sink is paused, if it is.
    pub blocked: Option<String>,
    /// Resends after an unconfirmed delivery (HEC ack timeouts): possible duplicates.
    pub possible_duplicates: Option<i64>,
}

/// A reason and how often.
#[derive(Debug, Serialize)]
pub struct ReasonCount {
    /// Reason.
    pub reason: String,
    /// Count.
    pub count: i64,
}

/// The spool.
#[derive(Debug, Serialize)]
pub struct SpoolStatus {
    /// Body bytes in the spool.
    pub bytes: i64,
    /// Undelivered events dropped because the spool was full.
    pub dropped_events: i64,
    /// Each drop.
    pub drops: Vec<DropStatus>,
}

/// One drop.
#[derive(Debug, Serialize)]
pub struct DropStatus {
    /// Namespace.
    pub ns: String,
    /// Events dropped.
    pub events: i64,
    /// Bytes dropped.
    pub bytes: i64,
    /// When (RFC 3339).
    pub at: String,
}

/// Builds the report from `store` at `now`.
pub async fn report(store: &Store, state_file: &str, now: i64) -> Result<StatusReport, StoreError> {
    type Key = (String, String, String);
    let key_of = |k: &crate::store::SiteKey| (k.ns.clone(), k.corp.clone(), k.site.clone());
    let cursors: BTreeMap<Key, _> = store
        .cursors()
        .await?
        .into_iter()
        .map(|c| (key_of(&c.key), c))
        .collect();
    let spooled: BTreeMap<Key, _> = store
        .spool_by_site()
        .await?
        .into_iter()
        .map(|s| (key_of(&s.key), s))
        .collect();
    let errors: BTreeMap<Key, _> = store
        .site_errors()
        .await?
        .into_iter()
        .map(|e| (key_of(&e.key), e))
        .collect();
    let letters: BTreeMap<Key, i64> = store
        .feed_letter_counts()
        .await?
        .into_iter()
        .map(|(k, n)| (key_of(&k), n))
        .collect();
    let gaps = store.gaps().await?;
    // Every site the state knows: one that fails before its first window has no cursor, and
    // is the one that most needs to be seen.
    let keys: std::collections::BTreeSet<&Key> = cursors
        .keys()
        .chain(errors.keys())
        .chain(letters.keys())
        .collect();
    let sites = keys
        .into_iter()
        .map(|k| {
            let (ns, corp, site) = k.clone();
            let cursor = cursors.get(k);
            let error = errors.get(k);
            let sp = spooled.get(k);
            SiteStatus {
                lag_secs: cursor
                    .filter(|_| ns == crate::scheduler::RUN_NS)
                    .map(|c| now - c.cursor),
                cursor: cursor.map(|c| rfc3339(c.cursor)),
                // An error at or after the cursor's last move: nothing moved since it failed.
                failing: match (cursor, error) {
                    (_, None) => false,
                    (None, Some(_)) => true,
                    (Some(c), Some(e)) => e.at >= c.updated_at,
                },
                spooled_events: sp.map_or(0, |s| s.events),
                spooled_bytes: sp.map_or(0, |s| s.bytes),
                last_error: error.map(|e| ErrorStatus {
                    error: e.error.clone(),
                    at: rfc3339(e.at),
                }),
                lost_ranges: gaps
                    .iter()
                    .filter(|g| g.key.ns == ns && g.key.corp == corp && g.key.site == site)
                    .map(|g| LostRange {
                        from: rfc3339(g.from),
                        until: rfc3339(g.until),
                        seconds: g.until - g.from,
                    })
                    .collect(),
                feed_dead_letters: letters.get(k).copied().unwrap_or(0),
                backfill_range: backfill_range(&ns),
                ns,
                corp,
                site,
            }
        })
        .collect();

    let counts = store.dead_letter_counts().await?;
    let blocked: BTreeMap<String, String> = store
        .blocked_sinks()
        .await?
        .into_iter()
        .map(|b| (b.sink, b.reason))
        .collect();
    let dups: BTreeMap<String, i64> = store
        .sink_meta_by_key("possible_duplicates")
        .await?
        .into_iter()
        .filter_map(|(s, v)| v.parse().ok().map(|n| (s, n)))
        .collect();
    let sinks = store
        .sink_states()
        .await?
        .into_iter()
        .map(|s| SinkStatus {
            dead_letters_by_reason: counts
                .iter()
                .filter(|c| c.ns == s.ns && c.sink == s.sink)
                .map(|c| ReasonCount {
                    reason: c.reason.clone(),
                    count: c.count,
                })
                .collect(),
            blocked: blocked.get(&s.sink).cloned(),
            possible_duplicates: dups.get(&s.sink).copied(),
            oldest_pending_age_secs: s.oldest_pending_fetched_at.map(|t| now - t),
            offset: s.offset,
            backlog_events: s.pending_events,
            backlog_bytes: s.pending_bytes,
            dead_letters: s.dead_letters,
            backfill_range: backfill_range(&s.ns),
            ns: s.ns,
            sink: s.sink,
        })
        .collect();
    let drops = store.spool_drops().await?;
    Ok(StatusReport {
        generated_at: rfc3339(now),
        state_file: state_file.to_string(),
        sites,
        sinks,
        spool: SpoolStatus {
            bytes: store.spool_bytes().await?,
            dropped_events: drops.iter().map(|d| d.events).sum(),
            drops: drops
                .into_iter()
                .map(|d| DropStatus {
                    ns: d.ns,
                    events: d.events,
                    bytes: d.bytes,
                    at: rfc3339(d.at),
                })
                .collect(),
        },
    })
}

#[cfg(test)]
mod tests;
