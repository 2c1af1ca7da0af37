//! The process-wide bound on feed pages in memory: fetched (or being fetched) and not yet
//! committed to the spool, across every site task and every backfill window.
//!
//! Each window holds up to two pages (one committing while the next is fetched), and a
//! backfill runs `poll.backfill_windows` windows per site: without a shared bound, memory grew
//! with the number of sites (20 sites discovered with `["*"]` peaked at 92 MB, against 48 MB
//! for 2 sites). A page (up to `api.page_limit` records of about a kilobyte, parsed in place)
//! takes about 2 MB at its peak, so [`PAGES_IN_FLIGHT`] pages keep the exporter within its
//! 64 MB budget whatever the number of sites; that is also what 2 sites with the default
//! `backfill_windows = 2` use on their own, so their throughput is unchanged.
//!
//! A permit is taken before a page is asked for (the reply's size is not known before it
//! arrives, and it is read whole) and given back once the page is committed. Waiters are
//! served in order (tokio's semaphore is fair), so no site starves another.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Pages in memory at once, in the whole process.
pub const PAGES_IN_FLIGHT: usize = 8;

/// A bound on pages in memory; clones share it. [`PageBudget::global`] is the process's.
#[derive(Clone, Debug)]
pub struct PageBudget {
    permits: Arc<Semaphore>,
}

/// One page's place in the budget, held until the page is committed (or dropped).
#[derive(Debug)]
pub struct PagePermit {
    _permit: Option<OwnedSemaphorePermit>,
}

impl PagePermit {
    /// Runs `work` (the page's commit), then gives the page's place back.
    pub async fn release_after<F: std::future::Future>(self, work: F) -> F::Output {
        let done = work.await;
        drop(self);
        done
    }
}

impl PageBudget {
    /// The process's budget of [`PAGES_IN_FLIGHT`] pages, shared by `run`'s site tasks and
    /// every window of a backfill.
    pub fn global() -> &'static PageBudget {
        static GLOBAL: std::sync::OnceLock<PageBudget> = std::sync::OnceLock::new();
        GLOBAL.get_or_init(PageBudget::default)
    }

    /// A budget of `pages` pages (at least one).
    pub fn new(pages: usize) -> PageBudget {
        PageBudget {
            permits: Arc::new(Semaphore::new(pages.max(1))),
        }
    }

    /// Waits for room for one more page.
    pub async fn page(&self) -> PagePermit {
        // Acquiring fails only on a closed semaphore, and nothing closes this one; were it
        // closed, the page would go ahead unbounded rather than stop the export.
        PagePermit {
            _permit: self.permits.clone().acquire_owned().await.ok(),
        }
    }

    /// Pages that could be taken right now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

impl Default for PageBudget {
    fn default() -> PageBudget {
        PageBudget::new(PAGES_IN_FLIGHT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_more_pages_than_the_budget_and_a_returned_page_frees_room() {
        let budget = PageBudget::new(2);
        let a = budget.page().await;
        let _b = budget.clone().page().await;
        assert_eq!(budget.available(), 0);
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.page().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(a);
        let _c = waiting.await.unwrap();
        assert_eq!(budget.available(), 0);
    }
}
