//! The `GlobalAlloc` path out of memory: with `#[global_allocator] static A:
//! hakmem::HakMem`, `std::alloc::alloc` under `RLIMIT_AS` returns null —
//! it never unwinds and never aborts on its own — and the program carries on
//! once it frees memory.
//!
//! The exhaustion runs in child processes (this test binary run again with
//! `HAKMEM_OOM_CHILD=<layout>`, only the `oom_child` test, one thread, no
//! output capture), one per layout so each starts from a fresh address
//! space: the soft limit applies to the whole process, and the test
//! harness's own threads must not be the ones that hit it. A child sets the
//! soft `RLIMIT_AS` to its current address-space size (from
//! `/proc/self/statm`) plus 256 MiB, allocates its layout with
//! `std::alloc::alloc`/`alloc_zeroed` until null, tries `realloc` and
//! `Vec::try_reserve` at the limit, frees everything, probes other sizes,
//! fills again, restores the limit, and only then prints what it saw
//! (printing allocates). The parent tests parse those reports.

use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout};
use std::process::Command;

#[global_allocator]
static A: hakmem::HakMem = hakmem::HakMem;

const CHILD_ENV: &str = "HAKMEM_OOM_CHILD";
const HEADROOM: usize = 256 << 20;

/// The layouts the child exhausts memory with: name, size, alignment,
/// zeroed.
const LAYOUTS: [(&str, usize, usize, bool); 7] = [
    ("tiny", 24, 8, false),
    ("small", 200, 8, false),
    ("mid", 5000, 8, false),
    ("big_mid", 300_000, 8, false),
    ("large", (3 << 20) + 5, 8, false),
    ("aligned", 10_000, 4096, false),
    ("zeroed", 40_000, 16, true),
];

/// Sizes allocated after everything was freed (the recovery probe).
const PROBE_SIZES: [usize; 8] = [1, 24, 100, 1000, 5000, 70_000, 500_000, 3 << 20];

/// What one layout's exhaustion gave, written without allocating.
#[derive(Clone, Copy, Default, Debug)]
struct Fill {
    count: usize,
    bytes: usize,
    /// Blocks that did not read zero (zeroed layouts only).
    not_zero: usize,
    /// Blocks whose chain word or pattern changed while they lived.
    corrupted: usize,
}

#[derive(Clone, Copy, Default, Debug)]
struct LayoutResult {
    first: Fill,
    second: Fill,
    /// After the first fill was freed: which probe sizes could be allocated.
    probes_ok: [bool; PROBE_SIZES.len()],
}

/// Allocates `layout` until null; live blocks are chained through their
/// first word (no memory besides the blocks), the second word holds a
/// check value.
fn fill(layout: Layout, zeroed: bool) -> (*mut usize, Fill) {
    let mut head: *mut usize = std::ptr::null_mut();
    let mut f = Fill::default();
    loop {
        // SAFETY: the layout has a non-zero size.
        let p = unsafe {
            if zeroed {
                alloc_zeroed(layout)
            } else {
                alloc(layout)
            }
        }
        .cast::<usize>();
        if p.is_null() {
            break;
        }
        if zeroed {
            // SAFETY: `p` is a live block of `layout.size()` bytes.
            let bytes = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), layout.size()) };
            if bytes.iter().step_by(509).any(|&b| b != 0) {
                f.not_zero += 1;
            }
        }
        // SAFETY: every layout holds at least two words.
        unsafe {
            p.write(head as usize);
            p.add(1).write(!(head as usize) ^ layout.size());
        }
        head = p;
        f.count += 1;
        f.bytes += layout.size();
    }
    (head, f)
}

/// Frees a chain built by [`fill`], checking each block's words.
fn free_chain(mut head: *mut usize, layout: Layout, f: &mut Fill) {
    while !head.is_null() {
        // SAFETY: a live block of the chain.
        let (next, check) = unsafe { (head.read(), head.add(1).read()) };
        if check != !next ^ layout.size() {
            f.corrupted += 1;
            // The chain cannot be trusted past a corrupted block.
            return;
        }
        // SAFETY: allocated with `layout` and not freed yet.
        unsafe { dealloc(head.cast(), layout) };
        head = next as *mut usize;
    }
}

fn probe() -> [bool; PROBE_SIZES.len()] {
    let mut ok = [false; PROBE_SIZES.len()];
    for (i, &n) in PROBE_SIZES.iter().enumerate() {
        let layout = Layout::from_size_align(n, 8).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout) };
        if !p.is_null() {
            // SAFETY: live block of `n` bytes, freed with its layout.
            unsafe {
                p.write_bytes(0x5a, n);
                dealloc(p, layout);
            }
            ok[i] = true;
        }
    }
    ok
}

