//! Event shaping: pure functions from a spooled event to the JSON object a sink sends.
//!
//! The spool keeps each record exactly as the API sent it; shaping happens on the way out so
//! each sink can pick its own [`Format`]. A [`Shaper`] is built once per sink from its config
//! and is cheap to call per event.

mod cim;
mod ecs;
pub mod filter;
mod map;
mod raw;
mod request;

#[cfg(test)]
mod es_template;
#[cfg(test)]
mod golden;
#[cfg(test)]
mod tests;

use serde::Deserialize;

use crate::store::SpooledEvent;

pub use cim::VENDOR_PRODUCT as CIM_VENDOR_PRODUCT;
pub use ecs::ECS_VERSION;
pub use map::{ATTACK_TAGS, REDACTED};
pub use raw::{write_raw, write_raw_redacted};

/// Appends `s` as a JSON string (quoted and escaped) to `out`, without an allocation.
pub(crate) fn push_json_str(s: &str, out: &mut Vec<u8>) {
    // serde_json cannot fail writing a &str into a Vec.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The one key the exporter adds to a `raw` record: `{"corp", "site", "fetched_at"}`.
pub const META_KEY: &str = "sigsci_export";

/// Header names whose values are replaced by `[redacted]` unless a sink sets its own list.
pub const DEFAULT_REDACT_HEADERS: &[&str] =
    &["authorization", "cookie", "set-cookie", "x-api-token"];

/// How a sink shapes each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The API's JSON unchanged, plus [`META_KEY`].
    #[default]
    Raw,
    /// Elastic Common Schema.
    Ecs,
    /// Splunk CIM (Web data model) field names.
    Cim,
}

impl Format {
    /// The config spelling: `raw`, `ecs` or `cim`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Ecs => "ecs",
            Format::Cim => "cim",
        }
    }
}

/// Shapes events for one sink.
#[derive(Debug, Clone)]
pub struct Shaper {
    format: Format,
    /// Lower-cased header names to redact.
    redact: Vec<String>,
}

impl Shaper {
    /// A shaper for `format`, redacting the values of `redact_headers` (any case).
    pub fn new(format: Format, redact_headers: &[String]) -> Shaper {
        Shaper {
            format,
            redact: redact_headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        }
    }

    /// The format this shaper writes.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Appends `ev` as one JSON object (no trailing newline) to `out`.
    ///
    /// Never fails: a record with missing, unknown or oddly typed fields still gives one valid
    /// JSON object (fields without a usable source are left out).
    pub fn write(&self, ev: &SpooledEvent, out: &mut Vec<u8>) {
        match self.format {
            Format::Raw => write_raw_redacted(ev, &self.redact, out),
            Format::Ecs => ecs::write(ev, &self.redact, out),
            Format::Cim => cim::write(ev, &self.redact, out),
        }
    }
}

/// The default redaction list as owned strings (for config defaults).
pub fn default_redact_headers() -> Vec<String> {
    DEFAULT_REDACT_HEADERS
        .iter()
        .map(|s| s.to_string())
        .collect()
}
