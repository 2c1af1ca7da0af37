//! A borrowed, lenient view of one request object (`upstream-api.md`, "The request object").
//!
//! Parsed once per event by the `ecs` and `cim` shapes and by the tag filter. Strings borrow from
//! the record's text unless they hold JSON escapes. Every field is optional and every field is
//! lenient: a value of an unexpected type (a number where a string was expected, an object where
//! a list was expected) reads as missing instead of failing the record, because the vendor
//! changes fields over time and one odd field must not keep an event from its sink.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A struct read from a JSON object with a hand-written visitor instead of
/// `#[derive(Deserialize)]`: the derive rejects a repeated key (`duplicate field`), which would
/// empty the whole event over one odd field. Here the first value of a key wins and later ones
/// are skipped; unknown keys are skipped too.
macro_rules! first_value_wins {
    (
        $(#[$meta:meta])*
        pub(crate) struct $name:ident<'a> {
            $($(#[$fmeta:meta])* $field:ident: $ty:ty = $key:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        pub(crate) struct $name<'a> {
            $($(#[$fmeta])* pub(crate) $field: $ty,)*
        }

        impl<'de: 'a, 'a> Deserialize<'de> for $name<'a> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V<'a>(std::marker::PhantomData<&'a ()>);

                impl<'de> Visitor<'de> for V<'de> {
                    type Value = $name<'de>;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a JSON object")
                    }

                    fn visit_map<A: MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<Self::Value, A::Error> {
                        #[derive(Default)]
                        struct Seen {
                            $($field: bool,)*
                        }
                        let mut out = $name::default();
                        let mut seen = Seen::default();
                        while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
                            match key.as_deref() {
                                $(Some($key) if !seen.$field => {
                                    seen.$field = true;
                                    out.$field = map.next_value()?;
                                })*
                                _ => {
                                    map.next_value::<IgnoredAny>()?;
                                }
                            }
                        }
                        Ok(out)
                    }
                }

                d.deserialize_map(V(std::marker::PhantomData))
            }
        }
    };
}

first_value_wins! {
    /// The fields of a request the shapes read. Unknown fields are skipped.
    pub(crate) struct Request<'a> {
        id: Str<'a> = "id",
        timestamp: Str<'a> = "timestamp",
        server_hostname: Str<'a> = "serverHostname",
        server_name: Str<'a> = "serverName",
        remote_ip: Str<'a> = "remoteIP",
        remote_hostname: Str<'a> = "remoteHostname",
        remote_country_code: Str<'a> = "remoteCountryCode",
        user_agent: Str<'a> = "userAgent",
        method: Str<'a> = "method",
        protocol: Str<'a> = "protocol",
        tls_protocol: Str<'a> = "tlsProtocol",
        tls_cipher: Str<'a> = "tlsCipher",
        scheme: Str<'a> = "scheme",
        path: Str<'a> = "path",
        uri: Str<'a> = "uri",
        response_code: Num = "responseCode",
        response_size: Num = "responseSize",
        response_millis: Millis = "responseMillis",
        agent_response_code: Num = "agentResponseCode",
        headers_in: Headers<'a> = "headersIn",
        headers_out: Headers<'a> = "headersOut",
        tags: Tags<'a> = "tags",
    }
}

impl<'a> Request<'a> {
    /// Parses `body`. Anything that is not a readable object (invalid JSON, an array) gives an
    /// empty request: the shapes then fall back to what the spool knows. `scratch` is used
    /// only when the record needs repairing first (see [`parse_object`]).
    pub(crate) fn parse(body: &'a str, scratch: &'a mut String) -> Request<'a> {
        parse_object(body, scratch)
    }
}

/// Parses `body` as an object into `T`, or `T::default()`.
///
/// serde_json refuses a number beyond the range of an `f64` (`1e999`, which JSON allows)
/// wherever it is read, even inside a skipped value, and that would cost the record every field
/// over one odd number. Such a record is read again from a copy in `scratch` where those
/// numbers are `null`, so they read as missing like any other odd value. `T` may borrow from
/// `scratch`.
pub(crate) fn parse_object<'a, T: Deserialize<'a> + Default>(
    body: &'a str,
    scratch: &'a mut String,
) -> T {
    if !body.trim_start().starts_with('{') {
        return T::default();
    }
    match serde_json::from_str(body) {
        Ok(t) => t,
        Err(_) => match null_out_of_range_numbers(body) {
            Some(repaired) => {
                *scratch = repaired;
                let repaired: &'a String = scratch;
                serde_json::from_str(repaired).unwrap_or_default()
            }
            None => T::default(),
        },
    }
}

