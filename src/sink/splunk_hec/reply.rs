//! What a HEC reply means, by HTTP status AND body `code` (sinks.md A3).
//!
//! Pure functions, so every row of the table is unit-tested without a server.

use std::time::Duration;

use serde::Deserialize;

use crate::sink::http::{TransportHints, snippet};
use crate::sink::{Ack, ItemOutcome, SinkError};

/// A HEC JSON reply (`{"text":..,"code":..}` plus optional keys).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct HecReply {
    pub(crate) text: Option<String>,
    pub(crate) code: Option<i64>,
    #[serde(rename = "invalid-event-number")]
    pub(crate) invalid_event_number: Option<i64>,
    #[serde(rename = "ackId")]
    pub(crate) ack_id: Option<u64>,
}

/// The verdict on one `/services/collector/event` request.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// 200 code 0: received (with the `ackId` when the token uses acknowledgement).
    Accepted { ack_id: Option<u64> },
    /// Per-event outcomes (a bad event named by `invalid-event-number`).
    Partial(Ack),
    /// The whole request failed.
    Failed(SinkError),
}

fn describe(r: &HecReply) -> String {
    format!(
        "{} (code {})",
        r.text.as_deref().unwrap_or("no text"),
        r.code.map_or("none".to_string(), |c| c.to_string())
    )
}

/// The fix for a refused token, where HEC's code does not say more.
const TOKEN_FIX: &str = "set the sink's token (`token`, `token_file` or \
    SIGSCI_EXPORT_SINK_<NAME>_TOKEN) to an enabled token of Splunk's HEC inputs \
    (Settings > Data inputs > HTTP Event Collector); a proxy in front of HEC may also refuse it";

/// Why a config/auth code blocks the sink, and the fix.
fn blocked_reason(code: i64, r: &HecReply) -> Option<String> {
    let fix = code_fix(code)?;
    Some(format!("HEC refused the request: {}; {fix}", describe(r)))
}

/// The cause and fix of a HEC code that blocks the sink (`None`: not such a code).
fn code_fix(code: i64) -> Option<&'static str> {
    Some(match code {
        1 | 22 => {
            "the HEC token is disabled: enable it in Splunk (Settings > Data inputs > HTTP Event Collector)"
        }
        2 => "no token was sent: this is a proxy stripping the Authorization header, or a bug",
        3 => {
            "the Authorization header was refused: a proxy may rewrite it; the header must be `Splunk <token>`"
        }
        4 | 21 => {
            "the HEC token is not valid: set the sink's token (`token`, `token_file` or \
             SIGSCI_EXPORT_SINK_<NAME>_TOKEN) to one listed in Splunk's HEC inputs \
             (Settings > Data inputs > HTTP Event Collector)"
        }
        7 => {
            "the index is not allowed for this token: fix the sink's `index` or the token's allowed indexes"
        }
        10 => {
            "the token requires indexer acknowledgement and no channel arrived: a proxy in front \
             of HEC may drop the X-Splunk-Request-Channel header (let it through); otherwise \
             report this as a bug"
        }
        11 => {
            "HEC refused the channel GUID: a proxy in front of HEC may rewrite the \
             X-Splunk-Request-Channel header (let it through); otherwise report this as a bug"
        }
        14 => {
            "HEC says acknowledgement is disabled for this token: set ack = false or enable it on the token"
        }
        16 => "query-string authorization is not enabled: use the HEC base URL without a query",
        _ => return None,
    })
}

/// What one answer to `POST /services/collector/ack` means.
#[derive(Debug, PartialEq)]
pub(crate) enum AckAnswer {
    /// The state of each id asked about (ids as strings, as HEC sends them).
    Acks(std::collections::HashMap<String, bool>),
    /// Code 14: acknowledgement is off for the token; HEC's text.
    Disabled(String),
    /// Asking again will not help until someone acts: the cause and the fix.
    Blocked(String),
    /// Ask again later: what happened.
    Retry(String),
}

#[derive(Deserialize)]
struct AckReply {
    acks: Option<std::collections::HashMap<String, bool>>,
    text: Option<String>,
    code: Option<i64>,
}

const ACK_PATH: &str = "the acknowledgement query (POST /services/collector/ack)";

