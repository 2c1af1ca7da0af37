//! A string that must never be printed: API tokens, passwords, HEC tokens.
//!
//! `Debug` and `Display` both print `***`, so a secret can sit inside any config struct that is
//! logged or shown in an error without leaking. The only way to the value is [`Secret::expose`],
//! which call sites use exactly where a header is built.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A secret value. Prints as `***` everywhere.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself. Call only where it is sent on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty (an unset env var is a common cause).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What makes the value unusable as a credential, if anything, in words that never quote
    /// it: empty or only whitespace (an empty credential would be sent), several lines or
    /// other control characters (no header can carry them: every request would fail), or
    /// whitespace around it (a stray space or tab from an editor or `echo`).
    pub fn problem(&self) -> Option<&'static str> {
        let v = self.0.as_str();
        if v.is_empty() {
            Some("is empty")
        } else if v.trim().is_empty() {
            Some("holds only whitespace")
        } else if v.contains(['\n', '\r']) {
            Some("holds more than one line")
        } else if v.chars().any(char::is_control) {
            Some("holds a control character (a tab or another non-printable one)")
        } else if v.trim() != v {
            Some("begins or ends with whitespace")
        } else {
            None
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn unusable_values_are_described_without_the_value() {
        for (v, problem) in [
            ("", "is empty"),
            (" \t ", "holds only whitespace"),
            ("line-one\nline-two", "holds more than one line"),
            ("tok\r", "holds more than one line"),
            (
                "to\tk",
                "holds a control character (a tab or another non-printable one)",
            ),
            (" tok", "begins or ends with whitespace"),
        ] {
            assert_eq!(Secret::new(v).problem(), Some(problem), "{v:?}");
        }
        assert_eq!(Secret::new("a b=c/+").problem(), None);
    }

    #[test]
    fn deserializes_from_a_string() {
        let s: Secret = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(s.expose(), "abc");
        assert!(!s.is_empty());
    }
}
