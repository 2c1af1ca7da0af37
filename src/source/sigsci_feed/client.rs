//! The feed API client: authentication, the corp's rate budget, retries and error classes.
//!
//! One `FeedClient` per corp: its governor quota is the corp's shared request budget. Every
//! request waits on the quota first, then goes out; rate limits and transient failures are
//! retried here (exponential backoff with full jitter, `Retry-After` wins when the API sends it)
//! up to `api.max_attempts`; everything else is returned classified, and the scheduler decides.
//! A `next` URI is followed only to the same site's feed on the same server (`next_uri`), and a
//! page body is read up to a cap (`body`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use governor::clock::MonotonicClock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use rand::Rng;
use reqwest::{Method, StatusCode};
use tracing::{debug, warn};
use url::Url;

use super::classify::classify;
#[cfg(test)]
use super::classify::parse_retry_after;
use super::model::page::{RejectedRecord, UNREADABLE_PAGE, read_page};
use super::model::{SiteWire, SitesWire};
pub use super::window::WindowFetch;
use super::{FeedError, body, next_uri, transport};
use crate::config::{ApiConfig, AuthMode, Credentials};
use crate::store::NewEvent;

const USER_AGENT: &str = concat!("sigsci-export/", env!("CARGO_PKG_VERSION"));

/// One page of a window: its records and where the next page is. A record may repeat one of
/// an earlier page; the spool's `seen` table drops it.
#[derive(Debug)]
pub struct Page {
    /// Records, as the API sent them.
    pub events: Vec<NewEvent>,
    /// The next page's relative URI; `None` on the last page.
    pub next: Option<String>,
    /// Records that cannot be taken, kept apart (only from a client made by
    /// [`FeedClient::keeping_bad_records`]; otherwise such a record refuses the page).
    pub rejected: Vec<RejectedRecord>,
}

/// The corp's request budget, timed by `std::time::Instant`. governor's default clock is
/// quanta's, which calibrates the TSC on first use by spinning for about 100 ms on the
/// thread that builds the first limiter: at every start, before the first request, for a
/// limiter that waits in units of hundreds of milliseconds anyway.
type Limiter =
    RateLimiter<NotKeyed, InMemoryState, MonotonicClock, NoOpMiddleware<std::time::Instant>>;

/// The feed client of one corp.
#[derive(Clone)]
pub struct FeedClient {
    inner: Arc<Inner>,
    /// Return records that cannot be taken in `Page::rejected` instead of refusing the page.
    keep_bad: bool,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    creds: Credentials,
    corp: String,
    limiter: Limiter,
    page_limit: u32,
    max_attempts: u32,
    min_delay: Duration,
    max_delay: Duration,
    /// Set once the API answered 414 to a GET with a `next` token: from then on the POST form is
    /// used directly, as the official add-on does.
    post_next: AtomicBool,
}

impl std::fmt::Debug for FeedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedClient")
            .field("base", &self.inner.base.as_str())
            .field("corp", &self.inner.corp)
            .finish_non_exhaustive()
    }
}

/// What one request asks for.
pub(super) enum Target<'a> {
    Window {
        site: &'a str,
        from: i64,
        until: i64,
        /// `tags=` for server-side filtering, when configured.
        tags: Option<&'a str>,
    },
    Next {
        /// The site whose feed the URI must stay in.
        site: &'a str,
        uri: &'a str,
    },
    Sites,
}

impl FeedClient {
    /// Builds the client: TLS (rustls, certificate checks always on, optional extra CA file),
    /// timeouts, no redirects (a redirect is a misconfiguration to report, not to follow).
    pub fn new(api: &ApiConfig) -> Result<FeedClient, FeedError> {
        Self::with_retry_delays(api, Duration::from_millis(500), Duration::from_secs(60))
    }

