//! The backfill window coordinator against a scripted source.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{FakeSource, Harness, Step, poll};
use crate::pipeline::filter::TagFilter;
use crate::scheduler::backfill::BackfillPoller;
use crate::scheduler::{Progress, RunError};
use crate::source::ErrorClass;

const NS: &str = "backfill:0-1800";

/// Runs the backfill of `[from, until)` to its end (twenty seconds at most); returns what it
/// returned and the progress it told.
async fn backfill(
    h: &Harness,
    (from, until): (i64, i64),
) -> (Result<u64, RunError>, Vec<Progress>) {
    let told = Arc::new(Mutex::new(Vec::new()));
    let poller = BackfillPoller {
        ctx: h.ctx.clone(),
        key: h.key.clone(),
        poll: poll(),
        filter: TagFilter::default(),
        range: (from, until),
        progress: Some(Arc::new({
            let told = told.clone();
            move |p| told.lock().unwrap().push(p)
        })),
    };
    let result = tokio::time::timeout(Duration::from_secs(20), poller.run())
        .await
        .expect("the backfill finishes");
    let told = told.lock().unwrap().clone();
    (result, told)
}

/// The site-minutes told done.
fn minutes(told: &[Progress]) -> u64 {
    told.iter()
        .map(|p| match p {
            Progress::Done(n) => *n,
            _ => 0,
        })
        .sum()
}

#[tokio::test]
async fn a_backfill_finishes_its_range_and_stops() {
    let source = Arc::new(
        FakeSource::new(i64::MAX)
            .play(0, vec![vec![Step::Page(&["a"]), Step::Page(&["b"])]])
            // Its token expires once: fetched again from its start.
            .play(
                600,
                vec![
                    vec![Step::Page(&["c"]), Step::Fail(ErrorClass::Restart)],
                    vec![Step::Page(&["c"]), Step::Page(&["d"])],
                ],
            )
            .play(1200, vec![vec![Step::Page(&["e"])]]),
    );
    let h = Harness::new(source.clone(), NS).await;
    let (result, told) = backfill(&h, (0, 1800)).await;
    // Counted per finished window: `c`, spooled by the attempt that failed, is a repeat when
    // the window's second attempt finishes.
    assert_eq!(
        result.unwrap(),
        4,
        "events newly spooled by finished windows"
    );
    assert_eq!(h.cursor().await, Some(1800));
    let mut spooled = h.spooled().await;
    spooled.sort();
    assert_eq!(spooled, ["a", "b", "c", "d", "e"]);
    let mut windows = source.windows();
    windows.sort();
    assert_eq!(windows, [(0, 600), (600, 1200), (600, 1200), (1200, 1800)]);
    assert_eq!(minutes(&told), 30, "{told:?}");
    // Windows never move the cursor themselves: only the coordinator does, once every window
    // before is done.
    for f in source.fetched() {
        assert!(
            f.cursors.iter().all(|c| c.is_none_or(|c| c <= f.from)),
            "{f:?}"
        );
    }
}

#[tokio::test]
async fn a_restart_resumes_from_the_stored_position_and_a_lost_range_is_a_gap() {
    let mut fake = FakeSource::new(i64::MAX);
    fake.oldest = 1200;
    let source = Arc::new(fake);
    let h = Harness::new(source.clone(), NS).await;
    // An earlier run of the same backfill got as far as 600.
    h.store
        .commit_page(&h.key, Vec::new(), 0, Some(600))
        .await
        .unwrap();
    let (result, told) = backfill(&h, (0, 1800)).await;
    assert_eq!(result.unwrap(), 0);
    assert_eq!(h.cursor().await, Some(1800));
    // 600..1200 fell out of the retention meanwhile: recorded, not fetched.
    let gaps = h.store.gaps().await.unwrap();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!((gaps[0].from, gaps[0].until), (600, 1200));
    assert_eq!(source.windows(), [(1200, 1800)]);
    assert_eq!(minutes(&told), 30, "{told:?}");
}

#[tokio::test]
async fn a_backfill_stops_on_an_error_that_needs_the_operator() {
    let source =
        Arc::new(FakeSource::new(i64::MAX).play(0, vec![vec![Step::Fail(ErrorClass::Operator)]]));
    let h = Harness::new(source.clone(), NS).await;
    let (result, _) = backfill(&h, (0, 600)).await;
    assert!(
        matches!(&result, Err(RunError::Source(e)) if e.needs_operator()),
        "{result:?}"
    );
    let errors = h.store.site_errors().await.unwrap();
    assert_eq!(errors[0].error, "scripted Operator");
    assert_eq!(h.cursor().await, None);
}
