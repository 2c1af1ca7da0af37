//! Commits, de-duplication, batches, settling and status numbers.

use super::*;

#[tokio::test]
async fn commit_page_is_atomic() {
    let (_dir, path) = tmp();
    let store = Store::open(&path).unwrap();
    let k = key("run", "www");
    store
        .commit_page(&k, evs(&["a"]), 10, Some(100))
        .await
        .unwrap();

    store.set_fail_before_cursor(true);
    let err = store
        .commit_page(&k, evs(&["b", "c"]), 11, Some(200))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Sqlite {
                op: "commit_page",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        count(&path, "SELECT COALESCE(SUM(events), 0) FROM spool"),
        1
    );
    assert_eq!(count(&path, "SELECT COUNT(*) FROM seen"), 1);
    assert_eq!(store.cursor(&k).await.unwrap(), Some(100));

    // Without the failpoint the same page lands whole: events and cursor together.
    store.set_fail_before_cursor(false);
    let out = store
        .commit_page(&k, evs(&["b", "c"]), 11, Some(200))
        .await
        .unwrap();
    assert_eq!(
        out,
        CommitOutcome {
            inserted: 2,
            duplicates: 0
        }
    );
    assert_eq!(
        count(&path, "SELECT COALESCE(SUM(events), 0) FROM spool"),
        3
    );
    assert_eq!(count(&path, "SELECT COUNT(*) FROM seen"), 3);
    assert_eq!(store.cursor(&k).await.unwrap(), Some(200));
}

#[tokio::test]
async fn dedupe_within_page_across_pages_and_after_delivery() {
    let (_dir, path) = tmp();
    let store = Store::open(&path).unwrap();
    store.register_sinks("run", &sinks(&["s"])).await.unwrap();
    let k = key("run", "www");

    let out = store
        .commit_page(&k, evs(&["a", "b", "a"]), 1, Some(10))
        .await
        .unwrap();
    assert_eq!(
        out,
        CommitOutcome {
            inserted: 2,
            duplicates: 1
        }
    );
    let out = store
        .commit_page(&k, evs(&["b", "c"]), 2, Some(20))
        .await
        .unwrap();
    assert_eq!(
        out,
        CommitOutcome {
            inserted: 1,
            duplicates: 1
        }
    );

    // Deliver everything; the spool empties but `seen` remembers.
    let batch = store.read_batch("run", "s", 100, usize::MAX).await.unwrap();
    assert_eq!(ids(&batch), ["a", "b", "c"]);
    store
        .settle("run", "s", batch[2].seq, vec![])
        .await
        .unwrap();
    assert_eq!(
        count(&path, "SELECT COALESCE(SUM(events), 0) FROM spool"),
        0
    );
    let out = store
        .commit_page(&k, evs(&["a", "c", "d"]), 3, Some(30))
        .await
        .unwrap();
    assert_eq!(
        out,
        CommitOutcome {
            inserted: 1,
            duplicates: 2
        }
    );

    // The same id in another site or another namespace is a different event.
    let out = store
        .commit_page(&key("run", "api"), evs(&["a"]), 4, None)
        .await
        .unwrap();
    assert_eq!(out.inserted, 1);
    let out = store
        .commit_page(&key("backfill:1-2", "www"), evs(&["a"]), 4, None)
        .await
        .unwrap();
    assert_eq!(out.inserted, 1);
    let other_corp = SiteKey {
        corp: "other".into(),
        ..key("run", "www")
    };
    assert_eq!(
        store
            .commit_page(&other_corp, evs(&["a"]), 4, None)
            .await
            .unwrap()
            .inserted,
        1
    );
}

