//! systemd integration for `Type=notify` units: `READY=1` once the service is running,
//! `WATCHDOG=1` from the scheduler's heartbeat, `STOPPING=1` on shutdown.
//!
//! Every call is a no-op outside systemd (no `NOTIFY_SOCKET`), so the same binary runs in a
//! container or a terminal unchanged. A failed notification is logged, never fatal.

use std::time::Duration;

use sd_notify::NotifyState;
use tracing::debug;

fn send(state: NotifyState<'_>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(&[state]) {
        debug!(error = %e, "systemd notification failed");
    }
}

/// Start-up finished: config loaded, store open, pollers and sinks started.
pub fn ready() {
    send(NotifyState::Ready);
}

/// Shutdown began.
pub fn stopping() {
    send(NotifyState::Stopping);
}

/// The service is alive (only meaningful with `WatchdogSec=`).
pub fn watchdog() {
    send(NotifyState::Watchdog);
}

/// How often to ping: half the unit's `WatchdogSec=`, if set.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}
