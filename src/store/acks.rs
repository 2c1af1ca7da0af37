//! Per-sink facts and pending HEC indexer acknowledgements (`sink_meta`, `hec_acks`).
//!
//! The HEC sink records every request answered with an `ackId` right after the 200, so a restart
//! can wait for that acknowledgement instead of resending the events (which would duplicate
//! them in Splunk). The channel GUID the ids belong to is kept in `sink_meta`.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::db::SyncStore;
use super::{Store, StoreError};

/// One HEC request whose indexer acknowledgement was still pending when recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingAck {
    /// The HEC channel GUID the id belongs to.
    pub channel: String,
    /// The `ackId` HEC answered.
    pub ack_id: u64,
    /// The spool seqs the request carried.
    pub seqs: Vec<i64>,
    /// When the request was answered, Unix seconds.
    pub sent_at: i64,
}

fn sql<'a>(op: &'static str, db: &'a SyncStore) -> impl Fn(rusqlite::Error) -> StoreError + 'a {
    move |source| StoreError::Sqlite {
        op,
        path: db.path().to_path_buf(),
        source,
    }
}

fn join_seqs(seqs: &[i64]) -> String {
    seqs.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A `hec_acks` row from `SELECT channel, ack_id, seqs, sent_at`.
fn pending_ack(row: &rusqlite::Row<'_>) -> rusqlite::Result<PendingAck> {
    let seqs: String = row.get(2)?;
    let id: i64 = row.get(1)?;
    Ok(PendingAck {
        channel: row.get(0)?,
        ack_id: u64::try_from(id).unwrap_or(0),
        seqs: seqs
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect(),
        sent_at: row.get(3)?,
    })
}

impl SyncStore {
    pub(super) fn meta_get(&mut self, sink: &str, key: &str) -> Result<Option<String>, StoreError> {
        let r = self
            .conn()
            .prepare_cached("SELECT value FROM sink_meta WHERE sink = ?1 AND key = ?2")
            .and_then(|mut st| {
                st.query_row(params![sink, key], |row| row.get(0))
                    .optional()
            });
        r.map_err(sql("meta_get", self))
    }

    /// Stores `value` unless the key already has one; returns the value that is stored.
    pub(super) fn meta_get_or_insert(
        &mut self,
        sink: &str,
        key: &str,
        value: &str,
    ) -> Result<String, StoreError> {
        let r = (|| {
            let tx = self
                .conn()
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO sink_meta (sink, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (sink, key) DO NOTHING",
                params![sink, key, value],
            )?;
            let v: String = tx.query_row(
                "SELECT value FROM sink_meta WHERE sink = ?1 AND key = ?2",
                params![sink, key],
                |row| row.get(0),
            )?;
            tx.commit()?;
            Ok(v)
        })();
        r.map_err(sql("meta_get_or_insert", self))
    }

    /// Adds `by` to the integer stored under `key` (0 when absent); returns the new value.
    pub(super) fn meta_add(&mut self, sink: &str, key: &str, by: i64) -> Result<i64, StoreError> {
        let r = (|| {
            let tx = self
                .conn()
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let cur: Option<String> = tx
                .query_row(
                    "SELECT value FROM sink_meta WHERE sink = ?1 AND key = ?2",
                    params![sink, key],
                    |row| row.get(0),
                )
                .optional()?;
            let next = cur.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0) + by;
            tx.execute(
                "INSERT INTO sink_meta (sink, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (sink, key) DO UPDATE SET value = excluded.value",
                params![sink, key, next.to_string()],
            )?;
            tx.commit()?;
            Ok(next)
        })();
        r.map_err(sql("meta_add", self))
    }

    /// Records a pending acknowledgement. HEC can hand out an `ackId` again on one channel
    /// (it restarted, or a load balancer moved the channel to another indexer): the row
    /// already stored under that id is then replaced and returned, so the caller gives its
    /// events up explicitly instead of losing track of them.
    pub(super) fn hec_ack_insert(
        &mut self,
        sink: &str,
        ack: &PendingAck,
    ) -> Result<Option<PendingAck>, StoreError> {
        let seqs = join_seqs(&ack.seqs);
        let id = i64::try_from(ack.ack_id).unwrap_or(i64::MAX);
        let r = (|| {
            let tx = self
                .conn()
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let old = tx
                .query_row(
                    "SELECT channel, ack_id, seqs, sent_at FROM hec_acks
                     WHERE sink = ?1 AND channel = ?2 AND ack_id = ?3",
                    params![sink, ack.channel, id],
                    pending_ack,
                )
                .optional()?;
            tx.execute(
                "INSERT INTO hec_acks (sink, channel, ack_id, seqs, sent_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (sink, channel, ack_id)
                 DO UPDATE SET seqs = excluded.seqs, sent_at = excluded.sent_at",
                params![sink, ack.channel, id, seqs, ack.sent_at],
            )?;
            tx.commit()?;
            Ok(old)
        })();
        r.map_err(sql("hec_ack_insert", self))
    }

    pub(super) fn hec_ack_delete(
        &mut self,
        sink: &str,
        channel: &str,
        ack_id: u64,
    ) -> Result<(), StoreError> {
        let r = self.conn().execute(
            "DELETE FROM hec_acks WHERE sink = ?1 AND channel = ?2 AND ack_id = ?3",
            params![sink, channel, i64::try_from(ack_id).unwrap_or(i64::MAX)],
        );
        r.map(|_| ()).map_err(sql("hec_ack_delete", self))
    }

    /// Deletes the sink's rows sent before `before` (or all with `None`) and returns them.
    pub(super) fn hec_ack_take(
        &mut self,
        sink: &str,
        before: Option<i64>,
    ) -> Result<Vec<PendingAck>, StoreError> {
        let before = before.unwrap_or(i64::MAX);
        let r = (|| {
            let tx = self
                .conn()
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let rows = {
                let mut st = tx.prepare(
                    "SELECT channel, ack_id, seqs, sent_at FROM hec_acks
                     WHERE sink = ?1 AND sent_at < ?2 ORDER BY channel, ack_id",
                )?;
                st.query_map(params![sink, before], pending_ack)?
                    .collect::<rusqlite::Result<Vec<_>>>()?
            };
            tx.execute(
                "DELETE FROM hec_acks WHERE sink = ?1 AND sent_at < ?2",
                params![sink, before],
            )?;
            tx.commit()?;
            Ok(rows)
        })();
        r.map_err(sql("hec_ack_take", self))
    }

    pub(super) fn hec_acks(&mut self, sink: &str) -> Result<Vec<PendingAck>, StoreError> {
        let r = (|| {
            let mut st = self.conn().prepare_cached(
                "SELECT channel, ack_id, seqs, sent_at FROM hec_acks WHERE sink = ?1
                 ORDER BY channel, ack_id",
            )?;
            let rows = st.query_map(params![sink], pending_ack)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })();
        r.map_err(sql("hec_acks", self))
    }
}

