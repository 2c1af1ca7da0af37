//! Environment variables that look like ours but change nothing. Overrides
//! (`SIGSCI_EXPORT__SECTION__KEY`) are read by the `config` crate in any case, and a key among
//! them that names no setting is already an error; everything else with the `SIGSCI_EXPORT`
//! prefix is read by exact name or not at all, so a misspelling (one underscore, lower case, a
//! sink that does not exist) would be ignored without a word. Each gets a warning that names
//! the variable, never its value (it may be a secret), and says what was probably meant.

use super::{Config, SinkConfig, sink_secret_env};

/// The sections of the file, for the "one underscore" guess.
const SECTIONS: &[&str] = &["api", "poll", "spool", "admin", "filters"];

/// One warning per `SIGSCI_EXPORT*` variable of this process (any case) that no setting reads.
/// With `cfg` (the configuration loaded), sink secret variables are checked against the
/// configured sinks; without it they are not judged.
pub fn env_warnings(cfg: Option<&Config>) -> Vec<String> {
    let names = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    let sink_vars = cfg.map(sink_secret_vars);
    unmatched(names, sink_vars.as_deref())
}

/// Every variable a configured sink may read its secrets from.
fn sink_secret_vars(cfg: &Config) -> Vec<String> {
    let mut vars = Vec::new();
    for sink in &cfg.sinks {
        let (name, fields): (&str, &[&str]) = match sink {
            SinkConfig::Stdout(_) => continue,
            SinkConfig::SplunkHec(c) => (&c.name, &["token"]),
            SinkConfig::Elasticsearch(c) => (&c.name, &["password", "api_key", "bearer_token"]),
        };
        vars.extend(fields.iter().map(|f| sink_secret_env(name, f)));
    }
    vars
}

fn unmatched(mut names: Vec<String>, sink_vars: Option<&[String]>) -> Vec<String> {
    names.sort();
    names
        .into_iter()
        .filter_map(|name| {
            let hint = hint(&name, sink_vars)?;
            Some(format!(
                "environment variable `{name}` matches no setting and is ignored: {hint}"
            ))
        })
        .collect()
}

/// `None` when `name` is not ours or is read; otherwise what was probably meant.
fn hint(name: &str, sink_vars: Option<&[String]>) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    if !lower.starts_with("sigsci_export") {
        return None;
    }
    // Overrides: read in any case, and an unknown key among them stops the load already.
    if lower.starts_with("sigsci_export__") || name == "SIGSCI_EXPORT_CONFIG" {
        return None;
    }
    if is_kubernetes_service_link(name) {
        return None;
    }
    const FORMS: &str = "overrides are SIGSCI_EXPORT__SECTION__KEY (two underscores after \
        SIGSCI_EXPORT and between section and key, e.g. SIGSCI_EXPORT__API__CORP), sink secrets \
        SIGSCI_EXPORT_SINK_<NAME>_<FIELD> in upper case, the config file SIGSCI_EXPORT_CONFIG";
    if lower.starts_with("sigsci_export_sink_") {
        // Without the configuration the sinks are unknown: not judged.
        let vars = sink_vars?;
        if vars.iter().any(|v| v == name) {
            return None;
        }
        let upper = name.to_ascii_uppercase();
        return Some(if vars.contains(&upper) {
            format!("names are case-sensitive: did you mean {upper}?")
        } else if vars.is_empty() {
            "no configured sink reads a secret from the environment".to_string()
        } else {
            format!(
                "no configured sink reads it (sink names upper case, other characters as `_`): \
                 the configured sinks read {}",
                vars.join(", ")
            )
        });
    }
    if lower == "sigsci_export_config" {
        return Some("names are case-sensitive: did you mean SIGSCI_EXPORT_CONFIG?".to_string());
    }
    let guess = lower.strip_prefix("sigsci_export_").and_then(|rest| {
        SECTIONS.iter().find_map(|section| {
            let key = rest.strip_prefix(section)?.strip_prefix('_')?;
            (!key.is_empty() && !key.starts_with('_')).then(|| {
                format!(
                    "SIGSCI_EXPORT__{}__{}",
                    section.to_ascii_uppercase(),
                    key.to_ascii_uppercase()
                )
            })
        })
    });
    Some(match guess {
        Some(guess) => format!("did you mean {guess}? ({FORMS})"),
        None => FORMS.to_string(),
    })
}

