//! `sigsci-export backfill`: export a past range once, then exit 0 when every sink has
//! acknowledged it.
//!
//! The CLI's `--from`, `--until` and `--site` strings become a [`BackfillRange`] first, checked
//! against what the feed serves (ripgrep's `LowArgs` → `HiArgs`): a range the feed cannot
//! serve is a bad argument (exit 2) before anything is built, opened or fetched.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tracing::info;

use super::Failure;
use super::common::{load_file, open_store, warn_all, warn_secret_permissions};
use super::preflight::preflight;
use crate::cli::ConfigArg;
use crate::config::{self, Config};
use crate::{scheduler, shutdown, telemetry, time};

/// A validated backfill range: minute-aligned, inside the feed's retention, ending no later
/// than the newest minute the API serves, and not empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillRange {
    /// The first minute exported (Unix seconds, minute-aligned).
    pub from: i64,
    /// The end, exclusive (Unix seconds, minute-aligned, at most `now - poll.delay_secs`).
    pub until: i64,
    /// Only these sites (API names); empty: the configured ones.
    pub sites: Vec<String>,
}

/// What a backfill range is checked against: the clock and the feed's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedLimits {
    /// Now (Unix seconds): relative times (`-6h`) count back from it.
    pub now: i64,
    /// `poll.delay_secs`: the API serves nothing younger than this.
    pub delay_secs: i64,
    /// `api.retention_secs`: the API serves nothing older than this.
    pub retention_secs: i64,
}

impl FeedLimits {
    /// The limits `cfg` sets, at `now`.
    pub fn of(cfg: &Config, now: i64) -> Self {
        FeedLimits {
            now,
            delay_secs: cfg.poll.delay_secs,
            retention_secs: cfg.api.retention_secs,
        }
    }
}

impl BackfillRange {
    /// Validates the `--from`, `--until` and `--site` flags as given. `--until` later than
    /// the newest data the API serves is clamped there (and logged); everything else that
    /// cannot be served is an error: the message for the operator (exit 2).
    pub fn new(
        from: &str,
        until: &str,
        sites: Vec<String>,
        limits: FeedLimits,
    ) -> Result<Self, String> {
        let FeedLimits {
            now,
            delay_secs,
            retention_secs,
        } = limits;
        let from_t = time::parse_instant(from, now).map_err(|e| format!("--from: {e}"))?;
        let until_t = time::parse_instant(until, now).map_err(|e| format!("--until: {e}"))?;
        let from_t = time::align_down(from_t);
        let latest = time::align_down(now - delay_secs);
        let until_t = if time::align_down(until_t) > latest {
            info!(requested = %time::rfc3339(until_t), until = %time::rfc3339(latest), "--until is later than now - poll.delay_secs, the newest data the API serves; ending there.");
            latest
        } else {
            time::align_down(until_t)
        };
        let oldest = now - retention_secs;
        if from_t < oldest {
            return Err(format!(
                "--from {} is older than the feed's retention ({} s, so nothing before {} can be fetched); \
                 pick a later start",
                time::rfc3339(from_t),
                retention_secs,
                time::rfc3339(time::align_down(oldest) + 60)
            ));
        }
        if from_t >= until_t {
            return Err(format!(
                "--from {} must be before --until {}",
                time::rfc3339(from_t),
                time::rfc3339(until_t)
            ));
        }
        for s in &sites {
            if s.is_empty() || s.contains(char::is_whitespace) {
                return Err(format!("--site `{s}`: use the site's API name"));
            }
        }
        Ok(BackfillRange {
            from: from_t,
            until: until_t,
            sites,
        })
    }

    /// The state file namespace `scheduler::backfill` keeps this range in: one backfill per
    /// range, resumed when the same range is given again.
    pub fn ns(&self) -> String {
        format!("backfill:{}-{}", self.from, self.until)
    }
}

/// `backfill` with the config file and the range's flags as given.
pub async fn command(
    config: &ConfigArg,
    from: &str,
    until: &str,
    sites: Vec<String>,
) -> Result<(), Failure> {
    let cfg = load_file(config)?;
    warn_secret_permissions(config);
    warn_all(config::env_warnings(Some(&cfg)));
    let range = BackfillRange::new(from, until, sites, FeedLimits::of(&cfg, time::now()))
        .map_err(Failure::Config)?;
    backfill(cfg, range).await
}

