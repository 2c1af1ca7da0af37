//! The Elasticsearch sink end to end: the real binary, the feed simulator and the ES bulk
//! receiver. Exactly once across SIGKILL and per-item 429s; a paused cluster never holds back
//! stdout and catches up afterwards; credentials never printed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use sigsci_export::sim::SimConfig;
use sigsci_export::sim::es::{EsFaults, EsReceiver, EsReceiverAuth, EsReceiverConfig};

use crate::support::*;

const PASSWORD: &str = "es-pw-never-printed-9731";

async fn start_receiver(faults: EsFaults) -> EsReceiver {
    EsReceiver::start(
        EsReceiverConfig {
            auth: EsReceiverAuth::Basic {
                username: "elastic".into(),
                password: PASSWORD.into(),
            },
            faults,
            ..EsReceiverConfig::default()
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await
    .expect("receiver starts")
}

/// The `[[sinks]]` table of the ES sink (appended after the stdout sink's keys).
fn es_sink_toml(dir: &std::path::Path, rx: &EsReceiver, stdout_extra: &str) -> String {
    let pw = dir.join("es-password");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    format!(
        r#"{stdout_extra}

[[sinks]]
type = "elasticsearch"
name = "es"
url = "{url}"
auth = "basic"
username = "elastic"
password_file = "{pw}"
batch_max_events = 1000
linger_ms = 200
"#,
        url = rx.url(),
        pw = pw.display()
    )
}

fn truth(sim: &sigsci_export::sim::Simulator, from: i64, until: i64) -> Vec<String> {
    ["www", "api"]
        .iter()
        .flat_map(|s| sim.ground_truth(s, from, until))
        .collect()
}

/// Every id stored exactly once and nothing else.
fn assert_exactly_once(rx: &EsReceiver, want: &[String]) {
    let counts = rx.id_counts();
    let missing: Vec<&String> = want.iter().filter(|id| !counts.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} ids never stored, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored in two indices: {twice:?}");
    assert_eq!(rx.doc_count(), want.len(), "nothing but the ground truth");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_with_item_429s_and_sigkill_stores_each_id_once() {
    let sim = start_sim(SimConfig::default()).await;
    let rx = start_receiver(EsFaults {
        item_429: 0.1,
        ..EsFaults::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &sim,
        "demo-token",
        "page_limit = 500",
        &es_sink_toml(dir.path(), &rx, ""),
    );
    let until = latest(&sim);
    let from = until - 3 * 3600;
    let (from_s, until_s) = (rfc3339(from), rfc3339(until));
    let args = [
        "backfill",
        "-c",
        cfg.to_str().unwrap(),
        "--from",
        from_s.as_str(),
        "--until",
        until_s.as_str(),
    ];
    let lines = Arc::new(Mutex::new(Vec::new()));
    let child = spawn(&args, lines.clone());
    // Kill once the cluster has some of it, mid-delivery.
    let wait_ms = rand::rng().random_range(0..400);
    assert!(wait_until(Duration::from_secs(30), || rx.doc_count() > 0).await);
    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    let (killed, stderr1) = child.kill9_mid_run().await;
    assert!(!stderr1.contains("panicked"), "{stderr1}");
    // Counted after the process died, so it includes everything the first run delivered.
    let stored_at_kill = rx.doc_count();
    let want = truth(&sim, from, until);
    eprintln!(
        "killed {wait_ms} ms after the first document: {stored_at_kill} of {} stored",
        want.len()
    );
    // Otherwise the second run only re-checks a finished backfill and the test proves nothing
    // about a restart.
    assert!(
        killed,
        "the first run exited on its own before the SIGKILL:\n{stderr1}"
    );
    assert!(
        stored_at_kill < want.len(),
        "the first run had stored everything ({stored_at_kill}) before the SIGKILL"
    );

    let out = run(&args, &[], Duration::from_secs(180)).await;
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    assert_exactly_once(&rx, &want);
    let st = rx.stats();
    assert!(
        st.items_by_status.get(&429).copied().unwrap_or(0) > 0,
        "faults were injected: {st:?}"
    );
    for text in [&stderr1, &out.stdout, &out.stderr] {
        assert!(!text.contains(PASSWORD), "the ES password was printed");
    }
    eprintln!(
        "{} documents, {} bulk requests, items by status {:?}",
        rx.doc_count(),
        st.bulk_requests,
        st.items_by_status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_cluster_does_not_hold_back_stdout_and_catches_up() {
    let sim = start_sim(SimConfig::default()).await;
    let rx = start_receiver(EsFaults::default()).await;
    rx.pause();
    let dir = tempfile::tempdir().unwrap();
    let start = latest(&sim) - 3600;
    let poll = format!(
        "\n[poll]\ninterval_secs = 2\nstart_at = \"{}\"",
        rfc3339(start)
    );
    let sinks = format!("{}{poll}", es_sink_toml(dir.path(), &rx, ""));
    let cfg = write_config(dir.path(), &sim, "demo-token", "", &sinks);
    let cfg_s = cfg.to_str().unwrap().to_string();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let child = spawn(&["run", "-c", cfg_s.as_str()], lines.clone());

    // The hour before the horizon reaches stdout while the cluster is down.
    let horizon = start + 3600 - 600;
    let want = truth(&sim, start, horizon);
    let paused_at = std::time::Instant::now();
    let on_stdout = wait_until(Duration::from_secs(25), || {
        let got: std::collections::HashSet<String> = events(&lines.lock().unwrap())
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        want.iter().all(|id| got.contains(id))
    })
    .await;
    assert!(on_stdout, "stdout stalled behind the paused cluster");
    assert_eq!(rx.doc_count(), 0, "paused: nothing stored");
    let rest = Duration::from_secs(30).saturating_sub(paused_at.elapsed());
    tokio::time::sleep(rest).await;
    assert_eq!(rx.doc_count(), 0);
    rx.resume();

    let ids: std::collections::HashSet<&String> = want.iter().collect();
    let caught_up = wait_until(Duration::from_secs(75), || {
        let c = rx.id_counts();
        ids.iter().all(|id| c.contains_key(*id))
    })
    .await;
    let (code, stderr) = child.terminate(Duration::from_secs(30)).await;
    assert!(caught_up, "the cluster did not catch up:\n{stderr}");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(rx.id_counts().values().all(|n| *n == 1));
    assert!(!stderr.contains(PASSWORD), "the ES password was printed");
    assert!(
        !lines.lock().unwrap().iter().any(|l| l.contains(PASSWORD)),
        "the ES password was printed"
    );
    assert!(stderr.contains("retry"), "the pause was logged:\n{stderr}");
}
