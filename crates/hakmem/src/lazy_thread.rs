//! A helper thread of the allocator (the learner, the background
//! maintenance thread) started lazily: asked for at set-up, spawned by the
//! next slow path that holds no lock (the spawn allocates), and asked for
//! again in a forked child, where it does not exist.
//!
//! States: `OFF` → `WANTED` (`want`) → `STARTING` (one caller wins the
//! CAS) → `RUNNING`, or `OFF` if the spawn failed. The fork handler moves
//! `RUNNING`/`STARTING` back to `WANTED` with atomics only.

use core::sync::atomic::{AtomicU8, Ordering};

const OFF: u8 = 0;
const WANTED: u8 = 1;
const STARTING: u8 = 2;
const RUNNING: u8 = 3;

/// One lazily started thread.
#[derive(Debug)]
pub(crate) struct LazyThread {
    state: AtomicU8,
    name: &'static str,
    stack: usize,
}

impl LazyThread {
    /// A thread named `name` with `stack` bytes of stack (0: the default).
    pub(crate) const fn new(name: &'static str, stack: usize) -> LazyThread {
        LazyThread {
            state: AtomicU8::new(OFF),
            name,
            stack,
        }
    }

    /// Asks for the thread (at set-up).
    pub(crate) fn want(&self) {
        let _ = self
            .state
            .compare_exchange(OFF, WANTED, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// True while it is wanted and not started: the cheap test a slow path
    /// makes before [`LazyThread::start`].
    #[inline]
    pub(crate) fn wanted(&self) -> bool {
        self.state.load(Ordering::Relaxed) == WANTED
    }

    /// Spawns the thread running `run`, unless another caller is doing it
    /// or it runs. Only from a slow path that holds no lock.
    #[cold]
    pub(crate) fn start(&self, run: fn()) {
        if self
            .state
            .compare_exchange(WANTED, STARTING, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let mut b = std::thread::Builder::new().name(self.name.into());
        if self.stack != 0 {
            b = b.stack_size(self.stack);
        }
        let spawned = b.spawn(run);
        self.state.store(
            if spawned.is_ok() { RUNNING } else { OFF },
            Ordering::Release,
        );
    }

    /// In a forked child: the thread did not survive; it is wanted again
    /// (atomics only: this runs in the child's fork handler).
    pub(crate) fn after_fork_in_child(&self) {
        let s = &self.state;
        let _ = s.compare_exchange(RUNNING, WANTED, Ordering::AcqRel, Ordering::Relaxed);
        let _ = s.compare_exchange(STARTING, WANTED, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// True once the thread was spawned (and not lost to a fork).
    pub(crate) fn running(&self) -> bool {
        self.state.load(Ordering::Acquire) == RUNNING
    }
}
