//! Dead letters of the feed: records the API sent that cannot be exported (no `id`, an `id`
//! that is not a string, bytes that are not UTF-8), kept with the reason when the operator
//! opted into `poll.skip_bad_records`, so the rest of their page flows.
//!
//! They live in the `dead_letters` table beside the sinks' ones, under the pseudo-sink
//! [`FEED_LETTERS_SINK`], which no configured sink can be named (`:` is not allowed in sink
//! names): `dead-letters list` shows them; `replay` refuses them, since no sink rejected them
//! and they would fail again.

use rusqlite::params;

use super::conn::{Db, all};
use super::error::{Fail, StoreError};
use super::{SiteKey, Store};
use crate::time::now;

/// The `sink` column of a feed dead letter.
pub const FEED_LETTERS_SINK: &str = "feed:bad-records";

/// One record of a page to keep as a dead letter.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedLetter {
    /// The record's id, `""` when it has no usable one.
    pub id: String,
    /// Its timestamp, or its window's start.
    pub ts: i64,
    /// Its text as sent (bytes that are not UTF-8 shown as `?`).
    pub body: String,
    /// What is wrong with it, and where it was.
    pub reason: String,
}

impl Store {
    /// Keeps `letters` of one site as feed dead letters, in one transaction. A letter already
    /// kept (same site, text and reason: the window was fetched again after a crash or a later
    /// page's failure) is not kept twice. Returns how many were new.
    pub async fn keep_feed_letters(
        &self,
        key: &SiteKey,
        letters: Vec<FeedLetter>,
    ) -> Result<usize, StoreError> {
        let key = key.clone();
        self.run("keep_feed_letters", move |db| keep(db, &key, &letters))
            .await
    }

    /// Feed dead letters per site.
    pub async fn feed_letter_counts(&self) -> Result<Vec<(SiteKey, i64)>, StoreError> {
        self.run_read("feed_letter_counts", |db| {
            all(
                &db.conn,
                "SELECT ns, corp, site, COUNT(*) FROM dead_letters WHERE sink = ?1
                 GROUP BY ns, corp, site ORDER BY ns, corp, site",
                params![FEED_LETTERS_SINK],
                |row| Ok((SiteKey::from_row(row)?, row.get(3)?)),
            )
        })
        .await
    }
}

/// [`Store::keep_feed_letters`]'s transaction.
fn keep(db: &mut Db, key: &SiteKey, letters: &[FeedLetter]) -> Result<usize, Fail> {
    let at = now();
    let tx = db.conn.transaction()?;
    let mut added = 0;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO dead_letters (ns, sink, corp, site, id, ts, body, reason, at)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9
             WHERE NOT EXISTS (SELECT 1 FROM dead_letters WHERE ns = ?1 AND sink = ?2
                 AND corp = ?3 AND site = ?4 AND body = ?7 AND reason = ?8)",
        )?;
        for l in letters {
            added += insert.execute(params![
                key.ns,
                FEED_LETTERS_SINK,
                key.corp,
                key.site,
                l.id,
                l.ts,
                l.body,
                l.reason,
                at
            ])?;
        }
    }
    tx.commit()?;
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_letter_is_kept_once_and_counted_per_site() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let key = SiteKey {
            ns: "run".into(),
            corp: "acme".into(),
            site: "www".into(),
        };
        let letter = FeedLetter {
            id: String::new(),
            ts: 60,
            body: r#"{"id":5}"#.into(),
            reason: "data[1] (record 2 of 3): id is a number, not a string".into(),
        };
        let two = vec![
            letter.clone(),
            FeedLetter {
                body: r#"{"x":1}"#.into(),
                ..letter.clone()
            },
        ];
        assert_eq!(store.keep_feed_letters(&key, two.clone()).await.unwrap(), 2);
        assert_eq!(store.keep_feed_letters(&key, two).await.unwrap(), 0);
        assert_eq!(store.feed_letter_counts().await.unwrap(), vec![(key, 2)]);
        let listed = store
            .dead_letters(Some(FEED_LETTERS_SINK), 10)
            .await
            .unwrap();
        assert_eq!(listed[0].body, r#"{"id":5}"#);
        assert_eq!(listed[0].sink, FEED_LETTERS_SINK);
        // `replay --all` leaves them: no sink rejected them, and they would fail again.
        assert!(
            store
                .dead_letter_sinks(None, vec![])
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .replay_dead_letters("run", None, vec![])
                .await
                .unwrap(),
            0
        );
        assert_eq!(store.feed_letter_counts().await.unwrap()[0].1, 2);
    }
}
