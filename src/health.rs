//! What the admin endpoint's `/healthz` and `/readyz` answer from: the scheduler's heartbeat,
//! and what is blocked right now (a sink paused until an operator acts, a site the feed
//! refuses or is stuck on, the full spool).
//!
//! One [`Health`] per process, made by the command and handed to the scheduler (its pollers,
//! its spool bound, its sink drivers, its heartbeat) and to `admin`, which only reads it.
//! An explicit handle rather than a process-wide global, so that each test holds its own and
//! none sees another's blocks. Each change also sets the matching gauge
//! (`telemetry::metrics`), so `/metrics` and `/readyz` never disagree.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::telemetry::metrics;

/// The process's health; clones share it.
#[derive(Clone, Debug, Default)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Unix seconds of the last heartbeat (0: none yet).
    heartbeat: AtomicI64,
    /// What is blocked: component (`sink:NAME`, `site:NAME`, `feed:NAME`, `spool`) -> reason.
    blocked: Mutex<BTreeMap<String, String>>,
}

impl Health {
    /// Nothing blocked, no heartbeat yet.
    pub fn new() -> Health {
        Health::default()
    }

    /// The runtime still schedules tasks (the scheduler's heartbeat loop, and `admin` when it
    /// starts).
    pub fn beat(&self) {
        self.inner
            .heartbeat
            .store(crate::time::now(), Ordering::Relaxed);
    }

    /// Seconds since the last heartbeat at `now`.
    pub fn since_beat(&self, now: i64) -> i64 {
        now - self.inner.heartbeat.load(Ordering::Relaxed)
    }

    /// A sink is blocked (`Some(reason)`) or works again (`None`).
    pub fn sink_blocked(&self, sink: &str, reason: Option<&str>) {
        metrics::sink_blocked(sink, reason.is_some());
        self.set(format!("sink:{sink}"), reason);
    }

    /// The feed API refuses site `site` of `corp` until an operator acts (`Some(reason)`), or
    /// serves it again (`None`). Kept per site: a 403 or 404 on one site must keep `/readyz` down
    /// even while other sites of the corp recover.
    pub fn site_blocked(&self, corp: &str, site: &str, reason: Option<&str>) {
        metrics::site_blocked(site, reason.is_some());
        let any = {
            let mut map = self.map();
            let component = format!("site:{site}");
            match reason {
                Some(r) => map.insert(component, r.to_owned()),
                None => map.remove(&component),
            };
            map.keys().any(|k| k.starts_with("site:"))
        };
        metrics::corp_blocked(corp, any);
    }

    /// The site is stuck on a feed page that cannot be read (`Some(reason)`, reported as
    /// `feed:SITE`), or moves again (`None`).
    pub fn site_stuck(&self, site: &str, reason: Option<&str>) {
        metrics::site_stuck(site, reason.is_some());
        self.set(format!("feed:{site}"), reason);
    }

    /// Polling is paused because the spool is full (`Some(reason)`), or runs again (`None`).
    pub fn spool_full(&self, reason: Option<&str>) {
        metrics::spool_full(reason.is_some());
        self.set("spool".to_string(), reason);
    }

    /// Everything blocked right now (component, reason), in component order.
    pub fn blocked(&self) -> Vec<(String, String)> {
        self.map()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn set(&self, component: String, reason: Option<&str>) {
        let mut map = self.map();
        match reason {
            Some(r) => {
                map.insert(component, r.to_owned());
            }
            None => {
                map.remove(&component);
            }
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.inner
            .blocked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recovering_site_does_not_clear_another_sites_block() {
        let health = Health::new();
        let blocked_sites = || -> Vec<String> {
            health
                .blocked()
                .into_iter()
                .map(|(k, _)| k)
                .filter(|k| k.starts_with("site:blk-"))
                .collect()
        };
        health.site_blocked("acme", "blk-shop", Some("HTTP 403: no access to this site"));
        health.site_blocked("acme", "blk-www", Some("HTTP 401: bad token"));
        health.site_blocked("acme", "blk-www", None);
        // Another site recovering (or one that never failed) leaves the 403 in place.
        health.site_blocked("acme", "blk-api", None);
        assert_eq!(blocked_sites(), ["site:blk-shop"]);
        health.site_blocked("acme", "blk-shop", None);
        assert!(blocked_sites().is_empty());
    }

    #[test]
    fn the_heartbeat_ages_until_the_next_beat() {
        let health = Health::new();
        health.beat();
        let now = crate::time::now();
        assert!(health.since_beat(now) <= 1);
        assert_eq!(health.since_beat(now + 200), health.since_beat(now) + 200);
    }
}
