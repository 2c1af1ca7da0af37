//! Metric names and one function per operational event, so call sites never spell a metric
//! name and every metric is described in one place. Recorded through the `metrics` facade; the
//! admin endpoint renders them in the Prometheus text format. Without an installed recorder
//! (`backfill`, tests) every call is a cheap no-op.
//!
//! Labels are bounded: site names and sink names from the config, status codes, outcome kinds.
//! Never an event id, a URL or anything secret.

use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

/// Registers descriptions and units (shown as `# HELP` / `# TYPE` lines).
pub fn describe() {
    describe_counter!(
        "sigsci_export_events_fetched_total",
        "Events fetched from the feed API and spooled, per site."
    );
    describe_counter!(
        "sigsci_export_events_refetched_total",
        "Events fetched again (same request id) and dropped as duplicates before spooling."
    );
    describe_counter!(
        "sigsci_export_events_filtered_total",
        "Events dropped by the tag filters before spooling."
    );
    describe_counter!(
        "sigsci_export_pages_total",
        "Feed pages committed to the spool, per site."
    );
    describe_counter!(
        "sigsci_export_api_requests_total",
        "Feed API requests by HTTP status (`error` for no reply)."
    );
    describe_counter!(
        "sigsci_export_api_rate_limited_total",
        "Feed API answers that asked us to slow down (429 or 400 rate limit)."
    );
    describe_histogram!(
        "sigsci_export_api_request_duration_seconds",
        Unit::Seconds,
        "Feed API request latency."
    );
    describe_gauge!(
        "sigsci_export_site_lag_seconds",
        Unit::Seconds,
        "now - the site's cursor: how far behind real time the export is."
    );
    describe_counter!(
        "sigsci_export_lost_seconds_total",
        Unit::Seconds,
        "Seconds of a site's feed lost for good (older than the API's retention when reached)."
    );
    describe_gauge!(
        "sigsci_export_site_failing",
        "1 while the site's last window failed."
    );
    describe_counter!(
        "sigsci_export_sink_events_total",
        "Events settled or retried by a sink, by outcome: delivered, duplicate, retried, dead_lettered."
    );
    describe_histogram!(
        "sigsci_export_sink_send_duration_seconds",
        Unit::Seconds,
        "Time of one Sink::send (all requests of a batch)."
    );
    describe_counter!(
        "sigsci_export_sink_send_errors_total",
        "Failed sends by kind: retryable, too_large, invalid, blocked."
    );
    describe_gauge!(
        "sigsci_export_sink_blocked",
        "1 while a sink is paused until an operator acts."
    );
    describe_gauge!(
        "sigsci_export_sink_backlog_events",
        "Spooled events a sink has not settled yet."
    );
    describe_gauge!(
        "sigsci_export_sink_backlog_bytes",
        Unit::Bytes,
        "Body bytes of those events."
    );
    describe_gauge!(
        "sigsci_export_sink_oldest_pending_age_seconds",
        Unit::Seconds,
        "Age (since fetch) of the oldest event a sink has not settled."
    );
    describe_gauge!(
        "sigsci_export_spool_bytes",
        Unit::Bytes,
        "Body bytes in the spool."
    );
    describe_gauge!(
        "sigsci_export_spool_full",
        "1 while polling is paused because the spool reached spool.max_bytes."
    );
    describe_counter!(
        "sigsci_export_spool_dropped_events_total",
        "Undelivered events dropped because the spool was full (when_full = drop_oldest)."
    );
    describe_gauge!(
        "sigsci_export_corp_blocked",
        "1 while the feed API refuses at least one site of the corp (credentials, access, unknown site)."
    );
    describe_gauge!(
        "sigsci_export_site_stuck",
        "1 while the site's window has failed several times in a row on a feed page that cannot be read (bad records or not JSON)."
    );
    describe_counter!(
        "sigsci_export_feed_dead_letters_total",
        "Feed records that could not be read, kept as dead letters so the rest of their page flows (poll.skip_bad_records)."
    );
    describe_counter!(
        "sigsci_export_feed_anomalies_total",
        "Records the feed should not send, by kind: changed_duplicate (an id seen before with other content; the first copy is kept), outside_window (a timestamp outside the window asked for; spooled anyway)."
    );
    describe_gauge!(
        "sigsci_export_site_blocked",
        "1 while the feed API refuses this site (credentials, access, unknown site) until an operator acts."
    );
}

/// A page was committed: `inserted` new events, `refetched` already-seen ones.
pub fn page_committed(site: &str, inserted: usize, refetched: usize) {
    counter!("sigsci_export_pages_total", "site" => site.to_owned()).increment(1);
    counter!("sigsci_export_events_fetched_total", "site" => site.to_owned())
        .increment(inserted as u64);
    if refetched > 0 {
        counter!("sigsci_export_events_refetched_total", "site" => site.to_owned())
            .increment(refetched as u64);
    }
}

/// Events dropped by the tag filters.
pub fn events_filtered(site: &str, n: usize) {
    counter!("sigsci_export_events_filtered_total", "site" => site.to_owned()).increment(n as u64);
}

