//! The spool bound (`spool.max_bytes`): checked before every feed request, so the spool stops
//! growing when sinks fall behind for long.
//!
//! `block` pauses polling (one ERROR per episode, `sigsci_export_spool_full` = 1, `/readyz` not
//! ready) and resumes once sinks drained enough. A paused site's lag keeps growing, and so does
//! the gauge; once it comes within [`loss_margin`] of the feed's retention, one ERROR per site
//! says how long until data is lost. `drop_oldest` deletes the oldest undelivered events
//! instead, each drop recorded in the store, logged at ERROR and counted. The size is sampled at
//! most once a second, so the spool can pass the bound by what one second of fetching adds.

#[cfg(test)]
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::WhenFull;
use crate::health::Health;
use crate::store::{Store, StoreError};
use crate::telemetry::metrics;

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
