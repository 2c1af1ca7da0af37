//! The built-in simulator of the Signal Sciences request-feed API.
//!
//! This module owns everything the `simulate` command and every client test run against: an
//! HTTP server that mimics `https://dashboard.signalsciences.net/api/v0` as described in
//! `upstream-api.md`, errors and limits included (authentication, minute alignment, the 5-minute
//! delay, retention, page limits, expiring `next` tokens, 414 on long URIs and the POST form,
//! unordered pages with duplicate ids, rate limiting), plus fault injection and a movable clock.
//!
//! The traffic is synthetic and deterministic: every minute of every site is derived from
//! `(seed, corp, site, minute)` on demand ([`data`]), so nothing is stored and
//! [`Simulator::ground_truth`] can say exactly which ids a window must yield.
//!
//! Not modelled: records that arrive late (after the 5-minute mark). They would make a window's
//! contents depend on when it is fetched, so `ground_truth` could no longer be a pure function
//! of the seed; `poll.delay_secs` is the exporter's answer to them in production.
//!
//! Layout: `data.rs` (what happened when, paging plans), `events.rs` (the request objects),
//! `server.rs` (routes, auth, validation, tokens, rate limit), `faults.rs` (fault injection).

mod data;
pub mod es;
mod events;
mod faults;
mod feed;
mod gz;
pub mod hec;
mod json;
mod server;

#[cfg(test)]
mod hec_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_faults;
#[cfg(test)]
mod tests_paging;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use server::Shared;

/// Everything that shapes a simulator: the account it accepts, the traffic it generates and the
/// limits it enforces. `Default` mirrors the real service (24 h 5 min retention, 5-minute delay,
/// 60-second `next` tokens) with a `demo` corp and sites `www` and `api`.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Corp name in URLs (default `demo`).
    pub corp: String,
    /// Site API names (default `www`, `api`); each also gets a different display name
    /// (`WWW Production`), which, as on the real service, is *not* accepted in URLs.
    pub sites: Vec<String>,
    /// The only accepted `x-api-user` (default `demo@example.com`).
    pub email: String,
    /// The only accepted `x-api-token` (default `demo-token`). `Authorization: Basic
    /// base64(email:token)` is accepted as well.
    pub token: String,
    /// Seed of all generated traffic, tokens and random faults (default 1).
    pub seed: u64,
    /// Average requests per minute per site (default 60).
    pub rate_per_min: u32,
    /// How far back `from` may go, in seconds (default 86 700 = 24 h 5 min).
    pub retention_secs: i64,
    /// How far behind now `until` must stay, in seconds (default 300).
    pub min_delay_secs: i64,
    /// Share of requests served a second time later in the same window (default 0.01).
    pub duplicate_ratio: f64,
    /// Serve each minute's requests out of timestamp order (default true).
    pub shuffle: bool,
    /// Lifetime of a `next` token after issue, in seconds (default 60).
    pub next_ttl_secs: u64,
    /// Length of a `next` token (default 40; e.g. 9000 makes GETs with it hit 414).
    /// Lengths below 8 are raised to 8.
    pub next_token_len: usize,
    /// Longest accepted path+query of a GET (default 8192); longer answers 414.
    pub max_uri_len: usize,
    /// Omit `next` on the last page instead of sending `{"uri":""}` (default false).
    pub omit_last_next: bool,
    /// If set, more than this many feed/site-list requests within any rolling 60 s answer 429
    /// with `Retry-After` (default none).
    pub rate_limit_per_min: Option<u32>,
    /// Random faults (default none).
    pub faults: FaultConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            corp: "demo".to_string(),
            sites: vec!["www".to_string(), "api".to_string()],
            email: "demo@example.com".to_string(),
            token: "demo-token".to_string(),
            seed: 1,
            rate_per_min: 60,
            retention_secs: 86_700,
            min_delay_secs: 300,
            duplicate_ratio: 0.01,
            shuffle: true,
            next_ttl_secs: 60,
            next_token_len: 40,
            max_uri_len: 8192,
            omit_last_next: false,
            rate_limit_per_min: None,
            faults: FaultConfig::default(),
        }
    }
}

/// Random faults: the fraction of feed requests that get each one. The fractions add up to at
/// most 1; each feed request gets at most one fault.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultConfig {
    /// Fraction answered 429 `{"message":"Too Many Requests"}`.
    pub too_many_requests: f64,
    /// `Retry-After` seconds sent with injected 429s (`None`: header omitted).
    pub retry_after_secs: Option<u64>,
    /// Fraction answered 400 `{"message":"Rate limit exceeded"}` (the real service's other way
    /// of throttling).
    pub rate_limit_400: f64,
    /// Fraction answered 500 `{"message":"Internal Server Error"}`.
    pub server_error: f64,
    /// Fraction answered 524 with an HTML body (a CDN's origin-timeout page).
    pub html_524: f64,
    /// Fraction answered 200 with the JSON body cut in the middle.
    pub truncated: f64,
    /// Latency added to every feed request, in milliseconds.
    pub latency_ms: u64,
}

