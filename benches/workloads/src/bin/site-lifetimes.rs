//! site-lifetimes: the fragmentation that lifetime segregation removes.
//!
//! `--phases` phases, each in a new block size (tiny and mid classes in
//! turn): allocate `--phase-bytes` in blocks of that size, one in `--long-every` from a
//! *long-lived* call site (kept to the end), the rest from a *short-lived*
//! site (freed when the phase ends), then `--work-ms` of the program's own
//! work. Without segregation the long-lived blocks sit in every slab of
//! their phase's size, so each phase's slabs stay resident after the
//! short-lived blocks go: RSS climbs phase after phase while the live bytes
//! barely move. With hakmem's site-aware placement the long-lived site is
//! recognised after a phase or two and its blocks packed into slabs of
//! their own.
//!
//! Allocation goes through the call-site API where there is one: hakmem's C
//! `hak_alloc_cs` (found with `dlsym`, so under `LD_PRELOAD=libhakmem.so`)
//! or `hakmem::alloc_recorded` (in-process build); otherwise plain
//! `malloc`. `--placement off` turns hakmem's placement off for the run
//! (`hak_site_placement(0)`), the "without" column; other allocators ignore
//! it. Reports `peak_rss_kb` (getrusage), `rss_end_kb` (after the last
//! phase), `live_kb` (long-lived bytes at the end), `api` (`cs` or
//! `malloc`) and `placement` (`on`, `off` or `na`).
use std::ffi::c_void;
use std::time::{Duration, Instant};

use bench_workloads::{Args, Report};

type AllocFn = unsafe extern "C" fn(usize) -> *mut c_void;
type PlaceFn = unsafe extern "C" fn(libc::c_int) -> libc::c_int;

/// How blocks are allocated (the in-process build only uses `InProc`).
#[derive(Clone, Copy)]
#[cfg_attr(feature = "global-hakmem", allow(dead_code))]
enum Api {
    /// `hak_alloc_cs` from the preloaded libhakmem: the site is the return
    /// address of each call.
    Cs(AllocFn),
    /// The in-process facade with explicit site labels.
    #[cfg(feature = "global-hakmem")]
    InProc,
    Malloc,
}

#[cfg(feature = "global-hakmem")]
const LONG_SITE: usize = 0x10ff;
#[cfg(feature = "global-hakmem")]
const SHORT_SITE: usize = 0x20ff;

impl Api {
    fn find() -> (Api, Option<PlaceFn>) {
        #[cfg(feature = "global-hakmem")]
        {
            (Api::InProc, None)
        }
        #[cfg(not(feature = "global-hakmem"))]
        {
            // SAFETY: dlsym with RTLD_DEFAULT and NUL-terminated names; the
            // symbols, when present, have the C signatures of hakmem.h.
            unsafe {
                let a = libc::dlsym(libc::RTLD_DEFAULT, c"hak_alloc_cs".as_ptr());
                let p = libc::dlsym(libc::RTLD_DEFAULT, c"hak_site_placement".as_ptr());
                if a.is_null() {
                    (Api::Malloc, None)
                } else {
                    (
                        Api::Cs(std::mem::transmute::<*mut c_void, AllocFn>(a)),
                        (!p.is_null()).then(|| std::mem::transmute::<*mut c_void, PlaceFn>(p)),
                    )
                }
            }
        }
    }

    /// Allocates at the long-lived site: its own call instruction (the
    /// `black_box` constants keep the two functions from being merged into
    /// one, which would make them one site).
    #[inline(never)]
    fn alloc_long(self, size: usize) -> *mut u8 {
        std::hint::black_box(1u32);
        match self {
            // SAFETY: hak_alloc_cs takes any size.
            Api::Cs(f) => unsafe { f(size) }.cast(),
            #[cfg(feature = "global-hakmem")]
            Api::InProc => hakmem::alloc_recorded(size, 16, hakmem::SiteId::code(LONG_SITE)),
            // SAFETY: malloc takes any size.
            Api::Malloc => unsafe { libc::malloc(size) }.cast(),
        }
    }

