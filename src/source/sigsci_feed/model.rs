//! The feed's JSON, read with as little interpretation as possible.
//!
//! Events are kept as the exact JSON text the API sent (`RawValue`), so fields the vendor adds
//! later pass through untouched; only `id` (the dedupe key) and `timestamp` are looked at.
//! [`page`] reads a whole page; [`record_problem`] says, in words an operator can act on, what
//! is wrong with a record that cannot be taken.

pub mod page;

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// One page of `GET .../feed/requests`.
#[derive(Debug, Deserialize)]
pub struct PageWire<'a> {
    /// The records, untouched.
    #[serde(borrow, default)]
    pub data: Option<Vec<&'a RawValue>>,
    /// Where the next page is; empty or missing on the last page.
    #[serde(default)]
    pub next: Option<NextWire>,
}

/// `{"uri": "..."}`
#[derive(Debug, Deserialize)]
pub struct NextWire {
    /// Relative URI of the next page, `""` when done.
    #[serde(default)]
    pub uri: Option<String>,
}

/// The two fields of a record the exporter needs.
#[derive(Debug, Default)]
pub struct EventHead<'a> {
    /// Unique request id.
    pub id: Option<Cow<'a, str>>,
    /// RFC 3339 time the request was seen.
    pub timestamp: Option<Cow<'a, str>>,
}

impl<'a> EventHead<'a> {
    /// Reads `id` and `timestamp` from the text of one record (a JSON object the page parse
    /// has already checked), stopping at the first place where both are known.
    ///
    /// The API puts both among the first few fields, so most of a record (its headers, tags
    /// and the rest, about a kilobyte) is never scanned a second time. A key that is repeated
    /// keeps its first value, as everywhere else the exporter reads a record. Either field
    /// may be missing; one of the wrong type is an error.
    pub fn parse(record: &'a str) -> Result<EventHead<'a>, serde_json::Error> {
        let mut head = EventHead::default();
        let mut both = false;
        let mut de = serde_json::Deserializer::from_str(record);
        let read = serde::Deserializer::deserialize_map(
            &mut de,
            HeadVisitor {
                head: &mut head,
                both: &mut both,
            },
        );
        match read {
            // serde_json has no way to leave an object half read but an error: the visitor
            // raises one once it has both fields, and `both` tells it from a real one.
            Err(_) if both => Ok(head),
            Err(e) => Err(e),
            Ok(()) => Ok(head),
        }
    }
}

/// Fills an [`EventHead`] from a record's keys; see [`EventHead::parse`].
struct HeadVisitor<'h, 'a> {
    head: &'h mut EventHead<'a>,
    both: &'h mut bool,
}

impl<'de> serde::de::Visitor<'de> for HeadVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a request record (a JSON object)")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some(key) = map.next_key::<HeadKey>()? {
            let slot = match key {
                HeadKey::Id if self.head.id.is_none() => &mut self.head.id,
                HeadKey::Timestamp if self.head.timestamp.is_none() => &mut self.head.timestamp,
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    continue;
                }
            };
            *slot = map.next_value::<TextOrNull<'de>>()?.0;
            if slot.is_none() {
                // `null`: as good as missing; a later key of the same name may still say.
                continue;
            }
            if self.head.id.is_some() && self.head.timestamp.is_some() {
                *self.both = true;
                return Err(serde::de::Error::custom("both fields read"));
            }
        }
        Ok(())
    }
}

/// A record's key, compared without being copied.
enum HeadKey {
    Id,
    Timestamp,
    Other,
}

