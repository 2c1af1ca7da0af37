//! Records the feed should not send, noticed and counted rather than passed on in silence: an
//! id seen again in the same window with other content, and a timestamp outside the window
//! that was asked for.
//!
//! Neither is dropped here, and neither changes what is exported: the spool keeps the first
//! copy of an id (its de-duplication is by id, so a changed copy is dropped there, as any
//! repeat), and a record timestamped outside its window is spooled like the others (the API
//! chose to send it). What this adds is that both are counted in
//! `sigsci_export_feed_anomalies_total{site,kind}` and logged at WARN once per window, with an
//! example, so a feed that misbehaves is seen.
//!
//! Memory is bounded: the ids and content hashes of the last [`REMEMBERED`] records of the
//! window (two 8-byte hashes each), enough for the API's repeats, which come back within a
//! page or two of the first copy. A changed copy further away is not noticed.

use std::collections::HashMap;
use std::hash::BuildHasher;

use tracing::warn;

use crate::store::NewEvent;
use crate::telemetry::metrics;
use crate::time::rfc3339;

/// Records of a window whose content is remembered, to compare a repeated id with.
const REMEMBERED: usize = 4096;

/// The anomalies of one window of one site; logs its WARN when dropped (the window is over).
pub(super) struct FeedAnomalies {
    site: String,
    from: i64,
    until: i64,
    hasher: foldhash::fast::FixedState,
    /// id hash -> content hash, newest records; `older` holds the generation before.
    recent: HashMap<u64, u64>,
    older: HashMap<u64, u64>,
    changed: usize,
    outside: usize,
    changed_example: Option<String>,
    outside_example: Option<(String, i64)>,
}

impl FeedAnomalies {
    /// For the window `[from, until)` of `site`.
    pub(super) fn new(site: &str, from: i64, until: i64) -> FeedAnomalies {
        FeedAnomalies {
            site: site.to_string(),
            from,
            until,
            hasher: foldhash::fast::FixedState::default(),
            recent: HashMap::new(),
            older: HashMap::new(),
            changed: 0,
            outside: 0,
            changed_example: None,
            outside_example: None,
        }
    }

    /// Looks at one page's records (before any filter: a changed copy is one whatever it holds).
    pub(super) fn inspect(&mut self, events: &[NewEvent]) {
        let (mut changed, mut outside) = (0, 0);
        for e in events {
            if e.ts < self.from || e.ts >= self.until {
                outside += 1;
                self.outside_example
                    .get_or_insert_with(|| (e.id.clone(), e.ts));
            }
            let id = self.hasher.hash_one(e.id.as_str());
            let content = self.hasher.hash_one(e.body.as_str());
            let before = match self.recent.get(&id) {
                Some(c) => Some(*c),
                None => self.older.get(&id).copied(),
            };
            match before {
                Some(c) if c != content => {
                    changed += 1;
                    self.changed_example.get_or_insert_with(|| e.id.clone());
                }
                // The first copy is the one compared with (it is the one the spool keeps).
                Some(_) => {}
                None => {
                    if self.recent.len() >= REMEMBERED / 2 {
                        self.older = std::mem::take(&mut self.recent);
                    }
                    self.recent.insert(id, content);
                }
            }
        }
        metrics::feed_anomalies(&self.site, "changed_duplicate", changed);
        metrics::feed_anomalies(&self.site, "outside_window", outside);
        self.changed += changed;
        self.outside += outside;
    }

    /// (changed duplicates, records outside the window) so far.
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        (self.changed, self.outside)
    }
}

impl Drop for FeedAnomalies {
    fn drop(&mut self) {
        if self.changed == 0 && self.outside == 0 {
            return;
        }
        let changed_example = self.changed_example.as_deref().unwrap_or("");
        let (outside_id, outside_ts) = match &self.outside_example {
            Some((id, ts)) => (id.as_str(), rfc3339(*ts)),
            None => ("", String::new()),
        };
        warn!(
            site = %self.site,
            from = %rfc3339(self.from),
            until = %rfc3339(self.until),
            changed_duplicates = self.changed,
            changed_example,
            outside_window = self.outside,
            outside_example = outside_id,
            outside_example_ts = %outside_ts,
            "The feed sent odd records in this window: ids repeated with other content (the first copy is kept) and/or records timestamped outside the window asked for (exported anyway); counted in sigsci_export_feed_anomalies_total."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, ts: i64, body: &str) -> NewEvent {
        NewEvent {
            id: id.into(),
            ts,
            body: body.into(),
        }
    }

    #[test]
    fn counts_changed_copies_and_records_outside_the_window() {
        let mut a = FeedAnomalies::new("anomalies-www", 600, 1200);
        a.inspect(&[
            ev("a", 600, r#"{"id":"a"}"#),
            ev("b", 1199, r#"{"id":"b"}"#),
            // The same copy again: a normal repeat.
            ev("a", 600, r#"{"id":"a"}"#),
        ]);
        assert_eq!(a.counts(), (0, 0));
        a.inspect(&[
            ev("a", 600, r#"{"id":"a","x":1}"#),
            ev("c", 1200, r#"{"id":"c"}"#),
            ev("d", 599, r#"{"id":"d"}"#),
        ]);
        assert_eq!(a.counts(), (1, 2));
        assert_eq!(a.changed_example.as_deref(), Some("a"));
        assert_eq!(a.outside_example, Some(("c".to_string(), 1200)));
    }

    #[test]
    fn memory_stays_bounded() {
        let mut a = FeedAnomalies::new("anomalies-big", 0, 1 << 40);
        let events: Vec<NewEvent> = (0..REMEMBERED * 3)
            .map(|i| ev(&format!("id{i}"), 1, "{}"))
            .collect();
        a.inspect(&events);
        assert!(a.recent.len() + a.older.len() <= REMEMBERED);
        // The newest ones are still compared.
        a.inspect(&[ev(&format!("id{}", REMEMBERED * 3 - 1), 1, "{\"x\":1}")]);
        assert_eq!(a.counts(), (1, 0));
    }
}
