//! The `ecs` format: Elastic Common Schema [`ECS_VERSION`] fields for a WAF request event, laid
//! out like Elastic's own WAF integrations. The field table is in `docs/formats.md`.
//!
//! One parse into the borrowed [`Request`] view, one `serde_json::to_writer` of borrowed
//! structs: no `Value` tree per event. Fields whose source is missing or empty are omitted.

use std::borrow::Cow;

use serde::Serialize;

use super::map::{self, Folded, REDACTED, s};
use super::request::{Request, Tag};
use crate::store::SpooledEvent;

/// The ECS version the field names follow.
pub const ECS_VERSION: &str = "8.11.0";
/// `event.dataset`.
pub(crate) const DATASET: &str = "sigsci.requests";
/// `event.module`.
pub(crate) const MODULE: &str = "sigsci";
/// `observer.vendor`.
pub(crate) const VENDOR: &str = "Fastly";
/// `observer.product`.
pub(crate) const PRODUCT: &str = "Next-Gen WAF (Signal Sciences)";

#[derive(Serialize)]
struct Doc<'r> {
    #[serde(rename = "@timestamp")]
    timestamp: Cow<'r, str>,
    ecs: Ecs,
    event: Event<'r>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<Http<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<Url<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<Source<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<UserAgent<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<Tls<'r>>,
    network: Network,
    observer: Observer<'r>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<Rule<'r>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<&'r str>,
    labels: Labels<'r>,
    #[serde(skip_serializing_if = "Option::is_none")]
    related: Option<Related<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sigsci: Option<Sigsci<'r>>,
}

#[derive(Serialize)]
struct Ecs {
    version: &'static str,
}

#[derive(Serialize)]
struct Event<'r> {
    kind: &'static str,
    category: Vec<&'static str>,
    #[serde(rename = "type")]
    kind_type: [&'static str; 2],
    action: &'static str,
    id: &'r str,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<i64>,
    dataset: &'static str,
    module: &'static str,
    ingested: String,
}

#[derive(Serialize)]
struct Http<'r> {
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<HttpRequest<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<HttpResponse<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'r str>,
}

#[derive(Serialize)]
struct HttpRequest<'r> {
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    referrer: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<Folded<'r>>,
}

#[derive(Serialize)]
struct HttpResponse<'r> {
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<Folded<'r>>,
}

#[derive(Serialize)]
struct Url<'r> {
    #[serde(skip_serializing_if = "Option::is_none")]
    original: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    full: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scheme: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<&'r str>,
}

#[derive(Serialize)]
struct Source<'r> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    geo: Option<Geo<'r>>,
}

#[derive(Serialize)]
struct Geo<'r> {
    country_iso_code: &'r str,
}

#[derive(Serialize)]
struct UserAgent<'r> {
    original: &'r str,
}

#[derive(Serialize)]
struct Tls<'r> {
    #[serde(skip_serializing_if = "Option::is_none")]
    version_protocol: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cipher: Option<&'r str>,
}

#[derive(Serialize)]
struct Network {
    protocol: &'static str,
}

#[derive(Serialize)]
struct Observer<'r> {
    vendor: &'static str,
    product: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<&'r str>,
}

#[derive(Serialize)]
struct Rule<'r> {
    name: Vec<&'r str>,
}

#[derive(Serialize)]
struct Labels<'r> {
    corp: &'r str,
    site: &'r str,
}

#[derive(Serialize)]
struct Related<'r> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ip: Vec<&'r str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hosts: Vec<&'r str>,
}

/// Vendor details ECS has no field for.
#[derive(Serialize)]
struct Sigsci<'r> {
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_response_code: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    signals: Vec<Signal<'r>>,
}

/// One tag as written to `sigsci.signals`, its value possibly redacted.
struct Signal<'r> {
    tag: &'r Tag<'r>,
    redact_value: bool,
}

