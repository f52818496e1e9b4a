//! Every synchronisation primitive this box uses, behind one module, as
//! crossbeam does: `core`'s atomics and the platform's spin lock in normal
//! builds, loom's under `--cfg loom`, so that the model checks in
//! `tests/loom.rs` run the crate's own code with every atomic access and
//! every lock acquisition visible to loom's scheduler.
//!
//! Loom's atomics and mutex cannot be created in a `const` context; items
//! that are `const fn` in normal builds are declared with
//! [`const_fn_unless_loom`], which drops the `const` under loom only. Normal
//! builds are unchanged.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU8, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicU32, AtomicU8, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use hakmem_platform::SpinLock;

/// The platform spin lock's interface over loom's mutex: a spin loop on a
/// `core` atomic would never yield to loom's scheduler.
#[cfg(loom)]
pub struct SpinLock<T>(loom::sync::Mutex<T>);

#[cfg(loom)]
impl<T> SpinLock<T> {
    /// A lock around `v`.
    pub fn new(v: T) -> Self {
        SpinLock(loom::sync::Mutex::new(v))
    }

    /// Takes the lock.
    pub fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
        self.0
            .lock()
            .expect("a loom model thread panicked holding a lock")
    }
}

#[cfg(loom)]
impl<T> core::fmt::Debug for SpinLock<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SpinLock")
    }
}

/// Declares a function that is a `const fn` in normal builds and a plain
/// `fn` under loom (whose primitives have no `const` constructors).
macro_rules! const_fn_unless_loom {
    ($(#[$m:meta])* $vis:vis fn $name:ident() -> $ret:ty $body:block) => {
        $(#[$m])*
        #[cfg(not(loom))]
        $vis const fn $name() -> $ret $body

        $(#[$m])*
        #[cfg(loom)]
        $vis fn $name() -> $ret $body
    };
}
pub(crate) use const_fn_unless_loom;
