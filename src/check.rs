//! `sigsci-export check`: is this configuration going to work?
//!
//! The config was already loaded and validated by the same code `run` uses. Then [`preflight`]
//! builds what `run` builds before it starts (the feed client and every sink), again with the
//! same code and without network I/O: a CA file that does not parse is as much a configuration
//! error as a misspelt key, in `check --offline` (systemd's `ExecStartPre`) as in `run`. Then,
//! without writing anything to the real state file: the state directory is writable; unless
//! offline, the feed API answers for the corp and for every site (the smallest valid window),
//! and every sink's healthcheck passes. Each check is one line with OK or the cause and the fix.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, Sites};
use crate::sink::Sink;
use crate::source::sigsci_feed::SigsciFeed;
use crate::source::{ProbeOutcome, Source};
use crate::store::Store;

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
    /// Cannot work as configured: a configuration error (exit 2, as `run` would).
    Invalid,
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
            Verdict::Fail | Verdict::Invalid => "FAIL",
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
            sink_names(cfg)
        ),
    )];
    if let Some(warning) = config_file.and_then(crate::config::secret_permissions_warning) {
        lines.push(line(Verdict::Warn, "config file", warning));
    }
    if config_file.is_some() {
        // Only a config file is layered with the environment.
        let env = crate::config::env_warnings(Some(cfg));
        lines.extend(
            env.into_iter()
                .map(|w| line(Verdict::Warn, "environment", w)),
        );
    }
    if let Some(warning) = cfg.admin.exposure_warning() {
        lines.push(line(Verdict::Warn, "admin", warning));
    }
    lines.push(check_state_dir(&cfg.spool.path));
    let built = match preflight(cfg).await {
        Ok(built) => built,
        Err(PreflightError::Config(problems)) => {
            lines.extend(
                problems
                    .into_iter()
                    .map(|p| line(Verdict::Invalid, p.what, p.reason)),
            );
            return lines;
        }
        Err(PreflightError::Scratch(reason)) => {
            lines.push(line(Verdict::Fail, "build", reason));
            return lines;
        }
    };
    lines.push(line(
        Verdict::Ok,
        "build",
        format!(
            "the feed client and every sink ({}) build as `run` builds them",
            sink_names(cfg)
        ),
    ));
    if offline {
        return lines;
    }
    lines.extend(check_source(&built).await);
    lines.extend(check_sinks(&built).await);
    lines
}

fn sink_names(cfg: &Config) -> String {
    cfg.sinks
        .iter()
        .map(|s| s.name().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One setting that cannot work.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The component (`api`, `sink splunk`).
    pub what: String,
    /// The cause and the fix.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.reason)
    }
}

/// Why [`preflight`] failed.
#[derive(Debug)]
pub enum PreflightError {
    /// Settings that cannot work (every one found, not only the first): a configuration error.
    Config(Vec<Problem>),
    /// No scratch store for building the sinks could be created: a problem of this host, not
    /// of the configuration.
    Scratch(String),
}

/// What [`preflight`] built. The sinks sit on a scratch store that lives as long as they do.
pub struct Preflight {
    source: SigsciFeed,
    // Declared before `_scratch`: the sinks (which hold the store) drop first.
    sinks: Vec<(String, Arc<dyn Sink>)>,
    _scratch: (Store, tempfile::TempDir),
}

impl Preflight {
    /// The feed, for `run` and `backfill` to poll.
    pub fn into_source(self) -> SigsciFeed {
        self.source
    }
}

/// Builds what `run` and `backfill` build before they start, with the same code and without
/// network I/O: the feed client and every sink. Sinks keep state in the store (the HEC channel
/// and pending acknowledgements, which `ack = false` purges), so they are built on a scratch
/// store: the service's state file is never touched, even while `run` holds it.
pub async fn preflight(cfg: &Config) -> Result<Preflight, PreflightError> {
    let mut problems = Vec::new();
    let source = match SigsciFeed::new(&cfg.api, cfg.poll.delay_secs, &cfg.filters) {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(Problem {
                what: "api".to_string(),
                reason: e.to_string(),
            });
            None
        }
    };
    let (store, dir) = scratch_store(&cfg.spool.path).map_err(PreflightError::Scratch)?;
    let mut sinks = Vec::new();
    for sink_cfg in &cfg.sinks {
        match crate::sink::build(sink_cfg, &store).await {
            Ok((sink, _limits)) => sinks.push((sink_cfg.name().to_string(), sink)),
            Err(e) => problems.push(Problem {
                what: format!("sink {}", sink_cfg.name()),
                reason: e.reason,
            }),
        }
    }
    match source {
        Some(source) if problems.is_empty() => Ok(Preflight {
            source,
            sinks,
            _scratch: (store, dir),
        }),
        _ => Err(PreflightError::Config(problems)),
    }
}

/// A throw-away store in the system's temporary directory, or beside the state file when that
/// is not writable (a read-only root file system without a `/tmp` volume).
fn scratch_store(state: &Path) -> Result<(Store, tempfile::TempDir), String> {
    let state_dir = state
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix(".sigsci-export-scratch");
        b
    };
    let dir = builder.tempdir().or_else(|tmp_err| {
        builder.tempdir_in(state_dir).map_err(|state_err| {
            format!(
                "cannot create a scratch directory to build the sinks in, neither in the \
                     temporary directory ({tmp_err}) nor in `{}` ({state_err}); set TMPDIR to a \
                     writable directory",
                state_dir.display()
            )
        })
    })?;
    let store = Store::open(&dir.path().join("scratch.db"))
        .map_err(|e| format!("cannot create a scratch store to build the sinks on: {e}"))?;
    Ok((store, dir))
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

/// The source's own probes (the API, every site), as check lines.
async fn check_source(built: &Preflight) -> Vec<CheckLine> {
    let probes = built.source.healthcheck().await;
    probes
        .into_iter()
        .map(|p| {
            let verdict = match p.outcome {
                ProbeOutcome::Ok => Verdict::Ok,
                ProbeOutcome::Fail => Verdict::Fail,
                ProbeOutcome::Invalid => Verdict::Invalid,
            };
            line(verdict, p.what, p.detail)
        })
        .collect()
}

async fn check_sinks(built: &Preflight) -> Vec<CheckLine> {
    let mut lines = Vec::new();
    for (name, sink) in &built.sinks {
        let what = format!("sink {name}");
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
