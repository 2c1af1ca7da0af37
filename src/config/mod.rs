//! Configuration: what the operator writes, and the validated form the rest of the program uses.
//!
//! Two stages, as ripgrep does with its arguments: [`RawConfig`] only deserializes (TOML file,
//! then `SIGSCI_EXPORT__SECTION__KEY` environment overrides, then the conventional
//! `SIGSCI_EMAIL` / `SIGSCI_TOKEN`), rejecting unknown keys; [`Config::validate`] then resolves
//! secret files, URLs and times, and stops at the first problem: one [`ConfigError`] that names
//! the key and says what to do (fix it and run `check` again for the next).
//! `check` and `run` go through exactly the same [`load()`] so a config that checks also runs.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::pipeline::Format;
use crate::pipeline::filter::{Filters, TagFilter, check_tag_name};
use crate::secret::Secret;

mod admin;
mod env_overrides;
mod file_types;
mod load;
mod parse_error;
mod paths;
mod secrets;
pub(crate) mod url_policy;

pub use env_overrides::env_warnings;
pub use load::{Source, StateView, load, load_state_view};
use secrets::read_secret_file;
pub(crate) use secrets::resolve_sink_secret;
pub use secrets::{secret_permissions_warning, sink_secret_env};

/// The embedded default configuration used by `demo`: the built-in simulator and stdout.
pub const DEMO_DEFAULT: &str = include_str!("../../config/default.toml");

/// Default API endpoint of the Signal Sciences dashboard.
pub const DEFAULT_BASE_URL: &str = "https://dashboard.signalsciences.net/api/v0";

/// A configuration problem: which key, what is wrong, and in which file.
#[derive(Debug, thiserror::Error)]
#[error("{}{key}: {reason}", file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default())]
pub struct ConfigError {
    /// Dotted path of the offending key (`api.requests_per_minute`), or `config` for the file.
    pub key: String,
    /// What is wrong and how to fix it.
    pub reason: String,
    /// The config file, when one was read.
    pub file: Option<PathBuf>,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            reason: reason.into(),
            file: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw: exactly what the file and environment say.
// ---------------------------------------------------------------------------------------------

/// The configuration as written. Every field is documented in `config/example.toml` too.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// How to reach the Signal Sciences API and what to poll.
    #[serde(default)]
    pub api: RawApi,
    /// Polling cadence and window sizes.
    #[serde(default)]
    pub poll: RawPoll,
    /// The on-disk state: cursors, spool, sink offsets, dead letters.
    #[serde(default)]
    pub spool: RawSpool,
    /// The admin endpoint: /metrics, /healthz, /readyz.
    #[serde(default)]
    pub admin: RawAdmin,
    /// Where events go. At least one.
    #[serde(default)]
    pub sinks: Vec<RawSink>,
    /// Which requests are exported at all, by signal (tag) type.
    #[serde(default)]
    pub filters: RawFilters,
}

/// `[filters]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFilters {
    /// Keep only requests with at least one of these signal types (`SQLI`, `XSS`, ...). A single
    /// one is sent to the API as `tags=` too (whether several mean "any" or "all" there is not
    /// documented); every page is checked again. Empty (default): keep all.
    #[serde(default)]
    pub include_tags: Vec<String>,
    /// Drop requests with any of these signal types (client-side). Wins over `include_tags`.
    #[serde(default)]
    pub exclude_tags: Vec<String>,
    /// Send `include_tags` to the API as `tags=` (default true). Set false only if a proxy in
    /// front of the API rejects the parameter; the filter is applied client-side either way.
    #[serde(default = "default_true")]
    pub server_side: bool,
    /// Per-site filters (`[filters.sites.<site>]`); one replaces the global lists as a whole
    /// for its site.
    #[serde(default)]
    pub sites: std::collections::BTreeMap<String, RawTagFilter>,
}

impl Default for RawFilters {
    fn default() -> Self {
        RawFilters {
            include_tags: Vec::new(),
            exclude_tags: Vec::new(),
            server_side: true,
            sites: Default::default(),
        }
    }
}

/// `[filters.sites.<site>]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTagFilter {
    /// As `filters.include_tags`, for this site only.
    #[serde(default)]
    pub include_tags: Vec<String>,
    /// As `filters.exclude_tags`, for this site only.
    #[serde(default)]
    pub exclude_tags: Vec<String>,
}

fn default_true() -> bool {
    true
}