/// One scripted fault, served in FIFO order to the next feed request(s) before any random fault.
#[derive(Clone, Debug)]
pub enum Fault {
    /// 429 `{"message":"Too Many Requests"}`, with `Retry-After` if given.
    TooManyRequests {
        /// `Retry-After` value in seconds; `None` omits the header.
        retry_after_secs: Option<u64>,
    },
    /// 400 `{"message":"Rate limit exceeded"}`.
    RateLimit400,
    /// 500 `{"message":"Internal Server Error"}`.
    ServerError,
    /// 524 with an HTML body.
    Html524,
    /// 200 whose JSON body is cut at about half its length.
    Truncated,
    /// Sleep this long, then serve normally.
    Delay(Duration),
    /// 401 as for a revoked or expired token.
    Unauthorized,
    /// 403 as for a user without access to the corp or site.
    Forbidden,
    /// 302 to an HTML login page (`/login`), as a misconfigured proxy does; the page itself
    /// answers 200 `text/html`.
    RedirectToLogin,
}

/// One request the simulator received.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// Length of the query string (0 without one).
    pub query_len: usize,
    /// Length of path + `?` + query: what the 414 check compares with `max_uri_len`.
    pub uri_len: usize,
    /// Status code answered (0 while the request is still being served, or if the client went
    /// away before the answer).
    pub status: u16,
    /// Whether the request used a `next` token (query or POST form).
    pub used_next: bool,
    /// When it arrived.
    pub at: Instant,
}

/// A running simulator: a server task plus the state tests inspect and steer.
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Simulator {
    /// Bind `addr` (tests use `127.0.0.1:0`) and serve in a spawned tokio task. Returns once
    /// listening.
    pub async fn start(cfg: SimConfig, addr: SocketAddr) -> std::io::Result<Simulator> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(cfg));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run(shared.clone(), listener, async move {
            // A dropped sender means the Simulator was dropped: stop too.
            let _ = stopped.await;
        }));
        Ok(Simulator {
            shared,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/api/v0`: what a client config uses as `api.base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}{}", self.addr, server::API_PREFIX)
    }

    /// The simulator's "now" in Unix seconds (real clock + offset).
    pub fn now(&self) -> i64 {
        self.shared.now_ms().div_euclid(1000)
    }

    /// Move the simulator's clock: `secs` is added to the real clock (replaces any earlier
    /// offset). Affects validation and `next` expiry.
    pub fn set_clock_offset(&self, secs: i64) {
        self.shared.set_clock_offset(secs);
    }

    /// Ground truth: the sorted, de-duplicated ids of every request of `site` whose timestamp
    /// is in `[from, until)`. Independent of faults, page size and retention; empty for an
    /// unknown site.
    pub fn ground_truth(&self, site: &str, from: i64, until: i64) -> Vec<String> {
        self.shared.ground_truth(site, from, until)
    }

    /// The ground truth of a filtered export: as [`Simulator::ground_truth`], only the requests
    /// whose signal (tag) types satisfy `keep`, e.g. `|t| filter.keep_types(t.iter().copied())`.
    pub fn ground_truth_where(
        &self,
        site: &str,
        from: i64,
        until: i64,
        keep: impl Fn(&[&str]) -> bool,
    ) -> Vec<String> {
        self.shared.ground_truth_where(site, from, until, &keep)
    }

    /// Queue scripted faults for the next feed requests, one fault per request, in order.
    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.faults().scripted.extend(faults);
    }

    /// Replace the random fault configuration (scripted faults stay queued).
    pub fn set_faults(&self, faults: FaultConfig) {
        self.shared.faults().config = faults;
    }

    /// Every request received so far (feed, sites list, anything else), in arrival order.
    /// Only the most recent 100 000 are kept.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests()
    }

    /// Stop serving: no new connections, in-flight requests finish (5 s grace, then the task
    /// is aborted).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        // Dropping the sender resolves the server's shutdown future: a graceful stop.
        self.stop.take();
    }
}

/// Run a simulator on `listener` until `shutdown` resolves (the `simulate` command).
pub async fn serve(
    cfg: SimConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::run(Arc::new(Shared::new(cfg)), listener, shutdown).await
}