impl<'de> Deserialize<'de> for HeadKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<HeadKey, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = HeadKey;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E>(self, key: &str) -> Result<HeadKey, E> {
                Ok(match key {
                    "id" => HeadKey::Id,
                    "timestamp" => HeadKey::Timestamp,
                    _ => HeadKey::Other,
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// A string value, borrowed from the record unless it holds escapes, or `null`. (serde's own
/// `Cow<str>` always copies; `#[serde(borrow)]` exists only in derives.)
struct TextOrNull<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for TextOrNull<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TextOrNull<'de>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = TextOrNull<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or null")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<TextOrNull<'de>, E> {
                Ok(TextOrNull(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<TextOrNull<'de>, E> {
                Ok(TextOrNull(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_unit<E>(self) -> Result<TextOrNull<'de>, E> {
                Ok(TextOrNull(None))
            }
            fn visit_none<E>(self) -> Result<TextOrNull<'de>, E> {
                Ok(TextOrNull(None))
            }
            fn visit_some<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<TextOrNull<'de>, D::Error> {
                d.deserialize_str(self)
            }
        }
        d.deserialize_option(V)
    }
}

/// What is wrong with a record [`EventHead::parse`] refused or that has no usable `id`:
/// "record is not an object (it is an array)", "record has no id", "id is a number, not a
/// string", "id is empty", "timestamp is an object, not a string".
///
/// Only called for a refused record, so it may take its time: it reads the record again,
/// keeping the first non-null `id` and `timestamp` as [`EventHead::parse`] does.
pub fn record_problem(record: &str) -> String {
    let mut de = serde_json::Deserializer::from_str(record);
    let mut early = None;
    let read = serde::Deserializer::deserialize_any(&mut de, ProblemVisitor { early: &mut early });
    match (early, read) {
        (Some(problem), _) | (None, Ok(Some(problem))) => problem,
        (None, Ok(None)) => "record could not be read".to_string(),
        (None, Err(e)) => format!("record could not be read: {e}"),
    }
}

/// The JSON type of a value, read without keeping it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    /// A string; `true` when it is empty.
    Str(bool),
    Array,
    Object,
}

impl Kind {
    fn with_article(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "a boolean",
            Kind::Number => "a number",
            Kind::Str(_) => "a string",
            Kind::Array => "an array",
            Kind::Object => "an object",
        }
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Kind, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Kind;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Kind, E> {
                Ok(Kind::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Kind, E> {
                Ok(Kind::Bool)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Kind, E> {
                Ok(Kind::Number)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Kind, E> {
                Ok(Kind::Number)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Kind, E> {
                Ok(Kind::Number)
            }
            fn visit_str<E>(self, v: &str) -> Result<Kind, E> {
                Ok(Kind::Str(v.is_empty()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Kind::Array)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Kind::Object)
            }
        }
        d.deserialize_any(V)
    }
}

/// Finds the problem of one record; `None` when there is none.
struct ProblemVisitor<'p> {
    /// A problem found before the end of the record: serde_json has no way to leave an
    /// object half read but an error, so it is put here and the error ignored.
    early: &'p mut Option<String>,
}

impl<'de> serde::de::Visitor<'de> for ProblemVisitor<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a request record")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let (mut id, mut ts) = (None, None);
        while let Some(key) = map.next_key::<HeadKey>()? {
            let slot = match key {
                HeadKey::Id if id.is_none() => &mut id,
                HeadKey::Timestamp if ts.is_none() => &mut ts,
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    continue;
                }
            };
            let name = if matches!(key, HeadKey::Id) {
                "id"
            } else {
                "timestamp"
            };
            match map.next_value::<Kind>() {
                Ok(Kind::Null) => {}
                Ok(kind) => *slot = Some(kind),
                // Only a number beyond an f64 fails to read (a string always reads), and the
                // parser cannot go on after it: say so now.
                Err(e) => {
                    *self.early = Some(format!("{name} is a number, not a string"));
                    return Err(e);
                }
            }
        }
        Ok(match (id, ts) {
            (None, _) => Some("record has no id".to_string()),
            (Some(Kind::Str(true)), _) => Some("id is empty".to_string()),
            (Some(Kind::Str(false)), Some(Kind::Str(_)) | None) => None,
            (Some(Kind::Str(false)), Some(k)) => {
                Some(format!("timestamp is {}, not a string", k.with_article()))
            }
            (Some(k), _) => Some(format!("id is {}, not a string", k.with_article())),
        })
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Some(not_an_object(Kind::Array)))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Some(not_an_object(Kind::Str(false))))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Some(not_an_object(Kind::Bool)))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Some(not_an_object(Kind::Number)))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Some(not_an_object(Kind::Number)))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Some(not_an_object(Kind::Number)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Some(not_an_object(Kind::Null)))
    }
}

fn not_an_object(kind: Kind) -> String {
    format!("record is not an object (it is {})", kind.with_article())
}

/// `GET /corps/{corp}/sites`
#[derive(Debug, Deserialize)]
pub struct SitesWire {
    /// The sites.
    #[serde(default)]
    pub data: Vec<SiteWire>,
}

/// One site of the list.
#[derive(Debug, Clone, Deserialize)]
pub struct SiteWire {
    /// API name (used in URLs).
    pub name: String,
    /// Human name shown in the dashboard.
    #[serde(default, rename = "displayName")]
    pub display_name: Option<String>,
}

