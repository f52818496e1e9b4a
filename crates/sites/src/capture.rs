//! The Rust capture API: allocation functions whose site is their caller's
//! `Location` (`#[track_caller]`), and `Box`/`Vec`-like owners built on
//! them.
//!
//! The box does not depend on the allocator: an allocator that can record
//! sites implements [`SiteAlloc`]; the facade wraps it as
//! `hakmem::alloc_cs(layout)` / `hakmem::free_cs(ptr, layout)`.
//! [`Profiled`] implements it over any [`GlobalAlloc`] (the system
//! allocator in this crate's tests and demo) by keeping the stamp in a
//! 16-byte header before each block.
//!
//! `#[track_caller]` propagates: a `#[track_caller]` function calling
//! [`alloc_cs`] records *its* caller, so helpers stay transparent. (It does
//! not work through `GlobalAlloc::alloc`, whose caller is always the
//! standard library.)

use core::alloc::{GlobalAlloc, Layout};
use core::fmt;
use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ops::{Deref, DerefMut};
use core::ptr::{self, NonNull};

use crate::id::SiteId;
use crate::os::thread_hint;
use crate::table::{SiteTable, Stamp};

/// An allocator that attributes each allocation to a site.
///
/// # Safety
///
/// Implementations must behave like [`GlobalAlloc::alloc`] and
/// [`GlobalAlloc::dealloc`]: `alloc_at` returns null or a block of at least
/// `layout.size()` bytes aligned to `layout.align()`, valid until passed to
/// `dealloc_at` with the same layout.
pub unsafe trait SiteAlloc {
    /// Allocates a block for `layout`, recorded at `site`.
    ///
    /// # Safety
    ///
    /// `layout.size()` is not zero.
    unsafe fn alloc_at(&self, layout: Layout, site: SiteId) -> *mut u8;

    /// Frees a block (recording the free at the site it was allocated at).
    ///
    /// # Safety
    ///
    /// `ptr` came from `alloc_at` of this allocator with `layout` and was
    /// not freed since.
    unsafe fn dealloc_at(&self, ptr: *mut u8, layout: Layout);
}

// SAFETY: forwards to `A`, which upholds the contract.
unsafe impl<A: SiteAlloc + ?Sized> SiteAlloc for &A {
    #[inline]
    unsafe fn alloc_at(&self, layout: Layout, site: SiteId) -> *mut u8 {
        // SAFETY: the caller's contract is `A`'s.
        unsafe { (**self).alloc_at(layout, site) }
    }

    #[inline]
    unsafe fn dealloc_at(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is `A`'s.
        unsafe { (**self).dealloc_at(ptr, layout) }
    }
}

/// Allocates through `a`, recorded at the caller's `Location`.
///
/// # Safety
///
/// `layout.size()` is not zero.
#[track_caller]
#[inline]
pub unsafe fn alloc_cs<A: SiteAlloc + ?Sized>(a: &A, layout: Layout) -> *mut u8 {
    let site = SiteId::caller();
    // SAFETY: forwarded contract.
    unsafe { a.alloc_at(layout, site) }
}

/// Frees a block from [`alloc_cs`].
///
/// # Safety
///
/// `ptr` came from `alloc_cs(a, layout)` (or `a.alloc_at(layout, _)`) and
/// was not freed since.
#[inline]
pub unsafe fn free_cs<A: SiteAlloc + ?Sized>(a: &A, ptr: *mut u8, layout: Layout) {
    // SAFETY: forwarded contract.
    unsafe { a.dealloc_at(ptr, layout) }
}

/// Header kept before each block of a [`Profiled`] allocator.
#[repr(C)]
struct Header {
    stamp: u64,
    thread: usize,
}

/// A [`SiteAlloc`] over any [`GlobalAlloc`]: each block carries a 16-byte
/// header (its [`Stamp`] and the allocating thread's
/// [`thread_hint`]) and every allocation and free is recorded in `table`
/// with `clock` as the time source. Frees from another thread than the
/// allocating one count as remote.
pub struct Profiled<A, const N: usize, const S: usize> {
    inner: A,
    table: &'static SiteTable<N, S>,
    clock: fn() -> u64,
}

impl<A, const N: usize, const S: usize> fmt::Debug for Profiled<A, N, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profiled")
            .field("table", self.table)
            .finish()
    }
}

impl<A: GlobalAlloc, const N: usize, const S: usize> Profiled<A, N, S> {
    /// Records into `table`, timing with `clock`.
    pub const fn new(inner: A, table: &'static SiteTable<N, S>, clock: fn() -> u64) -> Self {
        Profiled {
            inner,
            table,
            clock,
        }
    }

