//! The process-wide bound on feed pages in memory (asked for, or fetched and not yet committed
//! to the spool), across every site task and every backfill window: one [`PageBudget`] per
//! `run` or `backfill`, which is one per process.
//!
//! A backfill runs `poll.backfill_windows` windows per site, and `run` one per site: without a
//! shared bound, memory grew with the number of sites (20 sites discovered with `["*"]` peaked
//! at 92 MB, against 48 MB for 2 sites). The bound is on windows being fetched: at most
//! [`WINDOWS_IN_FLIGHT`] at once in the process, each holding at most two pages (one committing
//! while the next is fetched), so at most [`PAGES_IN_FLIGHT`] pages. A page (up to
//! `api.page_limit` records of about a kilobyte, parsed in place) takes about 2 MB at its peak,
//! so that keeps the exporter within its 64 MB whatever the number of sites; it is also what 2
//! sites with the default `backfill_windows = 2` use on their own, so their throughput is
//! unchanged. Not configurable. (A hostile page is cut at the body cap,
//! `source::sigsci_feed::body`: the budget bounds how many pages, the cap how large one can
//! be.)
//!
//! Why windows rather than pages: a window also keeps a little state of its own while it runs
//! (the `next` link, the odd-record check's hashes), and a window that can go on to its next
//! page at once keeps its pages together in the spool and in SQLite's B-trees; with a bound per
//! page, a hundred windows would each hold their state and take turns page by page.
//!
//! A window takes its place before its first page is asked for and gives it back once its last
//! page is committed (or it fails, or is cancelled); a failed window's pause before it is tried
//! again holds no place. Waiters are served in order (tokio's semaphore is fair), so no site
//! starves another. A window retrying a failing request inside the client keeps its place
//! meanwhile (up to `api.max_attempts` requests with their backoff).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Windows being fetched at once, in the whole process.
pub const WINDOWS_IN_FLIGHT: usize = 4;

/// Pages in memory at once, in the whole process: two per window.
pub const PAGES_IN_FLIGHT: usize = 2 * WINDOWS_IN_FLIGHT;

/// A bound on windows being fetched; clones share it. The scheduler makes one of
/// [`WINDOWS_IN_FLIGHT`] for every task of a `run` or a `backfill`.
#[derive(Clone, Debug)]
pub struct PageBudget {
    permits: Arc<Semaphore>,
}

/// One window's place in the budget, held while it is fetched.
#[derive(Debug)]
pub struct WindowSlot {
    _permit: Option<OwnedSemaphorePermit>,
}

impl PageBudget {
    /// A budget of `windows` windows (at least one).
    pub fn new(windows: usize) -> PageBudget {
        PageBudget {
            permits: Arc::new(Semaphore::new(windows.max(1))),
        }
    }

    /// Waits for room for one more window.
    pub async fn window(&self) -> WindowSlot {
        // Acquiring fails only on a closed semaphore, and nothing closes this one; were it
        // closed, the window would go ahead unbounded rather than stop the export.
        WindowSlot {
            _permit: self.permits.clone().acquire_owned().await.ok(),
        }
    }

    /// Windows that could start right now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_more_windows_than_the_budget_and_a_finished_one_frees_room() {
        let budget = PageBudget::new(2);
        let a = budget.window().await;
        let _b = budget.clone().window().await;
        assert_eq!(budget.available(), 0);
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.window().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(a);
        let _c = waiting.await.unwrap();
        assert_eq!(budget.available(), 0);
    }
}
