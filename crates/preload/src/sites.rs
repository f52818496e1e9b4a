//! The C API of call-site profiling (`include/hakmem.h`).

use core::ffi::{c_int, c_void};

use facade as hk;

/// `void *hak_alloc_site(size_t size, const void *site)`: `size` bytes,
/// recorded at `site` (any address the caller chooses, e.g. its own return
/// address in an allocation wrapper).
#[unsafe(no_mangle)]
pub extern "C" fn hak_alloc_site(size: usize, site: *const c_void) -> *mut c_void {
    hk::alloc_recorded(size, hk::MIN_ALIGN, hk::SiteId::code(site as usize)).cast()
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
/// `void *hak_alloc_cs(size_t size)`: `size` bytes, recorded at the
/// caller's return address (a naked trampoline reads it and tail-calls
/// `hak_alloc_site`).
///
/// # Safety
/// None beyond the C contract; `unsafe` only because it is naked.
#[unsafe(no_mangle)]
#[unsafe(naked)]
pub unsafe extern "C" fn hak_alloc_cs(size: usize) -> *mut c_void {
    core::arch::naked_asm!(
        "mov rsi, qword ptr [rsp]",
        "jmp {site}",
        site = sym hak_alloc_site,
    )
}

/// `void hak_free_cs(void *ptr)`: frees any hakmem block (recording the
/// free if the block was recorded).
///
/// # Safety
/// `ptr` must be null or a live block from this allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hak_free_cs(ptr: *mut c_void) {
    // SAFETY: forwarded contract.
    unsafe { hk::free(ptr.cast()) }
}

/// `void hak_sites_report(int fd)`: the top sites by bytes and by count.
#[unsafe(no_mangle)]
pub extern "C" fn hak_sites_report(fd: c_int) {
    hk::site_report::report(fd);
}

/// `int hak_sites_report_json(int fd)`: the site table as JSON; 0 on
/// success, -1 if writing failed.
#[unsafe(no_mangle)]
pub extern "C" fn hak_sites_report_json(fd: c_int) -> c_int {
    if hk::site_report::report_json(fd) {
        0
    } else {
        -1
    }
}

/// `void hak_sites_reset(void)`: clears the counters.
#[unsafe(no_mangle)]
pub extern "C" fn hak_sites_reset() {
    hk::site_report::reset();
}

/// `int hak_site_placement(int on)`: turns site-aware placement on (`on` >
/// 0) or off (`on` == 0), or only asks (`on` < 0); returns whether it was
/// on before the call.
#[unsafe(no_mangle)]
pub extern "C" fn hak_site_placement(on: c_int) -> c_int {
    let was = hk::placement_stats().enabled;
    if on >= 0 {
        hk::set_site_placement(on > 0);
    }
    c_int::from(was)
}
