//! The memory budget (`HAKMEM_MEM_BUDGET_MB`): a hard rule that keeps the
//! resident set under the budget by giving memory back, whatever the
//! policy (the start policy or the learner's) would keep for speed.
//!
//! From the set-up on, with a budget:
//!
//! * the policy in force is the wanted one within the budget
//!   (`FrozenPolicy::within_budget`): caches sized to the budget;
//! * blocks above [`BUDGET_SLAB_MAX`] (32 KiB) are served by the large
//!   tier, each its own mapping, instead of mid slabs: a freed big block
//!   then goes back to the OS (or to the large cache, sized to the budget)
//!   however its neighbours live, where a free block in a slab that still
//!   holds live blocks stays resident;
//! * superslabs get no transparent huge pages (a partly used huge
//!   superslab is 2 MiB resident).
//!
//! Every background tick ([`tick`]) reads the resident set
//! (`/proc/self/statm`, three system calls) and updates the pressure level
//! (`policy_rcu::Pressure`: high from 3/4 of the budget, calm again below
//! 5/8). Under high pressure the policy keeps nothing beyond use (and
//! decays within 80 ms, so that the ticks come every 10 ms). From 7/8 of
//! the budget each tick also gives back what is free now: every heap not busy is visited with
//! decay 0 (empty slabs back to their superslabs, free slots purged, empty
//! superslabs to the pool), exited threads' free slots are purged, and the
//! pool and the large cache are emptied. Heaps give back what their bins
//! hold beyond smaller caps at their next slow path (`Heap::sync_policy`).
//!
//! The learner publishes through [`publish`], so that its policies pass
//! through the same rule. Without a budget nothing here does anything.
//!
//! The ticks run on the background thread, which a single-threaded
//! process does not have (see `background.rs`): there the budget sizes the
//! caches and routes big blocks, but nothing reacts to pressure.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use hakmem_ace_learner::driver::Interner;
use hakmem_policy_rcu::{FrozenPolicy, Pressure};
use hakmem_superslab::HugeMode;

use hakmem_platform::SpinLock;

use crate::classes::SLAB_MAX;
use crate::state::{cache_limits, Os, LARGE, ORPHANAGE, PAGE_MAP, POLICY, POOL};

/// The wanted policy and the interned policies published for it. Taken
/// only by the background and learner threads, for a few microseconds
/// (never on an allocation path); the interning allocates under it, which
/// is allowed there (no allocator lock is held, and no allocation path
/// takes this lock). The fork handlers take it first of all their locks
/// (`fork.rs`), so a child never inherits it held by a thread it lacks.
struct Wanted {
    /// The wanted policy (`None`: the start policy).
    base: Option<&'static FrozenPolicy>,
    interner: Interner,
}

static WANTED: SpinLock<Wanted> = SpinLock::new(Wanted {
    base: None,
    interner: Interner::new(),
});

/// The wanted policy's lock.
fn wanted() -> hakmem_platform::SpinGuard<'static, Wanted> {
    WANTED.lock()
}

/// The wanted policy's lock, for the fork handlers.
pub(crate) fn fork_lock() -> &'static SpinLock<impl Sized> {
    &WANTED
}

/// The pressure level (0 calm, 1 high).
static LEVEL: AtomicU8 = AtomicU8::new(0);
/// Whether the rule has published a policy yet.
static STARTED: AtomicBool = AtomicBool::new(false);
/// The largest request served from slabs under a budget.
pub(crate) const BUDGET_SLAB_MAX: usize = 32 << 10;
/// The largest request served from slabs: [`SLAB_MAX`], or
/// [`BUDGET_SLAB_MAX`] under a budget (set by the set-up).
static SLAB_LIMIT: AtomicUsize = AtomicUsize::new(SLAB_MAX);

/// The largest request served from slabs (bigger ones go to the large
/// tier). One relaxed load: for slow paths.
#[inline]
pub(crate) fn slab_max() -> usize {
    SLAB_LIMIT.load(Ordering::Relaxed)
}

