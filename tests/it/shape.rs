//! Shapes and tag filters end to end: the binary's stdout in `ecs` / `cim`, and a filtered
//! backfill that delivers exactly the filtered ground truth.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use sigsci_export::pipeline::filter::TagFilter;
use sigsci_export::sim::{SimConfig, Simulator};

use crate::support::*;

const PAGE_LIMIT: u32 = 1000;

async fn backfill(extra_sink: &str, minutes: i64, log: &str) -> (Output, i64, i64, Simulator) {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let api = format!("page_limit = {PAGE_LIMIT}");
    let cfg = write_config(dir.path(), &sim, "demo-token", &api, extra_sink);
    let until = latest(&sim);
    let from = until - minutes * 60;
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
        &[("RUST_LOG", log)],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    (out, from, until, sim)
}

fn ids_by_site(lines: &str, site_ptr: &str, id_ptr: &str) -> [(String, BTreeSet<String>); 2] {
    let mut www = BTreeSet::new();
    let mut api = BTreeSet::new();
    for line in lines.lines() {
        let v: Value = serde_json::from_str(line).expect("each stdout line is one JSON event");
        let id = v
            .pointer(id_ptr)
            .and_then(Value::as_str)
            .expect("id")
            .to_string();
        match v.pointer(site_ptr).and_then(Value::as_str) {
            Some("www") => assert!(www.insert(id), "delivered twice"),
            Some("api") => assert!(api.insert(id), "delivered twice"),
            other => panic!("unexpected site {other:?}: {line}"),
        }
    }
    [("www".into(), www), ("api".into(), api)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_ecs_backfill_delivers_exactly_the_filtered_ground_truth() {
    let extra = r#"format = "ecs"

[filters]
include_tags = ["SQLI", "XSS", "TRAVERSAL"]
exclude_tags = ["BLOCKED"]

[filters.sites.api]
include_tags = ["HTTP404"]
"#;
    let (out, from, until, sim) = backfill(extra, 60, "info,sigsci_export=debug").await;
    let owned = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let www_filter = TagFilter::new(owned(&["SQLI", "XSS", "TRAVERSAL"]), owned(&["BLOCKED"]));
    let api_filter = TagFilter::new(owned(&["HTTP404"]), Vec::new());
    for (site, got) in ids_by_site(&out.stdout, "/labels/site", "/event/id") {
        let filter = if site == "www" {
            &www_filter
        } else {
            &api_filter
        };
        let want: BTreeSet<String> = sim
            .ground_truth_where(&site, from, until, |t| filter.keep_types(t.iter().copied()))
            .into_iter()
            .collect();
        assert!(!want.is_empty(), "{site}: the filter keeps something");
        assert!(want.len() < sim.ground_truth(&site, from, until).len());
        assert_eq!(got, want, "{site}");
    }
    for line in out.stdout.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["ecs"]["version"], "8.11.0");
        if v["labels"]["site"] == "www" {
            assert_eq!(
                v["event"]["type"][1], "allowed",
                "www excludes BLOCKED: {line}"
            );
        }
    }
    // What the API was asked: `tags=` only for api's single include tag (several names would
    // depend on an undocumented AND/OR). The simulator logs query lengths, and every window's
    // from/until has ten digits, so the length tells which parameters were sent.
    let base = format!("from={from}&until={until}&limit={PAGE_LIMIT}").len();
    for (site, want) in [("www", base), ("api", base + "&tags=HTTP404".len())] {
        let first_pages: Vec<usize> = sim
            .requests()
            .iter()
            .filter(|r| r.path.ends_with(&format!("/sites/{site}/feed/requests")) && !r.used_next)
            .map(|r| r.query_len)
            .collect();
        assert!(!first_pages.is_empty(), "{site}: no window request");
        assert!(
            first_pages.iter().all(|&len| len == want),
            "{site}: query lengths {first_pages:?}, want {want}"
        );
    }
    assert!(
        out.stderr.contains("Tag filter applied to a page"),
        "the per-page filter count is logged:\n{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cim_backfill_delivers_every_event_shaped() {
    let (out, from, until, sim) = backfill("format = \"cim\"", 10, "info").await;
    for (site, got) in ids_by_site(&out.stdout, "/sigsci_site", "/id") {
        let want: BTreeSet<String> = sim.ground_truth(&site, from, until).into_iter().collect();
        assert_eq!(got, want, "{site}");
    }
    for line in out.stdout.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["vendor_product"], "Fastly Next-Gen WAF");
        assert!(
            v["action"] == "allowed" || v["action"] == "blocked",
            "{line}"
        );
        assert!(v.get("sigsci_export").is_none(), "{line}");
    }
}
