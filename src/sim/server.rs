//! The HTTP side: shared state, routes, the front gate (request log, 414, authentication), the
//! rate limiter and the sites list. The feed endpoint itself lives in [`super::feed`].
//!
//! Order of checks, as on the real service behind its front proxy: URI length (414), then
//! authentication (401), then rate limit (429), then corp/site (404), then faults (feed only),
//! then parameter validation (400).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::data::Generator;
use super::events;
use super::faults::{self, FaultState, UNAUTHORIZED};
use super::feed::{self, TokenStore};
use super::{RequestRecord, SimConfig};

/// Path prefix of every API route.
pub(crate) const API_PREFIX: &str = "/api/v0";

/// How many request records are kept (a long `simulate` run must not grow without bound).
const MAX_RECORDS: usize = 100_000;

/// Lock a mutex, ignoring poisoning: a panicked test thread must not take the server down, and
/// every critical section here leaves the data consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `{"message": ...}` with the given status: the API's error shape.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "message": message }))).into_response()
}

/// Marker a handler puts in its response's extensions when the request used a `next` token in
/// its body (the gate cannot see a POST body).
#[derive(Clone, Copy, Debug)]
pub(crate) struct UsedNext;

/// The request log with a moving base, so records can be completed by sequence number even
/// after old ones were dropped.
#[derive(Default)]
struct RequestLog {
    base: u64,
    items: VecDeque<RequestRecord>,
}

/// State shared by all connections and the [`super::Simulator`] handle.
pub(crate) struct Shared {
    pub(crate) cfg: SimConfig,
    pub(crate) generator: Generator,
    clock_offset_secs: AtomicI64,
    faults: Mutex<FaultState>,
    pub(crate) tokens: Mutex<TokenStore>,
    /// Arrival instants of the requests admitted in the last 60 s.
    rate: Mutex<VecDeque<Instant>>,
    log: Mutex<RequestLog>,
}

impl Shared {
    pub(crate) fn new(cfg: SimConfig) -> Self {
        let generator = Generator::new(
            cfg.seed,
            &cfg.corp,
            &cfg.sites,
            cfg.rate_per_min,
            cfg.duplicate_ratio,
            cfg.shuffle,
        );
        Self {
            generator,
            clock_offset_secs: AtomicI64::new(0),
            faults: Mutex::new(FaultState::new(cfg.faults.clone(), cfg.seed)),
            tokens: Mutex::new(TokenStore::new(cfg.seed)),
            rate: Mutex::new(VecDeque::new()),
            log: Mutex::new(RequestLog::default()),
            cfg,
        }
    }

