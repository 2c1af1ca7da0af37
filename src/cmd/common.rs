//! What several commands do the same way: load the config file (and warn about what is around
//! it), open the state file, and find the state file `status` and `dead-letters` read. Each
//! decides the exit code of its failure once, here, so the commands cannot disagree on it.

use std::path::{Path, PathBuf};

use super::Failure;
use crate::cli::ConfigArg;
use crate::config::{self, Config};
use crate::store::{Store, StoreError};

/// For the commands that use the secrets (`check` prints it as a WARN line instead).
pub fn warn_secret_permissions(arg: &ConfigArg) {
    if let Some(w) = config::secret_permissions_warning(&arg.path) {
        tracing::warn!("{w}");
    }
}

/// Loads the config file. When it fails, misspelt `SIGSCI_EXPORT*` variables are warned about
/// first: one may be the cause (`check` lists them itself when the config loads).
pub fn load_file(arg: &ConfigArg) -> Result<Config, Failure> {
    config::load(config::Source::File(&arg.path), &[]).map_err(|e| {
        warn_all(config::env_warnings(None));
        e.into()
    })
}

/// Logs each warning as a WARN line.
pub fn warn_all(warnings: impl IntoIterator<Item = String>) {
    for w in warnings {
        tracing::warn!("{w}");
    }
}

/// Opens the state file for the one process that writes namespace `ns` (see
/// `store::Store::open_exclusive`): another process of the same namespace is a runtime
/// conflict (exit 1: the configuration is fine, and a restart once the other one stopped
/// works); a file that is not a state file is the configuration's fault (exit 2).
pub fn open_store(cfg: &Config, ns: &str) -> Result<Store, Failure> {
    Store::open_exclusive(&cfg.spool.path, ns).map_err(|e| store_failure(e, &cfg.spool.path))
}

/// The exit code of a state file that does not open read-write: 2 for a file that is not a
/// state file, 1 for anything else.
pub fn store_failure(e: StoreError, path: &Path) -> Failure {
    match e {
        StoreError::Foreign(f) => Failure::Config(format!("configuration error: {f}")),
        e => Failure::Runtime(
            anyhow::Error::new(e)
                .context(format!("cannot open the state file `{}`", path.display())),
        ),
    }
}

/// The state file `status` and `dead-letters` work on, and the sinks the config names (`None`
/// with `--state`, when no config is read).
pub struct StateTarget {
    /// The state file.
    pub path: PathBuf,
    /// The configured sinks' names; `None` when no config was read.
    pub sinks: Option<Vec<String>>,
}

/// Without `--state`, reads only what these commands use from the config: never a secret, so
/// they work while the service's credentials are unavailable (service stopped, not root).
pub fn state_target(config: &ConfigArg, state: Option<PathBuf>) -> Result<StateTarget, Failure> {
    match state {
        Some(path) => Ok(StateTarget { path, sinks: None }),
        None => {
            let view = config::load_state_view(&config.path)?;
            Ok(StateTarget {
                path: view.spool_path,
                sinks: Some(view.sinks),
            })
        }
    }
}

/// Opens the target's state file read-only (safe beside a running `run`).
pub fn open_read_only(target: &StateTarget) -> Result<Store, Failure> {
    Store::open_read_only(&target.path).map_err(|e| match e {
        StoreError::Foreign(f) => Failure::Config(f.to_string()),
        e => Failure::Runtime(anyhow::Error::new(e).context(format!(
            "cannot read the state file `{}` (has `run` or `backfill` been started with this config?)",
            target.path.display()
        ))),
    })
}
