//! Where each sink stands in the spool: `sink_offsets` (one offset per sink and namespace,
//! and whether the sink is active) and `sink_settled` (batches settled ahead of the offset).
//!
//! [`Store::settle_range`] is the second of the two commits: it moves a sink's offset (and
//! writes its dead letters) in one transaction, after the sink acknowledged the batch, then
//! prunes the spool rows every active sink has passed. A crash between send and settle resends
//! the batch: at least once.

use rusqlite::{Connection, OptionalExtension, params};

use super::conn::Db;
use super::error::{Fail, StoreError};
use super::spool::{max_seq, prune_spool};
use super::{SpooledEvent, Store, dead_letters};
use crate::time::now;

impl Store {
    /// Declare the sinks active in namespace `ns`: creates offset rows at 0 for new ones and
    /// forgets nothing (a sink configured again later resumes at its old offset). Only
    /// active sinks hold back deletion of spool rows; sinks of `ns` not in `sinks` become
    /// inactive, and rows that only they were holding back are deleted right away.
    pub async fn register_sinks(&self, ns: &str, sinks: &[String]) -> Result<(), StoreError> {
        let ns = ns.to_owned();
        let sinks = sinks.to_vec();
        self.run("register_sinks", move |db| register_sinks(db, &ns, &sinks))
            .await
    }

    /// In ONE transaction: write this sink's dead letters (event + reason), move its offset to
    /// `upto_seq`, then delete the spool rows of `ns` that every active sink has passed.
    ///
    /// Idempotent: the offset never moves backwards, and dead letters are only written for
    /// events in the newly settled range (`offset < seq <= upto_seq`), so repeating a settle
    /// after a crash or retry writes nothing twice. Dead letters outside that range are
    /// ignored (those events stay pending and will be read again).
    pub async fn settle(
        &self,
        ns: &str,
        sink: &str,
        upto_seq: i64,
        dead: Vec<(SpooledEvent, String)>,
    ) -> Result<(), StoreError> {
        self.settle_range(ns, sink, None, upto_seq, dead).await
    }

    /// Like [`Store::settle`] for the events in `(after, upto_seq]` only: one batch of a
    /// driver with several in flight. A range that starts past the offset (an earlier batch
    /// is still in flight) is recorded and skipped by later reads, and the offset moves over
    /// it once the ranges before it are settled. So a restart resends only batches that were
    /// really unfinished. `after = None` means "from the offset".
    pub async fn settle_range(
        &self,
        ns: &str,
        sink: &str,
        after: Option<i64>,
        upto_seq: i64,
        dead: Vec<(SpooledEvent, String)>,
    ) -> Result<(), StoreError> {
        let ns = ns.to_owned();
        let sink = sink.to_owned();
        self.run("settle", move |db| {
            settle(db, &ns, &sink, after, upto_seq, &dead)
        })
        .await
    }

    /// Number of spooled events of `ns` after the sink's offset (counts every row: for
    /// tests and reports, not for polling).
    pub async fn pending(&self, ns: &str, sink: &str) -> Result<i64, StoreError> {
        let ns = ns.to_owned();
        let sink = sink.to_owned();
        self.run("pending", move |db| pending(db, &ns, &sink)).await
    }

    /// Whether any spooled event of `ns` is after the sink's offset. Unlike [`Store::pending`]
    /// it stops at the first row, so it can be polled while a large backlog drains.
    pub async fn has_pending(&self, ns: &str, sink: &str) -> Result<bool, StoreError> {
        let ns = ns.to_owned();
        let sink = sink.to_owned();
        self.run_read("has_pending", move |db| has_pending(db, &ns, &sink))
            .await
    }
}

/// [`Store::register_sinks`]'s transaction.
fn register_sinks(db: &mut Db, ns: &str, sinks: &[String]) -> Result<(), Fail> {
    let now = now();
    db.immediate(|tx| {
        tx.execute(
            "UPDATE sink_offsets SET active = 0 WHERE ns = ?1 AND active = 1",
            params![ns],
        )?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO sink_offsets (ns, sink, offset_seq, active, updated_at)
                 VALUES (?1, ?2, 0, 1, ?3)
                 ON CONFLICT (ns, sink) DO UPDATE SET active = 1",
            )?;
            for sink in sinks {
                upsert.execute(params![ns, sink, now])?;
            }
        }
        // A sink that left may have been the one holding rows back.
        prune_spool(tx, ns)?;
        Ok(())
    })
}

