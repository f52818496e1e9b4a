//! The platform box: every OS call hakmem makes goes through here.
//!
//! Layers above never call `libc` for memory management directly; they are
//! written against the [`Pal`] trait (platform abstraction layer, as in
//! snmalloc), so tests can substitute a counting or failing platform.
//!
//! Nothing in this crate allocates through the global allocator: it is used
//! from inside `malloc`.
#![cfg_attr(not(test), no_std)]

mod errno;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
mod fatal;
mod os;
mod spin;
mod threads;

pub use errno::{errno, set_errno, ErrnoGuard};
pub use fatal::{fatal, fatal_at, Line};
pub use os::{
    address_space_limit, resident_bytes, thp_available, Linux, Pal, CHUNK_SIZE, PAGE_SIZE,
};
pub use spin::{SpinGuard, SpinLock};
pub use threads::{single_threaded, thread_id};
