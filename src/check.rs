//! `sigsci-export check`: is this configuration going to work?
//!
//! The config was already loaded and validated by the same code `run` uses. Then, without
//! writing anything to the real state file: the state directory is writable; unless offline,
//! the feed API answers for the corp and for every site (the smallest valid window), and every
//! sink's healthcheck passes. Each check is one line with OK or the cause and the fix.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::config::{Config, Sites};
use crate::source::SourceError;
use crate::source::client::FeedClient;
use crate::store::Store;
use crate::time::{align_down, fmt as fmt_time};

/// How long one sink healthcheck may take before it counts as failed.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// The verdict of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Works.
    Ok,
    /// Works, but something deserves attention.
    Warn,
    /// Does not work.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct CheckLine {
    /// Outcome.
    pub verdict: Verdict,
    /// What was checked (`api`, `site www`, `sink splunk`, ...).
    pub what: String,
    /// Details: what was seen, or the cause and the fix.
    pub detail: String,
}

impl fmt::Display for CheckLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.verdict {
            Verdict::Ok => "OK  ",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        };
        write!(f, "{tag} {}: {}", self.what, self.detail)
    }
}

fn line(verdict: Verdict, what: impl Into<String>, detail: impl Into<String>) -> CheckLine {
    CheckLine {
        verdict,
        what: what.into(),
        detail: detail.into(),
    }
}

/// Runs every check and returns one line each, in order. `config_file` is checked for
/// permissions when given.
pub async fn run(cfg: &Config, config_file: Option<&Path>, offline: bool) -> Vec<CheckLine> {
    let mut lines = vec![line(
        Verdict::Ok,
        "config",
        format!(
            "corp `{}`, {}, {} sink(s): {}",
            cfg.api.corp,
            match &cfg.api.sites {
                Sites::All => "every site (discovered)".to_string(),
                Sites::List(s) => format!("sites {}", s.join(", ")),
            },
            cfg.sinks.len(),
            cfg.sinks
                .iter()
                .map(|s| s.name().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )];
    if let Some(warning) = config_file.and_then(crate::config::secret_permissions_warning) {
        lines.push(line(Verdict::Warn, "config file", warning));
    }
    lines.push(check_state_dir(&cfg.spool.path));
    if offline {
        return lines;
    }
    lines.extend(check_api(cfg).await);
    lines.extend(check_sinks(cfg).await);
    lines
}

fn check_state_dir(db: &Path) -> CheckLine {
    let dir = match db.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => std::path::PathBuf::from("."),
    };
    let what = "state";
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return line(
            Verdict::Fail,
            what,
            format!(
                "cannot create `{}` for spool.path: {e}; create it or point spool.path elsewhere",
                dir.display()
            ),
        );
    }
    match tempfile::Builder::new()
        .prefix(".sigsci-export-check")
        .tempfile_in(&dir)
    {
        Ok(_) => line(
            Verdict::Ok,
            what,
            format!("`{}` is writable", dir.display()),
        ),
        Err(e) => line(
            Verdict::Fail,
            what,
            format!(
                "`{}` is not writable: {e}; the service user needs write access (systemd: StateDirectory=)",
                dir.display()
            ),
        ),
    }
}

async fn check_api(cfg: &Config) -> Vec<CheckLine> {
    let mut api = cfg.api.clone();
    // One retry at most: a check must answer in seconds, not back off for minutes.
    api.max_attempts = api.max_attempts.min(2);
    let client = match FeedClient::with_retry_delays(
        &api,
        Duration::from_millis(200),
        Duration::from_secs(2),
    ) {
        Ok(c) => c,
        Err(e) => return vec![line(Verdict::Fail, "api", e.to_string())],
    };
    let mut lines = Vec::new();
    let listed = client.list_sites().await;
    match &listed {
        Ok(sites) => lines.push(line(
            Verdict::Ok,
            "api",
            format!(
                "{} accepted the credentials of `{}`; corp `{}` has {} site(s): {}",
                cfg.api.base_url,
                cfg.api.auth.email,
                cfg.api.corp,
                sites.len(),
                sites
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        Err(e) => lines.push(line(Verdict::Fail, "api", e.to_string())),
    }
    let sites: Vec<String> = match (&cfg.api.sites, &listed) {
        (Sites::List(s), _) => s.clone(),
        (Sites::All, Ok(found)) => found.iter().map(|s| s.name.clone()).collect(),
        (Sites::All, Err(_)) => Vec::new(),
    };
    // The smallest window the API accepts: the newest full minute it serves.
    let until = align_down(crate::time::now() - cfg.poll.delay_secs.max(300));
    let from = until - 60;
    for site in sites {
        let what = format!("site {site}");
        match client.first_page(&site, from, until).await {
            Ok(page) => lines.push(line(
                Verdict::Ok,
                what,
                format!(
                    "feed answered: {} request(s) in {} .. {}",
                    page.events.len(),
                    fmt_time(from),
                    fmt_time(until)
                ),
            )),
            Err(e @ SourceError::NotFound { .. }) => {
                let hint = match &listed {
                    Ok(found) => match found.iter().find(|s| {
                        s.display_name
                            .as_deref()
                            .is_some_and(|d| d.eq_ignore_ascii_case(&site))
                    }) {
                        Some(s) => format!(
                            "; `{site}` is the display name of site `{}`: use sites = [\"{}\"]",
                            s.name, s.name
                        ),
                        None => format!(
                            "; the corp's sites are: {}",
                            found
                                .iter()
                                .map(|s| s.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    },
                    Err(_) => String::new(),
                };
                lines.push(line(Verdict::Fail, what, format!("{e}{hint}")));
            }
            Err(e) => lines.push(line(Verdict::Fail, what, e.to_string())),
        }
    }
    lines
}

async fn check_sinks(cfg: &Config) -> Vec<CheckLine> {
    // Sinks may keep state (the HEC ack channel): build them on a scratch store so `check`
    // never writes to the service's state file.
    let scratch = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            return vec![line(
                Verdict::Fail,
                "sinks",
                format!("cannot create a scratch directory: {e}"),
            )];
        }
    };
    let store = match Store::open(&scratch.path().join("check.db")) {
        Ok(s) => s,
        Err(e) => return vec![line(Verdict::Fail, "sinks", e.to_string())],
    };
    let mut lines = Vec::new();
    for sink_cfg in &cfg.sinks {
        let what = format!("sink {}", sink_cfg.name());
        let sink = match crate::sink::build(sink_cfg, &store).await {
            Ok((sink, _)) => sink,
            Err(e) => {
                lines.push(line(Verdict::Fail, what, e.reason));
                continue;
            }
        };
        match tokio::time::timeout(HEALTHCHECK_TIMEOUT, sink.healthcheck()).await {
            Ok(Ok(())) => lines.push(line(Verdict::Ok, what, "healthcheck passed")),
            Ok(Err(e)) => lines.push(line(Verdict::Fail, what, e.to_string())),
            Err(_) => lines.push(line(
                Verdict::Fail,
                what,
                format!(
                    "no answer within {} s: is the URL reachable from this host (firewall, proxy)?",
                    HEALTHCHECK_TIMEOUT.as_secs()
                ),
            )),
        }
    }
    lines
}
