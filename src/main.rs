//! The binary: parse the command line, set up logging, and run each command (`run`,
//! `backfill`, `check`, `status`, `dead-letters`, `healthcheck`, `simulate`, `demo`) on top of
//! the library, mapping its outcome to an exit code. `anyhow` lives here only. Exit codes are a contract (systemd relies on them):
//! 0 clean stop, 1 runtime failure, 2 bad configuration or arguments.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use sigsci_export::cli::{Cli, Command, ConfigArg, DeadLetterAction};
use sigsci_export::config::{self, Config, ConfigError};
use sigsci_export::health::Health;
use sigsci_export::scheduler;
use sigsci_export::sim::es::{EsFaults, EsReceiver, EsReceiverAuth, EsReceiverConfig};
use sigsci_export::sim::hec::{HecFaults, HecReceiver, HecReceiverConfig, HecToken};
use sigsci_export::sim::{FaultConfig, SimConfig, Simulator};
use sigsci_export::source::sigsci_feed::SigsciFeed;
use sigsci_export::store::{Store, StoreError};
use sigsci_export::{admin, check, shutdown, status, telemetry, time};
use tracing::{error, info};

/// How a command failed, which decides the exit code.
enum Failure {
    /// Bad configuration or arguments: exit 2, restarting will not help.
    Config(String),
    /// Anything else: exit 1.
    Runtime(anyhow::Error),
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Config(format!("configuration error: {e}"))
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Blocking work is SQLite behind two connections: more threads only wait on their
        // locks, and each idle thread keeps its allocator cache (peak RSS).
        .max_blocking_threads(4)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sigsci-export: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // Once, through the log: an ERROR line keeps its level in journald and JSON collectors,
    // and reads as plain text on a terminal.
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(msg)) => {
            error!("{msg}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            error!("{e:#}");
            ExitCode::from(1)
        }
    }
}

