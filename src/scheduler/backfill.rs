//! Backfill mode: a fixed range of every partition in its own cursor namespace, then a wait
//! until every sink has settled it.
//!
//! Each partition's coordinator ([`BackfillPoller`]) fetches up to `poll.backfill_windows`
//! windows at once (each page still waits for the source's quota): with a slow API, one window
//! at a time cannot use the quota, because a window's pages must be fetched one after the other
//! (each `next` comes from the previous page). Windows finish in any order; the cursor moves
//! only over the contiguous run of finished windows from the start, so a crash refetches
//! whatever was not finished and the spool's de-duplication drops what was.
//!
//! Progress goes to an [`OnProgress`] callback the command gives (it draws the bar), so the
//! scheduler knows no UI.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info};

use super::recovery::{after_failure, skip_lost_range};
use super::site_health::PageHealth;
use super::window::{Window, WindowError, fetch_window};
use super::{Ctx, Drivers, Fatal, RunError, sleep_or_cancel};
use crate::config::{Config, PollConfig};
use crate::health::Health;
use crate::pipeline::filter::TagFilter;
use crate::source::{Partitions, Source};
use crate::store::{SiteKey, Store};
use crate::time::rfc3339;

/// Summary of a finished backfill.
#[derive(Debug, Clone, Default)]
pub struct BackfillReport {
    /// Sites exported.
    pub sites: Vec<String>,
    /// Events newly spooled by this invocation (a resumed backfill counts only what it added).
    pub events: u64,
    /// Every sink settled the whole range (false when interrupted).
    pub completed: bool,
}

/// How far a backfill is, in site-minutes (a minute of the range of one site).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The whole backfill is this many.
    Total(u64),
    /// This many more are done (exported, found done by an earlier run, or lost for good).
    Done(u64),
    /// Everything is spooled; the sinks are sending what is left.
    Draining,
}

/// Told the backfill's [`Progress`] as it goes, from the partitions' tasks (so it must be
/// quick). With one, the backfill does not log every window: the command shows a bar instead.
pub type OnProgress = Arc<dyn Fn(Progress) + Send + Sync>;

/// Exports `[from, until)` of the given sites (all configured sites when empty) into every
/// sink, then returns once each sink has settled every spooled event of the range.
#[allow(clippy::too_many_arguments)] // each is a distinct input; a params struct would only rename them
pub async fn backfill(
    cfg: Arc<Config>,
    source: Arc<dyn Source>,
    store: Store,
    from: i64,
    until: i64,
    only_sites: Vec<String>,
    progress: Option<OnProgress>,
    cancel: CancellationToken,
) -> Result<BackfillReport, RunError> {
    let ns = format!("backfill:{from}-{until}");
    let sites = if !only_sites.is_empty() {
        only_sites
    } else {
        match source.partitions() {
            Partitions::Listed(s) => s,
            Partitions::Discovered => source.discover().await?,
        }
    };
    info!(from = %rfc3339(from), until = %rfc3339(until), sites = ?sites, "Backfill starting.");
    // Sinks keep draining after the sources finish, so they stop on their own token; a fatal
    // error anywhere stops both.
    let fatal = Fatal::new(cancel.clone());
    let drivers_cancel = cancel.child_token();
    let tracker = TaskTracker::new();
    let spooled = CancellationToken::new();
    // Nobody serves `/readyz` during a backfill: its readiness goes nowhere.
    let ctx = Ctx::new(source, &store, &cfg.spool, &Health::new(), &cancel);
    let drivers = Drivers {
        ctx: &ctx,
        ns: &ns,
        tracker: &tracker,
        fatal: &fatal,
    };
    drivers.start(&cfg.sinks, &drivers_cancel, &spooled).await?;
    let tell = |p| {
        if let Some(f) = &progress {
            f(p);
        }
    };
    tell(Progress::Total(
        ((until - from) / 60) as u64 * sites.len() as u64,
    ));
    let mut set = JoinSet::new();
    for site in &sites {
        let poller = BackfillPoller {
            key: SiteKey {
                ns: ns.clone(),
                corp: ctx.source.scope().to_string(),
                site: site.clone(),
            },
            filter: cfg.filters.for_site(site).clone(),
            poll: cfg.poll.clone(),
            range: (from, until),
            progress: progress.clone(),
            ctx: ctx.clone(),
        };
        set.spawn(poller.run());
    }
    let mut report = BackfillReport {
        sites: sites.clone(),
        events: 0,
        completed: false,
    };
    let mut result = Ok(());
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(n)) => report.events += n,
            Ok(Err(e)) => {
                if result.is_ok() {
                    result = Err(e);
                }
                cancel.cancel();
            }
            Err(join) => {
                error!(error = %join, "A site task panicked.");
                cancel.cancel();
            }
        }
    }
    if let Err(e) = result {
        stop(&drivers_cancel, &tracker).await;
        return Err(e);
    }
    if cancel.is_cancelled() {
        stop(&drivers_cancel, &tracker).await;
        return fatal.take().map_or(Ok(report), Err);
    }
    tell(Progress::Draining);
    // Every window is spooled: the sinks send what they hold without lingering, and the
    // backfill is done when every sink has settled everything.
    spooled.cancel();
    let names: Vec<String> = cfg.sinks.iter().map(|s| s.name().to_string()).collect();
    loop {
        let mut pending = false;
        for n in &names {
            pending = pending || store.has_pending(&ns, n).await?;
        }
        if !pending {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = cancel.cancelled() => break,
        }
    }
    stop(&drivers_cancel, &tracker).await;
    if let Some(e) = fatal.take() {
        return Err(e);
    }
    if cancel.is_cancelled() {
        info!("Backfill interrupted; run the same command again to resume.");
    } else {
        report.completed = true;
        info!(
            events = report.events,
            "Backfill complete: every sink acknowledged the range."
        );
    }
    Ok(report)
}

