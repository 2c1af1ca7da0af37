//! One window's page loop: the pages of `[from, until)` of one partition, fetched within the
//! process's page budget (`page_budget`: the window holds a place from its first page to its
//! end), filtered, and committed in order, each page committed while the next is fetched.
//! Records the source kept apart as unreadable (the window fetched with `keep_bad`, see
//! `site_health`) are dead-lettered before the rest of their page is committed.

use super::Ctx;
use super::page_budget::WindowSlot;
use crate::pipeline::filter::TagFilter;
use crate::source::{Page, Pages, Position, SourceError};
use crate::store::{SiteKey, StoreError};
use crate::telemetry::metrics;
use tracing::debug;

/// Why a window's page did not arrive.
pub(super) enum WindowError {
    /// The state database failed.
    Store(StoreError),
    /// The source failed.
    Source(SourceError),
}

/// One window of one partition, as a poller asks for it.
pub(super) struct Window<'a> {
    /// Where its pages are committed.
    pub(super) key: &'a SiteKey,
    /// What of each page is spooled.
    pub(super) filter: &'a TagFilter,
    /// Its start.
    pub(super) from: i64,
    /// Its end (exclusive).
    pub(super) until: i64,
    /// Whether its last page moves the cursor to `until` (parallel backfill windows leave that
    /// to their coordinator, which moves it only over a contiguous run of finished windows).
    pub(super) move_cursor: bool,
    /// Whether records that cannot be read are dead-lettered and the rest of their page goes
    /// on.
    pub(super) keep_bad: bool,
}

/// Fetches `w`, committing each page. `Ok(None)` if cancelled (nothing of the current page
/// committed; the window is fetched again next time); otherwise the number of events newly
/// spooled.
pub(super) async fn fetch_window(ctx: &Ctx, w: Window<'_>) -> Result<Option<u64>, WindowError> {
    let (key, filter) = (w.key, w.filter);
    let mut pages = ctx
        .source
        .fetch(&key.site, &Position::at(w.from), w.until, w.keep_bad);
    // Taken before the first page is asked for, given back when the window is over.
    let mut slot = None;
    let mut total = 0u64;
    let mut page = tokio::select! {
        page = next_page(ctx, &w, pages.as_mut(), &mut slot) => page?,
        _ = ctx.cancel.cancelled() => return Ok(None),
    };
    loop {
        let Some(Page {
            records: mut events,
            next: after,
            done: last,
            ..
        }) = page
        else {
            return Ok(Some(total));
        };
        if !filter.is_empty() {
            // Filtered-out events are never spooled; the cursor still moves over them with the
            // window's last page, so they are not fetched again.
            let fetched = events.len();
            events.retain(|e| filter.keep(&e.body));
            metrics::events_filtered(&key.site, fetched - events.len());
            debug!(
                site = %key.site,
                fetched,
                kept = events.len(),
                dropped = fetched - events.len(),
                "Tag filter applied to a page."
            );
        }
        // Not raced against cancellation: a commit finishes or never started.
        let commit = ctx.store.commit_page(
            key,
            events,
            crate::time::now(),
            (last && w.move_cursor).then_some(after.watermark),
        );
        // The next page is fetched while this one is committed: where it is is known, and
        // the two use different resources (the API and the disk), so a window's pages do not
        // wait for each other's round trips. Commits stay in page order, one at a time.
        let (committed, next) = if last {
            (commit.await, Ok(None))
        } else {
            tokio::join!(commit, async {
                tokio::select! {
                    page = next_page(ctx, &w, pages.as_mut(), &mut slot) => page.map(Some),
                    _ = ctx.cancel.cancelled() => Ok(None),
                }
            })
        };
        let outcome = committed.map_err(WindowError::Store)?;
        total += outcome.inserted as u64;
        metrics::page_committed(&key.site, outcome.inserted, outcome.duplicates);
        if last {
            return Ok(Some(total));
        }
        match next? {
            Some(p) => page = p,
            // Cancelled while fetching: this window is fetched again next time.
            None => return Ok(None),
        }
    }
}

/// Fetches the window's next page; before the first, waits for the window's place in the page
/// budget. Records kept apart as unreadable are dead-lettered before the page is handed on.
async fn next_page(
    ctx: &Ctx,
    w: &Window<'_>,
    pages: &mut dyn Pages,
    slot: &mut Option<WindowSlot>,
) -> Result<Option<Page>, WindowError> {
    if slot.is_none() {
        *slot = Some(ctx.budget.window().await);
    }
    let mut page = pages.next().await.map_err(WindowError::Source)?;
    if let Some(p) = page.as_mut()
        && !p.rejected.is_empty()
    {
        let rejected = std::mem::take(&mut p.rejected);
        super::site_health::keep_rejected(&ctx.store, w.key, w.from, w.until, rejected)
            .await
            .map_err(WindowError::Store)?;
    }
    Ok(page)
}