/// `[api]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// API root, default `https://dashboard.signalsciences.net/api/v0`. Tests point it at the simulator.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// `token` (default): `x-api-user` + `x-api-token` headers. `basic`: the same email and token
    /// sent as HTTP Basic credentials.
    #[serde(default)]
    pub auth: AuthMode,
    /// The API user's email (`x-api-user`). Falls back to `SIGSCI_EMAIL`.
    pub email: Option<String>,
    /// The API access token. Prefer `token_file` or `SIGSCI_TOKEN`; never pass it on the command line.
    pub token: Option<Secret>,
    /// A file holding the token (systemd credential, Kubernetes secret). Trailing newline ignored.
    pub token_file: Option<PathBuf>,
    /// The corp's API name (not its display name).
    pub corp: Option<String>,
    /// Site API names to export, or `["*"]` for every site of the corp (rediscovered periodically).
    #[serde(default)]
    pub sites: Vec<String>,
    /// Request budget per minute, shared by every site of the corp. Default 60.
    #[serde(default = "default_rpm")]
    pub requests_per_minute: u32,
    /// How many requests may go out back to back before the per-minute pace applies. Default 5.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Extra PEM trust anchors (corporate proxy). Certificate checks are never disabled.
    pub ca_file: Option<PathBuf>,
    /// Timeout of one API request, seconds. Default 60.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// How far back the feed serves data, seconds. Default 86700 (24 h 5 min).
    #[serde(default = "default_retention_secs")]
    pub retention_secs: i64,
    /// Page size (`limit`), 1..=1000. Default 1000.
    #[serde(default = "default_page_limit")]
    pub page_limit: u32,
    /// Attempts per API request on rate limits and transient errors before the window is retried
    /// from its start on the next tick. Default 8.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

impl Default for RawApi {
    fn default() -> Self {
        RawApi {
            base_url: default_base_url(),
            auth: AuthMode::default(),
            email: None,
            token: None,
            token_file: None,
            corp: None,
            sites: Vec::new(),
            requests_per_minute: default_rpm(),
            burst: default_burst(),
            ca_file: None,
            timeout_secs: default_timeout_secs(),
            retention_secs: default_retention_secs(),
            page_limit: default_page_limit(),
            max_attempts: default_max_attempts(),
        }
    }
}

/// How credentials are sent.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// `x-api-user` and `x-api-token` headers (the vendor's recommended way).
    #[default]
    Token,
    /// `Authorization: Basic base64(email:token)`.
    Basic,
}

/// `[poll]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPoll {
    /// Live mode: how often each site is polled, seconds. Default 60.
    #[serde(default = "default_interval_secs")]
    pub interval_secs: u64,
    /// Stay this far behind now, seconds; at least 300 (the API refuses younger data). Default 300.
    #[serde(default = "default_delay_secs")]
    pub delay_secs: u64,
    /// Largest `from..until` span of one feed query, seconds (multiple of 60). Default 3600.
    #[serde(default = "default_max_window_secs")]
    pub max_window_secs: u64,
    /// Where a site without a cursor starts: RFC 3339, `now` or `-2h`. Default: one interval
    /// before `now - delay`.
    pub start_at: Option<String>,
    /// Backfill: windows of one site fetched at once (all within the corp's quota). More than
    /// one keeps the quota busy when the API is slow to answer; each holds a page (about 1 MB)
    /// in memory while it is parsed and spooled. 1..=32, default 2.
    #[serde(default = "default_backfill_windows")]
    pub backfill_windows: usize,
    /// Keep a feed record that cannot be read (no `id`, an `id` that is not a string, invalid
    /// UTF-8) as a dead letter once its window has failed 5 times in a row, so the rest of its
    /// page is exported. Default false: such a page stalls its site (at ERROR) until it reads.
    #[serde(default)]
    pub skip_bad_records: bool,
}

impl Default for RawPoll {
    fn default() -> Self {
        RawPoll {
            interval_secs: default_interval_secs(),
            delay_secs: default_delay_secs(),
            max_window_secs: default_max_window_secs(),
            start_at: None,
            backfill_windows: default_backfill_windows(),
            skip_bad_records: false,
        }
    }
}

fn default_backfill_windows() -> usize {
    2
}

