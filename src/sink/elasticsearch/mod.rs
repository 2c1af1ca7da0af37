//! The Elasticsearch / OpenSearch sink: `_bulk` with `create` and `_id` = the request id, so
//! every event is stored exactly once however often it is sent.
//!
//! One batch from the driver becomes one or more `_bulk` requests (each at most
//! `batch_max_bytes` before compression and `batch_max_events` documents), up to `in_flight` at
//! a time. Each reply is classified per item, in order, each item's `_id` checked against the
//! document at its position (see [`reply`]): stored → delivered,
//! 409 → duplicate (an earlier attempt landed), 429/5xx → retried alone by the driver, a
//! mapping error → dead-lettered with the cluster's words, and a target that cannot be written
//! (missing, closed, read-only, forbidden, missing pipeline, alias without a write index) → the
//! whole request is blocked: every document to it would fail the same way, so the sink pauses
//! and keeps the data instead of dead-lettering the lot.
//!
//! Layout: `config.rs` (settings), `encode.rs` (NDJSON body), `reply.rs` (classification).

mod config;
mod encode;
pub(crate) mod reply;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, LOCATION};
use tracing::{info, warn};

pub(crate) use config::validate;
pub use config::{
    DEFAULT_INDEX, EsAuth, EsAuthMode, EsConfig, EsMode, IndexPart, IndexPattern, RawEsSink,
};

use super::http::{self, Chunk};
use super::{Ack, Batch, BatchLimits, BuildError, Sink, SinkError};
use crate::pipeline::Shaper;
use crate::store::SpooledEvent;
use encode::Encoder;

/// Sends batches to one cluster.
pub struct EsSink {
    cfg: EsConfig,
    client: reqwest::Client,
    encoder: Encoder,
    bulk_url: String,
    /// `bulk_url` plus `require_data_stream=true`, in data_stream mode.
    bulk_url_ds: Option<String>,
    /// Cleared once the cluster refuses `require_data_stream` as unknown (Elasticsearch 7,
    /// OpenSearch): it then gets the plain URL, as before the parameter existed.
    send_require_ds: AtomicBool,
    root_url: String,
}

/// A reply as far as classification needs it.
struct Reply {
    status: u16,
    after: Option<std::time::Duration>,
    location: Option<String>,
    body: Bytes,
}

impl EsSink {
    /// A sink for `cfg`. Fails only on an unusable `ca_file`.
    pub fn new(cfg: EsConfig) -> Result<EsSink, BuildError> {
        let client = http::client(&cfg.name, cfg.timeout, cfg.ca_file.as_deref())?;
        let encoder = Encoder::new(
            Shaper::new(cfg.format, &cfg.redact_headers),
            cfg.index.clone(),
        );
        let root = cfg.url.as_str().trim_end_matches('/').to_string();
        // Never `refresh`: it costs the cluster and we never read back.
        // `_id` kept: each item is checked against the document at its position.
        let mut bulk_url =
            format!("{root}/_bulk?filter_path=errors,items.*._id,items.*.status,items.*.error");
        if let Some(p) = &cfg.pipeline {
            bulk_url.push_str("&pipeline=");
            bulk_url.extend(url::form_urlencoded::byte_serialize(p.as_bytes()));
        }
        // Without it a data stream whose template is missing silently becomes a plain index
        // (wrong mappings, no rollover); with it the item fails and the sink blocks, naming the
        // template.
        let bulk_url_ds = cfg
            .data_stream
            .then(|| format!("{bulk_url}&require_data_stream=true"));
        Ok(EsSink {
            client,
            encoder,
            send_require_ds: AtomicBool::new(bulk_url_ds.is_some()),
            bulk_url,
            bulk_url_ds,
            root_url: format!("{root}/"),
            cfg,
        })
    }

