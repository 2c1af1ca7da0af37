//! The throughput benchmark: `cargo run --release --bin bench -- [OPTIONS]`.
//!
//! It starts the feed API simulator and the HEC and Elasticsearch test receivers in this
//! process, on loopback, then runs the real `sigsci-export backfill` binary (built next to this
//! one) against them, once per scenario (or `--repeat` times, with a median summary), and
//! samples the child's CPU time and peak RSS from `/proc`, and its own CPU time over the same
//! span (the harness shares the cores with the exporter, so its cost bounds what the exporter
//! can reach). Before each throughput run it times the ceiling: how fast serde_json alone
//! parses and re-serializes the very same events on one core; each result is printed as a
//! share of the ceiling timed next to it, so the VM's drift over a long bench cancels out.
//!
//! Scenarios: `stdout`, `hec`, `es`, `both` (HEC + ES), `ratelimit` (2 sites with 200 ms page
//! latency against a request quota: achieved pages/min as a share of the quota),
//! `backlog` (1M events spooled while both sinks are down, then drained: peak RSS), and
//! `sites` (50 sites found with `sites = ["*"]`, both sinks: peak RSS whatever the number of
//! sites, which the process-wide page budget bounds).
//! Numbers are for the machine it runs on; nothing here asserts a target.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use sigsci_export::config::{self, Source};
use sigsci_export::sim::es::{EsReceiver, EsReceiverConfig};
use sigsci_export::sim::hec::{HecReceiver, HecReceiverConfig};
use sigsci_export::sim::{FaultConfig, SimConfig, Simulator};
use sigsci_export::source::client::FeedClient;
use tokio::io::AsyncReadExt;

// The crate root is `src/bin/bench.rs`: its modules would be looked for beside it.
#[path = "bench/sites.rs"]
mod sites;

/// Benchmark options.
#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "Throughput, CPU and memory of sigsci-export on loopback"
)]
struct Args {
    /// Scenarios to run, comma-separated: stdout, hec, es, both, ratelimit, backlog, sites, or all.
    #[arg(long, default_value = "stdout,hec,es,both,ratelimit")]
    scenarios: String,
    /// Hours of feed to export (ending 5 minutes ago).
    #[arg(long, default_value_t = 24)]
    hours: i64,
    /// Synthetic requests per minute per site (2 sites). 60 gives ~173k events for 24 h.
    #[arg(long, default_value_t = 60)]
    rate: u32,
    /// `ratelimit` scenario: the exporter's request quota (requests per minute).
    #[arg(long, default_value_t = 600)]
    quota: u32,
    /// `ratelimit` scenario: added latency of every feed page, milliseconds.
    #[arg(long, default_value_t = 200)]
    latency_ms: u64,
    /// `backlog` scenario: events to spool while both sinks are down.
    #[arg(long, default_value_t = 1_000_000)]
    backlog_events: u64,
    /// `sites` scenario: how many sites the simulator serves (all exported, found with `["*"]`).
    #[arg(long, default_value_t = 50)]
    sites: usize,
    /// `sites` scenario: hours of feed per site (at `--rate`; 6 h x 50 sites is ~1.1M events).
    #[arg(long, default_value_t = 6)]
    sites_hours: i64,
    /// Send uncompressed request bodies to HEC and ES (default: gzip, the sinks' default).
    #[arg(long)]
    no_gzip: bool,
    /// MALLOC_ARENA_MAX for the exporter, as the systemd unit and the container image set it;
    /// 0 leaves glibc's default (one arena per thread, up to 8 per core).
    #[arg(long, default_value_t = 1)]
    malloc_arena_max: u32,
    /// MALLOC_MMAP_THRESHOLD_ (bytes) for the exporter, as the systemd unit and the container
    /// image set it; 0 leaves glibc's default (a threshold that rises with the largest block
    /// freed, so big batch buffers end up in the heap and fragment it).
    #[arg(long, default_value_t = 0)]
    malloc_mmap_threshold: u64,
    /// Runs of each scenario. With more than one, a summary gives the median and range of
    /// each figure: on a shared VM single runs vary by 10-20%.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// Keep the temporary directory (configs, state files, logs) and print its path.
    #[arg(long)]
    keep: bool,
}

struct Measured {
    wall: Duration,
    cpu_secs: f64,
    /// CPU of this process (simulator, receivers, stdout reader) while the exporter ran: it
    /// shares the cores with the exporter, so it caps what the exporter can reach.
    harness_cpu_secs: f64,
    peak_rss_kb: u64,
    stdout_bytes: u64,
    exit: Option<i32>,
}