/// `json` with every number an `f64` cannot hold (it parses as infinite) replaced by `null`,
/// or `None` when it has none. Strings are skipped whole, escapes included, so text that looks
/// like a number inside one is left alone.
fn null_out_of_range_numbers(json: &str) -> Option<String> {
    let b = json.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                let token = &json[start..i];
                if token.parse::<f64>().is_ok_and(f64::is_infinite) {
                    let o = out.get_or_insert_with(|| String::with_capacity(json.len()));
                    o.push_str(&json[copied..start]);
                    o.push_str("null");
                    copied = i;
                }
            }
            _ => i += 1,
        }
    }
    out.map(|mut o| {
        o.push_str(&json[copied..]);
        o
    })
}

first_value_wins! {
    /// Only the `tags` of a request: what the tag filter needs.
    pub(crate) struct TagsOnly<'a> {
        tags: Tags<'a> = "tags",
    }
}

/// A string field; `None` when missing, `null`, empty or not a string. Numbers and booleans
/// are kept as their text (a vendor switching a field to a number must not lose it).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Str<'a>(pub(crate) Option<Cow<'a, str>>);

impl<'a> Str<'a> {
    /// The value, `None` when missing or empty.
    pub(crate) fn get(&self) -> Option<&str> {
        self.0.as_deref().filter(|s| !s.is_empty())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrVisitor).map(Str)
    }
}

struct StrVisitor;

/// The scalar `visit_*` methods of a lenient visitor: a value of an unexpected scalar type
/// reads as `$v` (as if the field were missing) instead of failing the whole record.
macro_rules! scalars_read_as {
    ($v:expr) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($v)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($v)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($v)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($v)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($v)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($v)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($v)
        }
    };
}

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v)))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

/// An integer field; `None` when missing or not a number. Integral floats and numeric strings
/// are accepted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Num(pub(crate) Option<i64>);

impl Num {
    /// The value, if present.
    pub(crate) fn get(self) -> Option<i64> {
        self.0
    }
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumVisitor).map(Num)
    }
}

struct NumVisitor;

impl<'de> Visitor<'de> for NumVisitor {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).ok())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        let ok = v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15;
        Ok(ok.then_some(v as i64))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.trim().parse().ok())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

/// `responseMillis`: a non-negative duration in milliseconds. Unlike [`Num`] it keeps
/// fractions (`1.5`): the agent may report sub-millisecond precision. Numeric strings are
/// accepted; anything negative, too large for nanoseconds in an `i64`, or not a number is
/// missing.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Millis(pub(crate) Option<f64>);

/// Above this many ms the value in ns would overflow an `i64` (about 292 years).
const MAX_MILLIS: f64 = 9.0e12;

impl Millis {
    fn new(v: f64) -> Millis {
        Millis((v.is_finite() && (0.0..MAX_MILLIS).contains(&v)).then_some(v))
    }

    /// The value in milliseconds, if present.
    pub(crate) fn get(self) -> Option<f64> {
        self.0
    }

    /// The value in whole nanoseconds (rounded), if present.
    pub(crate) fn nanos(self) -> Option<i64> {
        self.0.map(|ms| (ms * 1_000_000.0).round() as i64)
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MillisVisitor)
    }
}

struct MillisVisitor;

impl<'de> Visitor<'de> for MillisVisitor {
    type Value = Millis;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Millis::new(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Millis::new(v as f64))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Millis::new(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.trim().parse().map_or(Millis(None), Millis::new))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Millis(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Millis(None))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Millis(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Millis(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Millis(None))
    }
}

/// `headersIn` / `headersOut`: `[[name, value], ...]` as the API sends them. An object
/// (`{"name": "value"}`, as the official add-on reshapes them) is read too; entries without a
/// name are skipped, a missing value reads as empty.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Headers<'a>(pub(crate) Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Headers<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(HeadersVisitor).map(Headers)
    }
}

