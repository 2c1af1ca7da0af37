//! The sink journal (`sink_journal`): requests a sink has sent whose outcome it learns later,
//! kept so a restart resumes or abandons them instead of sending their events blindly again.
//!
//! HEC's indexer acknowledgements are the first user: a request answered with an `ackId` is
//! journaled right after the 200 and removed once the id turns true. The table knows nothing
//! of HEC, so another sink with state in flight (a Kafka transaction, an S3 multipart upload, a
//! Sentinel batch) keeps its own entries here without a schema step of its own:
//!
//! * `request`: the sink's key for the request, unique per sink (HEC: `{channel}/{ackId}`);
//! * `seqs`: the spool seqs it carries, so the sink can tell which events it covers;
//! * `sent_at`: when it was sent, for expiry;
//! * `payload`: whatever else the sink needs to resume it (an upload id and its parts, a
//!   producer epoch), opaque to the store; JSON by convention.

use rusqlite::{OptionalExtension, Row, params};

use super::Store;
use super::conn::all;
use super::error::StoreError;

/// One request a sink has in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalEntry {
    /// The sink's key for the request, unique per sink.
    pub request: String,
    /// The spool seqs the request carries.
    pub seqs: Vec<i64>,
    /// When it was sent, Unix seconds.
    pub sent_at: i64,
    /// Sink-specific state, opaque to the store.
    pub payload: Option<String>,
}

impl Store {
    /// Journals `entry` for `sink`. An entry already journaled under the same request key is
    /// replaced and returned, so the sink can give its events up explicitly instead of losing
    /// track of them (HEC can hand an `ackId` out again).
    pub async fn journal_put(
        &self,
        sink: &str,
        entry: JournalEntry,
    ) -> Result<Option<JournalEntry>, StoreError> {
        let sink = sink.to_owned();
        self.run("journal_put", move |db| {
            db.immediate(|tx| {
                let old = tx
                    .prepare_cached(
                        "SELECT request, seqs, sent_at, payload FROM sink_journal
                         WHERE sink = ?1 AND request = ?2",
                    )?
                    .query_row(params![sink, entry.request], from_row)
                    .optional()?;
                tx.prepare_cached(
                    "INSERT INTO sink_journal (sink, request, seqs, sent_at, payload)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (sink, request) DO UPDATE
                     SET seqs = excluded.seqs, sent_at = excluded.sent_at,
                         payload = excluded.payload",
                )?
                .execute(params![
                    sink,
                    entry.request,
                    join_seqs(&entry.seqs),
                    entry.sent_at,
                    entry.payload
                ])?;
                Ok(old)
            })
        })
        .await
    }

    /// Forgets one entry of `sink` (its outcome is known, or it was given up); nothing when
    /// there is none.
    pub async fn journal_remove(&self, sink: &str, request: &str) -> Result<(), StoreError> {
        let (sink, request) = (sink.to_owned(), request.to_owned());
        self.run("journal_remove", move |db| {
            db.conn
                .prepare_cached("DELETE FROM sink_journal WHERE sink = ?1 AND request = ?2")?
                .execute(params![sink, request])?;
            Ok(())
        })
        .await
    }

    /// Forgets the entries of `sink` sent before `sent_before` (Unix seconds), or all of them
    /// with `None`, and returns them, by request key.
    pub async fn journal_take(
        &self,
        sink: &str,
        sent_before: Option<i64>,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        let sink = sink.to_owned();
        let before = sent_before.unwrap_or(i64::MAX);
        self.run("journal_take", move |db| {
            db.immediate(|tx| {
                let taken = all(
                    tx,
                    "SELECT request, seqs, sent_at, payload FROM sink_journal
                     WHERE sink = ?1 AND sent_at < ?2 ORDER BY request",
                    params![sink, before],
                    from_row,
                )?;
                tx.prepare_cached("DELETE FROM sink_journal WHERE sink = ?1 AND sent_at < ?2")?
                    .execute(params![sink, before])?;
                Ok(taken)
            })
        })
        .await
    }

    /// Every entry of `sink`, by request key.
    pub async fn journal(&self, sink: &str) -> Result<Vec<JournalEntry>, StoreError> {
        let sink = sink.to_owned();
        self.run("journal", move |db| {
            all(
                &db.conn,
                "SELECT request, seqs, sent_at, payload FROM sink_journal WHERE sink = ?1
                 ORDER BY request",
                params![sink],
                from_row,
            )
        })
        .await
    }
}

/// The seqs as the `seqs` column holds them: decimal, comma-separated.
fn join_seqs(seqs: &[i64]) -> String {
    seqs.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// An entry from `SELECT request, seqs, sent_at, payload`.
fn from_row(row: &Row<'_>) -> rusqlite::Result<JournalEntry> {
    let seqs: String = row.get(1)?;
    Ok(JournalEntry {
        request: row.get(0)?,
        seqs: seqs
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect(),
        sent_at: row.get(2)?,
        payload: row.get(3)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(request: &str, seqs: &[i64], sent_at: i64) -> JournalEntry {
        JournalEntry {
            request: request.into(),
            seqs: seqs.to_vec(),
            sent_at,
            payload: None,
        }
    }

    #[tokio::test]
    async fn entries_are_per_sink_replaced_by_key_and_taken_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let a = entry("a", &[1, 2, 5], 100);
        let b = JournalEntry {
            payload: Some(r#"{"upload":"u1","parts":["e1"]}"#.into()),
            ..entry("b", &[], 10)
        };
        assert_eq!(store.journal_put("s3", a.clone()).await.unwrap(), None);
        assert_eq!(store.journal_put("s3", b.clone()).await.unwrap(), None);
        assert!(store.journal("kafka").await.unwrap().is_empty());
        assert_eq!(
            store.journal("s3").await.unwrap(),
            vec![a.clone(), b.clone()]
        );
        let a2 = entry("a", &[7], 120);
        assert_eq!(
            store.journal_put("s3", a2.clone()).await.unwrap(),
            Some(a),
            "the entry it replaced"
        );
        assert_eq!(store.journal_take("s3", Some(50)).await.unwrap(), vec![b]);
        assert_eq!(store.journal("s3").await.unwrap(), vec![a2.clone()]);
        store.journal_remove("s3", "a").await.unwrap();
        store.journal_remove("s3", "never").await.unwrap();
        assert!(store.journal("s3").await.unwrap().is_empty());
        store.journal_put("s3", a2.clone()).await.unwrap();
        assert_eq!(store.journal_take("s3", None).await.unwrap(), vec![a2]);
        assert!(store.journal("s3").await.unwrap().is_empty());
    }
}