/// Exports `range` into every sink; an interruption (a signal) is a failure that says how to
/// resume.
async fn backfill(cfg: Config, range: BackfillRange) -> Result<(), Failure> {
    let source = preflight(&cfg).await?.into_source();
    let store = open_store(&cfg, &range.ns())?;
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
    let BackfillRange { from, until, sites } = range;
    let report = {
        let _logs_above_bar = progress.clone().map(telemetry::logs_above);
        scheduler::backfill(
            Arc::new(cfg),
            Arc::new(source),
            store,
            from,
            until,
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
            time::rfc3339(from),
            time::rfc3339(until)
        )));
    }
    info!(sites = ?report.sites, events = report.events, "Backfill finished.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-29T12:00:30Z: half a minute past, so alignment shows.
    const NOW: i64 = 1_795_953_630;
    const LIMITS: FeedLimits = FeedLimits {
        now: NOW,
        delay_secs: 300,
        retention_secs: 86_700,
    };

    fn range(from: &str, until: &str, sites: &[&str]) -> Result<BackfillRange, String> {
        let sites = sites.iter().map(|s| s.to_string()).collect();
        BackfillRange::new(from, until, sites, LIMITS)
    }

    #[test]
    fn relative_times_count_back_from_now_and_align_to_the_minute() {
        let r = range("-3h", "-1h", &["www"]).unwrap();
        assert_eq!(r.from, time::align_down(NOW - 3 * 3600));
        assert_eq!(r.until, time::align_down(NOW - 3600));
        assert_eq!(r.from % 60, 0);
        assert_eq!(r.sites, vec!["www"]);
        assert_eq!(r.ns(), format!("backfill:{}-{}", r.from, r.until));
    }

    #[test]
    fn until_is_clamped_to_the_newest_minute_the_api_serves() {
        for until in ["now", "-1m", "2030-01-01T00:00:00Z"] {
            let r = range("-2h", until, &[]).unwrap();
            assert_eq!(r.until, time::align_down(NOW - 300), "{until}");
        }
        assert_eq!(
            range("-2h", "-5m", &[]).unwrap().until,
            time::align_down(NOW - 300)
        );
    }

    #[test]
    fn a_time_that_does_not_parse_names_its_flag() {
        let e = range("yesterday", "now", &[]).unwrap_err();
        assert!(e.starts_with("--from: `yesterday` is not a time"), "{e}");
        let e = range("-1h", "-1x", &[]).unwrap_err();
        assert!(e.starts_with("--until: "), "{e}");
    }

    #[test]
    fn a_start_older_than_the_retention_says_the_oldest_start() {
        let e = range("-30h", "-1h", &[]).unwrap_err();
        let oldest = time::align_down(NOW - 86_700) + 60;
        assert_eq!(
            e,
            format!(
                "--from {} is older than the feed's retention (86700 s, so nothing before {} can be fetched); \
                 pick a later start",
                time::rfc3339(time::align_down(NOW - 30 * 3600)),
                time::rfc3339(oldest)
            )
        );
        assert!(
            range(&time::rfc3339(oldest), "-1h", &[]).is_ok(),
            "the oldest start it names is accepted"
        );
    }

    #[test]
    fn an_empty_or_reversed_range_is_refused() {
        let e = range("-1h", "-2h", &[]).unwrap_err();
        assert_eq!(
            e,
            format!(
                "--from {} must be before --until {}",
                time::rfc3339(time::align_down(NOW - 3600)),
                time::rfc3339(time::align_down(NOW - 7200))
            )
        );
        // The same minute twice, once the seconds are cut off.
        let minute = time::rfc3339(time::align_down(NOW - 3600));
        assert!(range(&minute, &minute, &[]).is_err());
    }

    #[test]
    fn a_site_must_look_like_an_api_name() {
        assert_eq!(
            range("-2h", "-1h", &["www", "My Shop"]).unwrap_err(),
            "--site `My Shop`: use the site's API name"
        );
        assert_eq!(
            range("-2h", "-1h", &[""]).unwrap_err(),
            "--site ``: use the site's API name"
        );
    }
}
