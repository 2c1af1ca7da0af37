//! The `/ack` poller: one task per sink that, while ids are pending, asks
//! `/services/collector/ack` for all of them at once and settles, blocks or retries by the
//! answer ([`classify_ack`]).

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::{AckKey, Tracker};
use crate::secret::Secret;
use crate::sink::splunk_hec::reply::{AckAnswer, classify_ack, transport_error};

/// What the poller needs to talk to HEC.
pub(crate) struct PollTarget {
    pub(crate) client: reqwest::Client,
    /// The sink's `url`, for transport-error hints.
    pub(crate) base: url::Url,
    pub(crate) ack_url: String,
    pub(crate) token: Secret,
    pub(crate) every: Duration,
}

/// The pause before the next query after `failures` failed ones in a row: `every`, doubled
/// per failure up to 32 times or 30 s, so a broken `/ack` is not asked every poll interval.
fn poll_pause(every: Duration, failures: u32) -> Duration {
    let backed = every.saturating_mul(1 << failures.min(5));
    backed.min(every.max(Duration::from_secs(30)))
}

async fn query(tracker: &Tracker, target: &PollTarget, ids: &[u64]) -> AckAnswer {
    let body = serde_json::json!({ "acks": ids }).to_string();
    let resp = target
        .client
        .post(&target.ack_url)
        .header(
            reqwest::header::AUTHORIZATION,
            format!("Splunk {}", target.token.expose()),
        )
        .header("X-Splunk-Request-Channel", &tracker.channel)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let failed = |e| AckAnswer::Retry(transport_error(e, &target.base).to_string());
    match resp {
        Ok(r) => {
            let status = r.status().as_u16();
            match r.bytes().await {
                Ok(b) => classify_ack(status, &b),
                Err(e) => failed(e),
            }
        }
        Err(e) => failed(e),
    }
}

/// The poller: while ids are pending, one `/ack` query with all of them every `every`.
/// Nothing is ever marked delivered but by an answer that says `true`. Answers that asking
/// again will not fix (auth, path, channel: [`classify_ack`]) block the sink with the cause
/// and the fix; others are asked again with a growing pause and a WARN with the count.
pub(crate) async fn poll(tracker: Arc<Tracker>, target: PollTarget) {
    let mut failures: u32 = 0;
    loop {
        if tracker.pending() == 0 {
            tracker.wake.notified().await;
            continue;
        }
        tokio::time::sleep(poll_pause(target.every, failures)).await;
        tracker.purge_stale().await;
        let keys: Vec<AckKey> = {
            let st = tracker.lock();
            st.pending.keys().filter_map(|&id| st.key_of(id)).collect()
        };
        if keys.is_empty() {
            continue;
        }
        let ids: Vec<u64> = keys.iter().map(|k| k.id).collect();
        match query(&tracker, &target, &ids).await {
            AckAnswer::Acks(map) => {
                if failures > 0 {
                    info!(sink = %tracker.sink, failures, "HEC answers acknowledgement queries again.");
                    failures = 0;
                }
                let done: Vec<AckKey> = keys
                    .iter()
                    .copied()
                    .filter(|k| map.get(&k.id.to_string()) == Some(&true))
                    .collect();
                if !done.is_empty() {
                    tracker.settle_true(&done).await;
                }
                tracker.unblock();
            }
            AckAnswer::Disabled(text) => {
                failures = failures.saturating_add(1);
                tracker.ack_disabled(&text).await;
            }
            AckAnswer::Blocked(reason) => {
                failures = failures.saturating_add(1);
                // The driver logs the block at ERROR when a batch waits on these requests.
                debug!(sink = %tracker.sink, %reason, failures, "HEC acknowledgement query refused; pending requests blocked.");
                tracker.block_all(&reason);
            }
            AckAnswer::Retry(reason) => {
                failures = failures.saturating_add(1);
                if failures.is_power_of_two() {
                    warn!(sink = %tracker.sink, %reason, failures, pending_requests = keys.len(),
                        "HEC acknowledgement query failed; pending events stay pending and are asked about again.");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_ack_endpoint_is_asked_less_often() {
        let ms = Duration::from_millis;
        assert_eq!(poll_pause(ms(50), 0), ms(50));
        assert_eq!(poll_pause(ms(50), 3), ms(400));
        assert_eq!(poll_pause(ms(50), 40), ms(1600));
        assert_eq!(
            poll_pause(Duration::from_secs(2), 40),
            Duration::from_secs(30)
        );
        assert_eq!(
            poll_pause(Duration::from_secs(60), 3),
            Duration::from_secs(60)
        );
    }
}
