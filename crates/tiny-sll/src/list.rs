//! Intrusive free lists.

use core::ptr;

use crate::sync::{AtomicU64, Ordering};

/// A free block. While a block is free its first word links it to the next
/// free block and its second word may hold the allocator's *free mark* (a
/// secret value meaning "this block is free", which makes a second `free` of
/// it detectable); the rest of its bytes are untouched. Blocks are at least
/// 16 bytes and 16-byte aligned.
#[repr(C)]
#[derive(Debug)]
pub struct Block {
    /// The next free block, or null.
    pub next: *mut Block,
    /// The free mark, or whatever the user left there.
    pub mark: Mark,
}

/// A block's free-mark word (word 1 of a block).
///
/// The owner thread writes it when it frees a block into a bin and clears it
/// when it hands a block out, while a thread freeing a block it does not own
/// swaps it atomically ([`Mark::swap`], from the superslab box's
/// `remote_free`) to detect a double free racing another free. The word is
/// therefore atomic everywhere; the owner's accesses are `Relaxed` loads and
/// stores, which compile to the same plain `mov`s as non-atomic ones on
/// x86-64 (no fence, no lock prefix), so the fast paths cost the same.
///
/// The hand-written `malloc` fast path (`crates/preload`) clears the mark
/// with `mov qword ptr [rax + BLOCK_MARK_OFFSET], 0`: an aligned 8-byte store
/// (blocks are 16-aligned, the mark is at offset 8), which x86-64 performs
/// atomically, so it is a `Relaxed` store of this atomic in the memory
/// model's terms.
#[repr(transparent)]
pub struct Mark(AtomicU64);

impl Mark {
    /// A mark word holding `v`.
    #[cfg(not(loom))]
    #[inline]
    pub const fn new(v: u64) -> Mark {
        Mark(AtomicU64::new(v))
    }

    /// A mark word holding `v` (loom's atomics are not `const`).
    #[cfg(loom)]
    pub fn new(v: u64) -> Mark {
        Mark(AtomicU64::new(v))
    }

    /// Reads the mark (`Relaxed`).
    #[inline(always)]
    pub fn load(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Writes the mark (`Relaxed`): the owner's set and clear.
    #[inline(always)]
    pub fn store(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed)
    }

    /// Writes `v` and returns the previous mark in one atomic step, with the
    /// given ordering: how a non-owner free claims a block, so that of two
    /// racing frees exactly one sees a value other than `v`.
    #[inline]
    pub fn swap(&self, v: u64, order: Ordering) -> u64 {
        self.0.swap(v, order)
    }

    /// Writes a fresh mark word holding `v` at `p`, without reading what was
    /// there. In a normal build this is a plain store; under loom it creates
    /// the modelled atomic (a block's mark word must be created before a
    /// model may use it, as carved memory holds no atomic object yet).
    ///
    /// # Safety
    /// `p` must be valid for writes and 8-aligned, and no other thread may
    /// access the word concurrently.
    #[inline]
    pub unsafe fn init(p: *mut Mark, v: u64) {
        // SAFETY: the caller guarantees `p` is writable, aligned and not
        // accessed concurrently; nothing there needs dropping (a `Mark` has
        // no destructor that matters, and the old bytes are not a value we
        // own).
        unsafe { p.write(Mark::new(v)) }
    }
}

impl core::fmt::Debug for Mark {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Mark({:#x})", self.load())
    }
}

impl Block {
    /// A block with no successor and mark `mark` (for tests and models that
    /// build blocks in ordinary memory).
    pub fn new(mark: u64) -> Block {
        Block {
            next: ptr::null_mut(),
            mark: Mark::new(mark),
        }
    }
}

/// A detached run of free blocks: `head → … → tail`, `len` of them, and the
/// last block's link is null (chains are null-terminated lists). `tail` may
/// be null when the producer did not track it; consumers that need it walk.
/// The empty chain has a null head and `len == 0`.
#[derive(Debug, Clone, Copy)]
pub struct Chain {
    /// First block, or null when empty.
    pub head: *mut Block,
    /// Last block, or null when empty or not known.
    pub tail: *mut Block,
    /// Number of blocks.
    pub len: u32,
}

impl Chain {
    /// The empty chain.
    pub const EMPTY: Chain = Chain {
        head: ptr::null_mut(),
        tail: ptr::null_mut(),
        len: 0,
    };