struct HeadersVisitor;

impl<'de> Visitor<'de> for HeadersVisitor {
    type Value = Vec<(Cow<'de, str>, Cow<'de, str>)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(8));
        while let Some(Pair(pair)) = seq.next_element::<Pair<'de>>()? {
            out.extend(pair);
        }
        Ok(out)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some((Str(name), Str(value))) = map.next_entry::<Str<'de>, Str<'de>>()? {
            if let Some(name) = name.filter(|n| !n.is_empty()) {
                out.push((name, value.unwrap_or_default()));
            }
        }
        Ok(out)
    }
    scalars_read_as!(Vec::new());
}

/// One `[name, value]` entry; `None` for anything else.
struct Pair<'a>(Option<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Pair<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PairVisitor).map(Pair)
    }
}

struct PairVisitor;

impl<'de> Visitor<'de> for PairVisitor {
    type Value = Option<(Cow<'de, str>, Cow<'de, str>)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let name = seq.next_element::<Str<'de>>()?.and_then(|s| s.0);
        let value = seq.next_element::<Str<'de>>()?.and_then(|s| s.0);
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(name
            .filter(|n| !n.is_empty())
            .map(|n| (n, value.unwrap_or_default())))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// `tags`: the signals on a request. Entries without a `type` are skipped; a bare string entry
/// is read as a tag of that type.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Tags<'a>(pub(crate) Vec<Tag<'a>>);

/// One signal.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Tag<'a> {
    /// Signal name (`SQLI`, `BLOCKED`, ...).
    pub(crate) kind: Cow<'a, str>,
    /// Where it matched (`QUERY_STRING`, ...).
    pub(crate) location: Option<Cow<'a, str>>,
    /// The matched value (may be redacted by the vendor).
    pub(crate) value: Option<Cow<'a, str>>,
    /// The detector that fired.
    pub(crate) detector: Option<Cow<'a, str>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Tags<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TagsVisitor).map(Tags)
    }
}

struct TagsVisitor;

impl<'de> Visitor<'de> for TagsVisitor {
    type Value = Vec<Tag<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(TagEntry(tag)) = seq.next_element::<TagEntry<'de>>()? {
            out.extend(tag);
        }
        Ok(out)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Vec::new())
    }
    scalars_read_as!(Vec::new());
}

struct TagEntry<'a>(Option<Tag<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for TagEntry<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TagVisitor).map(TagEntry)
    }
}

struct TagVisitor;

