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
//! * `dead_letters`: events a sink rejected for good, with the reason.
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
//! # Threading
//!
//! The SQL work lives in a synchronous type (`db::SyncStore`) with plain methods, over two
//! connections to the file, each in a `Mutex`. Calls run one at a time on the `store-writer`
//! thread, fed by a queue, so a burst of page commits waits in that queue instead of occupying
//! tokio's blocking pool. Only the sinks' hot reads (`read_batch`, `has_pending`) run on the
//! blocking pool ([`tokio::task::spawn_blocking`]) over the second, read-only connection, which
//! in WAL mode reads a consistent snapshot while the writer commits. So a slow disk or a busy
//! lock never stalls the async workers, and each mutex is taken inside the thread that uses it:
//! no lock is ever held across an `.await`. A read-only store (`status`) has neither and runs
//! every call on the blocking pool over its one connection; if the thread or the second
//! connection cannot be set up, the calls they would take fall back the same way: slower,
//! never wrong.

mod acks;
mod body;
pub use acks::PendingAck;
pub use body::Body;
mod db;
mod feed_letters;
pub use feed_letters::{FEED_LETTERS_SINK, FeedLetter};
mod lock;
pub use lock::LockError;
mod ops;
mod rows;
pub use rows::RowError;
mod schema;
pub use schema::ForeignFile;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use db::SyncStore;
pub use ops::{BlockedSink, DeadLetterCount, Gap, SiteError, SiteSpool, SpoolDrop};

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
        what: rows::RowError,
    },
}

/// Identifies one source position: cursor namespace (`"run"` or
/// `"backfill:<from>-<until>"`), corp and site.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SiteKey {
    /// Cursor namespace: `run` for the service, one per range for backfills, so a backfill
    /// never moves the service's cursors and has its own sink offsets.
    pub ns: String,
    /// Corp name.
    pub corp: String,
    /// Site name.
    pub site: String,
}

impl fmt::Display for SiteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.ns, self.corp, self.site)
    }
}

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

/// Where one site stands (for status/logging).
#[derive(Clone, Debug, PartialEq)]
pub struct CursorRow {
    /// The site.
    pub key: SiteKey,
    /// The stored source cursor.
    pub cursor: i64,
    /// When it was last written, Unix seconds.
    pub updated_at: i64,
}

/// One sink's position in one namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct SinkState {
    /// The namespace.
    pub ns: String,
    /// The sink name.
    pub sink: String,
    /// Every event with `seq <= offset` is settled for this sink.
    pub offset: i64,
    /// Spooled events after the offset.
    pub pending_events: i64,
    /// Total body bytes of those events.
    pub pending_bytes: i64,
    /// The oldest `fetched_at` among them (`None` when nothing is pending).
    pub oldest_pending_fetched_at: Option<i64>,
    /// Dead letters recorded for this sink in this namespace.
    pub dead_letters: i64,
}

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

/// Handle to the spool database. Cheap to clone (an `Arc` inside); all clones share the same
/// connections, writer thread and change notification.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    db: Mutex<SyncStore>,
    /// A second, read-only connection for the sinks' hot reads: in WAL mode it reads a
    /// consistent snapshot while the writer commits, so sink drivers and pollers do not wait
    /// for each other's SQLite work.
    reader: Option<Mutex<SyncStore>>,
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
        let writer = SyncStore::open(path)?;
        let mut store = Store::from_sync(writer);
        if let Some(shared) = Arc::get_mut(&mut store.shared) {
            // Without a reader everything goes through the writer: slower, never wrong.
            if let Ok(reader) = SyncStore::open_reader(path) {
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
        SyncStore::open_read_only(path).map(Store::from_sync)
    }

    fn from_sync(db: SyncStore) -> Store {
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
    /// pool when there is none.
    async fn run<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut SyncStore) -> Result<T, StoreError> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        // A poisoned lock means an earlier call panicked while holding it. Its open
        // transaction (if any) was rolled back when the `Transaction` dropped during the
        // unwind, and SQLite itself is consistent, so the connection is safe to reuse.
        let work = move || {
            let mut db = shared.db.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut db)
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
        F: FnOnce(&mut SyncStore) -> Result<T, StoreError> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let conn = shared.reader.as_ref().unwrap_or(&shared.db);
            let mut db = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut db)
        })
        .await
        .map_err(|source| StoreError::Join { op, source })?
    }

    /// Declare the sinks active in namespace `ns`: creates offset rows at 0 for new ones and
    /// forgets nothing (a sink configured again later resumes at its old offset). Only
    /// active sinks hold back deletion of spool rows; sinks of `ns` not in `sinks` become
    /// inactive, and rows that only they were holding back are deleted right away.
    pub async fn register_sinks(&self, ns: &str, sinks: &[String]) -> Result<(), StoreError> {
        let ns = ns.to_owned();
        let sinks = sinks.to_vec();
        self.run("register_sinks", move |db| db.register_sinks(&ns, &sinks))
            .await
    }

    /// The stored cursor of a site, `None` before its first committed page.
    pub async fn cursor(&self, key: &SiteKey) -> Result<Option<i64>, StoreError> {
        let key = key.clone();
        self.run("cursor", move |db| db.cursor(&key)).await
    }

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
                db.commit_page(&key, &events, fetched_at, new_cursor)
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
                db.read_after(&ns, &sink, after, max_events, max_bytes, at_least_one)
            })
            .await?;
        Ok(ReadBatch { events, budget_hit })
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
            db.settle(&ns, &sink, after, upto_seq, &dead)
        })
        .await
    }

    /// Number of spooled events of `ns` after the sink's offset (counts every row: for
    /// tests and reports, not for polling).
    pub async fn pending(&self, ns: &str, sink: &str) -> Result<i64, StoreError> {
        let ns = ns.to_owned();
        let sink = sink.to_owned();
        self.run("pending", move |db| db.pending(&ns, &sink)).await
    }

    /// Whether any spooled event of `ns` is after the sink's offset. Unlike [`Store::pending`]
    /// it stops at the first row, so it can be polled while a large backlog drains.
    pub async fn has_pending(&self, ns: &str, sink: &str) -> Result<bool, StoreError> {
        let ns = ns.to_owned();
        let sink = sink.to_owned();
        self.run_read("has_pending", move |db| db.has_pending(&ns, &sink))
            .await
    }

    /// Forget `seen` ids with `ts < before_ts`; returns how many were forgotten. Call it
    /// periodically with a bound older than the API's retention: the API cannot serve those
    /// events again, so their ids are no longer needed for de-duplication.
    pub async fn prune_seen(&self, before_ts: i64) -> Result<usize, StoreError> {
        self.run("prune_seen", move |db| db.prune_seen(before_ts))
            .await
    }

    /// Every stored cursor, ordered by namespace, corp and site.
    pub async fn cursors(&self) -> Result<Vec<CursorRow>, StoreError> {
        self.run("cursors", |db| db.cursors()).await
    }

    /// The state of every active sink, ordered by namespace and sink. Sinks no longer
    /// registered are left out (their dead letters remain listed by [`Store::dead_letters`]).
    pub async fn sink_states(&self) -> Result<Vec<SinkState>, StoreError> {
        self.run("sink_states", |db| db.sink_states()).await
    }

    /// Up to `limit` dead letters, oldest first, of one sink or (with `None`) of all sinks.
    pub async fn dead_letters(
        &self,
        sink: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let sink = sink.map(str::to_owned);
        self.run("dead_letters", move |db| {
            db.dead_letters(sink.as_deref(), limit)
        })
        .await
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
