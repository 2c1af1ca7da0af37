//! The daemon's one wall clock and one RFC 3339 formatter, and the time helpers shared by the
//! CLI, the config, the scheduler, the store and the sinks: parsing user-given instants (`now`,
//! `-6h`, RFC 3339), minute alignment (the feed API only accepts full minutes) and formatting
//! Unix seconds. Everything in the daemon that reads the time of day or writes a timestamp goes
//! through here; `Instant` (monotonic) is for durations only.

use chrono::{DateTime, SecondsFormat, Utc};

/// Current Unix time in seconds (rounded down).
pub fn now() -> i64 {
    Utc::now().timestamp()
}

/// Current Unix time in seconds with the fraction: for deadlines counted from a [`now`] taken
/// earlier (HEC's acknowledgement timeout), which whole seconds would make up to 1 s late.
pub fn now_f64() -> f64 {
    let t = Utc::now();
    t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9
}

/// Rounds down to a full minute, as the feed API requires for `from` and `until`.
pub fn align_down(t: i64) -> i64 {
    t - t.rem_euclid(60)
}

/// Formats Unix seconds as RFC 3339 UTC (`2026-11-24T01:02:00Z`).
pub fn rfc3339(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("@{t}"))
}

/// The former name of [`rfc3339`], kept only for `src/bin/bench.rs` until it moves to a crate of
/// its own (with its own formatter): remove it then.
#[doc(hidden)]
pub use self::rfc3339 as fmt;

/// Appends [`rfc3339`]`(t)` to `out` without allocating: the sinks write a time into every event.
pub fn push_rfc3339(t: i64, out: &mut Vec<u8>) {
    use chrono::{Datelike, Timelike};
    let Some(d) = DateTime::<Utc>::from_timestamp(t, 0).filter(|d| (0..=9999).contains(&d.year()))
    else {
        // Outside four-digit years chrono's own form (sign, more digits) is the reference.
        return out.extend_from_slice(rfc3339(t).as_bytes());
    };
    // Four-digit year, then two digits for each other field: `2026-11-24T01:02:00Z`.
    let mut buf = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            // A digit: always below 10.
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    // The year is in 0..=9999, checked above.
    put(0, 4, d.year().unsigned_abs());
    put(5, 2, d.month());
    put(8, 2, d.day());
    put(11, 2, d.hour());
    put(14, 2, d.minute());
    put(17, 2, d.second());
    out.extend_from_slice(&buf);
}

/// Parses an instant: `now`, a relative offset into the past (`-90s`, `-30m`, `-6h`, `-2d`,
/// optionally chained: `-1h30m`), or an RFC 3339 timestamp. Returns Unix seconds.
pub fn parse_instant(s: &str, now: i64) -> Result<i64, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Some(rel) = s.strip_prefix('-') {
        return parse_duration_secs(rel).map(|d| now - d);
    }
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp())
        .map_err(|e| {
            format!(
                "`{s}` is not a time: use RFC 3339 (2026-11-24T01:00:00Z), `now` or `-6h` ({e})"
            )
        })
}

/// Parses `90s`, `30m`, `6h`, `2d`, `1h30m` into seconds.
pub fn parse_duration_secs(s: &str) -> Result<i64, String> {
    let mut total: i64 = 0;
    let mut num = String::new();
    let mut any = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(format!("`{s}`: unknown unit `{c}` (use s, m, h or d)")),
        };
        let n: i64 = num
            .parse()
            .map_err(|_| format!("`{s}`: expected a number before `{c}`"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("`{s}`: too large"))?;
        num.clear();
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(format!(
            "`{s}`: expected a duration such as 90s, 30m, 6h or 2d"
        ));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_times_read_like_formatted_ones() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let edges = [
            0,
            -1,
            59,
            951_782_400,
            4_102_444_799,
            253_402_300_799,
            253_402_300_800,
        ];
        let random = (0..20_000).map(|_| rng.random_range(-70_000_000_000i64..300_000_000_000));
        for t in edges
            .into_iter()
            .chain([i64::MIN, i64::MAX, -62_167_219_200])
            .chain(random)
        {
            let mut out = b"x".to_vec();
            push_rfc3339(t, &mut out);
            assert_eq!(&out[1..], rfc3339(t).as_bytes(), "{t}");
        }
    }

    #[test]
    fn parses_relative_absolute_and_now() {
        let now = 1_800_000_000;
        assert_eq!(parse_instant("now", now), Ok(now));
        assert_eq!(parse_instant("-6h", now), Ok(now - 6 * 3600));
        assert_eq!(parse_instant("-1h30m", now), Ok(now - 5400));
        assert_eq!(parse_instant("-2d", now), Ok(now - 2 * 86_400));
        assert_eq!(
            parse_instant("2026-11-24T01:02:03Z", now),
            Ok(1_795_482_123)
        );
        assert!(parse_instant("yesterday", now).is_err());
        assert!(parse_instant("-6x", now).is_err());
        assert!(parse_instant("-h", now).is_err());
        assert!(parse_instant("-", now).is_err());
    }

    #[test]
    fn aligns_to_minutes() {
        assert_eq!(align_down(119), 60);
        assert_eq!(align_down(120), 120);
        assert_eq!(align_down(-1), -60);
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(1_795_482_123), "2026-11-24T01:02:03Z");
    }

    #[test]
    fn both_clocks_read_the_same_time() {
        // The fractional clock lies between two readings of the whole-second one: same clock,
        // same epoch, only the fraction added.
        let before = now();
        let t = now_f64();
        let after = now();
        assert!(
            before as f64 <= t && t < (after + 1) as f64,
            "{before} {t} {after}"
        );
    }
}
