//! The `sites` scenario: many sites at once, where memory used to grow with their number.

use std::path::Path;

use anyhow::{Result, bail};
use sigsci_export::sim::{SimConfig, Simulator};

use super::{Args, Row, malloc, run_backfill, sink_toml, start_receivers, window, write_config};

/// 50 sites (`--sites`) found with `sites = ["*"]`, both sinks: every site's backfill windows
/// run at once, and the process-wide page budget is what keeps peak RSS where 2 sites put it.
pub(crate) async fn many_sites(exe: &Path, work: &Path, args: &Args, ticks: f64) -> Result<Row> {
    let names: Vec<String> = (1..=args.sites).map(|i| format!("site{i:02}")).collect();
    let sim = Simulator::start(
        SimConfig {
            rate_per_min: args.rate,
            sites: names.clone(),
            ..SimConfig::default()
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await?;
    let rx = start_receivers(true, true).await?;
    let cfg = write_config(
        work,
        &sim,
        (100_000, 1000),
        r#"["*"]"#,
        &sink_toml(&rx, false, !args.no_gzip),
    )?;
    let (from, until) = window(&sim, args.sites_hours);
    let truth: u64 = names
        .iter()
        .map(|s| sim.ground_truth(s, from, until).len() as u64)
        .sum();
    let m = run_backfill(exe, work, &cfg, (from, until), ticks, malloc(args)).await?;
    if m.exit != Some(0) {
        bail!(
            "sites: backfill exited {:?}; see {}",
            m.exit,
            work.join("stderr.log").display()
        );
    }
    let totals = rx.finish().await;
    sim.shutdown().await;
    Ok(Row {
        ceiling: None,
        scenario: format!(
            "sites ({} sites via [\"*\"], {} h, HEC + ES)",
            args.sites, args.sites_hours
        ),
        events: truth,
        m,
        wire_bytes: totals.wire,
        raw_bytes: totals.raw,
        requests: totals.requests,
        note: totals.notes.join("; "),
    })
}
