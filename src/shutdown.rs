//! Shutdown: SIGINT/SIGTERM become one `CancellationToken` that every task watches.
//!
//! Decide, tell, wait (mini-redis): the first signal cancels the token, after which the
//! scheduler starts no new fetch, an in-flight page commits whole or not at all, and each sink
//! finishes its current send and settles; the caller bounds the wait with a grace period. A
//! second signal exits at once: everything durable is already in the store.

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Spawns the signal listener and returns the token it cancels.
pub fn install() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let name = wait_for_signal().await;
        info!(signal = name, "Signal received: shutting down.");
        t.cancel();
        let name = wait_for_signal().await;
        error!(
            signal = name,
            "Second signal: exiting now; the store resumes from the last commit."
        );
        std::process::exit(130);
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without handlers the default action (terminate) applies, which is still safe.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "ctrl-c"
}
