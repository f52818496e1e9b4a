//! The cache's validators: [`BigCache::check`] (the bookkeeping, checked
//! without allocating) and [`BigCache::check_limits`] (the cache against
//! the policy's limits), with their tests.

use super::{class_of, BigCache, CacheLimits, EMPTY, NO_RESERVATION, PAGE, WAYS};

impl BigCache {
    /// Checks the bookkeeping, allocating nothing (so release builds can
    /// run it too):
    ///
    /// * each class's list is well formed: at most [`WAYS`] entries, each
    ///   with a non-null page-aligned base, a length of at least a page in
    ///   that class, and only empty slots past the count;
    /// * no mapping is listed twice and no two listed mappings overlap (the
    ///   lists hold no cycle or alias: every mapping has one owner);
    /// * the dirty and clean totals (entries and bytes) are the sums of the
    ///   listed entries;
    /// * reservations: a free slot is all zero, a held one keeps 1 to
    ///   [`WAYS`] entries, and no length is reserved twice.
    ///
    /// Limits are checked separately ([`BigCache::check_limits`]): they
    /// hold only once the work the cache hands out is done.
    pub fn check(&self) -> Result<(), &'static str> {
        let (mut dirty, mut clean) = ((0usize, 0usize), (0usize, 0usize));
        for (c, (class, &n)) in self.slots.iter().zip(&self.counts).enumerate() {
            let n = n as usize;
            if n > WAYS {
                return Err("a size class holds more entries than it has ways");
            }
            if class[n..].iter().any(|e| *e != EMPTY) {
                return Err("a slot past a size class's count is not empty");
            }
            for e in &class[..n] {
                if e.base == 0 || e.base % PAGE != 0 {
                    return Err("a cached mapping's base is null or not page aligned");
                }
                if e.len < PAGE || e.len % PAGE != 0 {
                    return Err("a cached mapping's length is not a whole number of pages");
                }
                if class_of(e.len) != c {
                    return Err("a cached mapping is listed in another size class");
                }
                if e.dirty && e.full < e.len {
                    return Err("a dirty entry is longer than when it was freed");
                }
                let t = if e.dirty { &mut dirty } else { &mut clean };
                t.0 += 1;
                t.1 = t.1.checked_add(e.len).ok_or("cached bytes overflow")?;
            }
        }
        for (i, a) in self.entries().enumerate() {
            for b in self.entries().skip(i + 1) {
                if a.base == b.base {
                    return Err("a mapping is listed twice");
                }
                if a.base < b.base.saturating_add(b.len) && b.base < a.base.saturating_add(a.len) {
                    return Err("two cached mappings overlap");
                }
                if a.dirty
                    && b.dirty
                    && a.family != 0
                    && a.family == b.family
                    && (a.base + a.len == b.base || b.base + b.len == a.base)
                {
                    return Err("two adjacent dirty pieces of one mapping were not merged");
                }
            }
        }
        if dirty != (self.dirty_n, self.dirty_bytes) {
            return Err("the dirty totals differ from the sum of the dirty entries");
        }
        if clean != (self.clean_n, self.clean_bytes) {
            return Err("the clean totals differ from the sum of the clean entries");
        }
        for (i, r) in self.reservations.iter().enumerate() {
            if r.len == 0 {
                if *r != NO_RESERVATION {
                    return Err("a free reservation slot is not cleared");
                }
                continue;
            }
            if r.keep == 0 || r.keep > WAYS {
                return Err("a reservation keeps no entries or more than a class holds");
            }
            if self.reservations[i + 1..].iter().any(|o| o.len == r.len) {
                return Err("a mapping length is reserved twice");
            }
        }
        Ok(())
    }

    /// Checks the cache against `limits`: dirty bytes within the budget,
    /// clean bytes within the clean budget, and no cached mapping longer
    /// than the largest block. These hold once the work from the last
    /// call has been carried out (the large tier does so before it
    /// returns), for the limits the cache was run with.
    pub fn check_limits(&self, limits: &CacheLimits) -> Result<(), &'static str> {
        if self.dirty_bytes > limits.budget {
            return Err("dirty bytes exceed the budget");
        }
        if self.clean_bytes > limits.clean_budget {
            return Err("clean bytes exceed the clean budget");
        }
        if self.entries().any(|e| e.len > limits.max_block) {
            return Err("a cached mapping is longer than the largest block kept");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::L;
    use super::super::*;

    /// A cache with dirty and clean entries in a few classes and a
    /// reservation, and the limits it was run with.
    fn sample() -> BigCache {
        let mut bc = BigCache::new();
        let mut w = Work::NONE;
        bc.reserve(2 << 20, 2);
        for (k, mib) in [2usize, 2, 3, 5, 8].into_iter().enumerate() {
            bc.put(0x1000_0000 * (k + 1), mib << 20, k as u64, &L, &mut w);
        }
        let mut w2 = Work::NONE;
        for &e in &w.purge[..w.n_purge] {
            bc.put_clean(e, &L, &mut w2);
        }
        assert!(bc.stats().dirty.0 > 0 && bc.stats().clean.0 > 0);
        bc
    }

    #[test]
    fn check_accepts_a_consistent_cache() {
        let bc = sample();
        assert_eq!(bc.check(), Ok(()));
        assert_eq!(bc.check_limits(&L), Ok(()));
        assert_eq!(BigCache::new().check(), Ok(()));
    }

    #[test]
    fn check_reports_corrupted_bookkeeping() {
        let c2 = class_of(2 << 20);
        type Corruption = (&'static str, fn(&mut BigCache));
        let corruptions: &[Corruption] = &[
            ("dirty bytes off by one", |bc| bc.dirty_bytes += 1),
            ("clean count off by one", |bc| bc.clean_n += 1),
            ("count past the entries", |bc| {
                bc.counts[class_of(2 << 20)] += 1
            }),
            ("count past the ways", |bc| {
                bc.counts[class_of(2 << 20)] = WAYS as u8 + 1
            }),
            ("entry left past the count", |bc| {
                let c = class_of(2 << 20);
                bc.counts[c] -= 1;
                let e = bc.slots[c][bc.counts[c] as usize];
                bc.account(&e, false);
            }),
            ("entry in the wrong class", |bc| {
                bc.slots[class_of(2 << 20)][0].len = 3 << 20;
                bc.dirty_bytes += 1 << 20;
            }),
            ("entry listed twice", |bc| {
                let c = class_of(2 << 20);
                let e = bc.slots[c][0];
                bc.slots[c][bc.counts[c] as usize] = e;
                bc.counts[c] += 1;
                bc.account(&e, true);
            }),
            ("overlapping entries", |bc| {
                let c = class_of(2 << 20);
                bc.slots[c][1].base = bc.slots[c][0].base + (1 << 20);
            }),
            ("unaligned base", |bc| {
                bc.slots[class_of(2 << 20)][0].base += 8
            }),
            ("reserved twice", |bc| {
                bc.reservations[1] = bc.reservations[0]
            }),
            ("stale free reservation", |bc| {
                bc.reservations[0].len = 0;
            }),
        ];
        for (what, corrupt) in corruptions {
            let mut bc = sample();
            assert_eq!(bc.counts[c2], 2, "the sample has two 2 MiB entries");
            corrupt(&mut bc);
            assert!(bc.check().is_err(), "not detected: {what}");
        }
        // limits
        let bc = sample();
        let st = bc.stats();
        for (what, limits) in [
            (
                "budget",
                CacheLimits {
                    budget: st.dirty.1 - 1,
                    ..L
                },
            ),
            (
                "clean budget",
                CacheLimits {
                    clean_budget: st.clean.1 - 1,
                    ..L
                },
            ),
            (
                "max block",
                CacheLimits {
                    max_block: 4 << 20,
                    ..L
                },
            ),
        ] {
            assert!(bc.check_limits(&limits).is_err(), "not detected: {what}");
        }
    }
}
