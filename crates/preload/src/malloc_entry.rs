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
//! `hakmem::malloc_slow`. Off, it is the compiled version's instruction
//! count (the limit is a memory operand instead of an immediate); observing
//! adds a compare, a TLS decrement and three jumps.
//!
//! Layout facts it relies on are checked at compile time in `hakmem`
//! (the heap's bins come first, 32 bytes each; a bin's head and room; a
//! block's free mark; the slot's countdown).

use core::ffi::c_void;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
    use super::c_void;
    use facade as hk;
    use hakmem_tiny_sll::{BIN_HEAD_OFFSET, BIN_ROOM_OFFSET, BLOCK_MARK_OFFSET};

    /// The slow path: everything the fast path does not serve.
    extern "C" fn malloc_slow_entry(size: usize, caller: usize) -> *mut c_void {
        hk::malloc_slow(size, caller).cast()
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
            "mov rcx, qword ptr fs:[rcx]",
            // the bin's byte offset for this size
            "lea rax, [rip + {table}]",
            "movzx edx, word ptr [rax + rdi*2]",
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
            "ja 1b",
            // due (1 -> 0) or the thread's first (0 -> wrapped): undo the
            // decrement, malloc_observed counts the call itself
            "add qword ptr fs:[rcx + {left}], 1",
            "mov rsi, qword ptr [rsp]",
            "jmp {observed}",
            "2:",
            "mov rsi, qword ptr [rsp]",
            "jmp {slow}",
            limit = sym hk::TINY_LIMIT,
            sample_limit = sym hk::SAMPLE_LIMIT,
            left = const hk::SAMPLE_LEFT_OFFSET,
            observed = sym malloc_observed_entry,
            table = sym hk::TINY_BIN_OFFSET,
            head = const BIN_HEAD_OFFSET,
            room = const BIN_ROOM_OFFSET,
            mark = const BLOCK_MARK_OFFSET,
            slow = sym malloc_slow_entry,
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
}

pub use imp::malloc;
