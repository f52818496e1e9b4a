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

    /// Takes a range out of transparent huge pages (`MADV_NOHUGEPAGE`):
    /// `khugepaged` no longer collapses it, so pages purged in it stay
    /// returned even where a few of its pages stay resident. A no-op where
    /// the system has them turned off.
    ///
    /// # Safety
    /// The range must be a mapping the caller owns.
    unsafe fn advise_small(ptr: NonNull<u8>, len: usize);

    /// Faults a whole range in for writing (`MADV_POPULATE_WRITE`, Linux
    /// 5.14+): in a range advised huge, the calling thread takes the huge
    /// page fault (and any compaction it needs). False when the kernel
    /// refused (too old, or out of memory); the range is unchanged then,
    /// apart from pages already faulted in.
    ///
    /// # Safety
    /// The range must be a mapping the caller owns.
    unsafe fn populate(ptr: NonNull<u8>, len: usize) -> bool;

    /// Collapses a range into transparent huge pages now (`MADV_COLLAPSE`,
    /// Linux 6.1+), on the calling thread, whatever the sysfs THP settings
    /// say; contents are kept. False when the kernel refused (too old, no
    /// huge page to be had).
    ///
    /// # Safety
    /// The range must be a mapping the caller owns.
    unsafe fn collapse(ptr: NonNull<u8>, len: usize) -> bool;

    /// How many bytes of a range are resident now (`mincore`), in whole
    /// pages; `None` where the platform cannot tell (the default).
    ///
    /// # Safety
    /// The range must be a page-aligned mapping the caller owns.
    unsafe fn resident(ptr: NonNull<u8>, len: usize) -> Option<usize> {
        let _ = (ptr, len);
        None
    }

    /// A monotonic clock in milliseconds (coarse: a few ms of resolution).
    fn now_ms() -> u64;
}

/// The system's transparent-huge-page mode, read once from sysfs: `true`
/// unless it is `never` (or unreadable).
pub fn thp_available() -> bool {
    thp_mode().enabled != ThpEnabled::Never
}

/// `/sys/kernel/mm/transparent_hugepage/enabled`: which ranges get huge
/// pages on a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThpEnabled {
    /// Every anonymous range (unless advised `MADV_NOHUGEPAGE`).
    Always,
    /// Only ranges advised `MADV_HUGEPAGE`.
    Madvise,
    /// None (also: the file is missing or unreadable).
    Never,
}

/// `/sys/kernel/mm/transparent_hugepage/defrag`: what a huge-page fault
/// does when no free huge page is at hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThpDefrag {
    /// Direct reclaim and compaction on the faulting thread, every range.
    Always,
    /// Wake kswapd/kcompactd and fall back to small pages (no stall).
    Defer,
    /// Direct for ranges advised `MADV_HUGEPAGE`, `Defer` for the others.
    DeferMadvise,
    /// Direct for ranges advised `MADV_HUGEPAGE`; the others fall back.
    Madvise,
    /// Never reclaim or compact: a huge page only if one is free.
    Never,
}

/// The two THP settings hakmem chooses by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThpMode {
    /// The `enabled` setting.
    pub enabled: ThpEnabled,
    /// The `defrag` setting.
    pub defrag: ThpDefrag,
}

impl ThpMode {
    /// Parses the two sysfs files' contents (the bracketed word is the
    /// setting); anything unrecognised reads as `Never` for `enabled` and
    /// `Madvise` (the kernel's default) for `defrag`.
    pub fn parse(enabled: &[u8], defrag: &[u8]) -> ThpMode {
        let enabled = if contains(enabled, b"[always]") {
            ThpEnabled::Always
        } else if contains(enabled, b"[madvise]") {
            ThpEnabled::Madvise
        } else {
            ThpEnabled::Never
        };
        let defrag = if contains(defrag, b"[always]") {
            ThpDefrag::Always
        } else if contains(defrag, b"[defer+madvise]") {
            ThpDefrag::DeferMadvise
        } else if contains(defrag, b"[defer]") {
            ThpDefrag::Defer
        } else if contains(defrag, b"[never]") {
            ThpDefrag::Never
        } else {
            ThpDefrag::Madvise
        };
        ThpMode { enabled, defrag }
    }

