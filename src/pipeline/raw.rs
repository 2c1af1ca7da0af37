//! The `raw` format: the API's JSON unchanged plus one key, [`META_KEY`], holding where and
//! when the exporter got it, with the values of redacted headers replaced.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::map::{REDACTED, USER_AGENT_HEADER, is_redacted, names_redacted_header, squashed_eq};
use super::{META_KEY, push_json_str};
use crate::store::SpooledEvent;

/// Appends `ev` in the `raw` format (one JSON object, no newline) to `out`.
///
/// The record's text is copied byte for byte and the metadata object is spliced in before its
/// closing brace, so unknown fields, key order and number formatting survive untouched and no
/// parse/re-serialize round trip is paid per event. No header is redacted: see
/// [`write_raw_redacted`].
pub fn write_raw(ev: &SpooledEvent, out: &mut Vec<u8>) {
    write_body(ev, &ev.body, out);
}

/// As [`write_raw`], with the values of the headers named in `redact` (lower case) replaced by
/// `"[redacted]"`: in `headersIn` / `headersOut`, in `userAgent` when `user-agent` is listed, and
/// in the `value` of a tag whose `location` names a listed header (`USERAGENT`, `COOKIE`).
///
/// Most records never carry a redacted header, so the body is only parsed when one of the names
/// occurs in it as a whole JSON string (ignoring ASCII case, `-` and `_`) or when it holds a
/// `\u` escape that could spell one. Even then only the replaced values change: every other
/// byte is kept.
pub fn write_raw_redacted(ev: &SpooledEvent, redact: &[String], out: &mut Vec<u8>) {
    if !may_name_any(&ev.body, redact) {
        return write_body(ev, &ev.body, out);
    }
    match redact_body(&ev.body, redact) {
        Some(body) => write_body(ev, &body, out),
        None => write_body(ev, &ev.body, out),
    }
}

fn write_body(ev: &SpooledEvent, body: &str, out: &mut Vec<u8>) {
    let body = body.trim_end();
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

/// Whether `body` may hold a header named in `names`: some JSON string in it equals a name
/// (ASCII case-insensitive), or it holds a `\u` escape of a character a name can contain (an
/// encoder may spell names that way). Splitting on `"` visits every string's text whatever the
/// escaped quotes around it do, and a name never contains a quote.
fn may_name_any(body: &str, names: &[String]) -> bool {
    let Some(longest) = names.iter().map(String::len).max() else {
        return false;
    };
    // Every string of every record passes here, once per sink: most are ruled out by their
    // length, first letter or last letter alone, through tables of the letters the names start
    // and end with (a name's letters are its bytes other than separators).
    let mut starts = [false; 256];
    let mut ends = [false; 256];
    let mut shortest = usize::MAX;
    for n in names {
        let mut letters = n.bytes().filter(|b| !is_separator(*b));
        let first = letters.next();
        for (table, b) in [
            (&mut starts, first),
            (&mut ends, letters.next_back().or(first)),
        ] {
            if let Some(b) = b {
                table[usize::from(b.to_ascii_lowercase())] = true;
                table[usize::from(b.to_ascii_uppercase())] = true;
            }
        }
        shortest = shortest.min(n.bytes().filter(|b| !is_separator(*b)).count());
    }
    let bytes = body.as_bytes();
    let mut open: Option<usize> = None;
    let mut quotes = Quotes::new(bytes);
    for q in &mut quotes {
        let Some(start) = open.replace(q + 1) else {
            continue;
        };
        let seg = &bytes[start..q];
        // Separators may be spelt differently (`USERAGENT`), so allow a longer or shorter
        // string.
        if seg.len() > 2 * longest || seg.len() < shortest {
            continue;
        }
        let mut letters = seg.iter().filter(|b| !is_separator(**b));
        let Some(&first) = letters.next() else {
            continue;
        };
        // A one-letter string is its own last letter.
        let last = letters.next_back().copied().unwrap_or(first);
        if starts[usize::from(first)]
            && ends[usize::from(last)]
            // Quotes are ASCII, so this slice of the text is on character boundaries: no
            // UTF-8 check is needed, only the O(1) boundary test of `get`.
            && body
                .get(start..q)
                .is_some_and(|seg| names.iter().any(|n| squashed_eq(seg, n)))
        {
            return true;
        }
    }
    // The whole text has been scanned, so `backslash` covers all of it.
    quotes.backslash && has_name_char_escape(bytes)
}

/// The positions of every `"` in a text, in order, noting on the way whether it holds a `\\`.
///
/// Read eight bytes at a time, with the bit tricks that find a given byte in a word, rather
/// than with one `memchr` call per quote: a record holds a quote every ten bytes or so, and
/// the per-call cost of `memchr` was most of the redaction check's time.
struct Quotes<'a> {
    bytes: &'a [u8],
    /// Start of the word `mask` describes.
    base: usize,
    /// Quotes of that word not yet returned: the top bit of byte `i` for `base + i`.
    mask: u64,
    /// Whether a word read so far holds a backslash.
    backslash: bool,
}

