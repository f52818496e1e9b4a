//! What happens at process exit: the reports and files asked for in the
//! environment (`HAKMEM_STATS`, `HAKMEM_SITES`, `HAKMEM_SITES_JSON`,
//! `HAKMEM_POLICY_SAVE`, `HAKMEM_POLICY_DIR`, `HAKMEM_PROF`, `HAKMEM_PROF_JSON`).
//!
//! Hooked through `.fini_array`, which runs after `main` returns or `exit`
//! is called (not on `_exit` or a crash). Nothing here allocates except the
//! learner's policy snapshot load.
//!
//! Output paths name one file per process where they say so: `%p` becomes
//! the process id, `%e` the executable's name, `%%` a `%` (expanded here, at
//! exit, so a forked child gets its own id), in fixed stack buffers. Each
//! file is written under a temporary name beside it (`<path>.<pid>.tmp`)
//! and renamed into place once complete, so a reader never sees half a
//! report and two processes writing one path leave one whole file.

use hakmem_options::{Path, PATH_MAX};
use hakmem_platform::file::{self, Fd};
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
        write_output(path, "HAKMEM_PROF_JSON", |file| {
            crate::profile::write_json(file.raw())
        });
    }
    if let Some(path) = &opts.sites_json {
        write_output(path, "HAKMEM_SITES_JSON", |file| {
            sites::report_json(file.raw())
        });
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
            Ok(n) => write_output(path, "HAKMEM_POLICY_SAVE", |file| file.write_all(&buf[..n])),
            Err(_) => Line::new()
                .str("hakmem: HAKMEM_POLICY_SAVE: the policy does not fit the file buffer")
                .emit(),
        }
    }
}

/// Writes the output file of option `var` at `path` (placeholders
/// expanded) with `write`: under a temporary name, then renamed. A failure
/// is reported in one line and leaves no temporary file.
fn write_output(path: &Path, var: &str, write: impl FnOnce(&Fd) -> bool) {
    let pid = hakmem_platform::process::id();
    let mut exe = [0u8; 128];
    let exe_len = hakmem_platform::process::exe_name(&mut exe);
    let mut dest_buf = [0u8; PATH_MAX];
    let Some(dest) = path.expand(pid, &exe[..exe_len], &mut dest_buf) else {
        return fail(var, "the expanded path is too long");
    };
    let mut tmp_buf = [0u8; PATH_MAX + 16];
    let Some(tmp) = temp_name(dest.to_bytes(), pid, &mut tmp_buf) else {
        return fail(var, "the expanded path is too long");
    };
    let Some(out) = Fd::create(tmp) else {
        return fail(var, "cannot create the file");
    };
    let written = write(&out);
    out.close();
    if !written {
        file::unlink(tmp);
        return fail(var, "cannot write the file");
    }
    if !file::rename(tmp, dest) {
        file::unlink(tmp);
        fail(var, "cannot rename the file into place");
    }
}

/// `<dest>.<pid>.tmp`, NUL-terminated in `buf`: beside `dest`, so the
/// rename stays on one file system; `None` if it does not fit.
fn temp_name<'b>(dest: &[u8], pid: u32, buf: &'b mut [u8]) -> Option<&'b core::ffi::CStr> {
    let mut digits = Line::new();
    digits.dec(pid as u64);
    let mut len = 0;
    for part in [dest, b".", digits.as_str().as_bytes(), b".tmp"] {
        let end = len + part.len();
        if end >= buf.len() {
            return None;
        }
        buf[len..end].copy_from_slice(part);
        len = end;
    }
    buf[len] = 0;
    core::ffi::CStr::from_bytes_with_nul(&buf[..=len]).ok()
}

fn fail(var: &str, why: &str) {
    Line::new()
        .str("hakmem: ")
        .str(var)
        .str(": ")
        .str(why)
        .emit();
}

#[used]
#[unsafe(link_section = ".fini_array")]
static AT_EXIT: extern "C" fn() = at_exit;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_sit_beside_the_file() {
        let mut buf = [0u8; 32];
        let t = temp_name(b"/tmp/r.json", 4711, &mut buf).unwrap();
        assert_eq!(t.to_bytes(), b"/tmp/r.json.4711.tmp");
        let mut buf = [0u8; 20];
        assert!(temp_name(b"/tmp/r.json", 4711, &mut buf).is_none());
        let mut buf = [0u8; 21];
        assert!(temp_name(b"/tmp/r.json", 4711, &mut buf).is_some());
    }

    #[test]
    fn outputs_are_renamed_into_place_with_placeholders() {
        let dir = std::env::temp_dir().join(format!("hakmem-exit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let template = format!("{}/out-%p-%e.txt", dir.display());
        let path = Path::new(template.as_bytes()).unwrap();
        write_output(&path, "HAKMEM_TEST", |f| f.write_all(b"report"));
        let exe = std::env::current_exe().unwrap();
        let exe = exe.file_name().unwrap().to_str().unwrap();
        let want = dir.join(format!("out-{}-{exe}.txt", std::process::id()));
        assert_eq!(std::fs::read(&want).unwrap(), b"report");
        // a failed write leaves neither the file nor a temporary one
        let template = format!("{}/failed-%p", dir.display());
        let path = Path::new(template.as_bytes()).unwrap();
        write_output(&path, "HAKMEM_TEST", |_| false);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
