//! Reading one feed page: every record kept as a range of the reply's text and, for a page or
//! a record that cannot be taken, exactly what is wrong and where.
//!
//! A page that is not the feed's JSON (an HTML error page sent with status 200, a body cut
//! short, bytes that are not UTF-8 outside any record) is refused whole. A record the exporter
//! cannot take (not an object, no `id`, an `id` that is not a string, bytes that are not UTF-8)
//! refuses the page too, unless the caller asks to keep such records apart (`keep_bad`): the
//! scheduler does that only when `poll.skip_bad_records` is on and the same window has failed
//! several times in a row (see `site_health`), and dead-letters them. A record is never
//! dropped here without being returned.

use std::sync::Arc;

use super::{EventHead, PageWire, record_problem};
use crate::store::{Body, NewEvent};

/// Every error about a page that could not be read starts with this: such a page, which fails
/// the same way on every attempt, is told from a network failure by it
/// ([`FeedError::class`](super::super::FeedError::class) makes it `ErrorClass::Unreadable`).
pub const UNREADABLE_PAGE: &str = "unreadable feed page";

/// Most invalid UTF-8 sequences located in one page; a page with more is refused whole
/// (it is not text, and remembering every position would cost memory).
const MAX_INVALID_UTF8: usize = 1024;

/// A page, read.
#[derive(Debug)]
pub struct ReadPage {
    /// The records that can be exported, in page order.
    pub events: Vec<NewEvent>,
    /// The next page's relative URI; `None` on the last page.
    pub next: Option<String>,
    /// The records that cannot be exported (only with `keep_bad`; otherwise such a record
    /// refuses the page).
    pub rejected: Vec<RejectedRecord>,
}

/// A record of a page that cannot be exported as it is, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedRecord {
    /// Its position in the page's `data` array, from 0.
    pub index: usize,
    /// How many records the page holds.
    pub count: usize,
    /// Its `id`, when it has a usable one (a record refused for invalid UTF-8 may).
    pub id: Option<String>,
    /// Its timestamp (Unix seconds), or the window's start when it has none.
    pub ts: i64,
    /// What is wrong: "id is a number, not a string", "record has no id", ...
    pub problem: String,
    /// The record's text as sent, bytes that are not UTF-8 replaced by `?`.
    pub raw: String,
}

impl RejectedRecord {
    /// Where it is: `data[2] (record 3 of 10)`.
    pub fn position(&self) -> String {
        format!(
            "data[{}] (record {} of {})",
            self.index,
            self.index + 1,
            self.count
        )
    }
}

impl std::fmt::Display for RejectedRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.position(), self.problem)
    }
}

/// Reads a page's body. `Err` says what is wrong with the page (or, without `keep_bad`, with
/// its first bad record, and how many more there are), in words meant for a log line.
///
/// The reply's buffer becomes the page's text (no copy), and every record's body points into
/// it (see `store::Body`): no allocation and no copy per record either.
pub fn read_page(body: Vec<u8>, window_from: i64, keep_bad: bool) -> Result<ReadPage, String> {
    let (text, invalid) = match String::from_utf8(body) {
        Ok(text) => (text, Vec::new()),
        Err(e) => {
            let mut bytes = e.into_bytes();
            let invalid = mask_invalid_utf8(&mut bytes)?;
            let text = String::from_utf8(bytes)
                .map_err(|e| format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to()))?;
            (text, invalid)
        }
    };
    let text = Arc::new(text);
    let wire: PageWire<'_> = match serde_json::from_str(&text) {
        Ok(w) => w,
        // Masked bytes may be what broke the JSON: the first problem is the one to report.
        Err(_) if !invalid.is_empty() => {
            return Err(format!("invalid UTF-8 at byte {}", invalid[0]));
        }
        Err(e) => return Err(not_a_page(&text, &e)),
    };
    let raw = wire
        .data
        .ok_or_else(|| "the reply has no `data` array".to_string())?;
    let count = raw.len();
    let mut events = Vec::with_capacity(count);
    let mut rejected = Vec::new();
    let (mut first_bad, mut bad) = (None, 0usize);
    // Invalid bytes not inside any record are in the page's own structure or in `next`.
    let mut unplaced = invalid.iter().copied().peekable();
    for (index, rec) in raw.into_iter().enumerate() {
        // Where the parser found the record in the page (it borrows from `text`).
        let start = rec.get().as_ptr() as usize - text.as_ptr() as usize;
        let end = start + rec.get().len();
        let mut bad_byte = None;
        while let Some(&p) = unplaced.peek() {
            if p >= end {
                break;
            }
            if p < start {
                return Err(format!("invalid UTF-8 at byte {p}, outside any record"));
            }
            bad_byte.get_or_insert(p);
            unplaced.next();
        }
        let head = EventHead::parse(rec.get()).ok();
        let ts = head
            .as_ref()
            .and_then(|h| h.timestamp.as_deref())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp())
            .unwrap_or(window_from);
        let id = head.and_then(|h| h.id).filter(|id| !id.is_empty());
        let problem = match (bad_byte, &id) {
            (None, Some(_)) => None,
            (Some(p), _) => Some(format!(
                "invalid UTF-8 at byte {} of the record (byte {p} of the page)",
                p - start
            )),
            (None, None) => Some(record_problem(rec.get())),
        };
        match problem {
            None => events.push(NewEvent {
                id: id.map(|i| i.into_owned()).unwrap_or_default(),
                ts,
                body: Body::slice(&text, start..end),
            }),
            Some(problem) => {
                bad += 1;
                let r = RejectedRecord {
                    index,
                    count,
                    id: id.map(|i| i.into_owned()),
                    ts,
                    problem,
                    // The copy is only needed when the record is kept for a dead letter.
                    raw: if keep_bad {
                        rec.get().to_string()
                    } else {
                        String::new()
                    },
                };
                if keep_bad {
                    rejected.push(r);
                } else if first_bad.is_none() {
                    first_bad = Some(r);
                }
            }
        }
    }
    if let Some(p) = unplaced.next() {
        return Err(format!("invalid UTF-8 at byte {p}, outside any record"));
    }
    if let Some(first) = first_bad {
        let more = match bad - 1 {
            0 => String::new(),
            n => format!(
                " (and {n} more bad record{})",
                if n == 1 { "" } else { "s" }
            ),
        };
        return Err(format!("{first}{more}"));
    }
    let next = wire
        .next
        .and_then(|n| n.uri)
        .filter(|u| !u.trim().is_empty());
    Ok(ReadPage {
        events,
        next,
        rejected,
    })
}

