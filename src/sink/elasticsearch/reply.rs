//! What a `_bulk` or `GET /` reply means: per-item outcomes, batch-level errors, and the
//! version check of the health probe. Pure functions of status, headers and body.

use std::time::Duration;

use serde::Deserialize;

use crate::sink::http::snippet;
use crate::sink::{Ack, ItemOutcome, SinkError};

/// `{"errors":bool,"items":[{"create":{"status":201,"error":{...}}}]}` as filtered by
/// `filter_path=errors,items.*.status,items.*.error`.
#[derive(Debug, Deserialize)]
struct BulkReply {
    items: Option<Vec<std::collections::HashMap<String, BulkItem>>>,
}

#[derive(Debug, Deserialize)]
struct BulkItem {
    status: Option<u16>,
    error: Option<EsError>,
}

/// An Elasticsearch error object: `{"type","reason","index"?,...}`.
#[derive(Debug, Default, Deserialize)]
struct EsError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    index: Option<String>,
}

impl EsError {
    fn text(&self) -> String {
        match &self.reason {
            Some(r) => format!("{}: {r}", self.kind),
            None => self.kind.clone(),
        }
    }
}

/// A top-level error reply: `{"error":{...},"status":N}` (or `"error":"text"` on old versions).
#[derive(Debug, Deserialize)]
struct ErrorReply {
    error: serde_json::Value,
}

fn error_text(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorReply>(body) {
        Ok(ErrorReply {
            error: serde_json::Value::String(s),
        }) => s,
        Ok(ErrorReply { error }) => {
            let e: EsError = serde_json::from_value(error).unwrap_or_default();
            if e.kind.is_empty() {
                snippet(body)
            } else {
                e.text()
            }
        }
        Err(_) => snippet(body),
    }
}

/// Classifies the reply to one `_bulk` request of `sent` documents. `target` names the index
/// pattern for messages; `after` is the reply's `Retry-After`.
pub(crate) fn classify_bulk(
    status: u16,
    after: Option<Duration>,
    location: Option<&str>,
    body: &[u8],
    sent: usize,
    target: &str,
) -> Result<Ack, SinkError> {
    match status {
        200 | 201 => classify_items(body, sent, target, after),
        413 => Err(SinkError::TooLarge),
        401 => Err(SinkError::Blocked {
            reason: format!(
                "Elasticsearch rejected the credentials (HTTP 401: {}): check auth and the \
                 username/password, api_key or bearer_token (expired or revoked?)",
                error_text(body)
            ),
        }),
        403 => Err(SinkError::Blocked {
            reason: format!(
                "HTTP 403 ({}): the user lacks the create_doc/create_index privilege on `{target}` \
                 (auto_configure too for data streams): grant them in the user's role",
                error_text(body)
            ),
        }),
        404 => Err(SinkError::Blocked {
            reason: format!(
                "HTTP 404 for /_bulk ({}): is the URL the cluster root (not Kibana, not a path \
                 below the cluster)?",
                snippet(body)
            ),
        }),
        // A malformed request is our bug, tied to some event: bisect to isolate it.
        400 => Err(SinkError::Invalid {
            reason: format!("HTTP 400: {}", error_text(body)),
        }),
        408 | 429 | 500..=599 => Err(SinkError::Retryable {
            reason: format!("HTTP {status}: {}", error_text(body)),
            after,
        }),
        300..=399 => Err(SinkError::Blocked {
            reason: format!(
                "HTTP {status} redirect{}: the URL must be the cluster root itself; redirects are \
                 not followed",
                location.map(|l| format!(" to `{l}`")).unwrap_or_default()
            ),
        }),
        _ => Err(SinkError::Blocked {
            reason: format!(
                "unexpected HTTP {status} from /_bulk ({}): check the URL",
                snippet(body)
            ),
        }),
    }
}

fn classify_items(
    body: &[u8],
    sent: usize,
    target: &str,
    after: Option<Duration>,
) -> Result<Ack, SinkError> {
    let unusable = |why: &str| SinkError::Retryable {
        reason: format!(
            "bulk reply {why}, so nothing is known to be stored: {}",
            snippet(body)
        ),
        after,
    };
    let reply: BulkReply =
        serde_json::from_slice(body).map_err(|_| unusable("is not the expected JSON"))?;
    let items = reply.items.ok_or_else(|| unusable("has no `items`"))?;
    if items.len() != sent {
        return Err(unusable(&format!(
            "has {} items for {sent} documents",
            items.len()
        )));
    }
    let mut out = Vec::with_capacity(sent);
    for item in items {
        // One key: the action (`create`).
        let Some(item) = item.into_values().next() else {
            return Err(unusable("has an empty item"));
        };
        let status = item.status.unwrap_or(0);
        let err = item.error.unwrap_or_default();
        out.push(match status {
            200 | 201 => ItemOutcome::Delivered,
            409 => ItemOutcome::Duplicate,
            429 | 500..=599 => ItemOutcome::Retry { after },
            // The index itself is unusable: every document to it fails the same way, so the
            // whole request is blocked rather than dead-lettering documents one by one.
            401 | 403 | 404 => return Err(index_blocked(status, &err, target)),
            400..=499 => ItemOutcome::Rejected {
                reason: if err.kind.is_empty() {
                    format!("item status {status}")
                } else {
                    err.text()
                },
            },
            // Nothing else is defined for an item; do not guess it landed.
            _ => ItemOutcome::Retry { after },
        });
    }
    Ok(Ack { items: out })
}

