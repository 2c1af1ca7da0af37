//! Paging tests: ground truth, duplicates across pages, record shape, last page, 414 and the
//! POST form, the tags filter, order, and the cost of a day-long window.

use std::collections::{HashMap, HashSet};

use reqwest::StatusCode;
use serde_json::Value;

use super::tests::{TOKEN, USER, feed_url, fetch_all, get, get_window, json, start, window};
use super::*;

#[tokio::test]
async fn pagination_yields_ground_truth_with_cross_page_duplicates() {
    let sim = start(SimConfig {
        duplicate_ratio: 0.05,
        ..SimConfig::default()
    })
    .await;
    let (from, until) = window(&sim, 60);
    let first = feed_url(&sim, "www", &format!("from={from}&until={until}&limit=100"));
    let pages = fetch_all(&sim, &first).await;
    assert!(pages.len() > 30, "{} pages", pages.len());
    assert!(pages.iter().all(|p| p.len() <= 100));
    let all: Vec<&String> = pages.iter().flatten().collect();
    let unique: HashSet<&String> = all.iter().copied().collect();
    let truth = sim.ground_truth("www", from, until);
    assert_eq!(unique.len(), truth.len());
    assert!(truth.iter().all(|id| unique.contains(id)));
    assert!(all.len() > unique.len(), "the feed served no duplicates");
    // Some id must show up on two different pages.
    let mut page_of: HashMap<&String, usize> = HashMap::new();
    let mut cross_page = 0;
    for (i, page) in pages.iter().enumerate() {
        for id in page {
            if page_of.insert(id, i).is_some_and(|j| j != i) {
                cross_page += 1;
            }
        }
    }
    assert!(cross_page > 0);
}

#[tokio::test]
async fn records_have_every_field_and_stay_in_the_window() {
    let sim = start(SimConfig::default()).await;
    let (from, until) = window(&sim, 10);
    let (_, body) = get_window(&sim, "www", from, until, "").await;
    let v = json(&body);
    assert_eq!(v["next"]["uri"], "", "one page holds 10 minutes");
    let data = v["data"].as_array().expect("data");
    assert!(!data.is_empty());
    let fields = [
        "id",
        "timestamp",
        "serverHostname",
        "remoteIP",
        "remoteHostname",
        "remoteCountryCode",
        "userAgent",
        "method",
        "serverName",
        "protocol",
        "tlsProtocol",
        "tlsCipher",
        "scheme",
        "path",
        "uri",
        "responseCode",
        "responseSize",
        "responseMillis",
        "agentResponseCode",
        "headersIn",
        "headersOut",
        "tags",
        "ja3",
    ];
    let mut out_of_order = false;
    let mut last = String::new();
    for e in data {
        for f in fields {
            assert!(e.get(f).is_some(), "missing {f} in {e}");
        }
        let ts = e["timestamp"].as_str().expect("timestamp");
        let t = chrono::DateTime::parse_from_rfc3339(ts)
            .expect("RFC 3339")
            .timestamp();
        assert!((from..until).contains(&t), "{ts} outside the window");
        out_of_order |= ts < last.as_str();
        last = ts.to_string();
        assert_eq!(e["serverName"], "www.example.com");
    }
    assert!(out_of_order, "shuffle is on by default");
}

#[tokio::test]
async fn omit_last_next_drops_the_field() {
    let sim = start(SimConfig {
        omit_last_next: true,
        ..SimConfig::default()
    })
    .await;
    let (from, until) = window(&sim, 2);
    let (status, body) = get_window(&sim, "www", from, until, "").await;
    assert_eq!(status, StatusCode::OK);
    let v = json(&body);
    assert!(v.get("next").is_none(), "{v}");
    assert!(v["data"].is_array());
}

async fn post_next(sim: &Simulator, site: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!(
            "{}/corps/demo/sites/{site}/feed/requests",
            sim.base_url()
        ))
        .header("x-api-user", USER)
        .header("x-api-token", TOKEN)
        .form(&[("next", token)])
        .send()
        .await
        .expect("sent")
}

#[tokio::test]
async fn long_next_is_414_on_get_but_works_as_post_form() {
    let sim = start(SimConfig {
        next_token_len: 9000,
        ..SimConfig::default()
    })
    .await;
    let (from, until) = window(&sim, 10);
    let (_, body) = get_window(&sim, "www", from, until, "&limit=50").await;
    let first = json(&body);
    let uri = first["next"]["uri"].as_str().expect("uri").to_string();
    let token = uri.split("next=").nth(1).expect("token").to_string();
    assert_eq!(token.len(), 9000);
    let (status, body) = get(&format!("http://{}{uri}", sim.addr())).await;
    assert_eq!(status, StatusCode::URI_TOO_LONG);
    assert_eq!(json(&body)["message"], "URI Too Long");

    let resp = post_next(&sim, "www", &token).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["data"].as_array().map(Vec::len), Some(50));
    assert_ne!(v["data"][0]["id"], first["data"][0]["id"]);

    let log = sim.requests();
    let last = log.last().expect("logged");
    assert_eq!(
        (last.method.as_str(), last.status, last.used_next),
        ("POST", 200, true)
    );
    assert!(
        log.iter()
            .any(|r| r.status == 414 && r.used_next && r.uri_len > 9000)
    );
}

