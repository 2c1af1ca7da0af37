//! A test receiver that behaves like an Elasticsearch / OpenSearch cluster's `_bulk` API, as
//! `sinks.md` part B describes it: version document on `GET /`, Basic/ApiKey/Bearer auth with
//! ES-shaped 401s, gzip bodies, strict NDJSON (a missing final newline or a bad action line is a
//! top-level 400), `create` vs `index` semantics (409 `version_conflict_engine_exception` on an
//! existing `_id`), data streams (`logs-*-*`: `create` only, `@timestamp` required),
//! `filter_path`, and fault injection: per-item 429 and mapping errors (random or scripted per
//! `_id`), index-level 404/403 blocks, top-level 429/503/413, 413 above a byte limit
//! (uncompressed, like `http.max_content_length`).
//!
//! Pause: while paused every request (including `GET /`) answers 503
//! `master_not_discovered_exception`, as a cluster without an elected master does; nothing is
//! stored, so a sink must retry.
//!
//! Documents are kept per index and `_id` (sources only with `keep_documents`, so a long
//! benchmark stays in memory), with counters for what tests and benchmarks check.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Which product and version `GET /` claims to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EsFlavour {
    /// Elasticsearch 7.17.
    Es7,
    /// Elasticsearch 8.15 (default).
    #[default]
    Es8,
    /// Elasticsearch 9.1.
    Es9,
    /// OpenSearch 2.17 (`version.distribution = "opensearch"`).
    OpenSearch2,
}

impl std::str::FromStr for EsFlavour {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "es7" => Ok(EsFlavour::Es7),
            "es8" => Ok(EsFlavour::Es8),
            "es9" => Ok(EsFlavour::Es9),
            "opensearch2" => Ok(EsFlavour::OpenSearch2),
            o => Err(format!(
                "unknown flavour `{o}`: use es7, es8, es9 or opensearch2"
            )),
        }
    }
}

/// What credentials the receiver accepts.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum EsReceiverAuth {
    /// Anything (security disabled).
    #[default]
    None,
    /// `Authorization: Basic base64(username:password)`.
    Basic {
        /// User.
        username: String,
        /// Password (a test credential).
        password: String,
    },
    /// `Authorization: ApiKey <key>`.
    ApiKey(String),
    /// `Authorization: Bearer <token>`.
    Bearer(String),
}

/// Random faults, as fractions of requests (top-level) or documents (items).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EsFaults {
    /// Fraction of documents answered item 429 `es_rejected_execution_exception`.
    pub item_429: f64,
    /// Fraction of documents answered item 400 `document_parsing_exception`.
    pub item_mapping_error: f64,
    /// Fraction of `_bulk` requests answered 429 as a whole.
    pub top_429: f64,
    /// Fraction of `_bulk` requests answered 503 as a whole.
    pub top_503: f64,
    /// `Retry-After` seconds sent with top-level 429/503 (`None`: omitted).
    pub retry_after_secs: Option<u64>,
}

impl EsFaults {
    /// Parses `item_429=0.1,item_mapping=0.01,429=0.02,503=0.01,retry_after=1`.
    pub fn parse(s: &str) -> Result<EsFaults, String> {
        let mut f = EsFaults::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected key=value"))?;
            let num = |v: &str| -> Result<f64, String> {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| (0.0..=1.0).contains(x))
                    .ok_or_else(|| format!("`{part}`: expected a fraction between 0 and 1"))
            };
            match k {
                "item_429" => f.item_429 = num(v)?,
                "item_mapping" => f.item_mapping_error = num(v)?,
                "429" => f.top_429 = num(v)?,
                "503" => f.top_503 = num(v)?,
                "retry_after" => {
                    f.retry_after_secs = Some(
                        v.parse()
                            .map_err(|_| format!("`{part}`: expected whole seconds"))?,
                    )
                }
                o => {
                    return Err(format!(
                        "unknown fault `{o}`: use item_429, item_mapping, 429, 503, retry_after"
                    ));
                }
            }
        }
        Ok(f)
    }
}

