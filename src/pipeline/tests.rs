//! Shaper-level tests: every format, redaction everywhere, records with odd or missing fields.

use serde_json::Value;

use super::golden::golden_event;
use super::*;

fn shape(format: Format, redact: &[&str], body: &str) -> (String, Value) {
    let redact: Vec<String> = redact.iter().map(|s| s.to_string()).collect();
    let mut out = Vec::new();
    Shaper::new(format, &redact).write(&golden_event(body), &mut out);
    let text = String::from_utf8(out).expect("UTF-8");
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{format:?}: {e}: {text}"));
    (text, v)
}

const ALL: [Format; 3] = [Format::Raw, Format::Ecs, Format::Cim];

const SECRET_BODY: &str = r#"{"id":"r1","serverName":"h","uri":"/?a=1","headersIn":[["Host","h"],["COOKIE","c-secret"],["Authorization","Bearer a-secret"],["X-Custom","x-secret"],["Referer","https://r/"]],"headersOut":[["Set-Cookie","s-secret"],["Content-Type","text/plain"]],"tags":[]}"#;

#[test]
fn default_redaction_in_every_format() {
    for format in ALL {
        let (text, v) = shape(format, DEFAULT_REDACT_HEADERS, SECRET_BODY);
        for secret in ["c-secret", "a-secret", "s-secret"] {
            assert!(!text.contains(secret), "{format:?} leaks {secret}: {text}");
        }
        assert!(text.contains("x-secret"), "{format:?}: {text}");
        assert!(text.contains(REDACTED), "{format:?}: {text}");
        match format {
            Format::Raw => {
                assert_eq!(v["headersIn"][1], serde_json::json!(["COOKIE", REDACTED]));
                assert_eq!(v["headersOut"][0][1], REDACTED);
            }
            Format::Ecs => {
                assert_eq!(v["http"]["request"]["headers"]["cookie"], REDACTED);
                assert_eq!(v["http"]["request"]["headers"]["authorization"], REDACTED);
                assert_eq!(v["http"]["response"]["headers"]["set-cookie"], REDACTED);
                assert_eq!(v["http"]["request"]["referrer"], "https://r/");
            }
            Format::Cim => {
                assert_eq!(v["http_request_headers"]["cookie"], REDACTED);
                assert_eq!(v["http_response_headers"]["set-cookie"], REDACTED);
                assert_eq!(v["http_referrer"], "https://r/");
            }
        }
    }
}

#[test]
fn custom_and_empty_redaction_lists() {
    for format in ALL {
        let (text, _) = shape(format, &["x-custom", "referer"], SECRET_BODY);
        assert!(!text.contains("x-secret"), "{format:?}: {text}");
        assert!(!text.contains("https://r/"), "{format:?}: {text}");
        assert!(text.contains("c-secret"), "{format:?}: {text}");
        let (text, _) = shape(format, &[], SECRET_BODY);
        assert!(!text.contains(REDACTED), "{format:?}: {text}");
    }
}

#[test]
fn raw_redaction_changes_only_the_redacted_values() {
    let (text, _) = shape(Format::Raw, DEFAULT_REDACT_HEADERS, SECRET_BODY);
    let want = SECRET_BODY
        .replace("\"c-secret\"", "\"[redacted]\"")
        .replace("\"Bearer a-secret\"", "\"[redacted]\"")
        .replace("\"s-secret\"", "\"[redacted]\"");
    let want = want.strip_suffix('}').unwrap();
    assert!(text.starts_with(want), "{text}");
}

#[test]
fn raw_fast_path_is_byte_identical() {
    let body = r#"{"id":"r1","n":1.50,"headersIn":[["Host","h"]],"z":"\u00e9"}"#;
    let (text, _) = shape(Format::Raw, DEFAULT_REDACT_HEADERS, body);
    let mut plain = Vec::new();
    write_raw(&golden_event(body), &mut plain);
    assert_eq!(text.as_bytes(), plain.as_slice());
}

