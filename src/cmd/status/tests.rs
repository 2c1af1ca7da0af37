//! `status` against a real store.

use super::*;
use crate::store::{NewEvent, SiteKey};

fn www() -> SiteKey {
    SiteKey {
        ns: "run".into(),
        corp: "acme".into(),
        site: "www".into(),
    }
}

/// A fresh store (kept alive by the returned directory) with `sinks` registered in `run`.
async fn store_with(sinks: &[&str]) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    let sinks: Vec<String> = sinks.iter().map(|s| s.to_string()).collect();
    store.register_sinks("run", &sinks).await.unwrap();
    (dir, store)
}

#[tokio::test]
async fn reports_cursor_backlog_errors_gaps_and_blocks() {
    let (_dir, store) = store_with(&["hec", "out"]).await;
    let key = www();
    let events = (0..3)
        .map(|i| NewEvent {
            id: format!("id{i}"),
            ts: 1_000,
            body: crate::store::Body::from(format!("{{\"id\":\"id{i}\"}}")),
        })
        .collect();
    store
        .commit_page(&key, events, 1_100, Some(1_200))
        .await
        .unwrap();
    let batch = store.read_batch("run", "out", 10, 1 << 20).await.unwrap();
    store
        .settle(
            "run",
            "out",
            batch[2].seq,
            vec![(batch[1].clone(), "mapping".into())],
        )
        .await
        .unwrap();
    store.record_gap(&key, 0, 600).await.unwrap();
    store
        .set_site_error(&key, "HTTP 401: bad token")
        .await
        .unwrap();
    store
        .set_blocked("hec", Some("token disabled"))
        .await
        .unwrap();

    let r = report(&store, "s.db", 1_500).await.unwrap();
    assert_eq!(r.sites.len(), 1);
    let s = &r.sites[0];
    assert_eq!(s.lag_secs, Some(300));
    assert_eq!(s.spooled_events, 3, "hec still holds all three");
    assert_eq!(s.lost_ranges[0].seconds, 600);
    assert!(s.last_error.as_ref().unwrap().error.contains("401"));
    let hec = r.sinks.iter().find(|s| s.sink == "hec").unwrap();
    assert_eq!(hec.backlog_events, 3);
    assert_eq!(hec.oldest_pending_age_secs, Some(400));
    assert_eq!(hec.blocked.as_deref(), Some("token disabled"));
    let out = r.sinks.iter().find(|s| s.sink == "out").unwrap();
    assert_eq!(out.backlog_events, 0);
    assert_eq!(out.dead_letters, 1);
    assert_eq!(out.dead_letters_by_reason[0].reason, "mapping");
    let text = render_text(&r);
    assert!(text.contains("BLOCKED: token disabled"), "{text}");
    assert!(text.contains("LOST"), "{text}");
}