fn index_blocked(status: u16, err: &EsError, target: &str) -> SinkError {
    let index = err.index.as_deref().unwrap_or(target);
    let fix = match err.kind.as_str() {
        "index_not_found_exception" => format!(
            "index `{index}` does not exist and may not be auto-created: create it, add an index \
             template, or allow it in action.auto_create_index"
        ),
        "cluster_block_exception" => format!(
            "index `{index}` is blocked for writes (read-only, e.g. after the disk flood-stage \
             watermark, or closed/frozen): free disk space and remove the block \
             (index.blocks.read_only_allow_delete)"
        ),
        "security_exception" => format!(
            "the user lacks the create_doc/create_index privilege on `{index}` (auto_configure \
             too for data streams): grant them in the user's role"
        ),
        _ => {
            format!("index `{index}` cannot be written: fix its settings or the user's privileges")
        }
    };
    SinkError::Blocked {
        reason: format!("{fix} (item status {status}: {})", err.text()),
    }
}

/// `GET /`: `{"version":{"number":"8.15.0","distribution"?:"opensearch"},...}`.
#[derive(Debug, Deserialize)]
struct RootReply {
    version: RootVersion,
}

#[derive(Debug, Deserialize)]
struct RootVersion {
    number: String,
    distribution: Option<String>,
}

/// Which cluster answered the health probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterVersion {
    /// `elasticsearch` or `opensearch`.
    pub(crate) distribution: String,
    /// `8.15.0`.
    pub(crate) number: String,
}

