//! Events a sink rejected for good (`dead_letters`): written by [`Store::settle_range`] in the
//! settle's own transaction, listed and counted for `dead-letters list` and `status`, and
//! replayed into the spool for the one sink that rejected each.
//!
//! The feed's own dead letters share the table under a pseudo-sink (see `feed_letters`); a
//! replay without a sink leaves them, since no sink rejected them and they would fail again.

use std::collections::BTreeMap;

use rusqlite::{Connection, params};

use super::conn::{Db, all, to_i64};
use super::error::{Fail, StoreError};
use super::{FEED_LETTERS_SINK, SpooledEvent, Store};
use crate::time::now;

/// An event a sink rejected for good, with the reason.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// Identifies the dead letter (for listing and replay); never reused.
    pub rowid: i64,
    /// The namespace.
    pub ns: String,
    /// The sink that rejected the event.
    pub sink: String,
    /// Corp name.
    pub corp: String,
    /// Site name.
    pub site: String,
    /// Upstream request id.
    pub id: String,
    /// Request timestamp, Unix seconds.
    pub ts: i64,
    /// The JSON text exactly as the API sent it.
    pub body: String,
    /// Why the sink rejected it.
    pub reason: String,
    /// When it was dead-lettered, Unix seconds.
    pub at: i64,
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

impl Store {
    /// Up to `limit` dead letters, oldest first, of one sink or (with `None`) of all sinks.
    pub async fn dead_letters(
        &self,
        sink: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let sink = sink.map(str::to_owned);
        self.run("dead_letters", move |db| {
            all(
                &db.conn,
                "SELECT dl_id, ns, sink, corp, site, id, ts, body, reason, at
                 FROM dead_letters WHERE ?1 IS NULL OR sink = ?1
                 ORDER BY dl_id LIMIT ?2",
                params![sink, to_i64(limit)],
                |row| {
                    Ok(DeadLetter {
                        rowid: row.get(0)?,
                        ns: row.get(1)?,
                        sink: row.get(2)?,
                        corp: row.get(3)?,
                        site: row.get(4)?,
                        id: row.get(5)?,
                        ts: row.get(6)?,
                        body: row.get(7)?,
                        reason: row.get(8)?,
                        at: row.get(9)?,
                    })
                },
            )
        })
        .await
    }

    /// Dead letters counted by namespace, sink and reason.
    pub async fn dead_letter_counts(&self) -> Result<Vec<DeadLetterCount>, StoreError> {
        self.run("dead_letter_counts", |db| {
            all(
                &db.conn,
                "SELECT ns, sink, reason, COUNT(*) FROM dead_letters
                 GROUP BY ns, sink, reason ORDER BY ns, sink, COUNT(*) DESC",
                [],
                |row| {
                    Ok(DeadLetterCount {
                        ns: row.get(0)?,
                        sink: row.get(1)?,
                        reason: row.get(2)?,
                        count: row.get(3)?,
                    })
                },
            )
        })
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
            let mut counts = BTreeMap::<String, i64>::new();
            for (_, sink) in select(&db.conn, sink.as_deref(), &ids)? {
                *counts.entry(sink).or_default() += 1;
            }
            Ok(counts.into_iter().collect())
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
                replay(db, &into_ns, sink.as_deref(), &ids)
            })
            .await?;
        if n > 0 {
            self.changed().notify_waiters();
        }
        Ok(n)
    }
}

/// Keeps `ev` as a dead letter of `sink` (inside the settle's transaction).
pub(super) fn keep(
    conn: &Connection,
    ns: &str,
    sink: &str,
    ev: &SpooledEvent,
    reason: &str,
    at: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO dead_letters (ns, sink, corp, site, id, ts, body, reason, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        ns, sink, ev.corp, ev.site, ev.id, ev.ts, ev.body, reason, at
    ])?;
    Ok(())
}

/// The dead letters of `sink` (without one, of every sink but the feed: see `feed_letters`),
/// narrowed to `ids` unless it is empty: `(dl_id, sink)` in `dl_id` order. The one selection
/// that both counting and replaying use.
fn select(conn: &Connection, sink: Option<&str>, ids: &[i64]) -> Result<Vec<(i64, String)>, Fail> {
    let rows = all(
        conn,
        "SELECT dl_id, sink FROM dead_letters WHERE (?1 IS NULL AND sink != ?2) OR sink = ?1
         ORDER BY dl_id",
        params![sink, FEED_LETTERS_SINK],
        |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
    )?;
    Ok(rows
        .into_iter()
        .filter(|(id, _)| ids.is_empty() || ids.contains(id))
        .collect())
}

/// [`Store::replay_dead_letters`]'s transaction.
fn replay(db: &mut Db, into_ns: &str, sink: Option<&str>, ids: &[i64]) -> Result<usize, Fail> {
    let now = now();
    db.immediate(|tx| {
        let selected = select(tx, sink, ids)?;
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
        for (id, _) in &selected {
            insert.execute(params![into_ns, now, id])?;
            delete.execute(params![id])?;
        }
        Ok(selected.len())
    })
}
