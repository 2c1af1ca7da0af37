//! The layout of a spool row: several events of one page, stored together.
//!
//! Per-event rows cost SQLite a B-tree insert, an index insert, a cell read and a delete for
//! every event: about a third of the exporter's CPU with two sinks. A row now holds up to
//! [`MAX_ROW_BYTES`] of one page's events, in order: the bodies concatenated in `body`, and for
//! each event its timestamp, body length and id in `frame`. Events keep their own seqs (a row's
//! `seq` is the seq of its last event and `events` says how many precede it), so sink offsets,
//! settled ranges, sink journal entries and dead letters still name single events.
//!
//! `frame` is text, one entry per event: `{ts},{body_len},{id_len}:{id}` (lengths in bytes).
//! Text rather than a binary encoding because SQL must write it too: the schema migration
//! turns each old one-event row into a one-event new row, and a dead-letter replay spools an
//! event straight from the `dead_letters` table, both with `printf`.

use std::ops::Range;

use super::error::Fail;

/// A row is closed once its bodies reach this size (or before an event would push it past,
/// unless the row is empty: a larger event gets a row of its own). Small enough that a sink
/// reading part of a row and the rest later re-reads little, and that a batch holding one
/// event of a row keeps little else alive; large enough that the per-row cost (a B-tree
/// insert and delete, a cell read) is spread over a hundred events of the usual kilobyte.
pub(super) const MAX_ROW_BYTES: usize = 128 * 1024;

/// One event of a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Entry<'a> {
    /// Request timestamp, Unix seconds.
    pub(super) ts: i64,
    /// Upstream request id.
    pub(super) id: &'a str,
    /// Where its body lies in the row's `body`.
    pub(super) body: Range<usize>,
}

/// Collects events into one row's `frame` and `body`.
#[derive(Default)]
pub(super) struct RowBuilder {
    pub(super) frame: String,
    pub(super) body: String,
    pub(super) events: usize,
}

impl RowBuilder {
    /// Whether `body_len` more bytes would overflow a row that already holds events.
    pub(super) fn would_overflow(&self, body_len: usize) -> bool {
        self.events > 0 && self.body.len() + body_len > MAX_ROW_BYTES
    }

    /// Appends one event.
    pub(super) fn push(&mut self, ts: i64, id: &str, body: &str) {
        use std::fmt::Write;
        // Writing to a String cannot fail.
        let _ = write!(self.frame, "{ts},{},{}:", body.len(), id.len());
        self.frame.push_str(id);
        self.body.push_str(body);
        self.events += 1;
    }

    /// Empties the builder for the next row, keeping its buffers.
    pub(super) fn clear(&mut self) {
        self.frame.clear();
        self.body.clear();
        self.events = 0;
    }
}

/// Why a row could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RowError(&'static str);

/// The entries of a row whose bodies total `body` (checked on character boundaries), or why the
/// row is damaged. `events` is the count the row claims.
pub(super) fn decode<'a>(
    frame: &'a str,
    body: &str,
    events: i64,
) -> Result<Vec<Entry<'a>>, RowError> {
    let mut entries = Vec::with_capacity(usize::try_from(events).unwrap_or(0).min(4_096));
    let mut rest = frame;
    let mut at = 0usize;
    while !rest.is_empty() {
        let (ts, r) = field(rest, b',')?;
        let ts: i64 = ts.parse().map_err(|_| RowError("bad timestamp in frame"))?;
        let (len, r) = field(r, b',')?;
        let len: usize = len
            .parse()
            .map_err(|_| RowError("bad body length in frame"))?;
        let (id_len, r) = field(r, b':')?;
        let id_len: usize = id_len
            .parse()
            .map_err(|_| RowError("bad id length in frame"))?;
        if !r.is_char_boundary(id_len) || id_len > r.len() {
            return Err(RowError("id runs past the frame"));
        }
        let (id, r) = r.split_at(id_len);
        let end = at.checked_add(len).filter(|&e| e <= body.len());
        let Some(end) = end.filter(|&e| body.is_char_boundary(e)) else {
            return Err(RowError("event runs past the body"));
        };
        entries.push(Entry {
            ts,
            id,
            body: at..end,
        });
        at = end;
        rest = r;
    }
    if at != body.len() {
        return Err(RowError("body longer than its events"));
    }
    if i64::try_from(entries.len()).ok() != Some(events) {
        return Err(RowError("event count differs from the frame"));
    }
    Ok(entries)
}

/// The events of the spool row ending at `seq` (see [`decode`]), or why it is damaged.
pub(super) fn read<'a>(
    seq: i64,
    frame: &'a str,
    body: &str,
    events: i64,
) -> Result<Vec<Entry<'a>>, Fail> {
    decode(frame, body, events).map_err(|what| Fail::Corrupt { seq, what })
}

/// The text before `sep`, and what follows it.
fn field(s: &str, sep: u8) -> Result<(&str, &str), RowError> {
    let i = memchr::memchr(sep, s.as_bytes()).ok_or(RowError("truncated frame"))?;
    // `sep` is ASCII, so both sides are on character boundaries.
    Ok((&s[..i], &s[i + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_back_what_was_written() {
        let mut row = RowBuilder::default();
        row.push(1_700_000_000, "a1", r#"{"id":"a1"}"#);
        row.push(-5, "ü,:9", r#"{"é":"ü"}"#);
        row.push(0, "", "");
        let entries = decode(&row.frame, &row.body, 3).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!((entries[0].ts, entries[0].id), (1_700_000_000, "a1"));
        assert_eq!(&row.body[entries[0].body.clone()], r#"{"id":"a1"}"#);
        assert_eq!((entries[1].ts, entries[1].id), (-5, "ü,:9"));
        assert_eq!(&row.body[entries[1].body.clone()], r#"{"é":"ü"}"#);
        assert_eq!(entries[2].body, row.body.len()..row.body.len());
        row.clear();
        assert_eq!(
            (row.events, row.frame.as_str(), row.body.as_str()),
            (0, "", "")
        );
        assert!(decode("", "", 0).unwrap().is_empty());
    }

    #[test]
    fn a_row_fills_up_to_the_limit_and_an_oversize_event_gets_its_own() {
        let mut row = RowBuilder::default();
        assert!(
            !row.would_overflow(MAX_ROW_BYTES * 2),
            "an empty row takes anything"
        );
        row.push(1, "a", &"x".repeat(MAX_ROW_BYTES - 10));
        assert!(!row.would_overflow(10));
        assert!(row.would_overflow(11));
    }

    #[test]
    fn damaged_rows_are_errors_not_panics() {
        let body = r#"{"é":1}"#;
        let ok = format!("7,{},1:x", body.len());
        assert!(decode(&ok, body, 1).is_ok());
        for (frame, body, events) in [
            (ok.as_str(), body, 2),                 // count differs
            (ok.as_str(), "{}", 1),                 // body too short
            ("7,2,1:x", body, 1),                   // body longer than the events
            ("7,3,1:x", body, 1),                   // ends inside "é"
            ("7,x,1:x", body, 1),                   // bad length
            ("q,2,1:x", "{}", 1),                   // bad timestamp
            ("7,2,5:x", "{}", 1),                   // id past the frame
            ("7,2,1:ü", "{}", 1),                   // id ends inside a character
            ("7,2", "{}", 1),                       // truncated
            ("7,18446744073709551615,0:", "{}", 1), // length overflows
        ] {
            assert!(
                decode(frame, body, events).is_err(),
                "{frame:?} {body:?} {events}"
            );
        }
    }
}