#[tokio::test]
async fn post_form_follows_a_whole_window() {
    let sim = start(SimConfig::default()).await;
    let (from, until) = window(&sim, 15);
    let (_, body) = get_window(&sim, "api", from, until, "&limit=200").await;
    let mut v = json(&body);
    let mut ids: HashSet<String> = HashSet::new();
    loop {
        for e in v["data"].as_array().expect("data") {
            ids.insert(e["id"].as_str().expect("id").to_string());
        }
        let uri = v["next"]["uri"].as_str().expect("uri");
        if uri.is_empty() {
            break;
        }
        let token = uri.split("next=").nth(1).expect("token").to_string();
        let resp = post_next(&sim, "api", &token).await;
        assert_eq!(resp.status(), StatusCode::OK);
        v = resp.json().await.expect("json");
    }
    let truth: HashSet<String> = sim.ground_truth("api", from, until).into_iter().collect();
    assert_eq!(ids, truth);
}

#[tokio::test]
async fn post_without_form_content_type_is_415() {
    let sim = start(SimConfig::default()).await;
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/corps/demo/sites/www/feed/requests",
            sim.base_url()
        ))
        .header("x-api-user", USER)
        .header("x-api-token", TOKEN)
        .body("next=abc")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn tags_filter_keeps_only_matching_records() {
    let sim = start(SimConfig::default()).await;
    let (from, until) = window(&sim, 30);
    let base = format!("from={from}&until={until}");
    let all = fetch_all(&sim, &feed_url(&sim, "www", &base))
        .await
        .concat();
    let (status, body) = get(&feed_url(&sim, "www", &format!("{base}&tags=SQLI,XSS"))).await;
    assert_eq!(status, StatusCode::OK);
    let v = json(&body);
    let data = v["data"].as_array().expect("data");
    assert!(!data.is_empty());
    for e in data {
        let types: Vec<&str> = e["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .filter_map(|t| t["type"].as_str())
            .collect();
        assert!(
            types.contains(&"SQLI") || types.contains(&"XSS"),
            "{types:?}"
        );
    }
    assert!(data.len() < all.len());
    // Paged with a filter, the result is the same set.
    let paged = fetch_all(
        &sim,
        &feed_url(&sim, "www", &format!("{base}&tags=SQLI,XSS&limit=7")),
    )
    .await;
    let a: HashSet<&str> = data.iter().filter_map(|e| e["id"].as_str()).collect();
    let b: HashSet<&str> = paged.iter().flatten().map(String::as_str).collect();
    assert_eq!(a, b);
    // The filtered ground truth names exactly that set.
    let truth = sim.ground_truth_where("www", from, until, |t| {
        t.contains(&"SQLI") || t.contains(&"XSS")
    });
    let truth: HashSet<&str> = truth.iter().map(String::as_str).collect();
    assert_eq!(truth, b);
    assert_eq!(
        sim.ground_truth_where("www", from, until, |_| true),
        sim.ground_truth("www", from, until)
    );
}

#[tokio::test]
async fn empty_last_page_has_empty_next_uri() {
    let sim = start(SimConfig::default()).await;
    let (from, until) = window(&sim, 3);
    let pages = fetch_all(
        &sim,
        &feed_url(
            &sim,
            "www",
            &format!("from={from}&until={until}&limit=1000"),
        ),
    )
    .await;
    assert_eq!(pages.len(), 1);
    let silent = start(SimConfig {
        rate_per_min: 0,
        ..SimConfig::default()
    })
    .await;
    let (from, until) = window(&silent, 3);
    let (_, body) = get_window(&silent, "www", from, until, "").await;
    let v = json(&body);
    assert_eq!(v["next"]["uri"], "");
    assert_eq!(v["data"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn a_full_day_window_is_served_page_by_page() {
    let sim = start(SimConfig::default()).await;
    // The oldest and newest minutes the API allows: almost a full day.
    let until = (sim.now() - 300).div_euclid(60) * 60;
    let from = (sim.now() - 86_700).div_euclid(60) * 60 + 120;
    for extra in ["", "&tags=SQLI"] {
        let started = std::time::Instant::now();
        let url = feed_url(&sim, "www", &format!("from={from}&until={until}{extra}"));
        let (status, body) = get(&url).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let v = json(&body);
        assert_eq!(v["data"].as_array().map(Vec::len), Some(1000), "{extra}");
        let next = v["next"]["uri"].as_str().expect("uri").to_string();
        let (status, _) = get(&format!("http://{}{next}", sim.addr())).await;
        assert_eq!(status, StatusCode::OK);
        // Generous bound for a debug build: a page must not cost the whole window.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}

#[tokio::test]
async fn without_shuffle_or_duplicates_the_feed_is_in_timestamp_order() {
    let sim = start(SimConfig {
        shuffle: false,
        duplicate_ratio: 0.0,
        ..SimConfig::default()
    })
    .await;
    let (from, until) = window(&sim, 10);
    let (_, body) = get_window(&sim, "www", from, until, "").await;
    let v = json(&body);
    let ts: Vec<&str> = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|e| e["timestamp"].as_str())
        .collect();
    assert!(!ts.is_empty());
    assert!(ts.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(ts.len(), sim.ground_truth("www", from, until).len());
}