/// Receiver settings.
#[derive(Clone, Debug)]
pub struct EsReceiverConfig {
    /// `GET /` answer (default ES 8).
    pub flavour: EsFlavour,
    /// Accepted credentials (default none).
    pub auth: EsReceiverAuth,
    /// Largest uncompressed `_bulk` body; larger answers 413 (default 100 MB, ES's default).
    pub max_content_length: usize,
    /// Random faults (default none).
    pub faults: EsFaults,
    /// Seed of the random faults (default 1).
    pub seed: u64,
    /// Keep document sources and create attempts per `_id` (default true). Off, only the ids
    /// (enough for 409s) and the counters are kept.
    pub keep_documents: bool,
}

impl Default for EsReceiverConfig {
    fn default() -> Self {
        EsReceiverConfig {
            flavour: EsFlavour::default(),
            auth: EsReceiverAuth::None,
            max_content_length: 100 * 1024 * 1024,
            faults: EsFaults::default(),
            seed: 1,
            keep_documents: true,
        }
    }
}

/// A scripted per-document fault, served to the next create/index of that `_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemFault {
    /// Item 429 `es_rejected_execution_exception`.
    TooManyRequests,
    /// Item 503 `unavailable_shards_exception`.
    Unavailable,
    /// Item 400 `document_parsing_exception`.
    MappingError,
}

/// A scripted whole-request fault, served to the next `_bulk` requests in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopFault {
    /// 429 `es_rejected_execution_exception` (with `Retry-After` if configured).
    TooManyRequests,
    /// 503 `unavailable_shards_exception`.
    Unavailable,
    /// 413 with an empty body.
    TooLarge,
    /// 401 `security_exception` (as after a revoked key).
    Unauthorized,
    /// 200 `{"acknowledged":true}`: a success status without `items`, as a misbehaving proxy
    /// sends; nothing is stored.
    BadReply,
}

/// Why an index cannot be written (every item to it fails).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexBlock {
    /// 404 `index_not_found_exception` (auto-create disabled).
    NotFound,
    /// 403 `security_exception` (no privilege on it).
    Forbidden,
    /// 403 `cluster_block_exception` (read-only after the flood-stage watermark).
    ReadOnly,
}

/// Counters of everything received.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EsStats {
    /// HTTP requests of any kind.
    pub requests: u64,
    /// `_bulk` requests.
    pub bulk_requests: u64,
    /// `_bulk` body bytes as received (compressed when gzipped).
    pub bytes_wire: u64,
    /// `_bulk` body bytes after decompression.
    pub bytes_uncompressed: u64,
    /// Bulk items answered, by item status.
    pub items_by_status: BTreeMap<u16, u64>,
    /// `_bulk` requests answered, by top-level status.
    pub bulk_by_status: BTreeMap<u16, u64>,
}

#[derive(Default)]
struct Store {
    /// index → `_id` → source (None without `keep_documents`).
    docs: HashMap<String, HashMap<String, Option<String>>>,
    /// `_id` → create attempts (only with `keep_documents`).
    attempts: HashMap<String, u32>,
    stats: EsStats,
    paused: bool,
    faults: EsFaults,
    item_script: HashMap<String, VecDeque<ItemFault>>,
    top_script: VecDeque<TopFault>,
    blocked: HashMap<String, IndexBlock>,
    auto_id: u64,
}

