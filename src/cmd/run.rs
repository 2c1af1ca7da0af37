//! `sigsci-export run`: the service. Loads the config, builds what `check` builds, takes the
//! state file's `run` namespace, serves the admin endpoint when configured, and polls and
//! delivers until SIGTERM or SIGINT (see [`crate::scheduler::run`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tracing::{error, info};

use super::Failure;
use super::common::{load_file, open_store, warn_all, warn_secret_permissions};
use super::preflight::preflight;
use crate::cli::ConfigArg;
use crate::config::{self, Config};
use crate::health::Health;
use crate::{admin, scheduler, shutdown};

/// `run` with the config file: its warnings first, then [`run`].
pub async fn command(config: &ConfigArg, grace_secs: u64) -> Result<(), Failure> {
    let cfg = load_file(config)?;
    warn_secret_permissions(config);
    warn_all(config::env_warnings(Some(&cfg)));
    warn_all(cfg.admin.exposure_warning());
    run(cfg, Duration::from_secs(grace_secs)).await
}

/// Runs the service on a loaded config (also `demo`'s) until a signal, then lets in-flight
/// work finish for up to `grace`.
pub async fn run(cfg: Config, grace: Duration) -> Result<(), Failure> {
    let source = preflight(&cfg).await?.into_source();
    let store = open_store(&cfg, scheduler::RUN_NS)?;
    let cancel = shutdown::install();
    let health = Health::new();
    if let Some(addr) = cfg.admin.listen {
        let listener = admin::bind(addr)
            .await
            .with_context(|| format!("cannot listen on admin.listen = {addr} (in use? set another port, or \"\" to disable)"))?;
        let bound = listener.local_addr().context("admin listener address")?;
        info!(admin = %bound, "Admin endpoint: /metrics, /healthz, /readyz.");
        let handle = admin::install_recorder();
        let (admin_health, admin_cancel) = (health.clone(), cancel.clone());
        tokio::spawn(async move {
            if let Err(e) = admin::serve(listener, handle, admin_health, admin_cancel).await {
                error!(error = %e, "Admin endpoint failed; metrics and health are unavailable.");
            }
        });
    }
    info!(corp = %cfg.api.corp, sinks = cfg.sinks.len(), state = %cfg.spool.path.display(), "sigsci-export running.");
    scheduler::run(
        Arc::new(cfg),
        Arc::new(source),
        store,
        health,
        cancel,
        grace,
    )
    .await
    .context("run failed")?;
    info!("Stopped cleanly.");
    Ok(())
}
