//! The spool's bound (`spool.max_bytes`): how much the spool holds, dropping the oldest
//! undelivered events when it is full, and the policy the pollers wait on before every feed
//! request, so the spool stops growing when sinks fall behind for long.
//!
//! `block` pauses polling (one ERROR per episode, `sigsci_export_spool_full` = 1, `/readyz` not
//! ready) and resumes once sinks drained enough. A paused site's lag keeps growing, and so does
//! the gauge; once it comes within [`loss_margin`] of the feed's retention, one ERROR per site
//! says how long until data is lost. `drop_oldest` deletes the oldest undelivered events
//! instead, each drop recorded in the store (`spool_drops`), logged at ERROR and counted. The
//! size is sampled at most once a second, so the spool can pass the bound by what one second of
//! fetching adds.

use std::collections::BTreeMap;
#[cfg(test)]
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use rusqlite::{Connection, params};

use super::conn::{Db, all, text_ref, to_i64};
use super::error::{Fail, StoreError};
use super::rows::{self, RowBuilder};
use super::{SiteKey, Store};
use crate::config::WhenFull;
use crate::health::Health;
use crate::telemetry::metrics;
use crate::time::now;

/// Events of one site still in the spool file: not yet passed by every sink, or sharing a spool
/// row with such events (a row goes once every sink has passed all of its events).
#[derive(Clone, Debug, PartialEq)]
pub struct SiteSpool {
    /// The site.
    pub key: SiteKey,
    /// Spooled events.
    pub events: i64,
    /// Their body bytes.
    pub bytes: i64,
}

/// Undelivered events dropped because the spool was full (`when_full = "drop_oldest"`).
#[derive(Clone, Debug, PartialEq)]
pub struct SpoolDrop {
    /// The namespace they belonged to.
    pub ns: String,
    /// How many events.
    pub events: i64,
    /// Their body bytes.
    pub bytes: i64,
    /// Lowest dropped seq.
    pub from_seq: i64,
    /// Highest dropped seq.
    pub to_seq: i64,
    /// When.
    pub at: i64,
}

impl Store {
    /// Spooled events per site.
    pub async fn spool_by_site(&self) -> Result<Vec<SiteSpool>, StoreError> {
        self.run("spool_by_site", |db| {
            all(
                &db.conn,
                "SELECT ns, corp, site, SUM(events), COALESCE(SUM(bytes), 0) FROM spool
                 GROUP BY ns, corp, site ORDER BY ns, corp, site",
                [],
                |row| {
                    Ok(SiteSpool {
                        key: SiteKey::from_row(row)?,
                        events: row.get(3)?,
                        bytes: row.get(4)?,
                    })
                },
            )
        })
        .await
    }

    /// Total body bytes in the spool, every namespace.
    pub async fn spool_bytes(&self) -> Result<i64, StoreError> {
        self.run("spool_bytes", |db| Ok(total_bytes(&db.conn)?))
            .await
    }

    /// Deletes the oldest spooled events, whatever sinks still wait for them, until at most
    /// `keep_bytes` remain; records and returns what was dropped per namespace.
    pub async fn drop_oldest(&self, keep_bytes: i64) -> Result<Vec<SpoolDrop>, StoreError> {
        self.run("drop_oldest", move |db| drop_oldest(db, keep_bytes))
            .await
    }

    /// Every recorded drop, oldest first.
    pub async fn spool_drops(&self) -> Result<Vec<SpoolDrop>, StoreError> {
        self.run("spool_drops", |db| {
            all(
                &db.conn,
                "SELECT ns, events, bytes, from_seq, to_seq, at FROM spool_drops ORDER BY drop_id",
                [],
                |row| {
                    Ok(SpoolDrop {
                        ns: row.get(0)?,
                        events: row.get(1)?,
                        bytes: row.get(2)?,
                        from_seq: row.get(3)?,
                        to_seq: row.get(4)?,
                        at: row.get(5)?,
                    })
                },
            )
        })
        .await
    }
}

/// Total body bytes in the spool.
fn total_bytes(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT COALESCE(SUM(bytes), 0) FROM spool")?
        .query_row([], |row| row.get(0))
}

