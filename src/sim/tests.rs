//! Protocol tests: authentication, routing, validation, `next` tokens; plus the helpers the
//! other test files share. Every test talks HTTP to a real simulator on port 0, as clients will.

use reqwest::StatusCode;
use serde_json::Value;

use super::*;

pub(super) const USER: &str = "demo@example.com";
pub(super) const TOKEN: &str = "demo-token";

pub(super) async fn start(cfg: SimConfig) -> Simulator {
    Simulator::start(cfg, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("simulator starts")
}

/// A window of `minutes` ending safely inside the allowed range.
pub(super) fn window(sim: &Simulator, minutes: i64) -> (i64, i64) {
    let until = (sim.now() - 300).div_euclid(60) * 60 - 60;
    (until - minutes * 60, until)
}

pub(super) fn feed_url(sim: &Simulator, site: &str, query: &str) -> String {
    format!(
        "{}/corps/demo/sites/{site}/feed/requests?{query}",
        sim.base_url()
    )
}

/// GET with the right token headers; returns status and body text.
pub(super) async fn get(url: &str) -> (StatusCode, String) {
    let resp = reqwest::Client::new()
        .get(url)
        .header("x-api-user", USER)
        .header("x-api-token", TOKEN)
        .send()
        .await
        .expect("request sent");
    let status = resp.status();
    (status, resp.text().await.expect("body"))
}

pub(super) fn json(body: &str) -> Value {
    serde_json::from_str(body).expect("JSON body")
}

/// Follow a feed from `first` to the end; returns the pages' ids.
/// GETs the window `[from, until)` of `site`; `extra` is appended to the query (`&limit=5`).
pub(super) async fn get_window(
    sim: &Simulator,
    site: &str,
    from: i64,
    until: i64,
    extra: &str,
) -> (StatusCode, String) {
    get(&feed_url(
        sim,
        site,
        &format!("from={from}&until={until}{extra}"),
    ))
    .await
}

/// The `next.uri` of the first page of `site`'s window `[from, until)` with page size `limit`.
pub(super) async fn first_next_uri(
    sim: &Simulator,
    site: &str,
    from: i64,
    until: i64,
    limit: u32,
) -> String {
    let (_, body) = get_window(sim, site, from, until, &format!("&limit={limit}")).await;
    json(&body)["next"]["uri"]
        .as_str()
        .expect("next.uri")
        .to_string()
}

pub(super) async fn fetch_all(sim: &Simulator, first: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut url = first.to_string();
    loop {
        let (status, body) = get(&url).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let v = json(&body);
        let ids = v["data"]
            .as_array()
            .expect("data array")
            .iter()
            .map(|e| e["id"].as_str().expect("id").to_string())
            .collect();
        pages.push(ids);
        let next = v["next"]["uri"].as_str().expect("next.uri");
        if next.is_empty() {
            return pages;
        }
        url = format!("http://{}{next}", sim.addr());
    }
}

async fn assert_400(sim: &Simulator, query: &str, needle: &str) {
    let (status, body) = get(&feed_url(sim, "www", query)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
    let msg = json(&body)["message"]
        .as_str()
        .expect("message")
        .to_string();
    assert!(msg.contains(needle), "{query}: {msg:?} lacks {needle:?}");
}

#[tokio::test]
async fn unauthorized_without_or_with_wrong_credentials() {
    let sim = start(SimConfig::default()).await;
    let (from, until) = window(&sim, 5);
    let url = feed_url(&sim, "www", &format!("from={from}&until={until}"));
    let c = reqwest::Client::new();
    for req in [
        c.get(&url),
        c.get(&url).header("x-api-user", USER),
        c.get(&url)
            .header("x-api-user", USER)
            .header("x-api-token", "wrong"),
        c.get(&url)
            .header("x-api-user", "eve@example.com")
            .header("x-api-token", TOKEN),
        c.get(&url).basic_auth(USER, Some("wrong")),
    ] {
        let resp = req.send().await.expect("sent");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let v: Value = resp.json().await.expect("json");
        assert_eq!(
            v["message"],
            "Unauthorized: You must be logged in to call this API"
        );
    }
    // Auth comes before routing: an unknown corp without credentials is 401, not 404.
    let resp = c
        .get(format!("{}/corps/nope/sites", sim.base_url()))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn basic_auth_is_accepted() {
    let sim = start(SimConfig::default()).await;
    let (from, until) = window(&sim, 2);
    let resp = reqwest::Client::new()
        .get(feed_url(&sim, "www", &format!("from={from}&until={until}")))
        .basic_auth(USER, Some(TOKEN))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_corp_is_404() {
    let sim = start(SimConfig::default()).await;
    let (from, until) = window(&sim, 5);
    let q = format!("from={from}&until={until}");
    let url = format!("{}/corps/acme/sites/www/feed/requests?{q}", sim.base_url());
    let (status, body) = get(&url).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json(&body)["message"], "Corp not found");
    let (status, body) = get(&format!("{}/corps/acme/sites", sim.base_url())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json(&body)["message"], "Corp not found");
}

#[tokio::test]
async fn unknown_site_and_display_name_are_404() {
    let sim = start(SimConfig::default()).await;
    let (from, until) = window(&sim, 5);
    let q = format!("from={from}&until={until}");
    for site in ["shop", "WWW%20Production", "WWW"] {
        let (status, body) = get(&feed_url(&sim, site, &q)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{site}");
        assert_eq!(json(&body)["message"], "Site not found");
    }
}

#[tokio::test]
async fn sites_list_has_names_and_display_names() {
    let sim = start(SimConfig::default()).await;
    let (status, body) = get(&format!("{}/corps/demo/sites", sim.base_url())).await;
    assert_eq!(status, StatusCode::OK);
    let v = json(&body);
    let sites = v["data"].as_array().expect("data");
    let names: Vec<_> = sites.iter().map(|s| s["name"].as_str()).collect();
    assert_eq!(names, [Some("www"), Some("api")]);
    assert_eq!(sites[0]["displayName"], "WWW Production");
    for s in sites {
        assert_ne!(s["name"], s["displayName"]);
    }
}

#[tokio::test]
async fn missing_or_non_integer_times_are_400() {
    let sim = start(SimConfig::default()).await;
    let (from, until) = window(&sim, 5);
    assert_400(&sim, &format!("until={until}"), "'from' is required").await;
    assert_400(&sim, &format!("from={from}"), "'until' is required").await;
    assert_400(
        &sim,
        &format!("from=yesterday&until={until}"),
        "'from' must be an integer",
    )
    .await;
    assert_400(
        &sim,
        &format!("from={from}&until=1.5"),
        "'until' must be an integer",
    )
    .await;
}

#[tokio::test]
async fn non_minute_times_are_400() {
    let sim = start(SimConfig::default()).await;
    let (from, until) = window(&sim, 5);
    let from_msg = "'from' must be on a full minute";
    assert_400(&sim, &format!("from={}&until={until}", from + 1), from_msg).await;
    let until_msg = "'until' must be on a full minute";
    assert_400(
        &sim,
        &format!("from={from}&until={}", until - 30),
        until_msg,
    )
    .await;
}

#[tokio::test]
async fn until_too_recent_is_400() {
    let sim = start(SimConfig::default()).await;
    let until = (sim.now() - 240).div_euclid(60) * 60 + 60; // inside the last 5 minutes
    let msg = "'until' must be at least 5 minutes in the past";
    assert_400(&sim, &format!("from={}&until={until}", until - 600), msg).await;
}

#[tokio::test]
async fn from_too_old_is_400() {
    let sim = start(SimConfig::default()).await;
    let (_, until) = window(&sim, 5);
    let from = (sim.now() - 86_700).div_euclid(60) * 60 - 60;
    let msg = "'from' must be no more than 24 hours 5 minutes in the past";
    assert_400(&sim, &format!("from={from}&until={until}"), msg).await;
    // Just inside retention is fine.
    let (status, _) = get(&feed_url(
        &sim,
        "www",
        &format!("from={}&until={}&limit=1", from + 120, from + 180),
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn from_not_before_until_is_400() {
    let sim = start(SimConfig::default()).await;
    let (from, until) = window(&sim, 5);
    let msg = "'from' must be before 'until'";
    assert_400(&sim, &format!("from={until}&until={until}"), msg).await;
    assert_400(&sim, &format!("from={until}&until={from}"), msg).await;
}

#[tokio::test]
async fn limit_out_of_range_is_400() {
    let sim = start(SimConfig::default()).await;
    let (from, until) = window(&sim, 5);
    for limit in ["0", "1001", "-1", "ten"] {
        let q = format!("from={from}&until={until}&limit={limit}");
        assert_400(&sim, &q, "'limit' must be an integer between 1 and 1000").await;
    }
    let q = format!("from={from}&until={until}&limit=1000");
    assert_eq!(get(&feed_url(&sim, "www", &q)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn unknown_next_is_400() {
    let sim = start(SimConfig::default()).await;
    assert_400(&sim, "next=not-a-token", "'next' token is unknown").await;
    assert_400(&sim, "next=", "'next' token is unknown").await;
}

#[tokio::test]
async fn next_token_for_another_site_is_400() {
    let sim = start(SimConfig::default()).await;
    let (from, until) = window(&sim, 5);
    let uri = first_next_uri(&sim, "www", from, until, 1).await;
    let token = uri.split("next=").nth(1).expect("token");
    let (status, _) = get(&feed_url(&sim, "api", &format!("next={token}"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn expired_next_is_400_and_reuse_within_ttl_works() {
    let sim = start(SimConfig {
        next_ttl_secs: 1,
        ..SimConfig::default()
    })
    .await;
    let (from, until) = window(&sim, 5);
    let uri = first_next_uri(&sim, "www", from, until, 10).await;
    let url = format!("http://{}{uri}", sim.addr());
    // A token may be used more than once while valid: a client retry sees the same page.
    let (s1, b1) = get(&url).await;
    let (s2, b2) = get(&url).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(json(&b1)["data"], json(&b2)["data"]);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, body) = get(&url).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        json(&body)["message"]
            .as_str()
            .expect("msg")
            .contains("expired")
    );
}
