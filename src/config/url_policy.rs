//! What an endpoint URL that carries credentials may look like: `api.base_url` and the sinks'
//! `url`. No credentials or query in the URL itself (they would be printed wherever the URL is,
//! retry WARNs included), and no `http://` to another host (the credentials would cross the
//! network in cleartext). Errors name the key and never echo the URL: it may hold a secret.

use url::{Host, Url};

use super::{ConfigError, DEFAULT_BASE_URL};

/// Validates `api.base_url`: an http(s) URL without credentials or query, https unless it
/// points at this machine (the simulator). The text is never echoed: it may hold a token.
pub(super) fn api_base_url(text: &str) -> Result<Url, ConfigError> {
    const KEY: &str = "api.base_url";
    let text = match text.trim().trim_end_matches('/') {
        "" => DEFAULT_BASE_URL,
        t => t,
    };
    let url = Url::parse(text).map_err(|e| ConfigError::new(KEY, format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(ConfigError::new(
            KEY,
            format!(
                "scheme must be https (or http for a local simulator), got `{}`",
                url.scheme()
            ),
        ));
    }
    refuse_embedded_credentials(KEY, &url, "put the token in api.token_file or SIGSCI_TOKEN")?;
    refuse_cleartext(KEY, &url, "the API token")?;
    Ok(url)
}

/// Whether `url` points at this machine: 127.0.0.0/8, `::1` or `localhost`. Nothing resolves
/// here: a name that resolves to a loopback address elsewhere is not trusted to.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost") || d.eq_ignore_ascii_case("localhost.")
        }
        None => false,
    }
}

/// Refuses `http://` to a host other than this machine: `sent` (e.g. "the API token") would
/// cross the network in cleartext. The simulator and test receivers on 127.0.0.1 keep working.
pub(crate) fn refuse_cleartext(key: &str, url: &Url, sent: &str) -> Result<(), ConfigError> {
    if url.scheme() == "http" && !is_loopback(url) {
        return Err(ConfigError::new(
            key,
            format!(
                "http:// would send {sent} in cleartext to another host: use https:// \
                 (http:// is accepted only for this machine: 127.0.0.0/8, ::1, localhost)"
            ),
        ));
    }
    Ok(())
}

/// Refuses user info (`https://user:TOKEN@host/`), a query (`?token=...`) or a fragment in
/// `url`, without echoing any of it. `instead` says where the credentials belong.
pub(crate) fn refuse_embedded_credentials(
    key: &str,
    url: &Url,
    instead: &str,
) -> Result<(), ConfigError> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::new(
            key,
            format!("must not contain credentials (user:password@): {instead}"),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::new(
            key,
            format!(
                "must not have a query string or fragment (`?...`, `#...`), which logs would \
                 show: give the root URL only; {instead}"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn loopback_is_this_machine_only() {
        for u in [
            "http://127.0.0.1:8818/api/v0",
            "http://127.9.8.7/",
            "http://[::1]:9200",
            "http://localhost:8088",
            "http://LOCALHOST./",
        ] {
            assert!(is_loopback(&url(u)), "{u}");
            refuse_cleartext("k", &url(u), "x").unwrap();
        }
        for u in [
            "http://dashboard.signalsciences.net/api/v0",
            "http://10.0.0.1/",
            "http://[::ffff:7f00:1]/",
            "http://localhost.example.com/",
            "http://128.0.0.1/",
        ] {
            assert!(!is_loopback(&url(u)), "{u}");
            let e = refuse_cleartext("api.base_url", &url(u), "the API token").unwrap_err();
            assert_eq!(e.key, "api.base_url");
            assert!(e.reason.contains("https://"), "{e}");
        }
        refuse_cleartext("k", &url("https://dashboard.signalsciences.net"), "x").unwrap();
    }

    #[test]
    fn credentials_and_queries_are_refused_without_echo() {
        for u in [
            "https://user:SeCrEt-1@h/api/v0",
            "https://SeCrEt-1@h/api/v0",
            "https://h/api/v0?token=SeCrEt-1",
            "https://h/api/v0?SeCrEt-1",
            "https://h/api/v0#SeCrEt-1",
        ] {
            let e =
                refuse_embedded_credentials("api.base_url", &url(u), "use token_file").unwrap_err();
            assert_eq!(e.key, "api.base_url");
            assert!(!e.to_string().contains("SeCrEt"), "{e}");
        }
        refuse_embedded_credentials("k", &url("https://h:8443/api/v0"), "x").unwrap();
    }
}
