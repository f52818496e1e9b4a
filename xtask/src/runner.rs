//! Runs one workload process with a time limit and classifies its end.
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// One process to run.
#[derive(Debug, Clone)]
pub struct Job {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

/// What the process did.
#[derive(Debug)]
pub struct Ended {
    pub status: Status,
    pub stdout: String,
    pub stderr: String,
    /// The lines of `stderr`, each with the time it arrived (seconds since
    /// the process was started).
    pub stderr_lines: Vec<(f64, String)>,
    pub wall: Duration,
}

/// How the process ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Success,
    Exit(i32),
    Signal(i32),
    Timeout,
    SpawnError(String),
}

impl Status {
    /// A short description for a failed cell.
    pub fn describe(&self) -> String {
        match self {
            Status::Success => "ok".into(),
            Status::Exit(c) => format!("exit {c}"),
            Status::Signal(s) => signal_name(*s),
            Status::Timeout => "timeout".into(),
            Status::SpawnError(e) => format!("cannot start: {e}"),
        }
    }
}

/// `SIGSEGV` and friends.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => return format!("signal {sig}"),
    };
    name.into()
}

fn classify(s: ExitStatus) -> Status {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(0), _) => Status::Success,
        (Some(c), _) => Status::Exit(c),
        (None, Some(sig)) => Status::Signal(sig),
        (None, None) => Status::Exit(-1),
    }
}

/// Reads a pipe to its end, line by line, noting when each line arrived.
fn drain_timed(
    r: Option<impl Read + Send + 'static>,
    start: Instant,
) -> std::thread::JoinHandle<(String, Vec<(f64, String)>)> {
    std::thread::spawn(move || {
        let mut all = String::new();
        let mut lines = Vec::new();
        if let Some(r) = r {
            let mut r = std::io::BufReader::new(r);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match std::io::BufRead::read_until(&mut r, b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let t = start.elapsed().as_secs_f64();
                        let line = String::from_utf8_lossy(&buf);
                        all.push_str(&line);
                        lines.push((t, line.trim_end_matches(['\n', '\r']).to_string()));
                    }
                }
            }
        }
        (all, lines)
    })
}

fn drain(r: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs `job`, calling `tick` about every 100 ms while it runs.
pub fn run(job: &Job, tick: &mut dyn FnMut()) -> Ended {
    let start = Instant::now();
    let mut cmd = Command::new(&job.program);
    cmd.args(&job.args)
        .env_remove("LD_PRELOAD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in &job.env {
        cmd.env(k, v);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Ended {
                status: Status::SpawnError(format!("{}: {e}", job.program.display())),
                stdout: String::new(),
                stderr: String::new(),
                stderr_lines: Vec::new(),
                wall: start.elapsed(),
            }
        }
    };
    let out = drain(child.stdout.take());
    let err = drain_timed(child.stderr.take(), start);
    let mut last_tick = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break classify(s),
            Ok(None) => {}
            Err(e) => break Status::SpawnError(e.to_string()),
        }
        if start.elapsed() > job.timeout {
            let _ = child.kill();
            let _ = child.wait();
            break Status::Timeout;
        }
        if last_tick.elapsed() >= Duration::from_millis(100) {
            tick();
            last_tick = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let wall = start.elapsed();
    let (stderr, stderr_lines) = err.join().unwrap_or_default();
    Ended {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr,
        stderr_lines,
        wall,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout_ms: u64) -> Ended {
        let job = Job {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("XT_VAR".into(), "v".into())],
            timeout: Duration::from_millis(timeout_ms),
        };
        run(&job, &mut || {})
    }

    #[test]
    fn classifies_exit_signal_and_timeout() {
        let ok = sh("echo out $XT_VAR; echo err >&2", 5000);
        assert_eq!(ok.status, Status::Success);
        assert_eq!(ok.stdout, "out v\n");
        assert_eq!(ok.stderr, "err\n");
        assert_eq!(ok.stderr_lines.len(), 1);
        assert_eq!(ok.stderr_lines[0].1, "err");
        let timed = sh("echo a >&2; sleep 0.3; echo b >&2", 5000);
        let t: Vec<f64> = timed.stderr_lines.iter().map(|(t, _)| *t).collect();
        assert_eq!(t.len(), 2);
        assert!(t[1] - t[0] >= 0.25, "lines are timed as they arrive: {t:?}");
        assert_eq!(sh("exit 3", 5000).status, Status::Exit(3));
        let seg = sh("kill -SEGV $$", 5000);
        assert_eq!(seg.status, Status::Signal(11));
        assert_eq!(seg.status.describe(), "SIGSEGV");
        let slow = sh("exec sleep 5", 200);
        assert_eq!(slow.status, Status::Timeout);
        assert!(slow.wall < Duration::from_secs(4));
        let missing = run(
            &Job {
                program: "/nonexistent/prog".into(),
                args: vec![],
                env: vec![],
                timeout: Duration::from_secs(1),
            },
            &mut || {},
        );
        assert!(matches!(missing.status, Status::SpawnError(_)));
    }
}
