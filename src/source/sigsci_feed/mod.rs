//! The Signal Sciences v0 feed (`GET /corps/{corp}/sites/{site}/feed/requests`) as a
//! [`Source`]: its partitions are the corp's sites, its windows are whole minutes.
//!
//! [`SigsciFeed`] holds the feed's rules the scheduler used to know: a window starts and ends
//! on a full minute (the API refuses anything else); it ends at `now - poll.delay_secs` at the
//! latest, since the API serves only data that old ([`Source::horizon`]); nothing older than
//! `api.retention_secs` can be fetched, so a site that fell further behind has lost the range
//! in between ([`Source::lost`], with a minute of margin); server-side filtering is the
//! `tags=` parameter of a window's first page; and an expired `next` is
//! [`ErrorClass::Restart`](crate::source::ErrorClass::Restart): the window is fetched again from its start.
//!
//! Inside: [`client::FeedClient`] makes one HTTP call per page (governor wait first, retries
//! with full jitter for rate limits and transient failures) and classifies every failure into
//! a [`FeedError`] whose variant says what the caller does next (`classify`).
//! [`window::WindowFetch`] walks one `[from, until)` window page by page, following `next`
//! (only to the same feed: see `next_uri`) and refusing endless paging; each page's records are
//! looked at for odd ones (`anomalies`). Page bodies are read with a size cap (`body`) and
//! parsed in [`model`]; failures to reach the API at all are put in words in `transport`;
//! `check`'s probes of the API and of every site are in `healthcheck`.

mod anomalies;
mod body;
mod classify;
pub mod client;
mod error;
mod healthcheck;
pub mod model;
mod next_uri;
mod transport;
pub mod window;

pub use error::FeedError;

use std::ops::Range;

use async_trait::async_trait;

use self::anomalies::FeedAnomalies;
use self::client::FeedClient;
use self::model::page::RejectedRecord;
use self::window::WindowFetch;
use super::{Page, Pages, Partitions, Position, Probe, Rejected, Source, SourceError};
use crate::config::{ApiConfig, Sites};
use crate::pipeline::filter::Filters;
use crate::time::align_down;

/// The v0 feed of one corp, as the scheduler and `check` use it.
#[derive(Debug, Clone)]
pub struct SigsciFeed {
    client: FeedClient,
    /// For `check`'s own client (fewer retries) and its messages, and the configured sites.
    api: ApiConfig,
    /// `poll.delay_secs`: how old data must be before the API serves it.
    delay_secs: i64,
    /// The tag filters, for `tags=` when `filters.server_side` is on.
    filters: Filters,
}

impl SigsciFeed {
    /// The feed of `api.corp`, with its client built as `run` builds it (no network I/O).
    pub fn new(
        api: &ApiConfig,
        delay_secs: i64,
        filters: &Filters,
    ) -> Result<SigsciFeed, FeedError> {
        Ok(SigsciFeed {
            client: FeedClient::new(api)?,
            api: api.clone(),
            delay_secs,
            filters: filters.clone(),
        })
    }

    /// The client its windows are fetched with.
    pub fn client(&self) -> &FeedClient {
        &self.client
    }
}

/// The oldest `from` the API still serves, with a minute of margin for clock differences.
fn oldest_fetchable(now: i64, retention_secs: i64) -> i64 {
    align_down(now - retention_secs) + 60
}

#[async_trait]
impl Source for SigsciFeed {
    fn scope(&self) -> &str {
        &self.api.corp
    }

    fn partitions(&self) -> Partitions {
        match &self.api.sites {
            Sites::List(sites) => Partitions::Listed(sites.clone()),
            Sites::All => Partitions::Discovered,
        }
    }

    async fn discover(&self) -> Result<Vec<String>, SourceError> {
        let sites = self.client.list_sites().await?;
        Ok(sites.into_iter().map(|s| s.name).collect())
    }

    fn horizon(&self, now: i64) -> i64 {
        align_down(now - self.delay_secs)
    }

    fn retention_secs(&self) -> i64 {
        self.api.retention_secs
    }

    fn lost(&self, watermark: i64, now: i64, cap: i64) -> Option<Range<i64>> {
        let oldest = oldest_fetchable(now, self.api.retention_secs).min(cap);
        (watermark < oldest).then_some(watermark..oldest)
    }

