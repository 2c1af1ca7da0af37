//! Indexer-acknowledgement tracking: which `ackId`s of our channel are pending, which spool
//! seqs they cover, and one background poller per sink (`poller`) that asks
//! `/services/collector/ack` for all of them at once and wakes the requests waiting on each id.
//!
//! Pending ids are also entries of the store's sink journal (`journal`), written right after
//! the 200, so a restart waits for them instead of resending (Vector keeps them in memory and
//! loses them). The poller deletes an entry when its id turns true: Splunk forgets an id once
//! it answered true, so that answer must never be lost to a dropped request future.
//!
//! The [`Tracker`] here holds the decisions; `pending` is its in-memory table.

mod journal;
mod pending;
mod poller;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

use super::config::AckMode;
use crate::store::Store;
pub use journal::POSSIBLE_DUPLICATES;
pub(crate) use journal::{AckJournal, PendingAck};
use pending::{Entry, State};
pub(crate) use poller::{PollTarget, poll};

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
    /// No answer about this request can be trusted any more (timed out, or its id was handed
    /// out again): resend its events.
    GivenUp,
}

/// How waiting for one id ended.
#[derive(Debug, PartialEq)]
pub(crate) enum Waited {
    /// Delivered (acknowledged, or acknowledgement turned out to be off).
    Delivered,
    /// Not acknowledged in time, or its id was handed out again: resend (the id is forgotten
    /// and the events are marked `possible_duplicate`).
    TimedOut,
    /// Stop the sink.
    Blocked(String),
}

/// One registered request: its `ackId` and a registration serial. HEC can hand out an id
/// again on the same channel, so the id alone does not say which request an answer is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct AckKey {
    pub(crate) id: u64,
    serial: u64,
}

/// Pending acknowledgements of one sink's channel, and the events to mark as possible
/// duplicates when they are sent again.
pub(crate) struct Tracker {
    pub(crate) sink: String,
    pub(crate) channel: String,
    store: Store,
    timeout: Duration,
    mode: AckMode,
    state: Mutex<State>,
    /// Held across each change of a request's entry and of its row, so a row is never
    /// deleted for a request that has meanwhile been replaced under the same id.
    rows: tokio::sync::Mutex<()>,
    wake: Notify,
    /// `ack = auto` and `/ack` answered code 14: treat 200s as delivered from now on.
    pub(crate) disabled: AtomicBool,
    /// Seqs sent again that HEC may already hold: their envelopes carry `possible_duplicate`
    /// until they settle; the flag says whether they were counted yet. In memory only: a
    /// restart forgets the marks of events not yet settled (the count stays).
    marks: Mutex<HashMap<i64, bool>>,
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
            rows: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            disabled: AtomicBool::new(false),
            marks: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_marks(&self) -> MutexGuard<'_, HashMap<i64, bool>> {
        self.marks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks `seqs` as sent again while HEC may already hold them.
    pub(crate) fn mark(&self, seqs: &[i64]) {
        if seqs.is_empty() {
            return;
        }
        let mut m = self.lock_marks();
        for &s in seqs {
            m.entry(s).or_insert(false);
        }
    }

    /// Which of `seqs` are marked, for encoding them, and how many of those are counted now
    /// (each mark is counted once, when it is first sent).
    pub(crate) fn marks_for(&self, seqs: impl Iterator<Item = i64>) -> (HashSet<i64>, i64) {
        let mut m = self.lock_marks();
        if m.is_empty() {
            return (HashSet::new(), 0);
        }
        let mut marked = HashSet::new();
        let mut first = 0;
        for s in seqs {
            if let Some(counted) = m.get_mut(&s) {
                marked.insert(s);
                if !*counted {
                    *counted = true;
                    first += 1;
                }
            }
        }
        (marked, first)
    }

    /// Forgets the marks of settled seqs.
    pub(crate) fn unmark(&self, seqs: impl Iterator<Item = i64>) {
        let mut m = self.lock_marks();
        if !m.is_empty() {
            for s in seqs {
                m.remove(&s);
            }
        }
    }