#[test]
fn raw_redacts_escaped_names_object_headers_and_repeated_keys() {
    let cases = [
        r#"{"headersIn":[["\u0043ookie","secret"]]}"#,
        r#"{"headersIn":{"Cookie":"secret","Host":"h"}}"#,
        r#"{"headersOut":[["Host","h"]],"headersOut":[["set-cookie","secret"]]}"#,
        r#"{"headersIn":[["Cookie","secret","extra"],["Cookie"],"odd",null]}"#,
    ];
    for body in cases {
        let (text, _) = shape(Format::Raw, DEFAULT_REDACT_HEADERS, body);
        assert!(!text.contains("secret\""), "{body} -> {text}");
        assert!(text.contains(REDACTED), "{body} -> {text}");
    }
    // The name inside other text is not a header: nothing changes.
    let body = r#"{"uri":"/?q=document.cookie","headersIn":[["Host","h"]]}"#;
    let (text, _) = shape(Format::Raw, DEFAULT_REDACT_HEADERS, body);
    assert!(text.starts_with(body.strip_suffix('}').unwrap()), "{text}");
}

#[test]
fn non_objects_and_empty_objects_still_give_json() {
    for body in ["[1,2]", "\"text\"", "null", "{}", "{ }", "not json"] {
        for format in ALL {
            let mut out = Vec::new();
            Shaper::new(format, &default_redact_headers()).write(&golden_event(body), &mut out);
            if body == "not json" && format == Format::Raw {
                // raw copies the spool's text; the source never spools invalid JSON.
                continue;
            }
            let v: Value = serde_json::from_slice(&out)
                .unwrap_or_else(|e| panic!("{format:?} {body}: {e}: {out:?}"));
            assert!(v.is_object(), "{format:?} {body}");
        }
    }
}

#[test]
fn missing_fields_are_omitted_and_fallbacks_used() {
    let (_, ecs) = shape(Format::Ecs, DEFAULT_REDACT_HEADERS, "{}");
    assert_eq!(ecs["@timestamp"], "2026-11-24T01:02:03Z");
    assert_eq!(ecs["event"]["id"], "spool-id");
    assert_eq!(ecs["event"]["action"], "allowed");
    assert_eq!(ecs["event"]["ingested"], "2026-11-24T01:07:03Z");
    assert_eq!(ecs["labels"]["corp"], "acme");
    for absent in [
        "http",
        "url",
        "source",
        "user_agent",
        "tls",
        "rule",
        "tags",
        "related",
    ] {
        assert!(ecs.get(absent).is_none(), "{absent}: {ecs}");
    }
    let (_, cim) = shape(Format::Cim, DEFAULT_REDACT_HEADERS, "{}");
    assert_eq!(cim["id"], "spool-id");
    assert_eq!(cim["action"], "allowed");
    assert_eq!(cim["sigsci_site"], "www");
    for absent in [
        "src",
        "src_ip",
        "status",
        "url",
        "signature",
        "http_request_headers",
        "site",
        "bytes",
    ] {
        assert!(cim.get(absent).is_none(), "{absent}: {cim}");
    }
    // A bad timestamp falls back to the spool's time; a bad IP stays out of ip-typed fields.
    let body = r#"{"timestamp":"yesterday","remoteIP":"unknown"}"#;
    let (_, ecs) = shape(Format::Ecs, &[], body);
    assert_eq!(ecs["@timestamp"], "2026-11-24T01:02:03Z");
    assert!(ecs["source"].get("ip").is_none());
    assert_eq!(ecs["source"]["address"], "unknown");
    assert!(ecs.get("related").is_none());
    let (_, cim) = shape(Format::Cim, &[], body);
    assert_eq!(cim["src"], "unknown");
    assert!(cim.get("src_ip").is_none());
}

