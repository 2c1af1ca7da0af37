//! A Splunk HTTP Event Collector test receiver, modelled on sinks.md part A.
//!
//! It serves `POST /services/collector/event` (also `/services/collector` and `/event/1.0`),
//! `POST /services/collector/ack` and `GET /services/collector/health` (also `/health/1.0`) and
//! models: token checks (missing 401 code 2, wrong scheme 401 code 3, unknown 403 code 4,
//! disabled 403 code 1), gzip bodies, concatenated JSON envelopes (whitespace between them is
//! fine; an array or garbage is 400 code 6 with the `invalid-event-number` of the first bad
//! object), a byte limit on the uncompressed body (413), empty body 5, indexer acknowledgement
//! per token (channel required: 10, malformed GUID: 11; `ackId`s count up per channel; `/ack`
//! answers true only after `ack_delay`, never for a fraction `ack_loss` of requests, and
//! forgets an id once answered true; `/ack` on a token without acknowledgement is 400 code
//! 14), faults (random and scripted, on `/event` and on `/ack`) and pause/resume.
//!
//! **Order of the checks**, as the sink's blank-event health probe assumes of Splunk (sinks.md
//! A1/A3; unverified on a real Splunk, see docs/sinks/splunk_hec.md): the token first, then
//! each envelope in turn: parse (6), index outside the token's list (7), missing `event` (12),
//! blank `event` (13), nested or non-string `fields` (15). So `{"event":"","index":"x"}`
//! answers 7 for a forbidden index and 13 otherwise, and indexes nothing. `/health` ignores
//! the token, like Splunk's.
//!
//! **Paused** means every route answers `503 {"text":"Server is busy","code":9}`: the listener
//! stays up so a test can resume it on the same port.
//!
//! Events are recorded ("indexed") only when the whole request succeeded, with two
//! exceptions that model what a real HEC may do: a 400 with `invalid-event-number` k indexes
//! events before k when [`HecReceiverConfig::index_prefix_on_invalid`] is on (default, as
//! sinks.md A3 suggests), and a truncated-200 fault indexes the request although the client
//! cannot tell (so a careful client resends and duplicates).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::server::lock;
use super::{gz, json};

/// One token the receiver accepts.
#[derive(Clone, Debug)]
pub struct HecToken {
    /// The token value.
    pub token: String,
    /// Indexer acknowledgement on (`useACK`).
    pub use_ack: bool,
    /// Disabled tokens answer 403 code 1.
    pub disabled: bool,
    /// Indexes an event may name (`None`: any).
    pub allowed_indexes: Option<Vec<String>>,
}

impl HecToken {
    /// An enabled token without acknowledgement.
    pub fn new(token: impl Into<String>) -> HecToken {
        HecToken {
            token: token.into(),
            use_ack: false,
            disabled: false,
            allowed_indexes: None,
        }
    }
}

/// Random faults of `/event` requests: fractions (adding up to at most 1) and latency.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HecFaults {
    /// 503 `{"text":"Server is busy","code":9}`.
    pub busy_503: f64,
    /// 500 `{"text":"Internal server error","code":8}`.
    pub error_500: f64,
    /// 429 with `Retry-After: 1`.
    pub too_many_429: f64,
    /// 502 with an HTML page (a proxy in front of HEC).
    pub html_502: f64,
    /// 200 whose body is cut (the events ARE indexed).
    pub truncated_200: f64,
    /// Latency added to every `/event` request, milliseconds.
    pub latency_ms: u64,
}

/// A scripted fault for the next `/event` request(s), served in order before random ones.
#[derive(Clone, Debug)]
pub enum HecFault {
    /// 503 code 9.
    Busy503,
    /// 500 code 8.
    Error500,
    /// 429 with `Retry-After`.
    TooMany429 {
        /// Header value, seconds.
        retry_after_secs: Option<u64>,
    },
    /// 502 HTML.
    Html502,
    /// 200 with a cut body, events indexed.
    Truncated200,
    /// Sleep, then serve normally.
    Delay(Duration),
    /// Answer exactly this (status, body); nothing is indexed.
    Reply(u16, String),
    /// Index the first `k` events, then answer 400 with `code` and `invalid-event-number` k,
    /// as a HEC that stops at a bad event would (a request of `k` events or fewer is served
    /// normally). Indexes nothing when `index_prefix_on_invalid` is off.
    BadEvent {
        /// The event named.
        k: usize,
        /// The code answered (6, 12, 13 or 15).
        code: i64,
    },
    /// HEC restarted: every channel's ack ids are forgotten and count from 0 again (so ids
    /// already handed out are handed out again); then serve normally.
    RestartAcks,
}

