//! `sigsci-export simulate`: the feed API simulator, and optionally the HEC and Elasticsearch
//! test receivers beside it, until Ctrl-C; then the receivers' tallies.
//!
//! A long-running command for a person at a terminal: the addresses to point a config at are
//! printed as each server starts (there is nothing to return until it stops), and the tallies
//! when it stops. That is why this module may print, unlike the rest of the library.
#![allow(clippy::print_stderr)]

use anyhow::Context;

use super::Failure;
use crate::cli::Command;
use crate::shutdown;
use crate::sim::es::{EsFaults, EsReceiver, EsReceiverAuth, EsReceiverConfig};
use crate::sim::hec::{HecFaults, HecReceiver, HecReceiverConfig, HecToken};
use crate::sim::{FaultConfig, SimConfig};
// The functions below moved verbatim from `main.rs`, where the library was `sigsci_export`.
use crate as sigsci_export;

/// `simulate` with its flags. It takes the parsed command as the CLI holds it today; once
/// the simulator is a crate of its own, it takes that crate's arguments instead.
pub async fn command(command: Command) -> Result<(), Failure> {
    let Command::Simulate {
        listen,
        rate,
        faults,
        seed,
        corp,
        sites,
        email,
        token,
        rate_limit,
        hec_listen,
        hec_token,
        hec_ack,
        hec_faults,
        es_listen,
        es_flavour,
        es_user,
        es_password,
        es_faults,
    } = command
    else {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "the simulator was started for another command"
        )));
    };
    let faults =
        FaultConfig::parse(&faults).map_err(|e| Failure::Config(format!("--faults: {e}")))?;
    let cfg = SimConfig {
        corp,
        sites,
        email,
        token,
        seed,
        rate_per_min: rate,
        rate_limit_per_min: rate_limit,
        faults,
        ..SimConfig::default()
    };
    let hec = match hec_listen {
        Some(addr) => Some(start_hec(addr, hec_token, hec_ack, &hec_faults).await?),
        None => None,
    };
    let es = match es_listen {
        Some(addr) => {
            Some(start_es_receiver(addr, &es_flavour, es_user, es_password, &es_faults).await?)
        }
        None => None,
    };
    let result = simulate(cfg, listen).await;
    if let Some(rx) = hec {
        let st = rx.stats();
        eprintln!(
            "HEC receiver: {} event requests (answers by status {:?}), {} events indexed ({} distinct ids, {} indexed more than once), {} bytes on the wire, {} uncompressed",
            st.event_requests,
            st.statuses,
            st.events_indexed,
            rx.counts().len(),
            rx.duplicates(),
            st.bytes_wire,
            st.bytes_uncompressed
        );
        rx.shutdown().await;
    }
    if let Some(rx) = es {
        let st = rx.stats();
        eprintln!(
            "elasticsearch receiver: {} documents stored; {} bulk requests {:?}; {} bytes on the wire, {} uncompressed; items by status {:?}",
            rx.doc_count(),
            st.bulk_requests,
            st.bulk_by_status,
            st.bytes_wire,
            st.bytes_uncompressed,
            st.items_by_status
        );
        rx.shutdown().await;
    }
    result
}

async fn simulate(cfg: SimConfig, listen: std::net::SocketAddr) -> Result<(), Failure> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr().context("listener address")?;
    eprintln!(
        "simulator listening: base_url = \"http://{addr}/api/v0\", corp = \"{}\", sites = {:?}, email = \"{}\"",
        cfg.corp, cfg.sites, cfg.email
    );
    let cancel = shutdown::install();
    sigsci_export::sim::serve(cfg, listener, async move { cancel.cancelled().await })
        .await
        .context("simulator failed")?;
    Ok(())
}

/// The HEC test receiver beside the feed simulator; it serves until the process ends.
async fn start_hec(
    addr: std::net::SocketAddr,
    token: String,
    ack: bool,
    faults: &str,
) -> Result<HecReceiver, Failure> {
    let (faults, knobs) =
        HecFaults::parse(faults).map_err(|e| Failure::Config(format!("--hec-faults: {e}")))?;
    let defaults = HecReceiverConfig::default();
    let cfg = HecReceiverConfig {
        tokens: vec![HecToken {
            use_ack: ack,
            ..HecToken::new(token.clone())
        }],
        // Accept what Splunk 6.5+ accepts; the sink bounds its own requests.
        max_content_length: 838_860_800,
        // Only what the summary below needs: nothing grows with the event count but the ids.
        keep_events: 0,
        ack_delay: knobs.ack_delay.unwrap_or(defaults.ack_delay),
        ack_loss: knobs.ack_loss.unwrap_or(defaults.ack_loss),
        faults: faults.clone(),
        ..defaults
    };
    let (ack_delay, ack_loss) = (cfg.ack_delay, cfg.ack_loss);
    let rx = HecReceiver::start(cfg, addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for HEC"))?;
    eprintln!(
        "HEC receiver listening: url = \"{}\", token = \"{token}\", indexer ack {}",
        rx.url(),
        if ack {
            format!("on (delay {ack_delay:?}, loss {ack_loss})")
        } else {
            "off".to_string()
        }
    );
    if faults != HecFaults::default() {
        eprintln!(
            "HEC receiver faults: 503 {}, 500 {}, 429 {}, 502 {}, truncated 200 {}, latency {} ms",
            faults.busy_503,
            faults.error_500,
            faults.too_many_429,
            faults.html_502,
            faults.truncated_200,
            faults.latency_ms
        );
    }
    Ok(rx)
}

async fn start_es_receiver(
    addr: std::net::SocketAddr,
    flavour: &str,
    username: String,
    password: String,
    faults: &str,
) -> Result<EsReceiver, Failure> {
    let flavour = flavour
        .parse()
        .map_err(|e| Failure::Config(format!("--es-flavour: {e}")))?;
    let faults =
        EsFaults::parse(faults).map_err(|e| Failure::Config(format!("--es-faults: {e}")))?;
    let cfg = EsReceiverConfig {
        flavour,
        auth: EsReceiverAuth::Basic {
            username: username.clone(),
            password: password.clone(),
        },
        faults,
        // A long run keeps ids only, not every document's source.
        keep_documents: false,
        ..EsReceiverConfig::default()
    };
    let rx = EsReceiver::start(cfg, addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the Elasticsearch receiver"))?;
    eprintln!(
        "elasticsearch receiver listening: url = \"{}\", auth = \"basic\", username = \"{username}\", password = \"{password}\"",
        rx.url()
    );
    Ok(rx)
}