async fn dispatch(command: Command) -> Result<(), Failure> {
    match command {
        Command::Run { config, grace_secs } => {
            let cfg = load_file(&config)?;
            warn_secret_permissions(&config);
            warn_all(config::env_warnings(Some(&cfg)));
            warn_all(cfg.admin.exposure_warning());
            run(cfg, Duration::from_secs(grace_secs)).await
        }
        Command::Backfill {
            config,
            from,
            until,
            sites,
        } => {
            let cfg = load_file(&config)?;
            warn_secret_permissions(&config);
            warn_all(config::env_warnings(Some(&cfg)));
            backfill(cfg, &from, &until, sites).await
        }
        Command::Check { config, offline } => {
            let cfg = load_file(&config)?;
            check_cmd(&cfg, &config, offline).await
        }
        Command::Status {
            config,
            state,
            json,
        } => status_cmd(&state_target(&config, state)?, json).await,
        Command::DeadLetters {
            config,
            state,
            action,
        } => dead_letters_cmd(&state_target(&config, state)?, action).await,
        Command::Healthcheck { url } => probe(&url).await,
        Command::Simulate {
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
        } => {
            let faults = FaultConfig::parse(&faults)
                .map_err(|e| Failure::Config(format!("--faults: {e}")))?;
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
                Some(addr) => Some(
                    start_es_receiver(addr, &es_flavour, es_user, es_password, &es_faults).await?,
                ),
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
        Command::Demo { grace_secs } => demo(Duration::from_secs(grace_secs)).await,
    }
}

/// For the commands that use the secrets (`check` prints it as a WARN line instead).
fn warn_secret_permissions(arg: &ConfigArg) {
    if let Some(w) = config::secret_permissions_warning(&arg.path) {
        tracing::warn!("{w}");
    }
}

/// Loads the config file. When it fails, misspelt `SIGSCI_EXPORT*` variables are warned about
/// first: one may be the cause (`check` lists them itself when the config loads).
fn load_file(arg: &ConfigArg) -> Result<Config, Failure> {
    config::load(config::Source::File(&arg.path), &[]).map_err(|e| {
        warn_all(config::env_warnings(None));
        e.into()
    })
}

fn warn_all(warnings: impl IntoIterator<Item = String>) {
    for w in warnings {
        tracing::warn!("{w}");
    }
}

/// Builds the feed client and every sink as `check` does: whatever fails there is the
/// configuration's fault (exit 2, so systemd does not restart into the same failure).
async fn preflight(cfg: &Config) -> Result<SigsciFeed, Failure> {
    match check::preflight(cfg).await {
        Ok(built) => Ok(built.into_source()),
        Err(check::PreflightError::Config(problems)) => Err(Failure::Config(format!(
            "configuration error: {}",
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ))),
        Err(check::PreflightError::Scratch(reason)) => {
            Err(Failure::Runtime(anyhow::anyhow!(reason)))
        }
    }
}

/// Opens the state file for the one process that writes namespace `ns` (see
/// `store::Store::open_exclusive`): another process of the same namespace is a runtime
/// conflict (exit 1: the configuration is fine, and a restart once the other one stopped
/// works); a file that is not a state file is the configuration's fault (exit 2).
fn open_store(cfg: &Config, ns: &str) -> Result<Store, Failure> {
    Store::open_exclusive(&cfg.spool.path, ns).map_err(|e| store_failure(e, &cfg.spool.path))
}

fn store_failure(e: StoreError, path: &std::path::Path) -> Failure {
    match e {
        StoreError::Foreign(f) => Failure::Config(format!("configuration error: {f}")),
        e => Failure::Runtime(
            anyhow::Error::new(e)
                .context(format!("cannot open the state file `{}`", path.display())),
        ),
    }
}

async fn run(cfg: Config, grace: Duration) -> Result<(), Failure> {
    let source = preflight(&cfg).await?;
    let store = open_store(&cfg, scheduler::RUN_NS)?;
    let cancel = shutdown::install();
    let health = Health::new();
    if let Some(addr) = cfg.admin.listen {
        let listener = admin::bind(addr)
            .await
            .with_context(|| format!("cannot listen on admin.listen = {addr} (in use? set another port, or \"\" to disable)"))?;
        let bound = listener.local_addr().context("admin listener address")?;
        info!(admin = %bound, "Admin endpoint: /metrics, /healthz, /readyz.");
        let handle = admin::install_recorder();
        let (admin_health, admin_cancel) = (health.clone(), cancel.clone());
        tokio::spawn(async move {
            if let Err(e) = admin::serve(listener, handle, admin_health, admin_cancel).await {
                error!(error = %e, "Admin endpoint failed; metrics and health are unavailable.");
            }
        });
    }
    info!(corp = %cfg.api.corp, sinks = cfg.sinks.len(), state = %cfg.spool.path.display(), "sigsci-export running.");
    scheduler::run(
        Arc::new(cfg),
        Arc::new(source),
        store,
        health,
        cancel,
        grace,
    )
    .await
    .context("run failed")?;
    info!("Stopped cleanly.");
    Ok(())
}

async fn backfill(cfg: Config, from: &str, until: &str, sites: Vec<String>) -> Result<(), Failure> {
    let now = time::now();
    let from_t =
        time::parse_instant(from, now).map_err(|e| Failure::Config(format!("--from: {e}")))?;
    let until_t =
        time::parse_instant(until, now).map_err(|e| Failure::Config(format!("--until: {e}")))?;
    let from_t = time::align_down(from_t);
    let latest = time::align_down(now - cfg.poll.delay_secs);
    let until_t = if time::align_down(until_t) > latest {
        info!(requested = %time::rfc3339(until_t), until = %time::rfc3339(latest), "--until is later than now - poll.delay_secs, the newest data the API serves; ending there.");
        latest
    } else {
        time::align_down(until_t)
    };
    let oldest = now - cfg.api.retention_secs;
    if from_t < oldest {
        return Err(Failure::Config(format!(
            "--from {} is older than the feed's retention ({} s, so nothing before {} can be fetched); \
             pick a later start",
            time::rfc3339(from_t),
            cfg.api.retention_secs,
            time::rfc3339(time::align_down(oldest) + 60)
        )));
    }
    if from_t >= until_t {
        return Err(Failure::Config(format!(
            "--from {} must be before --until {}",
            time::rfc3339(from_t),
            time::rfc3339(until_t)
        )));
    }
    for s in &sites {
        if s.is_empty() || s.contains(char::is_whitespace) {
            return Err(Failure::Config(format!(
                "--site `{s}`: use the site's API name"
            )));
        }
    }
    let source = preflight(&cfg).await?;
    // The namespace `scheduler::backfill` keeps this range in: one backfill per range.
    let store = open_store(&cfg, &format!("backfill:{from_t}-{until_t}"))?;
    let cancel = shutdown::install();
    let progress = std::io::stderr().is_terminal().then(|| {
        let pb = ProgressBar::new(0);
        pb.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} site-minutes {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb
    });
    // The scheduler says how far it is; the bar is drawn here.
    let on_progress = progress.clone().map(|pb| -> scheduler::OnProgress {
        Arc::new(move |p| match p {
            scheduler::Progress::Total(n) => pb.set_length(n),
            scheduler::Progress::Done(n) => pb.inc(n),
            scheduler::Progress::Draining => pb.set_message("waiting for sinks"),
        })
    });
    let report = {
        let _logs_above_bar = progress.clone().map(telemetry::logs_above);
        scheduler::backfill(
            Arc::new(cfg),
            Arc::new(source),
            store,
            from_t,
            until_t,
            sites,
            on_progress,
            cancel.clone(),
        )
        .await
    }
    .context("backfill failed")?;
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    if !report.completed {
        // Progress is kept per exact range, so name it absolutely: a relative `--from -6h` given
        // again later would be a different range and start over.
        return Err(Failure::Runtime(anyhow::anyhow!(
            "backfill interrupted before every sink acknowledged the range; to resume, run \
             `sigsci-export backfill --from {} --until {}` with the same config and sites",
            time::rfc3339(from_t),
            time::rfc3339(until_t)
        )));
    }
    info!(sites = ?report.sites, events = report.events, "Backfill finished.");
    Ok(())
}

async fn check_cmd(cfg: &Config, arg: &ConfigArg, offline: bool) -> Result<(), Failure> {
    let lines = check::run(cfg, Some(&arg.path), offline).await;
    let (mut failed, mut invalid) = (0, 0);
    for l in &lines {
        println!("{l}");
        match l.verdict {
            check::Verdict::Fail => failed += 1,
            check::Verdict::Invalid => invalid += 1,
            check::Verdict::Ok | check::Verdict::Warn => {}
        }
    }
    if invalid > 0 {
        return Err(Failure::Config(format!(
            "configuration error: {invalid} setting(s) cannot work (the FAIL lines above); `run` would exit 2 as well"
        )));
    }
    if failed > 0 {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "{failed} check(s) failed"
        )));
    }
    Ok(())
}

