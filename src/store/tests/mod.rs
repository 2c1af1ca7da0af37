//! Tests of the store, against real SQLite files in temporary directories.

mod lifecycle;
mod spool;

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use tempfile::TempDir;

use super::*;

fn tmp() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    (dir, path)
}

fn key(ns: &str, site: &str) -> SiteKey {
    SiteKey {
        ns: ns.into(),
        corp: "acme".into(),
        site: site.into(),
    }
}

fn ev(id: &str, ts: i64) -> NewEvent {
    NewEvent {
        id: id.into(),
        ts,
        body: crate::store::Body::from(format!(r#"{{"id":"{id}","timestamp":{ts}}}"#)),
    }
}

/// Events with a timestamp that depends on the id only (`a` 1000, `b` 1001, ...), as a
/// re-fetched record carries the same id and timestamp as before.
fn evs(ids: &[&str]) -> Vec<NewEvent> {
    ids.iter().map(|id| ev(id, id_ts(id))).collect()
}

fn id_ts(id: &str) -> i64 {
    1_000 + id.bytes().map(i64::from).sum::<i64>() - i64::from(b'a')
}

fn sinks(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Count rows with an independent connection, so the check does not trust the store itself.
fn count(path: &Path, sql: &str) -> i64 {
    let conn = Connection::open(path).expect("inspect connection");
    conn.query_row(sql, [], |r| r.get(0)).expect("count query")
}

fn ids(batch: &[SpooledEvent]) -> Vec<&str> {
    batch.iter().map(|e| e.id.as_str()).collect()
}

/// Opens `path` with sinks "a" and "b" in namespace "run", spools `ids` for site "www" (moving
/// the cursor to `cursor` if given) and returns the store with sink "a"'s first batch.
async fn spooled_for_a_and_b(
    path: &Path,
    ids: &[&str],
    cursor: Option<i64>,
) -> (Store, Vec<SpooledEvent>) {
    let store = Store::open(path).unwrap();
    store
        .register_sinks("run", &sinks(&["a", "b"]))
        .await
        .unwrap();
    store
        .commit_page(&key("run", "www"), evs(ids), 5, cursor)
        .await
        .unwrap();
    let batch = store.read_batch("run", "a", 100, usize::MAX).await.unwrap();
    (store, batch)
}
