//! What happens at process exit: the reports asked for in the environment.
//!
//! Hooked through `.fini_array`, which runs without allocating and after
//! `main` returns or `exit` is called (not on `_exit` or a crash).

use crate::sites;

extern "C" fn at_exit() {
    if sites::sampling() {
        sites::report(2);
    }
    let name = b"HAKMEM_SITES_JSON\0";
    // SAFETY: a NUL-terminated name; getenv returns null or a C string.
    let path = unsafe { libc::getenv(name.as_ptr().cast()) };
    if !path.is_null() {
        // SAFETY: a C string path; the descriptor is ours until closed.
        unsafe {
            let fd = libc::open(
                path,
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                0o644,
            );
            if fd >= 0 {
                sites::report_json(fd);
                libc::close(fd);
            } else {
                hakmem_platform::Line::new()
                    .str("hakmem: HAKMEM_SITES_JSON: cannot create the file")
                    .emit();
            }
        }
    }
}

#[used]
#[unsafe(link_section = ".fini_array")]
static AT_EXIT: extern "C" fn() = at_exit;