/// The state file `status` and `dead-letters` work on, and the sinks the config names (`None`
/// with `--state`, when no config is read).
struct StateTarget {
    path: std::path::PathBuf,
    sinks: Option<Vec<String>>,
}

/// Without `--state`, reads only what these commands use from the config: never a secret, so
/// they work while the service's credentials are unavailable (service stopped, not root).
fn state_target(
    config: &ConfigArg,
    state: Option<std::path::PathBuf>,
) -> Result<StateTarget, Failure> {
    match state {
        Some(path) => Ok(StateTarget { path, sinks: None }),
        None => {
            let view = config::load_state_view(&config.path)?;
            Ok(StateTarget {
                path: view.spool_path,
                sinks: Some(view.sinks),
            })
        }
    }
}

fn open_read_only(target: &StateTarget) -> Result<Store, Failure> {
    Store::open_read_only(&target.path).map_err(|e| match e {
        StoreError::Foreign(f) => Failure::Config(f.to_string()),
        e => Failure::Runtime(anyhow::Error::new(e).context(format!(
            "cannot read the state file `{}` (has `run` or `backfill` been started with this config?)",
            target.path.display()
        ))),
    })
}

async fn status_cmd(target: &StateTarget, json: bool) -> Result<(), Failure> {
    let store = open_read_only(target)?;
    let report = status::report(&store, &target.path.display().to_string(), time::now())
        .await
        .context("reading the state file")?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("encoding the report")?
        );
    } else {
        print!("{}", status::render_text(&report));
    }
    Ok(())
}

