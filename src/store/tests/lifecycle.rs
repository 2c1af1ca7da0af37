//! Opening, reopening, migrations, read-only access, notification and concurrency.

use std::time::Duration;

use rusqlite::Connection;

use super::super::conn::Db;
use super::super::schema;
use super::*;

#[tokio::test]
async fn cursor_never_moves_backwards_and_survives_reopen() {
    let (_dir, path) = tmp();
    let k = key("run", "www");
    {
        let store = Store::open(&path).unwrap();
        assert_eq!(store.cursor(&k).await.unwrap(), None);
        store
            .commit_page(&k, evs(&["a"]), 1, Some(100))
            .await
            .unwrap();
        // Same value is fine (a page that did not advance the window), None leaves it.
        store
            .commit_page(&k, evs(&["b"]), 1, Some(100))
            .await
            .unwrap();
        store.commit_page(&k, evs(&["c"]), 1, None).await.unwrap();
        let err = store
            .commit_page(&k, evs(&["d"]), 1, Some(99))
            .await
            .unwrap_err();
        match err {
            StoreError::CursorBackwards {
                key,
                current,
                requested,
            } => {
                assert_eq!((key, current, requested), (k.clone(), 100, 99));
            }
            other => panic!("unexpected {other:?}"),
        }
        // The refused page wrote nothing, not even its events.
        assert_eq!(
            count(&path, "SELECT COALESCE(SUM(events), 0) FROM spool"),
            3
        );
        assert_eq!(count(&path, "SELECT COUNT(*) FROM seen WHERE id = 'd'"), 0);
        store.commit_page(&k, vec![], 1, Some(150)).await.unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.cursor(&k).await.unwrap(), Some(150));
    assert_eq!(store.cursor(&key("run", "api")).await.unwrap(), None);
}

#[tokio::test]
async fn reopen_keeps_everything_and_seq_is_never_reused() {
    let (_dir, path) = tmp();
    let k = key("run", "www");
    let last_seq;
    {
        let (store, batch) = spooled_for_a_and_b(&path, &["1", "2", "3"], Some(42)).await;
        last_seq = batch[2].seq;
        store
            .settle("run", "a", last_seq, vec![(batch[0].clone(), "bad".into())])
            .await
            .unwrap();
        store.settle("run", "b", last_seq, vec![]).await.unwrap();
        assert_eq!(
            count(&path, "SELECT COALESCE(SUM(events), 0) FROM spool"),
            0
        );
    } // dropped: the "restart"
    let store = Store::open(&path).unwrap();
    assert_eq!(store.cursor(&k).await.unwrap(), Some(42));
    assert_eq!(store.dead_letters(None, 10).await.unwrap().len(), 1);
    let states = store.sink_states().await.unwrap();
    assert!(states.iter().all(|s| s.offset == last_seq), "{states:?}");
    // seen survived: the re-fetched page is all duplicates.
    let out = store
        .commit_page(&k, evs(&["1", "2", "3", "4"]), 6, Some(43))
        .await
        .unwrap();
    assert_eq!(
        out,
        CommitOutcome {
            inserted: 1,
            duplicates: 3
        }
    );
    // The emptied spool does not hand out old seqs again.
    let batch = store.read_batch("run", "a", 10, usize::MAX).await.unwrap();
    assert_eq!(batch.len(), 1);
    assert!(batch[0].seq > last_seq);
}

#[test]
fn migrations_are_idempotent_and_versioned() {
    let (_dir, path) = tmp();
    drop(Db::open(&path).unwrap());
    drop(Db::open(&path).unwrap());
    let mut conn = Connection::open(&path).unwrap();
    schema::migrate(&mut conn, &path).unwrap();
    let v: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, schema::supported_version());
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

