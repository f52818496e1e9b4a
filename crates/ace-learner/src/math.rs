//! `sqrt`, `ln` and `exp` for `no_std` (core has no float functions): the
//! bandits need them. Accurate to a few ulps over the ranges the learner
//! uses (checked against std in the tests).

// ln 2 split as in fdlibm: a high part with trailing zero bits (so that
// `k * LN2_HI` is exact) and the rest.
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
const LN2: f64 = core::f64::consts::LN_2;
const SQRT2: f64 = core::f64::consts::SQRT_2;

/// `2^k` for `-1022 ≤ k ≤ 1023`.
fn pow2(k: i64) -> f64 {
    f64::from_bits(((k + 1023) as u64) << 52)
}

/// The square root; NaN for negative inputs.
pub fn sqrt(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 || x == f64::INFINITY {
        return x;
    }
    // Scale into the normal range, halve the exponent for a first guess,
    // then Newton's iteration (quadratic: a handful of steps).
    let (x, scale) = if x < 1e-300 {
        (x * 1e300 * 1e300, 1e-300)
    } else {
        (x, 1.0)
    };
    let mut y = f64::from_bits((x.to_bits() >> 1) + (0x3ff0_0000_0000_0000 >> 1));
    for _ in 0..64 {
        let next = 0.5 * (y + x / y);
        if next == y {
            break;
        }
        // Newton from above oscillates by one ulp at the end: stop there.
        if (next - y).abs() <= f64::EPSILON * y {
            y = next;
            break;
        }
        y = next;
    }
    y * scale
}

/// The natural logarithm; -inf at 0, NaN for negative inputs.
pub fn ln(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x == f64::INFINITY {
        return x;
    }
    let (x, extra) = if x < f64::MIN_POSITIVE {
        (x * pow2(54), -54i64)
    } else {
        (x, 0)
    };
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023 + extra;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > SQRT2 {
        m *= 0.5;
        e += 1;
    }
    // ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| ≤ 0.172
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    let mut k = 1.0;
    while k < 40.0 {
        sum += term / k;
        term *= s2;
        k += 2.0;
    }
    e as f64 * LN2_HI + (2.0 * sum + e as f64 * LN2_LO)
}

/// `e^x`; 0 below -745, +inf above 709.78.
pub fn exp(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x > 709.782_712_893_384 {
        return f64::INFINITY;
    }
    if x < -745.2 {
        return 0.0;
    }
    // x = k ln2 + r, |r| ≤ ln2 / 2
    let kf = x / LN2 + if x < 0.0 { -0.5 } else { 0.5 };
    let k = kf as i64;
    let r = (x - k as f64 * LN2_HI) - k as f64 * LN2_LO;
    let mut term = 1.0;
    let mut sum = 1.0;
    let mut n = 1.0;
    while n < 20.0 {
        term *= r / n;
        sum += term;
        n += 1.0;
    }
    if k > 1023 {
        sum * pow2(1023) * pow2(k - 1023)
    } else if k < -1022 {
        sum * pow2(-1022) * pow2(k + 1022)
    } else {
        sum * pow2(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        a == b || (a - b).abs() <= rel * b.abs().max(f64::MIN_POSITIVE)
    }

    fn samples() -> impl Iterator<Item = f64> {
        let mut v = vec![
            1e-310,
            1e-300,
            1e-20,
            1e-5,
            0.1,
            0.5,
            0.999,
            1.0,
            1.0001,
            SQRT2,
            2.0,
            3.0,
            10.0,
            1234.5,
            1e10,
            1e300,
            f64::MAX,
        ];
        let mut x = 1e-12;
        while x < 1e12 {
            v.push(x);
            x *= 1.37;
        }
        v.into_iter()
    }

    #[test]
    fn sqrt_matches_std() {
        for x in samples() {
            assert!(close(sqrt(x), x.sqrt(), 4e-16), "sqrt({x}) = {}", sqrt(x));
        }
        assert_eq!(sqrt(0.0), 0.0);
        assert_eq!(sqrt(4.0), 2.0);
        assert!(sqrt(-1.0).is_nan());
        assert_eq!(sqrt(f64::INFINITY), f64::INFINITY);
    }

    #[test]
    fn ln_matches_std() {
        for x in samples() {
            let want = x.ln();
            assert!(
                close(ln(x), want, 4e-16) || (ln(x) - want).abs() < 1e-16,
                "ln({x}) = {} want {want}",
                ln(x)
            );
        }
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln(0.0), f64::NEG_INFINITY);
        assert!(ln(-1.0).is_nan());
    }

    #[test]
    fn exp_matches_std() {
        let mut x = -744.0;
        while x < 709.0 {
            assert!(close(exp(x), x.exp(), 1e-15), "exp({x})");
            x += 0.731;
        }
        for x in [-1e-9, 0.0, 1e-9, 0.5, -0.5, 1.0, 700.0, -700.0, 709.7] {
            assert!(close(exp(x), x.exp(), 1e-15), "exp({x})");
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(1000.0), f64::INFINITY);
        assert_eq!(exp(-1000.0), 0.0);
    }
}