/// Replaces every byte of every invalid UTF-8 sequence by `?` (same length, so every other
/// byte keeps its position) and returns where each sequence started.
fn mask_invalid_utf8(bytes: &mut [u8]) -> Result<Vec<usize>, String> {
    let mut at = 0;
    let mut found = Vec::new();
    while let Err(e) = std::str::from_utf8(&bytes[at..]) {
        let start = at + e.valid_up_to();
        if found.len() == MAX_INVALID_UTF8 {
            return Err(format!(
                "invalid UTF-8 at byte {} (and more than {MAX_INVALID_UTF8} other places: not text)",
                found[0]
            ));
        }
        found.push(start);
        let len = e.error_len().unwrap_or(bytes.len() - start);
        for b in &mut bytes[start..start + len] {
            *b = b'?';
        }
        at = start + len;
    }
    Ok(found)
}

/// What is wrong with a reply that is not a feed page.
fn not_a_page(text: &str, e: &serde_json::Error) -> String {
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return "the reply is empty".to_string();
    }
    if !trimmed.starts_with('{') {
        let start: String = trimmed
            .chars()
            .take_while(|c| !c.is_whitespace())
            .take(16)
            .collect();
        let start = start.escape_debug();
        return if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
            format!("the reply is JSON but not an object (starts with `{start}`)")
        } else {
            format!("the reply is not JSON (starts with `{start}`)")
        };
    }
    match e.classify() {
        serde_json::error::Category::Eof => format!(
            "the reply ends early, after {} bytes (cut short on the way?): {e}",
            text.len()
        ),
        serde_json::error::Category::Data => format!("the reply is not a feed page: {e}"),
        _ => format!("the reply is not valid JSON: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict(body: &[u8]) -> Result<ReadPage, String> {
        read_page(body.to_vec(), 60, false)
    }

    fn lenient(body: &[u8]) -> ReadPage {
        read_page(body.to_vec(), 60, true).unwrap()
    }

    #[test]
    fn a_bad_record_is_named_by_its_index_and_what_is_wrong() {
        let body = br#"{"data":[{"id":"a"},{"id":5},{"timestamp":"t"},{"id":"d"}]}"#;
        assert_eq!(
            strict(body).unwrap_err(),
            "data[1] (record 2 of 4): id is a number, not a string (and 1 more bad record)"
        );
        let page = lenient(body);
        let ids: Vec<&str> = page.events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["a", "d"]);
        let bad: Vec<(usize, &str, &str)> = page
            .rejected
            .iter()
            .map(|r| (r.index, r.problem.as_str(), r.raw.as_str()))
            .collect();
        assert_eq!(
            bad,
            [
                (1, "id is a number, not a string", r#"{"id":5}"#),
                (2, "record has no id", r#"{"timestamp":"t"}"#)
            ]
        );
        assert_eq!(
            strict(br#"{"data":[[1]]}"#).unwrap_err(),
            "data[0] (record 1 of 1): record is not an object (it is an array)"
        );
    }

    #[test]
    fn invalid_utf8_is_located_in_its_record() {
        let mut body = br#"{"data":[{"id":"a"},{"id":"b","path":"/x"#.to_vec();
        let at = body.len();
        body.extend_from_slice(b"\xff\xfe\"}]}");
        let record_start = body.iter().rposition(|&b| b == b'{').unwrap();
        assert_eq!(
            strict(&body).unwrap_err(),
            format!(
                "data[1] (record 2 of 2): invalid UTF-8 at byte {} of the record (byte {at} of the page)",
                at - record_start
            )
        );
        let page = lenient(&body);
        assert_eq!(page.events.len(), 1);
        assert_eq!(page.rejected[0].id.as_deref(), Some("b"));
        assert_eq!(page.rejected[0].raw, r#"{"id":"b","path":"/x??"}"#);
        // Outside every record: the page itself is not text.
        let mut body = b"{\"next\":{\"uri\":\"/\xff\"},\"data\":[]}".to_vec();
        assert_eq!(
            read_page(body.clone(), 0, true).unwrap_err(),
            "invalid UTF-8 at byte 17, outside any record"
        );
        body = b"\xff\xfe\xfd".repeat(2000);
        assert!(
            strict(&body)
                .unwrap_err()
                .starts_with("invalid UTF-8 at byte 0")
        );
    }

    #[test]
    fn a_reply_that_is_not_a_page_says_what_it_is() {
        for (body, want) in [
            (
                &b"<html><body>524</body></html>"[..],
                "the reply is not JSON (starts with `<html><body>524<`)",
            ),
            (
                b"  <!DOCTYPE html>",
                "the reply is not JSON (starts with `<!DOCTYPE`)",
            ),
            (
                b"[1,2]",
                "the reply is JSON but not an object (starts with `[1,2]`)",
            ),
            (b"", "the reply is empty"),
            (br#"{"other":1}"#, "the reply has no `data` array"),
        ] {
            assert_eq!(strict(body).unwrap_err(), want);
        }
        let cut = strict(br#"{"next":{"uri":""},"data":[{"id":"a"#).unwrap_err();
        assert!(
            cut.starts_with("the reply ends early, after 35 bytes"),
            "{cut}"
        );
        let data = strict(br#"{"data":5}"#).unwrap_err();
        assert!(
            data.starts_with("the reply is not a feed page: invalid type"),
            "{data}"
        );
    }

    /// Random byte damage to a page, read both ways: never a panic, and whatever is accepted
    /// holds: kept records are objects with an id, and with `keep_bad` every record of the
    /// page is either kept or returned as rejected.
    #[test]
    fn damaged_pages_never_panic_and_every_record_is_kept_or_rejected() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(14);
        let base = br#"{"next":{"uri":"/x?next=t"},"data":[{"id":"a","timestamp":"1970-01-01T00:01:00Z","p":"/caf\u00e9"},{"id":"b","tags":[{"id":"t"}]},{"id":"c","n":1.5}]}"#;
        for _ in 0..20_000 {
            let mut body = base.to_vec();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..body.len());
                body[at] = rng.random();
            }
            for keep_bad in [false, true] {
                let Ok(page) = read_page(body.clone(), 0, keep_bad) else {
                    continue;
                };
                for e in &page.events {
                    assert!(!e.id.is_empty());
                    assert!(e.body.starts_with('{'), "{}", e.body);
                    serde_json::from_str::<serde::de::IgnoredAny>(&e.body).unwrap();
                }
                if keep_bad {
                    let count = page.rejected.first().map(|r| r.count);
                    if let Some(count) = count {
                        assert_eq!(page.events.len() + page.rejected.len(), count);
                        assert!(
                            page.rejected
                                .iter()
                                .all(|r| r.index < count && !r.raw.is_empty())
                        );
                    }
                } else {
                    assert!(page.rejected.is_empty());
                }
            }
        }
    }

    #[test]
    fn good_records_keep_their_text_and_timestamps() {
        let page = strict(br#"{"next":{"uri":" "},"data":[{"id":"a","timestamp":"1970-01-01T00:02:00Z"},{"id":"b"}]}"#).unwrap();
        assert_eq!(page.next, None);
        assert_eq!(page.events[0].ts, 120);
        assert_eq!(page.events[1].ts, 60, "no timestamp: the window's start");
        assert_eq!(&*page.events[1].body, r#"{"id":"b"}"#);
        assert!(page.rejected.is_empty());
    }
}
