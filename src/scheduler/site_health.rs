//! A site stuck on a feed page that never parses: noticed, reported, and, when the operator
//! opted in, got past without losing the rest of the page.
//!
//! A page that cannot be read (a record without `id`, an `id` that is not a string, invalid
//! UTF-8, an HTML page sent with status 200) fails the same way every time it is fetched. Each
//! failure is retried like any transient one, at WARN (the client's own retries, then the
//! window fetched again). After [`STUCK_AFTER`] failed attempts of the same window in a row,
//! each on a page that could not be read, it is an ERROR: `/readyz` reports `feed:SITE`,
//! `sigsci_export_site_stuck{site}` is 1, and `status` shows the site failing with the record
//! and what is wrong with it. Then:
//!
//! - by default (`poll.skip_bad_records = false`) nothing is skipped: `run` keeps fetching the
//!   window again, at ERROR, with a pause that doubles up to [`MAX_STUCK_PAUSE`], and nothing
//!   moves for the site until the feed serves the page readable or the operator opts in;
//!   `backfill` stops with the error (exit 1; run it again to resume).
//! - with `poll.skip_bad_records = true`, the window is fetched once more with the bad records
//!   kept apart: each is stored as a dead letter (its text, where it was, what is wrong; see
//!   `store::feed_letters`), logged at ERROR and counted in
//!   `sigsci_export_feed_dead_letters_total`, and the rest of the page is spooled. A reply that
//!   is not JSON cannot be split into records and is never skipped.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::error;

use crate::health::Health;
use crate::source::{Rejected, SourceError};
use crate::store::{FEED_LETTERS_SINK, FeedLetter, SiteKey, Store, StoreError};
use crate::telemetry::metrics;
use crate::time::rfc3339;

/// Failed attempts of one window in a row, each on a page that could not be read, after which
/// the site is reported stuck. Each attempt is itself up to `api.max_attempts` requests.
pub const STUCK_AFTER: u32 = 5;

/// The longest pause between two attempts of a stuck window in `run`.
pub const MAX_STUCK_PAUSE: Duration = Duration::from_secs(300);

/// What the caller does once a window is stuck; it picks the ERROR's wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenStuck {
    /// Keep fetching the window again (`run`, by default).
    Retry,
    /// Fetch it again keeping bad records apart (`poll.skip_bad_records`).
    KeepBadRecords,
    /// Give up (`backfill`, by default).
    Stop,
}

impl WhenStuck {
    /// `KeepBadRecords` if the operator opted in, `otherwise` if not.
    pub fn unless_skipping(skip_bad_records: bool, otherwise: WhenStuck) -> WhenStuck {
        if skip_bad_records {
            WhenStuck::KeepBadRecords
        } else {
            otherwise
        }
    }
}

/// The windows of one site that failed on a page that could not be read, each with how many
/// times in a row (live mode has one window at a time, a backfill several), and what to do
/// once one is stuck.
#[derive(Debug)]
pub struct PageHealth {
    store: Store,
    key: SiteKey,
    health: Health,
    then: WhenStuck,
    repeats: BTreeMap<i64, u32>,
}

impl PageHealth {
    /// For `run`: once stuck, retry, or keep bad records apart with `skip_bad_records`.
    pub fn live(
        store: &Store,
        key: &SiteKey,
        health: &Health,
        skip_bad_records: bool,
    ) -> PageHealth {
        let then = WhenStuck::unless_skipping(skip_bad_records, WhenStuck::Retry);
        PageHealth::new(store, key, health, then)
    }

    /// For a backfill: once stuck, stop, or keep bad records apart with `skip_bad_records`.
    pub fn backfill(
        store: &Store,
        key: &SiteKey,
        health: &Health,
        skip_bad_records: bool,
    ) -> PageHealth {
        let then = WhenStuck::unless_skipping(skip_bad_records, WhenStuck::Stop);
        PageHealth::new(store, key, health, then)
    }

    /// Nothing failed yet; `then` says what the caller does once a window is stuck. A stuck
    /// site is reported to `health` (`/readyz`).
    pub fn new(store: &Store, key: &SiteKey, health: &Health, then: WhenStuck) -> PageHealth {
        PageHealth {
            store: store.clone(),
            key: key.clone(),
            health: health.clone(),
            then,
            repeats: BTreeMap::new(),
        }
    }

