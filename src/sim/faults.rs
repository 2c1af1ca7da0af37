//! Fault injection: the spec parser, the scripted queue and the seeded random roll, and the
//! responses each fault produces. Faults only ever hit feed requests, after authentication, so
//! a test can tell "the client handled the fault" from "the client sent a bad request".

use std::collections::VecDeque;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::server::json_error;
use super::{Fault, FaultConfig};

/// Keys accepted by [`FaultConfig::parse`], for error messages.
const KEYS: &str = "429, 400, 500, 524, truncate, latency_ms, retry_after";

impl FaultConfig {
    /// Parse "429=0.05,400=0.02,500=0.03,524=0.01,truncate=0.02,latency_ms=200,retry_after=1";
    /// an empty string means no faults.
    ///
    /// Fractions must lie in `0..=1` and add up to at most 1 (each feed request gets at most one
    /// fault). Unknown keys, repeated keys, bad numbers and out-of-range values are errors whose
    /// message names the offending key.
    pub fn parse(spec: &str) -> Result<FaultConfig, String> {
        let mut cfg = FaultConfig::default();
        let mut seen: Vec<&str> = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, value)) = part.split_once('=') else {
                return Err(format!("fault '{part}': expected KEY=VALUE (keys: {KEYS})"));
            };
            let (key, value) = (key.trim(), value.trim());
            if seen.contains(&key) {
                return Err(format!("fault '{key}' is given more than once"));
            }
            seen.push(key);
            let fraction = || -> Result<f64, String> {
                let v: f64 = value
                    .parse()
                    .map_err(|_| format!("fault '{key}': '{value}' is not a number"))?;
                if (0.0..=1.0).contains(&v) {
                    Ok(v)
                } else {
                    Err(format!(
                        "fault '{key}': {value} is not a fraction between 0 and 1"
                    ))
                }
            };
            let whole = || -> Result<u64, String> {
                value.parse().map_err(|_| {
                    format!("fault '{key}': '{value}' is not a whole non-negative number")
                })
            };
            match key {
                "429" => cfg.too_many_requests = fraction()?,
                "400" => cfg.rate_limit_400 = fraction()?,
                "500" => cfg.server_error = fraction()?,
                "524" => cfg.html_524 = fraction()?,
                "truncate" | "truncated" => cfg.truncated = fraction()?,
                "latency_ms" => cfg.latency_ms = whole()?,
                "retry_after" => cfg.retry_after_secs = Some(whole()?),
                other => return Err(format!("unknown fault '{other}' (keys: {KEYS})")),
            }
        }
        let sum = cfg.total_fraction();
        if sum > 1.0 + 1e-9 {
            return Err(format!(
                "fault fractions 429+400+500+524+truncate add up to {sum}, more than 1"
            ));
        }
        Ok(cfg)
    }

    fn total_fraction(&self) -> f64 {
        self.too_many_requests
            + self.rate_limit_400
            + self.server_error
            + self.html_524
            + self.truncated
    }
}

/// Fault bookkeeping shared by all connections (behind the simulator's mutex).
pub(crate) struct FaultState {
    pub(crate) config: FaultConfig,
    pub(crate) scripted: VecDeque<Fault>,
    rng: ChaCha8Rng,
}

impl FaultState {
    pub(crate) fn new(config: FaultConfig, seed: u64) -> Self {
        Self {
            config,
            scripted: VecDeque::new(),
            // Own stream, so the fault sequence does not depend on how many tokens were issued.
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0xFA17_FA17),
        }
    }

    /// The fault for the next feed request: a scripted one first, else a random roll.
    pub(crate) fn next(&mut self) -> Option<Fault> {
        if let Some(f) = self.scripted.pop_front() {
            return Some(f);
        }
        let c = &self.config;
        if c.total_fraction() <= 0.0 {
            return None;
        }
        let mut roll: f64 = self.rng.random();
        let table = [
            (
                c.too_many_requests,
                Fault::TooManyRequests {
                    retry_after_secs: c.retry_after_secs,
                },
            ),
            (c.rate_limit_400, Fault::RateLimit400),
            (c.server_error, Fault::ServerError),
            (c.html_524, Fault::Html524),
            (c.truncated, Fault::Truncated),
        ];
        for (p, fault) in table {
            if roll < p {
                return Some(fault);
            }
            roll -= p;
        }
        None
    }
}

/// What the feed handler does about a fault.
pub(crate) enum Action {
    /// Answer this instead of serving the request.
    Respond(Response),
    /// Sleep, then serve normally.
    Delay(Duration),
    /// Serve normally, then cut the body in half.
    Truncate,
}

