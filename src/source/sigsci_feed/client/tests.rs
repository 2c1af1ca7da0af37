//! Client tests against the built-in simulator on 127.0.0.1:0: one test per error class, the
//! retry paths, 414 → POST, and in-window de-duplication.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

use super::*;
use crate::config::{ApiConfig, AuthMode, Credentials, Sites};
use crate::secret::Secret;
use crate::sim::{Fault, SimConfig, Simulator};

async fn sim(cfg: SimConfig) -> Simulator {
    Simulator::start(cfg, ([127, 0, 0, 1], 0).into())
        .await
        .unwrap()
}

fn api(sim: &Simulator) -> ApiConfig {
    ApiConfig {
        base_url: Url::parse(&sim.base_url()).unwrap(),
        auth: Credentials {
            mode: AuthMode::Token,
            email: "demo@example.com".into(),
            token: Secret::new("demo-token"),
        },
        corp: "demo".into(),
        sites: Sites::List(vec!["www".into()]),
        requests_per_minute: NonZeroU32::new(6000).unwrap(),
        burst: NonZeroU32::new(100).unwrap(),
        ca_file: None,
        timeout: Duration::from_secs(10),
        retention_secs: 86_700,
        page_limit: 1000,
        max_attempts: 4,
    }
}

fn client(api: &ApiConfig) -> FeedClient {
    FeedClient::with_retry_delays(api, Duration::from_millis(5), Duration::from_millis(20)).unwrap()
}

/// A one-hour window that the simulator accepts now.
fn window(sim: &Simulator) -> (i64, i64) {
    let until = crate::time::align_down(sim.now() - 600);
    (until - 3600, until)
}

/// Every record of a window, repeats included.
async fn fetch_every(
    c: &FeedClient,
    site: &str,
    from: i64,
    until: i64,
) -> Result<Vec<NewEvent>, FeedError> {
    let mut w = c.window(site, from, until);
    let mut all = Vec::new();
    while let Some((events, _last)) = w.next_page().await? {
        all.extend(events);
    }
    Ok(all)
}

/// The window's events as the spool keeps them: the first of each id.
async fn fetch_all(
    c: &FeedClient,
    site: &str,
    from: i64,
    until: i64,
) -> Result<Vec<NewEvent>, FeedError> {
    let mut seen = std::collections::HashSet::new();
    let mut all = fetch_every(c, site, from, until).await?;
    all.retain(|e| seen.insert(e.id.clone()));
    Ok(all)
}

#[tokio::test]
async fn fetches_every_record_of_a_window() {
    let s = sim(SimConfig {
        duplicate_ratio: 0.05,
        ..SimConfig::default()
    })
    .await;
    let mut a = api(&s);
    a.page_limit = 100; // many pages, so duplicates straddle pages
    let c = client(&a);
    let (from, until) = window(&s);
    let events = fetch_every(&c, "www", from, until).await.unwrap();
    let mut ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    // Every record the API served comes through, repeats included (the spool drops those).
    assert!(ids.len() < n, "the simulator repeated ids across pages");
    assert_eq!(ids, s.ground_truth("www", from, until));
    let served: usize = s.requests().len();
    assert!(served > 1);
    // Unknown fields and the exact JSON pass through.
    assert!(
        events
            .iter()
            .all(|e| e.body.starts_with('{') && e.body.contains("\"id\""))
    );
    assert!(events.iter().all(|e| e.ts >= from && e.ts < until));
}

#[tokio::test]
async fn basic_credentials_work() {
    let s = sim(SimConfig::default()).await;
    let mut a = api(&s);
    a.auth.mode = AuthMode::Basic;
    let (from, until) = window(&s);
    let events = fetch_all(&client(&a), "www", from, until).await.unwrap();
    assert_eq!(events.len(), s.ground_truth("www", from, until).len());
}

