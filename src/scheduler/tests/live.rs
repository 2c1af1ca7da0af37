//! The live poller against a scripted source.

use std::sync::Arc;
use std::time::Duration;

use super::{FakeSource, Fetched, Harness, SITE, Step, poll};
use crate::pipeline::filter::Filters;
use crate::scheduler::RUN_NS;
use crate::scheduler::live::LivePoller;
use crate::source::ErrorClass;

/// Starts the live poller of [`SITE`]; the returned task ends when `h.cancel` fires.
fn start(h: &Harness) -> tokio::task::JoinHandle<Result<(), crate::scheduler::RunError>> {
    let poller = LivePoller::new(&h.ctx, SITE.to_string(), &poll(), &Filters::default());
    tokio::spawn(poller.run())
}

/// Cancels the poller and waits for it to stop cleanly.
async fn stop(h: &Harness, task: tokio::task::JoinHandle<Result<(), crate::scheduler::RunError>>) {
    h.cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the poller stops when cancelled")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn pages_are_committed_in_order_and_the_cursor_moves_only_with_a_windows_last_page() {
    let source = Arc::new(
        FakeSource::new(1200)
            .play(
                0,
                vec![
                    // Two pages spooled, then the window fails: the cursor stays.
                    vec![
                        Step::Page(&["a", "b"]),
                        Step::Page(&["c"]),
                        Step::Fail(ErrorClass::Transient),
                    ],
                    // Fetched again from its start: the repeats are dropped by the spool.
                    vec![
                        Step::Page(&["a", "b"]),
                        Step::Page(&["c"]),
                        Step::Page(&["d"]),
                    ],
                ],
            )
            .play(600, vec![vec![Step::Page(&["e"])]]),
    );
    let h = Harness::new(source.clone(), RUN_NS).await;
    let task = start(&h);
    h.until(async |h| h.cursor().await == Some(1200)).await;
    stop(&h, task).await;
    assert_eq!(h.spooled().await, ["a", "b", "c", "d", "e"]);
    // The cursor each page was asked for with: the start (no cursor yet) throughout the first
    // window, failed attempt included; the first window's end once its last page committed.
    assert_eq!(
        source.fetched(),
        [
            Fetched {
                from: 0,
                until: 600,
                cursors: vec![None, None, None],
            },
            Fetched {
                from: 0,
                until: 600,
                cursors: vec![None, None, None],
            },
            Fetched {
                from: 600,
                until: 1200,
                cursors: vec![Some(600)],
            },
        ]
    );
}

#[tokio::test]
async fn an_error_that_needs_the_operator_marks_the_partition_failing() {
    let source =
        Arc::new(FakeSource::new(600).play(0, vec![vec![Step::Fail(ErrorClass::Operator)]]));
    let h = Harness::new(source.clone(), RUN_NS).await;
    let task = start(&h);
    h.until(async |h| !h.health.blocked().is_empty()).await;
    assert_eq!(
        h.health.blocked(),
        [("site:www".to_string(), "scripted Operator".to_string())],
        "/readyz names the site and the cause"
    );
    let errors = h.store.site_errors().await.unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        (errors[0].key.site.as_str(), errors[0].error.as_str()),
        (SITE, "scripted Operator")
    );
    // It waits for the operator (a minute at least) rather than fetching again at once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(source.windows(), [(0, 600)]);
    assert_eq!(h.cursor().await, None);
    stop(&h, task).await;
}

#[tokio::test]
async fn a_retryable_error_is_retried_and_the_partition_recovers() {
    let source = Arc::new(FakeSource::new(600).play(
        0,
        vec![
            vec![Step::Fail(ErrorClass::Transient)],
            vec![Step::Page(&["a"])],
        ],
    ));
    let h = Harness::new(source.clone(), RUN_NS).await;
    let task = start(&h);
    h.until(async |h| h.cursor().await == Some(600)).await;
    stop(&h, task).await;
    assert_eq!(source.windows(), [(0, 600), (0, 600)]);
    assert_eq!(h.spooled().await, ["a"]);
    assert!(
        h.health.blocked().is_empty(),
        "a transient failure blocks nothing"
    );
}

#[tokio::test]
async fn a_lost_range_is_recorded_as_a_gap_and_skipped() {
    let mut fake = FakeSource::new(1200);
    fake.oldest = 300;
    let source = Arc::new(fake);
    let h = Harness::new(source.clone(), RUN_NS).await;
    let task = start(&h);
    h.until(async |h| h.cursor().await == Some(1200)).await;
    stop(&h, task).await;
    let gaps = h.store.gaps().await.unwrap();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(
        (gaps[0].key.site.as_str(), gaps[0].from, gaps[0].until),
        (SITE, 0, 300)
    );
    // Nothing of the lost range is asked for.
    assert_eq!(source.windows(), [(300, 900), (900, 1200)]);
}

#[tokio::test]
async fn a_restart_resumes_from_the_stored_position() {
    let source = Arc::new(FakeSource::new(1200));
    let h = Harness::new(source.clone(), RUN_NS).await;
    // An earlier process got as far as 600.
    h.store
        .commit_page(&h.key, Vec::new(), 0, Some(600))
        .await
        .unwrap();
    let task = start(&h);
    h.until(async |h| h.cursor().await == Some(1200)).await;
    stop(&h, task).await;
    assert_eq!(
        source.windows(),
        [(600, 1200)],
        "poll.start_at is for new sites only"
    );
}

#[tokio::test]
async fn an_expired_token_fetches_the_window_again_from_its_start() {
    let source = Arc::new(FakeSource::new(600).play(
        0,
        vec![
            vec![Step::Page(&["a"]), Step::Fail(ErrorClass::Restart)],
            vec![Step::Page(&["a"]), Step::Page(&["b"])],
        ],
    ));
    let h = Harness::new(source.clone(), RUN_NS).await;
    let task = start(&h);
    h.until(async |h| h.cursor().await == Some(600)).await;
    stop(&h, task).await;
    assert_eq!(source.windows(), [(0, 600), (0, 600)]);
    assert_eq!(h.spooled().await, ["a", "b"]);
}
