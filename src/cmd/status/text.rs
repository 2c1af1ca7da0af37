//! The text form of the status report: what a person reads (`--json` prints the report as it
//! is). Apart from the report, it only turns seconds and bytes into short human units.

use std::fmt::Write as _;

use super::{StatusReport, ns_label};

/// Human-readable rendering.
pub fn render_text(r: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "state file {} at {}", r.state_file, r.generated_at);
    let _ = writeln!(out, "\nSITES");
    if r.sites.is_empty() {
        let _ = writeln!(out, "  (none yet: no window committed)");
    }
    for s in &r.sites {
        let lag = match (s.lag_secs, &s.backfill_range) {
            (Some(l), _) => format!("  lag {}", human_secs(l)),
            (None, None) => String::new(),
            (None, Some(_)) => "  backfill".to_string(),
        };
        let cursor = match &s.cursor {
            Some(c) => format!("cursor {c}"),
            None => "no cursor yet".to_string(),
        };
        let _ = writeln!(
            out,
            "  {:<28} {}/{}  {cursor}{lag}  spooled {} events ({}){}",
            ns_label(&s.ns),
            s.corp,
            s.site,
            s.spooled_events,
            human_bytes(s.spooled_bytes),
            if s.failing { "  FAILING" } else { "" }
        );
        if let Some(e) = &s.last_error {
            let _ = writeln!(out, "      last error at {}: {}", e.at, e.error);
        }
        if s.feed_dead_letters > 0 {
            let _ = writeln!(
                out,
                "      {} feed record(s) that could not be read kept as dead letters \
                 (sigsci-export dead-letters list --sink {})",
                s.feed_dead_letters,
                crate::store::FEED_LETTERS_SINK
            );
        }
        for g in &s.lost_ranges {
            let _ = writeln!(
                out,
                "      LOST {} .. {} ({}): older than the feed's retention when reached",
                g.from,
                g.until,
                human_secs(g.seconds)
            );
        }
    }
    let _ = writeln!(out, "\nSINKS");
    if r.sinks.is_empty() {
        let _ = writeln!(out, "  (none registered yet)");
    }
    for s in &r.sinks {
        let state = match &s.blocked {
            Some(reason) => format!("BLOCKED: {reason}"),
            None => "ok".to_string(),
        };
        let oldest = s
            .oldest_pending_age_secs
            .map(|a| format!(", oldest {}", human_secs(a)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<28} {:<16} {}  offset {}  backlog {} events ({}{})  dead letters {}",
            ns_label(&s.ns),
            s.sink,
            state,
            s.offset,
            s.backlog_events,
            human_bytes(s.backlog_bytes),
            oldest,
            s.dead_letters
        );
        for c in &s.dead_letters_by_reason {
            let _ = writeln!(out, "      {} × {}", c.count, c.reason);
        }
        if let Some(n) = s.possible_duplicates.filter(|n| *n > 0) {
            let _ = writeln!(
                out,
                "      {n} resends after an unconfirmed delivery (possible duplicates)"
            );
        }
    }
    let _ = writeln!(
        out,
        "\nSPOOL {}; dropped when full: {} events",
        human_bytes(r.spool.bytes),
        r.spool.dropped_events
    );
    for d in &r.spool.drops {
        let _ = writeln!(
            out,
            "  DROPPED {} events ({}) of {} at {}",
            d.events,
            human_bytes(d.bytes),
            ns_label(&d.ns),
            d.at
        );
    }
    out
}

fn human_secs(s: i64) -> String {
    let s = s.max(0);
    if s < 120 {
        format!("{s}s")
    } else if s < 7200 {
        format!("{}m", s / 60)
    } else if s < 172_800 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600)
    }
}

fn human_bytes(b: i64) -> String {
    let b = b.max(0) as f64;
    if b < 1024.0 {
        format!("{b} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else {
        format!("{:.2} GiB", b / 1024.0 / 1024.0 / 1024.0)
    }
}
