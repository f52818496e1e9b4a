//! The tiny box: size classes up to 1 KiB and the thread-local singly linked
//! free lists (TLS SLL) that make `malloc` a pop and `free` a push.
//!
//! * [`classes`]: the tiny size-class table (O(1) size → class lookup).
//! * [`Block`], [`Chain`]: a free block is an intrusive list node; a chain is
//!   a detached run of them, the unit in which blocks move between a thread's
//!   lists and the slabs below.
//! * [`Bin`]: one class's free list with a capacity. A thread owns one bin per
//!   class; nothing here is atomic or locked, because only the owner touches it.
//!
//! The box knows nothing about where blocks come from: the superslab box
//! carves them, the facade decides when to refill and spill.
#![cfg_attr(not(test), no_std)]

pub mod classes;
mod list;
mod sync;

pub use classes::{tiny_class, tiny_size, TINY_CLASSES, TINY_MAX};
pub use list::{
    Bin, Block, Chain, Mark, BIN_HEAD_OFFSET, BIN_ROOM_OFFSET, BIN_TEST_LIMIT_OFFSET,
    BIN_TEST_MUL_OFFSET, BLOCK_MARK_OFFSET, BLOCK_NEXT_OFFSET,
};
