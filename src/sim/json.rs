//! Writing JSON text straight into a byte buffer, for the simulator's and receivers' hot paths.
//!
//! Building a `serde_json::Value` (or a struct of owned `String`s) per record and serialising it
//! cost the test harness more CPU than the exporter it measures; these helpers write the same
//! bytes serde_json's compact formatter would, without the intermediate allocations.

/// Appends `s` as a JSON string, escaped exactly as serde_json does: `"` and `\`, the short
/// forms `\b \t \n \f \r`, other control characters as `\u00XX` (lowercase hex); everything
/// else (`/`, DEL, non-ASCII) verbatim.
pub(crate) fn push_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // Nearly every string needs no escaping; a branch-free scan for that is several times
    // faster than the byte-by-byte loop below.
    let plain = !bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0C => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1F => {
                out.extend_from_slice(&bytes[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xF)]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends `n` in decimal.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends `n` in lowercase hex, zero-padded to `width` digits (more digits if it needs them,
/// like `{:0width$x}`).
pub(crate) fn push_hex(out: &mut Vec<u8>, n: u64, width: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = ((64 - n.leading_zeros() as usize).div_ceil(4))
        .max(width)
        .max(1);
    for k in (0..digits).rev() {
        let shift = 4 * k;
        let nibble = if shift >= 64 { 0 } else { (n >> shift) & 0xF };
        out.push(HEX[nibble as usize]);
    }
}

/// Appends `b` as `true`/`false`.
pub(crate) fn push_bool(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// Any JSON value, read and dropped with the checks building a `serde_json::Value` makes
/// (numbers in range, valid escapes), which `IgnoredAny` skips: a receiver reading a line
/// without building it must still refuse what it refused before.
pub(crate) struct AnyValue;

impl<'de> serde::Deserialize<'de> for AnyValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = AnyValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_i64<E>(self, _: i64) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_u64<E>(self, _: u64) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_f64<E>(self, _: f64) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_str<E>(self, _: &str) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_unit<E>(self) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<AnyValue, A::Error> {
                while seq.next_element::<AnyValue>()?.is_some() {}
                Ok(AnyValue)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<AnyValue, A::Error> {
                while map.next_entry::<AnyValue, AnyValue>()?.is_some() {}
                Ok(AnyValue)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_like_serde_json() {
        let mut all: String = (0u8..=0x7F).map(char::from).collect();
        all.push_str("ß€😀/\u{7f}\u{2028}");
        let mut cases: Vec<String> = vec![String::new(), all.clone(), "plain".into()];
        for c in all.chars() {
            cases.push(format!("a{c}b"));
            cases.push(c.to_string());
        }
        for s in cases {
            let mut out = Vec::new();
            push_str(&mut out, &s);
            assert_eq!(out, serde_json::to_vec(&s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn any_value_refuses_what_value_refuses() {
        for text in [
            "1",
            "1e999",
            "-1e999",
            "18446744073709551616",
            r#""\ud800""#,
            r#""\ud83d\ude00""#,
            r#""\x""#,
            r#"{"a":[1,{"b":1e999}]}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"\ud800":1}"#,
            "[1,2,",
            "nul",
            &"[".repeat(200),
            &format!("{}{}", "[".repeat(100), "]".repeat(100)),
        ] {
            assert_eq!(
                serde_json::from_str::<AnyValue>(text).is_ok(),
                serde_json::from_str::<serde_json::Value>(text).is_ok(),
                "{text}"
            );
        }
    }

    #[test]
    fn numbers_print_like_std() {
        for n in [0, 1, 9, 10, 99, 100, 12345, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
            for w in [0, 1, 6, 8, 10, 16] {
                let mut out = Vec::new();
                push_hex(&mut out, n, w);
                assert_eq!(out, format!("{n:0w$x}").as_bytes(), "{n} {w}");
            }
        }
    }
}