    /// The table.
    pub fn table(&self) -> &'static SiteTable<N, S> {
        self.table
    }

    /// The outer layout and the header's size for `layout`.
    #[inline]
    fn outer(layout: Layout) -> Option<(Layout, usize)> {
        let align = layout.align().max(align_of::<Header>());
        let prefix = size_of::<Header>().max(align);
        let size = layout.size().checked_add(prefix)?;
        Some((Layout::from_size_align(size, align).ok()?, prefix))
    }
}

// SAFETY: blocks are `prefix` bytes into an inner block of `size + prefix`
// bytes aligned to at least `layout.align()` (`prefix` is a multiple of the
// alignment), so they have `size` bytes at the requested alignment; the
// same layout finds the inner block again at free.
unsafe impl<A: GlobalAlloc, const N: usize, const S: usize> SiteAlloc for Profiled<A, N, S> {
    #[inline]
    unsafe fn alloc_at(&self, layout: Layout, site: SiteId) -> *mut u8 {
        let Some((outer, prefix)) = Self::outer(layout) else {
            return ptr::null_mut();
        };
        // SAFETY: `outer` has a non-zero size (at least the header).
        let base = unsafe { self.inner.alloc(outer) };
        if base.is_null() {
            return base;
        }
        let stamp = self.table.record_alloc(site, layout.size(), (self.clock)());
        // SAFETY: `prefix <= outer.size()`, and the header's slot ends at the
        // user pointer, inside the block, aligned to 8 (prefix and align
        // are multiples of 8).
        unsafe {
            let user = base.add(prefix);
            user.cast::<Header>().sub(1).write(Header {
                stamp: stamp.to_bits(),
                thread: thread_hint(),
            });
            user
        }
    }

