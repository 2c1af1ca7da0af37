//! HTTP plumbing shared by the network sinks: the client, transport-error
//! classification, `Retry-After`, and cutting a batch into requests bounded by encoded bytes
//! that are sent a few at a time.
//!
//! Each sink still owns its protocol: what a request looks like and what a reply means. Only
//! what would otherwise be written twice lives here.

use std::future::Future;
use std::io::Write;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::HeaderMap;

use super::{Ack, BuildError, ItemOutcome, SinkError};
use crate::store::SpooledEvent;

pub(crate) mod tls;

/// A client for one sink: rustls with the system's roots plus `ca_file`, certificates always
/// checked, redirects never followed (a redirect means a wrong URL, such as Splunk's web port
/// instead of HEC's), and `timeout` per request.
pub(crate) fn client(
    sink: &str,
    timeout: Duration,
    ca_file: Option<&Path>,
) -> Result<reqwest::Client, BuildError> {
    let fail = |reason: String| BuildError {
        sink: sink.to_string(),
        reason,
    };
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10).min(timeout))
        .user_agent(concat!("sigsci-export/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| fail(format!("cannot read ca_file `{}`: {e}", path.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            fail(format!(
                "ca_file `{}` is not a PEM certificate bundle: {e}",
                path.display()
            ))
        })?;
        if certs.is_empty() {
            return Err(fail(format!(
                "ca_file `{}` contains no certificate",
                path.display()
            )));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| fail(format!("cannot build the HTTP client: {e}")))
}

/// A failed exchange (no HTTP status): timeouts, refused connections, resets, TLS. All are
/// retryable; the reason never contains the URL (it may carry credentials in a query string).
pub(crate) fn transport_error(e: reqwest::Error) -> SinkError {
    let what = if e.is_timeout() {
        "request timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "reading the reply failed"
    } else {
        "request failed"
    };
    // reqwest's Display hides the cause (e.g. "connection refused"): add the innermost one.
    let cause = innermost_cause(&e);
    let mut reason = format!("{what}: {}", e.without_url());
    if let Some(cause) = cause {
        reason.push_str(&format!(" ({cause})"));
    }
    SinkError::Retryable {
        reason,
        after: None,
    }
}

/// A service's wording of the usual reasons it did not answer at all. `{port}` is replaced by
/// `" <port>"` (with its leading space) or nothing.
pub(crate) struct TransportHints {
    /// The server's certificate did not verify.
    pub(crate) untrusted_certificate: &'static str,
    /// `https://` to a server that answered in plain HTTP.
    pub(crate) https_to_plain: &'static str,
    /// Connection refused.
    pub(crate) refused: &'static str,
    /// `http://` to a server that closed the connection or did not answer HTTP (a TLS port).
    pub(crate) http_to_tls: &'static str,
    /// No answer before the timeout.
    pub(crate) timeout: &'static str,
}

/// [`transport_error`] plus the hint of `hints` that fits the failure, if one does. A server
/// certificate that did not verify is not retryable but [`SinkError::Blocked`], in words (see
/// [`tls`]): retrying does not change a certificate.
pub(crate) fn transport_error_with_hint(
    e: reqwest::Error,
    url: &url::Url,
    hints: &TransportHints,
) -> SinkError {
    let mut causes = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(c) = cur {
        causes.push(c.to_string());
        cur = c.source();
    }
    if let Some(reason) = tls::refused_certificate(
        causes.iter().map(String::as_str),
        hints.untrusted_certificate,
    ) {
        return SinkError::Blocked {
            reason: format!("cannot connect: {reason}"),
        };
    }
    let hint = transport_hint(
        &e,
        url.scheme() == "https",
        url.port_or_known_default(),
        hints,
    );
    match transport_error(e) {
        SinkError::Retryable { reason, after } => SinkError::Retryable {
            reason: match hint {
                Some(h) => format!("{reason}; {h}"),
                None => reason,
            },
            after,
        },
        other => other,
    }
}

fn transport_hint(
    e: &reqwest::Error,
    https: bool,
    port: Option<u16>,
    hints: &TransportHints,
) -> Option<String> {
    // The causes' texts are the only portable signal (rustls, hyper and the OS each name
    // their own errors), so match on them, lower-cased, along the whole chain.
    let mut text = e.to_string();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cur {
        text.push(' ');
        text.push_str(&c.to_string());
        cur = c.source();
    }
    let text = text.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    let port = port.map_or_else(String::new, |p| format!(" {p}"));
    let fill = |s: &str| s.replace("{port}", &port);
    if has(&[
        "certificate",
        "unknownissuer",
        "unknown issuer",
        "notvalidforname",
    ]) {
        return Some(fill(hints.untrusted_certificate));
    }
    if https
        && has(&[
            "invalidcontenttype",
            "invalid content type",
            "corrupt message",
            "wrong version number",
            "record overflow",
            "invalidmessage",
        ])
    {
        return Some(fill(hints.https_to_plain));
    }
    if has(&["refused"]) {
        return Some(fill(hints.refused));
    }
    if has(&["dns", "lookup", "name or service not known", "no such host"]) {
        return Some("the host name does not resolve: check the host in `url`".to_string());
    }
    if !https
        && has(&[
            "connection closed before message completed",
            "invalid http version",
            "invalid status",
            "reset by peer",
            "incompletemessage",
            "unexpected eof",
        ])
    {
        return Some(fill(hints.http_to_tls));
    }
    if e.is_timeout() {
        return Some(fill(hints.timeout));
    }
    None
}