/// What Kubernetes defines for a Service named `sigsci-export` (`enableServiceLinks`): not
/// ours, and not worth a warning in every pod.
fn is_kubernetes_service_link(name: &str) -> bool {
    name == "SIGSCI_EXPORT_SERVICE_HOST"
        || name == "SIGSCI_EXPORT_SERVICE_PORT"
        || name.starts_with("SIGSCI_EXPORT_SERVICE_PORT_")
        || name == "SIGSCI_EXPORT_PORT"
        || name.starts_with("SIGSCI_EXPORT_PORT_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warned(names: &[&str], sink_vars: Option<&[&str]>) -> Vec<String> {
        let vars: Option<Vec<String>> =
            sink_vars.map(|v| v.iter().map(|s| s.to_string()).collect());
        unmatched(
            names.iter().map(|s| s.to_string()).collect(),
            vars.as_deref(),
        )
    }

    #[test]
    fn what_is_read_is_not_warned_about() {
        let read = [
            "SIGSCI_EXPORT_CONFIG",
            "SIGSCI_EXPORT__API__CORP",
            "sigsci_export__api__corp",
            "SIGSCI_EXPORT_SINK_SPLUNK_TOKEN",
            "SIGSCI_EXPORT_SERVICE_HOST",
            "SIGSCI_EXPORT_SERVICE_PORT_ADMIN",
            "SIGSCI_EXPORT_PORT_9187_TCP_ADDR",
            "SIGSCI_TOKEN",
            "SIGSCI_EMAIL",
            "PATH",
        ];
        assert!(warned(&read, Some(&["SIGSCI_EXPORT_SINK_SPLUNK_TOKEN"])).is_empty());
    }

    #[test]
    fn every_misspelling_is_named_with_what_was_meant() {
        let sinks = [
            "SIGSCI_EXPORT_SINK_SPLUNK_TOKEN",
            "SIGSCI_EXPORT_SINK_ES_PASSWORD",
        ];
        let cases = [
            (
                "SIGSCI_EXPORT_API_CORP",
                "did you mean SIGSCI_EXPORT__API__CORP?",
            ),
            (
                "SIGSCI_EXPORT_API_REQUESTS_PER_MINUTE",
                "did you mean SIGSCI_EXPORT__API__REQUESTS_PER_MINUTE?",
            ),
            (
                "sigsci_export_spool_path",
                "did you mean SIGSCI_EXPORT__SPOOL__PATH?",
            ),
            (
                "SIGSCI_EXPORTAPI__CORP",
                "overrides are SIGSCI_EXPORT__SECTION__KEY",
            ),
            ("sigsci_export_config", "did you mean SIGSCI_EXPORT_CONFIG?"),
            (
                "sigsci_export_sink_splunk_token",
                "did you mean SIGSCI_EXPORT_SINK_SPLUNK_TOKEN?",
            ),
            (
                "SIGSCI_EXPORT_SINK_NOSUCH_TOKEN",
                "SIGSCI_EXPORT_SINK_ES_PASSWORD",
            ),
            (
                "SIGSCI_EXPORT_SINK_SPLUNK_PASSWORD",
                "the configured sinks read",
            ),
            ("SIGSCI_EXPORT", "overrides are"),
        ];
        for (name, hint) in cases {
            let w = warned(&[name], Some(&sinks));
            assert_eq!(w.len(), 1, "{name}: {w:?}");
            assert!(w[0].contains(&format!("`{name}`")), "{w:?}");
            assert!(w[0].contains(hint), "{name}: {w:?}");
        }
        // Without the configuration, sink variables are not judged; the rest still are.
        assert!(warned(&["SIGSCI_EXPORT_SINK_NOSUCH_TOKEN"], None).is_empty());
        assert_eq!(warned(&["SIGSCI_EXPORT_API_CORP"], None).len(), 1);
        assert!(
            warned(&["SIGSCI_EXPORT_SINK_X_TOKEN"], Some(&[]))[0]
                .contains("no configured sink reads a secret")
        );
    }
}