    /// As [`FeedClient::new`] with another backoff range (tests use milliseconds).
    pub fn with_retry_delays(
        api: &ApiConfig,
        min_delay: Duration,
        max_delay: Duration,
    ) -> Result<FeedClient, FeedError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(api.timeout)
            .connect_timeout(Duration::from_secs(15).min(api.timeout))
            .redirect(reqwest::redirect::Policy::none())
            .https_only(api.base_url.scheme() == "https");
        if let Some(ca) = &api.ca_file {
            let pem = std::fs::read(ca).map_err(|e| FeedError::Setup {
                reason: format!("cannot read api.ca_file `{}`: {e}", ca.display()),
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| FeedError::Setup {
                    reason: format!("api.ca_file `{}` is not a PEM bundle: {e}", ca.display()),
                })?;
            if certs.is_empty() {
                return Err(FeedError::Setup {
                    reason: format!("api.ca_file `{}` holds no certificate", ca.display()),
                });
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| FeedError::Setup {
            reason: match &api.ca_file {
                // The only input that can make the build fail is a certificate it cannot use.
                Some(ca) => format!(
                    "api.ca_file `{}` is not a usable PEM certificate bundle: {}",
                    ca.display(),
                    transport::describe(e)
                ),
                None => format!("cannot build the HTTP client: {}", transport::describe(e)),
            },
        })?;
        let quota = Quota::per_minute(api.requests_per_minute).allow_burst(api.burst);
        Ok(FeedClient {
            inner: Arc::new(Inner {
                http,
                base: api.base_url.clone(),
                creds: api.auth.clone(),
                corp: api.corp.clone(),
                limiter: RateLimiter::direct_with_clock(quota, MonotonicClock),
                page_limit: api.page_limit,
                max_attempts: api.max_attempts,
                min_delay,
                max_delay,
                post_next: AtomicBool::new(false),
            }),
            keep_bad: false,
        })
    }

    /// The same client (same quota), returning records that cannot be taken in
    /// `Page::rejected` (and [`WindowFetch::take_rejected`]) instead of refusing their page.
    pub fn keeping_bad_records(&self) -> FeedClient {
        FeedClient {
            inner: self.inner.clone(),
            keep_bad: true,
        }
    }

    /// The corp this client polls.
    pub fn corp(&self) -> &str {
        &self.inner.corp
    }

    /// Lists the corp's sites (for `sites = ["*"]`).
    pub async fn list_sites(&self) -> Result<Vec<SiteWire>, FeedError> {
        let parsed: SitesWire = self
            .request_with_retries(&Target::Sites, |body| {
                serde_json::from_slice(&body).map_err(|e| FeedError::Transient {
                    reason: format!("unparseable site list: {e}"),
                })
            })
            .await?;
        Ok(parsed.data)
    }

    /// First page of the window `[from, until)` of `site`.
    pub async fn first_page(&self, site: &str, from: i64, until: i64) -> Result<Page, FeedError> {
        self.first_page_tagged(site, from, until, None).await
    }

    /// As [`FeedClient::first_page`], asking the API to return only requests with one of the
    /// comma-separated signal types in `tags` (the `next` URIs carry the filter on).
    pub async fn first_page_tagged(
        &self,
        site: &str,
        from: i64,
        until: i64,
        tags: Option<&str>,
    ) -> Result<Page, FeedError> {
        let target = Target::Window {
            site,
            from,
            until,
            tags,
        };
        self.request_with_retries(&target, |body| read(body, from, self.keep_bad))
            .await
    }

    /// The page a previous page of `site` points at with `next.uri`; refused, before anything is
    /// sent, when the URI leads anywhere but `site`'s feed on `api.base_url`'s server. `from` is
    /// the window start, used as the timestamp of a record whose own is missing or unreadable.
    pub async fn next_page(&self, site: &str, uri: &str, from: i64) -> Result<Page, FeedError> {
        self.request_with_retries(&Target::Next { site, uri }, |body| {
            read(body, from, self.keep_bad)
        })
        .await
    }

    /// Walks the window `[from, until)` of `site`, page by page.
    pub fn window(&self, site: &str, from: i64, until: i64) -> WindowFetch {
        WindowFetch::new(self.clone(), site, from, until)
    }

    /// Records asked for per page (`api.page_limit`).
    pub fn page_limit(&self) -> u32 {
        self.inner.page_limit
    }

    /// Sends `target` and parses the reply with `parse`, retrying both: a truncated or garbled
    /// body is as transient as a 503.
    async fn request_with_retries<T>(
        &self,
        target: &Target<'_>,
        parse: impl Fn(Vec<u8>) -> Result<T, FeedError>,
    ) -> Result<T, FeedError> {
        let inner = &self.inner;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(inner.min_delay)
            .with_max_delay(inner.max_delay)
            .with_factor(2.0)
            .with_max_times(inner.max_attempts.saturating_sub(1) as usize);
        (|| async {
            inner.limiter.until_ready().await;
            let body = self.request_once(target).await?;
            parse(body)
        })
        .retry(backoff.build())
        .when(FeedError::is_retryable)
        .adjust(|err, delay| {
            // Full jitter on our own schedule; the server's Retry-After, when given, wins.
            delay.map(|d| err.retry_after().unwrap_or_else(|| full_jitter(d)))
        })
        .notify(|err, delay| {
            warn!(corp = %inner.corp, error = %err, retry_in_ms = delay.as_millis() as u64, "API request failed; retrying.");
        })
        .sleep(tokio::time::sleep)
        .await
    }

    async fn request_once(&self, target: &Target<'_>) -> Result<Vec<u8>, FeedError> {
        let inner = &self.inner;
        let (method, url, form) = match target {
            Target::Sites => (
                Method::GET,
                next_uri::api_url(&inner.base, &format!("corps/{}/sites", inner.corp)),
                None,
            ),
            Target::Window {
                site,
                from,
                until,
                tags,
            } => {
                let mut url = next_uri::feed_url(&inner.base, &inner.corp, site);
                url.query_pairs_mut()
                    .append_pair("from", &from.to_string())
                    .append_pair("until", &until.to_string())
                    .append_pair("limit", &inner.page_limit.to_string());
                if let Some(tags) = tags {
                    url.query_pairs_mut().append_pair("tags", tags);
                }
                (Method::GET, url, None)
            }
            Target::Next { site, uri } => {
                // Checked before anything is sent: the request carries the credentials.
                let url = next_uri::resolve(&inner.base, &inner.corp, site, uri)?;
                if inner.post_next.load(Ordering::Relaxed) {
                    let (path_url, token) = next_uri::split_next(&url)?;
                    (Method::POST, path_url, Some(token))
                } else {
                    (Method::GET, url, None)
                }
            }
        };
        let resp = self
            .send(method.clone(), url.clone(), form.as_deref())
            .await?;
        let resp = if resp.status() == StatusCode::URI_TOO_LONG
            && matches!(target, Target::Next { .. })
            && form.is_none()
        {
            // The token does not fit in a URL: the API takes it as a form body instead.
            debug!(corp = %inner.corp, "414 on a next URI; switching to the POST form.");
            inner.post_next.store(true, Ordering::Relaxed);
            let (path_url, token) = next_uri::split_next(&url)?;
            self.send(Method::POST, path_url, Some(&token)).await?
        } else {
            resp
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        if status == StatusCode::OK {
            body::check_encoding(&headers)?;
            return body::page(resp, body::MAX_PAGE_BYTES).await;
        }
        if status.is_redirection() {
            // Never followed (the client has no redirect policy): it would take the credentials.
            return Err(next_uri::redirect(status.as_u16(), &headers, &url));
        }
        // Only an excerpt of an error reply is ever shown: its first bytes are enough.
        let body = match body::read_capped(resp, body::MAX_ERROR_BYTES).await {
            Ok(body::Read::Whole(b) | body::Read::Over(b)) => b,
            Err(e) => {
                return Err(FeedError::Transient {
                    reason: format!("reading the reply body failed: {}", transport::describe(e)),
                });
            }
        };
        let err = classify(status, &headers, &body, target, &inner.creds, &inner.corp);
        if matches!(err, FeedError::RateLimited { .. }) {
            crate::telemetry::metrics::api_rate_limited();
        }
        Err(err)
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        form_next: Option<&str>,
    ) -> Result<reqwest::Response, FeedError> {
        let creds = &self.inner.creds;
        let mut req = self.inner.http.request(method, url);
        req = match creds.mode {
            AuthMode::Token => req
                .header("x-api-user", &creds.email)
                .header("x-api-token", creds.token.expose()),
            AuthMode::Basic => req.basic_auth(&creds.email, Some(creds.token.expose())),
        };
        req = req.header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = form_next {
            let body = format!(
                "next={}",
                url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
            );
            req = req
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body);
        }
        let started = std::time::Instant::now();
        let sent = req.send().await;
        crate::telemetry::metrics::api_request(
            sent.as_ref().ok().map(|r| r.status().as_u16()),
            started.elapsed(),
        );
        sent.map_err(|e| transport::send_error(e, &self.inner.base))
    }
}

fn full_jitter(d: Duration) -> Duration {
    let max = d.as_millis().min(u64::MAX as u128) as u64;
    Duration::from_millis(rand::rng().random_range(0..=max))
}

/// Parses a page, keeping every record's exact JSON. A reply that does not parse (a truncated
/// body, an HTML error page with status 200) or holds a record that cannot be taken (no `id`,
/// an `id` that is not a string) is transient: retried, never taken as empty; the error names
/// the record and what is wrong with it (see `model::page`). The fuzz target's entry point.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn parse_page(body: impl Into<Vec<u8>>, window_from: i64) -> Result<Page, FeedError> {
    read(body.into(), window_from, false)
}

/// As [`parse_page`], but records that cannot be taken are returned in `Page::rejected`
/// instead of refusing the page (`poll.skip_bad_records`).
fn read(body: Vec<u8>, window_from: i64, keep_bad: bool) -> Result<Page, FeedError> {
    let len = body.len();
    let page = read_page(body, window_from, keep_bad).map_err(|problem| FeedError::Transient {
        reason: format!(
            "{UNREADABLE_PAGE} ({len} bytes): {problem}; refusing the page rather than guessing"
        ),
    })?;
    Ok(Page {
        events: page.events,
        next: page.next,
        rejected: page.rejected,
    })
}

#[cfg(test)]
mod tests;