/// `[spool]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpool {
    /// The SQLite state file. Default `/var/lib/sigsci-export/state.db`.
    #[serde(default = "default_spool_path")]
    pub path: PathBuf,
    /// Most body bytes of undelivered events kept in the spool. Default 1 GiB.
    #[serde(default = "default_spool_max_bytes")]
    pub max_bytes: u64,
    /// What happens when the spool is full: `block` (default: pause polling, alert) or
    /// `drop_oldest` (delete the oldest undelivered events, counted and recorded).
    #[serde(default)]
    pub when_full: WhenFull,
}

impl Default for RawSpool {
    fn default() -> Self {
        RawSpool {
            path: default_spool_path(),
            max_bytes: default_spool_max_bytes(),
            when_full: WhenFull::default(),
        }
    }
}

/// What to do when the spool reaches `spool.max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Stop polling until sinks catch up (ERROR logged, `sigsci_export_spool_full` = 1). Nothing
    /// is dropped here, but a block longer than the API's retention loses data upstream.
    #[default]
    Block,
    /// Delete the oldest undelivered events to make room, recording each drop.
    DropOldest,
}

/// `[admin]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Address of the admin endpoint (`/metrics`, `/healthz`, `/readyz`). Default
    /// `127.0.0.1:9187`; port 0 picks a free port (logged); an empty string disables it.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            listen: default_admin_listen(),
        }
    }
}

fn default_admin_listen() -> String {
    "127.0.0.1:9187".to_string()
}

fn default_spool_max_bytes() -> u64 {
    1 << 30
}

/// One `[[sinks]]` entry; `type` picks the kind.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // a handful, built once at start-up
pub enum RawSink {
    /// NDJSON on standard output, one event per line.
    Stdout(RawStdoutSink),
    /// Splunk HTTP Event Collector.
    SplunkHec(crate::sink::splunk_hec::RawHecSink),
    /// Elasticsearch or OpenSearch `_bulk`, exactly once per event.
    Elasticsearch(crate::sink::elasticsearch::RawEsSink),
}

/// `[[sinks]] type = "stdout"`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStdoutSink {
    /// Name used in logs, metrics and the store. Default `stdout`.
    pub name: Option<String>,
    /// Most events written per batch (one flush per batch). Default 1000.
    #[serde(default = "default_stdout_batch")]
    pub batch_max_events: usize,
    /// Event shape: `raw` (default), `ecs` or `cim`.
    #[serde(default)]
    pub format: Format,
    /// Header names whose values are replaced by `[redacted]`. Default: authorization,
    /// cookie, set-cookie, x-api-token.
    #[serde(default = "crate::pipeline::default_redact_headers")]
    pub redact_headers: Vec<String>,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_string()
}
fn default_rpm() -> u32 {
    60
}
fn default_burst() -> u32 {
    5
}
fn default_timeout_secs() -> u64 {
    60
}
fn default_retention_secs() -> i64 {
    86_700
}
fn default_page_limit() -> u32 {
    1000
}
fn default_max_attempts() -> u32 {
    8
}
fn default_interval_secs() -> u64 {
    60
}
fn default_delay_secs() -> u64 {
    300
}
fn default_max_window_secs() -> u64 {
    3600
}
fn default_spool_path() -> PathBuf {
    PathBuf::from("/var/lib/sigsci-export/state.db")
}
fn default_stdout_batch() -> usize {
    1000
}

// ---------------------------------------------------------------------------------------------
// Validated: what the program uses.
// ---------------------------------------------------------------------------------------------

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Feed API access.
    pub api: ApiConfig,
    /// Polling cadence.
    pub poll: PollConfig,
    /// State file location.
    pub spool: SpoolConfig,
    /// Admin endpoint.
    pub admin: AdminConfig,
    /// Sinks, names unique.
    pub sinks: Vec<SinkConfig>,
    /// Tag filters per site.
    pub filters: Filters,
}

/// Validated `[api]`.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// API root, ending without a slash.
    pub base_url: Url,
    /// Credentials.
    pub auth: Credentials,
    /// Corp API name.
    pub corp: String,
    /// Which sites.
    pub sites: Sites,
    /// Requests per minute for the corp.
    pub requests_per_minute: NonZeroU32,
    /// Burst size.
    pub burst: NonZeroU32,
    /// Extra CA file.
    pub ca_file: Option<PathBuf>,
    /// Request timeout.
    pub timeout: Duration,
    /// Feed retention in seconds.
    pub retention_secs: i64,
    /// Page size.
    pub page_limit: u32,
    /// Attempts per request.
    pub max_attempts: u32,
}

/// Credentials for the feed API. `Debug` never shows the token.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Header or Basic.
    pub mode: AuthMode,
    /// API user email.
    pub email: String,
    /// API token.
    pub token: Secret,
}

