//! Python string semantics the reference depends on, re-implemented on `&str` and bytes.
//!
//! VADER's behaviour is defined by CPython's `str.split()` (all of Python's whitespace, not just
//! ASCII), `str.strip(string.punctuation)`, `len()` in code points, `str.isupper()` and
//! `str.lower()`. Each helper here names the Python operation it mirrors. The fast paths work on
//! ASCII bytes; non-ASCII input takes a char-based path with Unicode tables from Rust's `std`
//! (Unicode 16+, where CPython 3.11 uses 14.0: characters added since then may classify
//! differently, nothing else does).

/// Python's `str.isspace()` (the separators of `str.split()` and `str.strip()`): the Unicode
/// White_Space characters plus U+001C..U+001F (CPython counts bidi class B/S), minus nothing.
#[inline]
pub(crate) fn is_py_space(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r'
            | '\u{1c}'..='\u{20}'
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// Python's `s.strip()` with no argument.
pub(crate) fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// 1 for the ASCII bytes Python's `split()` treats as whitespace, else 0.
const ASCII_SPACE: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut b = 0;
    while b < 128 {
        if (b >= 0x09 && b <= 0x0d) || (b >= 0x1c && b <= 0x20) {
            t[b] = 1;
        }
        b += 1;
    }
    t
};

/// The length in bytes of the Python whitespace character starting at `bytes[i]` (0 if it is
/// not whitespace). `bytes` must be valid UTF-8 and `i` in bounds; `i` may point into the middle
/// of a character (continuation bytes are never whitespace), which lets callers scan bytewise.
#[inline]
pub(crate) fn space_len(bytes: &[u8], i: usize) -> usize {
    let b = bytes[i];
    if b < 0x80 {
        return usize::from(ASCII_SPACE[usize::from(b)]);
    }
    let next = |k: usize| bytes.get(i + k).copied().unwrap_or(0);
    match b {
        // U+0085, U+00A0
        0xc2 => match next(1) {
            0x85 | 0xa0 => 2,
            _ => 0,
        },
        // U+1680
        0xe1 if next(1) == 0x9a && next(2) == 0x80 => 3,
        // U+2000..U+200A, U+2028, U+2029, U+202F, U+205F
        0xe2 => match (next(1), next(2)) {
            (0x80, 0x80..=0x8a | 0xa8 | 0xa9 | 0xaf) | (0x81, 0x9f) => 3,
            _ => 0,
        },
        // U+3000
        0xe3 if next(1) == 0x80 && next(2) == 0x80 => 3,
        _ => 0,
    }
}

/// `string.punctuation`: the 32 ASCII punctuation characters, the same set as
/// `u8::is_ascii_punctuation`.
#[inline(always)]
pub(crate) fn is_py_punct(b: u8) -> bool {
    PUNCT[usize::from(b)]
}

/// [`is_py_punct`] as a table: one load instead of range tests.
const PUNCT: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        #[allow(clippy::cast_possible_truncation)] // b < 256
        let byte = b as u8;
        t[b] = byte.is_ascii_punctuation();
        b += 1;
    }
    t
};

/// Whether `bytes` (valid UTF-8) holds at most two code points: Python's `len(s) <= 2`.
#[inline]
pub(crate) fn at_most_two_chars(bytes: &[u8]) -> bool {
    if bytes.len() <= 2 {
        return true;
    }
    if bytes.len() > 8 {
        return false;
    }
    // Count non-continuation bytes.
    bytes.iter().filter(|&&b| (b & 0xc0) != 0x80).count() <= 2
}

/// Titlecase letters (general category Lt); CPython's `isupper()` fails on them. The set is the
/// same in Unicode 14 and later.
#[inline]
fn is_titlecase(c: char) -> bool {
    matches!(
        c,
        '\u{1c5}'
            | '\u{1c8}'
            | '\u{1cb}'
            | '\u{1f2}'
            | '\u{1f88}'..='\u{1f8f}'
            | '\u{1f98}'..='\u{1f9f}'
            | '\u{1fa8}'..='\u{1faf}'
            | '\u{1fbc}'
            | '\u{1fcc}'
            | '\u{1ffc}'
    )
}

