//! Where a feed page's `next.uri` may lead: to the next page of the same site's feed on the
//! server `api.base_url` names, and nowhere else.
//!
//! Every request carries the API credentials, so a `next` URI is a place the token is sent. A
//! reply that points anywhere else (another host or port, another scheme, a protocol-relative
//! `//host/...`, another corp or site, another API path) is refused before anything is sent:
//! following it would hand the token to that server and store its records as the site's own.
//! The checks are made on the URL as resolved (after `..` segments, backslashes and the like
//! are normalised by the URL parser), so no spelling of a URI gets around them.

use url::Url;

use super::FeedError;

/// The longest rendering of a refused URI in an error message; the rest is cut.
const SHOWN_CHARS: usize = 160;

/// `{base path}/{rel}` on the base's scheme, host and port.
pub(crate) fn api_url(base: &Url, rel: &str) -> Url {
    let mut url = base.clone();
    let path = format!("{}/{rel}", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// The feed of `site`: `{base path}/corps/{corp}/sites/{site}/feed/requests`.
pub(crate) fn feed_url(base: &Url, corp: &str, site: &str) -> Url {
    api_url(base, &format!("corps/{corp}/sites/{site}/feed/requests"))
}

/// Resolves a page's `next.uri` against `base` and checks that it leads to the next page of
/// `site`'s feed on the same server; anything else is [`FeedError::Refused`], with the URI
/// in the message stripped of userinfo and query values.
///
/// The API sends an absolute path (`/api/v0/corps/...`). A base with a prefix in front of
/// `/api/v0` (a path-routing proxy) keeps that prefix in front of it.
pub(crate) fn resolve(base: &Url, corp: &str, site: &str, uri: &str) -> Result<Url, FeedError> {
    let prefix = base
        .path()
        .trim_end_matches('/')
        .strip_suffix("/api/v0")
        .unwrap_or("");
    // Only an absolute path gets the prefix: `//host/...` (or `/\host` for the URL parser) is
    // protocol-relative and is judged by the host checks below like any absolute URI.
    let absolute_path = uri.starts_with('/') && !uri[1..].starts_with(['/', '\\']);
    let joined = if absolute_path && !prefix.is_empty() {
        format!("{prefix}{uri}")
    } else {
        uri.to_string()
    };
    let mut url = base.join(&joined).map_err(|e| FeedError::Refused {
        // Not shown: a string that is not even a URL may hold anything.
        reason: format!(
            "refused the feed's next URI ({} characters): it is not a URL ({e}); the API, or \
             something between it and api.base_url, sent a broken reply",
            uri.chars().count()
        ),
    })?;
    url.set_fragment(None);
    let same_server = url.scheme() == base.scheme()
        && url.host() == base.host()
        && url.port_or_known_default() == base.port_or_known_default();
    if same_server && (!url.username().is_empty() || url.password().is_some()) {
        // reqwest would send them as Basic credentials, in place of or beside ours.
        return Err(FeedError::Refused {
            reason: format!(
                "refused the feed's next URI `{}`: it carries credentials of its own; check what \
                 answers at api.base_url (a proxy rewriting replies?)",
                shown(&url)
            ),
        });
    }
    if !same_server {
        return Err(FeedError::Refused {
            reason: format!(
                "refused the feed's next URI `{}`: it leads to another server than api.base_url \
                 (`{}`), and following it would send the API credentials there; check what \
                 answers at api.base_url (a proxy rewriting replies?)",
                shown(&url),
                origin(base)
            ),
        });
    }
    let feed = feed_url(base, corp, site);
    if url.path() != feed.path() {
        return Err(FeedError::Refused {
            reason: format!(
                "refused the feed's next URI `{}`: it leads out of this site's feed (`{}`); \
                 check what answers at api.base_url (a proxy rewriting replies?)",
                shown(&url),
                feed.path()
            ),
        });
    }
    Ok(url)
}

/// Splits a next URL into the feed path (for the POST form) and the token.
pub(crate) fn split_next(url: &Url) -> Result<(Url, String), FeedError> {
    let token = url
        .query_pairs()
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| FeedError::Refused {
            reason: format!(
                "refused the feed's next URI `{}`: it has no `next` parameter to send in the \
                 POST form; the API, or something between it and api.base_url, sent a broken \
                 reply",
                shown(url)
            ),
        })?;
    let mut path_url = url.clone();
    path_url.set_query(None);
    Ok((path_url, token))
}

/// The error for a redirect the API answered to `request`: it is never followed (a redirect
/// would take the credentials along, to wherever it points), and a wrong `api.base_url` is
/// the usual cause, so it needs an operator.
pub(crate) fn redirect(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    request: &Url,
) -> FeedError {
    let target = headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|loc| request.join(loc).ok())
        .map_or_else(|| "?".to_string(), |u| shown(&u));
    FeedError::Refused {
        reason: format!(
            "HTTP {status} redirect to `{target}`, not followed (it would take the API \
             credentials along): api.base_url probably points at the dashboard or a login page \
             instead of the API"
        ),
    }
}

