//! Golden files: every input under `tests/golden/input/` shaped in every format must equal
//! `tests/golden/<format>/<name>.json`. Outputs are stored re-indented by [`pretty`], which
//! keeps key order and every token's bytes, so a diff shows exactly what a sink receives.
//! `UPDATE_GOLDEN=1 cargo test golden` rewrites them after an intended change.

use std::path::{Path, PathBuf};

use super::{DEFAULT_REDACT_HEADERS, Format, Shaper};
use crate::store::SpooledEvent;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The event a golden input stands for: fixed corp, site and times, so outputs are stable.
pub(super) fn golden_event(body: &str) -> SpooledEvent {
    SpooledEvent {
        seq: 1,
        corp: "acme".into(),
        site: "www".into(),
        id: "spool-id".into(),
        ts: 1_795_482_123,
        fetched_at: 1_795_482_423,
        body: body.into(),
    }
}

/// Re-indents one JSON text (two spaces), keeping key order and the exact text of every
/// string and number.
pub(super) fn pretty(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    let mut chars = json.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    while let Some(c) = chars.next() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                out.push(c);
            }
            '{' | '[' => {
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                let close = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&close) {
                    chars.next();
                    out.push(c);
                    out.push(close);
                } else {
                    out.push(c);
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out.push('\n');
    out
}

#[test]
fn golden_outputs_match() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let redact: Vec<String> = DEFAULT_REDACT_HEADERS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(dir().join("input"))
        .expect("tests/golden/input exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 4, "golden inputs missing: {inputs:?}");
    let mut mismatches = Vec::new();
    for input in &inputs {
        let body = std::fs::read_to_string(input).expect("readable input");
        let ev = golden_event(body.trim_end());
        let name = input.file_name().expect("file name");
        for format in [Format::Raw, Format::Ecs, Format::Cim] {
            let mut out = Vec::new();
            Shaper::new(format, &redact).write(&ev, &mut out);
            let text = String::from_utf8(out).expect("UTF-8 output");
            serde_json::from_str::<serde_json::Value>(&text)
                .unwrap_or_else(|e| panic!("{format:?} {name:?} is not JSON: {e}\n{text}"));
            let got = pretty(&text);
            let path = dir().join(format.as_str()).join(name);
            if update {
                std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                std::fs::write(&path, &got).expect("write golden");
                continue;
            }
            let want = std::fs::read_to_string(&path).unwrap_or_default();
            if got != want {
                mismatches.push(format!("{}:\n{got}", path.display()));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "golden files differ (rerun with UPDATE_GOLDEN=1 if the change is intended):\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn pretty_keeps_tokens_and_order() {
    let text = r#"{"b":1.50,"a":[],"c":{"x":"y, \"z\": [1]"},"d":[1,{}]}"#;
    let p = pretty(text);
    assert_eq!(
        p,
        "{\n  \"b\": 1.50,\n  \"a\": [],\n  \"c\": {\n    \"x\": \"y, \\\"z\\\": [1]\"\n  },\n  \"d\": [\n    1,\n    {}\n  ]\n}\n"
    );
    let back: serde_json::Value = serde_json::from_str(&p).unwrap();
    assert_eq!(
        back,
        serde_json::from_str::<serde_json::Value>(text).unwrap()
    );
}
