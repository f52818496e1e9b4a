//! The policy directory (`HAKMEM_POLICY_DIR`): a program's learned policy,
//! saved at exit under a name derived from its executable and loaded
//! (FROZEN, in the learning modes) by its next run.
//!
//! The name is `<executable's file name>-<16 hex digits>.policy`, the digits
//! a hash of the executable's path, size and modification time: a rebuilt
//! or replaced program gets a new name, so a policy learned by another
//! build is never loaded (old files are left for the user to delete). A
//! file that cannot be parsed is reported in one line and ignored; the run
//! then starts from the built-in policy and saves over it at exit.
//!
//! Nothing here allocates: paths are built in fixed buffers.

use core::ffi::CStr;
use core::fmt::Write;

use hakmem_options::Path;
use hakmem_platform::file::{self, Fd};
use hakmem_platform::Line;
use hakmem_policy_rcu::{FrozenPolicy, POLICY_FILE_MAX};

/// A path in a fixed buffer, NUL-terminated.
struct Buf {
    bytes: [u8; 4096],
    len: usize,
}

impl Buf {
    const fn new() -> Buf {
        Buf {
            bytes: [0; 4096],
            len: 0,
        }
    }

    /// Appends `s`; false if it does not fit (with the NUL).
    fn push(&mut self, s: &[u8]) -> bool {
        if self.len + s.len() >= self.bytes.len() || s.contains(&0) {
            return false;
        }
        self.bytes[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
        self.bytes[self.len] = 0;
        true
    }

    fn as_c_str(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.bytes[..=self.len]).unwrap_or(c"")
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// FNV-1a, 64 bits.
fn fnv(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// The policy file of this executable in `dir`: `None` if the executable
/// cannot be identified or the name does not fit.
fn file_in(dir: &Path) -> Option<Buf> {
    let mut exe = [0u8; 4096];
    let n = file::read_link(c"/proc/self/exe", &mut exe)?;
    let exe = &exe[..n];
    let stamp = file::stamp(c"/proc/self/exe")?;
    let mut h = fnv(0xCBF2_9CE4_8422_2325, exe);
    h = fnv(h, &stamp.size.to_le_bytes());
    h = fnv(h, &stamp.mtime.0.to_le_bytes());
    h = fnv(h, &stamp.mtime.1.to_le_bytes());
    let base = exe.rsplit(|&b| b == b'/').next().unwrap_or(exe);
    let mut digits = [0u8; 16];
    for (i, d) in digits.iter_mut().enumerate() {
        *d = b"0123456789abcdef"[((h >> (60 - 4 * i)) & 15) as usize];
    }
    let mut out = Buf::new();
    let dir = dir.as_bytes();
    let ok = out.push(dir)
        && (dir.ends_with(b"/") || out.push(b"/"))
        && out.push(base)
        && out.push(b"-")
        && out.push(&digits)
        && out.push(b".policy");
    ok.then_some(out)
}

fn report(path: &[u8], what: &str) {
    let mut line = Line::new();
    line.str("hakmem: HAKMEM_POLICY_DIR: ")
        .str(core::str::from_utf8(path).unwrap_or("<path>"))
        .str(": ")
        .str(what);
    line.emit();
}

/// The saved policy of this executable in `dir`, if there is one that
/// parses: its path (which the set-up treats as `HAKMEM_POLICY`) and the
/// policy. A missing file is the first run: no report. A bad one is
/// reported in one line and ignored.
pub(crate) fn load(dir: &Path) -> Option<(Path, FrozenPolicy)> {
    let path = file_in(dir)?;
    let f = Fd::open_read(path.as_c_str())?;
    let mut buf = [0u8; POLICY_FILE_MAX + 1];
    let n = f.read_all_into(&mut buf);
    f.close();
    if n > POLICY_FILE_MAX {
        report(path.as_bytes(), "longer than 8192 bytes, ignored");
        return None;
    }
    match FrozenPolicy::parse(&buf[..n]) {
        Ok(p) => Some((Path::new(path.as_bytes())?, p)),
        Err(e) => {
            let mut line = Line::new();
            line.str("hakmem: HAKMEM_POLICY_DIR: ")
                .str(core::str::from_utf8(path.as_bytes()).unwrap_or("<path>"))
                .str(": ");
            let _ = write!(line, "{e}, ignored");
            line.emit();
            None
        }
    }
}

/// Saves `policy` as this executable's policy in `dir`: written to a
/// temporary name (with the pid) and renamed over the old one, so a
/// concurrent run of the same program reads the old file or the new one,
/// never a mix. Failures are reported in one line.
pub(crate) fn save(dir: &Path, policy: &FrozenPolicy) {
    let Some(path) = file_in(dir) else {
        report(dir.as_bytes(), "cannot name this executable's policy file");
        return;
    };
    let mut buf = [0u8; POLICY_FILE_MAX];
    let Ok(n) = policy.serialize(&mut buf) else {
        report(path.as_bytes(), "the policy does not fit the file buffer");
        return;
    };
    let mut tmp = Buf::new();
    let mut pid = Line::new();
    pid.str(".tmp.").dec(hakmem_platform::process::id() as u64);
    if !(tmp.push(path.as_bytes()) && tmp.push(pid.as_str().as_bytes())) {
        report(path.as_bytes(), "path too long");
        return;
    }
    let Some(f) = Fd::create(tmp.as_c_str()) else {
        report(tmp.as_bytes(), "cannot create the file");
        return;
    };
    let written = f.write_all(&buf[..n]);
    f.close();
    if !written || !file::rename(tmp.as_c_str(), path.as_c_str()) {
        file::unlink(tmp.as_c_str());
        report(path.as_bytes(), "cannot write the file");
    }
}