/// [`Store::drop_oldest`]'s transaction.
fn drop_oldest(db: &mut Db, keep_bytes: i64) -> Result<Vec<SpoolDrop>, Fail> {
    let now = now();
    db.immediate(|tx| {
        let total = total_bytes(tx)?;
        let mut excess = total - keep_bytes;
        if excess <= 0 {
            return Ok(Vec::new());
        }
        let mut drops: BTreeMap<String, SpoolDrop> = BTreeMap::new();
        // Per namespace, the seq every active sink has passed. A row's leading events may
        // be passed while later ones are pending; deleting those loses nothing, so they
        // free space but are not counted as dropped.
        let mut passed: BTreeMap<String, Option<i64>> = BTreeMap::new();
        // Rows up to `whole` go entirely; then maybe the front of one more.
        let mut whole: Option<i64> = None;
        let mut trim: Option<(i64, RowBuilder)> = None;
        {
            let mut stmt = tx.prepare_cached(
                "SELECT seq, events, ns, target, frame, body FROM spool ORDER BY seq",
            )?;
            let mut min_offset = tx.prepare_cached(
                "SELECT MIN(offset_seq) FROM sink_offsets WHERE ns = ?1 AND active = 1",
            )?;
            let mut rows = stmt.query([])?;
            // seq grows with fetch order across namespaces: the smallest are the oldest.
            while excess > 0 {
                let Some(row) = rows.next()? else { break };
                let (last, n, ns): (i64, i64, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
                let target: Option<String> = row.get(3)?;
                let (frame, text) = (text_ref(row, 4)?, text_ref(row, 5)?);
                let entries = rows::read(last, frame, text, n)?;
                let passed_upto = match (&target, passed.get(&ns)) {
                    // A replayed dead letter's row goes as soon as its one sink passes
                    // it: one still here is undelivered.
                    (Some(_), _) => None,
                    (None, Some(p)) => *p,
                    (None, None) => {
                        let p: Option<i64> = min_offset.query_row(params![ns], |row| row.get(0))?;
                        passed.insert(ns.clone(), p);
                        p
                    }
                };
                let first = last - n + 1;
                let mut taken = 0;
                for (i, e) in entries.iter().enumerate() {
                    if excess <= 0 {
                        break;
                    }
                    let seq = first + to_i64(i);
                    let bytes = to_i64(e.body.len());
                    excess -= bytes;
                    taken = i + 1;
                    if passed_upto.is_some_and(|p| seq <= p) {
                        continue;
                    }
                    let d = drops.entry(ns.clone()).or_insert_with(|| SpoolDrop {
                        ns: ns.clone(),
                        events: 0,
                        bytes: 0,
                        from_seq: seq,
                        to_seq: seq,
                        at: now,
                    });
                    d.events += 1;
                    d.bytes += bytes;
                    d.to_seq = seq;
                }
                if taken == entries.len() {
                    whole = Some(last);
                } else {
                    let mut rest = RowBuilder::default();
                    for e in &entries[taken..] {
                        rest.push(e.ts, e.id, &text[e.body.clone()]);
                    }
                    trim = Some((last, rest));
                }
            }
        }
        if let Some(cutoff) = whole {
            tx.prepare_cached("DELETE FROM spool WHERE seq <= ?1")?
                .execute(params![cutoff])?;
        }
        if let Some((seq, rest)) = trim {
            // The row keeps its seq (its last event's) and loses its first events.
            tx.prepare_cached(
                "UPDATE spool SET events = ?2, bytes = ?3, frame = ?4, body = ?5 WHERE seq = ?1",
            )?
            .execute(params![
                seq,
                to_i64(rest.events),
                to_i64(rest.body.len()),
                rest.frame,
                rest.body
            ])?;
        }
        let drops: Vec<SpoolDrop> = drops.into_values().collect();
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO spool_drops (ns, events, bytes, from_seq, to_seq, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for d in &drops {
                insert.execute(params![d.ns, d.events, d.bytes, d.from_seq, d.to_seq, d.at])?;
            }
        }
        Ok(drops)
    })
}

/// How often a blocked poller looks again.
const BLOCKED_RECHECK: Duration = Duration::from_secs(2);

/// A live site waiting for room, so the wait can keep its lag visible.
#[derive(Debug, Clone, Copy)]
pub struct Waiter<'a> {
    /// The site.
    pub site: &'a str,
    /// Its cursor, which does not move while it waits.
    pub cursor: i64,
    /// The feed's retention (`api.retention_secs`): a lag beyond it is data lost.
    pub retention_secs: i64,
}