async fn dead_letters_cmd(target: &StateTarget, action: DeadLetterAction) -> Result<(), Failure> {
    match action {
        DeadLetterAction::List { sink, limit, json } => {
            let store = open_read_only(target)?;
            let letters = store
                .dead_letters(sink.as_deref(), limit)
                .await
                .context("reading dead letters")?;
            for d in &letters {
                if json {
                    let body: serde_json::Value = serde_json::from_str(&d.body)
                        .unwrap_or_else(|_| serde_json::Value::String(d.body.clone()));
                    let line = serde_json::json!({
                        "dl_id": d.rowid, "ns": d.ns, "sink": d.sink, "corp": d.corp,
                        "site": d.site, "id": d.id, "ts": time::rfc3339(d.ts),
                        "reason": d.reason, "at": time::rfc3339(d.at), "event": body,
                    });
                    println!("{line}");
                } else {
                    println!(
                        "{}\t{}\t{}/{}\t{}\t{}\t{}",
                        d.rowid,
                        d.sink,
                        d.corp,
                        d.site,
                        d.id,
                        time::rfc3339(d.at),
                        d.reason
                    );
                }
            }
            if !json {
                eprintln!("{} dead letter(s) shown", letters.len());
            }
            Ok(())
        }
        DeadLetterAction::Replay { sink, ids, all } => {
            if sink.is_none() && ids.is_empty() && !all {
                return Err(Failure::Config(
                    "dead-letters replay: say which: --sink NAME, --id N (repeatable) or --all"
                        .to_string(),
                ));
            }
            if !target.path.is_file() {
                // Opening read-write would create an empty state file.
                return Err(Failure::Runtime(anyhow::anyhow!(
                    "no state file at `{}` (has `run` or `backfill` been started with this config?)",
                    target.path.display()
                )));
            }
            // No namespace lock: the re-queue is one SQLite transaction that appends rows after
            // every seq a running `run` has read, which is how that service picks them up.
            let store = Store::open(&target.path).map_err(|e| store_failure(e, &target.path))?;
            // A letter goes back to the sink that rejected it: one that is no longer configured
            // would hold it (and the spool rows after it) forever.
            let (known, known_as) = match &target.sinks {
                Some(names) => (names.clone(), "the config"),
                None => (
                    store
                        .sink_states()
                        .await
                        .context("reading the state file's sinks")?
                        .into_iter()
                        .filter(|s| s.ns == scheduler::RUN_NS)
                        .map(|s| s.sink)
                        .collect(),
                    "the last `run` on this state file",
                ),
            };
            if let Some(s) = &sink
                && !known.contains(s)
            {
                return Err(Failure::Config(format!(
                    "dead-letters replay: no sink named `{s}` in {known_as} (sinks: {})",
                    known.join(", ")
                )));
            }
            let selected = store
                .dead_letter_sinks(sink.as_deref(), ids.clone())
                .await
                .context("reading dead letters")?;
            let unknown: Vec<String> = selected
                .iter()
                .filter(|(s, _)| !known.contains(s))
                .map(|(s, n)| format!("{n} for `{s}`"))
                .collect();
            if !unknown.is_empty() {
                return Err(Failure::Config(format!(
                    "dead-letters replay: the selection holds dead letters of sinks not in {known_as} ({}); \
                     nothing was re-queued. Add the sink back, or narrow the selection with --sink NAME or --id N",
                    unknown.join(", ")
                )));
            }
            let n = store
                .replay_dead_letters(scheduler::RUN_NS, sink.as_deref(), ids)
                .await
                .context("re-queueing dead letters")?;
            println!(
                "{n} dead letter(s) re-queued; the running service (`sigsci-export run`) delivers them to the sink that rejected each"
            );
            Ok(())
        }
    }
}

async fn probe(url: &str) -> Result<(), Failure> {
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
        print!("{body}");
        Ok(())
    } else {
        Err(Failure::Runtime(anyhow::anyhow!(
            "{url} answered {status}: {}",
            body.trim()
        )))
    }
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

async fn demo(grace: Duration) -> Result<(), Failure> {
    let sim = Simulator::start(SimConfig::default(), ([127, 0, 0, 1], 0).into())
        .await
        .context("cannot start the simulator")?;
    let dir = tempfile::Builder::new()
        .prefix("sigsci-export-demo")
        .tempdir()
        .context("cannot create a temporary state directory")?;
    let db = dir.path().join("state.db");
    let base = sim.base_url();
    let db_str = db.to_string_lossy().into_owned();
    let cfg = config::load(
        config::Source::Embedded(config::DEMO_DEFAULT),
        &[
            ("api.base_url", base.as_str()),
            ("spool.path", db_str.as_str()),
        ],
    )?;
    eprintln!(
        "demo: simulator at {base}, state in {}; events follow on stdout, logs on stderr. Ctrl-C stops.",
        dir.path().display()
    );
    let result = run(cfg, grace).await;
    sim.shutdown().await;
    result
}
