//! The spool itself: [`Store::commit_page`], the first of the two commits, which spools a
//! page's new events and moves the site's cursor in one transaction; [`Store::read_after`],
//! the sinks' reads; and pruning, of rows every active sink has passed and of `seen` ids older
//! than the feed's retention.
//!
//! Rows hold several events each (see `rows`); `seen` decides which events are new. Settling
//! (the second commit) lives in `offsets`, the spool's bound in `bound`.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use super::conn::{Db, text_ref, to_i64};
use super::error::{Fail, StoreError};
use super::offsets::{settled_ahead, sink_offset};
use super::rows::{self, RowBuilder};
use super::{Body, NewEvent, SiteKey, SpooledEvent, Store, cursors};

/// What [`Store::read_after`] found.
#[derive(Debug, Clone, Default)]
pub struct ReadBatch {
    /// The events, in `seq` order.
    pub events: Vec<SpooledEvent>,
    /// The byte budget stopped the read: more events are waiting.
    pub budget_hit: bool,
}

/// What [`Store::commit_page`] did with a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CommitOutcome {
    /// Events newly spooled.
    pub inserted: usize,
    /// Events dropped because their id was already seen (earlier page, window or restart, or
    /// earlier in the same page).
    pub duplicates: usize,
}

impl Store {
    /// In ONE transaction: spool the page's events whose id was not seen before for this
    /// (ns, corp, site) — duplicates within `events` included — and, if `new_cursor` is
    /// `Some`, move the site's cursor to it. `fetched_at` (Unix secs) is stored on every row.
    ///
    /// A cursor smaller than the stored one is refused with [`StoreError::CursorBackwards`]
    /// and nothing is written. After a commit that inserted events, [`Store::changed`] is
    /// notified.
    pub async fn commit_page(
        &self,
        key: &SiteKey,
        events: Vec<NewEvent>,
        fetched_at: i64,
        new_cursor: Option<i64>,
    ) -> Result<CommitOutcome, StoreError> {
        let key = key.clone();
        let outcome = self
            .run("commit_page", move |db| {
                commit_page(db, &key, &events, fetched_at, new_cursor)
            })
            .await?;
        if outcome.inserted > 0 {
            self.shared.changed.notify_waiters();
        }
        Ok(outcome)
    }

