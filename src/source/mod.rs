//! The source boundary: what the scheduler needs from wherever records come from, and nothing
//! more.
//!
//! A [`Source`] has partitions ([`Source::partitions`], found by [`Source::discover`] when
//! they are not listed; the v0 feed's are a corp's sites). Each partition is exported from its
//! own [`Position`]: a watermark (Unix seconds; everything before it is spooled, which is what
//! lag, gaps and `status` read) and an opaque resume token. The scheduler cuts a partition's
//! time into windows `[position, until)`: its poll settings say how long a window is, the source
//! says how far it may reach ([`Source::horizon`]) and what it no longer serves
//! ([`Source::lost`]). [`Source::fetch`] walks one window as a stream of [`Page`]s, each with
//! the position after it; the scheduler commits every page and moves the stored position with
//! the window's last. A failure is a [`SourceError`] whose [`ErrorClass`] says what the
//! scheduler does next; its text is the source's own.
//!
//! Why a window is a stream of pages rather than one `fetch` call per page: a source may keep
//! state for the whole window that a token could not carry (the v0 feed remembers every `next`
//! it followed, to refuse a loop, and looks for odd records across pages), and the scheduler
//! keeps its pipelining (page N is committed while page N+1 is fetched) and its page budget (a
//! window holds a place from its first page to its last, see `scheduler::page_budget`).
//!
//! Why a trait object (`Arc<dyn Source>`, `Box<dyn Pages>`) rather than a generic parameter:
//! the scheduler is compiled once whatever the source, its tasks and its tests hold the same
//! type (the tests a scripted fake), and which source runs is decided by the configuration at
//! start-up, not by a type. The cost, one boxed future per page, is nothing beside a request.
//!
//! The one source today is the Signal Sciences v0 feed, [`sigsci_feed`]: its rules (minute
//! alignment, the `delay_secs` horizon, the retention, `tags=`, the expired `next`) stay behind
//! this boundary.

pub mod sigsci_feed;

/// The v0 feed client at its old path, for the benchmark (to be removed once it imports
/// `sigsci_feed::client`).
pub use sigsci_feed::client;

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;

use crate::store::NewEvent;

/// Where a partition's export stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Unix seconds: every record before it is spooled.
    pub watermark: i64,
    /// Where to resume inside the window that starts at `watermark`, in the source's own terms
    /// (`None`: from the window's start). Not stored yet: the store keeps the watermark only.
    pub token: Option<String>,
}

impl Position {
    /// At `watermark`, with no token.
    pub fn at(watermark: i64) -> Position {
        Position {
            watermark,
            token: None,
        }
    }
}

/// Which partitions a source exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partitions {
    /// These, as configured.
    Listed(Vec<String>),
    /// Every one [`Source::discover`] finds, looked for again from time to time.
    Discovered,
}

/// One page of a window.
#[derive(Debug)]
pub struct Page {
    /// The records, as the source sent them (a record may repeat one of an earlier page: the
    /// spool drops it).
    pub records: Vec<NewEvent>,
    /// The position after this page; with `done`, the window's end.
    pub next: Position,
    /// The window's last page.
    pub done: bool,
    /// Records that could not be read, kept apart (only when the window was fetched with
    /// `keep_bad`; otherwise such a record fails its page): the scheduler dead-letters them.
    pub rejected: Vec<Rejected>,
}

/// A record of a page that cannot be exported as it is, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Its id, when it has a usable one.
    pub id: Option<String>,
    /// Its timestamp (Unix seconds), or the window's start when it has none.
    pub ts: i64,
    /// Where it is in its page, in the source's words (`data[2] (record 3 of 10)`).
    pub place: String,
    /// What is wrong with it.
    pub problem: String,
    /// Its text as sent.
    pub raw: String,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.problem)
    }
}

