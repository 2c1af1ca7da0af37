//! `GET|POST /corps/{corp}/sites/{site}/feed/requests`: parameter validation with the real
//! service's rules, `next` tokens, and page rendering.
//!
//! A `next` token is an opaque random string that maps, server-side, to the window's plan and
//! the offset of the following page. Tokens expire `next_ttl_secs` after issue on the simulator
//! clock (so both real sleeps and clock moves expire them) and may be reused while valid, which
//! is what lets a client retry a page after a transient error.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::data::Plan;
use super::events;
use super::faults::{self, Action};
use super::json;
use super::server::{API_PREFIX, Shared, UsedNext, json_error, lock};

/// Largest (and default) page size.
const MAX_LIMIT: u64 = 1000;
/// Expired tokens are remembered this long past expiry, to answer "expired" rather than
/// "unknown"; after that they are forgotten.
const REMEMBER_EXPIRED_MS: i64 = 10 * 60 * 1000;
/// URL-safe token alphabet: tokens never need percent-encoding.
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

struct TokenEntry {
    plan: Arc<Plan>,
    offset: u64,
    limit: u64,
    issued_ms: i64,
}

/// Issued `next` tokens.
pub(crate) struct TokenStore {
    map: HashMap<String, TokenEntry>,
    rng: ChaCha8Rng,
}

impl TokenStore {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            map: HashMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x7E4E_7E4E),
        }
    }

    fn issue(&mut self, entry: TokenEntry, len: usize, ttl_ms: i64) -> String {
        let now = entry.issued_ms;
        self.map.retain(|_, e| {
            e.issued_ms
                .saturating_add(ttl_ms)
                .saturating_add(REMEMBER_EXPIRED_MS)
                > now
        });
        loop {
            let token: String = (0..len.max(8))
                .map(|_| char::from(ALPHABET[self.rng.random_range(0..ALPHABET.len())]))
                .collect();
            if !self.map.contains_key(&token) {
                self.map.insert(token.clone(), entry);
                return token;
            }
        }
    }
}

/// `GET ...?from=&until=[&limit=][&tags=]` or `GET ...?next=`.
pub(crate) async fn get(
    State(s): State<Arc<Shared>>,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = form_pairs(query.as_deref().unwrap_or("").as_bytes());
    feed(s, path, params).await
}

/// `POST` with an `application/x-www-form-urlencoded` body `next=<token>`: the official
/// add-on's answer to 414. Query parameters are honoured too; the body wins on conflicts.
pub(crate) async fn post(
    State(s): State<Arc<Shared>>,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !is_form {
        return json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "POST body must be application/x-www-form-urlencoded",
        );
    }
    let mut params = form_pairs(&body);
    params.extend(form_pairs(query.as_deref().unwrap_or("").as_bytes()));
    let used_next = params.iter().any(|(k, _)| k == "next");
    let mut resp = feed(s, path, params).await;
    if used_next {
        resp.extensions_mut().insert(UsedNext);
    }
    resp
}

fn form_pairs(raw: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw).into_owned().collect()
}

/// First value of `name`, if given.
fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn feed(
    s: Arc<Shared>,
    path: Result<Path<(String, String)>, PathRejection>,
    params: Vec<(String, String)>,
) -> Response {
    if let Some(r) = s.rate_limited() {
        return r;
    }
    let Ok(Path((corp, site))) = path else {
        return json_error(StatusCode::NOT_FOUND, "Site not found");
    };
    if corp != s.cfg.corp {
        return json_error(StatusCode::NOT_FOUND, "Corp not found");
    }
    // Exact API name only: a display name 404s, as on the real service.
    let Some(site_idx) = s.generator.sites.iter().position(|x| x.name == site) else {
        return json_error(StatusCode::NOT_FOUND, "Site not found");
    };

    let (fault, latency_ms) = {
        let mut f = s.faults();
        (f.next(), f.config.latency_ms)
    };
    if latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(latency_ms)).await;
    }
    let mut truncate = false;
    match fault.map(faults::action) {
        Some(Action::Respond(r)) => return r,
        Some(Action::Delay(d)) => tokio::time::sleep(d).await,
        Some(Action::Truncate) => truncate = true,
        None => {}
    }

    match render_page(&s, site_idx, &params) {
        Ok(body) => {
            let body = if truncate {
                faults::truncate(&body)
            } else {
                body
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
        Err(PageError::BadRequest(msg)) => json_error(StatusCode::BAD_REQUEST, &msg),
        Err(PageError::Internal(msg)) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &msg),
    }
}

