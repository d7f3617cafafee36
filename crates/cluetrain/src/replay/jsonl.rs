//! JSONL replay: one schema event per line, validated with the same rules as ingest
//! ([`ingest::Decoder`] with [`ingest::DecodeLimits::schema_only`]) and passed on unchanged,
//! keyed by its brand.

use std::borrow::Cow;
use std::io::{BufRead, Read};

use anyhow::Context;
use ingest::{DecodeLimits, Decoder};
use serde::Deserialize;

/// Lines longer than this are reported and skipped unread (memory stays bounded).
pub const LINE_BYTES_MAX: usize = 16 << 20;

/// What one line turned into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    /// A valid event: its brand (the key) and the line as it is in the file.
    Event {
        /// The event's brand.
        brand: Cow<'a, str>,
        /// The line, without its line ending.
        payload: &'a [u8],
    },
    /// An invalid line; skipped.
    Malformed {
        /// 1-based line number.
        line: u64,
        /// The decoder's reason and detail.
        reason: String,
    },
}

#[derive(Deserialize)]
struct BrandOnly<'a> {
    #[serde(borrow)]
    brand: Cow<'a, str>,
}

/// Reads every line of `reader`, calling `out` with each valid event or invalid line.
/// Blank lines are skipped. Returns the number of non-blank lines.
pub fn replay<R: Read>(
    reader: R,
    now_micros: i64,
    mut out: impl FnMut(Line<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let decoder = Decoder::new(DecodeLimits::schema_only());
    let mut reader = std::io::BufReader::with_capacity(1 << 16, reader);
    let mut buf: Vec<u8> = Vec::new();
    let mut line_no = 0u64;
    let mut rows = 0u64;
    loop {
        buf.clear();
        let limit = u64::try_from(LINE_BYTES_MAX).unwrap_or(u64::MAX) + 1;
        let n = (&mut reader)
            .take(limit)
            .read_until(b'\n', &mut buf)
            .context("reading the file")?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if buf.len() > LINE_BYTES_MAX && buf.last() != Some(&b'\n') {
            // Skip the rest of the over-long line.
            loop {
                let chunk = reader.fill_buf().context("reading the file")?;
                if chunk.is_empty() {
                    break;
                }
                match chunk.iter().position(|&b| b == b'\n') {
                    Some(p) => {
                        reader.consume(p + 1);
                        break;
                    }
                    None => {
                        let len = chunk.len();
                        reader.consume(len);
                    }
                }
            }
            rows += 1;
            out(Line::Malformed {
                line: line_no,
                reason: format!("oversized: line is longer than {LINE_BYTES_MAX} bytes"),
            })?;
            continue;
        }
        let mut payload = buf.as_slice();
        if line_no == 1 {
            payload = payload.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(payload);
        }
        payload = payload.strip_suffix(b"\n").unwrap_or(payload);
        payload = payload.strip_suffix(b"\r").unwrap_or(payload);
        if payload.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        rows += 1;
        if let Err(r) = decoder.check(Some(payload), now_micros) {
            out(Line::Malformed {
                line: line_no,
                reason: format!("{}: {}", r.reason, r.detail),
            })?;
            continue;
        }
        match serde_json::from_slice::<BrandOnly<'_>>(payload) {
            Ok(b) => out(Line::Event {
                brand: b.brand,
                payload,
            })?,
            Err(e) => out(Line::Malformed {
                line: line_no,
                reason: format!("brand: {e}"),
            })?,
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"event_id":"e1","platform":"x","kind":"mention","created_at":"2026-01-05T10:00:00Z","brand":"Acme","author":{"id":"u1","is_org":false},"text":"hi @Acme"}"#;

    /// (brand of a valid line, line number of an invalid one, payload or reason).
    type Got = (Option<String>, Option<u64>, String);

    fn run(input: &str) -> (u64, Vec<Got>) {
        let mut got = Vec::new();
        let rows = replay(input.as_bytes(), 0, |l| {
            got.push(match l {
                Line::Event { brand, payload } => (
                    Some(brand.into_owned()),
                    None,
                    String::from_utf8(payload.to_vec()).unwrap(),
                ),
                Line::Malformed { line, reason } => (None, Some(line), reason),
            });
            Ok(())
        })
        .unwrap();
        (rows, got)
    }

    #[test]
    fn valid_lines_pass_unchanged_and_invalid_ones_are_reported() {
        let bad_kind = GOOD.replace("mention", "shout");
        let bad_time = GOOD.replace("2026-01-05T10:00:00Z", "yesterday");
        let input = format!("{GOOD}\r\n\nnot json\n{bad_kind}\n{bad_time}\n{GOOD}");
        let (rows, got) = run(&input);
        assert_eq!(rows, 5);
        assert_eq!(got.len(), 5);
        assert_eq!(got[0], (Some("Acme".into()), None, GOOD.into()));
        assert_eq!(got[1].1, Some(3));
        assert!(got[1].2.starts_with("invalid_json"), "{got:?}");
        assert_eq!(got[2].1, Some(4));
        assert!(got[2].2.starts_with("schema_violation"), "{got:?}");
        assert_eq!(got[3].1, Some(5));
        assert!(got[3].2.contains("created_at"), "{got:?}");
        assert_eq!(got[4], (Some("Acme".into()), None, GOOD.into()));
    }

    #[test]
    fn escaped_brand_is_unescaped_for_the_key() {
        let line = GOOD.replace("\"Acme\"", r#""Ac\u006de""#);
        let (_, got) = run(&line);
        assert_eq!(got[0].0.as_deref(), Some("Acme"));
        assert_eq!(got[0].2, line);
    }
}