impl<'de> Visitor<'de> for TagVisitor {
    type Value = Option<Tag<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut tag = Tag::default();
        let mut kind = None;
        while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
            let slot = match key.as_deref() {
                Some("type") => &mut kind,
                Some("location") => &mut tag.location,
                Some("value") => &mut tag.value,
                Some("detector") => &mut tag.detector,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            let value = map.next_value::<Str<'de>>()?.0.filter(|v| !v.is_empty());
            // First value wins, as for the request's own keys.
            if slot.is_none() {
                *slot = value;
            }
        }
        Ok(kind.map(|k| Tag { kind: k, ..tag }))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok((!v.is_empty()).then(|| Tag {
            kind: Cow::Borrowed(v),
            ..Tag::default()
        }))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok((!v.is_empty()).then(|| Tag {
            kind: Cow::Owned(v.to_owned()),
            ..Tag::default()
        }))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_fields_and_borrows() {
        let body = r#"{"id":"a1","remoteIP":"203.0.113.7","responseCode":406,"agentResponseCode":"406",
            "headersIn":[["Host","x"],["Cookie","s=1"]],"tags":[{"type":"SQLI","value":"q=1"},{"type":"BLOCKED"}],
            "brandNew":{"x":1}}"#;
        let mut scratch = String::new();
        let r = Request::parse(body, &mut scratch);
        assert_eq!(r.id.get(), Some("a1"));
        assert!(matches!(r.remote_ip.0, Some(Cow::Borrowed(_))));
        assert_eq!(r.response_code.get(), Some(406));
        assert_eq!(r.agent_response_code.get(), Some(406));
        assert_eq!(r.headers_in.0.len(), 2);
        assert_eq!(r.headers_in.0[1].1, "s=1");
        let kinds: Vec<&str> = r.tags.0.iter().map(|t| t.kind.as_ref()).collect();
        assert_eq!(kinds, ["SQLI", "BLOCKED"]);
        assert_eq!(r.tags.0[0].value.as_deref(), Some("q=1"));
    }

    #[test]
    fn only_numbers_outside_strings_and_beyond_f64_are_nulled() {
        assert_eq!(
            null_out_of_range_numbers(r#"{"a":1e308,"b":-0.5e-999}"#),
            None
        );
        assert_eq!(
            null_out_of_range_numbers(r#"{"a":1e309, "b":["x\"1e999",-1E999],"c":2}"#).as_deref(),
            Some(r#"{"a":null, "b":["x\"1e999",null],"c":2}"#)
        );
    }

    #[test]
    fn odd_types_read_as_missing_not_as_errors() {
        type Check = fn(&Request<'_>) -> bool;
        let cases: &[(&str, Check)] = &[
            (r#"{"id":{"nested":true}}"#, |r| r.id.get().is_none()),
            (r#"{"id":12}"#, |r| r.id.get() == Some("12")),
            (r#"{"responseCode":"abc"}"#, |r| {
                r.response_code.get().is_none()
            }),
            (r#"{"responseCode":200.0}"#, |r| {
                r.response_code.get() == Some(200)
            }),
            (r#"{"headersIn":null,"headersOut":"x"}"#, |r| {
                r.headers_in.0.is_empty() && r.headers_out.0.is_empty()
            }),
            (
                r#"{"headersIn":[["A"],[1,2],{"x":1},"s",[null,"v"],["B","b","extra"]]}"#,
                |r| {
                    r.headers_in.0
                        == [
                            ("A".into(), "".into()),
                            ("1".into(), "2".into()),
                            ("B".into(), "b".into()),
                        ]
                },
            ),
            (r#"{"headersIn":{"Host":"h","Empty":null}}"#, |r| {
                r.headers_in.0 == [("Host".into(), "h".into()), ("Empty".into(), "".into())]
            }),
            (
                r#"{"tags":[{"location":"x"},"XSS",3,{"type":"SQLI","extra":[1]}]}"#,
                |r| r.tags.0.iter().map(|t| t.kind.as_ref()).collect::<Vec<_>>() == ["XSS", "SQLI"],
            ),
            (r#"{"tags":{"type":"SQLI"}}"#, |r| r.tags.0.is_empty()),
            ("[1,2]", |r| r.id.get().is_none()),
            (r#"["a",1]"#, |r| r.id.get().is_none()),
            ("not json", |r| r.id.get().is_none()),
            // A repeated key keeps its first value and costs none of the other fields.
            (r#"{"id":"a","method":"GET","id":"b"}"#, |r| {
                r.id.get() == Some("a") && r.method.get() == Some("GET")
            }),
            (
                r#"{"tags":[{"type":"XSS"}],"tags":[{"type":"SQLI"}],"id":"a"}"#,
                |r| r.tags.0.len() == 1 && r.tags.0[0].kind == "XSS" && r.id.get() == Some("a"),
            ),
            (
                r#"{"tags":[{"type":"XSS","type":"SQLI","value":"v","value":"w"}]}"#,
                |r| r.tags.0[0].kind == "XSS" && r.tags.0[0].value.as_deref() == Some("v"),
            ),
            (r#"{"id":"a\"b"}"#, |r| r.id.get() == Some("a\"b")),
            // A number beyond an f64 reads as missing and costs no other field, whether in a
            // field that is read or in one that is skipped.
            (
                r#"{"responseCode":1e999,"id":"a","n":-2.5E+400,"method":"GET"}"#,
                |r| {
                    r.response_code.get().is_none()
                        && r.id.get() == Some("a")
                        && r.method.get() == Some("GET")
                },
            ),
            (
                r#"{"tags":[{"type":"XSS","value":1e999}],"path":"/1e999\"9e999"}"#,
                |r| r.tags.0[0].kind == "XSS" && r.path.get() == Some("/1e999\"9e999"),
            ),
        ];
        for (body, check) in cases {
            assert!(check(&Request::parse(body, &mut String::new())), "{body}");
        }
    }
}