/// A state file written by a build at schema version 3 keeps its `seen` ids through the
/// migration that re-keys them by time: a re-fetched page is still all duplicates, and pruning
/// by age still works per site.
#[tokio::test]
async fn seen_ids_survive_the_time_ordered_key() {
    let (_dir, path) = tmp();
    {
        let conn = Connection::open(&path).unwrap();
        for (i, step) in schema::MIGRATIONS[..3].iter().enumerate() {
            conn.execute_batch(step).unwrap();
            conn.pragma_update(None, "user_version", i as i64 + 1)
                .unwrap();
        }
        for (ns, site, id, ts) in [
            ("run", "www", "a", 1_000),
            ("run", "www", "b", 1_001),
            ("run", "api", "a", 5_000),
            ("backfill:x", "www", "c", 900),
        ] {
            conn.execute(
                "INSERT INTO seen (ns, corp, site, id, ts) VALUES (?1, 'acme', ?2, ?3, ?4)",
                rusqlite::params![ns, site, id, ts],
            )
            .unwrap();
        }
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(
        count(&path, "PRAGMA user_version"),
        schema::supported_version()
    );
    // `evs` gives the ids timestamps 1000, 1001, ...: the same records as before.
    let out = store
        .commit_page(&key("run", "www"), evs(&["a", "b", "n"]), 1, Some(60))
        .await
        .unwrap();
    assert_eq!((out.inserted, out.duplicates), (1, 2));

    // Older than 1001: www's `a`, the backfill's `c`; api's `a` (5000) stays.
    assert_eq!(store.prune_seen(1_001).await.unwrap(), 2);
    assert_eq!(count(&path, "SELECT COUNT(*) FROM seen"), 3);
    assert_eq!(
        count(&path, "SELECT COUNT(*) FROM seen WHERE site = 'api'"),
        1
    );
    assert_eq!(store.prune_seen(i64::MAX).await.unwrap(), 3);
    assert_eq!(count(&path, "SELECT COUNT(*) FROM seen"), 0);
}

/// A state file written at schema version 4 (one spool row per event) keeps every pending
/// event through the migration to rows of several events: same seqs, same bodies, same
/// targets, and new seqs continue after the highest ever assigned, not after the highest left.
#[tokio::test]
async fn spooled_events_survive_the_move_to_rows_of_several() {
    let (_dir, path) = tmp();
    {
        let conn = Connection::open(&path).unwrap();
        for (i, step) in schema::MIGRATIONS[..4].iter().enumerate() {
            conn.execute_batch(step).unwrap();
            conn.pragma_update(None, "user_version", i as i64 + 1)
                .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO sink_offsets (ns, sink, offset_seq, active, updated_at)
                 VALUES ('run', 'a', 1, 1, 0), ('run', 'b', 1, 1, 0);",
        )
        .unwrap();
        for (seq, id, ts, body, target) in [
            (1, "old", 900, r#"{"id":"old"}"#, None),
            (2, "x1", 1_000, r#"{"id":"x1","é":"ü"}"#, None),
            (3, "x,2:", 1_001, r#"{"id":"x,2:"}"#, Some("b")),
            (7, "x3", 1_002, r#"{"id":"x3"}"#, None),
        ] {
            conn.execute(
                "INSERT INTO spool (seq, ns, corp, site, id, ts, fetched_at, bytes, body, target)
                 VALUES (?1, 'run', 'acme', 'www', ?2, ?3, 5, length(CAST(?4 AS BLOB)), ?4, ?5)",
                rusqlite::params![seq, id, ts, body, target],
            )
            .unwrap();
        }
        // Seqs 8 and 9 were handed out and their rows deleted since.
        conn.execute(
            "UPDATE sqlite_sequence SET seq = 9 WHERE name = 'spool'",
            [],
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(
        count(&path, "PRAGMA user_version"),
        schema::supported_version()
    );
    let a = store.read_batch("run", "a", 10, usize::MAX).await.unwrap();
    let got: Vec<_> = a
        .iter()
        .map(|e| (e.seq, e.id.as_str(), e.ts, e.body.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (2, "x1", 1_000, r#"{"id":"x1","é":"ü"}"#),
            (7, "x3", 1_002, r#"{"id":"x3"}"#)
        ]
    );
    let b = store.read_batch("run", "b", 10, usize::MAX).await.unwrap();
    assert_eq!(ids(&b), ["x1", "x,2:", "x3"]);
    assert_eq!(b[1].seq, 3);
    assert_eq!(store.pending("run", "b").await.unwrap(), 3);
    let out = store
        .commit_page(&key("run", "www"), evs(&["n1", "n2"]), 6, None)
        .await
        .unwrap();
    assert_eq!(out.inserted, 2);
    let next = store
        .read_after("run", "a", Some(7), 10, usize::MAX, true)
        .await
        .unwrap();
    let seqs: Vec<i64> = next.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [10, 11]);
    // Settling and pruning work on the migrated rows: once both sinks pass 7, the rows up to 7
    // go, and only the new page's row is left.
    store.settle("run", "a", 7, vec![]).await.unwrap();
    store.settle("run", "b", 7, vec![]).await.unwrap();
    assert_eq!(count(&path, "SELECT COUNT(*) FROM spool"), 1);
    assert_eq!(
        count(&path, "SELECT COALESCE(SUM(events), 0) FROM spool"),
        2
    );
}

/// A state file written at schema version 5 keeps its pending HEC acknowledgements through the
/// move from `hec_acks` to the sink journal: every row becomes an entry keyed
/// `{channel}/{ackId}`, with its seqs and time, and the HEC sink reads back exactly the rows it
/// wrote, so a restart after the upgrade still waits for them instead of resending.
#[tokio::test]
async fn pending_hec_acks_survive_the_move_to_the_sink_journal() {
    use crate::sink::splunk_hec::ack::{AckJournal, PendingAck};

    let (_dir, path) = tmp();
    let guid = "5c1b7a52-3f0e-4d7e-9a51-0c2f6e8d9b10";
    {
        let conn = Connection::open(&path).unwrap();
        for (i, step) in schema::MIGRATIONS[..5].iter().enumerate() {
            conn.execute_batch(step).unwrap();
            conn.pragma_update(None, "user_version", i as i64 + 1)
                .unwrap();
        }
        conn.execute(
            "INSERT INTO sink_meta (sink, key, value) VALUES ('splunk_hec', 'hec_channel', ?1)",
            [guid],
        )
        .unwrap();
        for (sink, channel, ack_id, seqs, sent_at) in [
            ("splunk_hec", guid, 10, "4,5,6", 1_700_000_010),
            ("splunk_hec", guid, 9, "1,2,3", 1_700_000_000),
            ("splunk_hec", "an-older-channel", 0, "7", 1_600_000_000),
            ("hec_b", guid, 9, "8", 1_700_000_020),
        ] {
            conn.execute(
                "INSERT INTO hec_acks (sink, channel, ack_id, seqs, sent_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![sink, channel, ack_id, seqs, sent_at],
            )
            .unwrap();
        }
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(count(&path, "PRAGMA user_version"), 6);
    assert_eq!(
        count(
            &path,
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'hec_acks'"
        ),
        0,
        "the HEC-only table is gone"
    );
    assert_eq!(count(&path, "SELECT COUNT(*) FROM sink_journal"), 4);

    // What the journal holds, as any sink would read it.
    let entries = store.journal("splunk_hec").await.unwrap();
    let keys: Vec<&str> = entries.iter().map(|e| e.request.as_str()).collect();
    assert_eq!(
        keys,
        [
            format!("{guid}/10").as_str(),
            &format!("{guid}/9"),
            "an-older-channel/0"
        ]
    );
    assert_eq!(entries[0].seqs, [4, 5, 6]);
    assert_eq!(entries[0].sent_at, 1_700_000_010);
    assert_eq!(entries[0].payload, None);

    // What the HEC sink reads back: the rows it wrote, by channel and id.
    let ack = |channel: &str, ack_id, seqs: &[i64], sent_at| PendingAck {
        channel: channel.into(),
        ack_id,
        seqs: seqs.to_vec(),
        sent_at,
    };
    assert_eq!(
        store.hec_acks("splunk_hec").await.unwrap(),
        [
            ack(guid, 9, &[1, 2, 3], 1_700_000_000),
            ack(guid, 10, &[4, 5, 6], 1_700_000_010),
            ack("an-older-channel", 0, &[7], 1_600_000_000),
        ]
    );
    assert_eq!(
        store.hec_acks("hec_b").await.unwrap(),
        [ack(guid, 9, &[8], 1_700_000_020)]
    );
    assert_eq!(
        store.sink_meta("splunk_hec", "hec_channel").await.unwrap(),
        Some(guid.to_string())
    );
    // And it settles them as before: an id that turns true is forgotten.
    store.delete_hec_ack("splunk_hec", guid, 10).await.unwrap();
    assert_eq!(store.hec_acks("splunk_hec").await.unwrap().len(), 2);
    drop(store);

    // Reopening runs no step twice.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.journal("splunk_hec").await.unwrap().len(), 2);
    assert_eq!(
        count(&path, "PRAGMA user_version"),
        schema::supported_version()
    );
}

/// A spool row damaged on disk is reported as such, naming the row, instead of panicking or
/// handing a sink a wrong event.
#[tokio::test]
async fn a_damaged_row_is_an_error_naming_it() {
    let (_dir, path) = tmp();
    let (store, batch) = spooled_for_a_and_b(&path, &["1", "2"], None).await;
    assert_eq!(batch.len(), 2);
    Connection::open(&path)
        .unwrap()
        .execute("UPDATE spool SET frame = substr(frame, 1, 9)", [])
        .unwrap();
    let err = store
        .read_batch("run", "a", 10, usize::MAX)
        .await
        .unwrap_err();
    match &err {
        StoreError::Corrupt { seq, .. } => assert_eq!(*seq, batch[1].seq),
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("damaged"), "{err}");
}

/// Pruning seeks to each site and deletes a leading range: it never scans the ids.
#[test]
fn prune_seen_uses_the_key_not_a_scan() {
    let (_dir, path) = tmp();
    drop(Db::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    for sql in [
        "SELECT ns, corp, site FROM seen WHERE (ns, corp, site) > ('a', 'b', 'c')
         ORDER BY ns, corp, site LIMIT 1",
        "DELETE FROM seen WHERE ns = 'a' AND corp = 'b' AND site = 'c' AND ts < 5",
        "INSERT INTO seen (ns, corp, site, ts, id) VALUES ('a', 'b', 'c', 1, 'x')
         ON CONFLICT DO NOTHING",
    ] {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let plan: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(
            plan.iter().all(|step| !step.starts_with("SCAN")),
            "{sql}: {plan:?}"
        );
    }
}

/// A new file gets 16 KiB pages; one created with SQLite's default 4 KiB keeps them and works.
#[tokio::test]
async fn new_files_get_large_pages_and_old_ones_keep_theirs() {
    let page_size = |path: &Path| count(path, "PRAGMA page_size");
    let (_dir, path) = tmp();
    drop(Store::open(&path).unwrap());
    assert_eq!(page_size(&path), 16_384);

    let (_dir2, old) = tmp();
    // A file with 4 KiB pages and nothing in it (a table of another application would now be
    // refused: see `a_database_of_another_application_is_refused_untouched`).
    Connection::open(&old)
        .unwrap()
        .execute_batch("CREATE TABLE before_us (x INTEGER); DROP TABLE before_us")
        .unwrap();
    assert_eq!(page_size(&old), 4_096);
    let store = Store::open(&old).unwrap();
    store.register_sinks("run", &sinks(&["a"])).await.unwrap();
    store
        .commit_page(&key("run", "www"), evs(&["a", "b"]), 1, Some(60))
        .await
        .unwrap();
    assert_eq!(store.pending("run", "a").await.unwrap(), 2);
    assert_eq!(page_size(&old), 4_096);
}

#[test]
fn newer_schema_is_refused() {
    let (_dir, path) = tmp();
    drop(Db::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    for result in [Store::open(&path), Store::open_read_only(&path)] {
        match result {
            Err(StoreError::NewerSchema {
                found, supported, ..
            }) => {
                assert_eq!((found, supported), (99, schema::supported_version()));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Every file in `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// Every way of opening refuses a database another application made, and leaves the file and
/// its directory exactly as they were: no table added, no WAL switch, no lock file beside it.
#[test]
fn a_database_of_another_application_is_refused_untouched() {
    let (dir, path) = tmp();
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);
         CREATE INDEX users_name ON users (name);
         INSERT INTO users (name) VALUES ('ada');
         CREATE TABLE orders (id INTEGER); CREATE TABLE items (id INTEGER);",
    )
    .unwrap();
    drop(conn);
    let before = snapshot(dir.path());
    let refused = |r: Result<Store, StoreError>| match r {
        Err(StoreError::Foreign(f)) => {
            assert_eq!(f.path, path);
            f.to_string()
        }
        other => panic!("{other:?}"),
    };
    let text = refused(Store::open(&path));
    assert!(text.contains("another application"), "{text}");
    assert!(
        text.contains("`items`, `orders`, `users` and 1 more"),
        "{text}"
    );
    assert!(text.contains("spool.path"), "{text}");
    refused(Store::open_read_only(&path));
    refused(Store::open_exclusive(&path, "run"));
    assert_eq!(snapshot(dir.path()), before);

    // With a schema version of its own (another application using user_version too).
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 3).unwrap();
    drop(conn);
    let before = snapshot(dir.path());
    refused(Store::open_exclusive(&path, "run"));
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn a_file_that_is_not_a_database_is_refused_untouched_and_an_empty_one_is_used() {
    let (dir, path) = tmp();
    std::fs::write(&path, "name,email\nada,ada@example.com\n".repeat(40)).unwrap();
    let before = snapshot(dir.path());
    for r in [
        Store::open(&path),
        Store::open_read_only(&path),
        Store::open_exclusive(&path, "run"),
    ] {
        match r {
            Err(StoreError::Foreign(f)) => {
                assert!(f.what.contains("not an SQLite database"), "{f}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(snapshot(dir.path()), before);
    // An empty file (`touch state.db`) is a new state file.
    std::fs::write(&path, b"").unwrap();
    drop(Store::open_exclusive(&path, "run").unwrap());
    Store::open_read_only(&path).unwrap();
}

#[test]
fn open_creates_parent_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/state.db");
    Store::open(&path).unwrap();
    assert!(path.exists());
}

#[tokio::test]
async fn read_only_reads_while_writer_is_open_and_rejects_writes() {
    let (_dir, path) = tmp();
    assert!(
        Store::open_read_only(&path).is_err(),
        "missing file must be an error"
    );
    assert!(!path.exists(), "read-only open must not create the file");

    let writer = Store::open(&path).unwrap();
    writer.register_sinks("run", &sinks(&["s"])).await.unwrap();
    let k = key("run", "www");
    writer
        .commit_page(&k, evs(&["1", "2"]), 5, Some(10))
        .await
        .unwrap();

    let reader = Store::open_read_only(&path).unwrap();
    assert_eq!(reader.cursor(&k).await.unwrap(), Some(10));
    assert_eq!(reader.pending("run", "s").await.unwrap(), 2);
    // The writer keeps going while the reader is open, and the reader sees the new commit.
    writer
        .commit_page(&k, evs(&["3"]), 6, Some(20))
        .await
        .unwrap();
    assert_eq!(reader.cursor(&k).await.unwrap(), Some(20));
    assert_eq!(reader.sink_states().await.unwrap()[0].pending_events, 3);

    assert!(
        reader
            .commit_page(&k, evs(&["4"]), 7, Some(30))
            .await
            .is_err()
    );
    assert!(reader.register_sinks("run", &sinks(&["t"])).await.is_err());
    assert!(reader.settle("run", "s", 1, vec![]).await.is_err());
    assert!(reader.prune_seen(i64::MAX).await.is_err());
    assert_eq!(writer.cursor(&k).await.unwrap(), Some(20));
    assert_eq!(writer.pending("run", "s").await.unwrap(), 3);

    // Also after the writer has gone (status while the service is stopped).
    drop(writer);
    drop(reader);
    let reader = Store::open_read_only(&path).unwrap();
    assert_eq!(reader.cursors().await.unwrap().len(), 1);
}

#[test]
fn read_only_refuses_an_unmigrated_file() {
    let (_dir, path) = tmp();
    drop(Connection::open(&path).unwrap());
    match Store::open_read_only(&path) {
        Err(StoreError::OlderSchema { found: 0, .. }) => {}
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn changed_is_notified_after_inserting_commits() {
    let (_dir, path) = tmp();
    let store = Store::open(&path).unwrap();
    let changed = store.changed();
    let k = key("run", "www");

    let notified = changed.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    store.commit_page(&k, evs(&["1"]), 1, None).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), notified)
        .await
        .expect("notified");

    // A page of duplicates wakes nobody.
    let notified = changed.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    store.commit_page(&k, evs(&["1"]), 1, None).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(100), notified)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_reader() {
    const PAGES: i64 = 50;
    const PER_PAGE: i64 = 20;
    let (_dir, path) = tmp();
    let store = Store::open(&path).unwrap();
    store.register_sinks("run", &sinks(&["s"])).await.unwrap();

    let writer = |site: &'static str| {
        let store = store.clone();
        tokio::spawn(async move {
            let k = key("run", site);
            for p in 0..PAGES {
                let page = (0..PER_PAGE)
                    .map(|i| ev(&format!("{site}-{p}-{i}"), p))
                    .collect();
                store.commit_page(&k, page, p, Some(p)).await.unwrap();
            }
        })
    };
    let (w1, w2) = (writer("www"), writer("api"));

    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let total = 2 * PAGES * PER_PAGE;
            let mut got = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while (got.len() as i64) < total {
                assert!(tokio::time::Instant::now() < deadline, "reader timed out");
                let batch = store.read_batch("run", "s", 64, 1 << 20).await.unwrap();
                let Some(last) = batch.last() else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                };
                store.settle("run", "s", last.seq, vec![]).await.unwrap();
                got.extend(batch.into_iter().map(|e| e.seq));
            }
            got
        })
    };
    w1.await.unwrap();
    w2.await.unwrap();
    let got = reader.await.unwrap();
    assert_eq!(got.len() as i64, 2 * PAGES * PER_PAGE);
    assert!(got.windows(2).all(|w| w[0] < w[1]), "seq order, no repeats");
    assert_eq!(
        store.cursor(&key("run", "www")).await.unwrap(),
        Some(PAGES - 1)
    );
    assert_eq!(
        store.cursor(&key("run", "api")).await.unwrap(),
        Some(PAGES - 1)
    );
    assert_eq!(
        count(&path, "SELECT COALESCE(SUM(events), 0) FROM spool"),
        0
    );
}