/// Which sites to poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sites {
    /// Every site of the corp, discovered through the API.
    All,
    /// These site API names.
    List(Vec<String>),
}

/// Validated `[poll]`.
#[derive(Debug, Clone)]
pub struct PollConfig {
    /// Seconds between live polls.
    pub interval_secs: i64,
    /// Seconds behind now.
    pub delay_secs: i64,
    /// Largest window, seconds, a multiple of 60.
    pub max_window_secs: i64,
    /// Start for sites without a cursor (Unix seconds, minute-aligned), if configured.
    pub start_at: Option<i64>,
    /// Backfill windows of one site in flight at once.
    pub backfill_windows: usize,
    /// Dead-letter feed records that cannot be read once their window is stuck.
    pub skip_bad_records: bool,
}

/// Validated `[spool]`.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// SQLite file.
    pub path: PathBuf,
    /// Most body bytes of undelivered events.
    pub max_bytes: u64,
    /// Policy when full.
    pub when_full: WhenFull,
}

/// Validated `[admin]`.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Where to serve the admin endpoint; `None` = disabled.
    pub listen: Option<std::net::SocketAddr>,
}

/// One validated sink.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // a handful, built once at start-up
pub enum SinkConfig {
    /// Standard output.
    Stdout(StdoutConfig),
    /// Splunk HTTP Event Collector.
    SplunkHec(crate::sink::splunk_hec::HecConfig),
    /// Elasticsearch or OpenSearch.
    Elasticsearch(crate::sink::elasticsearch::EsConfig),
}

/// Validated `type = "stdout"` sink.
#[derive(Debug, Clone)]
pub struct StdoutConfig {
    /// Sink name.
    pub name: String,
    /// Events per batch.
    pub batch_max_events: usize,
    /// Event shape.
    pub format: Format,
    /// Header names to redact.
    pub redact_headers: Vec<String>,
}

impl SinkConfig {
    /// The sink's unique name.
    pub fn name(&self) -> &str {
        match self {
            SinkConfig::Stdout(c) => &c.name,
            SinkConfig::SplunkHec(c) => &c.name,
            SinkConfig::Elasticsearch(c) => &c.name,
        }
    }
}

/// Minimum delay the feed API accepts: `until` must be at least 5 minutes old.
pub const MIN_DELAY_SECS: u64 = 300;

impl Config {
    /// Checks every field and resolves secret files and times; the first problem found is the
    /// error. `now` is used for relative times.
    pub fn validate(raw: RawConfig, now: i64) -> Result<Config, ConfigError> {
        let api = validate_api(raw.api)?;
        let poll = validate_poll(raw.poll, now)?;
        paths::check_spool_path(&raw.spool.path)?;
        if raw.spool.max_bytes < 1 << 20 {
            return Err(ConfigError::new(
                "spool.max_bytes",
                "must be at least 1048576 (1 MiB); size it to hold what the sinks may fall behind",
            ));
        }
        let listen = raw.admin.listen.trim();
        let admin = AdminConfig {
            listen: if listen.is_empty() {
                None
            } else {
                Some(listen.parse().map_err(|_| {
                    ConfigError::new(
                        "admin.listen",
                        format!("`{listen}` is not an IP:port address (e.g. 127.0.0.1:9187)"),
                    )
                })?)
            },
        };
        let sinks = validate_sinks(raw.sinks)?;
        let filters = validate_filters(raw.filters, &api.sites)?;
        Ok(Config {
            api,
            poll,
            spool: SpoolConfig {
                path: raw.spool.path,
                max_bytes: raw.spool.max_bytes,
                when_full: raw.spool.when_full,
            },
            admin,
            sinks,
            filters,
        })
    }
}

fn validate_filters(raw: RawFilters, sites: &Sites) -> Result<Filters, ConfigError> {
    let global = validate_tag_filter("filters", raw.include_tags, raw.exclude_tags)?;
    let mut per_site = std::collections::BTreeMap::new();
    for (site, f) in raw.sites {
        let key = format!("filters.sites.{site}");
        if let Sites::List(list) = sites
            && !list.contains(&site)
        {
            return Err(ConfigError::new(
                key,
                format!(
                    "`{site}` is not in api.sites ({}): fix the site name or remove the section",
                    list.join(", ")
                ),
            ));
        }
        per_site.insert(
            site,
            validate_tag_filter(&key, f.include_tags, f.exclude_tags)?,
        );
    }
    Ok(Filters::new(global, per_site, raw.server_side))
}

