//! One writer per namespace of a state file, and replies the Elasticsearch sink must not
//! misread (issue 14, defects 5, 9, 12, 14 and 16): the real binary against the simulator, the
//! ES receiver and small hostile servers.
//!
//! * A second `run` (or a backfill of the same range) exits 1 naming the holder's PID, while
//!   `status`, `dead-letters list` and a backfill of another range work beside it; the lock
//!   goes with a `kill -9`.
//! * A `spool.path` naming another application's SQLite file exits 2 and leaves it untouched.
//! * A bulk reply whose items are in another order, or without `status`, is not settled.
//! * A sink whose TLS certificate does not verify is blocked with a sentence, not retried
//!   forever at WARN.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sigsci_export::sim::SimConfig;
use sigsci_export::sim::es::{EsReceiver, EsReceiverConfig, ItemFault, TopFault};

use crate::pki::{Ca, acceptor};
use crate::support::*;

const LIMIT: Duration = Duration::from_secs(60);

/// A config for `sim` in `dir` that polls every 2 s, with `sinks` appended.
fn config(dir: &Path, sim: &sigsci_export::sim::Simulator, sinks: &str) -> String {
    let extra = format!("{sinks}\n\n[poll]\ninterval_secs = 2\n");
    let path = write_config(dir, sim, "demo-token", "", &extra);
    path.to_str().unwrap().to_string()
}

/// The `[[sinks]]` table of an Elasticsearch sink at `url` (after the stdout sink's keys).
fn es_sink(url: &str) -> String {
    format!("\n[[sinks]]\ntype = \"elasticsearch\"\nname = \"es\"\nurl = \"{url}\"\n")
}

async fn es_receiver() -> EsReceiver {
    EsReceiver::start(EsReceiverConfig::default(), ([127, 0, 0, 1], 0).into())
        .await
        .expect("receiver starts")
}

/// Waits until the running binary has printed an event (so it holds its lock).
async fn printing(lines: &Arc<Mutex<Vec<String>>>) {
    assert!(
        wait_until(LIMIT, || !lines.lock().unwrap().is_empty()).await,
        "the first process never printed an event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_exits_naming_the_holder_and_a_kill_9_releases_the_lock() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sim, "");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let first = spawn(&["run", "-c", &cfg], lines.clone());
    let pid = first.child.id().unwrap();
    printing(&lines).await;

    let second = run(&["run", "-c", &cfg], &[], LIMIT).await;
    assert_eq!(
        second.code,
        Some(1),
        "a conflict at run time:\n{}",
        second.stderr
    );
    assert!(
        second.stderr.contains(&format!(
            "sigsci-export process {pid} is already running `run`"
        )),
        "{}",
        second.stderr
    );
    assert!(second.stdout.is_empty(), "the second one exported nothing");

    // Readers and another namespace work beside it.
    let status = run(&["status", "-c", &cfg, "--json"], &[], LIMIT).await;
    assert_eq!(status.code, Some(0), "{}", status.stderr);
    let list = run(&["dead-letters", "-c", &cfg, "list"], &[], LIMIT).await;
    assert_eq!(list.code, Some(0), "{}", list.stderr);
    let until = latest(&sim);
    let (from_s, until_s) = (rfc3339(until - 300), rfc3339(until));
    let backfill = [
        "backfill", "-c", &cfg, "--from", &from_s, "--until", &until_s,
    ];
    let beside = run(&backfill, &[], LIMIT).await;
    assert_eq!(beside.code, Some(0), "{}", beside.stderr);
    assert!(!beside.stdout.is_empty());

    // SIGKILL leaves the lock file behind but not the lock.
    first.kill9().await;
    let lock = dir.path().join("state.db.run.lock");
    assert!(lock.exists());
    let lines = Arc::new(Mutex::new(Vec::new()));
    let restarted = spawn(&["run", "-c", &cfg], lines.clone());
    let pid = restarted.child.id().unwrap().to_string();
    assert!(
        wait_until(LIMIT, || std::fs::read_to_string(&lock)
            .is_ok_and(|t| t.trim() == pid))
        .await,
        "the restarted run never took the lock"
    );
    let third = run(&["run", "-c", &cfg], &[], LIMIT).await;
    assert_eq!(third.code, Some(1));
    assert!(
        third.stderr.contains(&format!("process {pid} ")),
        "{}",
        third.stderr
    );
    let (code, stderr) = restarted.terminate(LIMIT).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!lock.exists(), "a clean stop removes its lock file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_backfill_of_the_same_range_is_refused() {
    let sim = start_sim(SimConfig::default()).await;
    // A cluster that never answers keeps the first backfill waiting for its sinks.
    let rx = es_receiver().await;
    rx.pause();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sim, &es_sink(&rx.url()));
    let until = latest(&sim);
    let (from_s, until_s) = (rfc3339(until - 600), rfc3339(until));
    let args = [
        "backfill", "-c", &cfg, "--from", &from_s, "--until", &until_s,
    ];
    let lines = Arc::new(Mutex::new(Vec::new()));
    let first = spawn(&args, lines.clone());
    let pid = first.child.id().unwrap();
    printing(&lines).await;
    let second = run(&args, &[], LIMIT).await;
    assert_eq!(second.code, Some(1), "{}", second.stderr);
    assert!(
        second.stderr.contains(&format!(
            "sigsci-export process {pid} is already running a backfill of the same range"
        )),
        "{}",
        second.stderr
    );
    first.kill9().await;
}

