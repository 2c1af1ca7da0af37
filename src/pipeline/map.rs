//! Derivations shared by the `ecs` and `cim` shapes: the blocked rule, attack vs anomaly
//! signals, HTTP and TLS versions, URI splitting, header folding and redaction. Each rule is
//! documented in `docs/formats.md`; keep the two in step.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::request::{Request, Str, Tag};
use crate::store::SpooledEvent;

/// What a redacted header value is replaced by, in every format.
pub const REDACTED: &str = "[redacted]";

/// Signal types that are attacks (Fastly's "Attack signals" list); every other signal is an
/// anomaly. `BLOCKED` is a decision, not a signal of either kind.
pub const ATTACK_TAGS: &[&str] = &[
    "AWS-SSRF",
    "BACKDOOR",
    "CMDEXE",
    "CODEINJECTION",
    "LOG4J-JNDI",
    "SQLI",
    "TRAVERSAL",
    "USERAGENT",
    "XSS",
];

/// The tag the agent adds to a request it blocked.
pub(crate) const BLOCKED_TAG: &str = "BLOCKED";

/// Whether a signal type is an attack (case-insensitive).
pub(crate) fn is_attack(kind: &str) -> bool {
    ATTACK_TAGS.iter().any(|a| a.eq_ignore_ascii_case(kind))
}

/// The blocked rule: the agent itself answered with an error status (`agentResponseCode`
/// 400..=599: 406 is the default block code, a site may configure another 4xx/5xx; 200 or a
/// missing/zero code means the agent let the request through), or the request carries a
/// `BLOCKED` tag.
pub(crate) fn is_blocked(agent_response_code: Option<i64>, tags: &[Tag<'_>]) -> bool {
    agent_response_code.is_some_and(|c| (400..=599).contains(&c))
        || tags
            .iter()
            .any(|t| t.kind.eq_ignore_ascii_case(BLOCKED_TAG))
}

/// The distinct signal types of a request, in the order the API listed them.
pub(crate) fn tag_types<'r>(tags: &'r [Tag<'_>]) -> Vec<&'r str> {
    let mut out: Vec<&str> = Vec::with_capacity(tags.len());
    for t in tags {
        if !out.contains(&t.kind.as_ref()) {
            out.push(&t.kind);
        }
    }
    out
}

/// The signals that fired, as rule names / signatures: the distinct types without `BLOCKED`,
/// which is the decision (ECS `event.type`, CIM `action`), not a rule. ECS `rule.name` and CIM
/// `signature` both use this, so the two formats name the same rules.
pub(crate) fn rule_names<'r>(types: &[&'r str]) -> Vec<&'r str> {
    types
        .iter()
        .copied()
        .filter(|t| !t.eq_ignore_ascii_case(BLOCKED_TAG))
        .collect()
}

/// `HTTP/1.1` -> `1.1`, `HTTP/2.0` and `HTTP/2` -> `2`, `HTTP/3.0` -> `3` (ECS writes major-only
/// versions from 2 on). Anything without the `HTTP/` prefix is kept as sent.
pub(crate) fn http_version(protocol: &str) -> Option<&str> {
    let p = protocol.trim();
    let v = match p.get(..5) {
        Some(prefix) if prefix.eq_ignore_ascii_case("HTTP/") => &p[5..],
        _ => p,
    };
    let v = match v {
        "2.0" => "2",
        "3.0" => "3",
        v => v,
    };
    (!v.is_empty()).then_some(v)
}

/// `TLSv1.3` -> (`tls`, `1.3`), `SSLv3` -> (`ssl`, `3`), `TLS 1.2` -> (`tls`, `1.2`). `None`
/// when empty; an unrecognised value gives no protocol and the text as the version.
pub(crate) fn tls_version(tls_protocol: &str) -> Option<(Option<&'static str>, &str)> {
    let t = tls_protocol.trim();
    if t.is_empty() {
        return None;
    }
    for (prefix, name) in [("TLS", "tls"), ("SSL", "ssl")] {
        if t.len() >= 3 && t[..3].eq_ignore_ascii_case(prefix) {
            let rest = t[3..].trim_start_matches(['v', 'V', ' ']);
            if !rest.is_empty() {
                return Some((Some(name), rest));
            }
        }
    }
    Some((None, t))
}

