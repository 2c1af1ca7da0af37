//! The Elasticsearch index templates in `deploy/elasticsearch/` checked against what the shapes
//! write. No cluster runs in the tests, so [`Index`] replays the part of Elasticsearch's mapping
//! that decides whether a document is accepted: explicit properties, dynamic templates (first
//! match on `path_match` / `match` / `match_mapping_type` wins), the default dynamic types,
//! dotted keys expanding into objects, object/value conflicts, `flattened` swallowing a whole
//! object, `ignore_malformed`, and the total field limit. It is run once without a template too,
//! to show it catches what the template is there to prevent.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use serde_json::{Value, json};

use super::golden::golden_event;
use super::{DEFAULT_REDACT_HEADERS, Format, Shaper};

fn load(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/elasticsearch")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} is readable: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is JSON: {e}", path.display()))
}

struct DynTemplate {
    name: String,
    path_match: Option<String>,
    match_name: Option<String>,
    match_mapping_type: Option<String>,
    ty: String,
}

/// The mapping rules of one template.
struct Mapping {
    explicit: BTreeMap<String, String>,
    dynamic: Vec<DynTemplate>,
    date_detection: bool,
    ignore_malformed: bool,
}

impl Mapping {
    fn from_template(t: &Value) -> Mapping {
        let m = &t["template"]["mappings"];
        let mut explicit = BTreeMap::new();
        fn props(prefix: &str, p: &Value, out: &mut BTreeMap<String, String>) {
            for (k, v) in p.as_object().into_iter().flatten() {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                let ty = v["type"].as_str().unwrap_or("object").to_string();
                if let Some(sub) = v.get("properties") {
                    props(&path, sub, out);
                }
                out.insert(path, ty);
            }
        }
        props("", &m["properties"], &mut explicit);
        let dynamic = m["dynamic_templates"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|entry| {
                let (name, t) = entry.as_object().unwrap().iter().next().unwrap();
                let s = |k: &str| {
                    t.get(k)
                        .map(|v| v.as_str().expect("single string").to_string())
                };
                DynTemplate {
                    name: name.clone(),
                    path_match: s("path_match"),
                    match_name: s("match"),
                    match_mapping_type: s("match_mapping_type"),
                    ty: t["mapping"]["type"]
                        .as_str()
                        .expect("mapping type")
                        .to_string(),
                }
            })
            .collect();
        let settings = &t["template"]["settings"];
        Mapping {
            explicit,
            dynamic,
            date_detection: m["date_detection"].as_bool().unwrap_or(true),
            ignore_malformed: settings["index.mapping.ignore_malformed"]
                .as_bool()
                .or(settings["index"]["mapping"]["ignore_malformed"].as_bool())
                .unwrap_or(false),
        }
    }

    /// Elasticsearch's mapping without any template.
    fn none() -> Mapping {
        Mapping {
            explicit: BTreeMap::new(),
            dynamic: Vec::new(),
            date_detection: true,
            ignore_malformed: false,
        }
    }

    fn dynamic_type(&self, path: &str, json_type: &str) -> Option<&str> {
        let last = path.rsplit('.').next().unwrap_or(path);
        self.dynamic
            .iter()
            .find(|t| {
                t.match_mapping_type
                    .as_deref()
                    .is_none_or(|m| m == "*" || m == json_type)
                    && t.path_match.as_deref().is_none_or(|p| glob(p, path))
                    && t.match_name.as_deref().is_none_or(|p| glob(p, last))
            })
            .map(|t| t.ty.as_str())
    }
}

/// Elasticsearch's simple pattern match: `*` is any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(text) = text.strip_prefix(head) else {
                return false;
            };
            (0..=text.len()).any(|i| text.is_char_boundary(i) && glob(rest, &text[i..]))
        }
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(n) if n.is_f64() => "double",
        Value::Number(_) => "long",
        Value::Bool(_) => "boolean",
        Value::Object(_) => "object",
        Value::Array(_) | Value::Null => unreachable!("handled by the caller"),
    }
}

