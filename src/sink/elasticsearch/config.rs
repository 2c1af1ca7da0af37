//! `[[sinks]] type = "elasticsearch"`: what the operator writes ([`RawEsSink`]) and the
//! validated form the sink runs with ([`EsConfig`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::config::url_policy::{refuse_cleartext, refuse_embedded_credentials};
use crate::config::{ConfigError, resolve_sink_secret, sink_secret_env};
use crate::pipeline::Format;
use crate::secret::Secret;

/// Default `index`: one index per UTC day of the event's timestamp.
pub const DEFAULT_INDEX: &str = "sigsci-requests-%Y.%m.%d";

/// `[[sinks]] type = "elasticsearch"` (Elasticsearch 7+ or OpenSearch 1–3), as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEsSink {
    /// Name used in logs, metrics, the state file and secret environment variables.
    /// Default `elasticsearch`.
    pub name: Option<String>,
    /// The cluster root, e.g. `https://es.example.com:9200` (required). No query string and no
    /// credentials in it: use the auth fields.
    pub url: Option<String>,
    /// `none`, `basic` (`username` + `password`), `api_key` or `bearer`. Unset: the one kind
    /// of credential given (in the file or the environment), `none` when there is none.
    pub auth: Option<EsAuthMode>,
    /// User for `auth = "basic"`.
    pub username: Option<String>,
    /// Password for `auth = "basic"`. Prefer `password_file` or
    /// `SIGSCI_EXPORT_SINK_<NAME>_PASSWORD`.
    pub password: Option<Secret>,
    /// A file holding the password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// For `auth = "api_key"`: the base64 "encoded" key Kibana shows (`base64(id:key)`).
    /// Or `api_key_file`, or `SIGSCI_EXPORT_SINK_<NAME>_API_KEY`.
    pub api_key: Option<Secret>,
    /// A file holding the encoded API key.
    pub api_key_file: Option<PathBuf>,
    /// For `auth = "bearer"`: a token-service or service-account token. Or `bearer_token_file`,
    /// or `SIGSCI_EXPORT_SINK_<NAME>_BEARER_TOKEN`.
    pub bearer_token: Option<Secret>,
    /// A file holding the bearer token.
    pub bearer_token_file: Option<PathBuf>,
    /// Target index or data stream. `%Y`, `%m`, `%d` are the UTC date of the event's timestamp;
    /// `%%` is a literal `%`. Default `sigsci-requests-%Y.%m.%d`.
    #[serde(default = "default_index")]
    pub index: String,
    /// `auto` (default: a data stream iff `index` has no `%` and looks like `logs-*-*`),
    /// `index` or `data_stream`. For a data stream the sink sends `require_data_stream=true`
    /// (where the cluster knows it), so a missing template blocks the sink instead of creating
    /// a plain index.
    #[serde(default)]
    pub mode: EsMode,
    /// Ingest pipeline for every document (`?pipeline=`). Default: none (the index's default).
    pub pipeline: Option<String>,
    /// Event shape: `raw` (default), `ecs` or `cim`.
    #[serde(default)]
    pub format: Format,
    /// Header names whose values are replaced by `[redacted]`. Default: authorization,
    /// cookie, set-cookie, x-api-token.
    #[serde(default = "crate::pipeline::default_redact_headers")]
    pub redact_headers: Vec<String>,
    /// gzip request bodies. Default true.
    #[serde(default = "default_true")]
    pub gzip: bool,
    /// Most bytes of one `_bulk` body before compression. Default 3000000; keep it well below
    /// the cluster's `http.max_content_length` (100 MB; 10 MiB on small AWS domains). Each
    /// batch in flight holds about this much of events, and as much again of body without
    /// gzip: 3 MB keeps the process under 64 MB with both sinks, gzip or not.
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: usize,
    /// Most documents in one `_bulk` request. Default 10000.
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,
    /// How long a partial batch waits for more events, milliseconds. Default 1000.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// `_bulk` requests in flight at once. Default 2.
    #[serde(default = "default_in_flight")]
    pub in_flight: usize,
    /// Timeout of one request, seconds. Default 90 (above the cluster's own 1 minute bulk
    /// timeout, so a slow cluster is not sent the same documents twice).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Extra PEM trust anchors (a private CA). Certificate checks are never disabled.
    pub ca_file: Option<PathBuf>,
}

