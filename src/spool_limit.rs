//! The spool bound (`spool.max_bytes`): checked before every feed request, so the spool stops
//! growing when sinks fall behind for long.
//!
//! `block` pauses polling (one ERROR per episode, `sigsci_export_spool_full` = 1) and resumes
//! once sinks drained enough; `drop_oldest` deletes the oldest undelivered events instead, each
//! drop recorded in the store, logged at ERROR and counted. The size is sampled at most once a
//! second, so the spool can pass the bound by what one second of fetching adds.

#[cfg(test)]
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::WhenFull;
use crate::store::{Store, StoreError};
use crate::telemetry::metrics;

/// How often a blocked poller looks again.
const BLOCKED_RECHECK: Duration = Duration::from_secs(2);

/// Shared by every poller of the process.
pub struct SpoolLimit {
    store: Store,
    max_bytes: i64,
    when_full: WhenFull,
    sample: Mutex<Option<(Instant, i64)>>,
    full: AtomicBool,
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
        }
    }

    /// Returns once there is room for another page: at once when below the bound; after making
    /// room (`drop_oldest`); or after sinks drained enough (`block`). False if cancelled first.
    pub async fn wait_for_room(&self, cancel: &CancellationToken) -> Result<bool, StoreError> {
        loop {
            let bytes = self.bytes().await?;
            if bytes < self.max_bytes {
                if self.full.swap(false, Ordering::Relaxed) {
                    metrics::spool_full(false);
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
                        metrics::spool_full(true);
                        error!(
                            spool_bytes = bytes,
                            max_bytes = self.max_bytes,
                            "Spool full: polling paused until the sinks catch up (spool.when_full = block). Check the sinks (`sigsci-export status`); if they stay down longer than the feed's retention (24 h by default), data is lost upstream. Raise spool.max_bytes or fix the sink."
                        );
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
                body: body.clone(),
            })
            .collect();
        store.commit_page(&key, events, 1, Some(60)).await.unwrap();
        store
    }

    #[tokio::test]
    async fn block_waits_until_sinks_drain() {
        let dir = tempfile::tempdir().unwrap();
        let store = full_store(dir.path()).await;
        let limit = Arc::new(SpoolLimit::new(store.clone(), 1 << 20, WhenFull::Block));
        let cancel = CancellationToken::new();
        let waiter = {
            let (limit, cancel) = (limit.clone(), cancel.clone());
            tokio::spawn(async move { limit.wait_for_room(&cancel).await })
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
        assert!(!limit.wait_for_room(&cancel).await.unwrap());
    }

    #[tokio::test]
    async fn drop_oldest_makes_room_and_records_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = full_store(dir.path()).await;
        let limit = SpoolLimit::new(store.clone(), 1 << 20, WhenFull::DropOldest);
        let cancel = CancellationToken::new();
        assert!(limit.wait_for_room(&cancel).await.unwrap());
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
