//! A tiny deterministic RNG (xorshift64*): the learner's only source of
//! randomness, so a seed reproduces a run.

/// xorshift64* (Vigna 2016): 64-bit state, passes BigCrush's relevant tests,
/// more than enough for exploration decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator seeded with `seed` (any value; 0 is remapped).
    pub const fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so nearby seeds diverge at once
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Rng {
            state: if z == 0 { 0x2545_f491_4f6c_dd1d } else { z },
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` (`n > 0`; 0 when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Lemire's multiply-shift; the bias is below 2^-64 * n, irrelevant here.
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// True with probability `permille / 1000`.
    pub fn chance_permille(&mut self, permille: u32) -> bool {
        self.below(1000) < permille as u64
    }

    /// A standard normal sample (Box–Muller), for tests and simulations.
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        crate::math::sqrt(-2.0 * crate::math::ln(u1)) * cos(core::f64::consts::TAU * u2)
    }
}

/// Cosine by its Taylor series after reduction to `[-π, π]` (only
/// `normal` needs it).
fn cos(x: f64) -> f64 {
    use core::f64::consts::{PI, TAU};
    let mut x = x - TAU * ((x / TAU) as i64 as f64);
    if x > PI {
        x -= TAU;
    } else if x < -PI {
        x += TAU;
    }
    let x2 = x * x;
    let mut term = 1.0;
    let mut sum = 1.0;
    let mut n = 0.0;
    while n < 40.0 {
        term *= -x2 / ((n + 1.0) * (n + 2.0));
        sum += term;
        n += 2.0;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_seed_sensitive() {
        let a: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = Rng::new(8);
            (0..8).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut z = Rng::new(0);
        assert_ne!(z.next_u64(), 0);
    }

    #[test]
    fn uniform_enough() {
        let mut r = Rng::new(1);
        let mut buckets = [0u32; 10];
        let n = 100_000;
        let mut sum = 0.0;
        for _ in 0..n {
            let f = r.next_f64();
            assert!((0.0..1.0).contains(&f));
            sum += f;
            buckets[r.below(10) as usize] += 1;
        }
        assert!((sum / n as f64 - 0.5).abs() < 0.01);
        for b in buckets {
            assert!((b as i64 - 10_000).abs() < 500, "{buckets:?}");
        }
        assert_eq!(r.below(0), 0);
        let hits = (0..100_000).filter(|_| r.chance_permille(50)).count();
        assert!((hits as i64 - 5000).abs() < 400, "{hits}");
    }

    #[test]
    fn normal_has_unit_variance() {
        let mut r = Rng::new(3);
        let n = 100_000;
        let xs: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.02, "{mean}");
        assert!((var - 1.0).abs() < 0.03, "{var}");
        for x in [0.0, 1.0, 3.0, -2.5, 6.2, 100.0] {
            assert!((cos(x) - x.cos()).abs() < 1e-12, "cos({x})");
        }
    }
}