    /// Simulator time in Unix milliseconds: real clock plus offset.
    pub(crate) fn now_ms(&self) -> i64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let offset = self.clock_offset_secs.load(Ordering::Relaxed);
        real.saturating_add(offset.saturating_mul(1000))
    }

    pub(crate) fn set_clock_offset(&self, secs: i64) {
        self.clock_offset_secs.store(secs, Ordering::Relaxed);
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, FaultState> {
        lock(&self.faults)
    }

    pub(crate) fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.log).items.iter().cloned().collect()
    }

    /// Record an arrival; returns its sequence number for [`Self::complete`].
    fn arrive(&self, rec: RequestRecord) -> u64 {
        let mut log = lock(&self.log);
        if log.items.len() >= MAX_RECORDS {
            log.items.pop_front();
            log.base += 1;
        }
        log.items.push_back(rec);
        log.base + log.items.len() as u64 - 1
    }

    fn complete(&self, seq: u64, status: u16, used_next: bool) {
        let mut log = lock(&self.log);
        let Some(i) = seq.checked_sub(log.base) else {
            return;
        };
        if let Some(rec) = log.items.get_mut(i as usize) {
            rec.status = status;
            rec.used_next |= used_next;
        }
    }

    /// The rolling-window rate limit: `Some(429)` if this request is one too many.
    /// Rejected requests do not count against the quota, so a client that waits `Retry-After`
    /// seconds is admitted.
    pub(crate) fn rate_limited(&self) -> Option<Response> {
        let limit = self.cfg.rate_limit_per_min? as usize;
        let window = Duration::from_secs(60);
        let now = Instant::now();
        let mut q = lock(&self.rate);
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        if q.len() < limit {
            q.push_back(now);
            return None;
        }
        let wait = q
            .front()
            .map_or(window, |t| window.saturating_sub(now.duration_since(*t)));
        // Round up: a client sleeping exactly Retry-After seconds must find a free slot.
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut r = json_error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        Some(r)
    }

    /// See [`super::Simulator::ground_truth`]. Costs O(requests in the range): meant for test
    /// windows, not for decades.
    pub(crate) fn ground_truth(&self, site: &str, from: i64, until: i64) -> Vec<String> {
        self.ground_truth_where(site, from, until, &|_| true)
    }

    /// As [`Shared::ground_truth`], only requests whose signal types satisfy `keep`.
    pub(crate) fn ground_truth_where(
        &self,
        site: &str,
        from: i64,
        until: i64,
        keep: &dyn Fn(&[&str]) -> bool,
    ) -> Vec<String> {
        let g = &self.generator;
        let Some(site) = g.site(site) else {
            return Vec::new();
        };
        let mut ids = Vec::new();
        if from >= until {
            return ids;
        }
        let mut minute = from.div_euclid(60) * 60;
        while minute < until {
            let layout = g.layout(site, minute);
            for k in 0..layout.len() as u32 {
                let ev = layout.event(k);
                let ts = minute + i64::from(ev.second);
                if (from..until).contains(&ts) && keep(&events::profile(ev.hash).tag_types()) {
                    ids.push(g.id(site, &ev));
                }
            }
            let Some(next) = minute.checked_add(60) else {
                break;
            };
            minute = next;
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// Serve `shared` on `listener` until `shutdown` resolves.
pub(crate) async fn run(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(shutdown)
        .await
}

fn router(shared: Arc<Shared>) -> Router {
    let feed_path = format!("{API_PREFIX}/corps/{{corp}}/sites/{{site}}/feed/requests");
    Router::new()
        .route(&format!("{API_PREFIX}/corps/{{corp}}/sites"), get(sites))
        .route(&feed_path, get(feed::get).post(feed::post))
        .route("/login", get(|| async { faults::login_page() }))
        .fallback(|| async { json_error(StatusCode::NOT_FOUND, "Not Found") })
        .method_not_allowed_fallback(|| async {
            json_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
        })
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

/// The front gate every request passes: log it, enforce the URI limit, authenticate.
async fn gate(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let uri = req.uri();
    let path = uri.path().to_string();
    let query = uri.query();
    let query_len = query.map_or(0, str::len);
    let uri_len = path.len() + query.map_or(0, |q| q.len() + 1);
    let is_get = req.method() == Method::GET;
    let get_next =
        query.is_some_and(|q| url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "next"));
    let seq = s.arrive(RequestRecord {
        method: req.method().to_string(),
        path: path.clone(),
        query_len,
        uri_len,
        status: 0,
        used_next: get_next,
        at: Instant::now(),
    });
    let resp = if is_get && uri_len > s.cfg.max_uri_len {
        json_error(StatusCode::URI_TOO_LONG, "URI Too Long")
    } else if path != "/login" && !authorized(req.headers(), &s.cfg) {
        json_error(StatusCode::UNAUTHORIZED, UNAUTHORIZED)
    } else {
        next.run(req).await
    };
    let used_next = resp.extensions().get::<UsedNext>().is_some();
    s.complete(seq, resp.status().as_u16(), used_next);
    resp
}

/// Token headers (both must match) or `Authorization: Basic base64(email:token)`.
fn authorized(headers: &HeaderMap, cfg: &SimConfig) -> bool {
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header_str("x-api-user") == Some(cfg.email.as_str())
        && header_str("x-api-token") == Some(cfg.token.as_str())
    {
        return true;
    }
    let Some((scheme, creds)) = header_str("authorization").and_then(|v| v.split_once(' ')) else {
        return false;
    };
    scheme.eq_ignore_ascii_case("basic")
        && base64_decode(creds.trim()).is_some_and(|raw| {
            let expected = format!("{}:{}", cfg.email, cfg.token);
            raw == expected.as_bytes()
        })
}

/// Standard base64 (padding optional). Hand-rolled: one small use does not justify a dependency.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let s = s.trim_end_matches('=').as_bytes();
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// `GET /corps/{corp}/sites`.
async fn sites(
    State(s): State<Arc<Shared>>,
    corp: Result<Path<String>, PathRejection>,
) -> Response {
    if let Some(r) = s.rate_limited() {
        return r;
    }
    match corp {
        Ok(Path(corp)) if corp == s.cfg.corp => {}
        _ => return json_error(StatusCode::NOT_FOUND, "Corp not found"),
    }
    let data: Vec<_> = s
        .generator
        .sites
        .iter()
        .map(|site| {
            json!({
                "name": site.name,
                "displayName": site.display_name,
                "agentLevel": "block",
                "blockHTTPCode": 406,
                "blockDurationSeconds": 86400,
                "created": "2024-03-01T10:00:00Z",
                "agentAnonMode": "",
            })
        })
        .collect();
    (StatusCode::OK, axum::Json(json!({ "data": data }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn base64_round_trips_known_values() {
        assert_eq!(
            base64_decode("ZGVtbzp0b2tlbg==").as_deref(),
            Some(&b"demo:token"[..])
        );
        assert_eq!(base64_decode("YQ").as_deref(), Some(&b"a"[..]));
        assert_eq!(base64_decode("").as_deref(), Some(&b""[..]));
        assert!(base64_decode("Y").is_none());
        assert!(base64_decode("a!==").is_none());
    }
}