/// Classifies an `/ack` answer. Only a 200 with `acks` says anything about the ids; auth,
/// channel, path and other 4xx answers are persistent (a proxy that only lets `/event`
/// through, a revoked token) and block the sink; 5xx, 408, 429 and unreadable 200s are asked
/// again.
pub(crate) fn classify_ack(status: u16, body: &[u8]) -> AckAnswer {
    let parsed: Option<AckReply> = serde_json::from_slice(body).ok();
    let reply = parsed.as_ref().map(|p| HecReply {
        text: p.text.clone(),
        code: p.code,
        ..HecReply::default()
    });
    let what = || match &reply {
        Some(r) if r.code.is_some() => describe(r),
        _ => format!("`{}`", snippet(body)),
    };
    match (status, parsed) {
        (
            200,
            Some(AckReply {
                acks: Some(map), ..
            }),
        ) => AckAnswer::Acks(map),
        (
            400,
            Some(AckReply {
                code: Some(14),
                text,
                ..
            }),
        ) => AckAnswer::Disabled(text.unwrap_or_else(|| "ACK is disabled".to_string())),
        (300..=399, _) => AckAnswer::Blocked(format!(
            "HEC answered a redirect ({status}) to {ACK_PATH}: the url points at Splunk Web \
             (port 8000)? use the HEC port 8088"
        )),
        (404, _) => AckAnswer::Blocked(format!(
            "HEC answered 404 to {ACK_PATH}: {}; a proxy in front of HEC may not forward that \
             path (let it through), or the url is not the HEC base; or set ack = false",
            what()
        )),
        (400..=499, _) if status != 408 && status != 429 => {
            let code = reply.as_ref().and_then(|r| r.code);
            AckAnswer::Blocked(match code.and_then(code_fix) {
                Some(fix) => format!("HEC refused {ACK_PATH}: {}; {fix}", what()),
                None if status == 401 || status == 403 => format!(
                    "HEC (or a proxy in front of it) answered {status} to {ACK_PATH}: {}; let \
                     that path and the token through the proxy, or set ack = false",
                    what()
                ),
                None => format!(
                    "HEC answered {status} to {ACK_PATH}: {}; if this persists, set \
                     ack = false and report it",
                    what()
                ),
            })
        }
        (200, _) => AckAnswer::Retry(format!(
            "HEC answered {ACK_PATH} with 200 but no acknowledgement states: {}",
            what()
        )),
        _ => AckAnswer::Retry(format!("HEC answered {status} to {ACK_PATH}: {}", what())),
    }
}

