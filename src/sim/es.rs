//! A test receiver that behaves like an Elasticsearch / OpenSearch cluster's `_bulk` API, as
//! `sinks.md` part B describes it: version document on `GET /`, Basic/ApiKey/Bearer auth with
//! ES-shaped 401s, gzip bodies, strict NDJSON (a missing final newline or a bad action line is a
//! top-level 400), `create` vs `index` semantics (409 `version_conflict_engine_exception` on an
//! existing `_id`), data streams (`logs-*-*`: `create` only, `@timestamp` required),
//! `filter_path`, and fault injection: per-item 429 and mapping errors (random or scripted per
//! `_id`), index-level blocks (missing, forbidden, closed, read-only, alias without a write
//! index), top-level 408/429/503/413 and slow replies, 413 above a byte limit (uncompressed, like
//! `http.max_content_length`).
//!
//! Request checks a real cluster makes before indexing anything: `Content-Type` must be JSON or
//! NDJSON (else 406), every query parameter must be known to the claimed version (else 400
//! `unrecognized parameter`; `require_data_stream` is unknown to Elasticsearch 7 and
//! OpenSearch), an `_id` over 512 bytes fails the whole request (400
//! `action_request_validation_exception`), `pipeline` must name an existing pipeline (else
//! every item 400), and with `require_data_stream=true` every target must be a data stream
//! (else item 404). The query strings and content types seen are recorded.
//!
//! Pause: while paused every request (including `GET /`) answers 503
//! `master_not_discovered_exception`, as a cluster without an elected master does; nothing is
//! stored, so a sink must retry.
//!
//! Documents are kept per index and `_id` (sources only with `keep_documents`, so a long
//! benchmark stays in memory), with counters for what tests and benchmarks check.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
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

use super::{gz, json};

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
    /// OpenSearch 1.3 (`version.distribution = "opensearch"`).
    OpenSearch1,
    /// OpenSearch 2.17 (`version.distribution = "opensearch"`).
    OpenSearch2,
}

impl EsFlavour {
    /// Whether `_bulk` knows `require_data_stream` (Elasticsearch 8 and 9 here; 7.x and
    /// OpenSearch answer 400 `unrecognized parameter`).
    pub fn knows_require_data_stream(self) -> bool {
        matches!(self, EsFlavour::Es8 | EsFlavour::Es9)
    }
}

impl std::str::FromStr for EsFlavour {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "es7" => Ok(EsFlavour::Es7),
            "es8" => Ok(EsFlavour::Es8),
            "es9" => Ok(EsFlavour::Es9),
            "opensearch1" => Ok(EsFlavour::OpenSearch1),
            "opensearch2" => Ok(EsFlavour::OpenSearch2),
            o => Err(format!(
                "unknown flavour `{o}`: use es7, es8, es9, opensearch1 or opensearch2"
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
    /// The ingest pipelines that exist at start ([`EsReceiver::add_pipeline`] adds more).
    /// `None` (default): any name exists (the receiver never runs one); `Some(list)`:
    /// `?pipeline=` naming anything else fails every item.
    pub pipelines: Option<Vec<String>>,
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
            pipelines: None,
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
    /// 408 with an empty body, as a proxy in front of the cluster sends.
    RequestTimeout,
    /// The request is applied as usual, but the reply waits this long: a client with a shorter
    /// timeout never learns that its documents were stored.
    SlowReply(Duration),
    /// Applied as usual, but the items come back in reverse order (as from a proxy that
    /// reassembles replies): only their `_id`s tell which document each is about.
    Reordered,
    /// Applied as usual, but the items carry only their `_id`, no `status`.
    NoItemStatus,
}

/// Why an index cannot be written (every item to it fails).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexBlock {
    /// 404 `index_not_found_exception` (auto-create disabled).
    NotFound,
    /// 403 `security_exception` (no privilege on it).
    Forbidden,
    /// 401 `security_exception` on the item (credentials not valid for it).
    Unauthenticated,
    /// 429 `cluster_block_exception`: read-only after the disk flood-stage watermark. Since
    /// Elasticsearch 7.6 this block is `TOO_MANY_REQUESTS/12` and the item status 429, not 403.
    ReadOnly,
    /// 400 `index_closed_exception`.
    Closed,
    /// 400 `illegal_argument_exception`: the name is an alias with no write index.
    NoWriteIndex,
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
    docs: IdMap<IdMap<Option<String>>>,
    /// `_id` → create attempts (only with `keep_documents`).
    attempts: HashMap<String, u32>,
    stats: EsStats,
    paused: bool,
    faults: EsFaults,
    item_script: HashMap<String, VecDeque<ItemFault>>,
    top_script: VecDeque<TopFault>,
    blocked: HashMap<String, IndexBlock>,
    auto_id: u64,
    /// Existing ingest pipelines (`None`: any name exists).
    pipelines: Option<std::collections::HashSet<String>>,
    /// Distinct `_bulk` query strings and `Content-Type` values seen.
    bulk_queries: std::collections::BTreeSet<String>,
    content_types: std::collections::BTreeSet<String>,
}

/// Keyed by index name or `_id`. foldhash rather than SipHash: every stored document costs a
/// lookup and an insert, and SipHash showed in the benchmark's profile.
type IdMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

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
                pipelines: cfg.pipelines.as_ref().map(|p| p.iter().cloned().collect()),
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

