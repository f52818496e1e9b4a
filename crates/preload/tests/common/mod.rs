//! Shared helpers for the `libhakmem.so` integration tests: locating (and
//! building) the library, compiling the C test programs, running processes
//! under `LD_PRELOAD` with a deadline, and scratch directories.
//!
//! # Where the library comes from
//!
//! `hakmem-preload` is a cdylib-only package, and cargo does not build a
//! cdylib for the package's own integration tests (it only links `lib`/`rlib`
//! targets into them): after `cargo test -p hakmem-preload` there is no
//! `libhakmem.so` anywhere in the target directory unless something else built
//! it. So [`hakmem_so`] runs `$CARGO build -p hakmem-preload --profile <p>`
//! itself, once per test process, with the profile of the running test binary
//! (`target/debug/deps/<test>` → `dev`, `target/release/deps/<test>` →
//! `release`), and takes the path cargo reports for the cdylib
//! (`target/<profile>/libhakmem.so`). Cargo does not hold the build-directory
//! lock while tests run, so the nested build cannot deadlock; it is a no-op
//! when the library is fresh and rebuilds it when any allocator source
//! changed. The nested cargo inherits the environment (`CARGO_TARGET_DIR`,
//! `RUSTFLAGS`, config files), so it uses the same target directory as the
//! outer run.
//!
//! `HAKMEM_SO=/path/to/libhakmem.so` skips the build and tests that file.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Directory of this package (`crates/preload`).
pub const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// `target/<profile>` of the running test binary (`target/<profile>/deps/<exe>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary has a parent directory");
    if deps.file_name() == Some(OsStr::new("deps")) {
        deps.parent().expect("deps has a parent").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// The cargo profile that built the running test binary.
fn cargo_profile() -> String {
    match profile_dir().file_name().and_then(OsStr::to_str) {
        Some("debug") | None => "dev".to_owned(),
        Some(other) => other.to_owned(),
    }
}

/// The `libhakmem.so` under test: built (or found fresh) once per process.
pub fn hakmem_so() -> &'static Path {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(locate_or_build_so)
}