    #[inline]
    unsafe fn dealloc_at(&self, ptr: *mut u8, layout: Layout) {
        let Some((outer, prefix)) = Self::outer(layout) else {
            return;
        };
        // SAFETY: `ptr` came from `alloc_at` with this layout: the header
        // sits right before it and the inner block `prefix` bytes before.
        unsafe {
            let h = ptr.cast::<Header>().sub(1).read();
            self.table.record_free(
                Stamp::from_bits(h.stamp),
                layout.size(),
                (self.clock)(),
                h.thread != thread_hint(),
            );
            self.inner.dealloc(ptr.sub(prefix), outer);
        }
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn alloc_failed() -> ! {
    panic!("hakmem-sites: allocation failed")
}

/// A `Box` whose allocation is recorded at the site that created it.
pub struct SiteBox<T, A: SiteAlloc> {
    ptr: NonNull<T>,
    alloc: A,
    _owns: PhantomData<T>,
}

// SAFETY: a `SiteBox` owns its `T` like `Box<T>` does; moving it to another
// thread moves the `T` and the allocator handle.
unsafe impl<T: Send, A: SiteAlloc + Send> Send for SiteBox<T, A> {}
// SAFETY: shared access only hands out `&T`.
unsafe impl<T: Sync, A: SiteAlloc + Sync> Sync for SiteBox<T, A> {}

impl<T, A: SiteAlloc> SiteBox<T, A> {
    /// Moves `value` into a block from `alloc`, recorded at the caller.
    /// Panics if the allocation fails.
    #[track_caller]
    pub fn new_in(value: T, alloc: A) -> Self {
        match Self::try_new_in(value, alloc) {
            Ok(b) => b,
            Err(_) => alloc_failed(),
        }
    }

    /// Like [`new_in`](Self::new_in), handing `value` back on failure.
    #[track_caller]
    pub fn try_new_in(value: T, alloc: A) -> Result<Self, T> {
        let site = SiteId::caller();
        let layout = Layout::new::<T>();
        let ptr: NonNull<T> = if layout.size() == 0 {
            NonNull::dangling()
        } else {
            // SAFETY: non-zero size.
            match NonNull::new(unsafe { alloc.alloc_at(layout, site) }) {
                Some(p) => p.cast(),
                None => return Err(value),
            }
        };
        // SAFETY: a fresh block for one `T` (or a dangling pointer for a
        // zero-sized `T`, which writes nothing).
        unsafe { ptr.as_ptr().write(value) };
        Ok(SiteBox {
            ptr,
            alloc,
            _owns: PhantomData,
        })
    }

    /// Moves the value out and frees the block.
    pub fn into_inner(self) -> T {
        let me = core::mem::ManuallyDrop::new(self);
        // SAFETY: the value is live; it is read once and the block freed
        // without dropping it; `me` is never used again.
        unsafe {
            let v = me.ptr.as_ptr().read();
            me.free();
            drop(ptr::read(&me.alloc));
            v
        }
    }

    /// # Safety
    ///
    /// The value was moved out or dropped; called once.
    unsafe fn free(&self) {
        let layout = Layout::new::<T>();
        if layout.size() != 0 {
            // SAFETY: our block, allocated with this layout.
            unsafe { self.alloc.dealloc_at(self.ptr.as_ptr().cast(), layout) };
        }
    }
}

impl<T, A: SiteAlloc> Deref for SiteBox<T, A> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the box owns a live, initialised `T`.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T, A: SiteAlloc> DerefMut for SiteBox<T, A> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the box owns a live `T` and we hold `&mut self`.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T, A: SiteAlloc> Drop for SiteBox<T, A> {
    fn drop(&mut self) {
        // SAFETY: drop the live value once, then free its block.
        unsafe {
            ptr::drop_in_place(self.ptr.as_ptr());
            self.free();
        }
    }
}

impl<T: fmt::Debug, A: SiteAlloc> fmt::Debug for SiteBox<T, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// A growable array whose blocks are recorded at the site that created it
/// (its growth reallocations included). A minimal `Vec`: `Vec<T, A>` needs
/// the unstable allocator API.
pub struct SiteVec<T, A: SiteAlloc> {
    ptr: NonNull<T>,
    cap: usize,
    len: usize,
    site: SiteId,
    alloc: A,
    _owns: PhantomData<T>,
}

// SAFETY: owns its elements like `Vec<T>`.
unsafe impl<T: Send, A: SiteAlloc + Send> Send for SiteVec<T, A> {}
// SAFETY: shared access only hands out `&[T]`.
unsafe impl<T: Sync, A: SiteAlloc + Sync> Sync for SiteVec<T, A> {}

impl<T, A: SiteAlloc> SiteVec<T, A> {
    /// An empty vector; its site is the caller.
    #[track_caller]
    pub fn new_in(alloc: A) -> Self {
        SiteVec {
            ptr: NonNull::dangling(),
            cap: if size_of::<T>() == 0 { usize::MAX } else { 0 },
            len: 0,
            site: SiteId::caller(),
            alloc,
            _owns: PhantomData,
        }
    }

    /// An empty vector with room for `cap` elements; its site is the
    /// caller.
    #[track_caller]
    pub fn with_capacity_in(cap: usize, alloc: A) -> Self {
        // `new_in` is `#[track_caller]` too: the site is our caller.
        let mut v = Self::new_in(alloc);
        if cap > v.cap {
            v.grow_to(cap);
        }
        v
    }

    /// The site the vector's blocks are recorded at.
    pub fn site(&self) -> SiteId {
        self.site
    }

    /// Elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room before the next growth.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    fn grow_to(&mut self, cap: usize) {
        let Ok(layout) = Layout::array::<T>(cap) else {
            alloc_failed()
        };
        // SAFETY: `cap > self.cap >= 0` elements of a non-zero-sized `T`.
        let new = unsafe { self.alloc.alloc_at(layout, self.site) }.cast::<T>();
        let Some(new) = NonNull::new(new) else {
            alloc_failed()
        };
        if self.cap > 0 {
            // SAFETY: the old block holds `len` initialised elements, the new
            // one has room for them; the old block is then freed with the
            // layout it was allocated with.
            unsafe {
                ptr::copy_nonoverlapping(self.ptr.as_ptr(), new.as_ptr(), self.len);
                self.alloc.dealloc_at(
                    self.ptr.as_ptr().cast(),
                    Layout::array::<T>(self.cap).unwrap_unchecked(),
                );
            }
        }
        self.ptr = new;
        self.cap = cap;
    }

    /// Appends an element, doubling the capacity when full.
    pub fn push(&mut self, value: T) {
        if self.len == self.cap {
            let cap = self.cap.checked_mul(2).unwrap_or_else(|| alloc_failed());
            self.grow_to(cap.max(4));
        }
        // SAFETY: `len < cap`: the slot is inside the block and unused.
        unsafe { self.ptr.as_ptr().add(self.len).write(value) };
        self.len += 1;
    }

    /// Removes the last element.
    pub fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: the slot held an initialised element, now outside `len`.
        Some(unsafe { self.ptr.as_ptr().add(self.len).read() })
    }

    /// Drops every element (keeps the block).
    pub fn clear(&mut self) {
        let len = self.len;
        self.len = 0;
        // SAFETY: the first `len` slots were initialised; they are dropped
        // once (`len` is already 0 if a destructor panics).
        unsafe {
            ptr::drop_in_place(ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), len));
        }
    }

    /// Appends clones of `items`.
    pub fn extend_from_slice(&mut self, items: &[T])
    where
        T: Clone,
    {
        for x in items {
            self.push(x.clone());
        }
    }
}

