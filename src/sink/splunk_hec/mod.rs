//! The Splunk HTTP Event Collector sink (`type = "splunk_hec"`).
//!
//! Requests go to `POST {url}/services/collector/event` with concatenated JSON envelopes
//! ([`encode`]), gzip, `Authorization: Splunk <token>` and always a channel GUID, which is
//! generated once per sink name and kept in the store so pending acknowledgements survive a
//! restart. Replies are classified by HTTP status and body `code` ([`reply`]).
//!
//! With indexer acknowledgement ([`ack`]) a 200 only means "received": the request's future
//! waits (inside `send`) until its `ackId` turns true, and resends the events marked
//! `possible_duplicate` if it is still false after `ack_timeout_secs`. That wait is the one
//! place this sink waits; every retry is the driver's.
//!
//! A 400 that names the first bad event (`invalid-event-number` k) dead-letters event k and
//! resends every other event of the request, the ones before k included, marked
//! `possible_duplicate`: whether HEC indexed them is unverified (sinks.md A3), and a possible
//! duplicate is better than a possible loss.

pub(crate) mod ack;
mod config;
pub(crate) mod encode;
pub(crate) mod reply;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::future::join_all;
use rand::Rng;
use reqwest::header;
use tracing::info;

pub use ack::POSSIBLE_DUPLICATES;
pub use config::{AckMode, HecConfig, RawHecSink};

use super::http::{self, Chunk};
use super::{Ack, Batch, BatchLimits, BuildError, ItemOutcome, Sink, SinkError};
use crate::pipeline::Shaper;
use crate::store::{SpooledEvent, Store, StoreError};
use ack::{AckKey, Lookup, PendingAck, PollTarget, Tracker, Waited};
use encode::Envelope;
use reply::{Verdict, classify, classify_health, classify_probe};

/// `sink_meta` key of the channel GUID.
pub const CHANNEL_KEY: &str = "hec_channel";
/// `sink_meta` key of the count of events sent again while HEC may already hold them.
pub const POSSIBLE_DUPLICATES_KEY: &str = "possible_duplicates";

