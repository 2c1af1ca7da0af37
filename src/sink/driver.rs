//! The sink driver: the only retry loop, one task per sink.
//!
//! It reads batches after the sink's offset and keeps up to `in_flight` of them in flight at
//! once. Each finished batch is settled at once, in the same transaction as its dead letters,
//! but the offset moves only over a contiguous prefix of events whose outcome is final
//! (delivered, duplicate, or dead-lettered with a reason): a batch that finishes ahead of an
//! earlier one is recorded as a settled range, which a restart skips. Retryable failures are retried forever with
//! exponential backoff and full jitter (the spool bounds the cost, and at most `in_flight`
//! batches are ever retrying, so a failing SIEM sees no retry storm); `TooLarge` halves the
//! request down to a single event, which is then dead-lettered; `Blocked` pauses the sink and
//! probes its health until it recovers. A sink that refuses a long run of events while
//! delivering none is blocked too rather than allowed to dead-letter the whole spool: that
//! pattern is a misconfiguration (a proxy refusing gzip, a closed index), not bad data.
//! Nothing is ever dropped here.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use rand::Rng;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{Batch, BatchLimits, ItemOutcome, Sink, SinkError};
use crate::health::Health;
use crate::store::{SpooledEvent, Store, StoreError};
use crate::telemetry::metrics;

fn error_kind(e: &SinkError) -> &'static str {
    match e {
        SinkError::Retryable { .. } => "retryable",
        SinkError::Unreadable { .. } => "unreadable",
        SinkError::TooLarge => "too_large",
        SinkError::Invalid { .. } => "invalid",
        SinkError::Blocked { .. } => "blocked",
    }
}

/// Events refused in a row by replies that stored nothing, after which the driver stops
/// dead-lettering and blocks the sink instead. Real bad data is rare and scattered, and comes
/// in replies that store the good events beside it; a run this long of replies storing
/// nothing means every event is being refused for a reason no event can fix.
pub const REJECTION_STREAK_LIMIT: usize = 100;

/// Replies in a row that could not be read ([`SinkError::Unreadable`]) after which the sink is
/// blocked (ERROR, `/readyz`) while it keeps retrying: a proxy or an incompatible server
/// answering every request in a shape the sink cannot read is not a passing glitch, and
/// retrying it at WARN alone would stall the sink unnoticed. About 8-15 s of backoff.
pub const UNREADABLE_STREAK_LIMIT: usize = 5;

/// Backoff bounds of the driver.
#[derive(Debug, Clone, Copy)]
pub struct RetryDelays {
    /// First pause.
    pub min: Duration,
    /// Longest pause.
    pub max: Duration,
}

impl Default for RetryDelays {
    fn default() -> Self {
        RetryDelays {
            min: Duration::from_millis(500),
            max: Duration::from_secs(60),
        }
    }
}

/// Drives one sink over one spool namespace.
pub struct Driver {
    sink: Arc<dyn Sink>,
    store: Store,
    ns: String,
    limits: BatchLimits,
    delays: RetryDelays,
    cancel: CancellationToken,
    /// Shared by the batches in flight, so a block is logged and recorded once.
    blocked: AtomicBool,
    /// Events refused in a row with none delivered (see [`REJECTION_STREAK_LIMIT`]).
    rejected_streak: AtomicUsize,
    /// Replies in a row that could not be read (see [`UNREADABLE_STREAK_LIMIT`]).
    unreadable_streak: AtomicUsize,
    /// Fired when nothing more is coming (a backfill has spooled its whole range): a partial
    /// batch then goes at once instead of lingering for events that will not arrive.
    flush: CancellationToken,
    /// Where a block is reported for `/readyz`.
    health: Health,
}

/// Why a settled event is not simply delivered.
enum Final {
    Done,
    Dead(String),
}

/// A batch whose every event has a final outcome (or that was cut short by cancellation).
struct Finished {
    /// The batch holds this sink's events in `(after, last seq]`; `None`: from the offset.
    after: Option<i64>,
    events: Vec<SpooledEvent>,
    outcome: Vec<Option<Final>>,
}

/// The next step's backoff, kept so that a partly successful send can pause for the current
/// step without escalating.
struct Backoff {
    steps: Box<dyn Iterator<Item = Duration> + Send>,
    current: Duration,
}

