//! Owner-side intrusive lists of slabs and superslabs.
//!
//! They hold plain pointers: the owner alone links and unlinks, through the
//! ownership types, so no synchronisation is needed.

use core::ptr::{self, NonNull};

use crate::slab::{Slab, SlabHandle, SlabRef};
use crate::superslab::{OwnedSuperslab, Superslab};

/// A doubly linked list of slabs (e.g. one class's partial slabs).
#[derive(Debug)]
pub struct SlabList {
    head: *mut Slab,
    tail: *mut Slab,
    len: u32,
}

impl Default for SlabList {
    fn default() -> Self {
        Self::new()
    }
}

impl SlabList {
    /// An empty list.
    pub const fn new() -> Self {
        SlabList {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
            len: 0,
        }
    }

    /// Number of slabs on the list.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// The first slab.
    pub fn first(&self) -> Option<SlabRef> {
        // SAFETY: listed slabs are live slab records.
        (!self.head.is_null()).then(|| unsafe { SlabRef::from_raw(self.head) })
    }

    /// Links a slab at the front. It must be on no list.
    pub fn push_front(&mut self, h: &mut SlabHandle<'_>) {
        let me = h.slab_ref().as_ptr();
        let old = self.head;
        {
            let (next, prev) = h.links();
            *next = old;
            *prev = ptr::null_mut();
        }
        if !old.is_null() {
            // SAFETY: listed slabs belong to the same owner as `h`, who holds
            // no other handle to them right now.
            let mut o = unsafe { SlabRef::from_raw(old).handle() };
            *o.links().1 = me;
        } else {
            self.tail = me;
        }
        self.head = me;
        self.len += 1;
    }

    /// Links a slab at the back. It must be on no list.
    pub fn push_back(&mut self, h: &mut SlabHandle<'_>) {
        let me = h.slab_ref().as_ptr();
        let old = self.tail;
        {
            let (next, prev) = h.links();
            *next = ptr::null_mut();
            *prev = old;
        }
        if !old.is_null() {
            // SAFETY: the old tail is a listed slab, so it belongs to the
            // same owner as `h`, who holds no other handle to it right now.
            let mut o = unsafe { SlabRef::from_raw(old).handle() };
            *o.links().0 = me;
        } else {
            self.head = me;
        }
        self.tail = me;
        self.len += 1;
    }

    /// Unlinks a slab that is on this list.
    pub fn remove(&mut self, h: &mut SlabHandle<'_>) {
        let me = h.slab_ref().as_ptr();
        let (next, prev) = {
            let (n, p) = h.links();
            let r = (*n, *p);
            *n = ptr::null_mut();
            *p = ptr::null_mut();
            r
        };
        if prev.is_null() {
            debug_assert_eq!(self.head, me);
            self.head = next;
        } else {
            // SAFETY: neighbours are listed slabs of the same owner.
            *unsafe { SlabRef::from_raw(prev).handle() }.links().0 = next;
        }
        if !next.is_null() {
            // SAFETY: the next neighbour is a listed slab of the same owner,
            // and no other handle to it is alive during this statement.
            *unsafe { SlabRef::from_raw(next).handle() }.links().1 = prev;
        } else {
            debug_assert_eq!(self.tail, me);
            self.tail = prev;
        }
        self.len -= 1;
    }

    /// The slab after `s`, which must be on this list.
    pub fn next_after(&self, s: SlabRef) -> Option<SlabRef> {
        // SAFETY: the owner reads the link of a slab on its own list and holds
        // no other handle to it.
        let next = *unsafe { s.handle() }.links().0;
        // SAFETY: listed slabs are live slab records.
        (!next.is_null()).then(|| unsafe { SlabRef::from_raw(next) })
    }

    /// Iterates the slabs (the caller must not unlink while iterating).
    pub fn iter(&self) -> impl Iterator<Item = SlabRef> + '_ {
        let mut cur = self.head;
        core::iter::from_fn(move || {
            if cur.is_null() {
                return None;
            }
            // SAFETY: listed slabs are live slab records.
            let r = unsafe { SlabRef::from_raw(cur) };
            // SAFETY: the owner iterates its own list and holds no other
            // handle to this slab.
            cur = *unsafe { r.handle() }.links().0;
            Some(r)
        })
    }
}

/// A doubly linked list of owned superslabs.
#[derive(Debug)]
pub struct SuperslabList {
    head: *mut Superslab,
    len: u32,
}

impl Default for SuperslabList {
    fn default() -> Self {
        Self::new()
    }
}

impl SuperslabList {
    /// An empty list.
    pub const fn new() -> Self {
        SuperslabList {
            head: ptr::null_mut(),
            len: 0,
        }
    }

    /// Number of superslabs.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// Links a superslab at the front, tagging it with `tag` (the owner's
    /// name for this list). The token goes back to the caller, who may drop
    /// it: the list keeps the pointer.
    pub fn push_front(&mut self, ss: &mut OwnedSuperslab, tag: u8) {
        let me = ss.base() as *mut Superslab;
        let old = self.head;
        {
            let (next, prev, t) = ss.links();
            *next = old;
            *prev = ptr::null_mut();
            *t = tag;
        }
        if !old.is_null() {
            // SAFETY: listed superslabs are owned by the same owner.
            let mut o = unsafe { OwnedSuperslab::assume_owned(NonNull::new_unchecked(old)) };
            *o.links().1 = me;
        }
        self.head = me;
        self.len += 1;
    }

    /// Unlinks a superslab that is on this list.
    pub fn remove(&mut self, ss: &mut OwnedSuperslab) {
        let me = ss.base() as *mut Superslab;
        let (next, prev) = {
            let (n, p, t) = ss.links();
            let r = (*n, *p);
            *n = ptr::null_mut();
            *p = ptr::null_mut();
            *t = 0;
            r
        };
        if prev.is_null() {
            debug_assert_eq!(self.head, me);
            self.head = next;
        } else {
            // SAFETY: neighbours are superslabs of the same owner.
            *unsafe { OwnedSuperslab::assume_owned(NonNull::new_unchecked(prev)) }
                .links()
                .0 = next;
        }
        if !next.is_null() {
            // SAFETY: the next neighbour is a (non-null) superslab on this
            // list, so it has the same owner; the token lives for this
            // statement only.
            *unsafe { OwnedSuperslab::assume_owned(NonNull::new_unchecked(next)) }
                .links()
                .1 = prev;
        }
        self.len -= 1;
    }

    /// Removes and returns the first superslab.
    pub fn pop_front(&mut self) -> Option<OwnedSuperslab> {
        let h = NonNull::new(self.head)?;
        // SAFETY: listed superslabs are ours.
        let mut ss = unsafe { OwnedSuperslab::assume_owned(h) };
        self.remove(&mut ss);
        Some(ss)
    }

    /// The first superslab.
    pub fn first(&self) -> Option<NonNull<Superslab>> {
        NonNull::new(self.head)
    }

    /// The superslab after `ss` on its list.
    pub fn next_of(ss: &mut OwnedSuperslab) -> Option<NonNull<Superslab>> {
        NonNull::new(*ss.links().0)
    }
}