/// How long before the retention runs out a blocked site's ERROR comes: a tenth of the
/// retention (2.4 h of the default 24 h), at least 30 minutes, at most half of it.
pub fn loss_margin(retention_secs: i64) -> i64 {
    (retention_secs / 10).max(1800).min(retention_secs / 2)
}

/// Minutes left before a site `lag_secs` behind loses data, once inside the margin.
fn minutes_until_loss(lag_secs: i64, retention_secs: i64) -> Option<i64> {
    (lag_secs >= retention_secs - loss_margin(retention_secs))
        .then(|| ((retention_secs - lag_secs) / 60).max(0))
}

/// Shared by every poller of the process.
pub struct SpoolLimit {
    store: Store,
    max_bytes: i64,
    when_full: WhenFull,
    sample: Mutex<Option<(Instant, i64)>>,
    full: AtomicBool,
    /// Where a full spool is reported for `/readyz`.
    health: Health,
}

impl SpoolLimit {
    /// A bound of `max_bytes` on `store`.
    pub fn new(store: Store, max_bytes: u64, when_full: WhenFull) -> SpoolLimit {
        SpoolLimit {
            store,
            max_bytes: i64::try_from(max_bytes).unwrap_or(i64::MAX),
            when_full,
            sample: Mutex::new(None),
            full: AtomicBool::new(false),
            health: Health::default(),
        }
    }

    /// Reports a full spool to `health` (without it, to a handle nobody reads).
    pub fn with_health(mut self, health: Health) -> SpoolLimit {
        self.health = health;
        self
    }