impl HecFaults {
    /// Parses `simulate --hec-faults`: comma-separated `key=value` with fractions `503`,
    /// `500`, `429`, `502`, `truncate` and `latency_ms`; `ack_delay_ms` and `ack_loss` are
    /// returned apart (they shape acknowledgement, not `/event` answers).
    pub fn parse(s: &str) -> Result<(HecFaults, HecAckKnobs), String> {
        let mut f = HecFaults::default();
        let mut k = HecAckKnobs::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, v) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected key=value"))?;
            let frac = |v: &str| -> Result<f64, String> {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| (0.0..=1.0).contains(x))
                    .ok_or_else(|| format!("`{part}`: expected a fraction between 0 and 1"))
            };
            let ms = |v: &str| -> Result<u64, String> {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("`{part}`: expected whole milliseconds"))
            };
            match key.trim() {
                "503" => f.busy_503 = frac(v)?,
                "500" => f.error_500 = frac(v)?,
                "429" => f.too_many_429 = frac(v)?,
                "502" => f.html_502 = frac(v)?,
                "truncate" => f.truncated_200 = frac(v)?,
                "latency_ms" => f.latency_ms = ms(v)?,
                "ack_delay_ms" => k.ack_delay = Some(Duration::from_millis(ms(v)?)),
                "ack_loss" => k.ack_loss = Some(frac(v)?),
                o => {
                    return Err(format!(
                        "unknown fault `{o}`: use 503, 500, 429, 502, truncate, latency_ms, \
                         ack_delay_ms, ack_loss"
                    ));
                }
            }
        }
        let total = f.busy_503 + f.error_500 + f.too_many_429 + f.html_502 + f.truncated_200;
        if total > 1.0 {
            return Err(format!("the fractions add up to {total}, more than 1"));
        }
        Ok((f, k))
    }
}

/// Acknowledgement settings `--hec-faults` may change (`None`: keep the default).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HecAckKnobs {
    /// [`HecReceiverConfig::ack_delay`].
    pub ack_delay: Option<Duration>,
    /// [`HecReceiverConfig::ack_loss`].
    pub ack_loss: Option<f64>,
}

/// What shapes a receiver.
#[derive(Clone, Debug)]
pub struct HecReceiverConfig {
    /// Accepted tokens (default one: `hec-token`, no acknowledgement).
    pub tokens: Vec<HecToken>,
    /// Largest uncompressed body, bytes (default 1 000 000, as Splunk Cloud's load balancers).
    pub max_content_length: usize,
    /// How long after a request its `ackId` turns true (default 200 ms).
    pub ack_delay: Duration,
    /// Fraction of acknowledged requests whose id never turns true (default 0).
    pub ack_loss: f64,
    /// On a 400 with `invalid-event-number` k, index events before k (default true).
    pub index_prefix_on_invalid: bool,
    /// Random faults (default none).
    pub faults: HecFaults,
    /// Seed of the random faults (default 1).
    pub seed: u64,
    /// How many received envelopes [`HecReceiver::events`] keeps (default 10 000).
    pub keep_events: usize,
}

impl Default for HecReceiverConfig {
    fn default() -> Self {
        HecReceiverConfig {
            tokens: vec![HecToken::new("hec-token")],
            max_content_length: 1_000_000,
            ack_delay: Duration::from_millis(200),
            ack_loss: 0.0,
            index_prefix_on_invalid: true,
            faults: HecFaults::default(),
            seed: 1,
            keep_events: 10_000,
        }
    }
}

/// One indexed event as received.
#[derive(Clone, Debug)]
pub struct ReceivedEvent {
    /// The envelope's `time`.
    pub time: Option<Value>,
    /// `host`, `source`, `sourcetype`, `index` as sent.
    pub host: Option<String>,
    /// Source.
    pub source: Option<String>,
    /// Sourcetype.
    pub sourcetype: Option<String>,
    /// Index.
    pub index: Option<String>,
    /// The `event` value.
    pub event: Value,
    /// The indexed fields.
    pub fields: serde_json::Map<String, Value>,
}

