//! The `_bulk` body: NDJSON, one `create` action line and one document line per event, every
//! line newline-terminated (including the last, which Elasticsearch requires).
//!
//! `create` with `_id` = the request id makes delivery exactly once: a replay of a document
//! that already landed answers 409 instead of indexing it twice, and data streams accept
//! nothing else.

use crate::pipeline::{Format, Shaper, push_json_str};
use crate::store::SpooledEvent;

use super::config::IndexPattern;

/// Encodes events for one sink.
#[derive(Debug, Clone)]
pub(crate) struct Encoder {
    pub(crate) shaper: Shaper,
    pub(crate) index: IndexPattern,
    /// Whether to add `@timestamp` to shapes that lack it.
    add_timestamp: bool,
}

impl Encoder {
    pub(crate) fn new(shaper: Shaper, index: IndexPattern) -> Encoder {
        // ECS documents carry `@timestamp` themselves. Raw and CIM do not; it is added to
        // every index, not only data streams (which require it), so that a Kibana data view
        // has the same time field whatever the target.
        let add_timestamp = shaper.format() != Format::Ecs;
        Encoder {
            shaper,
            index,
            add_timestamp,
        }
    }

    /// Appends the action and document lines of `ev` to `out`.
    pub(crate) fn write(&self, ev: &SpooledEvent, out: &mut Vec<u8>) {
        // Index names never need escaping (see `render_into`).
        out.extend_from_slice(b"{\"create\":{\"_index\":\"");
        self.index.render_into(ev.ts, out);
        out.extend_from_slice(b"\",\"_id\":");
        push_json_str(&ev.id, out);
        out.extend_from_slice(b"}}\n");
        let start = out.len();
        self.shaper.write(ev, out);
        flatten_lines(&mut out[start..]);
        if self.add_timestamp {
            splice_timestamp(out, start, ev.ts);
        }
        out.push(b'\n');
    }
}

/// Turns the line breaks of one JSON document into spaces, so it stays one NDJSON line.
///
/// The raw shape copies the API's bytes, and a record pretty-printed upstream has line breaks
/// between its tokens; `_bulk` would read the next line as an action and refuse the whole
/// request. Outside strings a line break is whitespace like a space, and inside strings JSON
/// allows it only escaped (`\n`), so no raw `\n` or `\r` byte there can be meaningful and the
/// document's value is unchanged. (In UTF-8 these bytes never occur inside a multi-byte
/// character.)
fn flatten_lines(doc: &mut [u8]) {
    // Almost every document has none: a vector search that only reads is cheaper than a pass
    // that writes every byte.
    let Some(first) = memchr::memchr2(b'\n', b'\r', doc) else {
        return;
    };
    for b in doc[first..].iter_mut() {
        if matches!(*b, b'\n' | b'\r') {
            *b = b' ';
        }
    }
}

