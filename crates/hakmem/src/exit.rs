//! What happens at process exit: the reports and files asked for in the
//! environment (`HAKMEM_STATS`, `HAKMEM_SITES`, `HAKMEM_SITES_JSON`,
//! `HAKMEM_POLICY_SAVE`).
//!
//! Hooked through `.fini_array`, which runs after `main` returns or `exit`
//! is called (not on `_exit` or a crash). Nothing here allocates except the
//! learner's policy snapshot load.

use hakmem_platform::Line;
use hakmem_policy_rcu::POLICY_FILE_MAX;

use crate::sites;

extern "C" fn at_exit() {
    let opts = crate::config::options();
    if opts.stats {
        crate::stats::print(2);
    }
    if crate::observe::is_active(crate::observe::SITES) {
        sites::report(2);
    }
    if let Some(path) = &opts.sites_json {
        if let Some(fd) = create(path.as_c_str(), "HAKMEM_SITES_JSON") {
            sites::report_json(fd);
            // SAFETY: our descriptor.
            unsafe { libc::close(fd) };
        }
    }
    if let Some(path) = &opts.policy_save {
        let policy = match crate::learner::learned_policy() {
            Some(p) => *p,
            None => *crate::state::POLICY.load(),
        };
        let mut buf = [0u8; POLICY_FILE_MAX];
        match policy.serialize(&mut buf) {
            Ok(n) => {
                if let Some(fd) = create(path.as_c_str(), "HAKMEM_POLICY_SAVE") {
                    // SAFETY: writing our own buffer to our descriptor.
                    unsafe {
                        libc::write(fd, buf.as_ptr().cast(), n);
                        libc::close(fd);
                    }
                }
            }
            Err(_) => Line::new()
                .str("hakmem: HAKMEM_POLICY_SAVE: the policy does not fit the file buffer")
                .emit(),
        }
    }
}

/// Creates (truncates) a file for writing, or reports why not.
fn create(path: &core::ffi::CStr, var: &str) -> Option<i32> {
    // SAFETY: a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        Line::new()
            .str("hakmem: ")
            .str(var)
            .str(": cannot create the file")
            .emit();
        return None;
    }
    Some(fd)
}

#[used]
#[unsafe(link_section = ".fini_array")]
static AT_EXIT: extern "C" fn() = at_exit;
