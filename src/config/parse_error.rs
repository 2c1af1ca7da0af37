//! TOML syntax errors that never show the file's text. The usual report quotes the offending
//! line, and a line that does not parse is often one holding a secret (an unterminated or
//! unquoted token, a key given twice, junk after the value). Here the report keeps the line,
//! the column and what the parser expected, never a line's text.

use super::ConfigError;

/// Parses `text` as a TOML document, or says where it stops parsing without quoting it.
pub(super) fn parse_document(text: &str) -> Result<toml::Table, ConfigError> {
    toml::from_str::<toml::Table>(text).map_err(|e| {
        let at = match e.span() {
            Some(span) => {
                let (line, column) = line_and_column(text, span.start);
                format!(" at line {line}, column {column}")
            }
            None => String::new(),
        };
        ConfigError::new(
            "config",
            format!(
                "TOML syntax error{at}: {} (the line is not shown: it may hold a secret)",
                redacted(e.message())
            ),
        )
    })
}

/// 1-based line and column (in characters) of byte offset `at`.
fn line_and_column(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    // A span never splits a character, but stay safe on a bad offset.
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The parser's message, which is made of fixed descriptions and the short tokens it expected
/// (`=`, `"`, `true`). Anything longer in backticks could only be text of the document: it is
/// dropped, so a future message format cannot leak a value either.
fn redacted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut parts = message.split('`');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    // Odd pieces are inside backticks, even ones outside.
    for (i, part) in parts.enumerate() {
        if i % 2 == 0 {
            if part.chars().count() <= 5 {
                out.push('`');
                out.push_str(part);
                out.push('`');
            } else {
                out.push_str("(text not shown)");
            }
        } else {
            out.push_str(part);
        }
    }
    out.replace('\n', "; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "S3cr3t-Tok3n-XYZ";

    #[test]
    fn every_kind_of_syntax_error_keeps_the_position_and_drops_the_text() {
        let cases = [
            ("unterminated", format!("[api]\ntoken = \"{SECRET}\n"), 2),
            (
                "unterminated literal",
                format!("[api]\ntoken = '{SECRET}\n"),
                2,
            ),
            // Reported where the document ends, after the line.
            (
                "unterminated multi-line",
                format!("[api]\ntoken = \"\"\"{SECRET}\n"),
                3,
            ),
            ("unquoted", format!("[api]\ntoken = {SECRET}\n"), 2),
            (
                "unquoted with spaces",
                format!("[api]\ntoken = {SECRET} x\n"),
                2,
            ),
            (
                "duplicate",
                format!("[api]\ntoken = \"{SECRET}\"\ntoken = \"{SECRET}\"\n"),
                3,
            ),
            (
                "junk after",
                format!("[api]\ntoken = \"{SECRET}\" junk\n"),
                2,
            ),
            (
                "junk glued",
                format!("[api]\ntoken = \"{SECRET}\"junk\n"),
                2,
            ),
            ("bare secret line", format!("[api]\n{SECRET}\n"), 2),
            (
                "bad escape",
                format!("[api]\ntoken = \"a\\q{SECRET}\"\n"),
                2,
            ),
            (
                "inline table",
                format!("sinks = [{{ type = \"splunk_hec\", token = {SECRET} }}]\n"),
                1,
            ),
        ];
        for (what, text, line) in cases {
            let e = parse_document(&text).unwrap_err();
            let shown = e.to_string();
            assert_eq!(e.key, "config", "{what}");
            assert!(!shown.contains(SECRET), "{what}: {shown}");
            assert!(!shown.contains("S3cr"), "{what}: {shown}");
            assert!(
                shown.contains(&format!("line {line}, column ")),
                "{what}: {shown}"
            );
            assert!(!shown.contains('\n'), "{what}: one line: {shown}");
        }
    }

    #[test]
    fn positions_count_characters_from_one() {
        assert_eq!(line_and_column("a\nbé=c", 6), (2, 4));
        assert_eq!(line_and_column("x", 0), (1, 1));
        assert_eq!(line_and_column("x", 99), (1, 2));
    }

    #[test]
    fn long_backticked_text_is_dropped() {
        assert_eq!(
            redacted("duplicate key `hunter2-token` in `api`, expected `=`"),
            "duplicate key (text not shown) in `api`, expected `=`"
        );
        assert_eq!(
            redacted("invalid boolean, expected `true`"),
            "invalid boolean, expected `true`"
        );
    }
}
