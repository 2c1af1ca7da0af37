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
#[derive(Debug, Deserialize)]
pub struct EventHead<'a> {
    /// Unique request id.
    #[serde(borrow)]
    pub id: Option<Cow<'a, str>>,
    /// RFC 3339 time the request was seen.
    #[serde(borrow, default)]
    pub timestamp: Option<Cow<'a, str>>,
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