    /// The window `[from, until)` failed with `e`: records the error for `status`. Returns
    /// `None` while the window is not stuck (the caller logs and pauses as for any failure);
    /// once stuck, logs the ERROR, marks the site stuck (metrics, `/readyz`) and returns the
    /// pause before the next attempt.
    pub async fn failed(
        &mut self,
        (from, until): (i64, i64),
        e: &SourceError,
        interval_secs: i64,
    ) -> Result<Option<Duration>, StoreError> {
        let stuck = self.count(from, until, e, interval_secs);
        self.store
            .set_site_error(&self.key, &self.error_text(from, e))
            .await?;
        Ok(stuck)
    }

    fn count(
        &mut self,
        from: i64,
        until: i64,
        e: &SourceError,
        interval_secs: i64,
    ) -> Option<Duration> {
        if !e.is_unreadable() {
            // Not the same failure: the count is of attempts in a row.
            self.repeats.remove(&from);
            self.refresh();
            return None;
        }
        let n = self.repeats.entry(from).or_insert(0);
        *n = n.saturating_add(1);
        let n = *n;
        if n < STUCK_AFTER {
            return None;
        }
        let (from_s, until_s) = (rfc3339(from), rfc3339(until));
        let site = self.key.site.as_str();
        self.health.site_stuck(
            site,
            Some(&format!(
                "window {from_s}..{until_s} failed {n} times in a row: {e}"
            )),
        );
        let pause = Duration::from_secs(interval_secs.max(1) as u64)
            .saturating_mul(1 << (n - STUCK_AFTER).min(16))
            .min(MAX_STUCK_PAUSE);
        match self.then {
            WhenStuck::KeepBadRecords => {
                error!(site, from = %from_s, until = %until_s, attempts = n, error = %e,
                "Site stuck on a feed page that cannot be read; fetching the window again keeping bad records apart as dead letters (poll.skip_bad_records). A reply that is not JSON cannot be split into records and stays stuck.")
            }
            WhenStuck::Retry => {
                error!(site, from = %from_s, until = %until_s, attempts = n, error = %e, retry_secs = pause.as_secs(),
                "Site stuck on a feed page that cannot be read: no data moves for this site until the feed serves it readable. Nothing is skipped; to keep such records as dead letters and export the rest of the page, set poll.skip_bad_records = true.")
            }
            WhenStuck::Stop => {
                error!(site, from = %from_s, until = %until_s, attempts = n, error = %e,
                "Site stuck on a feed page that cannot be read: stopping. Nothing is skipped; to keep such records as dead letters and export the rest of the page, set poll.skip_bad_records = true.")
            }
        }
        Some(pause)
    }

    /// Whether the window starting at `from` has failed [`STUCK_AFTER`] times in a row.
    pub fn is_stuck(&self, from: i64) -> bool {
        self.repeats.get(&from).is_some_and(|n| *n >= STUCK_AFTER)
    }

    /// Whether the next attempt of the window starting at `from` keeps bad records apart.
    pub fn keep_bad(&self, from: i64) -> bool {
        self.then == WhenStuck::KeepBadRecords && self.is_stuck(from)
    }

    /// With [`WhenStuck::Stop`], once the window starting at `from` is stuck: the error to
    /// stop with, naming the site, the record and the way out.
    pub fn stop(&self, from: i64, e: &SourceError) -> Option<String> {
        (self.then == WhenStuck::Stop && self.is_stuck(from)).then(|| {
            format!(
                "site `{}`: {}; set poll.skip_bad_records = true to keep such records as dead \
                 letters and export the rest",
                self.key.site,
                self.error_text(from, e)
            )
        })
    }

    /// The error to record for `status`: as logged, saying so when the site is stuck.
    pub fn error_text(&self, from: i64, e: &SourceError) -> String {
        match self.repeats.get(&from) {
            Some(&n) if n >= STUCK_AFTER => {
                format!("stuck: the same window failed {n} times in a row: {e}")
            }
            _ => e.to_string(),
        }
    }

    /// The window starting at `from` was exported: its count is gone, and the site is no
    /// longer reported stuck once no window is.
    pub fn succeeded(&mut self, from: i64) {
        if self.repeats.remove(&from).is_some() {
            self.refresh();
        }
    }

    fn refresh(&self) {
        if !self.repeats.values().any(|n| *n >= STUCK_AFTER) {
            self.health.site_stuck(&self.key.site, None);
        }
    }
}