/// Splits a request URI into path and query: the query excludes the `?` and is `None` when
/// empty; a `#fragment` (never sent by browsers, but possible in a raw request line) is dropped.
pub(crate) fn split_uri(uri: &str) -> (&str, Option<&str>) {
    let uri = uri.split_once('#').map_or(uri, |(u, _)| u);
    match uri.split_once('?') {
        Some((path, query)) => (path, (!query.is_empty()).then_some(query)),
        None => (uri, None),
    }
}

/// Whether header `name` is on the (lower-cased) redaction list.
pub(crate) fn is_redacted(name: &str, redact: &[String]) -> bool {
    redact.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// The header a derived top-level field copies: `userAgent` is the `User-Agent` header, so a
/// redacted `user-agent` must not come back through it. (`serverName` copies `Host` but names
/// the protected site itself: it is deliberately not on this list; see docs/formats.md.)
pub(crate) const USER_AGENT_HEADER: &str = "user-agent";

/// Whether a name written without separators names a redacted header: signal locations
/// (`USERAGENT`, `COOKIE`) and camel-case keys (`userAgent`) spell header names in their own
/// way, so the comparison ignores ASCII case, `-` and `_`.
pub(crate) fn names_redacted_header(name: &str, redact: &[String]) -> bool {
    redact.iter().any(|r| squashed_eq(name, r))
}

/// `a == b` ignoring ASCII case, `-` and `_`; false when either is only separators. Allocation
/// free: `raw` calls it on every string of a record.
pub(crate) fn squashed_eq(a: &str, b: &str) -> bool {
    fn squash(s: &str) -> impl Iterator<Item = u8> + '_ {
        s.bytes()
            .filter(|b| !matches!(b, b'-' | b'_'))
            .map(|b| b.to_ascii_lowercase())
    }
    squash(a).next().is_some() && squash(a).eq(squash(b))
}

/// `userAgent`, or [`REDACTED`] when the `User-Agent` header is redacted.
pub(crate) fn user_agent<'r>(req: &'r Request<'_>, redact: &[String]) -> Option<&'r str> {
    let ua = req.user_agent.get()?;
    Some(if is_redacted(USER_AGENT_HEADER, redact) {
        REDACTED
    } else {
        ua
    })
}

/// Whether a signal's matched `value` is redacted: its `location` names a redacted header (a
/// SQLI found in the Cookie header carries a piece of the cookie). Values found elsewhere (query
/// string, path, body) are request fragments no header list can describe and are kept.
pub(crate) fn tag_value_redacted(tag: &Tag<'_>, redact: &[String]) -> bool {
    tag.location
        .as_deref()
        .is_some_and(|l| names_redacted_header(l, redact))
}

/// `value` as a valid IP address, or `None` (an index mapped as `ip` rejects anything else).
pub(crate) fn valid_ip(value: Option<&str>) -> Option<&str> {
    value.filter(|v| v.parse::<IpAddr>().is_ok())
}

/// The request time: the record's `timestamp` when it is RFC 3339, else the time the spool
/// recorded for it (the window start when the record had none).
pub(crate) fn timestamp<'r>(req: &'r Request<'_>, ev: &SpooledEvent) -> Cow<'r, str> {
    match req.timestamp.get() {
        Some(t) if chrono::DateTime::parse_from_rfc3339(t).is_ok() => Cow::Borrowed(t),
        _ => Cow::Owned(crate::time::rfc3339(ev.ts)),
    }
}

/// The request's URI (path and query), falling back to `path`.
pub(crate) fn uri<'r>(req: &'r Request<'_>) -> Option<&'r str> {
    req.uri.get().or_else(|| req.path.get())
}

