//! The real sink, driven by the real driver, against the test receiver: one test per row of the
//! per-item table and per top-level status. Each checks that nothing is lost (every id stored
//! once, or dead-lettered with the cluster's reason) and that there is no retry storm (the
//! receiver's request count stays small).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::sim::es::{
    EsFaults, EsFlavour, EsReceiver, EsReceiverAuth, EsReceiverConfig, IndexBlock, ItemFault,
    TopFault,
};
use crate::sink::driver::{Driver, RetryDelays};
use crate::store::{NewEvent, SiteKey, Store};

const FAST: RetryDelays = RetryDelays {
    min: Duration::from_millis(5),
    max: Duration::from_millis(50),
};

/// 2026-11-24T01:02:03Z: every test event lands in `sigsci-requests-2026.11.24`.
const TS: i64 = 1_795_482_123;
const INDEX: &str = "sigsci-requests-2026.11.24";

async fn receiver(cfg: EsReceiverConfig) -> EsReceiver {
    EsReceiver::start(cfg, ([127, 0, 0, 1], 0).into())
        .await
        .unwrap()
}

fn es_config(url: &str, extra: serde_json::Value) -> EsConfig {
    let mut raw = json!({"url": url, "name": "es", "linger_ms": 0});
    for (k, v) in extra.as_object().unwrap() {
        raw[k] = v.clone();
    }
    validate(0, serde_json::from_value(raw).unwrap()).unwrap()
}

async fn store_with(n: usize) -> (tempfile::TempDir, Store, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    store
        .register_sinks("run", &["es".to_string()])
        .await
        .unwrap();
    let ids: Vec<String> = (0..n).map(|i| format!("5f{i:022x}")).collect();
    let events = ids
        .iter()
        .map(|id| NewEvent {
            id: id.clone(),
            ts: TS,
            body: crate::store::Body::from(format!(
                r#"{{"id":"{id}","timestamp":"2026-11-24T01:02:03Z","remoteIP":"192.0.2.1","path":"/login","tags":[{{"type":"SQLI"}}]}}"#
            )),
        })
        .collect();
    let key = SiteKey {
        ns: "run".into(),
        corp: "acme".into(),
        site: "www".into(),
    };
    store.commit_page(&key, events, TS, Some(60)).await.unwrap();
    (dir, store, ids)
}

/// A store whose `es` sink has `events` pending (all on the day of [`TS`]).
async fn store_events(events: Vec<NewEvent>) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    store
        .register_sinks("run", &["es".to_string()])
        .await
        .unwrap();
    let key = SiteKey {
        ns: "run".into(),
        corp: "acme".into(),
        site: "www".into(),
    };
    store.commit_page(&key, events, TS, Some(60)).await.unwrap();
    (dir, store)
}

fn event(id: &str, body: String) -> NewEvent {
    NewEvent {
        id: id.into(),
        ts: TS,
        body: body.into(),
    }
}

/// A running driver for the `es` sink.
struct Running {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), crate::store::StoreError>>,
}

fn start_driver(store: &Store, cfg: EsConfig) -> Running {
    let sink = EsSink::new(cfg).unwrap();
    let limits = sink.limits();
    let cancel = CancellationToken::new();
    let driver =
        Driver::new(Arc::new(sink), store.clone(), "run", limits, cancel.clone()).with_delays(FAST);
    Running {
        cancel,
        task: tokio::spawn(driver.run()),
    }
}

