//! Operations: `status`, `check`, `dead-letters`, the admin endpoint, gap records, secrets, and
//! the systemd unit.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sigsci_export::sim::es::{EsReceiver, EsReceiverAuth, EsReceiverConfig};
use sigsci_export::sim::hec::{HecReceiver, HecReceiverConfig, HecToken};
use sigsci_export::sim::{SimConfig, Simulator};
use sigsci_export::store::{NewEvent, SiteKey, Store};

use crate::support::*;

/// A free loopback port (bound then released; the binary binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `write_config` with the admin endpoint on a known port.
fn config_with_admin(
    dir: &Path,
    sim: &Simulator,
    token: &str,
    extra_api: &str,
    extra: &str,
) -> (PathBuf, u16) {
    let path = write_config(dir, sim, token, extra_api, extra);
    let port = free_port();
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    std::fs::write(&path, text).unwrap();
    (path, port)
}

async fn get(url: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// The value of the first sample of `name` whose labels contain every `labels` pair.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .find_map(|l| l.rsplit_once(' ')?.1.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_reports_lost_ranges_metrics_health_and_status() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    // A cursor older than the (configured) retention: the first hour is lost for good and must be
    // recorded, not silently skipped.
    let (cfg, port) = config_with_admin(
        dir.path(),
        &sim,
        "demo-token",
        "retention_secs = 3600",
        "[poll]\nstart_at = \"-2h\"\ninterval_secs = 5\n",
    );
    let cfg = cfg.to_str().unwrap().to_string();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let running = spawn(&["run", "-c", &cfg], lines.clone());
    let base = format!("http://127.0.0.1:{port}");

    // Caught up: both sites' lag is back to about the poll delay.
    let mut last = String::new();
    let caught_up = async {
        for _ in 0..300 {
            if let Ok(resp) = reqwest::get(format!("{base}/metrics")).await {
                last = resp.text().await.unwrap_or_default();
                let lag = |site| metric(&last, "sigsci_export_site_lag_seconds", &[("site", site)]);
                // The sink too: fetching an hour takes a moment, writing it out another.
                let delivered = metric(
                    &last,
                    "sigsci_export_sink_events_total",
                    &[("sink", "stdout"), ("outcome", "delivered")],
                )
                .unwrap_or(0.0);
                if matches!((lag("www"), lag("api")), (Some(a), Some(b)) if a < 600.0 && b < 600.0)
                    && delivered > 2000.0
                {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }
    .await;
    assert!(caught_up, "both sites catch up; last metrics:\n{last}");

    let (code, text) = get(&format!("{base}/metrics")).await;
    assert_eq!(code, 200);
    for site in ["www", "api"] {
        let fetched = metric(
            &text,
            "sigsci_export_events_fetched_total",
            &[("site", site)],
        )
        .expect("fetched counter");
        assert!(fetched > 1000.0, "{site}: {fetched}");
        let lost = metric(&text, "sigsci_export_lost_seconds_total", &[("site", site)])
            .expect("lost-seconds counter");
        assert!((3500.0..=3720.0).contains(&lost), "{site} lost {lost} s");
    }
    assert!(
        metric(
            &text,
            "sigsci_export_sink_events_total",
            &[("sink", "stdout"), ("outcome", "delivered")]
        )
        .unwrap_or(0.0)
            > 2000.0
    );
    assert!(text.contains("# HELP sigsci_export_api_requests_total"));
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    assert_eq!(
        get(&format!("{base}/readyz")).await,
        (200, "ready\n".into())
    );

    // status reads the state file while `run` holds it.
    let out = run(
        &["status", "-c", &cfg, "--json"],
        &[],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let sites = report["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 2, "{report:#}");
    for s in sites {
        assert_eq!(s["ns"], "run");
        let lost = &s["lost_ranges"][0];
        let secs = lost["seconds"].as_i64().unwrap();
        assert!((3500..=3720).contains(&secs), "{s:#}");
        assert!(s["lag_secs"].as_i64().unwrap() < 900, "{s:#}");
    }
    let sink = &report["sinks"][0];
    assert_eq!(sink["sink"], "stdout");
    assert!(sink["blocked"].is_null());

    let (code, _) = running.terminate(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0));
    let out = run(&["status", "-c", &cfg], &[], Duration::from_secs(30)).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("LOST"), "{}", out.stdout);
    assert!(out.stdout.contains("stdout"), "{}", out.stdout);
    assert!(!lines.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_cause_and_exits_by_the_contract() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();

    let good = write_config(dir.path(), &sim, "demo-token", "", "");
    let out = run(
        &["check", "-c", good.to_str().unwrap()],
        &[],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("OK   api:"), "{}", out.stdout);
    assert!(out.stdout.contains("OK   site www:"), "{}", out.stdout);
    assert!(out.stdout.contains("OK   sink stdout:"), "{}", out.stdout);

    let wrong = "wrong-token-7c1e55";
    let bad_dir = tempfile::tempdir().unwrap();
    let bad = write_config(bad_dir.path(), &sim, wrong, "", "");
    let out = run(
        &["check", "-c", bad.to_str().unwrap()],
        &[],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("FAIL api: HTTP 401"), "{}", out.stdout);
    assert!(out.stdout.contains("FAIL site www:"), "{}", out.stdout);
    assert!(!out.stdout.contains(wrong) && !out.stderr.contains(wrong));

    // A site that does not exist: the fix lists the real names.
    let named_dir = tempfile::tempdir().unwrap();
    let named = write_config(named_dir.path(), &sim, "demo-token", "", "");
    let text = std::fs::read_to_string(&named)
        .unwrap()
        .replace("sites = [\"www\", \"api\"]", "sites = [\"WWW\"]");
    std::fs::write(&named, text).unwrap();
    let out = run(
        &["check", "-c", named.to_str().unwrap()],
        &[],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stdout.contains("FAIL site WWW:") && out.stdout.contains("sites are: www, api"),
        "{}",
        out.stdout
    );

    // --offline contacts nothing: the wrong token passes, a bad config exits 2.
    let out = run(
        &["check", "--offline", "-c", bad.to_str().unwrap()],
        &[],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert!(!out.stdout.contains("api:"), "{}", out.stdout);
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[api]\nemail = \"x@example.com\"\nsitez = 1\n").unwrap();
    let out = run(
        &["check", "--offline", "-c", broken.to_str().unwrap()],
        &[],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("sitez"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_replayed_and_delivered() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &sim,
        "demo-token",
        "",
        "[poll]\nstart_at = \"-6m\"\n",
    );
    let cfg = cfg.to_str().unwrap().to_string();
    {
        // A dead letter as a sink leaves it: rejected for good, with the reason.
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        store
            .register_sinks("run", &["stdout".to_string()])
            .await
            .unwrap();
        spool_demo_www(&store, &["dl-one", "ok-two"]).await;
        let batch = store
            .read_batch("run", "stdout", 10, 1 << 20)
            .await
            .unwrap();
        store
            .settle(
                "run",
                "stdout",
                batch[1].seq,
                vec![(
                    batch[0].clone(),
                    "mapper_parsing_exception: bad field".into(),
                )],
            )
            .await
            .unwrap();
    }
    let out = run(
        &["dead-letters", "-c", &cfg, "list"],
        &[],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("dl-one") && out.stdout.contains("mapper_parsing_exception"),
        "{}",
        out.stdout
    );
    let out = run(
        &["dead-letters", "-c", &cfg, "list", "--json"],
        &[],
        Duration::from_secs(30),
    )
    .await;
    let line: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(line["event"]["path"], "/x");

    let out = run(
        &["dead-letters", "-c", &cfg, "replay"],
        &[],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.code, Some(2), "replay needs a selection");
    let out = run(
        &["dead-letters", "-c", &cfg, "replay", "--sink", "stdout"],
        &[],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.starts_with("1 dead letter"), "{}", out.stdout);

    let out = run(
        &["status", "-c", &cfg, "--json"],
        &[],
        Duration::from_secs(30),
    )
    .await;
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["sinks"][0]["backlog_events"], 1, "{report:#}");
    assert_eq!(report["sinks"][0]["dead_letters"], 0, "{report:#}");

    // The service delivers it.
    let lines = Arc::new(Mutex::new(Vec::new()));
    let running = spawn(&["run", "-c", &cfg], lines.clone());
    let delivered = wait_until(Duration::from_secs(30), || {
        lines.lock().unwrap().iter().any(|l| l.contains("dl-one"))
    })
    .await;
    let (code, stderr) = running.terminate(Duration::from_secs(30)).await;
    assert!(delivered, "replayed event delivered; stderr:\n{stderr}");
    assert_eq!(code, Some(0));
    let n = lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("ok-two"))
        .count();
    assert_eq!(
        n, 0,
        "the sink that already had ok-two does not get it again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_any_output() {
    let secret = "tok-SECRET-5b9e2d71";
    let hec_secret = "hec-SECRET-8d1f03aa";
    let es_secret = "es-SECRET-77c2e9b4";
    let sim = start_sim(SimConfig {
        token: secret.into(),
        ..SimConfig::default()
    })
    .await;
    let local = ([127, 0, 0, 1], 0).into();
    let hec = HecReceiver::start(
        HecReceiverConfig {
            tokens: vec![HecToken::new(hec_secret)],
            ..HecReceiverConfig::default()
        },
        local,
    )
    .await
    .unwrap();
    let es = EsReceiver::start(
        EsReceiverConfig {
            auth: EsReceiverAuth::Basic {
                username: "elastic".into(),
                password: es_secret.into(),
            },
            ..EsReceiverConfig::default()
        },
        local,
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Three ways to hand over a secret: a file (API token), the environment (HEC token), and
    // a *_file next to the config (ES password).
    std::fs::write(dir.path().join("es-password"), es_secret).unwrap();
    let sinks = format!(
        "[[sinks]]\ntype = \"splunk_hec\"\nname = \"splunk\"\nurl = \"{}\"\n\n\
         [[sinks]]\ntype = \"elasticsearch\"\nname = \"elastic\"\nurl = \"{}\"\nauth = \"basic\"\n\
         username = \"elastic\"\npassword_file = \"{}\"\n\n\
         [poll]\nstart_at = \"-10m\"\ninterval_secs = 5\n",
        hec.url(),
        es.url(),
        dir.path().join("es-password").display()
    );
    let (cfg, port) = config_with_admin(dir.path(), &sim, secret, "", &sinks);
    let env = [("SIGSCI_EXPORT_SINK_SPLUNK_TOKEN", hec_secret)];
    let cfg = cfg.to_str().unwrap().to_string();
    let mut seen = String::new();

    for args in [
        vec!["check", "-c", &cfg],
        vec!["check", "--offline", "-c", &cfg],
    ] {
        let out = run(&args, &env, Duration::from_secs(60)).await;
        assert_eq!(
            out.code,
            Some(0),
            "{args:?}: {}\n{}",
            out.stdout,
            out.stderr
        );
        seen.push_str(&out.stdout);
        seen.push_str(&out.stderr);
    }
    let until = latest(&sim);
    let out = run(
        &[
            "backfill",
            "-c",
            &cfg,
            "--from",
            &rfc3339(until - 600),
            "--until",
            &rfc3339(until),
        ],
        &env,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    seen.push_str(&out.stderr);

    let lines = Arc::new(Mutex::new(Vec::new()));
    let running = spawn_env(&["run", "-c", &cfg], &env, lines.clone());
    let base = format!("http://127.0.0.1:{port}");
    let up = wait_until(Duration::from_secs(30), || {
        !lines.lock().unwrap().is_empty()
    })
    .await;
    assert!(up, "run delivers");
    for path in ["/metrics", "/healthz", "/readyz"] {
        seen.push_str(&get(&format!("{base}{path}")).await.1);
    }
    for args in [
        vec!["status", "-c", &cfg],
        vec!["status", "--json", "-c", &cfg],
        vec!["dead-letters", "-c", &cfg, "list"],
        vec!["dead-letters", "-c", &cfg, "replay", "--all"],
    ] {
        let out = run(&args, &env, Duration::from_secs(30)).await;
        assert_eq!(out.code, Some(0), "{args:?}: {}", out.stderr);
        seen.push_str(&out.stdout);
        seen.push_str(&out.stderr);
    }
    let (code, stderr) = running.terminate(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0));
    seen.push_str(&stderr);
    assert!(seen.len() > 1000, "the outputs were captured");
    assert!(
        seen.contains("OK   sink splunk") && seen.contains("OK   sink elastic"),
        "{seen}"
    );
    for s in [secret, hec_secret, es_secret] {
        assert!(!seen.contains(s), "a secret leaked:\n{seen}");
    }
    assert!(
        hec.stats().events_indexed > 0 && es.doc_count() > 0,
        "both sinks were used"
    );

    // The same token inline in a world-readable config: warned about, still never printed.
    let inline = dir.path().join("inline.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("token_file = \"{}\"", dir.path().join("token").display()),
        &format!("token = \"{secret}\""),
    );
    assert!(text.contains("token = \""));
    std::fs::write(&inline, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&inline, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(
        &["check", "--offline", "-c", inline.to_str().unwrap()],
        &env,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("WARN config file") && out.stdout.contains("chmod 600"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret));
    // backfill warns too (the range is the one exported above: nothing left to do).
    let out = run(
        &[
            "backfill",
            "-c",
            inline.to_str().unwrap(),
            "--from",
            &rfc3339(until - 600),
            "--until",
            &rfc3339(until),
        ],
        &env,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("api.token") && out.stderr.contains("chmod 600"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret));
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let Ok(found) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!("systemd-analyze not installed: skipping the unit check");
        return;
    };
    assert!(found.status.success());
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd/sigsci-export.service"),
    )
    .unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("RestartPreventExitStatus=2"));
    // verify insists that ExecStart binaries exist: point them at the one just built.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sigsci-export.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/sigsci-export", bin())).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("sigsci-export.service"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_ca_file_is_a_configuration_error_in_check_and_run() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    // Exists (so the config loads), but holds no certificate: only building the client finds it.
    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let env = [("SIGSCI_EXPORT_SINK_SPLUNK_TOKEN", "hec-token")];

    let sink_dir = tempfile::tempdir().unwrap();
    let sink_cfg = write_config(
        sink_dir.path(),
        &sim,
        "demo-token",
        "",
        &format!(
            "[[sinks]]\ntype = \"splunk_hec\"\nname = \"splunk\"\nurl = \"https://127.0.0.1:9\"\nca_file = \"{}\"\n",
            not_pem.display()
        ),
    );
    let api_dir = tempfile::tempdir().unwrap();
    let api_cfg = write_config(
        api_dir.path(),
        &sim,
        "demo-token",
        &format!("ca_file = \"{}\"", not_pem.display()),
        "",
    );
    for (cfg, what) in [(&sink_cfg, "sink splunk"), (&api_cfg, "api")] {
        let c = cfg.to_str().unwrap();
        for args in [vec!["check", "--offline", "-c", c], vec!["check", "-c", c]] {
            let out = run(&args, &env, Duration::from_secs(60)).await;
            assert_eq!(
                out.code,
                Some(2),
                "{args:?}: {}\n{}",
                out.stdout,
                out.stderr
            );
            let fail = format!("FAIL {what}:");
            assert!(
                out.stdout
                    .lines()
                    .any(|l| l.starts_with(&fail) && l.contains("not-a-ca.pem")),
                "{args:?}: {}",
                out.stdout
            );
            assert!(
                !out.stdout.contains("OK   build"),
                "{args:?}: {}",
                out.stdout
            );
        }
        // `run` stops at the same place, before polling, with the same exit code: systemd's
        // RestartPreventExitStatus=2 keeps it from restarting into the same failure.
        let out = run(&["run", "-c", c], &env, Duration::from_secs(60)).await;
        assert_eq!(out.code, Some(2), "run: {}", out.stderr);
        assert!(
            out.stderr.contains(what) && out.stderr.contains("not-a-ca.pem"),
            "run: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty());
        assert!(
            !out.stderr.contains("Site poller started"),
            "run must fail before polling: {}",
            out.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_blocks_readiness_keeps_the_lag_moving_and_warns_before_data_is_lost() {
    // Slow pages and one-minute windows: the spool's size is sampled once a second, and the
    // cursors must stop well behind (about 10 minutes of data fill the spool).
    let sim = start_sim(SimConfig {
        faults: sigsci_export::sim::FaultConfig {
            latency_ms: 200,
            ..Default::default()
        },
        ..SimConfig::default()
    })
    .await;
    // Splunk refuses the token: that sink keeps every event in the spool, which fills up.
    let hec = HecReceiver::start(
        HecReceiverConfig {
            tokens: vec![HecToken::new("the-right-token")],
            ..HecReceiverConfig::default()
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // 58 minutes behind with a one-hour retention: the spool fills with the cursors inside the
    // last 30 minutes before the feed drops their data.
    let (cfg, port) = config_with_admin(
        dir.path(),
        &sim,
        "demo-token",
        "retention_secs = 3600",
        &format!(
            "[[sinks]]\ntype = \"splunk_hec\"\nname = \"splunk\"\nurl = \"{}\"\n\n\
             [spool]\nmax_bytes = 1048576\nwhen_full = \"block\"\n\n\
             [poll]\nstart_at = \"-58m\"\nmax_window_secs = 60\ninterval_secs = 5\n",
            hec.url()
        ),
    );
    // `[spool]` appears twice now: keep the path in the second one.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let path_line = format!("path = \"{}\"", dir.path().join("state.db").display());
    let text = text
        .replacen(&format!("[spool]\n{path_line}\n"), "", 1)
        .replace("[spool]\n", &format!("[spool]\n{path_line}\n"));
    std::fs::write(&cfg, text).unwrap();
    let env = [("SIGSCI_EXPORT_SINK_SPLUNK_TOKEN", "a-wrong-token")];
    let lines = Arc::new(Mutex::new(Vec::new()));
    let running = spawn_env(&["run", "-c", cfg.to_str().unwrap()], &env, lines.clone());
    let base = format!("http://127.0.0.1:{port}");

    let mut ready = (0, String::new());
    for _ in 0..300 {
        if let Ok(resp) = reqwest::get(format!("{base}/readyz")).await {
            ready = (
                resp.status().as_u16(),
                resp.text().await.unwrap_or_default(),
            );
            if ready.1.contains("spool") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ready.0, 503, "{}", ready.1);
    assert!(ready.1.contains("spool: spool full"), "{}", ready.1);

    // While polling is paused the cursor stands still, and the lag gauge keeps growing.
    let lag = || async {
        let text = get(&format!("{base}/metrics")).await.1;
        metric(&text, "sigsci_export_site_lag_seconds", &[("site", "www")])
    };
    let first = lag().await.expect("a lag gauge");
    let mut later = first;
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        later = lag().await.unwrap();
        if later >= first + 3.0 {
            break;
        }
    }
    assert!(
        later >= first + 3.0,
        "the lag gauge froze at {first} ({later})"
    );
    let text = get(&format!("{base}/metrics")).await.1;
    assert_eq!(metric(&text, "sigsci_export_spool_full", &[]), Some(1.0));

    let (code, stderr) = running.terminate(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let loss: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("Data will be lost in"))
        .collect();
    assert!(
        !loss.is_empty() && loss.iter().all(|l| l.contains("\"ERROR\"")),
        "{stderr}"
    );
    for site in ["www", "api"] {
        let n = loss
            .iter()
            .filter(|l| l.contains(&format!("\"site\":\"{site}\"")))
            .count();
        assert!(n <= 1, "one warning per site and pause: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_dead_letters_read_no_secret_and_replay_only_to_configured_sinks() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    {
        // `old` rejected one event, then was removed from the config (and from the last run).
        let store = Store::open(&db).unwrap();
        let both = ["stdout".to_string(), "old".to_string()];
        store.register_sinks("run", &both).await.unwrap();
        spool_demo_www(&store, &["a", "b"]).await;
        for (sink, rejected) in [("stdout", 0), ("old", 1)] {
            let batch = store.read_batch("run", sink, 10, 1 << 20).await.unwrap();
            let dead = vec![(batch[rejected].clone(), format!("{sink} said no"))];
            store.settle("run", sink, batch[1].seq, dead).await.unwrap();
        }
        store.register_sinks("run", &both[..1]).await.unwrap();
    }
    // The service's credentials are not there (systemd provides them only to the running
    // service): the API token file and the HEC token file are both missing.
    let cfg = write_config(
        dir.path(),
        &sim,
        "unused",
        "",
        "[[sinks]]\ntype = \"splunk_hec\"\nname = \"splunk\"\nurl = \"https://splunk.example.com:8088\"\n\
         token_file = \"/run/credentials/sigsci-export.service/hec-token\"\n",
    );
    std::fs::remove_file(dir.path().join("token")).unwrap();
    let c = cfg.to_str().unwrap();
    let state = db.to_str().unwrap();
    let run_args = [
        vec!["status", "-c", c],
        vec!["status", "--json", "--state", state],
        vec!["dead-letters", "-c", c, "list"],
        vec!["dead-letters", "--state", state, "list"],
    ];
    for args in &run_args {
        let out = run(args, &[], Duration::from_secs(30)).await;
        assert_eq!(out.code, Some(0), "{args:?}: {}", out.stderr);
        assert!(out.stdout.contains("stdout"), "{args:?}: {}", out.stdout);
    }
    // The full config is still refused where it is needed.
    let out = run(
        &["check", "--offline", "-c", c],
        &[],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);

    // `old` is neither in the config nor in the last run: its letter stays where it is.
    for args in [
        vec!["dead-letters", "-c", c, "replay", "--all"],
        vec!["dead-letters", "-c", c, "replay", "--id", "2"],
        vec!["dead-letters", "--state", state, "replay", "--all"],
        vec!["dead-letters", "-c", c, "replay", "--sink", "old"],
    ] {
        let out = run(&args, &[], Duration::from_secs(30)).await;
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("`old`"), "{args:?}: {}", out.stderr);
    }
    let list = run(
        &["dead-letters", "-c", c, "list", "--json"],
        &[],
        Duration::from_secs(30),
    )
    .await;
    let letters: Vec<serde_json::Value> = list
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 2, "{}", list.stdout);
    let id_of =
        |sink: &str| letters.iter().find(|l| l["sink"] == sink).unwrap()["dl_id"].to_string();
    assert_eq!(id_of("old"), "2", "the ids used above");
    // The configured sink's letter replays, by id or by sink.
    let out = run(
        &["dead-letters", "-c", c, "replay", "--id", &id_of("stdout")],
        &[],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.starts_with("1 dead letter"), "{}", out.stdout);
}

#[test]
fn the_deploy_files_keep_their_promises() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    // A readiness probe on /readyz would take the whole application pod out of its Service
    // while a sink is blocked; liveness stays, and /tmp is writable under a read-only root.
    let sidecar = read("deploy/kubernetes/sidecar.yaml");
    let spec: Vec<&str> = sidecar
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let spec = spec.join("\n");
    assert!(!spec.contains("readinessProbe"), "{spec}");
    assert!(spec.contains("livenessProbe:") && spec.contains("path: /healthz"));
    assert!(spec.contains("readOnlyRootFilesystem: true"));
    assert!(spec.contains("mountPath: /tmp") && spec.contains("emptyDir"));
    // The image is built as CI builds, from a context without build output or state files.
    let ci = read(".ci/run");
    let release = ci
        .find("cargo build --release --locked")
        .expect("CI builds the release binary");
    let tests = ci
        .rfind("\ncargo test\n")
        .expect("the README's test command");
    assert!(release < tests);
    assert!(read("deploy/Dockerfile").contains("RUN cargo build --release --locked"));
    let ignore = read(".dockerignore");
    for entry in ["target/", ".git/", "**/*.db"] {
        assert!(ignore.lines().any(|l| l == entry), "{entry}");
    }
}

/// Spools events with these ids for site `demo/www` of the `run` namespace, as a run would.
async fn spool_demo_www(store: &Store, ids: &[&str]) {
    let key = SiteKey {
        ns: "run".into(),
        corp: "demo".into(),
        site: "www".into(),
    };
    let events = ids
        .iter()
        .map(|id| NewEvent {
            id: id.to_string(),
            ts: 1_000,
            body: format!("{{\"id\":\"{id}\",\"path\":\"/x\"}}").into(),
        })
        .collect();
    store.commit_page(&key, events, 1_000, None).await.unwrap();
}
