//! `libjemalloc_preload.so`: jemalloc behind the C allocation API.
//!
//! `tikv-jemalloc-sys` builds the bundled jemalloc with its `_rjem_` prefix.
//! A Rust `cdylib` exports only the symbols that Rust itself marks
//! `no_mangle`, so every entry point of the C allocation API is a thin
//! wrapper around the prefixed jemalloc function. `LD_PRELOAD=
//! libjemalloc_preload.so program` then routes the program's `malloc` family
//! to jemalloc.

use core::ffi::{c_char, c_int, c_void};

use tikv_jemalloc_sys as je;

unsafe extern "C" {
    #[link_name = "_rjem_memalign"]
    fn je_memalign(alignment: usize, size: usize) -> *mut c_void;
    #[link_name = "_rjem_valloc"]
    fn je_valloc(size: usize) -> *mut c_void;
}

/// C `malloc`.
///
/// # Safety
/// As the C standard's `malloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    // SAFETY: same contract as C malloc.
    unsafe { je::malloc(size) }
}

/// C `calloc`.
///
/// # Safety
/// As the C standard's `calloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn calloc(count: usize, size: usize) -> *mut c_void {
    // SAFETY: same contract as C calloc.
    unsafe { je::calloc(count, size) }
}

/// C `realloc`.
///
/// # Safety
/// `p` is null or a live block of this allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: the caller passes null or a live block of this allocator.
    unsafe { je::realloc(p, size) }
}

/// C `free`.
///
/// # Safety
/// `p` is null or a live block of this allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: the caller passes null or a live block of this allocator.
    unsafe { je::free(p) }
}

/// glibc's obsolete `cfree`.
///
/// # Safety
/// As `free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: the caller passes null or a live block of this allocator.
    unsafe { je::free(p) }
}

/// POSIX `posix_memalign`.
///
/// # Safety
/// `out` is valid for a pointer write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(
    out: *mut *mut c_void,
    alignment: usize,
    size: usize,
) -> c_int {
    // SAFETY: the caller passes a writable `out`.
    unsafe { je::posix_memalign(out, alignment, size) }
}

/// C11 `aligned_alloc`.
///
/// # Safety
/// As the C standard's `aligned_alloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aligned_alloc(alignment: usize, size: usize) -> *mut c_void {
    // SAFETY: same contract as C aligned_alloc.
    unsafe { je::aligned_alloc(alignment, size) }
}

/// Obsolete `memalign`.
///
/// # Safety
/// As glibc's `memalign`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memalign(alignment: usize, size: usize) -> *mut c_void {
    // SAFETY: same contract as memalign.
    unsafe { je_memalign(alignment, size) }
}

/// Obsolete `valloc`.
///
/// # Safety
/// As glibc's `valloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    // SAFETY: same contract as valloc.
    unsafe { je_valloc(size) }
}

/// Obsolete `pvalloc`: `valloc` of the size rounded up to whole pages.
///
/// # Safety
/// As glibc's `pvalloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    const PAGE: usize = 4096;
    let Some(rounded) = size.checked_add(PAGE - 1) else {
        return core::ptr::null_mut();
    };
    // SAFETY: same contract as valloc.
    unsafe { je_valloc(rounded & !(PAGE - 1)) }
}

/// `reallocarray`: `realloc(p, count * size)` with an overflow check.
///
/// # Safety
/// `p` is null or a live block of this allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, count: usize, size: usize) -> *mut c_void {
    match count.checked_mul(size) {
        // SAFETY: the caller passes null or a live block of this allocator.
        Some(bytes) => unsafe { je::realloc(p, bytes) },
        None => {
            // SAFETY: errno is this thread's own.
            unsafe { *errno_location() = ENOMEM };
            core::ptr::null_mut()
        }
    }
}

/// glibc's `malloc_usable_size`.
///
/// # Safety
/// `p` is null or a live block of this allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    if p.is_null() {
        return 0;
    }
    // SAFETY: the caller passes a live block of this allocator.
    unsafe { je::malloc_usable_size(p) }
}

/// The bundled jemalloc's version string, for the benchmark report.
#[unsafe(no_mangle)]
pub extern "C" fn bench_peer_jemalloc_version() -> *const c_char {
    let mut out: *const c_char = core::ptr::null();
    let mut len = core::mem::size_of::<*const c_char>();
    // SAFETY: "version" is a documented read-only mallctl of type `const char *`;
    // `out`/`len` describe a buffer of exactly that type.
    let rc = unsafe {
        je::mallctl(
            c"version".as_ptr(),
            (&raw mut out).cast(),
            &mut len,
            core::ptr::null_mut(),
            0,
        )
    };
    if rc == 0 {
        out
    } else {
        c"unknown".as_ptr()
    }
}

const ENOMEM: c_int = 12;

unsafe extern "C" {
    #[link_name = "__errno_location"]
    fn errno_location() -> *mut c_int;
}