    /// The token of `from` is not used: a v0 `next` expires within a minute, so a window is
    /// always fetched from its start.
    fn fetch(&self, site: &str, from: &Position, until: i64, keep_bad: bool) -> Box<dyn Pages> {
        let client = match keep_bad {
            true => self.client.keeping_bad_records(),
            false => self.client.clone(),
        };
        let tags = if self.filters.server_side() {
            self.filters.for_site(site).query_value()
        } else {
            None
        };
        let from = from.watermark;
        Box::new(FeedPages {
            window: client.window(site, from, until).with_tags(tags),
            odd: FeedAnomalies::new(site, from, until),
            from,
            until,
        })
    }

    async fn healthcheck(&self) -> Vec<Probe> {
        healthcheck::probe(&self.api, self.delay_secs).await
    }
}

/// One window's pages as the scheduler takes them: the walk, with its odd-record check, which
/// logs its WARN when the window is over (dropped).
struct FeedPages {
    window: WindowFetch,
    odd: FeedAnomalies,
    from: i64,
    until: i64,
}

#[async_trait]
impl Pages for FeedPages {
    async fn next(&mut self) -> Result<Option<Page>, SourceError> {
        let Some((records, done)) = self.window.next_page().await? else {
            return Ok(None);
        };
        self.odd.inspect(&records);
        let rejected = self
            .window
            .take_rejected()
            .into_iter()
            .map(Rejected::from)
            .collect();
        // The watermark moves only with the window's last page: the feed's pages are not in
        // time order, so nothing before a later instant is known to be spooled until then.
        let next = match done {
            true => Position::at(self.until),
            false => Position {
                watermark: self.from,
                token: self.window.next_uri().map(str::to_owned),
            },
        };
        Ok(Some(Page {
            records,
            next,
            done,
            rejected,
        }))
    }
}

impl From<RejectedRecord> for Rejected {
    fn from(r: RejectedRecord) -> Rejected {
        Rejected {
            place: r.position(),
            id: r.id,
            ts: r.ts,
            problem: r.problem,
            raw: r.raw,
        }
    }
}

impl From<FeedError> for SourceError {
    fn from(e: FeedError) -> SourceError {
        let after = e.retry_after();
        SourceError::new(e.class(), e.to_string()).with_retry_after(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ErrorClass;

    #[test]
    fn oldest_fetchable_is_inside_retention() {
        let now = 1_800_000_030;
        let oldest = oldest_fetchable(now, 86_700);
        assert_eq!(oldest % 60, 0);
        assert!(oldest >= now - 86_700);
        assert!(oldest - (now - 86_700) <= 60);
    }

    #[test]
    fn each_feed_error_is_the_class_the_scheduler_acts_on() {
        let reason = || "x".to_string();
        let class = |e: FeedError| SourceError::from(e).class();
        assert_eq!(
            class(FeedError::RateLimited {
                reason: reason(),
                after: None
            }),
            ErrorClass::Transient
        );
        assert_eq!(
            class(FeedError::Transient { reason: reason() }),
            ErrorClass::Transient
        );
        assert_eq!(
            class(FeedError::Transient {
                reason: format!("{} (3 bytes): not JSON", model::page::UNREADABLE_PAGE)
            }),
            ErrorClass::Unreadable
        );
        assert_eq!(
            class(FeedError::NextExpired { reason: reason() }),
            ErrorClass::Restart
        );
        assert_eq!(
            class(FeedError::BadWindow { reason: reason() }),
            ErrorClass::BadRequest
        );
        for e in [
            FeedError::Auth { reason: reason() },
            FeedError::NotFound { reason: reason() },
            FeedError::Setup { reason: reason() },
            FeedError::Refused { reason: reason() },
        ] {
            assert!(e.needs_operator());
            assert_eq!(class(e), ErrorClass::Operator);
        }
        let limited = SourceError::from(FeedError::RateLimited {
            reason: reason(),
            after: Some(std::time::Duration::from_secs(7)),
        });
        assert_eq!(
            limited.retry_after(),
            Some(std::time::Duration::from_secs(7))
        );
        assert_eq!(limited.to_string(), "rate limited by the API (x)");
    }
}