impl Running {
    async fn stop(self) {
        self.cancel.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// Whether the sink's backlog empties within `limit`.
async fn drained(store: &Store, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if store.pending("run", "es").await.unwrap() == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Runs the driver until the backlog is empty (10 s at most); asserts it emptied.
async fn deliver(store: &Store, cfg: EsConfig) {
    let d = start_driver(store, cfg);
    assert!(
        drained(store, Duration::from_secs(10)).await,
        "backlog did not drain"
    );
    d.stop().await;
}

/// Every id stored exactly once, in the dated index.
fn assert_stored_once(rx: &EsReceiver, ids: &[String]) {
    let counts = rx.id_counts();
    for id in ids {
        assert_eq!(counts.get(id), Some(&1), "{id}");
    }
    assert_eq!(rx.doc_count(), ids.len());
}

#[tokio::test]
async fn items_201_are_delivered_in_one_request() {
    let rx = receiver(EsReceiverConfig::default()).await;
    let (_d, store, ids) = store_with(50).await;
    deliver(&store, es_config(&rx.url(), json!({}))).await;
    assert_stored_once(&rx, &ids);
    let st = rx.stats();
    assert_eq!(st.bulk_requests, 1);
    assert_eq!(st.items_by_status.get(&201), Some(&50));
    assert!(st.bytes_wire < st.bytes_uncompressed, "gzip on by default");
    // Raw shape plus @timestamp, in the dated index.
    let doc: serde_json::Value =
        serde_json::from_str(&rx.document(INDEX, &ids[0]).unwrap()).unwrap();
    assert_eq!(doc["@timestamp"], "2026-11-24T01:02:03Z");
    assert_eq!(doc["sigsci_export"]["site"], "www");
    assert_eq!(doc["path"], "/login");
    // What the receiver checks like a cluster (406 otherwise), and no `refresh`: it costs the
    // cluster a refresh per request and the sink never reads back.
    assert_eq!(rx.content_types(), vec!["application/x-ndjson".to_string()]);
    let queries = rx.bulk_queries();
    assert_eq!(queries.len(), 1);
    let params: Vec<(String, String)> = url::form_urlencoded::parse(queries[0].as_bytes())
        .into_owned()
        .collect();
    assert_eq!(
        params,
        vec![(
            "filter_path".to_string(),
            "errors,items.*._id,items.*.status,items.*.error".to_string()
        )]
    );
}

#[tokio::test]
async fn a_pretty_printed_record_is_stored_not_bisected() {
    let rx = receiver(EsReceiverConfig::default()).await;
    let pretty = "{\n  \"id\": \"pretty\",\n  \"path\": \"/login\",\r\n  \"tags\": [\n    {\"type\": \"SQLI\"}\n  ]\n}";
    let (_d, store) = store_events(vec![
        event("before", r#"{"id":"before"}"#.into()),
        event("pretty", pretty.into()),
        event("after", r#"{"id":"after"}"#.into()),
    ])
    .await;
    deliver(&store, es_config(&rx.url(), json!({}))).await;
    assert!(store.dead_letters(None, 10).await.unwrap().is_empty());
    assert_stored_once(&rx, &["before".into(), "pretty".into(), "after".into()]);
    assert_eq!(rx.stats().bulk_requests, 1, "one request, no bisection");
    let doc: serde_json::Value =
        serde_json::from_str(&rx.document(INDEX, "pretty").unwrap()).unwrap();
    assert_eq!(doc["tags"][0]["type"], "SQLI");
}

#[tokio::test]
async fn a_top_level_400_is_bisected_to_the_one_bad_event() {
    // An `_id` over 512 bytes fails validation of the whole request (400
    // action_request_validation_exception), not just its item.
    let rx = receiver(EsReceiverConfig::default()).await;
    let long_id = "x".repeat(600);
    let mut events: Vec<NewEvent> = (0..8)
        .map(|i| event(&format!("ok{i}"), format!(r#"{{"id":"ok{i}"}}"#)))
        .collect();
    events.insert(5, event(&long_id, r#"{"id":"long"}"#.into()));
    let (_d, store) = store_events(events).await;
    deliver(&store, es_config(&rx.url(), json!({}))).await;
    let dead = store.dead_letters(None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, long_id);
    assert!(
        dead[0]
            .reason
            .contains("action_request_validation_exception")
            && dead[0].reason.contains("is too long"),
        "{}",
        dead[0].reason
    );
    let ok: Vec<String> = (0..8).map(|i| format!("ok{i}")).collect();
    assert_stored_once(&rx, &ok);
    let st = rx.stats();
    assert!(
        st.bulk_by_status.get(&400).copied().unwrap_or(0) >= 1,
        "{st:?}"
    );
    // Bisecting 9 events down to one: a handful of requests, not one per event forever.
    assert!(st.bulk_requests <= 10, "{st:?}");
}

#[tokio::test]
async fn replay_of_a_delivered_batch_settles_as_duplicates_in_one_request() {
    let rx = receiver(EsReceiverConfig::default()).await;
    let (_d, store, ids) = store_with(30).await;
    deliver(&store, es_config(&rx.url(), json!({}))).await;
    // The same events again (as after a crash before the offset was saved).
    let (_d2, store2, _) = store_with(30).await;
    deliver(&store2, es_config(&rx.url(), json!({}))).await;
    assert_stored_once(&rx, &ids);
    let st = rx.stats();
    assert_eq!(st.bulk_requests, 2, "exactly one request for the replay");
    assert_eq!(st.items_by_status.get(&409), Some(&30));
    assert!(store2.dead_letters(None, 10).await.unwrap().is_empty());
    assert_eq!(rx.create_attempts(&ids[0]), 2);
}

#[tokio::test]
async fn item_429_is_retried_alone() {
    let rx = receiver(EsReceiverConfig::default()).await;
    let (_d, store, ids) = store_with(20).await;
    rx.script_item(
        &ids[3],
        [ItemFault::TooManyRequests, ItemFault::TooManyRequests],
    );
    rx.script_item(&ids[17], [ItemFault::TooManyRequests]);
    deliver(&store, es_config(&rx.url(), json!({}))).await;
    assert_stored_once(&rx, &ids);
    let st = rx.stats();
    assert_eq!(st.bulk_requests, 3, "{st:?}");
    assert_eq!(st.items_by_status.get(&429), Some(&3));
    // Only the rejected documents were sent again.
    assert_eq!(rx.create_attempts(&ids[3]), 3);
    assert_eq!(rx.create_attempts(&ids[17]), 2);
    assert_eq!(rx.create_attempts(&ids[0]), 1);
}

#[tokio::test]
async fn item_5xx_is_retried_alone() {
    let rx = receiver(EsReceiverConfig::default()).await;
    let (_d, store, ids) = store_with(10).await;
    rx.script_item(&ids[9], [ItemFault::Unavailable]);
    deliver(&store, es_config(&rx.url(), json!({}))).await;
    assert_stored_once(&rx, &ids);
    assert_eq!(rx.stats().bulk_requests, 2);
    assert_eq!(rx.create_attempts(&ids[9]), 2);
    assert_eq!(rx.create_attempts(&ids[8]), 1);
}

#[tokio::test]
async fn mapping_error_is_dead_lettered_with_the_reason() {
    let rx = receiver(EsReceiverConfig::default()).await;
    let (_d, store, ids) = store_with(10).await;
    rx.script_item(&ids[4], [ItemFault::MappingError]);
    deliver(&store, es_config(&rx.url(), json!({}))).await;
    assert_eq!(
        rx.stats().bulk_requests,
        1,
        "a permanent error is not retried"
    );
    let dead = store.dead_letters(Some("es"), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, ids[4]);
    assert!(
        dead[0].reason.starts_with("document_parsing_exception: "),
        "{}",
        dead[0].reason
    );
    assert_eq!(rx.doc_count(), 9);
    assert!(!rx.id_counts().contains_key(&ids[4]));
}

/// A target-level item error blocks the sink (data kept, the ERROR naming `want`) until the
/// index is usable; then everything lands once.
async fn index_block_pauses_then_recovers(block: IndexBlock, item_status: u16, want: &str) {
    let rx = receiver(EsReceiverConfig::default()).await;
    let (_d, store, ids) = store_with(10).await;
    rx.block_index(INDEX, block);
    let d = start_driver(&store, es_config(&rx.url(), json!({})));
    let reason = blocked_reason(&store).await;
    assert!(reason.contains(want), "{block:?}: {reason}");
    assert!(
        reason.contains(INDEX),
        "{block:?} names the index: {reason}"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(rx.doc_count(), 0);
    assert!(
        store.dead_letters(None, 10).await.unwrap().is_empty(),
        "data kept"
    );
    let st = rx.stats();
    assert!(
        st.items_by_status.get(&item_status).copied().unwrap_or(0) > 0,
        "{block:?}: {st:?}"
    );
    // With test delays of 5..50 ms, 400 ms allow a few dozen probes at most; a loop without
    // backoff would send thousands.
    assert!(
        (1..=40).contains(&st.bulk_requests),
        "blocked sink backs off: {} requests",
        st.bulk_requests
    );
    rx.unblock_index(INDEX);
    assert!(drained(&store, Duration::from_secs(10)).await);
    d.stop().await;
    assert_stored_once(&rx, &ids);
}

/// Waits (10 s at most) until the `es` sink is marked blocked; returns the reason.
async fn blocked_reason(store: &Store) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if let Some(b) = store
            .blocked_sinks()
            .await
            .unwrap()
            .into_iter()
            .find(|b| b.sink == "es")
        {
            return b.reason;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the sink was never marked blocked");
}

#[tokio::test]
async fn index_not_found_blocks_then_recovers() {
    index_block_pauses_then_recovers(IndexBlock::NotFound, 404, "auto_create_index").await;
}

#[tokio::test]
async fn index_forbidden_blocks_then_recovers() {
    index_block_pauses_then_recovers(IndexBlock::Forbidden, 403, "create_doc").await;
}

#[tokio::test]
async fn item_401_blocks_then_recovers() {
    index_block_pauses_then_recovers(IndexBlock::Unauthenticated, 401, "credentials").await;
}

#[tokio::test]
async fn index_read_only_blocks_then_recovers() {
    // The flood-stage block comes as item 429 (since ES 7.6): blocked, not retried as a queue.
    index_block_pauses_then_recovers(IndexBlock::ReadOnly, 429, "flood-stage watermark").await;
}

#[tokio::test]
async fn closed_index_blocks_then_recovers() {
    index_block_pauses_then_recovers(IndexBlock::Closed, 400, "_open").await;
}

#[tokio::test]
async fn alias_without_write_index_blocks_then_recovers() {
    index_block_pauses_then_recovers(IndexBlock::NoWriteIndex, 400, "is_write_index").await;
}

#[tokio::test]
async fn missing_pipeline_blocks_until_it_exists() {
    let rx = receiver(EsReceiverConfig {
        pipelines: Some(vec![]),
        ..EsReceiverConfig::default()
    })
    .await;
    let (_d, store, ids) = store_with(10).await;
    let d = start_driver(
        &store,
        es_config(&rx.url(), json!({"pipeline": "sigsci-geoip"})),
    );
    let reason = blocked_reason(&store).await;
    assert!(
        reason.contains("pipeline with id [sigsci-geoip] does not exist")
            && reason.contains("PUT /_ingest/pipeline"),
        "{reason}"
    );
    assert_eq!(rx.doc_count(), 0);
    assert!(store.dead_letters(None, 10).await.unwrap().is_empty());
    rx.add_pipeline("sigsci-geoip");
    assert!(drained(&store, Duration::from_secs(10)).await);
    d.stop().await;
    assert_stored_once(&rx, &ids);
    assert!(store.dead_letters(None, 10).await.unwrap().is_empty());
}

/// A scripted whole-request fault is followed by a clean delivery in a few requests.
async fn top_fault_then_delivered(fault: TopFault, max_requests: u64) -> EsReceiver {
    let rx = receiver(EsReceiverConfig::default()).await;
    let (_d, store, ids) = store_with(20).await;
    rx.script_top([fault]);
    deliver(&store, es_config(&rx.url(), json!({}))).await;
    assert_stored_once(&rx, &ids);
    assert!(store.dead_letters(None, 10).await.unwrap().is_empty());
    let n = rx.stats().bulk_requests;
    assert!((2..=max_requests).contains(&n), "{fault:?}: {n} requests");
    rx
}

#[tokio::test]
async fn top_level_429_is_retried() {
    top_fault_then_delivered(TopFault::TooManyRequests, 2).await;
}

#[tokio::test]
async fn top_level_503_is_retried() {
    top_fault_then_delivered(TopFault::Unavailable, 2).await;
}

#[tokio::test]
async fn top_level_413_halves_the_batch() {
    // The whole batch refused once, then its halves go through.
    top_fault_then_delivered(TopFault::TooLarge, 3).await;
}

#[tokio::test]
async fn top_level_408_is_retried() {
    top_fault_then_delivered(TopFault::RequestTimeout, 2).await;
}

#[tokio::test]
async fn a_reply_slower_than_the_timeout_is_retried_and_stored_once() {
    // The first request is stored but its reply comes after the sink gave up: the resend
    // finds every document there (409) and settles them as duplicates.
    let rx = receiver(EsReceiverConfig::default()).await;
    let (_d, store, ids) = store_with(20).await;
    rx.script_top([TopFault::SlowReply(Duration::from_secs(3))]);
    deliver(&store, es_config(&rx.url(), json!({"timeout_secs": 1}))).await;
    assert_stored_once(&rx, &ids);
    assert!(store.dead_letters(None, 10).await.unwrap().is_empty());
    let st = rx.stats();
    assert_eq!(st.bulk_requests, 2, "{st:?}");
    assert_eq!(st.items_by_status.get(&201), Some(&20));
    assert_eq!(st.items_by_status.get(&409), Some(&20));
}

#[tokio::test]
async fn top_level_401_blocks_until_healthy() {
    top_fault_then_delivered(TopFault::Unauthorized, 2).await;
}

#[tokio::test]
async fn success_status_without_items_is_not_delivered() {
    let rx = top_fault_then_delivered(TopFault::BadReply, 2).await;
    assert_eq!(rx.stats().items_by_status.get(&201), Some(&20));
}

#[tokio::test]
async fn items_without_status_are_not_delivered() {
    // Stored by the first request, but its reply says nothing about them: resent, 409.
    let rx = top_fault_then_delivered(TopFault::NoItemStatus, 2).await;
    assert_eq!(rx.stats().items_by_status.get(&409), Some(&20));
}

/// Items are matched to documents by position; a reply in another order must not settle a
/// document by another's item (dead-letter a stored one, count a refused one as delivered).
#[tokio::test]
async fn a_reply_with_items_out_of_order_is_retried_not_misattributed() {
    let rx = receiver(EsReceiverConfig::default()).await;
    let (_d, store, ids) = store_with(20).await;
    // Refused on both attempts: the reversed reply puts its item at position 17.
    rx.script_item(&ids[2], [ItemFault::MappingError, ItemFault::MappingError]);
    rx.script_top([TopFault::Reordered]);
    deliver(&store, es_config(&rx.url(), json!({}))).await;
    let dead: Vec<String> = store
        .dead_letters(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(dead, [ids[2].clone()]);
    let mut stored = ids.clone();
    stored.remove(2);
    assert_stored_once(&rx, &stored);
    assert_eq!(rx.stats().bulk_requests, 2);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let rx = receiver(EsReceiverConfig {
        faults: EsFaults {
            retry_after_secs: Some(1),
            ..EsFaults::default()
        },
        ..EsReceiverConfig::default()
    })
    .await;
    let (_d, store, ids) = store_with(5).await;
    rx.script_top([TopFault::TooManyRequests]);
    let started = std::time::Instant::now();
    deliver(&store, es_config(&rx.url(), json!({}))).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_stored_once(&rx, &ids);
    assert_eq!(rx.stats().bulk_requests, 2);
}

#[tokio::test]
async fn oversized_single_document_is_dead_lettered_over_the_byte_limit() {
    let rx = receiver(EsReceiverConfig {
        max_content_length: 300,
        ..EsReceiverConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    store
        .register_sinks("run", &["es".to_string()])
        .await
        .unwrap();
    let key = SiteKey {
        ns: "run".into(),
        corp: "acme".into(),
        site: "www".into(),
    };
    let events = vec![
        NewEvent {
            id: "small1".into(),
            ts: TS,
            body: r#"{"id":"small1"}"#.into(),
        },
        NewEvent {
            id: "huge".into(),
            ts: TS,
            body: crate::store::Body::from(format!(
                r#"{{"id":"huge","pad":"{}"}}"#,
                "x".repeat(400)
            )),
        },
        NewEvent {
            id: "small2".into(),
            ts: TS,
            body: r#"{"id":"small2"}"#.into(),
        },
    ];
    store.commit_page(&key, events, TS, Some(60)).await.unwrap();
    deliver(&store, es_config(&rx.url(), json!({}))).await;
    let dead = store.dead_letters(None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, "huge");
    assert!(dead[0].reason.contains("413"), "{}", dead[0].reason);
    assert_eq!(rx.doc_count(), 2);
    assert!(rx.stats().bulk_requests <= 5);
}

#[tokio::test]
async fn wrong_url_path_is_blocked_not_retried_in_a_loop() {
    let rx = receiver(EsReceiverConfig::default()).await;
    let (_d, store, _ids) = store_with(5).await;
    let sink = EsSink::new(es_config(&format!("{}/app/kibana", rx.url()), json!({}))).unwrap();
    let batch = Batch {
        events: store.read_batch("run", "es", 10, 1 << 20).await.unwrap(),
    };
    match sink.send(&batch).await {
        Err(SinkError::Blocked { reason }) => assert!(reason.contains("cluster root"), "{reason}"),
        other => panic!("{other:?}"),
    }
    match sink.healthcheck().await {
        Err(SinkError::Blocked { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn requests_are_cut_by_bytes_and_count_and_sent_in_parallel() {
    let rx = receiver(EsReceiverConfig::default()).await;
    let (_d, store, ids) = store_with(200).await;
    let cfg = es_config(
        &rx.url(),
        json!({"batch_max_bytes": 8000, "batch_max_events": 30, "in_flight": 3, "gzip": false}),
    );
    deliver(&store, cfg).await;
    assert_stored_once(&rx, &ids);
    let st = rx.stats();
    assert_eq!(st.bytes_wire, st.bytes_uncompressed, "gzip off");
    assert!(st.bulk_requests >= 200 / 30, "{st:?}");
    assert!(
        st.bytes_uncompressed / st.bulk_requests <= 8000,
        "requests stay under batch_max_bytes: {st:?}"
    );
}

#[tokio::test]
async fn data_stream_gets_timestamp_and_create_only() {
    let rx = receiver(EsReceiverConfig::default()).await;
    let (_d, store, ids) = store_with(10).await;
    let cfg = es_config(&rx.url(), json!({"index": "logs-sigsci-default"}));
    assert!(cfg.data_stream);
    deliver(&store, cfg).await;
    assert_eq!(rx.indices().get("logs-sigsci-default"), Some(&10));
    let doc: serde_json::Value =
        serde_json::from_str(&rx.document("logs-sigsci-default", &ids[0]).unwrap()).unwrap();
    assert_eq!(doc["@timestamp"], "2026-11-24T01:02:03Z");
    let queries = rx.bulk_queries();
    assert!(
        queries.len() == 1 && queries[0].ends_with("&require_data_stream=true"),
        "{queries:?}"
    );
}

#[tokio::test]
async fn data_stream_without_a_template_blocks_instead_of_creating_an_index() {
    let rx = receiver(EsReceiverConfig::default()).await;
    let (_d, store, _ids) = store_with(10).await;
    // Not `logs-*-*`: no template in the receiver (or a default cluster) makes it a stream.
    let cfg = es_config(
        &rx.url(),
        json!({"index": "sigsci-waf", "mode": "data_stream"}),
    );
    let d = start_driver(&store, cfg);
    let reason = blocked_reason(&store).await;
    assert!(
        reason.contains("`sigsci-waf`") && reason.contains("data_stream` enabled"),
        "{reason}"
    );
    d.stop().await;
    assert_eq!(rx.doc_count(), 0, "no plain index was created");
    assert!(store.dead_letters(None, 10).await.unwrap().is_empty());
    assert!(store.pending("run", "es").await.unwrap() == 10, "data kept");
    assert!(rx.stats().items_by_status.get(&404).copied().unwrap_or(0) > 0);
}

#[tokio::test]
async fn clusters_without_require_data_stream_get_the_plain_url() {
    for flavour in [
        EsFlavour::Es7,
        EsFlavour::OpenSearch1,
        EsFlavour::OpenSearch2,
    ] {
        let rx = receiver(EsReceiverConfig {
            flavour,
            ..EsReceiverConfig::default()
        })
        .await;
        let (_d, store, ids) = store_with(10).await;
        let cfg = es_config(
            &rx.url(),
            json!({"index": "logs-sigsci-default", "batch_max_events": 4}),
        );
        deliver(&store, cfg).await;
        assert!(store.dead_letters(None, 10).await.unwrap().is_empty());
        let counts = rx.id_counts();
        assert!(
            ids.iter().all(|id| counts.get(id) == Some(&1)),
            "{flavour:?}"
        );
        let st = rx.stats();
        // Refused only by the requests already in flight (2 by default), then never sent again.
        let refused = st.bulk_by_status.get(&400).copied().unwrap_or(0);
        assert!((1..=2).contains(&refused), "{flavour:?}: {st:?}");
        assert_eq!(st.bulk_by_status.get(&200), Some(&3), "{flavour:?}: {st:?}");
        let queries = rx.bulk_queries();
        assert_eq!(queries.len(), 2, "{queries:?}");
        assert!(
            queries.iter().any(|q| q.contains("require_data_stream")),
            "{queries:?}"
        );
    }
}

#[tokio::test]
async fn each_auth_mode_is_accepted_and_a_wrong_secret_blocks() {
    let cases = [
        (
            EsReceiverAuth::Basic {
                username: "elastic".into(),
                password: "pw-secret-1".into(),
            },
            json!({"auth": "basic", "username": "elastic", "password": "pw-secret-1"}),
            json!({"auth": "basic", "username": "elastic", "password": "nope"}),
        ),
        (
            EsReceiverAuth::ApiKey("a2V5LWlkOmtleS1zZWNyZXQ=".into()),
            json!({"auth": "api_key", "api_key": "a2V5LWlkOmtleS1zZWNyZXQ="}),
            json!({"auth": "api_key", "api_key": "bm9wZQ=="}),
        ),
        (
            EsReceiverAuth::Bearer("tok-secret-3".into()),
            json!({"auth": "bearer", "bearer_token": "tok-secret-3"}),
            json!({"auth": "bearer", "bearer_token": "nope"}),
        ),
    ];
    for (auth, good, bad) in cases {
        let rx = receiver(EsReceiverConfig {
            auth: auth.clone(),
            ..EsReceiverConfig::default()
        })
        .await;
        let (_d, store, ids) = store_with(3).await;
        let batch = Batch {
            events: store.read_batch("run", "es", 10, 1 << 20).await.unwrap(),
        };
        let bad_sink = EsSink::new(es_config(&rx.url(), bad)).unwrap();
        match bad_sink.send(&batch).await {
            Err(SinkError::Blocked { reason }) => {
                assert!(reason.contains("credentials"), "{reason}")
            }
            other => panic!("{auth:?}: {other:?}"),
        }
        assert!(matches!(
            bad_sink.healthcheck().await,
            Err(SinkError::Blocked { .. })
        ));
        let good_sink = EsSink::new(es_config(&rx.url(), good)).unwrap();
        good_sink.healthcheck().await.unwrap();
        let ack = good_sink.send(&batch).await.unwrap();
        assert_eq!(ack, Ack::all_delivered(3));
        assert_stored_once(&rx, &ids);
    }
}

#[tokio::test]
async fn healthcheck_accepts_every_flavour() {
    for flavour in [
        EsFlavour::Es7,
        EsFlavour::Es8,
        EsFlavour::Es9,
        EsFlavour::OpenSearch1,
        EsFlavour::OpenSearch2,
    ] {
        let rx = receiver(EsReceiverConfig {
            flavour,
            ..EsReceiverConfig::default()
        })
        .await;
        let sink = EsSink::new(es_config(&rx.url(), json!({}))).unwrap();
        sink.healthcheck().await.unwrap();
        rx.pause();
        assert!(matches!(
            sink.healthcheck().await,
            Err(SinkError::Retryable { .. })
        ));
    }
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let rx = receiver(EsReceiverConfig::default()).await;
    let url = rx.url();
    rx.shutdown().await;
    let sink = EsSink::new(es_config(&url, json!({}))).unwrap();
    let (_d, store, _) = store_with(2).await;
    let batch = Batch {
        events: store.read_batch("run", "es", 10, 1 << 20).await.unwrap(),
    };
    assert!(matches!(
        sink.send(&batch).await,
        Err(SinkError::Retryable { .. })
    ));
}

#[tokio::test]
async fn random_item_429s_and_pause_lose_nothing() {
    let rx = receiver(EsReceiverConfig {
        faults: EsFaults {
            item_429: 0.2,
            ..EsFaults::default()
        },
        ..EsReceiverConfig::default()
    })
    .await;
    let (_d, store, ids) = store_with(300).await;
    rx.pause();
    let d = start_driver(
        &store,
        es_config(&rx.url(), json!({"batch_max_events": 50})),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.doc_count(), 0);
    rx.resume();
    assert!(drained(&store, Duration::from_secs(20)).await);
    d.stop().await;
    assert_stored_once(&rx, &ids);
    assert!(rx.stats().items_by_status.get(&429).copied().unwrap_or(0) > 0);
}

// ----- configuration -----

fn raw(v: serde_json::Value) -> Result<EsConfig, crate::config::ConfigError> {
    validate(3, serde_json::from_value(v).unwrap())
}

#[test]
fn defaults() {
    let c = raw(json!({"url": "https://es.example.com:9200/"})).unwrap();
    assert_eq!(c.name, "elasticsearch");
    assert_eq!(c.url.as_str(), "https://es.example.com:9200/");
    assert_eq!(c.index.text, DEFAULT_INDEX);
    assert!(!c.data_stream);
    assert!(c.gzip);
    assert_eq!(
        (c.batch_max_bytes, c.batch_max_events, c.in_flight),
        (3_000_000, 10_000, 2)
    );
    assert_eq!(c.linger, Duration::from_secs(1));
    assert_eq!(c.timeout, Duration::from_secs(90));
    assert!(matches!(c.auth, EsAuth::None));
    let sink = EsSink::new(c).unwrap();
    let limits = sink.limits();
    assert_eq!(
        (limits.max_bytes, limits.max_events, limits.in_flight),
        (2_550_000, 10_000, 2),
        "one request per batch, in_flight batches at once"
    );
    assert_eq!(
        sink.bulk_url,
        "https://es.example.com:9200/_bulk?filter_path=errors,items.*._id,items.*.status,items.*.error"
    );
    assert_eq!(sink.bulk_url_ds, None);
    let c = raw(json!({"url": "http://h:9200/es", "pipeline": "geo ip", "index": "logs-waf-prod"}))
        .unwrap();
    assert!(c.data_stream);
    let sink = EsSink::new(c).unwrap();
    assert_eq!(
        sink.bulk_url,
        "http://h:9200/es/_bulk?filter_path=errors,items.*._id,items.*.status,items.*.error&pipeline=geo+ip"
    );
    assert_eq!(
        sink.bulk_url_ds.as_deref(),
        Some(
            "http://h:9200/es/_bulk?filter_path=errors,items.*._id,items.*.status,items.*.error&pipeline=geo+ip&require_data_stream=true"
        )
    );
    let c = raw(json!({"url": "http://h", "index": "logs-waf-prod", "mode": "index"})).unwrap();
    assert!(!c.data_stream);
    assert_eq!(EsSink::new(c).unwrap().bulk_url_ds, None);
    let c = raw(json!({"url": "http://h", "index": "sigsci-waf", "mode": "data_stream"})).unwrap();
    assert!(c.data_stream);
}

#[test]
fn a_data_stream_name_cannot_have_a_date() {
    let e = raw(json!({"url": "http://h", "index": "logs-sigsci-%Y.%m.%d", "mode": "data_stream"}))
        .unwrap_err();
    assert_eq!(e.key, "sinks[3].index");
    assert!(
        e.reason.contains("data_stream") && e.reason.contains("mode = \"index\""),
        "{e}"
    );
    // In auto mode a dated name is simply a plain index.
    assert!(
        !raw(json!({"url": "http://h", "index": "logs-sigsci-%Y"}))
            .unwrap()
            .data_stream
    );
}

#[test]
fn bad_values_name_their_key() {
    let cases = [
        (json!({}), "sinks[3].url"),
        (json!({"url": "ftp://h"}), "sinks[3].url"),
        (json!({"url": "https://u:p@h"}), "sinks[3].url"),
        (json!({"url": "https://h?x=1"}), "sinks[3].url"),
        (json!({"url": "https://h/_bulk"}), "sinks[3].url"),
        (
            json!({"url": "https://h", "index": "Bad"}),
            "sinks[3].index",
        ),
        (
            json!({"url": "https://h", "index": "x-%H"}),
            "sinks[3].index",
        ),
        (
            json!({"url": "https://h", "in_flight": 0}),
            "sinks[3].in_flight",
        ),
        (
            json!({"url": "https://h", "batch_max_bytes": 10}),
            "sinks[3].batch_max_bytes",
        ),
        (
            json!({"url": "https://h", "batch_max_events": 0}),
            "sinks[3].batch_max_events",
        ),
        (
            json!({"url": "https://h", "timeout_secs": 0}),
            "sinks[3].timeout_secs",
        ),
        (
            json!({"url": "https://h", "linger_ms": 100000}),
            "sinks[3].linger_ms",
        ),
        (
            json!({"url": "https://h", "pipeline": " "}),
            "sinks[3].pipeline",
        ),
        (
            json!({"url": "https://h", "auth": "basic", "password": "x"}),
            "sinks[3].username",
        ),
        (
            json!({"url": "https://h", "name": "nopw", "auth": "basic", "username": "u"}),
            "sinks[3].password",
        ),
        (
            json!({"url": "https://h", "name": "nokey", "auth": "api_key"}),
            "sinks[3].api_key",
        ),
        (
            json!({"url": "https://h", "name": "notok", "auth": "bearer"}),
            "sinks[3].bearer_token",
        ),
        (
            json!({"url": "https://h", "auth": "none", "api_key": "k"}),
            "sinks[3].api_key",
        ),
        (
            json!({"url": "https://h", "auth": "api_key", "api_key": "a b"}),
            "sinks[3].api_key",
        ),
        (
            json!({"url": "https://h", "auth": "bearer", "bearer_token": "t", "password": "p"}),
            "sinks[3].username",
        ),
        (
            json!({"url": "https://h", "auth": "api_key", "api_key": "k", "api_key_file": "/x"}),
            "sinks[3].api_key",
        ),
    ];
    for (v, key) in cases {
        let e = raw(v.clone()).unwrap_err();
        assert_eq!(e.key, key, "{v}: {e}");
    }
    let e = raw(json!({"url": "https://h", "name": "nopw", "auth": "basic", "username": "u"}))
        .unwrap_err();
    assert!(e.reason.contains("SIGSCI_EXPORT_SINK_NOPW_PASSWORD"), "{e}");
}

#[test]
fn secrets_from_files_and_never_in_debug() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pw");
    std::fs::write(&f, "pw-from-file-42\n").unwrap();
    let c = raw(json!({"url": "https://h", "auth": "basic", "username": "u", "password_file": f}))
        .unwrap();
    match &c.auth {
        EsAuth::Basic { password, .. } => assert_eq!(password.expose(), "pw-from-file-42"),
        other => panic!("{other:?}"),
    }
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("pw-from-file-42") && shown.contains("***"),
        "{shown}"
    );
    let c = raw(json!({"url": "https://h", "auth": "api_key", "api_key": "very-secret-key-7"}))
        .unwrap();
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("very-secret-key-7") && shown.contains("***"),
        "{shown}"
    );
}

/// The healthcheck's retryable error for a sink pointed at `url`.
async fn probe_error(url: &str) -> String {
    let sink = EsSink::new(es_config(url, json!({"timeout_secs": 5}))).unwrap();
    crate::sink::http::test_servers::retryable_message(sink.healthcheck().await, url)
}

#[tokio::test]
async fn transport_failures_carry_a_fix_hint() {
    let port = crate::sink::http::test_servers::closed_port();
    let e = probe_error(&format!("http://127.0.0.1:{port}")).await;
    assert!(
        e.contains(&format!("nothing listens on port {port}")) && e.contains("default 9200"),
        "{e}"
    );

    // https:// to a plain-HTTP cluster.
    let rx = receiver(EsReceiverConfig::default()).await;
    let e = probe_error(&rx.url().replacen("http://", "https://", 1)).await;
    assert!(
        e.contains("does not speak TLS") && e.contains("http://"),
        "{e}"
    );

    // http:// to a TLS port.
    let addr = crate::sink::http::test_servers::tls_alert().await;
    let e = probe_error(&format!("http://{addr}")).await;
    assert!(
        e.contains("must start with") && e.contains("https://"),
        "{e}"
    );
}