/// An error body `{"message": "..."}`.
#[derive(Debug, Deserialize)]
pub struct ErrorWire {
    /// The message.
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(record: &str) -> Result<(Option<String>, Option<String>), serde_json::Error> {
        EventHead::parse(record).map(|h| {
            (
                h.id.map(|s| s.into_owned()),
                h.timestamp.map(|s| s.into_owned()),
            )
        })
    }

    fn some(id: &str, ts: &str) -> (Option<String>, Option<String>) {
        (Some(id.to_string()), Some(ts.to_string()))
    }

    #[test]
    fn reads_both_fields_wherever_they_are() {
        let ts = "2026-11-24T01:02:03Z";
        for record in [
            format!(r#"{{"id":"a1","timestamp":"{ts}","headersIn":[["Host","x"]]}}"#),
            format!(r#"{{"tags":[{{"id":"inner"}}],"timestamp":"{ts}","n":1.5,"id":"a1"}}"#),
            format!(r#"{{ "id" : "a1" , "timestamp" : "{ts}" }}"#),
            // Escapes in a key or a value.
            format!(r#"{{"i\u0064":"a\u0031","timestamp":"{ts}"}}"#),
        ] {
            assert_eq!(head(&record).unwrap(), some("a1", ts), "{record}");
        }
    }

    #[test]
    fn values_without_escapes_are_borrowed() {
        let h = EventHead::parse(r#"{"id":"a1","timestamp":"t\u0031"}"#).unwrap();
        assert!(matches!(h.id, Some(Cow::Borrowed("a1"))));
        assert!(matches!(h.timestamp, Some(Cow::Owned(ref t)) if t == "t1"));
    }

    #[test]
    fn missing_or_null_fields_are_none_and_a_repeated_key_keeps_its_first_value() {
        assert_eq!(head(r#"{"id":"a"}"#).unwrap(), (Some("a".into()), None));
        assert_eq!(
            head(r#"{"timestamp":"t"}"#).unwrap(),
            (None, Some("t".into()))
        );
        assert_eq!(head(r#"{}"#).unwrap(), (None, None));
        assert_eq!(
            head(r#"{"id":null,"timestamp":"t","id":"b"}"#).unwrap(),
            some("b", "t")
        );
        assert_eq!(
            head(r#"{"id":"a","id":"b","timestamp":"t","timestamp":"u"}"#).unwrap(),
            some("a", "t")
        );
    }

    #[test]
    fn a_refused_record_is_described_by_what_is_wrong_with_it() {
        for (record, want) in [
            (
                r#"{"id":5,"timestamp":"t"}"#,
                "id is a number, not a string",
            ),
            (
                r#"{"id":1.5e999,"timestamp":"t"}"#,
                "id is a number, not a string",
            ),
            (r#"{"id":true}"#, "id is a boolean, not a string"),
            (r#"{"id":["a"]}"#, "id is an array, not a string"),
            (r#"{"id":{"v":"a"}}"#, "id is an object, not a string"),
            (
                r#"{"timestamp":"t","tags":[{"id":"x"}]}"#,
                "record has no id",
            ),
            (r#"{"id":null}"#, "record has no id"),
            (r#"{"id":""}"#, "id is empty"),
            (
                r#"{"id":"a","timestamp":5}"#,
                "timestamp is a number, not a string",
            ),
            // The first non-null value counts, as in `EventHead::parse`.
            (
                r#"{"id":null,"id":7,"id":"a"}"#,
                "id is a number, not a string",
            ),
            (r#"["id","a"]"#, "record is not an object (it is an array)"),
            (r#""a""#, "record is not an object (it is a string)"),
            ("42", "record is not an object (it is a number)"),
            ("null", "record is not an object (it is null)"),
        ] {
            assert_eq!(record_problem(record), want, "{record}");
        }
        assert_eq!(
            record_problem(r#"{"id":"a","timestamp":"t"}"#),
            "record could not be read"
        );
    }

    #[test]
    fn a_field_of_the_wrong_type_or_a_record_that_is_not_an_object_is_an_error() {
        for record in [
            r#"{"id":5,"timestamp":"t"}"#,
            r#"{"timestamp":["t"],"id":"a"}"#,
            r#"["id","a"]"#,
            r#""a""#,
            r#"{"id":"a","n":1"#,
        ] {
            assert!(head(record).is_err(), "{record}");
        }
    }
}