#[test]
fn ecs_mapping() {
    let body = r#"{"id":"r9","timestamp":"2026-11-24T01:02:03Z","method":"Post","protocol":"HTTP/2.0",
        "tlsProtocol":"TLSv1.3","tlsCipher":"TLS_AES_128_GCM_SHA256","scheme":"https","serverName":"h.example",
        "serverHostname":"web-1","path":"/p","uri":"/p?x=1","remoteIP":"203.0.113.9","remoteCountryCode":"NL",
        "responseCode":406,"responseSize":12,"responseMillis":3,"agentResponseCode":406,
        "tags":[{"type":"SQLI","value":"x=1"},{"type":"HTTP404"},{"type":"SQLI"},{"type":"BLOCKED"}]}"#;
    let (_, v) = shape(Format::Ecs, &[], body);
    let checks: &[(&str, Value)] = &[
        ("/ecs/version", ECS_VERSION.into()),
        ("/event/kind", "event".into()),
        (
            "/event/category",
            serde_json::json!(["web", "intrusion_detection"]),
        ),
        ("/event/type", serde_json::json!(["access", "denied"])),
        ("/event/action", "blocked".into()),
        ("/event/id", "r9".into()),
        ("/event/duration", 3_000_000.into()),
        ("/event/dataset", "sigsci.requests".into()),
        ("/http/request/method", "Post".into()),
        ("/http/response/status_code", 406.into()),
        ("/http/response/bytes", 12.into()),
        ("/http/version", "2".into()),
        ("/url/original", "/p?x=1".into()),
        ("/url/path", "/p".into()),
        ("/url/query", "x=1".into()),
        ("/url/full", "https://h.example/p?x=1".into()),
        ("/url/domain", "h.example".into()),
        ("/source/ip", "203.0.113.9".into()),
        ("/source/geo/country_iso_code", "NL".into()),
        ("/tls/version_protocol", "tls".into()),
        ("/tls/version", "1.3".into()),
        ("/observer/hostname", "web-1".into()),
        ("/observer/type", "waf".into()),
        ("/rule/name", serde_json::json!(["SQLI", "HTTP404"])),
        ("/tags", serde_json::json!(["SQLI", "HTTP404", "BLOCKED"])),
        ("/related/ip", serde_json::json!(["203.0.113.9"])),
        ("/sigsci/signals/0/value", "x=1".into()),
    ];
    for (ptr, want) in checks {
        assert_eq!(v.pointer(ptr), Some(want), "{ptr}: {v}");
    }
    // Anomaly only, let through: allowed, logged, no intrusion_detection.
    let (_, v) = shape(
        Format::Ecs,
        &[],
        r#"{"agentResponseCode":200,"tags":[{"type":"HTTP404"}]}"#,
    );
    assert_eq!(v["event"]["category"], serde_json::json!(["web"]));
    assert_eq!(v["event"]["type"], serde_json::json!(["access", "allowed"]));
    assert_eq!(v["event"]["action"], "logged");
}

#[test]
fn cim_mapping() {
    let body = r#"{"id":"r9","timestamp":"2026-11-24T01:02:03Z","method":"GET","serverName":"h.example",
        "serverHostname":"web-1","path":"/p","uri":"/p?x=1","remoteIP":"203.0.113.9","userAgent":"curl/8",
        "responseCode":200,"responseSize":12,"responseMillis":3,"agentResponseCode":200,
        "headersIn":[["Referer","https://ref/"]],"headersOut":[["Content-Type","text/html"]],
        "tags":[{"type":"XSS"},{"type":"BLOCKED"}]}"#;
    let (_, v) = shape(Format::Cim, &[], body);
    let checks: &[(&str, Value)] = &[
        ("action", "blocked".into()),
        ("src", "203.0.113.9".into()),
        ("src_ip", "203.0.113.9".into()),
        ("dest", "h.example".into()),
        ("dvc", "web-1".into()),
        ("http_method", "GET".into()),
        ("uri_path", "/p".into()),
        ("uri_query", "x=1".into()),
        ("url", "https://h.example/p?x=1".into()),
        ("url_domain", "h.example".into()),
        ("status", 200.into()),
        ("bytes_out", 12.into()),
        ("http_user_agent", "curl/8".into()),
        ("http_user_agent_length", 6.into()),
        ("http_referrer", "https://ref/".into()),
        ("http_content_type", "text/html".into()),
        ("response_time", 3.into()),
        ("duration", 3.into()),
        ("vendor_product", CIM_VENDOR_PRODUCT.into()),
        // BLOCKED is the decision (`action`), not a signature: as in ECS `rule.name`.
        ("signature", serde_json::json!(["XSS"])),
        // No request size in the feed: bytes is the response size alone.
        ("bytes", 12.into()),
        ("ids_type", "application".into()),
        // CIM `site` is the web site requested; the Signal Sciences corp/site get their own names.
        ("site", "h.example".into()),
        ("sigsci_site", "www".into()),
        ("sigsci_corp", "acme".into()),
        ("id", "r9".into()),
        ("timestamp", "2026-11-24T01:02:03Z".into()),
    ];
    for (key, want) in checks {
        assert_eq!(v.get(*key), Some(want), "{key}: {v}");
    }
    assert!(v.get("corp").is_none(), "{v}");
}

