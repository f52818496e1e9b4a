//! `fork` safety: every global lock is held across `fork`, so the child
//! never inherits a lock some other (now nonexistent) thread held.
//!
//! In the child, heaps of the parent's other threads stay marked in use:
//! their memory is not reachable by the child's threads except through
//! frees, which work as remote frees. The forking thread keeps its heap.

use hakmem_platform::SpinLock;

use crate::state::{LARGE, ORPHANAGE, PAGE_MAP, POOL};

/// Registers the handlers (once, at the end of the allocator's set-up).
pub(crate) fn register() {
    static DONE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if DONE.swap(true, core::sync::atomic::Ordering::AcqRel) {
        return;
    }
    // SAFETY: registering plain extern "C" functions.
    unsafe { libc::pthread_atfork(Some(prepare), Some(after), Some(after_in_child)) };
}

// The order matches the nesting in the slow paths: the fallback heap is
// taken before anything else, the page map's growth lock after everything.
fn for_each_lock(f: impl Fn(&dyn ForkLock)) {
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
}

impl<T> ForkLock for SpinLock<T> {
    fn take(&self) {
        self.lock_for_fork();
    }
    fn release(&self) {
        // SAFETY: taken by `prepare` in this (or the parent) process.
        unsafe { self.force_unlock() };
    }
}

extern "C" fn prepare() {
    for_each_lock(|l| l.take());
}

extern "C" fn after() {
    for_each_lock(|l| l.release());
}

extern "C" fn after_in_child() {
    for_each_lock(|l| l.release());
    crate::learner::after_fork_in_child();
}