#[tokio::test]
async fn a_site_failing_before_its_first_window_is_listed_and_backfills_show_their_range() {
    let (_dir, store) = store_with(&["out"]).await;
    let ns = "backfill:1796255520-1796341620";
    store.register_sinks(ns, &["out".into()]).await.unwrap();
    let backfill = SiteKey {
        ns: ns.into(),
        ..www()
    };
    store
        .commit_page(&backfill, Vec::new(), 1, Some(1_796_255_580))
        .await
        .unwrap();
    // Stuck before its first window: no cursor, only an error.
    store
        .set_site_error(
            &www(),
            "stuck: the same window failed 5 times in a row: data[1]",
        )
        .await
        .unwrap();
    store
        .keep_feed_letters(
            &www(),
            vec![crate::store::FeedLetter {
                id: String::new(),
                ts: 1,
                body: "[]".into(),
                reason: "data[1] (record 2 of 2): record is not an object (it is an array)".into(),
            }],
        )
        .await
        .unwrap();

    let r = report(&store, "s.db", 1_796_400_000).await.unwrap();
    let live = r
        .sites
        .iter()
        .find(|s| s.ns == "run")
        .expect("listed without a cursor");
    assert_eq!((live.cursor.as_deref(), live.lag_secs), (None, None));
    assert!(live.failing);
    assert_eq!(live.feed_dead_letters, 1);
    let bf = r.sites.iter().find(|s| s.ns == ns).unwrap();
    assert!(!bf.failing);
    let range = Range {
        from: "2026-12-02T23:52:00Z".into(),
        until: "2026-12-03T23:47:00Z".into(),
    };
    assert_eq!(bf.backfill_range.as_ref(), Some(&range));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        json["sites"][0]["backfill_range"]["until"],
        "2026-12-03T23:47:00Z"
    );
    assert_eq!(json["sites"][1]["cursor"], serde_json::Value::Null);
    assert_eq!(json["sites"][1]["failing"], true);

    let text = render_text(&r);
    assert!(text.contains("acme/www  no cursor yet"), "{text}");
    assert!(text.contains("FAILING"), "{text}");
    assert!(
        text.contains("stuck: the same window failed 5 times"),
        "{text}"
    );
    assert!(
        text.contains("1 feed record(s) that could not be read"),
        "{text}"
    );
    assert!(
        text.contains("backfill 2026-12-02T23:52:00Z..2026-12-03T23:47:00Z"),
        "{text}"
    );
    assert!(!text.contains("backfill:1796255520"), "{text}");
}

#[tokio::test]
async fn replayed_dead_letter_goes_only_to_its_sink() {
    let (_dir, store) = store_with(&["a", "b"]).await;
    let key = www();
    store
        .commit_page(
            &key,
            vec![NewEvent {
                id: "x".into(),
                ts: 1,
                body: "{\"id\":\"x\"}".into(),
            }],
            1,
            Some(60),
        )
        .await
        .unwrap();
    let batch = store.read_batch("run", "a", 10, 1 << 20).await.unwrap();
    store
        .settle(
            "run",
            "a",
            batch[0].seq,
            vec![(batch[0].clone(), "bad".into())],
        )
        .await
        .unwrap();
    store
        .settle("run", "b", batch[0].seq, vec![])
        .await
        .unwrap();
    assert_eq!(store.spool_bytes().await.unwrap(), 0);

    assert_eq!(
        store
            .replay_dead_letters("run", Some("a"), vec![])
            .await
            .unwrap(),
        1
    );
    let for_a = store.read_batch("run", "a", 10, 1 << 20).await.unwrap();
    let for_b = store.read_batch("run", "b", 10, 1 << 20).await.unwrap();
    assert_eq!(for_a.len(), 1);
    assert_eq!(for_a[0].id, "x");
    assert!(for_b.is_empty(), "b already has it");
    assert_eq!(store.pending("run", "b").await.unwrap(), 0);
    store
        .settle("run", "a", for_a[0].seq, vec![])
        .await
        .unwrap();
    assert_eq!(
        store.spool_bytes().await.unwrap(),
        0,
        "pruned once its sink passed it"
    );
    assert!(store.dead_letters(None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn drop_oldest_keeps_the_newest_and_records_the_drop() {
    let (_dir, store) = store_with(&["a"]).await;
    let key = www();
    let body = "x".repeat(100);
    let events = (0..10)
        .map(|i| NewEvent {
            id: format!("id{i}"),
            ts: 1,
            body: crate::store::Body::from(body.clone()),
        })
        .collect();
    store.commit_page(&key, events, 1, Some(60)).await.unwrap();
    let drops = store.drop_oldest(450).await.unwrap();
    assert_eq!(drops.len(), 1);
    assert_eq!(drops[0].events, 6);
    let left = store.read_batch("run", "a", 100, 1 << 20).await.unwrap();
    assert_eq!(left.len(), 4);
    assert_eq!(left[0].id, "id6");
    let r = report(&store, "s.db", 100).await.unwrap();
    assert_eq!(r.spool.dropped_events, 6);
}