struct Shared {
    cfg: EsReceiverConfig,
    state: Mutex<Store>,
    rng: Mutex<rand_chacha::ChaCha8Rng>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running receiver.
pub struct EsReceiver {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl EsReceiver {
    /// Binds `addr` (tests use `127.0.0.1:0`) and serves in a spawned task.
    pub async fn start(cfg: EsReceiverConfig, addr: SocketAddr) -> std::io::Result<EsReceiver> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            rng: Mutex::new(rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed)),
            state: Mutex::new(Store {
                faults: cfg.faults.clone(),
                ..Store::default()
            }),
            cfg,
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(EsReceiver {
            shared,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the sink's `url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request answers 503 until [`EsReceiver::resume`].
    pub fn pause(&self) {
        self.shared.lock().paused = true;
    }

    /// Ends a pause.
    pub fn resume(&self) {
        self.shared.lock().paused = false;
    }

    /// Replaces the random faults.
    pub fn set_faults(&self, faults: EsFaults) {
        self.shared.lock().faults = faults;
    }

    /// Queues faults for the next writes of document `id`, one per write.
    pub fn script_item(&self, id: &str, faults: impl IntoIterator<Item = ItemFault>) {
        self.shared
            .lock()
            .item_script
            .entry(id.to_string())
            .or_default()
            .extend(faults);
    }

    /// Queues whole-request faults for the next `_bulk` requests.
    pub fn script_top(&self, faults: impl IntoIterator<Item = TopFault>) {
        self.shared.lock().top_script.extend(faults);
    }

    /// Makes every write to `index` fail with `block` (until [`EsReceiver::unblock_index`]).
    pub fn block_index(&self, index: &str, block: IndexBlock) {
        self.shared.lock().blocked.insert(index.to_string(), block);
    }

    /// Lifts a block.
    pub fn unblock_index(&self, index: &str) {
        self.shared.lock().blocked.remove(index);
    }

    /// The counters so far.
    pub fn stats(&self) -> EsStats {
        self.shared.lock().stats.clone()
    }

    /// Stored `_id`s with how many indices hold each (1 everywhere = exactly once).
    pub fn id_counts(&self) -> HashMap<String, usize> {
        let st = self.shared.lock();
        let mut out: HashMap<String, usize> = HashMap::new();
        for docs in st.docs.values() {
            for id in docs.keys() {
                *out.entry(id.clone()).or_insert(0) += 1;
            }
        }
        out
    }

    /// Number of stored documents.
    pub fn doc_count(&self) -> usize {
        self.shared.lock().docs.values().map(HashMap::len).sum()
    }

    /// The indices with their document counts.
    pub fn indices(&self) -> BTreeMap<String, usize> {
        self.shared
            .lock()
            .docs
            .iter()
            .map(|(k, v)| (k.clone(), v.len()))
            .collect()
    }

    /// The stored source of `index`/`id` (with `keep_documents`).
    pub fn document(&self, index: &str, id: &str) -> Option<String> {
        self.shared.lock().docs.get(index)?.get(id)?.clone()
    }

    /// How many `create` actions named `id` (with `keep_documents`).
    pub fn create_attempts(&self, id: &str) -> u32 {
        self.shared.lock().attempts.get(id).copied().unwrap_or(0)
    }

    /// Stops serving (in-flight requests get 5 s).
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

impl Drop for EsReceiver {
    fn drop(&mut self) {
        self.stop.take();
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/_bulk", post(bulk_root).put(bulk_root))
        .route("/{index}/_bulk", post(bulk_index).put(bulk_index))
        .fallback(|uri: Uri| async move {
            es_error(
                StatusCode::NOT_FOUND,
                "no_handler_found_exception",
                &format!("no handler found for uri [{}]", uri.path()),
            )
        })
        .layer(DefaultBodyLimit::max(1 << 30))
        .with_state(shared)
}

/// `{"error":{"root_cause":[..],"type","reason"},"status"}`: the shape of every ES error.
fn es_error(status: StatusCode, kind: &str, reason: &str) -> Response {
    let err = json!({"type": kind, "reason": reason});
    let body = json!({"error": {"root_cause": [err.clone()], "type": kind, "reason": reason}, "status": status.as_u16()});
    (status, axum::Json(body)).into_response()
}

/// Pause and authentication, common to every route.
fn gate(s: &Shared, headers: &HeaderMap, path: &str) -> Option<Response> {
    let paused = {
        let mut st = s.lock();
        st.stats.requests += 1;
        st.paused
    };
    if paused {
        return Some(es_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "master_not_discovered_exception",
            "paused by the test receiver",
        ));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let ok = match &s.cfg.auth {
        EsReceiverAuth::None => true,
        EsReceiverAuth::Basic { username, password } => {
            given
                == Some(&format!(
                    "Basic {}",
                    base64(&format!("{username}:{password}"))
                ))
        }
        EsReceiverAuth::ApiKey(k) => given == Some(&format!("ApiKey {k}")),
        EsReceiverAuth::Bearer(t) => given == Some(&format!("Bearer {t}")),
    };
    if ok {
        return None;
    }
    let reason = match given {
        None => format!("missing authentication credentials for REST request [{path}]"),
        Some(_) => {
            format!("unable to authenticate with provided credentials for REST request [{path}]")
        }
    };
    let mut resp = es_error(StatusCode::UNAUTHORIZED, "security_exception", &reason);
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"security\", charset=\"UTF-8\", ApiKey"),
    );
    Some(resp)
}

async fn root(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(r) = gate(&s, &headers, "/") {
        return r;
    }
    let es = |number: &str, lucene: &str| {
        json!({"name": "sim-node-1", "cluster_name": "sim", "cluster_uuid": "sIm0000000000000000000",
            "version": {"number": number, "build_flavor": "default", "build_type": "docker",
                "build_snapshot": false, "lucene_version": lucene,
                "minimum_wire_compatibility_version": "7.17.0"},
            "tagline": "You Know, for Search"})
    };
    let body = match s.cfg.flavour {
        EsFlavour::Es7 => es("7.17.22", "8.11.3"),
        EsFlavour::Es8 => es("8.15.0", "9.11.1"),
        EsFlavour::Es9 => es("9.1.0", "10.2.2"),
        EsFlavour::OpenSearch2 => json!({"name": "sim-node-1", "cluster_name": "sim",
            "version": {"distribution": "opensearch", "number": "2.17.1", "build_type": "tar",
                "lucene_version": "9.11.1", "minimum_wire_compatibility_version": "7.10.0"},
            "tagline": "The OpenSearch Project: https://opensearch.org/"}),
    };
    axum::Json(body).into_response()
}

async fn bulk_root(
    State(s): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    bulk(&s, None, &uri, &headers, &body)
}

async fn bulk_index(
    State(s): State<Arc<Shared>>,
    Path(index): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    bulk(&s, Some(index), &uri, &headers, &body)
}

fn bulk(
    s: &Shared,
    default_index: Option<String>,
    uri: &Uri,
    headers: &HeaderMap,
    wire: &[u8],
) -> Response {
    let resp = bulk_inner(s, default_index, uri, headers, wire);
    let mut st = s.lock();
    *st.stats
        .bulk_by_status
        .entry(resp.status().as_u16())
        .or_insert(0) += 1;
    resp
}

fn bulk_inner(
    s: &Shared,
    default_index: Option<String>,
    uri: &Uri,
    headers: &HeaderMap,
    wire: &[u8],
) -> Response {
    if let Some(r) = gate(s, headers, uri.path()) {
        return r;
    }
    let start = Instant::now();
    {
        let mut st = s.lock();
        st.stats.bulk_requests += 1;
        st.stats.bytes_wire += wire.len() as u64;
    }
    if let Some(r) = top_fault(s) {
        return r;
    }
    let gzipped = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let body = if gzipped {
        let mut out = Vec::new();
        let limit = s.cfg.max_content_length as u64 + 1;
        if flate2::read::GzDecoder::new(wire)
            .take(limit)
            .read_to_end(&mut out)
            .is_err()
        {
            return es_error(
                StatusCode::BAD_REQUEST,
                "parse_exception",
                "failed to decompress the gzip request body",
            );
        }
        out
    } else {
        wire.to_vec()
    };
    if body.len() > s.cfg.max_content_length {
        // ES answers an over-long body with 413 and no content.
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    }
    s.lock().stats.bytes_uncompressed += body.len() as u64;
    let ops = match parse_ndjson(&body, default_index.as_deref()) {
        Ok(ops) => ops,
        Err((kind, reason)) => return es_error(StatusCode::BAD_REQUEST, kind, &reason),
    };
    let items = apply(s, ops);
    let errors = items.iter().any(|i| {
        i.as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v["status"].as_u64())
            .is_some_and(|st| st >= 300)
    });
    let reply = json!({
        "took": start.elapsed().as_millis() as u64,
        "errors": errors,
        "items": items,
    });
    let filter: Option<Vec<Vec<String>>> = uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "filter_path")
            .map(|(_, v)| {
                v.split(',')
                    .map(|p| p.trim().split('.').map(str::to_string).collect())
                    .collect()
            })
    });
    let reply = match filter {
        Some(paths) => filter_value(&reply, &paths).unwrap_or_else(|| json!({})),
        None => reply,
    };
    axum::Json(reply).into_response()
}

