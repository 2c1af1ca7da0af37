//! Loading: the TOML file (or embedded text), then the environment, then overrides, deserialized
//! into [`RawConfig`] and validated into [`Config`].

use std::path::{Path, PathBuf};

use super::{Config, ConfigError, RawConfig, RawSink, file_types, parse_error, paths};
use crate::secret::Secret;

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub enum Source<'a> {
    /// A TOML file, then the environment.
    File(&'a Path),
    /// A TOML text (the embedded demo default), without environment overrides.
    Embedded(&'a str),
}

/// Reads, layers and validates the configuration. `overrides` are `(dotted.key, value)` pairs
/// applied last (the demo uses them for the simulator's address and a temporary state file).
pub fn load(source: Source<'_>, overrides: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let file = match &source {
        Source::File(p) => Some(p.to_path_buf()),
        Source::Embedded(_) => None,
    };
    load_inner(source, overrides, &|k| std::env::var(k).ok()).map_err(|mut e| {
        e.file = file;
        e
    })
}

/// What `status` and `dead-letters` need from the configuration: where the state file is and
/// which sinks are configured. Never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateView {
    /// `spool.path`.
    pub spool_path: PathBuf,
    /// The configured sinks' names, in config order.
    pub sinks: Vec<String>,
}

/// Reads the configuration file and the environment as [`load`] does, but keeps only the
/// [`StateView`]: no secret is required or read, so `status` works where the service's
/// credentials are not readable (systemd credentials exist only while the service runs, and
/// only for its user).
pub fn load_state_view(path: &Path) -> Result<StateView, ConfigError> {
    let view = layered_raw(Source::File(path), &[]).and_then(|raw| {
        paths::check_spool_path(&raw.spool.path)?;
        let sinks = raw
            .sinks
            .iter()
            .map(|sink| {
                // The defaults of each sink type's `validate`; a test keeps them in step.
                let (name, default) = match sink {
                    RawSink::Stdout(s) => (&s.name, "stdout"),
                    RawSink::SplunkHec(s) => (&s.name, "splunk_hec"),
                    RawSink::Elasticsearch(s) => (&s.name, "elasticsearch"),
                };
                name.clone().unwrap_or_else(|| default.to_string())
            })
            .collect();
        Ok(StateView {
            spool_path: raw.spool.path,
            sinks,
        })
    });
    view.map_err(|mut e| {
        e.file = Some(path.to_path_buf());
        e
    })
}

pub(super) fn load_inner(
    source: Source<'_>,
    overrides: &[(&str, &str)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let with_env = matches!(source, Source::File(_));
    let mut raw = layered_raw(source, overrides)?;
    if with_env {
        // The vendor's conventional variables fill in only what nothing else set.
        if raw.api.email.is_none() {
            raw.api.email = env("SIGSCI_EMAIL");
        }
        if raw.api.token.is_none() && raw.api.token_file.is_none() {
            raw.api.token = env("SIGSCI_TOKEN").map(Secret::new);
        }
    }
    Config::validate(raw, crate::time::now())
}

/// The file (or embedded text), then for a file the `SIGSCI_EXPORT__` environment, then
/// `overrides`, deserialized: exactly what the operator wrote, nothing resolved.
fn layered_raw(source: Source<'_>, overrides: &[(&str, &str)]) -> Result<RawConfig, ConfigError> {
    use config::{Environment, File, FileFormat};

    let mut builder = config::Config::builder();
    let (text, with_env) = match source {
        Source::File(path) => (paths::read_config_file(path)?, true),
        Source::Embedded(text) => (text.to_string(), false),
    };
    // Parsed here first: syntax errors without the text of the line (it may hold a secret),
    // and the file's own types checked before the `config` crate converts them.
    let document = parse_error::parse_document(&text)?;
    file_types::check(&document)?;
    builder = builder.add_source(File::from_str(&text, FileFormat::Toml));
    if with_env {
        // `__` separates the prefix too, so Kubernetes' generated `SIGSCI_EXPORT_SERVICE_HOST`
        // never lands in a deny_unknown_fields config.
        builder = builder.add_source(
            Environment::with_prefix("SIGSCI_EXPORT")
                .prefix_separator("__")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("api.sites")
                .with_list_parse_key("filters.include_tags")
                .with_list_parse_key("filters.exclude_tags")
                .try_parsing(true),
        );
    }
    for (k, v) in overrides {
        builder = builder
            .set_override(*k, *v)
            .map_err(|e| ConfigError::new(*k, e.to_string()))?;
    }
    let layered = builder.build().map_err(config_crate_error)?;
    layered.try_deserialize().map_err(config_crate_error)
}

/// Turns the `config` crate's messages into key + reason. Its text already names the key
/// (`unknown field `tokn` ... for key `api``), so keep it and pull the key out when we can.
fn config_crate_error(e: config::ConfigError) -> ConfigError {
    let text = e.to_string();
    let key = text
        .rsplit_once("for key `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(k, _)| k.to_string());
    let field = text
        .split_once("unknown field `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(f, _)| f.to_string());
    let key = match (key, field) {
        (Some(k), Some(f)) => format!("{k}.{f}"),
        (None, Some(f)) => f,
        (Some(k), None) => k,
        (None, None) => "config".to_string(),
    };
    ConfigError::new(key, text)
}
