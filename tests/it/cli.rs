//! The command line contract: exit codes, config errors naming the key, secrets never printed,
//! SIGTERM a clean stop, and the README's demo command.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sigsci_export::sim::SimConfig;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_exits_2_naming_the_key() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("page_limit = 0", "api.page_limit"),
        ("tokn = \"x\"", "tokn"),
        ("sites = [\"WWW Production\"]", "api.sites"),
    ];
    for (line, key) in cases {
        let cfg = write_config(dir.path(), &sim, "demo-token", line, "");
        // A duplicate `sites` key is a TOML error, so replace the default line for that case.
        if line.starts_with("sites") {
            let text = std::fs::read_to_string(&cfg).unwrap().replacen(
                "sites = [\"www\", \"api\"]\n",
                "",
                1,
            );
            std::fs::write(&cfg, text).unwrap();
        }
        let out = run(
            &["run", "-c", cfg.to_str().unwrap()],
            &[],
            Duration::from_secs(20),
        )
        .await;
        assert_eq!(out.code, Some(2), "{line}: {}", out.stderr);
        assert!(
            out.stderr.contains(key),
            "{line}: stderr does not name {key}:\n{}",
            out.stderr
        );
        assert_eq!(
            out.stderr.lines().filter(|l| l.contains(key)).count(),
            1,
            "{line}: the error is printed once:\n{}",
            out.stderr
        );
        assert!(out.stdout.is_empty());
    }
    let out = run(
        &["run", "-c", "/nonexistent/sigsci.toml"],
        &[],
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("/nonexistent/sigsci.toml"));
    // Environment overrides are validated the same way.
    let cfg = write_config(dir.path(), &sim, "demo-token", "", "");
    let out = run(
        &["run", "-c", cfg.to_str().unwrap()],
        &[("SIGSCI_EXPORT__POLL__DELAY_SECS", "10")],
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("poll.delay_secs"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_backfill_arguments_exit_2() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &sim, "demo-token", "", "");
    let c = cfg.to_str().unwrap();
    for (from, until, expect) in [
        ("-30h", "-1h", "retention"),
        ("-1h", "-2h", "before"),
        ("yesterday", "now", "--from"),
    ] {
        let out = run(
            &["backfill", "-c", c, "--from", from, "--until", until],
            &[],
            Duration::from_secs(20),
        )
        .await;
        assert_eq!(out.code, Some(2), "{from}..{until}: {}", out.stderr);
        assert!(
            out.stderr.contains(expect),
            "{from}..{until}: {}",
            out.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_appears_in_any_output() {
    const TOKEN: &str = "tok-Zq9x-DISTINCT-4471-secret";
    let sim = start_sim(SimConfig {
        token: TOKEN.into(),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let until = latest(&sim);
    let from = rfc3339(until - 1800);
    let until = rfc3339(until);
    // A working backfill, with the token from a file and then from the environment.
    let cfg = write_config(dir.path(), &sim, TOKEN, "", "");
    let c = cfg.to_str().unwrap();
    let ok = run(
        &["backfill", "-c", c, "--from", &from, "--until", &until],
        &[],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    assert!(!ok.stdout.is_empty());
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("token_file = \"{}\"", dir.path().join("token").display()),
        "",
    );
    let env_cfg = dir.path().join("env.toml");
    std::fs::write(&env_cfg, text.replace("state.db", "state2.db")).unwrap();
    let env_ok = run(
        &[
            "backfill",
            "-c",
            env_cfg.to_str().unwrap(),
            "--from",
            &from,
            "--until",
            &until,
        ],
        &[("SIGSCI_TOKEN", TOKEN)],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(env_ok.code, Some(0), "{}", env_ok.stderr);
    // Failing paths print the most: a token the API refuses (debug logs on), a bad config.
    let wrong = format!("{TOKEN}-wrong");
    let other = tempfile::tempdir().unwrap();
    let sim_wrong = write_config(other.path(), &sim, &wrong, "", "");
    let refused = run(
        &[
            "backfill",
            "-c",
            sim_wrong.to_str().unwrap(),
            "--from",
            &from,
            "--until",
            &until,
        ],
        &[("RUST_LOG", "debug")],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(refused.stderr.contains("401"), "{}", refused.stderr);
    let bad = run(
        &["run", "-c", c],
        &[("SIGSCI_EXPORT__API__PAGE_LIMIT", "0")],
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(bad.code, Some(2));
    for out in [&ok, &env_ok, &refused, &bad] {
        assert!(!out.stdout.contains(TOKEN), "token in stdout");
        assert!(
            !out.stderr.contains(TOKEN),
            "token in stderr:\n{}",
            out.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_run_cleanly() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &sim,
        "demo-token",
        "",
        "[poll]\nstart_at = \"-1h\"",
    );
    let lines = Arc::new(Mutex::new(Vec::new()));
    let child = spawn(&["run", "-c", cfg.to_str().unwrap()], lines.clone());
    assert!(
        wait_until(Duration::from_secs(30), || lines.lock().unwrap().len()
            > 100)
        .await
    );
    let (code, stderr) = child.terminate(Duration::from_secs(20)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_streams_events_with_no_setup() {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let child = spawn(&["demo"], lines.clone());
    // Both discovered sites stream (a site's first window alone holds hundreds of events, so
    // wait for both rather than for a count).
    let both = |evs: &[(String, String)]| {
        evs.iter().any(|(s, _)| s == "www") && evs.iter().any(|(s, _)| s == "api")
    };
    let streamed = wait_until(Duration::from_secs(60), || {
        both(&events(&lines.lock().unwrap()))
    })
    .await;
    let (code, stderr) = child.terminate(Duration::from_secs(20)).await;
    assert!(streamed, "demo did not stream both sites:\n{stderr}");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(events(&lines.lock().unwrap()).len() >= 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_backfill_says_how_to_resume_and_resumes() {
    let faults = sigsci_export::sim::FaultConfig {
        latency_ms: 150,
        ..Default::default()
    };
    let sim = start_sim(SimConfig {
        faults,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &sim,
        "demo-token",
        "page_limit = 100",
        "[poll]\nmax_window_secs = 600",
    );
    let c = cfg.to_str().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let child = spawn(
        &["backfill", "-c", c, "--from", "-3h", "--until", "-2h"],
        lines.clone(),
    );
    assert!(
        wait_until(Duration::from_secs(30), || !lines
            .lock()
            .unwrap()
            .is_empty())
        .await
    );
    let (code, stderr) = child.terminate(Duration::from_secs(20)).await;
    assert_eq!(
        code,
        Some(1),
        "an unfinished backfill is not a success:\n{stderr}"
    );
    let hint = stderr
        .lines()
        .rev()
        .find(|l| l.contains("to resume"))
        .expect("a resume hint");
    let from = hint
        .split("--from ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .expect("--from in the hint");
    let until = hint
        .split("--until ")
        .nth(1)
        .and_then(|r| r.split('`').next())
        .expect("--until in the hint");
    let again = run(
        &["backfill", "-c", c, "--from", from, "--until", until],
        &[],
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    lines
        .lock()
        .unwrap()
        .extend(again.stdout.lines().map(String::from));
    let got = counts(&events(&lines.lock().unwrap()));
    let (from, until) = (
        sigsci_export::time::parse_instant(from, 0).unwrap(),
        sigsci_export::time::parse_instant(until, 0).unwrap(),
    );
    for site in ["www", "api"] {
        for id in sim.ground_truth(site, from, until) {
            assert!(
                got.contains_key(&(site.to_string(), id.clone())),
                "{site}/{id} missing after resume"
            );
        }
    }
}