/// How the sink authenticates.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EsAuthMode {
    /// No `Authorization` header.
    #[default]
    None,
    /// `Authorization: Basic base64(username:password)`.
    Basic,
    /// `Authorization: ApiKey <encoded key>`.
    ApiKey,
    /// `Authorization: Bearer <token>`.
    Bearer,
}

/// Plain index or data stream.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EsMode {
    /// A data stream iff `index` has no `%` and matches `logs-*-*` (the built-in template).
    #[default]
    Auto,
    /// A plain index (or alias).
    Index,
    /// A data stream: `require_data_stream=true`, no date in the name. Every document has
    /// `@timestamp` whatever the mode.
    DataStream,
}

fn default_index() -> String {
    DEFAULT_INDEX.to_string()
}
fn default_true() -> bool {
    true
}
fn default_batch_max_bytes() -> usize {
    3_000_000
}
fn default_batch_max_events() -> usize {
    10_000
}
fn default_linger_ms() -> u64 {
    1000
}
fn default_in_flight() -> usize {
    2
}
fn default_timeout_secs() -> u64 {
    90
}

/// Validated credentials. `Debug` shows `***` for every secret.
#[derive(Debug, Clone)]
pub enum EsAuth {
    /// No credentials.
    None,
    /// HTTP Basic.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// `ApiKey` with the encoded key.
    ApiKey(Secret),
    /// `Bearer` token.
    Bearer(Secret),
}

/// One piece of an index pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexPart {
    /// Text copied as is.
    Literal(String),
    /// `%Y`: four-digit year.
    Year,
    /// `%m`: two-digit month.
    Month,
    /// `%d`: two-digit day of month.
    Day,
}

/// A parsed `index` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPattern {
    /// The pattern as written (for messages).
    pub text: String,
    /// Its pieces.
    pub parts: Vec<IndexPart>,
}

impl IndexPattern {
    /// Parses `text`, checking that every possible result is a valid index name.
    pub fn parse(text: &str) -> Result<IndexPattern, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                lit.push(c);
                continue;
            }
            let part = match chars.next() {
                Some('%') => {
                    lit.push('%');
                    continue;
                }
                Some('Y') => IndexPart::Year,
                Some('m') => IndexPart::Month,
                Some('d') => IndexPart::Day,
                Some(o) => {
                    return Err(format!(
                        "`%{o}` is not supported: use %Y, %m, %d (UTC date of the event) or %% for `%`"
                    ));
                }
                None => return Err("ends with a lone `%`: write %% for a literal `%`".into()),
            };
            if !lit.is_empty() {
                parts.push(IndexPart::Literal(std::mem::take(&mut lit)));
            }
            parts.push(part);
        }
        if !lit.is_empty() {
            parts.push(IndexPart::Literal(lit));
        }
        let pattern = IndexPattern {
            text: text.to_string(),
            parts,
        };
        check_index_name(&pattern.render(0))?;
        Ok(pattern)
    }

    /// Whether the pattern contains a date.
    pub fn is_dated(&self) -> bool {
        self.parts
            .iter()
            .any(|p| !matches!(p, IndexPart::Literal(_)))
    }

    /// The index name for an event at Unix second `ts` (UTC).
    pub fn render(&self, ts: i64) -> String {
        let mut out = Vec::with_capacity(self.text.len() + 4);
        self.render_into(ts, &mut out);
        // Literal parts are text and the rest are digits.
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Appends the index name for `ts` to `out`. It never needs escaping in a JSON string:
    /// [`IndexPattern::parse`] refuses names with `"`, `\` or control characters.
    pub fn render_into(&self, ts: i64, out: &mut Vec<u8>) {
        use chrono::Datelike;
        use std::io::Write;
        let date = chrono::DateTime::<chrono::Utc>::from_timestamp(ts, 0)
            .unwrap_or_default()
            .date_naive();
        for p in &self.parts {
            // Writing into a Vec cannot fail.
            let _ = match p {
                IndexPart::Literal(s) => out.write_all(s.as_bytes()),
                IndexPart::Year => write!(out, "{:04}", date.year()),
                IndexPart::Month => write!(out, "{:02}", date.month()),
                IndexPart::Day => write!(out, "{:02}", date.day()),
            };
        }
    }
}

