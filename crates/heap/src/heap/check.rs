//! [`Heap::check`]: the whole heap, validated from its owner thread
//! (mimalloc's "expensive assertions" style). Allocates nothing.

use core::ptr::{self, NonNull};

use hakmem_pagemap::Entry;
use hakmem_superslab::{
    OwnedSuperslab, Slab, SlabRef, Superslab, SuperslabList, NO_CLASS, SLOT_SIZE, SUPERSLAB_SIZE,
};
use hakmem_tiny_sll::Block;

use super::{Heap, F_RETAINED, SS_FULL, SS_SPACE, S_CURRENT, S_FULL, S_PARTIAL};
use crate::classes::NCLASSES;
use crate::env::HeapEnv;

impl<E: HeapEnv> Heap<E> {
    /// Checks the heap's invariants (see the crate documentation), walking
    /// everything it holds; the first broken one is returned as a short
    /// description. Allocates nothing and changes nothing; meant for tests,
    /// proptest models and the facade's `HAKMEM_CHECK=1` slow-path hook.
    ///
    /// Checked, every pointer vetted against the page map before it is
    /// followed (so a corrupted link is reported, not dereferenced):
    /// * every superslab on `spaces` / `fulls` lies in a chunk whose
    ///   page-map entries carry this heap's tag, names this heap as its
    ///   owner, carries the list tag of the list it is on (so it is on
    ///   exactly one of them), has a free slot exactly when it is on
    ///   `spaces`, and passes [`OwnedSuperslab::check`]; each list is walked
    ///   at most its count + 1 links and must hold exactly its count;
    ///   `empties` is the number of empty superslabs on `spaces`;
    /// * every slab of those superslabs passes [`SlabHandle::check`] and is
    ///   in a known state: `CURRENT` only as its class's `current` slab,
    ///   `PARTIAL` (possibly `RETAINED`: then it has no live or remote block,
    ///   and its bytes add up to `empty_bytes`) exactly as many per class as
    ///   the class's partial list holds, or `FULL`;
    /// * `current[c]` is null or a slab record of a listed superslab, of
    ///   class `c`, in state `CURRENT`;
    /// * every slab on `partial[c]` is a slab record of a listed superslab,
    ///   of class `c`, `PARTIAL` (optionally `RETAINED`) and has a block to
    ///   hand out; the list holds exactly its count (so it is acyclic);
    /// * every block in `bins[c]` is 16-aligned, lies in a slot whose
    ///   page-map entry is `Entry::slot(tag, c)` of a listed superslab, is
    ///   the start of a carved block of a class-`c` slab there, and the bin
    ///   passes [`Bin::check`] (walked at most `cap` links); the blocks of a
    ///   class's bin are no more than its slabs count as used; bins of no
    ///   class stay disabled and empty.
    ///
    /// Bins are checked without the free mark (`Bin::check(None)`): blocks
    /// a refill moved into a bin were never freed and carry no mark.
    ///
    /// Not checked: the pending list (other threads push onto it
    /// concurrently) and superslabs this heap owns but lost from both lists
    /// (finding those would mean scanning the whole page map); a bin block
    /// in such a superslab is reported, since its list tag is cleared when
    /// it leaves a list.
    ///
    /// [`OwnedSuperslab::check`]: hakmem_superslab::OwnedSuperslab::check
    /// [`SlabHandle::check`]: hakmem_superslab::SlabHandle::check
    /// [`Bin::check`]: hakmem_tiny_sll::Bin::check
    pub fn check(&self) -> Result<(), &'static str> {
        let map = E::page_map();
        // Blocks counted as used, partial slabs and current slabs found, per
        // class, while walking the superslabs.
        let mut used = [0u64; NCLASSES];
        let mut partials = [0u32; NCLASSES];
        let mut currents = 0usize;
        let mut retained_bytes = 0usize;
        let mut empties = 0u32;
        for (list, list_tag) in [(&self.spaces, SS_SPACE), (&self.fulls, SS_FULL)] {
            let mut n = 0u32;
            let mut cur = list.first();
            while let Some(p) = cur {
                if n == list.len() {
                    return Err("heap: superslab list longer than its count (cyclic?)");
                }
                n += 1;
                let a = p.as_ptr() as usize;
                if !a.is_multiple_of(SUPERSLAB_SIZE)
                    || map.get(a) != Entry::slot(self.tag, NO_CLASS)
                {
                    return Err("heap: listed superslab not tagged with the heap's tag");
                }
                // SAFETY: the chunk's page-map entry carries our tag, so the
                // superslab is live and ours; the token lives for this
                // iteration only, and no other token or handle of it is held.
                let mut ss = unsafe { OwnedSuperslab::assume_owned(p) };
                if ss.list_tag() != list_tag {
                    return Err("heap: superslab's list tag disagrees with the list it is on");
                }
                let h = ss.header();
                if h.tag() != self.tag || !ptr::eq(h.owner(), &self.pending) {
                    return Err("heap: listed superslab names another owner");
                }
                if (list_tag == SS_FULL) != (ss.free_slots() == 0) {
                    return Err("heap: superslab on spaces/fulls disagrees with its free slots");
                }
                if ss.is_empty() {
                    empties += 1;
                }
                ss.check(map)?;
                for s in ss.slabs() {
                    // SAFETY: we own the superslab (above); this handle is
                    // the only one of the slab and lives for this iteration.
                    let sh = unsafe { s.handle() };
                    sh.check()?;
                    let class = sh.class() as usize;
                    if class >= NCLASSES {
                        return Err("heap: slab of a class the heap does not have");
                    }
                    used[class] += sh.used() as u64;
                    match sh.state() {
                        S_CURRENT => {
                            if self.current[class] != s.as_ptr() {
                                return Err("heap: a CURRENT slab is not its class's current slab");
                            }
                            currents += 1;
                        }
                        S_PARTIAL => partials[class] += 1,
                        st if st == S_PARTIAL | F_RETAINED => {
                            if !sh.is_releasable() {
                                return Err("heap: retained empty slab has live or remote blocks");
                            }
                            partials[class] += 1;
                            retained_bytes += sh.span() as usize * SLOT_SIZE;
                        }
                        S_FULL => {}
                        _ => return Err("heap: slab in an unknown state"),
                    }
                }
                cur = SuperslabList::next_of(&mut ss);
            }
            if n != list.len() {
                return Err("heap: superslab list shorter than its count");
            }
        }
        if empties != self.empties {
            return Err("heap: empties disagrees with the empty superslabs on spaces");
        }
        if retained_bytes != self.empty_bytes {
            return Err("heap: empty_bytes disagrees with the retained slabs");
        }