/// Python's `s.isupper()` for a non-empty string: no lowercase or titlecase character and at
/// least one uppercase one. A one-character string is upper iff the character is (CPython's
/// shortcut gives the same answer: no character is both upper and lower or title).
pub(crate) fn py_isupper_chars(s: &str) -> bool {
    let mut cased = false;
    for c in s.chars() {
        if c.is_lowercase() || is_titlecase(c) {
            return false;
        }
        if c.is_uppercase() {
            cased = true;
        }
    }
    cased
}

/// Python's `s.lower()` for a string with non-ASCII characters, into `out` (cleared first).
/// Rust's `str::to_lowercase` applies the same full case mapping, final sigma included; this
/// version writes into a reused buffer instead of allocating.
pub(crate) fn py_lower_into(s: &str, out: &mut String) {
    out.clear();
    for (i, c) in s.char_indices() {
        if c == 'Σ' {
            // Final_Sigma: preceded by a cased letter and not followed by one (skipping
            // case-ignorable characters both ways), as in CPython's handle_capital_sigma.
            let before = s[..i].chars().rev().find(|&p| !is_case_ignorable(p));
            let after = s[i + c.len_utf8()..]
                .chars()
                .find(|&n| !is_case_ignorable(n));
            let final_sigma = before.is_some_and(is_cased) && !after.is_some_and(is_cased);
            out.push(if final_sigma { 'ς' } else { 'σ' });
        } else if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            out.extend(c.to_lowercase());
        }
    }
}

/// Unicode "Cased": lowercase, uppercase or titlecase.
fn is_cased(c: char) -> bool {
    c.is_lowercase() || c.is_uppercase() || is_titlecase(c)
}

/// An approximation of Unicode Case_Ignorable sufficient for the final-sigma rule: apostrophes,
/// periods, colons, middle dots, modifier letters and combining marks. Only Greek text with a
/// capital sigma reaches this, and the result only matters for lexicon lookups, whose keys are
/// ASCII: a wrong answer cannot change a score.
fn is_case_ignorable(c: char) -> bool {
    matches!(
        c,
        '\'' | '.' | ':' | '^' | '`' | '\u{ad}' | '\u{b7}' | '\u{2019}' | '\u{300}'..='\u{36f}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_match_python_isspace() {
        // [hex(c) for c in range(0x110000) if chr(c).isspace()] in CPython 3.11.
        let python: [u32; 29] = [
            0x9, 0xa, 0xb, 0xc, 0xd, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000,
            0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028,
            0x2029, 0x202f, 0x205f, 0x3000,
        ];
        let ours: Vec<u32> = (0..=0x10ffffu32)
            .filter_map(char::from_u32)
            .filter(|&c| is_py_space(c))
            .map(|c| c as u32)
            .collect();
        assert_eq!(ours, python);
        for c in (0..=0x10ffffu32).filter_map(char::from_u32) {
            let mut buf = [0u8; 4];
            let s = c.encode_utf8(&mut buf);
            let expect = if is_py_space(c) { s.len() } else { 0 };
            assert_eq!(space_len(s.as_bytes(), 0), expect, "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn isupper_like_python() {
        assert!(py_isupper_chars("ÉTÉ"));
        assert!(py_isupper_chars("ÉTÉ!1"));
        assert!(!py_isupper_chars("Été"));
        assert!(!py_isupper_chars("123"));
        assert!(!py_isupper_chars("Aǅ"));
        assert!(!py_isupper_chars("ª")); // Other_Lowercase
        assert!(py_isupper_chars("\u{212a}")); // Kelvin sign
    }

    #[test]
    fn lower_like_python() {
        let mut out = String::new();
        py_lower_into("\u{212a}IND", &mut out);
        assert_eq!(out, "kind");
        py_lower_into("ΟΔΟΣ ΣΑ", &mut out);
        assert_eq!(out, "οδος σα");
        py_lower_into("İ", &mut out);
        assert_eq!(out, "i\u{307}");
    }

    #[test]
    fn two_chars() {
        assert!(at_most_two_chars("é!".as_bytes()));
        assert!(at_most_two_chars("😀😀".as_bytes()));
        assert!(!at_most_two_chars("abc".as_bytes()));
        assert!(!at_most_two_chars("😀😀😀".as_bytes()));
    }
}