    /// Whether a fault in a range advised `MADV_HUGEPAGE` can stall the
    /// faulting thread in direct reclaim or compaction.
    pub fn advised_fault_may_stall(self) -> bool {
        self.enabled != ThpEnabled::Never
            && matches!(
                self.defrag,
                ThpDefrag::Always | ThpDefrag::Madvise | ThpDefrag::DeferMadvise
            )
    }

    /// Whether a fault in a range not advised can get a huge page, and
    /// whether it can stall getting it: `(gets, may_stall)`.
    pub fn plain_fault(self) -> (bool, bool) {
        let gets = self.enabled == ThpEnabled::Always;
        (gets, gets && self.defrag == ThpDefrag::Always)
    }
}

/// The system's THP settings, read once from sysfs (later calls return
/// the first reading).
pub fn thp_mode() -> ThpMode {
    use core::sync::atomic::{AtomicU8, Ordering};
    // 0: unknown; else 1 + enabled * 8 + defrag
    static STATE: AtomicU8 = AtomicU8::new(0);
    const E: [ThpEnabled; 3] = [ThpEnabled::Always, ThpEnabled::Madvise, ThpEnabled::Never];
    const D: [ThpDefrag; 5] = [
        ThpDefrag::Always,
        ThpDefrag::Defer,
        ThpDefrag::DeferMadvise,
        ThpDefrag::Madvise,
        ThpDefrag::Never,
    ];
    let s = STATE.load(Ordering::Relaxed);
    if s != 0 {
        let v = s - 1;
        return ThpMode {
            enabled: E[usize::from(v / 8)],
            defrag: D[usize::from(v % 8)],
        };
    }
    let mut e = [0u8; 128];
    let mut d = [0u8; 128];
    let ne = read_small(c"/sys/kernel/mm/transparent_hugepage/enabled", &mut e).unwrap_or(0);
    let nd = read_small(c"/sys/kernel/mm/transparent_hugepage/defrag", &mut d).unwrap_or(0);
    let m = ThpMode::parse(&e[..ne], &d[..nd]);
    let ei = E.iter().position(|&x| x == m.enabled).unwrap_or(2) as u8;
    let di = D.iter().position(|&x| x == m.defrag).unwrap_or(3) as u8;
    STATE.store(1 + ei * 8 + di, Ordering::Relaxed);
    m
}

/// Free 2 MiB blocks the kernel's page allocator holds now (every zone,
/// every order from 9 up, counted in 2 MiB units), from `/proc/buddyinfo`,
/// read without allocating; `None` if it cannot be read. A huge-page fault
/// served from these needs no compaction.
pub fn free_huge_blocks() -> Option<u64> {
    let mut buf = [0u8; 4096];
    let n = read_small(c"/proc/buddyinfo", &mut buf)?;
    parse_buddyinfo(&buf[..n])
}