fn top_fault(s: &Shared) -> Option<Response> {
    let (scripted, faults) = {
        let mut st = s.lock();
        (st.top_script.pop_front(), st.faults.clone())
    };
    let fault = scripted.or_else(|| {
        let r: f64 = s
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random();
        if r < faults.top_429 {
            Some(TopFault::TooManyRequests)
        } else if r < faults.top_429 + faults.top_503 {
            Some(TopFault::Unavailable)
        } else {
            None
        }
    })?;
    let with_retry = |mut r: Response| {
        if let Some(secs) = faults.retry_after_secs {
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        r
    };
    Some(match fault {
        TopFault::TooManyRequests => with_retry(es_error(
            StatusCode::TOO_MANY_REQUESTS,
            "es_rejected_execution_exception",
            "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1, max_coordinating_and_primary_bytes=0]",
        )),
        TopFault::Unavailable => with_retry(es_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable_shards_exception",
            "primary shard is not active",
        )),
        TopFault::TooLarge => StatusCode::PAYLOAD_TOO_LARGE.into_response(),
        TopFault::BadReply => axum::Json(json!({"acknowledged": true})).into_response(),
        TopFault::Unauthorized => es_error(
            StatusCode::UNAUTHORIZED,
            "security_exception",
            "unable to authenticate with provided credentials",
        ),
    })
}

