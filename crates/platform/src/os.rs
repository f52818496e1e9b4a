//! Memory mapping: the platform abstraction layer.

use core::ptr::NonNull;

/// The page size hakmem's layouts assume (x86_64 / aarch64 Linux with 4 KiB
/// pages). [`Linux::check_page_size`] verifies it once at start-up (the
/// allocator's set-up aborts with a one-line message otherwise).
pub const PAGE_SIZE: usize = 4096;

/// The superslab size and alignment: `ptr & !(CHUNK_SIZE - 1)` finds a
/// small block's superslab header. Large mappings are page-aligned (chunk
/// aligned from the huge-page threshold up) and registered by the 64 KiB
/// slot of their user pointer instead.
pub const CHUNK_SIZE: usize = 2 << 20;

/// The operating-system interface every box is written against.
///
/// Implementations must not allocate through the global allocator.
pub trait Pal {
    /// Maps `len` bytes of zeroed, read-write memory aligned to `align`.
    ///
    /// `len` must be a multiple of [`PAGE_SIZE`] and `align` a power of two;
    /// alignments below a page are rounded up. Returns `None` when the OS
    /// refuses (the caller reports `ENOMEM`).
    fn map(len: usize, align: usize) -> Option<NonNull<u8>>;

    /// Unmaps a region obtained from [`Pal::map`] (or a page-aligned part of one).
    ///
    /// # Safety
    /// `ptr..ptr+len` must be mapped, page aligned, and no longer referenced.
    unsafe fn unmap(ptr: NonNull<u8>, len: usize);

    /// Returns the physical pages behind a range to the OS while keeping the
    /// address range reserved; the next touch sees zeroed pages.
    ///
    /// # Safety
    /// `ptr..ptr+len` must be mapped, page aligned, and hold nothing live.
    unsafe fn purge(ptr: NonNull<u8>, len: usize);

    /// Resizes a mapping in place or by moving its pages (`mremap`); returns
    /// the new address, or `None` if the OS refused (the old mapping is
    /// untouched then).
    ///
    /// # Safety
    /// `ptr..ptr+old_len` must be a mapping obtained from this platform that
    /// the caller owns.
    unsafe fn remap(
        ptr: NonNull<u8>,
        old_len: usize,
        new_len: usize,
        may_move: bool,
    ) -> Option<NonNull<u8>>;

    /// Moves the pages of a mapping to `target` (replacing whatever was
    /// mapped there), resizing it to `new_len`: `mremap(MREMAP_FIXED)`.
    /// Returns false (nothing changed) if the OS refused.
    ///
    /// # Safety
    /// `ptr..ptr+old_len` must be a mapping the caller owns, and
    /// `target..target+new_len` a range the caller owns that does not
    /// overlap it.
    unsafe fn remap_to(
        ptr: NonNull<u8>,
        old_len: usize,
        new_len: usize,
        target: NonNull<u8>,
    ) -> bool;

    /// Asks for transparent huge pages on a range (`MADV_HUGEPAGE`); a no-op
    /// where the system has them turned off.
    ///
    /// # Safety
    /// The range must be a mapping the caller owns.
    unsafe fn advise_huge(ptr: NonNull<u8>, len: usize);

    /// A monotonic clock in milliseconds (coarse: a few ms of resolution).
    fn now_ms() -> u64;
}

/// The system's transparent-huge-page mode, read once from sysfs: `true`
/// unless it is `never` (or unreadable).
pub fn thp_available() -> bool {
    use core::sync::atomic::{AtomicU8, Ordering};
    static STATE: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 on, 2 off
    match STATE.load(Ordering::Relaxed) {
        1 => return true,
        2 => return false,
        _ => {}
    }
    let mut buf = [0u8; 128];
    let n = read_small(c"/sys/kernel/mm/transparent_hugepage/enabled", &mut buf);
    let on = n.is_some_and(|n| !contains(&buf[..n], b"[never]"));
    STATE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
    on
}

/// Reads up to `buf.len()` bytes of the file at `path` without
/// allocating; the number of bytes read, or `None` (unreadable or empty).
fn read_small(path: &core::ffi::CStr, buf: &mut [u8]) -> Option<usize> {
    let n = crate::file::Fd::open_read(path)?.read_all_into(buf);
    (n > 0).then_some(n)
}

