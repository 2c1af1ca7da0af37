//! A feed that misbehaves in ways retrying cannot fix: pages that never parse (bad records,
//! invalid UTF-8, an HTML page sent with 200), odd records (an id repeated with other content,
//! a timestamp outside the window), and many sites at once. Against a small hostile feed API
//! written here, which serves whatever page each test builds.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::support::*;

/// What the hostile API answers to one feed request.
struct Reply {
    content_type: &'static str,
    body: Vec<u8>,
}

impl Reply {
    fn json(body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            content_type: "application/json",
            body: body.into(),
        }
    }
}

/// Builds the reply to `GET .../sites/{site}/feed/requests` from the site and the query.
type Pages = dyn Fn(&str, &HashMap<String, String>) -> Reply + Send + Sync;

#[derive(Default)]
struct Stats {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

#[derive(Clone)]
struct Feed {
    sites: Arc<Vec<String>>,
    pages: Arc<Pages>,
    latency: Duration,
    stats: Arc<Stats>,
}

/// Serves corp `demo` with `sites` on 127.0.0.1, every feed page from `pages`.
async fn hostile(
    sites: &[&str],
    latency: Duration,
    pages: impl Fn(&str, &HashMap<String, String>) -> Reply + Send + Sync + 'static,
) -> (SocketAddr, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    let feed = Feed {
        sites: Arc::new(sites.iter().map(|s| s.to_string()).collect()),
        pages: Arc::new(pages),
        latency,
        stats: stats.clone(),
    };
    let app = Router::new()
        .route("/api/v0/corps/demo/sites", get(list))
        .route("/api/v0/corps/demo/sites/{site}/feed/requests", get(page))
        .with_state(feed);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, stats)
}

async fn list(State(feed): State<Feed>) -> Response {
    let data: Vec<String> = feed
        .sites
        .iter()
        .map(|s| format!(r#"{{"name":"{s}","displayName":"{s}"}}"#))
        .collect();
    Reply::json(format!(r#"{{"data":[{}]}}"#, data.join(","))).into_response()
}

async fn page(
    State(feed): State<Feed>,
    UrlPath(site): UrlPath<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let now = feed.stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    feed.stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(feed.latency).await;
    let reply = (feed.pages)(&site, &q);
    feed.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
    reply.into_response()
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, self.content_type)],
            self.body,
        )
            .into_response()
    }
}

/// A good record of the window starting at `from`.
fn good(id: &str, from: i64) -> String {
    format!(
        r#"{{"id":"{id}","timestamp":"{}","path":"/ok"}}"#,
        rfc3339(from + 1)
    )
}

