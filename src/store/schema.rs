//! Schema versions and migrations.
//!
//! The schema version lives in `PRAGMA user_version` (0 = empty file). `MIGRATIONS[i]` turns
//! version `i` into version `i + 1`; each step runs in its own transaction together with the
//! `user_version` bump, so a crash mid-migration leaves the previous version intact. Steps are
//! append-only: never edit a released step, add a new one.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use super::StoreError;

/// A file that is not a sigsci-export state file: another application's SQLite database, or
/// not an SQLite database at all. Refused before anything is written to it.
#[derive(Debug, thiserror::Error)]
#[error(
    "{path} is not a sigsci-export state file: {what}; nothing was written to it. Point \
     `spool.path` (or `--state`) at a new file, or at a state file of sigsci-export"
)]
pub struct ForeignFile {
    /// The file.
    pub path: PathBuf,
    /// What it is instead.
    pub what: String,
}

/// Tables of every schema version since the first: a file with `user_version` set but without
/// them was written by another application that uses `user_version` too.
const OUR_TABLES: [&str; 5] = ["cursors", "dead_letters", "seen", "sink_offsets", "spool"];

/// Refuses a database that already holds something and is not ours: one without a schema
/// version but with tables (another application's: migrating would add ours beside its own),
/// one with a version but without our tables, or a file SQLite cannot read as a database. An
/// empty or new file passes. Reads only.
pub(super) fn refuse_foreign(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let foreign = |what: String| {
        StoreError::Foreign(ForeignFile {
            path: path.to_path_buf(),
            what,
        })
    };
    let sql = |source: rusqlite::Error| match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => foreign("it is not an SQLite database".to_string()),
        _ => StoreError::Sqlite {
            op: "read schema",
            path: path.to_path_buf(),
            source,
        },
    };
    let version = user_version(conn).map_err(sql)?;
    let names = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE substr(name, 1, 7) <> 'sqlite_' ORDER BY name",
        )
        .and_then(|mut stmt| {
            stmt.query_map([], |row| row.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(sql)?;
    let ours = OUR_TABLES.iter().all(|t| names.iter().any(|n| n == t));
    if (version == 0 && names.is_empty()) || (version != 0 && ours) {
        return Ok(());
    }
    let shown: Vec<String> = names.iter().take(3).map(|n| format!("`{n}`")).collect();
    let more = match names.len().saturating_sub(3) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    if names.is_empty() {
        return Err(foreign(format!(
            "it is an empty SQLite database with schema version {version}, which \
             sigsci-export never writes"
        )));
    }
    let noun = if names.len() == 1 {
        "object"
    } else {
        "objects"
    };
    let version = match version {
        0 => String::new(),
        v => format!("schema version {v}; "),
    };
    Err(foreign(format!(
        "it is an SQLite database of another application ({version}{noun} {}{more})",
        shown.join(", ")
    )))
}

/// [`refuse_foreign`] on the file at `path`, opened read-only, before a writer is opened
/// (which would switch it to WAL mode) or a lock file is created beside it. A missing or
/// empty file passes.
pub(super) fn refuse_foreign_file(path: &Path) -> Result<(), StoreError> {
    if std::fs::metadata(path).map_or(true, |m| !m.is_file() || m.len() == 0) {
        // Nothing to protect (a directory fails when it is opened, with its own error).
        return Ok(());
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Sqlite {
        op: "open read-only",
        path: path.to_path_buf(),
        source,
    })?;
    refuse_foreign(&conn, path)
}

/// Migration steps, applied in order.
pub(super) const MIGRATIONS: &[&str] = &[
    // Version 1.
    r#"
    -- Events waiting for at least one active sink. AUTOINCREMENT: a seq is never reused, even
    -- after the newest rows were deleted, so a stored sink offset can never point "into" rows
    -- spooled later.
    CREATE TABLE spool (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        ns         TEXT    NOT NULL,
        corp       TEXT    NOT NULL,
        site       TEXT    NOT NULL,
        id         TEXT    NOT NULL,
        ts         INTEGER NOT NULL,
        fetched_at INTEGER NOT NULL,
        bytes      INTEGER NOT NULL,   -- byte length of body (length() counts characters)
        body       TEXT    NOT NULL    -- last: the other columns are read without touching it
    );
    -- Serves read_batch (ns, seq > offset) and, covering bytes and fetched_at, lets status
    -- and pruning count backlog without reading the bodies.
    CREATE INDEX spool_ns_seq ON spool (ns, seq, bytes, fetched_at);

    -- Request ids already spooled, kept after delivery so re-fetched pages add no duplicates.
    CREATE TABLE seen (
        ns   TEXT    NOT NULL,
        corp TEXT    NOT NULL,
        site TEXT    NOT NULL,
        id   TEXT    NOT NULL,
        ts   INTEGER NOT NULL,
        PRIMARY KEY (ns, corp, site, id)
    ) WITHOUT ROWID;
    CREATE INDEX seen_ts ON seen (ts);

    CREATE TABLE cursors (
        ns         TEXT    NOT NULL,
        corp       TEXT    NOT NULL,
        site       TEXT    NOT NULL,
        cursor     INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (ns, corp, site)
    ) WITHOUT ROWID;

    -- offset_seq: every spool row of ns with seq <= offset_seq is settled for this sink.
    -- active: declared by the latest register_sinks of ns; only active sinks hold back pruning.
    CREATE TABLE sink_offsets (
        ns         TEXT    NOT NULL,
        sink       TEXT    NOT NULL,
        offset_seq INTEGER NOT NULL DEFAULT 0,
        active     INTEGER NOT NULL DEFAULT 1,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (ns, sink)
    ) WITHOUT ROWID;

    CREATE TABLE dead_letters (
        dl_id  INTEGER PRIMARY KEY AUTOINCREMENT,
        ns     TEXT    NOT NULL,
        sink   TEXT    NOT NULL,
        corp   TEXT    NOT NULL,
        site   TEXT    NOT NULL,
        id     TEXT    NOT NULL,
        ts     INTEGER NOT NULL,
        body   TEXT    NOT NULL,
        reason TEXT    NOT NULL,
        at     INTEGER NOT NULL
    );
    CREATE INDEX dead_letters_sink ON dead_letters (sink, dl_id);
    CREATE INDEX dead_letters_ns_sink ON dead_letters (ns, sink);
    "#,
    // Version 2: state for network sinks and operations.
    r#"
    -- Small per-sink facts that must survive restarts (the HEC ack channel GUID).
    CREATE TABLE sink_meta (
        sink  TEXT NOT NULL,
        key   TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (sink, key)
    ) WITHOUT ROWID;

    -- HEC requests answered with an ackId whose indexer acknowledgement is still pending.
    -- seqs: the spool seqs the request carried (comma-separated), so a restart can wait for
    -- the ack instead of resending.
    CREATE TABLE hec_acks (
        sink    TEXT    NOT NULL,
        channel TEXT    NOT NULL,
        ack_id  INTEGER NOT NULL,
        seqs    TEXT    NOT NULL,
        sent_at INTEGER NOT NULL,
        PRIMARY KEY (sink, channel, ack_id)
    );

    -- Ranges of the feed that could not be fetched any more (older than its retention).
    CREATE TABLE gaps (
        ns          TEXT    NOT NULL,
        corp        TEXT    NOT NULL,
        site        TEXT    NOT NULL,
        from_ts     INTEGER NOT NULL,
        until_ts    INTEGER NOT NULL,
        recorded_at INTEGER NOT NULL,
        PRIMARY KEY (ns, corp, site, from_ts)
    ) WITHOUT ROWID;

    -- The last fetch error of each site, for `status`.
    CREATE TABLE site_errors (
        ns    TEXT    NOT NULL,
        corp  TEXT    NOT NULL,
        site  TEXT    NOT NULL,
        error TEXT    NOT NULL,
        at    INTEGER NOT NULL,
        PRIMARY KEY (ns, corp, site)
    ) WITHOUT ROWID;

    -- Undelivered events dropped because the spool was full (when_full = "drop_oldest").
    CREATE TABLE spool_drops (
        drop_id  INTEGER PRIMARY KEY AUTOINCREMENT,
        ns       TEXT    NOT NULL,
        events   INTEGER NOT NULL,
        bytes    INTEGER NOT NULL,
        from_seq INTEGER NOT NULL,
        to_seq   INTEGER NOT NULL,
        at       INTEGER NOT NULL
    );

    -- A replayed dead letter is spooled again for the one sink that rejected it; NULL = all.
    ALTER TABLE spool ADD COLUMN target TEXT;
    -- Partial: replays are rare, so finding them must not scan the spool.
    CREATE INDEX spool_target ON spool (ns, target, seq) WHERE target IS NOT NULL;
    "#,
    // Version 3: batches settled out of order.
    r#"
    -- A sink keeps several batches in flight and may finish a later one first. Its offset can
    -- only move over a contiguous prefix, so a finished batch ahead of an unfinished one is
    -- recorded here: (after_seq, upto_seq] holds no event of the sink that is not settled.
    -- The offset moves over these ranges once the gap before them closes, and a restart
    -- skips them instead of sending their events again.
    CREATE TABLE sink_settled (
        ns        TEXT    NOT NULL,
        sink      TEXT    NOT NULL,
        after_seq INTEGER NOT NULL,
        upto_seq  INTEGER NOT NULL,
        PRIMARY KEY (ns, sink, after_seq)
    ) WITHOUT ROWID;
    "#,
    // Version 4: `seen` keyed in time order.
    r#"
    -- Keyed by (ns, corp, site, ts, id) instead of (ns, corp, site, id) plus an index on ts:
    -- request ids are random, so every new id went to a random leaf of a table holding a day
    -- of them, and each insert touched the ts index too. In time order, new ids land at the
    -- end of their site's range (the feed is fetched in time order), one B-tree instead of
    -- two, and pruning by age deletes a leading range per site. The timestamp is part of a
    -- request record like its id, so a re-fetched record has both unchanged. (A record whose
    -- timestamp cannot be parsed is keyed by its window's start; repeated in another window,
    -- it is spooled again: a duplicate, never a loss.)
    CREATE TABLE seen_v4 (
        ns   TEXT    NOT NULL,
        corp TEXT    NOT NULL,
        site TEXT    NOT NULL,
        ts   INTEGER NOT NULL,
        id   TEXT    NOT NULL,
        PRIMARY KEY (ns, corp, site, ts, id)
    ) WITHOUT ROWID;
    INSERT INTO seen_v4 (ns, corp, site, ts, id) SELECT ns, corp, site, ts, id FROM seen;
    DROP TABLE seen;
    ALTER TABLE seen_v4 RENAME TO seen;
    "#,
    // Version 5: several events per spool row.
    r#"
    -- A row holds up to 128 KiB of one page's events (see store/rows.rs) instead of one
    -- event: the per-row B-tree work of inserting, reading and deleting was a third of the
    -- exporter's CPU. seq is now the seq of the row's LAST event and `events` counts the
    -- events before it that the row holds (seq - events + 1 is the first); events keep their
    -- own seqs, so sink offsets, settled ranges, HEC ack records and drops mean what they did.
    -- frame: per event "{ts},{body bytes},{id bytes}:{id}"; body: the bodies concatenated.
    CREATE TABLE spool_rows (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        events     INTEGER NOT NULL,
        ns         TEXT    NOT NULL,
        corp       TEXT    NOT NULL,
        site       TEXT    NOT NULL,
        fetched_at INTEGER NOT NULL,
        bytes      INTEGER NOT NULL,   -- byte length of body
        target     TEXT,               -- a replayed dead letter's one sink; NULL = all
        frame      TEXT    NOT NULL,
        body       TEXT    NOT NULL    -- last: the other columns are read without touching it
    );
    INSERT INTO spool_rows (seq, events, ns, corp, site, fetched_at, bytes, target, frame, body)
        SELECT seq, 1, ns, corp, site, fetched_at, bytes, target,
               printf('%d,%d,%d:', ts, bytes, length(CAST(id AS BLOB))) || id, body
        FROM spool ORDER BY seq;
    -- The highest seq ever assigned carries over (it may be above every row left): dropping
    -- the old table drops its counter, renaming the new one renames the counter with it.
    DELETE FROM sqlite_sequence WHERE name = 'spool_rows';
    INSERT INTO sqlite_sequence (name, seq)
        SELECT 'spool_rows', seq FROM sqlite_sequence WHERE name = 'spool';
    DROP TABLE spool;
    ALTER TABLE spool_rows RENAME TO spool;
    CREATE INDEX spool_ns_seq ON spool (ns, seq, events, bytes, fetched_at);
    CREATE INDEX spool_target ON spool (ns, target, seq) WHERE target IS NOT NULL;
    "#,
    // Version 6: one journal for every sink's requests in flight.
    r#"
    -- Requests a sink sent whose outcome it learns later, so a restart resumes or abandons
    -- them instead of resending their events blindly (see store/journal.rs). Replaces
    -- hec_acks, which served HEC alone: a Kafka transaction, an S3 multipart upload or a
    -- Sentinel batch fits the same row, so such a sink needs no table of its own.
    -- request: the sink's key for it, unique per sink (HEC: "{channel}/{ackId}");
    -- seqs: the spool seqs it carries (comma-separated); sent_at: Unix seconds;
    -- payload: the sink's own state for it, opaque to the store (NULL for HEC).
    CREATE TABLE sink_journal (
        sink    TEXT    NOT NULL,
        request TEXT    NOT NULL,
        seqs    TEXT    NOT NULL,
        sent_at INTEGER NOT NULL,
        payload TEXT,
        PRIMARY KEY (sink, request)
    );
    -- Pending HEC acknowledgements carry over, so a restart still waits for them.
    INSERT INTO sink_journal (sink, request, seqs, sent_at)
        SELECT sink, channel || '/' || ack_id, seqs, sent_at FROM hec_acks;
    DROP TABLE hec_acks;
    "#,
];

/// The schema version this build writes and reads.
pub(super) fn supported_version() -> i64 {
    // A handful of steps: the cast cannot truncate.
    MIGRATIONS.len() as i64
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Bring the database up to [`supported_version`], one transaction per step.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let supported = supported_version();
    let initial = read_version(conn, path)?;
    loop {
        let next = read_version(conn, path)?.saturating_add(1);
        let migration_err = |source| StoreError::Migration {
            path: path.to_path_buf(),
            version: next,
            source,
        };
        // IMMEDIATE takes the write lock before we look at the version again: two processes
        // opening a fresh file at once then migrate one after the other instead of both
        // running step 1.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(migration_err)?;
        let current = user_version(&tx).map_err(migration_err)?;
        check_not_newer(current, path)?;
        let Some(step) = usize::try_from(current)
            .ok()
            .and_then(|i| MIGRATIONS.get(i))
        else {
            // current == supported (a negative version was rejected by read_version).
            return Ok(());
        };
        let to = current + 1;
        let migration_err = |source| StoreError::Migration {
            path: path.to_path_buf(),
            version: to,
            source,
        };
        tx.execute_batch(step).map_err(migration_err)?;
        tx.pragma_update(None, "user_version", to)
            .map_err(migration_err)?;
        tx.commit().map_err(migration_err)?;
        if initial == 0 {
            // A new file: nothing to announce per step.
            tracing::debug!(path = %path.display(), version = to, supported, "created spool schema step");
        } else {
            tracing::info!(path = %path.display(), version = to, supported, "migrated spool schema");
        }
    }
}

/// The file's schema version, refusing one newer than this build (or a nonsensical negative
/// one, which no build writes).
pub(super) fn read_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let found = user_version(conn).map_err(|source| StoreError::Sqlite {
        op: "read schema version",
        path: path.to_path_buf(),
        source,
    })?;
    check_not_newer(found, path)?;
    if found < 0 {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: supported_version(),
        });
    }
    Ok(found)
}

fn check_not_newer(found: i64, path: &Path) -> Result<(), StoreError> {
    let supported = supported_version();
    if found > supported {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported,
        });
    }
    Ok(())
}