/// The process's resident set in bytes (`/proc/self/statm`), read without
/// allocating; `None` if it cannot be read.
pub fn resident_bytes() -> Option<u64> {
    let mut buf = [0u8; 128];
    let n = read_small(c"/proc/self/statm", &mut buf)?;
    // the second field: resident pages
    let field = buf[..n].split(|&b| b == b' ').nth(1)?;
    let mut pages = 0u64;
    for &d in field {
        if !d.is_ascii_digit() {
            return None;
        }
        pages = pages.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(pages * PAGE_SIZE as u64)
}

/// The soft `RLIMIT_AS` in bytes (one `getrlimit` call, no allocation), or
/// `None` when there is none (`RLIM_INFINITY`) or it cannot be read.
pub fn address_space_limit() -> Option<usize> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into our own struct.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut rl) };
    if rc != 0 || rl.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(usize::try_from(rl.rlim_cur).unwrap_or(usize::MAX))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The Linux platform.
#[derive(Debug, Clone, Copy, Default)]
pub struct Linux;

impl Linux {
    /// Returns true when the running kernel's page size is the one hakmem's
    /// layouts were built for.
    pub fn check_page_size() -> bool {
        // SAFETY: sysconf has no preconditions.
        let ps = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        ps == PAGE_SIZE as libc::c_long
    }

    fn mmap_raw(len: usize) -> Option<NonNull<u8>> {
        // SAFETY: an anonymous private mapping with no address hint has no
        // preconditions; failure is reported as MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            None
        } else {
            NonNull::new(p.cast())
        }
    }
}

impl Pal for Linux {
    fn map(len: usize, align: usize) -> Option<NonNull<u8>> {
        debug_assert!(len.is_multiple_of(PAGE_SIZE) && len > 0);
        debug_assert!(align.is_power_of_two());
        if align <= PAGE_SIZE {
            return Self::mmap_raw(len);
        }
        // Over-map by the alignment and trim both ends. The kernel often
        // returns an aligned address for chunk-multiple sizes, in which case
        // only the tail is trimmed.
        let total = len.checked_add(align - PAGE_SIZE)?;
        let raw = Self::mmap_raw(total)?;
        let start = raw.as_ptr() as usize;
        let aligned = (start + align - 1) & !(align - 1);
        let head = aligned - start;
        let tail = total - head - len;
        // SAFETY: both trimmed pieces lie inside the mapping we just created
        // and are page aligned (start, aligned and len are page multiples).
        unsafe {
            if head != 0 {
                libc::munmap(raw.as_ptr().cast(), head);
            }
            if tail != 0 {
                libc::munmap((aligned + len) as *mut libc::c_void, tail);
            }
        }
        NonNull::new(aligned as *mut u8)
    }

    unsafe fn unmap(ptr: NonNull<u8>, len: usize) {
        // SAFETY: the caller guarantees the range is a mapping it owns.
        let rc = unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
        debug_assert_eq!(rc, 0, "munmap failed");
    }

