//! What happens at process exit: the reports and files asked for in the
//! environment (`HAKMEM_STATS`, `HAKMEM_SITES`, `HAKMEM_SITES_JSON`,
//! `HAKMEM_POLICY_SAVE`, `HAKMEM_POLICY_DIR`, `HAKMEM_PROF`, `HAKMEM_PROF_JSON`).
//!
//! Hooked through `.fini_array`, which runs after `main` returns or `exit`
//! is called (not on `_exit` or a crash). Nothing here allocates except the
//! learner's policy snapshot load.

use hakmem_platform::file::Fd;
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
    if opts.prof {
        crate::profile::write_table(2);
    }
    if let Some(path) = &opts.prof_json {
        if let Some(file) = create(path.as_c_str(), "HAKMEM_PROF_JSON") {
            crate::profile::write_json(file.raw());
            file.close();
        }
    }
    if let Some(path) = &opts.sites_json {
        if let Some(file) = create(path.as_c_str(), "HAKMEM_SITES_JSON") {
            sites::report_json(file.raw());
            file.close();
        }
    }
    if let (Some(dir), Some(learned)) = (&opts.policy_dir, crate::learner::learned_policy()) {
        crate::policy_dir::save(dir, &learned);
    }
    if let Some(path) = &opts.policy_save {
        let policy = match crate::learner::learned_policy() {
            Some(p) => *p,
            None => *crate::state::POLICY.load(),
        };
        let mut buf = [0u8; POLICY_FILE_MAX];
        match policy.serialize(&mut buf) {
            Ok(n) => {
                if let Some(file) = create(path.as_c_str(), "HAKMEM_POLICY_SAVE") {
                    file.write_all(&buf[..n]);
                    file.close();
                }
            }
            Err(_) => Line::new()
                .str("hakmem: HAKMEM_POLICY_SAVE: the policy does not fit the file buffer")
                .emit(),
        }
    }
}

/// Creates (truncates) a file for writing, or reports why not.
fn create(path: &core::ffi::CStr, var: &str) -> Option<Fd> {
    let file = Fd::create(path);
    if file.is_none() {
        Line::new()
            .str("hakmem: ")
            .str(var)
            .str(": cannot create the file")
            .emit();
    }
    file
}

#[used]
#[unsafe(link_section = ".fini_array")]
static AT_EXIT: extern "C" fn() = at_exit;
