//! Process-wide initialisation, done once by the first call that needs it:
//! the options (the one place the environment is read, through
//! `hakmem-options`), the starting policy, the free mark, the modes.

use core::fmt::Write as _;
use core::sync::atomic::{AtomicU8, Ordering};

use hakmem_options::{Features, OnError, Options};
use hakmem_platform::{Line, SpinLock};
use hakmem_policy_rcu::{FrozenPolicy, DEFAULT_POLICY, POLICY_FILE_MAX};

static STATE: AtomicU8 = AtomicU8::new(0); // 0 fresh, 1 running, 2 done
static LOCK: SpinLock<()> = SpinLock::new(());

/// Runs the one-time set-up if it has not run yet.
#[inline]
pub(crate) fn ensure() {
    if STATE.load(Ordering::Acquire) != 2 {
        init_slow();
    }
}

#[cold]
fn init_slow() {
    let _g = LOCK.lock();
    if STATE.load(Ordering::Acquire) != 0 {
        // done by another thread meanwhile (the set-up itself never
        // allocates, so it never nests)
        return;
    }
    STATE.store(1, Ordering::Relaxed);
    if !hakmem_platform::Linux::check_page_size() {
        hakmem_platform::fatal("unsupported page size (hakmem is built for 4 KiB pages)");
    }
    // SAFETY: the documented point where hakmem reads its environment: the
    // first allocation of the process, normally before `main` (ld.so,
    // libc and Rust's runtime allocate first). A program that changes the
    // environment from another thread during its first allocation breaks
    // this, as it would break any `getenv` (README, "Options").
    let (mut opts, warnings) = unsafe { Options::from_env() };
    for w in warnings.iter() {
        emit(w.line().as_bytes());
    }
    let mark = new_mark();
    crate::state::set_free_mark(mark);
    crate::report::set_warn_only(opts.on_error == OnError::Warn);
    crate::check::set(opts.check);

    // the policy directory's file for this executable stands in for
    // HAKMEM_POLICY when that is unset (so the learner starts FROZEN on it)
    let mut from_dir = None;
    if let (None, Some(dir)) = (&opts.policy, &opts.policy_dir) {
        if opts.mode.features().contains(Features::POLICY_FILE) {
            if let Some((path, policy)) = crate::policy_dir::load(dir) {
                opts.policy = Some(path);
                from_dir = Some(policy);
            }
        }
    }
    let base = match (&opts.policy, from_dir) {
        (_, Some(policy)) => policy,
        (Some(path), None) if opts.mode.features().contains(Features::POLICY_FILE) => {
            load_policy(path.as_c_str(), path.as_bytes())
        }
        _ => DEFAULT_POLICY,
    };
    let mut policy = opts.initial_policy(&base);
    let ring = opts.trace.unwrap_or(if opts.secure {
        crate::ring::CAP as u32
    } else {
        0
    });
    crate::ring::set(ring as usize);
    crate::secure::refresh_special();
    if opts.secure {
        crate::secure::enable(mark);
        // the mid bins off: their blocks take the checked slow paths (the
        // tiny bins stay: the checked fast paths serve them)
        policy.mid_cap = [0; hakmem_mid_mt::MID_CLASSES];
        policy.mid_refill = [0; hakmem_mid_mt::MID_CLASSES];
    }
    // secure mode or the ring: the checked fast paths serve small calls
    crate::secure::refresh_checked();
    // SAFETY: the set-up runs once (STATE moved from 0 under LOCK), on
    // this thread; nothing has read the values yet.
    let start = unsafe { crate::config::publish(opts, policy) };
    // SAFETY: the set-up, once, before any budgeted policy is published.
    crate::state::POLICY.publish(unsafe { crate::budget::at_set_up(start) });
    if opts.sites {
        crate::sites::enable_sampling(opts.sites_sample as u32);
    }
    if opts.prof || opts.prof_json.is_some() {
        crate::prof::set_profiling(true, opts.prof_sample as u32);
    }
    crate::sites::PLACEMENT.set_enabled(opts.site_placement);
    crate::huge::configure(opts.thp_superslabs);
    crate::budget::after_huge_set_up();
    if opts
        .mode
        .features()
        .contains(hakmem_options::Features::LEARNER)
    {
        crate::learner::want();
    }
    if opts.background
        && opts
            .mode
            .features()
            .contains(hakmem_options::Features::CACHES)
    {
        crate::background::want();
    }
    STATE.store(2, Ordering::Release);
    drop(_g);
    // After the set-up (pthread_atfork may allocate): every lock the fork
    // handlers take can be held from now on, by any path.
    crate::fork::register();
}

fn emit(bytes: &[u8]) {
    hakmem_platform::file::write_all(hakmem_platform::file::STDERR, bytes);
}

/// Reads and parses a policy file; on any problem prints one line and
/// returns the built-in policy.
fn load_policy(path: &core::ffi::CStr, shown: &[u8]) -> FrozenPolicy {
    let mut buf = [0u8; POLICY_FILE_MAX + 1];
    let mut line = Line::new();
    line.str("hakmem: HAKMEM_POLICY=")
        .str(core::str::from_utf8(shown).unwrap_or("<path>"))
        .str(": ");
    let Some(file) = hakmem_platform::file::Fd::open_read(path) else {
        line.str("cannot be read, using the built-in policy").emit();
        return DEFAULT_POLICY;
    };
    let n = file.read_all_into(&mut buf);
    file.close();
    if n > POLICY_FILE_MAX {
        line.str("longer than 8192 bytes, using the built-in policy")
            .emit();
        return DEFAULT_POLICY;
    }
    match FrozenPolicy::parse(&buf[..n]) {
        Ok(p) => p,
        Err(e) => {
            let _ = write!(line, "{e}, using the built-in policy");
            line.emit();
            DEFAULT_POLICY
        }
    }
}

/// A random 64-bit value that no plausible pointer or small integer equals:
/// from the kernel's random source, mixed with the clock and addresses.
fn new_mark() -> u64 {
    let mut bytes = [0u8; 8];
    let filled = hakmem_platform::random::fill(&mut bytes);
    let mut r = u64::from_ne_bytes(bytes);
    if !filled {
        let ns = hakmem_platform::clock::monotonic_ns();
        let (sec, nsec) = (ns / 1_000_000_000, ns % 1_000_000_000);
        r = nsec
            ^ sec.rotate_left(32)
            ^ (&r as *const u64 as u64).rotate_left(29)
            ^ (new_mark as *const () as u64);
    }
    // never 0, never a canonical user pointer, never a small number
    (r | 0x8000_0000_0000_0001).wrapping_mul(0x9E37_79B9_7F4A_7C15) | (1 << 63) | 1
}