/// Elasticsearch's index name rules, checked up front instead of as a 400 on every request.
fn check_index_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 255 {
        return Err("index names are limited to 255 bytes".into());
    }
    if name == "." || name == ".." {
        return Err(format!("`{name}` is not a valid index name"));
    }
    if name.starts_with(['-', '_', '+']) {
        return Err(format!(
            "`{name}`: index names must not start with `-`, `_` or `+`"
        ));
    }
    if let Some(c) = name.chars().find(|c| {
        matches!(
            c,
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
        ) || c.is_control()
    }) {
        return Err(format!("`{name}`: index names must not contain `{c}`"));
    }
    if name.chars().any(|c| c.is_uppercase()) {
        return Err(format!("`{name}`: index names must be lower case"));
    }
    Ok(())
}

/// `logs-<dataset>-<namespace>`: what the built-in `logs-*-*` template turns into a data stream.
fn looks_like_logs_data_stream(name: &str) -> bool {
    name.strip_prefix("logs-")
        .and_then(|rest| rest.split_once('-'))
        .is_some_and(|(dataset, ns)| !dataset.is_empty() && !ns.is_empty())
}

/// The validated elasticsearch sink.
#[derive(Debug, Clone)]
pub struct EsConfig {
    /// Sink name.
    pub name: String,
    /// Cluster root, without a trailing slash.
    pub url: Url,
    /// Credentials.
    pub auth: EsAuth,
    /// Target index pattern.
    pub index: IndexPattern,
    /// Whether the target is a data stream (decided from `mode`): adds
    /// `require_data_stream=true` to the bulk URL.
    pub data_stream: bool,
    /// Ingest pipeline.
    pub pipeline: Option<String>,
    /// Event shape.
    pub format: Format,
    /// Header names to redact.
    pub redact_headers: Vec<String>,
    /// gzip request bodies.
    pub gzip: bool,
    /// Most uncompressed bytes per request.
    pub batch_max_bytes: usize,
    /// Most documents per request.
    pub batch_max_events: usize,
    /// Partial-batch wait.
    pub linger: Duration,
    /// Requests in flight.
    pub in_flight: usize,
    /// Request timeout.
    pub timeout: Duration,
    /// Extra CA file.
    pub ca_file: Option<PathBuf>,
}

