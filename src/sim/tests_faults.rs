//! Fault, rate-limit, determinism and clock tests.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use super::tests::{TOKEN, USER, feed_url, fetch_all, first_next_uri, get, json, start, window};
use super::*;

/// A valid first-page URL over a small window (cheap to serve).
fn page_url(sim: &Simulator) -> String {
    let (from, until) = window(sim, 2);
    feed_url(sim, "www", &format!("from={from}&until={until}"))
}

async fn send(url: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .header("x-api-user", USER)
        .header("x-api-token", TOKEN)
        .send()
        .await
        .expect("sent")
}

#[tokio::test]
async fn scripted_429_with_and_without_retry_after() {
    let sim = start(SimConfig::default()).await;
    sim.script([
        Fault::TooManyRequests {
            retry_after_secs: Some(7),
        },
        Fault::TooManyRequests {
            retry_after_secs: None,
        },
    ]);
    let url = page_url(&sim);
    let r = send(&url).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "7");
    assert_eq!(
        r.json::<Value>().await.expect("json")["message"],
        "Too Many Requests"
    );
    let r = send(&url).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get("retry-after").is_none());
    // The queue is drained: the next request is served.
    assert_eq!(send(&url).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn scripted_json_errors_have_their_status_and_message() {
    let cases = [
        (
            Fault::RateLimit400,
            StatusCode::BAD_REQUEST,
            "Rate limit exceeded",
        ),
        (
            Fault::ServerError,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
        ),
    ];
    for (fault, want_status, want_message) in cases {
        let sim = start(SimConfig::default()).await;
        sim.script([fault.clone()]);
        let (status, body) = get(&page_url(&sim)).await;
        assert_eq!(status, want_status, "{fault:?}");
        assert_eq!(json(&body)["message"], want_message, "{fault:?}");
    }
}

#[tokio::test]
async fn scripted_524_is_html() {
    let sim = start(SimConfig::default()).await;
    sim.script([Fault::Html524]);
    let r = send(&page_url(&sim)).await;
    assert_eq!(r.status().as_u16(), 524);
    let ct = r.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(ct.starts_with("text/html"), "{ct}");
    let body = r.text().await.expect("body");
    assert!(body.contains("524") && serde_json::from_str::<Value>(&body).is_err());
}

#[tokio::test]
async fn scripted_truncated_body_does_not_parse() {
    let sim = start(SimConfig::default()).await;
    sim.script([Fault::Truncated]);
    let url = page_url(&sim);
    let (status, body) = get(&url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("{\"next\""), "{body}");
    assert!(serde_json::from_str::<Value>(&body).is_err());
    let (_, full) = get(&url).await;
    assert!(body.len() < full.len() && full.starts_with(&body));
}

#[tokio::test]
async fn scripted_delay_then_normal_page() {
    let sim = start(SimConfig::default()).await;
    sim.script([Fault::Delay(Duration::from_millis(300))]);
    let started = Instant::now();
    let (status, _) = get(&page_url(&sim)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn scripted_401_403_and_redirect() {
    let sim = start(SimConfig::default()).await;
    sim.script([
        Fault::Unauthorized,
        Fault::Forbidden,
        Fault::RedirectToLogin,
    ]);
    let url = page_url(&sim);
    assert_eq!(get(&url).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get(&url).await.0, StatusCode::FORBIDDEN);
    // reqwest follows the redirect and lands on an HTML login page with 200.
    let r = send(&url).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.url().path(), "/login");
    assert!(r.text().await.expect("body").contains("<form"));
}

#[tokio::test]
async fn faults_hit_only_feed_requests() {
    let sim = start(SimConfig::default()).await;
    sim.script([Fault::ServerError]);
    let (status, _) = get(&format!("{}/corps/demo/sites", sim.base_url())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        get(&page_url(&sim)).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

#[tokio::test]
async fn random_faults_come_at_roughly_the_configured_rate() {
    let sim = start(SimConfig {
        rate_per_min: 2,
        faults: FaultConfig::parse("500=0.2,429=0.1,retry_after=2").expect("spec"),
        ..SimConfig::default()
    })
    .await;
    let url = page_url(&sim);
    let (mut e500, mut e429, mut ok) = (0, 0, 0);
    for _ in 0..300 {
        let r = send(&url).await;
        match r.status().as_u16() {
            500 => e500 += 1,
            429 => {
                assert_eq!(r.headers()["retry-after"], "2");
                e429 += 1;
            }
            200 => ok += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!((30..=95).contains(&e500), "500s: {e500}");
    assert!((10..=55).contains(&e429), "429s: {e429}");
    assert_eq!(e500 + e429 + ok, 300);
    // Turned off at run time: no more faults.
    sim.set_faults(FaultConfig::default());
    for _ in 0..20 {
        assert_eq!(send(&url).await.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn latency_applies_to_every_feed_request() {
    let sim = start(SimConfig::default()).await;
    sim.set_faults(FaultConfig {
        latency_ms: 150,
        ..FaultConfig::default()
    });
    let started = Instant::now();
    assert_eq!(get(&page_url(&sim)).await.0, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let sim = start(SimConfig {
        rate_limit_per_min: Some(3),
        ..SimConfig::default()
    })
    .await;
    let url = page_url(&sim);
    assert_eq!(get(&url).await.0, StatusCode::OK);
    assert_eq!(get(&url).await.0, StatusCode::OK);
    // The sites list shares the quota.
    assert_eq!(
        get(&format!("{}/corps/demo/sites", sim.base_url())).await.0,
        StatusCode::OK
    );
    let r = send(&url).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&secs), "{secs}");
    assert_eq!(
        r.json::<Value>().await.expect("json")["message"],
        "Too Many Requests"
    );
}

#[tokio::test]
async fn same_seed_same_ids_different_seed_different_ids() {
    let a = start(SimConfig::default()).await;
    let b = start(SimConfig::default()).await;
    let c = start(SimConfig {
        seed: 2,
        ..SimConfig::default()
    })
    .await;
    let (from, until) = window(&a, 5);
    let q = format!("from={from}&until={until}&limit=50");
    let ia = fetch_all(&a, &feed_url(&a, "www", &q)).await;
    let ib = fetch_all(&b, &feed_url(&b, "www", &q)).await;
    let ic = fetch_all(&c, &feed_url(&c, "www", &q)).await;
    assert_eq!(ia, ib);
    assert_ne!(ia.concat(), ic.concat());
    assert_eq!(
        a.ground_truth("www", from, until),
        b.ground_truth("www", from, until)
    );
    assert_ne!(
        a.ground_truth("www", from, until),
        c.ground_truth("www", from, until)
    );
    // Sites never share ids.
    let www: std::collections::HashSet<_> =
        a.ground_truth("www", from, until).into_iter().collect();
    assert!(
        a.ground_truth("api", from, until)
            .iter()
            .all(|id| !www.contains(id))
    );
}

#[tokio::test]
async fn clock_offset_moves_now_and_validation() {
    let sim = start(SimConfig::default()).await;
    let real = sim.now();
    let (from, until) = window(&sim, 5);
    let url = feed_url(&sim, "www", &format!("from={from}&until={until}"));
    assert_eq!(get(&url).await.0, StatusCode::OK);
    // An hour back, the same window lies in the future.
    sim.set_clock_offset(-3600);
    assert!((sim.now() - (real - 3600)).abs() <= 2);
    let (status, body) = get(&url).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        json(&body)["message"]
            .as_str()
            .expect("msg")
            .contains("'until'")
    );
    // Two days on, it is past retention.
    sim.set_clock_offset(2 * 86_400);
    let (status, body) = get(&url).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        json(&body)["message"]
            .as_str()
            .expect("msg")
            .contains("'from'")
    );
    // Ground truth does not care about the clock.
    assert!(!sim.ground_truth("www", from, until).is_empty());
}

#[tokio::test]
async fn clock_jump_expires_next_tokens() {
    let sim = start(SimConfig::default()).await;
    let (from, until) = window(&sim, 5);
    let uri = first_next_uri(&sim, "www", from, until, 5).await;
    sim.set_clock_offset(61);
    let (status, body) = get(&format!("http://{}{uri}", sim.addr())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        json(&body)["message"]
            .as_str()
            .expect("msg")
            .contains("expired")
    );
}

#[tokio::test]
async fn request_log_and_shutdown() {
    let sim = start(SimConfig::default()).await;
    let url = page_url(&sim);
    assert_eq!(get(&url).await.0, StatusCode::OK);
    let _ = reqwest::get(&url).await.expect("sent");
    let log = sim.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].method.as_str(), log[0].status, log[0].used_next),
        ("GET", 200, false)
    );
    assert_eq!(log[1].status, 401);
    assert!(log[0].path.ends_with("/feed/requests") && log[0].query_len > 0);
    assert!(log[0].at <= log[1].at);
    let addr = sim.addr();
    sim.shutdown().await;
    assert!(
        reqwest::get(format!("http://{addr}/api/v0/corps/demo/sites"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn serve_runs_until_shutdown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(SimConfig::default(), listener, async {
        let _ = rx.await;
    }));
    let (status, _) = get(&format!("http://{addr}/api/v0/corps/demo/sites")).await;
    assert_eq!(status, StatusCode::OK);
    let _ = tx.send(());
    let done = tokio::time::timeout(Duration::from_secs(5), task).await;
    assert!(matches!(done, Ok(Ok(Ok(())))));
}