/// One parsed bulk operation.
struct Op {
    action: String,
    index: Option<String>,
    id: Option<String>,
    source: Option<String>,
}

/// Parses the body like ES: action line, then a source line for index/create/update.
fn parse_ndjson(
    body: &[u8],
    default_index: Option<&str>,
) -> Result<Vec<Op>, (&'static str, String)> {
    if body.is_empty() {
        return Err((
            "action_request_validation_exception",
            "Validation Failed: 1: no requests added;".into(),
        ));
    }
    if body.last() != Some(&b'\n') {
        return Err((
            "illegal_argument_exception",
            "The bulk request must be terminated by a newline [\\n]".into(),
        ));
    }
    let text = std::str::from_utf8(body).map_err(|_| {
        (
            "parse_exception",
            "request body is not valid UTF-8".to_string(),
        )
    })?;
    let mut lines = text.split_terminator('\n').enumerate();
    let mut ops = Vec::new();
    while let Some((n, line)) = lines.next() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || {
            (
                "illegal_argument_exception",
                format!(
                    "Malformed action/metadata line [{}], expected START_OBJECT or END_OBJECT but found [VALUE_STRING]",
                    n + 1
                ),
            )
        };
        let v: Value = serde_json::from_str(line).map_err(|_| bad())?;
        let obj = v.as_object().filter(|o| o.len() == 1).ok_or_else(bad)?;
        let (action, meta) = obj.iter().next().ok_or_else(bad)?;
        if !matches!(action.as_str(), "index" | "create" | "update" | "delete") {
            return Err((
                "illegal_argument_exception",
                format!(
                    "Malformed action/metadata line [{}], expected field [create], [delete], [index] or [update] but found [{action}]",
                    n + 1
                ),
            ));
        }
        let index = meta["_index"]
            .as_str()
            .map(str::to_string)
            .or_else(|| default_index.map(str::to_string));
        if index.is_none() {
            return Err((
                "action_request_validation_exception",
                "Validation Failed: 1: index is missing;".into(),
            ));
        }
        let id = meta["_id"].as_str().map(str::to_string);
        let source = if action == "delete" {
            None
        } else {
            let (_, src) = lines.next().ok_or_else(|| {
                (
                    "illegal_argument_exception",
                    format!("The bulk request must be terminated by a newline [\\n] (no source after line [{}])", n + 1),
                )
            })?;
            Some(src.to_string())
        };
        ops.push(Op {
            action: action.clone(),
            index,
            id,
            source,
        });
    }
    Ok(ops)
}

