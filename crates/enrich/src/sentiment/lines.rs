//! The streaming line scorer behind `cluetrain sentiment`: one text per input line, one TSV
//! line of scores per input line, in the same order, so the output can be pasted next to the
//! input or diffed against the Python reference.

use std::io::{self, BufRead, Write};

use super::Scorer;

/// How many lines [`score_lines`] writes between flushes of `out`. Flushing every line would
/// cost a system call per line when `out` is a `BufWriter` over stdout; every 1024 lines keeps
/// output flowing through pipes without measurable cost.
pub const FLUSH_EVERY_LINES: u64 = 1024;

/// What [`score_lines`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineReport {
    /// Input lines read (including the failed ones).
    pub lines: u64,
    /// Lines that were not valid UTF-8 (each got an empty output line and a message on `err`).
    pub failed: u64,
}

/// Scores each line of `input` and writes `neg\tneu\tpos\tcompound` per line to `out`.
///
/// Lines are read as raw bytes up to `\n`; the `\n` and then one trailing `\r` are removed, the
/// rest is the text (a last line without `\n` counts too; an empty line scores all zeros). The
/// numbers are printed as Python's `str()` prints the reference's values
/// (`0.0\t0.508\t0.492\t0.4404`). A line that is not valid UTF-8 yields an empty output line, so
/// output line N always belongs to input line N, and `line N: invalid UTF-8 ...` (1-based) on
/// `err`; it is counted in [`LineReport::failed`] and does not stop the run.
///
/// Buffering is the caller's job: this function does many small writes, so pass buffered
/// writers (Rust's `Stdout` flushes at every newline, which would cost a system call per line:
/// wrap it, e.g. `BufWriter::new(io::stdout().lock())`). `out` is flushed every
/// [`FLUSH_EVERY_LINES`] lines and at the end; `err` after each message.
///
/// # Errors
/// I/O errors from reading `input` or writing `out`/`err`; lines processed before the error have
/// been written.
pub fn score_lines<R: BufRead, W: Write, E: Write>(
    mut input: R,
    mut out: W,
    mut err: E,
) -> io::Result<LineReport> {
    let mut scorer = Scorer::new();
    let mut report = LineReport::default();
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        report.lines += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        match std::str::from_utf8(&line) {
            Ok(text) => {
                scorer.score(text).write_tsv(&mut out)?;
                out.write_all(b"\n")?;
            }
            Err(e) => {
                report.failed += 1;
                out.write_all(b"\n")?;
                writeln!(
                    err,
                    "line {}: invalid UTF-8 at byte {}; wrote an empty line",
                    report.lines,
                    e.valid_up_to()
                )?;
                err.flush()?;
            }
        }
        if report.lines % FLUSH_EVERY_LINES == 0 {
            out.flush()?;
        }
    }
    out.flush()?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (String, String, LineReport) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let report = score_lines(input, &mut out, &mut err).unwrap();
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
            report,
        )
    }

    #[test]
    fn invalid_line_keeps_alignment() {
        let input =
            b"The book was good.\n\xff\xfe bad bytes\r\nVADER is smart, handsome, and funny!\r\n";
        let (out, err, report) = run(input);
        let lines: Vec<&str> = out.split('\n').collect();
        assert_eq!(
            lines,
            [
                "0.0\t0.508\t0.492\t0.4404",
                "",
                "0.0\t0.248\t0.752\t0.8439",
                ""
            ],
            "one output line per input line, the invalid one empty"
        );
        assert_eq!(
            report,
            LineReport {
                lines: 3,
                failed: 1
            }
        );
        assert!(err.starts_with("line 2: invalid UTF-8 at byte 0"), "{err}");
        assert_eq!(err.lines().count(), 1);
    }

    #[test]
    fn last_line_without_newline_and_empty_lines() {
        let (out, err, report) = run(b"\n\r\nToday SUX!");
        assert_eq!(
            out,
            "0.0\t0.0\t0.0\t0.0\n0.0\t0.0\t0.0\t0.0\n0.779\t0.221\t0.0\t-0.5461\n"
        );
        assert_eq!(err, "");
        assert_eq!(
            report,
            LineReport {
                lines: 3,
                failed: 0
            }
        );
    }

    #[test]
    fn empty_input() {
        let (out, _, report) = run(b"");
        assert_eq!(out, "");
        assert_eq!(report, LineReport::default());
    }
}
