//! The config file's values must have the types their keys take. The `config` crate, which
//! layers the environment over the file, converts freely (`requests_per_minute = "60"` or `1.5`
//! becomes 60, `token = 123456789` a string), which is right for environment variables (always
//! strings) and wrong for a file, where a quoted number or a number for a token is a mistake.
//!
//! So the file alone is first deserialized strictly into the same raw structs, through a small
//! deserializer over the parsed TOML that tracks the dotted key and accepts a value only as the
//! type TOML gave it. Only type errors are reported here (naming the key, the expected type and
//! the type found, never the value: it may be a secret); anything else (unknown keys, bad enum
//! values) is left to the layered pass, which reports it as before.

use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, Expected, IntoDeserializer, MapAccess,
    SeqAccess, Unexpected, Visitor,
};

use super::{ConfigError, RawConfig, RawStdoutSink};
use crate::sink::elasticsearch::RawEsSink;
use crate::sink::splunk_hec::RawHecSink;

/// Checks every value of the parsed file against the type of its key.
pub(super) fn check(doc: &toml::Table) -> Result<(), ConfigError> {
    // `[[sinks]]` is tagged by `type`, and serde buffers a tagged table before reading it, which
    // loses the key path: check each sink as its own type instead.
    let mut rest = doc.clone();
    let sinks = rest.remove("sinks");
    strict::<RawConfig>(toml::Value::Table(rest), String::new())?;
    let Some(sinks) = sinks else {
        return Ok(());
    };
    let toml::Value::Array(sinks) = sinks else {
        return Err(mismatch(
            "sinks",
            "an array of tables ([[sinks]])",
            kind(&sinks),
        ));
    };
    for (i, sink) in sinks.into_iter().enumerate() {
        let at = format!("sinks[{i}]");
        let toml::Value::Table(mut table) = sink else {
            return Err(mismatch(&at, "a table", kind(&sink)));
        };
        let value = |t| toml::Value::Table(t);
        match table.remove("type") {
            Some(toml::Value::String(t)) => match t.as_str() {
                "stdout" => strict::<RawStdoutSink>(value(table), at)?,
                "splunk_hec" => strict::<RawHecSink>(value(table), at)?,
                "elasticsearch" => strict::<RawEsSink>(value(table), at)?,
                // An unknown type is reported by the layered pass, with the known ones.
                _ => {}
            },
            Some(other) => return Err(mismatch(&format!("{at}.type"), "a string", kind(&other))),
            None => {}
        }
    }
    Ok(())
}

fn strict<T: DeserializeOwned>(value: toml::Value, path: String) -> Result<(), ConfigError> {
    match T::deserialize(Strict { value, path }) {
        Err(StrictError::Type {
            path: Some(path),
            expected,
            found,
        }) => Err(mismatch(&path, &expected, found)),
        _ => Ok(()),
    }
}

fn mismatch(key: &str, expected: &str, found: &str) -> ConfigError {
    let expected = friendly(expected);
    let hint = match (expected.as_str(), found) {
        ("an integer", "a string") | ("true or false", "a string") => {
            ": write the value without quotes (environment overrides, always text, are converted)"
        }
        ("an integer", "a float") => ": a whole number",
        ("a string", "an integer" | "a float" | "true or false") => {
            ": put the value in double quotes"
        }
        _ => "",
    };
    ConfigError::new(
        key,
        format!("must be {expected}, not {found}, in the config file{hint}"),
    )
}

/// Serde's name of an expected type, as the operator reads it.
fn friendly(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize" => {
            "an integer".into()
        }
        "f32" | "f64" => "a number".into(),
        "a string" | "path string" | "a borrowed string" | "a character" => "a string".into(),
        "a boolean" => "true or false".into(),
        "a sequence" => "an array".into(),
        "a map" => "a table".into(),
        e if e.starts_with("struct ") => "a table".into(),
        e if e.starts_with("enum ") || e.starts_with("variant ") => {
            "a string (one of the documented values)".into()
        }
        e => e.to_string(),
    }
}

