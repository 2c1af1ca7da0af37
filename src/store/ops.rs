//! Operational state: what `status`, `dead-letters` and the spool bound need beyond the two
//! commits. Lost ranges (gaps), the last error of each site, blocked sinks, dead-letter replay,
//! and dropping the oldest undelivered events when the spool is full.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use std::collections::BTreeMap;

use super::db::{Fail, SyncStore, decode_row, text_ref, to_i64};
use super::rows::RowBuilder;
use super::{SiteKey, Store, StoreError};
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

/// The most recent fetch error of a site.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteError {
    /// The site.
    pub key: SiteKey,
    /// The error, as logged.
    pub error: String,
    /// When it happened.
    pub at: i64,
}

/// Events of one site still in the spool file: not yet passed by every sink, or sharing a spool
/// row with such events (a row goes once every sink has passed all of its events).
#[derive(Clone, Debug, PartialEq)]
pub struct SiteSpool {
    /// The site.
    pub key: SiteKey,
    /// Spooled events.
    pub events: i64,
    /// Their body bytes.
    pub bytes: i64,
}

/// A sink that is paused until an operator acts.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockedSink {
    /// The sink.
    pub sink: String,
    /// The cause and the fix, as logged.
    pub reason: String,
}

/// Dead letters grouped by reason.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetterCount {
    /// The namespace.
    pub ns: String,
    /// The sink that rejected them.
    pub sink: String,
    /// Why.
    pub reason: String,
    /// How many.
    pub count: i64,
}

/// Undelivered events dropped because the spool was full (`when_full = "drop_oldest"`).
#[derive(Clone, Debug, PartialEq)]
pub struct SpoolDrop {
    /// The namespace they belonged to.
    pub ns: String,
    /// How many events.
    pub events: i64,
    /// Their body bytes.
    pub bytes: i64,
    /// Lowest dropped seq.
    pub from_seq: i64,
    /// Highest dropped seq.
    pub to_seq: i64,
    /// When.
    pub at: i64,
}

const BLOCKED_KEY: &str = "blocked";

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
        self.run("record_gap", move |db| db.record_gap(&key, from, until))
            .await
    }

    /// Every recorded lost range, oldest first.
    pub async fn gaps(&self) -> Result<Vec<Gap>, StoreError> {
        self.run("gaps", |db| db.gaps()).await
    }

    /// Remembers the latest fetch error of a site.
    pub async fn set_site_error(&self, key: &SiteKey, error: &str) -> Result<(), StoreError> {
        let key = key.clone();
        let error = error.to_owned();
        self.run("set_site_error", move |db| db.set_site_error(&key, &error))
            .await
    }

    /// The latest fetch error of every site that had one.
    pub async fn site_errors(&self) -> Result<Vec<SiteError>, StoreError> {
        self.run("site_errors", |db| db.site_errors()).await
    }

    /// Spooled events per site.
    pub async fn spool_by_site(&self) -> Result<Vec<SiteSpool>, StoreError> {
        self.run("spool_by_site", |db| db.spool_by_site()).await
    }

    /// Marks a sink blocked (`Some(reason)`) or no longer blocked (`None`).
    pub async fn set_blocked(&self, sink: &str, reason: Option<&str>) -> Result<(), StoreError> {
        let sink = sink.to_owned();
        let reason = reason.map(str::to_owned);
        self.run("set_blocked", move |db| {
            db.set_meta(&sink, BLOCKED_KEY, reason.as_deref())
        })
        .await
    }

    /// Sinks currently marked blocked.
    pub async fn blocked_sinks(&self) -> Result<Vec<BlockedSink>, StoreError> {
        self.run("blocked_sinks", |db| {
            Ok(db
                .meta_by_key(BLOCKED_KEY)?
                .into_iter()
                .map(|(sink, reason)| BlockedSink { sink, reason })
                .collect())
        })
        .await
    }

    /// Every sink's value of one `sink_meta` key (e.g. `possible_duplicates`).
    pub async fn sink_meta_by_key(&self, key: &str) -> Result<Vec<(String, String)>, StoreError> {
        let key = key.to_owned();
        self.run("sink_meta_by_key", move |db| db.meta_by_key(&key))
            .await
    }

    /// Dead letters counted by namespace, sink and reason.
    pub async fn dead_letter_counts(&self) -> Result<Vec<DeadLetterCount>, StoreError> {
        self.run("dead_letter_counts", |db| db.dead_letter_counts())
            .await
    }

    /// The dead letters [`Store::replay_dead_letters`] would select with `sink` and `ids`,
    /// counted by the sink that rejected them.
    pub async fn dead_letter_sinks(
        &self,
        sink: Option<&str>,
        ids: Vec<i64>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let sink = sink.map(str::to_owned);
        self.run("dead_letter_sinks", move |db| {
            db.dead_letter_sinks(sink.as_deref(), &ids)
        })
        .await
    }

    /// Moves dead letters back into the spool of namespace `into_ns`, each for the one sink that
    /// rejected it; `sink` and `ids` narrow the selection. Returns how many were re-queued.
    pub async fn replay_dead_letters(
        &self,
        into_ns: &str,
        sink: Option<&str>,
        ids: Vec<i64>,
    ) -> Result<usize, StoreError> {
        let into_ns = into_ns.to_owned();
        let sink = sink.map(str::to_owned);
        let n = self
            .run("replay_dead_letters", move |db| {
                db.replay_dead_letters(&into_ns, sink.as_deref(), &ids)
            })
            .await?;
        if n > 0 {
            self.changed().notify_waiters();
        }
        Ok(n)
    }

    /// Total body bytes in the spool, every namespace.
    pub async fn spool_bytes(&self) -> Result<i64, StoreError> {
        self.run("spool_bytes", |db| db.spool_bytes()).await
    }

    /// Deletes the oldest spooled events, whatever sinks still wait for them, until at most
    /// `keep_bytes` remain; records and returns what was dropped per namespace.
    pub async fn drop_oldest(&self, keep_bytes: i64) -> Result<Vec<SpoolDrop>, StoreError> {
        self.run("drop_oldest", move |db| db.drop_oldest(keep_bytes))
            .await
    }

    /// Every recorded drop, oldest first.
    pub async fn spool_drops(&self) -> Result<Vec<SpoolDrop>, StoreError> {
        self.run("spool_drops", |db| db.spool_drops()).await
    }
}