    /// True when the chain holds no blocks.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Prepends one block.
    ///
    /// # Safety
    /// `b` must be a valid, writable free block not already in any list.
    #[inline]
    pub unsafe fn push(&mut self, b: *mut Block) {
        if self.len == 0 {
            self.tail = b;
            self.head = ptr::null_mut();
        }
        // SAFETY: the caller gives us an exclusively owned free block.
        unsafe { (*b).next = self.head };
        self.head = b;
        self.len += 1;
    }

    /// Removes and returns the first block.
    ///
    /// # Safety
    /// The chain's links must be intact (`len` blocks reachable from `head`).
    #[inline]
    pub unsafe fn pop(&mut self) -> Option<*mut Block> {
        if self.len == 0 {
            return None;
        }
        let b = self.head;
        self.len -= 1;
        if self.len == 0 {
            self.head = ptr::null_mut();
            self.tail = ptr::null_mut();
        } else {
            // SAFETY: len was > 1, so head is a valid block with a successor.
            self.head = unsafe { (*b).next };
        }
        Some(b)
    }

    /// Builds a chain from the first `n` blocks of a null-terminated list,
    /// returning it and the rest of the list. Walks `n` links.
    ///
    /// # Safety
    /// `list` must be a valid null-terminated list of at least `n` blocks, or
    /// of fewer, in which case the whole list is taken.
    #[inline]
    pub unsafe fn split_list(list: *mut Block, n: u32) -> (Chain, *mut Block) {
        if list.is_null() || n == 0 {
            return (Chain::EMPTY, list);
        }
        let mut tail = list;
        let mut len = 1;
        // SAFETY: every node reached is a valid block of the list.
        unsafe {
            while len < n && !(*tail).next.is_null() {
                tail = (*tail).next;
                len += 1;
            }
            let rest = (*tail).next;
            (*tail).next = ptr::null_mut();
            (
                Chain {
                    head: list,
                    tail,
                    len,
                },
                rest,
            )
        }
    }
}

/// One size class's thread-local free list with a capacity.
///
/// Invariant: `room + len == cap`, where `len` is the number of blocks
/// reachable from `head` (null-terminated). The owner thread alone touches a
/// bin. `room == 0` (a full bin, or a bin with no capacity such as the
/// placeholder of a thread that has no heap yet) makes [`Bin::try_push`] fail,
/// which is the free path's single exit to its cold path.
///
/// A bin also carries the owner's two constants for "is this offset in a
/// slot the start of a block" (see [`Bin::block_test`]), so the free fast
/// path finds everything it needs on the bin's cache line. A bin is 32
/// bytes: fast paths index bins by `class << 5`.
#[repr(C, align(32))]
#[derive(Debug)]
pub struct Bin {
    head: *mut Block,
    room: u32,
    cap: u32,
    test_mul: u64,
    test_limit: u64,
}

/// Byte offset of a bin's head pointer (for hand-written fast paths).
pub const BIN_HEAD_OFFSET: usize = core::mem::offset_of!(Bin, head);
/// Byte offset of a bin's room counter (a `u32`).
pub const BIN_ROOM_OFFSET: usize = core::mem::offset_of!(Bin, room);
/// Byte offsets of a bin's block-start test constants (two `u64`s: an
/// offset `x` in a slot is a block start when `x * mul < limit`).
pub const BIN_TEST_MUL_OFFSET: usize = core::mem::offset_of!(Bin, test_mul);
/// See [`BIN_TEST_MUL_OFFSET`].
pub const BIN_TEST_LIMIT_OFFSET: usize = core::mem::offset_of!(Bin, test_limit);
/// Byte offset of a free block's link to the next.
pub const BLOCK_NEXT_OFFSET: usize = core::mem::offset_of!(Block, next);
/// Byte offset of a free block's mark.
pub const BLOCK_MARK_OFFSET: usize = core::mem::offset_of!(Block, mark);

// The fast paths (and the naked `malloc` in the preload crate) rely on the
// mark being the 8-byte word at offset 8 of a 16-byte block.
#[cfg(not(loom))]
const _: () = assert!(BLOCK_MARK_OFFSET == 8 && core::mem::size_of::<Block>() == 16);

impl Bin {
    /// An empty bin with capacity 0: every push fails, every pop misses.
    pub const DISABLED: Bin = Bin {
        head: ptr::null_mut(),
        room: 0,
        cap: 0,
        test_mul: 0,
        test_limit: 0,
    };