/// The window's start, from the query (a `next` page carries it in its token, `p2-FROM`).
fn from_of(q: &HashMap<String, String>) -> i64 {
    q.get("from")
        .map(String::as_str)
        .or_else(|| q.get("next").and_then(|n| n.strip_prefix("p2-")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `poisoned` for the first window each site is asked for, clean pages after it.
fn poisoned_first_window() -> impl Fn(&str, &HashMap<String, String>) -> Reply {
    let first = Mutex::new(HashMap::<String, i64>::new());
    move |site, q| {
        let from = from_of(q);
        let is_first = *first
            .lock()
            .unwrap()
            .entry(site.to_string())
            .or_insert(from)
            == from;
        if is_first {
            poisoned(site, from)
        } else {
            poisoned("clean", from)
        }
    }
}

fn page_of(records: &[String]) -> Vec<u8> {
    format!(r#"{{"next":{{"uri":""}},"data":[{}]}}"#, records.join(",")).into_bytes()
}

/// Every poisoned page the tests serve: `site` -> its reply for the window at `from`.
fn poisoned(site: &str, from: i64) -> Reply {
    let ok = |i: u32| good(&format!("{site}-{from}-{i}"), from);
    let ts = rfc3339(from + 2);
    match site {
        "num" => Reply::json(page_of(&[
            ok(0),
            format!(r#"{{"id":5,"timestamp":"{ts}"}}"#),
            ok(2),
        ])),
        "noid" => Reply::json(page_of(&[
            ok(0),
            format!(r#"{{"timestamp":"{ts}","tags":[{{"id":"x"}}]}}"#),
            ok(2),
        ])),
        "notobj" => Reply::json(page_of(&[ok(0), r#"["id","x"]"#.to_string(), ok(2)])),
        "utf8" => {
            let mut body = page_of(&[ok(0), "BAD".into(), ok(2)]);
            let bad = format!(r#"{{"id":"{site}-{from}-1","timestamp":"{ts}","path":"/caf"#);
            let mut rec = bad.into_bytes();
            rec.extend_from_slice(b"\xe9\"}");
            let at = body.windows(3).position(|w| w == b"BAD").unwrap();
            body.splice(at..at + 3, rec);
            Reply::json(body)
        }
        "html" => Reply {
            content_type: "text/html",
            body: b"<html><body>Down for maintenance</body></html>".to_vec(),
        },
        _ => Reply::json(page_of(&[ok(0), ok(1)])),
    }
}

/// A free loopback port (bound then released; the binary binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config for the hostile API at `addr`, the admin endpoint on `admin` (or none); `extra` is
/// appended.
fn config(dir: &Path, addr: SocketAddr, sites: &str, admin: Option<u16>, extra: &str) -> PathBuf {
    let admin = admin.map_or(String::new(), |p| format!("127.0.0.1:{p}"));
    let text = format!(
        r#"
[api]
base_url = "http://{addr}/api/v0"
email = "demo@example.com"
token = "demo-token"
corp = "demo"
sites = {sites}
requests_per_minute = 60000
burst = 1000
max_attempts = 1

[spool]
path = "{db}"

[admin]
listen = "{admin}"

[[sinks]]
type = "stdout"
{extra}
"#,
        db = dir.join("state.db").display(),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn get_text(url: &str) -> Option<(u16, String)> {
    let resp = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().await.ok()?))
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

/// Polls `url` until `pred` holds on its body (at most `limit`); returns the last body.
async fn poll_until(
    url: &str,
    limit: Duration,
    pred: impl Fn(u16, &str) -> bool,
) -> (bool, String) {
    let deadline = std::time::Instant::now() + limit;
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        if let Some((code, body)) = get_text(url).await {
            if pred(code, &body) {
                return (true, body);
            }
            last = body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (false, last)
}

const STUCK_SITES: [(&str, &str); 5] = [
    (
        "num",
        "data[1] (record 2 of 3): id is a number, not a string",
    ),
    ("noid", "data[1] (record 2 of 3): record has no id"),
    (
        "notobj",
        "data[1] (record 2 of 3): record is not an object (it is an array)",
    ),
    ("utf8", "data[1] (record 2 of 3): invalid UTF-8 at byte "),
    (
        "html",
        "the reply is not JSON (starts with `<html><body>Down`)",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_never_parses_is_an_error_in_readyz_status_and_metrics_and_nothing_is_skipped()
{
    let (addr, _) = hostile(
        &["good", "num", "noid", "notobj", "utf8", "html"],
        Duration::ZERO,
        |site, q| poisoned(site, from_of(q)),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(
        dir.path(),
        addr,
        r#"["good", "num", "noid", "notobj", "utf8", "html"]"#,
        Some(port),
        "[poll]\nstart_at = \"-10m\"\ninterval_secs = 1\n",
    );
    let cfg = cfg.to_str().unwrap().to_string();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let running = spawn(&["run", "-c", &cfg], lines.clone());
    let base = format!("http://127.0.0.1:{port}");

    let (stuck, readyz) = poll_until(
        &format!("{base}/readyz"),
        Duration::from_secs(90),
        |code, body| {
            code == 503
                && STUCK_SITES
                    .iter()
                    .all(|(site, _)| body.contains(&format!("feed:{site}: ")))
        },
    )
    .await;
    assert!(
        stuck,
        "every poisoned site shows in /readyz; last:\n{readyz}"
    );
    for (site, what) in STUCK_SITES {
        let line = readyz
            .lines()
            .find(|l| l.starts_with(&format!("feed:{site}: ")))
            .unwrap();
        assert!(line.contains(what), "{site}: {line}");
        assert!(line.contains("failed 5 times in a row"), "{site}: {line}");
    }
    assert!(!readyz.contains("feed:good"), "{readyz}");

    let (_, metrics) = get_text(&format!("{base}/metrics")).await.unwrap();
    for (site, _) in STUCK_SITES {
        assert_eq!(
            metric(&metrics, "sigsci_export_site_stuck", &[("site", site)]),
            Some(1.0),
            "{site}"
        );
        assert_eq!(
            metric(&metrics, "sigsci_export_site_failing", &[("site", site)]),
            Some(1.0),
            "{site}"
        );
    }

    // `status` lists the stuck sites, though none has a cursor yet, as failing, naming the
    // record and what is wrong.
    let out = run(
        &["status", "-c", &cfg, "--json"],
        &[],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    for (site, what) in STUCK_SITES {
        let s = report["sites"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["site"] == site)
            .unwrap_or_else(|| panic!("{site} missing from status: {report:#}"));
        assert!(s["cursor"].is_null(), "{s:#}");
        assert_eq!(s["failing"], true, "{s:#}");
        let error = s["last_error"]["error"].as_str().unwrap();
        assert!(error.starts_with("stuck: "), "{error}");
        assert!(error.contains(what), "{error}");
    }
    let out = run(&["status", "-c", &cfg], &[], Duration::from_secs(30)).await;
    assert!(
        out.stdout.contains("demo/num  no cursor yet"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("FAILING"), "{}", out.stdout);

    // The good site flows; not one record of a poisoned page was exported.
    assert!(
        wait_until(Duration::from_secs(30), || {
            events(&lines.lock().unwrap())
                .iter()
                .any(|(s, _)| s == "good")
        })
        .await
    );
    let (_, stderr) = running.terminate(Duration::from_secs(30)).await;
    let exported = events(&lines.lock().unwrap());
    assert!(exported.iter().all(|(s, _)| s == "good"), "{exported:?}");
    assert!(
        stderr.contains("Site stuck on a feed page that cannot be read"),
        "{stderr}"
    );
    assert!(stderr.contains("\"level\":\"ERROR\""), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_skip_bad_records_a_bad_record_is_a_dead_letter_and_the_rest_of_its_page_flows() {
    let (addr, _) = hostile(
        &["num", "utf8", "html"],
        Duration::ZERO,
        poisoned_first_window(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(
        dir.path(),
        addr,
        r#"["num", "utf8", "html"]"#,
        Some(port),
        "[poll]\nstart_at = \"-10m\"\ninterval_secs = 1\nskip_bad_records = true\n",
    );
    let cfg = cfg.to_str().unwrap().to_string();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let running = spawn(&["run", "-c", &cfg], lines.clone());
    let base = format!("http://127.0.0.1:{port}");

    // Records 0 and 2 of the first window's page of both sites come out.
    assert!(
        wait_until(Duration::from_secs(90), || {
            let ev = events(&lines.lock().unwrap());
            ["num", "utf8"]
                .iter()
                .all(|site| ev.iter().filter(|(s, _)| s == site).count() >= 2)
        })
        .await,
        "{:?}",
        lines.lock().unwrap()
    );
    let exported = events(&lines.lock().unwrap());
    assert!(
        exported
            .iter()
            .all(|(s, id)| s != "html" && !(id.starts_with(&format!("{s}-")) && id.ends_with("-1"))),
        "no bad record and nothing of the HTML site: {exported:?}"
    );
    // The page that is not JSON is never skipped: still stuck. The others recovered.
    let (ok, readyz) = poll_until(
        &format!("{base}/readyz"),
        Duration::from_secs(30),
        |_, body| {
            body.contains("feed:html: ")
                && !body.contains("feed:num")
                && !body.contains("feed:utf8")
        },
    )
    .await;
    assert!(ok, "{readyz}");
    let (_, metrics) = get_text(&format!("{base}/metrics")).await.unwrap();
    for site in ["num", "utf8"] {
        assert!(
            metric(
                &metrics,
                "sigsci_export_feed_dead_letters_total",
                &[("site", site)]
            )
            .unwrap_or(0.0)
                >= 1.0,
            "{site}: {metrics}"
        );
    }

    // Each bad record is kept with its text, its position and what is wrong.
    let out = run(
        &["dead-letters", "-c", &cfg, "list", "--json"],
        &[],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let letters: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let num = letters
        .iter()
        .find(|l| l["site"] == "num")
        .expect("num's letter");
    assert_eq!(num["sink"], "feed:bad-records");
    assert_eq!(num["event"]["id"], 5);
    let reason = num["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("data[1] (record 2 of 3): id is a number, not a string"),
        "{reason}"
    );
    let utf8 = letters
        .iter()
        .find(|l| l["site"] == "utf8")
        .expect("utf8's letter");
    let why = utf8["reason"].as_str().unwrap();
    assert!(
        why.starts_with("data[1] (record 2 of 3): invalid UTF-8 at byte "),
        "{why}"
    );
    assert!(why.contains(" of the record"), "{why}");
    assert!(
        utf8["event"]["path"].as_str().unwrap().ends_with("/caf?"),
        "{utf8:#}"
    );
    // Letters of a window refetched are not kept twice.
    let n = letters.iter().filter(|l| l["site"] == "num").count();
    let windows: std::collections::BTreeSet<&str> = letters
        .iter()
        .filter(|l| l["site"] == "num")
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    assert_eq!(n, windows.len(), "{letters:#?}");

    let out = run(
        &["status", "-c", &cfg, "--json"],
        &[],
        Duration::from_secs(30),
    )
    .await;
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let num = report["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site"] == "num")
        .unwrap();
    assert!(num["feed_dead_letters"].as_i64().unwrap() >= 1, "{num:#}");
    let (code, _) = running.terminate(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_stuck_on_a_bad_record_exits_1_naming_it() {
    let (addr, _) = hostile(&["num"], Duration::ZERO, |site, q| {
        poisoned(site, from_of(q))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), addr, r#"["num"]"#, None, "");
    let out = run(
        &[
            "backfill",
            "-c",
            cfg.to_str().unwrap(),
            "--from",
            "-20m",
            "--until",
            "-10m",
        ],
        &[],
        Duration::from_secs(180),
    )
    .await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("data[1] (record 2 of 3): id is a number, not a string"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("poll.skip_bad_records = true"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.is_empty(),
        "nothing of the page exported: {}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_duplicates_and_records_outside_the_window_are_counted_and_warned_once_per_window()
{
    // The first window of `www`: two pages, an id repeated with other content on each, and a
    // record timestamped before the window. Later windows are clean.
    let first = Arc::new(Mutex::new(None::<i64>));
    let (addr, _) = hostile(&["www"], Duration::ZERO, move |_, q| {
        let from = from_of(q);
        let is_first = *first.lock().unwrap().get_or_insert(from) == from;
        let rec = |id: &str, ts: i64, path: &str| {
            format!(r#"{{"id":"{id}","timestamp":"{}","path":"{path}"}}"#, rfc3339(ts))
        };
        if !is_first {
            return Reply::json(page_of(&[rec(&format!("w{from}"), from + 1, "/")]));
        }
        if q.contains_key("next") {
            Reply::json(page_of(&[rec("b", from + 3, "/b"), rec("b", from + 3, "/b-changed")]))
        } else {
            Reply::json(format!(
                r#"{{"next":{{"uri":"/api/v0/corps/demo/sites/www/feed/requests?next=p2-{from}"}},"data":[{},{},{},{}]}}"#,
                rec("a", from + 1, "/a"),
                rec("a", from + 1, "/a-changed"),
                rec("a", from + 1, "/a"),
                rec("early", from - 30, "/early"),
            ))
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(
        dir.path(),
        addr,
        r#"["www"]"#,
        Some(port),
        "[poll]\nstart_at = \"-10m\"\ninterval_secs = 1\nmax_window_secs = 120\n",
    );
    let cfg = cfg.to_str().unwrap().to_string();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let running = spawn(&["run", "-c", &cfg], lines.clone());
    let base = format!("http://127.0.0.1:{port}");
    let (ok, metrics) = poll_until(
        &format!("{base}/metrics"),
        Duration::from_secs(60),
        |_, m| {
            // Past the first window: the second one's page was committed too.
            metric(m, "sigsci_export_pages_total", &[("site", "www")]).unwrap_or(0.0) >= 3.0
        },
    )
    .await;
    assert!(ok, "{metrics}");
    let count = |kind| {
        metric(
            &metrics,
            "sigsci_export_feed_anomalies_total",
            &[("site", "www"), ("kind", kind)],
        )
    };
    assert_eq!(count("changed_duplicate"), Some(2.0), "{metrics}");
    assert_eq!(count("outside_window"), Some(1.0), "{metrics}");
    let (_, stderr) = running.terminate(Duration::from_secs(30)).await;
    let warns: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("The feed sent odd records in this window"))
        .collect();
    assert_eq!(
        warns.len(),
        1,
        "one WARN for the window, not one per page: {warns:#?}"
    );
    assert!(warns[0].contains("\"level\":\"WARN\""), "{}", warns[0]);
    assert!(
        warns[0].contains("\"changed_duplicates\":2"),
        "{}",
        warns[0]
    );
    assert!(warns[0].contains("\"outside_window\":1"), "{}", warns[0]);
    // Nothing dropped for it: the first copy of each id, and the early record, are exported.
    let exported = events(&lines.lock().unwrap());
    for id in ["a", "b", "early"] {
        assert_eq!(
            exported.iter().filter(|(_, i)| i == id).count(),
            1,
            "{id}: {exported:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_in_memory_are_bounded_across_all_sites_and_windows() {
    // 30 sites found with ["*"], two windows each at once (poll.backfill_windows), two pages
    // per window: without a shared bound, 60 pages would be asked for at once.
    let names: Vec<String> = (0..30).map(|i| format!("s{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (addr, stats) = hostile(&refs, Duration::from_millis(100), |site, q| {
        let from = from_of(q);
        let rec = |i: u32| good(&format!("{site}-{from}-{i}"), from);
        if q.contains_key("next") {
            Reply::json(page_of(&[rec(2), rec(3)]))
        } else {
            Reply::json(format!(
                r#"{{"next":{{"uri":"/api/v0/corps/demo/sites/{site}/feed/requests?next=p2-{from}"}},"data":[{},{}]}}"#,
                rec(0),
                rec(1)
            ))
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        addr,
        r#"["*"]"#,
        None,
        "[poll]\nmax_window_secs = 600\nbackfill_windows = 2\n",
    );
    let out = run(
        &[
            "backfill",
            "-c",
            cfg.to_str().unwrap(),
            "--from",
            "-40m",
            "--until",
            "-20m",
        ],
        &[],
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    // 30 sites x 2 windows x 2 pages x 2 records.
    let exported = events(&out.stdout.lines().map(str::to_string).collect::<Vec<_>>());
    assert_eq!(exported.len(), 30 * 2 * 4, "every record, once");
    assert_eq!(
        counts(&exported).len(),
        exported.len(),
        "every record, once"
    );
    // A window asks for one page at a time (it holds at most two: one committing).
    let max = stats.max_in_flight.load(Ordering::SeqCst);
    assert!(
        (2..=sigsci_export::scheduler::page_budget::WINDOWS_IN_FLIGHT).contains(&max),
        "{max} feed pages asked for at once"
    );
}