fn is_date(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

/// Whether a value indexes into a field of type `ty` without loss.
fn fits(ty: &str, v: &Value) -> bool {
    match ty {
        "keyword" | "wildcard" | "text" | "constant_keyword" => !v.is_object(),
        "long" => v.is_i64() || v.as_str().is_some_and(|s| s.trim().parse::<i64>().is_ok()),
        "double" | "float" => {
            v.is_number() || v.as_str().is_some_and(|s| s.trim().parse::<f64>().is_ok())
        }
        "ip" => v.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
        "date" => v.is_i64() || v.as_str().is_some_and(is_date),
        "boolean" => v.is_boolean() || matches!(v.as_str(), Some("true" | "false")),
        _ => false,
    }
}

/// One index's mapping as documents arrive.
struct Index<'m> {
    rules: &'m Mapping,
    fields: BTreeMap<String, String>,
    /// Values dropped by `ignore_malformed`: accepted, but not searchable.
    malformed: Vec<String>,
}

const TOTAL_FIELDS_LIMIT: usize = 1000;

impl<'m> Index<'m> {
    fn new(rules: &'m Mapping) -> Index<'m> {
        Index {
            rules,
            fields: rules.explicit.clone(),
            malformed: Vec::new(),
        }
    }

    /// Indexes one document; `Err` is what `_bulk` would answer for it.
    fn add(&mut self, doc: &Value) -> Result<(), String> {
        let obj = doc.as_object().ok_or("not an object")?;
        for (k, v) in obj {
            self.value(k, v)?;
        }
        if self.fields.len() > TOTAL_FIELDS_LIMIT {
            return Err(format!(
                "Limit of total fields [{TOTAL_FIELDS_LIMIT}] has been exceeded ({})",
                self.fields.len()
            ));
        }
        Ok(())
    }

    fn value(&mut self, path: &str, v: &Value) -> Result<(), String> {
        match v {
            Value::Null => return Ok(()),
            Value::Array(items) => {
                for item in items {
                    self.value(path, item)?;
                }
                return Ok(());
            }
            _ => {}
        }
        // A dotted key is an object path: every prefix must be (or become) an object.
        let mut at = 0;
        while let Some(dot) = path[at..].find('.') {
            let parent = &path[..at + dot];
            match self.fields.get(parent).map(String::as_str) {
                None => {
                    self.fields.insert(parent.to_string(), "object".to_string());
                }
                Some("object") => {}
                Some(other) => {
                    return Err(format!(
                        "[{path}]: existing mapping for [{parent}] must be of type object but found [{other}]"
                    ));
                }
            }
            at += dot + 1;
        }
        let jt = json_type(v);
        let ty = match self.fields.get(path) {
            Some(t) => t.clone(),
            None => {
                let ty = self
                    .rules
                    .dynamic_type(path, jt)
                    .map(str::to_string)
                    .unwrap_or_else(|| {
                        match jt {
                            "string"
                                if self.rules.date_detection && v.as_str().is_some_and(is_date) =>
                            {
                                "date"
                            }
                            "string" => "text",
                            "double" => "float",
                            other => other,
                        }
                        .to_string()
                    });
                self.fields.insert(path.to_string(), ty.clone());
                ty
            }
        };
        match (ty.as_str(), v) {
            ("flattened", Value::Object(_)) => Ok(()),
            ("object", Value::Object(children)) => {
                for (k, c) in children {
                    self.value(&format!("{path}.{k}"), c)?;
                }
                Ok(())
            }
            ("object", _) => Err(format!(
                "[{path}]: tried to parse field as object, but found a concrete value"
            )),
            (ty, Value::Object(_)) => Err(format!("[{path}]: object into a field of type [{ty}]")),
            (ty, v) if fits(ty, v) => Ok(()),
            ("ip" | "date" | "long" | "double" | "float" | "boolean", v)
                if self.rules.ignore_malformed =>
            {
                self.malformed.push(format!("{path}={v}"));
                Ok(())
            }
            (ty, v) => Err(format!(
                "[{path}]: failed to parse field of type [{ty}]: {v}"
            )),
        }
    }

    fn type_of(&self, path: &str) -> Option<&str> {
        self.fields.get(path).map(String::as_str)
    }
}

const TEMPLATES: [&str; 2] = ["index-template.json", "data-stream-template.json"];

/// What the elasticsearch sink sends for `body` in `format`: the shape, plus `@timestamp` for
/// raw and cim (the sink appends it; ecs has its own).
fn es_doc(format: Format, redact: &[String], body: &str) -> Value {
    let ev = golden_event(body);
    let mut out = Vec::new();
    Shaper::new(format, redact).write(&ev, &mut out);
    let mut doc: Value = serde_json::from_slice(&out).expect("shapes write JSON");
    if format != Format::Ecs {
        doc["@timestamp"] = json!(crate::time::rfc3339(ev.ts));
    }
    doc
}

fn golden_inputs() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/input");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("golden inputs")
        .map(|e| e.expect("dir entry").path())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .expect("readable")
                .trim_end()
                .to_string()
        })
        .collect()
}