    /// Creates ingest pipeline `id` (with `pipelines` configured; otherwise all exist anyway).
    pub fn add_pipeline(&self, id: &str) {
        if let Some(p) = self.shared.lock().pipelines.as_mut() {
            p.insert(id.to_string());
        }
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

    /// The distinct query strings of `_bulk` requests so far (`""` for none).
    pub fn bulk_queries(&self) -> Vec<String> {
        self.shared.lock().bulk_queries.iter().cloned().collect()
    }

    /// The distinct `Content-Type` values of `_bulk` requests so far (`""` for none).
    pub fn content_types(&self) -> Vec<String> {
        self.shared.lock().content_types.iter().cloned().collect()
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
        EsFlavour::OpenSearch1 => json!({"name": "sim-node-1", "cluster_name": "sim",
            "cluster_uuid": "sIm0000000000000000000",
            "version": {"distribution": "opensearch", "number": "1.3.19", "build_type": "tar",
                "build_hash": "0000000", "build_date": "2024-08-26T00:00:00.000Z",
                "build_snapshot": false, "lucene_version": "8.10.1",
                "minimum_wire_compatibility_version": "6.8.0",
                "minimum_index_compatibility_version": "6.0.0-beta1"},
            "tagline": "The OpenSearch Project: https://opensearch.org/"}),
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
    reply_after(bulk(&s, None, &uri, &headers, &body)).await
}

async fn bulk_index(
    State(s): State<Arc<Shared>>,
    Path(index): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    reply_after(bulk(&s, Some(index), &uri, &headers, &body)).await
}

/// Waits out a [`TopFault::SlowReply`] after the request was applied.
async fn reply_after((resp, delay): (Response, Option<Duration>)) -> Response {
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    resp
}

fn bulk(
    s: &Shared,
    default_index: Option<String>,
    uri: &Uri,
    headers: &HeaderMap,
    wire: &[u8],
) -> (Response, Option<Duration>) {
    let mut delay = None;
    let resp = bulk_inner(s, default_index, uri, headers, wire, &mut delay);
    let mut st = s.lock();
    *st.stats
        .bulk_by_status
        .entry(resp.status().as_u16())
        .or_insert(0) += 1;
    (resp, delay)
}

/// The `_bulk` query parameters Elasticsearch 7.17+/OpenSearch accept (plus the common ones);
/// `require_data_stream` is checked per flavour.
const BULK_PARAMS: &[&str] = &[
    "filter_path",
    "pipeline",
    "refresh",
    "routing",
    "timeout",
    "wait_for_active_shards",
    "require_alias",
    "_source",
    "_source_includes",
    "_source_excludes",
    "pretty",
    "human",
    "error_trace",
];

/// What the query string asks for, once every parameter is known.
#[derive(Default)]
struct BulkParams {
    filter: Option<Vec<Vec<String>>>,
    pipeline: Option<String>,
    require_data_stream: bool,
}

/// The parsed query, or the first parameter the claimed version does not know.
fn bulk_params(s: &Shared, uri: &Uri) -> Result<BulkParams, String> {
    let mut p = BulkParams::default();
    let query = uri.query().unwrap_or("");
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let known = BULK_PARAMS.contains(&k.as_ref())
            || (k == "require_data_stream" && s.cfg.flavour.knows_require_data_stream());
        if !known {
            return Err(k.into_owned());
        }
        match k.as_ref() {
            "filter_path" => {
                p.filter = Some(
                    v.split(',')
                        .map(|p| p.trim().split('.').map(str::to_string).collect())
                        .collect(),
                )
            }
            "pipeline" => p.pipeline = Some(v.into_owned()),
            "require_data_stream" => p.require_data_stream = v != "false",
            _ => {}
        }
    }
    Ok(p)
}

/// ES refuses a body whose `Content-Type` is not a JSON flavour with 406 and a string `error`.
fn content_type_error(headers: &HeaderMap) -> Option<Response> {
    let given = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let reason = match &given {
        None => "Content-Type header is missing".to_string(),
        Some(ct) => {
            let media = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if matches!(
                media.as_str(),
                "application/json"
                    | "application/x-ndjson"
                    | "application/vnd.elasticsearch+json"
                    | "application/vnd.elasticsearch+x-ndjson"
            ) {
                return None;
            }
            format!("Content-Type header [{ct}] is not supported")
        }
    };
    Some(
        (
            StatusCode::NOT_ACCEPTABLE,
            axum::Json(json!({"error": reason, "status": 406})),
        )
            .into_response(),
    )
}

fn bulk_inner(
    s: &Shared,
    default_index: Option<String>,
    uri: &Uri,
    headers: &HeaderMap,
    wire: &[u8],
    delay: &mut Option<Duration>,
) -> Response {
    if let Some(r) = gate(s, headers, uri.path()) {
        return r;
    }
    let start = Instant::now();
    {
        let mut st = s.lock();
        st.stats.bulk_requests += 1;
        st.stats.bytes_wire += wire.len() as u64;
        st.bulk_queries
            .insert(uri.query().unwrap_or("").to_string());
        st.content_types.insert(
            headers
                .get(header::CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default(),
        );
    }
    if let Some(r) = content_type_error(headers) {
        return r;
    }
    let params = match bulk_params(s, uri) {
        Ok(p) => p,
        Err(k) => {
            return es_error(
                StatusCode::BAD_REQUEST,
                "illegal_argument_exception",
                &format!(
                    "request [{}] contains unrecognized parameter: [{k}]",
                    uri.path()
                ),
            );
        }
    };
    let mut reshape = None;
    match top_fault(s) {
        Some(TopFault::SlowReply(d)) => *delay = Some(d),
        Some(f @ (TopFault::Reordered | TopFault::NoItemStatus)) => reshape = Some(f),
        Some(f) => return fault_response(s, f),
        None => {}
    }
    let gzipped = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let Ok(body) = gz::body(wire, gzipped, s.cfg.max_content_length as u64 + 1) else {
        return es_error(
            StatusCode::BAD_REQUEST,
            "parse_exception",
            "failed to decompress the gzip request body",
        );
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
    // Request validation runs over every action before any is executed, so one bad action
    // fails the whole request (as Elasticsearch's `BulkRequest.validate` does).
    if let Some(reason) = validate_ops(&ops) {
        return es_error(
            StatusCode::BAD_REQUEST,
            "action_request_validation_exception",
            &reason,
        );
    }
    let missing_pipeline = params.pipeline.filter(|p| {
        p != "_none"
            && s.lock()
                .pipelines
                .as_ref()
                .is_some_and(|known| !known.contains(p))
    });
    let mut items = apply(
        s,
        ops,
        missing_pipeline.as_deref(),
        params.require_data_stream,
    );
    let only_ids = [vec![
        "items".to_string(),
        "*".to_string(),
        "_id".to_string(),
    ]];
    let filter = match reshape {
        Some(TopFault::NoItemStatus) => Some(&only_ids[..]),
        _ => params.filter.as_deref(),
    };
    if reshape == Some(TopFault::Reordered) {
        items.reverse();
    }
    let reply = Reply {
        took: start.elapsed().as_millis() as u64,
        errors: items.iter().any(|i| i.status >= 300),
        items: &items,
    };
    let body = reply.to_json(filter);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// `Validation Failed: 1: ...;` for the actions ES refuses before executing any.
fn validate_ops(ops: &[Op]) -> Option<String> {
    let errors: Vec<String> = ops
        .iter()
        .filter_map(|op| op.id.as_deref())
        .filter(|id| id.len() > 512)
        .map(|id| {
            format!(
                "id [{id}] is too long, must be no longer than 512 bytes but was: {}",
                id.len()
            )
        })
        .collect();
    if errors.is_empty() {
        return None;
    }
    let mut out = String::from("Validation Failed: ");
    for (i, e) in errors.iter().enumerate() {
        out.push_str(&format!("{}: {e};", i + 1));
    }
    Some(out)
}

fn top_fault(s: &Shared) -> Option<TopFault> {
    let (scripted, faults) = {
        let mut st = s.lock();
        (st.top_script.pop_front(), st.faults.clone())
    };
    scripted.or_else(|| {
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
    })
}

fn fault_response(s: &Shared, fault: TopFault) -> Response {
    let retry_after = s.lock().faults.retry_after_secs;
    let with_retry = |mut r: Response| {
        if let Some(secs) = retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        r
    };
    match fault {
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
        TopFault::RequestTimeout => StatusCode::REQUEST_TIMEOUT.into_response(),
        TopFault::BadReply => axum::Json(json!({"acknowledged": true})).into_response(),
        TopFault::Unauthorized => es_error(
            StatusCode::UNAUTHORIZED,
            "security_exception",
            "unable to authenticate with provided credentials",
        ),
        // Handled by the caller: the request is applied and only the reply differs.
        TopFault::SlowReply(_) | TopFault::Reordered | TopFault::NoItemStatus => {
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// One parsed bulk operation, borrowing from the request body.
struct Op<'a> {
    action: &'static str,
    /// Always set once parsed (the line's `_index`, else the URL's).
    index: Option<Cow<'a, str>>,
    id: Option<Cow<'a, str>>,
    source: Option<&'a str>,
}

/// Parses the body like ES: action line, then a source line for index/create/update.
fn parse_ndjson<'a>(
    body: &'a [u8],
    default_index: Option<&'a str>,
) -> Result<Vec<Op<'a>>, (&'static str, String)> {
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
        let parsed: ActionLine<'_> = serde_json::from_str(line).map_err(|_| bad())?;
        let (action, meta) = match parsed {
            ActionLine::Known(action, meta) => (action, meta),
            ActionLine::Unknown(name) => {
                return Err((
                    "illegal_argument_exception",
                    format!(
                        "Malformed action/metadata line [{}], expected field [create], [delete], [index] or [update] but found [{name}]",
                        n + 1
                    ),
                ));
            }
            ActionLine::NotOneKey => return Err(bad()),
        };
        let index = meta.index.or_else(|| default_index.map(Cow::Borrowed));
        if index.is_none() {
            return Err((
                "action_request_validation_exception",
                "Validation Failed: 1: index is missing;".into(),
            ));
        }
        let source = if action == "delete" {
            None
        } else {
            let (_, src) = lines.next().ok_or_else(|| {
                (
                    "illegal_argument_exception",
                    format!("The bulk request must be terminated by a newline [\\n] (no source after line [{}])", n + 1),
                )
            })?;
            Some(src)
        };
        ops.push(Op {
            action,
            index,
            id: meta.id,
            source,
        });
    }
    Ok(ops)
}

/// An action line read without building a `Value`: it must be a JSON object with exactly one
/// key (duplicates of the same key count once, the last winning, as in a `Value` map).
enum ActionLine<'a> {
    /// `index`, `create`, `update` or `delete`, with its metadata.
    Known(&'static str, Meta<'a>),
    /// One key that names no action.
    Unknown(Cow<'a, str>),
    /// Not an object, or not exactly one key.
    NotOneKey,
}

/// The metadata the receiver reads: `_index` and `_id` when they are strings (anything else,
/// or metadata that is not an object, counts as absent).
#[derive(Default)]
struct Meta<'a> {
    index: Option<Cow<'a, str>>,
    id: Option<Cow<'a, str>>,
}

impl<'de> serde::Deserialize<'de> for ActionLine<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ActionLine<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an action line")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ActionLine<'de>, A::Error> {
                let mut first: Option<Cow<'de, str>> = None;
                let mut several = false;
                let mut known: Option<(&'static str, Meta<'de>)> = None;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let action = ["index", "create", "update", "delete"]
                        .into_iter()
                        .find(|a| *a == key);
                    match action {
                        Some(a) => known = Some((a, map.next_value::<Meta<'de>>()?)),
                        None => {
                            map.next_value::<json::AnyValue>()?;
                        }
                    }
                    match &first {
                        None => first = Some(key),
                        Some(f) => several |= *f != key,
                    }
                }
                Ok(match (first, several, known) {
                    (Some(_), false, Some((a, meta))) => ActionLine::Known(a, meta),
                    (Some(name), false, None) => ActionLine::Unknown(name),
                    _ => ActionLine::NotOneKey,
                })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ActionLine<'de>, A::Error> {
                while seq.next_element::<json::AnyValue>()?.is_some() {}
                Ok(ActionLine::NotOneKey)
            }
            fn visit_bool<E>(self, _: bool) -> Result<ActionLine<'de>, E> {
                Ok(ActionLine::NotOneKey)
            }
            fn visit_i64<E>(self, _: i64) -> Result<ActionLine<'de>, E> {
                Ok(ActionLine::NotOneKey)
            }
            fn visit_u64<E>(self, _: u64) -> Result<ActionLine<'de>, E> {
                Ok(ActionLine::NotOneKey)
            }
            fn visit_f64<E>(self, _: f64) -> Result<ActionLine<'de>, E> {
                Ok(ActionLine::NotOneKey)
            }
            fn visit_str<E>(self, _: &str) -> Result<ActionLine<'de>, E> {
                Ok(ActionLine::NotOneKey)
            }
            fn visit_unit<E>(self) -> Result<ActionLine<'de>, E> {
                Ok(ActionLine::NotOneKey)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> serde::Deserialize<'de> for Meta<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Meta<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("action metadata")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Meta<'de>, A::Error> {
                let mut meta = Meta::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        "_index" => meta.index = map.next_value::<MaybeStr<'de>>()?.0,
                        "_id" => meta.id = map.next_value::<MaybeStr<'de>>()?.0,
                        _ => {
                            map.next_value::<json::AnyValue>()?;
                        }
                    }
                }
                Ok(meta)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Meta<'de>, A::Error> {
                while seq.next_element::<json::AnyValue>()?.is_some() {}
                Ok(Meta::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<Meta<'de>, E> {
                Ok(Meta::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<Meta<'de>, E> {
                Ok(Meta::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<Meta<'de>, E> {
                Ok(Meta::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<Meta<'de>, E> {
                Ok(Meta::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<Meta<'de>, E> {
                Ok(Meta::default())
            }
            fn visit_unit<E>(self) -> Result<Meta<'de>, E> {
                Ok(Meta::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// A string value (borrowed when it has no escapes), or `None` for any other JSON value.
struct MaybeStr<'a>(Option<Cow<'a, str>>);

impl<'de> serde::Deserialize<'de> for MaybeStr<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = MaybeStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<MaybeStr<'de>, E> {
                Ok(MaybeStr(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<MaybeStr<'de>, E> {
                Ok(MaybeStr(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_string<E>(self, v: String) -> Result<MaybeStr<'de>, E> {
                Ok(MaybeStr(Some(Cow::Owned(v))))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<MaybeStr<'de>, A::Error> {
                while map
                    .next_entry::<json::AnyValue, json::AnyValue>()?
                    .is_some()
                {}
                Ok(MaybeStr(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<MaybeStr<'de>, A::Error> {
                while seq.next_element::<json::AnyValue>()?.is_some() {}
                Ok(MaybeStr(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<MaybeStr<'de>, E> {
                Ok(MaybeStr(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<MaybeStr<'de>, E> {
                Ok(MaybeStr(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<MaybeStr<'de>, E> {
                Ok(MaybeStr(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<MaybeStr<'de>, E> {
                Ok(MaybeStr(None))
            }
            fn visit_unit<E>(self) -> Result<MaybeStr<'de>, E> {
                Ok(MaybeStr(None))
            }
        }
        d.deserialize_any(V)
    }
}

fn is_data_stream(index: &str) -> bool {
    index
        .strip_prefix("logs-")
        .and_then(|r| r.split_once('-'))
        .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
}

/// One answered bulk operation: what its reply item says.
#[derive(Clone, Debug)]
struct Item<'a> {
    action: &'static str,
    index: Cow<'a, str>,
    id: Cow<'a, str>,
    status: u16,
    outcome: Outcome,
}

#[derive(Clone, Debug)]
enum Outcome {
    /// Stored: `created` or `updated`.
    Done(&'static str),
    /// Refused, with the error's `type` and `reason`.
    Failed(&'static str, String),
}

/// Applies the operations in order; returns one response item each. `missing_pipeline`: the
/// request's `?pipeline=` names one that does not exist. `require_data_stream`: every target
/// must be (or become, through the `logs-*-*` template) a data stream.
fn apply<'a>(
    s: &Shared,
    ops: Vec<Op<'a>>,
    missing_pipeline: Option<&str>,
    require_data_stream: bool,
) -> Vec<Item<'a>> {
    let mut st = s.lock();
    let st = &mut *st;
    let mut rng = s.rng.lock().unwrap_or_else(PoisonError::into_inner);
    let keep = s.cfg.keep_documents;
    let mut items = Vec::with_capacity(ops.len());
    for op in ops {
        let index = op.index.unwrap_or_default();
        let id = match op.id {
            Some(id) => id,
            None => {
                st.auto_id += 1;
                Cow::Owned(format!("auto{:016}", st.auto_id))
            }
        };
        if keep && op.action == "create" {
            *st.attempts.entry(id.to_string()).or_insert(0) += 1;
        }
        let fail = |status: u16, kind: &'static str, reason: String| {
            (status, Outcome::Failed(kind, reason))
        };
        let (status, outcome) = if let Some(p) = missing_pipeline {
            // Ingest runs before the target is resolved: every document fails alike.
            fail(
                400,
                "illegal_argument_exception",
                format!("pipeline with id [{p}] does not exist"),
            )
        } else if require_data_stream && !is_data_stream(&index) {
            if st.docs.contains_key(index.as_ref()) {
                fail(
                    404,
                    "resource_not_found_exception",
                    format!(
                        "[require_data_stream] request flag is [true] and [{index}] is not a data stream"
                    ),
                )
            } else {
                fail(
                    404,
                    "index_not_found_exception",
                    format!(
                        "no such index [{index}] and the index creation request requires a data stream, but no matching index template with data stream template was found for it"
                    ),
                )
            }
        } else if let Some(block) = st.blocked.get(index.as_ref()).copied() {
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
                IndexBlock::Unauthenticated => fail(
                    401,
                    "security_exception",
                    "unable to authenticate user [sim] for action [indices:data/write/bulk[s]]"
                        .into(),
                ),
                IndexBlock::ReadOnly => fail(
                    429,
                    "cluster_block_exception",
                    format!(
                        "index [{index}] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block];"
                    ),
                ),
                IndexBlock::Closed => fail(400, "index_closed_exception", "closed".into()),
                IndexBlock::NoWriteIndex => fail(
                    400,
                    "illegal_argument_exception",
                    format!(
                        "no write index is defined for alias [{index}]. The write index may be explicitly disabled using is_write_index=false or the alias points to multiple indices without one being designated as a write index"
                    ),
                ),
            }
        } else if !matches!(op.action, "create" | "index") {
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
            let keys = serde_json::from_str::<TopKeys>(src);
            let scripted = st
                .item_script
                .get_mut(id.as_ref())
                .and_then(VecDeque::pop_front);
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
                (Ok(keys), None) if is_data_stream(&index) && !keys.has_timestamp => {
                    fail(400, "document_parsing_exception", "[1:1] failed to parse: data stream timestamp field [@timestamp] is missing".into())
                }
                (Ok(_), None) => {
                    // Looked up before inserting: the index name is only copied once per index.
                    if !st.docs.contains_key(index.as_ref()) {
                        st.docs.insert(index.to_string(), IdMap::default());
                    }
                    let stored = keep.then(|| src.to_string());
                    match st.docs.get_mut(index.as_ref()).map(|docs| (docs.get_mut(id.as_ref()), op.action)) {
                        Some((Some(_), "create")) => fail(409, "version_conflict_engine_exception", format!("[{id}]: version conflict, document already exists (current version [1])")),
                        Some((Some(slot), _)) => {
                            *slot = stored;
                            (200, Outcome::Done("updated"))
                        }
                        _ => {
                            if let Some(docs) = st.docs.get_mut(index.as_ref()) {
                                docs.insert(id.to_string(), stored);
                            }
                            (201, Outcome::Done("created"))
                        }
                    }
                }
            }
        };
        *st.stats.items_by_status.entry(status).or_insert(0) += 1;
        items.push(Item {
            action: op.action,
            index,
            id,
            status,
            outcome,
        });
    }
    items
}

/// A `_bulk` reply: `{"errors","items","took"}` with one `{action: {...}}` per item, keys in
/// the sorted order serde_json's map gives a `json!` value.
struct Reply<'r, 'a> {
    took: u64,
    errors: bool,
    items: &'r [Item<'a>],
}

/// Up to this many `filter_path` expressions are applied while writing; more fall back to
/// building the reply as a `Value` and filtering it.
const MAX_STREAMED_PATHS: usize = 64;

impl Reply<'_, '_> {
    /// The reply's JSON text, with `filter_path` applied as [`filter_value`] would.
    fn to_json(&self, filter: Option<&[Vec<String>]>) -> Vec<u8> {
        let paths = filter.unwrap_or(&[]);
        if paths.len() > MAX_STREAMED_PATHS {
            let v = filter_value(self.to_value(), paths).unwrap_or_else(|| json!({}));
            return serde_json::to_vec(&v).unwrap_or_default();
        }
        let sel = match filter {
            None => Sel::All,
            Some(_) => Sel::Paths {
                depth: 0,
                mask: match paths.len() {
                    0 => 0,
                    n => u64::MAX >> (64 - n),
                },
            },
        };
        // A successful item is about 200 bytes unfiltered.
        let mut out = Vec::with_capacity(64 + self.items.len() * 220);
        let mut o = Obj::begin(&mut out, sel);
        o.scalar(&mut out, paths, "errors", |out| {
            json::push_bool(out, self.errors)
        });
        if let Some(mark) = o.key(&mut out, paths, "items") {
            let sel = mark.sel;
            let mut a = Arr::begin(&mut out, sel);
            for item in self.items {
                let at = a.element(&mut out);
                let wrote = write_item(&mut out, paths, sel, item);
                a.done(&mut out, at, wrote);
            }
            let wrote = a.end(&mut out);
            o.done(&mut out, mark, wrote);
        }
        o.scalar(&mut out, paths, "took", |out| {
            json::push_u64(out, self.took)
        });
        if !o.end(&mut out) {
            out.extend_from_slice(b"{}");
        }
        out
    }

    /// The reply as the `Value` the receiver used to build; the fallback for unusual filters
    /// and the reference the writer is tested against.
    fn to_value(&self) -> Value {
        let items: Vec<Value> = self
            .items
            .iter()
            .map(|i| {
                let item = match &i.outcome {
                    Outcome::Done(result) => json!({"_index": i.index, "_id": i.id, "_version": 1,
                        "result": result, "status": i.status,
                        "_shards": {"total": 1, "successful": 1, "failed": 0},
                        "_seq_no": 0, "_primary_term": 1}),
                    Outcome::Failed(kind, reason) => json!({"_index": i.index, "_id": i.id,
                        "status": i.status,
                        "error": {"type": kind, "reason": reason, "index": i.index}}),
                };
                json!({ i.action: item })
            })
            .collect();
        json!({"took": self.took, "errors": self.errors, "items": items})
    }
}

/// `{action: {...}}` for one item; false if the filter left nothing of it.
fn write_item(out: &mut Vec<u8>, paths: &[Vec<String>], sel: Sel, item: &Item<'_>) -> bool {
    let mut o = Obj::begin(out, sel);
    if let Some(mark) = o.key(out, paths, item.action) {
        let mut b = Obj::begin(out, mark.sel);
        b.scalar(out, paths, "_id", |out| json::push_str(out, &item.id));
        b.scalar(out, paths, "_index", |out| json::push_str(out, &item.index));
        match &item.outcome {
            Outcome::Done(result) => {
                b.scalar(out, paths, "_primary_term", |out| out.push(b'1'));
                b.scalar(out, paths, "_seq_no", |out| out.push(b'0'));
                if let Some(m) = b.key(out, paths, "_shards") {
                    let mut sh = Obj::begin(out, m.sel);
                    sh.scalar(out, paths, "failed", |out| out.push(b'0'));
                    sh.scalar(out, paths, "successful", |out| out.push(b'1'));
                    sh.scalar(out, paths, "total", |out| out.push(b'1'));
                    let wrote = sh.end(out);
                    b.done(out, m, wrote);
                }
                b.scalar(out, paths, "_version", |out| out.push(b'1'));
                b.scalar(out, paths, "result", |out| json::push_str(out, result));
            }
            Outcome::Failed(kind, reason) => {
                if let Some(m) = b.key(out, paths, "error") {
                    let mut e = Obj::begin(out, m.sel);
                    e.scalar(out, paths, "index", |out| json::push_str(out, &item.index));
                    e.scalar(out, paths, "reason", |out| json::push_str(out, reason));
                    e.scalar(out, paths, "type", |out| json::push_str(out, kind));
                    let wrote = e.end(out);
                    b.done(out, m, wrote);
                }
            }
        }
        b.scalar(out, paths, "status", |out| {
            json::push_u64(out, u64::from(item.status))
        });
        let wrote = b.end(out);
        o.done(out, mark, wrote);
    }
    o.end(out)
}

/// What `filter_path` keeps of the node being written: everything, or what the paths in
/// `mask` (bit i: `paths[i]`) select below their first `depth` segments.
#[derive(Clone, Copy, Debug)]
enum Sel {
    All,
    Paths { depth: usize, mask: u64 },
}

impl Sel {
    /// The selection under key `key`, `None` if the filter drops it. Mirrors
    /// [`filter_value`]: a key matches a segment equal to it or `*`, and a path that ends at
    /// it keeps the whole value.
    fn child(self, paths: &[Vec<String>], key: &str) -> Option<Sel> {
        let Sel::Paths { depth, mask } = self else {
            return Some(Sel::All);
        };
        let (mut next, mut whole) = (0u64, false);
        for (i, p) in paths.iter().enumerate() {
            if mask & (1 << i) == 0 {
                continue;
            }
            if p.get(depth).is_some_and(|h| h == "*" || h == key) {
                next |= 1 << i;
                whole |= p.len() == depth + 1;
            }
        }
        if next == 0 {
            None
        } else if whole {
            Some(Sel::All)
        } else {
            Some(Sel::Paths {
                depth: depth + 1,
                mask: next,
            })
        }
    }

    /// Whether a value written here is dropped when the filter leaves nothing of it (a
    /// filtered object or array with nothing selected, or a scalar with path left over).
    fn filtering(self) -> bool {
        matches!(self, Sel::Paths { .. })
    }
}

/// A key written speculatively: where to cut back to, and the selection for its value.
struct Mark {
    at: usize,
    sel: Sel,
}

/// An object being written under a filter.
struct Obj {
    start: usize,
    fields: usize,
    sel: Sel,
}

impl Obj {
    fn begin(out: &mut Vec<u8>, sel: Sel) -> Obj {
        let start = out.len();
        out.push(b'{');
        Obj {
            start,
            fields: 0,
            sel,
        }
    }

    /// Writes `"key":` if the filter selects anything under `key`.
    fn key(&mut self, out: &mut Vec<u8>, paths: &[Vec<String>], key: &str) -> Option<Mark> {
        let sel = self.sel.child(paths, key)?;
        let at = out.len();
        if self.fields > 0 {
            out.push(b',');
        }
        json::push_str(out, key);
        out.push(b':');
        Some(Mark { at, sel })
    }

    /// Keeps the field whose value was just written, or cuts its key if the value was empty.
    fn done(&mut self, out: &mut Vec<u8>, mark: Mark, wrote: bool) {
        if wrote {
            self.fields += 1;
        } else {
            out.truncate(mark.at);
        }
    }

    /// A field with a scalar value, which a filter keeps only when a path ends at it.
    fn scalar(
        &mut self,
        out: &mut Vec<u8>,
        paths: &[Vec<String>],
        key: &str,
        value: impl FnOnce(&mut Vec<u8>),
    ) {
        if let Some(mark) = self.key(out, paths, key) {
            let wrote = !mark.sel.filtering();
            if wrote {
                value(out);
            }
            self.done(out, mark, wrote);
        }
    }

    /// Closes the object; false (and nothing written) if a filter left it empty.
    fn end(self, out: &mut Vec<u8>) -> bool {
        if self.fields == 0 && self.sel.filtering() {
            out.truncate(self.start);
            return false;
        }
        out.push(b'}');
        true
    }
}

/// An array being written under a filter: elements the filter empties are left out.
struct Arr {
    start: usize,
    elements: usize,
    sel: Sel,
}

impl Arr {
    fn begin(out: &mut Vec<u8>, sel: Sel) -> Arr {
        let start = out.len();
        out.push(b'[');
        Arr {
            start,
            elements: 0,
            sel,
        }
    }

    fn element(&mut self, out: &mut Vec<u8>) -> usize {
        let at = out.len();
        if self.elements > 0 {
            out.push(b',');
        }
        at
    }

    fn done(&mut self, out: &mut Vec<u8>, at: usize, wrote: bool) {
        if wrote {
            self.elements += 1;
        } else {
            out.truncate(at);
        }
    }

    fn end(self, out: &mut Vec<u8>) -> bool {
        if self.elements == 0 && self.sel.filtering() {
            out.truncate(self.start);
            return false;
        }
        out.push(b']');
        true
    }
}

/// What the receiver needs from a document: that it is one JSON object, and whether it has a
/// top-level `@timestamp` (data streams require one). Parsed without building the document.
struct TopKeys {
    has_timestamp: bool,
}

impl<'de> serde::Deserialize<'de> for TopKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = TopKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<TopKeys, A::Error> {
                let mut has_timestamp = false;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    has_timestamp |= key == "@timestamp";
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(TopKeys { has_timestamp })
            }
        }
        d.deserialize_map(Keys)
    }
}

/// Keeps only what `paths` (dot-separated, `*` matches any key) select, like ES's
/// `filter_path`; arrays are transparent. `None` when nothing is selected.
fn filter_value(v: Value, paths: &[Vec<String>]) -> Option<Value> {
    // Takes the reply by value: selected parts move into the result instead of being copied
    // (a bulk reply has one item per document).
    match v {
        Value::Array(a) => {
            let kept: Vec<Value> = a
                .into_iter()
                .filter_map(|e| filter_value(e, paths))
                .collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        Value::Object(o) => {
            let mut out = serde_json::Map::new();
            for (k, child) in o {
                let matching: Vec<&Vec<String>> = paths
                    .iter()
                    .filter(|p| p.first().is_some_and(|h| h == "*" || *h == k))
                    .collect();
                if matching.is_empty() {
                    continue;
                }
                if matching.iter().any(|p| p.len() == 1) {
                    out.insert(k, child);
                    continue;
                }
                let tails: Vec<Vec<String>> = matching.iter().map(|p| p[1..].to_vec()).collect();
                if let Some(c) = filter_value(child, &tails) {
                    out.insert(k, c);
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
            filter_value(v.clone(), &paths).unwrap(),
            json!({"errors": true, "items": [{"create": {"status": 201}},
                {"create": {"status": 409, "error": {"type": "x"}}}]})
        );
    }

    /// The reply writer against the `Value` it replaced, filtered by [`filter_value`], for the
    /// filters clients send and for odd ones.
    #[test]
    fn reply_writer_matches_value_and_filter_value() {
        let item = |action, id: &str, status, outcome| Item {
            action,
            index: Cow::Borrowed("logs-\"x\"-1"),
            id: Cow::Owned(id.to_string()),
            status,
            outcome,
        };
        let all = [
            item("create", "a", 201, Outcome::Done("created")),
            item("index", "b\\n\"", 200, Outcome::Done("updated")),
            item(
                "create",
                "c",
                409,
                Outcome::Failed("version_conflict_engine_exception", "[c]: \"x\"\n".into()),
            ),
            item(
                "delete",
                "d",
                400,
                Outcome::Failed("illegal_argument_exception", String::new()),
            ),
        ];
        let mut filters: Vec<Option<String>> = [
            "errors,items.*.status,items.*.error",
            "errors,items.*.error,items.*.status",
            "errors,items.*.status,items.*.error,items.*._id",
            "took",
            "items",
            "items.*",
            "items.create.status",
            "items.*.error.type,items.*._shards.total",
            "items.*._shards",
            "items.index",
            "*",
            "*.*",
            "*.*.*.*",
            "nothing",
            "",
            "items..status",
            "errors,errors",
            "items.*.status.deeper",
        ]
        .iter()
        .map(|f| Some(f.to_string()))
        .collect();
        filters.push(None);
        // More paths than the writer streams: the Value fallback.
        filters.push(Some(
            (0..70)
                .map(|i| format!("items.*.k{i}"))
                .chain(["errors".to_string()])
                .collect::<Vec<_>>()
                .join(","),
        ));
        for items in [&all[..], &all[..1], &all[2..3], &[]] {
            for errors in [false, true] {
                let reply = Reply {
                    took: 17,
                    errors,
                    items,
                };
                for f in &filters {
                    let paths: Option<Vec<Vec<String>>> = f.as_ref().map(|f| {
                        f.split(',')
                            .map(|p| p.trim().split('.').map(str::to_string).collect())
                            .collect()
                    });
                    let want = match &paths {
                        None => reply.to_value(),
                        Some(p) => filter_value(reply.to_value(), p).unwrap_or_else(|| json!({})),
                    };
                    let got = reply.to_json(paths.as_deref());
                    assert_eq!(
                        String::from_utf8_lossy(&got),
                        serde_json::to_string(&want).unwrap(),
                        "filter {f:?}, {} items",
                        items.len()
                    );
                }
            }
        }
    }

    /// Action lines read without a `Value` against the `Value`-based reading they replaced.
    #[test]
    fn action_lines_read_like_values() {
        #[derive(Debug, PartialEq)]
        enum Read {
            Bad,
            Unknown(String),
            Known(String, Option<String>, Option<String>),
        }
        let old = |line: &str| -> Read {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                return Read::Bad;
            };
            let Some(obj) = v.as_object().filter(|o| o.len() == 1) else {
                return Read::Bad;
            };
            let (action, meta) = obj.iter().next().unwrap();
            if !matches!(action.as_str(), "index" | "create" | "update" | "delete") {
                return Read::Unknown(action.clone());
            }
            let s = |k: &str| meta[k].as_str().map(str::to_string);
            Read::Known(action.clone(), s("_index"), s("_id"))
        };
        let new = |line: &str| -> Read {
            match serde_json::from_str::<ActionLine<'_>>(line) {
                Err(_) | Ok(ActionLine::NotOneKey) => Read::Bad,
                Ok(ActionLine::Unknown(n)) => Read::Unknown(n.into_owned()),
                Ok(ActionLine::Known(a, m)) => Read::Known(
                    a.to_string(),
                    m.index.map(Cow::into_owned),
                    m.id.map(Cow::into_owned),
                ),
            }
        };
        for line in [
            r#"{"create":{"_index":"a","_id":"1"}}"#,
            r#"{"create":{"_index":"a\"b","_id":"\u0041\n"}}"#,
            r#"{"index":{}}"#,
            r#"{"update":{"_id":"u","retry_on_conflict":3}}"#,
            r#"{"delete":{"_id":5}}"#,
            r#"{"create":"x"}"#,
            r#"{"create":[1,{"_id":"x"}]}"#,
            r#"{"create":null}"#,
            r#"{"create":{"_id":"a","_id":"b"}}"#,
            r#"{"create":{"_id":"a","_id":7}}"#,
            r#"{"create":{},"create":{"_id":"z"}}"#,
            r#"{"create":{},"index":{}}"#,
            r#"{"bogus":{}}"#,
            r#"{"bo\"gus":{}}"#,
            r#"{"bogus":{},"bogus":1}"#,
            r#"{"bogus":{},"create":{}}"#,
            r#"{"create":{"_index":{"nested":"x"},"_id":["x"]}}"#,
            r#"{"create":{"_index":true,"_id":null,"x":{"y":[1,2.5,-3]}}}"#,
            r#" {"create":{"_index":"sp"}} "#,
            "{}",
            "[]",
            r#""create""#,
            "1",
            "null",
            "true",
            r#"{"create":{}} x"#,
            r#"{"create":{"#,
            r#"{"create":{}}{"index":{}}"#,
            r#"{"create":{"_id":"a","x":1e999}}"#,
            r#"{"create":{"_id":"a","x":[{"y":"\ud800"}]}}"#,
            r#"{"bogus":[1e999]}"#,
            r#"{"create":{"_index":{"x":-1e999}}}"#,
        ] {
            assert_eq!(new(line), old(line), "{line}");
        }
    }

    #[test]
    fn ndjson_rules() {
        assert!(parse_ndjson(b"{\"create\":{\"_index\":\"a\"}}\n{}", None).is_err());
        assert!(parse_ndjson(b"{\"bogus\":{}}\n{}\n", None).is_err());
        assert!(parse_ndjson(b"{\"create\":{}}\n{}\n", None).is_err());
        let ops = parse_ndjson(b"{\"create\":{\"_id\":\"1\"}}\n{\"a\":1}\n", Some("x")).unwrap();
        assert_eq!(ops[0].index.as_deref(), Some("x"));
        assert_eq!(ops[0].source, Some("{\"a\":1}"));
    }

    /// Posts `body` to `/_bulk?{query}` with `content_type` (none when `None`).
    async fn post(
        rx: &EsReceiver,
        query: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> (u16, Value) {
        let mut rb = reqwest::Client::new()
            .post(format!("{}/_bulk?{query}", rx.url()))
            .body(body.to_string());
        if let Some(ct) = content_type {
            rb = rb.header("content-type", ct);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    async fn start(cfg: EsReceiverConfig) -> EsReceiver {
        EsReceiver::start(cfg, ([127, 0, 0, 1], 0).into())
            .await
            .unwrap()
    }

    const DOC: &str = "{\"create\":{\"_index\":\"idx\",\"_id\":\"a\"}}\n{\"x\":1}\n";
    const NDJSON: Option<&str> = Some("application/x-ndjson");

    #[tokio::test]
    async fn content_type_must_be_json_like_a_cluster() {
        let rx = start(EsReceiverConfig::default()).await;
        for (ct, want) in [
            (None, "Content-Type header is missing"),
            (
                Some("text/plain"),
                "Content-Type header [text/plain] is not supported",
            ),
        ] {
            let (status, body) = post(&rx, "", ct, DOC).await;
            assert_eq!(status, 406);
            assert_eq!(body, json!({"error": want, "status": 406}));
            // What the sink makes of it: blocked, not retried or bisected.
            assert!(matches!(
                crate::sink::elasticsearch::reply::classify_bulk(
                    status,
                    None,
                    None,
                    body.to_string().as_bytes(),
                    &["a"],
                    "idx"
                ),
                Err(crate::sink::SinkError::Blocked { .. })
            ));
        }
        for ct in ["application/json", "application/x-ndjson; charset=UTF-8"] {
            assert_eq!(post(&rx, "", Some(ct), DOC).await.0, 200, "{ct}");
        }
        assert_eq!(rx.doc_count(), 1);
        let seen = rx.content_types();
        assert!(seen.contains(&String::new()) && seen.contains(&"text/plain".to_string()));
    }

    #[tokio::test]
    async fn unknown_parameters_are_refused_per_version() {
        for (flavour, knows) in [
            (EsFlavour::Es7, false),
            (EsFlavour::Es8, true),
            (EsFlavour::Es9, true),
            (EsFlavour::OpenSearch1, false),
            (EsFlavour::OpenSearch2, false),
        ] {
            let rx = start(EsReceiverConfig {
                flavour,
                ..EsReceiverConfig::default()
            })
            .await;
            let ds = "{\"create\":{\"_index\":\"logs-a-b\",\"_id\":\"a\"}}\n{\"@timestamp\":\"2026-01-01T00:00:00Z\"}\n";
            let (status, body) = post(&rx, "require_data_stream=true", NDJSON, ds).await;
            if knows {
                assert_eq!(status, 200, "{flavour:?}: {body}");
            } else {
                assert_eq!(status, 400, "{flavour:?}");
                assert_eq!(
                    body["error"]["reason"],
                    "request [/_bulk] contains unrecognized parameter: [require_data_stream]"
                );
            }
            let (status, _) = post(&rx, "bogus=1", NDJSON, DOC).await;
            assert_eq!(status, 400);
            assert_eq!(
                rx.bulk_queries(),
                vec![
                    "bogus=1".to_string(),
                    "require_data_stream=true".to_string()
                ]
            );
        }
    }

    #[tokio::test]
    async fn require_data_stream_and_pipelines_fail_items() {
        let rx = start(EsReceiverConfig {
            pipelines: Some(vec!["p1".into()]),
            ..EsReceiverConfig::default()
        })
        .await;
        let status_of = |v: &Value| v["items"][0]["create"]["status"].as_u64();
        // A plain index exists; then the same name is required to be a data stream.
        let (_, r) = post(&rx, "", NDJSON, DOC).await;
        assert_eq!(status_of(&r), Some(201));
        let again = DOC.replace("\"a\"", "\"b\"");
        let (_, r) = post(&rx, "require_data_stream=true", NDJSON, &again).await;
        assert_eq!(status_of(&r), Some(404));
        assert_eq!(
            r["items"][0]["create"]["error"]["type"],
            "resource_not_found_exception"
        );
        let other = again.replace("idx", "other");
        let (_, r) = post(&rx, "require_data_stream=true", NDJSON, &other).await;
        assert_eq!(
            r["items"][0]["create"]["error"]["type"],
            "index_not_found_exception"
        );
        let (_, r) = post(&rx, "pipeline=nope", NDJSON, &again).await;
        assert_eq!(status_of(&r), Some(400));
        assert_eq!(
            r["items"][0]["create"]["error"]["reason"],
            "pipeline with id [nope] does not exist"
        );
        let (_, r) = post(&rx, "pipeline=p1", NDJSON, &again).await;
        assert_eq!(status_of(&r), Some(201));
        rx.add_pipeline("nope");
        let third = again.replace("\"b\"", "\"c\"");
        let (_, r) = post(&rx, "pipeline=nope", NDJSON, &third).await;
        assert_eq!(status_of(&r), Some(201));
    }

    #[tokio::test]
    async fn an_overlong_id_fails_the_whole_request() {
        let rx = start(EsReceiverConfig::default()).await;
        let long = format!(
            "{DOC}{{\"create\":{{\"_index\":\"idx\",\"_id\":\"{}\"}}}}\n{{}}\n",
            "x".repeat(513)
        );
        let (status, body) = post(&rx, "", NDJSON, &long).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["type"], "action_request_validation_exception");
        assert!(
            body["error"]["reason"]
                .as_str()
                .unwrap()
                .ends_with("must be no longer than 512 bytes but was: 513;")
        );
        assert_eq!(rx.doc_count(), 0, "nothing of the request is applied");
    }

    #[tokio::test]
    async fn read_only_block_answers_429_like_es_7_6_and_later() {
        let rx = start(EsReceiverConfig::default()).await;
        rx.block_index("idx", IndexBlock::ReadOnly);
        let (_, r) = post(&rx, "", NDJSON, DOC).await;
        let item = &r["items"][0]["create"];
        assert_eq!(item["status"], 429);
        assert_eq!(item["error"]["type"], "cluster_block_exception");
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
