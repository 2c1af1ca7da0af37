//! One window's walk through the feed, page by page, and the guards that end a walk the API
//! would otherwise keep going forever.
//!
//! A window normally ends with a page whose `next` is empty. Two replies would keep it going
//! while the cursor stands still and the corp's request budget drains: a `next` the window has
//! already followed (a loop of any length), and empty pages each with a fresh `next`. The first
//! is refused the moment it repeats; the second after [`MAX_EMPTY_PAGES_IN_A_ROW`] empty pages
//! in a row. Both fail the window with [`FeedError::Refused`], which the scheduler counts as a
//! site error needing an operator.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

use tracing::warn;

use super::FeedError;
use super::client::FeedClient;
use super::model::page::RejectedRecord;
use crate::store::NewEvent;

/// Empty pages in a row, each with a `next`, after which a window is refused as endless.
///
/// The API fills a page before it sends it, so an empty page that is not the last is rare
/// (a server-side tag filter may thin a page to nothing now and then); a hundred in a row is
/// far beyond that, and costs a hundred requests of the corp's budget at most. Not a setting.
pub const MAX_EMPTY_PAGES_IN_A_ROW: u32 = 100;

/// Iterates the pages of one window. The API may repeat an id on a later page; the spool's
/// `seen` table drops repeats (within a window, across windows and across restarts alike), so
/// the window keeps no set of ids of its own: an hour of a busy site's ids is megabytes.
#[derive(Debug)]
pub struct WindowFetch {
    client: FeedClient,
    site: String,
    from: i64,
    until: i64,
    tags: Option<String>,
    next: Option<String>,
    started: bool,
    done: bool,
    /// Pages received so far.
    pages: u64,
    /// Hashes of every `next` URI followed in this window (a token can be kilobytes; the hash
    /// is keyed per process, so a server cannot make two tokens collide on purpose).
    followed: HashSet<u64>,
    hasher: RandomState,
    /// Empty pages received in a row.
    empty_in_a_row: u32,
    /// Whether a page with more records than `api.page_limit` was reported (once a window).
    warned_over_limit: bool,
    /// The last page's records that cannot be taken (see [`FeedClient::keeping_bad_records`]).
    rejected: Vec<RejectedRecord>,
}

impl WindowFetch {
    /// The walk of `[from, until)` of `site` by `client`, not started yet.
    pub(crate) fn new(client: FeedClient, site: &str, from: i64, until: i64) -> WindowFetch {
        WindowFetch {
            client,
            site: site.to_string(),
            from,
            until,
            tags: None,
            next: None,
            started: false,
            done: false,
            pages: 0,
            followed: HashSet::new(),
            hasher: RandomState::new(),
            empty_in_a_row: 0,
            warned_over_limit: false,
            rejected: Vec::new(),
        }
    }

    /// The window's start.
    pub fn from(&self) -> i64 {
        self.from
    }

    /// The window's end (exclusive).
    pub fn until(&self) -> i64 {
        self.until
    }

    /// Asks the API for only the requests carrying `tags` (sent as `tags=` on the first page;
    /// the caller passes a single signal). The API's filter is a saving, not a guarantee:
    /// callers still filter pages.
    pub fn with_tags(mut self, tags: Option<String>) -> WindowFetch {
        self.tags = tags.filter(|t| !t.is_empty());
        self
    }

    /// The next page's relative URI, until the last page has come.
    pub fn next_uri(&self) -> Option<&str> {
        self.next.as_deref()
    }

    /// The records of the last page that cannot be taken, when the client keeps them apart
    /// ([`FeedClient::keeping_bad_records`]); the caller must dead-letter them.
    pub fn take_rejected(&mut self) -> Vec<RejectedRecord> {
        std::mem::take(&mut self.rejected)
    }

    /// The next page's records (repeats of earlier ids included: the spool drops them),
    /// `Ok(None)` once the window is exhausted. The returned flag is true when this page is the
    /// window's last.
    pub async fn next_page(&mut self) -> Result<Option<(Vec<NewEvent>, bool)>, FeedError> {
        if self.done {
            return Ok(None);
        }
        let page = if !self.started {
            self.client
                .first_page_tagged(&self.site, self.from, self.until, self.tags.as_deref())
                .await?
        } else {
            match &self.next {
                Some(uri) => {
                    if !self.followed.insert(self.hasher.hash_one(uri)) {
                        return Err(self.endless(format!(
                            "the API sent a next URI this window has already followed (after \
                             page {})",
                            self.pages
                        )));
                    }
                    self.client.next_page(&self.site, uri, self.from).await?
                }
                None => return Ok(None),
            }
        };
        self.started = true;
        self.pages += 1;
        self.check_limit(page.events.len() + page.rejected.len());
        self.rejected = page.rejected;
        self.next = page.next;
        self.done = self.next.is_none();
        if page.events.is_empty() && !self.done {
            self.empty_in_a_row += 1;
            if self.empty_in_a_row >= MAX_EMPTY_PAGES_IN_A_ROW {
                return Err(self.endless(format!(
                    "the API sent {} empty pages in a row, each with a new next URI (the bound \
                     is {MAX_EMPTY_PAGES_IN_A_ROW})",
                    self.empty_in_a_row
                )));
            }
        } else {
            self.empty_in_a_row = 0;
        }
        Ok(Some((page.events, self.done)))
    }

    /// Warns, once a window, about a page holding more records than the limit asked for: the
    /// records are kept, but the API is not keeping to what it was asked.
    fn check_limit(&mut self, records: usize) {
        let limit = self.client.page_limit();
        if records > limit as usize && !self.warned_over_limit {
            self.warned_over_limit = true;
            warn!(
                site = %self.site, records, limit, from = %crate::time::rfc3339(self.from),
                "The API sent a page with more records than the page limit asked for; keeping them (reported once per window)."
            );
        }
    }

    /// The error that ends an endless window, `what` saying why.
    fn endless(&mut self, what: String) -> FeedError {
        self.done = true;
        FeedError::Refused {
            reason: format!(
                "endless paging in window {}..{} of site `{}`: {what}; refusing the window \
                 rather than paging forever (it is fetched again later from its start)",
                crate::time::rfc3339(self.from),
                crate::time::rfc3339(self.until),
                self.site
            ),
        }
    }
}
