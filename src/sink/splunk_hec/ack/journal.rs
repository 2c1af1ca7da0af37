//! HEC's pending acknowledgements as entries of the store's sink journal.
//!
//! Each request answered with an `ackId` is one entry of the sink, keyed `{channel}/{ackId}`
//! (the key the schema's version 6 gave the rows of the old `hec_acks` table), with the seqs
//! it carried and when it was answered; HEC needs no payload. [`AckJournal`] keeps the names
//! the tracker used when the store had a HEC table: the store now knows nothing of HEC.

use crate::store::{JournalEntry, MetaKey, Store, StoreError};

/// The count of events sent again while HEC may already hold them, typed (its name is
/// [`super::super::POSSIBLE_DUPLICATES_KEY`]).
pub const POSSIBLE_DUPLICATES: MetaKey<'static, i64> =
    MetaKey::new(super::super::POSSIBLE_DUPLICATES_KEY);

/// One HEC request whose indexer acknowledgement was still pending when recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingAck {
    /// The HEC channel GUID the id belongs to.
    pub(crate) channel: String,
    /// The `ackId` HEC answered.
    pub(crate) ack_id: u64,
    /// The spool seqs the request carried.
    pub(crate) seqs: Vec<i64>,
    /// When the request was answered, Unix seconds.
    pub(crate) sent_at: i64,
}

/// The journal key of `ack_id` on `channel`: ids are per channel.
fn request_key(channel: &str, ack_id: u64) -> String {
    format!("{channel}/{ack_id}")
}

impl From<PendingAck> for JournalEntry {
    fn from(ack: PendingAck) -> JournalEntry {
        JournalEntry {
            request: request_key(&ack.channel, ack.ack_id),
            seqs: ack.seqs,
            sent_at: ack.sent_at,
            payload: None,
        }
    }
}

impl From<JournalEntry> for PendingAck {
    /// The channel is what precedes the key's last `/` (a GUID has none); an id that is not
    /// a number reads as 0, as the old table's conversion did.
    fn from(entry: JournalEntry) -> PendingAck {
        let (channel, id) = entry
            .request
            .rsplit_once('/')
            .unwrap_or((entry.request.as_str(), ""));
        PendingAck {
            channel: channel.to_owned(),
            ack_id: id.parse().unwrap_or(0),
            seqs: entry.seqs,
            sent_at: entry.sent_at,
        }
    }
}

/// In the order the old table listed them: by channel, then by id as a number (the journal
/// orders its keys as text, where "10" comes before "9").
fn in_order(entries: Vec<JournalEntry>) -> Vec<PendingAck> {
    let mut acks: Vec<PendingAck> = entries.into_iter().map(PendingAck::from).collect();
    acks.sort_by(|a, b| (&a.channel, a.ack_id).cmp(&(&b.channel, b.ack_id)));
    acks
}

/// A sink's pending acknowledgements in the store.
pub(crate) trait AckJournal {
    /// Records a request of `sink` whose indexer acknowledgement is pending. When the channel
    /// already has one under the same `ackId` (HEC handed the id out again), that one is
    /// replaced and returned: its events can no longer be confirmed.
    async fn insert_hec_ack(
        &self,
        sink: &str,
        ack: PendingAck,
    ) -> Result<Option<PendingAck>, StoreError>;

    /// Forgets one pending acknowledgement (it turned true, or was given up).
    async fn delete_hec_ack(
        &self,
        sink: &str,
        channel: &str,
        ack_id: u64,
    ) -> Result<(), StoreError>;

    /// Forgets the sink's pending acknowledgements sent before `before` (Unix seconds), or all
    /// of them with `None`, and returns them (their events are sent again).
    async fn take_hec_acks(
        &self,
        sink: &str,
        before: Option<i64>,
    ) -> Result<Vec<PendingAck>, StoreError>;

    /// Every pending acknowledgement of `sink`, by channel and id.
    async fn hec_acks(&self, sink: &str) -> Result<Vec<PendingAck>, StoreError>;
}

impl AckJournal for Store {
    async fn insert_hec_ack(
        &self,
        sink: &str,
        ack: PendingAck,
    ) -> Result<Option<PendingAck>, StoreError> {
        Ok(self
            .journal_put(sink, ack.into())
            .await?
            .map(PendingAck::from))
    }

    async fn delete_hec_ack(
        &self,
        sink: &str,
        channel: &str,
        ack_id: u64,
    ) -> Result<(), StoreError> {
        self.journal_remove(sink, &request_key(channel, ack_id))
            .await
    }