const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// The top bit of every byte of `word` that equals `byte`, and no other bit.
fn bytes_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (u64::from(byte) * 0x0101_0101_0101_0101);
    // A byte of x is zero exactly when adding 0x7f to its low bits does not carry into the
    // top bit and its own top bit is clear.
    !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
}

impl<'a> Quotes<'a> {
    fn new(bytes: &'a [u8]) -> Quotes<'a> {
        let mut q = Quotes {
            bytes,
            base: 0,
            mask: 0,
            backslash: false,
        };
        q.load();
        q
    }

    /// Reads the word at `base` (zero-padded past the end).
    fn load(&mut self) {
        let mut word = [0u8; 8];
        match self.bytes.get(self.base..self.base + 8) {
            // A fixed-size copy is one load; a variable one is a `memcpy` call per word.
            Some(full) => word.copy_from_slice(full),
            None => {
                let tail = self.bytes.get(self.base..).unwrap_or_default();
                word[..tail.len()].copy_from_slice(tail);
            }
        }
        let word = u64::from_le_bytes(word);
        self.mask = bytes_equal(word, b'"');
        self.backslash |= bytes_equal(word, b'\\') != 0;
    }
}

impl Iterator for Quotes<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        loop {
            if self.mask != 0 {
                // Little-endian: byte i of the word holds bit 8i + 7.
                let at = self.base + self.mask.trailing_zeros() as usize / 8;
                self.mask &= self.mask - 1;
                return Some(at);
            }
            if self.base + 8 >= self.bytes.len() {
                return None;
            }
            self.base += 8;
            self.load();
        }
    }
}

fn is_separator(b: u8) -> bool {
    matches!(b, b'-' | b'_')
}

