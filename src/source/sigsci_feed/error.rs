//! The v0 feed's failures, one variant per thing the caller may do next, and the class each
//! one is to the scheduler ([`crate::source::ErrorClass`]): the scheduler acts on the class and
//! shows the text, and never sees these variants.

use std::time::Duration;

use super::model::page::UNREADABLE_PAGE;
use crate::source::ErrorClass;

/// Why a feed request failed, shaped by what the caller does next.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
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

impl FeedError {
    /// Whether the same request may succeed if sent again after a pause.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            FeedError::RateLimited { .. } | FeedError::Transient { .. }
        )
    }

    /// Whether only an operator can fix it (the site is failing and `/readyz` says so): wrong
    /// credentials or access, an unknown corp or site, a client that cannot be built, or a
    /// reply or connection the exporter refused.
    pub fn needs_operator(&self) -> bool {
        self.class() == ErrorClass::Operator
    }

    /// The server's requested pause, if it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FeedError::RateLimited { after, .. } => *after,
            _ => None,
        }
    }

    /// What the scheduler does after it.
    pub fn class(&self) -> ErrorClass {
        match self {
            FeedError::RateLimited { .. } => ErrorClass::Transient,
            FeedError::Transient { reason } if reason.starts_with(UNREADABLE_PAGE) => {
                ErrorClass::Unreadable
            }
            FeedError::Transient { .. } => ErrorClass::Transient,
            FeedError::NextExpired { .. } => ErrorClass::Restart,
            FeedError::BadWindow { .. } => ErrorClass::BadRequest,
            FeedError::Auth { .. }
            | FeedError::NotFound { .. }
            | FeedError::Setup { .. }
            | FeedError::Refused { .. } => ErrorClass::Operator,
        }
    }

    /// A short stable label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            FeedError::RateLimited { .. } => "rate_limited",
            FeedError::Transient { .. } => "transient",
            FeedError::Auth { .. } => "auth",
            FeedError::NotFound { .. } => "not_found",
            FeedError::BadWindow { .. } => "bad_window",
            FeedError::NextExpired { .. } => "next_expired",
            FeedError::Setup { .. } => "setup",
            FeedError::Refused { .. } => "refused",
        }
    }
}