    /// Starts tracking a fresh 200's `ackId`: first its row, then memory. If HEC handed the
    /// same id out before on this channel (it restarted, or a load balancer moved the channel
    /// to another indexer), that earlier request can never be confirmed: it is given up here
    /// (its waiters resend, its events are marked), and the new request's acknowledgement
    /// settles only the new request.
    pub(crate) async fn register(&self, row: PendingAck) -> AckKey {
        let _rows = self.rows.lock().await;
        match self.store.insert_hec_ack(&self.sink, row.clone()).await {
            Ok(Some(old)) => {
                debug!(sink = %self.sink, ack_id = row.ack_id, events = old.seqs.len(), "Replaced the stored row of a reused HEC ack id.");
            }
            Ok(None) => {}
            // Still wait in memory; only a restart in between would resend.
            Err(e) => {
                error!(sink = %self.sink, error = %e, "Cannot record a pending HEC ack id.")
            }
        }
        let (key, superseded) = {
            let mut st = self.lock();
            let old = st.key_of(row.ack_id).and_then(|k| st.remove(k));
            (st.insert(row.ack_id, row.seqs, row.sent_at), old)
        };
        if let Some(old) = superseded {
            warn!(sink = %self.sink, ack_id = row.ack_id, events = old.seqs.len(),
                "HEC handed out this ackId again on our channel (HEC restarted, or a load balancer sent the request to another indexer): \
                 the earlier request with that id can no longer be confirmed; resending its events (marked possible_duplicate).");
            self.mark(&old.seqs);
            old.tx.send_replace(AckState::GivenUp);
        }
        self.wake.notify_one();
        key
    }

    /// Number of ids pending.
    pub(crate) fn pending(&self) -> usize {
        self.lock().pending.len()
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
                        Some(&key) => Lookup::Pending(key),
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

    fn all_acked(&self, seqs: &[i64]) -> bool {
        let st = self.lock();
        !seqs.is_empty() && seqs.iter().all(|s| st.acked.contains(s))
    }

    /// The request `key` is gone without an acknowledgement for `seqs` (given up, replaced,
    /// forgotten): nothing will ever settle them through it, so they are sent again.
    fn orphaned(&self, key: AckKey, seqs: &[i64]) -> Waited {
        if self.all_acked(seqs) {
            self.consume(seqs);
            return Waited::Delivered;
        }
        self.lock().uncover(seqs, key);
        self.mark(seqs);
        Waited::TimedOut
    }

    /// Waits until request `key` is settled or `ack_timeout` after it was sent has passed.
    /// `seqs` are the events this caller settles with it.
    pub(crate) async fn wait(&self, key: AckKey, seqs: &[i64]) -> Waited {
        let sub = {
            let st = self.lock();
            st.get(key).map(|e| (e.tx.subscribe(), e.sent_at))
        };
        let Some((mut rx, sent_at)) = sub else {
            return self.orphaned(key, seqs);
        };
        let left = (sent_at as f64 + self.timeout.as_secs_f64() - crate::time::now_f64()).max(0.0);
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
            Some(AckState::GivenUp) => self.orphaned(key, seqs),
            Some(AckState::Waiting) | None => self.give_up(key, seqs).await,
        }
    }

    /// The request timed out: forget it (memory and store) and mark its events, since they
    /// are sent again.
    async fn give_up(&self, key: AckKey, seqs: &[i64]) -> Waited {
        let rows = self.rows.lock().await;
        let removed = {
            let mut st = self.lock();
            match st.get(key).map(|e| e.tx.borrow().clone()) {
                Some(AckState::Waiting) => st.remove(key),
                Some(AckState::Blocked(r)) => return Waited::Blocked(r),
                Some(_) | None => None,
            }
        };
        let Some(entry) = removed else {
            // Settled or given up by someone else meanwhile.
            drop(rows);
            return self.orphaned(key, seqs);
        };
        warn!(sink = %self.sink, ack_id = key.id, events = entry.seqs.len(), timeout_secs = self.timeout.as_secs(),
            "HEC never acknowledged this request; resending its events (marked possible_duplicate).");
        if let Err(e) = self
            .store
            .delete_hec_ack(&self.sink, &self.channel, key.id)
            .await
        {
            error!(sink = %self.sink, error = %e, "Cannot forget a timed-out HEC ack id.");
        }
        self.mark(&entry.seqs);
        // Other batches waiting on the same request (after a restart) resend too.
        entry.tx.send_replace(AckState::GivenUp);
        Waited::TimedOut
    }

    /// Adds `n` to the sink's count of possible duplicates.
    pub(crate) async fn count_possible_duplicates(&self, n: i64) {
        if n == 0 {
            return;
        }
        if let Err(e) = self
            .store
            .add_meta(&self.sink, POSSIBLE_DUPLICATES, n)
            .await
        {
            error!(sink = %self.sink, error = %e, "Cannot count possible duplicates.");
        }
    }

    /// Settles the requests of an `/ack` answer that said `true`, if each is still the one
    /// that was asked about (an id handed out again meanwhile belongs to another request). Rows
    /// are deleted first, so a crash never leaves a row for an id HEC forgot.
    async fn settle_true(&self, keys: &[AckKey]) {
        let _rows = self.rows.lock().await;
        let live: Vec<AckKey> = {
            let st = self.lock();
            keys.iter()
                .copied()
                .filter(|k| st.get(*k).is_some())
                .collect()
        };
        for k in &live {
            if let Err(e) = self
                .store
                .delete_hec_ack(&self.sink, &self.channel, k.id)
                .await
            {
                error!(sink = %self.sink, error = %e, "Cannot forget an acknowledged HEC ack id.");
            }
        }
        let mut st = self.lock();
        for k in live {
            if let Some(e) = st.remove(k) {
                st.acked.extend(e.seqs.iter().copied());
                e.tx.send_replace(AckState::Acked);
            }
        }
    }

