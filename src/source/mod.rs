//! The source: everything about talking to the Signal Sciences feed API.
//!
//! [`client::FeedClient`] makes one HTTP call per page (governor wait first, retries with full
//! jitter for rate limits and transient failures) and classifies every failure into a
//! [`SourceError`] whose variant says what the caller does next. [`window::WindowFetch`] walks
//! one `[from, until)` window page by page, following `next` (only to the same feed: see
//! `next_uri`) and refusing endless paging. Page bodies are read with a size cap (`body`);
//! failures to reach the API at all are put in words in `transport`. The scheduler decides
//! which windows to fetch; the store makes pages durable.

mod body;
pub mod client;
pub mod model;
mod next_uri;
mod transport;
pub mod window;

use std::time::Duration;

/// Why a feed request failed, shaped by what the caller does next.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// 429, or 400 "Rate limit exceeded": wait (honouring `Retry-After`) and try again.
    #[error("rate limited by the API ({reason})")]
    RateLimited {
        /// What the API said.
        reason: String,
        /// The API's `Retry-After`, when sent.
        after: Option<Duration>,
    },
    /// 5xx, timeouts, connection errors, truncated or unparseable replies: retry with backoff.
    #[error("transient API failure: {reason}")]
    Transient {
        /// What happened.
        reason: String,
    },
    /// 401/403: no data moves for this corp until an operator fixes the credentials or access.
    #[error("{reason}")]
    Auth {
        /// The cause and the fix.
        reason: String,
    },
    /// 404: the corp or site does not exist under that name.
    #[error("{reason}")]
    NotFound {
        /// The cause and the fix.
        reason: String,
    },
    /// 400 on a window: misaligned, too recent (clock skew) or older than the feed's retention.
    #[error("the API refused the window: {reason}")]
    BadWindow {
        /// The API's message.
        reason: String,
    },
    /// 400 on a `next` token: it expired (valid for one minute) or is unknown; the window must be
    /// fetched again from its start (the spool drops the duplicates).
    #[error("pagination token rejected ({reason}): refetching the window from its start")]
    NextExpired {
        /// The API's message.
        reason: String,
    },
    /// A local problem building the client (unreadable CA file).
    #[error("{reason}")]
    Setup {
        /// The cause.
        reason: String,
    },
    /// The exporter refused what the API sent, or the connection to it, and sending the same
    /// request again would only get the same: a `next` URI leading to another server or out of
    /// the site's feed, a redirect, endless paging, a page over the size cap, a
    /// `Content-Encoding` it cannot read, a TLS certificate that does not verify. An operator
    /// has to look; the reason says what and where.
    #[error("{reason}")]
    Refused {
        /// What was refused, and the fix.
        reason: String,
    },
}

impl SourceError {
    /// Whether the same request may succeed if sent again after a pause.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SourceError::RateLimited { .. } | SourceError::Transient { .. }
        )
    }

    /// Whether only an operator can fix it (the site is failing and `/readyz` says so): wrong
    /// credentials or access, an unknown corp or site, a client that cannot be built, or a
    /// reply or connection the exporter refused.
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            SourceError::Auth { .. }
                | SourceError::NotFound { .. }
                | SourceError::Setup { .. }
                | SourceError::Refused { .. }
        )
    }

    /// The server's requested pause, if it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SourceError::RateLimited { after, .. } => *after,
            _ => None,
        }
    }

    /// A short stable label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::RateLimited { .. } => "rate_limited",
            SourceError::Transient { .. } => "transient",
            SourceError::Auth { .. } => "auth",
            SourceError::NotFound { .. } => "not_found",
            SourceError::BadWindow { .. } => "bad_window",
            SourceError::NextExpired { .. } => "next_expired",
            SourceError::Setup { .. } => "setup",
            SourceError::Refused { .. } => "refused",
        }
    }
}
