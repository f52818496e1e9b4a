//! The exported `malloc`.
//!
//! On x86_64 it is written out by hand (a naked function) so that it can do
//! two things a compiled Rust function cannot promise: hand its slow path the
//! caller's return address (the call-site label of a sampled `malloc`), and
//! let observers (call-site sampling, the learner's slices) cost nothing
//! while they are off and little while they are on. It is the same fast
//! path as `hakmem::malloc` — pop the thread's bin for the size — with the
//! size limit read from `hakmem::TINY_LIMIT` (1 KiB normally, 0 while any
//! observer is on). A size above the limit but within `hakmem::SAMPLE_LIMIT`
//! (1 KiB while observers are on, else 0) is counted down in the thread
//! slot and then served by the same fast path; the call that takes the
//! countdown to zero goes to `hakmem::malloc_observed` with its return
//! address (the countdown restored: that function counts the call itself,
//! as it does for Rust callers). Everything else goes to
//! `hakmem::malloc_slow`, or, while secure mode or the debug ring is on
//! (`hakmem::CHECKED`; both limits are 0 then, so every call gets there), to
//! `hakmem::malloc_checked`, the checked fast path. Off, it is the compiled
//! version's instruction count (the limit is a memory operand instead of an
//! immediate); observing adds a compare, a TLS decrement and two jumps (the
//! countdown joins the fast path past its slot-offset load, which it made).
//!
//! Layout facts it relies on are checked at compile time in `hakmem`
//! (the heap's bins come first, 32 bytes each; a bin's head and room; a
//! block's free mark; the slot's countdown).

