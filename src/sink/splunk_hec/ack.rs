//! Indexer-acknowledgement tracking: which `ackId`s of our channel are pending, which spool
//! seqs they cover, and one background poller per sink that asks `/services/collector/ack`
//! for all of them at once and wakes the requests waiting on each id.
//!
//! Pending ids are also rows of `hec_acks`, written right after the 200, so a restart waits for
//! them instead of resending (Vector keeps them in memory and loses them). The poller deletes a
//! row when its id turns true: Splunk forgets an id once it answered true, so that answer must
//! never be lost to a dropped request future.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{Notify, watch};
use tracing::{debug, error, info, warn};

use super::config::AckMode;
use crate::secret::Secret;
use crate::sink::http::{snippet, transport_error};
use crate::store::{PendingAck, Store};

/// Where one pending id stands.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AckState {
    /// Not acknowledged yet (or lost: HEC cannot tell).
    Waiting,
    /// Indexed and replicated.
    Acked,
    /// `/ack` said acknowledgement is off for the token (code 14) with `ack = auto`: fall back
    /// to 200 semantics, i.e. delivered.
    Disabled,
    /// The sink cannot go on (code 14 with `ack = true`).
    Blocked(String),
}

/// How waiting for one id ended.
#[derive(Debug, PartialEq)]
pub(crate) enum Waited {
    /// Delivered (acknowledged, or acknowledgement turned out to be off).
    Delivered,
    /// Still not acknowledged after `ack_timeout`: resend (the id is forgotten and counted).
    TimedOut,
    /// Stop the sink.
    Blocked(String),
}

struct Entry {
    seqs: Vec<i64>,
    sent_at: i64,
    tx: watch::Sender<AckState>,
}

#[derive(Default)]
struct State {
    pending: BTreeMap<u64, Entry>,
    /// seq -> the pending id that carried it.
    covered: HashMap<i64, u64>,
    /// Seqs whose id turned true while nobody waited for them (after a restart the driver
    /// may ask for them in several batches): delivered without sending.
    acked: HashSet<i64>,
}