/// Validates sink `i` (keys in errors are `sinks[i].<field>`).
pub(crate) fn validate(i: usize, raw: RawEsSink) -> Result<EsConfig, ConfigError> {
    let key = |f: &str| format!("sinks[{i}].{f}");
    let name = raw.name.unwrap_or_else(|| "elasticsearch".to_string());
    let url = validate_url(&key("url"), raw.url)?;

    let secret = |field: &str, inline: Option<Secret>, file: Option<PathBuf>| {
        resolve_sink_secret(&key(field), &name, field, inline, file.as_deref())
    };
    let basic_set = raw.username.is_some() || raw.password.is_some() || raw.password_file.is_some();
    let key_set = raw.api_key.is_some() || raw.api_key_file.is_some();
    let bearer_set = raw.bearer_token.is_some() || raw.bearer_token_file.is_some();
    let env_set = |field: &str| std::env::var_os(sink_secret_env(&name, field)).is_some();
    let mode = match raw.auth {
        Some(mode) => mode,
        None => infer_auth(
            &key("auth"),
            basic_set || env_set("password"),
            key_set || env_set("api_key"),
            bearer_set || env_set("bearer_token"),
        )?,
    };
    // A credential for another mode is a mistake the operator should hear about, not a
    // silently unused secret.
    let stray = |field: &str, set: bool| -> Result<(), ConfigError> {
        if set {
            Err(ConfigError::new(
                key(field),
                format!(
                    "is set but auth = \"{}\" does not use it: set auth to the matching mode or remove it",
                    auth_name(mode)
                ),
            ))
        } else {
            Ok(())
        }
    };
    let missing = |field: &str, env: &str| {
        ConfigError::new(
            key(field),
            format!(
                "missing: set {field}, {field}_file or {}",
                sink_secret_env(&name, env)
            ),
        )
    };
    let auth = match mode {
        EsAuthMode::None => {
            stray("username", raw.username.is_some())?;
            stray(
                "password",
                raw.password.is_some() || raw.password_file.is_some(),
            )?;
            stray("api_key", key_set)?;
            stray("bearer_token", bearer_set)?;
            EsAuth::None
        }
        EsAuthMode::Basic => {
            stray("api_key", key_set)?;
            stray("bearer_token", bearer_set)?;
            let username = raw
                .username
                .filter(|u| !u.is_empty())
                .ok_or_else(|| ConfigError::new(key("username"), "missing for auth = \"basic\""))?;
            if username.contains(':') {
                return Err(ConfigError::new(
                    key("username"),
                    "must not contain `:` (HTTP Basic separates user and password with it)",
                ));
            }
            let password = secret("password", raw.password, raw.password_file)?
                .ok_or_else(|| missing("password", "password"))?;
            EsAuth::Basic { username, password }
        }
        EsAuthMode::ApiKey => {
            stray("username", basic_set)?;
            stray("bearer_token", bearer_set)?;
            let k = secret("api_key", raw.api_key, raw.api_key_file)?
                .ok_or_else(|| missing("api_key", "api_key"))?;
            if k.expose().contains(char::is_whitespace) {
                return Err(ConfigError::new(
                    key("api_key"),
                    "contains whitespace: use the base64 \"encoded\" key Kibana shows, alone",
                ));
            }
            EsAuth::ApiKey(k)
        }
        EsAuthMode::Bearer => {
            stray("username", basic_set)?;
            stray("api_key", key_set)?;
            let t = secret("bearer_token", raw.bearer_token, raw.bearer_token_file)?
                .ok_or_else(|| missing("bearer_token", "bearer_token"))?;
            if t.expose().contains(char::is_whitespace) {
                return Err(ConfigError::new(
                    key("bearer_token"),
                    "contains whitespace: give the token alone, without `Bearer `",
                ));
            }
            EsAuth::Bearer(t)
        }
    };

    if !matches!(auth, EsAuth::None) {
        refuse_cleartext(&key("url"), &url, "the credentials")?;
    }
    let index =
        IndexPattern::parse(raw.index.trim()).map_err(|e| ConfigError::new(key("index"), e))?;
    let data_stream = match raw.mode {
        EsMode::Index => false,
        // A data stream rolls over by itself, and a dated name would make one stream per day,
        // each needing its own template match: refuse it rather than guess.
        EsMode::DataStream if index.is_dated() => {
            return Err(ConfigError::new(
                key("index"),
                format!(
                    "`{}` has a date (%Y/%m/%d), but mode = \"data_stream\" needs one fixed data \
                     stream name, e.g. logs-sigsci.requests-default (rollover replaces daily \
                     names): remove the date or set mode = \"index\"",
                    index.text
                ),
            ));
        }
        EsMode::DataStream => true,
        EsMode::Auto => !index.is_dated() && looks_like_logs_data_stream(&index.text),
    };
    let pipeline = match raw.pipeline {
        None => None,
        Some(p) if p.trim().is_empty() => {
            return Err(ConfigError::new(
                key("pipeline"),
                "is empty: remove it to use the index's default pipeline",
            ));
        }
        Some(p) => Some(p.trim().to_string()),
    };
    if !(1024..=100_000_000).contains(&raw.batch_max_bytes) {
        return Err(ConfigError::new(
            key("batch_max_bytes"),
            "must be between 1024 and 100000000 (the cluster's default http.max_content_length)",
        ));
    }
    if raw.batch_max_events == 0 || raw.batch_max_events > 100_000 {
        return Err(ConfigError::new(
            key("batch_max_events"),
            "must be between 1 and 100000",
        ));
    }
    if raw.linger_ms > 60_000 {
        return Err(ConfigError::new(
            key("linger_ms"),
            "must be at most 60000 (one minute)",
        ));
    }
    if raw.in_flight == 0 || raw.in_flight > 32 {
        return Err(ConfigError::new(
            key("in_flight"),
            "must be between 1 and 32",
        ));
    }
    if raw.timeout_secs == 0 || raw.timeout_secs > 3600 {
        return Err(ConfigError::new(
            key("timeout_secs"),
            "must be between 1 and 3600",
        ));
    }
    Ok(EsConfig {
        name,
        url,
        auth,
        index,
        data_stream,
        pipeline,
        format: raw.format,
        redact_headers: raw.redact_headers,
        gzip: raw.gzip,
        batch_max_bytes: raw.batch_max_bytes,
        batch_max_events: raw.batch_max_events,
        linger: Duration::from_millis(raw.linger_ms),
        in_flight: raw.in_flight,
        timeout: Duration::from_secs(raw.timeout_secs),
        ca_file: raw.ca_file,
    })
}