    /// An empty bin that will hold up to `cap` blocks.
    pub const fn with_capacity(cap: u32) -> Bin {
        Bin {
            head: ptr::null_mut(),
            room: cap,
            cap,
            test_mul: 0,
            test_limit: 0,
        }
    }

    /// Pops a block: the malloc fast path.
    #[inline(always)]
    pub fn pop(&mut self) -> Option<*mut u8> {
        let b = self.head;
        if b.is_null() {
            return None;
        }
        // SAFETY: a non-null head is a free block owned by this bin.
        unsafe {
            self.head = (*b).next;
            (*b).mark.store(0);
        }
        self.room += 1;
        Some(b.cast())
    }

    /// Pushes a block unless the bin is full (its free mark is left as it
    /// is: the caller sets it).
    ///
    /// # Safety
    /// `p` must be a free block (at least 16 bytes, 16-aligned, writable, in
    /// no other list) of this bin's class.
    #[inline(always)]
    pub unsafe fn try_push(&mut self, p: *mut u8) -> bool {
        if self.room == 0 {
            return false;
        }
        self.room -= 1;
        let b = p.cast::<Block>();
        // SAFETY: the caller hands us an exclusively owned free block.
        unsafe { (*b).next = self.head };
        self.head = b;
        true
    }

    /// The constants `(c, t)` of a block-start test for blocks of `size`
    /// bytes, `per_slot` of them laid out from offset 0 of a 64 KiB slot:
    /// for an offset `x < 2^16`, `c.wrapping_mul(x) < t` exactly when `x` is
    /// `k * size` with `k < per_slot`.
    ///
    /// This is Lemire's divisibility test with a tighter bound: with
    /// `c = ceil(2^64 / size)` and `e = c * size - 2^64` (`0 <= e < size`),
    /// `c * (k * size + r) mod 2^64 = k * e + c * r`, which is below
    /// `per_slot * e` when `r = 0` and `k < per_slot`, and at least `c` (far
    /// above that bound) when `r > 0`. (Powers of two have `e = 0`; their
    /// bound is 1.) `per_slot == 0` gives `(0, 0)`: every test fails.
    pub const fn block_test(size: u64, per_slot: u64) -> (u64, u64) {
        if per_slot == 0 || size == 0 {
            return (0, 0);
        }
        let c = u64::MAX / size + 1;
        let e = c.wrapping_mul(size);
        let t = if e == 0 { 1 } else { per_slot * e };
        (c, t)
    }

    /// Sets the block-start test (see [`Bin::block_test`]).
    pub fn set_block_test(&mut self, test: (u64, u64)) {
        self.test_mul = test.0;
        self.test_limit = test.1;
    }

    /// True if `offset` (below 2^16) passes the bin's block-start test.
    ///
    /// # Safety
    /// `bin` must point at a valid bin.
    #[inline(always)]
    pub unsafe fn block_start_raw(bin: *const Bin, offset: u64) -> bool {
        // SAFETY: the caller guarantees a valid bin.
        unsafe { (*bin).test_mul.wrapping_mul(offset) < (*bin).test_limit }
    }

    /// [`Bin::pop`] through a raw pointer, without forming a reference: the
    /// form the allocator's fast path uses, because the placeholder heap's
    /// bins are shared by every thread that has no heap yet (and are never
    /// written, since they are empty and have no room).
    ///
    /// Returns null when the bin is empty.
    ///
    /// # Safety
    /// `bin` must point at a valid bin that only the calling thread writes.
    #[inline(always)]
    pub unsafe fn pop_raw(bin: *mut Bin) -> *mut u8 {
        // SAFETY: the caller guarantees a valid bin; we only write when the
        // bin is non-empty, which the shared placeholder never is.
        unsafe {
            let b = (*bin).head;
            if !b.is_null() {
                (*bin).head = (*b).next;
                (*bin).room += 1;
                (*b).mark.store(0);
            }
            b.cast()
        }
    }

