//! The background loops of `run`, beside the pollers and the drivers: pruning de-duplication ids
//! the source can no longer send, sampling what only the store knows into gauges, and the
//! heartbeat that `/healthz` and the systemd watchdog read.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::{Ctx, RUN_NS, sleep_or_cancel};
use crate::health::Health;
use crate::store::Store;
use crate::telemetry::metrics;

/// Starts every maintenance loop on `tracker`, until `ctx.cancel` fires.
pub(super) fn spawn(tracker: &TaskTracker, ctx: &Ctx) {
    tracker.spawn(prune_seen_loop(
        ctx.store.clone(),
        ctx.source.retention_secs(),
        ctx.cancel.clone(),
    ));
    tracker.spawn(sample_loop(ctx.store.clone(), ctx.cancel.clone()));
    tracker.spawn(heartbeat_loop(ctx.health.clone(), ctx.cancel.clone()));
}

/// Forgets de-duplication ids the API can no longer send again (older than its retention plus
/// an hour), every ten minutes, so the `seen` table stays the size of one retention period.
async fn prune_seen_loop(store: Store, retention_secs: i64, cancel: CancellationToken) {
    loop {
        let before = crate::time::now() - retention_secs - 3600;
        match store.prune_seen(before).await {
            Ok(n) if n > 0 => debug!(removed = n, "Pruned old de-duplication ids."),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "Pruning old de-duplication ids failed; will retry."),
        }
        if !sleep_or_cancel(&cancel, Duration::from_secs(600)).await {
            return;
        }
    }
}

/// Publishes what only the store knows (backlogs, spool size) as gauges, every 10 s.
async fn sample_loop(store: Store, cancel: CancellationToken) {
    loop {
        match store.sink_states().await {
            Ok(states) => {
                let now = crate::time::now();
                for s in states.iter().filter(|s| s.ns == RUN_NS) {
                    metrics::sink_backlog(
                        &s.sink,
                        s.pending_events,
                        s.pending_bytes,
                        s.oldest_pending_fetched_at.map(|t| now - t),
                    );
                }
            }
            Err(e) => warn!(error = %e, "Reading sink backlogs for metrics failed."),
        }
        match store.spool_bytes().await {
            Ok(b) => metrics::spool_bytes(b),
            Err(e) => warn!(error = %e, "Reading the spool size for metrics failed."),
        }
        if !sleep_or_cancel(&cancel, Duration::from_secs(10)).await {
            return;
        }
    }
}

/// Proves the runtime still schedules work: feeds `/healthz` and the systemd watchdog.
async fn heartbeat_loop(health: Health, cancel: CancellationToken) {
    let every = crate::systemd::heartbeat_interval();
    loop {
        health.beat();
        crate::systemd::watchdog();
        if !sleep_or_cancel(&cancel, every).await {
            return;
        }
    }
}