/// The start policy within the budget, calm (written once by the set-up).
struct StartCell(UnsafeCell<MaybeUninit<FrozenPolicy>>);

// SAFETY: written once by the set-up before any reader can reach it (the
// set-up publishes it afterwards), never again.
unsafe impl Sync for StartCell {}

static START: StartCell = StartCell(UnsafeCell::new(MaybeUninit::uninit()));

/// The set-up: the policy to publish first for the start policy `p`: `p`
/// itself without a budget, else `p` within the budget at calm pressure
/// (so that the caches are sized to the budget from the first call, long
/// before the background thread's first tick). Allocates nothing.
///
/// # Safety
/// Called at most once in the process, by the set-up (under its lock),
/// before any policy it returns is published.
pub(crate) unsafe fn at_set_up(p: &'static FrozenPolicy) -> &'static FrozenPolicy {
    let budget = budget_bytes();
    if budget == 0 {
        return p;
    }
    SLAB_LIMIT.store(BUDGET_SLAB_MAX.min(SLAB_MAX), Ordering::Relaxed);
    let q = p.within_budget(budget, Pressure::Calm);
    // SAFETY: per the contract, the only write, before any read.
    unsafe { (*START.0.get()).write(q) }
}

/// The set-up, after the huge-page mode was chosen: no huge superslabs
/// under a budget.
pub(crate) fn after_huge_set_up() {
    if budget_bytes() != 0 {
        POOL.set_huge_mode(HugeMode::Off);
    }
}

/// The budget in bytes (0: none).
pub(crate) fn budget_bytes() -> u64 {
    (crate::config::options().mem_budget_mb as u64) << 20
}

fn level() -> Pressure {
    if LEVEL.load(Ordering::Relaxed) == 1 {
        Pressure::High
    } else {
        Pressure::Calm
    }
}

/// Publishes the wanted policy `p` (the learner's), within the budget.
pub(crate) fn publish(p: &'static FrozenPolicy) {
    let budget = budget_bytes();
    if budget == 0 {
        POLICY.publish(p);
        return;
    }
    let mut w = wanted();
    w.base = Some(p);
    let q = p.within_budget(budget, level());
    let q = w.interner.intern(&q);
    POLICY.publish(q);
    STARTED.store(true, Ordering::Relaxed);
}

/// Republishes the wanted policy for the current level.
fn republish(budget: u64) {
    let mut w = wanted();
    let base = w.base.unwrap_or_else(crate::config::start_policy);
    let q = base.within_budget(budget, level());
    let q = w.interner.intern(&q);
    if !core::ptr::eq(q, POLICY.load()) {
        POLICY.publish(q);
    }
    STARTED.store(true, Ordering::Relaxed);
}

/// The background hook (every tick; holds no allocator lock): reads the
/// resident set, moves the pressure level, republishes on a change and,
/// under high pressure, gives back what is free. `visit_heaps(now, decay)`
/// visits every heap not busy (the background thread's visitor).
pub(crate) fn tick(now_ms: u64, visit_heaps: fn(u64, u64) -> usize) {
    let budget = budget_bytes();
    if budget == 0 {
        return;
    }
    let rss = hakmem_platform::resident_bytes().unwrap_or(0);
    let before = level();
    let after = before.next(rss, budget);
    LEVEL.store(u8::from(after == Pressure::High), Ordering::Relaxed);
    if after != before || !STARTED.load(Ordering::Relaxed) {
        republish(budget);
    }
    if rss >= budget / 16 * 13 {
        let _errno = hakmem_platform::ErrnoGuard::new();
        visit_heaps(now_ms, 0);
        ORPHANAGE.purge_idle::<Os>(now_ms, 0);
        POOL.trim(&PAGE_MAP);
        LARGE.trim(&PAGE_MAP, &cache_limits(POLICY.load()));
    }
}