#[tokio::test]
async fn wrong_token_is_an_auth_error_naming_the_user_not_the_token() {
    let s = sim(SimConfig::default()).await;
    let mut a = api(&s);
    a.auth.token = Secret::new("wrong-token-xyz");
    let (from, until) = window(&s);
    let err = fetch_all(&client(&a), "www", from, until)
        .await
        .unwrap_err();
    assert!(matches!(err, FeedError::Auth { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("demo@example.com") && msg.contains("401"),
        "{msg}"
    );
    assert!(!msg.contains("wrong-token-xyz"), "{msg}");
    // Auth errors are not retried.
    assert_eq!(s.requests().len(), 1);
}

#[tokio::test]
async fn forbidden_is_an_auth_error() {
    let s = sim(SimConfig::default()).await;
    s.script([Fault::Forbidden]);
    let (from, until) = window(&s);
    let err = fetch_all(&client(&api(&s)), "www", from, until)
        .await
        .unwrap_err();
    assert!(matches!(err, FeedError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("403"));
}

#[tokio::test]
async fn unknown_site_is_not_found_and_hints_at_display_names() {
    let s = sim(SimConfig::default()).await;
    let (from, until) = window(&s);
    let err = fetch_all(&client(&api(&s)), "nosuchsite", from, until)
        .await
        .unwrap_err();
    assert!(matches!(err, FeedError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("display name"), "{err}");
}

#[tokio::test]
async fn refused_windows_are_bad_window_errors() {
    let s = sim(SimConfig::default()).await;
    let c = client(&api(&s));
    let now = s.now();
    // until too recent
    let until = crate::time::align_down(now);
    let err = fetch_all(&c, "www", until - 600, until).await.unwrap_err();
    assert!(matches!(err, FeedError::BadWindow { .. }), "{err:?}");
    // from too old
    let from = crate::time::align_down(now - 90_000);
    let err = fetch_all(&c, "www", from, from + 600).await.unwrap_err();
    assert!(matches!(err, FeedError::BadWindow { .. }), "{err:?}");
    // not on a minute
    let (from, until) = window(&s);
    let err = fetch_all(&c, "www", from + 1, until).await.unwrap_err();
    assert!(matches!(err, FeedError::BadWindow { .. }), "{err:?}");
}

#[tokio::test]
async fn rate_limits_and_transient_errors_are_retried() {
    let s = sim(SimConfig::default()).await;
    s.script([
        Fault::TooManyRequests {
            retry_after_secs: None,
        },
        Fault::RateLimit400,
        Fault::ServerError,
        Fault::Html524,
        Fault::Truncated,
    ]);
    let mut a = api(&s);
    a.max_attempts = 6;
    let (from, until) = window(&s);
    let events = fetch_all(&client(&a), "www", from, until).await;
    let statuses: Vec<u16> = s.requests().iter().map(|r| r.status).collect();
    let events = events.unwrap_or_else(|e| panic!("{e}: {statuses:?}"));
    assert_eq!(events.len(), s.ground_truth("www", from, until).len());
}

#[tokio::test]
async fn each_retryable_class_is_classified() {
    let cases = [
        (
            Fault::TooManyRequests {
                retry_after_secs: Some(0),
            },
            "rate_limited",
        ),
        (Fault::RateLimit400, "rate_limited"),
        (Fault::ServerError, "transient"),
        (Fault::Html524, "transient"),
        (Fault::Truncated, "transient"),
    ];
    for (fault, kind) in cases {
        let s = sim(SimConfig::default()).await;
        let mut a = api(&s);
        a.max_attempts = 1;
        s.script([fault.clone()]);
        let (from, until) = window(&s);
        let err = fetch_all(&client(&a), "www", from, until)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{fault:?}: {err}");
        assert!(err.is_retryable());
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let s = sim(SimConfig::default()).await;
    s.script([Fault::TooManyRequests {
        retry_after_secs: Some(1),
    }]);
    let (from, until) = window(&s);
    let started = Instant::now();
    fetch_all(&client(&api(&s)), "www", from, until)
        .await
        .unwrap();
    let reqs = s.requests();
    assert_eq!(reqs[0].status, 429);
    // Our own backoff is at most 20 ms here: only Retry-After explains a full second.
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(
        gap >= Duration::from_millis(950),
        "second request after {gap:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn long_next_tokens_switch_to_the_post_form() {
    let s = sim(SimConfig {
        next_token_len: 9000,
        ..SimConfig::default()
    })
    .await;
    let mut a = api(&s);
    a.page_limit = 200;
    let (from, until) = window(&s);
    let events = fetch_all(&client(&a), "www", from, until).await.unwrap();
    let mut ids: Vec<String> = events.into_iter().map(|e| e.id).collect();
    ids.sort();
    assert_eq!(ids, s.ground_truth("www", from, until));
    let reqs = s.requests();
    assert!(
        reqs.iter().any(|r| r.status == 414 && r.method == "GET"),
        "a GET got 414"
    );
    assert!(
        reqs.iter()
            .any(|r| r.method == "POST" && r.status == 200 && r.used_next)
    );
    // After the first 414 the client goes straight to POST.
    assert_eq!(reqs.iter().filter(|r| r.status == 414).count(), 1);
}

#[tokio::test]
async fn expired_next_token_is_reported_for_a_refetch() {
    let s = sim(SimConfig {
        next_ttl_secs: 1,
        ..SimConfig::default()
    })
    .await;
    let mut a = api(&s);
    a.page_limit = 10;
    let c = client(&a);
    let (from, until) = window(&s);
    let mut w = c.window("www", from, until);
    w.next_page().await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let err = w.next_page().await.unwrap_err();
    assert!(matches!(err, FeedError::NextExpired { .. }), "{err:?}");
}

#[tokio::test]
async fn lists_sites() {
    let s = sim(SimConfig::default()).await;
    let sites = client(&api(&s)).list_sites().await.unwrap();
    let names: Vec<_> = sites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["www", "api"]);
}

#[tokio::test]
async fn unreachable_api_is_transient() {
    let s = sim(SimConfig::default()).await;
    let mut a = api(&s);
    s.shutdown().await;
    a.max_attempts = 2;
    let err = client(&a).list_sites().await.unwrap_err();
    assert_eq!(err.kind(), "transient", "{err}");
}

#[test]
fn parses_pages_and_keeps_raw_json() {
    let body = br#"{"next":{"uri":""},"data":[{"id":"a1","timestamp":"2026-11-24T01:02:03Z","futureField":[1,{"x":null}]}]}"#;
    let page = parse_page(body, 0).unwrap();
    assert_eq!(page.next, None);
    assert_eq!(page.events[0].id, "a1");
    assert_eq!(page.events[0].ts, 1_795_482_123);
    assert_eq!(
        page.events[0].body,
        r#"{"id":"a1","timestamp":"2026-11-24T01:02:03Z","futureField":[1,{"x":null}]}"#
    );
    // Missing next = last page; bad timestamp falls back to the window start.
    let page = parse_page(br#"{"data":[{"id":"b","timestamp":"garbage"}]}"#, 42).unwrap();
    assert_eq!((page.next, page.events[0].ts), (None, 42));
    assert!(parse_page(br#"{"data":[{"timestamp":"x"}]}"#, 0).is_err());
    assert!(parse_page(br#"{"next":{"uri":""},"da"#, 0).is_err());
    assert!(parse_page(b"<html>524</html>", 0).is_err());
    // Found by the feed_page fuzz target: JSON allows numbers beyond an f64, which
    // `serde_json::Value` refuses. The record is kept byte for byte like any other.
    let record = r#"{"timestamp":"2026-11-24T01:02:03Z","id":"x","n":1.2e0222222222222225}"#;
    let page = parse_page(format!(r#"{{"data":[{record}]}}"#), 0).unwrap();
    assert_eq!(
        (page.events[0].id.as_str(), &*page.events[0].body),
        ("x", record)
    );
}

#[test]
fn retry_after_parses_seconds_and_dates() {
    let mut h = HeaderMap::new();
    h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
    assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(7)));
    h.insert(
        RETRY_AFTER,
        HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
    );
    assert_eq!(parse_retry_after(&h), Some(Duration::ZERO));
    h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
    assert_eq!(parse_retry_after(&h), None);
}

#[tokio::test]
async fn extra_ca_file_is_loaded_and_garbage_is_a_setup_error() {
    let s = sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pem");
    std::fs::write(
        &bad,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let mut a = api(&s);
    a.ca_file = Some(bad);
    let err = FeedClient::new(&a).unwrap_err();
    assert!(matches!(err, FeedError::Setup { .. }), "{err:?}");
    assert!(err.to_string().contains("bad.pem"), "{err}");
    a.ca_file = Some(dir.path().join("missing.pem"));
    assert!(matches!(
        FeedClient::new(&a).unwrap_err(),
        FeedError::Setup { .. }
    ));
    // A real bundle (Debian's, where present) is accepted next to the built-in roots.
    let system = std::path::Path::new("/etc/ssl/certs/ca-certificates.crt");
    if system.is_file() {
        a.ca_file = Some(system.to_path_buf());
        FeedClient::new(&a).unwrap();
    }
}

#[tokio::test]
async fn redirects_are_reported_not_followed() {
    let s = sim(SimConfig::default()).await;
    s.script([Fault::RedirectToLogin]);
    let mut a = api(&s);
    a.max_attempts = 3; // a retry would get the simulator's page
    let (from, until) = window(&s);
    let err = fetch_all(&client(&a), "www", from, until)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("redirect"), "{err}");
    assert!(err.to_string().contains("base_url"), "{err}");
    // Retrying gets the same redirect: an operator must fix the URL.
    assert!(err.needs_operator() && !err.is_retryable(), "{err:?}");
    assert_eq!(s.requests().len(), 1);
}

#[tokio::test]
async fn tags_are_sent_on_the_first_page_and_carried_by_next() {
    let s = sim(SimConfig::default()).await;
    let mut a = api(&s);
    a.page_limit = 5; // several pages: the filter must survive `next`
    let c = client(&a);
    let (from, until) = window(&s);
    let mut w = c
        .window("www", from, until)
        .with_tags(Some("SQLI,XSS".into()));
    let mut ids = Vec::new();
    let mut pages = 0;
    while let Some((events, _)) = w.next_page().await.unwrap() {
        pages += 1;
        ids.extend(events.into_iter().map(|e| e.id));
    }
    ids.sort();
    ids.dedup(); // repeated records: the spool drops them
    let want = s.ground_truth_where("www", from, until, |t| {
        t.contains(&"SQLI") || t.contains(&"XSS")
    });
    assert!(pages > 1, "{pages} pages");
    assert!(!want.is_empty());
    assert_eq!(ids, want);
    assert!(ids.len() < s.ground_truth("www", from, until).len());
}
