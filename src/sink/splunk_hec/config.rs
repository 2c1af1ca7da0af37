//! `[[sinks]] type = "splunk_hec"`: the raw form as written and the validated form.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use url::Url;

use crate::config::url_policy::{refuse_cleartext, refuse_embedded_credentials};
use crate::config::{ConfigError, resolve_sink_secret};
use crate::pipeline::Format;
use crate::secret::Secret;

/// `[[sinks]] type = "splunk_hec"` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHecSink {
    /// Name used in logs, metrics and the store. Default `splunk_hec`.
    pub name: Option<String>,
    /// HEC base URL, e.g. `https://splunk.example.com:8088` (required; no path after the port
    /// unless HEC sits behind a proxy prefix, no query, no credentials).
    pub url: Option<String>,
    /// HEC token. Prefer `token_file` or `SIGSCI_EXPORT_SINK_<NAME>_TOKEN` (required).
    pub token: Option<Secret>,
    /// A file holding the HEC token (trailing newline ignored).
    pub token_file: Option<PathBuf>,
    /// Splunk index; must be allowed for the token. Default: the token's default index.
    pub index: Option<String>,
    /// Sourcetype of every event. Default `sigsci:request`.
    #[serde(default = "default_sourcetype")]
    pub sourcetype: String,
    /// Source of every event. Default `sigsci-export`.
    #[serde(default = "default_source")]
    pub source: String,
    /// Host of every event. Default: omitted, so Splunk uses the HEC's own.
    pub host: Option<String>,
    /// Event shape: `raw` (default), `ecs` or `cim`.
    #[serde(default)]
    pub format: Format,
    /// Header names whose values are replaced by `[redacted]`. Default: authorization, cookie,
    /// set-cookie, x-api-token.
    #[serde(default = "crate::pipeline::default_redact_headers")]
    pub redact_headers: Vec<String>,
    /// gzip request bodies. Default true.
    #[serde(default = "default_true")]
    pub gzip: bool,
    /// Most bytes of one request body, encoded, before compression. Default 1000000.
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: usize,
    /// Most events per batch. Default 10000.
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,
    /// How long a partial batch waits to fill, milliseconds. Default 1000.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// Requests in flight at once. Default 4.
    #[serde(default = "default_in_flight")]
    pub in_flight: usize,
    /// Indexer acknowledgement: `true`, `false` or `"auto"` (use it when HEC answers with an
    /// `ackId`). Default `"auto"`.
    #[serde(default)]
    pub ack: AckMode,
    /// Seconds to wait for an indexer acknowledgement before resending. Default 300.
    #[serde(default = "default_ack_timeout_secs")]
    pub ack_timeout_secs: u64,
    /// Milliseconds between acknowledgement queries. Default 2000.
    #[serde(default = "default_ack_poll_ms")]
    pub ack_poll_ms: u64,
    /// Timeout of one request, seconds. Default 60.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Extra PEM trust anchors for HEC's certificate. Default: none.
    pub ca_file: Option<PathBuf>,
}

/// Whether to use HEC indexer acknowledgement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AckMode {
    /// Require it: a 200 without `ackId` blocks the sink.
    True,
    /// Never: a 200 settles the events.
    False,
    /// Use it when the 200 carries an `ackId`.
    #[default]
    Auto,
}

impl<'de> Deserialize<'de> for AckMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Bool(bool),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Bool(true) => Ok(AckMode::True),
            Either::Bool(false) => Ok(AckMode::False),
            Either::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(AckMode::True),
                "false" => Ok(AckMode::False),
                "auto" => Ok(AckMode::Auto),
                other => Err(serde::de::Error::custom(format!(
                    "ack must be true, false or \"auto\", got `{other}`"
                ))),
            },
        }
    }
}

fn default_sourcetype() -> String {
    "sigsci:request".to_string()
}
fn default_source() -> String {
    "sigsci-export".to_string()
}
fn default_true() -> bool {
    true
}
fn default_batch_max_bytes() -> usize {
    1_000_000
}
fn default_batch_max_events() -> usize {
    10_000
}
fn default_linger_ms() -> u64 {
    1000
}
fn default_in_flight() -> usize {
    4
}
fn default_ack_timeout_secs() -> u64 {
    300
}
fn default_ack_poll_ms() -> u64 {
    2000
}
fn default_timeout_secs() -> u64 {
    60
}

/// Validated `type = "splunk_hec"` sink. `Debug` shows the token as `***`.
#[derive(Debug, Clone)]
pub struct HecConfig {
    /// Sink name.
    pub name: String,
    /// HEC base URL, without a trailing slash.
    pub url: Url,
    /// HEC token.
    pub token: Secret,
    /// Index, if set.
    pub index: Option<String>,
    /// Sourcetype.
    pub sourcetype: String,
    /// Source.
    pub source: String,
    /// Host, if set.
    pub host: Option<String>,
    /// Event shape.
    pub format: Format,
    /// Header names to redact.
    pub redact_headers: Vec<String>,
    /// gzip request bodies.
    pub gzip: bool,
    /// Most encoded bytes per request.
    pub batch_max_bytes: usize,
    /// Most events per batch.
    pub batch_max_events: usize,
    /// Batch linger.
    pub linger: Duration,
    /// Requests in flight at once.
    pub in_flight: usize,
    /// Indexer acknowledgement mode.
    pub ack: AckMode,
    /// Give up on an acknowledgement (and resend) after this long.
    pub ack_timeout: Duration,
    /// Interval between acknowledgement queries.
    pub ack_poll: Duration,
    /// Request timeout.
    pub timeout: Duration,
    /// Extra CA file.
    pub ca_file: Option<PathBuf>,
}

