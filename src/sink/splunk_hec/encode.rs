//! HEC event envelopes: `{"time":..,"host":..,"source":..,"sourcetype":..,"index":..,
//! "event":<shaped object>,"fields":{..}}`, one per event, concatenated with `\n`.
//!
//! The shaped event is spliced in verbatim (never parsed again); only the small metadata is
//! written here.

use std::io::Write as _;
use std::sync::LazyLock;

use crate::pipeline::{Shaper, push_json_str};
use crate::store::SpooledEvent;

/// The fixed part of every envelope, pre-rendered once per sink.
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    /// `"host":..,"source":..,"sourcetype":..,"index":..,` (unset keys omitted).
    meta: Vec<u8>,
    shaper: Shaper,
}

impl Envelope {
    pub(crate) fn new(
        shaper: Shaper,
        host: Option<&str>,
        source: &str,
        sourcetype: &str,
        index: Option<&str>,
    ) -> Envelope {
        let mut meta = Vec::new();
        let mut put = |k: &str, v: &str| {
            meta.extend_from_slice(format!("\"{k}\":").as_bytes());
            push_json_str(v, &mut meta);
            meta.push(b',');
        };
        if let Some(h) = host {
            put("host", h);
        }
        put("source", source);
        put("sourcetype", sourcetype);
        if let Some(i) = index {
            put("index", i);
        }
        Envelope { meta, shaper }
    }

    /// The health probe's body: this sink's metadata (`index` above all) around a blank
    /// `event`, which HEC refuses with code 13 once it has accepted the token and the index,
    /// so nothing is indexed.
    pub(crate) fn probe(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.meta.len() + 16);
        out.push(b'{');
        out.extend_from_slice(&self.meta);
        out.extend_from_slice(b"\"event\":\"\"}");
        out
    }

    /// Appends the envelope of `ev` and a `\n`. `possible_duplicate` marks a resend after an
    /// acknowledgement timed out.
    pub(crate) fn write(&self, ev: &SpooledEvent, possible_duplicate: bool, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":");
        write_event_time(ev, out);
        out.push(b',');
        out.extend_from_slice(&self.meta);
        out.extend_from_slice(b"\"event\":");
        self.shaper.write(ev, out);
        out.extend_from_slice(b",\"fields\":{\"request_id\":");
        push_json_str(&ev.id, out);
        // Prefixed: the CIM shape uses `site` for the requested virtual host, and an indexed
        // field of the same name would give a search two different values.
        out.extend_from_slice(b",\"sigsci_corp\":");
        push_json_str(&ev.corp, out);
        out.extend_from_slice(b",\"sigsci_site\":");
        push_json_str(&ev.site, out);
        if possible_duplicate {
            out.extend_from_slice(b",\"possible_duplicate\":\"true\"");
        }
        out.extend_from_slice(b"}}\n");
    }
}

/// Appends epoch seconds with a 3-digit millisecond fraction, from the record's `timestamp`
/// (RFC 3339, fraction optional), else `ev.ts`.
fn write_event_time(ev: &SpooledEvent, out: &mut Vec<u8>) {
    let ms = event_time_ms(ev);
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000));
}

fn event_time_ms(ev: &SpooledEvent) -> i64 {
    let parse = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| t.timestamp_millis())
    };
    // The first `"timestamp":"…"` in the text is almost always the record's own (the API
    // puts it near the top). It is taken when it agrees with `ev.ts`, the second the source
    // read from the top-level field; otherwise the record is scanned properly.
    let quick = first_timestamp(&ev.body)
        .and_then(parse)
        .filter(|ms| ms.div_euclid(1000) == ev.ts);
    quick
        .or_else(|| timestamp_field(&ev.body).and_then(parse))
        .unwrap_or(ev.ts.saturating_mul(1000))
}