/// `scheme://host` + URI, when the host is known (scheme defaults to `https`).
pub(crate) fn full_url(req: &Request<'_>) -> Option<String> {
    let host = req.server_name.get()?;
    let scheme = req.scheme.get().unwrap_or("https");
    let uri = uri(req).unwrap_or("/");
    let sep = if uri.starts_with('/') { "" } else { "/" };
    Some(format!("{scheme}://{host}{sep}{uri}"))
}

/// The first value of header `name` (case-insensitive), unless it is redacted.
pub(crate) fn header<'r>(
    headers: &'r [(Cow<'_, str>, Cow<'_, str>)],
    name: &str,
    redact: &[String],
) -> Option<&'r str> {
    let (_, value) = headers
        .iter()
        .find(|(n, v)| n.eq_ignore_ascii_case(name) && !v.is_empty())?;
    Some(if is_redacted(name, redact) {
        REDACTED
    } else {
        value
    })
}

/// Headers folded into one JSON object: lower-cased names in first-seen order, a string value,
/// or an array when the name repeats; redacted names get [`REDACTED`].
#[derive(Debug, Default)]
pub(crate) struct Folded<'r> {
    entries: Vec<(Cow<'r, str>, Vec<&'r str>)>,
}

impl<'r> Folded<'r> {
    /// Folds `pairs`; `None` when there are none (the field is then omitted).
    pub(crate) fn new(
        pairs: &'r [(Cow<'_, str>, Cow<'_, str>)],
        redact: &[String],
    ) -> Option<Self> {
        if pairs.is_empty() {
            return None;
        }
        let mut entries: Vec<(Cow<'r, str>, Vec<&'r str>)> = Vec::with_capacity(pairs.len());
        for (name, value) in pairs {
            let name: &'r str = name;
            let lower = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(name.to_ascii_lowercase())
            } else {
                Cow::Borrowed(name)
            };
            let value: &'r str = if is_redacted(name, redact) {
                REDACTED
            } else {
                value
            };
            match entries.iter_mut().find(|(n, _)| *n == lower) {
                Some((_, values)) => values.push(value),
                None => entries.push((lower, vec![value])),
            }
        }
        Some(Folded { entries })
    }
}

impl Serialize for Folded<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.entries.len()))?;
        for (name, values) in &self.entries {
            match values.as_slice() {
                [one] => map.serialize_entry(name, one)?,
                many => map.serialize_entry(name, many)?,
            }
        }
        map.end()
    }
}

