//! Crash safety: `run` killed with SIGKILL at random moments and restarted delivers every id of
//! the covered range at least once, with no gap.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use sigsci_export::sim::{FaultConfig, SimConfig};
use sigsci_export::store::{SiteKey, Store};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_survives_three_sigkills_without_gaps() {
    // Slow pages so the kills land mid-window, mid-commit or mid-write.
    let faults = FaultConfig {
        latency_ms: 40,
        ..FaultConfig::default()
    };
    let sim = start_sim(SimConfig {
        faults,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let start = latest(&sim) - 2 * 3600;
    let cfg = write_config(
        dir.path(),
        &sim,
        "demo-token",
        "page_limit = 200",
        &format!(
            "batch_max_events = 300\n\n[poll]\nmax_window_secs = 600\ninterval_secs = 2\nstart_at = \"{}\"",
            rfc3339(start)
        ),
    );
    let cfg = cfg.to_str().unwrap().to_string();
    let args = ["run", "-c", cfg.as_str()];
    let lines = Arc::new(Mutex::new(Vec::new()));
    let seed: u64 = rand::rng().random();
    eprintln!("kill schedule seed: {seed}");
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
    for round in 0..3 {
        let child = spawn(&args, lines.clone());
        let wait = Duration::from_millis(rng.random_range(300..2500));
        tokio::time::sleep(wait).await;
        let stderr = child.kill9().await;
        eprintln!(
            "round {round}: killed after {wait:?}; {} lines so far",
            lines.lock().unwrap().len()
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // The last run catches up; stop it once every id up to the horizon is out.
    let horizon = start + 2 * 3600 - 600;
    let want: Vec<(String, String)> = ["www", "api"]
        .iter()
        .flat_map(|s| {
            sim.ground_truth(s, start, horizon)
                .into_iter()
                .map(move |id| (s.to_string(), id))
        })
        .collect();
    let (caught_up, code, stderr) =
        run_until_delivered(&args, &lines, &want, Duration::from_secs(120)).await;
    assert!(
        caught_up,
        "not every id arrived; stderr of the last run:\n{stderr}"
    );
    assert_eq!(code, Some(0), "SIGTERM is a clean stop:\n{stderr}");

    // No gap: every id before each site's final cursor was delivered or is still spooled for the
    // sink (SIGTERM stops delivery; the next start sends those), and nothing was invented.
    let store = Store::open_read_only(&dir.path().join("state.db")).unwrap();
    let got = counts(&events(&lines.lock().unwrap()));
    let spooled: std::collections::HashSet<(String, String)> = store
        .read_batch("run", "stdout", usize::MAX, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.site.to_string(), e.id.to_string()))
        .collect();
    let mut covered = Vec::new();
    for site in ["www", "api"] {
        let key = SiteKey {
            ns: "run".into(),
            corp: "demo".into(),
            site: site.into(),
        };
        let cursor = store.cursor(&key).await.unwrap().expect("cursor stored");
        assert!(
            cursor >= horizon,
            "{site}: cursor {cursor} behind {horizon}"
        );
        let truth = sim.ground_truth(site, start, cursor);
        let missing: Vec<_> = truth
            .iter()
            .map(|id| (site.to_string(), id.clone()))
            .filter(|k| !got.contains_key(k) && !spooled.contains(k))
            .collect();
        assert!(
            missing.is_empty(),
            "{site}: {} ids neither delivered nor spooled, e.g. {:?}",
            missing.len(),
            missing.first()
        );
        let real = sim.ground_truth(site, start - 3600, cursor + 3600);
        assert!(
            got.keys()
                .filter(|(s, _)| s == site)
                .all(|(_, id)| real.binary_search(id).is_ok()),
            "{site}: an id the API never sent"
        );
        covered.extend(truth.into_iter().map(|id| (site.to_string(), id)));
    }
    drop(store);
    // And the next start delivers what SIGTERM left spooled: every covered id reaches stdout.
    let (delivered, code, stderr) =
        run_until_delivered(&args, &lines, &covered, Duration::from_secs(60)).await;
    assert!(
        delivered,
        "spooled events were not delivered after restart:\n{stderr}"
    );
    assert_eq!(code, Some(0), "{stderr}");
    let got = counts(&events(&lines.lock().unwrap()));
    let dups: usize = got.values().map(|n| n - 1).sum();
    eprintln!(
        "delivered {} distinct events, {dups} repeats after kills",
        got.len()
    );
}

/// Starts `run`, waits (at most `limit`) until every `(site, id)` of `want` is on stdout, then
/// sends SIGTERM. Returns whether all arrived, the exit code and stderr.
async fn run_until_delivered(
    args: &[&str],
    lines: &Arc<Mutex<Vec<String>>>,
    want: &[(String, String)],
    limit: Duration,
) -> (bool, Option<i32>, String) {
    let child = spawn(args, lines.clone());
    let arrived = wait_until(limit, || {
        let got = counts(&events(&lines.lock().unwrap()));
        want.iter().all(|k| got.contains_key(k))
    })
    .await;
    let (code, stderr) = child.terminate(Duration::from_secs(30)).await;
    (arrived, code, stderr)
}