    /// [`Bin::try_push`] through a raw pointer (see [`Bin::pop_raw`]),
    /// writing `mark` into the block's free mark.
    ///
    /// # Safety
    /// As for [`Bin::pop_raw`] and [`Bin::try_push`].
    #[inline(always)]
    pub unsafe fn try_push_raw(bin: *mut Bin, p: *mut u8, mark: u64) -> bool {
        // SAFETY: the caller guarantees a valid bin only this thread writes
        // and a free block of its class in no list. The room is decremented first (one
        // read-modify-write) and restored when it was 0; callers never reach
        // this on the shared placeholder, whose keys match no block.
        unsafe {
            let (r, under) = (*bin).room.overflowing_sub(1);
            (*bin).room = r;
            if under {
                (*bin).room = 0;
                return false;
            }
            let b = p.cast::<Block>();
            (*b).next = (*bin).head;
            (*b).mark.store(mark);
            (*bin).head = b;
            true
        }
    }

    /// Blocks in the bin.
    #[inline]
    pub fn len(&self) -> u32 {
        self.cap - self.room
    }

    /// The first block, or null (read-only: for validators such as the heap
    /// box's `Heap::check`, which must vet each pointer before following it).
    #[inline]
    pub fn head(&self) -> *mut Block {
        self.head
    }

    /// True when the bin holds no blocks.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// The capacity.
    #[inline]
    pub fn cap(&self) -> u32 {
        self.cap
    }

    /// Free places left.
    #[inline]
    pub fn room(&self) -> u32 {
        self.room
    }

    /// Removes up to `n` blocks from the top (most recently freed first).
    #[inline]
    pub fn take(&mut self, n: u32) -> Chain {
        // SAFETY: the bin's list is valid by the type invariant.
        let (chain, rest) = unsafe { Chain::split_list(self.head, n) };
        self.head = rest;
        self.room += chain.len;
        chain
    }

    /// Removes every block.
    #[inline]
    pub fn take_all(&mut self) -> Chain {
        let n = self.len();
        self.take(n)
    }

    /// Puts a chain of blocks on top of the bin, if there is room for all of
    /// them; returns false (and changes nothing) otherwise.
    ///
    /// # Safety
    /// The chain must be valid and its blocks of this bin's class.
    #[inline]
    pub unsafe fn push_chain(&mut self, chain: Chain) -> bool {
        if chain.len > self.room {
            return false;
        }
        if chain.len == 0 {
            return true;
        }
        if !self.head.is_null() {
            let mut tail = chain.tail;
            if tail.is_null() {
                tail = chain.head;
                // SAFETY: a chain is a valid null-terminated list.
                unsafe {
                    while !(*tail).next.is_null() {
                        tail = (*tail).next;
                    }
                }
            }
            // SAFETY: tail is the chain's last block, which we may relink.
            unsafe { (*tail).next = self.head };
        }
        self.head = chain.head;
        self.room -= chain.len;
        true
    }

    /// Checks the bin's invariants, walking at most `cap + 1` links: every
    /// block is aligned for a `Block`, the list is null-terminated within
    /// `cap` blocks (so it is acyclic and holds no block twice: a block met
    /// twice would make the walk loop), `room + len == cap`, and, given
    /// `Some(mark)`, every block carries the free mark `mark`. (Blocks a
    /// refill moved in with [`Bin::push_chain`] carry no mark: pass `None`
    /// for a bin that may hold some.) Allocates nothing; meant for tests and
    /// debugging, in any build.
    pub fn check(&self, mark: Option<u64>) -> Result<(), &'static str> {
        if self.room > self.cap {
            return Err("bin: room exceeds capacity");
        }
        let mut len = 0u32;
        let mut b = self.head;
        while !b.is_null() {
            if len == self.cap {
                return Err("bin: list longer than its capacity (cyclic or overfull)");
            }
            if !(b as usize).is_multiple_of(core::mem::align_of::<Block>()) {
                return Err("bin: misaligned block");
            }
            // SAFETY: `b` is reachable from the head within `cap` links, so
            // by the bin's invariant it is a free block it owns (the checks
            // above catch the corruptions that would break that before we
            // leave the first `cap` links).
            let (next, m) = unsafe { ((*b).next, (*b).mark.load()) };
            if mark.is_some_and(|want| m != want) {
                return Err("bin: block without the free mark");
            }
            len += 1;
            b = next;
        }
        if self.room + len != self.cap {
            return Err("bin: room + len != cap");
        }
        Ok(())
    }