/// `url` for an error message: no userinfo, every query value replaced by `…` (a value may be
/// a credential; the `next` token is not, but it is long and says nothing to a reader), and cut
/// to [`SHOWN_CHARS`].
pub(crate) fn shown(url: &Url) -> String {
    let mut text = origin(url);
    text.push_str(url.path());
    if url.query().is_some() {
        let keys: Vec<String> = url
            .query_pairs()
            .map(|(k, _)| {
                format!(
                    "{}=…",
                    url::form_urlencoded::byte_serialize(k.as_bytes()).collect::<String>()
                )
            })
            .collect();
        text.push('?');
        text.push_str(&keys.join("&"));
    }
    if text.chars().count() > SHOWN_CHARS {
        text = text.chars().take(SHOWN_CHARS).collect();
        text.push('…');
    }
    text
}

/// `scheme://host[:port]`, never userinfo.
fn origin(url: &Url) -> String {
    let mut text = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        text.push_str(&format!(":{port}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEED: &str = "/api/v0/corps/demo/sites/www/feed/requests";

    fn base() -> Url {
        Url::parse("https://api.example.com/api/v0").unwrap()
    }

    fn ok(base: &Url, uri: &str) -> Url {
        resolve(base, "demo", "www", uri).unwrap_or_else(|e| panic!("{uri}: {e}"))
    }

    fn refused(base: &Url, uri: &str) -> String {
        match resolve(base, "demo", "www", uri) {
            Err(e @ FeedError::Refused { .. }) => {
                assert!(e.needs_operator());
                e.to_string()
            }
            other => panic!("{uri}: {other:?}"),
        }
    }

    #[test]
    fn the_apis_own_next_uri_is_followed_on_the_base_server() {
        let url = ok(&base(), &format!("{FEED}?next=abc%2Bdef&tags=SQLI"));
        assert_eq!(
            url.as_str(),
            format!("https://api.example.com{FEED}?next=abc%2Bdef&tags=SQLI")
        );
        // The same URI spelled absolute, on the same server, is just as good.
        let url = ok(
            &base(),
            &format!("https://api.example.com:443{FEED}?next=x#frag"),
        );
        assert_eq!(
            url.as_str(),
            format!("https://api.example.com{FEED}?next=x")
        );
        // A path-routing proxy's prefix is kept in front of /api/v0.
        let proxied = Url::parse("http://127.0.0.1:8080/sigsci/api/v0/").unwrap();
        let url = ok(&proxied, &format!("{FEED}?next=x"));
        assert_eq!(
            url.as_str(),
            format!("http://127.0.0.1:8080/sigsci{FEED}?next=x")
        );
    }

    #[test]
    fn another_scheme_host_or_port_is_refused() {
        let b = base();
        for uri in [
            format!("https://other.example.com{FEED}?next=x"),
            format!("http://api.example.com{FEED}?next=x"),
            format!("https://api.example.com:8443{FEED}?next=x"),
            format!("http://localhost:8080{FEED}?next=x"),
            format!("//other.example.com{FEED}?next=x"),
            format!("/\\other.example.com{FEED}?next=x"),
            format!("\\\\other.example.com{FEED}?next=x"),
            format!("https://API.example.com.evil.test{FEED}?next=x"),
        ] {
            let msg = refused(&b, &uri);
            assert!(msg.contains("another server"), "{uri}: {msg}");
            assert!(msg.contains("https://api.example.com"), "{msg}");
        }
        // Credentials in the URI would be sent as Basic auth: refused too.
        let msg = refused(&b, &format!("https://user:pw@api.example.com{FEED}?next=x"));
        assert!(msg.contains("credentials of its own"), "{msg}");
        assert!(!msg.contains("user") && !msg.contains("pw"), "{msg}");
        // Protocol-relative stays protocol-relative behind a proxy prefix.
        let proxied = Url::parse("http://127.0.0.1:8080/sigsci/api/v0").unwrap();
        let msg = refused(&proxied, &format!("//127.0.0.2:8080{FEED}?next=x"));
        assert!(msg.contains("http://127.0.0.2:8080/api/v0/"), "{msg}");
    }

    #[test]
    fn a_path_out_of_the_sites_feed_is_refused() {
        let b = base();
        for uri in [
            "/api/v0/corps/demo/sites/api/feed/requests?next=x".to_string(),
            "/api/v0/corps/other/sites/www/feed/requests?next=x".to_string(),
            "/api/v0/corps/demo/users?next=x".to_string(),
            format!("{FEED}/../../../../users?next=x"),
            format!("{FEED}/extra?next=x"),
            format!("/other{FEED}?next=x"),
            "feed/requests?next=x".to_string(),
            "?next=x".to_string(),
        ] {
            let msg = refused(&b, &uri);
            assert!(msg.contains("out of this site's feed"), "{uri}: {msg}");
            assert!(msg.contains(FEED), "{msg}");
        }
    }

    #[test]
    fn messages_name_the_uri_without_credentials() {
        let msg = refused(
            &base(),
            &format!("https://user:s3cret@other.example:9{FEED}?next=tok3n&api_token=s3cret"),
        );
        assert!(
            msg.contains(&format!(
                "`https://other.example:9{FEED}?next=…&api_token=…`"
            )),
            "{msg}"
        );
        assert!(!msg.contains("s3cret") && !msg.contains("user") && !msg.contains("tok3n"));
        // Long URIs are cut.
        let long = format!("https://other.example/{}", "a".repeat(5000));
        assert!(refused(&base(), &long).len() < 600);
        // A string that is not a URL is not shown at all.
        let msg = refused(&base(), "http://user:s3cret@[::1");
        assert!(
            !msg.contains("s3cret") && msg.contains("not a URL"),
            "{msg}"
        );
    }
}
