//! `fork` safety: every global lock is held across `fork`, so the child
//! never inherits a lock some other (now nonexistent) thread held.
//!
//! In the child, heaps of the parent's other threads stay marked in use:
//! their memory is not reachable by the child's threads except through
//! frees, which work as remote frees. The forking thread keeps its heap.
//!
//! # `fork` from a signal handler
//!
//! `fork` is async-signal-safe in a single-threaded process, and glibc's
//! `fork` still runs the `pthread_atfork` handlers there (it only skips its
//! own malloc locks). A handler's `fork` can interrupt this thread while it
//! holds a hakmem lock in a slow path, or while it is inside another
//! `fork`'s prepare handler holding some of the fork locks; waiting for
//! those locks would wait for ourselves, forever. So:
//!
//! * **Single-threaded process** ([`single_threaded`], glibc's own test):
//!   prepare takes no lock at all, as glibc does for its arenas. No other
//!   thread exists to hold one, so the child inherits exactly the state the
//!   forking thread had: if the signal interrupted a hakmem slow path, the
//!   child holds that path's lock and half-updated structures, and the
//!   interrupted code finishes them (and unlocks) in the child too once the
//!   handler returns. Until then the child, like glibc's, may only call
//!   async-signal-safe functions (`_exit`, `execve`, ...): a `malloc` there
//!   could wait for the lock its own interrupted code holds. The parent is
//!   not affected: it never waited, and its interrupted call completes.
//! * **Nested prepare on the thread that is already preparing** (a signal
//!   handler forking inside the prepare or the after handler of an outer
//!   `fork`): the thread that runs the handlers is recorded ([`OWNER`],
//!   set by compare-and-swap before any lock is taken, so there is no
//!   window), a nested level only counts itself ([`NESTED`]) and takes and
//!   releases nothing; the outermost level releases what it took. In a
//!   multi-threaded process such a nested child may inherit locks other
//!   threads held (POSIX does not make `fork` async-signal-safe there); the
//!   parent never waits for itself.
//! * Another thread that forks meanwhile waits until the owner's `fork` is
//!   over, then takes the locks itself.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use hakmem_platform::{single_threaded, thread_id, SpinLock};

use crate::state::{LARGE, ORPHANAGE, PAGE_MAP, POOL};

/// Registers the handlers (once, at the end of the allocator's set-up).
pub(crate) fn register() {
    static DONE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if DONE.swap(true, core::sync::atomic::Ordering::AcqRel) {
        return;
    }
    hakmem_platform::process::at_fork(prepare, after, after_in_child);
}

// The order matches the nesting in the slow paths: the fallback heap is
// taken before anything else, the page map's growth lock after everything.
fn for_each_lock(f: impl Fn(&dyn ForkLock)) {
    // the memory budget's wanted policy: its holder (the background or the
    // learner thread) allocates under it, so it comes before every
    // allocator lock
    f(crate::budget::fork_lock());
    // a visitor holds it while it holds another thread's heap (first: it
    // is taken with no other lock held)
    f(crate::background::fork_lock());
    for l in crate::sites::fork_locks() {
        f(l);
    }
    f(crate::thread::fork_lock());
    f(crate::state::REGISTRY.fork_lock());
    f(ORPHANAGE.fork_lock());
    f(POOL.fork_lock());
    f(LARGE.fork_lock());
    f(PAGE_MAP.fork_lock());
}

trait ForkLock {
    fn take(&self);
    fn release(&self);
    #[cfg(test)]
    fn is_held(&self) -> bool;
}

impl<T> ForkLock for SpinLock<T> {
    fn take(&self) {
        self.lock_for_fork();
    }
    fn release(&self) {
        // SAFETY: taken by `prepare` in this (or the parent) process.
        unsafe { self.force_unlock() };
    }
    #[cfg(test)]
    fn is_held(&self) -> bool {
        self.is_locked()
    }
}

/// The thread running the fork handlers now ([`thread_id`]), 0 when none.
/// The child of `fork` sees its own thread here (same id as the parent's
/// forking thread), so its after handler matches.
static OWNER: AtomicUsize = AtomicUsize::new(0);
/// How many prepare handlers of [`OWNER`] run nested inside the outermost
/// one (they took nothing). 0 whenever [`OWNER`] is 0.
static NESTED: AtomicUsize = AtomicUsize::new(0);
/// Whether the outermost prepare took the locks (false: single-threaded).
static LOCKED: AtomicBool = AtomicBool::new(false);

extern "C" fn prepare() {
    let me = thread_id();
    loop {
        match OWNER.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => break,
            Err(owner) if owner == me => {
                // nested inside our own prepare or after handler: the outer
                // level holds (or skipped) the locks
                NESTED.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(_) => {
                // another thread is forking: wait until its fork is over
                hakmem_platform::thread::yield_now();
            }
        }
    }
    let take = !single_threaded();
    LOCKED.store(take, Ordering::Relaxed);
    if take {
        for_each_lock(|l| l.take());
    }
}

/// Ends one level of [`prepare`]: a nested level only uncounts itself; the
/// outermost releases what it took and gives up [`OWNER`].
fn finish() {
    if NESTED.load(Ordering::Relaxed) > 0 {
        NESTED.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    if LOCKED.load(Ordering::Relaxed) {
        for_each_lock(|l| l.release());
        LOCKED.store(false, Ordering::Relaxed);
    }
    OWNER.store(0, Ordering::Release);
}

extern "C" fn after() {
    finish();
}

extern "C" fn after_in_child() {
    finish();
    // atomics only: no thread of the parent's learner exists here
    crate::learner::after_fork_in_child();
    // the child's thread has a kernel id of its own
    crate::tls::forget_tid();
    crate::ring::after_fork_in_child();
    crate::background::after_fork_in_child();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn any_locked() -> bool {
        let locked = core::cell::Cell::new(false);
        for_each_lock(|l| locked.set(locked.get() | l.is_held()));
        locked.get()
    }

    /// A prepare handler nested in another on the same thread (a signal
    /// handler's `fork` inside a `fork`) returns at once, and after both
    /// levels every lock is free again and the handlers are reusable.
    #[test]
    fn nested_prepare_on_the_same_thread_does_not_wait_for_itself() {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // no allocation between prepare and the last after: the locks
            // are held
            prepare();
            let outer_took = any_locked();
            prepare();
            after();
            let held_after_inner = any_locked();
            after();
            let held_at_end = any_locked();
            let owner = OWNER.load(Ordering::Relaxed);
            tx.send((outer_took, held_after_inner, held_at_end, owner))
                .unwrap();
        });
        let (outer_took, held_after_inner, held_at_end, owner) = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("a nested prepare waited for the locks its own thread holds");
        // the test binary has threads: the outer level locks
        assert!(!single_threaded());
        assert!(outer_took, "the outer prepare took the locks");
        assert!(
            held_after_inner,
            "the inner after released the outer's locks"
        );
        assert!(!held_at_end, "a lock stayed held after the outer after");
        assert_eq!(owner, 0);
        // and a second fork cycle works
        prepare();
        after();
        assert!(!any_locked());
    }
}