        for c in 0..NCLASSES {
            let cur = self.current[c];
            if !cur.is_null() {
                let s = self.owned_slab(cur)?;
                // SAFETY: `s` is a slab record of a superslab we own
                // (vetted just above); the handle lives for this block.
                let sh = unsafe { s.handle() };
                if sh.class() as usize != c || sh.state() != S_CURRENT {
                    return Err("heap: current slab of another class or not CURRENT");
                }
            }
        }
        if self.current.iter().filter(|p| !p.is_null()).count() != currents {
            return Err("heap: a current slab is not CURRENT");
        }

        for (c, list) in self.partial.iter().enumerate() {
            let mut n = 0u32;
            let mut next = list.first();
            while let Some(s) = next {
                if n == list.len() {
                    return Err("heap: partial list longer than its count (cyclic?)");
                }
                n += 1;
                let s = self.owned_slab(s.as_ptr())?;
                {
                    // SAFETY: `s` is a slab record of a superslab we own
                    // (vetted just above); the handle is dropped before the
                    // list reads the slab's link.
                    let sh = unsafe { s.handle() };
                    if sh.class() as usize != c {
                        return Err("heap: partial slab of another class");
                    }
                    if sh.state() & !F_RETAINED != S_PARTIAL {
                        return Err("heap: slab on a partial list is not PARTIAL");
                    }
                    if sh.available() == 0 {
                        return Err("heap: partial slab has no block to hand out");
                    }
                }
                next = list.next_after(s);
            }
            if n != list.len() {
                return Err("heap: partial list shorter than its count");
            }
            if n != partials[c] {
                return Err("heap: a PARTIAL slab is on no partial list");
            }
        }