impl Serialize for Signal<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let tag = self.tag;
        let value = match &tag.value {
            Some(_) if self.redact_value => Some(Cow::Borrowed(REDACTED)),
            v => v.clone(),
        };
        let mut m = ser.serialize_map(None)?;
        m.serialize_entry("type", &tag.kind)?;
        for (k, v) in [
            ("location", &tag.location),
            ("value", &value),
            ("detector", &tag.detector),
        ] {
            if let Some(v) = v {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

/// Appends `ev` in the `ecs` format (one JSON object, no newline) to `out`.
pub(crate) fn write(ev: &SpooledEvent, redact: &[String], out: &mut Vec<u8>) {
    let mut scratch = String::new();
    let req = Request::parse(&ev.body, &mut scratch);
    let tags = &req.tags.0;
    let types = map::tag_types(tags);
    let blocked = map::is_blocked(req.agent_response_code.get(), tags);
    let attack = types.iter().any(|t| map::is_attack(t));

    let mut category = vec!["web"];
    if attack {
        category.push("intrusion_detection");
    }
    let action = if blocked {
        "blocked"
    } else if types.is_empty() {
        "allowed"
    } else {
        "logged"
    };

    let headers_in = &req.headers_in.0;
    let request = HttpRequest {
        method: s(&req.method),
        referrer: map::header(headers_in, "referer", redact),
        headers: Folded::new(headers_in, redact),
    };
    let request = (request.method.is_some() || request.headers.is_some()).then_some(request);
    let response = HttpResponse {
        status_code: req.response_code.get(),
        bytes: req.response_size.get(),
        headers: Folded::new(&req.headers_out.0, redact),
    };
    let response =
        (response.status_code.is_some() || response.bytes.is_some() || response.headers.is_some())
            .then_some(response);
    let version = s(&req.protocol).and_then(map::http_version);
    let http = (request.is_some() || response.is_some() || version.is_some()).then_some(Http {
        request,
        response,
        version,
    });

    let uri = map::uri(&req);
    let (path, query) = uri.map_or((None, None), |u| {
        let (p, q) = map::split_uri(u);
        (s(&req.path).or((!p.is_empty()).then_some(p)), q)
    });
    let url = (uri.is_some() || req.server_name.get().is_some()).then(|| Url {
        original: uri,
        full: map::full_url(&req),
        scheme: s(&req.scheme),
        domain: s(&req.server_name),
        path,
        query,
    });

    let remote = s(&req.remote_ip);
    let ip = map::valid_ip(remote);
    let source = (remote.is_some()
        || req.remote_hostname.get().is_some()
        || req.remote_country_code.get().is_some())
    .then(|| Source {
        ip,
        address: remote,
        domain: s(&req.remote_hostname),
        geo: s(&req.remote_country_code).map(|c| Geo {
            country_iso_code: c,
        }),
    });

    let tls = s(&req.tls_protocol).and_then(map::tls_version);
    let cipher = s(&req.tls_cipher);
    let tls = (tls.is_some() || cipher.is_some()).then(|| Tls {
        version_protocol: tls.and_then(|(p, _)| p),
        version: tls.map(|(_, v)| v),
        cipher,
    });

    let rule_names = map::rule_names(&types);
    let hosts: Vec<&str> = [s(&req.server_name), s(&req.remote_hostname)]
        .into_iter()
        .flatten()
        .collect();
    let related = (ip.is_some() || !hosts.is_empty()).then(|| Related {
        ip: ip.into_iter().collect(),
        hosts,
    });

    let doc = Doc {
        timestamp: map::timestamp(&req, ev),
        ecs: Ecs {
            version: ECS_VERSION,
        },
        event: Event {
            kind: "event",
            category,
            kind_type: ["access", if blocked { "denied" } else { "allowed" }],
            action,
            id: s(&req.id).unwrap_or(&ev.id),
            duration: req.response_millis.nanos(),
            dataset: DATASET,
            module: MODULE,
            ingested: crate::time::rfc3339(ev.fetched_at),
        },
        http,
        url,
        source,
        user_agent: map::user_agent(&req, redact).map(|ua| UserAgent { original: ua }),
        tls,
        network: Network { protocol: "http" },
        observer: Observer {
            vendor: VENDOR,
            product: PRODUCT,
            kind: "waf",
            hostname: s(&req.server_hostname),
        },
        rule: (!rule_names.is_empty()).then_some(Rule { name: rule_names }),
        tags: types,
        labels: Labels {
            corp: &ev.corp,
            site: &ev.site,
        },
        related,
        sigsci: (req.agent_response_code.get().is_some() || !tags.is_empty()).then_some(Sigsci {
            agent_response_code: req.agent_response_code.get(),
            signals: tags
                .iter()
                .map(|tag| Signal {
                    tag,
                    redact_value: map::tag_value_redacted(tag, redact),
                })
                .collect(),
        }),
    };
    // Serialising borrowed strings and integers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &doc);
}