/// The sum over `/proc/buddyinfo` lines of `count[order] << (order - 9)`
/// for orders ≥ 9 (2 MiB with 4 KiB pages); `None` if no line parses.
pub fn parse_buddyinfo(text: &[u8]) -> Option<u64> {
    const ORDER: usize = 9; // 2 MiB / 4 KiB = 2^9
    let mut total = 0u64;
    let mut any = false;
    for line in text.split(|&b| b == b'\n') {
        // "Node 0, zone   Normal   c0 c1 ... c10": counts after the zone name
        let Some(z) = line.windows(5).position(|w| w == b"zone ") else {
            continue;
        };
        let mut words = line[z + 5..]
            .split(|&b| b == b' ' || b == b'\t')
            .filter(|w| !w.is_empty());
        if words.next().is_none() {
            continue; // no zone name
        }
        let mut ok = true;
        for (order, w) in words.enumerate() {
            let mut v = 0u64;
            for &d in w {
                if !d.is_ascii_digit() {
                    ok = false;
                    break;
                }
                v = v.saturating_mul(10).saturating_add(u64::from(d - b'0'));
            }
            if !ok {
                break;
            }
            if order >= ORDER {
                let shift = (order - ORDER).min(40) as u32;
                total = total.saturating_add(v.saturating_mul(1u64 << shift));
            }
        }
        any |= ok;
    }
    any.then_some(total)
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

    unsafe fn advise_small(ptr: NonNull<u8>, len: usize) {
        if thp_available() {
            // SAFETY: the caller owns the range; the advice is a hint.
            unsafe { libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_NOHUGEPAGE) };
        }
    }

    unsafe fn populate(ptr: NonNull<u8>, len: usize) -> bool {
        const MADV_POPULATE_WRITE: libc::c_int = 23;
        // SAFETY: the caller owns the range; populating writes nothing the
        // program can see (anonymous pages read as zero either way).
        unsafe { libc::madvise(ptr.as_ptr().cast(), len, MADV_POPULATE_WRITE) == 0 }
    }

    unsafe fn collapse(ptr: NonNull<u8>, len: usize) -> bool {
        const MADV_COLLAPSE: libc::c_int = 25;
        // SAFETY: the caller owns the range; a collapse keeps its contents.
        unsafe { libc::madvise(ptr.as_ptr().cast(), len, MADV_COLLAPSE) == 0 }
    }

    unsafe fn resident(ptr: NonNull<u8>, len: usize) -> Option<usize> {
        // one byte per page, a chunk's worth at a time (on the stack)
        const PAGES: usize = CHUNK_SIZE / PAGE_SIZE;
        let mut vec = [0u8; PAGES];
        let mut pages = 0;
        let mut at = 0;
        while at < len {
            let n = (len - at).min(CHUNK_SIZE);
            // SAFETY: the caller owns the page-aligned range; `vec` holds a
            // byte for each of the (at most PAGES) pages asked about.
            let r =
                unsafe { libc::mincore(ptr.as_ptr().add(at).cast(), n, vec.as_mut_ptr().cast()) };
            if r != 0 {
                return None;
            }
            let k = n.div_ceil(PAGE_SIZE);
            pages += vec[..k].iter().filter(|&&v| v & 1 != 0).count();
            at += n;
        }
        Some(pages * PAGE_SIZE)
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
    fn thp_settings_parse() {
        let m = ThpMode::parse(
            b"always [madvise] never\n",
            b"always defer defer+madvise [madvise] never\n",
        );
        assert_eq!(m.enabled, ThpEnabled::Madvise);
        assert_eq!(m.defrag, ThpDefrag::Madvise);
        assert!(m.advised_fault_may_stall());
        assert_eq!(m.plain_fault(), (false, false));
        let m = ThpMode::parse(
            b"[always] madvise never",
            b"always defer [defer+madvise] madvise never",
        );
        assert_eq!(
            (m.enabled, m.defrag),
            (ThpEnabled::Always, ThpDefrag::DeferMadvise)
        );
        assert!(m.advised_fault_may_stall());
        assert_eq!(m.plain_fault(), (true, false));
        let m = ThpMode::parse(
            b"always madvise [never]",
            b"always [defer] defer+madvise madvise never",
        );
        assert_eq!((m.enabled, m.defrag), (ThpEnabled::Never, ThpDefrag::Defer));
        assert!(!m.advised_fault_may_stall());
        let m = ThpMode::parse(
            b"[always] madvise never",
            b"[always] defer defer+madvise madvise never",
        );
        assert_eq!(m.plain_fault(), (true, true));
        let m = ThpMode::parse(
            b"always [madvise] never",
            b"always defer defer+madvise madvise [never]",
        );
        assert!(!m.advised_fault_may_stall());
        let m = ThpMode::parse(b"", b"");
        assert_eq!(
            (m.enabled, m.defrag),
            (ThpEnabled::Never, ThpDefrag::Madvise)
        );
        // the reading is cached and agrees with thp_available
        assert_eq!(thp_mode(), thp_mode());
        assert_eq!(thp_available(), thp_mode().enabled != ThpEnabled::Never);
    }

    #[test]
    fn buddyinfo_counts_free_2mib_blocks() {
        let text = b"Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3 \n\
                     Node 0, zone    DMA32      6      6      7      9     47     11      5      2      0      0     22 \n\
                     Node 0, zone   Normal   6630   4856   2413    599    595    530   1482    882    486    206    230 \n";
        // order 9 counts once, order 10 twice
        assert_eq!(
            parse_buddyinfo(text),
            Some((1 + 3 * 2) + (22 * 2) + (206 + 230 * 2))
        );
        assert_eq!(parse_buddyinfo(b"garbage"), None);
        assert_eq!(
            parse_buddyinfo(b"Node 0, zone Normal 1 2 x"),
            None,
            "a bad line"
        );
        assert_eq!(
            parse_buddyinfo(b"Node 0, zone Normal 1 2 3"),
            Some(0),
            "no order 9"
        );
        if std::path::Path::new("/proc/buddyinfo").exists() {
            assert!(free_huge_blocks().is_some());
        }
    }

    #[test]
    fn resident_counts_touched_pages() {
        let p = Linux::map(CHUNK_SIZE, CHUNK_SIZE).unwrap();
        // SAFETY: our fresh chunk; small pages so that one touch is one page.
        unsafe {
            Linux::advise_small(p, CHUNK_SIZE);
            assert_eq!(Linux::resident(p, CHUNK_SIZE), Some(0));
            for i in [0, 5, 511] {
                p.as_ptr().add(i * PAGE_SIZE + 7).write_volatile(1);
            }
            assert_eq!(Linux::resident(p, CHUNK_SIZE), Some(3 * PAGE_SIZE));
            assert_eq!(Linux::resident(p, 4 * PAGE_SIZE), Some(PAGE_SIZE));
            Linux::unmap(p, CHUNK_SIZE);
        }
    }

    #[test]
    fn populate_and_collapse_keep_contents() {
        let p = Linux::map(CHUNK_SIZE, CHUNK_SIZE).unwrap();
        // SAFETY: our fresh chunk.
        unsafe {
            p.as_ptr().add(4096).write(9);
            // either may be refused by an old kernel; contents stay
            let _ = Linux::populate(p, CHUNK_SIZE);
            let _ = Linux::collapse(p, CHUNK_SIZE);
            assert_eq!(p.as_ptr().add(4096).read(), 9);
            assert_eq!(p.as_ptr().add(CHUNK_SIZE - 1).read(), 0);
            Linux::unmap(p, CHUNK_SIZE);
        }
    }

    fn thread_faults() -> u64 {
        // SAFETY: an all-zero rusage is valid; getrusage writes only into it.
        unsafe {
            let mut ru: libc::rusage = core::mem::zeroed();
            libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
            ru.ru_minflt as u64
        }
    }

    #[test]
    fn populate_faults_the_range_in() {
        let len = 64 * PAGE_SIZE;
        let p = Linux::map(len, PAGE_SIZE).unwrap();
        // SAFETY: our fresh mapping.
        if unsafe { Linux::populate(p, len) } {
            let before = thread_faults();
            for i in (0..len).step_by(PAGE_SIZE) {
                // SAFETY: inside our mapping.
                unsafe { p.as_ptr().add(i).write_volatile(1) };
            }
            let taken = thread_faults() - before;
            assert!(taken < 4, "{taken} faults after populate");
        }
        // SAFETY: ours, unreferenced.
        unsafe { Linux::unmap(p, len) };
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