/// Pending acknowledgements of one sink's channel.
pub(crate) struct Tracker {
    pub(crate) sink: String,
    pub(crate) channel: String,
    store: Store,
    timeout: Duration,
    mode: AckMode,
    state: Mutex<State>,
    wake: Notify,
    /// `ack = auto` and `/ack` answered code 14: treat 200s as delivered from now on.
    pub(crate) disabled: AtomicBool,
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Tracker {
    pub(crate) fn new(
        sink: String,
        channel: String,
        store: Store,
        timeout: Duration,
        mode: AckMode,
    ) -> Tracker {
        Tracker {
            sink,
            channel,
            store,
            timeout,
            mode,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            disabled: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts tracking `ack_id` (a fresh 200, or a row loaded at start-up).
    pub(crate) fn register(&self, ack_id: u64, seqs: Vec<i64>, sent_at: i64) {
        let mut st = self.lock();
        for &s in &seqs {
            st.covered.insert(s, ack_id);
        }
        let (tx, _) = watch::channel(AckState::Waiting);
        st.pending.insert(ack_id, Entry { seqs, sent_at, tx });
        drop(st);
        self.wake.notify_one();
    }

    /// Number of ids pending.
    pub(crate) fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// The store the rows live in.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Where each of `seqs` stands (one lock for the whole batch).
    pub(crate) fn lookup(&self, seqs: &[i64]) -> Vec<Lookup> {
        let mut st = self.lock();
        if st.pending.is_empty() && st.acked.is_empty() {
            return seqs.iter().map(|_| Lookup::New).collect();
        }
        seqs.iter()
            .map(|seq| {
                if st.acked.remove(seq) {
                    Lookup::Acked
                } else {
                    match st.covered.get(seq) {
                        Some(&id) => Lookup::Pending(id),
                        None => Lookup::New,
                    }
                }
            })
            .collect()
    }

    /// Forgets `seqs` from the set of already-acknowledged ones (their waiter settled them).
    fn consume(&self, seqs: &[i64]) {
        let mut st = self.lock();
        if !st.acked.is_empty() {
            for s in seqs {
                st.acked.remove(s);
            }
        }
    }

    /// Waits until `ack_id` is settled or `ack_timeout` after it was sent has passed. `seqs`
    /// are the events this caller settles with it.
    pub(crate) async fn wait(&self, ack_id: u64, seqs: &[i64]) -> Waited {
        let sub = {
            let st = self.lock();
            st.pending
                .get(&ack_id)
                .map(|e| (e.tx.subscribe(), e.sent_at))
        };
        let Some((mut rx, sent_at)) = sub else {
            // Settled between lookup and now: acknowledged if the poller said so.
            return if self.lock_acked_contains(seqs) {
                self.consume(seqs);
                Waited::Delivered
            } else {
                Waited::TimedOut
            };
        };
        let left = (sent_at as f64 + self.timeout.as_secs_f64() - unix_now()).max(0.0);
        let state = match tokio::time::timeout(
            Duration::from_secs_f64(left),
            rx.wait_for(|s| *s != AckState::Waiting),
        )
        .await
        {
            Ok(Ok(s)) => Some(s.clone()),
            _ => None,
        };
        match state {
            Some(AckState::Acked) | Some(AckState::Disabled) => {
                self.consume(seqs);
                Waited::Delivered
            }
            Some(AckState::Blocked(r)) => Waited::Blocked(r),
            Some(AckState::Waiting) | None => self.give_up(ack_id).await,
        }
    }

    fn lock_acked_contains(&self, seqs: &[i64]) -> bool {
        let st = self.lock();
        !seqs.is_empty() && seqs.iter().all(|s| st.acked.contains(s))
    }

    /// The id timed out: forget it (memory and store) and count its events as possible
    /// duplicates, since they are sent again.
    async fn give_up(&self, ack_id: u64) -> Waited {
        let removed = {
            let mut st = self.lock();
            match st.pending.get(&ack_id).map(|e| e.tx.borrow().clone()) {
                Some(AckState::Waiting) => {
                    let e = st.pending.remove(&ack_id);
                    if let Some(e) = &e {
                        for s in &e.seqs {
                            st.covered.remove(s);
                        }
                    }
                    e
                }
                // The poller settled it at the same moment.
                Some(AckState::Blocked(r)) => return Waited::Blocked(r),
                Some(_) => return Waited::Delivered,
                None => None,
            }
        };
        let Some(entry) = removed else {
            return Waited::TimedOut;
        };
        let n = entry.seqs.len() as i64;
        warn!(sink = %self.sink, ack_id, events = n, timeout_secs = self.timeout.as_secs(),
            "HEC never acknowledged this request; resending its events (marked possible_duplicate).");
        if let Err(e) = self
            .store
            .delete_hec_ack(&self.sink, &self.channel, ack_id)
            .await
        {
            error!(sink = %self.sink, error = %e, "Cannot forget a timed-out HEC ack id.");
        }
        if let Err(e) = self
            .store
            .sink_meta_add(&self.sink, super::POSSIBLE_DUPLICATES_KEY, n)
            .await
        {
            error!(sink = %self.sink, error = %e, "Cannot count possible duplicates.");
        }
        Waited::TimedOut
    }

    /// Marks ids settled from an `/ack` answer: `true` ones are forgotten and their waiters
    /// woken; rows are deleted first, so a crash never leaves a row for an id HEC forgot.
    async fn settle_true(&self, ids: &[u64]) {
        for &id in ids {
            if let Err(e) = self
                .store
                .delete_hec_ack(&self.sink, &self.channel, id)
                .await
            {
                error!(sink = %self.sink, error = %e, "Cannot forget an acknowledged HEC ack id.");
            }
        }
        let mut st = self.lock();
        for id in ids {
            if let Some(e) = st.pending.remove(id) {
                for s in &e.seqs {
                    st.covered.remove(s);
                    st.acked.insert(*s);
                }
                let _ = e.tx.send(AckState::Acked);
            }
        }
    }

    /// `/ack` said acknowledgement is disabled for the token (code 14).
    async fn ack_disabled(&self, text: &str) {
        if self.mode == AckMode::True {
            let reason = format!(
                "HEC answered the acknowledgement query with `{text}` (code 14) although \
                 ack = true: enable indexer acknowledgement on the token, or set ack = false"
            );
            let st = self.lock();
            for e in st.pending.values() {
                let _ = e.tx.send(AckState::Blocked(reason.clone()));
            }
            return;
        }
        if !self.disabled.swap(true, Ordering::SeqCst) {
            warn!(sink = %self.sink, "HEC says indexer acknowledgement is disabled for this token (code 14); \
                falling back to treating HTTP 200 as delivered (ack = auto). Set ack = false to silence this.");
        }
        let ids: Vec<u64> = self.lock().pending.keys().copied().collect();
        for &id in &ids {
            let _ = self
                .store
                .delete_hec_ack(&self.sink, &self.channel, id)
                .await;
        }
        let mut st = self.lock();
        for id in ids {
            if let Some(e) = st.pending.remove(&id) {
                for s in &e.seqs {
                    st.covered.remove(s);
                    st.acked.insert(*s);
                }
                let _ = e.tx.send(AckState::Disabled);
            }
        }
    }

    /// Forgets ids nobody waits for any more that are older than twice the timeout.
    async fn purge_stale(&self) {
        let limit = unix_now() - 2.0 * self.timeout.as_secs_f64();
        let stale: Vec<u64> = {
            let mut st = self.lock();
            let ids: Vec<u64> = st
                .pending
                .iter()
                .filter(|(_, e)| (e.sent_at as f64) < limit && e.tx.receiver_count() == 0)
                .map(|(id, _)| *id)
                .collect();
            for id in &ids {
                if let Some(e) = st.pending.remove(id) {
                    for s in &e.seqs {
                        st.covered.remove(s);
                    }
                }
            }
            ids
        };
        for id in stale {
            debug!(sink = %self.sink, ack_id = id, "Forgetting a stale HEC ack id.");
            let _ = self
                .store
                .delete_hec_ack(&self.sink, &self.channel, id)
                .await;
        }
    }

    /// Loads this sink's rows from the store: rows of another channel or older than twice the
    /// timeout are deleted (their events, if still unsettled, are simply sent again).
    pub(crate) async fn restore(&self) -> Result<usize, crate::store::StoreError> {
        let limit = (unix_now() - 2.0 * self.timeout.as_secs_f64()) as i64;
        let purged = self.store.purge_hec_acks(&self.sink, Some(limit)).await?;
        if purged > 0 {
            info!(sink = %self.sink, rows = purged, "Forgot stale pending HEC acknowledgements.");
        }
        let rows: Vec<PendingAck> = self.store.hec_acks(&self.sink).await?;
        let mut n = 0;
        for row in rows {
            if row.channel != self.channel {
                self.store
                    .delete_hec_ack(&self.sink, &row.channel, row.ack_id)
                    .await?;
                continue;
            }
            self.register(row.ack_id, row.seqs, row.sent_at);
            n += 1;
        }
        Ok(n)
    }
}

/// Where one event of a batch stands with respect to pending acknowledgements.
#[derive(Debug, PartialEq)]
pub(crate) enum Lookup {
    /// Its id turned true earlier: delivered.
    Acked,
    /// Carried by this pending id: wait, do not resend.
    Pending(u64),
    /// Not sent (or given up): send.
    New,
}

/// What the poller needs to talk to HEC.
pub(crate) struct PollTarget {
    pub(crate) client: reqwest::Client,
    pub(crate) ack_url: String,
    pub(crate) token: Secret,
    pub(crate) every: Duration,
}

#[derive(Deserialize)]
struct AckReply {
    acks: Option<HashMap<String, bool>>,
    code: Option<i64>,
    text: Option<String>,
}

/// The poller: while ids are pending, one `/ack` query with all of them every `every`.
/// Transport errors, 5xx and unparseable answers never mark anything delivered; it just asks
/// again next time.
pub(crate) async fn poll(tracker: Arc<Tracker>, target: PollTarget) {
    let mut complained = false;
    loop {
        if tracker.pending() == 0 {
            tracker.wake.notified().await;
            continue;
        }
        tokio::time::sleep(target.every).await;
        tracker.purge_stale().await;
        let ids: Vec<u64> = tracker.lock().pending.keys().copied().collect();
        if ids.is_empty() {
            continue;
        }
        let body = serde_json::json!({ "acks": ids }).to_string();
        let resp = target
            .client
            .post(&target.ack_url)
            .header(
                reqwest::header::AUTHORIZATION,
                format!("Splunk {}", target.token.expose()),
            )
            .header("X-Splunk-Request-Channel", &tracker.channel)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let (status, bytes) = match resp {
            Ok(r) => {
                let status = r.status().as_u16();
                match r.bytes().await {
                    Ok(b) => (status, b),
                    Err(e) => {
                        debug!(sink = %tracker.sink, error = %transport_error(e), "HEC ack query failed; asking again.");
                        continue;
                    }
                }
            }
            Err(e) => {
                debug!(sink = %tracker.sink, error = %transport_error(e), "HEC ack query failed; asking again.");
                continue;
            }
        };
        let reply: Option<AckReply> = serde_json::from_slice(&bytes).ok();
        match (status, reply) {
            (
                200,
                Some(AckReply {
                    acks: Some(map), ..
                }),
            ) => {
                complained = false;
                let done: Vec<u64> = map
                    .iter()
                    .filter(|(_, v)| **v)
                    .filter_map(|(k, _)| k.parse().ok())
                    .collect();
                if !done.is_empty() {
                    tracker.settle_true(&done).await;
                }
            }
            (
                400,
                Some(AckReply {
                    code: Some(14),
                    text,
                    ..
                }),
            ) => {
                tracker
                    .ack_disabled(text.as_deref().unwrap_or("ACK is disabled"))
                    .await;
            }
            (status, _) => {
                if !complained {
                    warn!(sink = %tracker.sink, status, reply = %snippet(&bytes),
                        "HEC acknowledgement query failed; pending events stay pending and it is asked again.");
                    complained = true;
                }
            }
        }
    }
}