fn innermost_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = e.source()?;
    while let Some(next) = cur.source() {
        cur = next;
    }
    Some(cur.to_string())
}

/// `Retry-After` in seconds (the HTTP-date form is rare from these services and ignored).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(3600)))
}

/// The first bytes of a reply body, printable, for error messages about unexpected replies.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.len() > 200 {
        format!("{}…", one_line.trim())
    } else {
        one_line.trim().to_string()
    }
}

/// Part of a batch encoded as one request body.
#[derive(Debug)]
pub(crate) struct Chunk {
    /// Which events of the batch it carries.
    pub range: Range<usize>,
    /// The request body: gzip-compressed (at level 1: most of the size win for a fraction of
    /// the CPU, Filebeat's default) when [`chunk`] was asked to compress.
    pub body: Vec<u8>,
}

/// Builds one body, compressing as it goes so the uncompressed body never exists in full.
#[allow(clippy::large_enum_variant)] // one per request body, short-lived
enum BodyWriter {
    Plain(Vec<u8>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
}

impl BodyWriter {
    fn new(gzip: bool, capacity: usize) -> BodyWriter {
        if gzip {
            BodyWriter::Gzip(flate2::write::GzEncoder::new(
                Vec::with_capacity(capacity / 6 + 64),
                flate2::Compression::new(1),
            ))
        } else {
            BodyWriter::Plain(Vec::with_capacity(capacity))
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        match self {
            BodyWriter::Plain(v) => v.extend_from_slice(bytes),
            // Writing into a Vec cannot fail.
            BodyWriter::Gzip(enc) => {
                let _ = enc.write_all(bytes);
            }
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            BodyWriter::Plain(v) => v,
            BodyWriter::Gzip(enc) => enc.finish().unwrap_or_default(),
        }
    }
}

/// Encodes `events` in order into bodies of at most `max_bytes` (counted before compression);
/// an event that alone is larger goes in a body of its own (the destination then decides,
/// usually with a 413). With `gzip` each body is compressed while it is built.
pub(crate) fn chunk(
    events: &[SpooledEvent],
    max_bytes: usize,
    gzip: bool,
    mut encode: impl FnMut(&SpooledEvent, &mut Vec<u8>),
) -> Vec<Chunk> {
    let capacity = max_bytes.min(events.iter().map(|e| e.body.len() + 256).sum());
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut raw_len = 0;
    let mut body = BodyWriter::new(gzip, capacity);
    let mut scratch = Vec::with_capacity(4096);
    for (i, ev) in events.iter().enumerate() {
        scratch.clear();
        encode(ev, &mut scratch);
        if raw_len + scratch.len() > max_bytes && i > start {
            let done = std::mem::replace(&mut body, BodyWriter::new(gzip, capacity));
            chunks.push(Chunk {
                range: start..i,
                body: done.finish(),
            });
            start = i;
            raw_len = 0;
        }
        body.write(&scratch);
        raw_len += scratch.len();
    }
    if start < events.len() {
        chunks.push(Chunk {
            range: start..events.len(),
            body: body.finish(),
        });
    }
    chunks
}

/// Sends `chunks` with at most `in_flight` requests at a time and merges the outcomes into one
/// [`Ack`] for the `total` events of the batch, in order.
///
/// A chunk that fails as a whole leaves its events to be retried while the others keep their
/// outcomes, so one failed request never resends what another one delivered. Only when every
/// chunk failed is the (first) error returned as the batch's: the driver then applies its
/// batch-level handling (backoff, halving on 413, bisecting invalid data, pausing when blocked).
pub(crate) async fn send_all<F, Fut>(
    chunks: Vec<Chunk>,
    total: usize,
    in_flight: usize,
    send: F,
) -> Result<Ack, SinkError>
where
    F: Fn(Chunk) -> Fut,
    Fut: Future<Output = Result<Ack, SinkError>>,
{
    let ranges: Vec<Range<usize>> = chunks.iter().map(|c| c.range.clone()).collect();
    let results: Vec<Result<Ack, SinkError>> = futures_util::stream::iter(chunks)
        .map(send)
        .buffered(in_flight.max(1))
        .collect()
        .await;
    if let Some(first) = results.iter().find_map(|r| r.as_ref().err())
        && results.iter().all(|r| r.is_err())
    {
        return Err(first.clone());
    }
    let mut items = vec![ItemOutcome::Retry { after: None }; total];
    for (range, result) in ranges.into_iter().zip(results) {
        match result {
            Ok(ack) if ack.items.len() == range.len() => {
                for (slot, item) in items[range].iter_mut().zip(ack.items) {
                    *slot = item;
                }
            }
            // Wrong count (a bug) or a failed request: those events are retried.
            Ok(_) => {}
            Err(e) => {
                let after = match e {
                    SinkError::Retryable { after, .. } | SinkError::Unreadable { after, .. } => {
                        after
                    }
                    _ => None,
                };
                for slot in &mut items[range] {
                    *slot = ItemOutcome::Retry { after };
                }
            }
        }
    }
    Ok(Ack { items })
}

/// Test servers shared by the sinks' tests.
#[cfg(test)]
pub(crate) mod test_servers {
    use std::net::SocketAddr;

