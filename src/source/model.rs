//! The feed's JSON, read with as little interpretation as possible.
//!
//! Events are kept as the exact JSON text the API sent (`RawValue`), so fields the vendor adds
//! later pass through untouched; only `id` (the dedupe key) and `timestamp` are looked at.

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
