//! `libmimalloc_preload.so`: mimalloc behind the C allocation API.
//!
//! A Rust `cdylib` exports only the symbols that Rust itself marks
//! `no_mangle`, never the C symbols of a static library it links, so every
//! entry point of the C allocation API is a thin wrapper around the
//! `mi_`-prefixed function of the bundled mimalloc (built by
//! `libmimalloc-sys`). `LD_PRELOAD=libmimalloc_preload.so program` then routes
//! the program's `malloc` family to mimalloc.
use core::ffi::{c_int, c_void};

// Keep the static library (and its constructors) linked.
use libmimalloc_sys as _;

unsafe extern "C" {
    fn mi_malloc(size: usize) -> *mut c_void;
    fn mi_calloc(count: usize, size: usize) -> *mut c_void;
    fn mi_realloc(p: *mut c_void, newsize: usize) -> *mut c_void;
    fn mi_free(p: *mut c_void);
    fn mi_posix_memalign(p: *mut *mut c_void, alignment: usize, size: usize) -> c_int;
    fn mi_aligned_alloc(alignment: usize, size: usize) -> *mut c_void;
    fn mi_memalign(alignment: usize, size: usize) -> *mut c_void;
    fn mi_valloc(size: usize) -> *mut c_void;
    fn mi_pvalloc(size: usize) -> *mut c_void;
    fn mi_reallocarray(p: *mut c_void, count: usize, size: usize) -> *mut c_void;
    fn mi_malloc_usable_size(p: *const c_void) -> usize;
    fn mi_version() -> c_int;
}

/// C `malloc`.
///
/// # Safety
/// As the C standard's `malloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    // SAFETY: same contract as C malloc.
    unsafe { mi_malloc(size) }
}

/// C `calloc`.
///
/// # Safety
/// As the C standard's `calloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn calloc(count: usize, size: usize) -> *mut c_void {
    // SAFETY: same contract as C calloc.
    unsafe { mi_calloc(count, size) }
}

/// C `realloc`.
///
/// # Safety
/// `p` is null or a live block of this allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: the caller passes null or a live block of this allocator.
    unsafe { mi_realloc(p, size) }
}

/// C `free`.
///
/// # Safety
/// `p` is null or a live block of this allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: the caller passes null or a live block of this allocator.
    unsafe { mi_free(p) }
}

/// glibc's obsolete `cfree`.
///
/// # Safety
/// As `free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: the caller passes null or a live block of this allocator.
    unsafe { mi_free(p) }
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
    unsafe { mi_posix_memalign(out, alignment, size) }
}

/// C11 `aligned_alloc`.
///
/// # Safety
/// As the C standard's `aligned_alloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aligned_alloc(alignment: usize, size: usize) -> *mut c_void {
    // SAFETY: same contract as C aligned_alloc.
    unsafe { mi_aligned_alloc(alignment, size) }
}

/// Obsolete `memalign`.
///
/// # Safety
/// As glibc's `memalign`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memalign(alignment: usize, size: usize) -> *mut c_void {
    // SAFETY: same contract as memalign.
    unsafe { mi_memalign(alignment, size) }
}

/// Obsolete `valloc`.
///
/// # Safety
/// As glibc's `valloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    // SAFETY: same contract as valloc.
    unsafe { mi_valloc(size) }
}

/// Obsolete `pvalloc`.
///
/// # Safety
/// As glibc's `pvalloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    // SAFETY: same contract as pvalloc.
    unsafe { mi_pvalloc(size) }
}

/// `reallocarray`.
///
/// # Safety
/// `p` is null or a live block of this allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, count: usize, size: usize) -> *mut c_void {
    // SAFETY: the caller passes null or a live block of this allocator.
    unsafe { mi_reallocarray(p, count, size) }
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
    unsafe { mi_malloc_usable_size(p) }
}

/// The bundled mimalloc's version (major*10000 + minor*100 + patch), for the
/// benchmark report.
#[unsafe(no_mangle)]
pub extern "C" fn bench_peer_mimalloc_version() -> c_int {
    // SAFETY: a pure query without preconditions.
    unsafe { mi_version() }
}