impl HecConfig {
    /// A config with every default, for `url` and `token` (tests and the receiver's docs).
    pub fn new(url: Url, token: Secret) -> HecConfig {
        HecConfig {
            name: "splunk_hec".to_string(),
            url,
            token,
            index: None,
            sourcetype: default_sourcetype(),
            source: default_source(),
            host: None,
            format: Format::Raw,
            redact_headers: crate::pipeline::default_redact_headers(),
            gzip: true,
            batch_max_bytes: default_batch_max_bytes(),
            batch_max_events: default_batch_max_events(),
            linger: Duration::from_millis(default_linger_ms()),
            in_flight: default_in_flight(),
            ack: AckMode::Auto,
            ack_timeout: Duration::from_secs(default_ack_timeout_secs()),
            ack_poll: Duration::from_millis(default_ack_poll_ms()),
            timeout: Duration::from_secs(default_timeout_secs()),
            ca_file: None,
        }
    }
}

fn range<T: PartialOrd + std::fmt::Display + Copy>(
    key: String,
    v: T,
    lo: T,
    hi: T,
) -> Result<T, ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::new(
            key,
            format!("must be between {lo} and {hi}, got {v}"),
        ));
    }
    Ok(v)
}

fn non_empty(key: String, v: Option<String>) -> Result<Option<String>, ConfigError> {
    match v {
        Some(s) if s.trim().is_empty() => Err(ConfigError::new(
            key,
            "is empty: remove the line to use the default",
        )),
        Some(s) if s.chars().any(char::is_control) => {
            Err(ConfigError::new(key, "contains control characters"))
        }
        other => Ok(other),
    }
}

impl RawHecSink {
    /// Checks every field of `sinks[i]` and resolves the token.
    pub(crate) fn validate(self, i: usize) -> Result<HecConfig, ConfigError> {
        let key = |f: &str| format!("sinks[{i}].{f}");
        let name = self.name.unwrap_or_else(|| "splunk_hec".to_string());
        let url = validate_url(&key("url"), self.url)?;
        let token = resolve_sink_secret(
            &key("token"),
            &name,
            "token",
            self.token,
            self.token_file.as_deref(),
        )?
        .ok_or_else(|| {
            ConfigError::new(
                key("token"),
                format!(
                    "missing: set token_file, {} or token",
                    crate::config::sink_secret_env(&name, "token")
                ),
            )
        })?;
        if token.expose().chars().any(|c| !c.is_ascii_graphic()) {
            return Err(ConfigError::new(
                key("token"),
                "contains spaces or non-printable characters: copy the HEC token value only \
                 (without the `Splunk ` prefix)",
            ));
        }
        let index = non_empty(key("index"), self.index)?;
        let host = non_empty(key("host"), self.host)?;
        let sourcetype = non_empty(key("sourcetype"), Some(self.sourcetype))?.unwrap_or_default();
        let source = non_empty(key("source"), Some(self.source))?.unwrap_or_default();
        let batch_max_bytes = range(
            key("batch_max_bytes"),
            self.batch_max_bytes,
            1024,
            838_860_800,
        )?;
        let batch_max_events = range(key("batch_max_events"), self.batch_max_events, 1, 1_000_000)?;
        let linger_ms = range(key("linger_ms"), self.linger_ms, 0, 60_000)?;
        let in_flight = range(key("in_flight"), self.in_flight, 1, 64)?;
        let ack_timeout_secs = range(key("ack_timeout_secs"), self.ack_timeout_secs, 1, 86_400)?;
        let ack_poll_ms = range(key("ack_poll_ms"), self.ack_poll_ms, 10, 600_000)?;
        let timeout_secs = range(key("timeout_secs"), self.timeout_secs, 1, 3600)?;
        Ok(HecConfig {
            name,
            url,
            token,
            index,
            sourcetype,
            source,
            host,
            format: self.format,
            redact_headers: self.redact_headers,
            gzip: self.gzip,
            batch_max_bytes,
            batch_max_events,
            linger: Duration::from_millis(linger_ms),
            in_flight,
            ack: self.ack,
            ack_timeout: Duration::from_secs(ack_timeout_secs),
            ack_poll: Duration::from_millis(ack_poll_ms),
            timeout: Duration::from_secs(timeout_secs),
            ca_file: self.ca_file,
        })
    }
}