/// Events of sink `sink` sent again while HEC may already hold them: an acknowledgement that
/// timed out, an ack id HEC handed out again, a forgotten pending acknowledgement (they may
/// now be in Splunk twice; search `possible_duplicate=true`).
pub async fn possible_duplicates(store: &Store, sink: &str) -> Result<i64, StoreError> {
    Ok(store
        .sink_meta(sink, POSSIBLE_DUPLICATES_KEY)
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// A random (version 4) GUID.
fn new_guid() -> String {
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Sends events to Splunk HEC.
pub struct HecSink {
    cfg: HecConfig,
    client: reqwest::Client,
    envelope: Envelope,
    event_url: String,
    health_url: String,
    tracker: Arc<Tracker>,
    poll_target: Mutex<Option<PollTarget>>,
    poller: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for HecSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HecSink")
            .field("cfg", &self.cfg)
            .field("channel", &self.tracker.channel)
            .finish_non_exhaustive()
    }
}

impl Drop for HecSink {
    fn drop(&mut self) {
        if let Some(p) = self
            .poller
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            p.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl HecSink {
    /// Builds the sink: the HTTP client, the channel (from the store, or a new one), and the
    /// pending acknowledgements a previous run left.
    pub async fn new(cfg: HecConfig, store: &Store) -> Result<HecSink, BuildError> {
        let fail = |reason: String| BuildError {
            sink: cfg.name.clone(),
            reason,
        };
        let client = http::client(&cfg.name, cfg.timeout, cfg.ca_file.as_deref())?;
        let channel = store
            .sink_meta_get_or_insert(&cfg.name, CHANNEL_KEY, &new_guid())
            .await
            .map_err(|e| fail(format!("cannot read or store the HEC channel: {e}")))?;
        let base = cfg.url.as_str().trim_end_matches('/').to_string();
        let tracker = Arc::new(Tracker::new(
            cfg.name.clone(),
            channel,
            store.clone(),
            cfg.ack_timeout,
            cfg.ack,
        ));
        if cfg.ack == AckMode::False {
            let n = tracker
                .forget_all()
                .await
                .map_err(|e| fail(e.to_string()))?;
            if n > 0 {
                info!(sink = %cfg.name, requests = n, "ack = false: forgetting pending HEC acknowledgements; their events are sent again.");
            }
        } else {
            let n = tracker
                .restore()
                .await
                .map_err(|e| fail(format!("cannot load pending HEC acknowledgements: {e}")))?;
            if n > 0 {
                info!(sink = %cfg.name, requests = n, "Waiting for HEC acknowledgements left by the previous run instead of resending.");
            }
        }
        let shaper = Shaper::new(cfg.format, &cfg.redact_headers);
        let envelope = Envelope::new(
            shaper,
            cfg.host.as_deref(),
            &cfg.source,
            &cfg.sourcetype,
            cfg.index.as_deref(),
        );
        let sink = HecSink {
            poll_target: Mutex::new(Some(PollTarget {
                client: client.clone(),
                base: cfg.url.clone(),
                ack_url: format!("{base}/services/collector/ack"),
                token: cfg.token.clone(),
                every: cfg.ack_poll,
            })),
            event_url: format!("{base}/services/collector/event"),
            health_url: format!("{base}/services/collector/health"),
            client,
            envelope,
            tracker,
            poller: Mutex::new(None),
            cfg,
        };
        if sink.tracker.pending() > 0 {
            sink.ensure_poller();
        }
        Ok(sink)
    }

    /// The batch limits the driver should use: one request per batch, `in_flight` batches at
    /// once. The budget counts spooled bytes; the envelope adds about a quarter to a typical
    /// event, so a batch of 3/4 of `batch_max_bytes` usually encodes to one request rather
    /// than a full one and a small one.
    pub fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_events: self.cfg.batch_max_events,
            max_bytes: (self.cfg.batch_max_bytes / 4 * 3).max(1),
            linger: self.cfg.linger,
            in_flight: self.cfg.in_flight,
        }
    }

    /// The channel GUID sent with every request.
    pub fn channel(&self) -> &str {
        &self.tracker.channel
    }

    fn ensure_poller(&self) {
        let mut p = lock(&self.poller);
        if p.is_none()
            && let Some(target) = lock(&self.poll_target).take()
        {
            *p = Some(tokio::spawn(ack::poll(self.tracker.clone(), target)));
        }
    }

    fn acks_in_use(&self) -> bool {
        match self.cfg.ack {
            AckMode::False => false,
            AckMode::True => true,
            AckMode::Auto => !self.tracker.disabled.load(Ordering::SeqCst),
        }
    }

    /// One request: send, classify, and with acknowledgement wait for it.
    async fn send_chunk(&self, events: &[SpooledEvent], chunk: Chunk) -> Result<Ack, SinkError> {
        let evs = &events[chunk.range.clone()];
        let mut req = self
            .client
            .post(&self.event_url)
            .header(
                header::AUTHORIZATION,
                format!("Splunk {}", self.cfg.token.expose()),
            )
            .header("X-Splunk-Request-Channel", self.channel())
            .header(header::CONTENT_TYPE, "application/json");
        if self.cfg.gzip {
            req = req.header(header::CONTENT_ENCODING, "gzip");
        }
        let resp = req
            .body(chunk.body)
            .send()
            .await
            .map_err(|e| reply::transport_error(e, &self.cfg.url))?;
        let status = resp.status().as_u16();
        let after = http::retry_after(resp.headers());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| reply::transport_error(e, &self.cfg.url))?;
        match classify(status, after, &bytes, evs.len()) {
            Verdict::Accepted { ack_id } => self.accepted(ack_id, evs).await,
            Verdict::Partial(ack) => {
                // HEC may have indexed the events before the bad one (sinks.md A3): they are
                // resent, so mark them.
                let k = ack
                    .items
                    .iter()
                    .position(|i| matches!(i, ItemOutcome::Rejected { .. }))
                    .unwrap_or(0);
                let prefix: Vec<i64> = evs[..k].iter().map(|e| e.seq).collect();
                self.tracker.mark(&prefix);
                Ok(ack)
            }
            Verdict::Failed(e) => Err(e),
        }
    }

    /// A 200 code 0 for `evs`.
    async fn accepted(&self, ack_id: Option<u64>, evs: &[SpooledEvent]) -> Result<Ack, SinkError> {
        let n = evs.len();
        if !self.acks_in_use() {
            return Ok(Ack::all_delivered(n));
        }
        let Some(id) = ack_id else {
            if self.cfg.ack == AckMode::True {
                return Err(SinkError::Blocked {
                    reason: "HEC answered without an ackId: the token has indexer \
                             acknowledgement disabled; set ack = false or enable it on the token"
                        .to_string(),
                });
            }
            return Ok(Ack::all_delivered(n));
        };
        let seqs: Vec<i64> = evs.iter().map(|e| e.seq).collect();
        let key = self
            .tracker
            .register(PendingAck {
                channel: self.channel().to_string(),
                ack_id: id,
                seqs: seqs.clone(),
                sent_at: crate::time::now(),
            })
            .await;
        self.ensure_poller();
        self.outcome(self.tracker.wait(key, &seqs).await, &seqs)
    }

    /// Items for events whose acknowledgement wait ended with `w`.
    fn outcome(&self, w: Waited, seqs: &[i64]) -> Result<Ack, SinkError> {
        match w {
            Waited::Delivered => Ok(Ack::all_delivered(seqs.len())),
            Waited::Blocked(reason) => Err(SinkError::Blocked { reason }),
            Waited::TimedOut => Ok(Ack {
                items: vec![ItemOutcome::Retry { after: None }; seqs.len()],
            }),
        }
    }

    /// Sends `events` (none covered by a pending id) in requests of at most `batch_max_bytes`.
    async fn send_new(&self, events: &[SpooledEvent]) -> Result<Ack, SinkError> {
        let (marked, first_time) = self.tracker.marks_for(events.iter().map(|e| e.seq));
        let chunks = http::chunk(
            events,
            self.cfg.batch_max_bytes,
            self.cfg.gzip,
            |ev, out| {
                self.envelope
                    .write(ev, !marked.is_empty() && marked.contains(&ev.seq), out)
            },
        );
        self.tracker.count_possible_duplicates(first_time).await;
        http::send_all(chunks, events.len(), self.cfg.in_flight, |c| {
            self.send_chunk(events, c)
        })
        .await
    }
}

#[async_trait::async_trait]
impl Sink for HecSink {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    async fn send(&self, batch: &Batch) -> Result<Ack, SinkError> {
        let events = &batch.events;
        if events.is_empty() {
            // HEC answers an empty body with code 5: never send one.
            return Ok(Ack { items: Vec::new() });
        }
        let mut items: Vec<Option<ItemOutcome>> = vec![None; events.len()];
        let mut waits: BTreeMap<AckKey, Vec<usize>> = BTreeMap::new();
        let mut fresh: Vec<usize> = Vec::new();
        if self.cfg.ack != AckMode::False {
            let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
            for (i, l) in self.tracker.lookup(&seqs).into_iter().enumerate() {
                match l {
                    Lookup::Acked => items[i] = Some(ItemOutcome::Delivered),
                    Lookup::Pending(id) => waits.entry(id).or_default().push(i),
                    Lookup::New => fresh.push(i),
                }
            }
        } else {
            fresh = (0..events.len()).collect();
        }
        let subset;
        let fresh_events: &[SpooledEvent] = if fresh.len() == events.len() {
            events
        } else {
            subset = fresh.iter().map(|&i| events[i].clone()).collect::<Vec<_>>();
            &subset
        };
        let waiting = join_all(waits.into_iter().map(|(key, idxs)| async move {
            let seqs: Vec<i64> = idxs.iter().map(|&i| events[i].seq).collect();
            let w = self.tracker.wait(key, &seqs).await;
            (idxs, self.outcome(w, &seqs))
        }));
        let sending = async {
            if fresh_events.is_empty() {
                Ok(Ack { items: Vec::new() })
            } else {
                self.send_new(fresh_events).await
            }
        };
        let (waited, sent) = futures_util::join!(waiting, sending);
        let mut first_err = None;
        match sent {
            Ok(ack) => {
                for (&i, item) in fresh.iter().zip(ack.items) {
                    items[i] = Some(item);
                }
            }
            Err(e) => first_err = Some(e),
        }
        for (idxs, res) in waited {
            match res {
                Ok(ack) => {
                    for (&i, item) in idxs.iter().zip(ack.items) {
                        items[i] = Some(item);
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        // Nothing settled at all: the batch-level error lets the driver split, pause or block.
        if let Some(e) = first_err
            && items.iter().all(Option::is_none)
        {
            return Err(e);
        }
        let items: Vec<ItemOutcome> = items
            .into_iter()
            .map(|i| i.unwrap_or(ItemOutcome::Retry { after: None }))
            .collect();
        self.tracker.unmark(
            events
                .iter()
                .zip(&items)
                .filter(|(_, item)| !matches!(item, ItemOutcome::Retry { .. }))
                .map(|(ev, _)| ev.seq),
        );
        Ok(Ack { items })
    }

    /// `GET /services/collector/health`, then one blank event to `/event`: Splunk ignores the
    /// token on `/health` (sinks.md A1), so only the second request can tell a wrong token or
    /// an index the token may not write, and HEC refuses it (code 13) without indexing.
    async fn healthcheck(&self) -> Result<(), SinkError> {
        let resp = self
            .client
            .get(&self.health_url)
            .send()
            .await
            .map_err(|e| reply::transport_error(e, &self.cfg.url))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| reply::transport_error(e, &self.cfg.url))?;
        classify_health(status, &body)?;
        let resp = self
            .client
            .post(&self.event_url)
            .header(
                header::AUTHORIZATION,
                format!("Splunk {}", self.cfg.token.expose()),
            )
            .header("X-Splunk-Request-Channel", self.channel())
            .header(header::CONTENT_TYPE, "application/json")
            .body(self.envelope.probe())
            .send()
            .await
            .map_err(|e| reply::transport_error(e, &self.cfg.url))?;
        let status = resp.status().as_u16();
        let after = http::retry_after(resp.headers());
        let body = resp
            .bytes()
            .await
            .map_err(|e| reply::transport_error(e, &self.cfg.url))?;
        classify_probe(status, after, &body, self.cfg.index.as_deref())
    }
}

/// Builds the sink and its batch limits (the arm of [`crate::sink::build`]).
pub(crate) async fn build(
    cfg: &HecConfig,
    store: &Store,
) -> Result<(Arc<dyn Sink>, BatchLimits), BuildError> {
    let sink = HecSink::new(cfg.clone(), store).await?;
    let limits = sink.limits();
    Ok((Arc::new(sink), limits))
}
