//! The platform box: every OS call hakmem makes goes through here.
//!
//! Layers above never call `libc` for memory management directly; they are
//! written against the [`Pal`] trait (platform abstraction layer, as in
//! snmalloc), so tests can substitute a counting or failing platform.
//!
//! The other OS services the crates above use are here too, one module per
//! thing owned: [`clock`], [`env`], [`file`], [`process`], [`random`],
//! [`symbol`], [`thread`], [`usage`]. No crate outside `platform` (and the
//! C ABI crate `hakmem-preload`) calls a `libc` function: the
//! `no_direct_os_calls` test of this crate checks that.
//!
//! Nothing in this crate allocates through the global allocator: it is used
//! from inside `malloc`.
#![cfg_attr(not(test), no_std)]

pub mod clock;
pub mod env;
mod errno;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
mod fatal;
pub mod file;
mod os;
pub mod process;
pub mod random;
mod spin;
pub mod symbol;
pub mod thread;
pub mod usage;

pub use errno::{errno, set_errno, ErrnoGuard};
pub use fatal::{fatal, fatal_at, Line};
pub use os::{
    address_space_limit, free_huge_blocks, parse_buddyinfo, resident_bytes, thp_available,
    thp_mode, Linux, Pal, ThpDefrag, ThpEnabled, ThpMode, CHUNK_SIZE, PAGE_SIZE,
};
pub use spin::{SpinGuard, SpinLock};
pub use thread::{single_threaded, thread_id};