    /// The batch limits the driver should use: one `_bulk` request per batch, `in_flight`
    /// batches at once. The budget counts spooled bytes; the action line adds about an
    /// eighth to a typical event, so a batch of 17/20 of `batch_max_bytes` usually encodes to
    /// one request.
    pub fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_events: self.cfg.batch_max_events,
            max_bytes: (self.cfg.batch_max_bytes / 20 * 17).max(1),
            linger: self.cfg.linger,
            in_flight: self.cfg.in_flight,
        }
    }

    fn authorize(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cfg.auth {
            EsAuth::None => rb,
            EsAuth::Basic { username, password } => {
                rb.basic_auth(username, Some(password.expose()))
            }
            EsAuth::ApiKey(key) => rb.header(
                AUTHORIZATION,
                sensitive(&format!("ApiKey {}", key.expose())),
            ),
            EsAuth::Bearer(token) => rb.bearer_auth(token.expose()),
        }
    }

    async fn post(&self, url: &str, body: Bytes) -> Result<Reply, SinkError> {
        let mut rb = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/x-ndjson");
        if self.cfg.gzip {
            rb = rb.header(CONTENT_ENCODING, "gzip");
        }
        let resp = self
            .authorize(rb.body(body))
            .send()
            .await
            .map_err(|e| reply::transport_error(e, &self.cfg.url))?;
        let status = resp.status().as_u16();
        let after = http::retry_after(resp.headers());
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp
            .bytes()
            .await
            .map_err(|e| reply::transport_error(e, &self.cfg.url))?;
        Ok(Reply {
            status,
            after,
            location,
            body,
        })
    }

    /// Sends one request of `events` (the chunk's events, in order).
    async fn send_chunk(&self, events: &[SpooledEvent], chunk: Chunk) -> Result<Ack, SinkError> {
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        let body = Bytes::from(chunk.body);
        let ds_url = self
            .bulk_url_ds
            .as_deref()
            .filter(|_| self.send_require_ds.load(Ordering::Relaxed));
        let mut reply = self
            .post(ds_url.unwrap_or(&self.bulk_url), body.clone())
            .await?;
        // Nothing was indexed (the request was refused before parsing), so sending the same
        // body again without the parameter cannot store anything twice.
        if ds_url.is_some()
            && reply.status == 400
            && reply::unrecognized_parameter(&reply.body).as_deref() == Some("require_data_stream")
        {
            if self.send_require_ds.swap(false, Ordering::Relaxed) {
                warn!(sink = %self.cfg.name, index = %self.cfg.index.text, "The cluster does not know require_data_stream (Elasticsearch 7 or OpenSearch); sending without it. If no index template with data_stream enabled matches the index, the cluster creates a plain index instead of a data stream.");
            }
            reply = self.post(&self.bulk_url, body).await?;
        }
        reply::classify_bulk(
            reply.status,
            reply.after,
            reply.location.as_deref(),
            &reply.body,
            &ids,
            &self.cfg.index.text,
        )
    }
}

fn sensitive(value: &str) -> HeaderValue {
    // Validation rejected whitespace; other invalid bytes yield an empty (refused) header
    // rather than a panic or a secret in an error message.
    let mut v = HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

#[async_trait::async_trait]
impl Sink for EsSink {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    async fn send(&self, batch: &Batch) -> Result<Ack, SinkError> {
        let events = &batch.events;
        let mut chunks = Vec::new();
        // Cut by document count first, then by bytes within each slice.
        for (n, slice) in events.chunks(self.cfg.batch_max_events).enumerate() {
            let offset = n * self.cfg.batch_max_events;
            for mut c in http::chunk(slice, self.cfg.batch_max_bytes, self.cfg.gzip, |ev, out| {
                self.encoder.write(ev, out)
            }) {
                c.range = c.range.start + offset..c.range.end + offset;
                chunks.push(c);
            }
        }
        http::send_all(chunks, events.len(), self.cfg.in_flight, |c| {
            self.send_chunk(&events[c.range.clone()], c)
        })
        .await
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        let resp = self
            .authorize(self.client.get(&self.root_url))
            .send()
            .await
            .map_err(|e| reply::transport_error(e, &self.cfg.url))?;
        let status = resp.status().as_u16();
        let after = http::retry_after(resp.headers());
        let body = resp
            .bytes()
            .await
            .map_err(|e| reply::transport_error(e, &self.cfg.url))?;
        let v = reply::classify_root(status, after, &body)?;
        info!(sink = %self.cfg.name, distribution = %v.distribution, version = %v.number, "Elasticsearch sink connected.");
        Ok(())
    }
}

/// Builds the sink and its batch limits (the `sink::build` arm).
pub(crate) fn build(cfg: &EsConfig) -> Result<(std::sync::Arc<dyn Sink>, BatchLimits), BuildError> {
    let sink = EsSink::new(cfg.clone())?;
    let limits = sink.limits();
    Ok((std::sync::Arc::new(sink), limits))
}
