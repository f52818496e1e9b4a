//! The superslab box: where tiny and mid blocks come from.
//!
//! A **superslab** is one 2 MiB, 2 MiB-aligned chunk. Its first 64 KiB slot
//! holds the [`Superslab`] header; the other 31 slots are carved into
//! **slabs**, each a run of one or more slots holding blocks of one class.
//! `ptr & !(2 MiB - 1)` finds the header of any block in one AND, and
//! `(ptr >> 16) & 31` its slot. The page map mirrors each slot's owner tag
//! and class, so the free fast path needs no header read at all.
//!
//! # Ownership, remote drain and bind
//!
//! Every live superslab has exactly one owner at a time: a thread's heap, or
//! the [`Orphanage`] after its thread exited. Only the owner touches a slab's
//! non-atomic state (its local free list, counters, list links). Ownership is
//! a type: an [`OwnedSuperslab`] is the token for a whole superslab, and a
//! [`SlabHandle`] — obtainable only from one, or by an `unsafe` assertion of
//! ownership on a [`SlabRef`] — is the only way to take blocks from a slab,
//! give them back, or drain its remote frees.
//!
//! A thread that frees a block it does not own calls [`remote_free`], which
//! pushes the block on the slab's lock-free MPSC stack. The first such push
//! after the owner last looked also puts the slab on the owner's
//! [`PendingList`], so the owner finds exactly the slabs that have remote
//! frees, in its slow path, without scanning. The pusher's last access to the
//! superslab is the push itself, and a slab waiting in a pending list is never
//! recycled; together these make it safe for the owner to release a
//! superslab to the OS as soon as every block in it is free.
//!
//! Exiting threads give their superslabs to the [`Orphanage`]; other threads
//! adopt them when they need memory. Empty superslabs go to the
//! [`SuperslabPool`], which keeps a bounded number and unmaps the rest.
#![cfg_attr(not(test), no_std)]

mod lists;
mod orphanage;
mod pool;
mod remote;
mod slab;
mod superslab;
mod sync;

pub use lists::{SlabList, SuperslabList};
pub use orphanage::Orphanage;
pub use pool::{HugeMode, PoolLimits, PoolStats, SuperslabPool, MAX_PREPARED};
pub use remote::{remote_claim, remote_free, PendingList, RemoteBatch, MAX_SLAB_BLOCKS};
pub use slab::{carve_limit, Put, Slab, SlabHandle, SlabRef};
pub use superslab::{OwnedSuperslab, Superslab, HEADER_END};

/// Size and alignment of a superslab: one page-map chunk.
pub const SUPERSLAB_SIZE: usize = hakmem_platform::CHUNK_SIZE;
/// log2 of [`SLOT_SIZE`].
pub const SLOT_SHIFT: u32 = 16;
/// A slot: the unit slabs are made of.
pub const SLOT_SIZE: usize = 1 << SLOT_SHIFT;
/// Slots per superslab (slot 0 holds the header).
pub const SLOTS: usize = SUPERSLAB_SIZE / SLOT_SIZE;
/// The class byte of a slot that holds no blocks.
pub const NO_CLASS: u8 = hakmem_pagemap::Entry::NO_CLASS;
/// The largest slab, in slots.
pub const MAX_SPAN: usize = SLOTS - 1;

/// How a slab lays its blocks out: blocks of at most half a slot never
/// straddle a slot boundary — each slot holds `SLOT_SIZE / size` of them from
/// its start, and the rest of the slot stays unused (never touched, so never
/// resident) — and this returns that count. Bigger blocks are laid out back
/// to back from the slab's start (returns 0).
///
/// Slot-aligned blocks let anyone tell a block start from the pointer's
/// offset in its slot alone, which is what the free fast path checks.
#[inline]
pub const fn blocks_per_slot(block_size: usize) -> usize {
    if block_size <= SLOT_SIZE / 2 {
        SLOT_SIZE / block_size
    } else {
        0
    }
}

/// The address of block `i` of a slab starting at `data`.
#[inline]
pub const fn block_addr(data: usize, block_size: usize, i: usize) -> usize {
    match blocks_per_slot(block_size) {
        0 => data + i * block_size,
        n => data + (i / n) * SLOT_SIZE + (i % n) * block_size,
    }
}

/// How many blocks a slab of `span` slots holds.
#[inline]
pub const fn slab_capacity(block_size: usize, span: usize) -> usize {
    match blocks_per_slot(block_size) {
        0 => span * SLOT_SIZE / block_size,
        n => span * n,
    }
}
