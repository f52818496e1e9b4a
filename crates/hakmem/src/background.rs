//! The background maintenance thread: time-driven decay that needs no
//! allocator calls.
//!
//! One thread (`hakmem-background`), on by default (`HAKMEM_BACKGROUND=0`
//! turns it off), ticks on the decay clock: every `decay_ms / 8`, clamped to
//! [`TICK_MIN_MS`]`..=`[`TICK_MAX_MS`] (every [`TICK_MIN_MS`] under a
//! memory budget, whose hook watches the resident set). Each tick runs the [`tick`] hook
//! list, which gives back memory that sat unused for the decay time.
//!
//! The thread starts lazily, from a slow path that holds no lock (the spawn
//! allocates), never from a fast path, and only once the process has a
//! second thread (a single-threaded process stays one, see `fork.rs`): the
//! same state machine as the learner's (`OFF` → `WANTED` at set-up →
//! `STARTING` → `RUNNING`). After
//! `fork` it does not exist in the child; [`after_fork_in_child`] turns
//! `RUNNING` back into `WANTED`, so the child's next slow path starts a new
//! one.
//!
//! What a tick may touch, and why that is safe, is written down in
//! docs/ARCHITECTURE.md ("Background maintenance"): shared structures
//! through their own locks, and other threads' heaps only through the heap
//! box's maintenance lock (try-locked: a busy heap is skipped, never waited
//! on), never their bins.

use std::time::Duration;

use hakmem_platform::{Pal, SpinLock};

use crate::lazy_thread::LazyThread;
use crate::state::{Heap, Os, ORPHANAGE, POLICY, REGISTRY};

static THREAD: LazyThread = LazyThread::new("hakmem-background", 256 << 10);

/// Shortest tick period (ms).
pub(crate) const TICK_MIN_MS: u64 = 10;
/// Longest tick period (ms).
pub(crate) const TICK_MAX_MS: u64 = 250;

/// The tick period for a decay time: an eighth of it, clamped.
pub(crate) fn tick_period_ms(decay_ms: u64) -> u64 {
    (decay_ms / 8).clamp(TICK_MIN_MS, TICK_MAX_MS)
}

/// Asks for the thread (at set-up, unless `HAKMEM_BACKGROUND=0`).
pub(crate) fn want() {
    THREAD.want();
}

/// Starts the thread if it is wanted and not running, once the process has
/// a second thread: a single-threaded process decays through its one
/// thread's calls, and stays single-threaded (so that `fork` from a signal
/// handler keeps the lock-free path of `fork.rs`). Called from slow paths
/// that hold no lock (the spawn allocates).
#[inline]
pub(crate) fn maybe_start() {
    if THREAD.wanted() && !hakmem_platform::single_threaded() {
        THREAD.start(run);
    }
}

/// In a forked child: the thread did not survive; start it again lazily.
/// (Atomics only: it runs in the child's fork handler.)
pub(crate) fn after_fork_in_child() {
    THREAD.after_fork_in_child();
}

/// Whether the thread is running (for tests and the report).
pub fn background_running() -> bool {
    THREAD.running()
}

/// The thread: tick, sleep, forever.
fn run() {
    loop {
        let decay = POLICY.load().decay_ms;
        // under a memory budget every tick watches the resident set: the
        // shortest period, whatever the decay
        let period = if crate::budget::budget_bytes() != 0 {
            TICK_MIN_MS
        } else {
            tick_period_ms(decay)
        };
        std::thread::sleep(Duration::from_millis(period));
        tick(Os::now_ms());
    }
}

/// One tick: the hook list. Every hook gives back memory unused for the
/// decay time, holds no lock between hooks, and never waits for a busy
/// owner. Other maintenance work plugs in here.
pub(crate) fn tick(now_ms: u64) {
    let decay = POLICY.load().decay_ms;
    // the pool and the large cache (shared, under their own locks)
    crate::state::decay_tick();
    // every heap not busy: idle empty slabs and free slots (never bins)
    visit_heaps(now_ms, decay);
    // exited threads' superslabs still holding live blocks: free slots
    let _errno = hakmem_platform::ErrnoGuard::new();
    ORPHANAGE.purge_idle::<Os>(now_ms, decay);
    // ---- hook: huge pages (branch `huge`) --------------------------------
    crate::huge::tick(now_ms);
    // memory budget (HAKMEM_MEM_BUDGET_MB): give back at once when close
    crate::budget::tick(now_ms, visit_heaps);
    // ----------------------------------------------------------------------
}

/// Held by a thread visiting a heap it may not own ([`visit_heaps`]), one
/// heap at a time; the fork handlers take it first, so no child inherits a
/// heap whose maintenance lock a visitor that is not there holds.
static VISITORS: SpinLock<()> = SpinLock::new(());

/// The visitors' lock, for the fork handlers.
pub(crate) fn fork_lock() -> &'static SpinLock<impl Sized> {
    &VISITORS
}

/// Visits every heap (`Heap::visit`): what sat idle for `decay_ms` (0:
/// everything idle now) in heaps whose owner is not in a slow path goes
/// back; busy heaps are skipped. Returns the heaps visited. The caller must
/// not be inside a slow path of its own heap (it holds no allocator lock).
pub(crate) fn visit_heaps(now_ms: u64, decay_ms: u64) -> usize {
    let mut n = 0;
    REGISTRY.for_each_unlocked(|h| {
        let _v = VISITORS.lock();
        // SAFETY: `h` is a heap of the registry; the caller is in none of
        // its own heap's slow paths (so holds no heap's maintenance lock);
        // VISITORS is held, which the fork handlers take.
        if unsafe { Heap::visit(h, now_ms, decay_ms) } {
            n += 1;
        }
    });
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_period_follows_decay_within_bounds() {
        assert_eq!(tick_period_ms(1000), 125);
        assert_eq!(tick_period_ms(1), TICK_MIN_MS);
        assert_eq!(tick_period_ms(3_600_000), TICK_MAX_MS);
    }
}