fn locate_or_build_so() -> PathBuf {
    if let Some(path) = std::env::var_os("HAKMEM_SO") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "HAKMEM_SO={} is not a file", path.display());
        let path = fs::canonicalize(&path).expect("canonicalize HAKMEM_SO");
        eprintln!("[hakmem-preload tests] using HAKMEM_SO={}", path.display());
        return path;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let profile = cargo_profile();
    let started = Instant::now();
    let out = Command::new(&cargo)
        .args(["build", "--package", "hakmem-preload", "--lib", "--profile"])
        .arg(&profile)
        .arg("--message-format=json-render-diagnostics")
        .current_dir(MANIFEST_DIR)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo:?} to build libhakmem.so: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "`cargo build -p hakmem-preload --profile {profile}` failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let path = stdout
        .lines()
        .filter(|l| l.contains(r#""reason":"compiler-artifact""#))
        .filter(|l| l.contains(r#""crate_types":["cdylib"]"#) && l.contains("hakmem-preload"))
        .find_map(cdylib_filename)
        .unwrap_or_else(|| profile_dir().join("libhakmem.so"));
    assert!(
        path.is_file(),
        "cargo built hakmem-preload but {} does not exist",
        path.display()
    );
    eprintln!(
        "[hakmem-preload tests] using {} (cargo build --profile {profile}, {:.1?})",
        path.display(),
        started.elapsed()
    );
    path
}

/// Builds the cdylib of `package` with cargo profile `profile` (a nested
/// `$CARGO build`, as [`hakmem_so`] does) and returns its path, or why it
/// could not.
pub fn build_cdylib(package: &str, profile: &str) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args(["build", "--package", package, "--lib", "--profile", profile])
        .arg("--message-format=json-render-diagnostics")
        .current_dir(MANIFEST_DIR)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cargo:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`cargo build -p {package} --profile {profile}` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let crate_name = format!(r#""name":"{}""#, package.replace('-', "_"));
    stdout
        .lines()
        .filter(|l| l.contains(r#""reason":"compiler-artifact""#))
        .filter(|l| l.contains(r#""crate_types":["cdylib"]"#))
        .filter(|l| l.contains(package) || l.contains(&crate_name))
        .find_map(cdylib_filename)
        .filter(|p| p.is_file())
        .ok_or_else(|| format!("cargo built {package} but reported no cdylib"))
}

/// The `.so` path out of a cargo `compiler-artifact` JSON message.
fn cdylib_filename(line: &str) -> Option<PathBuf> {
    let start = line.find(r#""filenames":["#)? + r#""filenames":["#.len();
    let list = &line[start..start + line[start..].find(']')?];
    list.split(',')
        .map(|s| s.trim().trim_matches('"'))
        .find(|s| s.ends_with(".so"))
        .map(PathBuf::from)
}

/// Names of the functions an ELF shared object defines in its dynamic symbol
/// table (what `nm -D --defined-only` lists as `T`/`W`).
pub fn defined_functions(so: &Path) -> Vec<String> {
    let data = fs::read(so).unwrap_or_else(|e| panic!("read {}: {e}", so.display()));
    let elf_err = |what: &str| -> ! { panic!("{} is not a 64-bit ELF: {what}", so.display()) };
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        elf_err("bad header");
    }
    let u16_at = |o: usize| u16::from_le_bytes(data[o..o + 2].try_into().unwrap()) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().unwrap()) as usize;
    let (shoff, shentsize, shnum) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c));
    let section = |i: usize| shoff + i * shentsize;
    let mut names = Vec::new();
    for i in 0..shnum {
        let sh = section(i);
        const SHT_DYNSYM: usize = 11;
        if u32_at(sh + 4) != SHT_DYNSYM {
            continue;
        }
        let (off, size, link, entsize) = (
            u64_at(sh + 0x18),
            u64_at(sh + 0x20),
            u32_at(sh + 0x28),
            u64_at(sh + 0x38),
        );
        let strtab = u64_at(section(link) + 0x18);
        if entsize == 0 {
            elf_err("dynsym entsize 0");
        }
        for sym in (off..off + size).step_by(entsize) {
            let (name, info, shndx) = (u32_at(sym), data[sym + 4], u16_at(sym + 6));
            let (bind, kind) = (info >> 4, info & 0xf);
            const STT_FUNC: u8 = 2;
            const STB_GLOBAL: u8 = 1;
            const STB_WEAK: u8 = 2;
            if shndx == 0 || kind != STT_FUNC || !(bind == STB_GLOBAL || bind == STB_WEAK) {
                continue;
            }
            let start = strtab + name;
            let end = start + data[start..].iter().position(|&b| b == 0).unwrap_or(0);
            names.push(String::from_utf8_lossy(&data[start..end]).into_owned());
        }
    }
    names
}

/// The C entry points hakmem exports.
pub const ENTRY_POINTS: [&str; 14] = [
    "malloc",
    "free",
    "calloc",
    "realloc",
    "reallocarray",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "malloc_usable_size",
    "free_sized",
    "free_aligned_sized",
    "cfree",
];

/// Whether the library under test provides `malloc` at all. While it does not
/// (the allocator is still being written), the C checks run against glibc.
pub fn so_defines_malloc() -> bool {
    static DEFINES: OnceLock<bool> = OnceLock::new();
    *DEFINES.get_or_init(|| defined_functions(hakmem_so()).iter().any(|f| f == "malloc"))
}

/// Scratch space for compiled C programs: `target/<profile>/hakmem-preload-tests`.
fn c_build_dir() -> PathBuf {
    let dir = profile_dir().join("hakmem-preload-tests");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    dir
}

/// Whether a program is installed, found on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Compiles `tests/c/<source>` with gcc (once per process) and returns the
/// output path. `shared` builds a `-shared -fPIC` library.
pub fn compile_c(source: &str, output: &str, shared: bool) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get_or_insert_with(HashMap::new).get(output) {
        return path.clone();
    }
    assert!(
        which("gcc").is_some(),
        "gcc is required to build the C conformance programs"
    );
    let src = Path::new(MANIFEST_DIR).join("tests/c").join(source);
    let dest = c_build_dir().join(output);
    // Build under a private name, then rename: concurrent test processes never
    // see (or execute) a half-written file.
    let tmp = c_build_dir().join(format!("{output}.{}.tmp", std::process::id()));
    let mut cmd = Command::new("gcc");
    cmd.args(["-std=gnu11", "-O2", "-g", "-pthread", "-Wall", "-Wextra"])
        // Keep gcc from folding or eliding allocator calls (free(malloc(n)),
        // malloc(SIZE_MAX)): the checks must reach the library.
        .arg("-fno-builtin")
        .arg("-Wno-deprecated-declarations");
    if shared {
        cmd.args(["-shared", "-fPIC"]);
    }
    cmd.arg("-o").arg(&tmp).arg(&src).arg("-ldl");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run gcc: {e}"));
    assert!(
        out.status.success(),
        "gcc failed to compile {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.stderr.is_empty() {
        eprintln!(
            "gcc warnings for {}:\n{}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fs::rename(&tmp, &dest).unwrap_or_else(|e| panic!("rename to {}: {e}", dest.display()));
    built
        .get_or_insert_with(HashMap::new)
        .insert(output.to_owned(), dest.clone());
    dest
}

/// What a finished process left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
}

impl Finished {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// A transcript for assertion messages: status, stdout tail, stderr tail.
    pub fn describe(&self) -> String {
        fn tail(bytes: &[u8]) -> String {
            let s = String::from_utf8_lossy(bytes);
            let start = s.len().saturating_sub(6000);
            let start = (start..s.len())
                .find(|&i| s.is_char_boundary(i))
                .unwrap_or(s.len());
            s[start..].to_owned()
        }
        format!(
            "status: {} after {:.2?}\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
            self.status,
            self.elapsed,
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }
}

fn read_all(mut r: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

fn kill_group(child: &Child) {
    let pgid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions; the child leads its
    // own process group (process_group(0)), so -pgid names only its tree.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// Runs `cmd` to completion with no stdin, capturing stdout and stderr; kills
/// its whole process group and panics if it is still running after `limit`
/// (a deadlocked allocator must fail the test, not hang it).
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Finished {
    run_with_input(cmd, Stdio::null(), limit)
}

/// Processes of one test binary run under a shared hold of this lock, and
/// timed runs ([`run_exclusive`]) under an exclusive one, so a timed run has
/// the machine to itself as far as this test binary is concerned.
static RUNNING: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// [`run_with_timeout`] with `stdin` as the standard input (e.g. a file).
pub fn run_with_input(cmd: &mut Command, stdin: Stdio, limit: Duration) -> Finished {
    let _shared = RUNNING.read().unwrap_or_else(|e| e.into_inner());
    run_unlocked(cmd, stdin, limit)
}

/// [`run_with_input`] while no other process of this test binary runs (for
/// wall-time measurements).
pub fn run_exclusive(cmd: &mut Command, stdin: Stdio, limit: Duration) -> Finished {
    let _exclusive = RUNNING.write().unwrap_or_else(|e| e.into_inner());
    run_unlocked(cmd, stdin, limit)
}

fn run_unlocked(cmd: &mut Command, stdin: Stdio, limit: Duration) -> Finished {
    let started = Instant::now();
    let description = format!("{cmd:?}");
    let mut child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {description}: {e}"));
    let out = read_all(child.stdout.take().expect("piped stdout"));
    let err = read_all(child.stderr.take().expect("piped stderr"));
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > limit {
            kill_group(&child);
            let status = child.wait().expect("wait");
            let finished = Finished {
                status,
                stdout: out.join().unwrap_or_default(),
                stderr: err.join().unwrap_or_default(),
                elapsed: started.elapsed(),
            };
            panic!(
                "timed out after {limit:?} (deadlock?): {description}\n{}",
                finished.describe()
            );
        }
        thread::sleep(Duration::from_millis(5));
    };
    // A grandchild that outlives the child (a daemonised helper) would hold
    // the pipes open: give the readers a moment, then end the whole group.
    let grace = Instant::now();
    while !(out.is_finished() && err.is_finished()) {
        if grace.elapsed() > Duration::from_secs(2) {
            kill_group(&child);
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    Finished {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed: started.elapsed(),
    }
}

/// Marks `cmd` to run under `LD_PRELOAD=<libhakmem.so>`.
pub fn preload(cmd: &mut Command) -> &mut Command {
    cmd.env("LD_PRELOAD", hakmem_so())
}

/// Removes every `HAKMEM_*` variable of the test's own environment from
/// `cmd` (`HAKMEM_SO`, `HAKMEM_SOAK_SECS`, ...): hakmem reads its options
/// from `HAKMEM_*` and reports unknown ones on stderr, which a test that
/// counts hakmem's stderr lines must not see. Set the options a run needs
/// after this.
pub fn without_hakmem_env(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HAKMEM_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Fails if ld.so reported that it could not preload the library (it then
/// carries on with glibc's malloc, which would make the run meaningless).
pub fn assert_preload_took(run: &Finished, what: &str) {
    let stderr = run.stderr_str();
    assert!(
        !stderr.contains("cannot be preloaded"),
        "{what}: ld.so did not preload libhakmem.so:\n{stderr}"
    );
}

/// A scratch directory removed on drop (also when the test panics).
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hakmem-preload-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A small deterministic PRNG (xorshift64*) for generating test inputs.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A lowercase word of `len` letters.
    pub fn word(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b'a' + self.below(26) as u8))
            .collect()
    }
}
