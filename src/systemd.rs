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

/// How often the scheduler's heartbeat runs (pinging the watchdog and feeding `/healthz`).
pub fn heartbeat_interval() -> Duration {
    heartbeat_every(sd_notify::watchdog_enabled())
}

/// Half the unit's `WatchdogSec=` as systemd recommends, but never longer than 10 s: the same
/// beat feeds `/healthz`, which reports a stall after 120 s, and a long `WatchdogSec=` must not
/// make it flap.
fn heartbeat_every(watchdog: Option<Duration>) -> Duration {
    const MAX: Duration = Duration::from_secs(10);
    watchdog.map_or(MAX, |w| (w / 2).min(MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heartbeat_is_half_the_watchdog_but_at_most_10_s() {
        assert_eq!(heartbeat_every(None), Duration::from_secs(10));
        assert_eq!(
            heartbeat_every(Some(Duration::from_secs(6))),
            Duration::from_secs(3)
        );
        assert_eq!(
            heartbeat_every(Some(Duration::from_secs(120))),
            Duration::from_secs(10)
        );
        assert_eq!(
            heartbeat_every(Some(Duration::from_secs(3600))),
            Duration::from_secs(10)
        );
    }
}
