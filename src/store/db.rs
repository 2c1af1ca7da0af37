//! The synchronous store: one `rusqlite::Connection` and plain blocking methods.
//!
//! [`super::Store`] runs these on its writer thread, and the sinks' hot reads on tokio's blocking
//! pool over a second, read-only connection; tests may call them directly.
//! Every write is one `BEGIN IMMEDIATE` transaction: it takes the write lock up front, so a
//! concurrent writer (another process on the same file) makes us wait for `busy_timeout`
//! instead of failing mid-transaction with `SQLITE_BUSY` on the read-to-write upgrade.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::rows::{self, RowBuilder};
use super::schema;
// Unix seconds for the `updated_at` / `at` columns (informational only: ordering never depends
// on the wall clock).
use super::{
    Body, CommitOutcome, CursorRow, DeadLetter, NewEvent, SinkState, SiteKey, SpooledEvent,
    StoreError,
};
use crate::time::now;

/// How long a statement waits for another connection's lock before failing with
/// `SQLITE_BUSY`. Writers hold the lock for one page or one settle: milliseconds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Enough for every distinct statement of the store (about 50), so none is ever re-prepared.
const STATEMENT_CACHE: usize = 64;

/// Internal error of a method body: an SQLite error still lacking the operation and path
/// (added once by [`SyncStore::finish`]), or a finished [`StoreError`].
pub(super) enum Fail {
    Sql(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail::Sql(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

/// Clamp a Rust length to an SQLite integer.
pub(super) fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The synchronous store. Not `Sync`: [`super::Store`] keeps it behind a mutex.
pub(super) struct SyncStore {
    pub(super) conn: Connection,
    path: PathBuf,
    /// Test failpoint: make `commit_page` fail after its inserts, before the cursor update.
    #[cfg(test)]
    pub(super) fail_before_cursor: bool,
}

impl SyncStore {
    /// Open or create the database, configure it and migrate it.
    pub(super) fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        // No SQLITE_OPEN_URI: the path is a plain file name, whatever characters it holds.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(path, flags).map_err(|source| StoreError::Sqlite {
                op: "open",
                path: path.to_path_buf(),
                source,
            })?;
        // Before the writer is configured: switching to WAL already writes to the file.
        schema::refuse_foreign(&conn, path)?;
        let mut store = Self::new(conn, path);
        let configured = store.configure_writer();
        store.finish("open", configured)?;
        schema::migrate(&mut store.conn, path)?;
        Ok(store)
    }