fn validate_tag_filter(
    key: &str,
    include: Vec<String>,
    exclude: Vec<String>,
) -> Result<TagFilter, ConfigError> {
    let clean = |field: &str, list: Vec<String>| -> Result<Vec<String>, ConfigError> {
        let mut out: Vec<String> = Vec::new();
        for tag in list {
            let tag = tag.trim().to_string();
            check_tag_name(&tag).map_err(|e| ConfigError::new(format!("{key}.{field}"), e))?;
            if !out.contains(&tag) {
                out.push(tag);
            }
        }
        Ok(out)
    };
    let include = clean("include_tags", include)?;
    let exclude = clean("exclude_tags", exclude)?;
    if let Some(both) = include.iter().find(|t| exclude.contains(t)) {
        return Err(ConfigError::new(
            format!("{key}.exclude_tags"),
            format!("`{both}` is in both include_tags and exclude_tags: keep it in one list"),
        ));
    }
    Ok(TagFilter::new(include, exclude))
}

fn validate_api(raw: RawApi) -> Result<ApiConfig, ConfigError> {
    let base_url = url_policy::api_base_url(&raw.base_url)?;
    let email = raw
        .email
        .filter(|e| !e.trim().is_empty())
        .ok_or_else(|| ConfigError::new("api.email", "missing: set api.email or SIGSCI_EMAIL"))?;
    let token = match (raw.token, raw.token_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "api.token",
                "set either api.token or api.token_file, not both",
            ));
        }
        (Some(t), None) => t,
        (None, Some(path)) => read_secret_file("api.token_file", &path)?,
        (None, None) => {
            return Err(ConfigError::new(
                "api.token",
                "missing: set api.token_file, SIGSCI_TOKEN or api.token",
            ));
        }
    };
    if let Some(problem) = token.problem() {
        return Err(ConfigError::new("api.token", problem));
    }
    let corp = raw
        .corp
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ConfigError::new("api.corp", "missing: the corp's API name"))?;
    check_api_name("api.corp", &corp)?;
    let sites = if raw.sites.iter().any(|s| s == "*") {
        if raw.sites.len() > 1 {
            return Err(ConfigError::new(
                "api.sites",
                "`*` means every site; do not list other sites next to it",
            ));
        }
        Sites::All
    } else {
        if raw.sites.is_empty() {
            return Err(ConfigError::new(
                "api.sites",
                "missing: list site API names, or [\"*\"] for every site of the corp",
            ));
        }
        let mut list: Vec<String> = Vec::new();
        for s in raw.sites {
            let s = s.trim().to_string();
            check_api_name("api.sites", &s)?;
            if list.contains(&s) {
                return Err(ConfigError::new(
                    "api.sites",
                    format!("`{s}` is listed twice"),
                ));
            }
            list.push(s);
        }
        Sites::List(list)
    };
    let requests_per_minute = NonZeroU32::new(raw.requests_per_minute)
        .ok_or_else(|| ConfigError::new("api.requests_per_minute", "must be at least 1"))?;
    let burst = NonZeroU32::new(raw.burst)
        .ok_or_else(|| ConfigError::new("api.burst", "must be at least 1"))?;
    if let Some(ca) = &raw.ca_file
        && !ca.is_file()
    {
        return Err(ConfigError::new(
            "api.ca_file",
            format!("`{}` does not exist or is not a file", ca.display()),
        ));
    }
    if raw.timeout_secs == 0 || raw.timeout_secs > 3600 {
        return Err(ConfigError::new(
            "api.timeout_secs",
            "must be between 1 and 3600",
        ));
    }
    if raw.retention_secs < 3600 {
        return Err(ConfigError::new(
            "api.retention_secs",
            "must be at least 3600 (the feed keeps 24 h: 86700)",
        ));
    }
    if !(1..=1000).contains(&raw.page_limit) {
        return Err(ConfigError::new(
            "api.page_limit",
            "must be between 1 and 1000",
        ));
    }
    if raw.max_attempts == 0 {
        return Err(ConfigError::new("api.max_attempts", "must be at least 1"));
    }
    Ok(ApiConfig {
        base_url,
        auth: Credentials {
            mode: raw.auth,
            email: email.trim().to_string(),
            token,
        },
        corp,
        sites,
        requests_per_minute,
        burst,
        ca_file: raw.ca_file,
        timeout: Duration::from_secs(raw.timeout_secs),
        retention_secs: raw.retention_secs,
        page_limit: raw.page_limit,
        max_attempts: raw.max_attempts,
    })
}

