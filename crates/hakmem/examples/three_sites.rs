//! The prototype's demo: three call sites allocate 64 KiB × 1000,
//! 256 KiB × 100 and 2 MiB × 10 through `hakmem::alloc_cs`, and the site
//! report tells them apart (run: `cargo run -p hakmem --example three_sites`).

use std::alloc::Layout;

fn json_like(n: usize) -> Vec<*mut u8> {
    (0..n)
        .map(|_| hakmem::alloc_cs(Layout::from_size_align(64 << 10, 16).unwrap()))
        .collect()
}

fn mir_like(n: usize) -> Vec<*mut u8> {
    (0..n)
        .map(|_| hakmem::alloc_cs(Layout::from_size_align(256 << 10, 16).unwrap()))
        .collect()
}

fn vm_like(n: usize) -> Vec<*mut u8> {
    (0..n)
        .map(|_| hakmem::alloc_cs(Layout::from_size_align(2 << 20, 16).unwrap()))
        .collect()
}

fn main() {
    let mut all = json_like(1000);
    all.extend(mir_like(100));
    all.extend(vm_like(10));
    for p in all {
        assert!(!p.is_null());
        // SAFETY: each block was allocated above and is freed once.
        unsafe { hakmem::free(p) };
    }
    hakmem::site_report::report(1);
}