#[tokio::test]
async fn prune_seen_forgets_old_ids() {
    let (_dir, path) = tmp();
    let store = Store::open(&path).unwrap();
    let k = key("run", "www");
    store
        .commit_page(&k, vec![ev("old", 100), ev("new", 200)], 1, None)
        .await
        .unwrap();
    assert_eq!(store.prune_seen(150).await.unwrap(), 1);
    assert_eq!(count(&path, "SELECT COUNT(*) FROM seen"), 1);
    // Only the forgotten id can come in again.
    let out = store
        .commit_page(&k, vec![ev("old", 100), ev("new", 200)], 2, None)
        .await
        .unwrap();
    assert_eq!(
        out,
        CommitOutcome {
            inserted: 1,
            duplicates: 1
        }
    );
}

#[tokio::test]
async fn read_batch_respects_offset_order_and_limits() {
    let (_dir, path) = tmp();
    let store = Store::open(&path).unwrap();
    store.register_sinks("run", &sinks(&["s"])).await.unwrap();
    let k = key("run", "www");
    let page: Vec<NewEvent> = (0..5)
        .map(|i| NewEvent {
            id: format!("e{i}"),
            ts: i,
            body: crate::store::Body::from("x".repeat(10)),
        })
        .collect();
    store.commit_page(&k, page, 7, None).await.unwrap();
    // Another namespace's events never show up.
    store
        .commit_page(&key("other", "www"), evs(&["zz"]), 7, None)
        .await
        .unwrap();

    let all = store.read_batch("run", "s", 100, usize::MAX).await.unwrap();
    assert_eq!(ids(&all), ["e0", "e1", "e2", "e3", "e4"]);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        (&*all[0].corp, &*all[0].site, all[0].fetched_at),
        ("acme", "www", 7)
    );

    assert_eq!(
        ids(&store.read_batch("run", "s", 2, usize::MAX).await.unwrap()),
        ["e0", "e1"]
    );
    // 25 bytes fit two 10-byte bodies, not three; exactly 30 fits three.
    assert_eq!(
        store.read_batch("run", "s", 100, 25).await.unwrap().len(),
        2
    );
    assert_eq!(
        store.read_batch("run", "s", 100, 30).await.unwrap().len(),
        3
    );
    // One event larger than max_bytes still comes out alone.
    assert_eq!(
        ids(&store.read_batch("run", "s", 100, 3).await.unwrap()),
        ["e0"]
    );
    assert!(
        store
            .read_batch("run", "s", 0, 100)
            .await
            .unwrap()
            .is_empty()
    );

    store.settle("run", "s", all[1].seq, vec![]).await.unwrap();
    assert_eq!(
        ids(&store.read_batch("run", "s", 100, usize::MAX).await.unwrap()),
        ["e2", "e3", "e4"]
    );
    store.settle("run", "s", all[4].seq, vec![]).await.unwrap();
    assert!(
        store
            .read_batch("run", "s", 100, usize::MAX)
            .await
            .unwrap()
            .is_empty()
    );

    let err = store.read_batch("run", "nope", 1, 1).await.unwrap_err();
    assert!(matches!(err, StoreError::UnknownSink { .. }), "{err:?}");
}