    /// `/ack` refuses to answer until someone acts: every pending request (and so the sink)
    /// is blocked, its events kept, until an answer with acknowledgement states comes back.
    fn block_all(&self, reason: &str) {
        let st = self.lock();
        for e in st.pending.values() {
            // send_replace: the state must stick even when nobody waits right now.
            e.tx.send_replace(AckState::Blocked(reason.to_string()));
        }
    }

    /// `/ack` answers again: blocked requests wait (and time out) as usual.
    fn unblock(&self) {
        let st = self.lock();
        for e in st.pending.values() {
            if matches!(*e.tx.borrow(), AckState::Blocked(_)) {
                e.tx.send_replace(AckState::Waiting);
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
            self.block_all(&reason);
            return;
        }
        if !self.disabled.swap(true, Ordering::SeqCst) {
            warn!(sink = %self.sink, "HEC says indexer acknowledgement is disabled for this token (code 14); \
                falling back to treating HTTP 200 as delivered (ack = auto). Set ack = false to silence this.");
        }
        let _rows = self.rows.lock().await;
        let keys: Vec<AckKey> = {
            let st = self.lock();
            st.pending.keys().filter_map(|&id| st.key_of(id)).collect()
        };
        for k in &keys {
            let _ = self
                .store
                .delete_hec_ack(&self.sink, &self.channel, k.id)
                .await;
        }
        let mut st = self.lock();
        for k in keys {
            if let Some(e) = st.remove(k) {
                st.acked.extend(e.seqs.iter().copied());
                e.tx.send_replace(AckState::Disabled);
            }
        }
    }

    /// Forgets requests nobody waits for any more that are older than twice the timeout;
    /// their events, if still unsettled, are sent again, marked.
    async fn purge_stale(&self) {
        let limit = crate::time::now_f64() - 2.0 * self.timeout.as_secs_f64();
        let _rows = self.rows.lock().await;
        let stale: Vec<(AckKey, Entry)> = {
            let mut st = self.lock();
            let keys: Vec<AckKey> = st
                .pending
                .iter()
                .filter(|(_, e)| {
                    (e.sent_at as f64) < limit
                        && e.tx.receiver_count() == 0
                        && *e.tx.borrow() == AckState::Waiting
                })
                .map(|(&id, e)| AckKey {
                    id,
                    serial: e.serial,
                })
                .collect();
            keys.into_iter()
                .filter_map(|k| st.remove(k).map(|e| (k, e)))
                .collect()
        };
        for (k, e) in stale {
            debug!(sink = %self.sink, ack_id = k.id, "Forgetting a stale HEC ack id.");
            let _ = self
                .store
                .delete_hec_ack(&self.sink, &self.channel, k.id)
                .await;
            self.mark(&e.seqs);
        }
    }

    /// Loads this sink's rows from the store. Rows of another channel or older than twice the
    /// timeout are deleted; their events, if still unsettled, are sent again, marked as
    /// possible duplicates. Returns how many requests wait for their acknowledgement.
    pub(crate) async fn restore(&self) -> Result<usize, crate::store::StoreError> {
        let limit = (crate::time::now_f64() - 2.0 * self.timeout.as_secs_f64()) as i64;
        let mut dropped = self.store.take_hec_acks(&self.sink, Some(limit)).await?;
        let mut n = 0;
        for row in self.store.hec_acks(&self.sink).await? {
            if row.channel != self.channel {
                self.store
                    .delete_hec_ack(&self.sink, &row.channel, row.ack_id)
                    .await?;
                dropped.push(row);
                continue;
            }
            self.lock().insert(row.ack_id, row.seqs, row.sent_at);
            n += 1;
        }
        if !dropped.is_empty() {
            info!(sink = %self.sink, rows = dropped.len(), "Forgot stale pending HEC acknowledgements; their events are sent again, marked possible_duplicate.");
        }
        for row in &dropped {
            self.mark(&row.seqs);
        }
        Ok(n)
    }

    /// `ack = false`: forgets every stored row; their events are sent again, marked.
    pub(crate) async fn forget_all(&self) -> Result<usize, crate::store::StoreError> {
        let rows = self.store.take_hec_acks(&self.sink, None).await?;
        for row in &rows {
            self.mark(&row.seqs);
        }
        Ok(rows.len())
    }
}

/// Where one event of a batch stands with respect to pending acknowledgements.
#[derive(Debug, PartialEq)]
pub(crate) enum Lookup {
    /// Its id turned true earlier: delivered.
    Acked,
    /// Carried by this pending request: wait, do not resend.
    Pending(AckKey),
    /// Not sent (or given up): send.
    New,
}
