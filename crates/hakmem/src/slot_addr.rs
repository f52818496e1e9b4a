//! The address of the calling thread's slot (`hakmem_thread_slot`, defined
//! and described in `tls`), read with the initial-exec TLS model.
//!
//! A leaf of the facade's layers, so that both `tls` (which owns the slot)
//! and `ring` (whose word lives in it, and which `tls` sits above) take
//! the address from one place.

/// The address of the calling thread's `hakmem_thread_slot`.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[inline(always)]
pub(crate) fn get() -> *mut u8 {
    let p: *mut u8;
    // SAFETY: initial-exec access to our own TLS symbol (`tls` defines it
    // in `.tdata`): its offset, loaded from the GOT, plus the thread
    // pointer (which `fs:0` holds) is this thread's copy; nothing is read
    // through it or written here.
    unsafe {
        core::arch::asm!(
            "mov {p}, qword ptr [rip + hakmem_thread_slot@GOTTPOFF]",
            "add {p}, qword ptr fs:0",
            p = out(reg) p,
            options(nostack, nomem, pure),
        );
    }
    p
}