/// Classifies the reply to one request carrying `n` events.
pub(crate) fn classify(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    n: usize,
) -> Verdict {
    let parsed: Option<HecReply> = serde_json::from_slice(body).ok();
    let retry = |reason: String| {
        Verdict::Failed(SinkError::Retryable {
            reason,
            after: retry_after,
        })
    };
    let blocked = |reason: String| Verdict::Failed(SinkError::Blocked { reason });
    match status {
        200..=299 => match parsed {
            Some(r) if r.code == Some(0) => Verdict::Accepted { ack_id: r.ack_id },
            // A truncated or foreign 200 proves nothing was received: not delivered.
            _ => retry(format!(
                "HEC answered {status} without a success code; not counted as delivered: {}",
                snippet(body)
            )),
        },
        300..=399 => blocked(format!(
            "HEC answered a redirect ({status}): the url points at Splunk Web (port 8000)? \
             use the HEC port 8088"
        )),
        413 => Verdict::Failed(SinkError::TooLarge),
        408 | 429 => retry(format!("HEC answered {status}: {}", snippet(body))),
        500..=599 => match parsed {
            Some(r) => retry(format!("HEC answered {status}: {}", describe(&r))),
            None => retry(format!(
                "HEC (or a proxy in front of it) answered {status}: {}",
                snippet(body)
            )),
        },
        400..=499 => {
            let Some(r) = parsed.filter(|r| r.code.is_some()) else {
                return match status {
                    401 | 403 => blocked(format!(
                        "HEC answered {status} (authentication) without a HEC code: `{}`; {TOKEN_FIX}",
                        snippet(body)
                    )),
                    404 => blocked(format!(
                        "HEC answered 404: is the url the HEC base (e.g. https://splunk:8088)? {}",
                        snippet(body)
                    )),
                    _ => blocked(format!("HEC answered {status}: {}", snippet(body))),
                };
            };
            let code = r.code.unwrap_or(-1);
            match code {
                8 | 9 | 18..=20 => retry(format!("HEC answered {status}: {}", describe(&r))),
                6 | 12 | 13 | 15 => match r.invalid_event_number {
                    Some(k) if k >= 0 && (k as usize) < n => {
                        let k = k as usize;
                        let reason = format!(
                            "HEC rejected this event: {} (invalid-event-number {k})",
                            describe(&r)
                        );
                        // Events before k are resent: HEC may or may not have indexed them
                        // (unverified), and a duplicate is better than a loss.
                        let items = (0..n)
                            .map(|i| {
                                if i == k {
                                    ItemOutcome::Rejected {
                                        reason: reason.clone(),
                                    }
                                } else {
                                    ItemOutcome::Retry { after: None }
                                }
                            })
                            .collect();
                        Verdict::Partial(Ack { items })
                    }
                    _ => Verdict::Failed(SinkError::Invalid {
                        reason: format!("HEC refused the data: {}", describe(&r)),
                    }),
                },
                5 => blocked(format!(
                    "HEC says the request had no data (code 5) although it carried events: a \
                     proxy may be dropping request bodies (or Content-Encoding); {}",
                    describe(&r)
                )),
                c => match blocked_reason(c, &r) {
                    Some(reason) => blocked(reason),
                    None => match status {
                        401 | 403 => blocked(format!(
                            "HEC answered {status} (authentication): {}; {TOKEN_FIX}",
                            describe(&r)
                        )),
                        404 => blocked(format!(
                            "HEC answered 404: {}; is the url the HEC base (e.g. https://splunk:8088)?",
                            describe(&r)
                        )),
                        _ => blocked(format!("HEC answered {status}: {}", describe(&r))),
                    },
                },
            }
        }
        _ => blocked(format!("HEC answered {status}: {}", snippet(body))),
    }
}

/// The verdict on `GET /services/collector/health`. Splunk ignores the token there (sinks.md
/// A1): a 200 proves HEC is up, nothing about the token; [`classify_probe`] does that.
pub(crate) fn classify_health(status: u16, body: &[u8]) -> Result<(), SinkError> {
    let parsed: Option<HecReply> = serde_json::from_slice(body).ok();
    let code = parsed.as_ref().and_then(|r| r.code);
    match status {
        200 => Ok(()),
        503 => Err(SinkError::Retryable {
            reason: format!("HEC is unhealthy: {}", snippet(body)),
            after: None,
        }),
        400 | 401 | 403 => Err(SinkError::Blocked {
            reason: match (code, &parsed) {
                (Some(c), Some(r)) => blocked_reason(c, r).unwrap_or_else(|| {
                    format!("HEC health check answered {status}: {}", describe(r))
                }),
                _ => format!(
                    "HEC health check answered {status}: `{}`; {TOKEN_FIX}",
                    snippet(body)
                ),
            },
        }),
        300..=399 => Err(SinkError::Blocked {
            reason: format!(
                "HEC health check answered a redirect ({status}): the url points at Splunk Web \
                 (port 8000)? use the HEC port 8088"
            ),
        }),
        404 => Err(SinkError::Blocked {
            reason:
                "HEC health check answered 404: is the url the HEC base (e.g. https://splunk:8088)?"
                    .to_string(),
        }),
        _ => Err(SinkError::Retryable {
            reason: format!("HEC health check answered {status}: {}", snippet(body)),
            after: None,
        }),
    }
}