impl<T, A: SiteAlloc> Deref for SiteVec<T, A> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` initialised elements at `ptr` (dangling and empty
        // before the first allocation).
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T, A: SiteAlloc> DerefMut for SiteVec<T, A> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, with exclusive access.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T, A: SiteAlloc> Drop for SiteVec<T, A> {
    fn drop(&mut self) {
        self.clear();
        if size_of::<T>() != 0 && self.cap > 0 {
            // SAFETY: our block, allocated with this layout.
            unsafe {
                self.alloc.dealloc_at(
                    self.ptr.as_ptr().cast(),
                    Layout::array::<T>(self.cap).unwrap_unchecked(),
                )
            };
        }
    }
}

impl<T: fmt::Debug, A: SiteAlloc> fmt::Debug for SiteVec<T, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    static TABLE: SiteTable<64, 2> = SiteTable::new();
    static SYS: Profiled<System, 64, 2> = Profiled::new(System, &TABLE, crate::os::monotonic_ns);

    #[test]
    fn alloc_cs_records_the_caller() {
        let layout = Layout::from_size_align(100, 64).unwrap();
        // SAFETY: non-zero size.
        let (p, line) = (unsafe { alloc_cs(&SYS, layout) }, line!());
        assert!(!p.is_null());
        assert_eq!(p as usize % 64, 0);
        // SAFETY: the block has 100 bytes.
        unsafe { p.write_bytes(0xAB, 100) };
        let s = TABLE
            .sites()
            .find(|s| {
                s.site
                    .as_location()
                    .is_some_and(|l| l.file() == file!() && l.line() == line)
            })
            .expect("site recorded");
        assert_eq!((s.allocs, s.bytes, s.frees), (1, 100, 0));
        // SAFETY: from alloc_cs with this layout.
        unsafe { free_cs(&SYS, p, layout) };
        let s = TABLE.stats(s.slot).unwrap();
        assert_eq!((s.frees, s.remote_frees), (1, 0));
    }

    #[track_caller]
    fn helper(n: u32) -> SiteBox<u32, &'static Profiled<System, 64, 2>> {
        SiteBox::new_in(n, &SYS)
    }

    #[test]
    fn track_caller_helpers_are_transparent() {
        let a = helper(1);
        let b = helper(2);
        let sa = TABLE.slot_of(site_of(&a)).unwrap();
        let sb = TABLE.slot_of(site_of(&b)).unwrap();
        assert_ne!(sa, sb, "two call lines, two sites");
        assert_eq!(*a + *b, 3);
        assert_eq!(b.into_inner(), 2);
        let s = TABLE.stats(sb).unwrap();
        assert_eq!((s.allocs, s.frees), (1, 1));
        drop(a);
        let s = TABLE.stats(sa).unwrap();
        assert_eq!((s.allocs, s.frees), (1, 1));
    }

    /// The site a box was recorded at: its header's stamp's slot.
    fn site_of<T, A: SiteAlloc>(b: &SiteBox<T, A>) -> SiteId {
        // SAFETY: a `Profiled` block: the header precedes it.
        let h = unsafe { (&**b as *const T).cast::<Header>().sub(1).read() };
        TABLE.stats(Stamp::from_bits(h.stamp).slot()).unwrap().site
    }

    #[test]
    fn remote_frees_are_detected() {
        let b = SiteBox::new_in([0u8; 40], &SYS);
        let slot = TABLE.slot_of(site_of(&b)).unwrap();
        std::thread::spawn(move || drop(b)).join().unwrap();
        let s = TABLE.stats(slot).unwrap();
        assert_eq!((s.allocs, s.frees, s.remote_frees, s.bytes), (1, 1, 1, 40));
    }

    #[test]
    fn site_vec_grows_at_its_site() {
        let mut v = SiteVec::new_in(&SYS);
        let site = v.site();
        for i in 0..100u64 {
            v.push(i);
        }
        assert_eq!(v.len(), 100);
        assert_eq!(v.iter().sum::<u64>(), 4950);
        assert_eq!(v.pop(), Some(99));
        let s = TABLE.site_stats(site).unwrap();
        // 4, 8, 16, 32, 64, 128 elements: six blocks, five freed.
        assert_eq!((s.allocs, s.frees), (6, 5));
        assert_eq!(s.max_size, 128 * 8);
        drop(v);
        let s = TABLE.site_stats(site).unwrap();
        assert_eq!((s.allocs, s.frees, s.live_bytes()), (6, 6, 0));

        let mut w = SiteVec::with_capacity_in(10, &SYS);
        w.extend_from_slice(&[String::from("a"), String::from("b")]);
        assert_eq!(format!("{w:?}"), "[\"a\", \"b\"]");
        let s = TABLE.site_stats(w.site()).unwrap();
        assert_eq!((s.allocs, s.bytes), (1, 10 * size_of::<String>() as u64));

        let mut z = SiteVec::new_in(&SYS);
        for _ in 0..10 {
            z.push(());
        }
        assert_eq!(z.len(), 10);
        assert!(
            TABLE.site_stats(z.site()).is_none(),
            "zero-sized: no blocks"
        );
    }
}
