//! Entry points for the cargo-fuzz targets in `fuzz/` (see `docs/fuzzing.md`): thin wrappers
//! over the parsers of replies the exporter does not control. Each must return, never panic,
//! whatever bytes it is given. Compiled only with the `fuzzing` feature, which `fuzz/Cargo.toml`
//! turns on; not a supported API, it may change anytime.

use std::time::Duration;

use crate::sink::{Ack, SinkError};
use crate::source::sigsci_feed::FeedError;
use crate::source::sigsci_feed::client::Page;

/// The `from` of the window a fuzzed page belongs to: records without a parsable `timestamp`
/// get it.
pub const FEED_WINDOW_FROM: i64 = 1_700_000_040;

/// Parses `body` as one page of the feed (`GET .../feed/requests`), as the client does with a
/// 200 reply.
pub fn parse_feed_page(body: &[u8]) -> Result<Page, FeedError> {
    crate::source::sigsci_feed::client::parse_page(body, FEED_WINDOW_FROM)
}

/// Classifies a HEC `/services/collector/event` reply to a request of `n_events` events:
/// `Ok(None)` when the whole request was accepted, `Ok(Some(ack))` for per-event outcomes.
pub fn classify_hec_reply(
    status: u16,
    body: &[u8],
    n_events: usize,
) -> Result<Option<Ack>, SinkError> {
    use crate::sink::splunk_hec::reply::{Verdict, classify};
    match classify(status, Some(Duration::from_secs(1)), body, n_events) {
        Verdict::Accepted { .. } => Ok(None),
        Verdict::Partial(ack) => Ok(Some(ack)),
        Verdict::Failed(e) => Err(e),
    }
}

/// Classifies a HEC `/services/collector/health` reply.
pub fn classify_hec_health(status: u16, body: &[u8]) -> Result<(), SinkError> {
    crate::sink::splunk_hec::reply::classify_health(status, body)
}

/// What a HEC `/services/collector/ack` reply means, for the fuzzer: the ids it answers for,
/// or which kind of failure it is (`disabled`, `blocked`, `retry`), with its message.
pub fn classify_hec_ack(status: u16, body: &[u8]) -> Result<usize, (&'static str, String)> {
    use crate::sink::splunk_hec::reply::{AckAnswer, classify_ack};
    match classify_ack(status, body) {
        AckAnswer::Acks(ids) => Ok(ids.len()),
        AckAnswer::Disabled(m) => Err(("disabled", m)),
        AckAnswer::Blocked(m) => Err(("blocked", m)),
        AckAnswer::Retry(m) => Err(("retry", m)),
    }
}

/// Classifies the reply to HEC's health probe (one blank event sent to `index`).
pub fn classify_hec_probe(status: u16, body: &[u8], index: Option<&str>) -> Result<(), SinkError> {
    crate::sink::splunk_hec::reply::classify_probe(
        status,
        Some(Duration::from_secs(1)),
        body,
        index,
    )
}

/// Classifies an Elasticsearch `_bulk` reply to a request of `n_items` documents, whose
/// `_id`s are `"0"`, `"1"`, ... (short, so the fuzzer finds them).
pub fn classify_es_bulk_reply(status: u16, body: &[u8], n_items: usize) -> Result<Ack, SinkError> {
    let ids: Vec<String> = (0..n_items).map(|i| i.to_string()).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    crate::sink::elasticsearch::reply::classify_bulk(
        status,
        Some(Duration::from_secs(1)),
        Some("https://elsewhere.example/"),
        body,
        &ids,
        "sigsci-fuzz",
    )
}

/// Classifies an Elasticsearch `GET /` reply (the version check of the health probe).
pub fn classify_es_root(status: u16, body: &[u8]) -> Result<(), SinkError> {
    crate::sink::elasticsearch::reply::classify_root(status, None, body).map(|_| ())
}