/// Every file of `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_of_another_application_is_refused_untouched() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sim, "");
    let db = dir.path().join("state.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT);
         INSERT INTO accounts (owner) VALUES ('ada'), ('grace');",
    )
    .unwrap();
    drop(conn);
    let before = snapshot(dir.path());
    let until = latest(&sim);
    let (from_s, until_s) = (rfc3339(until - 300), rfc3339(until));
    for args in [
        vec!["run", "-c", &cfg],
        vec![
            "backfill", "-c", &cfg, "--from", &from_s, "--until", &until_s,
        ],
        vec!["status", "-c", &cfg],
        vec!["dead-letters", "-c", &cfg, "replay", "--all"],
    ] {
        let out = run(&args, &[], LIMIT).await;
        assert_eq!(
            out.code,
            Some(2),
            "{args:?}: a configuration error\n{}",
            out.stderr
        );
        assert!(
            out.stderr.contains(&format!(
                "{} is not a sigsci-export state file",
                db.display()
            )) && out.stderr.contains("`accounts`"),
            "{args:?}: {}",
            out.stderr
        );
        assert_eq!(snapshot(dir.path()), before, "{args:?} wrote something");
    }
}

/// A backfill of ten minutes of `www` (one page, one `_bulk` request) into `rx`; returns the
/// ground truth, the exit code and stderr.
async fn backfill_into(
    sim: &sigsci_export::sim::Simulator,
    rx: &EsReceiver,
    dir: &Path,
    script: impl FnOnce(&[String]),
) -> (Vec<String>, Option<i32>, String) {
    let cfg = config(dir, sim, &es_sink(&rx.url()));
    let until = latest(sim);
    let from = until - 600;
    let truth = sim.ground_truth("www", from, until);
    script(&truth);
    let (from_s, until_s) = (rfc3339(from), rfc3339(until));
    let args = [
        "backfill", "-c", &cfg, "--from", &from_s, "--until", &until_s, "--site", "www",
    ];
    let out = run(&args, &[], Duration::from_secs(120)).await;
    (truth, out.code, out.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_es_reply_with_items_in_another_order_loses_and_miscounts_nothing() {
    let sim = start_sim(SimConfig::default()).await;
    let rx = es_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let mut refused = Vec::new();
    let (truth, code, stderr) = backfill_into(&sim, &rx, dir.path(), |truth| {
        assert!(truth.len() > 100 && truth.len() < 1000, "one page");
        // Refused each time they are sent; the reversed reply would pin their refusals on
        // two stored documents and count them as delivered.
        refused = vec![truth[3].clone(), truth[10].clone()];
        for id in &refused {
            rx.script_item(id, [ItemFault::MappingError, ItemFault::MappingError]);
        }
        rx.script_top([TopFault::Reordered]);
    })
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    let db = dir.path().join("state.db");
    let list = run(
        &[
            "dead-letters",
            "--state",
            db.to_str().unwrap(),
            "list",
            "--json",
            "--sink",
            "es",
        ],
        &[],
        LIMIT,
    )
    .await;
    let mut dead: Vec<String> = list
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    dead.sort();
    refused.sort();
    assert_eq!(
        dead, refused,
        "exactly the refused documents are dead letters"
    );
    let counts = rx.id_counts();
    let missing: Vec<&String> = truth
        .iter()
        .filter(|id| !refused.contains(id) && counts.get(*id) != Some(&1))
        .collect();
    assert!(missing.is_empty(), "not stored once: {missing:?}");
    assert_eq!(rx.doc_count(), truth.len() - refused.len());
    assert!(
        stderr.contains("Reply not understood") && stderr.contains("items out of order"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_items_without_status_are_warned_about_and_block_the_sink_until_readable() {
    let sim = start_sim(SimConfig::default()).await;
    let rx = es_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let (truth, code, stderr) = backfill_into(&sim, &rx, dir.path(), |_| {
        rx.script_top([TopFault::NoItemStatus; 5]);
    })
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    let warned = stderr
        .lines()
        .filter(|l| l.contains("Reply not understood") && l.contains("without `status`"))
        .count();
    assert_eq!(warned, 5, "one WARN per reply:\n{stderr}");
    assert!(
        stderr.contains("Sink blocked") && stderr.contains("5 replies in a row could not be read"),
        "{stderr}"
    );
    assert!(stderr.contains("Sink recovered"), "{stderr}");
    let counts = rx.id_counts();
    assert!(truth.iter().all(|id| counts.get(id) == Some(&1)));
    assert_eq!(rx.doc_count(), truth.len());
}

/// A TLS server on 127.0.0.1 presenting a CA's own certificate as its server certificate (the
/// case reported as `Other(OtherError(CaUsedAsEndEntity))`); returns its address and the CA,
/// which the sink trusts through `ca_file`.
async fn tls_server_with_a_ca_as_its_certificate() -> (std::net::SocketAddr, Ca) {
    let ca = Ca::new("test CA");
    let acceptor = acceptor(&ca.as_leaf());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            // The client refuses the certificate: the handshake is all there is.
            let _ = acceptor.accept(tcp).await;
        }
    });
    (addr, ca)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_certificate_that_cannot_verify_blocks_the_sink_with_a_sentence() {
    let sim = start_sim(SimConfig::default()).await;
    let (addr, ca) = tls_server_with_a_ca_as_its_certificate().await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write_pem(dir.path());
    let sink = format!(
        "{}ca_file = \"{}\"\n",
        es_sink(&format!("https://{addr}")),
        ca_file.display()
    );
    let cfg = config(dir.path(), &sim, &sink);
    let lines = Arc::new(Mutex::new(Vec::new()));
    let running = spawn(&["run", "-c", &cfg], lines.clone());
    let db = dir.path().join("state.db");
    let db = db.to_str().unwrap();
    let mut blocked = None;
    let deadline = std::time::Instant::now() + LIMIT;
    while blocked.is_none() && std::time::Instant::now() < deadline {
        let out = run(&["status", "--state", db, "--json"], &[], LIMIT).await;
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&out.stdout) {
            blocked = v["sinks"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["sink"] == "es")
                .and_then(|s| s["blocked"].as_str().map(str::to_string));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, stderr) = running.terminate(LIMIT).await;
    let blocked = blocked.unwrap_or_else(|| panic!("the sink was never blocked:\n{stderr}"));
    assert!(
        blocked.contains("TLS certificate refused: the server presents a CA certificate"),
        "{blocked}"
    );
    assert!(!blocked.contains("OtherError"), "{blocked}");
    assert_eq!(code, Some(0), "{stderr}");
    let sink_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("\"sink\":\"es\""))
        .collect();
    assert!(
        sink_lines
            .iter()
            .any(|l| l.contains("\"level\":\"ERROR\"") && l.contains("Sink blocked")),
        "{stderr}"
    );
    assert!(
        !sink_lines
            .iter()
            .any(|l| l.contains("Send failed; will retry")),
        "not retried at WARN as if it were passing:\n{stderr}"
    );
    assert!(!lines.lock().unwrap().is_empty(), "stdout kept flowing");
}