struct Row {
    scenario: String,
    events: u64,
    m: Measured,
    wire_bytes: u64,
    raw_bytes: u64,
    requests: u64,
    note: String,
    /// The ceiling (events/s) timed just before this run, so the ratio compares figures taken
    /// minutes apart at most, not across the VM's drift over a whole bench.
    ceiling: Option<f64>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let exe = sibling_binary()?;
    let scenarios: Vec<String> = if args.scenarios == "all" {
        [
            "stdout",
            "hec",
            "es",
            "both",
            "ratelimit",
            "backlog",
            "sites",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    } else {
        args.scenarios
            .split(',')
            .map(|s| s.trim().to_string())
            .collect()
    };
    let dir = tempfile::Builder::new().prefix("sigsci-bench").tempdir()?;
    let ticks = clock_ticks();
    eprintln!("bench: binary {}, {} core(s)", exe.display(), num_cpus());

    let mut rows = Vec::new();
    // The events the ceiling re-parses: fetched once, timed before every throughput run.
    let mut ceiling_bodies: Option<Vec<String>> = None;
    for (i, scenario) in scenarios.iter().enumerate() {
        for rep in 0..args.repeat.max(1) {
            let work = dir.path().join(format!("{i}-{scenario}-{rep}"));
            std::fs::create_dir_all(&work)?;
            let row = match scenario.as_str() {
                "stdout" | "hec" | "es" | "both" => {
                    let sim = Simulator::start(
                        SimConfig {
                            rate_per_min: args.rate,
                            ..SimConfig::default()
                        },
                        ([127, 0, 0, 1], 0).into(),
                    )
                    .await?;
                    if ceiling_bodies.is_none() {
                        ceiling_bodies = Some(ceiling_events(&sim, args.hours).await?);
                    }
                    let ceiling = ceiling_bodies.as_deref().map(time_ceiling);
                    let mut row = throughput(&exe, &work, &sim, scenario, &args, ticks).await?;
                    row.ceiling = ceiling;
                    sim.shutdown().await;
                    row
                }
                "ratelimit" => ratelimit(&exe, &work, &args, ticks).await?,
                "backlog" => backlog(&exe, &work, &args, ticks).await?,
                "sites" => sites::many_sites(&exe, &work, &args, ticks).await?,
                other => bail!("unknown scenario `{other}`"),
            };
            eprintln!(
                "bench: {} done: {} events in {:.1} s",
                row.scenario,
                row.events,
                row.m.wall.as_secs_f64()
            );
            rows.push(row);
        }
    }

    println!();
    let ceilings: Vec<f64> = rows.iter().filter_map(|r| r.ceiling).collect();
    if let (Some(bodies), false) = (&ceiling_bodies, ceilings.is_empty()) {
        let (lo, hi) = ceilings
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), &c| (lo.min(c), hi.max(c)));
        let range = if ceilings.len() == 1 {
            format!("{lo:.0}")
        } else {
            format!("{lo:.0}-{hi:.0}")
        };
        println!(
            "ceiling: serde_json parse + serialize of the same {} events on one core, timed before \
             each run: {range} events/s",
            bodies.len()
        );
    }
    println!();
    println!(
        "| scenario | events | wall s | events/s | of ceiling | CPU s per 1M events | harness CPU s per 1M events | peak RSS MB | requests | bytes on the wire | bytes uncompressed | notes |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let of_ceiling = r
            .of_ceiling()
            .map(|c| format!("{c:.0}%"))
            .unwrap_or_else(|| "-".into());
        println!(
            "| {} | {} | {:.1} | {:.0} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} |",
            r.scenario,
            r.events,
            r.m.wall.as_secs_f64(),
            r.events_per_sec(),
            of_ceiling,
            r.per_million(r.m.cpu_secs),
            r.per_million(r.m.harness_cpu_secs),
            r.m.peak_rss_kb as f64 / 1024.0,
            r.requests,
            r.wire_bytes,
            r.raw_bytes,
            r.note
        );
    }
    if args.repeat > 1 {
        print_summary(&rows);
    }
    println!();
    println!(
        "harness CPU: this process (feed simulator, HEC/ES receivers) while the exporter ran, \
         on the same {} core(s); the exporter's own CPU is the column before it.",
        num_cpus()
    );
    if args.keep {
        let kept = dir.keep();
        eprintln!("bench: files kept in {}", kept.display());
    }
    Ok(())
}