/// Settles the events of `ns` for `sink` in `(after, upto_seq]` (`after = None`: from
/// the sink's offset) and writes their dead letters. A range starting at or before the
/// offset moves the offset, together with every recorded range it now reaches; a range
/// further ahead is recorded in `sink_settled` until the gap before it closes.
fn settle(
    db: &mut Db,
    ns: &str,
    sink: &str,
    after: Option<i64>,
    upto_seq: i64,
    dead: &[(SpooledEvent, String)],
) -> Result<(), Fail> {
    let now = now();
    db.immediate(|tx| {
        let offset = sink_offset(tx, ns, sink)?;
        let after = after.unwrap_or(offset).max(offset);
        if upto_seq <= after {
            // Already settled (a retried or stale call): nothing to write.
            return Ok(());
        }
        // The highest seq ever assigned (any namespace). Settling beyond it would skip
        // events that do not exist yet.
        let max = max_seq(tx)?;
        if upto_seq > max {
            return Err(Fail::Store(StoreError::OffsetBeyondSpool {
                ns: ns.to_owned(),
                sink: sink.to_owned(),
                upto: upto_seq,
                max,
            }));
        }
        {
            let mut recorded = tx.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM sink_settled WHERE ns = ?1 AND sink = ?2
                 AND after_seq < ?3 AND upto_seq >= ?3)",
            )?;
            for (ev, reason) in dead {
                // Only what this call settles for the first time: a repeated settle after
                // a crash or retry writes no dead letter twice.
                if ev.seq <= after
                    || ev.seq > upto_seq
                    || recorded.query_row(params![ns, sink, ev.seq], |row| row.get(0))?
                {
                    continue;
                }
                dead_letters::keep(tx, ns, sink, ev, reason, now)?;
            }
        }
        tx.prepare_cached(
            "INSERT INTO sink_settled (ns, sink, after_seq, upto_seq) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (ns, sink, after_seq)
             DO UPDATE SET upto_seq = max(upto_seq, excluded.upto_seq)",
        )?
        .execute(params![ns, sink, after, upto_seq])?;
        // Move the offset over every recorded range it reaches, then forget those.
        let mut reach = offset;
        {
            let mut next = tx.prepare_cached(
                "SELECT max(upto_seq) FROM sink_settled
                 WHERE ns = ?1 AND sink = ?2 AND after_seq <= ?3 AND upto_seq > ?3",
            )?;
            while let Some(upto) =
                next.query_row(params![ns, sink, reach], |row| row.get::<_, Option<i64>>(0))?
            {
                reach = upto;
            }
        }
        tx.prepare_cached(
            "DELETE FROM sink_settled WHERE ns = ?1 AND sink = ?2 AND upto_seq <= ?3",
        )?
        .execute(params![ns, sink, reach])?;
        if reach > offset {
            tx.prepare_cached(
                "UPDATE sink_offsets SET offset_seq = ?3, updated_at = ?4
                 WHERE ns = ?1 AND sink = ?2",
            )?
            .execute(params![ns, sink, reach, now])?;
            prune_spool(tx, ns)?;
        }
        Ok(())
    })
}

fn pending(db: &mut Db, ns: &str, sink: &str) -> Result<i64, Fail> {
    let offset = sink_offset(&db.conn, ns, sink)?;
    let n = db
        .conn
        .prepare_cached(
            // A row's events after the offset: all of them, or its last `seq - offset`.
            "SELECT COALESCE(SUM(min(events, seq - ?2)), 0) FROM spool
             WHERE ns = ?1 AND seq > ?2 AND (target IS NULL OR target = ?3)",
        )?
        .query_row(params![ns, offset, sink], |row| row.get(0))?;
    Ok(n)
}

fn has_pending(db: &mut Db, ns: &str, sink: &str) -> Result<bool, Fail> {
    let offset = sink_offset(&db.conn, ns, sink)?;
    let found = db
        .conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM spool
             WHERE ns = ?1 AND seq > ?2 AND (target IS NULL OR target = ?3))",
        )?
        .query_row(params![ns, offset, sink], |row| row.get(0))?;
    Ok(found)
}

/// The sink's offset; [`StoreError::UnknownSink`] if it was never registered in `ns`.
pub(super) fn sink_offset(conn: &Connection, ns: &str, sink: &str) -> Result<i64, Fail> {
    conn.prepare_cached("SELECT offset_seq FROM sink_offsets WHERE ns = ?1 AND sink = ?2")?
        .query_row(params![ns, sink], |row| row.get(0))
        .optional()?
        .ok_or_else(|| {
            Fail::Store(StoreError::UnknownSink {
                ns: ns.to_owned(),
                sink: sink.to_owned(),
            })
        })
}

/// The ranges of `ns` settled for `sink` ahead of `from` (by a run that stopped with a gap
/// behind them). Usually there are none, and never more than a few.
pub(super) fn settled_ahead(
    conn: &Connection,
    ns: &str,
    sink: &str,
    from: i64,
) -> rusqlite::Result<Vec<(i64, i64)>> {
    conn.prepare_cached(
        "SELECT after_seq, upto_seq FROM sink_settled
         WHERE ns = ?1 AND sink = ?2 AND upto_seq > ?3",
    )?
    .query_map(params![ns, sink, from], |row| {
        Ok((row.get(0)?, row.get(1)?))
    })?
    .collect()
}