/// Counters.
#[derive(Clone, Debug, Default)]
pub struct HecStats {
    /// Every request, all routes.
    pub requests: u64,
    /// `/event` requests.
    pub event_requests: u64,
    /// `/ack` requests.
    pub ack_requests: u64,
    /// `/health` requests.
    pub health_requests: u64,
    /// Request body bytes as received (compressed when gzip).
    pub bytes_wire: u64,
    /// Request body bytes after decompression.
    pub bytes_uncompressed: u64,
    /// Events indexed (duplicates included).
    pub events_indexed: u64,
    /// `/event` requests whose first envelope has a blank `event`: the sink's health probes
    /// (answered 13, or an auth or index error), not data.
    pub probe_requests: u64,
    /// Answers to `/event` by status.
    pub statuses: BTreeMap<u16, u64>,
}

#[derive(Default)]
struct Channel {
    next: u64,
    /// id -> (answered at, lost); true once `ack_delay` (as configured when asked) has passed
    pending: HashMap<u64, (Instant, bool)>,
}

struct St {
    cfg: HecReceiverConfig,
    rng: ChaCha8Rng,
    scripted: VecDeque<HecFault>,
    ack_scripted: VecDeque<HecFault>,
    ack_fault: Option<HecFault>,
    /// When each `/event` request arrived (the first `keep_events`).
    arrivals: Vec<Instant>,
    paused: bool,
    queues_full: bool,
    /// foldhash rather than SipHash: one lookup and usually one insert per indexed event.
    counts: HashMap<String, u32, foldhash::fast::RandomState>,
    events: Vec<ReceivedEvent>,
    stats: HecStats,
    channels: HashMap<String, Channel>,
}

type Shared = Arc<Mutex<St>>;

/// A running receiver.
pub struct HecReceiver {
    shared: Shared,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

fn reply(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body)).into_response()
}

fn hec(status: u16, text: &str, code: i64) -> Response {
    reply(status, json!({ "text": text, "code": code }))
}