    /// Changes the capacity. Blocks beyond the new capacity are removed and
    /// returned for the caller to give back.
    pub fn set_cap(&mut self, cap: u32) -> Chain {
        let len = self.len();
        let excess = if len > cap {
            self.take(len - cap)
        } else {
            Chain::EMPTY
        };
        let len = self.len();
        self.cap = cap;
        self.room = cap - len;
        excess
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arena(n: usize) -> Vec<Block> {
        (0..n).map(|_| Block::new(0)).collect()
    }

    #[test]
    fn disabled_bin_never_accepts() {
        let mut blocks = arena(1);
        let mut b = Bin::DISABLED;
        // SAFETY: the arena block is free and ours.
        assert!(!unsafe { b.try_push((&mut blocks[0] as *mut Block).cast()) });
        assert!(b.pop().is_none());
    }

    #[test]
    fn raw_ops_match_reference_ops() {
        let mut blocks = arena(3);
        let mut b = Bin::with_capacity(2);
        let bp: *mut Bin = &mut b;
        // SAFETY: bp is our bin; blocks are free and ours.
        unsafe {
            assert!(Bin::try_push_raw(
                bp,
                (&mut blocks[0] as *mut Block).cast(),
                7
            ));
            assert!(Bin::try_push_raw(
                bp,
                (&mut blocks[1] as *mut Block).cast(),
                7
            ));
            assert!(
                !Bin::try_push_raw(bp, (&mut blocks[2] as *mut Block).cast(), 7),
                "full"
            );
            assert_eq!(blocks[1].mark.load(), 7, "a pushed block carries the mark");
            assert_eq!(blocks[2].mark.load(), 0, "a refused block is untouched");
            assert_eq!(Bin::pop_raw(bp), (&mut blocks[1] as *mut Block).cast());
            assert_eq!(Bin::pop_raw(bp), (&mut blocks[0] as *mut Block).cast());
            assert!(Bin::pop_raw(bp).is_null());
        }
        assert_eq!(b.room(), 2);
        assert_eq!(b.check(Some(7)), Ok(()));
        assert_eq!(blocks[0].mark.load(), 0, "a popped block's mark is cleared");
    }

    /// A bin of `n` marked blocks from `blocks`, capacity `cap`.
    fn marked_bin(blocks: &mut [Block], n: usize, cap: u32, mark: u64) -> Bin {
        let mut b = Bin::with_capacity(cap);
        for blk in blocks.iter_mut().take(n) {
            // SAFETY: our bin; the arena block is free and in no list.
            assert!(unsafe { Bin::try_push_raw(&mut b, (blk as *mut Block).cast(), mark) });
        }
        b
    }

    #[test]
    fn check_reports_each_broken_invariant() {
        let mut blocks = arena(4);
        let bin = marked_bin(&mut blocks, 3, 4, 9);
        assert_eq!(bin.check(Some(9)), Ok(()));
        assert_eq!(bin.check(None), Ok(()));
        assert!(bin.check(Some(8)).is_err(), "wrong mark");

        // a cycle: the last block links back to the first
        let mut blocks = arena(4);
        let bin = marked_bin(&mut blocks, 3, 4, 9);
        blocks[0].next = &mut blocks[2];
        assert!(bin.check(None).is_err(), "cycle");

        // a block counted twice (room out of step with the list)
        let mut blocks = arena(4);
        let mut bin = marked_bin(&mut blocks, 2, 4, 9);
        bin.room -= 1;
        assert!(bin.check(None).is_err(), "room + len != cap");
        bin.room = 7;
        assert!(bin.check(None).is_err(), "room > cap");

        // a block that lost its mark
        let mut blocks = arena(4);
        let bin = marked_bin(&mut blocks, 3, 4, 9);
        blocks[1].mark.store(0);
        assert!(bin.check(Some(9)).is_err(), "unmarked block");

        // a misaligned link
        let mut blocks = arena(4);
        let bin = marked_bin(&mut blocks, 2, 4, 9);
        blocks[1].next = (blocks.as_mut_ptr() as usize + 4) as *mut Block;
        assert!(bin.check(None).is_err(), "misaligned");
    }

    #[test]
    fn block_tests_accept_exactly_the_block_starts() {
        let sizes =
            (16u64..=1024)
                .step_by(16)
                .chain([1152, 4096, 9216, 20480, 24576, 32768, 65536 / 3]);
        for size in sizes {
            let per_slot = 65536 / size;
            let mut b = Bin::DISABLED;
            b.set_block_test(Bin::block_test(size, per_slot));
            for x in 0..65536u64 {
                // SAFETY: a valid bin.
                let start = unsafe { Bin::block_start_raw(&b, x) };
                assert_eq!(start, x % size == 0 && x / size < per_slot, "{x} / {size}");
            }
        }
        let z = Bin::DISABLED;
        // SAFETY: a valid bin.
        let (a, b) = unsafe { (Bin::block_start_raw(&z, 0), Bin::block_start_raw(&z, 64)) };
        assert!(!a && !b, "a bin without a test accepts nothing");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(usize),
        Pop,
        Take(u32),
        SetCap(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0usize..64).prop_map(Op::Push),
            4 => Just(Op::Pop),
            1 => (0u32..20).prop_map(Op::Take),
            1 => (0u32..40).prop_map(Op::SetCap),
        ]
    }