    /// Up to `max_events` spooled events of `ns` after the sink's offset, in `seq` order,
    /// stopping before the total body bytes would exceed `max_bytes` — but always at least
    /// one event if any is pending (an oversize event must still reach the sink, which may
    /// then dead-letter it). `max_events == 0` returns nothing.
    pub async fn read_batch(
        &self,
        ns: &str,
        sink: &str,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<SpooledEvent>, StoreError> {
        Ok(self
            .read_after(ns, sink, None, max_events, max_bytes, true)
            .await?
            .events)
    }

    /// Like [`Store::read_batch`], but after `max(offset, after)`: a driver with batches in
    /// flight reads past the last event it already holds. Without `at_least_one` an event that
    /// does not fit in `max_bytes` is left for the next read (the caller is topping up a
    /// batch); [`ReadBatch::budget_hit`] says so.
    pub async fn read_after(
        &self,
        ns: &str,
        sink: &str,
        after: Option<i64>,
        max_events: usize,
        max_bytes: usize,
        at_least_one: bool,
    ) -> Result<ReadBatch, StoreError> {
        let ns = ns.to_owned();
        let sink = sink.to_owned();
        let (events, budget_hit) = self
            .run_read("read_batch", move |db| {
                read_after(db, &ns, &sink, after, max_events, max_bytes, at_least_one)
            })
            .await?;
        Ok(ReadBatch { events, budget_hit })
    }

    /// Forget `seen` ids with `ts < before_ts`; returns how many were forgotten. Call it
    /// periodically with a bound older than the API's retention: the API cannot serve those
    /// events again, so their ids are no longer needed for de-duplication.
    pub async fn prune_seen(&self, before_ts: i64) -> Result<usize, StoreError> {
        self.run("prune_seen", move |db| prune_seen(db, before_ts))
            .await
    }
}

/// [`Store::commit_page`]'s transaction.
fn commit_page(
    db: &mut Db,
    key: &SiteKey,
    events: &[NewEvent],
    fetched_at: i64,
    new_cursor: Option<i64>,
) -> Result<CommitOutcome, Fail> {
    #[cfg(test)]
    let fail_before_cursor = db.fail_before_cursor;
    db.immediate(|tx| {
        // Checked first (inside the transaction, so nothing can move it meanwhile): a
        // refused cursor writes nothing at all.
        if let Some(requested) = new_cursor
            && let Some(current) = cursors::read(tx, key)?
            && requested < current
        {
            return Err(Fail::Store(StoreError::CursorBackwards {
                key: key.clone(),
                current,
                requested,
            }));
        }
        let mut outcome = CommitOutcome::default();
        {
            // `seen` decides: a row goes into the spool only if its (ts, id) was new.
            // This also drops duplicates within `events`, as the second insert conflicts.
            let mut mark_seen = tx.prepare_cached(
                "INSERT INTO seen (ns, corp, site, ts, id) VALUES (?1, ?2, ?3, ?5, ?4)
                 ON CONFLICT DO NOTHING",
            )?;
            let mut spool = tx.prepare_cached(
                "INSERT INTO spool (ns, corp, site, fetched_at, seq, events, bytes, frame, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            // What every event of the page shares is bound once, not per event: binding
            // text copies it. SQLite keeps bindings across executions; the cache clears
            // them when the statements go back.
            for (i, v) in [&key.ns, &key.corp, &key.site].into_iter().enumerate() {
                mark_seen.raw_bind_parameter(i + 1, v)?;
                spool.raw_bind_parameter(i + 1, v)?;
            }
            spool.raw_bind_parameter(4, fetched_at)?;
            // Seqs continue from the highest ever assigned; a row's seq is its last
            // event's, which moves the AUTOINCREMENT counter past all of them.
            let mut last_seq = max_seq(tx)?;
            let mut row = RowBuilder::default();
            let mut write_row = |row: &mut RowBuilder| -> rusqlite::Result<()> {
                if row.events == 0 {
                    return Ok(());
                }
                last_seq += to_i64(row.events);
                spool.raw_bind_parameter(5, last_seq)?;
                spool.raw_bind_parameter(6, to_i64(row.events))?;
                spool.raw_bind_parameter(7, to_i64(row.body.len()))?;
                spool.raw_bind_parameter(8, row.frame.as_str())?;
                spool.raw_bind_parameter(9, row.body.as_str())?;
                spool.raw_execute()?;
                row.clear();
                Ok(())
            };
            for ev in events {
                mark_seen.raw_bind_parameter(4, &ev.id)?;
                mark_seen.raw_bind_parameter(5, ev.ts)?;
                if mark_seen.raw_execute()? == 0 {
                    outcome.duplicates += 1;
                    continue;
                }
                if row.would_overflow(ev.body.len()) {
                    write_row(&mut row)?;
                }
                row.push(ev.ts, &ev.id, &ev.body);
                outcome.inserted += 1;
            }
            write_row(&mut row)?;
        }
        #[cfg(test)]
        if fail_before_cursor {
            // A genuine SQLite error, travelling the same path as a real one.
            tx.execute_batch("SELECT * FROM failpoint_before_cursor_update")?;
        }
        if let Some(cursor) = new_cursor {
            cursors::write(tx, key, cursor)?;
        }
        Ok(outcome)
    })
}

/// Spooled events of `ns` for `sink` after `max(offset, after)`, in `seq` order, up to
/// `max_events` and `max_bytes` of bodies. With `at_least_one`, an event larger than
/// `max_bytes` alone is still returned (it must reach the sink, which may dead-letter it).
/// The flag is true when the byte budget, not the end of the spool, stopped the read.
fn read_after(
    db: &mut Db,
    ns: &str,
    sink: &str,
    after: Option<i64>,
    max_events: usize,
    max_bytes: usize,
    at_least_one: bool,
) -> Result<(Vec<SpooledEvent>, bool), Fail> {
    let offset = sink_offset(&db.conn, ns, sink)?;
    let from = after.map_or(offset, |a| a.max(offset));
    // Ranges settled ahead of the offset (by a run that stopped with a gap behind
    // them) are skipped. Usually there are none, and never more than a few.
    let ahead = settled_ahead(&db.conn, ns, sink, from)?;
    let settled = |seq: i64| ahead.iter().any(|&(a, u)| a < seq && seq <= u);
    let mut stmt = db.conn.prepare_cached(
        "SELECT seq, events, corp, site, fetched_at, frame, body
         FROM spool WHERE ns = ?1 AND seq > ?2 AND (target IS NULL OR target = ?3)
         ORDER BY seq",
    )?;
    let mut batch = Vec::new();
    let mut total: usize = 0;
    let mut budget_hit = false;
    if max_events == 0 {
        return Ok((batch, false));
    }
    let mut rows = stmt.query(params![ns, from, sink])?;
    'rows: while let Some(row) = rows.next()? {
        let last: i64 = row.get(0)?;
        let n: i64 = row.get(1)?;
        let (frame, text) = (text_ref(row, 5)?, text_ref(row, 6)?);
        let entries = rows::read(last, frame, text, n)?;
        let first = last - n + 1;
        // What the row's events share, its text included: copied once, when the first
        // of them is taken.
        let mut shared: Option<RowShared> = None;
        for (i, entry) in entries.into_iter().enumerate() {
            let seq = first + to_i64(i);
            if seq <= from || settled(seq) {
                continue;
            }
            let bytes = entry.body.len();
            if (!batch.is_empty() || !at_least_one) && total.saturating_add(bytes) > max_bytes {
                budget_hit = true;
                break 'rows;
            }
            total = total.saturating_add(bytes);
            let row = match &shared {
                Some(s) => s,
                None => shared.insert(RowShared {
                    text: Arc::new(text.to_owned()),
                    frame: Arc::new(frame.to_owned()),
                    corp: Arc::from(text_ref(row, 2)?),
                    site: Arc::from(text_ref(row, 3)?),
                    fetched_at: row.get(4)?,
                }),
            };
            batch.push(SpooledEvent {
                seq,
                corp: Arc::clone(&row.corp),
                site: Arc::clone(&row.site),
                // The id lies in the frame (see `rows::decode`).
                id: {
                    let at = entry.id.as_ptr() as usize - frame.as_ptr() as usize;
                    Body::slice(&row.frame, at..at + entry.id.len())
                },
                ts: entry.ts,
                fetched_at: row.fetched_at,
                body: Body::slice(&row.text, entry.body),
            });
            if batch.len() >= max_events {
                break 'rows;
            }
        }
    }
    Ok((batch, budget_hit))
}

/// [`Store::prune_seen`]'s transaction.
fn prune_seen(db: &mut Db, before_ts: i64) -> Result<usize, Fail> {
    db.immediate(|tx| {
        // `seen` is keyed by site, then time: one range delete per site. The sites are
        // found by seeking past each one in turn, without scanning the ids between.
        let mut n = 0;
        let mut after: Option<(String, String, String)> = None;
        loop {
            let row = |row: &rusqlite::Row<'_>| Ok((row.get(0)?, row.get(1)?, row.get(2)?));
            let next: Option<(String, String, String)> = match &after {
                None => tx
                    .prepare_cached(
                        "SELECT ns, corp, site FROM seen ORDER BY ns, corp, site LIMIT 1",
                    )?
                    .query_row([], row)
                    .optional()?,
                Some((ns, corp, site)) => tx
                    .prepare_cached(
                        "SELECT ns, corp, site FROM seen
                         WHERE (ns, corp, site) > (?1, ?2, ?3)
                         ORDER BY ns, corp, site LIMIT 1",
                    )?
                    .query_row(params![ns, corp, site], row)
                    .optional()?,
            };
            let Some(site) = next else { break };
            n += tx
                .prepare_cached(
                    "DELETE FROM seen WHERE ns = ?1 AND corp = ?2 AND site = ?3 AND ts < ?4",
                )?
                .execute(params![site.0, site.1, site.2, before_ts])?;
            after = Some(site);
        }
        Ok(n)
    })
}

/// What the events read from one spool row share.
struct RowShared {
    text: Arc<String>,
    frame: Arc<String>,
    corp: Arc<str>,
    site: Arc<str>,
    fetched_at: i64,
}

/// The highest seq ever assigned (any namespace; 0 before the first), even if its row is gone:
/// `AUTOINCREMENT` keeps it, and new seqs continue after it.
pub(super) fn max_seq(conn: &Connection) -> rusqlite::Result<i64> {
    Ok(conn
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'spool'")?
        .query_row([], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Delete the spool rows of `ns` every active sink has passed. With no active sink the
/// minimum is NULL, the comparison is never true, and nothing is deleted: rows wait for a
/// sink rather than vanish undelivered.
pub(super) fn prune_spool(conn: &Connection, ns: &str) -> rusqlite::Result<usize> {
    // A replayed dead letter (target set) waits only for its own sink.
    let shared = conn
        .prepare_cached(
            "DELETE FROM spool WHERE ns = ?1 AND target IS NULL AND seq <=
                (SELECT MIN(offset_seq) FROM sink_offsets WHERE ns = ?1 AND active = 1)",
        )?
        .execute(params![ns])?;
    let targeted = conn
        .prepare_cached(
            "DELETE FROM spool WHERE ns = ?1 AND target IS NOT NULL AND seq <=
                (SELECT offset_seq FROM sink_offsets o WHERE o.ns = ?1 AND o.sink = spool.target)",
        )?
        .execute(params![ns])?;
    Ok(shared + targeted)
}