    use crate::sink::SinkError;

    /// The message of a health check that failed as retryable (the transport-error hints are
    /// in it); any other outcome fails the test, naming `url`.
    pub(crate) fn retryable_message(result: Result<(), SinkError>, url: &str) -> String {
        match result {
            Err(e @ SinkError::Retryable { .. }) => e.to_string(),
            other => panic!("{url}: {other:?}"),
        }
    }

    /// A port nobody listens on (bound, then freed).
    pub(crate) fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    /// A server that answers whatever it is sent with a TLS alert and closes, as a TLS port
    /// does to a plain-HTTP request.
    pub(crate) async fn tls_alert() -> SocketAddr {
        let tls = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tls.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = tls.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                // TLS 1.2 record: alert, fatal, protocol_version.
                let _ = s
                    .write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46])
                    .await;
            }
        });
        addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: i64, body: &str) -> SpooledEvent {
        SpooledEvent {
            seq,
            corp: "acme".into(),
            site: "www".into(),
            id: format!("id{seq}").into(),
            ts: 0,
            fetched_at: 0,
            body: body.into(),
        }
    }

    fn copy(ev: &SpooledEvent, out: &mut Vec<u8>) {
        out.extend_from_slice(ev.body.as_bytes());
    }

    #[test]
    fn chunks_stay_under_the_byte_limit_and_keep_order() {
        let events: Vec<_> = (0..10).map(|i| ev(i, "0123456789")).collect();
        let chunks = chunk(&events, 35, false, copy);
        let ranges: Vec<_> = chunks.iter().map(|c| c.range.clone()).collect();
        assert_eq!(ranges, vec![0..3, 3..6, 6..9, 9..10]);
        assert!(chunks.iter().all(|c| c.body.len() <= 35));
        let joined: Vec<u8> = chunks.into_iter().flat_map(|c| c.body).collect();
        assert_eq!(joined.len(), 100);
    }

    #[test]
    fn an_oversized_event_goes_alone() {
        let events = vec![ev(0, "ab"), ev(1, &"x".repeat(50)), ev(2, "cd")];
        let ranges: Vec<_> = chunk(&events, 10, false, copy)
            .into_iter()
            .map(|c| c.range)
            .collect();
        assert_eq!(ranges, vec![0..1, 1..2, 2..3]);
    }

    #[tokio::test]
    async fn one_failed_request_retries_only_its_events() {
        let events: Vec<_> = (0..6).map(|i| ev(i, "0123456789")).collect();
        let chunks = chunk(&events, 20, false, copy);
        assert_eq!(chunks.len(), 3);
        let ack = send_all(chunks, 6, 2, |c: Chunk| async move {
            if c.range.start == 2 {
                Err(SinkError::Retryable {
                    reason: "503".into(),
                    after: Some(Duration::from_secs(3)),
                })
            } else {
                Ok(Ack::all_delivered(c.range.len()))
            }
        })
        .await
        .unwrap();
        assert_eq!(ack.items[0], ItemOutcome::Delivered);
        assert_eq!(
            ack.items[2],
            ItemOutcome::Retry {
                after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(ack.items[5], ItemOutcome::Delivered);
    }

    #[tokio::test]
    async fn every_request_failing_is_the_batch_error() {
        let events: Vec<_> = (0..4).map(|i| ev(i, "0123456789")).collect();
        let chunks = chunk(&events, 20, false, copy);
        let err = send_all(chunks, 4, 4, |_c: Chunk| async { Err(SinkError::TooLarge) })
            .await
            .unwrap_err();
        assert!(matches!(err, SinkError::TooLarge));
    }

    #[test]
    fn compressed_chunks_hold_the_same_bytes() {
        use std::io::Read;
        let events: Vec<_> = (0..10).map(|i| ev(i, "0123456789")).collect();
        let plain = chunk(&events, 35, false, copy);
        let packed = chunk(&events, 35, true, copy);
        assert_eq!(plain.len(), packed.len());
        for (p, z) in plain.iter().zip(&packed) {
            assert_eq!(p.range, z.range);
            assert!(p.body.len() <= 35);
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&z.body[..])
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, p.body);
        }
    }

    #[test]
    fn retry_after_seconds() {
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