#[tokio::test]
async fn settle_moves_offsets_writes_dead_letters_and_prunes() {
    let (_dir, path) = tmp();
    // Events held in the file: a spool row goes once every sink has passed all its events.
    let spool_rows = || count(&path, "SELECT COALESCE(SUM(events), 0) FROM spool");
    let (store, batch) = spooled_for_a_and_b(&path, &["1", "2", "3", "4"], None).await;
    let seq = |i: usize| batch[i].seq;
    assert_eq!(store.pending("run", "a").await.unwrap(), 4);

    // "a" passes 3 events, one of them rejected; "b" has not moved: nothing is pruned.
    store
        .settle(
            "run",
            "a",
            seq(2),
            vec![(batch[1].clone(), "mapping conflict".into())],
        )
        .await
        .unwrap();
    assert_eq!(store.pending("run", "a").await.unwrap(), 1);
    assert_eq!(store.pending("run", "b").await.unwrap(), 4);
    assert_eq!(spool_rows(), 4);

    // Retried (stale) settles change nothing and write no second dead letter.
    store
        .settle(
            "run",
            "a",
            seq(2),
            vec![(batch[1].clone(), "mapping conflict".into())],
        )
        .await
        .unwrap();
    store.settle("run", "a", seq(0), vec![]).await.unwrap();
    assert_eq!(store.pending("run", "a").await.unwrap(), 1);
    let dl = store.dead_letters(Some("a"), 10).await.unwrap();
    assert_eq!(dl.len(), 1);
    assert_eq!(
        (
            dl[0].ns.as_str(),
            dl[0].sink.as_str(),
            dl[0].id.as_str(),
            dl[0].reason.as_str()
        ),
        ("run", "a", "2", "mapping conflict")
    );
    assert_eq!((dl[0].corp.as_str(), dl[0].site.as_str()), ("acme", "www"));
    assert_eq!(dl[0].body, batch[1].body);
    assert_eq!(dl[0].ts, batch[1].ts);

    // "b" passes 2: both sinks are past seq(1), but the page's row still holds seq(2) and
    // seq(3) for them, so it stays whole.
    store.settle("run", "b", seq(1), vec![]).await.unwrap();
    assert_eq!(spool_rows(), 4);
    // Still readable for both sinks after pruning.
    assert_eq!(
        ids(&store.read_batch("run", "a", 10, usize::MAX).await.unwrap()),
        ["4"]
    );
    assert_eq!(
        ids(&store.read_batch("run", "b", 10, usize::MAX).await.unwrap()),
        ["3", "4"]
    );

    // "b" is removed from the config: it must not hold rows back any more. "a" still waits
    // for seq(3), in the same row.
    store.register_sinks("run", &sinks(&["a"])).await.unwrap();
    assert_eq!(spool_rows(), 4);
    assert_eq!(store.pending("run", "a").await.unwrap(), 1);
    store.settle("run", "a", seq(3), vec![]).await.unwrap();
    assert_eq!(spool_rows(), 0);
    assert_eq!(store.pending("run", "a").await.unwrap(), 0);

    // Settling past anything ever spooled is refused.
    let err = store
        .settle("run", "a", seq(3) + 100, vec![])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::OffsetBeyondSpool { .. }),
        "{err:?}"
    );
    let err = store
        .settle("run", "ghost", seq(3), vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownSink { .. }), "{err:?}");

    // Re-registering "b" later keeps its old offset (forgets nothing).
    store
        .register_sinks("run", &sinks(&["a", "b"]))
        .await
        .unwrap();
    let states = store.sink_states().await.unwrap();
    let b = states.iter().find(|s| s.sink == "b").unwrap();
    assert_eq!(b.offset, seq(1));
}

#[tokio::test]
async fn new_sink_and_other_namespaces_do_not_interfere() {
    let (_dir, path) = tmp();
    let store = Store::open(&path).unwrap();
    store.register_sinks("run", &sinks(&["a"])).await.unwrap();
    store
        .register_sinks("backfill:1-2", &sinks(&["a"]))
        .await
        .unwrap();
    store
        .commit_page(&key("run", "www"), evs(&["1", "2"]), 5, None)
        .await
        .unwrap();
    store
        .commit_page(&key("backfill:1-2", "www"), evs(&["1"]), 5, None)
        .await
        .unwrap();
    let run = store.read_batch("run", "a", 10, usize::MAX).await.unwrap();
    store.settle("run", "a", run[1].seq, vec![]).await.unwrap();
    // The backfill namespace keeps its own offset and its rows.
    assert_eq!(store.pending("backfill:1-2", "a").await.unwrap(), 1);
    assert_eq!(
        count(
            &path,
            "SELECT COALESCE(SUM(events), 0) FROM spool WHERE ns = 'backfill:1-2'"
        ),
        1
    );
    // A namespace whose sinks all left keeps its rows: nothing is deleted undelivered.
    store.register_sinks("backfill:1-2", &[]).await.unwrap();
    assert_eq!(
        count(
            &path,
            "SELECT COALESCE(SUM(events), 0) FROM spool WHERE ns = 'backfill:1-2'"
        ),
        1
    );
}

