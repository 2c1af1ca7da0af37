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