/// The allocator settings passed to the exporter.
fn malloc(args: &Args) -> (u32, u64) {
    (args.malloc_arena_max, args.malloc_mmap_threshold)
}

/// The `sigsci-export` binary built next to this one (same profile).
fn sibling_binary() -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me
        .parent()
        .context("bench has no directory")?
        .join("sigsci-export");
    if !path.is_file() {
        bail!(
            "{} not found: build it first (`cargo build --release`)",
            path.display()
        );
    }
    Ok(path)
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The newest minute the feed serves, as the exporter computes it.
fn window(sim: &Simulator, hours: i64) -> (i64, i64) {
    let now = sim.now();
    let until = (now - 300) / 60 * 60;
    // 24 h back reaches the edge of the feed's retention (24 h 5 min): keep two minutes of
    // margin so the range is still servable when the run starts.
    let oldest = (now - 86_700 + 120 + 59) / 60 * 60;
    ((until - hours * 3600).max(oldest), until)
}

fn rfc3339(t: i64) -> String {
    sigsci_export::time::fmt(t)
}

/// Fetches every event of the range through the real client, then times serde_json alone.
impl Row {
    fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.m.wall.as_secs_f64()
    }

    fn of_ceiling(&self) -> Option<f64> {
        self.ceiling.map(|c| 100.0 * self.events_per_sec() / c)
    }

    fn per_million(&self, secs: f64) -> f64 {
        secs / (self.events.max(1) as f64 / 1e6)
    }
}

/// Median and range of each figure over the runs of each scenario.
fn print_summary(rows: &[Row]) {
    println!();
    println!(
        "| scenario | runs | events/s median (min-max) | of ceiling median (min-max) | CPU s per 1M median | harness CPU s per 1M median | peak RSS MB median (max) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut names: Vec<&str> = Vec::new();
    for r in rows {
        if !names.contains(&r.scenario.as_str()) {
            names.push(&r.scenario);
        }
    }
    for name in names {
        let runs: Vec<&Row> = rows.iter().filter(|r| r.scenario == name).collect();
        let stat = |f: &dyn Fn(&Row) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(|r| f(r)).collect();
            v.sort_by(f64::total_cmp);
            (v[v.len() / 2], v[0], v[v.len() - 1])
        };
        let (eps, eps_lo, eps_hi) = stat(&|r| r.events_per_sec());
        let ceiling = if runs.iter().all(|r| r.ceiling.is_some()) {
            let (c, lo, hi) = stat(&|r| r.of_ceiling().unwrap_or(0.0));
            format!("{c:.0}% ({lo:.0}-{hi:.0}%)")
        } else {
            "-".into()
        };
        let (cpu, _, _) = stat(&|r| r.per_million(r.m.cpu_secs));
        let (harness, _, _) = stat(&|r| r.per_million(r.m.harness_cpu_secs));
        let (rss, _, rss_hi) = stat(&|r| r.m.peak_rss_kb as f64 / 1024.0);
        println!(
            "| {name} | {} | {eps:.0} ({eps_lo:.0}-{eps_hi:.0}) | {ceiling} | {cpu:.1} | {harness:.1} | {rss:.1} ({rss_hi:.1}) |",
            runs.len()
        );
    }
}

/// The exported events' JSON, one per request id (the feed repeats some ids; the spool keeps
/// the first), fetched once for the ceiling.
async fn ceiling_events(sim: &Simulator, hours: i64) -> Result<Vec<String>> {
    let text = format!(
        "[api]\nbase_url = \"{}\"\nemail = \"demo@example.com\"\ntoken = \"demo-token\"\ncorp = \"demo\"\n\
         sites = [\"www\", \"api\"]\nrequests_per_minute = 100000\nburst = 1000\n\
         [admin]\nlisten = \"\"\n[[sinks]]\ntype = \"stdout\"\n",
        sim.base_url()
    );
    let cfg = config::load(Source::Embedded(&text), &[])?;
    let client = FeedClient::new(&cfg.api)?;
    let (from, until) = window(sim, hours);
    let mut bodies = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for site in ["www", "api"] {
        let mut t = from;
        while t < until {
            let end = until.min(t + 3600);
            let mut w = client.window(site, t, end);
            while let Some((events, _)) = w.next_page().await? {
                bodies.extend(
                    events
                        .into_iter()
                        .filter(|e| seen.insert((site, e.id.clone())))
                        .map(|e| e.body.to_string()),
                );
            }
            t = end;
        }
    }
    Ok(bodies)
}

