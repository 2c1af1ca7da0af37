//! `sigsci-export healthcheck`: probes a running exporter's admin endpoint, so a container
//! HEALTHCHECK needs no curl in the image.

use std::time::Duration;

use anyhow::Context;

use super::{Failure, Output};

/// Exit 0 with the answer's body on standard output when `url` answers 200, 1 otherwise.
pub async fn command(url: &str) -> Result<Output, Failure> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .context("HTTP client")?;
    let resp = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("{url} did not answer"))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(Output::stdout(body))
    } else {
        Err(Failure::Runtime(anyhow::anyhow!(
            "{url} answered {status}: {}",
            body.trim()
        )))
    }
}