impl SyncStore {
    pub(super) fn record_gap(
        &mut self,
        key: &SiteKey,
        from: i64,
        until: i64,
    ) -> Result<GapRecord, StoreError> {
        let result = (|| -> Result<_, Fail> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
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
            tx.commit()?;
            Ok(record)
        })();
        self.finish("record_gap", result)
    }

    pub(super) fn gaps(&mut self) -> Result<Vec<Gap>, StoreError> {
        let result = (|| -> Result<_, Fail> {
            let mut stmt = self.conn.prepare_cached(
                "SELECT ns, corp, site, from_ts, until_ts, recorded_at FROM gaps
                 ORDER BY ns, corp, site, from_ts",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(Gap {
                    key: site_key(row)?,
                    from: row.get(3)?,
                    until: row.get(4)?,
                    recorded_at: row.get(5)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })();
        self.finish("gaps", result)
    }

    pub(super) fn set_site_error(&mut self, key: &SiteKey, error: &str) -> Result<(), StoreError> {
        let result = (|| -> Result<_, Fail> {
            self.conn
                .prepare_cached(
                    "INSERT INTO site_errors (ns, corp, site, error, at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (ns, corp, site) DO UPDATE SET error = excluded.error, at = excluded.at",
                )?
                .execute(params![key.ns, key.corp, key.site, error, now()])?;
            Ok(())
        })();
        self.finish("set_site_error", result)
    }

    pub(super) fn site_errors(&mut self) -> Result<Vec<SiteError>, StoreError> {
        let result = (|| -> Result<_, Fail> {
            let mut stmt = self.conn.prepare_cached(
                "SELECT ns, corp, site, error, at FROM site_errors ORDER BY ns, corp, site",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(SiteError {
                    key: site_key(row)?,
                    error: row.get(3)?,
                    at: row.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })();
        self.finish("site_errors", result)
    }

    pub(super) fn spool_by_site(&mut self) -> Result<Vec<SiteSpool>, StoreError> {
        let result = (|| -> Result<_, Fail> {
            let mut stmt = self.conn.prepare_cached(
                "SELECT ns, corp, site, SUM(events), COALESCE(SUM(bytes), 0) FROM spool
                 GROUP BY ns, corp, site ORDER BY ns, corp, site",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(SiteSpool {
                    key: site_key(row)?,
                    events: row.get(3)?,
                    bytes: row.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })();
        self.finish("spool_by_site", result)
    }

    /// Sets (`Some`) or deletes (`None`) one `sink_meta` value.
    pub(super) fn set_meta(
        &mut self,
        sink: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), StoreError> {
        let result = (|| -> Result<_, Fail> {
            match value {
                Some(v) => self
                    .conn
                    .prepare_cached(
                        "INSERT INTO sink_meta (sink, key, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT (sink, key) DO UPDATE SET value = excluded.value",
                    )?
                    .execute(params![sink, key, v])?,
                None => self
                    .conn
                    .prepare_cached("DELETE FROM sink_meta WHERE sink = ?1 AND key = ?2")?
                    .execute(params![sink, key])?,
            };
            Ok(())
        })();
        self.finish("set_meta", result)
    }

    /// Every sink's value of one `sink_meta` key.
    pub(super) fn meta_by_key(&mut self, key: &str) -> Result<Vec<(String, String)>, StoreError> {
        let result = (|| -> Result<_, Fail> {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT sink, value FROM sink_meta WHERE key = ?1 ORDER BY sink")?;
            let rows = stmt.query_map(params![key], |row| Ok((row.get(0)?, row.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })();
        self.finish("meta_by_key", result)
    }

    pub(super) fn dead_letter_counts(&mut self) -> Result<Vec<DeadLetterCount>, StoreError> {
        let result = (|| -> Result<_, Fail> {
            let mut stmt = self.conn.prepare_cached(
                "SELECT ns, sink, reason, COUNT(*) FROM dead_letters
                 GROUP BY ns, sink, reason ORDER BY ns, sink, COUNT(*) DESC",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(DeadLetterCount {
                    ns: row.get(0)?,
                    sink: row.get(1)?,
                    reason: row.get(2)?,
                    count: row.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })();
        self.finish("dead_letter_counts", result)
    }

    pub(super) fn dead_letter_sinks(
        &mut self,
        sink: Option<&str>,
        ids: &[i64],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let result = (|| -> Result<_, Fail> {
            // Without a sink, every sink's letters but the feed's (see `feed_letters`).
            let mut stmt = self.conn.prepare_cached(
                "SELECT dl_id, sink FROM dead_letters WHERE (?1 IS NULL AND sink != ?2) OR sink = ?1
                 ORDER BY dl_id",
            )?;
            let rows = stmt
                .query_map(params![sink, super::FEED_LETTERS_SINK], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut counts = std::collections::BTreeMap::<String, i64>::new();
            for (id, sink) in rows {
                // The same selection as replay_dead_letters.
                if ids.is_empty() || ids.contains(&id) {
                    *counts.entry(sink).or_default() += 1;
                }
            }
            Ok(counts.into_iter().collect())
        })();
        self.finish("dead_letter_sinks", result)
    }

    pub(super) fn replay_dead_letters(
        &mut self,
        into_ns: &str,
        sink: Option<&str>,
        ids: &[i64],
    ) -> Result<usize, StoreError> {
        let result = (|| -> Result<_, Fail> {
            let now = now();
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let selected: Vec<i64> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT dl_id FROM dead_letters WHERE (?1 IS NULL AND sink != ?2) OR sink = ?1
                     ORDER BY dl_id",
                )?;
                let all = stmt
                    .query_map(params![sink, super::FEED_LETTERS_SINK], |row| row.get(0))?
                    .collect::<rusqlite::Result<Vec<i64>>>()?;
                if ids.is_empty() {
                    all
                } else {
                    all.into_iter().filter(|id| ids.contains(id)).collect()
                }
            };
            {
                // The event goes back for the one sink that rejected it (the others already
                // have it), in a row of its own: seq from AUTOINCREMENT, the frame spelt as
                // `rows::RowBuilder` spells it.
                let mut insert = tx.prepare_cached(
                    "INSERT INTO spool (ns, corp, site, fetched_at, events, bytes, frame, body, target)
                     SELECT ?1, corp, site, ?2, 1, length(CAST(body AS BLOB)),
                            printf('%d,%d,%d:', ts, length(CAST(body AS BLOB)),
                                   length(CAST(id AS BLOB))) || id,
                            body, sink
                     FROM dead_letters WHERE dl_id = ?3",
                )?;
                let mut delete = tx.prepare_cached("DELETE FROM dead_letters WHERE dl_id = ?1")?;
                for id in &selected {
                    insert.execute(params![into_ns, now, id])?;
                    delete.execute(params![id])?;
                }
            }
            tx.commit()?;
            Ok(selected.len())
        })();
        self.finish("replay_dead_letters", result)
    }

    pub(super) fn spool_bytes(&mut self) -> Result<i64, StoreError> {
        let result = (|| -> Result<_, Fail> {
            Ok(self
                .conn
                .prepare_cached("SELECT COALESCE(SUM(bytes), 0) FROM spool")?
                .query_row([], |row| row.get(0))?)
        })();
        self.finish("spool_bytes", result)
    }

    pub(super) fn drop_oldest(&mut self, keep_bytes: i64) -> Result<Vec<SpoolDrop>, StoreError> {
        let path = self.path().to_path_buf();
        let result = (|| -> Result<_, Fail> {
            let now = now();
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let total: i64 = tx
                .prepare_cached("SELECT COALESCE(SUM(bytes), 0) FROM spool")?
                .query_row([], |row| row.get(0))?;
            let mut excess = total - keep_bytes;
            if excess <= 0 {
                return Ok(Vec::new());
            }
            let mut drops: BTreeMap<String, SpoolDrop> = BTreeMap::new();
            // Per namespace, the seq every active sink has passed. A row's leading events may
            // be passed while later ones are pending; deleting those loses nothing, so they
            // free space but are not counted as dropped.
            let mut passed: BTreeMap<String, Option<i64>> = BTreeMap::new();
            // Rows up to `whole` go entirely; then maybe the front of one more.
            let mut whole: Option<i64> = None;
            let mut trim: Option<(i64, RowBuilder)> = None;
            {
                let mut stmt = tx.prepare_cached(
                    "SELECT seq, events, ns, target, frame, body FROM spool ORDER BY seq",
                )?;
                let mut min_offset = tx.prepare_cached(
                    "SELECT MIN(offset_seq) FROM sink_offsets WHERE ns = ?1 AND active = 1",
                )?;
                let mut rows = stmt.query([])?;
                // seq grows with fetch order across namespaces: the smallest are the oldest.
                while excess > 0 {
                    let Some(row) = rows.next()? else { break };
                    let (last, n, ns): (i64, i64, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
                    let target: Option<String> = row.get(3)?;
                    let (frame, text) = (text_ref(row, 4)?, text_ref(row, 5)?);
                    let entries = decode_row(&path, last, frame, text, n)?;
                    let passed_upto = match (&target, passed.get(&ns)) {
                        // A replayed dead letter's row goes as soon as its one sink passes
                        // it: one still here is undelivered.
                        (Some(_), _) => None,
                        (None, Some(p)) => *p,
                        (None, None) => {
                            let p: Option<i64> =
                                min_offset.query_row(params![ns], |row| row.get(0))?;
                            passed.insert(ns.clone(), p);
                            p
                        }
                    };
                    let first = last - n + 1;
                    let mut taken = 0;
                    for (i, e) in entries.iter().enumerate() {
                        if excess <= 0 {
                            break;
                        }
                        let seq = first + to_i64(i);
                        let bytes = to_i64(e.body.len());
                        excess -= bytes;
                        taken = i + 1;
                        if passed_upto.is_some_and(|p| seq <= p) {
                            continue;
                        }
                        let d = drops.entry(ns.clone()).or_insert_with(|| SpoolDrop {
                            ns: ns.clone(),
                            events: 0,
                            bytes: 0,
                            from_seq: seq,
                            to_seq: seq,
                            at: now,
                        });
                        d.events += 1;
                        d.bytes += bytes;
                        d.to_seq = seq;
                    }
                    if taken == entries.len() {
                        whole = Some(last);
                    } else {
                        let mut rest = RowBuilder::default();
                        for e in &entries[taken..] {
                            rest.push(e.ts, e.id, &text[e.body.clone()]);
                        }
                        trim = Some((last, rest));
                    }
                }
            }
            if let Some(cutoff) = whole {
                tx.prepare_cached("DELETE FROM spool WHERE seq <= ?1")?
                    .execute(params![cutoff])?;
            }
            if let Some((seq, rest)) = trim {
                // The row keeps its seq (its last event's) and loses its first events.
                tx.prepare_cached(
                    "UPDATE spool SET events = ?2, bytes = ?3, frame = ?4, body = ?5 WHERE seq = ?1",
                )?
                .execute(params![
                    seq,
                    to_i64(rest.events),
                    to_i64(rest.body.len()),
                    rest.frame,
                    rest.body
                ])?;
            }
            let drops: Vec<SpoolDrop> = drops.into_values().collect();
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO spool_drops (ns, events, bytes, from_seq, to_seq, at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for d in &drops {
                    insert.execute(params![d.ns, d.events, d.bytes, d.from_seq, d.to_seq, d.at])?;
                }
            }
            tx.commit()?;
            Ok(drops)
        })();
        self.finish("drop_oldest", result)
    }

    pub(super) fn spool_drops(&mut self) -> Result<Vec<SpoolDrop>, StoreError> {
        let result = (|| -> Result<_, Fail> {
            let mut stmt = self.conn.prepare_cached(
                "SELECT ns, events, bytes, from_seq, to_seq, at FROM spool_drops ORDER BY drop_id",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(SpoolDrop {
                    ns: row.get(0)?,
                    events: row.get(1)?,
                    bytes: row.get(2)?,
                    from_seq: row.get(3)?,
                    to_seq: row.get(4)?,
                    at: row.get(5)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })();
        self.finish("spool_drops", result)
    }
}

fn site_key(row: &rusqlite::Row<'_>) -> rusqlite::Result<SiteKey> {
    Ok(SiteKey {
        ns: row.get(0)?,
        corp: row.get(1)?,
        site: row.get(2)?,
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