use core::ffi::c_void;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
    use super::c_void;
    use facade as hk;
    use facade::secure_entry as se;
    use hakmem_heap::{HEAP_KEY_OFFSET, HEAP_MARK_OFFSET, HEAP_SIZE_BINS_OFFSET};
    use hakmem_pagemap::{Entry, TOP_ENTRIES, TOP_INDEX_SHIFT, TOP_OFFSET};
    use hakmem_tiny_sll::{
        BIN_HEAD_OFFSET, BIN_ROOM_OFFSET, BIN_TEST_LIMIT_OFFSET, BIN_TEST_MUL_OFFSET,
        BLOCK_MARK_OFFSET, BLOCK_NEXT_OFFSET,
    };

    // The slot index (`p >> 16`) is shifted on to the top index.
    const TOP_REST: u32 = TOP_INDEX_SHIFT - hakmem_pagemap::GRANULE_SHIFT;

    /// The slow path: everything the fast path does not serve.
    extern "C" fn malloc_slow_entry(size: usize, caller: usize) -> *mut c_void {
        hk::malloc_slow(size, caller).cast()
    }

    /// Secure mode or the debug ring is on: the checked fast path.
    extern "C" fn malloc_checked_entry(size: usize, caller: usize) -> *mut c_void {
        hk::malloc_checked(size, caller).cast()
    }

    /// The secure fast path found a write into a free block (`p`, of `bs`
    /// bytes) it popped.
    ///
    /// # Safety
    /// As for `hakmem::secure_entry::malloc_written_after_free`.
    unsafe extern "C" fn malloc_written_entry(
        size: usize,
        caller: usize,
        p: *mut u8,
        bs: usize,
    ) -> *mut c_void {
        // SAFETY: called by `malloc`'s secure fast path with the block it
        // just popped from this thread's bin and its class's size.
        unsafe { se::malloc_written_after_free(size, caller, p, bs).cast() }
    }

    /// The observers' countdown ran out (a due call).
    extern "C" fn malloc_observed_entry(size: usize, caller: usize) -> *mut c_void {
        hk::malloc_observed(size, caller).cast()
    }

    /// `malloc(3)`.
    ///
    /// # Safety
    /// None beyond the C contract; it is `unsafe` only because it is naked.
    #[unsafe(no_mangle)]
    #[unsafe(naked)]
    pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
        core::arch::naked_asm!(
            // size above the fast path's limit? -> 3 (sampling) or slow
            "cmp rdi, qword ptr [rip + {limit}]",
            "ja 3f",
            "1:",
            // the thread's heap (initial-exec TLS)
            "mov rcx, qword ptr [rip + hakmem_thread_slot@GOTTPOFF]",
            // (the countdown enters here, the slot's offset in rcx)
            "4:",
            "mov rcx, qword ptr fs:[rcx]",
            // the bin's byte offset for this size (the heap's size table)
            "movzx edx, word ptr [rcx + rdi*2 + {table}]",
            // pop the bin's head, if any
            "mov rax, qword ptr [rcx + rdx + {head}]",
            "test rax, rax",
            "je 2f",
            "mov rsi, qword ptr [rax]",
            "mov qword ptr [rcx + rdx + {head}], rsi",
            "inc dword ptr [rcx + rdx + {room}]",
            "mov qword ptr [rax + {mark}], 0",
            "ret",
            // observers are on and the size is small: count it down; not
            // due -> the fast path
            "3:",
            "cmp rdi, qword ptr [rip + {sample_limit}]",
            "ja 2f",
            "mov rcx, qword ptr [rip + hakmem_thread_slot@GOTTPOFF]",
            "sub qword ptr fs:[rcx + {left}], 1",
            "ja 4b",
            // due (1 -> 0) or the thread's first (0 -> wrapped): undo the
            // decrement, malloc_observed counts the call itself
            "add qword ptr fs:[rcx + {left}], 1",
            "mov rsi, qword ptr [rsp]",
            "jmp {observed}",
            // the bin was empty or the size above the limits: the checked
            // fast path while secure mode or the debug ring is on (both
            // limits are 0 then), else the slow path
            "2:",
            "mov rsi, qword ptr [rsp]",
            "cmp byte ptr [rip + {checked}], 0",
            "jne 6f",
            "jmp {slow}",
            // secure mode, no observers and a secure tiny size (else the
            // checked fast path): pop the bin of the size's secure class
            "6:",
            "cmp rdi, qword ptr [rip + {slimit}]",
            "jae {checked_entry}",
            "lea rdx, [rip + {sbins}]",
            "movzx edx, word ptr [rdx + rdi*2]",
            "mov r11, qword ptr [rip + hakmem_thread_slot@GOTTPOFF]",
            "mov rcx, qword ptr fs:[r11]",
            "mov rax, qword ptr [rcx + rdx + {head}]",
            "test rax, rax",
            "je {checked_entry}",
            "mov r8, qword ptr [rax]",
            "mov qword ptr [rcx + rdx + {head}], r8",
            "inc dword ptr [rcx + rdx + {room}]",
            "mov qword ptr [rax + {mark}], 0",
            // its size (r8), canary (r9) and tail word (r10)
            "lea r8, [rip + {tiny_info}]",
            "mov r8, qword ptr [r8 + rdx + {info_size}]",
            "mov r9, qword ptr [rip + {canary}]",
            "xor r9, rax",
            "lea r10, [rax + r8 - 8]",
            // tagged by a free (the canary's complement)? then the body,
            // bytes 16 up to the tail, must still hold the poison
            "mov rcx, r9",
            "not rcx",
            "cmp qword ptr [r10], rcx",
            "jne 7f",
            "mov rdx, 24",
            "sub rdx, r8",
            "movabs rcx, {poison}",
            "8:",
            "cmp qword ptr [r10 + rdx], rcx",
            "jne 9f",
            "add rdx, 8",
            "jnz 8b",
            // the canary
            "7:",
            "mov qword ptr [r10], r9",
            // the thread's debug ring, if it has one: (p | alloc, ra |
            // size << shift)
            "mov rcx, qword ptr fs:[r11 + {ring}]",
            "test rcx, rcx",
            "jz 5f",
            "mov rdx, qword ptr [rcx + {rpos}]",
            "lea r8, [rax + {kalloc}]",
            "mov qword ptr [rcx + rdx + {rev}], r8",
            "shl rdi, {sshift}",
            "or rdi, rsi",
            "mov qword ptr [rcx + rdx + {rev} + 8], rdi",
            "add rdx, 16",
            "and rdx, qword ptr [rcx + {rmask}]",
            "mov qword ptr [rcx + {rpos}], rdx",
            "5:",
            "ret",
            // written after free: reported there
            "9:",
            "mov rdx, rax",
            "mov rcx, r8",
            "jmp {written}",
            slimit = sym se::SECURE_LIMIT,
            sbins = sym se::SECURE_BINS,
            tiny_info = sym se::TINY_INFO,
            info_size = const se::INFO_SIZE_OFFSET,
            canary = sym se::CANARY,
            poison = const se::POISON_WORD,
            ring = const se::RING_OFFSET,
            rpos = const se::RING_POS_OFFSET,
            rmask = const se::RING_MASK_OFFSET,
            rev = const se::RING_EVENTS_OFFSET,
            kalloc = const se::KIND_ALLOC,
            sshift = const se::RING_SIZE_SHIFT,
            written = sym malloc_written_entry,
            limit = sym hk::TINY_LIMIT,
            checked = sym hk::CHECKED,
            checked_entry = sym malloc_checked_entry,
            sample_limit = sym hk::SAMPLE_LIMIT,
            left = const hk::SAMPLE_LEFT_OFFSET,
            observed = sym malloc_observed_entry,
            table = const HEAP_SIZE_BINS_OFFSET,
            head = const BIN_HEAD_OFFSET,
            room = const BIN_ROOM_OFFSET,
            mark = const BLOCK_MARK_OFFSET,
            slow = sym malloc_slow_entry,
        )
    }

    /// The slow path of `free` for an address beyond the page map.
    unsafe extern "C" fn free_slow_entry(p: *mut c_void, ra: usize) {
        // SAFETY: the caller's contract (a live block or null).
        unsafe { hk::free_slow_path(p.cast(), ra) }
    }

    /// The slow path of `free` after the page-map lookup, for a miss after
    /// the key test (a slot of this thread's heap): `x` is the entry XOR the
    /// heap's key, `heap` the thread's heap.
    unsafe extern "C" fn free_keyed_entry(p: *mut c_void, x: usize, heap: *mut u8, ra: usize) {
        // SAFETY: the caller's contract (a live block or null); `heap` was
        // read from this thread's slot and `x` computed from its key.
        unsafe { hk::free_after_lookup(p.cast(), x, heap, ra) }
    }

    /// [`free_keyed_entry`] for a miss at the key test (`x` is at least
    /// `Entry::KEY_HIT`: not a slot of this thread's heap), the common
    /// case of a cross-thread free.
    unsafe extern "C" fn free_other_entry(p: *mut c_void, x: usize, heap: *mut u8, ra: usize) {
        // SAFETY: as for `free_keyed_entry`.
        unsafe { hk::free_after_key_miss(p.cast(), x, heap, ra) }
    }

    /// `free(3)`: the same fast path as `hakmem::free`, written out so that
    /// its instruction count is exact. A pointer is pushed on the calling
    /// thread's bin only if all of this holds; anything else goes to the
    /// slow path with what the fast path looked up (the entry XOR the key,
    /// the heap): a miss at the key test to `hakmem::free_after_key_miss`,
    /// which batches cross-thread frees, later misses to
    /// `hakmem::free_after_lookup`; both send the rest on to be validated
    /// and reported (an address beyond the map goes to
    /// `hakmem::free_slow_path`):
    ///
    /// * it lies below 2^47 and its page-map entry XOR the heap's key is
    ///   below `Entry::KEY_HIT`: a slot of a superslab this thread owns,
    ///   and the result is the bin's byte offset;
    /// * its offset in the slot passes the bin's block-start test;
    /// * its second word is not the free mark (not free already);
    /// * the bin has room (the decrement is undone when it had none).
    ///
    /// # Safety
    /// `p` must be null or a live block from this allocator.
    #[unsafe(no_mangle)]
    #[unsafe(naked)]
    pub unsafe extern "C" fn free(p: *mut c_void) {
        core::arch::naked_asm!(
            // the page-map entry: top[p >> 34] + (p >> 16) * 4 (the top
            // table holds biased leaf pointers), p beyond 47 bits -> slow
            "mov rcx, rdi",
            "shr rcx, {granule}",
            "mov rax, rcx",
            "shr rax, {top_rest}",
            "cmp rax, {top_entries}",
            "jae 2f",
            "lea rdx, [rip + hakmem_page_map]",
            "mov rax, qword ptr [rdx + rax*8 + {top}]",
            "mov esi, dword ptr [rax + rcx*4]",
            // the thread's heap; entry ^ key is the bin offset if we own it
            "mov rax, qword ptr [rip + hakmem_thread_slot@GOTTPOFF]",
            "mov rax, qword ptr fs:[rax]",
            "xor rsi, qword ptr [rax + {key}]",
            "cmp rsi, {key_hit}",
            "jae 5f",
            // a block start of the bin's class?
            "movzx edx, di",
            "imul rdx, qword ptr [rax + rsi + {test_mul}]",
            "cmp rdx, qword ptr [rax + rsi + {test_limit}]",
            "jae 4f",
            // not free already?
            "mov rdx, qword ptr [rax + {mark}]",
            "cmp qword ptr [rdi + {bmark}], rdx",
            "je 4f",
            // room in the bin? then push, marked
            "sub dword ptr [rax + rsi + {room}], 1",
            "jb 3f",
            "mov rcx, qword ptr [rax + rsi + {head}]",
            "mov qword ptr [rdi + {next}], rcx",
            "mov qword ptr [rdi + {bmark}], rdx",
            "mov qword ptr [rax + rsi + {head}], rdi",
            "ret",
            // full: undo the decrement (the room was 0)
            "3:",
            "mov dword ptr [rax + rsi + {room}], 0",
            // missed after the lookup (in secure mode, always: the bins'
            // block tests refuse every offset): the secure fast path
            "4:",
            "cmp byte ptr [rip + {secure}], 0",
            "jne 6f",
            // (p, entry ^ key, heap, the caller's return address for the
            // debug ring)
            "7:",
            "mov rdx, rax",
            "mov rcx, qword ptr [rsp]",
            "jmp {keyed}",
            // secure mode: a tiny class's block start (its class's test),
            // not free already, room in the bin, its canary intact
            "6:",
            "cmp rsi, {tiny_bytes}",
            "jae 7b",
            "lea r8, [rip + {tiny_info}]",
            "movzx edx, di",
            "imul rdx, qword ptr [r8 + rsi + {info_mul}]",
            "cmp rdx, qword ptr [r8 + rsi + {info_limit}]",
            "jae 7b",
            "mov rdx, qword ptr [rax + {mark}]",
            "cmp qword ptr [rdi + {bmark}], rdx",
            "je 7b",
            "cmp dword ptr [rax + rsi + {room}], 0",
            "je 7b",
            "mov r8, qword ptr [r8 + rsi + {info_size}]",
            "mov r9, qword ptr [rip + {canary}]",
            "xor r9, rdi",
            "lea r10, [rdi + r8 - 8]",
            "cmp qword ptr [r10], r9",
            "jne 7b",
            // tag the tail (the canary's complement), poison the body
            // (bytes 16 up to the tail)
            "not r9",
            "mov qword ptr [r10], r9",
            "mov rcx, 24",
            "sub rcx, r8",
            "movabs r11, {poison}",
            "8:",
            "mov qword ptr [r10 + rcx], r11",
            "add rcx, 8",
            "jnz 8b",
            // push, marked
            "dec dword ptr [rax + rsi + {room}]",
            "mov rcx, qword ptr [rax + rsi + {head}]",
            "mov qword ptr [rdi + {next}], rcx",
            "mov qword ptr [rdi + {bmark}], rdx",
            "mov qword ptr [rax + rsi + {head}], rdi",
            // the thread's debug ring, if it has one: (p | free, ra |
            // block size << shift)
            "mov rcx, qword ptr [rip + hakmem_thread_slot@GOTTPOFF]",
            "mov rcx, qword ptr fs:[rcx + {ring}]",
            "test rcx, rcx",
            "jz 9f",
            "mov rdx, qword ptr [rcx + {rpos}]",
            "lea r9, [rdi + {kfree}]",
            "mov qword ptr [rcx + rdx + {rev}], r9",
            "shl r8, {sshift}",
            "or r8, qword ptr [rsp]",
            "mov qword ptr [rcx + rdx + {rev} + 8], r8",
            "add rdx, 16",
            "and rdx, qword ptr [rcx + {rmask}]",
            "mov qword ptr [rcx + {rpos}], rdx",
            "9:",
            "ret",
            // not a slot of ours (a cross-thread free, most often)
            "5:",
            "mov rdx, rax",
            "mov rcx, qword ptr [rsp]",
            "jmp {other}",
            "2:",
            "mov rsi, qword ptr [rsp]",
            "jmp {slow}",
            granule = const hakmem_pagemap::GRANULE_SHIFT,
            top_rest = const TOP_REST,
            top_entries = const TOP_ENTRIES,
            top = const TOP_OFFSET,
            key = const HEAP_KEY_OFFSET,
            key_hit = const Entry::KEY_HIT,
            test_mul = const BIN_TEST_MUL_OFFSET,
            test_limit = const BIN_TEST_LIMIT_OFFSET,
            mark = const HEAP_MARK_OFFSET,
            bmark = const BLOCK_MARK_OFFSET,
            room = const BIN_ROOM_OFFSET,
            head = const BIN_HEAD_OFFSET,
            next = const BLOCK_NEXT_OFFSET,
            secure = sym se::SECURE_ON,
            tiny_bytes = const se::TINY_BIN_BYTES,
            tiny_info = sym se::TINY_INFO,
            info_mul = const se::INFO_MUL_OFFSET,
            info_limit = const se::INFO_LIMIT_OFFSET,
            info_size = const se::INFO_SIZE_OFFSET,
            canary = sym se::CANARY,
            poison = const se::POISON_WORD,
            ring = const se::RING_OFFSET,
            rpos = const se::RING_POS_OFFSET,
            rmask = const se::RING_MASK_OFFSET,
            rev = const se::RING_EVENTS_OFFSET,
            kfree = const se::KIND_FREE,
            sshift = const se::RING_SIZE_SHIFT,
            slow = sym free_slow_entry,
            keyed = sym free_keyed_entry,
            other = sym free_other_entry,
        )
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod imp {
    use super::c_void;
    use facade as hk;

    /// `malloc(3)`.
    ///
    /// # Safety
    /// None beyond the C contract.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
        hk::malloc(size).cast()
    }

    /// `free(3)`.
    ///
    /// # Safety
    /// `p` must be null or a live block from this allocator.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn free(p: *mut c_void) {
        // SAFETY: forwarded contract.
        unsafe { hk::free(p.cast()) }
    }
}

pub use imp::{free, malloc};
