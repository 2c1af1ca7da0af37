//! The real sink and driver against the HEC receiver: one test per row of the failure table
//! (sinks.md A3), the acknowledgement flows, and a restart with pending acknowledgements.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::secret::Secret;
use crate::sim::hec::{HecFault, HecReceiver, HecReceiverConfig, HecToken};
use crate::sink::driver::{Driver, RetryDelays};
use crate::sink::splunk_hec::ack::AckJournal;
use crate::store::{NewEvent, SiteKey};

const TOKEN: &str = "hec-token";
const NS: &str = "run";
const DELAYS: RetryDelays = RetryDelays {
    min: Duration::from_millis(50),
    max: Duration::from_millis(400),
};

async fn receiver(cfg: HecReceiverConfig) -> HecReceiver {
    HecReceiver::start(cfg, ([127, 0, 0, 1], 0).into())
        .await
        .unwrap()
}

fn ack_receiver_cfg() -> HecReceiverConfig {
    HecReceiverConfig {
        tokens: vec![HecToken {
            use_ack: true,
            ..HecToken::new(TOKEN)
        }],
        ..HecReceiverConfig::default()
    }
}

/// A store with `n` events of site `www` spooled for sink `splunk_hec`.
async fn store_with(n: usize) -> (tempfile::TempDir, Store, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    store
        .register_sinks(NS, &["splunk_hec".to_string()])
        .await
        .unwrap();
    let key = SiteKey {
        ns: NS.into(),
        corp: "acme".into(),
        site: "www".into(),
    };
    let ids: Vec<String> = (0..n).map(|i| format!("id{i:04}")).collect();
    let events = ids
        .iter()
        .map(|id| NewEvent {
            id: id.clone(),
            ts: 1_700_000_000,
            body: crate::store::Body::from(format!(
                r#"{{"id":"{id}","timestamp":"2023-11-14T22:13:20.123Z","path":"/{}"}}"#,
                "x".repeat(200)
            )),
        })
        .collect();
    store
        .commit_page(&key, events, 1_700_000_100, Some(60))
        .await
        .unwrap();
    (dir, store, ids)
}

fn sink_cfg(rx: &HecReceiver) -> HecConfig {
    let mut c = HecConfig::new(rx.url().parse().unwrap(), Secret::new(TOKEN));
    c.linger = Duration::ZERO;
    c.ack_poll = Duration::from_millis(50);
    c.timeout = Duration::from_secs(5);
    c
}

struct Running {
    cancel: CancellationToken,
    task: JoinHandle<Result<(), crate::store::StoreError>>,
}

async fn start(store: &Store, cfg: HecConfig) -> Running {
    let sink = HecSink::new(cfg, store).await.unwrap();
    let limits = sink.limits();
    let cancel = CancellationToken::new();
    let driver =
        Driver::new(Arc::new(sink), store.clone(), NS, limits, cancel.clone()).with_delays(DELAYS);
    Running {
        cancel,
        task: tokio::spawn(driver.run()),
    }
}

impl Running {
    async fn stop(self) {
        self.cancel.cancel();
        match tokio::time::timeout(Duration::from_secs(5), self.task).await {
            Ok(r) => r.unwrap().unwrap(),
            Err(_) => panic!("driver did not stop"),
        }
    }
}

async fn wait_until(limit: Duration, mut pred: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if pred().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pred().await
}

async fn pending(store: &Store) -> i64 {
    store.pending(NS, "splunk_hec").await.unwrap()
}

/// Runs a driver until the spool is empty for the sink (at most `limit`).
async fn deliver_all(store: &Store, cfg: HecConfig, limit: Duration) {
    let r = start(store, cfg).await;
    let done = wait_until(limit, async || pending(store).await == 0).await;
    r.stop().await;
    assert!(done, "every event settled within {limit:?}");
}

fn assert_each_once(rx: &HecReceiver, ids: &[String]) {
    let counts = rx.counts();
    for id in ids {
        assert_eq!(counts.get(id), Some(&1), "{id} indexed exactly once");
    }
    assert_eq!(counts.len(), ids.len(), "nothing else indexed");
}

#[tokio::test]
async fn delivers_gzip_envelopes_with_time_fields_and_channel() {
    let rx = receiver(HecReceiverConfig::default()).await;
    let (_d, store, ids) = store_with(50).await;
    let mut cfg = sink_cfg(&rx);
    cfg.index = Some("waf".into());
    cfg.host = Some("exporter-1".into());
    deliver_all(&store, cfg, Duration::from_secs(10)).await;
    assert_each_once(&rx, &ids);
    let st = rx.stats();
    assert_eq!(st.event_requests, 1);
    assert!(st.bytes_wire * 3 < st.bytes_uncompressed, "gzip: {st:?}");
    let ev = &rx.events()[0];
    assert_eq!(ev.time.as_ref().unwrap().to_string(), "1700000000.123");
    assert_eq!(ev.sourcetype.as_deref(), Some("sigsci:request"));
    assert_eq!(ev.source.as_deref(), Some("sigsci-export"));
    assert_eq!(ev.index.as_deref(), Some("waf"));
    assert_eq!(ev.host.as_deref(), Some("exporter-1"));
    assert_eq!(ev.fields["request_id"], "id0000");
    assert_eq!(ev.fields["sigsci_corp"], "acme");
    assert_eq!(ev.fields["sigsci_site"], "www");
    assert_eq!(ev.event["sigsci_export"]["site"], "www");
    let channel = store.sink_meta("splunk_hec", CHANNEL_KEY).await.unwrap();
    assert!(channel.is_some_and(|c| c.len() == 36), "channel stored");
}

