//! Secrets the configuration names: resolving a sink's secret from the file, a `*_file` path or
//! the environment, reading secret files, and the warning for a world-readable config file that
//! holds one inline.

use std::path::Path;

use super::ConfigError;
use crate::secret::Secret;

/// Resolves one secret of a sink from, in order, the config file (`inline`), a `*_file` path,
/// or the environment variable [`sink_secret_env`]`(sink, field)`. `key` names the field in
/// errors (`sinks[0].token`). `Ok(None)` when none is set; an unusable value (empty, blank,
/// several lines: [`Secret::problem`]) is an error.
pub(crate) fn resolve_sink_secret(
    key: &str,
    sink: &str,
    field: &str,
    inline: Option<Secret>,
    file: Option<&Path>,
) -> Result<Option<Secret>, ConfigError> {
    let (secret, from) = match (inline, file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                key,
                format!("set either {field} or {field}_file, not both"),
            ));
        }
        (Some(s), None) => (s, String::new()),
        (None, Some(path)) => return read_secret_file(&format!("{key}_file"), path).map(Some),
        (None, None) => {
            let var = sink_secret_env(sink, field);
            match std::env::var(&var) {
                Ok(v) => (Secret::new(v), format!(" (set by {var})")),
                Err(_) => return Ok(None),
            }
        }
    };
    match secret.problem() {
        Some(problem) => Err(ConfigError::new(key, format!("{problem}{from}"))),
        None => Ok(Some(secret)),
    }
}

/// The environment variable that can hold secret `field` of sink `sink`:
/// `SIGSCI_EXPORT_SINK_<NAME>_<FIELD>`, upper case, other characters as `_`
/// (`splunk-prod`, `token` -> `SIGSCI_EXPORT_SINK_SPLUNK_PROD_TOKEN`).
pub fn sink_secret_env(sink: &str, field: &str) -> String {
    let up = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("SIGSCI_EXPORT_SINK_{}_{}", up(sink), up(field))
}

/// Keys whose value is a secret when written inline in the config file.
const SECRET_KEYS: &[&str] = &["token", "password", "api_key", "bearer_token"];

/// A warning when the config file holds a secret inline and other users can read it.
/// (`*_file` paths, systemd credentials or the environment keep secrets out of the file.)
pub fn secret_permissions_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    if mode & 0o004 == 0 {
        return None;
    }
    // Parsed, not scanned by line: a secret can sit in an inline table
    // (`sinks = [{ type = "splunk_hec", token = "..." }]`) or behind a dotted key
    // (`api.token = "..."`).
    let value: serde_json::Value = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .build()
        .ok()?
        .try_deserialize()
        .ok()?;
    let key = inline_secret(&value, "")?;
    Some(format!(
        "`{}` holds a secret (`{key}`) and is readable by every user (mode {:o}); chmod 600 it, or use {key}_file / the environment instead",
        path.display(),
        mode & 0o777
    ))
}

/// The dotted path (`sinks[1].token`) of the first non-empty secret value in `v`.
fn inline_secret(v: &serde_json::Value, at: &str) -> Option<String> {
    match v {
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            if SECRET_KEYS.contains(&k.as_str()) && v.as_str().is_some_and(|s| !s.is_empty()) {
                Some(path)
            } else {
                inline_secret(v, &path)
            }
        }),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| inline_secret(v, &format!("{at}[{i}]"))),
        _ => None,
    }
}

/// Reads a secret file: the secret alone, a final newline allowed. An empty, whitespace-only
/// or multi-line file is refused here, naming the file and never its content, rather than
/// sending an empty or broken credential on every request.
pub(super) fn read_secret_file(key: &str, path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(key, format!("cannot read `{}`: {e}", path.display())))?;
    let secret = Secret::new(text.trim_end_matches(['\n', '\r']));
    match secret.problem() {
        None => Ok(secret),
        Some(problem) => Err(ConfigError::new(
            key,
            format!(
                "`{}` {problem}: it must hold the secret alone, on one line (a final newline is fine)",
                path.display()
            ),
        )),
    }
}