    async fn take_hec_acks(
        &self,
        sink: &str,
        before: Option<i64>,
    ) -> Result<Vec<PendingAck>, StoreError> {
        Ok(in_order(self.journal_take(sink, before).await?))
    }

    async fn hec_acks(&self, sink: &str) -> Result<Vec<PendingAck>, StoreError> {
        Ok(in_order(self.journal(sink).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MetaKey;

    #[tokio::test]
    async fn meta_and_pending_acks_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        assert_eq!(store.sink_meta("hec", "hec_channel").await.unwrap(), None);
        let a = store
            .sink_meta_get_or_insert("hec", "hec_channel", "A")
            .await
            .unwrap();
        let b = store
            .sink_meta_get_or_insert("hec", "hec_channel", "B")
            .await
            .unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("A", "A"), "first value wins");
        assert_eq!(store.sink_meta_add("hec", "n", 2).await.unwrap(), 2);
        assert_eq!(store.sink_meta_add("hec", "n", 1).await.unwrap(), 3);

        let ack = PendingAck {
            channel: "A".into(),
            ack_id: 7,
            seqs: vec![1, 2, 5],
            sent_at: 100,
        };
        assert_eq!(
            store.insert_hec_ack("hec", ack.clone()).await.unwrap(),
            None
        );
        let old = PendingAck {
            ack_id: 3,
            sent_at: 10,
            ..ack.clone()
        };
        store.insert_hec_ack("hec", old.clone()).await.unwrap();
        assert_eq!(store.hec_acks("other").await.unwrap(), vec![]);
        assert_eq!(store.hec_acks("hec").await.unwrap().len(), 2);
        assert_eq!(
            store.take_hec_acks("hec", Some(50)).await.unwrap(),
            vec![old]
        );
        assert_eq!(store.hec_acks("hec").await.unwrap(), vec![ack.clone()]);
        store.delete_hec_ack("hec", "A", 7).await.unwrap();
        assert!(store.hec_acks("hec").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_reused_ack_id_replaces_the_row_and_returns_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let first = PendingAck {
            channel: "A".into(),
            ack_id: 0,
            seqs: vec![1, 2],
            sent_at: 100,
        };
        let again = PendingAck {
            seqs: vec![3, 4],
            sent_at: 160,
            ..first.clone()
        };
        let other_channel = PendingAck {
            channel: "B".into(),
            ..first.clone()
        };
        assert_eq!(
            store.insert_hec_ack("hec", first.clone()).await.unwrap(),
            None
        );
        assert_eq!(
            store
                .insert_hec_ack("hec", other_channel.clone())
                .await
                .unwrap(),
            None,
            "ids are per channel"
        );
        assert_eq!(
            store.insert_hec_ack("hec", again.clone()).await.unwrap(),
            Some(first)
        );
        assert_eq!(
            store.hec_acks("hec").await.unwrap(),
            vec![again.clone(), other_channel.clone()]
        );
        assert_eq!(
            store.take_hec_acks("hec", None).await.unwrap(),
            vec![again, other_channel]
        );
        assert!(store.hec_acks("hec").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn acks_are_listed_by_channel_then_id_as_a_number() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let ack = |channel: &str, ack_id| PendingAck {
            channel: channel.into(),
            ack_id,
            seqs: vec![1],
            sent_at: 100,
        };
        for (channel, id) in [("B", 1), ("A", 10), ("A", 9)] {
            store.insert_hec_ack("hec", ack(channel, id)).await.unwrap();
        }
        assert_eq!(
            store.hec_acks("hec").await.unwrap(),
            vec![ack("A", 9), ack("A", 10), ack("B", 1)]
        );
        // The key the schema migration gives an old row reads back as that row.
        let migrated = JournalEntry {
            request: "0f8e-41c2/18446744073709551615".into(),
            seqs: vec![4, 5],
            sent_at: 7,
            payload: None,
        };
        assert_eq!(
            PendingAck::from(migrated.clone()),
            PendingAck {
                channel: "0f8e-41c2".into(),
                ack_id: u64::MAX,
                seqs: vec![4, 5],
                sent_at: 7,
            }
        );
        assert_eq!(
            JournalEntry::from(PendingAck::from(migrated.clone())),
            migrated
        );
        // The typed counter is the one `status` reads by name.
        assert_eq!(
            store.add_meta("hec", POSSIBLE_DUPLICATES, 4).await.unwrap(),
            4
        );
        assert_eq!(
            store
                .meta_of_sinks(MetaKey::<i64>::new("possible_duplicates"))
                .await
                .unwrap(),
            vec![("hec".to_string(), 4)]
        );
    }
}
