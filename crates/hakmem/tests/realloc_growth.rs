//! `realloc` growth into and within the large tier, alone in its process
//! (the large cache is shared by every test of a binary: another test's
//! cached mappings would be carved here, with their own alignment).

/// A block grown by `realloc` from the mid tier into the large one, and on
/// up, keeps its contents, and its mapping ends on a huge-page boundary (so
/// the next growths stay in place and fault whole huge pages); a second
/// chain reuses the first one's memory. (The default THP threshold, 2 MiB,
/// applies: no option is set in this binary.) The second chain is served
/// from the first one's cached mapping: its first large block is carved
/// from it (one cache hit) and every later step grows in place over the
/// rest of it. (Only within the decay time, 1 s by default, after the
/// first chain's free: a slower run may find the cached mapping purged.)
#[test]
fn realloc_growth_into_the_large_tier_ends_on_huge_page_boundaries() {
    const HUGE_PAGE: usize = 2 << 20;
    let mut freed = std::time::Instant::now();
    for round in 0..2u8 {
        let mut size = 600 << 10;
        let hits = hakmem::stats().large_cache.hits;
        let mut first_large: Option<*mut u8> = None;
        let mut p = hakmem::malloc(size);
        assert!(!p.is_null());
        // SAFETY: `size` bytes are ours.
        unsafe { std::ptr::write_bytes(p, round, size) };
        while size < 40 << 20 {
            let next = size * 3 / 2;
            // SAFETY: `p` is live; on success it is replaced.
            let q = unsafe { hakmem::realloc(p, next) };
            assert!(!q.is_null());
            // SAFETY: the first `size` bytes were kept.
            let kept = unsafe { std::slice::from_raw_parts(q, size) };
            assert!(
                kept.iter().step_by(4093).all(|&x| x == round),
                "contents kept"
            );
            // SAFETY: `q` is live.
            let us = unsafe { hakmem::usable_size(q) };
            assert!(us >= next);
            if next > 1 << 20 {
                assert_eq!(
                    (q as usize + us) % HUGE_PAGE,
                    0,
                    "{next} B ends off a huge page"
                );
                let first = *first_large.get_or_insert(q);
                if round == 1 && freed.elapsed().as_millis() < 500 {
                    assert_eq!(q, first, "{next} B: grown in place over cached memory");
                }
            }
            // SAFETY: `next` bytes are ours.
            unsafe { std::ptr::write_bytes(q.add(size), round, next - size) };
            (p, size) = (q, next);
        }
        if round == 1 && freed.elapsed().as_millis() < 500 {
            assert_eq!(hakmem::stats().large_cache.hits, hits + 1, "one carve");
        }
        // SAFETY: live, freed once.
        unsafe { hakmem::free(p) };
        freed = std::time::Instant::now();
    }
}