fn has_name_char_escape(b: &[u8]) -> bool {
    b.windows(6).any(|w| {
        w[0] == b'\\'
            && w[1] == b'u'
            && std::str::from_utf8(&w[2..])
                .ok()
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .and_then(char::from_u32)
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

/// The body with redacted header values replaced, or `None` when nothing needed replacing.
fn redact_body(body: &str, redact: &[String]) -> Option<String> {
    let RedactableFields(fields) = serde_json::from_str(body).ok()?;
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for field in fields {
        match field {
            Field::Headers(value) => collect_redactions(body, value, redact, &mut ranges),
            Field::UserAgent(value) => {
                if is_redacted(USER_AGENT_HEADER, redact) && has_content(value) {
                    ranges.push(range(body, value));
                }
            }
            Field::Tags(value) => collect_tag_redactions(body, value, redact, &mut ranges),
        }
    }
    if ranges.is_empty() {
        return None;
    }
    ranges.sort_unstable();
    let mut out = String::with_capacity(body.len() + ranges.len() * REDACTED.len());
    let mut at = 0;
    for (start, end) in ranges {
        out.push_str(&body[at..start]);
        out.push('"');
        out.push_str(REDACTED);
        out.push('"');
        at = end;
    }
    out.push_str(&body[at..]);
    Some(out)
}

/// Byte ranges (in `body`) of the values to replace inside one `headersIn`/`headersOut` value:
/// `[[name, value], ...]` as the API sends it, or `{name: value}`.
fn collect_redactions(
    body: &str,
    field: &RawValue,
    redact: &[String],
    out: &mut Vec<(usize, usize)>,
) {
    let text = field.get();
    if let Ok(pairs) = serde_json::from_str::<Vec<&RawValue>>(text) {
        for pair in pairs {
            let Ok(parts) = serde_json::from_str::<Vec<&RawValue>>(pair.get()) else {
                continue;
            };
            if let [name, value, ..] = parts.as_slice()
                && name_matches(name, redact)
            {
                out.push(range(body, value));
            }
        }
    } else if let Ok(Entries(entries)) = serde_json::from_str::<Entries<'_>>(text) {
        for (name, value) in entries {
            if is_redacted(&name, redact) {
                out.push(range(body, value));
            }
        }
    }
}

/// Byte ranges of the `value`s of the tags in one `tags` value whose `location` names a redacted
/// header. A tag object that repeats a key has every `value` redacted if any `location` matches.
fn collect_tag_redactions(
    body: &str,
    tags: &RawValue,
    redact: &[String],
    out: &mut Vec<(usize, usize)>,
) {
    let Ok(tags) = serde_json::from_str::<Vec<&RawValue>>(tags.get()) else {
        return;
    };
    for tag in tags {
        let Ok(Entries(entries)) = serde_json::from_str::<Entries<'_>>(tag.get()) else {
            continue;
        };
        let located = entries.iter().any(|(k, v)| {
            k == "location"
                && serde_json::from_str::<Cow<'_, str>>(v.get())
                    .is_ok_and(|l| names_redacted_header(&l, redact))
        });
        if located {
            out.extend(
                entries
                    .iter()
                    .filter(|(k, v)| k == "value" && has_content(v))
                    .map(|(_, v)| range(body, v)),
            );
        }
    }
}

/// Anything but `""` and `null`: replacing an empty value would only add noise.
fn has_content(value: &RawValue) -> bool {
    !matches!(value.get(), "\"\"" | "null")
}

fn name_matches(name: &RawValue, redact: &[String]) -> bool {
    serde_json::from_str::<Cow<'_, str>>(name.get()).is_ok_and(|n| is_redacted(&n, redact))
}

/// Where `part` (a slice of `body` handed out by the borrowing parser) sits in `body`.
fn range(body: &str, part: &RawValue) -> (usize, usize) {
    let start = part.get().as_ptr() as usize - body.as_ptr() as usize;
    (start, start + part.get().len())
}

/// A top-level value that may hold a redacted header's value.
enum Field<'a> {
    /// `headersIn` / `headersOut`.
    Headers(&'a RawValue),
    /// `userAgent`: the User-Agent header's value.
    UserAgent(&'a RawValue),
    /// `tags`: signals whose matched value may come from a header.
    Tags(&'a RawValue),
}

/// Every [`Field`] of an object, repeated keys included.
struct RedactableFields<'a>(Vec<Field<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for RedactableFields<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<Field<'de>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let field: fn(&'de RawValue) -> Field<'de> = match key.as_ref() {
                        "headersIn" | "headersOut" => Field::Headers,
                        "userAgent" => Field::UserAgent,
                        "tags" => Field::Tags,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    out.push(field(map.next_value::<&'de RawValue>()?));
                }
                Ok(out)
            }
        }
        d.deserialize_map(V).map(RedactableFields)
    }
}

/// An object's entries in order, values unparsed.
struct Entries<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Entries<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<(Cow<'de, str>, &'de RawValue)>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(out)
            }
        }
        d.deserialize_map(V).map(Entries)
    }
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
    // RFC 3339 has nothing to escape.
    out.push(b'"');
    crate::time::push_rfc3339(ev.fetched_at, out);
    out.push(b'"');
    out.extend_from_slice(b"}}");
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

    /// The scan `may_name_any` replaced: one `memchr` per quote. Kept as the oracle.
    fn may_name_any_by_memchr(body: &str, names: &[String]) -> bool {
        let Some(longest) = names.iter().map(String::len).max() else {
            return false;
        };
        let bytes = body.as_bytes();
        let mut open: Option<usize> = None;
        for q in memchr::memchr_iter(b'"', bytes) {
            let Some(start) = open.replace(q + 1) else {
                continue;
            };
            let seg = &bytes[start..q];
            if seg.len() <= 2 * longest
                && std::str::from_utf8(seg).is_ok_and(|s| names.iter().any(|n| squashed_eq(s, n)))
            {
                return true;
            }
        }
        memchr::memmem::find(bytes, b"\\u").is_some() && has_name_char_escape(bytes)
    }

    #[test]
    fn bytes_equal_marks_exactly_the_matching_bytes() {
        for target in [b'"', b'\\', 0, 0x80, 0xff] {
            for b in 0..=255u8 {
                for pos in 0..8 {
                    // The byte under test among neighbours that differ from the target by one
                    // bit, the hardest case for carries between bytes.
                    let mut word = [target ^ 1; 8];
                    word[pos] = b;
                    let got = bytes_equal(u64::from_le_bytes(word), target);
                    let want = if b == target { 0x80u64 << (8 * pos) } else { 0 };
                    assert_eq!(got, want, "target {target:#x} byte {b:#x} at {pos}");
                }
            }
        }
    }

    #[test]
    fn the_block_scan_agrees_with_a_quote_by_quote_scan() {
        use rand::{Rng, SeedableRng};
        let names: Vec<String> = crate::pipeline::DEFAULT_REDACT_HEADERS
            .iter()
            .map(|s| s.to_string())
            .collect();
        // Pieces a record is made of, including the names in other spellings, escapes and
        // near misses; glued at random so quotes fall on every offset of an 8-byte word.
        let pieces = [
            "\"",
            "\\\"",
            "\\",
            "\\u0041",
            "\\u00e9",
            "cookie",
            "COOKIE",
            "Set_Cookie",
            "set-cookie",
            "x-api-token",
            "authorization",
            "Authorisation",
            "cookies",
            "a",
            "0123456789abcdef",
            ",",
            ":",
            "[",
            "]",
            "{",
            "}",
            "é",
            "-",
            "_",
            "c",
            "\\n",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (mut found, mut total) = (0, 0);
        for _ in 0..20_000 {
            let mut body = String::new();
            for _ in 0..rng.random_range(0..60) {
                body.push_str(pieces[rng.random_range(0..pieces.len())]);
            }
            let want = may_name_any_by_memchr(&body, &names);
            assert_eq!(may_name_any(&body, &names), want, "{body:?}");
            found += usize::from(want);
            total += 1;
            // Names of one letter, with separators, or ending like another: the length and
            // letter tables must not rule out what the oracle finds.
            let odd: Vec<String> = ["c", "_a-", "x-api-token", "Set_Cookie_", "é"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let want = may_name_any_by_memchr(&body, &odd);
            assert_eq!(may_name_any(&body, &odd), want, "{body:?} with {odd:?}");
        }
        // Both answers occur often enough for the comparison to mean something.
        assert!(
            found > total / 10 && found < total * 9 / 10,
            "{found} of {total}"
        );
        for n in 0..200 {
            let body = format!("{}\"cookie\"", "é".repeat(n / 2) + &" ".repeat(n % 2));
            assert!(may_name_any(&body, &names), "{n}");
            assert!(
                !may_name_any(&body.replace("cookie", "cookiex"), &names),
                "{n}"
            );
        }
    }

    #[test]
    fn empty_object_and_non_object_stay_valid_json() {
        assert_eq!(raw("{ }")[META_KEY]["site"], "www");
        assert_eq!(raw("[1]")["record"][0], 1);
    }
}
