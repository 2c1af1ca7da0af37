//! What can go wrong in the store: [`StoreError`], the public error, and `Fail`, the error of
//! a method body before it knows which operation and file it belongs to.
//!
//! A concern module's SQL returns `Result<T, Fail>` and uses `?` on SQLite and store errors
//! alike; [`super::Store::run`] names the operation and the file once, for every call, so no
//! method repeats that mapping.

use std::path::{Path, PathBuf};

#[cfg(doc)]
use super::Store;
use super::cursors::SiteKey;
use super::lock::LockError;
use super::rows::RowError;
use super::schema::ForeignFile;

/// Everything that can go wrong in the store.
///
/// The messages name the operation and the database file; the underlying cause is available
/// through [`std::error::Error::source`] (print with `{:#}` in `anyhow` to see the chain).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An SQLite call failed.
    #[error("store operation `{op}` failed on {path}")]
    Sqlite {
        /// The store operation that failed (`commit_page`, `settle`, ...).
        op: &'static str,
        /// The database file.
        path: PathBuf,
        /// What SQLite reported.
        #[source]
        source: rusqlite::Error,
    },
    /// A file-system operation (creating the database's directory) failed.
    #[error("cannot create the directory {path} for the spool database")]
    Io {
        /// The directory that could not be created.
        path: PathBuf,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// A schema migration step failed; the database stays at the previous version.
    #[error("migrating {path} to schema version {version} failed")]
    Migration {
        /// The database file.
        path: PathBuf,
        /// The version the failed step would have produced.
        version: i64,
        /// What SQLite reported.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer build of sigsci-export.
    #[error(
        "{path} has schema version {found} but this build supports at most {supported}; \
         upgrade sigsci-export or point `spool.path` to another file"
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The version found in the file (`PRAGMA user_version`).
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A read-only open found a database that was never migrated to this build's schema
    /// (a read-only open cannot migrate it).
    #[error(
        "{path} has schema version {found} but this build needs {supported}; \
         start `sigsci-export run` once to migrate it"
    )]
    OlderSchema {
        /// The database file.
        path: PathBuf,
        /// The version found in the file.
        found: i64,
        /// The version this build needs.
        supported: i64,
    },
    /// The writer thread panicked while running the operation, or is gone.
    #[error("the store's writer thread failed while running `{op}`")]
    Writer {
        /// The store operation.
        op: &'static str,
    },
    /// The blocking task that ran the SQL panicked or was cancelled at runtime shutdown.
    #[error("the blocking task running store operation `{op}` did not finish")]
    Join {
        /// The store operation.
        op: &'static str,
        /// The panic or cancellation.
        #[source]
        source: tokio::task::JoinError,
    },
    /// [`Store::commit_page`] was asked to move a cursor backwards; nothing was written.
    #[error("the cursor of {key} would move backwards from {current} to {requested}")]
    CursorBackwards {
        /// The site.
        key: SiteKey,
        /// The stored cursor.
        current: i64,
        /// The rejected new value.
        requested: i64,
    },
    /// The sink was never declared with [`Store::register_sinks`] in that namespace.
    #[error("sink `{sink}` is not registered in namespace `{ns}`")]
    UnknownSink {
        /// The namespace.
        ns: String,
        /// The sink name.
        sink: String,
    },
    /// [`Store::settle`] was asked to move past the highest `seq` ever assigned: that would
    /// skip events that do not exist yet, so it is refused and nothing is written.
    #[error(
        "sink `{sink}` in namespace `{ns}` cannot settle up to seq {upto}: the highest seq ever spooled is {max}"
    )]
    OffsetBeyondSpool {
        /// The namespace.
        ns: String,
        /// The sink name.
        sink: String,
        /// The rejected offset.
        upto: i64,
        /// The highest seq assigned so far.
        max: i64,
    },
    /// Another process writes the namespace, or its lock file cannot be used.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The file is not a sigsci-export state file; nothing was written to it.
    #[error(transparent)]
    Foreign(#[from] ForeignFile),
    /// A spool row could not be read back: the file was damaged or edited by hand.
    #[error("the spool row ending at seq {seq} in {path} is damaged: {what}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The row's seq (of its last event).
        seq: i64,
        /// What is wrong with it.
        what: RowError,
    },
}

/// Internal error of a method body: an SQLite error or a damaged row still lacking the
/// operation and path (added once by [`Fail::finish`]), or a finished [`StoreError`].
pub(super) enum Fail {
    Sql(rusqlite::Error),
    /// The spool row ending at this seq cannot be read back.
    Corrupt {
        seq: i64,
        what: RowError,
    },
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

impl Fail {
    /// The public error, naming the operation and the database file.
    pub(super) fn finish(self, op: &'static str, path: &Path) -> StoreError {
        match self {
            Fail::Sql(source) => StoreError::Sqlite {
                op,
                path: path.to_path_buf(),
                source,
            },
            Fail::Corrupt { seq, what } => StoreError::Corrupt {
                path: path.to_path_buf(),
                seq,
                what,
            },
            Fail::Store(e) => e,
        }
    }
}