fn is_data_stream(index: &str) -> bool {
    index
        .strip_prefix("logs-")
        .and_then(|r| r.split_once('-'))
        .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
}

/// Applies the operations in order; returns one response item each.
fn apply(s: &Shared, ops: Vec<Op>) -> Vec<Value> {
    let mut st = s.lock();
    let mut rng = s.rng.lock().unwrap_or_else(PoisonError::into_inner);
    let keep = s.cfg.keep_documents;
    let mut items = Vec::with_capacity(ops.len());
    for op in ops {
        let index = op.index.unwrap_or_default();
        let id = match op.id {
            Some(id) => id,
            None => {
                st.auto_id += 1;
                format!("auto{:016}", st.auto_id)
            }
        };
        if keep && op.action == "create" {
            *st.attempts.entry(id.clone()).or_insert(0) += 1;
        }
        let fail = |status: u16, kind: &str, reason: String| {
            json!({"_index": index, "_id": id, "status": status,
                "error": {"type": kind, "reason": reason, "index": index}})
        };
        let item = if let Some(block) = st.blocked.get(&index).copied() {
            match block {
                IndexBlock::NotFound => fail(
                    404,
                    "index_not_found_exception",
                    format!("no such index [{index}] and [action.auto_create_index] is [false]"),
                ),
                IndexBlock::Forbidden => fail(
                    403,
                    "security_exception",
                    format!(
                        "action [indices:data/write/bulk[s]] is unauthorized for user [sim] on indices [{index}]"
                    ),
                ),
                IndexBlock::ReadOnly => fail(
                    403,
                    "cluster_block_exception",
                    format!(
                        "index [{index}] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block];"
                    ),
                ),
            }
        } else if !matches!(op.action.as_str(), "create" | "index") {
            fail(
                400,
                "illegal_argument_exception",
                format!("the test receiver does not support [{}]", op.action),
            )
        } else if is_data_stream(&index) && op.action != "create" {
            fail(
                400,
                "illegal_argument_exception",
                format!(
                    "only write ops with an op_type of create are allowed in data streams [{index}]"
                ),
            )
        } else {
            let src = op.source.unwrap_or_default();
            let keys = serde_json::from_str::<BTreeMap<String, serde::de::IgnoredAny>>(&src);
            let scripted = st.item_script.get_mut(&id).and_then(VecDeque::pop_front);
            let fault = scripted.or_else(|| {
                let r: f64 = rng.random();
                if r < st.faults.item_429 {
                    Some(ItemFault::TooManyRequests)
                } else if r < st.faults.item_429 + st.faults.item_mapping_error {
                    Some(ItemFault::MappingError)
                } else {
                    None
                }
            });
            match (keys, fault) {
                (Err(e), _) => fail(400, "document_parsing_exception", format!("[1:1] failed to parse: {e}")),
                (_, Some(ItemFault::TooManyRequests)) => fail(429, "es_rejected_execution_exception", "rejected execution of primary operation [coordinating_and_primary_bytes=1, replica_bytes=0] (write queue full)".into()),
                (_, Some(ItemFault::Unavailable)) => fail(503, "unavailable_shards_exception", format!("[{index}][0] primary shard is not active")),
                (_, Some(ItemFault::MappingError)) => fail(400, "document_parsing_exception", "[1:57] failed to parse field [tags] of type [keyword] in document".into()),
                (Ok(keys), None) if is_data_stream(&index) && !keys.contains_key("@timestamp") => {
                    fail(400, "document_parsing_exception", "[1:1] failed to parse: data stream timestamp field [@timestamp] is missing".into())
                }
                (Ok(_), None) => {
                    let docs = st.docs.entry(index.clone()).or_default();
                    let stored = if keep { Some(src) } else { None };
                    match (op.action.as_str(), docs.contains_key(&id)) {
                        ("create", true) => fail(409, "version_conflict_engine_exception", format!("[{id}]: version conflict, document already exists (current version [1])")),
                        (_, exists) => {
                            docs.insert(id.clone(), stored);
                            let (status, result) = if exists { (200, "updated") } else { (201, "created") };
                            json!({"_index": index, "_id": id, "_version": 1, "result": result, "status": status,
                                "_shards": {"total": 1, "successful": 1, "failed": 0}, "_seq_no": 0, "_primary_term": 1})
                        }
                    }
                }
            }
        };
        let status = item["status"].as_u64().unwrap_or(0) as u16;
        *st.stats.items_by_status.entry(status).or_insert(0) += 1;
        items.push(json!({ op.action.clone(): item }));
    }
    items
}