/// Classifies the reply to `GET /`.
pub(crate) fn classify_root(
    status: u16,
    after: Option<Duration>,
    body: &[u8],
) -> Result<ClusterVersion, SinkError> {
    match status {
        200 => {}
        401 => {
            return Err(SinkError::Blocked {
                reason: format!(
                    "Elasticsearch rejected the credentials (HTTP 401: {}): check auth and the \
                     username/password, api_key or bearer_token",
                    error_text(body)
                ),
            });
        }
        403 => {
            return Err(SinkError::Blocked {
                reason: format!(
                    "HTTP 403 on GET / ({}): grant the user the `monitor` cluster privilege (the \
                     sink reads the version at start and while blocked)",
                    error_text(body)
                ),
            });
        }
        408 | 429 | 500..=599 => {
            return Err(SinkError::Retryable {
                reason: format!("health check: HTTP {status}: {}", error_text(body)),
                after,
            });
        }
        _ => {
            return Err(SinkError::Blocked {
                reason: format!(
                    "health check: HTTP {status} on GET / ({}): is the URL the cluster root?",
                    snippet(body)
                ),
            });
        }
    }
    let root: RootReply = serde_json::from_slice(body).map_err(|_| SinkError::Blocked {
        reason: format!(
            "GET / did not answer like Elasticsearch or OpenSearch (no version.number): is the URL \
             the cluster root? Reply: {}",
            snippet(body)
        ),
    })?;
    let distribution = root
        .version
        .distribution
        .unwrap_or_else(|| "elasticsearch".to_string());
    let major: u32 = root
        .version
        .number
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let supported = match distribution.as_str() {
        "opensearch" => (1..=3).contains(&major),
        "elasticsearch" => major >= 7,
        _ => false,
    };
    let version = ClusterVersion {
        distribution,
        number: root.version.number,
    };
    if !supported {
        return Err(SinkError::Blocked {
            reason: format!(
                "{} {} is not supported: use Elasticsearch 7 or later, or OpenSearch 1 to 3",
                version.distribution, version.number
            ),
        });
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(body: &str, sent: usize) -> Result<Ack, SinkError> {
        classify_bulk(200, None, None, body.as_bytes(), sent, "idx")
    }

    #[test]
    fn per_item_table() {
        let body = r#"{"errors":true,"items":[
            {"create":{"status":201}},
            {"create":{"status":200}},
            {"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}},
            {"create":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"create":{"status":503,"error":{"type":"unavailable_shards_exception","reason":"x"}}},
            {"create":{"status":400,"error":{"type":"document_parsing_exception","reason":"failed to parse field [a]"}}}
        ]}"#;
        let ack = bulk(body, 6).unwrap();
        assert_eq!(
            ack.items,
            vec![
                ItemOutcome::Delivered,
                ItemOutcome::Delivered,
                ItemOutcome::Duplicate,
                ItemOutcome::Retry { after: None },
                ItemOutcome::Retry { after: None },
                ItemOutcome::Rejected {
                    reason: "document_parsing_exception: failed to parse field [a]".into()
                },
            ]
        );
    }

    #[test]
    fn index_level_item_errors_block_the_request() {
        for (status, kind, want) in [
            (404, "index_not_found_exception", "does not exist"),
            (403, "security_exception", "create_doc"),
            (403, "cluster_block_exception", "read-only"),
        ] {
            let body = format!(
                r#"{{"errors":true,"items":[{{"create":{{"status":201}}}},{{"create":{{"status":{status},"error":{{"type":"{kind}","reason":"r","index":"sigsci-x"}}}}}}]}}"#
            );
            match bulk(&body, 2) {
                Err(SinkError::Blocked { reason }) => {
                    assert!(
                        reason.contains(want) && reason.contains("sigsci-x"),
                        "{reason}"
                    )
                }
                other => panic!("{kind}: {other:?}"),
            }
        }
    }

    #[test]
    fn unusable_success_replies_are_not_delivered() {
        for body in [
            "not json",
            "{\"errors\":false}",
            r#"{"items":[{"create":{"status":201}}]}"#,
        ] {
            assert!(
                matches!(bulk(body, 2), Err(SinkError::Retryable { .. })),
                "{body}"
            );
        }
    }

    #[test]
    fn top_level_statuses() {
        let c = |s: u16, body: &str| {
            classify_bulk(
                s,
                Some(Duration::from_secs(3)),
                Some("/x"),
                body.as_bytes(),
                1,
                "idx",
            )
        };
        assert!(matches!(c(413, ""), Err(SinkError::TooLarge)));
        assert!(matches!(
            c(429, "{}"),
            Err(SinkError::Retryable { after: Some(_), .. })
        ));
        assert!(matches!(c(503, ""), Err(SinkError::Retryable { .. })));
        assert!(matches!(c(502, ""), Err(SinkError::Retryable { .. })));
        match c(
            400,
            r#"{"error":{"type":"parse_exception","reason":"bad line"},"status":400}"#,
        ) {
            Err(SinkError::Invalid { reason }) => {
                assert!(reason.contains("parse_exception: bad line"))
            }
            other => panic!("{other:?}"),
        }
        for (s, want) in [
            (401, "credentials"),
            (403, "create_doc"),
            (404, "cluster root"),
            (302, "`/x`"),
        ] {
            match c(s, "{}") {
                Err(SinkError::Blocked { reason }) => {
                    assert!(reason.contains(want), "{s}: {reason}")
                }
                other => panic!("{s}: {other:?}"),
            }
        }
    }

    #[test]
    fn version_shapes() {
        let ok = [
            r#"{"name":"n","cluster_name":"c","version":{"number":"7.17.22","build_flavor":"default","lucene_version":"8.11.3"},"tagline":"You Know, for Search"}"#,
            r#"{"name":"n","version":{"number":"8.15.0","build_flavor":"default","build_type":"docker"},"tagline":"You Know, for Search"}"#,
            r#"{"name":"n","version":{"number":"9.1.0","build_flavor":"default"},"tagline":"You Know, for Search"}"#,
            r#"{"name":"n","version":{"distribution":"opensearch","number":"1.3.19","minimum_wire_compatibility_version":"6.8.0"},"tagline":"The OpenSearch Project: https://opensearch.org/"}"#,
            r#"{"name":"n","version":{"distribution":"opensearch","number":"2.17.1"},"tagline":"The OpenSearch Project: https://opensearch.org/"}"#,
            r#"{"name":"n","version":{"distribution":"opensearch","number":"3.0.0"}}"#,
        ];
        for body in ok {
            classify_root(200, None, body.as_bytes()).unwrap();
        }
        let v = classify_root(200, None, ok[4].as_bytes()).unwrap();
        assert_eq!(
            (v.distribution.as_str(), v.number.as_str()),
            ("opensearch", "2.17.1")
        );
        for (body, want) in [
            (r#"{"version":{"number":"6.8.23"}}"#, "elasticsearch 6.8.23"),
            (
                r#"{"version":{"distribution":"opensearch","number":"4.0.0"}}"#,
                "opensearch 4.0.0",
            ),
            ("<html>Kibana</html>", "cluster root"),
        ] {
            match classify_root(200, None, body.as_bytes()) {
                Err(SinkError::Blocked { reason }) => assert!(reason.contains(want), "{reason}"),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            classify_root(401, None, b"{}"),
            Err(SinkError::Blocked { .. })
        ));
        assert!(matches!(
            classify_root(403, None, b"{}"),
            Err(SinkError::Blocked { .. })
        ));
        assert!(matches!(
            classify_root(503, None, b""),
            Err(SinkError::Retryable { .. })
        ));
    }
}
