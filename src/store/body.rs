//! [`Body`]: the JSON text of one event (or another piece of its text, such as its id), either
//! its own string or a view into a larger buffer it came in.
//!
//! A feed page holds up to a thousand records of about a kilobyte each. Copying each into its
//! own string costs an allocation and a copy per record; the parser already has the page's
//! text, so each record is a range of it instead, and the page goes back to the allocator whole
//! once its records are spooled. Likewise events read back from a spool row are ranges of the
//! row's text, and their ids ranges of the row's frame.

use std::fmt;
use std::ops::{Deref, Range};
use std::sync::Arc;

use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};

/// The JSON text of one event, or its id (derefs to `&str`).
#[derive(Clone)]
pub struct Body(Repr);

#[derive(Clone)]
enum Repr {
    /// A text of its own.
    Owned(String),
    /// Part of a shared buffer (a feed page).
    Shared(Arc<String>, Range<usize>),
}

impl Body {
    /// `range` of `buf`, which must lie on character boundaries (checked when read).
    pub(crate) fn slice(buf: &Arc<String>, range: Range<usize>) -> Body {
        debug_assert!(buf.get(range.clone()).is_some(), "range off the buffer");
        Body(Repr::Shared(Arc::clone(buf), range))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Owned(s) => s,
            // The ranges are found in the buffer by the JSON parser (or built from whole
            // strings appended to it), so they always lie on character boundaries.
            Repr::Shared(buf, range) => &buf[range.clone()],
        }
    }
}

impl Deref for Body {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Body {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for Body {
    fn from(s: String) -> Body {
        Body(Repr::Owned(s))
    }
}

impl From<&str> for Body {
    fn from(s: &str) -> Body {
        Body::from(s.to_string())
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for Body {
    fn eq(&self, other: &Body) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Body {}

impl PartialEq<str> for Body {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Body {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Body {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Body> for String {
    fn eq(&self, other: &Body) -> bool {
        self == other.as_str()
    }
}

impl ToSql for Body {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(self.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_share_one_buffer_and_read_back_whole() {
        let page = Arc::new(String::from("[{\"a\":1},{\"é\":\"ü\"}]"));
        let first = Body::slice(&page, 1..8);
        let second = Body::slice(&page, 9..page.len() - 1);
        assert_eq!(first, "{\"a\":1}");
        assert_eq!(second.as_str(), "{\"é\":\"ü\"}");
        match (&first.0, &second.0) {
            (Repr::Shared(a, _), Repr::Shared(b, _)) => assert!(Arc::ptr_eq(a, b)),
            _ => panic!("bodies of one page share it"),
        }
        assert_eq!(format!("{first:?}"), "\"{\\\"a\\\":1}\"");
        let owned = Body::from("x");
        assert_eq!(owned.len(), 1);
        assert_eq!(String::from("x"), owned);
    }
}
