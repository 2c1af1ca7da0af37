//! Sinks: where events go, behind one small trait.
//!
//! A sink only sends and classifies: it turns a reply into per-event [`ItemOutcome`]s or a
//! batch-level [`SinkError`]. [`driver`] owns everything else: reading batches from the spool,
//! the one retry loop, splitting on `TooLarge`, pausing a blocked sink, dead letters, and moving
//! the sink's offset only over settled events.

pub mod driver;
pub mod elasticsearch;
pub(crate) mod http;
pub mod splunk_hec;
pub mod stdout;

use std::sync::Arc;
use std::time::Duration;

use crate::config::SinkConfig;
use crate::pipeline::Shaper;
use crate::store::{SpooledEvent, Store};

/// A batch of spooled events, in spool order.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The events.
    pub events: Vec<SpooledEvent>,
}

/// Per-event verdicts of one send, in the batch's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    /// One outcome per event.
    pub items: Vec<ItemOutcome>,
}

impl Ack {
    /// Every event delivered.
    pub fn all_delivered(n: usize) -> Ack {
        Ack {
            items: vec![ItemOutcome::Delivered; n],
        }
    }
}

/// What happened to one event.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemOutcome {
    /// Stored by the destination.
    Delivered,
    /// The destination already had it (an earlier attempt got through): counts as delivered.
    Duplicate,
    /// Not stored this time; send it again (after `after`, if the destination said).
    Retry {
        /// Requested pause.
        after: Option<Duration>,
    },
    /// The destination will never take this event: it goes to the dead-letter table.
    Rejected {
        /// Why, for the operator.
        reason: String,
    },
}

/// A failure of a whole send.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// Try the same batch again later (timeouts, 429, 5xx, busy).
    #[error("retryable: {reason}")]
    Retryable {
        /// What happened.
        reason: String,
        /// Requested pause.
        after: Option<Duration>,
    },
    /// The reply could not be read as an answer about this batch (not the expected JSON,
    /// items missing, miscounted, unreadable or about other documents): nothing is known to be
    /// stored, so the batch is sent again, and a run of them blocks the sink (see
    /// [`driver::UNREADABLE_STREAK_LIMIT`]).
    #[error("reply not understood: {reason}")]
    Unreadable {
        /// What could not be read, with a snippet of the reply.
        reason: String,
        /// Requested pause.
        after: Option<Duration>,
    },
    /// The request was too large (413): the driver halves the batch.
    #[error("payload too large")]
    TooLarge,
    /// The destination refused the request because of some event in it but did not say which
    /// (HEC code 6 without `invalid-event-number`): the driver bisects, and dead-letters a
    /// single event that is still refused, with `reason`.
    #[error("invalid data: {reason}")]
    Invalid {
        /// The destination's words.
        reason: String,
    },
    /// The sink cannot work until an operator acts (bad token, missing index): pause, keep data.
    #[error("blocked: {reason}")]
    Blocked {
        /// The cause and the fix.
        reason: String,
    },
}

/// A destination for exported events. Implementations classify; [`driver`] retries.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    /// Stable name for logs, metrics and the store.
    fn name(&self) -> &str;
    /// Sends one batch. Must be safe to call again with the same events.
    async fn send(&self, batch: &Batch) -> Result<Ack, SinkError>;
    /// What `check` and a blocked driver call: the same endpoint and credentials, writing nothing.
    async fn healthcheck(&self) -> Result<(), SinkError>;
}

/// Limits on what the driver hands a sink in one batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Most events per batch.
    pub max_events: usize,
    /// Most body bytes per batch (as spooled, before shaping and encoding; a network sink
    /// bounds each request by encoded bytes itself).
    pub max_bytes: usize,
    /// How long the driver waits for a batch to fill before sending a partial one.
    pub linger: Duration,
    /// Batches the driver keeps in flight at once (settled in order): sending the next batch
    /// while the destination is still indexing the last keeps a slow reply, such as a HEC
    /// indexer acknowledgement, from idling the pipe.
    pub in_flight: usize,
}

/// A sink that cannot be set up (unreadable CA file, bad client settings, store failure).
#[derive(Debug, thiserror::Error)]
#[error("sink `{sink}`: {reason}")]
pub struct BuildError {
    /// The sink's name.
    pub sink: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

/// Builds the configured sink. `store` holds state a sink keeps across restarts.
pub async fn build(
    cfg: &SinkConfig,
    store: &Store,
) -> Result<(Arc<dyn Sink>, BatchLimits), BuildError> {
    match cfg {
        SinkConfig::Stdout(c) => Ok((
            Arc::new(stdout::StdoutSink::new(
                c.name.clone(),
                Shaper::new(c.format, &c.redact_headers),
            )),
            BatchLimits {
                max_events: c.batch_max_events,
                max_bytes: 16 * 1024 * 1024,
                linger: Duration::ZERO,
                // Writing to a pipe has nothing to overlap with.
                in_flight: 1,
            },
        )),
        SinkConfig::SplunkHec(c) => splunk_hec::build(c, store).await,
        SinkConfig::Elasticsearch(c) => elasticsearch::build(c),
    }
}