/// How fast serde_json alone parses and re-serializes `bodies` on this thread, events/s.
fn time_ceiling(bodies: &[String]) -> f64 {
    let started = Instant::now();
    let mut out = Vec::with_capacity(64 << 20);
    for b in bodies {
        // The simulator's records are JSON objects: a failure here is a bench bug.
        let v: serde_json::Value = serde_json::from_str(b).expect("simulator record parses");
        serde_json::to_writer(&mut out, &v).expect("writing to memory");
        out.push(b'\n');
        if out.len() > 60 << 20 {
            out.clear();
        }
    }
    std::hint::black_box(&out);
    bodies.len() as f64 / started.elapsed().as_secs_f64()
}

struct Receivers {
    hec: Option<HecReceiver>,
    es: Option<EsReceiver>,
}

/// What the receivers of one run took, read once the exporter has exited.
struct Totals {
    wire: u64,
    raw: u64,
    requests: u64,
    /// One note per receiver: what it stored, and its duplicates.
    notes: Vec<String>,
}

impl Receivers {
    /// Reads every receiver's figures, then shuts them down.
    async fn finish(self) -> Totals {
        let mut t = Totals {
            wire: 0,
            raw: 0,
            requests: 0,
            notes: Vec::new(),
        };
        if let Some(h) = self.hec {
            let s = h.stats();
            t.wire += s.bytes_wire;
            t.raw += s.bytes_uncompressed;
            t.requests += s.event_requests;
            t.notes.push(format!(
                "HEC: {} events indexed, {} duplicates",
                s.events_indexed,
                h.duplicates()
            ));
            h.shutdown().await;
        }
        if let Some(e) = self.es {
            let s = e.stats();
            t.wire += s.bytes_wire;
            t.raw += s.bytes_uncompressed;
            t.requests += s.bulk_requests;
            t.notes.push(format!(
                "ES: {} docs, {} items 409",
                e.doc_count(),
                s.items_by_status.get(&409).copied().unwrap_or(0)
            ));
            e.shutdown().await;
        }
        t
    }
}

async fn start_receivers(hec: bool, es: bool) -> Result<Receivers> {
    let local = ([127, 0, 0, 1], 0).into();
    Ok(Receivers {
        hec: if hec {
            Some(
                HecReceiver::start(
                    HecReceiverConfig {
                        keep_events: 0,
                        ..HecReceiverConfig::default()
                    },
                    local,
                )
                .await?,
            )
        } else {
            None
        },
        es: if es {
            Some(
                EsReceiver::start(
                    EsReceiverConfig {
                        keep_documents: false,
                        ..EsReceiverConfig::default()
                    },
                    local,
                )
                .await?,
            )
        } else {
            None
        },
    })
}

fn sink_toml(r: &Receivers, stdout: bool, gzip: bool) -> String {
    let mut s = String::new();
    let gzip = if gzip { "" } else { "gzip = false\n" };
    if stdout {
        s.push_str("[[sinks]]\ntype = \"stdout\"\n");
    }
    if let Some(h) = &r.hec {
        s.push_str(&format!(
            "[[sinks]]\ntype = \"splunk_hec\"\nname = \"splunk\"\nurl = \"{}\"\ntoken = \"hec-token\"\n{gzip}",
            h.url()
        ));
    }
    if let Some(e) = &r.es {
        s.push_str(&format!(
            "[[sinks]]\ntype = \"elasticsearch\"\nname = \"elastic\"\nurl = \"{}\"\n{gzip}",
            e.url()
        ));
    }
    s
}

/// The two sites of every scenario but `sites`.
const TWO_SITES: &str = r#"["www", "api"]"#;