impl Store {
    /// The value stored under `key` for `sink` in `sink_meta`.
    pub async fn sink_meta(&self, sink: &str, key: &str) -> Result<Option<String>, StoreError> {
        let (sink, key) = (sink.to_owned(), key.to_owned());
        self.run("sink_meta", move |db| db.meta_get(&sink, &key))
            .await
    }

    /// The value under `key` for `sink`, storing `value` first if there is none (so two
    /// callers agree on one value).
    pub async fn sink_meta_get_or_insert(
        &self,
        sink: &str,
        key: &str,
        value: &str,
    ) -> Result<String, StoreError> {
        let (sink, key, value) = (sink.to_owned(), key.to_owned(), value.to_owned());
        self.run("sink_meta_get_or_insert", move |db| {
            db.meta_get_or_insert(&sink, &key, &value)
        })
        .await
    }

    /// Adds `by` to the counter under `key` for `sink`; returns the new value.
    pub async fn sink_meta_add(&self, sink: &str, key: &str, by: i64) -> Result<i64, StoreError> {
        let (sink, key) = (sink.to_owned(), key.to_owned());
        self.run("sink_meta_add", move |db| db.meta_add(&sink, &key, by))
            .await
    }

    /// Records a request of `sink` whose indexer acknowledgement is pending. When the channel
    /// already has a row under the same `ackId` (HEC handed the id out again), that row is
    /// replaced and returned: its events can no longer be confirmed.
    pub async fn insert_hec_ack(
        &self,
        sink: &str,
        ack: PendingAck,
    ) -> Result<Option<PendingAck>, StoreError> {
        let sink = sink.to_owned();
        self.run("insert_hec_ack", move |db| db.hec_ack_insert(&sink, &ack))
            .await
    }

    /// Forgets one pending acknowledgement (it turned true, or was given up).
    pub async fn delete_hec_ack(
        &self,
        sink: &str,
        channel: &str,
        ack_id: u64,
    ) -> Result<(), StoreError> {
        let (sink, channel) = (sink.to_owned(), channel.to_owned());
        self.run("delete_hec_ack", move |db| {
            db.hec_ack_delete(&sink, &channel, ack_id)
        })
        .await
    }

    /// Forgets the sink's pending acknowledgements sent before `before` (Unix seconds), or all
    /// of them with `None`, and returns them (their events are sent again).
    pub async fn take_hec_acks(
        &self,
        sink: &str,
        before: Option<i64>,
    ) -> Result<Vec<PendingAck>, StoreError> {
        let sink = sink.to_owned();
        self.run("take_hec_acks", move |db| db.hec_ack_take(&sink, before))
            .await
    }

    /// Every pending acknowledgement of `sink`, by channel and id.
    pub async fn hec_acks(&self, sink: &str) -> Result<Vec<PendingAck>, StoreError> {
        let sink = sink.to_owned();
        self.run("hec_acks", move |db| db.hec_acks(&sink)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
