//! Driver tests with a scripted fake sink (no HTTP): every outcome path settles exactly what it
//! should and loses nothing.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::*;
use crate::sink::Ack;
use crate::store::{NewEvent, SiteKey};

type Step = Box<dyn Fn(&Batch) -> Result<Ack, SinkError> + Send>;

/// Follows its script, one step per send; afterwards delivers everything. Records what it
/// accepted as delivered, and refuses batches larger than `max_batch` (413).
#[derive(Default)]
struct FakeSink {
    script: Mutex<VecDeque<Step>>,
    delivered: Mutex<Vec<String>>,
    sends: Mutex<Vec<usize>>,
    max_batch: Option<usize>,
    too_large_ids: Vec<String>,
    healthy_after: Mutex<u32>,
}

impl FakeSink {
    fn then(self, step: impl Fn(&Batch) -> Result<Ack, SinkError> + Send + 'static) -> Self {
        self.script.lock().unwrap().push_back(Box::new(step));
        self
    }
    fn delivered(&self) -> Vec<String> {
        let mut d = self.delivered.lock().unwrap().clone();
        d.sort();
        d
    }
}

#[async_trait::async_trait]
impl Sink for FakeSink {
    fn name(&self) -> &str {
        "fake"
    }
    async fn send(&self, batch: &Batch) -> Result<Ack, SinkError> {
        self.sends.lock().unwrap().push(batch.events.len());
        if self.max_batch.is_some_and(|m| batch.events.len() > m)
            || batch
                .events
                .iter()
                .any(|e| self.too_large_ids.iter().any(|id| *id == e.id))
        {
            return Err(SinkError::TooLarge);
        }
        let step = self.script.lock().unwrap().pop_front();
        let ack = match step {
            Some(step) => step(batch)?,
            None => Ack::all_delivered(batch.events.len()),
        };
        let mut d = self.delivered.lock().unwrap();
        for (ev, item) in batch.events.iter().zip(&ack.items) {
            if matches!(item, ItemOutcome::Delivered | ItemOutcome::Duplicate) {
                d.push(ev.id.to_string());
            }
        }
        Ok(ack)
    }
    async fn healthcheck(&self) -> Result<(), SinkError> {
        let mut n = self.healthy_after.lock().unwrap();
        if *n > 0 {
            *n -= 1;
            return Err(SinkError::Blocked {
                reason: "still down".into(),
            });
        }
        Ok(())
    }
}

async fn store_with(n: usize) -> (tempfile::TempDir, Store, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    store
        .register_sinks("run", &["fake".to_string()])
        .await
        .unwrap();
    let key = SiteKey {
        ns: "run".into(),
        corp: "c".into(),
        site: "s".into(),
    };
    let ids: Vec<String> = (0..n).map(|i| format!("id{i:04}")).collect();
    let events = ids
        .iter()
        .map(|id| NewEvent {
            id: id.clone(),
            ts: 1000,
            body: crate::store::Body::from(format!("{{\"id\":\"{id}\"}}")),
        })
        .collect();
    store
        .commit_page(&key, events, 1000, Some(60))
        .await
        .unwrap();
    (dir, store, ids)
}

const FAST: RetryDelays = RetryDelays {
    min: Duration::from_millis(1),
    max: Duration::from_millis(5),
};

