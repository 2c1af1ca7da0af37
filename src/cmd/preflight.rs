//! Building what `run` builds before it starts, without network I/O and without touching the
//! state file: the feed client and every sink, with every setting that cannot work reported
//! (not only the first). `check` reports on it; `run` and `backfill` start from its feed, so
//! what `check --offline` accepts is exactly what they accept.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use super::Failure;
use crate::config::Config;
use crate::sink::Sink;
use crate::source::sigsci_feed::SigsciFeed;
use crate::store::Store;

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

    /// The feed, for `check` to probe.
    pub fn source(&self) -> &SigsciFeed {
        &self.source
    }

    /// Every configured sink by name, for `check` to run their healthchecks.
    pub fn sinks(&self) -> &[(String, Arc<dyn Sink>)] {
        &self.sinks
    }
}

/// Whatever fails in the preflight is the configuration's fault (exit 2, so systemd does not
/// restart into the same failure), but for a host that cannot hold a scratch store (exit 1).
impl From<PreflightError> for Failure {
    fn from(e: PreflightError) -> Self {
        match e {
            PreflightError::Config(problems) => Failure::Config(format!(
                "configuration error: {}",
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
            PreflightError::Scratch(reason) => Failure::Runtime(anyhow::anyhow!(reason)),
        }
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