impl HecReceiver {
    /// Binds `addr` (tests: `127.0.0.1:0`) and serves in a spawned task.
    pub async fn start(cfg: HecReceiverConfig, addr: SocketAddr) -> std::io::Result<HecReceiver> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared: Shared = Arc::new(Mutex::new(St {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            cfg,
            scripted: VecDeque::new(),
            ack_scripted: VecDeque::new(),
            ack_fault: None,
            arrivals: Vec::new(),
            paused: false,
            queues_full: false,
            counts: HashMap::default(),
            events: Vec::new(),
            stats: HecStats::default(),
            channels: HashMap::new(),
        }));
        let app = Router::new()
            .route("/services/collector", post(event))
            .route("/services/collector/event", post(event))
            .route("/services/collector/event/1.0", post(event))
            .route("/services/collector/ack", post(ack))
            .route("/services/collector/health", get(health))
            .route("/services/collector/health/1.0", get(health))
            .layer(DefaultBodyLimit::disable())
            .with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(HecReceiver {
            shared,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the sink's `url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queue scripted faults for the next `/event` requests.
    pub fn script(&self, faults: impl IntoIterator<Item = HecFault>) {
        lock(&self.shared).scripted.extend(faults);
    }

    /// Queue scripted answers for the next `/ack` requests (`Reply`, `Busy503`, `Error500`,
    /// `Html502`, `TooMany429`; others serve normally), before [`HecReceiver::set_ack_fault`].
    pub fn script_ack(&self, faults: impl IntoIterator<Item = HecFault>) {
        lock(&self.shared).ack_scripted.extend(faults);
    }

    /// Answer every `/ack` request with this fault until called with `None` (a proxy that
    /// refuses the path, an ack service that is down).
    pub fn set_ack_fault(&self, fault: Option<HecFault>) {
        lock(&self.shared).ack_fault = fault;
    }

    /// When each `/event` request arrived, in order (the first `keep_events`).
    pub fn arrivals(&self) -> Vec<Instant> {
        lock(&self.shared).arrivals.clone()
    }

    /// Replace the random faults.
    pub fn set_faults(&self, faults: HecFaults) {
        lock(&self.shared).cfg.faults = faults;
    }

    /// Answer 503 code 9 on every route until [`HecReceiver::resume`].
    pub fn pause(&self) {
        lock(&self.shared).paused = true;
    }

    /// Serve normally again.
    pub fn resume(&self) {
        lock(&self.shared).paused = false;
    }

    /// `/health` answers 503 code 18 ("queues full") while on.
    pub fn set_queues_full(&self, on: bool) {
        lock(&self.shared).queues_full = on;
    }

    /// Disable or enable a token.
    pub fn set_token_disabled(&self, token: &str, disabled: bool) {
        for t in &mut lock(&self.shared).cfg.tokens {
            if t.token == token {
                t.disabled = disabled;
            }
        }
    }

    /// Turn indexer acknowledgement of a token on or off.
    pub fn set_token_ack(&self, token: &str, use_ack: bool) {
        for t in &mut lock(&self.shared).cfg.tokens {
            if t.token == token {
                t.use_ack = use_ack;
            }
        }
    }

    /// Change `ack_delay`, for ids already handed out too.
    pub fn set_ack_delay(&self, delay: Duration) {
        lock(&self.shared).cfg.ack_delay = delay;
    }

    /// Change the fraction of lost acknowledgements.
    pub fn set_ack_loss(&self, fraction: f64) {
        lock(&self.shared).cfg.ack_loss = fraction;
    }

    /// How often each `fields.request_id` was indexed.
    pub fn counts(&self) -> HashMap<String, u32> {
        let st = lock(&self.shared);
        st.counts.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// How often one request id was indexed.
    pub fn count(&self, request_id: &str) -> u32 {
        lock(&self.shared)
            .counts
            .get(request_id)
            .copied()
            .unwrap_or(0)
    }

    /// Request ids indexed more than once.
    pub fn duplicates(&self) -> usize {
        lock(&self.shared)
            .counts
            .values()
            .filter(|&&n| n > 1)
            .count()
    }

    /// The first `keep_events` indexed envelopes.
    pub fn events(&self) -> Vec<ReceivedEvent> {
        lock(&self.shared).events.clone()
    }

    /// Counters.
    pub fn stats(&self) -> HecStats {
        lock(&self.shared).stats.clone()
    }

    /// Stop serving (5 s grace, then abort).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for HecReceiver {
    fn drop(&mut self) {
        self.stop.take();
    }
}

enum Auth {
    Ok(HecToken),
    Denied(Response),
}

fn authenticate(st: &St, headers: &HeaderMap) -> Auth {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Auth::Denied(hec(401, "Token is required", 2));
    };
    let Some(token) = value.strip_prefix("Splunk ") else {
        return Auth::Denied(hec(401, "Invalid authorization", 3));
    };
    match st.cfg.tokens.iter().find(|t| t.token == token.trim()) {
        None => Auth::Denied(hec(403, "Invalid token", 4)),
        Some(t) if t.disabled => Auth::Denied(hec(403, "Token disabled", 1)),
        Some(t) => Auth::Ok(t.clone()),
    }
}

fn channel_of(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    if let Some(c) = headers
        .get("x-splunk-request-channel")
        .and_then(|v| v.to_str().ok())
    {
        return Some(c.to_string());
    }
    uri.query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("channel="))
        .map(str::to_string)
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// One envelope, borrowed from the body: only what the checks need is looked at, and the rest
/// is turned into owned values only for the events kept for [`HecReceiver::events`].
#[derive(Deserialize)]
struct Env<'a> {
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    /// Checked by [`check_fields`]: must be an object (else the envelope is malformed, 6) of
    /// strings and string arrays (else 15).
    #[serde(borrow)]
    fields: Option<&'a RawValue>,
    /// A `Value` as before: cheap for the usual number, and it refuses what a `Value` does.
    time: Option<Value>,
    #[serde(borrow)]
    host: Option<Cow<'a, str>>,
    #[serde(borrow)]
    source: Option<Cow<'a, str>>,
    #[serde(borrow)]
    sourcetype: Option<Cow<'a, str>>,
    #[serde(borrow)]
    index: Option<Cow<'a, str>>,
}

/// What the receiver needs of an envelope's `fields`.
struct Fields<'a> {
    /// Every value is a string or an array of strings (nothing nested).
    valid: bool,
    /// `request_id`, when it is a string.
    request_id: Option<Cow<'a, str>>,
}

