//! The SQLite spool: the only durable state of the daemon.
//!
//! This module owns one SQLite database (WAL mode) with
//!
//! * `spool`: events fetched from the feed API and not yet passed by every active sink, each
//!   numbered by a `seq` that is never reused (`AUTOINCREMENT`), so sink offsets stay valid
//!   after rows are deleted. A row holds up to 128 KiB of one page's events (`rows`): per-event
//!   rows spent a third of the CPU on SQLite's per-row work. A row goes once every active sink
//!   has passed all of its events;
//! * `seen`: the upstream request ids already spooled, per (namespace, corp, site) and in time
//!   order (keyed by the record's timestamp, then its id: a re-fetched record carries both
//!   unchanged), kept after delivery so a re-fetched page never spools an event twice;
//! * `cursors`: the source position of every (namespace, corp, site);
//! * `sink_offsets`: every sink's position in the spool of a namespace;
//! * `dead_letters`: events a sink rejected for good, with the reason;
//! * `sink_journal`: requests sinks sent whose outcome they learn later (HEC's pending
//!   acknowledgements), so a restart resumes them instead of resending;
//! * smaller tables for operations: `sink_meta`, `gaps`, `site_errors`, `spool_drops`.
//!
//! # Two commits, never one
//!
//! 1. **Source cursor.** [`Store::commit_page`] stores a page's events *and* moves the site's
//!    cursor in one transaction. A crash before that commit loses both, so the page is fetched
//!    again; a crash after it loses neither. Because events are keyed by their request id in
//!    `seen`, the re-fetch inserts no duplicates.
//! 2. **Sink offset.** [`Store::settle`] moves one sink's offset (and writes its dead letters) in
//!    one transaction, after the sink acknowledged the batch. A crash between send and settle
//!    resends the batch: at least once. Spool rows are deleted in the same transaction once every
//!    active sink has passed them, so a slow or failing sink never loses data and never stalls
//!    the poller or the other sinks.
//!
//! Keeping the two commits apart is what decouples the API (which only serves a recent window)
//! from the sinks (which may be down for longer than that window).
//!
//! # Layout
//!
//! Cut by concern, not by layer: each file owns a group of tables, their SQL and the
//! [`Store`] methods over them. Below them all sit `error`, `rows` (the layout of a spool
//! row), `conn` (opening and configuring a connection) and `schema` (migrations). Above:
//! `spool` (the first commit, the reads, pruning), `offsets` (the second commit), `cursors`,
//! `dead_letters` and `feed_letters`, `gaps`, `site_errors`, `sink_state` (each sink's status,
//! blocked sinks, typed `sink_meta`), `journal` (requests sinks have in flight), [`bound`]
//! (the spool's size limit and the policy that enforces it) and `lock` (one writing process
//! per namespace).
//!
//! # Threading
//!
//! The SQL work runs over two connections to the file (`conn::Db`), each in a `Mutex`. Calls
//! run one at a time on the `store-writer` thread, fed by a queue, so a burst of page commits
//! waits in that queue instead of occupying tokio's blocking pool. Only the sinks' hot reads
//! (`read_batch`, `has_pending`) run on the blocking pool ([`tokio::task::spawn_blocking`])
//! over the second, read-only connection, which in WAL mode reads a consistent snapshot while
//! the writer commits. So a slow disk or a busy lock never stalls the async workers, and each
//! mutex is taken inside the thread that uses it: no lock is ever held across an `.await`. A
//! read-only store (`status`) has neither and runs every call on the blocking pool over its
//! one connection; if the thread or the second connection cannot be set up, the calls they
//! would take fall back the same way: slower, never wrong.

mod body;
pub mod bound;
mod conn;
mod cursors;
mod dead_letters;
mod error;
mod feed_letters;
mod gaps;
mod journal;
mod lock;
mod offsets;
mod rows;
mod schema;
mod sink_state;
mod site_errors;
mod spool;
#[cfg(test)]
mod tests;

pub use body::Body;
pub use bound::{SiteSpool, SpoolDrop};
pub use cursors::{CursorRow, SiteKey};
pub use dead_letters::{DeadLetter, DeadLetterCount};
pub use error::StoreError;
pub use feed_letters::{FEED_LETTERS_SINK, FeedLetter};
pub use gaps::{Gap, GapRecord};
pub use journal::JournalEntry;
pub use lock::LockError;
pub use rows::RowError;
pub use schema::ForeignFile;
pub use sink_state::{BlockedSink, MetaKey, MetaValue, SinkState};
pub use site_errors::SiteError;
pub use spool::{CommitOutcome, ReadBatch};

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use conn::Db;
use error::Fail;

/// One event ready to spool: the upstream request id, its timestamp (Unix secs) and the exact
/// JSON text the API sent.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// Upstream request id, the de-duplication key within a site.
    pub id: String,
    /// Request timestamp, Unix seconds (drives [`Store::prune_seen`]).
    pub ts: i64,
    /// The JSON text exactly as the API sent it.
    pub body: Body,
}

/// An event in the spool as sinks read it.
#[derive(Clone, Debug)]
pub struct SpooledEvent {
    /// Position in the namespace's spool; offsets refer to it. Never reused.
    pub seq: i64,
    /// Corp name (one allocation shared by the events read from a spool row).
    pub corp: Arc<str>,
    /// Site name (shared likewise).
    pub site: Arc<str>,
    /// Upstream request id (a view into the spool row it was read from, like the body).
    pub id: Body,
    /// Request timestamp, Unix seconds.
    pub ts: i64,
    /// When the page holding this event was fetched, Unix seconds.
    pub fetched_at: i64,
    /// The JSON text exactly as the API sent it.
    pub body: Body,
}

