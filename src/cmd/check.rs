//! `sigsci-export check`: is this configuration going to work?
//!
//! The config is loaded and validated by the same code `run` uses. Then [`preflight`]
//! builds what `run` builds before it starts (the feed client and every sink), again with the
//! same code and without network I/O: a CA file that does not parse is as much a configuration
//! error as a misspelt key, in `check --offline` (systemd's `ExecStartPre`) as in `run`. Then,
//! without writing anything to the real state file: the state directory is writable; unless
//! offline, the feed API answers for the corp and for every site (the smallest valid window),
//! and every sink's healthcheck passes. Each check is one line with OK or the cause and the fix.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use super::preflight::{Preflight, PreflightError, preflight};
use super::{Failure, Outcome, Output, common};
use crate::cli::ConfigArg;
use crate::config::{Config, Sites};
use crate::source::{ProbeOutcome, Source};

/// `check`: prints one line per check, then exits 2 when a setting cannot work (as `run`
/// would), 1 when a check failed, 0 otherwise.
pub async fn command(config: &ConfigArg, offline: bool) -> Outcome {
    let cfg = match common::load_file(config) {
        Ok(cfg) => cfg,
        Err(e) => return e.into(),
    };
    let lines = run(&cfg, Some(&config.path), offline).await;
    let (mut failed, mut invalid) = (0, 0);
    let mut stdout = String::new();
    for l in &lines {
        stdout.push_str(&format!("{l}\n"));
        match l.verdict {
            Verdict::Fail => failed += 1,
            Verdict::Invalid => invalid += 1,
            Verdict::Ok | Verdict::Warn => {}
        }
    }
    let result = if invalid > 0 {
        Err(Failure::Config(format!(
            "configuration error: {invalid} setting(s) cannot work (the FAIL lines above); `run` would exit 2 as well"
        )))
    } else if failed > 0 {
        Err(Failure::Runtime(anyhow::anyhow!(
            "{failed} check(s) failed"
        )))
    } else {
        Ok(())
    };
    Outcome {
        output: Output::stdout(stdout),
        result,
    }
}

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
    let probes = built.source().healthcheck().await;
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
    for (name, sink) in built.sinks() {
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
