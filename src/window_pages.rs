//! The pages of one window as the scheduler commits them: fetched within the process-wide page
//! budget (`page_budget`: the window holds a place from its first page to its end), looked at
//! for odd records (`feed_anomalies`), and,
//! when the window is fetched keeping unreadable records apart (`poll.skip_bad_records` on a
//! stuck window, see `site_health`), those records dead-lettered before the rest of the page
//! is handed on.

use crate::feed_anomalies::FeedAnomalies;
use crate::page_budget::{PageBudget, WindowSlot};
use crate::source::SourceError;
use crate::source::client::{FeedClient, WindowFetch};
use crate::store::{NewEvent, SiteKey, Store, StoreError};

/// Why a window's page did not arrive.
pub(crate) enum WindowError {
    /// The state database failed.
    Store(StoreError),
    /// The feed failed.
    Source(SourceError),
}

/// One page as [`WindowFetch::next_page`] returns it: its events and whether it is the last,
/// `None` once the window is exhausted.
pub(crate) type Page = Option<(Vec<NewEvent>, bool)>;

/// The pages of the window `[from, until)` of one site.
pub(crate) struct WindowPages {
    window: WindowFetch,
    /// Taken before the first page is asked for, given back when the window is dropped.
    slot: Option<WindowSlot>,
    odd: FeedAnomalies,
    store: Store,
    key: SiteKey,
    from: i64,
    until: i64,
}

impl WindowPages {
    /// Asks for `[from, until)` of `key`'s site, only the requests with `tags` when given;
    /// with `keep_bad`, records that cannot be read are dead-lettered instead of refusing
    /// their page.
    pub(crate) fn new(
        client: &FeedClient,
        store: &Store,
        key: &SiteKey,
        (from, until, tags): (i64, i64, Option<String>),
        keep_bad: bool,
    ) -> WindowPages {
        let client = match keep_bad {
            true => client.keeping_bad_records(),
            false => client.clone(),
        };
        WindowPages {
            window: client.window(&key.site, from, until).with_tags(tags),
            slot: None,
            odd: FeedAnomalies::new(&key.site, from, until),
            store: store.clone(),
            key: key.clone(),
            from,
            until,
        }
    }

    /// Fetches the next page; before the first, waits for the window's place in the page
    /// budget.
    pub(crate) async fn next(&mut self) -> Result<Page, WindowError> {
        if self.slot.is_none() {
            self.slot = Some(PageBudget::global().window().await);
        }
        let page = self.window.next_page().await.map_err(WindowError::Source)?;
        if let Some((events, _)) = &page {
            self.odd.inspect(events);
        }
        let rejected = self.window.take_rejected();
        if !rejected.is_empty() {
            crate::site_health::keep_rejected(
                &self.store,
                &self.key,
                self.from,
                self.until,
                rejected,
            )
            .await
            .map_err(WindowError::Store)?;
        }
        Ok(page)
    }
}