        for (c, bin) in self.bins.iter().enumerate() {
            if c >= NCLASSES {
                if bin.cap() != 0 || bin.room() != 0 || !bin.head().is_null() {
                    return Err("bin: a bin of no class is enabled");
                }
                continue;
            }
            let mut n = 0u32;
            let mut b = bin.head();
            while !b.is_null() {
                if n == bin.cap() {
                    return Err("bin: list longer than its capacity (cyclic or overfull)");
                }
                n += 1;
                self.vet_bin_block(b, c)?;
                // SAFETY: `b` is a block of a slab we own (vetted just
                // above), at least 16 bytes; only we touch blocks in our
                // bins.
                b = unsafe { (*b).next };
            }
            // Every link is vetted: the bin's own walk is safe now.
            bin.check(None)?;
            if n as u64 > used[c] {
                return Err("bin: holds more blocks than its class's slabs count as used");
            }
        }
        Ok(())
    }

    /// `p` (from `current` or a partial list) as a slab record of a
    /// superslab on this heap's lists.
    fn owned_slab(&self, p: *mut Slab) -> Result<SlabRef, &'static str> {
        let a = p as usize;
        if E::page_map().get(a) != Entry::slot(self.tag, NO_CLASS) {
            return Err("heap: slab pointer outside the heap's superslab headers");
        }
        // SAFETY: the chunk's header slot carries our tag, so the superslab
        // is live and ours; no other token of it is held.
        let ss = unsafe {
            OwnedSuperslab::assume_owned(NonNull::new_unchecked(
                Superslab::of(p.cast()) as *mut Superslab
            ))
        };
        if ss.list_tag() != SS_SPACE && ss.list_tag() != SS_FULL {
            return Err("heap: slab of a superslab on none of the heap's lists");
        }
        let found = ss.slabs().find(|s| s.as_ptr() == p);
        found.ok_or("heap: pointer is not a slab record of its superslab")
    }

    /// Checks that `b`, found in `bins[c]`, is a carved block start of a
    /// class-`c` slab in a superslab on this heap's lists.
    fn vet_bin_block(&self, b: *mut Block, c: usize) -> Result<(), &'static str> {
        let a = b as usize;
        if !a.is_multiple_of(16) {
            return Err("bin: misaligned block");
        }
        if E::page_map().get(a) != Entry::slot(self.tag, c as u8) {
            return Err("bin: block outside the heap's superslabs of its class");
        }
        // SAFETY: the block's slot carries our tag, so its superslab is live
        // and ours; no other token of it is held.
        let ss = unsafe {
            OwnedSuperslab::assume_owned(NonNull::new_unchecked(
                Superslab::of(b.cast()) as *mut Superslab
            ))
        };
        if ss.list_tag() != SS_SPACE && ss.list_tag() != SS_FULL {
            return Err("bin: block of a superslab on none of the heap's lists");
        }
        let Some(slab) = ss.header().slab_of(b.cast()) else {
            return Err("bin: block in a free slot");
        };
        // SAFETY: the slab lies in a superslab we own (above); this handle
        // is the only one and lives for this function.
        let sh = unsafe { SlabRef::from_raw(slab as *const Slab as *mut Slab).handle() };
        if sh.class() as usize != c {
            return Err("bin: block of a slab of another class");
        }
        if !sh.is_block_start(b.cast()) {
            return Err("bin: pointer is not the start of a carved block");
        }
        Ok(())
    }
}
