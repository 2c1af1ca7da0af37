//! The sink driver: the only retry loop, one task per sink.
//!
//! It reads a batch after the sink's offset, sends it, and settles: the offset moves only over a
//! contiguous prefix of events whose outcome is final (delivered, duplicate, or dead-lettered
//! with a reason), in the same transaction as the dead letters. Retryable failures are retried
//! forever with exponential backoff and full jitter (the spool bounds the cost, and one batch in
//! flight per sink means a failing SIEM sees no retry storm); `TooLarge` halves the request down
//! to a single event, which is then dead-lettered; `Blocked` pauses the sink and probes its
//! health until it recovers. Nothing is ever dropped here.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{Batch, BatchLimits, ItemOutcome, Sink, SinkError};
use crate::store::{SpooledEvent, Store, StoreError};
use crate::telemetry::metrics;

fn error_kind(e: &SinkError) -> &'static str {
    match e {
        SinkError::Retryable { .. } => "retryable",
        SinkError::TooLarge => "too_large",
        SinkError::Invalid { .. } => "invalid",
        SinkError::Blocked { .. } => "blocked",
    }
}

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
}

/// Why a settled event is not simply delivered.
enum Final {
    Done,
    Dead(String),
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
        }
    }

    /// Other backoff bounds (tests).
    pub fn with_delays(mut self, delays: RetryDelays) -> Driver {
        self.delays = delays;
        self
    }

    /// Runs until cancelled. Returns an error only when the store fails.
    pub async fn run(self) -> Result<(), StoreError> {
        let name = self.sink.name().to_string();
        let changed = self.store.changed();
        info!(sink = %name, ns = %self.ns, "Sink driver started.");
        // A block recorded by an earlier process is stale until this one sees it again.
        self.mark_blocked(None).await?;
        while !self.cancel.is_cancelled() {
            // Register interest before reading, so a commit between the read and the wait is not
            // missed; the timeout is a safety net, not the mechanism.
            let notified = changed.notified();
            let events = self
                .store
                .read_batch(
                    &self.ns,
                    &name,
                    self.limits.max_events,
                    self.limits.max_bytes,
                )
                .await?;
            if events.is_empty() {
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = self.cancel.cancelled() => break,
                }
                continue;
            }
            let events = if self.limits.linger.is_zero() || self.is_full(&events) {
                events
            } else {
                // A partial batch: give the source `linger` to add to it, so a trickle does
                // not become one tiny request per page.
                tokio::select! {
                    _ = tokio::time::sleep(self.limits.linger) => {}
                    _ = self.cancel.cancelled() => break,
                }
                self.store
                    .read_batch(
                        &self.ns,
                        &name,
                        self.limits.max_events,
                        self.limits.max_bytes,
                    )
                    .await?
            };
            self.deliver(events).await?;
        }
        info!(sink = %name, ns = %self.ns, "Sink driver stopped.");
        Ok(())
    }

    /// Delivers one batch completely (or until cancelled), settling progress as it goes.
    async fn deliver(&self, events: Vec<SpooledEvent>) -> Result<(), StoreError> {
        let name = self.sink.name();
        let full = Batch { events };
        let events = &full.events;
        let mut outcome: Vec<Option<Final>> = (0..events.len()).map(|_| None).collect();
        let mut committed = 0usize; // events[..committed] are settled in the store
        let mut backoff = self.backoff();
        let mut queue: VecDeque<Vec<usize>> = VecDeque::from([(0..events.len()).collect()]);
        let mut blocked = false;

        loop {
            let Some(chunk) = queue.pop_front() else {
                // Everything sent once; whatever is unsettled asked to be retried.
                let rest: Vec<usize> = (committed..events.len())
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
                    if blocked {
                        info!(sink = %name, "Sink recovered; delivering again.");
                        blocked = false;
                        self.mark_blocked(None).await?;
                    }
                    let mut retry_after: Option<Duration> = None;
                    let mut retried = Vec::new();
                    let (mut delivered, mut duplicate, mut dead) = (0, 0, 0);
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
                            ItemOutcome::Rejected { reason } => {
                                dead += 1;
                                warn!(sink = %name, id = %events[i].id, site = %events[i].site, %reason, "Event rejected by the sink; dead-lettered.");
                                outcome[i] = Some(Final::Dead(reason))
                            }
                            ItemOutcome::Retry { after } => {
                                retried.push(i);
                                retry_after = retry_after.max(after);
                            }
                        }
                    }
                    metrics::sink_outcomes(name, delivered, duplicate, retried.len(), dead);
                    committed = self.settle_prefix(events, &mut outcome, committed).await?;
                    if retried.is_empty() {
                        backoff = self.backoff();
                    } else {
                        debug!(sink = %name, events = retried.len(), "Some events asked to be retried.");
                        if delivered + duplicate + dead > 0 {
                            // The destination is taking events, just not all of them (per-item
                            // 429s): pause, but do not escalate as if it were down.
                            backoff = self.backoff();
                        }
                        if !self.pause(&mut backoff, retry_after).await {
                            break;
                        }
                        queue.push_front(retried);
                    }
                }
                Ok(ack) => {
                    // A sink bug, not the destination's: never guess which events landed.
                    error!(sink = %name, sent = chunk.len(), outcomes = ack.items.len(), "Sink returned a wrong number of outcomes; resending the batch.");
                    if !self.pause(&mut backoff, None).await {
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
                    warn!(sink = %name, id = %events[i].id, bytes = events[i].body.len(), %reason, "Sink refuses this single event; dead-lettered.");
                    metrics::sink_outcomes(name, 0, 0, 0, 1);
                    outcome[i] = Some(Final::Dead(reason));
                    committed = self.settle_prefix(events, &mut outcome, committed).await?;
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
                    if !self.pause(&mut backoff, after).await {
                        break;
                    }
                    queue.push_front(chunk);
                }
                Err(SinkError::Blocked { reason }) => {
                    if !blocked {
                        error!(sink = %name, %reason, pending_events = events.len() - committed, "Sink blocked: delivery paused, events kept in the spool until it recovers.");
                        self.mark_blocked(Some(&reason)).await?;
                    }
                    blocked = true;
                    if !self.wait_healthy(&mut backoff).await {
                        break;
                    }
                    queue.push_front(chunk);
                }
            }
        }
        Ok(())
    }

    /// Records (or clears) the blocked state where `status` and `/readyz` see it.
    async fn mark_blocked(&self, reason: Option<&str>) -> Result<(), StoreError> {
        metrics::sink_blocked(self.sink.name(), reason);
        self.store.set_blocked(self.sink.name(), reason).await
    }

    fn is_full(&self, events: &[SpooledEvent]) -> bool {
        events.len() >= self.limits.max_events
            || events.iter().map(|e| e.body.len()).sum::<usize>() * 2 >= self.limits.max_bytes
    }

    /// Settles the longest settled prefix past `committed`; returns the new `committed`.
    async fn settle_prefix(
        &self,
        events: &[SpooledEvent],
        outcome: &mut [Option<Final>],
        committed: usize,
    ) -> Result<usize, StoreError> {
        let mut end = committed;
        let mut dead = Vec::new();
        while end < events.len() {
            match outcome[end].take() {
                Some(Final::Done) => {}
                Some(Final::Dead(reason)) => dead.push((events[end].clone(), reason)),
                None => break,
            }
            end += 1;
        }
        if end > committed {
            self.store
                .settle(&self.ns, self.sink.name(), events[end - 1].seq, dead)
                .await?;
        }
        Ok(end)
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> + use<> {
        ExponentialBuilder::default()
            .with_min_delay(self.delays.min)
            .with_max_delay(self.delays.max)
            .with_factor(2.0)
            .without_max_times()
            .build()
    }

    /// Sleeps for the next backoff step (full jitter) or the requested pause, whichever is
    /// longer. False if cancelled meanwhile.
    async fn pause(
        &self,
        backoff: &mut impl Iterator<Item = Duration>,
        after: Option<Duration>,
    ) -> bool {
        let step = backoff.next().unwrap_or(self.delays.max);
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
    async fn wait_healthy(&self, backoff: &mut impl Iterator<Item = Duration>) -> bool {
        loop {
            if !self.pause(backoff, None).await {
                return false;
            }
            match self.sink.healthcheck().await {
                Ok(()) => return true,
                Err(e) => debug!(sink = %self.sink.name(), error = %e, "Sink still unhealthy."),
            }
        }
    }
}

#[cfg(test)]
mod tests;