fn write_config(
    work: &Path,
    sim: &Simulator,
    (rpm, burst): (u32, u32),
    sites: &str,
    sinks: &str,
) -> Result<PathBuf> {
    let text = format!(
        "[api]\nbase_url = \"{}\"\nemail = \"demo@example.com\"\ntoken = \"demo-token\"\ncorp = \"demo\"\n\
         sites = {sites}\nrequests_per_minute = {rpm}\nburst = {burst}\n\n\
         [spool]\npath = \"{}\"\n\n[admin]\nlisten = \"\"\n\n{sinks}",
        sim.base_url(),
        work.join("state.db").display()
    );
    let path = work.join("config.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Runs `sigsci-export backfill` to completion, sampling its CPU and memory.
async fn run_backfill(
    exe: &Path,
    work: &Path,
    cfg: &Path,
    (from, until): (i64, i64),
    ticks: f64,
    malloc: (u32, u64),
) -> Result<Measured> {
    let log = std::fs::File::create(work.join("stderr.log"))?;
    let harness_before = own_cpu_secs(ticks);
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(exe);
    let (arenas, mmap_threshold) = malloc;
    if mmap_threshold > 0 {
        cmd.env("MALLOC_MMAP_THRESHOLD_", mmap_threshold.to_string());
    }
    if arenas > 0 {
        cmd.env("MALLOC_ARENA_MAX", arenas.to_string());
    }
    let mut child = cmd
        .args(["backfill", "-c"])
        .arg(cfg)
        .args(["--from", &rfc3339(from), "--until", &rfc3339(until)])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("child pid")?;
    let mut stdout = child.stdout.take().context("stdout")?;
    let counted = Arc::new(AtomicU64::new(0));
    let c = counted.clone();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = stdout.read(&mut buf).await {
            if n == 0 {
                break;
            }
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
    });
    let (mut cpu, mut rss) = (0.0, 0u64);
    let status = loop {
        if let Some((c, r)) = sample(pid, ticks) {
            cpu = c;
            rss = rss.max(r);
        }
        tokio::select! {
            s = child.wait() => break s?,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    };
    let wall = started.elapsed();
    let _ = reader.await;
    let harness_cpu_secs = match (harness_before, own_cpu_secs(ticks)) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    Ok(Measured {
        wall,
        cpu_secs: cpu,
        harness_cpu_secs,
        peak_rss_kb: rss,
        stdout_bytes: counted.load(Ordering::Relaxed),
        exit: status.code(),
    })
}

/// CPU seconds (user + system, all threads) of a process, from `/proc/{pid}/stat`.
fn cpu_secs(pid: &str, ticks: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks)
}

/// This process's CPU seconds: the simulator and receivers run in it.
fn own_cpu_secs(ticks: f64) -> Option<f64> {
    cpu_secs("self", ticks)
}

/// (CPU seconds, peak RSS kB) of a live process, from /proc.
fn sample(pid: u32, ticks: f64) -> Option<(f64, u64)> {
    let cpu = cpu_secs(&pid.to_string(), ticks)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((cpu, hwm))
}

async fn throughput(
    exe: &Path,
    work: &Path,
    sim: &Simulator,
    scenario: &str,
    args: &Args,
    ticks: f64,
) -> Result<Row> {
    let hours = args.hours;
    let (hec, es) = match scenario {
        "hec" => (true, false),
        "es" => (false, true),
        "both" => (true, true),
        _ => (false, false),
    };
    let rx = start_receivers(hec, es).await?;
    let cfg = write_config(
        work,
        sim,
        (100_000, 1000),
        TWO_SITES,
        &sink_toml(&rx, scenario == "stdout", !args.no_gzip),
    )?;
    let (from, until) = window(sim, hours);
    let truth: u64 = ["www", "api"]
        .iter()
        .map(|s| sim.ground_truth(s, from, until).len() as u64)
        .sum();
    let m = run_backfill(exe, work, &cfg, (from, until), ticks, malloc(args)).await?;
    if m.exit != Some(0) {
        bail!(
            "{scenario}: backfill exited {:?}; see {}",
            m.exit,
            work.join("stderr.log").display()
        );
    }
    let (mut wire, mut raw, mut requests, mut notes) = (0, 0, 0, Vec::new());
    if scenario == "stdout" {
        wire = m.stdout_bytes;
        raw = m.stdout_bytes;
    }
    let totals = rx.finish().await;
    wire += totals.wire;
    raw += totals.raw;
    requests += totals.requests;
    notes.extend(totals.notes);
    Ok(Row {
        ceiling: None,
        scenario: if args.no_gzip && scenario != "stdout" {
            format!("{scenario} (no gzip)")
        } else {
            scenario.to_string()
        },
        events: truth,
        m,
        wire_bytes: wire,
        raw_bytes: raw,
        requests,
        note: notes.join("; "),
    })
}

async fn ratelimit(exe: &Path, work: &Path, args: &Args, ticks: f64) -> Result<Row> {
    let sim = Simulator::start(
        SimConfig {
            rate_per_min: args.rate,
            faults: FaultConfig {
                latency_ms: args.latency_ms,
                ..FaultConfig::default()
            },
            ..SimConfig::default()
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await?;
    // A burst of 1: the quota alone sets the pace, so pages/min can be compared with it.
    let cfg = write_config(
        work,
        &sim,
        (args.quota, 1),
        TWO_SITES,
        "[[sinks]]\ntype = \"stdout\"\n",
    )?;
    let (from, until) = window(&sim, args.hours);
    let truth: u64 = ["www", "api"]
        .iter()
        .map(|s| sim.ground_truth(s, from, until).len() as u64)
        .sum();
    let m = run_backfill(exe, work, &cfg, (from, until), ticks, malloc(args)).await?;
    if m.exit != Some(0) {
        bail!("ratelimit: backfill exited {:?}", m.exit);
    }
    let pages = sim.requests().len() as u64;
    let per_min = pages as f64 / (m.wall.as_secs_f64() / 60.0);
    sim.shutdown().await;
    Ok(Row {
        ceiling: None,
        scenario: format!(
            "ratelimit ({} ms/page, quota {}/min)",
            args.latency_ms, args.quota
        ),
        events: truth,
        wire_bytes: m.stdout_bytes,
        raw_bytes: m.stdout_bytes,
        requests: pages,
        note: format!(
            "{per_min:.0} pages/min = {:.0}% of the quota",
            100.0 * per_min / args.quota as f64
        ),
        m,
    })
}

async fn backlog(exe: &Path, work: &Path, args: &Args, ticks: f64) -> Result<Row> {
    // Enough synthetic traffic over 24 h and 2 sites to reach the requested event count.
    let rate = (args.backlog_events as f64 / (24.0 * 60.0 * 2.0)).ceil() as u32;
    let sim = Simulator::start(
        SimConfig {
            rate_per_min: rate,
            ..SimConfig::default()
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await?;
    let rx = start_receivers(true, true).await?;
    if let Some(h) = rx.hec.as_ref() {
        h.pause();
    }
    if let Some(e) = rx.es.as_ref() {
        e.pause();
    }
    let cfg = write_config(
        work,
        &sim,
        (100_000, 1000),
        TWO_SITES,
        &sink_toml(&rx, false, !args.no_gzip),
    )?;
    let (from, until) = window(&sim, 24);
    let truth: u64 = ["www", "api"]
        .iter()
        .map(|s| sim.ground_truth(s, from, until).len() as u64)
        .sum();
    // Resume both sinks once everything is spooled (the backfill's cursors reach `until`).
    let state = work.join("state.db");
    let resumer = {
        let state = state.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let Ok(store) = sigsci_export::store::Store::open_read_only(&state) else {
                    continue;
                };
                let Ok(cursors) = store.cursors().await else {
                    continue;
                };
                if cursors.len() == 2 && cursors.iter().all(|c| c.cursor >= until) {
                    let spooled = store
                        .sink_states()
                        .await
                        .map(|s| s.iter().map(|x| x.pending_events).max().unwrap_or(0))
                        .unwrap_or(0);
                    return spooled;
                }
            }
        }
    };
    let run = run_backfill(exe, work, &cfg, (from, until), ticks, malloc(args));
    tokio::pin!(run);
    let spooled = tokio::select! {
        n = resumer => n,
        m = &mut run => bail!("backlog: backfill ended while the sinks were down: {:?}", m.map(|m| m.exit)),
    };
    eprintln!("bench: backlog: {spooled} events spooled with both sinks down; resuming them");
    if let Some(h) = rx.hec.as_ref() {
        h.resume();
    }
    if let Some(e) = rx.es.as_ref() {
        e.resume();
    }
    let m = run.await?;
    if m.exit != Some(0) {
        bail!("backlog: backfill exited {:?}", m.exit);
    }
    let s = rx.hec.as_ref().map(|h| h.stats()).unwrap_or_default();
    let e = rx.es.as_ref().map(|e| e.stats()).unwrap_or_default();
    let note = format!(
        "{spooled} spooled while both sinks were down; HEC {} indexed, ES {} docs",
        s.events_indexed,
        rx.es.as_ref().map_or(0, |e| e.doc_count())
    );
    sim.shutdown().await;
    Ok(Row {
        ceiling: None,
        scenario: "backlog (both sinks down, then drained)".into(),
        events: truth,
        wire_bytes: s.bytes_wire + e.bytes_wire,
        raw_bytes: s.bytes_uncompressed + e.bytes_uncompressed,
        requests: s.event_requests + e.bulk_requests,
        note,
        m,
    })
}