/// What a TOML value is, without the value.
fn kind(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) | toml::Value::Datetime(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "true or false",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

fn unexpected_kind(u: &Unexpected<'_>) -> &'static str {
    match u {
        Unexpected::Bool(_) => "true or false",
        Unexpected::Unsigned(_) | Unexpected::Signed(_) => "an integer",
        Unexpected::Float(_) => "a float",
        Unexpected::Char(_) | Unexpected::Str(_) => "a string",
        Unexpected::Seq => "an array",
        Unexpected::Map => "a table",
        _ => "a value of another type",
    }
}

/// Why strict deserialization stopped: a value of the wrong type (with the key, once known),
/// or anything else, which the layered pass reports.
#[derive(Debug)]
enum StrictError {
    Type {
        path: Option<String>,
        expected: String,
        found: &'static str,
    },
    Other,
}

impl StrictError {
    /// Attaches the key where the error arose; the innermost key wins.
    fn at(self, key: &str) -> Self {
        match self {
            StrictError::Type {
                path: None,
                expected,
                found,
            } => StrictError::Type {
                path: Some(key.to_string()),
                expected,
                found,
            },
            other => other,
        }
    }
}

impl fmt::Display for StrictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("config value of the wrong type")
    }
}

impl std::error::Error for StrictError {}

impl de::Error for StrictError {
    fn custom<T: fmt::Display>(_: T) -> Self {
        StrictError::Other
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        StrictError::Type {
            path: None,
            expected: exp.to_string(),
            found: unexpected_kind(&unexp),
        }
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        // Serde's integer visitors say this for a value out of range (`-1` for a u32).
        match unexp {
            Unexpected::Signed(_) | Unexpected::Unsigned(_) | Unexpected::Float(_) => {
                StrictError::Type {
                    path: None,
                    expected: exp.to_string(),
                    found: "an integer out of its range",
                }
            }
            _ => StrictError::Other,
        }
    }
}

/// A TOML value and its dotted key, deserialized as exactly the type it has.
struct Strict {
    value: toml::Value,
    path: String,
}

