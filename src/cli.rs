//! The command line (clap derive). Each variant's doc comment is its `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::telemetry::LogFormat;

/// Exports Signal Sciences (Fastly Next-Gen WAF) request data to Splunk HEC, Elasticsearch or
/// stdout, never losing an event. Exit codes: 0 clean stop, 1 runtime failure, 2 bad
/// configuration or arguments.
#[derive(Debug, Parser)]
#[command(name = "sigsci-export", version, about, long_about = None)]
pub struct Cli {
    /// Log format: auto (JSON unless stderr is a terminal), json or text. Filter with RUST_LOG.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The config file argument shared by commands that read one.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Config file (TOML). Environment overrides: SIGSCI_EXPORT__SECTION__KEY.
    #[arg(
        short = 'c',
        long = "config",
        env = "SIGSCI_EXPORT_CONFIG",
        default_value = "/etc/sigsci-export/sigsci-export.toml"
    )]
    pub path: PathBuf,
}

/// Commands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Command {
    /// Run as a service: poll every configured site and deliver to every sink until SIGTERM.
    Run {
        /// Config file.
        #[command(flatten)]
        config: ConfigArg,
        /// Seconds to let in-flight work finish after SIGTERM/SIGINT.
        #[arg(long, default_value_t = 30)]
        grace_secs: u64,
    },
    /// Export a past time range once, then exit 0 when every sink has acknowledged it.
    /// Its cursors are separate from `run`'s; running it again resumes where it stopped.
    Backfill {
        /// Config file.
        #[command(flatten)]
        config: ConfigArg,
        /// Start: RFC 3339 (2026-11-24T00:00:00Z), `now` or a relative time (`-6h`).
        #[arg(long, allow_hyphen_values = true)]
        from: String,
        /// End (exclusive), same forms. Clamped to 5 minutes ago (the API's limit).
        #[arg(long, allow_hyphen_values = true, default_value = "now")]
        until: String,
        /// Only this site (repeatable). Default: the configured sites.
        #[arg(long = "site")]
        sites: Vec<String>,
    },
    /// Validate the config exactly as `run` does; unless --offline, also call the feed API once
    /// per site and every sink's healthcheck. One line per check. Exit 0 all good, 1 a check
    /// failed, 2 bad config.
    Check {
        /// Config file.
        #[command(flatten)]
        config: ConfigArg,
        /// Only validate the config and the state directory; contact nothing.
        #[arg(long)]
        offline: bool,
    },
    /// Show where every site and sink stands, from the state file (read-only; safe while `run`
    /// is running).
    Status {
        /// Config file (for the state file's path). Secrets in it are neither needed nor read.
        #[command(flatten)]
        config: ConfigArg,
        /// Read this state file instead of the one the config names; the config is not read.
        #[arg(long, value_name = "PATH")]
        state: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Inspect or re-queue events a sink rejected for good.
    DeadLetters {
        /// Config file (for the state file's path and the sink names). Secrets in it are neither
        /// needed nor read.
        #[command(flatten)]
        config: ConfigArg,
        /// Use this state file instead of the one the config names; the config is not read, and
        /// `replay` accepts the sinks the last `run` on this state file had.
        #[arg(long, value_name = "PATH")]
        state: Option<PathBuf>,
        /// What to do.
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// Probe a running exporter's admin endpoint (a container HEALTHCHECK without curl): exit 0
    /// when it answers 200, 1 otherwise.
    Healthcheck {
        /// The URL to probe.
        #[arg(long, default_value = "http://127.0.0.1:9187/healthz")]
        url: String,
    },
    /// Serve the built-in feed API simulator (for demos and tests).
    Simulate {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8818")]
        listen: SocketAddr,
        /// Requests per minute per site.
        #[arg(long, default_value_t = 60)]
        rate: u32,
        /// Faults, e.g. "429=0.05,400=0.02,500=0.03,524=0.01,truncate=0.02,latency_ms=200,retry_after=1".
        #[arg(long, default_value = "")]
        faults: String,
        /// Seed of the synthetic data.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Corp name served.
        #[arg(long, default_value = "demo")]
        corp: String,
        /// Site names served, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "www,api")]
        sites: Vec<String>,
        /// Email the simulator accepts.
        #[arg(long, default_value = "demo@example.com")]
        email: String,
        /// Token the simulator accepts (a simulator credential, not a real secret).
        #[arg(long, default_value = "demo-token")]
        token: String,
        /// Requests per minute the simulator allows before answering 429 (default: unlimited).
        #[arg(long)]
        rate_limit: Option<u32>,
        /// Also serve a Splunk HEC test receiver on this address (e.g. 127.0.0.1:8088).
        #[arg(long)]
        hec_listen: Option<SocketAddr>,
        /// Token the HEC receiver accepts (a test credential, not a real secret).
        #[arg(long, default_value = "hec-token", requires = "hec_listen")]
        hec_token: String,
        /// Turn on indexer acknowledgement for the HEC receiver's token.
        #[arg(long, requires = "hec_listen")]
        hec_ack: bool,
        /// HEC receiver faults (fractions of `/event` requests, and acknowledgement knobs), e.g.
        /// "503=0.1,500=0.02,429=0.02,502=0.01,truncate=0.01,latency_ms=50,ack_delay_ms=5000,ack_loss=0.05".
        /// `truncate` answers a cut 200 after indexing (the sink resends: a duplicate);
        /// `ack_loss` ids never turn true (resent after ack_timeout_secs). See
        /// docs/sinks/splunk_hec.md.
        #[arg(long, default_value = "", requires = "hec_listen")]
        hec_faults: String,
        /// Also serve an Elasticsearch `_bulk` test receiver on this address (e.g. 127.0.0.1:9200).
        #[arg(long)]
        es_listen: Option<SocketAddr>,
        /// What the receiver's `GET /` claims: es7, es8, es9, opensearch1 or opensearch2.
        #[arg(long, default_value = "es8")]
        es_flavour: String,
        /// User the receiver accepts (HTTP Basic).
        #[arg(long, default_value = "elastic")]
        es_user: String,
        /// Password the receiver accepts (a simulator credential, not a real secret).
        #[arg(long, default_value = "demo-password")]
        es_password: String,
        /// Receiver faults, e.g. "item_429=0.1,item_mapping=0.01,429=0.01,503=0.01,retry_after=1".
        #[arg(long, default_value = "")]
        es_faults: String,
    },
    /// Start the simulator in-process and run the exporter against it to stdout, using the
    /// embedded default config: no account, no files. Ctrl-C stops it.
    Demo {
        /// Seconds to let in-flight work finish after Ctrl-C.
        #[arg(long, default_value_t = 10)]
        grace_secs: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn simulate_takes_hec_faults() {
        let cli = Cli::try_parse_from([
            "sigsci-export",
            "simulate",
            "--hec-listen",
            "127.0.0.1:0",
            "--hec-faults",
            "503=0.1,ack_delay_ms=2000",
        ])
        .unwrap();
        match cli.command {
            Command::Simulate { hec_faults, .. } => {
                assert_eq!(hec_faults, "503=0.1,ack_delay_ms=2000")
            }
            other => panic!("{other:?}"),
        }
        assert!(
            Cli::try_parse_from(["sigsci-export", "simulate", "--hec-faults", "503=0.1"]).is_err(),
            "--hec-faults needs --hec-listen"
        );
    }

    #[test]
    fn backfill_takes_relative_times() {
        let cli = Cli::try_parse_from([
            "sigsci-export",
            "backfill",
            "--from",
            "-3h",
            "--until",
            "-10m",
            "--site",
            "www",
        ])
        .unwrap();
        match cli.command {
            Command::Backfill {
                from, until, sites, ..
            } => {
                assert_eq!(from, "-3h");
                assert_eq!(until, "-10m");
                assert_eq!(sites, vec!["www"]);
            }
            other => panic!("{other:?}"),
        }
    }
}

/// `dead-letters` actions.
#[derive(Debug, Subcommand)]
pub enum DeadLetterAction {
    /// List dead letters, oldest first: id, sink, site, request id, reason.
    List {
        /// Only this sink's.
        #[arg(long)]
        sink: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line, with the event itself.
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back in the spool for the sink that rejected them; the running service
    /// (`run`) delivers them. Needs --sink, --id or --all.
    Replay {
        /// Only this sink's.
        #[arg(long)]
        sink: Option<String>,
        /// Only these dead-letter ids (from `list`; repeatable).
        #[arg(long = "id")]
        ids: Vec<i64>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
    },
}