/// One feed API exchange: `status` is the HTTP status, or `None` when no reply came.
pub fn api_request(status: Option<u16>, elapsed: Duration) {
    let status = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
    counter!("sigsci_export_api_requests_total", "status" => status).increment(1);
    histogram!("sigsci_export_api_request_duration_seconds").record(elapsed.as_secs_f64());
}

/// The API asked us to slow down.
pub fn api_rate_limited() {
    counter!("sigsci_export_api_rate_limited_total").increment(1);
}

/// The site's cursor is `lag_secs` behind now.
pub fn site_lag(site: &str, lag_secs: i64) {
    gauge!("sigsci_export_site_lag_seconds", "site" => site.to_owned()).set(lag_secs.max(0) as f64);
}

/// Whether the site's last window failed.
pub fn site_failing(site: &str, failing: bool) {
    gauge!("sigsci_export_site_failing", "site" => site.to_owned()).set(if failing {
        1.0
    } else {
        0.0
    });
}

/// Whether the site is stuck on a feed page that cannot be read (`/readyz` reports it too:
/// `crate::health::Health::site_stuck`).
pub fn site_stuck(site: &str, stuck: bool) {
    gauge!("sigsci_export_site_stuck", "site" => site.to_owned()).set(flag(stuck));
}

/// `n` records of the site's feed were kept as dead letters.
pub fn feed_dead_letters(site: &str, n: usize) {
    counter!("sigsci_export_feed_dead_letters_total", "site" => site.to_owned())
        .increment(n as u64);
}

/// `n` records of the site's feed were of an odd `kind` (`changed_duplicate`,
/// `outside_window`).
pub fn feed_anomalies(site: &str, kind: &'static str, n: usize) {
    if n > 0 {
        counter!("sigsci_export_feed_anomalies_total", "site" => site.to_owned(), "kind" => kind)
            .increment(n as u64);
    }
}

/// `secs` of a site's feed were lost for good.
pub fn lost(site: &str, secs: i64) {
    counter!("sigsci_export_lost_seconds_total", "site" => site.to_owned())
        .increment(secs.max(0) as u64);
}

/// Per-event outcomes of one send.
pub fn sink_outcomes(sink: &str, delivered: usize, duplicate: usize, retried: usize, dead: usize) {
    for (outcome, n) in [
        ("delivered", delivered),
        ("duplicate", duplicate),
        ("retried", retried),
        ("dead_lettered", dead),
    ] {
        if n > 0 {
            counter!("sigsci_export_sink_events_total", "sink" => sink.to_owned(), "outcome" => outcome)
                .increment(n as u64);
        }
    }
}

/// One `Sink::send` took `elapsed`; `error` names the failure kind, if any.
pub fn sink_send(sink: &str, elapsed: Duration, error: Option<&'static str>) {
    histogram!("sigsci_export_sink_send_duration_seconds", "sink" => sink.to_owned())
        .record(elapsed.as_secs_f64());
    if let Some(kind) = error {
        counter!("sigsci_export_sink_send_errors_total", "sink" => sink.to_owned(), "kind" => kind)
            .increment(1);
    }
}

/// A sink's backlog, sampled from the store.
pub fn sink_backlog(sink: &str, events: i64, bytes: i64, oldest_age_secs: Option<i64>) {
    gauge!("sigsci_export_sink_backlog_events", "sink" => sink.to_owned()).set(events as f64);
    gauge!("sigsci_export_sink_backlog_bytes", "sink" => sink.to_owned()).set(bytes as f64);
    gauge!("sigsci_export_sink_oldest_pending_age_seconds", "sink" => sink.to_owned())
        .set(oldest_age_secs.unwrap_or(0).max(0) as f64);
}

/// Spool size, sampled.
pub fn spool_bytes(bytes: i64) {
    gauge!("sigsci_export_spool_bytes").set(bytes as f64);
}

/// Whether polling is paused because the spool is full (`/readyz` reports it too:
/// `crate::health::Health::spool_full`).
pub fn spool_full(full: bool) {
    gauge!("sigsci_export_spool_full").set(flag(full));
}

/// Undelivered events dropped from a full spool.
pub fn spool_dropped(events: i64) {
    counter!("sigsci_export_spool_dropped_events_total").increment(events.max(0) as u64);
}

/// Whether a sink is paused until an operator acts (`/readyz` reports it too:
/// `crate::health::Health::sink_blocked`).
pub fn sink_blocked(sink: &str, blocked: bool) {
    gauge!("sigsci_export_sink_blocked", "sink" => sink.to_owned()).set(flag(blocked));
}

/// Whether the feed API refuses site `site` until an operator acts (`/readyz` reports it too:
/// `crate::health::Health::site_blocked`).
pub fn site_blocked(site: &str, blocked: bool) {
    gauge!("sigsci_export_site_blocked", "site" => site.to_owned()).set(flag(blocked));
}

/// Whether the feed API refuses at least one site of `corp`.
pub fn corp_blocked(corp: &str, blocked: bool) {
    gauge!("sigsci_export_corp_blocked", "corp" => corp.to_owned()).set(flag(blocked));
}

/// A gauge's value for a yes-or-no state.
fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}
