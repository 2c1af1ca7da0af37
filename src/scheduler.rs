//! The scheduler: decides which windows to fetch, and runs one task per site and per sink.
//!
//! Live mode (`run`): each site's task fetches `[cursor, min(now - delay, cursor + max_window))`,
//! aligned to full minutes as the API requires, commits every page (the window's last page
//! moves the cursor), then waits for the next tick. Backfill mode: the same per-site loop over a
//! fixed range in its own cursor namespace, then waits until every sink has drained the range.
//! A window that fails part-way (expired `next`, retries exhausted) is fetched again from its
//! start; the spool drops what it already holds.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::ProgressBar;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::config::{Config, Sites};
use crate::sink::driver::Driver;
use crate::site_health::PageHealth;
use crate::source::SourceError;
use crate::source::client::FeedClient;
use crate::spool_limit::{SpoolLimit, Waiter};
use crate::store::{SiteKey, Store, StoreError};
use crate::telemetry::metrics;
use crate::time::{align_down, rfc3339};
use crate::window_pages::{WindowError, WindowPages};

/// Cursor namespace of the live `run` command.
pub const RUN_NS: &str = "run";

/// How often `sites = ["*"]` is re-listed.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(600);

/// How soon a failed listing is tried again.
const DISCOVERY_RETRY: Duration = Duration::from_secs(60);