fn validate_url(key: &str, url: Option<String>) -> Result<Url, ConfigError> {
    let text = url
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            ConfigError::new(key, "missing: the HEC base URL, e.g. https://splunk:8088")
        })?;
    // Never echo the text back: it may hold credentials.
    let url =
        Url::parse(&text).map_err(|e| ConfigError::new(key, format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(ConfigError::new(
            key,
            format!("scheme must be https or http, got `{}`", url.scheme()),
        ));
    }
    refuse_embedded_credentials(
        key,
        &url,
        "put the HEC token in token_file or the environment",
    )?;
    // HEC sends its token with every request.
    refuse_cleartext(key, &url, "the HEC token")?;
    if url.path().contains("/services/collector") {
        return Err(ConfigError::new(
            key,
            "give the HEC base URL without /services/collector..., e.g. https://splunk:8088",
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(extra: &str) -> Result<HecConfig, ConfigError> {
        let text = format!("url = \"https://splunk:8088/\"\ntoken = \"abc-123\"\n{extra}");
        let raw: RawHecSink = toml_parse(&text);
        raw.validate(0)
    }

    fn toml_parse(text: &str) -> RawHecSink {
        config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap()
    }

    #[test]
    fn defaults() {
        let c = raw("").unwrap();
        assert_eq!(c.name, "splunk_hec");
        assert_eq!(c.url.as_str(), "https://splunk:8088/");
        assert_eq!(c.sourcetype, "sigsci:request");
        assert_eq!(c.source, "sigsci-export");
        assert!(c.gzip && c.host.is_none() && c.index.is_none());
        assert_eq!(c.batch_max_bytes, 1_000_000);
        assert_eq!(c.batch_max_events, 10_000);
        assert_eq!(c.in_flight, 4);
        assert_eq!(c.ack, AckMode::Auto);
        assert_eq!(c.ack_timeout, Duration::from_secs(300));
        assert_eq!(c.ack_poll, Duration::from_millis(2000));
        assert!(!format!("{c:?}").contains("abc-123"), "token hidden");
    }

    #[test]
    fn the_documented_example_and_the_simulator_config_parse() {
        let example = include_str!("../../../config/example.toml");
        let start = example
            .find("# type = \"splunk_hec\"")
            .expect("example has a HEC sink");
        let block: String = example[start..]
            .lines()
            // The block ends at the first blank line (the next sink's example follows).
            .take_while(|l| !l.trim().is_empty())
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                !l.starts_with('#') && !l.starts_with("token_file") && !l.starts_with("ca_file")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let c =
            toml_parse(&format!("{block}token = \"t\"\n").replace("type = \"splunk_hec\"\n", ""))
                .validate(0)
                .unwrap();
        let d = raw("").unwrap();
        assert_eq!(
            c.batch_max_bytes, d.batch_max_bytes,
            "example shows the defaults"
        );
        assert_eq!(c.ack_timeout, d.ack_timeout);
        assert_eq!(c.linger, d.linger);
        let sim = crate::config::load(
            crate::config::Source::Embedded(include_str!("../../../config/simulator-hec.toml")),
            &[],
        )
        .unwrap();
        assert!(matches!(
            sim.sinks[0],
            crate::config::SinkConfig::SplunkHec(_)
        ));
    }

    #[test]
    fn ack_takes_booleans_and_auto() {
        assert_eq!(raw("ack = true").unwrap().ack, AckMode::True);
        assert_eq!(raw("ack = false").unwrap().ack, AckMode::False);
        assert_eq!(raw("ack = \"auto\"").unwrap().ack, AckMode::Auto);
    }

    #[test]
    fn bad_values_name_their_key() {
        for (line, key) in [
            ("in_flight = 0", "sinks[0].in_flight"),
            ("batch_max_bytes = 10", "sinks[0].batch_max_bytes"),
            ("ack_timeout_secs = 0", "sinks[0].ack_timeout_secs"),
            ("ack_poll_ms = 1", "sinks[0].ack_poll_ms"),
            ("timeout_secs = 0", "sinks[0].timeout_secs"),
            ("index = \" \"", "sinks[0].index"),
        ] {
            assert_eq!(raw(line).unwrap_err().key, key, "{line}");
        }
        for url in [
            "ftp://x",
            "https://u:p@splunk:8088",
            "https://splunk:8088/?token=x",
            "https://splunk:8088/services/collector/event",
            "not a url",
            // The token would cross the network in cleartext; loopback (the receiver) is fine.
            "http://splunk.example.com:8088",
        ] {
            let r: RawHecSink = toml_parse(&format!("url = \"{url}\"\ntoken = \"t\""));
            assert_eq!(r.validate(0).unwrap_err().key, "sinks[0].url", "{url}");
        }
        assert!(raw("").is_ok());
        let r: RawHecSink = toml_parse("url = \"http://127.0.0.1:8088\"\ntoken = \"t\"");
        assert!(r.validate(0).is_ok());
        let r: RawHecSink = toml_parse("url = \"https://s:8088\"\ntoken = \"Splunk abc\"");
        let e = r.validate(0).unwrap_err();
        assert_eq!(e.key, "sinks[0].token");
        assert!(!e.to_string().contains("abc"));
        let r: RawHecSink = toml_parse("url = \"https://s:8088\"\nname = \"nokey\"");
        assert_eq!(r.validate(0).unwrap_err().key, "sinks[0].token");
    }
}