/// The verdict on the health probe's `POST /services/collector/event` with one envelope whose
/// `event` is blank, carrying the sink's token, channel and `index`. HEC checks the token, then
/// the index, then the event (sinks.md A3; \[I\], see docs/sinks/splunk_hec.md), so code 13
/// ("Event field cannot be blank") means both were accepted, and nothing was indexed.
pub(crate) fn classify_probe(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    index: Option<&str>,
) -> Result<(), SinkError> {
    let parsed: Option<HecReply> = serde_json::from_slice(body).ok();
    let code = parsed.as_ref().and_then(|r| r.code);
    let blocked = |reason: String| Err(SinkError::Blocked { reason });
    match (status, code) {
        (400, Some(13)) => Ok(()),
        (400..=499, Some(7)) => blocked(match index {
            Some(i) => format!(
                "index `{i}` is not allowed for this token: add it to the token's allowed \
                 indexes (Settings > Data inputs > HTTP Event Collector) or change `index`"
            ),
            None => "the token's default index is not allowed for it: set `index` to an index \
                     the token may write, or fix the token's default index"
                .to_string(),
        }),
        _ => match classify(status, retry_after, body, 1) {
            Verdict::Failed(e) => Err(e),
            // A HEC-compatible receiver that takes a blank event: the token and index passed.
            Verdict::Accepted { .. } => Ok(()),
            Verdict::Partial(_) => blocked(format!(
                "HEC answered the health probe (one blank event) with {}, not code 13 \
                 (\"Event field cannot be blank\"): the url may not be a Splunk HEC; see \
                 docs/sinks/splunk_hec.md, Health",
                parsed.as_ref().map_or_else(|| snippet(body), describe)
            )),
        },
    }
}

/// What to suggest when HEC does not answer at all.
const HINTS: TransportHints = TransportHints {
    untrusted_certificate: "HEC's TLS certificate is not trusted (it is always verified): set \
        `ca_file` to the CA bundle that signed it, and use the host name the certificate names",
    https_to_plain: "the server on this port does not speak TLS: if HEC has SSL disabled (Global \
        Settings > Enable SSL), the url must start with http://",
    refused: "nothing listens on port{port}: is HEC enabled (Settings > Data inputs > HTTP Event \
        Collector > Global Settings: All Tokens Enabled) and listening on this host and port \
        (default 8088)? is the scheme (https/http) right?",
    http_to_tls: "the server on port{port} closed the connection or did not answer HTTP: HEC uses \
        TLS by default, so the url must start with https:// unless SSL is disabled in HEC's \
        Global Settings",
    timeout: "no answer in time: is HEC reachable from this host on port{port} (firewall, \
        proxy), or overloaded?",
};

