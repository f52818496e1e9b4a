//! The exported `malloc`.
//!
//! On x86_64 it is written out by hand (a naked function) so that it can do
//! two things a compiled Rust function cannot promise: hand its slow path the
//! caller's return address (the call-site label of a sampled `malloc`), and
//! let sampling cost nothing while it is off and little while it is on. It
//! is the same fast path as `hakmem::malloc` — pop the thread's bin for the
//! size — except that the size limit of that path is read from
//! `hakmem::TINY_LIMIT` (1 KiB normally, 0 while `HAKMEM_SITES=1` samples or
//! the learner observes). A size above the limit but within
//! `hakmem::SAMPLE_LIMIT` (1 KiB while sampling, else 0) is counted down in
//! the thread slot and then served by the same fast path; the call that
//! takes the countdown to zero goes to `malloc_sample_due` with its return
//! address. Off, it is the compiled version's instruction count (the limit
//! is a memory operand instead of an immediate); sampling adds a compare, a
//! TLS decrement and three jumps.
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
        hk::malloc_with_caller(size, caller).cast()
    }

    /// The sampling countdown ran out.
    extern "C" fn malloc_sample_entry(size: usize, caller: usize) -> *mut c_void {
        hk::malloc_sample_due(size, caller).cast()
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
            // a sampled size: count it down; not due -> the fast path
            "3:",
            "cmp rdi, qword ptr [rip + {sample_limit}]",
            "ja 2f",
            "mov rcx, qword ptr [rip + hakmem_thread_slot@GOTTPOFF]",
            "sub qword ptr fs:[rcx + {left}], 1",
            "ja 1b",
            // due (1 -> 0) or the thread's first (0 -> wrapped)
            "mov rsi, qword ptr [rsp]",
            "jmp {sample}",
            "2:",
            "mov rsi, qword ptr [rsp]",
            "jmp {slow}",
            limit = sym hk::TINY_LIMIT,
            sample_limit = sym hk::SAMPLE_LIMIT,
            left = const hk::SAMPLE_LEFT_OFFSET,
            sample = sym malloc_sample_entry,
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