    proptest! {
        /// Model test: a bin behaves as a bounded LIFO stack.
        #[test]
        fn bin_is_a_bounded_stack(cap in 0u32..40, ops in proptest::collection::vec(op(), 1..200)) {
            let mut blocks = arena(64);
            let base = blocks.as_mut_ptr();
            let mut free: Vec<bool> = vec![true; 64]; // not in the bin
            let mut bin = Bin::with_capacity(cap);
            let mut model: Vec<usize> = Vec::new();
            let mut model_cap = cap;
            for o in ops {
                match o {
                    Op::Push(i) => {
                        if !free[i] { continue; }
                        // SAFETY: block i is in no list (tracked by `free`).
                        let ok = unsafe { bin.try_push(base.add(i).cast()) };
                        prop_assert_eq!(ok, (model.len() as u32) < model_cap);
                        if ok { model.push(i); free[i] = false; }
                    }
                    Op::Pop => {
                        let got = bin.pop().map(|p| (p as usize - base as usize) / core::mem::size_of::<Block>());
                        prop_assert_eq!(got, model.pop());
                        if let Some(i) = got { free[i] = true; }
                    }
                    Op::Take(n) => {
                        let mut c = bin.take(n);
                        let want = (n as usize).min(model.len());
                        prop_assert_eq!(c.len as usize, want);
                        for _ in 0..want {
                            // SAFETY: chain from take() is valid.
                            let p = unsafe { c.pop() }.unwrap();
                            let i = (p as usize - base as usize) / core::mem::size_of::<Block>();
                            prop_assert_eq!(Some(i), model.pop());
                            free[i] = true;
                        }
                    }
                    Op::SetCap(c2) => {
                        let mut ex = bin.set_cap(c2);
                        model_cap = c2;
                        while model.len() as u32 > c2 {
                            // SAFETY: the excess chain is valid.
                            let p = unsafe { ex.pop() }.unwrap();
                            let i = (p as usize - base as usize) / core::mem::size_of::<Block>();
                            prop_assert_eq!(Some(i), model.pop());
                            free[i] = true;
                        }
                        prop_assert!(ex.is_empty());
                    }
                }
                prop_assert_eq!(bin.len() as usize, model.len());
                prop_assert_eq!(bin.room() + bin.len(), model_cap);
                prop_assert_eq!(bin.check(None), Ok(()));
            }
        }
    }
}
