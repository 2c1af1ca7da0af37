//! The `raw` format: the API's JSON unchanged plus one key, [`META_KEY`], holding where and
//! when the exporter got it.

use super::META_KEY;
use crate::store::SpooledEvent;

/// Appends `ev` in the `raw` format (one JSON object, no newline) to `out`.
///
/// The record's text is copied byte for byte and the metadata object is spliced in before its
/// closing brace, so unknown fields, key order and number formatting survive untouched and no
/// parse/re-serialize round trip is paid per event.
pub fn write_raw(ev: &SpooledEvent, out: &mut Vec<u8>) {
    let body = ev.body.trim_end();
    let (head, has_fields) = match body.strip_suffix('}') {
        Some(head) => {
            let inner = head.trim_start().strip_prefix('{').unwrap_or(head).trim();
            (head, !inner.is_empty())
        }
        // Not an object (the source only spools objects): wrap it so the output stays JSON.
        None => {
            out.extend_from_slice(b"{\"record\":");
            out.extend_from_slice(body.as_bytes());
            write_meta(ev, out, true);
            return;
        }
    };
    out.extend_from_slice(head.as_bytes());
    write_meta(ev, out, has_fields);
}

fn write_meta(ev: &SpooledEvent, out: &mut Vec<u8>, comma: bool) {
    if comma {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(META_KEY.as_bytes());
    out.extend_from_slice(b"\":{\"corp\":");
    push_json_str(&ev.corp, out);
    out.extend_from_slice(b",\"site\":");
    push_json_str(&ev.site, out);
    out.extend_from_slice(b",\"fetched_at\":");
    push_json_str(&crate::time::fmt(ev.fetched_at), out);
    out.extend_from_slice(b"}}");
}

fn push_json_str(s: &str, out: &mut Vec<u8>) {
    // serde_json cannot fail writing a &str into a Vec.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(body: &str) -> SpooledEvent {
        SpooledEvent {
            seq: 1,
            corp: "acme".into(),
            site: "www".into(),
            id: "abc".into(),
            ts: 0,
            fetched_at: 1_795_482_123,
            body: body.into(),
        }
    }

    fn raw(body: &str) -> serde_json::Value {
        let mut out = Vec::new();
        write_raw(&ev(body), &mut out);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn keeps_every_field_and_adds_metadata() {
        let v = raw(r#"{"id":"abc","newVendorField":{"x":[1,2]},"n":1.50} "#);
        assert_eq!(v["id"], "abc");
        assert_eq!(v["newVendorField"]["x"][1], 2);
        assert_eq!(v[META_KEY]["corp"], "acme");
        assert_eq!(v[META_KEY]["site"], "www");
        assert_eq!(v[META_KEY]["fetched_at"], "2026-11-24T01:02:03Z");
    }

    #[test]
    fn preserves_the_original_bytes() {
        let body = r#"{"id":"abc","n":1.50,"s":"\u00e9"}"#;
        let mut out = Vec::new();
        write_raw(&ev(body), &mut out);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .starts_with(r#"{"id":"abc","n":1.50,"s":"\u00e9","#)
        );
    }

    #[test]
    fn empty_object_and_non_object_stay_valid_json() {
        assert_eq!(raw("{ }")[META_KEY]["site"], "www");
        assert_eq!(raw("[1]")["record"][0], 1);
    }
}
