//! One connection to the state file: opening, configuring and migrating it, and the small SQL
//! helpers every concern module shares.
//!
//! [`super::Store`] keeps two of these: the writer, whose calls run on its writer thread, and a
//! read-only one for the sinks' hot reads on tokio's blocking pool; tests may open one directly.
//! Every write is one `BEGIN IMMEDIATE` transaction ([`Db::immediate`]): it takes the write
//! lock up front, so a concurrent writer (another process on the same file) makes us wait for
//! `busy_timeout` instead of failing mid-transaction with `SQLITE_BUSY` on the read-to-write
//! upgrade.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Params, Row, Transaction, TransactionBehavior};

use super::error::{Fail, StoreError};
use super::schema;

/// How long a statement waits for another connection's lock before failing with
/// `SQLITE_BUSY`. Writers hold the lock for one page or one settle: milliseconds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Enough for every distinct statement of the store (about 50), so none is ever re-prepared.
const STATEMENT_CACHE: usize = 64;

/// Clamp a Rust length to an SQLite integer.
pub(super) fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One open connection and its file. Not `Sync`: [`super::Store`] keeps it behind a mutex.
pub(super) struct Db {
    pub(super) conn: Connection,
    path: PathBuf,
    /// Test failpoint: make `commit_page` fail after its inserts, before the cursor update.
    #[cfg(test)]
    pub(super) fail_before_cursor: bool,
}

impl Db {
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
        Db {
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

    /// Turn a method body's result into the public error, naming the operation and file.
    pub(super) fn finish<T>(
        &self,
        op: &'static str,
        result: Result<T, Fail>,
    ) -> Result<T, StoreError> {
        result.map_err(|fail| fail.finish(op, &self.path))
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction, committed when `f` succeeds (and rolled
    /// back when it fails: the transaction is dropped).
    pub(super) fn immediate<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, Fail>,
    ) -> Result<T, Fail> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// Every row `sql` returns, each mapped by `map`: the prepare, query and collect that every
/// listing of the store would otherwise spell out.
pub(super) fn all<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, Fail> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, map)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Column `i` as text borrowed from the row (no copy).
pub(super) fn text_ref<'r>(row: &'r Row<'_>, i: usize) -> rusqlite::Result<&'r str> {
    row.get_ref(i)?.as_str().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}