fn vm_size() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .expect("parse /proc/self/statm");
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize
}

fn set_soft_limit(bytes: libc::rlim_t) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid out-parameter.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut rl) }, 0);
    rl.rlim_cur = bytes;
    // SAFETY: `rl` is a valid, initialised rlimit; raising the soft limit
    // up to the hard one is allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &rl) }, 0);
}

/// What the child does at the limit beyond the fills.
#[derive(Default, Debug)]
struct Extras {
    /// realloc of a live 100 KB block to 64 MiB at the limit returned null.
    realloc_null_at_limit: bool,
    /// ... and the block kept its contents.
    realloc_kept_block: bool,
    /// `Vec::try_reserve(1 GiB)` at the limit returned an error.
    try_reserve_err: bool,
    /// After everything was freed, the same realloc to 64 MiB succeeded.
    realloc_after_free: bool,
}

/// The child: everything between setting and restoring the limit avoids
/// allocating except through the calls under test.
#[test]
fn oom_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        // Run by the parent tests below, in a process of its own.
        return;
    }
    let vm = vm_size();
    let limit = vm + HEADROOM;
    let mut results = [LayoutResult::default(); LAYOUTS.len()];
    let mut extras = Extras::default();
    let mut reserve: Vec<u8> = Vec::new();
    let keep_layout = Layout::from_size_align(100_000, 8).unwrap();
    // SAFETY: non-zero size.
    let keep = unsafe { alloc(keep_layout) };
    assert!(!keep.is_null());
    // SAFETY: a live 100 000-byte block.
    unsafe { keep.write_bytes(0x3c, 100_000) };

    let name = std::env::var(CHILD_ENV).expect("layout name");
    let (i, &(_, size, align, zeroed)) = LAYOUTS
        .iter()
        .enumerate()
        .find(|(_, l)| l.0 == name)
        .unwrap_or_else(|| panic!("no layout {name}"));
    let layout = Layout::from_size_align(size, align).unwrap();

    set_soft_limit(limit as libc::rlim_t);
    let (head, mut first) = fill(layout, zeroed);
    // At the limit: growing a block and reserving fail cleanly.
    // SAFETY: `keep` is live with `keep_layout`; 64 MiB is non-zero.
    let grown = unsafe { realloc(keep, keep_layout, 64 << 20) };
    extras.realloc_null_at_limit = grown.is_null();
    if grown.is_null() {
        // SAFETY: the realloc failed: `keep` is still live.
        let kept = unsafe { std::slice::from_raw_parts(keep, 100_000) };
        extras.realloc_kept_block = kept.iter().all(|&b| b == 0x3c);
    } else {
        // SAFETY: the new block, 64 MiB with `keep_layout`'s alignment.
        unsafe { dealloc(grown, Layout::from_size_align(64 << 20, 8).unwrap()) };
    }
    extras.try_reserve_err = reserve.try_reserve(1 << 30).is_err();
    free_chain(head, layout, &mut first);
    results[i].first = first;
    results[i].probes_ok = probe();
    let (head, mut second) = fill(layout, zeroed);
    free_chain(head, layout, &mut second);
    results[i].second = second;
    let grown = if extras.realloc_null_at_limit {
        // SAFETY: the realloc at the limit failed, so `keep` is still live.
        unsafe { realloc(keep, keep_layout, 64 << 20) }
    } else {
        std::ptr::null_mut()
    };
    extras.realloc_after_free = !grown.is_null();
    set_soft_limit(libc::RLIM_INFINITY);

    if !grown.is_null() {
        // SAFETY: the grown block.
        unsafe { dealloc(grown, Layout::from_size_align(64 << 20, 8).unwrap()) };
    } else if extras.realloc_null_at_limit {
        // SAFETY: still the original block.
        unsafe { dealloc(keep, keep_layout) };
    }
    drop(reserve);
    println!("vm {} MiB, limit {} MiB", vm >> 20, limit >> 20);
    for (r, (name, size, align, _)) in results.iter().zip(LAYOUTS).skip(i).take(1) {
        let probes: Vec<String> = PROBE_SIZES
            .iter()
            .zip(r.probes_ok)
            .filter(|(_, ok)| !ok)
            .map(|(n, _)| n.to_string())
            .collect();
        println!(
            "layout {name} {size} {align} first {} {} {} {} second {} {} {} {} probes_failed [{}]",
            r.first.count,
            r.first.bytes,
            r.first.not_zero,
            r.first.corrupted,
            r.second.count,
            r.second.bytes,
            r.second.not_zero,
            r.second.corrupted,
            probes.join(",")
        );
    }
    println!(
        "extras realloc_null_at_limit {} realloc_kept_block {} try_reserve_err {} realloc_after_free {}",
        extras.realloc_null_at_limit,
        extras.realloc_kept_block,
        extras.try_reserve_err,
        extras.realloc_after_free
    );
    println!("child done");
}

