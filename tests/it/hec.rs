//! Splunk HEC end to end: the real binary, the feed simulator and the HEC test receiver.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sigsci_export::sim::SimConfig;
use sigsci_export::sim::hec::{HecFaults, HecReceiver, HecReceiverConfig, HecToken};

use crate::support::*;

/// Distinctive, so a leak into any output is found.
const HEC_TOKEN: &str = "hec-7f3a9c-NEVER-PRINT-ME";

async fn start_hec(faults: HecFaults) -> HecReceiver {
    HecReceiver::start(
        HecReceiverConfig {
            tokens: vec![HecToken::new(HEC_TOKEN)],
            faults,
            keep_events: 0,
            ..HecReceiverConfig::default()
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await
    .expect("HEC receiver starts")
}

/// A `[[sinks]]` table for `rx`, its token in a file.
fn hec_sink(dir: &Path, rx: &HecReceiver) -> String {
    let tf = dir.join("hec-token");
    std::fs::write(&tf, format!("{HEC_TOKEN}\n")).unwrap();
    format!(
        "\n[[sinks]]\ntype = \"splunk_hec\"\nurl = \"{}\"\ntoken_file = \"{}\"\nlinger_ms = 200\n",
        rx.url(),
        tf.display()
    )
}

/// `check` runs the sink's healthcheck: `/health` (which ignores the token, like Splunk's) and
/// a blank-event probe that does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_finds_a_wrong_token_a_forbidden_index_and_a_closed_port() {
    let sim = start_sim(SimConfig::default()).await;
    let rx = HecReceiver::start(
        HecReceiverConfig {
            tokens: vec![HecToken {
                allowed_indexes: Some(vec!["waf".into()]),
                ..HecToken::new(HEC_TOKEN)
            }],
            ..HecReceiverConfig::default()
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await
    .unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let wrong = "hec-wrong-5e0c-NEVER-PRINT-ME";
    for (url, token, index, ok, needle) in [
        (rx.url(), HEC_TOKEN, "waf", true, "healthcheck passed"),
        (rx.url(), wrong, "waf", false, "the HEC token is not valid"),
        (
            rx.url(),
            HEC_TOKEN,
            "secret",
            false,
            "index `secret` is not allowed for this token: add it to the token's allowed indexes",
        ),
        (
            closed,
            HEC_TOKEN,
            "waf",
            false,
            "listening on this host and port (default 8088)",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let tf = dir.path().join("hec-token");
        std::fs::write(&tf, token).unwrap();
        let extra = format!(
            "\n[[sinks]]\ntype = \"splunk_hec\"\nurl = \"{url}\"\ntoken_file = \"{}\"\nindex = \"{index}\"\n",
            tf.display()
        );
        let cfg = write_config(dir.path(), &sim, "demo-token", "", &extra);
        let out = run(
            &["check", "-c", cfg.to_str().unwrap()],
            &[],
            Duration::from_secs(60),
        )
        .await;
        let line = out
            .stdout
            .lines()
            .find(|l| l.contains("sink splunk_hec:"))
            .unwrap_or_default()
            .to_string();
        assert_eq!(
            out.code,
            Some(if ok { 0 } else { 1 }),
            "{}\n{}",
            out.stdout,
            out.stderr
        );
        assert!(
            line.starts_with(if ok { "OK" } else { "FAIL" }) && line.contains(needle),
            "{index} {url}: {line}"
        );
        for secret in [HEC_TOKEN, wrong] {
            assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret));
        }
    }
    assert_eq!(rx.stats().events_indexed, 0, "check indexes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_to_hec_with_ten_percent_503s_delivers_every_id() {
    let sim = start_sim(SimConfig::default()).await;
    let rx = start_hec(HecFaults {
        busy_503: 0.10,
        ..HecFaults::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut extra = hec_sink(dir.path(), &rx);
    // Small requests, so there are enough of them for 10% to fail several times.
    extra.push_str("batch_max_bytes = 100000\n");
    let cfg = write_config(dir.path(), &sim, "demo-token", "", &extra);
    let until = latest(&sim);
    let from = until - 3600;
    let out = run(
        &[
            "backfill",
            "-c",
            cfg.to_str().unwrap(),
            "--from",
            &rfc3339(from),
            "--until",
            &rfc3339(until),
        ],
        &[],
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let counts = rx.counts();
    for site in ["www", "api"] {
        let truth = sim.ground_truth(site, from, until);
        assert!(!truth.is_empty());
        for id in &truth {
            assert_eq!(counts.get(id), Some(&1), "{site}/{id} indexed exactly once");
        }
    }
    let st = rx.stats();
    assert!(
        st.statuses.get(&503).copied().unwrap_or(0) > 0,
        "faults were injected: {st:?}"
    );
    assert!(!out.stdout.contains(HEC_TOKEN) && !out.stderr.contains(HEC_TOKEN));
}

/// HEC down (503 on every route) while `run` works through a 20-minute backlog: the stdout
/// sink delivers the whole covered range meanwhile (HEC stays down until it has, and at least
/// 30 s), and after HEC resumes every id of the ground truth reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_hec_does_not_hold_back_stdout_and_gets_everything_after_it_resumes() {
    let sim = start_sim(SimConfig::default()).await;
    let rx = start_hec(HecFaults::default()).await;
    rx.pause();
    let paused_at = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    // The covered range: a backlog that ends where the live poller (300 s behind the clock)
    // has surely passed; `latest` is 360 s behind.
    let horizon = latest(&sim);
    let start = horizon - 20 * 60;
    let extra = format!(
        "\n[poll]\nstart_at = \"{}\"\ninterval_secs = 5\n{}",
        rfc3339(start),
        hec_sink(dir.path(), &rx)
    );
    let cfg = write_config(dir.path(), &sim, "demo-token", "", &extra);
    let truth: Vec<String> = ["www", "api"]
        .iter()
        .flat_map(|s| sim.ground_truth(s, start, horizon))
        .collect();
    assert!(truth.len() > 100, "a real backlog: {}", truth.len());
    let lines = Arc::new(Mutex::new(Vec::new()));
    let running = spawn(&["run", "-c", cfg.to_str().unwrap()], lines.clone());
    let on_stdout = || -> HashSet<String> {
        events(&lines.lock().unwrap())
            .into_iter()
            .map(|(_, id)| id)
            .collect()
    };
    let missing_on_stdout = || {
        let seen = on_stdout();
        truth.iter().filter(|id| !seen.contains(*id)).count()
    };
    // HEC stays down until stdout has the whole range, and at least 30 s.
    let stdout_done = wait_until(Duration::from_secs(120), || missing_on_stdout() == 0).await;
    let missing = missing_on_stdout();
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(paused_at.elapsed())).await;
    assert_eq!(rx.stats().events_indexed, 0, "HEC was paused");
    rx.resume();
    let missing_at_hec = || {
        let c = rx.counts();
        truth.iter().filter(|id| !c.contains_key(*id)).count()
    };
    let all_at_hec = wait_until(Duration::from_secs(120), || missing_at_hec() == 0).await;
    let (code, stderr) = running.terminate(Duration::from_secs(40)).await;
    assert!(
        stdout_done,
        "stdout kept flowing while HEC was down: {missing} of {} ids missing\n{stderr}",
        truth.len()
    );
    assert!(
        all_at_hec,
        "every ground-truth id reached HEC after it resumed: {} of {} missing\n{stderr}",
        missing_at_hec(),
        truth.len()
    );
    assert_eq!(code, Some(0), "{stderr}");
    let stdout = lines.lock().unwrap().join("\n");
    assert!(
        !stdout.contains(HEC_TOKEN) && !stderr.contains(HEC_TOKEN),
        "the HEC token leaked"
    );
}