/// Tells the sink drivers to stop after their current send and waits for them.
async fn stop(drivers_cancel: &CancellationToken, tracker: &TaskTracker) {
    drivers_cancel.cancel();
    tracker.close();
    tracker.wait().await;
}

/// The backfill of one partition: its window coordinator, with its slice of the
/// configuration.
pub(super) struct BackfillPoller {
    pub(super) ctx: Ctx,
    pub(super) key: SiteKey,
    pub(super) poll: PollConfig,
    /// The tag filter of this partition.
    pub(super) filter: TagFilter,
    /// `[from, until)`.
    pub(super) range: (i64, i64),
    pub(super) progress: Option<OnProgress>,
}

/// How a window task ends: its range and what came of it.
type WindowDone = (i64, i64, Result<Option<u64>, WindowError>);

impl BackfillPoller {
    /// Exports the range; returns the number of events newly spooled.
    pub(super) async fn run(self) -> Result<u64, RunError> {
        let BackfillPoller {
            ctx,
            key,
            poll,
            filter,
            range: (from, until),
            progress,
        } = self;
        let done = |minutes: i64| {
            if let Some(f) = &progress {
                f(Progress::Done(minutes as u64));
            }
        };
        let mut cursor = ctx.store.cursor(&key).await?.unwrap_or(from).max(from);
        done((cursor - from) / 60);
        let parallel = poll.backfill_windows.max(1);
        let mut total = 0u64;
        let mut failures = 0u32;
        let mut health = PageHealth::backfill(&ctx.store, &key, &ctx.health, poll.skip_bad_records);
        // Windows handed out, by start: end and whether finished.
        let mut windows: BTreeMap<i64, (i64, bool)> = BTreeMap::new();
        let mut next_from = cursor;
        let mut set: JoinSet<WindowDone> = JoinSet::new();
        let filter = Arc::new(filter);
        let spawn =
            |set: &mut JoinSet<_>, start: i64, end: i64, delay: Duration, keep_bad: bool| {
                let (ctx, key, filter) = (ctx.clone(), key.clone(), filter.clone());
                set.spawn(async move {
                    if !delay.is_zero() && !sleep_or_cancel(&ctx.cancel, delay).await {
                        return (start, end, Ok(None));
                    }
                    let window = Window {
                        key: &key,
                        filter: &filter,
                        from: start,
                        until: end,
                        move_cursor: false,
                        keep_bad,
                    };
                    let r = fetch_window(&ctx, window).await;
                    (start, end, r)
                });
            };
        loop {
            while set.len() < parallel && next_from < until && !ctx.cancel.is_cancelled() {
                // Before the lost-range check, as in live mode: a pause can outlast the
                // retention.
                if !ctx.limit.wait_for_room(&ctx.cancel, None).await? {
                    break;
                }
                if windows.is_empty() {
                    // Only between windows, so a lost range is recorded at the cursor.
                    let before = next_from;
                    next_from = skip_lost_range(&ctx, &key, next_from, until).await?;
                    cursor = next_from;
                    done((next_from - before) / 60);
                    if next_from >= until {
                        break;
                    }
                }
                let end = until.min(next_from + poll.max_window_secs);
                windows.insert(next_from, (end, false));
                spawn(&mut set, next_from, end, Duration::ZERO, false);
                next_from = end;
            }
            let Some(joined) = set.join_next().await else {
                break;
            };
            let (start, end, result) = match joined {
                Ok(r) => r,
                Err(e) => {
                    error!(site = %key.site, error = %e, "A backfill window task failed.");
                    ctx.cancel.cancel();
                    continue;
                }
            };
            match result {
                Ok(Some(n)) => {
                    total += n;
                    failures = 0;
                    health.succeeded(start);
                    if let Some(w) = windows.get_mut(&start) {
                        w.1 = true;
                    }
                    if progress.is_none() {
                        info!(site = %key.site, from = %rfc3339(start), until = %rfc3339(end), events = n, "Window exported.");
                    }
                    // Move the cursor over every finished window at the front.
                    let mut moved = None;
                    while let Some((&s, &(e, true))) = windows.first_key_value() {
                        windows.remove(&s);
                        moved = Some(e);
                    }
                    if let Some(e) = moved {
                        ctx.store
                            .commit_page(&key, Vec::new(), crate::time::now(), Some(e))
                            .await?;
                        done((e - cursor) / 60);
                        cursor = e;
                    }
                }
                Ok(None) => {} // cancelled: the loop drains and ends
                Err(WindowError::Store(e)) => return Err(e.into()),
                Err(WindowError::Source(e)) if !e.is_retried_in_backfill() => {
                    ctx.store.set_site_error(&key, &e.to_string()).await?;
                    return Err(e.into());
                }
                Err(WindowError::Source(e)) => {
                    failures = failures.saturating_add(1);
                    let stuck = health.failed((start, end), &e, 1).await?;
                    if let Some(why) = health.stop(start, &e) {
                        return Err(RunError::Stuck(why));
                    }
                    let pause = stuck
                        .unwrap_or_else(|| after_failure(&e, &key.site, start, end, failures, 60));
                    spawn(&mut set, start, end, pause, health.keep_bad(start));
                }
            }
        }
        Ok(total)
    }
}
