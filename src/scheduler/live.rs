//! Live mode's pollers: one loop per partition that follows the source's horizon, window after
//! window, and, when the partitions are discovered, the loop that finds new ones.

use std::collections::HashSet;
use std::time::Duration;

use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use super::recovery::{after_failure, skip_lost_range};
use super::site_health::PageHealth;
use super::window::{Window, WindowError, fetch_window};
use super::{Ctx, Fatal, RUN_NS, RunError, sleep_or_cancel};
use crate::config::PollConfig;
use crate::pipeline::filter::{Filters, TagFilter};
use crate::store::SiteKey;
use crate::store::bound::Waiter;
use crate::telemetry::metrics;
use crate::time::rfc3339;

/// How often discovered partitions are listed again.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(600);

/// How soon a failed listing is tried again.
const DISCOVERY_RETRY: Duration = Duration::from_secs(60);

/// The live loop of one partition, with its slice of the configuration.
pub(super) struct LivePoller {
    ctx: Ctx,
    key: SiteKey,
    poll: PollConfig,
    /// The tag filter of this partition: what is spooled of each page.
    filter: TagFilter,
}

impl LivePoller {
    /// The poller of `site`, reading its settings from `poll` and its filter from `filters`.
    pub(super) fn new(ctx: &Ctx, site: String, poll: &PollConfig, filters: &Filters) -> Self {
        LivePoller {
            filter: filters.for_site(&site).clone(),
            key: SiteKey {
                ns: RUN_NS.to_string(),
                corp: ctx.source.scope().to_string(),
                site,
            },
            poll: poll.clone(),
            ctx: ctx.clone(),
        }
    }

    /// Polls until cancelled; fails only on what stops the whole run (the store).
    pub(super) async fn run(self) -> Result<(), RunError> {
        let LivePoller {
            ctx,
            key,
            poll,
            filter,
        } = self;
        let site = key.site.clone();
        let mut cursor = match ctx.store.cursor(&key).await? {
            Some(c) => c,
            None => {
                // The horizon as it was one interval ago: the first window is a full tick.
                let start = poll
                    .start_at
                    .unwrap_or_else(|| ctx.source.horizon(crate::time::now() - poll.interval_secs));
                info!(site = %site, start = %rfc3339(start), "No cursor yet; starting here.");
                start
            }
        };
        info!(site = %site, cursor = %rfc3339(cursor), "Site poller started.");
        let mut failures: u32 = 0;
        let mut health = PageHealth::live(&ctx.store, &key, &ctx.health, poll.skip_bad_records);
        // Logged once per catch-up, so an operator sees a backlog drain without per-window noise.
        let mut caught_up = false;
        while !ctx.cancel.is_cancelled() {
            // Room in the spool first: a full spool can pause this loop for hours, and both the
            // lost-range check and the window must be decided after the pause (a window chosen
            // before it has fallen out of the retention and draws a 400, not a gap record).
            let waiter = Waiter {
                site: &site,
                cursor,
                retention_secs: ctx.source.retention_secs(),
            };
            if !ctx.limit.wait_for_room(&ctx.cancel, Some(waiter)).await? {
                break;
            }
            let now = crate::time::now();
            let horizon = ctx.source.horizon(now);
            cursor = skip_lost_range(&ctx, &key, cursor, horizon).await?;
            if cursor >= horizon {
                if !caught_up {
                    caught_up = true;
                    info!(site = %site, cursor = %rfc3339(cursor), interval_secs = poll.interval_secs, "Site caught up; polling at the interval.");
                }
                if !sleep_or_cancel(&ctx.cancel, Duration::from_secs(poll.interval_secs as u64))
                    .await
                {
                    break;
                }
                continue;
            }
            metrics::site_lag(&site, now - cursor);
            let until = horizon.min(cursor + poll.max_window_secs);
            let window = Window {
                key: &key,
                filter: &filter,
                from: cursor,
                until,
                move_cursor: true,
                keep_bad: health.keep_bad(cursor),
            };
            match fetch_window(&ctx, window).await {
                Ok(Some(n)) => {
                    health.succeeded(cursor);
                    debug!(site = %site, from = %rfc3339(cursor), until = %rfc3339(until), events = n, "Window exported.");
                    if until - cursor > poll.interval_secs.max(60) {
                        caught_up = false; // a backlog: announce when it is gone
                    }
                    cursor = until;
                    metrics::site_lag(&site, crate::time::now() - cursor);
                    if failures > 0 {
                        metrics::site_failing(&site, false);
                        ctx.health.site_blocked(&key.corp, &site, None);
                    }
                    failures = 0;
                }
                Ok(None) => break, // cancelled
                Err(WindowError::Store(e)) => return Err(e.into()),
                Err(WindowError::Source(e)) => {
                    failures = failures.saturating_add(1);
                    metrics::site_failing(&site, true);
                    if e.needs_operator() {
                        ctx.health
                            .site_blocked(&key.corp, &site, Some(&e.to_string()));
                    }
                    let stuck = health
                        .failed((cursor, until), &e, poll.interval_secs)
                        .await?;
                    let pause = stuck.unwrap_or_else(|| {
                        after_failure(&e, &site, cursor, until, failures, poll.interval_secs)
                    });
                    if !sleep_or_cancel(&ctx.cancel, pause).await {
                        break;
                    }
                }
            }
        }
        info!(site = %site, cursor = %rfc3339(cursor), "Site poller stopped.");
        Ok(())
    }
}