fn default_redact() -> Vec<String> {
    DEFAULT_REDACT_HEADERS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn templates_target_the_documented_names_and_share_one_mapping() {
    let plain = load("index-template.json");
    let stream = load("data-stream-template.json");
    assert_eq!(plain["index_patterns"], json!(["sigsci-requests-*"]));
    assert_eq!(stream["index_patterns"], json!(["logs-sigsci.requests-*"]));
    assert!(
        plain.get("data_stream").is_none(),
        "dated indices are plain indices"
    );
    assert_eq!(stream["data_stream"], json!({}));
    // The built-in logs-*-* template has priority 100; a tie is refused, lower loses.
    assert!(stream["priority"].as_i64().unwrap() > 100);
    assert_eq!(
        plain["template"], stream["template"],
        "keep the two mappings identical"
    );
    assert_eq!(
        plain["template"]["mappings"]["properties"]["@timestamp"]["type"],
        "date"
    );
    for t in TEMPLATES {
        let rules = Mapping::from_template(&load(t));
        assert!(!rules.date_detection && rules.ignore_malformed, "{t}");
        for headers in [
            "http.request.headers",
            "http.response.headers",
            "http_request_headers",
            "http_response_headers",
        ] {
            assert_eq!(
                rules.dynamic_type(headers, "object"),
                Some("flattened"),
                "{t} {headers}"
            );
        }
        let mut names: Vec<&str> = rules.dynamic.iter().map(|d| d.name.as_str()).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "{t}: dynamic template names are unique");
    }
}

#[test]
fn every_golden_event_maps_cleanly_with_the_intended_types() {
    let redact = default_redact();
    let inputs = golden_inputs();
    // (format, field, type it must get)
    let want: &[(Format, &[(&str, &str)])] = &[
        (
            Format::Ecs,
            &[
                ("@timestamp", "date"),
                ("event.ingested", "date"),
                ("event.duration", "long"),
                ("event.id", "keyword"),
                ("event.category", "keyword"),
                ("http.request.headers", "flattened"),
                ("http.response.headers", "flattened"),
                ("http.response.status_code", "long"),
                ("http.response.bytes", "long"),
                ("http.version", "keyword"),
                ("url.original", "wildcard"),
                ("url.full", "wildcard"),
                ("url.path", "wildcard"),
                ("url.domain", "keyword"),
                ("url.query", "keyword"),
                ("source.ip", "ip"),
                ("source.address", "keyword"),
                ("related.ip", "ip"),
                ("user_agent.original", "keyword"),
                ("rule.name", "keyword"),
                ("tags", "keyword"),
                ("labels.site", "keyword"),
                ("sigsci.agent_response_code", "long"),
                ("sigsci.signals.value", "keyword"),
            ],
        ),
        (
            Format::Cim,
            &[
                ("@timestamp", "date"),
                ("fetched_at", "date"),
                ("http_request_headers", "flattened"),
                ("http_response_headers", "flattened"),
                ("src_ip", "ip"),
                ("src", "keyword"),
                ("status", "long"),
                ("bytes", "long"),
                ("bytes_out", "long"),
                ("response_time", "double"),
                ("duration", "double"),
                ("url", "wildcard"),
                ("site", "keyword"),
                ("sigsci_site", "keyword"),
                ("signature", "keyword"),
            ],
        ),
        (
            Format::Raw,
            &[
                ("@timestamp", "date"),
                ("responseCode", "long"),
                ("responseSize", "long"),
                ("responseMillis", "double"),
                ("agentResponseCode", "long"),
                ("remoteIP", "keyword"),
                ("timestamp", "keyword"),
                ("tags", "object"),
                ("tags.type", "keyword"),
                ("sigsci_export.fetched_at", "date"),
            ],
        ),
    ];
    for t in TEMPLATES {
        let rules = Mapping::from_template(&load(t));
        for (format, types) in want {
            // Each order: the first document decides dynamic types, so no golden may depend on
            // coming first.
            for first in 0..inputs.len() {
                let mut index = Index::new(&rules);
                for body in inputs[first..].iter().chain(&inputs[..first]) {
                    let doc = es_doc(*format, &redact, body);
                    index
                        .add(&doc)
                        .unwrap_or_else(|e| panic!("{t} {format:?} rejects {doc}: {e}"));
                }
                assert!(
                    index.malformed.is_empty(),
                    "{t} {format:?}: {:?}",
                    index.malformed
                );
                for (field, ty) in *types {
                    assert_eq!(index.type_of(field), Some(*ty), "{t} {format:?} {field}");
                }
            }
        }
    }
}