/// What the scheduler does after a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Sending it again after a pause may work (rate limits, server errors, timeouts, a reply
    /// cut short): the window is fetched again from its start.
    Transient,
    /// A page that could not be read, which fails the same way every time it is fetched: as
    /// transient, but counted, and once a window is stuck on it reported (and, with
    /// `poll.skip_bad_records`, fetched keeping bad records apart).
    Unreadable,
    /// The resume token is no longer valid (the v0 `next` expired): fetch the window again from
    /// its start at once, without waiting long.
    Restart,
    /// The source refused the window as asked (the v0 feed: too recent for its clock, or
    /// misaligned): `run` asks again in a minute, a backfill stops.
    BadRequest,
    /// Only an operator can fix it (credentials, access, an unknown partition, a reply or
    /// connection the exporter refused): the partition is failing and `/readyz` says so.
    Operator,
}

/// Why a source request failed: a class the scheduler acts on, and the source's own text.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    class: ErrorClass,
    message: String,
    retry_after: Option<Duration>,
}

impl SourceError {
    /// A failure of `class`, shown as `message`.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> SourceError {
        SourceError {
            class,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same, with the pause the server asked for.
    pub fn with_retry_after(mut self, after: Option<Duration>) -> SourceError {
        self.retry_after = after;
        self
    }

    /// What the scheduler does next.
    pub fn class(&self) -> ErrorClass {
        self.class
    }

    /// Whether only an operator can fix it ([`ErrorClass::Operator`]).
    pub fn needs_operator(&self) -> bool {
        self.class == ErrorClass::Operator
    }

    /// The server's requested pause, if it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether it is a page that could not be read ([`ErrorClass::Unreadable`]).
    pub fn is_unreadable(&self) -> bool {
        self.class == ErrorClass::Unreadable
    }

    /// Whether a backfill fetches the window again after it, rather than stopping.
    pub fn is_retried_in_backfill(&self) -> bool {
        matches!(
            self.class,
            ErrorClass::Transient | ErrorClass::Unreadable | ErrorClass::Restart
        )
    }
}

/// The outcome of one [`Source::healthcheck`] probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// Works.
    Ok,
    /// Does not work.
    Fail,
    /// Cannot work as configured (a configuration error).
    Invalid,
}

/// One line of a source's healthcheck.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The outcome.
    pub outcome: ProbeOutcome,
    /// What was probed (`api`, `site www`).
    pub what: String,
    /// What was seen, or the cause and the fix.
    pub detail: String,
}

/// The pages of one window, in order.
#[async_trait]
pub trait Pages: Send {
    /// The next page; `Ok(None)` once the window is exhausted.
    async fn next(&mut self) -> Result<Option<Page>, SourceError>;
}

/// Where records come from; see the module doc.
#[async_trait]
pub trait Source: Send + Sync {
    /// The account the partitions belong to (the v0 feed's corp): in every stored key and in
    /// the logs.
    fn scope(&self) -> &str;

    /// Which partitions to export.
    fn partitions(&self) -> Partitions;

    /// Lists the partitions there are now (for [`Partitions::Discovered`]).
    async fn discover(&self) -> Result<Vec<String>, SourceError>;

    /// The newest watermark the source serves at `now`: a window ends there at the latest.
    fn horizon(&self, now: i64) -> i64;

    /// How long the source keeps records, seconds: a partition this far behind loses data.
    fn retention_secs(&self) -> i64;

    /// The range `[watermark, oldest)` the source no longer serves at `now`, if `watermark`
    /// fell out of its retention; the range ends at `cap` at the latest. The scheduler records
    /// it as a gap and moves on to its end.
    fn lost(&self, watermark: i64, now: i64, cap: i64) -> Option<Range<i64>>;

    /// The pages of the window `[from, until)` of `partition`. With `keep_bad`, records that
    /// cannot be read are returned in [`Page::rejected`] instead of failing their page.
    fn fetch(&self, partition: &str, from: &Position, until: i64, keep_bad: bool)
    -> Box<dyn Pages>;

    /// Probes the source as `check` does: reachable, credentials accepted, every partition
    /// served.
    async fn healthcheck(&self) -> Vec<Probe>;
}