enum PageError {
    BadRequest(String),
    Internal(String),
}

impl From<String> for PageError {
    fn from(msg: String) -> Self {
        PageError::BadRequest(msg)
    }
}

/// Validate, page, issue the next token, serialise.
fn render_page(
    s: &Shared,
    site_idx: usize,
    params: &[(String, String)],
) -> Result<Vec<u8>, PageError> {
    let cfg = &s.cfg;
    let now_ms = s.now_ms();
    let ttl_ms = i64::try_from(cfg.next_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let (plan, offset, limit) = match param(params, "next") {
        Some(token) => {
            let tokens = lock(&s.tokens);
            let entry = tokens
                .map
                .get(token)
                .filter(|e| e.plan.site == site_idx)
                .ok_or_else(|| {
                    "'next' token is unknown or invalid; refetch the window from its 'from'"
                        .to_string()
                })?;
            if now_ms >= entry.issued_ms.saturating_add(ttl_ms) {
                return Err(format!(
                    "'next' token has expired (next URIs are valid for {} after they are \
                     issued); refetch the window from its 'from'",
                    human(cfg.next_ttl_secs as i64)
                )
                .into());
            }
            (entry.plan.clone(), entry.offset, entry.limit)
        }
        None => {
            let w = validate(
                params,
                now_ms.div_euclid(1000),
                cfg.min_delay_secs,
                cfg.retention_secs,
            )?;
            let plan = Plan::new(&s.generator, site_idx, w.from, w.until, w.tags)
                .ok_or_else(|| PageError::Internal("site vanished".to_string()))?;
            (Arc::new(plan), 0, w.limit)
        }
    };

    let g = &s.generator;
    let site = g
        .sites
        .get(site_idx)
        .ok_or_else(|| PageError::Internal("site vanished".to_string()))?;
    let refs = plan.page(g, offset, limit);
    let next_offset = offset + refs.len() as u64;
    let next = if next_offset < plan.total() {
        let token = lock(&s.tokens).issue(
            TokenEntry {
                plan: plan.clone(),
                offset: next_offset,
                limit,
                issued_ms: now_ms,
            },
            cfg.next_token_len,
            ttl_ms,
        );
        Some(format!(
            "{API_PREFIX}/corps/{}/sites/{}/feed/requests?next={token}",
            cfg.corp, site.name
        ))
    } else if cfg.omit_last_next {
        None
    } else {
        Some(String::new())
    };
    Ok(write_page(next.as_deref(), refs.len(), |out| {
        for (i, e) in refs.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            events::write_json(g, site, e, out);
        }
    }))
}

/// `{"next":{"uri":..},"data":[..]}` (`next` omitted when `None`), with `data`'s items written
/// by `items`. Written directly rather than through serde: a page holds up to 1000 records,
/// and building them as objects first was most of the simulator's CPU.
fn write_page(next: Option<&str>, count: usize, items: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    // Records run to about 1.2 kB: one allocation for a typical page.
    let mut out = Vec::with_capacity(count * 1536 + 256);
    out.push(b'{');
    if let Some(uri) = next {
        out.extend_from_slice(b"\"next\":{\"uri\":");
        json::push_str(&mut out, uri);
        out.extend_from_slice(b"},");
    }
    out.extend_from_slice(b"\"data\":[");
    items(&mut out);
    out.extend_from_slice(b"]}");
    out
}

/// A validated window query.
struct Window {
    from: i64,
    until: i64,
    limit: u64,
    tags: Option<Vec<String>>,
}

