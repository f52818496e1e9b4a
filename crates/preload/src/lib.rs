//! `libhakmem.so`: hakmem behind the C allocation API.
//!
//! `LD_PRELOAD=target/release/libhakmem.so program` makes every `malloc`,
//! `free`, `calloc`, `realloc`, ... of the program and its libraries go to
//! hakmem. Each function here only adapts C conventions (errno values,
//! argument validation) and calls the facade.
//!
//! Choices where C libraries differ:
//! * `realloc(p, 0)` frees `p` and returns NULL, as glibc does;
//! * `malloc(0)` returns a unique pointer to a minimum-size block;
//! * `memalign` rounds an alignment that is not a power of two up to one
//!   (glibc does the same); `aligned_alloc` rejects it with `EINVAL`.

use core::ffi::{c_int, c_void};

use facade as hk;

const PAGE: usize = 4096;

fn fail_einval() -> *mut c_void {
    // SAFETY: errno is thread-local and always writable.
    unsafe { *libc::__errno_location() = libc::EINVAL };
    core::ptr::null_mut()
}

fn fail_enomem() -> *mut c_void {
    // SAFETY: errno is thread-local and always writable.
    unsafe { *libc::__errno_location() = libc::ENOMEM };
    core::ptr::null_mut()
}

mod malloc_entry;
mod sites;

pub use malloc_entry::{free, malloc};

/// `cfree`: an old alias of `free`.
///
/// # Safety
/// As for [`free`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: forwarded contract.
    unsafe { hk::free(p.cast()) }
}

/// `free_sized` (C23): the size is not needed to free.
///
/// # Safety
/// As for [`free`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free_sized(p: *mut c_void, _size: usize) {
    // SAFETY: forwarded contract.
    unsafe { hk::free(p.cast()) }
}

/// `free_aligned_sized` (C23).
///
/// # Safety
/// As for [`free`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free_aligned_sized(p: *mut c_void, _align: usize, _size: usize) {
    // SAFETY: forwarded contract.
    unsafe { hk::free(p.cast()) }
}

/// `calloc(3)`.
#[unsafe(no_mangle)]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    hk::calloc(n, size).cast()
}

/// `realloc(3)`.
///
/// # Safety
/// `p` must be null or a live block from this allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { hk::realloc(p.cast(), size).cast() }
}

/// `reallocarray(3)`: `realloc(p, n * size)` with overflow checking.
///
/// # Safety
/// As for [`realloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: forwarded contract.
        Some(total) => unsafe { hk::realloc(p.cast(), total).cast() },
        None => fail_enomem(),
    }
}

fn memalign_impl(align: usize, size: usize) -> *mut c_void {
    let align = if align <= hk::MIN_ALIGN {
        hk::MIN_ALIGN
    } else {
        match align.checked_next_power_of_two() {
            Some(a) => a,
            None => return fail_einval(),
        }
    };
    hk::aligned_alloc(align, size).cast()
}

/// `posix_memalign(3)`: `EINVAL` unless `align` is a power of two multiple
/// of `sizeof(void *)`; `*out` is untouched on error. As in glibc (checked
/// against 2.36), `EINVAL` leaves `errno` alone, and an `ENOMEM` failure
/// also sets `errno` to `ENOMEM` (programs that report `strerror(errno)`
/// after a failed call see the right reason); success leaves it as it was.
///
/// # Safety
/// `out` must be valid for a pointer write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || !align.is_multiple_of(core::mem::size_of::<*mut c_void>()) {
        return libc::EINVAL;
    }
    // SAFETY: errno is thread-local and always readable.
    let saved = unsafe { *libc::__errno_location() };
    let p = hk::aligned_alloc(align, size);
    if p.is_null() {
        // the facade sets ENOMEM on its failure paths; set it here too, so
        // no path can leave another value
        fail_enomem();
        return libc::ENOMEM;
    }
    // SAFETY: errno is thread-local and always writable.
    unsafe { *libc::__errno_location() = saved };
    // SAFETY: the caller gives a writable out-pointer.
    unsafe { *out = p.cast() };
    0
}

/// `aligned_alloc(3)`: `EINVAL` for an alignment that is 0 or not a power
/// of two.
#[unsafe(no_mangle)]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        return fail_einval();
    }
    hk::aligned_alloc(align, size).cast()
}

/// `memalign(3)`.
#[unsafe(no_mangle)]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    memalign_impl(align, size)
}

/// `valloc(3)`: page-aligned.
#[unsafe(no_mangle)]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    hk::aligned_alloc(PAGE, size).cast()
}

/// `pvalloc(3)`: page-aligned, size rounded up to whole pages.
#[unsafe(no_mangle)]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let Some(rounded) = size.max(1).checked_add(PAGE - 1).map(|s| s & !(PAGE - 1)) else {
        return fail_enomem();
    };
    hk::aligned_alloc(PAGE, rounded).cast()
}

/// `malloc_usable_size(3)`: 0 for null.
///
/// # Safety
/// `p` must be null or a live block from this allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: forwarded contract.
    unsafe { hk::usable_size(p.cast()) }
}

/// `malloc_trim(3)`: gives cached memory back to the OS now. Returns 1 if
/// memory was released, 0 otherwise (the padding argument is ignored).
#[unsafe(no_mangle)]
pub extern "C" fn malloc_trim(_pad: usize) -> c_int {
    hk::collect() as c_int
}