    unsafe fn purge(ptr: NonNull<u8>, len: usize) {
        // SAFETY: the caller guarantees the range is mapped and unused;
        // MADV_DONTNEED on private anonymous memory drops the pages and makes
        // the next access read zeroes.
        unsafe {
            libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_DONTNEED);
        }
    }

    unsafe fn remap(
        ptr: NonNull<u8>,
        old_len: usize,
        new_len: usize,
        may_move: bool,
    ) -> Option<NonNull<u8>> {
        let flags = if may_move { libc::MREMAP_MAYMOVE } else { 0 };
        // SAFETY: the caller owns the mapping; mremap either resizes it or
        // fails leaving it untouched.
        let p = unsafe { libc::mremap(ptr.as_ptr().cast(), old_len, new_len, flags) };
        if p == libc::MAP_FAILED {
            None
        } else {
            NonNull::new(p.cast())
        }
    }

    unsafe fn remap_to(
        ptr: NonNull<u8>,
        old_len: usize,
        new_len: usize,
        target: NonNull<u8>,
    ) -> bool {
        // SAFETY: the caller owns both ranges; MREMAP_FIXED replaces the
        // target mapping or fails leaving everything as it was.
        let p = unsafe {
            libc::mremap(
                ptr.as_ptr().cast(),
                old_len,
                new_len,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                target.as_ptr().cast::<libc::c_void>(),
            )
        };
        p != libc::MAP_FAILED
    }

    unsafe fn advise_huge(ptr: NonNull<u8>, len: usize) {
        if thp_available() {
            // SAFETY: the caller owns the range; the advice is a hint.
            unsafe { libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_HUGEPAGE) };
        }
    }

    fn now_ms() -> u64 {
        crate::clock::coarse_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_bytes_follow_touched_memory() {
        let before = resident_bytes().expect("statm readable");
        assert!(before > 0 && before.is_multiple_of(PAGE_SIZE as u64));
        let len = 32 << 20;
        let p = Linux::map(len, PAGE_SIZE).unwrap();
        // SAFETY: our fresh mapping.
        unsafe { core::ptr::write_bytes(p.as_ptr(), 1, len) };
        let after = resident_bytes().unwrap();
        // SAFETY: our mapping, unused afterwards.
        unsafe { Linux::unmap(p, len) };
        assert!(
            after >= before + (len as u64) * 3 / 4,
            "{before} -> {after}"
        );
    }

    #[test]
    fn remap_to_moves_pages_to_an_aligned_target() {
        let p = Linux::map(2 * PAGE_SIZE, PAGE_SIZE).unwrap();
        // SAFETY: two pages mapped above.
        unsafe { p.as_ptr().add(PAGE_SIZE).write(7) };
        let target = Linux::map(8 * PAGE_SIZE, CHUNK_SIZE).unwrap();
        // SAFETY: both ranges are ours and disjoint.
        assert!(unsafe { Linux::remap_to(p, 2 * PAGE_SIZE, 8 * PAGE_SIZE, target) });
        // SAFETY: the target now holds the moved pages.
        unsafe {
            assert_eq!(target.as_ptr().add(PAGE_SIZE).read(), 7);
            assert_eq!(target.as_ptr().add(7 * PAGE_SIZE).read(), 0);
            Linux::unmap(target, 8 * PAGE_SIZE);
        }
    }

    #[test]
    fn clock_moves_forward() {
        let a = Linux::now_ms();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let b = Linux::now_ms();
        assert!(b >= a + 20, "{a} -> {b}");
    }

    #[test]
    fn thp_mode_is_read() {
        let s = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default();
        assert_eq!(thp_available(), !s.is_empty() && !s.contains("[never]"));
        // advising is harmless either way
        let p = Linux::map(CHUNK_SIZE, CHUNK_SIZE).unwrap();
        // SAFETY: ours.
        unsafe {
            Linux::advise_huge(p, CHUNK_SIZE);
            Linux::unmap(p, CHUNK_SIZE);
        }
    }

    #[test]
    fn address_space_limit_is_the_soft_rlimit() {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: writing into our own struct.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut rl) }, 0);
        let want = (rl.rlim_cur != libc::RLIM_INFINITY).then_some(rl.rlim_cur as usize);
        assert_eq!(address_space_limit(), want);
    }

    #[test]
    fn page_size_matches() {
        assert!(Linux::check_page_size());
    }

    #[test]
    fn aligned_maps_are_aligned_zeroed_and_writable() {
        for &align in &[PAGE_SIZE, 1 << 16, CHUNK_SIZE, 8 << 20] {
            let len = 3 * PAGE_SIZE;
            let p = Linux::map(len, align).expect("map");
            assert_eq!(p.as_ptr() as usize % align, 0);
            // SAFETY: the mapping is len bytes long and ours.
            let s = unsafe { core::slice::from_raw_parts_mut(p.as_ptr(), len) };
            assert!(s.iter().all(|&b| b == 0));
            s.fill(0xAB);
            // SAFETY: mapped above, fully ours.
            unsafe { Linux::purge(p, len) };
            assert!(s.iter().all(|&b| b == 0), "purged pages read back as zero");
            // SAFETY: the mapping is ours and no longer referenced.
            unsafe { Linux::unmap(p, len) };
        }
    }

    #[test]
    fn remap_grows_and_keeps_contents() {
        let p = Linux::map(PAGE_SIZE, PAGE_SIZE).unwrap();
        // SAFETY: one page mapped above.
        unsafe { p.as_ptr().write(42) };
        // SAFETY: p is our mapping of one page.
        let q = unsafe { Linux::remap(p, PAGE_SIZE, 64 * PAGE_SIZE, true) }.unwrap();
        // SAFETY: q now maps 64 pages starting with the old contents.
        unsafe {
            assert_eq!(q.as_ptr().read(), 42);
            Linux::unmap(q, 64 * PAGE_SIZE);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any page-multiple length and power-of-two alignment maps aligned,
        /// zeroed, writable memory, and unmaps cleanly.
        #[test]
        fn map_honours_length_and_alignment(pages in 1usize..64, align_log in 12u32..24) {
            let len = pages * PAGE_SIZE;
            let align = 1usize << align_log;
            let p = Linux::map(len, align).expect("map");
            proptest::prop_assert_eq!(p.as_ptr() as usize % align, 0);
            // SAFETY: the mapping is len bytes long and ours.
            let s = unsafe { core::slice::from_raw_parts_mut(p.as_ptr(), len) };
            proptest::prop_assert!(s[0] == 0 && s[len - 1] == 0);
            s[0] = 1;
            s[len - 1] = 1;
            // SAFETY: ours, unreferenced after this.
            unsafe { Linux::unmap(p, len) };
        }
    }

    #[test]
    fn absurd_sizes_fail_cleanly() {
        assert!(Linux::map(1 << 62, PAGE_SIZE).is_none());
        assert!(Linux::map(1 << 62, CHUNK_SIZE).is_none());
    }
}
