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
//!   superslab is 2 MiB resident), nor do large mappings, and a cached
//!   large mapping serves requests down to 1/1.1 of its length (not
//!   1/1.25): the slack of a reused mapping stays resident while its block
//!   lives.
//!
//! Every background tick ([`tick`], every 10 ms under a budget) reads the
//! resident set (`/proc/self/statm`, three system calls) and updates the
//! pressure level (`policy_rcu::Pressure`: high from 3/4 of the budget,
//! calm again below 5/8). Under high pressure the policy keeps nothing
//! beyond use on the slab side (and decays within 80 ms). The large cache,
//! where the freed big blocks lie, is sized by the room instead
//! ([`large_room`]): what it holds plus what the resident set leaves below
//! the keep line (the budget less a 32nd), at most a 16th of the budget;
//! the room falls at once (the oldest cached blocks are purged first,
//! within the tick) and rises by a step a tick ([`next_room`]). So a
//! program whose live data leaves room keeps the big blocks it frees and
//! allocates again resident (under the old rule, which kept 2 MiB of them
//! and emptied every cache on every tick from 13/16 of the budget, a cache
//! filled to 80 % of the budget faulted its requests' buffers in again and
//! again). From the purge line (the budget less a 16th) each tick also
//! gives back what is free on the slab side: every heap not busy is
//! visited with decay 0 (empty slabs back to their superslabs, free slots
//! purged, empty superslabs to the pool), exited threads' free slots are
//! purged, and the pool is emptied. Heaps give back what their bins hold
//! beyond smaller caps at their next slow path (`Heap::sync_policy`).
//!
//! The learner publishes through [`publish`], so that its policies pass
//! through the same rule. Without a budget nothing here does anything.
//!
//! The ticks run on the background thread, which a single-threaded
//! process does not have (see `background.rs`): there the budget sizes the
//! caches and routes big blocks, but nothing reacts to pressure.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use hakmem_ace_learner::driver::Interner;
use hakmem_policy_rcu::budget::{room_step, MAX_LARGE_ROOM_SHARE};
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
/// The large cache's room, as last measured ([`large_room`];
/// `u64::MAX`: not measured yet).
static ROOM: AtomicU64 = AtomicU64::new(u64::MAX);
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
    let q = p.within_budget_room(budget, level(), room());
    let q = w.interner.intern(&q);
    POLICY.publish(q);
    STARTED.store(true, Ordering::Relaxed);
}

/// Republishes the wanted policy for the current level.
fn republish(budget: u64) {
    let mut w = wanted();
    let base = w.base.unwrap_or_else(crate::config::start_policy);
    let q = base.within_budget_room(budget, level(), room());
    let q = w.interner.intern(&q);
    if !core::ptr::eq(q, POLICY.load()) {
        POLICY.publish(q);
    }
    STARTED.store(true, Ordering::Relaxed);
}

/// The large cache's room as last measured (`None` before the first tick).
fn room() -> Option<u64> {
    match ROOM.load(Ordering::Relaxed) {
        u64::MAX => None,
        r => Some(r),
    }
}

/// The line the resident set is kept under: the budget less a 32nd, the
/// margin for what the program may fault in between two ticks.
pub(crate) fn keep_line(budget: u64) -> u64 {
    budget - budget / 32
}

/// The line from which every tick gives back everything free on the slab
/// side: the budget less a 16th.
pub(crate) fn purge_line(budget: u64) -> u64 {
    budget - budget / 16
}

/// The room of the large cache, quantised: what it holds dirty now
/// (`dirty`) plus what the resident set (`rss`, which includes it) has
/// left below the keep line; capped at a [`MAX_LARGE_ROOM_SHARE`]th of
/// the budget.
pub(crate) fn large_room(budget: u64, rss: u64, dirty: u64) -> u64 {
    let step = room_step(budget);
    let room = (dirty + keep_line(budget)).saturating_sub(rss);
    room.min(budget / MAX_LARGE_ROOM_SHARE) / step * step
}