/// 401 body of the real API.
pub(crate) const UNAUTHORIZED: &str = "Unauthorized: You must be logged in to call this API";

pub(crate) fn action(fault: Fault) -> Action {
    match fault {
        Fault::TooManyRequests { retry_after_secs } => {
            let mut r = json_error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
            if let Some(secs) = retry_after_secs {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            Action::Respond(r)
        }
        Fault::RateLimit400 => {
            Action::Respond(json_error(StatusCode::BAD_REQUEST, "Rate limit exceeded"))
        }
        Fault::ServerError => Action::Respond(json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
        )),
        Fault::Html524 => Action::Respond(html_524()),
        Fault::Unauthorized => Action::Respond(json_error(StatusCode::UNAUTHORIZED, UNAUTHORIZED)),
        Fault::Forbidden => Action::Respond(json_error(
            StatusCode::FORBIDDEN,
            "Forbidden: you do not have access to this corp or site",
        )),
        Fault::RedirectToLogin => Action::Respond(
            (
                StatusCode::FOUND,
                [(header::LOCATION, "/login?return_to=%2Fapi%2Fv0")],
            )
                .into_response(),
        ),
        Fault::Delay(d) => Action::Delay(d),
        Fault::Truncated => Action::Truncate,
    }
}

/// A Cloudflare-style "origin timed out" page: HTML where the client expects JSON.
fn html_524() -> Response {
    const BODY: &str = "<!DOCTYPE html>\n<html lang=\"en-US\">\n<head><title>dashboard.signalsciences.net | 524: A timeout occurred</title></head>\n<body>\n<h1>A timeout occurred <span>Error code 524</span></h1>\n<p>The origin web server timed out responding to this request.</p>\n<p>Cloudflare Ray ID: <strong>8e5c2a1b9f3d4e21</strong></p>\n</body>\n</html>\n";
    let status = StatusCode::from_u16(524).unwrap_or(StatusCode::GATEWAY_TIMEOUT);
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
        BODY,
    )
        .into_response()
}

/// The login page a misconfigured proxy redirects to: 200, HTML, not the API.
pub(crate) fn login_page() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!DOCTYPE html><html><head><title>Sign in</title></head><body><form method=\"post\" action=\"/login\"><input name=\"email\"><input name=\"password\" type=\"password\"></form></body></html>",
    )
        .into_response()
}

/// Cut a body to about half its length: still starts like JSON, never parses.
pub(crate) fn truncate(body: &[u8]) -> Vec<u8> {
    let cut = (body.len() / 2).max(1).min(body.len());
    body[..cut].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_the_documented_spec() {
        let c = FaultConfig::parse(
            "429=0.05,400=0.02,500=0.03,524=0.01,truncate=0.02,latency_ms=200,retry_after=1",
        )
        .expect("valid spec");
        assert_eq!(c.too_many_requests, 0.05);
        assert_eq!(c.rate_limit_400, 0.02);
        assert_eq!(c.server_error, 0.03);
        assert_eq!(c.html_524, 0.01);
        assert_eq!(c.truncated, 0.02);
        assert_eq!(c.latency_ms, 200);
        assert_eq!(c.retry_after_secs, Some(1));
        assert_eq!(
            FaultConfig::parse("").expect("empty"),
            FaultConfig::default()
        );
        assert_eq!(
            FaultConfig::parse("  ").expect("blank"),
            FaultConfig::default()
        );
        assert_eq!(
            FaultConfig::parse(" 500 = 1 ,")
                .expect("spaces")
                .server_error,
            1.0
        );
    }

    #[test]
    fn parse_rejects_bad_specs_naming_the_key() {
        for (spec, key) in [
            ("404=0.1", "404"),
            ("429=abc", "429"),
            ("500=1.5", "500"),
            ("524=-0.1", "524"),
            ("truncate=NaN", "truncate"),
            ("latency_ms=-5", "latency_ms"),
            ("retry_after=1.5", "retry_after"),
            ("429", "429"),
            ("429=0.1,429=0.2", "429"),
        ] {
            let err = FaultConfig::parse(spec).expect_err(spec);
            assert!(err.contains(key), "{spec}: {err}");
        }
        let err = FaultConfig::parse("429=0.6,500=0.5").expect_err("sum > 1");
        assert!(err.contains("429") && err.contains("500"), "{err}");
    }

    #[test]
    fn scripted_faults_come_first_in_order() {
        let mut s = FaultState::new(FaultConfig::default(), 1);
        s.scripted.extend([Fault::ServerError, Fault::Html524]);
        assert!(matches!(s.next(), Some(Fault::ServerError)));
        assert!(matches!(s.next(), Some(Fault::Html524)));
        assert!(s.next().is_none());
    }
}