/// Handle to the spool database. Cheap to clone (an `Arc` inside); all clones share the same
/// connections, writer thread and change notification.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    db: Mutex<Db>,
    /// A second, read-only connection for the sinks' hot reads: in WAL mode it reads a
    /// consistent snapshot while the writer commits, so sink drivers and pollers do not wait
    /// for each other's SQLite work.
    reader: Option<Mutex<Db>>,
    changed: Arc<Notify>,
    /// The writer thread's queue (read-write stores only). Writes wait their turn in this
    /// queue rather than on the connection's lock inside the blocking pool, where a burst
    /// of page commits would occupy every pool thread and leave the sinks' reads waiting.
    writer: Option<std::sync::mpsc::Sender<Job>>,
    /// The namespace's lock ([`Store::open_exclusive`]). Last: released after the
    /// connections above are closed.
    lock: Option<lock::NamespaceLock>,
}

/// One write, run on the writer thread.
type Job = Box<dyn FnOnce() + Send>;

/// Runs writes one at a time until every [`Store`] handle is gone.
fn spawn_writer(path: &Path) -> Option<std::sync::mpsc::Sender<Job>> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            while let Ok(job) = rx.recv() {
                job();
            }
        })
        .map_err(|e| {
            // Writes then run on the blocking pool: slower under load, never wrong.
            tracing::warn!(path = %path.display(), error = %e, "Cannot start the store's writer thread.");
        })
        .ok()
        .map(|_| tx)
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Open or create the database at `path` (creating parent directories), in WAL mode,
    /// and migrate it to the current schema.
    ///
    /// This blocks (file I/O, possibly a migration); call it at start-up, before serving.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let writer = Db::open(path)?;
        let mut store = Store::from_db(writer);
        if let Some(shared) = Arc::get_mut(&mut store.shared) {
            // Without a reader everything goes through the writer: slower, never wrong.
            if let Ok(reader) = Db::open_reader(path) {
                shared.reader = Some(Mutex::new(reader));
            }
            shared.writer = spawn_writer(path);
        }
        Ok(store)
    }

    /// Open an existing database read-only, for `status` while `run` holds it open for
    /// writing (WAL lets readers and the writer proceed together). Runs no migrations;
    /// fails if the file does not exist or its schema is not this build's. Every write
    /// method returns an error.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        Db::open_read_only(path).map(Store::from_db)
    }

    fn from_db(db: Db) -> Store {
        Store {
            shared: Arc::new(Shared {
                path: db.path().to_path_buf(),
                db: Mutex::new(db),
                reader: None,
                changed: Arc::new(Notify::new()),
                writer: None,
                lock: None,
            }),
        }
    }

    /// Run `f` with the read-write connection locked: on the writer thread, or on the blocking
    /// pool when there is none. Its failure is reported as operation `op` on this file.
    async fn run<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> Result<T, Fail> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        // A poisoned lock means an earlier call panicked while holding it. Its open
        // transaction (if any) was rolled back when the `Transaction` dropped during the
        // unwind, and SQLite itself is consistent, so the connection is safe to reuse.
        let work = move || {
            let mut db = shared.db.lock().unwrap_or_else(PoisonError::into_inner);
            let result = f(&mut db);
            db.finish(op, result)
        };
        let Some(queue) = &self.shared.writer else {
            return tokio::task::spawn_blocking(work)
                .await
                .map_err(|source| StoreError::Join { op, source })?;
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            // A panic is reported as a failed write; the thread carries on with the next.
            let _ = reply.send(done.ok());
        });
        queue.send(job).map_err(|_| StoreError::Writer { op })?;
        match answer.await {
            Ok(Some(result)) => result,
            _ => Err(StoreError::Writer { op }),
        }
    }

    /// Like [`Store::run`], on the read-only connection when there is one.
    async fn run_read<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> Result<T, Fail> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let conn = shared.reader.as_ref().unwrap_or(&shared.db);
            let mut db = conn.lock().unwrap_or_else(PoisonError::into_inner);
            let result = f(&mut db);
            db.finish(op, result)
        })
        .await
        .map_err(|source| StoreError::Join { op, source })?
    }

    /// A handle notified (with [`Notify::notify_waiters`]) after every
    /// [`Store::commit_page`] that inserted events, so sink drivers can sleep instead of
    /// polling.
    ///
    /// `notify_waiters` stores no permit, so a driver must register interest *before* it
    /// looks at the spool, or it can miss a commit that lands in between:
    ///
    /// ```ignore
    /// let changed = store.changed();
    /// loop {
    ///     let notified = changed.notified();
    ///     tokio::pin!(notified);
    ///     notified.as_mut().enable();           // interest registered from here on
    ///     let batch = store.read_batch(ns, sink, 500, 5 << 20).await?;
    ///     if batch.is_empty() {
    ///         notified.await;                    // (plus a timeout / shutdown in a select!)
    ///         continue;
    ///     }
    ///     // send, settle ...
    /// }
    /// ```
    pub fn changed(&self) -> Arc<Notify> {
        Arc::clone(&self.shared.changed)
    }

    /// Make the next `commit_page` calls fail after the inserts and before the cursor update
    /// (test-only failpoint proving the transaction is atomic).
    #[cfg(test)]
    fn set_fail_before_cursor(&self, on: bool) {
        let mut db = self
            .shared
            .db
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        db.fail_before_cursor = on;
    }
}