/// Runs `oom_child` for every layout, each in a process of its own (a fresh
/// address space), and returns their stdouts.
fn run_children() -> String {
    LAYOUTS.iter().map(|l| run_child(l.0)).collect()
}

fn run_child(layout: &str) -> String {
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(exe)
        .args(["--exact", "oom_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, layout)
        .output()
        .expect("run the oom child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("child done"),
        "the OOM child ({layout}) did not finish cleanly ({}): hakmem must return null at \
         the limit, not abort or unwind\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    stdout
}

struct Parsed {
    name: String,
    first: [usize; 4],
    second: [usize; 4],
    probes_failed: String,
}

fn parse_layouts(stdout: &str) -> Vec<Parsed> {
    stdout
        .lines()
        .filter(|l| l.starts_with("layout "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let num = |i: usize| -> usize { f[i].parse().unwrap_or_else(|_| panic!("{l}")) };
            assert_eq!(
                (f[4], f[9], f[14]),
                ("first", "second", "probes_failed"),
                "{l}"
            );
            Parsed {
                name: f[1].to_owned(),
                first: [num(5), num(6), num(7), num(8)],
                second: [num(10), num(11), num(12), num(13)],
                probes_failed: f[15..].join(" "),
            }
        })
        .collect()
}

/// `std::alloc::alloc` and `alloc_zeroed` return null at the limit for
/// every layout (24 B .. 3 MiB, 4096-aligned, zeroed): the child neither
/// aborts nor unwinds; at least a quarter of the headroom was handed out
/// before the null; no live block changed; zeroed blocks read zero; after
/// freeing, the same layout fills again (at least half as many blocks); a
/// `realloc` to 64 MiB at the limit returns null and keeps the block; and
/// `Vec::try_reserve(1 GiB)` returns an error instead of aborting.
#[test]
fn global_alloc_returns_null_at_the_limit() {
    let stdout = run_children();
    print!("{stdout}");
    let layouts = parse_layouts(&stdout);
    assert_eq!(layouts.len(), LAYOUTS.len(), "{stdout}");
    for l in &layouts {
        let [count, bytes, not_zero, corrupted] = l.first;
        assert!(
            bytes >= HEADROOM / 4,
            "{}: only {} MiB allocated under a {} MiB headroom ({count} blocks): the null \
             came before the limit",
            l.name,
            bytes >> 20,
            HEADROOM >> 20
        );
        assert_eq!(not_zero, 0, "{}: zeroed blocks with non-zero bytes", l.name);
        assert_eq!(corrupted, 0, "{}: live blocks corrupted", l.name);
        let [count2, _, not_zero2, corrupted2] = l.second;
        assert!(
            count2 >= count / 2,
            "{}: the second fill got {count2} blocks, the first {count}",
            l.name
        );
        assert_eq!((not_zero2, corrupted2), (0, 0), "{}: second fill", l.name);
    }
    for bad in [
        "realloc_null_at_limit false",
        "realloc_kept_block false",
        "try_reserve_err false",
    ] {
        assert!(!stdout.contains(bad), "`{bad}` after some fill:\n{stdout}");
    }
}

/// After everything allocated at the limit was freed, every size can be
/// allocated again, and the 100 KB block grows to 64 MiB. hakmem keeps the
/// freed address space today, so sizes of other tiers fail.
#[test]
fn global_alloc_recovers_every_size_after_freeing_at_the_limit() {
    let stdout = run_children();
    print!("{stdout}");
    let failed: Vec<String> = parse_layouts(&stdout)
        .iter()
        .filter(|l| l.probes_failed != "[]")
        .map(|l| format!("after the {} fill: sizes {}", l.name, l.probes_failed))
        .collect();
    assert!(
        failed.is_empty(),
        "allocations failed after freeing everything:\n{}",
        failed.join("\n")
    );
    assert!(
        !stdout.contains("realloc_after_free false"),
        "realloc to 64 MiB after freeing everything failed:\n{stdout}"
    );
}