/// Starts `poller` on `tracker`; its failure stops the run.
pub(super) fn spawn(tracker: &TaskTracker, poller: LivePoller, fatal: Fatal) {
    tracker.spawn(async move {
        if let Err(e) = poller.run().await {
            fatal.set(e);
        }
    });
}

/// Lists the source's partitions now and every [`DISCOVERY_INTERVAL`], starting a poller for
/// each new one.
pub(super) struct Discovery {
    ctx: Ctx,
    /// The slices of the configuration each new poller gets.
    poll: PollConfig,
    filters: Filters,
}

impl Discovery {
    /// Discovery for the pollers of `ctx`'s source.
    pub(super) fn new(ctx: &Ctx, poll: &PollConfig, filters: &Filters) -> Discovery {
        Discovery {
            ctx: ctx.clone(),
            poll: poll.clone(),
            filters: filters.clone(),
        }
    }

    /// Runs until cancelled, starting pollers on `tracker`.
    pub(super) async fn run(self, tracker: TaskTracker, fatal: Fatal) {
        let ctx = &self.ctx;
        let corp = ctx.source.scope();
        let mut running: HashSet<String> = HashSet::new();
        loop {
            // Sites already found keep polling while a listing fails; a failure is retried
            // sooner than the next discovery, since at start-up nothing polls until a listing
            // succeeds.
            let next = match ctx.source.discover().await {
                Ok(sites) => {
                    for site in sites {
                        if running.insert(site.clone()) {
                            info!(site = %site, "Discovered site; exporting it.");
                            let poller = LivePoller::new(ctx, site, &self.poll, &self.filters);
                            spawn(&tracker, poller, fatal.clone());
                        }
                    }
                    DISCOVERY_INTERVAL
                }
                Err(e) if e.needs_operator() => {
                    error!(corp = %corp, error = %e, retry_secs = DISCOVERY_RETRY.as_secs(), "Listing the corp's sites failed; new sites are not exported until it is fixed.");
                    DISCOVERY_RETRY
                }
                Err(e) => {
                    warn!(corp = %corp, error = %e, retry_secs = DISCOVERY_RETRY.as_secs(), "Listing the corp's sites failed; retrying.");
                    DISCOVERY_RETRY
                }
            };
            if !sleep_or_cancel(&ctx.cancel, next).await {
                return;
            }
        }
    }
}