impl Driver {
    /// A driver for `sink` reading namespace `ns` of `store` until `cancel` fires.
    pub fn new(
        sink: Arc<dyn Sink>,
        store: Store,
        ns: impl Into<String>,
        limits: BatchLimits,
        cancel: CancellationToken,
    ) -> Driver {
        Driver {
            sink,
            store,
            ns: ns.into(),
            limits,
            delays: RetryDelays::default(),
            cancel,
            blocked: AtomicBool::new(false),
            rejected_streak: AtomicUsize::new(0),
            unreadable_streak: AtomicUsize::new(0),
            flush: CancellationToken::new(),
            health: Health::default(),
        }
    }

    /// Reports blocks to `health` (without it, to a handle nobody reads).
    pub fn with_health(mut self, health: Health) -> Driver {
        self.health = health;
        self
    }

    /// Sends partial batches without lingering once `flush` fires.
    pub fn with_flush(mut self, flush: CancellationToken) -> Driver {
        self.flush = flush;
        self
    }

    /// Other backoff bounds (tests).
    pub fn with_delays(mut self, delays: RetryDelays) -> Driver {
        self.delays = delays;
        self
    }

    /// Runs until cancelled. Returns an error only when the store fails.
    pub async fn run(self) -> Result<(), StoreError> {
        let this = Arc::new(self);
        let name = this.sink.name().to_string();
        let changed = this.store.changed();
        let in_flight = this.limits.in_flight.max(1);
        info!(sink = %name, ns = %this.ns, in_flight, "Sink driver started.");
        // A block recorded by an earlier process is stale until this one sees it again.
        this.mark_blocked(None).await?;
        // Each batch is its own task: its encoding, its request and its settle go on while
        // this loop reads the next batch, on whichever core is free.
        let mut flying: JoinSet<Result<(), StoreError>> = JoinSet::new();
        // The batch being filled, the last seq handed out (reads continue after it), and
        // when a partial batch must go anyway.
        let mut filling: Vec<SpooledEvent> = Vec::new();
        let mut filling_bytes = 0usize;
        let mut full = false;
        let mut read_after: Option<i64> = None;
        let mut filling_after: Option<i64> = None;
        let mut deadline: Option<Instant> = None;
        loop {
            if this.cancel.is_cancelled() {
                break;
            }
            // Register interest before reading, so a commit between the read and the wait is
            // not missed; the timeout below is a safety net, not the mechanism.
            let notified = changed.notified();
            tokio::pin!(notified);
            // Read only with a free slot: a batch read ahead would wait in memory, and the
            // batches in flight keep the destination busy meanwhile.
            if !full && flying.len() < in_flight {
                let read = this
                    .store
                    .read_after(
                        &this.ns,
                        &name,
                        read_after,
                        this.limits.max_events - filling.len(),
                        this.limits.max_bytes.saturating_sub(filling_bytes),
                        filling.is_empty(),
                    )
                    .await?;
                if filling.is_empty() {
                    filling_after = read_after;
                }
                if let Some(last) = read.events.last() {
                    read_after = Some(last.seq);
                }
                filling_bytes += read.events.iter().map(|e| e.body.len()).sum::<usize>();
                filling.extend(read.events);
                full = read.budget_hit || filling.len() >= this.limits.max_events;
                if !filling.is_empty() && deadline.is_none() {
                    deadline = Some(Instant::now() + this.limits.linger);
                }
            }
            let flushing = this.flush.is_cancelled();
            let due = full
                || deadline.is_some_and(|d| d <= Instant::now())
                || (flushing && !filling.is_empty());
            if due && flying.len() < in_flight {
                let events = std::mem::take(&mut filling);
                filling_bytes = 0;
                full = false;
                deadline = None;
                let me = this.clone();
                let after = filling_after;
                flying.spawn(async move {
                    let done = me.deliver(after, events).await;
                    me.settle(done).await
                });
                continue;
            }
            let room = flying.len() < in_flight;
            let linger_until = deadline.filter(|_| room);
            tokio::select! {
                done = flying.join_next(), if !flying.is_empty() => {
                    if let Some(done) = done {
                        joined(done)?;
                    }
                }
                _ = &mut notified, if room && !full => {}
                _ = sleep_until(linger_until), if linger_until.is_some() => {}
                _ = this.flush.cancelled(), if !flushing && linger_until.is_some() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)), if room && !full => {}
                _ = this.cancel.cancelled() => break,
            }
        }
        // Cancelled: each batch in flight stops after its current request. What they settled
        // is recorded, so a restart resends as little as possible.
        while let Some(done) = flying.join_next().await {
            joined(done)?;
        }
        info!(sink = %name, ns = %this.ns, "Sink driver stopped.");
        Ok(())
    }

    /// Settles a finished batch: its events all have outcomes unless cancellation cut it
    /// short, in which case only its settled prefix is recorded (the rest is resent later).
    /// The store moves the offset only once every batch before it is settled too.
    async fn settle(&self, done: Finished) -> Result<(), StoreError> {
        let Finished {
            after,
            events,
            mut outcome,
        } = done;
        let mut end = 0;
        let mut dead = Vec::new();
        for (i, ev) in events.iter().enumerate() {
            match outcome[i].take() {
                Some(Final::Done) => {}
                Some(Final::Dead(reason)) => dead.push((ev.clone(), reason)),
                None => break,
            }
            end = i + 1;
        }
        if end > 0 {
            self.store
                .settle_range(&self.ns, self.sink.name(), after, events[end - 1].seq, dead)
                .await?;
        }
        Ok(())
    }

    /// Sends one batch until every event has a final outcome, or until cancelled.
    async fn deliver(&self, after: Option<i64>, events: Vec<SpooledEvent>) -> Finished {
        let name = self.sink.name();
        let full = Batch { events };
        let events = &full.events;
        let mut outcome: Vec<Option<Final>> = (0..events.len()).map(|_| None).collect();
        let mut backoff = self.backoff();
        let mut queue: VecDeque<Vec<usize>> = VecDeque::from([(0..events.len()).collect()]);

        loop {
            let Some(chunk) = queue.pop_front() else {
                // Everything sent once; whatever is unsettled asked to be retried.
                let rest: Vec<usize> = (0..events.len())
                    .filter(|&i| outcome[i].is_none())
                    .collect();
                if rest.is_empty() {
                    break;
                }
                queue.push_back(rest);
                continue;
            };
            if self.cancel.is_cancelled() {
                break;
            }
            // The common case sends the whole batch as read: no copy. Only a split or a
            // partial retry builds a smaller batch.
            let sub;
            let batch = if chunk.len() == full.events.len() {
                &full
            } else {
                sub = Batch {
                    events: chunk.iter().map(|&i| events[i].clone()).collect(),
                };
                &sub
            };
            let started = std::time::Instant::now();
            let sent = self.sink.send(batch).await;
            metrics::sink_send(name, started.elapsed(), sent.as_ref().err().map(error_kind));
            match sent {
                Ok(ack) if ack.items.len() == chunk.len() => {
                    self.unreadable_streak.store(0, Ordering::Relaxed);
                    let mut retry_after: Option<Duration> = None;
                    let mut retried = Vec::new();
                    let mut refused: Option<String> = None;
                    let (mut delivered, mut duplicate, mut dead) = (0, 0, 0);
                    // A reply that stored something proves the destination takes this data:
                    // its refusals are bad events. Only refusals with nothing stored count
                    // towards a streak.
                    let took_some = ack
                        .items
                        .iter()
                        .any(|i| matches!(i, ItemOutcome::Delivered | ItemOutcome::Duplicate));
                    if took_some {
                        self.rejected_streak.store(0, Ordering::Relaxed);
                    }
                    for (&i, item) in chunk.iter().zip(ack.items) {
                        match item {
                            ItemOutcome::Delivered => {
                                delivered += 1;
                                outcome[i] = Some(Final::Done)
                            }
                            ItemOutcome::Duplicate => {
                                duplicate += 1;
                                outcome[i] = Some(Final::Done)
                            }
                            ItemOutcome::Rejected { reason } if took_some => {
                                dead += 1;
                                warn!(sink = %name, id = %events[i].id, site = %events[i].site, %reason, "Event rejected by the sink; dead-lettered.");
                                outcome[i] = Some(Final::Dead(reason));
                            }
                            ItemOutcome::Rejected { reason } => {
                                if let Some(reason) = self.reject(&events[i], reason) {
                                    dead += 1;
                                    outcome[i] = Some(Final::Dead(reason));
                                } else {
                                    retried.push(i);
                                    refused.get_or_insert(reason_of_streak());
                                }
                            }
                            ItemOutcome::Retry { after } => {
                                retried.push(i);
                                retry_after = retry_after.max(after);
                            }
                        }
                    }
                    metrics::sink_outcomes(name, delivered, duplicate, retried.len(), dead);
                    if refused.is_none() {
                        // An answer per event: whatever blocked the sink is gone.
                        self.recovered().await;
                    }
                    if retried.is_empty() {
                        backoff = self.backoff();
                        continue;
                    }
                    if let Some(reason) = refused {
                        if !self.block(&reason, &mut backoff).await {
                            break;
                        }
                    } else {
                        debug!(sink = %name, events = retried.len(), "Some events asked to be retried.");
                        // The destination is taking events, just not all of them (per-item
                        // 429s, one of several requests throttled): pause for the current
                        // step, neither escalating as if it were down nor starting over.
                        let progress = delivered + duplicate + dead > 0;
                        if !self.pause(&mut backoff, retry_after, !progress).await {
                            break;
                        }
                    }
                    queue.push_front(retried);
                }
                Ok(ack) => {
                    // A sink bug, not the destination's: never guess which events landed.
                    error!(sink = %name, sent = chunk.len(), outcomes = ack.items.len(), "Sink returned a wrong number of outcomes; resending the batch.");
                    if !self.pause(&mut backoff, None, true).await {
                        break;
                    }
                    queue.push_front(chunk);
                }
                Err(e @ (SinkError::TooLarge | SinkError::Invalid { .. })) if chunk.len() == 1 => {
                    let i = chunk[0];
                    let reason = match e {
                        SinkError::Invalid { reason } => reason,
                        _ => "event larger than the sink accepts (HTTP 413)".to_string(),
                    };
                    if let Some(reason) = self.reject(&events[i], reason) {
                        metrics::sink_outcomes(name, 0, 0, 0, 1);
                        outcome[i] = Some(Final::Dead(reason));
                    } else {
                        if !self.block(&reason_of_streak(), &mut backoff).await {
                            break;
                        }
                        queue.push_front(chunk);
                    }
                }
                Err(e @ (SinkError::TooLarge | SinkError::Invalid { .. })) => {
                    // Bisect: the halves that pass are settled, the bad event ends up alone.
                    let mut first = chunk;
                    let second = first.split_off(first.len() / 2);
                    debug!(sink = %name, error = %e, halves = ?(first.len(), second.len()), "Sink refused the batch as a whole; halving.");
                    queue.push_front(second);
                    queue.push_front(first);
                }
                Err(SinkError::Retryable { reason, after }) => {
                    warn!(sink = %name, %reason, events = chunk.len(), "Send failed; will retry.");
                    metrics::sink_outcomes(name, 0, 0, chunk.len(), 0);
                    if !self.pause(&mut backoff, after, true).await {
                        break;
                    }
                    queue.push_front(chunk);
                }
                Err(SinkError::Unreadable { reason, after }) => {
                    warn!(sink = %name, %reason, events = chunk.len(), "Reply not understood; will retry.");
                    metrics::sink_outcomes(name, 0, 0, chunk.len(), 0);
                    let streak = self.unreadable_streak.fetch_add(1, Ordering::Relaxed) + 1;
                    let resumed = if streak >= UNREADABLE_STREAK_LIMIT {
                        let reason = format!(
                            "{streak} replies in a row could not be read, the last: {reason}; \
                             is a proxy in front of the sink rewriting its replies, or is the \
                             url another kind of server? The events are kept and sent again"
                        );
                        self.block(&reason, &mut backoff).await
                    } else {
                        self.pause(&mut backoff, after, true).await
                    };
                    if !resumed {
                        break;
                    }
                    queue.push_front(chunk);
                }
                Err(SinkError::Blocked { reason }) => {
                    if !self.block(&reason, &mut backoff).await {
                        break;
                    }
                    queue.push_front(chunk);
                }
            }
        }
        Finished {
            after,
            events: full.events,
            outcome,
        }
    }

    /// An event the sink refused for good: the reason to dead-letter it with, or `None` when
    /// the refusals have become a streak that blocks the sink instead.
    fn reject(&self, ev: &SpooledEvent, reason: String) -> Option<String> {
        let streak = self.rejected_streak.fetch_add(1, Ordering::Relaxed) + 1;
        if streak > REJECTION_STREAK_LIMIT {
            // Undo: this event is kept, not dead-lettered; the count stays at the limit.
            self.rejected_streak
                .store(REJECTION_STREAK_LIMIT + 1, Ordering::Relaxed);
            debug!(sink = %self.sink.name(), id = %ev.id, %reason, "Refused again while blocked by a rejection streak.");
            return None;
        }
        warn!(sink = %self.sink.name(), id = %ev.id, site = %ev.site, %reason, "Event rejected by the sink; dead-lettered.");
        Some(reason)
    }

    /// Pauses the sink as blocked (ERROR and store record on the first batch to see it) and
    /// probes its health until it answers. False if cancelled meanwhile.
    async fn block(&self, reason: &str, backoff: &mut Backoff) -> bool {
        if !self.blocked.swap(true, Ordering::SeqCst) {
            error!(sink = %self.sink.name(), %reason, "Sink blocked: delivery paused, events kept in the spool until it recovers.");
            if let Err(e) = self.mark_blocked(Some(reason)).await {
                warn!(sink = %self.sink.name(), error = %e, "Cannot record the blocked state.");
            }
        }
        self.wait_healthy(backoff).await
    }

    /// Clears the blocked state after a send that got an answer per event.
    async fn recovered(&self) {
        if self.blocked.swap(false, Ordering::SeqCst) {
            info!(sink = %self.sink.name(), "Sink recovered; delivering again.");
            if let Err(e) = self.mark_blocked(None).await {
                warn!(sink = %self.sink.name(), error = %e, "Cannot clear the blocked state.");
            }
        }
    }

    /// Records (or clears) the blocked state where `status` and `/readyz` see it.
    async fn mark_blocked(&self, reason: Option<&str>) -> Result<(), StoreError> {
        self.health.sink_blocked(self.sink.name(), reason);
        self.store.set_blocked(self.sink.name(), reason).await
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            steps: Box::new(
                ExponentialBuilder::default()
                    .with_min_delay(self.delays.min)
                    .with_max_delay(self.delays.max)
                    .with_factor(2.0)
                    .without_max_times()
                    .build(),
            ),
            current: self.delays.min,
        }
    }

    /// Sleeps for a backoff step with full jitter, or the requested pause if that is longer.
    /// `escalate` takes the next step; otherwise the current one is repeated. False if
    /// cancelled meanwhile.
    async fn pause(&self, backoff: &mut Backoff, after: Option<Duration>, escalate: bool) -> bool {
        if escalate {
            backoff.current = backoff.steps.next().unwrap_or(self.delays.max);
        }
        let step = backoff.current;
        let jittered = Duration::from_millis(
            rand::rng().random_range(0..=step.as_millis().min(u64::MAX as u128) as u64),
        );
        let wait = after.map_or(jittered, |a| a.max(jittered));
        tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = self.cancel.cancelled() => false,
        }
    }

    /// Probes the sink's health with backoff until it answers OK. False if cancelled.
    async fn wait_healthy(&self, backoff: &mut Backoff) -> bool {
        loop {
            if !self.pause(backoff, None, true).await {
                return false;
            }
            match self.sink.healthcheck().await {
                Ok(()) => return true,
                Err(e) => debug!(sink = %self.sink.name(), error = %e, "Sink still unhealthy."),
            }
        }
    }
}

/// The result of a batch's task; a panic in it becomes a store-level failure of the driver
/// (its events stay unsettled and are sent again by the next run).
fn joined(done: Result<Result<(), StoreError>, tokio::task::JoinError>) -> Result<(), StoreError> {
    done.map_err(|source| StoreError::Join {
        op: "sink batch",
        source,
    })?
}

/// Sleeps until `at` (a guard in `select!` ensures it is set).
async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

fn reason_of_streak() -> String {
    format!(
        "the sink refused {REJECTION_STREAK_LIMIT} events in a row and delivered none: this \
         looks like a configuration problem (a proxy refusing the requests, an index that \
         cannot take these documents), not bad data; the events are kept. Check the sink's \
         dead letters and WARN logs for the reason it gives, fix it, and delivery resumes"
    )
}

#[cfg(test)]
mod tests;
