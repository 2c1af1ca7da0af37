//! The scheduler's loops against a scripted source ([`FakeSource`]) and a real store: what
//! they commit, where the cursor goes, and what a failure of each class leads to.

mod backfill;
mod live;

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{Ctx, RunError};
use crate::config::{PollConfig, SpoolConfig, WhenFull};
use crate::health::Health;
use crate::source::{ErrorClass, Page, Pages, Partitions, Position, Probe, Source, SourceError};
use crate::store::{NewEvent, SiteKey, Store};

/// The partition every test exports.
const SITE: &str = "www";

/// One answer of the fake source to a page request.
#[derive(Debug, Clone)]
enum Step {
    /// A page of records with these ids (each timestamped at the window's start).
    Page(&'static [&'static str]),
    /// A failure of this class.
    Fail(ErrorClass),
}

/// One window as the scheduler asked for it, and the cursor stored when each of its pages was
/// asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fetched {
    from: i64,
    until: i64,
    cursors: Vec<Option<i64>>,
}

/// What the fake plays, and what it saw.
#[derive(Default)]
struct Script {
    /// Per window start, one list of steps per attempt, in order. A window without one left
    /// is a single empty last page.
    attempts: Mutex<HashMap<i64, VecDeque<Vec<Step>>>>,
    /// Every window asked for, in order.
    fetched: Mutex<Vec<Fetched>>,
    /// Where the scheduler stores the cursor, read at each page request.
    store: Mutex<Option<(Store, SiteKey)>>,
}

/// A source that plays a script of pages and errors, with a fixed horizon and retention.
struct FakeSource {
    script: Arc<Script>,
    /// The newest watermark served, whatever the time.
    horizon: i64,
    /// Everything before it is lost, whatever the time.
    oldest: i64,
}

impl FakeSource {
    fn new(horizon: i64) -> FakeSource {
        FakeSource {
            script: Arc::default(),
            horizon,
            oldest: i64::MIN,
        }
    }

    /// The window starting at `from` plays `attempts`, one after the other.
    fn play(self, from: i64, attempts: Vec<Vec<Step>>) -> FakeSource {
        self.script
            .attempts
            .lock()
            .unwrap()
            .insert(from, attempts.into());
        self
    }

    /// Reads `key`'s cursor in `store` at each page request.
    fn watch(&self, store: &Store, key: &SiteKey) {
        *self.script.store.lock().unwrap() = Some((store.clone(), key.clone()));
    }

    fn fetched(&self) -> Vec<Fetched> {
        self.script.fetched.lock().unwrap().clone()
    }

    fn windows(&self) -> Vec<(i64, i64)> {
        self.fetched().iter().map(|f| (f.from, f.until)).collect()
    }
}

#[async_trait]
impl Source for FakeSource {
    fn scope(&self) -> &str {
        "acme"
    }

    fn partitions(&self) -> Partitions {
        Partitions::Listed(vec![SITE.to_string()])
    }

    async fn discover(&self) -> Result<Vec<String>, SourceError> {
        Ok(vec![SITE.to_string()])
    }

    fn horizon(&self, _now: i64) -> i64 {
        self.horizon
    }

    fn retention_secs(&self) -> i64 {
        86_400
    }

    fn lost(&self, watermark: i64, _now: i64, cap: i64) -> Option<Range<i64>> {
        let oldest = self.oldest.min(cap);
        (watermark < oldest).then_some(watermark..oldest)
    }

    fn fetch(&self, _site: &str, from: &Position, until: i64, _keep_bad: bool) -> Box<dyn Pages> {
        let steps = self
            .script
            .attempts
            .lock()
            .unwrap()
            .get_mut(&from.watermark)
            .and_then(VecDeque::pop_front)
            .unwrap_or_else(|| vec![Step::Page(&[])]);
        let mut fetched = self.script.fetched.lock().unwrap();
        fetched.push(Fetched {
            from: from.watermark,
            until,
            cursors: Vec::new(),
        });
        Box::new(FakePages {
            script: self.script.clone(),
            index: fetched.len() - 1,
            steps: steps.into(),
            from: from.watermark,
            until,
        })
    }