#[tokio::test]
async fn requests_are_bounded_by_encoded_bytes_and_sent_in_parallel() {
    let rx = receiver(HecReceiverConfig::default()).await;
    let (_d, store, ids) = store_with(200).await;
    let mut cfg = sink_cfg(&rx);
    cfg.batch_max_bytes = 8 * 1024;
    cfg.gzip = false;
    deliver_all(&store, cfg, Duration::from_secs(10)).await;
    assert_each_once(&rx, &ids);
    let st = rx.stats();
    assert!(st.event_requests >= 200 * 400 / 8192, "{st:?}");
    assert_eq!(st.bytes_wire, st.bytes_uncompressed, "no gzip");
    assert_eq!(st.statuses.get(&200), Some(&st.event_requests));
}

/// One scripted answer to the first request, then normal service: the events end up
/// indexed exactly once (or dead-lettered, `dead` of them), with few requests.
async fn row(fault: HecFault, max_requests: u64, dead: usize) -> (HecReceiver, Store, Vec<String>) {
    let rx = receiver(HecReceiverConfig::default()).await;
    let (d, store, ids) = store_with(8).await;
    rx.script([fault.clone()]);
    deliver_all(&store, sink_cfg(&rx), Duration::from_secs(15)).await;
    let dl = store.dead_letters(Some("splunk_hec"), 100).await.unwrap();
    assert_eq!(dl.len(), dead, "{fault:?}: dead letters {dl:?}");
    let delivered: Vec<String> = ids
        .iter()
        .filter(|id| !dl.iter().any(|d| &d.id == *id))
        .cloned()
        .collect();
    assert_each_once(&rx, &delivered);
    let st = rx.stats();
    let data_requests = st.event_requests - st.probe_requests;
    assert!(
        data_requests <= max_requests,
        "{fault:?}: {data_requests} requests"
    );
    std::mem::forget(d);
    (rx, store, ids)
}

fn reply(status: u16, body: &str) -> HecFault {
    HecFault::Reply(status, body.to_string())
}

macro_rules! retried {
    ($($name:ident: $fault:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            let (rx, _s, _ids) = row($fault, 2, 0).await;
            assert_eq!(rx.stats().event_requests, 2, "one failure, one resend");
        }
    )*};
}

