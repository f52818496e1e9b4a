//! `HAKMEM_CHECK`: whole-structure validation on slow paths (mimalloc's
//! "expensive assertions", switchable at run time).
//!
//! When on, every heap runs `Heap::check` on entry to each refill, before
//! each spill of a full bin and before it is given back at thread exit (the
//! heap box's hooks, through [`HeapEnv::checking`]); the large tier runs
//! `Large::check` on each large allocation and free (`large::check_large`).
//! This module only holds the switch and the report, below every layer
//! that uses them. A failure prints
//! `hakmem: invariant broken: <what>` and aborts (whatever
//! `HAKMEM_ON_ERROR` says: the allocator's own state is broken, so carrying
//! on is never safe).
//!
//! Off (the default), the fast paths are unchanged: the hooks sit on slow
//! paths only, each one load of [`ON`] and a predictable branch.
//!
//! [`HeapEnv::checking`]: hakmem_heap::HeapEnv::checking

use core::sync::atomic::{AtomicBool, Ordering};

/// Checks on: set by the set-up from `HAKMEM_CHECK`; before it runs, the
/// build's default (on with the `check` feature).
static ON: AtomicBool = AtomicBool::new(cfg!(feature = "check"));

/// The set-up's decision: `HAKMEM_CHECK` if set, else the build's default.
pub(crate) fn set(opt: Option<bool>) {
    ON.store(opt.unwrap_or(cfg!(feature = "check")), Ordering::Relaxed);
}

/// True when slow paths validate.
#[inline(always)]
pub(crate) fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Reports a broken invariant (`hakmem: invariant broken: <area><what>`, one
/// line, through the platform's fatal report) and aborts.
#[cold]
#[inline(never)]
pub(crate) fn invariant_broken(area: &str, what: &str) -> ! {
    // `fatal` prints "hakmem: " and one message: build it on the stack.
    let mut buf = [0u8; 192];
    let mut n = 0;
    for part in ["invariant broken: ", area, what] {
        let b = part.as_bytes();
        let k = b.len().min(buf.len() - n);
        buf[n..n + k].copy_from_slice(&b[..k]);
        n += k;
    }
    let msg = match core::str::from_utf8(&buf[..n]) {
        Ok(s) => s,
        // cut inside a character: keep the whole ones
        Err(e) => core::str::from_utf8(&buf[..e.valid_up_to()]).unwrap_or("invariant broken"),
    };
    hakmem_platform::fatal(msg)
}