/// The string after the first `"timestamp":"` in `body`, at any depth.
fn first_timestamp(body: &str) -> Option<&str> {
    const KEY: &str = "\"timestamp\":\"";
    // Built once: building a finder costs more than running it over one record.
    static FINDER: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new(KEY));
    let at = FINDER.find(body.as_bytes())? + KEY.len();
    let rest = &body[at..];
    let end = memchr::memchr(b'"', rest.as_bytes())?;
    Some(&rest[..end])
}

/// The value of the top-level `"timestamp"` key of a JSON object, found without parsing the
/// whole record (it can be large): a borrowed deserialization that skips other values.
fn timestamp_field(body: &str) -> Option<&str> {
    #[derive(serde::Deserialize)]
    struct Ts<'a> {
        #[serde(borrow)]
        timestamp: Option<&'a str>,
    }
    serde_json::from_str::<Ts<'_>>(body).ok()?.timestamp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Format;

    fn event_time(ev: &SpooledEvent) -> String {
        let mut out = Vec::new();
        write_event_time(ev, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn ev(body: &str) -> SpooledEvent {
        SpooledEvent {
            seq: 1,
            corp: "acme".into(),
            site: "www".into(),
            id: "5f1".into(),
            ts: 1_700_000_000,
            fetched_at: 0,
            body: body.into(),
        }
    }

    #[test]
    fn time_comes_from_the_top_level_timestamp_whatever_comes_first() {
        // A nested `timestamp` first: it disagrees with the stored second, so the record is
        // read properly.
        let nested = r#"{"tags":[{"timestamp":"2020-01-01T00:00:00Z"}],"timestamp":"2023-11-14T22:13:20.25Z"}"#;
        assert_eq!(event_time(&ev(nested)), "1700000000.250");
        // Spaced out (no quick match at all).
        assert_eq!(
            event_time(&ev(r#"{ "timestamp" : "2023-11-14T22:13:20.5Z" }"#)),
            "1700000000.500"
        );
    }

    #[test]
    fn time_has_milliseconds_from_the_record() {
        assert_eq!(
            event_time(&ev(r#"{"timestamp":"2023-11-14T22:13:20.25Z","x":1}"#)),
            "1700000000.250"
        );
        assert_eq!(
            event_time(&ev(
                r#"{"x":{"timestamp":5},"timestamp":"2023-11-14T22:13:21Z"}"#
            )),
            "1700000001.000"
        );
        assert_eq!(event_time(&ev(r#"{"x":1}"#)), "1700000000.000");
        assert_eq!(
            event_time(&ev(r#"{"timestamp":"yesterday"}"#)),
            "1700000000.000"
        );
    }

    #[test]
    fn envelope_is_json_with_flat_string_fields() {
        let env = Envelope::new(
            Shaper::new(Format::Raw, &[]),
            None,
            "sigsci-export",
            "sigsci:request",
            Some("waf"),
        );
        let mut out = Vec::new();
        env.write(
            &ev(r#"{"id":"5f1","timestamp":"2023-11-14T22:13:20Z"}"#),
            false,
            &mut out,
        );
        env.write(&ev(r#"{"id":"5f1"}"#), true, &mut out);
        let objs: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&out)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(objs.len(), 2);
        let a = &objs[0];
        assert!(a.get("host").is_none());
        assert_eq!(a["index"], "waf");
        assert_eq!(a["sourcetype"], "sigsci:request");
        assert_eq!(a["event"]["id"], "5f1");
        assert_eq!(a["event"]["sigsci_export"]["site"], "www");
        assert_eq!(
            a["fields"],
            serde_json::json!({"request_id":"5f1","sigsci_corp":"acme","sigsci_site":"www"})
        );
        assert!(a["time"].is_number());
        assert_eq!(objs[1]["fields"]["possible_duplicate"], "true");
        let probe: serde_json::Value = serde_json::from_slice(&env.probe()).unwrap();
        assert_eq!(
            probe,
            serde_json::json!({"source":"sigsci-export","sourcetype":"sigsci:request","index":"waf","event":""})
        );
    }
}