#[tokio::test]
async fn status_reports_cursors_sinks_and_dead_letters() {
    let (_dir, path) = tmp();
    let store = Store::open(&path).unwrap();
    store
        .register_sinks("run", &sinks(&["elastic", "splunk"]))
        .await
        .unwrap();
    let (www, api) = (key("run", "www"), key("run", "api"));
    store
        .commit_page(
            &www,
            vec![NewEvent {
                id: "1".into(),
                ts: 1,
                body: "aaaa".into(),
            }],
            100,
            Some(10),
        )
        .await
        .unwrap();
    store
        .commit_page(
            &api,
            vec![
                NewEvent {
                    id: "2".into(),
                    ts: 2,
                    body: "bbbbbb".into(),
                },
                NewEvent {
                    id: "3".into(),
                    ts: 3,
                    body: "é".into(),
                }, // 2 bytes, 1 character
            ],
            200,
            Some(20),
        )
        .await
        .unwrap();

    let cursors = store.cursors().await.unwrap();
    assert_eq!(
        cursors
            .iter()
            .map(|c| (c.key.site.as_str(), c.cursor))
            .collect::<Vec<_>>(),
        [("api", 20), ("www", 10)]
    );
    assert!(cursors.iter().all(|c| c.updated_at > 0));

    let batch = store
        .read_batch("run", "splunk", 10, usize::MAX)
        .await
        .unwrap();
    store
        .settle(
            "run",
            "splunk",
            batch[1].seq,
            vec![(batch[0].clone(), "too big".into())],
        )
        .await
        .unwrap();

    let states = store.sink_states().await.unwrap();
    assert_eq!(
        states,
        [
            SinkState {
                ns: "run".into(),
                sink: "elastic".into(),
                offset: 0,
                pending_events: 3,
                pending_bytes: 12,
                oldest_pending_fetched_at: Some(100),
                dead_letters: 0,
            },
            SinkState {
                ns: "run".into(),
                sink: "splunk".into(),
                offset: batch[1].seq,
                pending_events: 1,
                pending_bytes: 2,
                oldest_pending_fetched_at: Some(200),
                dead_letters: 1,
            },
        ]
    );
    store
        .settle("run", "splunk", batch[2].seq, vec![])
        .await
        .unwrap();
    let splunk = &store.sink_states().await.unwrap()[1];
    assert_eq!((splunk.pending_events, splunk.pending_bytes), (0, 0));
    assert_eq!(splunk.oldest_pending_fetched_at, None);

    assert_eq!(store.dead_letters(None, 10).await.unwrap().len(), 1);
    assert!(
        store
            .dead_letters(Some("elastic"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.dead_letters(None, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn ranges_settled_ahead_wait_for_the_gap_and_are_skipped_by_reads() {
    let (_dir, path) = tmp();
    let (store, batch) = spooled_for_a_and_b(&path, &["1", "2", "3", "4", "5", "6"], None).await;
    let seq = |i: usize| batch[i].seq;
    let ranges = || count(&path, "SELECT COUNT(*) FROM sink_settled");

    // Batches (2,4] and (4,6] of "a" finish while (offset,2] is still in flight.
    store
        .settle_range(
            "run",
            "a",
            Some(seq(1)),
            seq(3),
            vec![(batch[2].clone(), "mapping conflict".into())],
        )
        .await
        .unwrap();
    store
        .settle_range("run", "a", Some(seq(3)), seq(5), vec![])
        .await
        .unwrap();
    assert_eq!(
        store.pending("run", "a").await.unwrap(),
        6,
        "offset unmoved"
    );
    assert_eq!(ranges(), 2);
    // A restarted driver reads only what is really unsettled.
    assert_eq!(
        ids(&store.read_batch("run", "a", 10, usize::MAX).await.unwrap()),
        ["1", "2"]
    );
    assert_eq!(
        ids(&store.read_batch("run", "b", 10, usize::MAX).await.unwrap()),
        ["1", "2", "3", "4", "5", "6"],
        "another sink's ranges do not hide its events"
    );
    // The same range settled again (a retry after a crash) writes no second dead letter.
    store
        .settle_range(
            "run",
            "a",
            Some(seq(1)),
            seq(3),
            vec![(batch[2].clone(), "mapping conflict".into())],
        )
        .await
        .unwrap();
    assert_eq!(store.dead_letters(Some("a"), 10).await.unwrap().len(), 1);

    // The first batch settles: the offset reaches the end in one step.
    store
        .settle_range("run", "a", None, seq(1), vec![])
        .await
        .unwrap();
    assert_eq!(store.pending("run", "a").await.unwrap(), 0);
    assert_eq!(ranges(), 0, "ranges the offset passed are forgotten");
    assert_eq!(store.dead_letters(Some("a"), 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_range_with_a_gap_before_it_does_not_move_the_offset() {
    let (_dir, path) = tmp();
    let (store, batch) = spooled_for_a_and_b(&path, &["1", "2", "3", "4"], None).await;
    let seq = |i: usize| batch[i].seq;
    store
        .settle_range("run", "a", Some(seq(2)), seq(3), vec![])
        .await
        .unwrap();
    store
        .settle_range("run", "a", None, seq(0), vec![])
        .await
        .unwrap();
    // (1, 2] is still open: the offset stops at 1 and "4" stays skipped.
    assert_eq!(store.pending("run", "a").await.unwrap(), 3);
    assert_eq!(
        ids(&store.read_batch("run", "a", 10, usize::MAX).await.unwrap()),
        ["2", "3"]
    );
    store
        .settle_range("run", "a", Some(seq(0)), seq(2), vec![])
        .await
        .unwrap();
    assert_eq!(store.pending("run", "a").await.unwrap(), 0);
}

/// Events of `len` bytes each (`ids` as in [`evs`]).
fn big_evs(ids: &[&str], len: usize) -> Vec<NewEvent> {
    ids.iter()
        .map(|id| {
            let head = format!(r#"{{"id":"{id}","pad":""#);
            let pad = "x".repeat(len - head.len() - 2);
            NewEvent {
                id: (*id).into(),
                ts: id_ts(id),
                body: Body::from(format!(r#"{head}{pad}"}}"#)),
            }
        })
        .collect()
}

/// A page is stored as rows of up to 128 KiB of events. Reads, pending counts and backlog
/// bytes see single events whatever the row boundaries, and a row goes once every sink has
/// passed all of its events.
#[tokio::test]
async fn rows_of_several_events_read_count_and_prune_per_event() {
    let (_dir, path) = tmp();
    let rows = || count(&path, "SELECT COUNT(*) FROM spool");
    let held = || count(&path, "SELECT COALESCE(SUM(events), 0) FROM spool");
    let store = Store::open(&path).unwrap();
    store
        .register_sinks("run", &sinks(&["a", "b"]))
        .await
        .unwrap();
    // 60 KB each: two per row, so five events make rows of 2, 2 and 1.
    let len = 60_000;
    let out = store
        .commit_page(
            &key("run", "www"),
            big_evs(&["1", "2", "3", "4", "5"], len),
            5,
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.inserted, 5);
    assert_eq!((rows(), held()), (3, 5));
    let all = store.read_batch("run", "a", 10, usize::MAX).await.unwrap();
    assert_eq!(ids(&all), ["1", "2", "3", "4", "5"]);
    let seqs: Vec<i64> = all.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(
        all.iter()
            .all(|e| e.body.len() == len && e.fetched_at == 5 && &*e.site == "www")
    );
    let seq = |i: usize| all[i].seq;

    // Budgets cut inside rows, and reads go on from inside a row.
    let first = store.read_batch("run", "a", 10, 3 * len).await.unwrap();
    assert_eq!(ids(&first), ["1", "2", "3"]);
    let next = store
        .read_after("run", "a", Some(seq(2)), 1, usize::MAX, true)
        .await
        .unwrap();
    assert_eq!(ids(&next.events), ["4"]);
    assert!(!next.budget_hit);

    // "a" stops inside the second row, "b" inside the first.
    store.settle("run", "a", seq(2), vec![]).await.unwrap();
    store.settle("run", "b", seq(0), vec![]).await.unwrap();
    assert_eq!((rows(), held()), (3, 5), "no row is passed by both");
    assert_eq!(store.pending("run", "a").await.unwrap(), 2);
    assert_eq!(store.pending("run", "b").await.unwrap(), 4);
    let states = store.sink_states().await.unwrap();
    let pending: Vec<(i64, i64)> = states
        .iter()
        .map(|s| (s.pending_events, s.pending_bytes))
        .collect();
    let len = len as i64;
    assert_eq!(pending, [(2, 2 * len), (4, 4 * len)]);
    assert_eq!(
        ids(&store.read_batch("run", "b", 10, usize::MAX).await.unwrap()),
        ["2", "3", "4", "5"]
    );

    // "b" passes the first row: it goes.
    store.settle("run", "b", seq(1), vec![]).await.unwrap();
    assert_eq!((rows(), held()), (2, 3));
    // "b" leaves: "a" alone holds the second row back until it passes its last event.
    store.register_sinks("run", &sinks(&["a"])).await.unwrap();
    assert_eq!((rows(), held()), (2, 3));
    store.settle("run", "a", seq(3), vec![]).await.unwrap();
    assert_eq!((rows(), held()), (1, 1));
    assert_eq!(
        ids(&store.read_batch("run", "a", 10, usize::MAX).await.unwrap()),
        ["5"]
    );
}

/// Dropping the oldest events when the spool is full cuts rows apart: exactly the events
/// needed go, and those every sink had already passed are not counted as lost.
#[tokio::test]
async fn drop_oldest_trims_a_row_and_counts_only_undelivered_events() {
    let (_dir, path) = tmp();
    let store = Store::open(&path).unwrap();
    store.register_sinks("run", &sinks(&["a"])).await.unwrap();
    let ids10: Vec<String> = (0..10).map(|i| format!("e{i}")).collect();
    let ids10: Vec<&str> = ids10.iter().map(String::as_str).collect();
    store
        .commit_page(&key("run", "www"), big_evs(&ids10, 100), 5, None)
        .await
        .unwrap();
    assert_eq!(count(&path, "SELECT COUNT(*) FROM spool"), 1);
    let all = store.read_batch("run", "a", 10, usize::MAX).await.unwrap();
    // "a" passed two; the row stays for the other eight.
    store.settle("run", "a", all[1].seq, vec![]).await.unwrap();
    assert_eq!(store.spool_bytes().await.unwrap(), 1_000);

    // 550 bytes too many: six events go, two of them already delivered.
    let drops = store.drop_oldest(450).await.unwrap();
    assert_eq!(drops.len(), 1);
    let d = &drops[0];
    assert_eq!(
        (d.events, d.bytes, d.from_seq, d.to_seq),
        (4, 400, all[2].seq, all[5].seq)
    );
    assert_eq!(store.spool_bytes().await.unwrap(), 400);
    let left = store.read_batch("run", "a", 10, usize::MAX).await.unwrap();
    assert_eq!(ids(&left), ["e6", "e7", "e8", "e9"]);
    assert_eq!(left[0].seq, all[6].seq);
    assert_eq!(store.pending("run", "a").await.unwrap(), 4);
    assert_eq!(store.spool_drops().await.unwrap(), drops);
    // Nothing to drop below the limit.
    assert!(store.drop_oldest(400).await.unwrap().is_empty());
}
