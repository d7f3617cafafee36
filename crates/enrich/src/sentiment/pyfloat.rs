//! Python's `round(x, n)` and `str(float)` for the scores, without allocating.
//!
//! CPython rounds a float to `n` decimals by converting the exact binary value to a decimal
//! string correctly rounded half-to-even (`_Py_dg_dtoa` mode 3) and parsing it back. So
//! `round(0.0625, 3)` is `0.062` (an exact tie, to even) while `round(2.675, 2)` is `2.67` (the
//! double is just below the tie). [`py_round`] does the same with integer arithmetic on the
//! double's mantissa, and [`write_py_str`] prints the result the way `str()` does.

use std::io;

/// Python's `round(x, ndigits)` for `ndigits` in `0..=6` and `|x| < 2^53 / 10^ndigits`, which
/// covers every VADER score (all lie in `[-1, 1]`). Outside that range `x` is returned as is.
#[inline]
pub(crate) fn py_round(x: f64, ndigits: u32) -> f64 {
    #[allow(clippy::cast_precision_loss)] // 10^6 is exact
    let scale = 10u64.pow(ndigits.min(6)) as f64;
    // Fast path, without branches on the value (scores are often exactly 0, unpredictably):
    // |x| * scale is off the exact product by at most half an ulp (< 1e-6 below 2^31), so
    // unless its fraction is within 1e-6 of one half the rounding direction is certain and
    // rounding the product agrees with the exact computation. 0.0 and -0.0 come out as they
    // went in (by `copysign`); NaN and infinities fail the range test.
    let y = x.abs() * scale;
    if ndigits <= 6 && y < 2_147_483_648.0 {
        // `as` truncates toward zero: `floor` for these non-negative values (and no libm call
        // on x86-64 without SSE4.1).
        #[allow(clippy::cast_possible_truncation)]
        let floor = (y as i64) as f64;
        let frac = y - floor;
        if (frac - 0.5).abs() > 1e-6 {
            let q = floor + if frac > 0.5 { 1.0 } else { 0.0 };
            // q and scale are exact doubles and IEEE division is correctly rounded: this is the
            // double nearest to q / 10^ndigits, which is what CPython's strtod returns.
            return (q / scale).copysign(x);
        }
    }
    if x == 0.0 || !x.is_finite() || ndigits > 6 {
        return x;
    }
    match round_to_units(x.abs(), ndigits) {
        // q < 2^53: exact as a double.
        #[allow(clippy::cast_precision_loss)]
        Some(q) => (q as f64 / scale).copysign(x),
        None => x,
    }
}

/// `|x| * 10^ndigits` rounded half-to-even on the exact binary value, if below 2^53.
fn round_to_units(ax: f64, ndigits: u32) -> Option<u64> {
    let bits = ax.to_bits();
    let biased = i32::try_from((bits >> 52) & 0x7ff).ok()?;
    let frac = bits & ((1u64 << 52) - 1);
    // ax = m * 2^e exactly.
    let (m, e) = if biased == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), biased - 1075)
    };
    let n = u128::from(m) * u128::from(10u64.pow(ndigits)); // < 2^53 * 2^20 = 2^73
    let q = if e >= 0 {
        if e > 40 {
            return None;
        }
        n << e
    } else {
        let s = e.unsigned_abs();
        if s >= 127 {
            0
        } else {
            let q = n >> s;
            let rem = n - (q << s);
            let half = 1u128 << (s - 1);
            if rem > half || (rem == half && q & 1 == 1) {
                q + 1
            } else {
                q
            }
        }
    };
    u64::try_from(q).ok().filter(|&q| q < (1u64 << 53))
}

/// Writes `str(x)` for an `x` that is already `py_round(_, ndigits)`: the shortest decimal that
/// reads back as `x`, which for such a value is its `ndigits`-decimal form with trailing zeros
/// dropped, keeping at least one fractional digit ("0.0", "1.0", "0.508", "-0.0", "-0.4404").
/// Valid for `|x| < 1e16`, where Python prints no exponent (scores are within `[-1, 1]`; the
/// smallest non-zero one, 0.0001, is still printed positionally by Python).
pub(crate) fn write_py_str<W: io::Write + ?Sized>(
    out: &mut W,
    x: f64,
    ndigits: u32,
) -> io::Result<()> {
    let mut buf = [0u8; 48];
    let len = format_py_str(&mut buf, x, ndigits);
    out.write_all(&buf[..len])
}

