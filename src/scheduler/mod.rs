//! The scheduler: runs one poller per partition of the source and one driver per sink, and
//! decides which windows to fetch. It knows the source only through [`Source`]: its partitions,
//! how far it reaches, its pages and the class of its errors.
//!
//! Live mode ([`run`], `live`): each partition's poller fetches `[position, min(horizon,
//! position + poll.max_window_secs))`, commits every page (the window's last page moves the
//! stored position), then waits for the next tick. Backfill mode ([`backfill()`], `backfill`):
//! the same over a fixed range in its own cursor namespace, several windows at once, then waits
//! until every sink has drained the range. A window that fails part-way (an expired resume
//! token, retries exhausted) is fetched again from its start; the spool drops what it already
//! holds.
//!
//! Inside: `window` is one window's page loop (each page committed while the next is fetched,
//! within the process's `page_budget`); `recovery` says what a failed window or a range the
//! source no longer serves leads to; `site_health` notices a window stuck on a page that never
//! parses; `maintenance` runs the background loops (pruning, sampling, heartbeat). Readiness
//! goes to the [`Health`] handle the command gives, which `admin` reads.

mod backfill;
mod live;
mod maintenance;
pub mod page_budget;
mod recovery;
pub mod site_health;
#[cfg(test)]
mod tests;
mod window;

pub use backfill::{BackfillReport, OnProgress, Progress, backfill};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::{Config, SinkConfig, SpoolConfig};
use crate::health::Health;
use crate::sink::driver::Driver;
use crate::source::{Partitions, Source, SourceError};
use crate::store::bound::SpoolLimit;
use crate::store::{Store, StoreError};
use page_budget::{PageBudget, WINDOWS_IN_FLIGHT};

/// Cursor namespace of the live `run` command.
pub const RUN_NS: &str = "run";

/// What stops the scheduler with a failure.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The state database failed: nothing can be made durable, so stop.
    #[error("state store failed: {0}")]
    Store(#[from] StoreError),
    /// A source error that retrying cannot fix (backfill: auth, not found, refused window).
    /// Transparent: with `{0}` and `#[from]` (which makes it the source too), an error chain
    /// printed the cause twice (`backfill failed: X: X`).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A sink could not be set up.
    #[error(transparent)]
    Sink(#[from] crate::sink::BuildError),
    /// Backfill: a window failed again and again on a page that cannot be read (`site_health`).
    #[error("{0}")]
    Stuck(String),
}

/// The first fatal error of any task; recording it also cancels `stop` (everything).
#[derive(Clone)]
struct Fatal {
    slot: Arc<Mutex<Option<RunError>>>,
    stop: CancellationToken,
}

impl Fatal {
    fn new(stop: CancellationToken) -> Fatal {
        Fatal {
            slot: Arc::default(),
            stop,
        }
    }

    fn set(&self, err: RunError) {
        error!(error = %err, "Stopping: {err}");
        if let Ok(mut slot) = self.slot.lock() {
            slot.get_or_insert(err);
        }
        self.stop.cancel();
    }

    fn take(&self) -> Option<RunError> {
        self.slot.lock().ok().and_then(|mut s| s.take())
    }
}

/// Shared by every poller of a `run` or a `backfill`.
#[derive(Clone)]
struct Ctx {
    source: Arc<dyn Source>,
    store: Store,
    cancel: CancellationToken,
    /// The spool bound, waited on before each window.
    limit: Arc<SpoolLimit>,
    /// The bound on windows being fetched at once.
    budget: PageBudget,
    health: Health,
}

impl Ctx {
    fn new(
        source: Arc<dyn Source>,
        store: &Store,
        spool: &SpoolConfig,
        health: &Health,
        cancel: &CancellationToken,
    ) -> Ctx {
        let limit = SpoolLimit::new(store.clone(), spool.max_bytes, spool.when_full)
            .with_health(health.clone());
        Ctx {
            source,
            store: store.clone(),
            cancel: cancel.clone(),
            limit: Arc::new(limit),
            budget: PageBudget::new(WINDOWS_IN_FLIGHT),
            health: health.clone(),
        }
    }
}

/// Runs live mode until `cancel` fires, reporting readiness to `health`. Returns once every
/// task has stopped (or `grace` ran out).
pub async fn run(
    cfg: Arc<Config>,
    source: Arc<dyn Source>,
    store: Store,
    health: Health,
    cancel: CancellationToken,
    grace: Duration,
) -> Result<(), RunError> {
    let fatal = Fatal::new(cancel.clone());
    let tracker = TaskTracker::new();
    let ctx = Ctx::new(source, &store, &cfg.spool, &health, &cancel);
    // Live events keep coming: partial batches always linger.
    let never = CancellationToken::new();
    let drivers = Drivers {
        ctx: &ctx,
        ns: RUN_NS,
        tracker: &tracker,
        fatal: &fatal,
    };
    drivers.start(&cfg.sinks, &cancel, &never).await?;
    match ctx.source.partitions() {
        Partitions::Listed(sites) => {
            for site in sites {
                let poller = live::LivePoller::new(&ctx, site, &cfg.poll, &cfg.filters);
                live::spawn(&tracker, poller, fatal.clone());
            }
        }
        Partitions::Discovered => {
            let discovery = live::Discovery::new(&ctx, &cfg.poll, &cfg.filters);
            let (tracker2, fatal2) = (tracker.clone(), fatal.clone());
            tracker.spawn(async move { discovery.run(tracker2, fatal2).await });
        }
    }
    maintenance::spawn(&tracker, &ctx);
    crate::systemd::ready();
    cancel.cancelled().await;
    crate::systemd::stopping();
    info!("Shutting down: no new fetches; waiting for in-flight work.");
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        warn!(
            grace_secs = grace.as_secs(),
            "Grace period over; exiting with work in flight (it resumes from the store on restart)."
        );
    }
    fatal.take().map_or(Ok(()), Err)
}

/// Where the sink drivers of one namespace run and report.
struct Drivers<'a> {
    ctx: &'a Ctx,
    ns: &'a str,
    tracker: &'a TaskTracker,
    fatal: &'a Fatal,
}

impl Drivers<'_> {
    /// Builds every sink and starts its driver, stopping on `cancel`, sending partial batches at
    /// once after `flush`.
    async fn start(
        &self,
        sinks: &[SinkConfig],
        cancel: &CancellationToken,
        flush: &CancellationToken,
    ) -> Result<(), RunError> {
        let store = &self.ctx.store;
        let names: Vec<String> = sinks.iter().map(|s| s.name().to_string()).collect();
        store.register_sinks(self.ns, &names).await?;
        for sink_cfg in sinks {
            let (sink, limits) = crate::sink::build(sink_cfg, store).await?;
            let driver = Driver::new(sink, store.clone(), self.ns, limits, cancel.clone())
                .with_flush(flush.clone())
                .with_health(self.ctx.health.clone());
            let fatal = self.fatal.clone();
            self.tracker.spawn(async move {
                if let Err(e) = driver.run().await {
                    fatal.set(e.into());
                }
            });
        }
        Ok(())
    }
}

/// Sleeps for `d`; false if cancelled first.
async fn sleep_or_cancel(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = cancel.cancelled() => false,
    }
}