/// Reads `fields` (`None`: absent or null) without building a map. `Err` if it is not an
/// object: the envelope is then malformed, as when it was parsed into a map.
fn check_fields(raw: Option<&RawValue>) -> Result<Fields<'_>, ()> {
    let Some(raw) = raw else {
        return Ok(Fields {
            valid: true,
            request_id: None,
        });
    };
    let f: Fields<'_> = serde_json::from_str(raw.get()).map_err(|_| ())?;
    if f.valid {
        return Ok(f);
    }
    // A repeated key counts by its last value, as in the map this replaced: settle the rare
    // invalid case the old way.
    let map: serde_json::Map<String, Value> = serde_json::from_str(raw.get()).map_err(|_| ())?;
    Ok(Fields {
        valid: map.values().all(|v| match v {
            Value::String(_) => true,
            Value::Array(a) => a.iter().all(Value::is_string),
            _ => false,
        }),
        request_id: map
            .get("request_id")
            .and_then(Value::as_str)
            .map(|s| Cow::Owned(s.to_string())),
    })
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Fields<'de>, A::Error> {
                let mut f = Fields {
                    valid: true,
                    request_id: None,
                };
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let v: FieldValue<'de> = map.next_value()?;
                    f.valid &= v.valid;
                    if key == "request_id" {
                        f.request_id = v.text;
                    }
                }
                Ok(f)
            }
        }
        d.deserialize_map(V)
    }
}

/// One indexed field's value: valid if a string or an array of strings; `text` if a string.
struct FieldValue<'a> {
    valid: bool,
    text: Option<Cow<'a, str>>,
}

impl<'de> Deserialize<'de> for FieldValue<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = FieldValue<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<FieldValue<'de>, E> {
                Ok(FieldValue {
                    valid: true,
                    text: Some(Cow::Borrowed(v)),
                })
            }
            fn visit_str<E>(self, v: &str) -> Result<FieldValue<'de>, E> {
                Ok(FieldValue {
                    valid: true,
                    text: Some(Cow::Owned(v.to_string())),
                })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<FieldValue<'de>, A::Error> {
                let mut valid = true;
                while let Some(e) = seq.next_element::<FieldValue<'de>>()? {
                    // A string inside is fine; an array inside is nesting.
                    valid &= e.text.is_some();
                }
                Ok(FieldValue { valid, text: None })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<FieldValue<'de>, A::Error> {
                while map
                    .next_entry::<json::AnyValue, json::AnyValue>()?
                    .is_some()
                {}
                Ok(FieldValue::INVALID)
            }
            fn visit_bool<E>(self, _: bool) -> Result<FieldValue<'de>, E> {
                Ok(FieldValue::INVALID)
            }
            fn visit_i64<E>(self, _: i64) -> Result<FieldValue<'de>, E> {
                Ok(FieldValue::INVALID)
            }
            fn visit_u64<E>(self, _: u64) -> Result<FieldValue<'de>, E> {
                Ok(FieldValue::INVALID)
            }
            fn visit_f64<E>(self, _: f64) -> Result<FieldValue<'de>, E> {
                Ok(FieldValue::INVALID)
            }
            fn visit_unit<E>(self) -> Result<FieldValue<'de>, E> {
                Ok(FieldValue::INVALID)
            }
        }
        d.deserialize_any(V)
    }
}

impl FieldValue<'_> {
    const INVALID: FieldValue<'static> = FieldValue {
        valid: false,
        text: None,
    };
}

enum Fate {
    Normal,
    Truncate,
}

