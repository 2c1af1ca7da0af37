//! What `admin.listen` exposes. The endpoint has no authentication: on a loopback address only
//! this machine reaches it; anywhere else `/metrics` (corp, site and sink names, volumes, error
//! counts), `/healthz` and `/readyz` are open to whoever can reach the port, which may be what a
//! container wants (a Prometheus scrape from outside) but should never happen unnoticed.

use super::AdminConfig;

impl AdminConfig {
    /// A warning when the endpoint listens beyond loopback; `None` when disabled or local.
    pub fn exposure_warning(&self) -> Option<String> {
        let addr = self.listen?;
        if addr.ip().is_loopback() {
            return None;
        }
        Some(format!(
            "admin.listen = {addr} is not a loopback address: /metrics, /healthz and /readyz are \
             open, without authentication, to every host that can reach port {}; listen on \
             127.0.0.1 unless a scraper elsewhere needs it, and then restrict access (firewall, \
             network policy)",
            addr.port()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(listen: Option<&str>) -> Option<String> {
        AdminConfig {
            listen: listen.map(|l| l.parse().unwrap()),
        }
        .exposure_warning()
    }

    #[test]
    fn only_an_address_beyond_loopback_warns() {
        assert_eq!(at(None), None);
        assert_eq!(at(Some("127.0.0.1:9187")), None);
        assert_eq!(at(Some("[::1]:9187")), None);
        for open in ["0.0.0.0:9187", "10.1.2.3:9187", "[::]:9187"] {
            let w = at(Some(open)).unwrap_or_else(|| panic!("{open}: no warning"));
            assert!(w.contains(open) && w.contains("/metrics"), "{w}");
        }
    }
}