/// [`write_py_str`] into a stack buffer; returns the length written.
pub(crate) fn format_py_str(buf: &mut [u8; 48], x: f64, ndigits: u32) -> usize {
    let ndigits = ndigits.min(6);
    let q = round_to_units(x.abs(), ndigits).unwrap_or(0);
    let scale = 10u64.pow(ndigits);
    let mut len = 0;
    let mut push = |b: u8, len: &mut usize| {
        buf[*len] = b;
        *len += 1;
    };
    if x.is_sign_negative() {
        push(b'-', &mut len);
    }
    // Integer part.
    let mut digits = [0u8; 20];
    let mut int = q / scale;
    let mut n = 0;
    loop {
        digits[n] = b'0' + digit(int);
        n += 1;
        int /= 10;
        if int == 0 {
            break;
        }
    }
    for &d in digits[..n].iter().rev() {
        push(d, &mut len);
    }
    push(b'.', &mut len);
    // Fractional part without trailing zeros, at least one digit.
    let mut frac = q % scale;
    let mut width = ndigits;
    while width > 1 && frac.is_multiple_of(10) {
        frac /= 10;
        width -= 1;
    }
    let start = len;
    for _ in 0..width.max(1) {
        push(b'0', &mut len);
    }
    let mut at = len;
    while frac > 0 && at > start {
        at -= 1;
        buf[at] = b'0' + digit(frac);
        frac /= 10;
    }
    len
}

/// The last decimal digit of `v`.
#[inline]
#[allow(clippy::cast_possible_truncation)] // v % 10 < 10
fn digit(v: u64) -> u8 {
    (v % 10) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: f64, n: u32) -> String {
        let mut buf = [0u8; 48];
        let len = format_py_str(&mut buf, x, n);
        String::from_utf8(buf[..len].to_vec()).unwrap()
    }

    #[test]
    fn rounds_like_cpython() {
        // Values checked against CPython 3.11: round(x, n).
        assert_eq!(py_round(0.0625, 3), 0.062); // exact tie, to even
        assert_eq!(py_round(0.1875, 3), 0.188); // exact tie, to even
        assert_eq!(py_round(2.675, 2), 2.67); // below the tie in binary
        assert_eq!(py_round(0.0005, 3), 0.001); // above the tie in binary
        assert_eq!(py_round(0.4404, 4), 0.4404);
        assert_eq!(py_round(-0.00004, 4).to_bits(), (-0.0f64).to_bits());
        assert_eq!(py_round(0.9999999, 3), 1.0);
        assert_eq!(py_round(1e-300, 3), 0.0);
        assert_eq!(py_round(5e-324, 3), 0.0);
    }

    #[test]
    fn fast_path_agrees_with_exact_rounding() {
        // Deterministic xorshift sweep over [-1, 1], plus values right at and next to ties.
        let exact = |x: f64, n: u32| {
            let q = round_to_units(x.abs(), n).unwrap();
            (q as f64 / 10u64.pow(n) as f64).copysign(x)
        };
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let x = (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
            for n in [3, 4] {
                assert_eq!(py_round(x, n).to_bits(), exact(x, n).to_bits(), "{x} {n}");
            }
        }
        for k in 0..20_000u32 {
            for n in [3, 4] {
                let tie = (f64::from(k) + 0.5) / 10u64.pow(n) as f64;
                for x in [
                    tie,
                    tie.next_up(),
                    tie.next_down(),
                    f64::from(k) / 16.0 / 1000.0,
                ] {
                    assert_eq!(py_round(x, n).to_bits(), exact(x, n).to_bits(), "{x} {n}");
                }
            }
        }
    }

    #[test]
    fn prints_like_str() {
        assert_eq!(s(0.0, 3), "0.0");
        assert_eq!(s(-0.0, 4), "-0.0");
        assert_eq!(s(1.0, 3), "1.0");
        assert_eq!(s(0.508, 3), "0.508");
        assert_eq!(s(0.5, 3), "0.5");
        assert_eq!(s(0.05, 3), "0.05");
        assert_eq!(s(0.001, 3), "0.001");
        assert_eq!(s(0.0001, 4), "0.0001");
        assert_eq!(s(-0.4404, 4), "-0.4404");
        assert_eq!(s(-1.0, 4), "-1.0");
        assert_eq!(s(0.1, 4), "0.1");
    }
}