/// API names are URL path segments: reject what would need escaping (and display names,
/// which usually contain spaces: the most common mistake according to the official add-on).
fn check_api_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::new(key, "empty name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(ConfigError::new(
            key,
            format!(
                "`{name}` contains `{c}`: use the API name (lower case, no spaces), not the display name"
            ),
        ));
    }
    Ok(())
}

fn validate_poll(raw: RawPoll, now: i64) -> Result<PollConfig, ConfigError> {
    if raw.interval_secs == 0 || raw.interval_secs > 86_400 {
        return Err(ConfigError::new(
            "poll.interval_secs",
            "must be between 1 and 86400",
        ));
    }
    if raw.delay_secs < MIN_DELAY_SECS {
        return Err(ConfigError::new(
            "poll.delay_secs",
            format!(
                "must be at least {MIN_DELAY_SECS}: the API refuses data younger than 5 minutes"
            ),
        ));
    }
    if raw.delay_secs > 86_400 {
        return Err(ConfigError::new("poll.delay_secs", "must be at most 86400"));
    }
    if raw.max_window_secs < 60
        || !raw.max_window_secs.is_multiple_of(60)
        || raw.max_window_secs > 86_400
    {
        return Err(ConfigError::new(
            "poll.max_window_secs",
            "must be a multiple of 60 between 60 and 86400",
        ));
    }
    let start_at = match raw.start_at {
        None => None,
        Some(s) => Some(start_at(&s, now)?),
    };
    if !(1..=32).contains(&raw.backfill_windows) {
        return Err(ConfigError::new(
            "poll.backfill_windows",
            "must be between 1 and 32",
        ));
    }
    Ok(PollConfig {
        interval_secs: raw.interval_secs as i64,
        delay_secs: raw.delay_secs as i64,
        max_window_secs: raw.max_window_secs as i64,
        start_at,
        backfill_windows: raw.backfill_windows,
        skip_bad_records: raw.skip_bad_records,
    })
}

/// `poll.start_at`, minute-aligned. A time in the future is refused rather than clamped: it is
/// a typo (a wrong year) more often than a wish, a site would export nothing until then, and a
/// clamp would hide the mistake behind a start the operator did not write.
fn start_at(text: &str, now: i64) -> Result<i64, ConfigError> {
    let t =
        crate::time::parse_instant(text, now).map_err(|e| ConfigError::new("poll.start_at", e))?;
    if t > now {
        return Err(ConfigError::new(
            "poll.start_at",
            format!(
                "{} is in the future (now is {}): nothing would be exported until then; give a \
                 past time, \"now\" or a relative one such as \"-2h\"",
                crate::time::rfc3339(t),
                crate::time::rfc3339(now)
            ),
        ));
    }
    Ok(crate::time::align_down(t))
}

fn validate_sinks(raw: Vec<RawSink>) -> Result<Vec<SinkConfig>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::new(
            "sinks",
            "no sink configured: add at least one [[sinks]] entry (type = \"stdout\")",
        ));
    }
    let mut out: Vec<SinkConfig> = Vec::new();
    for (i, sink) in raw.into_iter().enumerate() {
        let cfg = match sink {
            RawSink::Stdout(s) => {
                if s.batch_max_events == 0 {
                    return Err(ConfigError::new(
                        format!("sinks[{i}].batch_max_events"),
                        "must be at least 1",
                    ));
                }
                SinkConfig::Stdout(StdoutConfig {
                    name: s.name.unwrap_or_else(|| "stdout".to_string()),
                    batch_max_events: s.batch_max_events,
                    format: s.format,
                    redact_headers: s.redact_headers,
                })
            }
            RawSink::SplunkHec(s) => SinkConfig::SplunkHec(s.validate(i)?),
            RawSink::Elasticsearch(s) => {
                SinkConfig::Elasticsearch(crate::sink::elasticsearch::validate(i, s)?)
            }
        };
        check_api_name(&format!("sinks[{i}].name"), cfg.name())?;
        if out.iter().any(|o| o.name() == cfg.name()) {
            return Err(ConfigError::new(
                format!("sinks[{i}].name"),
                format!(
                    "`{}` is used by another sink: names must be unique",
                    cfg.name()
                ),
            ));
        }
        out.push(cfg);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