/// A transport failure (no HTTP answer) of a request to `url`, with a hint at the usual
/// causes: HEC not listening, http vs https, an untrusted certificate. Still retryable (a
/// restarting HEC refuses connections too), except a refused certificate: blocked.
pub(crate) fn transport_error(e: reqwest::Error, url: &url::Url) -> SinkError {
    crate::sink::http::transport_error_with_hint(e, url, &HINTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(status: u16, body: &str) -> Verdict {
        classify(status, None, body.as_bytes(), 5)
    }

    fn is_retry(v: &Verdict) -> bool {
        matches!(v, Verdict::Failed(SinkError::Retryable { .. }))
    }
    fn is_blocked(v: &Verdict, needle: &str) -> bool {
        matches!(v, Verdict::Failed(SinkError::Blocked { reason }) if reason.contains(needle))
    }

    #[test]
    fn success_needs_code_zero() {
        assert!(matches!(
            v(200, r#"{"text":"Success","code":0}"#),
            Verdict::Accepted { ack_id: None }
        ));
        assert!(matches!(
            v(200, r#"{"text":"Success","code":0,"ackId":7}"#),
            Verdict::Accepted { ack_id: Some(7) }
        ));
        assert!(is_retry(&v(200, r#"{"text":"Succ"#)));
        assert!(is_retry(&v(200, "<html>ok</html>")));
        assert!(is_retry(&v(200, r#"{"text":"HEC is healthy","code":17}"#)));
    }

    #[test]
    fn retryable_rows() {
        for (s, b) in [
            (503, r#"{"text":"Server is busy","code":9}"#),
            (503, r#"{"text":"HEC unhealthy","code":18}"#),
            (503, r#"{"code":19}"#),
            (503, r#"{"code":20}"#),
            (500, r#"{"text":"Internal server error","code":8}"#),
            (500, r#"{"code":99}"#),
            (429, "busy"),
            (408, ""),
            (502, "<html>Bad Gateway</html>"),
            (504, "<html>Gateway Timeout</html>"),
        ] {
            assert!(is_retry(&v(s, b)), "{s} {b}");
        }
        let r = classify(429, Some(Duration::from_secs(9)), b"", 1);
        assert!(matches!(
            r,
            Verdict::Failed(SinkError::Retryable { after: Some(d), .. }) if d == Duration::from_secs(9)
        ));
    }

    #[test]
    fn blocking_rows_name_cause_and_fix() {
        assert!(is_blocked(
            &v(403, r#"{"text":"Token disabled","code":1}"#),
            "enable it"
        ));
        assert!(is_blocked(
            &v(401, r#"{"text":"Token is required","code":2}"#),
            "Authorization"
        ));
        assert!(is_blocked(
            &v(401, r#"{"text":"Invalid authorization","code":3}"#),
            "Splunk <token>"
        ));
        assert!(is_blocked(
            &v(403, r#"{"text":"Invalid token","code":4}"#),
            "token"
        ));
        assert!(is_blocked(
            &v(400, r#"{"text":"Incorrect index","code":7}"#),
            "index"
        ));
        assert!(is_blocked(&v(400, r#"{"code":10}"#), "channel"));
        assert!(is_blocked(&v(400, r#"{"code":11}"#), "channel"));
        assert!(is_blocked(&v(400, r#"{"code":14}"#), "ack = false"));
        assert!(is_blocked(&v(400, r#"{"code":16}"#), "query"));
        assert!(is_blocked(&v(400, r#"{"code":21}"#), "token"));
        assert!(is_blocked(&v(400, r#"{"code":22}"#), "disabled"));
        assert!(is_blocked(&v(401, "no"), "token"));
        assert!(is_blocked(&v(403, "<html/>"), "token"));
        assert!(is_blocked(&v(303, "<html>see other</html>"), "8088"));
        assert!(is_blocked(&v(404, "not found"), "HEC base"));
        assert!(is_blocked(
            &v(400, r#"{"text":"No data","code":5}"#),
            "no data"
        ));
        assert!(is_blocked(&v(418, "teapot"), "418"));
    }

    #[test]
    fn bad_data_names_the_event_or_bisects() {
        for code in [6, 12, 13, 15] {
            let body = format!(
                r#"{{"text":"Invalid data format","code":{code},"invalid-event-number":2}}"#
            );
            let Verdict::Partial(ack) = v(400, &body) else {
                panic!("{code}")
            };
            assert_eq!(ack.items.len(), 5);
            assert_eq!(ack.items[0], ItemOutcome::Retry { after: None });
            assert_eq!(ack.items[1], ItemOutcome::Retry { after: None });
            assert!(
                matches!(&ack.items[2], ItemOutcome::Rejected { reason } if reason.contains(&format!("code {code}")))
            );
            assert_eq!(ack.items[4], ItemOutcome::Retry { after: None });
            let body = format!(r#"{{"text":"bad","code":{code}}}"#);
            assert!(matches!(
                v(400, &body),
                Verdict::Failed(SinkError::Invalid { .. })
            ));
        }
        // An index outside the request is not believed.
        assert!(matches!(
            v(400, r#"{"code":6,"invalid-event-number":9}"#),
            Verdict::Failed(SinkError::Invalid { .. })
        ));
    }

    #[test]
    fn too_large() {
        assert!(matches!(v(413, ""), Verdict::Failed(SinkError::TooLarge)));
    }

    #[test]
    fn health() {
        assert!(classify_health(200, br#"{"text":"HEC is healthy","code":17}"#).is_ok());
        assert!(matches!(
            classify_health(503, br#"{"code":18}"#),
            Err(SinkError::Retryable { .. })
        ));
        assert!(matches!(
            classify_health(400, br#"{"text":"Invalid token","code":21}"#),
            Err(SinkError::Blocked { .. })
        ));
        assert!(matches!(
            classify_health(403, b""),
            Err(SinkError::Blocked { .. })
        ));
        assert!(matches!(
            classify_health(500, b""),
            Err(SinkError::Retryable { .. })
        ));
    }

    fn probe(status: u16, body: &str) -> Result<(), SinkError> {
        classify_probe(status, None, body.as_bytes(), Some("waf"))
    }

    fn probe_blocked(status: u16, body: &str) -> String {
        match probe(status, body) {
            Err(SinkError::Blocked { reason }) => reason,
            other => panic!("{status} {body}: {other:?}"),
        }
    }

    #[test]
    fn the_blank_event_probe() {
        assert!(
            probe(
                400,
                r#"{"text":"Event field cannot be blank","code":13,"invalid-event-number":0}"#
            )
            .is_ok()
        );
        assert!(probe(400, r#"{"text":"Event field cannot be blank","code":13}"#).is_ok());
        assert_eq!(
            probe_blocked(
                400,
                r#"{"text":"Incorrect index","code":7,"invalid-event-number":0}"#
            ),
            "index `waf` is not allowed for this token: add it to the token's allowed indexes \
             (Settings > Data inputs > HTTP Event Collector) or change `index`"
        );
        assert!(
            classify_probe(400, None, br#"{"code":7}"#, None).is_err_and(
                |e| matches!(e, SinkError::Blocked { reason } if reason.contains("default index"))
            )
        );
        for (s, b, needle) in [
            (403, r#"{"text":"Token disabled","code":1}"#, "enable it"),
            (
                401,
                r#"{"text":"Token is required","code":2}"#,
                "Authorization",
            ),
            (
                401,
                r#"{"text":"Invalid authorization","code":3}"#,
                "Splunk <token>",
            ),
            (403, r#"{"text":"Invalid token","code":4}"#, "token_file"),
            (400, r#"{"text":"Invalid token","code":21}"#, "token_file"),
            (400, r#"{"text":"Token disabled","code":22}"#, "enable it"),
            (401, "<html>no</html>", "token_file"),
            (400, r#"{"code":6,"invalid-event-number":0}"#, "not code 13"),
            (404, "", "HEC base"),
        ] {
            let r = probe_blocked(s, b);
            assert!(r.contains(needle), "{s} {b}: {r}");
        }
        assert!(matches!(
            probe(503, r#"{"text":"Server is busy","code":9}"#),
            Err(SinkError::Retryable { .. })
        ));
        assert!(probe(200, r#"{"text":"Success","code":0}"#).is_ok());
    }

    #[test]
    fn token_refusals_end_with_the_fix() {
        for (s, b) in [
            (401, "nope"),
            (403, "<html/>"),
            (401, r#"{"text":"x","code":99}"#),
        ] {
            let Verdict::Failed(SinkError::Blocked { reason }) = v(s, b) else {
                panic!("{s} {b}")
            };
            assert!(
                reason.ends_with("a proxy in front of HEC may also refuse it"),
                "{reason}"
            );
        }
    }

    #[test]
    fn ack_answers() {
        let acks = classify_ack(200, br#"{"acks":{"0":true,"3":false}}"#);
        let AckAnswer::Acks(map) = acks else {
            panic!("{acks:?}")
        };
        assert_eq!((map["0"], map["3"]), (true, false));
        assert_eq!(
            classify_ack(400, br#"{"text":"ACK is disabled","code":14}"#),
            AckAnswer::Disabled("ACK is disabled".into())
        );
        for (s, b) in [
            (503, r#"{"text":"Server is busy","code":9}"#),
            (503, r#"{"code":19}"#),
            (500, ""),
            (502, "<html>Bad Gateway</html>"),
            (429, ""),
            (408, ""),
            (200, "garbage"),
            (200, r#"{"acks":"#),
            (200, r#"{"text":"Success","code":0}"#),
        ] {
            assert!(
                matches!(classify_ack(s, b.as_bytes()), AckAnswer::Retry(_)),
                "{s} {b}"
            );
        }
        for (s, b, needle) in [
            (401, "<html>no</html>", "or set ack = false"),
            (403, "", "let that path and the token through"),
            (403, r#"{"text":"Invalid token","code":4}"#, "token_file"),
            (403, r#"{"text":"Token disabled","code":1}"#, "enable it"),
            (400, r#"{"text":"Invalid token","code":21}"#, "token_file"),
            (
                401,
                r#"{"text":"Token is required","code":2}"#,
                "Authorization",
            ),
            (400, r#"{"code":10}"#, "X-Splunk-Request-Channel"),
            (400, r#"{"code":11}"#, "X-Splunk-Request-Channel"),
            (404, "", "/services/collector/ack"),
            (303, "", "8088"),
            (
                400,
                r#"{"text":"Invalid data format","code":6}"#,
                "report it",
            ),
        ] {
            match classify_ack(s, b.as_bytes()) {
                AckAnswer::Blocked(r) => assert!(r.contains(needle), "{s} {b}: {r}"),
                other => panic!("{s} {b}: {other:?}"),
            }
        }
    }
}