/// A string field for output: `None` when missing or empty.
pub(crate) fn s<'r>(v: &'r Str<'_>) -> Option<&'r str> {
    v.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(kinds: &[&'static str]) -> Vec<Tag<'static>> {
        kinds
            .iter()
            .map(|k| Tag {
                kind: Cow::Borrowed(*k),
                ..Tag::default()
            })
            .collect()
    }

    #[test]
    fn blocked_rule() {
        let cases: &[(Option<i64>, &[&'static str], bool)] = &[
            (Some(406), &[], true),
            (Some(403), &[], true),
            (Some(503), &[], true),
            (Some(200), &[], false),
            (Some(0), &[], false),
            (Some(-1), &[], false),
            (Some(302), &["SQLI"], false),
            (None, &["SQLI"], false),
            (None, &["SQLI", "BLOCKED"], true),
            (Some(200), &["blocked"], true),
            (Some(600), &[], false),
        ];
        for (code, kinds, want) in cases {
            assert_eq!(is_blocked(*code, &tags(kinds)), *want, "{code:?} {kinds:?}");
        }
    }

    #[test]
    fn attack_or_anomaly() {
        for (kind, attack) in [
            ("SQLI", true),
            ("xss", true),
            ("LOG4J-JNDI", true),
            ("CODEINJECTION", true),
            ("HTTP404", false),
            ("SCANNER", false),
            ("BLOCKED", false),
            ("site.my-signal", false),
        ] {
            assert_eq!(is_attack(kind), attack, "{kind}");
        }
    }

    #[test]
    fn versions() {
        for (p, want) in [
            ("HTTP/1.1", Some("1.1")),
            ("HTTP/1.0", Some("1.0")),
            ("HTTP/2.0", Some("2")),
            ("http/2", Some("2")),
            ("HTTP/3.0", Some("3")),
            ("SPDY", Some("SPDY")),
            ("", None),
            ("HTTP/", None),
        ] {
            assert_eq!(http_version(p), want, "{p}");
        }
        for (t, want) in [
            ("TLSv1.3", Some((Some("tls"), "1.3"))),
            ("TLSv1.2", Some((Some("tls"), "1.2"))),
            ("TLS 1.1", Some((Some("tls"), "1.1"))),
            ("SSLv3", Some((Some("ssl"), "3"))),
            ("QUIC", Some((None, "QUIC"))),
            ("", None),
        ] {
            assert_eq!(tls_version(t), want, "{t}");
        }
    }

    #[test]
    fn query_split() {
        for (uri, path, query) in [
            ("/search?q=1", "/search", Some("q=1")),
            ("/search?", "/search", None),
            ("/search", "/search", None),
            ("/a?b=1?c=2", "/a", Some("b=1?c=2")),
            ("/a?b=1#frag", "/a", Some("b=1")),
            ("", "", None),
        ] {
            assert_eq!(split_uri(uri), (path, query), "{uri}");
        }
    }

    #[test]
    fn header_folding_lowercases_merges_and_redacts() {
        let pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = [
            ("Host", "h"),
            ("Accept", "a"),
            ("COOKIE", "secret1"),
            ("accept", "b"),
            ("cookie", "secret2"),
            ("x-lower", "l"),
        ]
        .iter()
        .map(|(n, v)| (Cow::Borrowed(*n), Cow::Borrowed(*v)))
        .collect();
        let redact = vec!["cookie".to_string()];
        let folded = Folded::new(&pairs, &redact).unwrap();
        let json = serde_json::to_string(&folded).unwrap();
        assert_eq!(
            json,
            r#"{"host":"h","accept":["a","b"],"cookie":["[redacted]","[redacted]"],"x-lower":"l"}"#
        );
        assert!(Folded::new(&[], &redact).is_none());
        assert_eq!(header(&pairs, "accept", &redact), Some("a"));
        assert_eq!(header(&pairs, "Cookie", &redact), Some(REDACTED));
        assert_eq!(header(&pairs, "referer", &redact), None);
    }

    #[test]
    fn header_names_in_other_spellings() {
        let redact = vec!["user-agent".to_string(), "cookie".to_string()];
        for (name, want) in [
            ("USERAGENT", true),
            ("userAgent", true),
            ("User_Agent", true),
            ("COOKIE", true),
            ("QUERY_STRING", false),
            ("COOKIES", false),
            ("", false),
            ("-", false),
        ] {
            assert_eq!(names_redacted_header(name, &redact), want, "{name}");
        }
        assert!(!squashed_eq("--", "__"));
    }

    #[test]
    fn ips_and_urls() {
        assert_eq!(valid_ip(Some("203.0.113.7")), Some("203.0.113.7"));
        assert_eq!(valid_ip(Some("2001:db8::1")), Some("2001:db8::1"));
        assert_eq!(valid_ip(Some("unknown")), None);
        let mut s = String::new();
        let r = Request::parse(r#"{"serverName":"h.example","uri":"/x?y=1"}"#, &mut s);
        assert_eq!(full_url(&r).as_deref(), Some("https://h.example/x?y=1"));
        let mut s = String::new();
        let r = Request::parse(r#"{"serverName":"h","scheme":"http","path":"/p"}"#, &mut s);
        assert_eq!(full_url(&r).as_deref(), Some("http://h/p"));
        assert_eq!(full_url(&Request::parse("{}", &mut String::new())), None);
    }
}