impl<'de> Deserializer<'de> for Strict {
    type Error = StrictError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StrictError> {
        match self.value {
            toml::Value::String(s) => visitor.visit_string(s),
            // An unquoted RFC 3339 time where a time is expected (`start_at`) means the same.
            toml::Value::Datetime(d) => visitor.visit_string(d.to_string()),
            toml::Value::Integer(i) => visitor.visit_i64(i),
            toml::Value::Float(f) => visitor.visit_f64(f),
            toml::Value::Boolean(b) => visitor.visit_bool(b),
            toml::Value::Array(items) => {
                let path = self.path;
                visitor.visit_seq(Items {
                    items: items.into_iter().enumerate(),
                    path,
                })
            }
            toml::Value::Table(table) => {
                let path = self.path;
                visitor.visit_map(Entries {
                    entries: table.into_iter(),
                    pending: None,
                    path,
                })
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StrictError> {
        // TOML has no null: a key that is present holds a value.
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, StrictError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, StrictError> {
        match self.value {
            toml::Value::String(s) => visitor.visit_enum(s.into_deserializer()),
            other => Err(de::Error::invalid_type(unexpected(&other), &visitor)),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

fn unexpected(value: &toml::Value) -> Unexpected<'static> {
    match value {
        toml::Value::String(_) | toml::Value::Datetime(_) => Unexpected::Str(""),
        toml::Value::Integer(_) => Unexpected::Signed(0),
        toml::Value::Float(_) => Unexpected::Float(0.0),
        toml::Value::Boolean(_) => Unexpected::Bool(false),
        toml::Value::Array(_) => Unexpected::Seq,
        toml::Value::Table(_) => Unexpected::Map,
    }
}

struct Items {
    items: std::iter::Enumerate<std::vec::IntoIter<toml::Value>>,
    path: String,
}

impl<'de> SeqAccess<'de> for Items {
    type Error = StrictError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, StrictError> {
        let Some((i, value)) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{i}]", self.path);
        seed.deserialize(Strict {
            value,
            path: path.clone(),
        })
        .map(Some)
        .map_err(|e| e.at(&path))
    }
}

struct Entries {
    entries: <toml::Table as IntoIterator>::IntoIter,
    pending: Option<(String, toml::Value)>,
    path: String,
}

impl<'de> MapAccess<'de> for Entries {
    type Error = StrictError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, StrictError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let k = seed.deserialize(key.as_str().into_deserializer())?;
        self.pending = Some((key, value));
        Ok(Some(k))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, StrictError> {
        let (key, value) = self.pending.take().ok_or(StrictError::Other)?;
        let path = if self.path.is_empty() {
            key
        } else {
            format!("{}.{key}", self.path)
        };
        seed.deserialize(Strict {
            value,
            path: path.clone(),
        })
        .map_err(|e| e.at(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_text(text: &str) -> Result<(), ConfigError> {
        check(&toml::from_str(text).unwrap())
    }

    #[test]
    fn a_value_of_another_type_is_named_with_the_expected_type() {
        let cases = [
            (
                "[api]\nrequests_per_minute = \"60\"",
                "api.requests_per_minute",
                "an integer",
            ),
            (
                "[api]\nrequests_per_minute = 1.5",
                "api.requests_per_minute",
                "an integer",
            ),
            ("[api]\ntoken = 123456789", "api.token", "a string"),
            ("[api]\nsites = \"www\"", "api.sites", "an array"),
            ("[api]\nsites = [\"www\", 7]", "api.sites[1]", "a string"),
            ("[poll]\nstart_at = 5", "poll.start_at", "a string"),
            ("[spool]\nmax_bytes = -1", "spool.max_bytes", "an integer"),
            (
                "[filters]\nserver_side = \"true\"",
                "filters.server_side",
                "true or false",
            ),
            (
                "[filters.sites.www]\ninclude_tags = \"SQLI\"",
                "filters.sites.www.include_tags",
                "an array",
            ),
            ("api = 5", "api", "a table"),
            ("[admin]\nlisten = 9187", "admin.listen", "a string"),
            ("[api]\nauth = 1", "api.auth", "a string"),
            (
                "[[sinks]]\ntype = \"splunk_hec\"\ntoken = 42",
                "sinks[0].token",
                "a string",
            ),
            (
                "[[sinks]]\ntype = \"stdout\"\n[[sinks]]\ntype = \"elasticsearch\"\ngzip = \"no\"",
                "sinks[1].gzip",
                "true or false",
            ),
            (
                "[[sinks]]\ntype = \"elasticsearch\"\napi_key = 12345678",
                "sinks[0].api_key",
                "a string",
            ),
            (
                "[[sinks]]\ntype = \"elasticsearch\"\npassword = true",
                "sinks[0].password",
                "a string",
            ),
            (
                "[[sinks]]\ntype = \"splunk_hec\"\nin_flight = 2.0",
                "sinks[0].in_flight",
                "an integer",
            ),
            ("[[sinks]]\ntype = 3", "sinks[0].type", "a string"),
            ("sinks = { type = \"stdout\" }", "sinks", "an array"),
        ];
        for (text, key, expected) in cases {
            let e = check_text(text).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
            assert!(
                e.reason.contains(&format!("must be {expected}")),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn the_value_itself_is_never_shown() {
        for text in [
            "[api]\ntoken = 987654321",
            "[api]\ntoken = 98765.4321",
            "[[sinks]]\ntype = \"splunk_hec\"\ntoken = 987654321",
            "[api]\nrequests_per_minute = \"987654321\"",
        ] {
            let e = check_text(text).unwrap_err();
            assert!(!e.to_string().contains("98765"), "{e}");
        }
    }

    #[test]
    fn right_types_and_other_mistakes_pass_to_the_layered_pass() {
        for text in [
            "[api]\nrequests_per_minute = 60\ntoken = \"123\"\nsites = [\"www\"]",
            "[poll]\nstart_at = 2026-11-24T00:00:00Z",
            "[api]\ntokn = 5",
            "[api]\nauth = \"bogus\"",
            "[[sinks]]\ntype = \"kafka\"\nx = 1",
            "[[sinks]]\ntype = \"splunk_hec\"\nack = \"auto\"",
            "[[sinks]]\ntype = \"splunk_hec\"\nack = true",
            "[filters.sites.www]\ninclude_tags = [\"SQLI\"]",
        ] {
            check_text(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
    }
}