async fn event(
    State(shared): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (latency, fault) = {
        let mut st = lock(&shared);
        st.stats.requests += 1;
        st.stats.event_requests += 1;
        st.stats.bytes_wire += body.len() as u64;
        if st.arrivals.len() < st.cfg.keep_events {
            st.arrivals.push(Instant::now());
        }
        if is_probe(&headers, &body) {
            st.stats.probe_requests += 1;
        }
        let fault = match st.scripted.pop_front() {
            Some(f) => Some(f),
            None => {
                let f = st.cfg.faults.clone();
                let x: f64 = st.rng.random();
                let mut acc = 0.0;
                let mut pick = None;
                for (p, fault) in [
                    (f.busy_503, HecFault::Busy503),
                    (f.error_500, HecFault::Error500),
                    (
                        f.too_many_429,
                        HecFault::TooMany429 {
                            retry_after_secs: Some(1),
                        },
                    ),
                    (f.html_502, HecFault::Html502),
                    (f.truncated_200, HecFault::Truncated200),
                ] {
                    acc += p;
                    if pick.is_none() && x < acc {
                        pick = Some(fault);
                    }
                }
                pick
            }
        };
        (st.cfg.faults.latency_ms, fault)
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if let Some(HecFault::Delay(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let resp = handle_event(&shared, &uri, &headers, &body, fault);
    lock(&shared)
        .stats
        .statuses
        .entry(resp.status().as_u16())
        .and_modify(|n| *n += 1)
        .or_insert(1);
    resp
}

/// Whether the first envelope of an uncompressed body has a blank `event` (the sink's health
/// probe), whatever the answer will be.
fn is_probe(headers: &HeaderMap, body: &[u8]) -> bool {
    if headers.contains_key(header::CONTENT_ENCODING) {
        return false;
    }
    serde_json::Deserializer::from_slice(body)
        .into_iter::<Env<'_>>()
        .next()
        .and_then(Result::ok)
        .and_then(|e| e.event)
        .is_some_and(|ev| ev.get() == "\"\"")
}

/// The canned answer of a fault that answers by itself (`None`: serve the request).
fn fault_reply(fault: &HecFault) -> Option<Response> {
    Some(match fault {
        HecFault::Busy503 => hec(503, "Server is busy", 9),
        HecFault::Error500 => hec(500, "Internal server error", 8),
        HecFault::TooMany429 { retry_after_secs } => {
            let mut r = hec(429, "HEC queue is at capacity", 26);
            if let Some(s) = retry_after_secs {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, s.to_string().parse().unwrap());
            }
            r
        }
        HecFault::Html502 => (
            StatusCode::BAD_GATEWAY,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response(),
        HecFault::Reply(status, text) => (
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            text.clone(),
        )
            .into_response(),
        HecFault::Truncated200
        | HecFault::Delay(_)
        | HecFault::BadEvent { .. }
        | HecFault::RestartAcks => return None,
    })
}

fn handle_event(
    shared: &Shared,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    fault: Option<HecFault>,
) -> Response {
    let (token, max_len) = {
        let st = lock(shared);
        if st.paused {
            return hec(503, "Server is busy", 9);
        }
        let token = match authenticate(&st, headers) {
            Auth::Ok(t) => t,
            Auth::Denied(r) => return r,
        };
        (token, st.cfg.max_content_length)
    };
    if let Some(r) = fault.as_ref().and_then(fault_reply) {
        return r;
    }
    let mut fate = Fate::Normal;
    let mut bad_at: Option<(usize, i64)> = None;
    match fault {
        Some(HecFault::Truncated200) => fate = Fate::Truncate,
        Some(HecFault::BadEvent { k, code }) => bad_at = Some((k, code)),
        Some(HecFault::RestartAcks) => lock(shared).channels.clear(),
        _ => {}
    }
    let gz = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let Ok(data) = gz::body(body, gz, max_len as u64 + 1) else {
        return hec(400, "Invalid data format", 6);
    };
    if data.len() > max_len {
        return hec(413, "Content too large", 27);
    }
    lock(shared).stats.bytes_uncompressed += data.len() as u64;
    if data.iter().all(u8::is_ascii_whitespace) {
        return hec(400, "No data", 5);
    }
    let channel = channel_of(headers, uri);
    if token.use_ack {
        match &channel {
            None => return hec(400, "Data channel is missing", 10),
            Some(c) if !is_guid(c) => return hec(400, "Invalid data channel", 11),
            _ => {}
        }
    }
    // Parse every envelope; stop at the first bad one. Per envelope the index is checked
    // before the event itself, so a blank event proves the token and the index were accepted.
    let mut good: Vec<(Env<'_>, Option<Cow<'_, str>>)> = Vec::new();
    let mut bad: Option<(i64, &str)> = None;
    for item in serde_json::Deserializer::from_slice(&data).into_iter::<Env<'_>>() {
        let (env, fields) = match item.map(|e| {
            let f = check_fields(e.fields);
            (e, f)
        }) {
            Ok((e, Ok(f))) => (e, f),
            _ => {
                bad = Some((6, "Invalid data format"));
                break;
            }
        };
        let blank = env.event.is_some_and(|ev| ev.get() == "\"\"");
        if let (Some(allowed), Some(i)) = (&token.allowed_indexes, &env.index)
            && !allowed.iter().any(|a| a == i)
        {
            bad = Some((7, "Incorrect index"));
            break;
        }
        let Some(ev) = env.event else {
            bad = Some((12, "Event field is required"));
            break;
        };
        if ev.get() == "null" {
            bad = Some((12, "Event field is required"));
            break;
        }
        if blank {
            bad = Some((13, "Event field cannot be blank"));
            break;
        }
        if !fields.valid {
            bad = Some((15, "Error in handling indexed fields"));
            break;
        }
        if let Some((k, code)) = bad_at
            && good.len() == k
        {
            bad = Some((code, "Invalid data format"));
            break;
        }
        good.push((env, fields.request_id));
    }
    let mut st = lock(shared);
    if let Some((code, text)) = bad {
        let k = good.len();
        if st.cfg.index_prefix_on_invalid {
            record(&mut st, good);
        }
        return reply(
            400,
            json!({ "text": text, "code": code, "invalid-event-number": k }),
        );
    }
    record(&mut st, good);
    let mut body = json!({ "text": "Success", "code": 0 });
    if token.use_ack {
        let lost = st.rng.random::<f64>() < st.cfg.ack_loss;
        let at = Instant::now();
        let ch = st.channels.entry(channel.unwrap_or_default()).or_default();
        let id = ch.next;
        ch.next += 1;
        ch.pending.insert(id, (at, lost));
        body["ackId"] = json!(id);
    }
    match fate {
        Fate::Normal => reply(200, body),
        Fate::Truncate => {
            let text = body.to_string();
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                text[..text.len() / 2].to_string(),
            )
                .into_response()
        }
    }
}

/// Indexes the envelopes, each with its `fields.request_id`.
fn record(st: &mut St, envs: Vec<(Env<'_>, Option<Cow<'_, str>>)>) {
    for (env, request_id) in envs {
        let id = request_id.as_deref().unwrap_or("");
        match st.counts.get_mut(id) {
            Some(n) => *n += 1,
            None => {
                st.counts.insert(id.to_string(), 1);
            }
        }
        st.stats.events_indexed += 1;
        if st.events.len() < st.cfg.keep_events {
            st.events.push(ReceivedEvent {
                time: env.time,
                host: env.host.map(Cow::into_owned),
                source: env.source.map(Cow::into_owned),
                sourcetype: env.sourcetype.map(Cow::into_owned),
                index: env.index.map(Cow::into_owned),
                event: parse_raw(env.event).unwrap_or(Value::Null),
                fields: parse_raw(env.fields).unwrap_or_default(),
            });
        }
    }
}

fn parse_raw<T: serde::de::DeserializeOwned>(raw: Option<&RawValue>) -> Option<T> {
    raw.and_then(|r| serde_json::from_str(r.get()).ok())
}

#[derive(Deserialize)]
struct AckQuery {
    acks: Vec<u64>,
}

async fn ack(State(shared): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut st = lock(&shared);
    st.stats.requests += 1;
    st.stats.ack_requests += 1;
    if st.paused {
        return hec(503, "Server is busy", 9);
    }
    let fault = st.ack_scripted.pop_front().or_else(|| st.ack_fault.clone());
    if let Some(r) = fault.as_ref().and_then(fault_reply) {
        return r;
    }
    let token = match authenticate(&st, &headers) {
        Auth::Ok(t) => t,
        Auth::Denied(r) => return r,
    };
    if !token.use_ack {
        return hec(400, "ACK is disabled", 14);
    }
    let Some(channel) = channel_of(&headers, &uri) else {
        return hec(400, "Data channel is missing", 10);
    };
    if !is_guid(&channel) {
        return hec(400, "Invalid data channel", 11);
    }
    let Ok(q) = serde_json::from_slice::<AckQuery>(&body) else {
        return hec(400, "Invalid data format", 6);
    };
    let now = Instant::now();
    let delay = st.cfg.ack_delay;
    let ch = st.channels.entry(channel).or_default();
    let mut out = serde_json::Map::new();
    for id in q.acks {
        let done = matches!(ch.pending.get(&id), Some((at, false)) if *at + delay <= now);
        if done {
            ch.pending.remove(&id);
        }
        out.insert(id.to_string(), Value::Bool(done));
    }
    reply(200, json!({ "acks": out }))
}

async fn health(State(shared): State<Shared>) -> Response {
    let mut st = lock(&shared);
    st.stats.requests += 1;
    st.stats.health_requests += 1;
    if st.paused {
        return hec(503, "Server is busy", 9);
    }
    if st.queues_full {
        return hec(503, "HEC is unhealthy, queues are full", 18);
    }
    // Splunk ignores the token here (sinks.md A1): so must a faithful model, or a test of the
    // sink's health probe would pass against the model and fail against Splunk.
    hec(200, "HEC is healthy", 17)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fields` read by the visitor against the map it replaced (validity and `request_id`),
    /// repeated keys and non-objects included.
    #[test]
    fn fields_check_like_a_map() {
        for raw in [
            "null",
            "{}",
            r#"{"request_id":"a"}"#,
            r#"{"request_id":"a\"b\u0041"}"#,
            r#"{"request_id":5}"#,
            r#"{"request_id":["a"]}"#,
            r#"{"a":["x","y"],"request_id":"r"}"#,
            r#"{"a":[]}"#,
            r#"{"a":[["x"]]}"#,
            r#"{"a":[1]}"#,
            r#"{"a":[null]}"#,
            r#"{"a":["x",{"b":1}]}"#,
            r#"{"a":{"b":"c"}}"#,
            r#"{"a":1}"#,
            r#"{"a":null}"#,
            r#"{"a":true}"#,
            r#"{"a":1,"a":"x"}"#,
            r#"{"a":"x","a":1}"#,
            r#"{"request_id":"a","request_id":"b"}"#,
            r#"{"request_id":"a","request_id":1}"#,
            r#"{"request_id":1,"request_id":"c","x":{}}"#,
            r#"{"a":{"b":1e999}}"#,
            r#"{"a":[1e999]}"#,
            r#"{"a":"x","b":-1e999}"#,
            "[]",
            r#""x""#,
            "5",
        ] {
            let old = serde_json::from_str::<Option<serde_json::Map<String, Value>>>(raw)
                .map(|m| match m {
                    None => (true, None),
                    Some(m) => (
                        m.values().all(|v| match v {
                            Value::String(_) => true,
                            Value::Array(a) => a.iter().all(Value::is_string),
                            _ => false,
                        }),
                        m.get("request_id")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                    ),
                })
                .map_err(|_| ());
            let parsed: Option<&RawValue> = serde_json::from_str(raw).unwrap();
            let new = check_fields(parsed).map(|f| (f.valid, f.request_id.map(Cow::into_owned)));
            assert_eq!(new, old, "{raw}");
        }
    }

    /// A malformed `fields` fails its envelope as unparseable (6) before the index (7) is
    /// looked at, and kept events hold what was sent.
    #[tokio::test]
    async fn envelopes_are_checked_in_order_and_kept_as_sent() {
        let rx = HecReceiver::start(
            HecReceiverConfig {
                tokens: vec![HecToken {
                    allowed_indexes: Some(vec!["main".into(), "m\"x".into()]),
                    ..HecToken::new("t")
                }],
                ..HecReceiverConfig::default()
            },
            ([127, 0, 0, 1], 0).into(),
        )
        .await
        .unwrap();
        let post = |body: &'static str| {
            let url = format!("{}/services/collector/event", rx.url());
            async move {
                let resp = reqwest::Client::new()
                    .post(url)
                    .header("Authorization", "Splunk t")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                (status, resp.json::<Value>().await.unwrap())
            }
        };
        for (body, code, k) in [
            (
                r#"{"event":1} {"event":1,"index":"other","fields":5}"#,
                6,
                1,
            ),
            (r#"{"event":1,"index":"other","fields":{"a":1}}"#, 7, 0),
            (r#"{"event":"","fields":{"a":1}}"#, 13, 0),
            (r#"{"fields":{"a":1}}"#, 12, 0),
            (r#"{"event":1,"fields":{"a":[1]}}"#, 15, 0),
            (r#"{"event":1,"host":5}"#, 6, 0),
        ] {
            let (status, reply) = post(body).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(reply["code"], code, "{body}");
            assert_eq!(reply["invalid-event-number"], k, "{body}");
        }
        let (status, _) = post(
            r#"{"time":1.5,"host":"h\"1","source":"s","sourcetype":"st","index":"m\"x","event":{"a":[1,"\u00e9"]},"fields":{"request_id":"r\n1","tag":["x"]}}
            {"time":null,"event":"plain"}"#,
        )
        .await;
        assert_eq!(status, 200);
        let got = rx.events();
        // The first request indexed the prefix before its bad envelope.
        assert_eq!(got.len(), 3);
        let e = &got[1];
        assert_eq!(e.time, Some(serde_json::json!(1.5)));
        assert_eq!(e.host.as_deref(), Some("h\"1"));
        assert_eq!(e.index.as_deref(), Some("m\"x"));
        assert_eq!(e.event, serde_json::json!({"a": [1, "é"]}));
        assert_eq!(e.fields["request_id"], "r\n1");
        assert_eq!(e.fields["tag"], serde_json::json!(["x"]));
        assert_eq!(got[2].time, None);
        assert_eq!(got[2].event, "plain");
        assert_eq!(rx.count("r\n1"), 1);
        assert_eq!(rx.count(""), 2);
    }
}
