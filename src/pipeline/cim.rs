//! The `cim` format: flat Splunk CIM field names (the `Web` data model, plus the
//! `Intrusion_Detection` fields that fit a WAF hit). The field table is in `docs/formats.md`.
//!
//! Same approach as `ecs`: one borrowed parse, one `serde_json::to_writer`, empty fields omitted.

use std::borrow::Cow;

use serde::Serialize;

use super::map::{self, Folded, s};
use super::request::Request;
use crate::store::SpooledEvent;

/// `vendor_product`.
pub const VENDOR_PRODUCT: &str = "Fastly Next-Gen WAF";

#[derive(Serialize)]
struct Doc<'r> {
    timestamp: Cow<'r, str>,
    id: &'r str,
    /// The Signal Sciences corp and site: CIM's own `site` is the web site requested.
    sigsci_corp: &'r str,
    sigsci_site: &'r str,
    action: &'static str,
    vendor_product: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    src: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_ip: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dest: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    site: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dvc: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_method: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uri_path: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uri_query: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url_domain: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_out: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_user_agent: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_user_agent_length: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_referrer: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_content_type: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_time: Option<Ms>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<Ms>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    signature: Vec<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ids_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_request_headers: Option<Folded<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_response_headers: Option<Folded<'r>>,
    fetched_at: String,
}

/// Milliseconds as Splunk should see them: `2`, not `2.0`, so whole values look as they did in
/// the record; fractions (`1.5`) are kept.
#[derive(Clone, Copy)]
struct Ms(f64);

impl Serialize for Ms {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Millis caps values well inside the range where f64 holds every integer exactly.
        if self.0.fract() == 0.0 {
            s.serialize_i64(self.0 as i64)
        } else {
            s.serialize_f64(self.0)
        }
    }
}

/// Appends `ev` in the `cim` format (one JSON object, no newline) to `out`.
pub(crate) fn write(ev: &SpooledEvent, redact: &[String], out: &mut Vec<u8>) {
    let mut scratch = String::new();
    let req = Request::parse(&ev.body, &mut scratch);
    let tags = &req.tags.0;
    let types = map::tag_types(tags);
    let blocked = map::is_blocked(req.agent_response_code.get(), tags);
    let attack = types.iter().any(|t| map::is_attack(t));
    let uri = map::uri(&req);
    let (path, query) = uri.map_or((None, None), |u| {
        let (p, q) = map::split_uri(u);
        (s(&req.path).or((!p.is_empty()).then_some(p)), q)
    });
    let remote = s(&req.remote_ip);
    let user_agent = map::user_agent(&req, redact);
    // The length of a redacted agent would describe the hidden value.
    let user_agent_length = s(&req.user_agent)
        .filter(|_| user_agent != Some(map::REDACTED))
        .map(|ua| ua.chars().count());
    let millis = req.response_millis.get().map(Ms);

    let doc = Doc {
        timestamp: map::timestamp(&req, ev),
        id: s(&req.id).unwrap_or(&ev.id),
        sigsci_corp: &ev.corp,
        sigsci_site: &ev.site,
        action: if blocked { "blocked" } else { "allowed" },
        vendor_product: VENDOR_PRODUCT,
        src: remote,
        src_ip: map::valid_ip(remote),
        dest: s(&req.server_name),
        site: s(&req.server_name),
        dvc: s(&req.server_hostname),
        http_method: s(&req.method),
        uri_path: path,
        uri_query: query,
        url: map::full_url(&req),
        url_domain: s(&req.server_name),
        status: req.response_code.get(),
        // CIM's bytes is bytes_in + bytes_out, but the feed has no request size: the response
        // size is all there is.
        bytes: req.response_size.get(),
        bytes_out: req.response_size.get(),
        http_user_agent: user_agent,
        http_user_agent_length: user_agent_length,
        http_referrer: map::header(&req.headers_in.0, "referer", redact),
        http_content_type: map::header(&req.headers_out.0, "content-type", redact),
        response_time: millis,
        duration: millis,
        signature: map::rule_names(&types),
        ids_type: attack.then_some("application"),
        http_request_headers: Folded::new(&req.headers_in.0, redact),
        http_response_headers: Folded::new(&req.headers_out.0, redact),
        fetched_at: crate::time::rfc3339(ev.fetched_at),
    };
    // Serialising borrowed strings and integers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &doc);
}
