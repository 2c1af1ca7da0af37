//! The HEC receiver's own answers, request by request.

use serde_json::Value;

use super::hec::*;

async fn post(
    rx: &HecReceiver,
    path: &str,
    auth: Option<&str>,
    channel: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", rx.url()))
        .body(body.to_string());
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    if let Some(c) = channel {
        req = req.header("X-Splunk-Request-Channel", c);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// (Authorization, channel, body, expected status, expected code)
type Case<'a> = (Option<&'a str>, Option<&'a str>, &'a str, u16, i64);

const EV: &str = "/services/collector/event";
const CH: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

#[tokio::test]
async fn answers_follow_the_hec_code_table() {
    let rx = HecReceiver::start(
        HecReceiverConfig {
            tokens: vec![
                HecToken {
                    allowed_indexes: Some(vec!["main".into()]),
                    ..HecToken::new("t")
                },
                HecToken {
                    use_ack: true,
                    ..HecToken::new("a")
                },
            ],
            max_content_length: 200,
            ..HecReceiverConfig::default()
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await
    .unwrap();
    let ok = r#"{"event":{"x":1},"fields":{"request_id":"r1"}} {"event":"y","fields":{"request_id":"r2"}}"#;
    let cases: Vec<Case<'_>> = vec![
        (None, None, ok, 401, 2),
        (Some("Bearer t"), None, ok, 401, 3),
        (Some("Splunk nope"), None, ok, 403, 4),
        (Some("Splunk t"), None, "  ", 400, 5),
        (Some("Splunk t"), None, r#"[{"event":1}]"#, 400, 6),
        (Some("Splunk t"), None, r#"{"fields":{}}"#, 400, 12),
        (Some("Splunk t"), None, r#"{"event":""}"#, 400, 13),
        (
            Some("Splunk t"),
            None,
            r#"{"event":1,"fields":{"a":{"b":1}}}"#,
            400,
            15,
        ),
        (
            Some("Splunk t"),
            None,
            r#"{"event":1,"index":"secret"}"#,
            400,
            7,
        ),
        // Token, then index, then the event: the sink's blank-event probe relies on it.
        (
            Some("Splunk nope"),
            None,
            r#"{"event":"","index":"main"}"#,
            403,
            4,
        ),
        (
            Some("Splunk t"),
            None,
            r#"{"event":"","index":"secret"}"#,
            400,
            7,
        ),
        (
            Some("Splunk t"),
            None,
            r#"{"event":"","index":"main"}"#,
            400,
            13,
        ),
        (
            Some("Splunk t"),
            None,
            r#"{"event":1,"index":"main"}{"event":1,"index":"secret"}"#,
            400,
            7,
        ),
        (Some("Splunk a"), None, ok, 400, 10),
        (Some("Splunk a"), Some("not-a-guid"), ok, 400, 11),
        (Some("Splunk t"), None, ok, 200, 0),
    ];
    for (auth, ch, body, status, code) in cases {
        let (s, v) = post(&rx, EV, auth, ch, body).await;
        assert_eq!(
            (s, v["code"].as_i64()),
            (status, Some(code)),
            "{auth:?} {body}"
        );
    }
    let (s, v) = post(
        &rx,
        EV,
        Some("Splunk t"),
        None,
        r#"{"event":1,"fields":{"request_id":"p"}}{"event":1}garbage"#,
    )
    .await;
    assert_eq!((s, v["invalid-event-number"].as_i64()), (400, Some(2)));
    assert_eq!(rx.count("p"), 1, "the prefix before a bad event is indexed");
    let (s, _) = post(
        &rx,
        EV,
        Some("Splunk t"),
        None,
        &format!(r#"{{"event":"{}"}}"#, "x".repeat(300)),
    )
    .await;
    assert_eq!(s, 413);
    assert_eq!(rx.count("r1"), 1);
    assert_eq!(
        rx.stats().probe_requests,
        4,
        "blank first events are counted as probes, refused ones too"
    );
    assert_eq!(
        post(
            &rx,
            "/services/collector/ack",
            Some("Splunk t"),
            Some(CH),
            r#"{"acks":[0]}"#
        )
        .await
        .1["code"],
        14
    );
}

#[tokio::test]
async fn ack_ids_count_up_per_channel_and_are_forgotten_once_true() {
    let rx = HecReceiver::start(
        HecReceiverConfig {
            tokens: vec![HecToken {
                use_ack: true,
                ..HecToken::new("a")
            }],
            ack_delay: std::time::Duration::ZERO,
            ..HecReceiverConfig::default()
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await
    .unwrap();
    let body = r#"{"event":1}"#;
    assert_eq!(
        post(&rx, EV, Some("Splunk a"), Some(CH), body).await.1["ackId"],
        0
    );
    assert_eq!(
        post(&rx, EV, Some("Splunk a"), Some(CH), body).await.1["ackId"],
        1
    );
    let q = |ids: &str| format!(r#"{{"acks":[{ids}]}}"#);
    let (_, v) = post(
        &rx,
        "/services/collector/ack",
        Some("Splunk a"),
        Some(CH),
        &q("0,1"),
    )
    .await;
    assert_eq!(v["acks"], serde_json::json!({"0": true, "1": true}));
    let (_, v) = post(
        &rx,
        "/services/collector/ack",
        Some("Splunk a"),
        Some(CH),
        &q("0"),
    )
    .await;
    assert_eq!(v["acks"]["0"], false, "forgotten after answering true");
    rx.pause();
    assert_eq!(post(&rx, EV, Some("Splunk a"), Some(CH), body).await.0, 503);
}

async fn get(rx: &HecReceiver, path: &str, auth: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(format!("{}{path}", rx.url()));
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn health_ignores_the_token_like_splunk() {
    let rx = HecReceiver::start(HecReceiverConfig::default(), ([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    rx.set_token_disabled("hec-token", true);
    for auth in [
        None,
        Some("Splunk wrong"),
        Some("Splunk hec-token"),
        Some("Bearer x"),
    ] {
        let (s, v) = get(&rx, "/services/collector/health", auth).await;
        assert_eq!((s, v["code"].as_i64()), (200, Some(17)), "{auth:?}");
    }
    rx.set_queues_full(true);
    assert_eq!(get(&rx, "/services/collector/health", None).await.0, 503);
}

#[tokio::test]
async fn a_bad_event_fault_indexes_the_prefix_and_names_k() {
    let rx = HecReceiver::start(HecReceiverConfig::default(), ([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    rx.script([HecFault::BadEvent { k: 2, code: 6 }]);
    let body: String = (0..4)
        .map(|i| format!(r#"{{"event":{i},"fields":{{"request_id":"e{i}"}}}}"#))
        .collect();
    let (s, v) = post(&rx, EV, Some("Splunk hec-token"), None, &body).await;
    assert_eq!(
        (s, v["code"].as_i64(), v["invalid-event-number"].as_i64()),
        (400, Some(6), Some(2))
    );
    let c = rx.counts();
    assert_eq!(
        (c.get("e0"), c.get("e1"), c.get("e2")),
        (Some(&1), Some(&1), None)
    );
}

#[tokio::test]
async fn a_restart_hands_out_ack_ids_again_and_ack_faults_answer_ack_queries() {
    let rx = HecReceiver::start(
        HecReceiverConfig {
            tokens: vec![HecToken {
                use_ack: true,
                ..HecToken::new("a")
            }],
            ..HecReceiverConfig::default()
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await
    .unwrap();
    let body = r#"{"event":1}"#;
    let auth = Some("Splunk a");
    assert_eq!(post(&rx, EV, auth, Some(CH), body).await.1["ackId"], 0);
    rx.script([HecFault::RestartAcks]);
    assert_eq!(
        post(&rx, EV, auth, Some(CH), body).await.1["ackId"],
        0,
        "reused"
    );

    const ACK: &str = "/services/collector/ack";
    let q = r#"{"acks":[0]}"#;
    rx.script_ack([HecFault::Html502]);
    rx.set_ack_fault(Some(HecFault::Reply(404, "nope".into())));
    assert_eq!(
        post(&rx, ACK, auth, Some(CH), q).await.0,
        502,
        "scripted first"
    );
    assert_eq!(post(&rx, ACK, auth, Some(CH), q).await.0, 404);
    assert_eq!(
        post(&rx, ACK, auth, Some(CH), q).await.0,
        404,
        "until cleared"
    );
    rx.set_ack_fault(None);
    assert_eq!(post(&rx, ACK, auth, Some(CH), q).await.0, 200);
    assert_eq!(rx.arrivals().len(), 2);
}

#[test]
fn hec_faults_parse() {
    let (f, k) =
        HecFaults::parse("503=0.1, 500=0.05,429=0.02,502=0.01,truncate=0.01,latency_ms=20,ack_delay_ms=1500,ack_loss=0.2")
            .unwrap();
    assert_eq!(
        (
            f.busy_503,
            f.error_500,
            f.too_many_429,
            f.html_502,
            f.truncated_200,
            f.latency_ms
        ),
        (0.1, 0.05, 0.02, 0.01, 0.01, 20)
    );
    assert_eq!(k.ack_delay, Some(std::time::Duration::from_millis(1500)));
    assert_eq!(k.ack_loss, Some(0.2));
    assert_eq!(HecFaults::parse("").unwrap().1, HecAckKnobs::default());
    for bad in ["503", "503=2", "x=1", "latency_ms=-1", "503=0.6,500=0.6"] {
        assert!(HecFaults::parse(bad).is_err(), "{bad}");
    }
}
