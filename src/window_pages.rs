//! The pages of one window as the scheduler commits them: each fetched within the
//! process-wide page budget (`page_budget`), looked at for odd records (`feed_anomalies`), and,
//! when the window is fetched keeping unreadable records apart (`poll.skip_bad_records` on a
//! stuck window, see `site_health`), those records dead-lettered before the rest of the page
//! is handed on.

use crate::feed_anomalies::FeedAnomalies;
use crate::page_budget::{PageBudget, PagePermit};
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
    budget: PageBudget,
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
            budget: PageBudget::global().clone(),
            odd: FeedAnomalies::new(&key.site, from, until),
            store: store.clone(),
            key: key.clone(),
            from,
            until,
        }
    }

    /// Waits for room in the page budget, then fetches the next page. Its permit comes with
    /// it, to be dropped once the page is committed.
    pub(crate) async fn next(&mut self) -> Result<(Page, PagePermit), WindowError> {
        let permit = self.budget.page().await;
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
        Ok((page, permit))
    }
}
