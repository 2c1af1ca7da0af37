//! The source: everything about talking to the Signal Sciences feed API.
//!
//! [`client::FeedClient`] makes one HTTP call per page (governor wait first, retries with full
//! jitter for rate limits and transient failures) and classifies every failure into a
//! [`SourceError`] whose variant says what the caller does next. [`client::WindowFetch`] walks
//! one `[from, until)` window page by page, following `next` and dropping ids already seen in the
//! window. The scheduler decides which windows to fetch; the store makes pages durable.

pub mod client;
pub mod model;

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
}

impl SourceError {
    /// Whether the same request may succeed if sent again after a pause.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SourceError::RateLimited { .. } | SourceError::Transient { .. }
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
        }
    }
}