    /// Open an existing database read-only; no migrations.
    pub(super) fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        // Without SQLITE_OPEN_CREATE a missing file is an error rather than a new empty DB.
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(path, flags).map_err(|source| StoreError::Sqlite {
                op: "open read-only",
                path: path.to_path_buf(),
                source,
            })?;
        let store = Self::new(conn, path);
        let configured = store.conn.busy_timeout(BUSY_TIMEOUT).map_err(Fail::from);
        store.finish("open read-only", configured)?;
        schema::refuse_foreign(&store.conn, path)?;
        let found = schema::read_version(&store.conn, path)?;
        let supported = schema::supported_version();
        if found < supported {
            return Err(StoreError::OlderSchema {
                path: path.to_path_buf(),
                found,
                supported,
            });
        }
        Ok(store)
    }

    /// A read-only connection beside the writer of the same process (the schema is known to
    /// be current: the writer just migrated it).
    pub(super) fn open_reader(path: &Path) -> Result<Self, StoreError> {
        let store = Self::open_read_only(path)?;
        let configured = store
            .conn
            .pragma_update(None, "cache_size", -4_096)
            .map_err(Fail::from);
        store.finish("open reader", configured)?;
        Ok(store)
    }

    fn new(conn: Connection, path: &Path) -> Self {
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        SyncStore {
            conn,
            path: path.to_path_buf(),
            #[cfg(test)]
            fail_before_cursor: false,
        }
    }

    fn configure_writer(&self) -> Result<(), Fail> {
        let conn = &self.conn;
        // First, so that switching the journal mode waits for other connections' locks.
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // 16 KiB pages instead of 4: a spooled event is about a kilobyte, so a 4 KiB page holds
        // three and every commit, prune and checkpoint handles (and checksums) five times as
        // many pages and B-tree cells. 11-15% less CPU per event in the benchmark; the caches
        // are sized in bytes, so memory is unchanged. Only a new file takes it (an existing one
        // keeps its page size: changing it needs a VACUUM outside WAL mode).
        conn.pragma_update(None, "page_size", 16_384)?;
        // WAL: `status` can read while `run` writes, and commits append instead of rewriting.
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Some file systems (certain network mounts) refuse WAL. Correctness does not
            // depend on it, only concurrent `status` reads do, so keep going and say so.
            tracing::warn!(path = %self.path.display(), journal_mode = %mode,
                "the spool database could not switch to WAL mode; `status` may block while `run` writes");
        }
        // NORMAL rather than FULL: in WAL mode NORMAL never corrupts the database; a power
        // loss (not a process crash) can only roll back the last few commits, as a whole and
        // in order. Both commits are built to be redone: a lost cursor commit re-fetches its
        // page (still served by the API, de-duplicated by `seen`, which rolls back with it), a
        // lost sink offset resends a batch (at least once). FULL would add an fsync to every
        // page and every settle for no change in what can be lost for good.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // The recent spool is written here and read back by the sinks (through the reader's
        // own cache, see `open_reader`): 4 MiB each instead of SQLite's 2 keeps more of the
        // hot pages in memory; more showed little gain in a heap profile and counts against
        // the 64 MB memory budget.
        conn.pragma_update(None, "cache_size", -4_096)?;
        // Checkpoint every 2,000 pages (32 MB of WAL with 16 KiB pages) instead of SQLite's
        // 1,000: spool pages are written, then rewritten when the sinks pass them and the rows
        // are deleted; a longer interval copies such a page into the database once rather than
        // twice (4% less CPU in a two-sink backfill). The WAL file may reach that size on disk;
        // memory is unaffected. (8,000 pages, 128 MB, measured no better.)
        conn.pragma_update(None, "wal_autocheckpoint", 2_000)?;
        // The schema declares no foreign keys today; enabled so that any added later are
        // enforced rather than silently ignored (SQLite's default is off).
        conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok(())
    }

    /// The database file.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, for store methods kept in sibling modules (`acks`).
    pub(super) fn conn(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Turn a method body's result into the public error, naming the operation and file.
    pub(super) fn finish<T>(
        &self,
        op: &'static str,
        result: Result<T, Fail>,
    ) -> Result<T, StoreError> {
        result.map_err(|fail| match fail {
            Fail::Sql(source) => StoreError::Sqlite {
                op,
                path: self.path.clone(),
                source,
            },
            Fail::Store(e) => e,
        })
    }

    pub(super) fn register_sinks(&mut self, ns: &str, sinks: &[String]) -> Result<(), StoreError> {
        let result = (|| -> Result<_, Fail> {
            let now = now();
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
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
            prune_spool(&tx, ns)?;
            tx.commit()?;
            Ok(())
        })();
        self.finish("register_sinks", result)
    }

    pub(super) fn cursor(&mut self, key: &SiteKey) -> Result<Option<i64>, StoreError> {
        let result = read_cursor(&self.conn, key).map_err(Fail::from);
        self.finish("cursor", result)
    }

    pub(super) fn commit_page(
        &mut self,
        key: &SiteKey,
        events: &[NewEvent],
        fetched_at: i64,
        new_cursor: Option<i64>,
    ) -> Result<CommitOutcome, StoreError> {
        #[cfg(test)]
        let fail_before_cursor = self.fail_before_cursor;
        let result = (|| -> Result<_, Fail> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Checked first (inside the transaction, so nothing can move it meanwhile): a
            // refused cursor writes nothing at all.
            if let Some(requested) = new_cursor
                && let Some(current) = read_cursor(&tx, key)?
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
                let mut last_seq = max_seq(&tx)?;
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
                tx.prepare_cached(
                    "INSERT INTO cursors (ns, corp, site, cursor, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (ns, corp, site)
                     DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
                )?
                .execute(params![key.ns, key.corp, key.site, cursor, now()])?;
            }
            tx.commit()?;
            Ok(outcome)
        })();
        self.finish("commit_page", result)
    }

    /// Spooled events of `ns` for `sink` after `max(offset, after)`, in `seq` order, up to
    /// `max_events` and `max_bytes` of bodies. With `at_least_one`, an event larger than
    /// `max_bytes` alone is still returned (it must reach the sink, which may dead-letter it).
    /// The flag is true when the byte budget, not the end of the spool, stopped the read.
    pub(super) fn read_after(
        &mut self,
        ns: &str,
        sink: &str,
        after: Option<i64>,
        max_events: usize,
        max_bytes: usize,
        at_least_one: bool,
    ) -> Result<(Vec<SpooledEvent>, bool), StoreError> {
        let result = (|| -> Result<_, Fail> {
            let offset = sink_offset(&self.conn, ns, sink)?;
            let from = after.map_or(offset, |a| a.max(offset));
            // Ranges settled ahead of the offset (by a run that stopped with a gap behind
            // them) are skipped. Usually there are none, and never more than a few.
            let ahead: Vec<(i64, i64)> = self
                .conn
                .prepare_cached(
                    "SELECT after_seq, upto_seq FROM sink_settled
                     WHERE ns = ?1 AND sink = ?2 AND upto_seq > ?3",
                )?
                .query_map(params![ns, sink, from], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let settled = |seq: i64| ahead.iter().any(|&(a, u)| a < seq && seq <= u);
            let mut stmt = self.conn.prepare_cached(
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
                let entries = decode_row(&self.path, last, frame, text, n)?;
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
                    if (!batch.is_empty() || !at_least_one)
                        && total.saturating_add(bytes) > max_bytes
                    {
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
        })();
        self.finish("read_batch", result)
    }

    /// Settles the events of `ns` for `sink` in `(after, upto_seq]` (`after = None`: from
    /// the sink's offset) and writes their dead letters. A range starting at or before the
    /// offset moves the offset, together with every recorded range it now reaches; a range
    /// further ahead is recorded in `sink_settled` until the gap before it closes.
    pub(super) fn settle(
        &mut self,
        ns: &str,
        sink: &str,
        after: Option<i64>,
        upto_seq: i64,
        dead: &[(SpooledEvent, String)],
    ) -> Result<(), StoreError> {
        let result = (|| -> Result<_, Fail> {
            let now = now();
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let offset = sink_offset(&tx, ns, sink)?;
            let after = after.unwrap_or(offset).max(offset);
            if upto_seq <= after {
                // Already settled (a retried or stale call): nothing to write.
                return Ok(());
            }
            // The highest seq ever assigned (any namespace). Settling beyond it would skip
            // events that do not exist yet.
            let max = max_seq(&tx)?;
            if upto_seq > max {
                return Err(Fail::Store(StoreError::OffsetBeyondSpool {
                    ns: ns.to_owned(),
                    sink: sink.to_owned(),
                    upto: upto_seq,
                    max,
                }));
            }
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO dead_letters (ns, sink, corp, site, id, ts, body, reason, at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?;
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
                    insert.execute(params![
                        ns, sink, ev.corp, ev.site, ev.id, ev.ts, ev.body, reason, now
                    ])?;
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
                prune_spool(&tx, ns)?;
            }
            tx.commit()?;
            Ok(())
        })();
        self.finish("settle", result)
    }

    pub(super) fn pending(&mut self, ns: &str, sink: &str) -> Result<i64, StoreError> {
        let result = (|| -> Result<_, Fail> {
            let offset = sink_offset(&self.conn, ns, sink)?;
            let n = self
                .conn
                .prepare_cached(
                    // A row's events after the offset: all of them, or its last `seq - offset`.
                    "SELECT COALESCE(SUM(min(events, seq - ?2)), 0) FROM spool
                     WHERE ns = ?1 AND seq > ?2 AND (target IS NULL OR target = ?3)",
                )?
                .query_row(params![ns, offset, sink], |row| row.get(0))?;
            Ok(n)
        })();
        self.finish("pending", result)
    }

    pub(super) fn has_pending(&mut self, ns: &str, sink: &str) -> Result<bool, StoreError> {
        let result = (|| -> Result<_, Fail> {
            let offset = sink_offset(&self.conn, ns, sink)?;
            let found = self
                .conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM spool
                     WHERE ns = ?1 AND seq > ?2 AND (target IS NULL OR target = ?3))",
                )?
                .query_row(params![ns, offset, sink], |row| row.get(0))?;
            Ok(found)
        })();
        self.finish("has_pending", result)
    }

    pub(super) fn prune_seen(&mut self, before_ts: i64) -> Result<usize, StoreError> {
        let result = (|| -> Result<_, Fail> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
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
            tx.commit()?;
            Ok(n)
        })();
        self.finish("prune_seen", result)
    }

    pub(super) fn cursors(&mut self) -> Result<Vec<CursorRow>, StoreError> {
        let result = (|| -> Result<_, Fail> {
            let mut stmt = self.conn.prepare_cached(
                "SELECT ns, corp, site, cursor, updated_at FROM cursors ORDER BY ns, corp, site",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(CursorRow {
                    key: SiteKey {
                        ns: row.get(0)?,
                        corp: row.get(1)?,
                        site: row.get(2)?,
                    },
                    cursor: row.get(3)?,
                    updated_at: row.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })();
        self.finish("cursors", result)
    }

    pub(super) fn sink_states(&mut self) -> Result<Vec<SinkState>, StoreError> {
        let result = (|| -> Result<_, Fail> {
            // One snapshot: offsets and backlog agree with each other. The spool side reads
            // the covering index (ns, seq, events, bytes, fetched_at), and one row per sink.
            let tx = self.conn.unchecked_transaction()?;
            let mut states = tx
                .prepare_cached(
                    "SELECT o.ns, o.sink, o.offset_seq,
                        COALESCE(SUM(min(s.events, s.seq - o.offset_seq)), 0),
                        COALESCE(SUM(s.bytes), 0), MIN(s.fetched_at),
                        (SELECT COUNT(*) FROM dead_letters d WHERE d.ns = o.ns AND d.sink = o.sink)
                     FROM sink_offsets o
                     LEFT JOIN spool s ON s.ns = o.ns AND s.seq > o.offset_seq
                          AND (s.target IS NULL OR s.target = o.sink)
                     WHERE o.active = 1
                     GROUP BY o.ns, o.sink
                     ORDER BY o.ns, o.sink",
                )?
                .query_map([], |row| {
                    Ok(SinkState {
                        ns: row.get(0)?,
                        sink: row.get(1)?,
                        offset: row.get(2)?,
                        pending_events: row.get(3)?,
                        pending_bytes: row.get(4)?,
                        oldest_pending_fetched_at: row.get(5)?,
                        dead_letters: row.get(6)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            // The offset may lie inside a row: the bytes of that row's events up to the offset
            // are not pending. (Only the first row after the offset can hold such events, and
            // only a shared one: a replayed dead letter has a row of its own.)
            let mut straddling = tx.prepare_cached(
                "SELECT seq, events, frame, body FROM spool
                 WHERE ns = ?1 AND seq > ?2 AND target IS NULL ORDER BY seq LIMIT 1",
            )?;
            for st in &mut states {
                let mut rows = straddling.query(params![st.ns, st.offset])?;
                let Some(row) = rows.next()? else { continue };
                let (last, n): (i64, i64) = (row.get(0)?, row.get(1)?);
                let first = last - n + 1;
                if first > st.offset {
                    continue;
                }
                let (frame, text) = (text_ref(row, 2)?, text_ref(row, 3)?);
                let entries = decode_row(&self.path, last, frame, text, n)?;
                let passed: usize = entries
                    .iter()
                    .take(usize::try_from(st.offset - first + 1).unwrap_or(0))
                    .map(|e| e.body.len())
                    .sum();
                st.pending_bytes -= to_i64(passed);
            }
            drop(straddling);
            tx.commit()?;
            Ok(states)
        })();
        self.finish("sink_states", result)
    }

    pub(super) fn dead_letters(
        &mut self,
        sink: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let result = (|| -> Result<_, Fail> {
            let mut stmt = self.conn.prepare_cached(
                "SELECT dl_id, ns, sink, corp, site, id, ts, body, reason, at
                 FROM dead_letters WHERE ?1 IS NULL OR sink = ?1
                 ORDER BY dl_id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![sink, to_i64(limit)], |row| {
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
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })();
        self.finish("dead_letters", result)
    }
}

fn read_cursor(conn: &Connection, key: &SiteKey) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT cursor FROM cursors WHERE ns = ?1 AND corp = ?2 AND site = ?3")?
        .query_row(params![key.ns, key.corp, key.site], |row| row.get(0))
        .optional()
}

/// What the events read from one spool row share.
struct RowShared {
    text: Arc<String>,
    frame: Arc<String>,
    corp: Arc<str>,
    site: Arc<str>,
    fetched_at: i64,
}

/// The events of the spool row ending at `seq` (see `rows::decode`), or why it is damaged.
pub(super) fn decode_row<'a>(
    path: &Path,
    seq: i64,
    frame: &'a str,
    text: &str,
    events: i64,
) -> Result<Vec<rows::Entry<'a>>, Fail> {
    rows::decode(frame, text, events).map_err(|what| {
        Fail::Store(StoreError::Corrupt {
            path: path.to_path_buf(),
            seq,
            what,
        })
    })
}

/// Column `i` as text borrowed from the row (no copy).
pub(super) fn text_ref<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<&'r str> {
    row.get_ref(i)?.as_str().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
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
