//! The stdout sink: NDJSON, one event per line, one write and flush per batch.
//!
//! Logs go to stderr, so stdout carries only events and can be piped into anything.

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

use super::{Ack, Batch, Sink, SinkError};
use crate::pipeline::Shaper;

/// Writes events to standard output (or any writer, in tests).
pub struct StdoutSink {
    name: String,
    shaper: Shaper,
    out: Mutex<Box<dyn AsyncWrite + Send + Unpin>>,
}

impl StdoutSink {
    /// A sink writing to the process's stdout.
    pub fn new(name: String, shaper: Shaper) -> Self {
        Self::with_writer(name, shaper, Box::new(tokio::io::stdout()))
    }

    /// A sink writing to `out`.
    pub fn with_writer(
        name: String,
        shaper: Shaper,
        out: Box<dyn AsyncWrite + Send + Unpin>,
    ) -> Self {
        StdoutSink {
            name,
            shaper,
            out: Mutex::new(out),
        }
    }
}

#[async_trait::async_trait]
impl Sink for StdoutSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, batch: &Batch) -> Result<Ack, SinkError> {
        let mut buf = Vec::with_capacity(batch.events.iter().map(|e| e.body.len() + 96).sum());
        for ev in &batch.events {
            self.shaper.write(ev, &mut buf);
            buf.push(b'\n');
        }
        let mut out = self.out.lock().await;
        let res = async {
            out.write_all(&buf).await?;
            out.flush().await
        }
        .await;
        match res {
            Ok(()) => Ok(Ack::all_delivered(batch.events.len())),
            // Nobody reads any more: nothing will change that without an operator.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(SinkError::Blocked {
                reason: "stdout is closed (broken pipe): the reading process exited".to_string(),
            }),
            Err(e) => Err(SinkError::Retryable {
                reason: format!("writing to stdout failed: {e}"),
                after: None,
            }),
        }
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        Ok(())
    }
}