/// A request whose client sent `n` made-up headers, plus (with `collide`) names that collide
/// once dots are read as paths.
fn header_spray(n: usize, collide: bool) -> String {
    let mut headers: Vec<Value> = (0..n)
        .map(|i| json!([format!("X-Rand-{i}"), "1"]))
        .collect();
    let colliding = [
        "foo",
        "foo.bar",
        "foo.bar.baz",
        "x.",
        ".x",
        "a..b",
        "Ünï.cødé",
        "1",
    ];
    for name in colliding.iter().filter(|_| collide) {
        headers.push(json!([name, "v"]));
    }
    json!({"id": "spray", "remoteIP": "203.0.113.9", "serverName": "h", "uri": "/",
           "headersIn": headers, "headersOut": headers,
           "tags": [{"type": "SCANNER"}]})
    .to_string()
}

#[test]
fn attacker_chosen_header_names_cannot_break_the_mapping() {
    let redact = default_redact();
    let spray = header_spray(1500, true);
    for t in TEMPLATES {
        let rules = Mapping::from_template(&load(t));
        for format in [Format::Ecs, Format::Cim, Format::Raw] {
            let mut index = Index::new(&rules);
            for body in golden_inputs()
                .iter()
                .chain([&spray, &header_spray(3, true)])
            {
                let doc = es_doc(format, &redact, body);
                index
                    .add(&doc)
                    .unwrap_or_else(|e| panic!("{t} {format:?}: {e}"));
            }
            assert!(
                index.fields.len() < 200,
                "{t} {format:?}: {} fields",
                index.fields.len()
            );
        }
    }
    // Without a template the same events are rejected: the checker sees what the template fixes.
    let none = Mapping::none();
    for format in [Format::Ecs, Format::Cim] {
        let mut index = Index::new(&none);
        let err = index
            .add(&es_doc(format, &redact, &header_spray(1500, false)))
            .expect_err("field explosion");
        assert!(err.contains("Limit of total fields"), "{format:?}: {err}");
        let mut index = Index::new(&none);
        let err = index
            .add(&es_doc(format, &redact, &header_spray(3, true)))
            .expect_err("foo vs foo.bar");
        assert!(err.contains("foo"), "{format:?}: {err}");
    }
}

#[test]
fn the_checker_knows_elasticsearch_basics() {
    assert!(glob("url.*", "url.path") && !glob("url.*", "url") && glob("*", ""));
    assert!(glob("*.ip", "source.ip") && !glob("http.*", "https.x"));
    let none = Mapping::none();
    let mut index = Index::new(&none);
    index.add(&json!({"a": {"b": 1}, "n": 1})).unwrap();
    assert!(index.add(&json!({"a": "text"})).is_err());
    assert!(index.add(&json!({"a.b.c": 1})).is_err(), "a.b is a long");
    assert!(
        index.add(&json!({"n": "x"})).is_err(),
        "no ignore_malformed"
    );
    index
        .add(&json!({"a.d": "x", "s": "2026-11-24T01:02:03Z"}))
        .unwrap();
    assert_eq!(index.type_of("a.d"), Some("text"));
    assert_eq!(index.type_of("s"), Some("date"));
    assert!(
        index.add(&json!({"s": "yesterday"})).is_err(),
        "date detection bites"
    );
}