    async fn healthcheck(&self) -> Vec<Probe> {
        Vec::new()
    }
}

/// One attempt of one window.
struct FakePages {
    script: Arc<Script>,
    /// Its entry in `Script::fetched`.
    index: usize,
    steps: VecDeque<Step>,
    from: i64,
    until: i64,
}

#[async_trait]
impl Pages for FakePages {
    async fn next(&mut self) -> Result<Option<Page>, SourceError> {
        let watched = self.script.store.lock().unwrap().clone();
        if let Some((store, key)) = watched {
            let cursor = store.cursor(&key).await.unwrap();
            self.script.fetched.lock().unwrap()[self.index]
                .cursors
                .push(cursor);
        }
        let Some(step) = self.steps.pop_front() else {
            return Ok(None);
        };
        let ids = match step {
            Step::Fail(class) => {
                return Err(SourceError::new(class, format!("scripted {class:?}")));
            }
            Step::Page(ids) => ids,
        };
        let done = self.steps.is_empty();
        let records = ids
            .iter()
            .map(|id| NewEvent {
                id: id.to_string(),
                ts: self.from,
                body: format!(r#"{{"id":"{id}"}}"#).into(),
            })
            .collect();
        let next = match done {
            true => Position::at(self.until),
            false => Position {
                watermark: self.from,
                token: Some(format!("after {}", ids.len())),
            },
        };
        Ok(Some(Page {
            records,
            next,
            done,
            rejected: Vec::new(),
        }))
    }
}

/// Poll settings for tests: one-second ticks, ten-minute windows, two backfill windows at once.
fn poll() -> PollConfig {
    PollConfig {
        interval_secs: 1,
        delay_secs: 0,
        max_window_secs: 600,
        start_at: Some(0),
        backfill_windows: 2,
        skip_bad_records: false,
    }
}

/// A store with one sink registered in `ns`, the context of a scheduler on `source`, and the
/// key of [`SITE`] in `ns`.
struct Harness {
    _dir: tempfile::TempDir,
    store: Store,
    health: Health,
    cancel: CancellationToken,
    ctx: Ctx,
    key: SiteKey,
}

impl Harness {
    async fn new(source: Arc<FakeSource>, ns: &str) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        store
            .register_sinks(ns, &["sink".to_string()])
            .await
            .unwrap();
        let spool = SpoolConfig {
            path: dir.path().join("s.db"),
            max_bytes: u64::MAX,
            when_full: WhenFull::Block,
        };
        let (health, cancel) = (Health::new(), CancellationToken::new());
        let key = SiteKey {
            ns: ns.to_string(),
            corp: "acme".to_string(),
            site: SITE.to_string(),
        };
        source.watch(&store, &key);
        let ctx = Ctx::new(source, &store, &spool, &health, &cancel);
        Harness {
            _dir: dir,
            store,
            health,
            cancel,
            ctx,
            key,
        }
    }

    /// The ids spooled in `ns`, in spool order.
    async fn spooled(&self) -> Vec<String> {
        let events = self
            .store
            .read_batch(&self.key.ns, "sink", 1000, usize::MAX)
            .await
            .unwrap();
        events.into_iter().map(|e| e.id.to_string()).collect()
    }

    async fn cursor(&self) -> Option<i64> {
        self.store.cursor(&self.key).await.unwrap()
    }

    /// Waits (ten seconds at most) until `done` holds.
    async fn until<F: AsyncFnMut(&Harness) -> bool>(&self, mut done: F) {
        for _ in 0..1000 {
            if done(self).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for the scheduler");
    }
}

#[test]
fn a_fatal_feed_error_prints_its_cause_once() {
    let e = RunError::from(SourceError::new(
        ErrorClass::Operator,
        "refused the feed's next URI",
    ));
    let chain = format!("{:#}", anyhow::Error::from(e).context("backfill failed"));
    assert_eq!(chain, "backfill failed: refused the feed's next URI");
}