/// What stops the scheduler with a failure.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The state database failed: nothing can be made durable, so stop.
    #[error("state store failed: {0}")]
    Store(#[from] StoreError),
    /// A feed error that retrying cannot fix (backfill: auth, not found, refused window).
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

/// Shared by every site task.
#[derive(Clone)]
struct Ctx {
    cfg: Arc<Config>,
    client: FeedClient,
    store: Store,
    cancel: CancellationToken,
    limit: Arc<SpoolLimit>,
}

/// Runs live mode until `cancel` fires. Returns once every task has stopped (or `grace` ran out).
pub async fn run(
    cfg: Arc<Config>,
    client: FeedClient,
    store: Store,
    cancel: CancellationToken,
    grace: Duration,
) -> Result<(), RunError> {
    let fatal = Fatal::new(cancel.clone());
    let tracker = TaskTracker::new();
    // Live events keep coming: partial batches always linger.
    let never = CancellationToken::new();
    start_drivers(&cfg, &store, RUN_NS, &tracker, &cancel, &never, &fatal).await?;
    let ctx = Ctx {
        cfg: cfg.clone(),
        client,
        store: store.clone(),
        cancel: cancel.clone(),
        limit: Arc::new(SpoolLimit::new(
            store.clone(),
            cfg.spool.max_bytes,
            cfg.spool.when_full,
        )),
    };
    match &cfg.api.sites {
        Sites::List(sites) => {
            for site in sites {
                spawn_live_site(&tracker, ctx.clone(), site.clone(), fatal.clone());
            }
        }
        Sites::All => {
            let (ctx, tracker2, fatal2) = (ctx.clone(), tracker.clone(), fatal.clone());
            tracker.spawn(async move { discover_loop(ctx, tracker2, fatal2).await });
        }
    }
    tracker.spawn(prune_seen_loop(
        store.clone(),
        cfg.api.retention_secs,
        cancel.clone(),
    ));
    tracker.spawn(sample_loop(store.clone(), cancel.clone()));
    tracker.spawn(heartbeat_loop(cancel.clone()));
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
async fn heartbeat_loop(cancel: CancellationToken) {
    let every = crate::systemd::heartbeat_interval();
    loop {
        crate::admin::heartbeat();
        crate::systemd::watchdog();
        if !sleep_or_cancel(&cancel, every).await {
            return;
        }
    }
}

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

/// Exports `[from, until)` of the given sites (all configured sites when empty) into every
/// sink, then returns once each sink has settled every spooled event of the range.
#[allow(clippy::too_many_arguments)] // each is a distinct input; a params struct would only rename them
pub async fn backfill(
    cfg: Arc<Config>,
    client: FeedClient,
    store: Store,
    from: i64,
    until: i64,
    only_sites: Vec<String>,
    progress: Option<ProgressBar>,
    cancel: CancellationToken,
) -> Result<BackfillReport, RunError> {
    let _logs_above_bar = progress.clone().map(crate::telemetry::logs_above);
    let ns = format!("backfill:{from}-{until}");
    let sites = if !only_sites.is_empty() {
        only_sites
    } else {
        match &cfg.api.sites {
            Sites::List(s) => s.clone(),
            Sites::All => client
                .list_sites()
                .await?
                .into_iter()
                .map(|s| s.name)
                .collect(),
        }
    };
    info!(from = %rfc3339(from), until = %rfc3339(until), sites = ?sites, "Backfill starting.");
    // Sinks keep draining after the sources finish, so they stop on their own token; a fatal
    // error anywhere stops both.
    let fatal = Fatal::new(cancel.clone());
    let drivers_cancel = cancel.child_token();
    let tracker = TaskTracker::new();
    let spooled = CancellationToken::new();
    start_drivers(
        &cfg,
        &store,
        &ns,
        &tracker,
        &drivers_cancel,
        &spooled,
        &fatal,
    )
    .await?;

    let ctx = Ctx {
        cfg: cfg.clone(),
        client,
        store: store.clone(),
        cancel: cancel.clone(),
        limit: Arc::new(SpoolLimit::new(
            store.clone(),
            cfg.spool.max_bytes,
            cfg.spool.when_full,
        )),
    };
    if let Some(pb) = &progress {
        pb.set_length(((until - from) / 60) as u64 * sites.len() as u64);
    }
    let mut set = JoinSet::new();
    for site in &sites {
        let key = SiteKey {
            ns: ns.clone(),
            corp: cfg.api.corp.clone(),
            site: site.clone(),
        };
        set.spawn(backfill_site(
            ctx.clone(),
            key,
            from,
            until,
            progress.clone(),
        ));
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
    if let Some(pb) = &progress {
        pb.set_message("waiting for sinks");
    }
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

async fn start_drivers(
    cfg: &Config,
    store: &Store,
    ns: &str,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
    flush: &CancellationToken,
    fatal: &Fatal,
) -> Result<(), RunError> {
    let names: Vec<String> = cfg.sinks.iter().map(|s| s.name().to_string()).collect();
    store.register_sinks(ns, &names).await?;
    for sink_cfg in &cfg.sinks {
        let (sink, limits) = crate::sink::build(sink_cfg, store).await?;
        let driver =
            Driver::new(sink, store.clone(), ns, limits, cancel.clone()).with_flush(flush.clone());
        let fatal = fatal.clone();
        tracker.spawn(async move {
            if let Err(e) = driver.run().await {
                fatal.set(e.into());
            }
        });
    }
    Ok(())
}

fn spawn_live_site(tracker: &TaskTracker, ctx: Ctx, site: String, fatal: Fatal) {
    tracker.spawn(async move {
        if let Err(e) = live_site(ctx, site).await {
            fatal.set(e);
        }
    });
}

/// Lists the corp's sites now and every [`DISCOVERY_INTERVAL`], starting a task for each new one.
async fn discover_loop(ctx: Ctx, tracker: TaskTracker, fatal: Fatal) {
    let mut running: HashSet<String> = HashSet::new();
    loop {
        // Sites already found keep polling while a listing fails; a failure is retried sooner
        // than the next discovery, since at start-up nothing polls until a listing succeeds.
        let next = match ctx.client.list_sites().await {
            Ok(sites) => {
                for s in sites {
                    if running.insert(s.name.clone()) {
                        info!(site = %s.name, "Discovered site; exporting it.");
                        spawn_live_site(&tracker, ctx.clone(), s.name, fatal.clone());
                    }
                }
                DISCOVERY_INTERVAL
            }
            Err(e) if needs_operator(&e) => {
                error!(corp = %ctx.cfg.api.corp, error = %e, retry_secs = DISCOVERY_RETRY.as_secs(), "Listing the corp's sites failed; new sites are not exported until it is fixed.");
                DISCOVERY_RETRY
            }
            Err(e) => {
                warn!(corp = %ctx.cfg.api.corp, error = %e, retry_secs = DISCOVERY_RETRY.as_secs(), "Listing the corp's sites failed; retrying.");
                DISCOVERY_RETRY
            }
        };
        if !sleep_or_cancel(&ctx.cancel, next).await {
            return;
        }
    }
}

/// The oldest `from` the API still serves, with a minute of margin for clock differences.
fn oldest_fetchable(now: i64, retention_secs: i64) -> i64 {
    align_down(now - retention_secs) + 60
}

/// If `cursor` fell out of the feed's retention, the data in between is gone for good: say so
/// exactly, persist the jump, and return the new cursor.
///
/// While the feed stays unreachable (credentials refused for longer than the retention), every
/// retry loses the minutes the feed dropped since the last one: those extend the same recorded
/// range, logged at WARN with its new end, so the ERROR stays one per loss.
async fn skip_lost_range(
    ctx: &Ctx,
    key: &SiteKey,
    cursor: i64,
    until_cap: i64,
) -> Result<i64, RunError> {
    let oldest = oldest_fetchable(crate::time::now(), ctx.cfg.api.retention_secs).min(until_cap);
    if cursor >= oldest {
        return Ok(cursor);
    }
    // Recorded before the cursor jumps: a crash in between records it again (which adds
    // nothing), never jumps without a record.
    let gap = ctx.store.record_gap(key, cursor, oldest).await?;
    metrics::lost(&key.site, gap.added_secs);
    if gap.extended {
        warn!(
            corp = %key.corp, site = %key.site, lost_from = %rfc3339(gap.from), lost_until = %rfc3339(gap.until),
            lost_seconds = gap.until - gap.from, added_seconds = gap.added_secs,
            "Data loss continues: the lost range grew (the feed is still out of reach for longer than its retention)."
        );
    } else {
        error!(
            corp = %key.corp, site = %key.site, lost_from = %rfc3339(gap.from), lost_until = %rfc3339(gap.until),
            lost_seconds = gap.until - gap.from,
            "Data lost: the feed no longer serves this range (older than its retention); continuing from the oldest fetchable minute."
        );
    }
    ctx.store
        .commit_page(key, Vec::new(), crate::time::now(), Some(oldest))
        .await?;
    Ok(oldest)
}

/// Live loop of one site.
async fn live_site(ctx: Ctx, site: String) -> Result<(), RunError> {
    let cfg = &ctx.cfg;
    let key = SiteKey {
        ns: RUN_NS.to_string(),
        corp: cfg.api.corp.clone(),
        site: site.clone(),
    };
    let poll = &cfg.poll;
    let mut cursor = match ctx.store.cursor(&key).await? {
        Some(c) => c,
        None => {
            let start = poll.start_at.unwrap_or_else(|| {
                align_down(crate::time::now() - poll.delay_secs - poll.interval_secs)
            });
            info!(site = %site, start = %rfc3339(start), "No cursor yet; starting here.");
            start
        }
    };
    info!(site = %site, cursor = %rfc3339(cursor), "Site poller started.");
    let mut failures: u32 = 0;
    let mut health = PageHealth::live(&ctx.store, &key, poll.skip_bad_records);
    // Logged once per catch-up, so an operator sees a backlog drain without per-window noise.
    let mut caught_up = false;
    while !ctx.cancel.is_cancelled() {
        // Room in the spool first: a full spool can pause this loop for hours, and both the
        // lost-range check and the window must be decided after the pause (a window chosen
        // before it has fallen out of the retention and draws a 400, not a gap record).
        let waiter = Waiter {
            site: &site,
            cursor,
            retention_secs: cfg.api.retention_secs,
        };
        if !ctx.limit.wait_for_room(&ctx.cancel, Some(waiter)).await? {
            break;
        }
        let now = crate::time::now();
        let horizon = align_down(now - poll.delay_secs);
        cursor = skip_lost_range(&ctx, &key, cursor, horizon).await?;
        if cursor >= horizon {
            if !caught_up {
                caught_up = true;
                info!(site = %site, cursor = %rfc3339(cursor), interval_secs = poll.interval_secs, "Site caught up; polling at the interval.");
            }
            if !sleep_or_cancel(&ctx.cancel, Duration::from_secs(poll.interval_secs as u64)).await {
                break;
            }
            continue;
        }
        metrics::site_lag(&site, now - cursor);
        let until = horizon.min(cursor + poll.max_window_secs);
        match fetch_window(&ctx, &key, cursor, until, true, health.keep_bad(cursor)).await {
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
                    metrics::site_blocked(&key.corp, &site, None);
                }
                failures = 0;
            }
            Ok(None) => break, // cancelled
            Err(WindowError::Store(e)) => return Err(e.into()),
            Err(WindowError::Source(e)) => {
                failures = failures.saturating_add(1);
                metrics::site_failing(&site, true);
                if needs_operator(&e) {
                    metrics::site_blocked(&key.corp, &site, Some(&e.to_string()));
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

/// Feed errors that retrying cannot fix: see [`SourceError::needs_operator`].
fn needs_operator(e: &SourceError) -> bool {
    e.needs_operator()
}

/// Logs a failed window at the level it deserves and says how long to wait before the retry.
fn after_failure(
    e: &SourceError,
    site: &str,
    from: i64,
    until: i64,
    failures: u32,
    interval_secs: i64,
) -> Duration {
    let (from, until) = (rfc3339(from), rfc3339(until));
    match e {
        SourceError::NextExpired { .. } => {
            // Refetching at once is right, but not in a tight loop if it keeps happening.
            warn!(site, %from, %until, error = %e, "Window interrupted; fetching it again.");
            Duration::from_secs(u64::from(failures.min(30)))
        }
        SourceError::Auth { .. }
        | SourceError::NotFound { .. }
        | SourceError::Setup { .. }
        | SourceError::Refused { .. } => {
            error!(site, %from, %until, error = %e, "Feed access failed; no data moves for this site until it is fixed. Retrying periodically.");
            Duration::from_secs(60.max(interval_secs as u64)).min(Duration::from_secs(300))
        }
        SourceError::BadWindow { .. } => {
            // Usually our clock is ahead of the API's (until too recent).
            warn!(site, %from, %until, error = %e, "API refused the window; check the host clock (NTP). Retrying.");
            Duration::from_secs(60)
        }
        SourceError::RateLimited { .. } | SourceError::Transient { .. } => {
            warn!(site, %from, %until, error = %e, "Window failed after retries; it is fetched again from its start.");
            Duration::from_secs(
                (interval_secs as u64)
                    .min(5 * u64::from(failures.min(12)))
                    .max(1),
            )
        }
    }
}

/// Backfill of one site; returns the number of events newly spooled.
///
/// Up to `poll.backfill_windows` windows are fetched at once (each page still waits for the
/// corp's quota): with a slow API, one window at a time cannot use the quota, because a
/// window's pages must be fetched one after the other (each `next` comes from the previous
/// page). Windows finish in any order; the cursor moves only over the contiguous run of
/// finished windows from the start, so a crash refetches whatever was not finished and the
/// spool's de-duplication drops what was.
async fn backfill_site(
    ctx: Ctx,
    key: SiteKey,
    from: i64,
    until: i64,
    progress: Option<ProgressBar>,
) -> Result<u64, RunError> {
    let mut cursor = ctx.store.cursor(&key).await?.unwrap_or(from).max(from);
    if let Some(pb) = &progress {
        pb.inc(((cursor - from) / 60) as u64);
    }
    let parallel = ctx.cfg.poll.backfill_windows.max(1);
    let mut total = 0u64;
    let mut failures = 0u32;
    let mut health = PageHealth::backfill(&ctx.store, &key, ctx.cfg.poll.skip_bad_records);
    // Windows handed out, by start: end and whether finished.
    let mut windows: std::collections::BTreeMap<i64, (i64, bool)> = Default::default();
    let mut next_from = cursor;
    let mut set: JoinSet<(i64, i64, Result<Option<u64>, WindowError>)> = JoinSet::new();
    let spawn = |set: &mut JoinSet<_>, start: i64, end: i64, delay: Duration, keep_bad: bool| {
        let (ctx, key) = (ctx.clone(), key.clone());
        set.spawn(async move {
            if !delay.is_zero() && !sleep_or_cancel(&ctx.cancel, delay).await {
                return (start, end, Ok(None));
            }
            let r = fetch_window(&ctx, &key, start, end, false, keep_bad).await;
            (start, end, r)
        });
    };
    loop {
        while set.len() < parallel && next_from < until && !ctx.cancel.is_cancelled() {
            // Before the lost-range check, as in live mode: a pause can outlast the retention.
            if !ctx.limit.wait_for_room(&ctx.cancel, None).await? {
                break;
            }
            if windows.is_empty() {
                // Only between windows, so a lost range is recorded at the cursor.
                let before = next_from;
                next_from = skip_lost_range(&ctx, &key, next_from, until).await?;
                cursor = next_from;
                if let Some(pb) = &progress {
                    pb.inc(((next_from - before) / 60) as u64);
                }
                if next_from >= until {
                    break;
                }
            }
            let end = until.min(next_from + ctx.cfg.poll.max_window_secs);
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
                    if let Some(pb) = &progress {
                        pb.inc(((e - cursor) / 60) as u64);
                    }
                    cursor = e;
                }
            }
            Ok(None) => {} // cancelled: the loop drains and ends
            Err(WindowError::Store(e)) => return Err(e.into()),
            Err(WindowError::Source(e)) => match e {
                SourceError::Auth { .. }
                | SourceError::NotFound { .. }
                | SourceError::Setup { .. }
                | SourceError::Refused { .. }
                | SourceError::BadWindow { .. } => {
                    ctx.store.set_site_error(&key, &e.to_string()).await?;
                    return Err(e.into());
                }
                _ => {
                    failures = failures.saturating_add(1);
                    let stuck = health.failed((start, end), &e, 1).await?;
                    if let Some(why) = health.stop(start, &e) {
                        return Err(RunError::Stuck(why));
                    }
                    let pause = stuck
                        .unwrap_or_else(|| after_failure(&e, &key.site, start, end, failures, 60));
                    spawn(&mut set, start, end, pause, health.keep_bad(start));
                }
            },
        }
    }
    Ok(total)
}

/// Fetches `[from, until)` of one site, committing each page; with `move_cursor` the last page
/// moves the cursor to `until` (parallel backfill windows leave that to their coordinator, which
/// moves it only over a contiguous run of finished windows). `Ok(None)` if cancelled (nothing
/// of the current page committed; the window is fetched again next time). With `keep_bad`,
/// records that cannot be read are dead-lettered and the rest of their page goes on.
async fn fetch_window(
    ctx: &Ctx,
    key: &SiteKey,
    from: i64,
    until: i64,
    move_cursor: bool,
    keep_bad: bool,
) -> Result<Option<u64>, WindowError> {
    let filter = ctx.cfg.filters.for_site(&key.site);
    let server_tags = if ctx.cfg.filters.server_side() {
        filter.query_value()
    } else {
        None
    };
    let ask = (from, until, server_tags);
    let mut window = WindowPages::new(&ctx.client, &ctx.store, key, ask, keep_bad);
    let mut total = 0u64;
    let mut page = tokio::select! {
        page = window.next() => page?,
        _ = ctx.cancel.cancelled() => return Ok(None),
    };
    loop {
        let Some((mut events, last)) = page else {
            return Ok(Some(total));
        };
        if !filter.is_empty() {
            // Filtered-out events are never spooled; the cursor still moves over them with the
            // window's last page, so they are not fetched again.
            let fetched = events.len();
            events.retain(|e| filter.keep(&e.body));
            metrics::events_filtered(&key.site, fetched - events.len());
            debug!(
                site = %key.site,
                fetched,
                kept = events.len(),
                dropped = fetched - events.len(),
                "Tag filter applied to a page."
            );
        }
        // Not raced against cancellation: a commit finishes or never started.
        let commit = ctx.store.commit_page(
            key,
            events,
            crate::time::now(),
            (last && move_cursor).then_some(until),
        );
        // The next page is fetched while this one is committed: its `next` link is known, and
        // the two use different resources (the API and the disk), so a window's pages do not
        // wait for each other's round trips. Commits stay in page order, one at a time.
        let (committed, next) = if last {
            (commit.await, Ok(None))
        } else {
            tokio::join!(commit, async {
                tokio::select! {
                    page = window.next() => page.map(Some),
                    _ = ctx.cancel.cancelled() => Ok(None),
                }
            })
        };
        let outcome = committed.map_err(WindowError::Store)?;
        total += outcome.inserted as u64;
        metrics::page_committed(&key.site, outcome.inserted, outcome.duplicates);
        if last {
            return Ok(Some(total));
        }
        match next? {
            Some(p) => page = p,
            // Cancelled while fetching: this window is fetched again next time.
            None => return Ok(None),
        }
    }
}

async fn sleep_or_cancel(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = cancel.cancelled() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fatal_feed_error_prints_its_cause_once() {
        let e = RunError::from(SourceError::Refused {
            reason: "refused the feed's next URI".to_string(),
        });
        let chain = format!("{:#}", anyhow::Error::from(e).context("backfill failed"));
        assert_eq!(chain, "backfill failed: refused the feed's next URI");
    }

    #[test]
    fn oldest_fetchable_is_inside_retention() {
        let now = 1_800_000_030;
        let oldest = oldest_fetchable(now, 86_700);
        assert_eq!(oldest % 60, 0);
        assert!(oldest >= now - 86_700);
        assert!(oldest - (now - 86_700) <= 60);
    }
}
