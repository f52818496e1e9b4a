//! The one seam between the allocation path and its observers.
//!
//! Observers — call-site sampling (`sites.rs`), the learner's observation
//! slices (`learner.rs`), and whatever comes next — never touch the fast
//! paths. They switch themselves on and off here ([`set_active`]); while any
//! is on, the fast paths' size limit ([`TINY_LIMIT`]) is 0 and small calls
//! count down one per-thread countdown (the thread slot's `left`) instead:
//! a call that does not bring it to zero still takes the fast path, and the
//! one that does (the *due* call) reaches `api::malloc_observed`, which
//! credits the whole period to every active observer through the
//! [`Observer`] trait, lets them record or time that one call, and starts the
//! next period (the shortest any active observer asks for). Calls the fast
//! path does not serve anyway (above the small sizes) are shown to the
//! observers one by one from `api::malloc_slow`.
//!
//! This module sits below every observer and every entry point: it knows
//! the limits, which observers are on and the trait, and nothing else. The
//! table of observers is assembled by the entry layer (`api.rs`).
//!
//! Adding an observer: implement [`Observer`], give it a bit below
//! [`COUNT`], list it in `api::OBSERVERS`. No fast path changes.

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use hakmem_tiny_sll::TINY_MAX;

/// A size limit read by the fast paths (the compiled ones in `api.rs` and
/// the hand-written C `malloc` of `hakmem-preload`, which reads it as a
/// plain `usize` through the symbol).
///
/// Invariant: the value is always 0 or [`TINY_MAX`]: the fast paths index a
/// table of `TINY_MAX + 1` entries with any size up to it. Only this module
/// stores it, and only those two values, so safe code cannot break that.
#[repr(transparent)]
#[derive(Debug)]
pub struct Limit(AtomicUsize);

impl Limit {
    const fn new(v: usize) -> Limit {
        Limit(AtomicUsize::new(v))
    }

    /// The current limit: 0 or [`TINY_MAX`].
    #[inline(always)]
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, on: bool) {
        self.0
            .store(if on { TINY_MAX } else { 0 }, Ordering::Release);
    }
}

/// The largest size the fast paths serve without counting: [`TINY_MAX`],
/// or 0 while any observer is on.
pub static TINY_LIMIT: Limit = Limit::new(TINY_MAX);

/// While any observer is on: [`TINY_MAX`] (small calls count down the
/// thread's countdown and then take the fast path), else 0.
pub static SAMPLE_LIMIT: Limit = Limit::new(0);

/// Call-site sampling (`HAKMEM_SITES=1`).
pub(crate) const SITES: u8 = 0;
/// The learner's observation slices.
pub(crate) const LEARNER: u8 = 1;
/// The profiler of hakmem's own paths (`HAKMEM_PROF=1`).
pub(crate) const PROF: u8 = 2;
/// How many observers there can be.
pub(crate) const COUNT: usize = 3;

static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// Turns observer `which` on or off, and the fast paths' limits with it.
pub(crate) fn set_active(which: u8, on: bool) {
    let bit = 1u8 << which;
    if on {
        ACTIVE.fetch_or(bit, Ordering::AcqRel);
    } else {
        ACTIVE.fetch_and(!bit, Ordering::AcqRel);
    }
    refresh_limits();
}

/// True while secure mode or the debug ring is on (`secure::CHECKED`, of
/// which this is a copy, so that this module imports nothing of `secure`):
/// their checked fast path serves small calls, and both limits are 0.
static CHECKED: AtomicBool = AtomicBool::new(false);

/// Secure mode or the debug ring was switched (`secure::refresh_checked`).
pub(crate) fn set_checked(on: bool) {
    CHECKED.store(on, Ordering::Release);
    refresh_limits();
}

/// The bound of the hand-written C `malloc`'s secure fast path: a size
/// below it is a secure tiny request (`secure::SECURE_BINS` has its bin);
/// 0 (nothing) outside secure mode and while observers are on (their
/// countdown is `api::malloc_checked`'s). Read-only outside this module;
/// it only ever holds 0 or [`SECURE_BOUND`].
#[repr(transparent)]
#[derive(Debug)]
pub struct SecureLimit(AtomicUsize);

/// See [`SecureLimit`].
pub static SECURE_LIMIT: SecureLimit = SecureLimit(AtomicUsize::new(0));

/// [`SECURE_LIMIT`] in secure mode without observers: the largest secure
/// tiny request (`TINY_MAX` less the canary's 8 bytes), plus one.
pub(crate) const SECURE_BOUND: usize = TINY_MAX - 8 + 1;

/// True in secure mode (`secure::enable`; a copy, as for [`CHECKED`]).
static SECURE: AtomicBool = AtomicBool::new(false);

/// Secure mode was turned on (at start-up).
pub(crate) fn set_secure(on: bool) {
    SECURE.store(on, Ordering::Release);
    refresh_limits();
}

/// Sets the fast paths' limits from the observers that are on and from
/// [`CHECKED`] and [`SECURE`].
fn refresh_limits() {
    let any = any_active();
    let secure = SECURE.load(Ordering::Relaxed);
    SECURE_LIMIT.0.store(
        if secure && !any { SECURE_BOUND } else { 0 },
        Ordering::Release,
    );
    // The countdown limit first: a call that misses the fast path's limit
    // must find the countdown's already in place.
    // (Both 0 in the checked modes: `api::malloc_checked` counts down.)
    let checked = CHECKED.load(Ordering::Relaxed);
    SAMPLE_LIMIT.set(any && !checked);
    TINY_LIMIT.set(!any && !checked);
}

/// True while observer `which` is on.
#[inline]
pub(crate) fn is_active(which: u8) -> bool {
    ACTIVE.load(Ordering::Relaxed) & (1 << which) != 0
}

/// True while any observer is on.
#[inline(always)]
pub(crate) fn any_active() -> bool {
    ACTIVE.load(Ordering::Relaxed) != 0
}

/// A call shown to an observer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call {
    /// Calls this one stands for: the countdown's period for a due call
    /// (0 for a thread's first, whose countdown was never set), 1 for a
    /// call shown one by one.
    pub calls: u64,
    /// True for a due call (the period was counted down on the fast path).
    pub due: bool,
    /// The requested size.
    pub size: usize,
    /// The caller's return address, 0 where it is not known (Rust callers).
    pub ra: usize,
}

/// What an observer wants done with the call it was shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Take {
    /// Serve it as usual.
    Pass,
    /// Time it and report the time ([`Observer::on_timed`]).
    Time,
    /// Serve it as a recorded allocation of its call-site (the caller's
    /// return address): `api::alloc_recorded`.
    Record,
}

/// An observer of `malloc` calls. Its methods run on the calling thread, in
/// a slow path, holding no lock; they must not allocate through the global
/// allocator.
pub(crate) trait Observer: Sync {
    /// The observer's bit (below [`COUNT`]).
    fn which(&self) -> u8;
    /// The countdown period (calls) it wants next; `rnd` is a random value
    /// for jitter.
    fn period(&self, rnd: u32) -> usize;
    /// A call (standing for `call.calls` calls) was made.
    fn on_call(&self, call: &Call) -> Take;
    /// The call it asked to time took `ns` nanoseconds (at least 1).
    fn on_timed(&self, ns: u32);
}
