//! What a `_bulk` or `GET /` reply means: per-item outcomes, batch-level errors, and the
//! version check of the health probe. Pure functions of status, headers and body.

use std::borrow::Cow;
use std::time::Duration;

use serde::Deserialize;

use crate::sink::http::{TransportHints, snippet};
use crate::sink::{Ack, ItemOutcome, SinkError};

/// `{"errors":bool,"items":[{"create":{"_id":"…","status":201,"error":{...}}}]}` as filtered
/// by `filter_path=errors,items.*._id,items.*.status,items.*.error`.
#[derive(Debug, Deserialize)]
struct BulkReply<'a> {
    #[serde(borrow)]
    items: Option<Vec<Action<'a>>>,
}

/// One item: `{"<action>": {...}}`, the action's outcome (`None` for an empty object). Read
/// without a map or a key string: a reply has an item per document, and a `HashMap` per item
/// was 3-4% of the exporter's CPU with both sinks.
#[derive(Debug)]
struct Action<'a>(Option<BulkItem<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for Action<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Action<'a>, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Action<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a bulk item object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Action<'a>, A::Error> {
                // One key, the action (`create`); any further keys are ignored.
                let Some(serde::de::IgnoredAny) = map.next_key()? else {
                    return Ok(Action(None));
                };
                let item = map.next_value()?;
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Action(Some(item)))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

#[derive(Debug, Deserialize)]
struct BulkItem<'a> {
    /// The document the item is about: items are matched to documents by position, and this
    /// proves the position (a reordered reply would settle each document by another's fate).
    #[serde(rename = "_id", borrow, default)]
    id: Option<ItemId<'a>>,
    status: Option<u16>,
    error: Option<EsError>,
}

