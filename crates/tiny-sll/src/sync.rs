//! The atomics this box uses, behind one name: `core`'s normally, loom's
//! when the crate is built with `--cfg loom` for the superslab box's model
//! checks (see `crates/superslab/tests/loom.rs`).

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