/// The room after `old` (`u64::MAX`: none yet) when the measured room is
/// `measured`: it falls at once, but rises by at most one step a tick
/// (from a 64th of the budget at first), so that a resident set still
/// growing (a program filling its caches) does not overshoot the keep line
/// between two ticks with a cache sized to a room it is using up.
pub(crate) fn next_room(budget: u64, old: u64, measured: u64) -> u64 {
    let start = budget / 64 / room_step(budget) * room_step(budget);
    let ceiling = if old == u64::MAX {
        start
    } else {
        old + room_step(budget)
    };
    measured.min(ceiling)
}

/// The background hook (every tick; holds no allocator lock): reads the
/// resident set, moves the pressure level and the large cache's room,
/// republishes on a change and, close to the budget, gives back what is
/// free on the slab side.
///
/// The large cache, where most of a budget's free memory lies (blocks
/// above [`BUDGET_SLAB_MAX`]), keeps what fits below the keep line
/// ([`large_room`]): a program whose live data leaves room keeps its
/// freed big blocks resident for reuse instead of faulting them in again,
/// and when the room shrinks the oldest cached blocks are purged first
/// (least recently used), at once. `visit_heaps(now, decay)` visits every
/// heap not busy (the background thread's visitor).
pub(crate) fn tick(now_ms: u64, visit_heaps: fn(u64, u64) -> usize) {
    let budget = budget_bytes();
    if budget == 0 {
        return;
    }
    let rss = hakmem_platform::resident_bytes().unwrap_or(0);
    let dirty = LARGE.stats().dirty.1 as u64;
    let old_room = ROOM.load(Ordering::Relaxed);
    let room = next_room(budget, old_room, large_room(budget, rss, dirty));
    ROOM.store(room, Ordering::Relaxed);
    let before = level();
    let after = before.next(rss, budget);
    LEVEL.store(u8::from(after == Pressure::High), Ordering::Relaxed);
    if after != before || room != old_room || !STARTED.load(Ordering::Relaxed) {
        republish(budget);
    }
    let _errno = hakmem_platform::ErrnoGuard::new();
    if room < old_room {
        // the oldest cached blocks beyond the new room go now
        LARGE.maintain(&PAGE_MAP, &cache_limits(POLICY.load()));
    }
    if rss >= purge_line(budget) {
        visit_heaps(now_ms, 0);
        ORPHANAGE.purge_idle::<Os>(now_ms, 0);
        POOL.trim(&PAGE_MAP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_large_room_is_what_the_resident_set_leaves_below_the_keep_line() {
        let b = 128 * MIB;
        assert_eq!(keep_line(b), 124 * MIB);
        assert_eq!(purge_line(b), 120 * MIB);
        // 120 MiB resident of which 3 MiB cached: 7 MiB of room
        assert_eq!(large_room(b, 120 * MIB, 3 * MIB), 7 * MIB);
        // quantised down to 256 KiB
        assert_eq!(
            large_room(b, 120 * MIB + 100, 3 * MIB),
            7 * MIB - (256 << 10)
        );
        // over the keep line with nothing cached: none
        assert_eq!(large_room(b, 126 * MIB, 0), 0);
        // over it with a cache: the cache shrinks by the excess
        assert_eq!(large_room(b, 126 * MIB, 5 * MIB), 3 * MIB);
        // far below: capped at a 16th of the budget
        assert_eq!(large_room(b, 20 * MIB, 0), 8 * MIB);
    }

    #[test]
    fn the_room_falls_at_once_and_rises_a_step_a_tick() {
        let b = 128 * MIB;
        let step = room_step(b);
        // the first reading starts from a 64th of the budget at most
        assert_eq!(next_room(b, u64::MAX, 8 * MIB), 2 * MIB);
        assert_eq!(next_room(b, u64::MAX, MIB), MIB);
        // rising: one step a tick
        assert_eq!(next_room(b, 2 * MIB, 8 * MIB), 2 * MIB + step);
        let mut r = 2 * MIB;
        let mut ticks = 0;
        while r < 8 * MIB {
            r = next_room(b, r, 8 * MIB);
            ticks += 1;
        }
        assert_eq!((r, ticks), (8 * MIB, 24));
        // falling: at once
        assert_eq!(next_room(b, 8 * MIB, 0), 0);
        assert_eq!(next_room(b, 8 * MIB, 3 * MIB), 3 * MIB);
    }
}