/// Adds `"@timestamp":"<RFC 3339>"` as the last key of the JSON object in `out[start..]`,
/// without parsing it: the shaper always writes one object, so its last byte is `}`.
fn splice_timestamp(out: &mut Vec<u8>, start: usize, ts: i64) {
    let Some(close) = out[start..].iter().rposition(|&b| b == b'}') else {
        return;
    };
    let close = start + close;
    let empty = out[start..close]
        .iter()
        .rev()
        .find(|b| !b.is_ascii_whitespace())
        .is_none_or(|&b| b == b'{');
    // The key goes at the end, then moves before the closing brace (and whatever follows it):
    // no second buffer for the tail.
    let tail = out.len() - close;
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(b"\"@timestamp\":\"");
    crate::time::push_rfc3339(ts, out);
    out.push(b'"');
    out[close..].rotate_left(tail);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, ts: i64, body: &str) -> SpooledEvent {
        SpooledEvent {
            seq: 1,
            corp: "acme".into(),
            site: "www".into(),
            id: id.into(),
            ts,
            fetched_at: ts + 400,
            body: body.into(),
        }
    }

    fn encoder(pattern: &str, format: Format) -> Encoder {
        Encoder::new(
            Shaper::new(format, &crate::pipeline::default_redact_headers()),
            IndexPattern::parse(pattern).unwrap(),
        )
    }

    #[test]
    fn create_action_with_dated_index_and_timestamp() {
        let mut out = Vec::new();
        // 2026-11-24T01:02:03Z
        encoder("sigsci-%Y.%m.%d", Format::Raw).write(
            &ev("5f1a\"x", 1_795_482_123, r#"{"id":"5f1a","n":1.50}"#),
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.ends_with('\n')));
        assert_eq!(
            lines[0],
            "{\"create\":{\"_index\":\"sigsci-2026.11.24\",\"_id\":\"5f1a\\\"x\"}}\n"
        );
        // Original bytes kept, timestamp spliced last.
        assert!(
            lines[1].starts_with(r#"{"id":"5f1a","n":1.50,"#),
            "{}",
            lines[1]
        );
        assert!(
            lines[1].ends_with("\"@timestamp\":\"2026-11-24T01:02:03Z\"}\n"),
            "{}",
            lines[1]
        );
        let doc: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(doc["sigsci_export"]["site"], "www");
    }

    #[test]
    fn a_pretty_printed_record_stays_on_one_line() {
        let body = "{\r\n  \"id\": \"5f1a\",\n  \"path\": \"/a\\nb\",\n  \"tags\": [\n    {\"type\": \"SQLI\"}\n  ]\n}\n";
        for format in [Format::Raw, Format::Ecs, Format::Cim] {
            let mut out = Vec::new();
            encoder("sigsci-%Y.%m.%d", format).write(&ev("5f1a", 1_795_482_123, body), &mut out);
            let text = String::from_utf8(out).unwrap();
            let lines: Vec<&str> = text.split_terminator('\n').collect();
            assert_eq!(lines.len(), 2, "{format:?}: {text}");
            assert!(!text.contains('\r'), "{format:?}: {text}");
            let doc: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
            assert_eq!(doc["@timestamp"], "2026-11-24T01:02:03Z", "{format:?}");
        }
        let mut out = Vec::new();
        encoder("x", Format::Raw).write(&ev("5f1a", 0, body), &mut out);
        let text = String::from_utf8(out).unwrap();
        let doc: serde_json::Value =
            serde_json::from_str(text.split_terminator('\n').nth(1).unwrap()).unwrap();
        // An escaped newline inside a string is text, and stays.
        assert_eq!(doc["path"], "/a\nb");
        assert_eq!(doc["tags"][0]["type"], "SQLI");
    }

    #[test]
    fn index_date_comes_from_the_spooled_ts_not_the_fetch_time() {
        // No timestamp in the record; fetched the next day. The spooled `ts` decides, so every
        // resend of this spooled event targets the same index.
        let mut e = ev("5f1b", 1_795_482_123, r#"{"id":"5f1b"}"#);
        e.fetched_at = e.ts + 86_400;
        let mut out = Vec::new();
        encoder("sigsci-%Y.%m.%d", Format::Raw).write(&e, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(r#"{"create":{"_index":"sigsci-2026.11.24""#),
            "{text}"
        );
    }

    #[test]
    fn splice_into_empty_object() {
        let mut out = b"xx{ }".to_vec();
        splice_timestamp(&mut out, 2, 0);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "xx{ \"@timestamp\":\"1970-01-01T00:00:00Z\"}"
        );
    }

    #[test]
    fn splice_keeps_what_follows_the_object() {
        let mut out = b"{\"a\":1} \n".to_vec();
        splice_timestamp(&mut out, 0, 60);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"a\":1,\"@timestamp\":\"1970-01-01T00:01:00Z\"} \n"
        );
        // No object: nothing to splice into.
        let mut out = b"[1]".to_vec();
        splice_timestamp(&mut out, 0, 60);
        assert_eq!(out, b"[1]");
    }

    #[test]
    fn index_pattern_rules() {
        let p = IndexPattern::parse("logs-%Y%%-%m").unwrap();
        assert_eq!(p.render(0), "logs-1970%-01");
        assert!(p.is_dated());
        assert!(
            !IndexPattern::parse("logs-sigsci-default")
                .unwrap()
                .is_dated()
        );
        for bad in ["Upper-%Y", "a b", "_x", "x%H", "x%", "", "a/b", "a,b"] {
            assert!(IndexPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
