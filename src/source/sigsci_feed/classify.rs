//! A feed reply that is not a 200, in the words of what the caller does next: the status
//! (and, for a 400, the API's message) picks the [`FeedError`] variant, and the reason names
//! the user, corp or site concerned and the fix, never the token.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

use super::FeedError;
use super::client::Target;
use super::model::ErrorWire;
use crate::config::Credentials;

/// What the API said: its `message`, or a one-line excerpt of whatever else it sent.
fn message(body: &[u8]) -> String {
    if let Ok(ErrorWire { message: Some(m) }) = serde_json::from_slice::<ErrorWire>(body) {
        return m;
    }
    // A proxy may answer HTML or nothing: show a short, single-line excerpt.
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        "empty body".to_string()
    } else {
        one_line.chars().take(160).collect()
    }
}

/// The pause the API asks for, in seconds or as a date, at most an hour.
pub(super) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v: &HeaderValue = headers.get(RETRY_AFTER)?;
    let s = v.to_str().ok()?.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(3600)));
    }
    let when = chrono::DateTime::parse_from_rfc2822(s).ok()?;
    let secs = (when.timestamp() - crate::time::now()).clamp(0, 3600);
    Some(Duration::from_secs(secs as u64))
}

/// The error a reply of `status` to `target` is.
pub(super) fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    target: &Target<'_>,
    creds: &Credentials,
    corp: &str,
) -> FeedError {
    let msg = message(body);
    let site = match target {
        Target::Window { site, .. } => Some(*site),
        _ => None,
    };
    match status.as_u16() {
        429 => FeedError::RateLimited {
            reason: format!("HTTP 429: {msg}"),
            after: parse_retry_after(headers),
        },
        // The API signals throttling as a 400 too; only the message tells them apart.
        400 if msg.to_ascii_lowercase().contains("rate limit") => FeedError::RateLimited {
            reason: format!("HTTP 400: {msg}"),
            after: parse_retry_after(headers),
        },
        400 if matches!(target, Target::Next { .. }) => FeedError::NextExpired { reason: msg },
        400 => FeedError::BadWindow { reason: msg },
        401 => FeedError::Auth {
            reason: format!(
                "HTTP 401 for API user `{}`: the token is wrong, expired, disabled by an owner, or \
                 restricted to other source IPs; no data moves until it is fixed (API: {msg})",
                creds.email
            ),
        },
        403 => FeedError::Auth {
            reason: format!(
                "HTTP 403 for API user `{}`: the user lacks access to corp `{corp}`{}; grant the \
                 user a role on it (API: {msg})",
                creds.email,
                site.map(|s| format!(" or site `{s}`")).unwrap_or_default()
            ),
        },
        404 => FeedError::NotFound {
            reason: match site {
                Some(s) => format!(
                    "HTTP 404: corp `{corp}` or site `{s}` not found; use API names as in \
                     `GET /corps/{corp}/sites` (`name`), not display names (API: {msg})"
                ),
                None => format!(
                    "HTTP 404: corp `{corp}` not found; use the corp's API name (API: {msg})"
                ),
            },
        },
        _ if status.is_server_error() || status.as_u16() == 408 => FeedError::Transient {
            reason: format!("HTTP {}: {msg}", status.as_u16()),
        },
        _ => FeedError::BadWindow {
            reason: format!("unexpected HTTP {}: {msg}", status.as_u16()),
        },
    }
}