#[test]
fn a_repeated_upstream_key_never_empties_the_event() {
    let body = r#"{"id":"r1","remoteIP":"203.0.113.9","responseCode":200,"responseCode":500,
        "tags":[{"type":"SQLI"}],"tags":[]}"#;
    let (_, ecs) = shape(Format::Ecs, &[], body);
    assert_eq!(ecs["event"]["id"], "r1");
    assert_eq!(ecs["source"]["ip"], "203.0.113.9");
    assert_eq!(ecs["http"]["response"]["status_code"], 200);
    assert_eq!(ecs["rule"]["name"], serde_json::json!(["SQLI"]));
    let (_, cim) = shape(Format::Cim, &[], body);
    assert_eq!(cim["id"], "r1");
    assert_eq!(cim["status"], 200);
    assert!(filter::TagFilter::new(vec!["SQLI".into()], vec![]).keep(body));
}

#[test]
fn response_millis_fractions_become_ns_in_ecs_and_stay_ms_in_cim() {
    // (responseMillis as sent, ECS event.duration in ns, CIM response_time/duration in ms)
    let cases: &[(&str, Option<Value>, Option<Value>)] = &[
        ("3", Some(3_000_000.into()), Some(3.into())),
        ("1.5", Some(1_500_000.into()), Some(1.5.into())),
        ("0.0000006", Some(1.into()), Some(0.0000006.into())),
        ("\"2.25\"", Some(2_250_000.into()), Some(2.25.into())),
        ("2.0", Some(2_000_000.into()), Some(2.into())),
        ("0", Some(0.into()), Some(0.into())),
        ("-1", None, None),
        ("\"fast\"", None, None),
        ("null", None, None),
        ("1e300", None, None),
    ];
    for (millis, ns, ms) in cases {
        let body = format!(r#"{{"id":"r1","responseMillis":{millis}}}"#);
        let (_, ecs) = shape(Format::Ecs, &[], &body);
        assert_eq!(ecs["event"].get("duration"), ns.as_ref(), "ecs {millis}");
        let (text, cim) = shape(Format::Cim, &[], &body);
        assert_eq!(
            cim.get("response_time"),
            ms.as_ref(),
            "cim {millis}: {text}"
        );
        assert_eq!(cim.get("duration"), ms.as_ref(), "cim {millis}");
    }
    // Whole milliseconds are written as integers, not `3.0`.
    let (text, _) = shape(Format::Cim, &[], r#"{"responseMillis":3}"#);
    assert!(text.contains(r#""response_time":3,"#), "{text}");
}

/// A user agent, a cookie and a query fragment, each also in a derived field or a tag value.
const DERIVED_BODY: &str = r#"{"id":"r1","serverName":"h.example","userAgent":"ua-secret/1.0","uri":"/?q=x",
    "headersIn":[["Host","h.example"],["User-Agent","ua-secret/1.0"],["Cookie","sid=c-secret"]],
    "tags":[{"type":"USERAGENT","location":"USERAGENT","value":"ua-secret","detector":"UARule"},
            {"type":"SQLI","location":"COOKIE","value":"sid=c-secret' OR 1=1","detector":"SQLiRule"},
            {"type":"XSS","location":"QUERY_STRING","value":"q=<script>","detector":"XSSRule"},
            {"type":"BLOCKED","location":"","value":"","detector":""}]}"#;

#[test]
fn a_redacted_header_is_redacted_in_derived_fields_and_tag_values_too() {
    // (redact list, texts that must not appear, texts that must stay)
    let cases: &[(&[&str], &[&str], &[&str])] = &[
        (
            &["user-agent", "cookie"],
            &["ua-secret", "c-secret"],
            &["q=<script>"],
        ),
        (&["User-Agent"], &["ua-secret"], &["c-secret", "q=<script>"]),
        (
            DEFAULT_REDACT_HEADERS,
            &["c-secret"],
            &["ua-secret", "q=<script>"],
        ),
        (&[], &[], &["ua-secret", "c-secret", "q=<script>"]),
        // The virtual host names the protected site: `host` redacts the header copy only.
        (
            &["host"],
            &[r#""host":"h.example""#, r#"["Host","h.example"]"#],
            &["h.example"],
        ),
    ];
    for (redact, gone, kept) in cases {
        for format in ALL {
            let (text, _) = shape(format, redact, DERIVED_BODY);
            for g in *gone {
                assert!(!text.contains(g), "{format:?} {redact:?} leaks {g}: {text}");
            }
            for k in *kept {
                // cim carries no tag values (only signature names).
                if format == Format::Cim && k.starts_with("q=") {
                    continue;
                }
                assert!(text.contains(k), "{format:?} {redact:?} lost {k}: {text}");
            }
        }
    }
    let (_, ecs) = shape(Format::Ecs, &["user-agent"], DERIVED_BODY);
    assert_eq!(ecs["user_agent"]["original"], REDACTED);
    assert_eq!(ecs["sigsci"]["signals"][0]["value"], REDACTED);
    assert_eq!(ecs["sigsci"]["signals"][0]["location"], "USERAGENT");
    assert_eq!(ecs["sigsci"]["signals"][1]["value"], "sid=c-secret' OR 1=1");
    let (_, cim) = shape(Format::Cim, &["user-agent"], DERIVED_BODY);
    assert_eq!(cim["http_user_agent"], REDACTED);
    assert!(cim.get("http_user_agent_length").is_none(), "{cim}");
    let (_, raw) = shape(Format::Raw, &["user-agent"], DERIVED_BODY);
    assert_eq!(raw["userAgent"], REDACTED);
    assert_eq!(raw["tags"][0]["value"], REDACTED);
    assert_eq!(raw["tags"][3]["value"], "", "empty values stay empty");
    // raw finds them without any header list in the record (its fast path must not skip these).
    for body in [
        r#"{"userAgent":"ua-secret"}"#,
        r#"{"tags":[{"location":"User_Agent","value":"ua-secret"}]}"#,
        r#"{"tags":[{"value":"ua-secret","location":"USERAGENT"}],"tags":[]}"#,
    ] {
        let (text, _) = shape(Format::Raw, &["user-agent"], body);
        assert!(!text.contains("ua-secret"), "{body} -> {text}");
    }
}

#[test]
fn signals_name_the_same_rules_in_ecs_and_cim() {
    // (tag types, ECS rule.name and CIM signature; None when absent)
    let cases: &[(&str, Option<Value>)] = &[
        (r#"["SQLI","BLOCKED"]"#, Some(serde_json::json!(["SQLI"]))),
        (r#"["BLOCKED"]"#, None),
        (
            r#"["blocked","site.x","HTTP404","site.x"]"#,
            Some(serde_json::json!(["site.x", "HTTP404"])),
        ),
        ("[]", None),
    ];
    for (types, want) in cases {
        let kinds: Vec<String> = serde_json::from_str(types).unwrap();
        let tags: Vec<Value> = kinds
            .iter()
            .map(|k| serde_json::json!({"type": k}))
            .collect();
        let body = serde_json::json!({"id": "r1", "tags": tags}).to_string();
        let (_, ecs) = shape(Format::Ecs, &[], &body);
        let (_, cim) = shape(Format::Cim, &[], &body);
        assert_eq!(ecs.pointer("/rule/name"), want.as_ref(), "ecs {types}");
        assert_eq!(cim.get("signature"), want.as_ref(), "cim {types}");
    }
}