    /// Returns once there is room for another page: at once when below the bound; after making
    /// room (`drop_oldest`); or after sinks drained enough (`block`), meanwhile keeping the
    /// `waiter`'s lag gauge current. False if cancelled first.
    pub async fn wait_for_room(
        &self,
        cancel: &CancellationToken,
        waiter: Option<Waiter<'_>>,
    ) -> Result<bool, StoreError> {
        let mut loss_announced = false;
        loop {
            let bytes = self.bytes().await?;
            if bytes < self.max_bytes {
                if self.full.swap(false, Ordering::Relaxed) {
                    self.health.spool_full(None);
                    info!(
                        spool_bytes = bytes,
                        max_bytes = self.max_bytes,
                        "Spool has room again; polling resumes."
                    );
                }
                return Ok(true);
            }
            match self.when_full {
                WhenFull::DropOldest => {
                    // Make room for more than one page, so drops come in few, larger steps.
                    let keep = self.max_bytes - self.max_bytes / 10;
                    for d in self.store.drop_oldest(keep).await? {
                        metrics::spool_dropped(d.events);
                        error!(
                            ns = %d.ns, events = d.events, bytes = d.bytes, from_seq = d.from_seq, to_seq = d.to_seq,
                            max_bytes = self.max_bytes,
                            "Data dropped: the spool was full (spool.when_full = drop_oldest); these undelivered events are gone. `sigsci-export status` lists every drop."
                        );
                    }
                    *self.sample.lock().await = None;
                    return Ok(true);
                }
                WhenFull::Block => {
                    if !self.full.swap(true, Ordering::Relaxed) {
                        self.health.spool_full(Some(&format!(
                            "spool full ({bytes} of spool.max_bytes = {} bytes): polling paused until the sinks catch up",
                            self.max_bytes
                        )));
                        error!(
                            spool_bytes = bytes,
                            max_bytes = self.max_bytes,
                            "Spool full: polling paused until the sinks catch up (spool.when_full = block). Check the sinks (`sigsci-export status`); if they stay down longer than the feed's retention (24 h by default), data is lost upstream. Raise spool.max_bytes or fix the sink."
                        );
                    }
                    if let Some(w) = waiter {
                        let lag = crate::time::now() - w.cursor;
                        metrics::site_lag(w.site, lag);
                        if !loss_announced
                            && let Some(minutes) = minutes_until_loss(lag, w.retention_secs)
                        {
                            loss_announced = true;
                            error!(
                                site = w.site,
                                lag_secs = lag,
                                retention_secs = w.retention_secs,
                                minutes_left = minutes,
                                "Data will be lost in {minutes} minutes: polling is paused by the full spool and the feed drops what is older than its retention. Free the sinks (`sigsci-export status`) or raise spool.max_bytes."
                            );
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(BLOCKED_RECHECK) => {}
                        _ = cancel.cancelled() => return Ok(false),
                    }
                }
            }
        }
    }

    async fn bytes(&self) -> Result<i64, StoreError> {
        let mut sample = self.sample.lock().await;
        if let Some((at, bytes)) = *sample
            && at.elapsed() < Duration::from_secs(1)
        {
            return Ok(bytes);
        }
        let bytes = self.store.spool_bytes().await?;
        metrics::spool_bytes(bytes);
        *sample = Some((Instant::now(), bytes));
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewEvent, SiteKey};

    async fn full_store(dir: &std::path::Path) -> Store {
        let store = Store::open(&dir.join("s.db")).unwrap();
        store
            .register_sinks("run", &["a".to_string()])
            .await
            .unwrap();
        let key = SiteKey {
            ns: "run".into(),
            corp: "acme".into(),
            site: "www".into(),
        };
        let body = "x".repeat(1000);
        let events = (0..2000)
            .map(|i| NewEvent {
                id: format!("id{i}"),
                ts: 1,
                body: crate::store::Body::from(body.clone()),
            })
            .collect();
        store.commit_page(&key, events, 1, Some(60)).await.unwrap();
        store
    }

    #[tokio::test]
    async fn block_waits_until_sinks_drain() {
        let dir = tempfile::tempdir().unwrap();
        let store = full_store(dir.path()).await;
        let health = Health::new();
        let limit = Arc::new(
            SpoolLimit::new(store.clone(), 1 << 20, WhenFull::Block).with_health(health.clone()),
        );
        let cancel = CancellationToken::new();
        let waiter = {
            let (limit, cancel) = (limit.clone(), cancel.clone());
            tokio::spawn(async move { limit.wait_for_room(&cancel, None).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !waiter.is_finished(),
            "must block while the spool is over the bound"
        );
        // The sink drains everything: polling may go on.
        let all = store
            .read_batch("run", "a", 5000, usize::MAX)
            .await
            .unwrap();
        store
            .settle("run", "a", all.last().unwrap().seq, vec![])
            .await
            .unwrap();
        assert!(
            health
                .blocked()
                .iter()
                .any(|(c, r)| c == "spool" && r.contains("spool full")),
            "/readyz reports the full spool"
        );
        let resumed = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("resumes after the drain")
            .unwrap()
            .unwrap();
        assert!(resumed);
        assert!(
            store.spool_drops().await.unwrap().is_empty(),
            "block never drops"
        );
    }

    #[tokio::test]
    async fn block_gives_way_to_cancellation() {
        let dir = tempfile::tempdir().unwrap();
        let store = full_store(dir.path()).await;
        let limit = SpoolLimit::new(store, 1 << 20, WhenFull::Block);
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert!(!limit.wait_for_room(&cancel, None).await.unwrap());
    }

    #[tokio::test]
    async fn drop_oldest_makes_room_and_records_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = full_store(dir.path()).await;
        let limit = SpoolLimit::new(store.clone(), 1 << 20, WhenFull::DropOldest);
        let cancel = CancellationToken::new();
        assert!(limit.wait_for_room(&cancel, None).await.unwrap());
        let bytes = store.spool_bytes().await.unwrap();
        assert!(bytes < 1 << 20, "{bytes}");
        let drops = store.spool_drops().await.unwrap();
        assert_eq!(drops.len(), 1);
        assert!(drops[0].events > 900, "{drops:?}");
        // The newest events are the ones kept.
        let left = store
            .read_batch("run", "a", 5000, usize::MAX)
            .await
            .unwrap();
        assert_eq!(left.last().unwrap().id, "id1999");
        assert_eq!(left.len() as i64 + drops[0].events, 2000);
    }
}

#[cfg(test)]
mod margin_tests {
    use super::*;

    #[test]
    fn the_loss_warning_comes_a_tenth_of_the_retention_early_but_at_least_30_minutes() {
        assert_eq!(loss_margin(86_700), 8_670);
        assert_eq!(loss_margin(7_200), 1_800);
        // Never more than half the retention: a lag of half an hour is normal catch-up.
        assert_eq!(loss_margin(3_600), 1_800);
        assert_eq!(minutes_until_loss(60_000, 86_700), None);
        assert_eq!(minutes_until_loss(86_700 - 8_670, 86_700), Some(144));
        assert_eq!(minutes_until_loss(86_700 - 600, 86_700), Some(10));
        assert_eq!(minutes_until_loss(90_000, 86_700), Some(0));
    }
}