fn auth_name(mode: EsAuthMode) -> &'static str {
    match mode {
        EsAuthMode::None => "none",
        EsAuthMode::Basic => "basic",
        EsAuthMode::ApiKey => "api_key",
        EsAuthMode::Bearer => "bearer",
    }
}

/// `auth` left unset: the one kind of credential given decides, none means `none`; two kinds
/// are ambiguous, and guessing could send a secret meant for something else.
fn infer_auth(
    key: &str,
    basic: bool,
    api_key: bool,
    bearer: bool,
) -> Result<EsAuthMode, ConfigError> {
    let given: Vec<(EsAuthMode, &str)> = [
        (basic, EsAuthMode::Basic, "basic (username/password)"),
        (api_key, EsAuthMode::ApiKey, "api_key"),
        (bearer, EsAuthMode::Bearer, "bearer (bearer_token)"),
    ]
    .into_iter()
    .filter(|(set, _, _)| *set)
    .map(|(_, mode, what)| (mode, what))
    .collect();
    match given.as_slice() {
        [] => Ok(EsAuthMode::None),
        [(mode, _)] => Ok(*mode),
        several => Err(ConfigError::new(
            key,
            format!(
                "credentials of more than one kind are set ({}, in the file or the environment): \
                 choose with auth = \"basic\", \"api_key\" or \"bearer\" and remove the others",
                several
                    .iter()
                    .map(|(_, w)| *w)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

fn validate_url(key: &str, raw: Option<String>) -> Result<Url, ConfigError> {
    let text = raw
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            ConfigError::new(
                key,
                "missing: the cluster root, e.g. https://es.example.com:9200",
            )
        })?;
    // Never echo the text back: it may hold credentials.
    let mut url =
        Url::parse(&text).map_err(|e| ConfigError::new(key, format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::new(
            key,
            format!("scheme must be https or http, got `{}`", url.scheme()),
        ));
    }
    refuse_embedded_credentials(
        key,
        &url,
        "use auth with username/password_file, api_key_file or bearer_token_file",
    )?;
    if url.path().contains("_bulk") {
        return Err(ConfigError::new(
            key,
            "give the cluster root, not the _bulk endpoint (the sink adds /_bulk)",
        ));
    }
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&path);
    Ok(url)
}

#[cfg(test)]
mod tests;