/// An item's `_id`: a view of the reply unless it holds escapes.
#[derive(Debug)]
struct ItemId<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for ItemId<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ItemId<'a>, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = ItemId<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a document id")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<ItemId<'a>, E> {
                Ok(ItemId(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<ItemId<'a>, E> {
                Ok(ItemId(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(Visit(std::marker::PhantomData))
    }
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

/// Classifies the reply to one `_bulk` request of the documents whose `_id`s are `ids`, in
/// request order. `target` names the index pattern for messages; `after` is the reply's
/// `Retry-After`.
pub(crate) fn classify_bulk(
    status: u16,
    after: Option<Duration>,
    location: Option<&str>,
    body: &[u8],
    ids: &[&str],
    target: &str,
) -> Result<Ack, SinkError> {
    match status {
        200 | 201 => classify_items(body, ids, target, after),
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
        // A parameter the cluster does not know fails every request alike; bisecting would
        // dead-letter every event for a configuration problem.
        400 if unrecognized_parameter(body).is_some() => Err(SinkError::Blocked {
            reason: format!(
                "HTTP 400 ({}): this cluster version does not accept a query parameter the sink \
                 sends; upgrade the cluster or remove the setting that adds it",
                error_text(body)
            ),
        }),
        // A malformed request is our bug, tied to some event: bisect to isolate it.
        400 => Err(SinkError::Invalid {
            reason: format!("HTTP 400: {}", error_text(body)),
        }),
        406 => Err(SinkError::Blocked {
            reason: format!(
                "HTTP 406 ({}): the cluster refused the request's Content-Type \
                 (application/x-ndjson); is a proxy in front of it rewriting headers?",
                error_text(body)
            ),
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
    ids: &[&str],
    target: &str,
    after: Option<Duration>,
) -> Result<Ack, SinkError> {
    let unusable = |why: &str| SinkError::Unreadable {
        reason: format!(
            "bulk reply {why}, so nothing is known to be stored: {}",
            snippet(body)
        ),
        after,
    };
    let reply: BulkReply =
        serde_json::from_slice(body).map_err(|_| unusable("is not the expected JSON"))?;
    let items = reply.items.ok_or_else(|| unusable("has no `items`"))?;
    if items.len() != ids.len() {
        return Err(unusable(&format!(
            "has {} items for {} documents",
            items.len(),
            ids.len()
        )));
    }
    // Every item first: one that cannot be read says the whole reply cannot be trusted, so
    // none of it settles anything (not even the items before it).
    let mut read = Vec::with_capacity(items.len());
    for (n, (item, want)) in items.into_iter().zip(ids).enumerate() {
        let Some(item) = item.0 else {
            return Err(unusable(&format!("has an empty item (item {n})")));
        };
        match item.id.as_ref().map(|id| id.0.as_ref()) {
            Some(id) if id == *want => {}
            Some(id) => {
                return Err(unusable(&format!(
                    "answers item {n} for `_id` `{}`, but document {n} of the request is `{}` \
                     (items out of order?)",
                    short(id),
                    short(want)
                )));
            }
            None => return Err(unusable(&format!("has an item without `_id` (item {n})"))),
        }
        // No status, or one no item ever has (1xx, 3xx, other 2xx): retrying it as if it
        // asked to be retried would loop forever without a word.
        match item.status {
            Some(200 | 201 | 400..=599) => {}
            Some(other) => {
                return Err(unusable(&format!(
                    "has an item with status {other} (item {n})"
                )));
            }
            None => {
                return Err(unusable(&format!(
                    "has an item without `status` (item {n})"
                )));
            }
        }
        read.push(item);
    }
    let mut out = Vec::with_capacity(read.len());
    for item in read {
        let status = item.status.unwrap_or(0);
        let err = item.error.unwrap_or_default();
        if matches!(status, 200 | 201) {
            out.push(ItemOutcome::Delivered);
            continue;
        }
        if status == 409 {
            out.push(ItemOutcome::Duplicate);
            continue;
        }
        // The target itself is unusable: every document to it fails the same way, so the
        // whole request is blocked rather than dead-lettering documents one by one. Checked
        // before the status classes because such errors come as 400 (closed index, missing
        // pipeline) or 429 (the flood-stage block) too.
        if let Some(fix) = target_unusable(status, &err, target) {
            return Err(SinkError::Blocked {
                reason: format!("{fix} (item status {status}: {})", err.text()),
            });
        }
        out.push(match status {
            400..=499 if status != 429 => ItemOutcome::Rejected {
                reason: if err.kind.is_empty() {
                    format!("item status {status}")
                } else {
                    err.text()
                },
            },
            // 429 and 5xx (the only statuses left).
            _ => ItemOutcome::Retry { after },
        });
    }
    Ok(Ack { items: out })
}

/// At most 64 characters of a reply's text, for a message (a hostile `_id` may be long).
fn short(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// Why no document can be written to the item's target, with the fix, or `None` when the
/// error is about this document (a mapping error) or passing (a full write queue).
///
/// Decided by `error.type` and the reason, not the status: Elasticsearch answers a closed
/// index, a missing pipeline and an alias without a write index with 400, like a mapping
/// error, and the disk flood-stage block with 429, like a full queue.
fn target_unusable(status: u16, err: &EsError, target: &str) -> Option<String> {
    let index = err.index.as_deref().unwrap_or(target);
    let reason = err.reason.as_deref().unwrap_or("");
    Some(match err.kind.as_str() {
        "cluster_block_exception" => cluster_block_fix(index, reason),
        "index_closed_exception" => {
            format!("index `{index}` is closed: open it (POST /{index}/_open) or change `index`")
        }
        "index_not_found_exception" if reason.contains("requires a data stream") => format!(
            "data stream `{index}` does not exist and no index template with `data_stream` \
             enabled matches it (the sink sends require_data_stream=true in data_stream mode): \
             add such a template, or set mode = \"index\" to write a plain index"
        ),
        "index_not_found_exception" if reason.contains("require_alias") => format!(
            "`{index}` is not an alias, and the request requires one: create the alias with a \
             write index"
        ),
        "index_not_found_exception" => format!(
            "index `{index}` does not exist and may not be auto-created: create it, add an index \
             template, or allow it in action.auto_create_index"
        ),
        "resource_not_found_exception" if reason.contains("require_data_stream") => format!(
            "`{index}` exists but is not a data stream (a plain index or alias of that name was \
             created earlier): delete or rename it so the data stream can be created, or set \
             mode = \"index\""
        ),
        "illegal_argument_exception"
            if reason.starts_with("pipeline with id [") && reason.contains("does not exist") =>
        {
            "the ingest pipeline named in `pipeline` does not exist: create it (PUT \
             /_ingest/pipeline/<id>) or fix or remove the sink's `pipeline` setting"
                .to_string()
        }
        _ if reason.contains("no write index is defined for alias") => format!(
            "alias `{index}` has no write index: mark one of its indices with \
             is_write_index: true (or bootstrap the rollover alias), or point `index` at an index"
        ),
        _ if reason.contains("maximum normal shards open")
            || reason.contains("maximum shards open") =>
        {
            format!(
                "index `{index}` cannot be created: the cluster is at its shard limit \
                 (cluster.max_shards_per_node): delete or shrink old indices, or raise the limit"
            )
        }
        "security_exception" if status == 401 => format!(
            "Elasticsearch rejected the credentials for writing to `{index}`: check auth and \
             the username/password, api_key or bearer_token"
        ),
        "security_exception" => format!(
            "the user lacks the create_doc/create_index privilege on `{index}` (auto_configure \
             too for data streams): grant them in the user's role"
        ),
        _ if matches!(status, 401 | 403 | 404) => {
            format!("index `{index}` cannot be written: fix its settings or the user's privileges")
        }
        _ => return None,
    })
}

/// The fix for a `cluster_block_exception`, from the block named in its reason
/// (`blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, ...]`).
fn cluster_block_fix(index: &str, reason: &str) -> String {
    // `read-only-allow-delete` since 7.6, `read-only / allow delete (api)` before it.
    if reason.contains("flood-stage")
        || reason.contains("allow-delete")
        || reason.contains("allow delete")
    {
        format!(
            "index `{index}` is read-only because a data node's disk passed the flood-stage \
             watermark: free disk space or add nodes; Elasticsearch 7.4+ lifts the block once \
             usage falls below the high watermark, older versions need PUT /{index}/_settings \
             {{\"index.blocks.read_only_allow_delete\": null}}"
        )
    } else if reason.contains("index write") || reason.contains("read-only") {
        format!(
            "index `{index}` has a write or read-only block (index.blocks.write / \
             index.blocks.read_only, e.g. set for a shrink or a frozen index): remove it or \
             point `index` elsewhere"
        )
    } else {
        format!(
            "writes to `{index}` are blocked by the cluster (no elected master or state not \
             yet recovered?): check the cluster's health; the sink resumes when the block \
             lifts"
        )
    }
}

/// The parameter named by a top-level `request [/_bulk] contains unrecognized parameter: [x]`.
pub(crate) fn unrecognized_parameter(body: &[u8]) -> Option<String> {
    let text = error_text(body);
    let rest = text.split("unrecognized parameter").nth(1)?;
    let start = rest.find('[')? + 1;
    let end = start + rest[start..].find(']')?;
    Some(rest[start..end].to_string())
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

/// What to suggest when Elasticsearch does not answer at all.
const HINTS: TransportHints = TransportHints {
    untrusted_certificate: "the cluster's TLS certificate is not trusted (it is always \
        verified): set `ca_file` to the CA that signed it (Elasticsearch 8 generates its own, \
        `config/certs/http_ca.crt`), and use a host name the certificate names",
    https_to_plain: "the server on this port does not speak TLS: if the cluster has \
        `xpack.security.http.ssl.enabled: false`, the url must start with http://",
    refused: "nothing listens on port{port}: is Elasticsearch (or OpenSearch) running and \
        listening on this host and port (default 9200; Elastic Cloud uses 443)? is the scheme \
        (https/http) right?",
    http_to_tls: "the server on port{port} closed the connection or did not answer HTTP: \
        Elasticsearch 8 and OpenSearch enable TLS by default, so the url must start with \
        https:// unless TLS is turned off on the cluster",
    timeout: "no answer in time: is the cluster reachable from this host on port{port} \
        (firewall, proxy), or overloaded?",
};

/// A transport failure (no HTTP answer) of a request to `url`, with a hint at the usual
/// causes: nothing listening, http vs https, an untrusted certificate. Still retryable (a
/// restarting node refuses connections too), except a refused certificate: blocked.
pub(crate) fn transport_error(e: reqwest::Error, url: &url::Url) -> SinkError {
    crate::sink::http::transport_error_with_hint(e, url, &HINTS)
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

    /// The `_id`s of a request of `n` documents: "0", "1", ...
    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| i.to_string()).collect()
    }

    /// Classifies `body` as the reply to `sent` documents with the `_id`s of [`ids`]; items
    /// without an `_id` get theirs by position (the bodies below predate the `_id` check).
    fn bulk(body: &str, sent: usize) -> Result<Ack, SinkError> {
        let mut body = body.to_string();
        if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&body) {
            let items = v.get_mut("items").and_then(|i| i.as_array_mut());
            for (n, item) in items.into_iter().flatten().enumerate() {
                let inner = item.as_object_mut().and_then(|o| o.values_mut().next());
                if let Some(obj) = inner.and_then(|i| i.as_object_mut()) {
                    obj.entry("_id").or_insert_with(|| n.to_string().into());
                }
            }
            body = v.to_string();
        }
        bulk_ids(&body, &ids(sent))
    }

    fn bulk_ids(body: &str, ids: &[String]) -> Result<Ack, SinkError> {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        classify_bulk(200, None, None, body.as_bytes(), &ids, "idx")
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
    fn a_reply_that_does_not_account_for_every_document_is_retried_whole() {
        for (body, want) in [
            (
                r#"{"errors":false,"items":[{"create":{"status":201}},{}]}"#,
                "has an empty item",
            ),
            (
                r#"{"errors":false,"items":[{"create":{"status":201}},1]}"#,
                "not the expected JSON",
            ),
            (
                r#"{"errors":false,"items":[{"create":{"status":201}}]}"#,
                "has 1 items for 2",
            ),
            (r#"{"errors":false}"#, "has no `items`"),
            (
                r#"{"errors":false,"items":[{"create":{"status":201}},"#,
                "not the expected JSON",
            ),
        ] {
            match bulk(body, 2) {
                Err(SinkError::Unreadable { reason, .. }) => {
                    assert!(reason.contains(want), "{body}: {reason}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        // Keys after the action are ignored.
        let ack = bulk(
            r#"{"items":[{"create":{"status":201},"x":[1]},{"index":{"status":200}}]}"#,
            2,
        )
        .unwrap();
        assert_eq!(ack.items, [ItemOutcome::Delivered, ItemOutcome::Delivered]);
    }

    fn unreadable(r: Result<Ack, SinkError>) -> String {
        match r {
            Err(SinkError::Unreadable { reason, .. }) => reason,
            other => panic!("{other:?}"),
        }
    }

    /// Items come back in request order, and each names its document: a reply whose items
    /// are about other documents than the ones at their positions would settle each document
    /// by another's fate (dead-letter a stored one, count a rejected one as delivered).
    #[test]
    fn each_item_must_name_the_document_at_its_position() {
        let ids = ids(3);
        let body = |a: &str, b: &str, c: &str| {
            format!(
                r#"{{"errors":true,"items":[{{"create":{{"_id":{a},"status":201}}}},{{"create":{{"_id":{b},"status":400,"error":{{"type":"document_parsing_exception","reason":"bad"}}}}}},{{"create":{{"_id":{c},"status":201}}}}]}}"#
            )
        };
        let ack = bulk_ids(&body(r#""0""#, r#""1""#, r#""2""#), &ids).unwrap();
        assert_eq!(ack.items[0], ItemOutcome::Delivered);
        assert!(matches!(ack.items[1], ItemOutcome::Rejected { .. }));
        let r = unreadable(bulk_ids(&body(r#""1""#, r#""0""#, r#""2""#), &ids));
        assert!(r.contains("item 0 for `_id` `1`"), "{r}");
        assert!(r.contains("out of order"), "{r}");
        let r = unreadable(bulk_ids(
            r#"{"items":[{"create":{"_id":"0","status":201}},{"create":{"status":201}},{"create":{"_id":"2","status":201}}]}"#,
            &ids,
        ));
        assert!(r.contains("without `_id` (item 1)"), "{r}");
        // Not a string: not the expected JSON.
        unreadable(bulk_ids(&body("0", "1", "2"), &ids));
        // An escaped id is read as the text it spells.
        let odd = vec!["a\"b\u{e9}".to_string()];
        let ack = bulk_ids(
            r#"{"items":[{"create":{"_id":"a\"b\u00e9","status":201}}]}"#,
            &odd,
        );
        assert_eq!(ack.unwrap().items, [ItemOutcome::Delivered]);
        // A long hostile id is cut in the message.
        let long = format!(
            r#"{{"items":[{{"create":{{"_id":"{}","status":201}}}}]}}"#,
            "x".repeat(5000)
        );
        assert!(unreadable(bulk_ids(&long, &ids[..1])).len() < 600);
    }

    /// An item without `status` (or with one no item has) used to be retried as "asked to be
    /// retried", silently and forever.
    #[test]
    fn an_item_without_a_usable_status_makes_the_reply_unreadable() {
        for (item, want) in [
            (r#"{"create":{"_id":"1"}}"#, "without `status` (item 1)"),
            (
                r#"{"create":{"_id":"1","status":null}}"#,
                "without `status`",
            ),
            (
                r#"{"create":{"_id":"1","status":302}}"#,
                "status 302 (item 1)",
            ),
            (r#"{"create":{"_id":"1","status":100}}"#, "status 100"),
            (r#"{"create":{"_id":"1","status":204}}"#, "status 204"),
        ] {
            let body = format!(r#"{{"items":[{{"create":{{"_id":"0","status":201}}}},{item}]}}"#);
            let r = unreadable(bulk_ids(&body, &ids(2)));
            assert!(r.contains(want), "{item}: {r}");
        }
    }

    /// One reply of two items: a 201 and `status` with `kind` and `reason`.
    fn with_error(status: u16, kind: &str, reason: &str) -> Result<Ack, SinkError> {
        let err = serde_json::json!({"type": kind, "reason": reason, "index": "sigsci-x"});
        let body = serde_json::json!({"errors": true, "items": [
            {"create": {"status": 201}},
            {"create": {"status": status, "error": err}},
        ]});
        bulk(&body.to_string(), 2)
    }

    #[test]
    fn target_level_item_errors_block_the_request() {
        for (status, kind, reason, want) in [
            (
                404,
                "index_not_found_exception",
                "no such index [sigsci-x]",
                "action.auto_create_index",
            ),
            (
                404,
                "index_not_found_exception",
                "no such index [sigsci-x] and [require_alias] request flag is [true] and [sigsci-x] is not an alias",
                "not an alias",
            ),
            (
                404,
                "index_not_found_exception",
                "no such index [sigsci-x] and the index creation request requires a data stream, but no matching index template with data stream template was found for it",
                "data_stream` enabled",
            ),
            (
                404,
                "resource_not_found_exception",
                "[require_data_stream] request flag is [true] and [sigsci-x] is not a data stream",
                "not a data stream",
            ),
            (
                403,
                "security_exception",
                "action [indices:data/write/bulk[s]] is unauthorized",
                "create_doc",
            ),
            (
                401,
                "security_exception",
                "unable to authenticate user [u]",
                "credentials",
            ),
            (
                403,
                "cluster_block_exception",
                "index [sigsci-x] blocked by: [FORBIDDEN/12/index read-only / allow delete (api)];",
                "flood-stage",
            ),
            (
                403,
                "cluster_block_exception",
                "index [sigsci-x] blocked by: [FORBIDDEN/8/index write (api)];",
                "index.blocks.write",
            ),
            (
                503,
                "cluster_block_exception",
                "blocked by: [SERVICE_UNAVAILABLE/2/no master];",
                "no elected master",
            ),
            (
                400,
                "index_closed_exception",
                "closed",
                "POST /sigsci-x/_open",
            ),
            (
                400,
                "illegal_argument_exception",
                "pipeline with id [geoip] does not exist",
                "PUT /_ingest/pipeline",
            ),
            (
                400,
                "illegal_argument_exception",
                "no write index is defined for alias [sigsci-x]. The write index may be explicitly disabled using is_write_index=false or the alias points to multiple indices without one being designated as a write index",
                "is_write_index: true",
            ),
            (
                400,
                "validation_exception",
                "Validation Failed: 1: this action would add [2] shards, but this cluster currently has [1000]/[1000] maximum normal shards open;",
                "max_shards_per_node",
            ),
        ] {
            match with_error(status, kind, reason) {
                Err(SinkError::Blocked { reason: r }) => {
                    assert!(r.contains(want), "{kind}: {r}");
                    assert!(r.contains(kind), "the cluster's words are kept: {r}");
                    assert!(r.contains(&format!("item status {status}")), "{r}");
                }
                other => panic!("{kind} / {reason}: {other:?}"),
            }
        }
    }

    #[test]
    fn flood_stage_block_is_blocked_although_its_status_is_429() {
        // Elasticsearch 7.6+: TOO_MANY_REQUESTS/12 with item status 429. Retrying it like a full
        // queue would spin until an operator frees disk, without saying so.
        match with_error(
            429,
            "cluster_block_exception",
            "index [sigsci-x] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block];",
        ) {
            Err(SinkError::Blocked { reason }) => {
                assert!(reason.contains("flood-stage watermark"), "{reason}");
                assert!(reason.contains("free disk space"), "{reason}");
                assert!(reason.contains("`sigsci-x`"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn document_level_errors_are_rejected_with_type_and_reason() {
        for (kind, reason) in [
            (
                "mapper_parsing_exception",
                "failed to parse field [status] of type [long]",
            ),
            (
                "document_parsing_exception",
                "[1:57] failed to parse field [tags] of type [keyword]",
            ),
            (
                "strict_dynamic_mapping_exception",
                "[1:2] mapping set to strict, dynamic introduction of [x] within [_doc] is not allowed",
            ),
            (
                "illegal_argument_exception",
                "mapper [response.bytes] cannot be changed from type [long] to [float]",
            ),
            (
                "illegal_argument_exception",
                "Limit of total fields [1000] has been exceeded while adding new fields [3]",
            ),
        ] {
            let ack = with_error(400, kind, reason).unwrap();
            assert_eq!(ack.items[0], ItemOutcome::Delivered);
            assert_eq!(
                ack.items[1],
                ItemOutcome::Rejected {
                    reason: format!("{kind}: {reason}")
                }
            );
        }
        // A queue-full 429 without a block is still passing.
        let ack = with_error(429, "es_rejected_execution_exception", "queue full").unwrap();
        assert_eq!(ack.items[1], ItemOutcome::Retry { after: None });
    }

    #[test]
    fn unusable_success_replies_are_not_delivered() {
        for body in [
            "not json",
            "{\"errors\":false}",
            r#"{"items":[{"create":{"status":201}}]}"#,
        ] {
            assert!(
                matches!(bulk(body, 2), Err(SinkError::Unreadable { .. })),
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
                &["0"],
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
        assert!(matches!(c(408, ""), Err(SinkError::Retryable { .. })));
        for (s, want) in [
            (401, "credentials"),
            (403, "create_doc"),
            (404, "cluster root"),
            (302, "`/x`"),
            (406, "Content-Type"),
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
    fn an_unknown_query_parameter_blocks_instead_of_bisecting() {
        let body = r#"{"error":{"root_cause":[{"type":"illegal_argument_exception","reason":"request [/_bulk] contains unrecognized parameter: [require_data_stream]"}],"type":"illegal_argument_exception","reason":"request [/_bulk] contains unrecognized parameter: [require_data_stream]"},"status":400}"#;
        assert_eq!(
            unrecognized_parameter(body.as_bytes()).as_deref(),
            Some("require_data_stream")
        );
        match classify_bulk(400, None, None, body.as_bytes(), &["0", "1", "2"], "idx") {
            Err(SinkError::Blocked { reason }) => {
                assert!(reason.contains("[require_data_stream]"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        let parse = r#"{"error":{"type":"illegal_argument_exception","reason":"Malformed action/metadata line [3]"},"status":400}"#;
        assert_eq!(unrecognized_parameter(parse.as_bytes()), None);
        assert!(matches!(
            classify_bulk(400, None, None, parse.as_bytes(), &["0", "1", "2"], "idx"),
            Err(SinkError::Invalid { .. })
        ));
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