/// Keeps only what `paths` (dot-separated, `*` matches any key) select, like ES's
/// `filter_path`; arrays are transparent. `None` when nothing is selected.
fn filter_value(v: &Value, paths: &[Vec<String>]) -> Option<Value> {
    match v {
        Value::Array(a) => {
            let kept: Vec<Value> = a.iter().filter_map(|e| filter_value(e, paths)).collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        Value::Object(o) => {
            let mut out = serde_json::Map::new();
            for (k, child) in o {
                let matching: Vec<&Vec<String>> = paths
                    .iter()
                    .filter(|p| p.first().is_some_and(|h| h == "*" || h == k))
                    .collect();
                if matching.is_empty() {
                    continue;
                }
                if matching.iter().any(|p| p.len() == 1) {
                    out.insert(k.clone(), child.clone());
                    continue;
                }
                let tails: Vec<Vec<String>> = matching.iter().map(|p| p[1..].to_vec()).collect();
                if let Some(c) = filter_value(child, &tails) {
                    out.insert(k.clone(), c);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        _ => None,
    }
}

/// Standard base64 with padding (for comparing Basic credentials).
fn base64(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_known_values() {
        assert_eq!(base64("elastic:changeme"), "ZWxhc3RpYzpjaGFuZ2VtZQ==");
        assert_eq!(base64("ab"), "YWI=");
        assert_eq!(base64("abc"), "YWJj");
    }

    #[test]
    fn filter_path_keeps_selected_paths() {
        let v = json!({"took": 3, "errors": true, "items": [
            {"create": {"_id": "a", "status": 201, "result": "created"}},
            {"create": {"_id": "b", "status": 409, "error": {"type": "x"}}}]});
        let paths: Vec<Vec<String>> = ["errors", "items.*.status", "items.*.error"]
            .iter()
            .map(|p| p.split('.').map(str::to_string).collect())
            .collect();
        assert_eq!(
            filter_value(&v, &paths).unwrap(),
            json!({"errors": true, "items": [{"create": {"status": 201}},
                {"create": {"status": 409, "error": {"type": "x"}}}]})
        );
    }

    #[test]
    fn ndjson_rules() {
        assert!(parse_ndjson(b"{\"create\":{\"_index\":\"a\"}}\n{}", None).is_err());
        assert!(parse_ndjson(b"{\"bogus\":{}}\n{}\n", None).is_err());
        assert!(parse_ndjson(b"{\"create\":{}}\n{}\n", None).is_err());
        let ops = parse_ndjson(b"{\"create\":{\"_id\":\"1\"}}\n{\"a\":1}\n", Some("x")).unwrap();
        assert_eq!(ops[0].index.as_deref(), Some("x"));
        assert_eq!(ops[0].source.as_deref(), Some("{\"a\":1}"));
    }

    #[test]
    fn fault_spec_parses() {
        let f = EsFaults::parse("item_429=0.1, 503=0.02,retry_after=2").unwrap();
        assert_eq!(f.item_429, 0.1);
        assert_eq!(f.top_503, 0.02);
        assert_eq!(f.retry_after_secs, Some(2));
        assert!(EsFaults::parse("item_429=2").is_err());
        assert!(EsFaults::parse("bogus=0.1").is_err());
    }
}
