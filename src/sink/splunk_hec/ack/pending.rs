//! The in-memory table of one channel's pending requests: each `ackId` with its registration
//! serial, the seqs it carries, and the watch its waiters sleep on; which pending request
//! carries each seq; and the seqs acknowledged while nobody waited for them. Pure state: the
//! [`super::Tracker`] locks it, and persists what it must before changing it.

use std::collections::{BTreeMap, HashMap, HashSet};

use tokio::sync::watch;

use super::{AckKey, AckState};

/// One pending request.
pub(super) struct Entry {
    pub(super) serial: u64,
    pub(super) seqs: Vec<i64>,
    pub(super) sent_at: i64,
    pub(super) tx: watch::Sender<AckState>,
}

/// Every pending request of one channel, by `ackId`.
#[derive(Default)]
pub(super) struct State {
    pub(super) pending: BTreeMap<u64, Entry>,
    /// seq -> the pending request that carried it.
    pub(super) covered: HashMap<i64, AckKey>,
    /// Seqs whose id turned true while nobody waited for them (after a restart the driver
    /// may ask for them in several batches): delivered without sending.
    pub(super) acked: HashSet<i64>,
    next_serial: u64,
}

impl State {
    /// Starts tracking request `id` (replacing none: the caller removed an earlier one).
    pub(super) fn insert(&mut self, id: u64, seqs: Vec<i64>, sent_at: i64) -> AckKey {
        let key = AckKey {
            id,
            serial: self.next_serial,
        };
        self.next_serial += 1;
        for &s in &seqs {
            self.covered.insert(s, key);
        }
        let (tx, _) = watch::channel(AckState::Waiting);
        self.pending.insert(
            id,
            Entry {
                serial: key.serial,
                seqs,
                sent_at,
                tx,
            },
        );
        key
    }

    /// The request pending under `id` now.
    pub(super) fn key_of(&self, id: u64) -> Option<AckKey> {
        self.pending.get(&id).map(|e| AckKey {
            id,
            serial: e.serial,
        })
    }

    /// The request `key` names, if it is still the one under its id.
    pub(super) fn get(&self, key: AckKey) -> Option<&Entry> {
        self.pending.get(&key.id).filter(|e| e.serial == key.serial)
    }

    /// Removes the request `key` names, if it still is the one under its id; only its own
    /// seqs stop being covered (a later request may carry the same seqs again).
    pub(super) fn remove(&mut self, key: AckKey) -> Option<Entry> {
        self.get(key)?;
        let e = self.pending.remove(&key.id)?;
        self.uncover(&e.seqs, key);
        Some(e)
    }

    /// Stops `seqs` being covered by `key` (a seq a later request carries stays covered).
    pub(super) fn uncover(&mut self, seqs: &[i64], key: AckKey) {
        for s in seqs {
            if self.covered.get(s) == Some(&key) {
                self.covered.remove(s);
            }
        }
    }
}
