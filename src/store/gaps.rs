//! Ranges of the feed that were lost (`gaps`): the API no longer served them when they were
//! asked for (older than its retention), so `status` can say what is missing and since when.

use rusqlite::{OptionalExtension, params};

use super::conn::{Db, all};
use super::error::{Fail, StoreError};
use super::{SiteKey, Store};
use crate::time::now;

/// A range of the feed that was never fetched because the API no longer served it.
#[derive(Clone, Debug, PartialEq)]
pub struct Gap {
    /// The site.
    pub key: SiteKey,
    /// Start of the lost range (inclusive), Unix seconds.
    pub from: i64,
    /// End of the lost range (exclusive), Unix seconds.
    pub until: i64,
    /// When it was recorded.
    pub recorded_at: i64,
}

/// What [`Store::record_gap`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct GapRecord {
    /// The recorded range after this call (the extended one, when it extended one).
    pub from: i64,
    /// Its end.
    pub until: i64,
    /// True when an existing range grew (or already covered the new one); false when the range
    /// is a new loss.
    pub extended: bool,
    /// Seconds lost that no earlier call recorded: what to add to a lost-seconds counter.
    pub added_secs: i64,
}

impl Store {
    /// Records that `[from, until)` of a site is lost. A range that starts inside or right at
    /// the end of a recorded one extends it (an outage longer than the retention loses a little
    /// more on every retry: one range, not one per retry). Idempotent: recording the same range
    /// again adds nothing.
    pub async fn record_gap(
        &self,
        key: &SiteKey,
        from: i64,
        until: i64,
    ) -> Result<GapRecord, StoreError> {
        let key = key.clone();
        self.run("record_gap", move |db| record_gap(db, &key, from, until))
            .await
    }

    /// Every recorded lost range, oldest first.
    pub async fn gaps(&self) -> Result<Vec<Gap>, StoreError> {
        self.run("gaps", |db| {
            all(
                &db.conn,
                "SELECT ns, corp, site, from_ts, until_ts, recorded_at FROM gaps
                 ORDER BY ns, corp, site, from_ts",
                [],
                |row| {
                    Ok(Gap {
                        key: SiteKey::from_row(row)?,
                        from: row.get(3)?,
                        until: row.get(4)?,
                        recorded_at: row.get(5)?,
                    })
                },
            )
        })
        .await
    }
}

/// [`Store::record_gap`]'s transaction.
fn record_gap(db: &mut Db, key: &SiteKey, from: i64, until: i64) -> Result<GapRecord, Fail> {
    db.immediate(|tx| {
        let touching: Option<(i64, i64)> = tx
            .prepare_cached(
                "SELECT from_ts, until_ts FROM gaps
                 WHERE ns = ?1 AND corp = ?2 AND site = ?3 AND from_ts <= ?4 AND until_ts >= ?4
                 ORDER BY from_ts DESC LIMIT 1",
            )?
            .query_row(params![key.ns, key.corp, key.site, from], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?;
        let record = match touching {
            Some((old_from, old_until)) => {
                let new_until = old_until.max(until);
                tx.prepare_cached(
                    "UPDATE gaps SET until_ts = ?5
                     WHERE ns = ?1 AND corp = ?2 AND site = ?3 AND from_ts = ?4",
                )?
                .execute(params![key.ns, key.corp, key.site, old_from, new_until])?;
                GapRecord {
                    from: old_from,
                    until: new_until,
                    extended: true,
                    added_secs: new_until - old_until,
                }
            }
            None => {
                tx.prepare_cached(
                    "INSERT INTO gaps (ns, corp, site, from_ts, until_ts, recorded_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    key.ns,
                    key.corp,
                    key.site,
                    from,
                    until,
                    now()
                ])?;
                GapRecord {
                    from,
                    until,
                    extended: false,
                    added_secs: until - from,
                }
            }
        };
        Ok(record)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(site: &str) -> SiteKey {
        SiteKey {
            ns: "run".into(),
            corp: "acme".into(),
            site: site.into(),
        }
    }

    #[tokio::test]
    async fn a_loss_that_goes_on_extends_one_range_and_counts_each_second_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let www = key("www");
        let first = store.record_gap(&www, 1_000, 4_600).await.unwrap();
        assert_eq!(
            first,
            GapRecord {
                from: 1_000,
                until: 4_600,
                extended: false,
                added_secs: 3_600
            }
        );
        // The next retry starts where the cursor jumped to.
        let second = store.record_gap(&www, 4_600, 4_900).await.unwrap();
        assert_eq!((second.from, second.until), (1_000, 4_900));
        assert!(second.extended);
        assert_eq!(second.added_secs, 300);
        // A crash between the record and the cursor jump records the same range again.
        let again = store.record_gap(&www, 4_600, 4_900).await.unwrap();
        assert!(again.extended);
        assert_eq!(again.added_secs, 0);
        // A range starting inside the recorded one adds only its new part.
        let inside = store.record_gap(&www, 2_000, 5_000).await.unwrap();
        assert_eq!(
            (inside.from, inside.until, inside.added_secs),
            (1_000, 5_000, 100)
        );
        // Another site's loss is its own.
        let api = store.record_gap(&key("api"), 4_600, 5_000).await.unwrap();
        assert!(!api.extended);
        // After fetching resumed, a later loss is a new episode.
        let later = store.record_gap(&www, 9_000, 9_600).await.unwrap();
        assert!(!later.extended);
        let gaps: Vec<(String, i64, i64)> = store
            .gaps()
            .await
            .unwrap()
            .into_iter()
            .map(|g| (g.key.site, g.from, g.until))
            .collect();
        assert_eq!(
            gaps,
            [
                ("api".to_string(), 4_600, 5_000),
                ("www".to_string(), 1_000, 5_000),
                ("www".to_string(), 9_000, 9_600),
            ]
        );
    }
}