fn validate(
    params: &[(String, String)],
    now: i64,
    min_delay_secs: i64,
    retention_secs: i64,
) -> Result<Window, String> {
    let time = |name: &str| -> Result<i64, String> {
        let raw = param(params, name)
            .ok_or_else(|| format!("'{name}' is required: Unix seconds on a full minute"))?;
        raw.trim()
            .parse::<i64>()
            .map_err(|_| format!("'{name}' must be an integer number of Unix seconds, got '{raw}'"))
    };
    let from = time("from")?;
    let until = time("until")?;
    let limit = match param(params, "limit") {
        None => MAX_LIMIT,
        Some(raw) => raw
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                format!("'limit' must be an integer between 1 and {MAX_LIMIT}, got '{raw}'")
            })?,
    };
    for (name, t) in [("from", from), ("until", until)] {
        if t.rem_euclid(60) != 0 {
            return Err(format!(
                "'{name}' must be on a full minute (a multiple of 60 seconds), got {t}"
            ));
        }
    }
    if from >= until {
        return Err(format!(
            "'from' must be before 'until', got from={from} until={until}"
        ));
    }
    if until > now - min_delay_secs {
        return Err(format!(
            "'until' must be at least {} in the past, got until={until} while the server time is {now}",
            human(min_delay_secs)
        ));
    }
    if from < now - retention_secs {
        return Err(format!(
            "'from' must be no more than {} in the past (older data is no longer available), \
             got from={from} while the server time is {now}",
            human(retention_secs)
        ));
    }
    let tags: Vec<String> = param(params, "tags")
        .unwrap_or("")
        .split(',')
        .map(|t| t.trim().to_ascii_uppercase())
        .filter(|t| !t.is_empty())
        .collect();
    Ok(Window {
        from,
        until,
        limit,
        tags: (!tags.is_empty()).then_some(tags),
    })
}

/// `86700` -> "24 hours 5 minutes"; `300` -> "5 minutes".
fn human(secs: i64) -> String {
    let units = [(3600, "hour"), (60, "minute"), (1, "second")];
    let mut left = secs.max(0);
    let mut parts = Vec::new();
    for (size, name) in units {
        let n = left / size;
        left %= size;
        if n > 0 {
            parts.push(format!("{n} {name}{}", if n == 1 { "" } else { "s" }));
        }
    }
    if parts.is_empty() {
        "0 seconds".to_string()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::super::data::Generator;
    use super::{events, human, write_page};

    /// The page shape as serde wrote it before the feed wrote pages by hand.
    #[derive(serde::Serialize)]
    struct NextUri<'a> {
        uri: &'a str,
    }
    #[derive(serde::Serialize)]
    struct PageBody<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        next: Option<NextUri<'a>>,
        data: &'a [events::Event],
    }

    #[test]
    fn pages_match_serde() {
        let g = Generator::new(9, "demo", &["www".into(), "api".into()], 60, 0.01, true);
        for site in &g.sites {
            let l = g.layout(site, 1_700_000_000 / 60 * 60);
            let refs: Vec<_> = (0..l.len() as u32).map(|k| l.event(k)).collect();
            for n in [0, 1, refs.len()] {
                let refs = &refs[..n];
                let data: Vec<_> = refs.iter().map(|e| events::build(&g, site, e)).collect();
                for next in [None, Some(""), Some("/api/v0/x?next=a\"b")] {
                    let got = write_page(next, refs.len(), |out| {
                        for (i, e) in refs.iter().enumerate() {
                            if i > 0 {
                                out.push(b',');
                            }
                            events::write_json(&g, site, e, out);
                        }
                    });
                    let body = PageBody {
                        next: next.map(|uri| NextUri { uri }),
                        data: &data,
                    };
                    assert_eq!(got, serde_json::to_vec(&body).unwrap(), "{n} {next:?}");
                }
            }
        }
    }

    #[test]
    fn durations_read_like_the_docs() {
        assert_eq!(human(300), "5 minutes");
        assert_eq!(human(86_700), "24 hours 5 minutes");
        assert_eq!(human(61), "1 minute 1 second");
        assert_eq!(human(0), "0 seconds");
    }
}
