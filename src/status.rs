//! `sigsci-export status`: where every site and sink stands, read from the state file.
//!
//! It opens the store read-only (WAL lets it read while `run` writes), so it is safe against a
//! running service, and it never reads event bodies except through SQLite's aggregate queries.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::store::{Store, StoreError};
use crate::time::rfc3339;

/// The whole report (`--json` prints it as is).
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// When the report was made (RFC 3339).
    pub generated_at: String,
    /// The state file read.
    pub state_file: String,
    /// One entry per (namespace, corp, site) with a cursor.
    pub sites: Vec<SiteStatus>,
    /// One entry per active sink and namespace.
    pub sinks: Vec<SinkStatus>,
    /// The spool as a whole.
    pub spool: SpoolStatus,
}

/// One site.
#[derive(Debug, Serialize)]
pub struct SiteStatus {
    /// `run` for the service, `backfill:<from>-<until>` for a backfill.
    pub ns: String,
    /// Corp.
    pub corp: String,
    /// Site.
    pub site: String,
    /// Everything before this instant is spooled (RFC 3339).
    pub cursor: String,
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
    let cursors = store.cursors().await?;
    let spooled: BTreeMap<_, _> = store
        .spool_by_site()
        .await?
        .into_iter()
        .map(|s| {
            (
                (s.key.ns.clone(), s.key.corp.clone(), s.key.site.clone()),
                s,
            )
        })
        .collect();
    let errors: BTreeMap<_, _> = store
        .site_errors()
        .await?
        .into_iter()
        .map(|e| {
            (
                (e.key.ns.clone(), e.key.corp.clone(), e.key.site.clone()),
                e,
            )
        })
        .collect();
    let gaps = store.gaps().await?;
    let sites = cursors
        .into_iter()
        .map(|c| {
            let k = (c.key.ns.clone(), c.key.corp.clone(), c.key.site.clone());
            let sp = spooled.get(&k);
            SiteStatus {
                lag_secs: (c.key.ns == crate::scheduler::RUN_NS).then_some(now - c.cursor),
                cursor: rfc3339(c.cursor),
                spooled_events: sp.map_or(0, |s| s.events),
                spooled_bytes: sp.map_or(0, |s| s.bytes),
                last_error: errors.get(&k).map(|e| ErrorStatus {
                    error: e.error.clone(),
                    at: rfc3339(e.at),
                }),
                lost_ranges: gaps
                    .iter()
                    .filter(|g| g.key == c.key)
                    .map(|g| LostRange {
                        from: rfc3339(g.from),
                        until: rfc3339(g.until),
                        seconds: g.until - g.from,
                    })
                    .collect(),
                ns: c.key.ns,
                corp: c.key.corp,
                site: c.key.site,
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

/// Human-readable rendering.
pub fn render_text(r: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "state file {} at {}", r.state_file, r.generated_at);
    let _ = writeln!(out, "\nSITES");
    if r.sites.is_empty() {
        let _ = writeln!(out, "  (none yet: no window committed)");
    }
    for s in &r.sites {
        let lag = s
            .lag_secs
            .map(|l| format!("lag {}", human_secs(l)))
            .unwrap_or_else(|| "backfill".to_string());
        let _ = writeln!(
            out,
            "  {:<28} {}/{}  cursor {}  {}  spooled {} events ({})",
            s.ns,
            s.corp,
            s.site,
            s.cursor,
            lag,
            s.spooled_events,
            human_bytes(s.spooled_bytes)
        );
        if let Some(e) = &s.last_error {
            let _ = writeln!(out, "      last error at {}: {}", e.at, e.error);
        }
        for g in &s.lost_ranges {
            let _ = writeln!(
                out,
                "      LOST {} .. {} ({}): older than the feed's retention when reached",
                g.from,
                g.until,
                human_secs(g.seconds)
            );
        }
    }
    let _ = writeln!(out, "\nSINKS");
    if r.sinks.is_empty() {
        let _ = writeln!(out, "  (none registered yet)");
    }
    for s in &r.sinks {
        let state = match &s.blocked {
            Some(reason) => format!("BLOCKED: {reason}"),
            None => "ok".to_string(),
        };
        let oldest = s
            .oldest_pending_age_secs
            .map(|a| format!(", oldest {}", human_secs(a)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<28} {:<16} {}  offset {}  backlog {} events ({}{})  dead letters {}",
            s.ns,
            s.sink,
            state,
            s.offset,
            s.backlog_events,
            human_bytes(s.backlog_bytes),
            oldest,
            s.dead_letters
        );
        for c in &s.dead_letters_by_reason {
            let _ = writeln!(out, "      {} × {}", c.count, c.reason);
        }
        if let Some(n) = s.possible_duplicates.filter(|n| *n > 0) {
            let _ = writeln!(
                out,
                "      {n} resends after an unconfirmed delivery (possible duplicates)"
            );
        }
    }
    let _ = writeln!(
        out,
        "\nSPOOL {}; dropped when full: {} events",
        human_bytes(r.spool.bytes),
        r.spool.dropped_events
    );
    for d in &r.spool.drops {
        let _ = writeln!(
            out,
            "  DROPPED {} events ({}) of {} at {}",
            d.events,
            human_bytes(d.bytes),
            d.ns,
            d.at
        );
    }
    out
}

fn human_secs(s: i64) -> String {
    let s = s.max(0);
    if s < 120 {
        format!("{s}s")
    } else if s < 7200 {
        format!("{}m", s / 60)
    } else if s < 172_800 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600)
    }
}

fn human_bytes(b: i64) -> String {
    let b = b.max(0) as f64;
    if b < 1024.0 {
        format!("{b} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else {
        format!("{:.2} GiB", b / 1024.0 / 1024.0 / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewEvent, SiteKey};

    fn www() -> SiteKey {
        SiteKey {
            ns: "run".into(),
            corp: "acme".into(),
            site: "www".into(),
        }
    }

    /// A fresh store (kept alive by the returned directory) with `sinks` registered in `run`.
    async fn store_with(sinks: &[&str]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let sinks: Vec<String> = sinks.iter().map(|s| s.to_string()).collect();
        store.register_sinks("run", &sinks).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn reports_cursor_backlog_errors_gaps_and_blocks() {
        let (_dir, store) = store_with(&["hec", "out"]).await;
        let key = www();
        let events = (0..3)
            .map(|i| NewEvent {
                id: format!("id{i}"),
                ts: 1_000,
                body: crate::store::Body::from(format!("{{\"id\":\"id{i}\"}}")),
            })
            .collect();
        store
            .commit_page(&key, events, 1_100, Some(1_200))
            .await
            .unwrap();
        let batch = store.read_batch("run", "out", 10, 1 << 20).await.unwrap();
        store
            .settle(
                "run",
                "out",
                batch[2].seq,
                vec![(batch[1].clone(), "mapping".into())],
            )
            .await
            .unwrap();
        store.record_gap(&key, 0, 600).await.unwrap();
        store
            .set_site_error(&key, "HTTP 401: bad token")
            .await
            .unwrap();
        store
            .set_blocked("hec", Some("token disabled"))
            .await
            .unwrap();

        let r = report(&store, "s.db", 1_500).await.unwrap();
        assert_eq!(r.sites.len(), 1);
        let s = &r.sites[0];
        assert_eq!(s.lag_secs, Some(300));
        assert_eq!(s.spooled_events, 3, "hec still holds all three");
        assert_eq!(s.lost_ranges[0].seconds, 600);
        assert!(s.last_error.as_ref().unwrap().error.contains("401"));
        let hec = r.sinks.iter().find(|s| s.sink == "hec").unwrap();
        assert_eq!(hec.backlog_events, 3);
        assert_eq!(hec.oldest_pending_age_secs, Some(400));
        assert_eq!(hec.blocked.as_deref(), Some("token disabled"));
        let out = r.sinks.iter().find(|s| s.sink == "out").unwrap();
        assert_eq!(out.backlog_events, 0);
        assert_eq!(out.dead_letters, 1);
        assert_eq!(out.dead_letters_by_reason[0].reason, "mapping");
        let text = render_text(&r);
        assert!(text.contains("BLOCKED: token disabled"), "{text}");
        assert!(text.contains("LOST"), "{text}");
    }

    #[tokio::test]
    async fn replayed_dead_letter_goes_only_to_its_sink() {
        let (_dir, store) = store_with(&["a", "b"]).await;
        let key = www();
        store
            .commit_page(
                &key,
                vec![NewEvent {
                    id: "x".into(),
                    ts: 1,
                    body: "{\"id\":\"x\"}".into(),
                }],
                1,
                Some(60),
            )
            .await
            .unwrap();
        let batch = store.read_batch("run", "a", 10, 1 << 20).await.unwrap();
        store
            .settle(
                "run",
                "a",
                batch[0].seq,
                vec![(batch[0].clone(), "bad".into())],
            )
            .await
            .unwrap();
        store
            .settle("run", "b", batch[0].seq, vec![])
            .await
            .unwrap();
        assert_eq!(store.spool_bytes().await.unwrap(), 0);

        assert_eq!(
            store
                .replay_dead_letters("run", Some("a"), vec![])
                .await
                .unwrap(),
            1
        );
        let for_a = store.read_batch("run", "a", 10, 1 << 20).await.unwrap();
        let for_b = store.read_batch("run", "b", 10, 1 << 20).await.unwrap();
        assert_eq!(for_a.len(), 1);
        assert_eq!(for_a[0].id, "x");
        assert!(for_b.is_empty(), "b already has it");
        assert_eq!(store.pending("run", "b").await.unwrap(), 0);
        store
            .settle("run", "a", for_a[0].seq, vec![])
            .await
            .unwrap();
        assert_eq!(
            store.spool_bytes().await.unwrap(),
            0,
            "pruned once its sink passed it"
        );
        assert!(store.dead_letters(None, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn drop_oldest_keeps_the_newest_and_records_the_drop() {
        let (_dir, store) = store_with(&["a"]).await;
        let key = www();
        let body = "x".repeat(100);
        let events = (0..10)
            .map(|i| NewEvent {
                id: format!("id{i}"),
                ts: 1,
                body: crate::store::Body::from(body.clone()),
            })
            .collect();
        store.commit_page(&key, events, 1, Some(60)).await.unwrap();
        let drops = store.drop_oldest(450).await.unwrap();
        assert_eq!(drops.len(), 1);
        assert_eq!(drops[0].events, 6);
        let left = store.read_batch("run", "a", 100, 1 << 20).await.unwrap();
        assert_eq!(left.len(), 4);
        assert_eq!(left[0].id, "id6");
        let r = report(&store, "s.db", 100).await.unwrap();
        assert_eq!(r.spool.dropped_events, 6);
    }
}
