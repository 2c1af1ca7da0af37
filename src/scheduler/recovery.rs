//! What a poller does when a window cannot be fetched as planned: a failed window is logged at
//! the level its class deserves and paused on before it is fetched again
//! ([`after_failure`]), and a range the source no longer serves is recorded as a gap and skipped
//! ([`skip_lost_range`]). The source decides what is lost and the class of each failure; the
//! wording and the pauses are the scheduler's.

use std::time::Duration;

use tracing::{error, warn};

use super::{Ctx, RunError};
use crate::source::{ErrorClass, SourceError};
use crate::store::SiteKey;
use crate::telemetry::metrics;
use crate::time::rfc3339;

/// If `cursor` fell out of the source's retention, the data in between is gone for good: say
/// so exactly, persist the jump, and return the new cursor (at most `until_cap`).
///
/// While the source stays unreachable (credentials refused for longer than the retention),
/// every retry loses the minutes the source dropped since the last one: those extend the same
/// recorded range, logged at WARN with its new end, so the ERROR stays one per loss.
pub(super) async fn skip_lost_range(
    ctx: &Ctx,
    key: &SiteKey,
    cursor: i64,
    until_cap: i64,
) -> Result<i64, RunError> {
    let Some(lost) = ctx.source.lost(cursor, crate::time::now(), until_cap) else {
        return Ok(cursor);
    };
    // Recorded before the cursor jumps: a crash in between records it again (which adds
    // nothing), never jumps without a record.
    let gap = ctx.store.record_gap(key, lost.start, lost.end).await?;
    metrics::lost(&key.site, gap.added_secs);
    if gap.extended {
        warn!(
            corp = %key.corp, site = %key.site, lost_from = %rfc3339(gap.from), lost_until = %rfc3339(gap.until),
            lost_seconds = gap.until - gap.from, added_seconds = gap.added_secs,
            "Data loss continues: the lost range grew (the feed is still out of reach for longer than its retention)."
        );
    } else {
        error!(
            corp = %key.corp, site = %key.site, lost_from = %rfc3339(gap.from), lost_until = %rfc3339(gap.until),
            lost_seconds = gap.until - gap.from,
            "Data lost: the feed no longer serves this range (older than its retention); continuing from the oldest fetchable minute."
        );
    }
    ctx.store
        .commit_page(key, Vec::new(), crate::time::now(), Some(lost.end))
        .await?;
    Ok(lost.end)
}

/// Logs a failed window at the level it deserves and says how long to wait before the retry.
pub(super) fn after_failure(
    e: &SourceError,
    site: &str,
    from: i64,
    until: i64,
    failures: u32,
    interval_secs: i64,
) -> Duration {
    let (from, until) = (rfc3339(from), rfc3339(until));
    match e.class() {
        ErrorClass::Restart => {
            // Refetching at once is right, but not in a tight loop if it keeps happening.
            warn!(site, %from, %until, error = %e, "Window interrupted; fetching it again.");
            Duration::from_secs(u64::from(failures.min(30)))
        }
        ErrorClass::Operator => {
            error!(site, %from, %until, error = %e, "Feed access failed; no data moves for this site until it is fixed. Retrying periodically.");
            Duration::from_secs(60.max(interval_secs as u64)).min(Duration::from_secs(300))
        }
        ErrorClass::BadRequest => {
            // Usually our clock is ahead of the API's (until too recent).
            warn!(site, %from, %until, error = %e, "API refused the window; check the host clock (NTP). Retrying.");
            Duration::from_secs(60)
        }
        ErrorClass::Transient | ErrorClass::Unreadable => {
            warn!(site, %from, %until, error = %e, "Window failed after retries; it is fetched again from its start.");
            Duration::from_secs(
                (interval_secs as u64)
                    .min(5 * u64::from(failures.min(12)))
                    .max(1),
            )
        }
    }
}
