//! Delivery: backfills deliver every ground-truth id exactly once, with and without API faults.

use std::time::Duration;

use sigsci_export::sim::{Fault, FaultConfig, SimConfig};

use crate::support::*;

async fn backfill_3h_two_sites(faults: FaultConfig) {
    let sim = start_sim(SimConfig {
        faults,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &sim, "demo-token", "page_limit = 500", "");
    let until = latest(&sim);
    let from = until - 3 * 3600;
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
    let lines: Vec<String> = out.stdout.lines().map(String::from).collect();
    let got = counts(&events(&lines));
    for site in ["www", "api"] {
        let truth = sim.ground_truth(site, from, until);
        assert!(
            truth.len() > 3 * 60 * 30,
            "the simulator produced data for {site}"
        );
        let delivered: Vec<&String> = got
            .keys()
            .filter(|(s, _)| s == site)
            .map(|(_, id)| id)
            .collect();
        assert_eq!(
            delivered.len(),
            truth.len(),
            "{site}: every ground-truth id, nothing else"
        );
        assert!(
            delivered.iter().zip(&truth).all(|(a, b)| *a == b),
            "{site}: ids differ from the ground truth"
        );
    }
    let dups: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "delivered more than once: {dups:?}");
    assert_eq!(
        lines.len(),
        got.values().sum::<usize>(),
        "stdout holds only events"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_delivers_every_id_exactly_once() {
    backfill_3h_two_sites(FaultConfig::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_with_ten_percent_api_faults_loses_nothing() {
    let faults = FaultConfig::parse("429=0.03,400=0.02,500=0.02,524=0.01,truncate=0.02").unwrap();
    backfill_3h_two_sites(faults).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_whose_next_token_expired_is_refetched_without_loss_or_repeats() {
    let sim = start_sim(SimConfig {
        next_ttl_secs: 1,
        ..SimConfig::default()
    })
    .await;
    // The first page is served at once; the request for the second waits 1.5 s on the server,
    // so its one-second token has expired when it is checked: the window must start over.
    sim.script([
        Fault::Delay(Duration::ZERO),
        Fault::Delay(Duration::from_millis(1500)),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &sim, "demo-token", "page_limit = 100", "");
    let until = latest(&sim);
    let from = until - 1800;
    let c = cfg.to_str().unwrap();
    let out = run(
        &[
            "backfill",
            "-c",
            c,
            "--from",
            &rfc3339(from),
            "--until",
            &rfc3339(until),
            "--site",
            "api",
        ],
        &[],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    assert!(
        out.stderr.contains("next_expired") || out.stderr.contains("expired"),
        "the token did expire:\n{}",
        out.stderr
    );
    let got = counts(&events(
        &out.stdout.lines().map(String::from).collect::<Vec<_>>(),
    ));
    let truth = sim.ground_truth("api", from, until);
    assert_eq!(got.len(), truth.len());
    assert!(
        got.values().all(|&n| n == 1),
        "an event was delivered twice"
    );
    assert!(
        got.keys()
            .all(|(s, id)| s == "api" && truth.binary_search(id).is_ok())
    );
}