    /// Allocates at the short-lived site: another call instruction.
    #[inline(never)]
    fn alloc_short(self, size: usize) -> *mut u8 {
        std::hint::black_box(2u32);
        match self {
            // SAFETY: hak_alloc_cs takes any size.
            Api::Cs(f) => unsafe { f(size) }.cast(),
            #[cfg(feature = "global-hakmem")]
            Api::InProc => hakmem::alloc_recorded(size, 16, hakmem::SiteId::code(SHORT_SITE)),
            // SAFETY: malloc takes any size.
            Api::Malloc => unsafe { libc::malloc(size) }.cast(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Api::Malloc => "malloc",
            _ => "cs",
        }
    }
}

#[cold]
fn fail(msg: &str) -> ! {
    eprintln!("HAKMEM_BENCH_ERROR {msg}");
    std::process::abort()
}

fn free(p: *mut u8) {
    // SAFETY: a live block from this build's allocator: hakmem's (in-process
    // build) or whatever `malloc` is (preloaded hakmem takes both kinds).
    #[cfg(feature = "global-hakmem")]
    unsafe {
        hakmem::free(p)
    }
    // SAFETY: a live block from `malloc` or hak_alloc_cs, freed once; the
    // `malloc` here is preloaded hakmem's whenever hak_alloc_cs exists.
    #[cfg(not(feature = "global-hakmem"))]
    unsafe {
        libc::free(p.cast())
    }
}

fn main() {
    let a = Args::from_env(
        "site-lifetimes",
        "phases of short-lived blocks with long-lived ones from another site; peak RSS",
    );
    let phases = a.count("phases", 16, "phases, each in a new size") as usize;
    let phase_bytes = a.size("phase-bytes", 24 << 20, "bytes allocated per phase");
    let long_every = a
        .count("long-every", 32, "one block in N is long-lived")
        .max(1) as usize;
    let work_ms = a.count(
        "work-ms",
        25,
        "the program's own work after each phase (sleep)",
    );
    let placement: String = a.value(
        "placement",
        "on".to_string(),
        "hakmem's site-aware placement: on or off",
    );
    let c = a.common(1);
    a.finish();
    let sizes = [
        48usize, 96, 160, 256, 384, 512, 768, 1024, 2048, 4096, 200, 640,
    ];

    let (api, place) = Api::find();
    if let Some(f) = place {
        // SAFETY: hak_site_placement takes any int.
        unsafe { f(libc::c_int::from(placement != "off")) };
    }
    #[cfg(feature = "global-hakmem")]
    hakmem::set_site_placement(placement != "off");
    let placement_state = match api {
        Api::Malloc => "na",
        _ if placement == "off" => "off",
        _ => "on",
    };

    let expected: u64 = (0..phases)
        .map(|ph| 2 * (phase_bytes / sizes[ph % sizes.len()]) as u64)
        .sum();
    let mut s = c.sampler(expected);
    let start = Instant::now();
    let mut long: Vec<(*mut u8, usize)> = Vec::new();
    let mut short: Vec<*mut u8> = Vec::new();
    let mut work = Duration::ZERO;
    for ph in 0..phases {
        let size = sizes[ph % sizes.len()];
        let blocks = phase_bytes / size;
        for i in 0..blocks {
            let p = if i % long_every == 0 {
                let p = s.call(|| api.alloc_long(size));
                long.push((p, size));
                p
            } else {
                let p = s.call(|| api.alloc_short(size));
                short.push(p);
                p
            };
            if p.is_null() {
                fail("allocation failed");
            }
            // SAFETY: `size` bytes are ours.
            unsafe {
                p.write(ph as u8);
                p.add(size - 1).write(ph as u8);
            }
        }
        for p in short.drain(..) {
            s.call(|| free(p));
        }
        let t = Instant::now();
        std::thread::sleep(Duration::from_millis(work_ms));
        work += t.elapsed();
    }
    let elapsed = start.elapsed() - work;
    let rss_end = bench_workloads::current_rss_kb();
    let mut live = 0usize;
    for &(p, size) in &long {
        // SAFETY: live blocks written above.
        let (a, b) = unsafe { (p.read(), p.add(size - 1).read()) };
        if a != b {
            fail("long-lived block corrupted");
        }
        live += size;
    }
    let line = Report::new("site-lifetimes", 1, s.calls(), elapsed)
        .samples(&s)
        .extra("rss_end_kb", rss_end)
        .extra("live_kb", live / 1024)
        .extra("api", api.name())
        .extra("placement", placement_state)
        .line();
    for (p, _) in long {
        free(p);
    }
    println!("{line}");
}