retried! {
    busy_503_code_9_is_retried: HecFault::Busy503;
    internal_500_code_8_is_retried: HecFault::Error500;
    queues_full_503_code_18_is_retried: reply(503, r#"{"text":"HEC is unhealthy, queues are full","code":18}"#);
    ack_unavailable_503_code_19_is_retried: reply(503, r#"{"text":"HEC unhealthy, ack service unavailable","code":19}"#);
    both_503_code_20_is_retried: reply(503, r#"{"code":20}"#);
    unknown_code_on_5xx_is_retried: reply(500, r#"{"text":"new","code":77}"#);
    too_many_429_is_retried: HecFault::TooMany429 { retry_after_secs: None };
    timeout_408_is_retried: reply(408, "");
    html_502_from_a_proxy_is_retried: HecFault::Html502;
    html_504_from_a_proxy_is_retried: reply(504, "<html>Gateway Timeout</html>");
    code_8_on_a_4xx_is_retried: reply(400, r#"{"text":"Internal server error","code":8}"#);
    a_200_without_code_0_is_not_delivered: reply(200, r#"{"text":"odd"}"#);
}

macro_rules! blocked_once {
    ($($name:ident: $fault:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            let (rx, _s, _ids) = row($fault, 2, 0).await;
            let st = rx.stats();
            assert_eq!(
                st.event_requests - st.probe_requests,
                2,
                "blocked, probed, resent once"
            );
            assert!(st.health_requests >= 1, "a blocked sink probes health");
            assert!(st.probe_requests >= 1, "and sends the blank-event probe");
        }
    )*};
}

blocked_once! {
    token_disabled_code_1_blocks: reply(403, r#"{"text":"Token disabled","code":1}"#);
    token_required_code_2_blocks: reply(401, r#"{"text":"Token is required","code":2}"#);
    invalid_authorization_code_3_blocks: reply(401, r#"{"text":"Invalid authorization","code":3}"#);
    invalid_token_code_4_blocks: reply(403, r#"{"text":"Invalid token","code":4}"#);
    no_data_code_5_blocks: reply(400, r#"{"text":"No data","code":5}"#);
    incorrect_index_code_7_blocks: reply(400, r#"{"text":"Incorrect index","code":7}"#);
    channel_missing_code_10_blocks: reply(400, r#"{"text":"Data channel is missing","code":10}"#);
    invalid_channel_code_11_blocks: reply(400, r#"{"text":"Invalid data channel","code":11}"#);
    ack_disabled_code_14_on_event_blocks: reply(400, r#"{"text":"ACK is disabled","code":14}"#);
    query_string_auth_code_16_blocks: reply(400, r#"{"code":16}"#);
    invalid_token_code_21_blocks: reply(400, r#"{"text":"Invalid token","code":21}"#);
    token_disabled_code_22_blocks: reply(400, r#"{"text":"Token disabled","code":22}"#);
    unknown_401_blocks: reply(401, "nope");
    unknown_403_blocks: reply(403, "<html>forbidden</html>");
    redirect_303_blocks: reply(303, "<html>see other</html>");
    not_found_404_blocks: reply(404, "not found");
    other_4xx_blocks: reply(418, "teapot");
}

macro_rules! bad_event {
    ($($name:ident: $code:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            let body = format!(
                r#"{{"text":"Invalid data format","code":{},"invalid-event-number":2}}"#,
                $code
            );
            let (rx, store, ids) = row(reply(400, &body), 2, 1).await;
            let dl = store.dead_letters(Some("splunk_hec"), 10).await.unwrap();
            assert_eq!(dl[0].id, ids[2], "event k is dead-lettered");
            assert!(dl[0].reason.contains(&format!("code {}", $code)), "{}", dl[0].reason);
            assert_eq!(rx.stats().event_requests, 2, "the rest resent once");
        }
    )*};
}

bad_event! {
    invalid_data_code_6_dead_letters_event_k: 6;
    event_required_code_12_dead_letters_event_k: 12;
    event_blank_code_13_dead_letters_event_k: 13;
    indexed_fields_code_15_dead_letters_event_k: 15;
}

#[tokio::test]
async fn invalid_data_without_event_number_is_bisected() {
    let (rx, _s, _ids) = row(
        reply(400, r#"{"text":"Invalid data format","code":6}"#),
        3,
        0,
    )
    .await;
    assert_eq!(
        rx.stats().event_requests,
        3,
        "refused whole, then two halves"
    );
}

#[tokio::test]
async fn too_large_413_is_halved() {
    let (rx, _s, _ids) = row(reply(413, "Content too large"), 3, 0).await;
    assert_eq!(rx.stats().event_requests, 3);
}

#[tokio::test]
async fn a_real_413_splits_down_and_dead_letters_only_an_event_too_large_alone() {
    let rx = receiver(HecReceiverConfig {
        max_content_length: 1500,
        ..HecReceiverConfig::default()
    })
    .await;
    let (_d, store, ids) = store_with(12).await;
    // One event bigger than HEC's limit on its own.
    let key = SiteKey {
        ns: NS.into(),
        corp: "acme".into(),
        site: "www".into(),
    };
    store
        .commit_page(
            &key,
            vec![NewEvent {
                id: "huge".into(),
                ts: 1_700_000_000,
                body: crate::store::Body::from(format!(
                    r#"{{"id":"huge","x":"{}"}}"#,
                    "y".repeat(3000)
                )),
            }],
            1_700_000_100,
            Some(120),
        )
        .await
        .unwrap();
    deliver_all(&store, sink_cfg(&rx), Duration::from_secs(15)).await;
    assert_each_once(&rx, &ids);
    let dl = store.dead_letters(Some("splunk_hec"), 10).await.unwrap();
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].id, "huge");
    assert!(rx.stats().statuses.contains_key(&413));
}

#[tokio::test]
async fn a_truncated_200_is_resent_at_least_once() {
    let (rx, _d, _ids) = {
        let rx = receiver(HecReceiverConfig::default()).await;
        let (d, store, ids) = store_with(8).await;
        rx.script([HecFault::Truncated200]);
        deliver_all(&store, sink_cfg(&rx), Duration::from_secs(10)).await;
        (rx, d, ids)
    };
    // The receiver indexed the first copy although its answer was cut: the resend is the
    // at-least-once price, and every id is there.
    assert!(rx.counts().values().all(|&n| n == 2));
    assert_eq!(rx.stats().event_requests, 2);
}

#[tokio::test]
async fn a_disabled_token_is_probed_with_backoff_not_hammered_and_loses_nothing() {
    let rx = receiver(HecReceiverConfig::default()).await;
    rx.set_token_disabled(TOKEN, true);
    let (_d, store, ids) = store_with(20).await;
    let r = start(&store, sink_cfg(&rx)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let st = rx.stats();
    assert_eq!(st.events_indexed, 0);
    assert!(st.health_requests >= 1, "{st:?}");
    // A probe is two requests (`/health`, then a blank event). Backoff from 50 ms to 400 ms
    // with full jitter averages ~10 probes in 2 s; the 50 ms floor alone would be ~80. Full
    // jitter has no floor, so the bound leaves room for unlucky draws.
    assert!(st.requests <= 50, "no retry storm: {st:?}");
    assert_eq!(pending(&store).await, 20, "data kept");
    rx.set_token_disabled(TOKEN, false);
    let done = wait_until(Duration::from_secs(10), async || pending(&store).await == 0).await;
    r.stop().await;
    assert!(done);
    assert_each_once(&rx, &ids);
}

#[tokio::test]
async fn health_503_keeps_a_blocked_sink_waiting() {
    let rx = receiver(HecReceiverConfig::default()).await;
    let (_d, store, _ids) = store_with(5).await;
    let sink = HecSink::new(sink_cfg(&rx), &store).await.unwrap();
    assert!(sink.healthcheck().await.is_ok());
    rx.set_queues_full(true);
    assert!(matches!(
        sink.healthcheck().await,
        Err(SinkError::Retryable { .. })
    ));
    rx.set_queues_full(false);
    rx.pause();
    assert!(matches!(
        sink.healthcheck().await,
        Err(SinkError::Retryable { .. })
    ));
    rx.resume();
    assert_eq!(rx.stats().events_indexed, 0, "the probe indexes nothing");
}

fn blocked_reason(r: Result<(), SinkError>) -> String {
    match r {
        Err(SinkError::Blocked { reason }) => reason,
        other => panic!("expected blocked, got {other:?}"),
    }
}

/// Splunk answers `/health` whatever the token (sinks.md A1), and so does the receiver: only
/// the blank-event probe finds a wrong token or an index the token may not write.
#[tokio::test]
async fn the_health_probe_finds_a_wrong_token_and_a_forbidden_index() {
    let rx = receiver(HecReceiverConfig {
        tokens: vec![HecToken {
            use_ack: true,
            allowed_indexes: Some(vec!["waf".into()]),
            ..HecToken::new(TOKEN)
        }],
        ..HecReceiverConfig::default()
    })
    .await;
    let (_d, store, _ids) = store_with(1).await;
    let with = |token: &str, index: Option<&str>| HecConfig {
        token: Secret::new(token),
        index: index.map(str::to_string),
        ..sink_cfg(&rx)
    };
    let ok = HecSink::new(with(TOKEN, Some("waf")), &store)
        .await
        .unwrap();
    ok.healthcheck().await.unwrap();

    let wrong = HecSink::new(with("wrong", Some("waf")), &store)
        .await
        .unwrap();
    let reason = blocked_reason(wrong.healthcheck().await);
    assert!(
        reason.contains("not valid") && reason.contains("token_file"),
        "{reason}"
    );

    let forbidden = HecSink::new(with(TOKEN, Some("secret")), &store)
        .await
        .unwrap();
    let reason = blocked_reason(forbidden.healthcheck().await);
    assert_eq!(
        reason,
        "index `secret` is not allowed for this token: add it to the token's allowed indexes \
         (Settings > Data inputs > HTTP Event Collector) or change `index`"
    );

    rx.set_token_disabled(TOKEN, true);
    let reason = blocked_reason(ok.healthcheck().await);
    assert!(reason.contains("disabled"), "{reason}");

    let st = rx.stats();
    assert_eq!(st.events_indexed, 0, "probes index nothing: {st:?}");
    assert_eq!(st.probe_requests, 4, "{st:?}");
    assert_eq!(st.health_requests, 4, "{st:?}");
}

async fn probe_error(url: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    let mut cfg = HecConfig::new(url.parse().unwrap(), Secret::new(TOKEN));
    cfg.timeout = Duration::from_secs(5);
    let sink = HecSink::new(cfg, &store).await.unwrap();
    crate::sink::http::test_servers::retryable_message(sink.healthcheck().await, url)
}

#[tokio::test]
async fn transport_failures_carry_a_fix_hint() {
    let port = crate::sink::http::test_servers::closed_port();
    let e = probe_error(&format!("https://127.0.0.1:{port}")).await;
    assert!(
        e.contains("is HEC enabled") && e.contains("default 8088"),
        "{e}"
    );

    // https:// to a plain-HTTP HEC.
    let rx = receiver(HecReceiverConfig::default()).await;
    let e = probe_error(&format!("https://{}", rx.addr())).await;
    assert!(
        e.contains("does not speak TLS") && e.contains("http://"),
        "{e}"
    );

    // http:// to a TLS port.
    let addr = crate::sink::http::test_servers::tls_alert().await;
    let e = probe_error(&format!("http://{addr}")).await;
    assert!(e.contains("must start with https://"), "{e}");
}

#[tokio::test]
async fn delayed_acks_settle_only_when_true() {
    let rx = receiver(HecReceiverConfig {
        // Long enough that a loaded machine still checks before it turns true.
        ack_delay: Duration::from_secs(2),
        ..ack_receiver_cfg()
    })
    .await;
    let (_d, store, ids) = store_with(30).await;
    let mut cfg = sink_cfg(&rx);
    cfg.batch_max_bytes = 4096;
    let r = start(&store, cfg).await;
    // Indexed quickly, but not settled before the acknowledgement turns true.
    assert!(
        wait_until(Duration::from_secs(5), async || rx.stats().events_indexed
            == 30)
        .await
    );
    assert_eq!(pending(&store).await, 30, "not settled on the 200 alone");
    assert!(!store.hec_acks("splunk_hec").await.unwrap().is_empty());
    assert!(wait_until(Duration::from_secs(5), async || pending(&store).await == 0).await);
    r.stop().await;
    assert_each_once(&rx, &ids);
    assert!(rx.stats().ack_requests >= 1);
    assert!(store.hec_acks("splunk_hec").await.unwrap().is_empty());
    assert_eq!(possible_duplicates(&store, "splunk_hec").await.unwrap(), 0);
}

#[tokio::test]
async fn a_lost_ack_is_resent_after_the_timeout_and_counted() {
    let rx = receiver(HecReceiverConfig {
        ack_loss: 1.0,
        ..ack_receiver_cfg()
    })
    .await;
    let (_d, store, ids) = store_with(10).await;
    let mut cfg = sink_cfg(&rx);
    cfg.ack_timeout = Duration::from_secs(1);
    let r = start(&store, cfg).await;
    assert!(
        wait_until(Duration::from_secs(5), async || rx.stats().event_requests
            >= 1)
        .await
    );
    rx.set_ack_loss(0.0);
    assert!(wait_until(Duration::from_secs(10), async || pending(&store).await == 0).await);
    r.stop().await;
    let counts = rx.counts();
    assert!(ids.iter().all(|id| counts[id] == 2), "{counts:?}");
    assert_eq!(possible_duplicates(&store, "splunk_hec").await.unwrap(), 10);
    let marked = rx
        .events()
        .iter()
        .filter(|e| {
            e.fields
                .get("possible_duplicate")
                .is_some_and(|v| v == "true")
        })
        .count();
    assert_eq!(marked, 10, "the resend is marked");
}

#[tokio::test]
async fn ack_true_without_ack_id_blocks_and_keeps_data() {
    let rx = receiver(HecReceiverConfig::default()).await;
    let (_d, store, _ids) = store_with(5).await;
    let mut cfg = sink_cfg(&rx);
    cfg.ack = AckMode::True;
    let r = start(&store, cfg).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    r.stop().await;
    assert_eq!(pending(&store).await, 5);
    let st = rx.stats();
    // Each cycle is one resend and one probe (counted as event requests too). Backoff from
    // 50 ms to 400 ms with full jitter averages ~9 cycles in 1.5 s; pausing only the 50 ms
    // minimum with jitter would be ~60 cycles. Full jitter has no floor, so the bound leaves
    // room for unlucky draws.
    assert!(
        st.event_requests <= 40,
        "probed with backoff (full jitter), not hammered: {st:?}"
    );
}

#[tokio::test]
async fn ack_auto_falls_back_to_200_when_ack_answers_code_14() {
    let rx = receiver(HecReceiverConfig {
        ack_delay: Duration::from_secs(3600),
        ..ack_receiver_cfg()
    })
    .await;
    let (_d, store, ids) = store_with(5).await;
    let r = start(&store, sink_cfg(&rx)).await;
    assert!(
        wait_until(Duration::from_secs(5), async || rx.stats().event_requests
            >= 1)
        .await
    );
    rx.set_token_ack(TOKEN, false);
    assert!(wait_until(Duration::from_secs(5), async || pending(&store).await == 0).await);
    r.stop().await;
    assert_each_once(&rx, &ids);
    assert!(store.hec_acks("splunk_hec").await.unwrap().is_empty());
}

#[tokio::test]
async fn ack_false_settles_on_200_without_polling() {
    let rx = receiver(ack_receiver_cfg()).await;
    let (_d, store, ids) = store_with(5).await;
    let mut cfg = sink_cfg(&rx);
    cfg.ack = AckMode::False;
    deliver_all(&store, cfg, Duration::from_secs(5)).await;
    assert_each_once(&rx, &ids);
    assert_eq!(rx.stats().ack_requests, 0);
}

#[tokio::test]
async fn a_restart_waits_for_pending_acks_instead_of_resending() {
    let rx = receiver(HecReceiverConfig {
        ack_delay: Duration::from_millis(1500),
        ..ack_receiver_cfg()
    })
    .await;
    let (_d, store, ids) = store_with(20).await;
    let r = start(&store, sink_cfg(&rx)).await;
    assert!(
        wait_until(Duration::from_secs(5), async || rx.stats().events_indexed
            == 20)
        .await
    );
    assert!(
        wait_until(Duration::from_secs(2), async || !store
            .hec_acks("splunk_hec")
            .await
            .unwrap()
            .is_empty())
        .await
    );
    // Crash: the driver and the sink go away while the acknowledgement is pending.
    r.task.abort();
    let _ = r.task.await;
    assert_eq!(pending(&store).await, 20);
    let channel = store.sink_meta("splunk_hec", CHANNEL_KEY).await.unwrap();

    let r = start(&store, sink_cfg(&rx)).await;
    assert!(wait_until(Duration::from_secs(10), async || pending(&store).await == 0).await);
    r.stop().await;
    assert_each_once(&rx, &ids);
    assert_eq!(rx.stats().event_requests, 1, "nothing sent twice");
    assert_eq!(
        store.sink_meta("splunk_hec", CHANNEL_KEY).await.unwrap(),
        channel,
        "same channel after the restart"
    );
    assert!(store.hec_acks("splunk_hec").await.unwrap().is_empty());
}

#[tokio::test]
async fn the_token_never_shows_in_debug_or_errors() {
    let rx = receiver(HecReceiverConfig::default()).await;
    let (_d, store, _ids) = store_with(1).await;
    let cfg = HecConfig {
        token: Secret::new("s3cr3t-hec-token-value"),
        ..sink_cfg(&rx)
    };
    let sink = HecSink::new(cfg, &store).await.unwrap();
    assert!(!format!("{sink:?}").contains("s3cr3t"));
    let batch = Batch {
        events: spooled(&store).await,
    };
    let err = sink.send(&batch).await.unwrap_err();
    assert!(matches!(err, SinkError::Blocked { .. }));
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}

fn batch_of(events: &[SpooledEvent]) -> Batch {
    Batch {
        events: events.to_vec(),
    }
}

fn marked(rx: &HecReceiver) -> Vec<String> {
    rx.events()
        .iter()
        .filter(|e| {
            e.fields
                .get("possible_duplicate")
                .is_some_and(|v| v == "true")
        })
        .map(|e| e.fields["request_id"].as_str().unwrap().to_string())
        .collect()
}

/// HEC restarted while request A waited for ackId 0, and hands out 0 again to request B: A
/// must be given up (resent, counted), and B's acknowledgement must settle B only.
#[tokio::test]
async fn a_reused_ack_id_gives_up_the_earlier_request_and_settles_only_the_later() {
    let rx = receiver(HecReceiverConfig {
        ack_delay: Duration::from_secs(3600),
        ..ack_receiver_cfg()
    })
    .await;
    let (_d, store, ids) = store_with(10).await;
    let all = spooled(&store).await;
    let (a, b) = all.split_at(5);
    let sink = Arc::new(HecSink::new(sink_cfg(&rx), &store).await.unwrap());
    let first = {
        let (sink, a) = (sink.clone(), batch_of(a));
        tokio::spawn(async move { sink.send(&a).await })
    };
    let a_seqs: Vec<i64> = a.iter().map(|e| e.seq).collect();
    let b_seqs: Vec<i64> = b.iter().map(|e| e.seq).collect();
    let rows = async |seqs: &[i64]| {
        store
            .hec_acks("splunk_hec")
            .await
            .unwrap()
            .iter()
            .any(|r| r.ack_id == 0 && r.seqs == seqs)
    };
    assert!(wait_until(Duration::from_secs(5), async || rows(&a_seqs).await).await);
    rx.script([HecFault::RestartAcks]);
    let second = {
        let (sink, b) = (sink.clone(), batch_of(b));
        tokio::spawn(async move { sink.send(&b).await })
    };
    assert!(wait_until(Duration::from_secs(5), async || rows(&b_seqs).await).await);
    let a_ack = tokio::time::timeout(Duration::from_secs(30), first)
        .await
        .expect("A is given up at once, not after ack_timeout")
        .unwrap()
        .unwrap();
    assert!(
        a_ack
            .items
            .iter()
            .all(|i| matches!(i, ItemOutcome::Retry { .. })),
        "{a_ack:?}"
    );
    rx.set_ack_delay(Duration::ZERO);
    let b_ack = second.await.unwrap().unwrap();
    assert_eq!(b_ack, Ack::all_delivered(5), "B settles with its own ack");
    let again = sink.send(&batch_of(a)).await.unwrap();
    assert_eq!(again, Ack::all_delivered(5), "A resent and acknowledged");
    let counts = rx.counts();
    assert!(ids[..5].iter().all(|id| counts[id] == 2), "{counts:?}");
    assert!(ids[5..].iter().all(|id| counts[id] == 1), "{counts:?}");
    assert_eq!(marked(&rx), ids[..5].to_vec(), "the resend of A is marked");
    assert_eq!(possible_duplicates(&store, "splunk_hec").await.unwrap(), 5);
    assert!(store.hec_acks("splunk_hec").await.unwrap().is_empty());
}

/// A row restored at start-up waits for ackId 0 with nobody waiting on it yet; HEC then
/// hands out 0 to a new request. The restored events must be resent, not stall forever and
/// not be settled by the new request's acknowledgement.
#[tokio::test]
async fn a_reused_ack_id_of_a_restored_row_does_not_stall_its_events() {
    let rx = receiver(HecReceiverConfig {
        ack_delay: Duration::ZERO,
        ..ack_receiver_cfg()
    })
    .await;
    let (_d, store, ids) = store_with(10).await;
    let all = spooled(&store).await;
    let (a, rest) = all.split_at(5);
    let (b, c) = rest.split_at(4);
    let channel = store
        .sink_meta_get_or_insert("splunk_hec", CHANNEL_KEY, &new_guid())
        .await
        .unwrap();
    // C keeps an id pending that HEC never confirms (it never handed it out).
    for (id, evs) in [(0, a), (7, c)] {
        store
            .insert_hec_ack(
                "splunk_hec",
                PendingAck {
                    channel: channel.clone(),
                    ack_id: id,
                    seqs: evs.iter().map(|e| e.seq).collect(),
                    sent_at: crate::time::now(),
                },
            )
            .await
            .unwrap();
    }
    let sink = HecSink::new(sink_cfg(&rx), &store).await.unwrap();
    assert_eq!(
        sink.send(&batch_of(b)).await.unwrap(),
        Ack::all_delivered(4)
    );
    let mut settled = false;
    for _ in 0..3 {
        let ack = sink.send(&batch_of(a)).await.unwrap();
        if ack == Ack::all_delivered(5) {
            settled = true;
            break;
        }
    }
    assert!(settled, "the restored events are resent, not stuck");
    let counts = rx.counts();
    assert!(
        ids[..9].iter().all(|id| counts.get(id) == Some(&1)),
        "{counts:?}"
    );
    assert_eq!(marked(&rx), ids[..5].to_vec());
    assert_eq!(possible_duplicates(&store, "splunk_hec").await.unwrap(), 5);
}

async fn blocked_reason_in_store(store: &Store) -> Option<String> {
    store
        .blocked_sinks()
        .await
        .unwrap()
        .into_iter()
        .find(|b| b.sink == "splunk_hec")
        .map(|b| b.reason)
}

/// `/ack` refused for good (a proxy, the token, the channel): the sink blocks with the cause
/// and the fix, keeps the data, resends nothing, and delivers once `/ack` answers again.
async fn ack_refusal_blocks(fault: HecFault, needle: &str) {
    let rx = receiver(HecReceiverConfig {
        ack_delay: Duration::ZERO,
        ..ack_receiver_cfg()
    })
    .await;
    rx.set_ack_fault(Some(fault.clone()));
    let (_d, store, ids) = store_with(6).await;
    let r = start(&store, sink_cfg(&rx)).await;
    let blocked = wait_until(Duration::from_secs(10), async || {
        blocked_reason_in_store(&store).await.is_some()
    })
    .await;
    let reason = blocked_reason_in_store(&store).await;
    assert!(blocked, "{fault:?}: the sink blocks");
    let reason = reason.unwrap();
    assert!(reason.contains(needle), "{fault:?}: {reason}");
    assert_eq!(pending(&store).await, 6, "data kept");
    rx.set_ack_fault(None);
    assert!(wait_until(Duration::from_secs(20), async || pending(&store).await == 0).await);
    r.stop().await;
    assert_each_once(&rx, &ids);
    let st = rx.stats();
    assert_eq!(
        st.event_requests - st.probe_requests,
        1,
        "nothing resent: {st:?}"
    );
    assert_eq!(possible_duplicates(&store, "splunk_hec").await.unwrap(), 0);
    assert_eq!(blocked_reason_in_store(&store).await, None, "recovered");
}

macro_rules! ack_blocks {
    ($($name:ident: $fault:expr, $needle:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            ack_refusal_blocks($fault, $needle).await;
        }
    )*};
}

ack_blocks! {
    ack_query_401_from_a_proxy_blocks: reply(401, "<html>Unauthorized</html>"), "or set ack = false";
    ack_query_403_invalid_token_blocks: reply(403, r#"{"text":"Invalid token","code":4}"#), "token_file";
    ack_query_404_blocks: reply(404, "not found"), "/services/collector/ack";
    ack_query_channel_missing_code_10_blocks: reply(400, r#"{"text":"Data channel is missing","code":10}"#), "X-Splunk-Request-Channel";
    ack_query_invalid_channel_code_11_blocks: reply(400, r#"{"text":"Invalid data channel","code":11}"#), "X-Splunk-Request-Channel";
}

#[tokio::test]
async fn ack_query_5xx_and_garbage_are_asked_again_without_blocking() {
    let rx = receiver(HecReceiverConfig {
        ack_delay: Duration::ZERO,
        ..ack_receiver_cfg()
    })
    .await;
    rx.script_ack([
        HecFault::Busy503,
        HecFault::Html502,
        reply(500, r#"{"text":"Internal server error","code":8}"#),
        reply(200, "garbage"),
        reply(200, r#"{"acks":"#),
        reply(200, r#"{"text":"Success","code":0}"#),
    ]);
    let (_d, store, ids) = store_with(6).await;
    deliver_all(&store, sink_cfg(&rx), Duration::from_secs(20)).await;
    assert_each_once(&rx, &ids);
    let st = rx.stats();
    assert!(st.ack_requests >= 7, "{st:?}");
    assert_eq!(
        st.event_requests, 1,
        "no resend, no block, no probe: {st:?}"
    );
    assert_eq!(possible_duplicates(&store, "splunk_hec").await.unwrap(), 0);
}

/// With `ack = true`, `/ack` answering code 14 (acknowledgement turned off on the token)
/// blocks the sink with the cause and the fix; turned on again, the pending request settles.
#[tokio::test]
async fn ack_true_and_ack_code_14_blocks_until_acknowledgement_is_back() {
    let rx = receiver(HecReceiverConfig {
        ack_delay: Duration::from_secs(3600),
        ..ack_receiver_cfg()
    })
    .await;
    let (_d, store, ids) = store_with(5).await;
    let mut cfg = sink_cfg(&rx);
    cfg.ack = AckMode::True;
    let r = start(&store, cfg).await;
    assert!(
        wait_until(Duration::from_secs(5), async || !store
            .hec_acks("splunk_hec")
            .await
            .unwrap()
            .is_empty())
        .await
    );
    rx.set_token_ack(TOKEN, false);
    assert!(
        wait_until(Duration::from_secs(10), async || blocked_reason_in_store(
            &store
        )
        .await
        .is_some())
        .await
    );
    let reason = blocked_reason_in_store(&store).await.unwrap();
    assert!(
        reason.contains("code 14")
            && reason.contains("enable indexer acknowledgement on the token"),
        "{reason}"
    );
    assert_eq!(pending(&store).await, 5, "data kept");
    rx.set_token_ack(TOKEN, true);
    rx.set_ack_delay(Duration::ZERO);
    assert!(wait_until(Duration::from_secs(20), async || pending(&store).await == 0).await);
    r.stop().await;
    assert_each_once(&rx, &ids);
    let st = rx.stats();
    assert_eq!(
        st.event_requests - st.probe_requests,
        1,
        "nothing resent: {st:?}"
    );
}

/// A 400 naming event k after HEC really indexed the events before it: k is dead-lettered,
/// the prefix is resent marked and counted (whether HEC keeps it is unverified), the rest
/// once; replaying the dead letter ends with every event indexed.
#[tokio::test]
async fn the_prefix_before_a_bad_event_is_resent_marked_and_counted() {
    let rx = receiver(HecReceiverConfig::default()).await;
    let (_d, store, ids) = store_with(8).await;
    rx.script([HecFault::BadEvent { k: 3, code: 6 }]);
    deliver_all(&store, sink_cfg(&rx), Duration::from_secs(15)).await;
    let dl = store.dead_letters(Some("splunk_hec"), 10).await.unwrap();
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].id, ids[3]);
    let counts = rx.counts();
    assert!(ids[..3].iter().all(|id| counts[id] == 2), "{counts:?}");
    assert!(ids[4..].iter().all(|id| counts[id] == 1), "{counts:?}");
    assert_eq!(
        marked(&rx),
        ids[..3].to_vec(),
        "the prefix resend is marked"
    );
    assert_eq!(possible_duplicates(&store, "splunk_hec").await.unwrap(), 3);

    assert_eq!(
        store
            .replay_dead_letters(NS, Some("splunk_hec"), vec![])
            .await
            .unwrap(),
        1
    );
    deliver_all(&store, sink_cfg(&rx), Duration::from_secs(15)).await;
    let counts = rx.counts();
    assert!(
        ids.iter().all(|id| counts.contains_key(id)),
        "every event indexed"
    );
    assert_eq!(counts[&ids[3]], 1);
}

/// Rows left by a previous run: one past its acknowledgement timeout (waited for no longer:
/// resent at once), one older than twice the timeout (forgotten at start). Both are resent
/// marked and counted.
#[tokio::test]
async fn restored_rows_past_their_timeout_are_resent_marked_and_counted() {
    let rx = receiver(ack_receiver_cfg()).await;
    let (_d, store, ids) = store_with(6).await;
    let all = spooled(&store).await;
    let channel = store
        .sink_meta_get_or_insert("splunk_hec", CHANNEL_KEY, &new_guid())
        .await
        .unwrap();
    let now = crate::time::now();
    for (id, evs, age) in [(0, &all[..3], 70), (1, &all[3..5], 200)] {
        store
            .insert_hec_ack(
                "splunk_hec",
                PendingAck {
                    channel: channel.clone(),
                    ack_id: id,
                    seqs: evs.iter().map(|e| e.seq).collect(),
                    sent_at: now - age,
                },
            )
            .await
            .unwrap();
    }
    let mut cfg = sink_cfg(&rx);
    cfg.ack_timeout = Duration::from_secs(60);
    deliver_all(&store, cfg, Duration::from_secs(15)).await;
    assert_each_once(&rx, &ids);
    let mut resent = marked(&rx);
    resent.sort();
    assert_eq!(resent, ids[..5].to_vec());
    assert_eq!(possible_duplicates(&store, "splunk_hec").await.unwrap(), 5);
    assert!(store.hec_acks("splunk_hec").await.unwrap().is_empty());
}

/// HEC (or the network) does not answer within the sink's `timeout`: the request fails as
/// retryable, the driver resends, nothing is lost. The late request may still be indexed after
/// the client gave up (at least once, not exactly once).
#[tokio::test]
async fn a_request_timeout_is_retried_and_loses_nothing() {
    let rx = receiver(HecReceiverConfig::default()).await;
    let (_d, store, ids) = store_with(8).await;
    let mut cfg = sink_cfg(&rx);
    cfg.timeout = Duration::from_secs(1);

    rx.script([HecFault::Delay(Duration::from_secs(3))]);
    let sink = HecSink::new(cfg.clone(), &store).await.unwrap();
    let batch = batch_of(&spooled(&store).await);
    match sink.send(&batch).await {
        Err(SinkError::Retryable { reason, .. }) => {
            assert!(reason.contains("timed out"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    drop(sink);

    rx.script([HecFault::Delay(Duration::from_secs(3))]);
    deliver_all(&store, cfg, Duration::from_secs(20)).await;
    let counts = rx.counts();
    assert!(
        ids.iter()
            .all(|id| (1..=3).contains(counts.get(id).unwrap_or(&0))),
        "every id indexed, late copies aside: {counts:?}"
    );
    assert_eq!(rx.stats().event_requests, 3, "two timed out, one answered");
    assert!(store.dead_letters(None, 10).await.unwrap().is_empty());
}

/// `Retry-After` on a 429 reaches the driver: as the batch's error when the only request is
/// refused, on the refused request's events when others got through, and the driver waits at
/// least that long before resending.
#[tokio::test]
async fn retry_after_from_hec_is_honoured() {
    let two = Duration::from_secs(2);
    let rx = receiver(HecReceiverConfig::default()).await;
    let (_d, store, _ids) = store_with(8).await;
    let batch = batch_of(&spooled(&store).await);

    rx.script([HecFault::TooMany429 {
        retry_after_secs: Some(2),
    }]);
    let sink = HecSink::new(sink_cfg(&rx), &store).await.unwrap();
    match sink.send(&batch).await {
        Err(SinkError::Retryable { after, .. }) => assert_eq!(after, Some(two)),
        other => panic!("{other:?}"),
    }

    let mut small = sink_cfg(&rx);
    small.batch_max_bytes = 1200;
    small.gzip = false;
    rx.script([HecFault::TooMany429 {
        retry_after_secs: Some(2),
    }]);
    let sink = HecSink::new(small, &store).await.unwrap();
    let ack = sink.send(&batch).await.unwrap();
    let paused = ack
        .items
        .iter()
        .filter(|i| **i == ItemOutcome::Retry { after: Some(two) })
        .count();
    let delivered = ack
        .items
        .iter()
        .filter(|i| **i == ItemOutcome::Delivered)
        .count();
    assert!(
        paused > 0 && delivered > 0 && paused + delivered == 8,
        "{ack:?}"
    );
    drop(sink);

    let rx = receiver(HecReceiverConfig::default()).await;
    rx.script([HecFault::TooMany429 {
        retry_after_secs: Some(2),
    }]);
    let (_d2, store, ids2) = store_with(8).await;
    deliver_all(&store, sink_cfg(&rx), Duration::from_secs(20)).await;
    assert_each_once(&rx, &ids2);
    let at = rx.arrivals();
    assert_eq!(at.len(), 2);
    // DELAYS caps the driver's own backoff at 400 ms: only Retry-After explains 2 s.
    assert!(at[1] - at[0] >= two, "resent after {:?}", at[1] - at[0]);
}

/// Everything spooled for the sink (the stores in these tests hold at most 10 events).
async fn spooled(store: &Store) -> Vec<SpooledEvent> {
    store
        .read_batch(NS, "splunk_hec", 10, 1 << 20)
        .await
        .unwrap()
}