/// Runs the driver until the sink's backlog is empty (or 10 s pass), then stops it.
async fn drive(store: &Store, sink: Arc<FakeSink>, max_events: usize) {
    let cancel = CancellationToken::new();
    let limits = BatchLimits {
        max_events,
        max_bytes: 1 << 20,
        linger: Duration::ZERO,
        in_flight: 1,
    };
    let driver = Driver::new(sink, store.clone(), "run", limits, cancel.clone()).with_delays(FAST);
    let task = tokio::spawn(driver.run());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.pending("run", "fake").await.unwrap() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cancel.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn delivers_everything_and_prunes_the_spool() {
    let (_d, store, ids) = store_with(25).await;
    let sink = Arc::new(FakeSink::default());
    drive(&store, sink.clone(), 10).await;
    assert_eq!(sink.delivered(), ids);
    assert_eq!(*sink.sends.lock().unwrap(), vec![10, 10, 5]);
    assert_eq!(store.pending("run", "fake").await.unwrap(), 0);
    let st = store.sink_states().await.unwrap();
    assert_eq!(st[0].pending_events, 0);
}

#[tokio::test]
async fn retryable_failures_are_retried_until_they_pass() {
    let (_d, store, ids) = store_with(5).await;
    let sink = Arc::new(
        FakeSink::default()
            .then(|_| {
                Err(SinkError::Retryable {
                    reason: "503".into(),
                    after: None,
                })
            })
            .then(|_| {
                Err(SinkError::Retryable {
                    reason: "timeout".into(),
                    after: Some(Duration::from_millis(5)),
                })
            }),
    );
    drive(&store, sink.clone(), 100).await;
    assert_eq!(sink.delivered(), ids);
    assert_eq!(sink.sends.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn only_retry_items_are_resent_and_rejected_ones_are_dead_lettered() {
    let (_d, store, ids) = store_with(4).await;
    let sink = Arc::new(FakeSink::default().then(|b| {
        assert_eq!(b.events.len(), 4);
        Ok(Ack {
            items: vec![
                ItemOutcome::Delivered,
                ItemOutcome::Retry { after: None },
                ItemOutcome::Rejected {
                    reason: "mapper_parsing_exception: bad field".into(),
                },
                ItemOutcome::Duplicate,
            ],
        })
    }));
    drive(&store, sink.clone(), 100).await;
    assert_eq!(
        *sink.sends.lock().unwrap(),
        vec![4, 1],
        "only the retry item is resent"
    );
    assert_eq!(
        sink.delivered(),
        vec![ids[0].clone(), ids[1].clone(), ids[3].clone()]
    );
    let dead = store.dead_letters(Some("fake"), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, ids[2]);
    assert!(dead[0].reason.contains("mapper_parsing_exception"));
    assert_eq!(store.pending("run", "fake").await.unwrap(), 0);
}

#[tokio::test]
async fn too_large_halves_and_dead_letters_a_single_oversized_event() {
    let (_d, store, ids) = store_with(8).await;
    let sink = Arc::new(FakeSink {
        max_batch: Some(3),
        too_large_ids: vec!["id0005".into()],
        ..FakeSink::default()
    });
    drive(&store, sink.clone(), 8).await;
    let expected: Vec<String> = ids.iter().filter(|i| *i != "id0005").cloned().collect();
    assert_eq!(sink.delivered(), expected);
    let dead = store.dead_letters(None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, "id0005");
    assert!(dead[0].reason.contains("413"));
    assert!(sink.sends.lock().unwrap().iter().all(|&n| n <= 8));
}

#[tokio::test]
async fn a_blocked_sink_keeps_its_data_and_resumes_when_healthy() {
    let (_d, store, ids) = store_with(3).await;
    let sink = Arc::new(
        FakeSink {
            healthy_after: Mutex::new(2),
            ..FakeSink::default()
        }
        .then(|_| {
            Err(SinkError::Blocked {
                reason: "HEC token disabled".into(),
            })
        }),
    );
    drive(&store, sink.clone(), 100).await;
    assert_eq!(sink.delivered(), ids);
    assert_eq!(
        *sink.healthy_after.lock().unwrap(),
        0,
        "probed health until it recovered"
    );
}

#[tokio::test]
async fn a_wrong_outcome_count_is_not_taken_as_delivery() {
    let (_d, store, ids) = store_with(3).await;
    let sink = Arc::new(FakeSink::default().then(|_| Ok(Ack::all_delivered(1))));
    drive(&store, sink.clone(), 100).await;
    assert_eq!(
        sink.delivered().len(),
        4,
        "first (bogus) answer counted 1, then all 3 resent"
    );
    let mut d = sink.delivered();
    d.dedup();
    assert_eq!(d, ids);
}

#[tokio::test]
async fn cancellation_stops_a_retrying_driver_without_settling() {
    let (_d, store, _ids) = store_with(3).await;
    let sink = Arc::new(FakeSink::default());
    for _ in 0..1000 {
        sink.script.lock().unwrap().push_back(Box::new(|_| {
            Err(SinkError::Retryable {
                reason: "down".into(),
                after: None,
            })
        }));
    }
    let cancel = CancellationToken::new();
    let limits = BatchLimits {
        max_events: 10,
        max_bytes: 1 << 20,
        linger: Duration::ZERO,
        in_flight: 1,
    };
    let driver =
        Driver::new(sink.clone(), store.clone(), "run", limits, cancel.clone()).with_delays(FAST);
    let task = tokio::spawn(driver.run());
    tokio::time::sleep(Duration::from_millis(50)).await;
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        store.pending("run", "fake").await.unwrap(),
        3,
        "nothing settled"
    );
}

/// Delivers everything, but holds any send containing `hold_id` until `release` is notified,
/// and records how many sends were in progress at once.
#[derive(Default)]
struct GatedSink {
    hold_id: String,
    fail_id: String,
    release: tokio::sync::Notify,
    active: std::sync::atomic::AtomicUsize,
    max_active: std::sync::atomic::AtomicUsize,
    delivered: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl Sink for GatedSink {
    fn name(&self) -> &str {
        "fake"
    }
    async fn send(&self, batch: &Batch) -> Result<Ack, SinkError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.active.fetch_add(1, SeqCst) + 1;
        self.max_active.fetch_max(now, SeqCst);
        if batch.events.iter().any(|e| e.id == self.hold_id) {
            self.release.notified().await;
        }
        self.active.fetch_sub(1, SeqCst);
        if batch.events.iter().any(|e| e.id == self.fail_id) {
            return Err(SinkError::Retryable {
                reason: "503".into(),
                after: None,
            });
        }
        let mut d = self.delivered.lock().unwrap();
        d.extend(batch.events.iter().map(|e| e.id.to_string()));
        Ok(Ack::all_delivered(batch.events.len()))
    }
    async fn healthcheck(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

fn start(
    store: &Store,
    sink: Arc<dyn Sink>,
    max_events: usize,
    in_flight: usize,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), StoreError>>,
) {
    let cancel = CancellationToken::new();
    let limits = BatchLimits {
        max_events,
        max_bytes: 1 << 20,
        linger: Duration::ZERO,
        in_flight,
    };
    let driver = Driver::new(sink, store.clone(), "run", limits, cancel.clone()).with_delays(FAST);
    (cancel, tokio::spawn(driver.run()))
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits (at most 10 s) until the sink's backlog is empty.
async fn drained(store: &Store) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.pending("run", "fake").await.unwrap() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "backlog never drained"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn later_batches_settle_ahead_of_a_held_one_and_the_offset_waits() {
    let (_d, store, ids) = store_with(40).await;
    let sink = Arc::new(GatedSink {
        hold_id: ids[0].clone(),
        ..GatedSink::default()
    });
    let (cancel, task) = start(&store, sink.clone(), 10, 3);
    // The first batch is held; the other three go out meanwhile and are delivered.
    wait_for("the three later batches delivered", || {
        sink.delivered.lock().unwrap().len() >= 30
    })
    .await;
    let most = sink.max_active.load(std::sync::atomic::Ordering::SeqCst);
    assert!((2..=3).contains(&most), "in_flight is a bound: {most}");
    assert_eq!(
        store.pending("run", "fake").await.unwrap(),
        40,
        "the offset does not move past the held first batch"
    );
    sink.release.notify_one();
    drained(&store).await;
    cancel.cancel();
    task.await.unwrap().unwrap();
    let mut got = sink.delivered.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, ids, "each event once");
}

#[tokio::test]
async fn a_restart_resends_only_the_batch_that_was_unfinished() {
    let (_d, store, ids) = store_with(40).await;
    // The second batch keeps failing; the others are delivered and settled ahead of it.
    let sink = Arc::new(GatedSink {
        fail_id: ids[10].clone(),
        ..GatedSink::default()
    });
    let (cancel, task) = start(&store, sink.clone(), 10, 3);
    wait_for("every other batch delivered", || {
        sink.delivered.lock().unwrap().len() >= 30
    })
    .await;
    cancel.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(
        store.pending("run", "fake").await.unwrap(),
        30,
        "the offset passed the first batch only"
    );
    // The next run sends the unfinished batch, and nothing it already delivered.
    let again = Arc::new(FakeSink::default());
    drive(&store, again.clone(), 10).await;
    assert_eq!(again.delivered(), ids[10..20].to_vec());
    assert_eq!(store.pending("run", "fake").await.unwrap(), 0);
}

#[tokio::test]
async fn a_sink_refusing_everything_is_blocked_instead_of_dead_lettering_the_spool() {
    let n = REJECTION_STREAK_LIMIT + 50;
    let (_d, store, ids) = store_with(n).await;
    let refuse = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let r = refuse.clone();
    let sink = Arc::new(FakeSink::default());
    for _ in 0..10_000 {
        let r = r.clone();
        sink.script
            .lock()
            .unwrap()
            .push_back(Box::new(move |b: &Batch| {
                if r.load(std::sync::atomic::Ordering::SeqCst) {
                    Ok(Ack {
                        items: vec![
                            ItemOutcome::Rejected {
                                reason: "400 code 6 invalid-event-number 0".into(),
                            };
                            b.events.len()
                        ],
                    })
                } else {
                    Ok(Ack::all_delivered(b.events.len()))
                }
            }));
    }
    let (cancel, task) = start(&store, sink.clone(), 20, 1);
    let blocked = || async {
        store
            .blocked_sinks()
            .await
            .unwrap()
            .into_iter()
            .any(|b| b.sink == "fake")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !blocked().await {
        assert!(std::time::Instant::now() < deadline, "never blocked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let dead = store.dead_letters(Some("fake"), 1000).await.unwrap();
    assert_eq!(
        dead.len(),
        REJECTION_STREAK_LIMIT,
        "dead letters stop at the limit"
    );
    // The operator fixes the cause: everything else is delivered and the block clears.
    refuse.store(false, std::sync::atomic::Ordering::SeqCst);
    drained(&store).await;
    assert!(!blocked().await, "block cleared after delivery resumed");
    cancel.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(sink.delivered(), ids[REJECTION_STREAK_LIMIT..].to_vec());
}

#[tokio::test]
async fn a_partial_batch_lingers_until_flushed() {
    let (_d, store, ids) = store_with(5).await;
    let sink = Arc::new(FakeSink::default());
    let cancel = CancellationToken::new();
    let flush = CancellationToken::new();
    let limits = BatchLimits {
        max_events: 100,
        max_bytes: 1 << 20,
        linger: Duration::from_secs(600),
        in_flight: 1,
    };
    let driver = Driver::new(sink.clone(), store.clone(), "run", limits, cancel.clone())
        .with_delays(FAST)
        .with_flush(flush.clone());
    let task = tokio::spawn(driver.run());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(sink.delivered().is_empty(), "five events wait for more");
    flush.cancel();
    wait_for("the partial batch sent", || sink.delivered().len() == 5).await;
    assert_eq!(sink.delivered(), ids);
    cancel.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn bad_events_beside_stored_ones_are_dead_lettered_however_many() {
    let n = REJECTION_STREAK_LIMIT * 2;
    let (_d, store, ids) = store_with(n + 1).await;
    // One reply: every event refused but the last, which is stored.
    let sink = Arc::new(FakeSink::default().then(|b| {
        let mut items = vec![
            ItemOutcome::Rejected {
                reason: "mapper_parsing_exception".into()
            };
            b.events.len()
        ];
        *items.last_mut().unwrap() = ItemOutcome::Delivered;
        Ok(Ack { items })
    }));
    drive(&store, sink.clone(), n + 1).await;
    assert_eq!(sink.delivered(), vec![ids[n].clone()]);
    assert_eq!(
        store.dead_letters(Some("fake"), 1000).await.unwrap().len(),
        n
    );
    assert!(
        store.blocked_sinks().await.unwrap().is_empty(),
        "not blocked"
    );
}

/// Replies the sink cannot read are retried at WARN, and a run of them blocks the sink (it
/// would otherwise retry forever with `/readyz` ready); the first reply understood clears it,
/// and nothing is settled from an unreadable reply.
#[tokio::test]
async fn a_run_of_unreadable_replies_blocks_the_sink_until_one_is_understood() {
    let (_d, store, ids) = store_with(3).await;
    let unreadable = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sink = Arc::new(FakeSink::default());
    for _ in 0..10_000 {
        let u = unreadable.clone();
        sink.script
            .lock()
            .unwrap()
            .push_back(Box::new(move |b: &Batch| {
                if u.load(std::sync::atomic::Ordering::SeqCst) {
                    Err(SinkError::Unreadable {
                        reason: "bulk reply has an item without `status`".into(),
                        after: None,
                    })
                } else {
                    Ok(Ack::all_delivered(b.events.len()))
                }
            }));
    }
    let blocked = || async {
        store
            .blocked_sinks()
            .await
            .unwrap()
            .into_iter()
            .find(|b| b.sink == "fake")
    };
    let (cancel, task) = start(&store, sink.clone(), 10, 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let reason = loop {
        if let Some(b) = blocked().await {
            break b.reason;
        }
        assert!(std::time::Instant::now() < deadline, "never blocked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(
        sink.sends.lock().unwrap().len() >= UNREADABLE_STREAK_LIMIT,
        "blocked only after {UNREADABLE_STREAK_LIMIT} replies"
    );
    assert!(
        reason.contains("replies in a row could not be read"),
        "{reason}"
    );
    assert!(reason.contains("without `status`"), "{reason}");
    assert_eq!(
        store.pending("run", "fake").await.unwrap(),
        3,
        "nothing settled"
    );
    unreadable.store(false, std::sync::atomic::Ordering::SeqCst);
    drained(&store).await;
    assert!(
        blocked().await.is_none(),
        "block cleared once a reply was read"
    );
    cancel.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(sink.delivered(), ids);
}