/// Keeps the records of one page of the window `[from, until)` that cannot be exported as
/// dead letters, logging each at ERROR (`poll.skip_bad_records`).
pub async fn keep_rejected(
    store: &Store,
    key: &SiteKey,
    from: i64,
    until: i64,
    rejected: Vec<Rejected>,
) -> Result<(), StoreError> {
    let (from_s, until_s) = (rfc3339(from), rfc3339(until));
    let letters: Vec<FeedLetter> = rejected
        .iter()
        .map(|r| FeedLetter {
            id: r.id.clone().unwrap_or_default(),
            ts: r.ts,
            body: r.raw.clone(),
            reason: format!("{r}, in a page of the window {from_s}..{until_s}"),
        })
        .collect();
    let added = store.keep_feed_letters(key, letters).await?;
    metrics::feed_dead_letters(&key.site, added);
    for r in &rejected {
        error!(site = %key.site, from = %from_s, until = %until_s, record = %r.place, problem = %r.problem,
            "Feed record kept as a dead letter, not exported (poll.skip_bad_records); the rest of its page is. See `sigsci-export dead-letters list --sink {FEED_LETTERS_SINK}`.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ErrorClass;

    fn unreadable() -> SourceError {
        SourceError::new(
            ErrorClass::Unreadable,
            "transient API failure: unreadable feed page (10 bytes): data[0] (record 1 of 1): \
             record has no id",
        )
    }

    #[tokio::test]
    async fn a_window_is_stuck_after_the_same_failure_in_a_row_and_recovers_on_success() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let key = SiteKey {
            ns: "run".into(),
            corp: "acme".into(),
            site: "health-www".into(),
        };
        let health = Health::new();
        let mut h = PageHealth::new(&store, &key, &health, WhenStuck::Retry);
        let other = SourceError::new(
            ErrorClass::Transient,
            "transient API failure: HTTP 503: busy",
        );
        for _ in 1..STUCK_AFTER {
            assert_eq!(h.count(60, 120, &unreadable(), 60), None);
        }
        // Another kind of failure breaks the run.
        assert_eq!(h.count(60, 120, &other, 60), None);
        for _ in 1..STUCK_AFTER {
            assert_eq!(h.count(60, 120, &unreadable(), 60), None);
        }
        assert!(!h.is_stuck(60));
        assert_eq!(
            h.failed((60, 120), &unreadable(), 60).await.unwrap(),
            Some(Duration::from_secs(60))
        );
        assert!(h.is_stuck(60));
        assert!(!h.keep_bad(60), "not without poll.skip_bad_records");
        assert_eq!(h.stop(60, &unreadable()), None, "run keeps retrying");
        let recorded = &store.site_errors().await.unwrap()[0].error;
        assert!(
            recorded.starts_with("stuck: the same window failed 5 times in a row: "),
            "{recorded}"
        );
        assert!(recorded.contains("record has no id"), "{recorded}");
        assert!(
            health
                .blocked()
                .iter()
                .any(|(c, r)| c == "feed:health-www" && r.contains("record has no id"))
        );
        // The pause doubles up to the cap.
        assert_eq!(
            h.count(60, 120, &unreadable(), 60),
            Some(Duration::from_secs(120))
        );
        for _ in 0..10 {
            h.count(60, 120, &unreadable(), 60);
        }
        assert_eq!(h.count(60, 120, &unreadable(), 60), Some(MAX_STUCK_PAUSE));
        // Another window of the same site is counted on its own.
        assert_eq!(h.count(120, 180, &unreadable(), 60), None);
        h.succeeded(60);
        assert!(!h.is_stuck(60));
        assert!(!health.blocked().iter().any(|(c, _)| c == "feed:health-www"));
    }

    #[test]
    fn what_a_stuck_window_leads_to() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let key = SiteKey {
            ns: "backfill:0-600".into(),
            corp: "acme".into(),
            site: "health-api".into(),
        };
        let stuck = |then| {
            let mut h = PageHealth::new(&store, &key, &Health::new(), then);
            for _ in 0..STUCK_AFTER {
                h.count(0, 600, &unreadable(), 1);
            }
            h
        };
        let skip = stuck(WhenStuck::unless_skipping(true, WhenStuck::Stop));
        assert!(skip.keep_bad(0));
        assert_eq!(skip.stop(0, &unreadable()), None);
        let stop = stuck(WhenStuck::unless_skipping(false, WhenStuck::Stop));
        assert!(!stop.keep_bad(0));
        let why = stop.stop(0, &unreadable()).unwrap();
        assert!(why.starts_with("site `health-api`: stuck: "), "{why}");
        assert!(why.ends_with("set poll.skip_bad_records = true to keep such records as dead letters and export the rest"), "{why}");
    }
}
