//! A progress bar with an ETA on standard error (indicatif), or a plain log
//! line per run when standard error is not a terminal.
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    total: usize,
    start: Instant,
    run_start: Instant,
    tty: bool,
    current: String,
}

/// `m:ss`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

const TEMPLATE: &str = "[{bar:30}] {pos}/{len} {msg} | {elapsed_precise}, ~{eta} left";

impl Progress {
    pub fn new(total: usize) -> Self {
        Self::with_terminal(total, std::io::stderr().is_terminal())
    }

    fn with_terminal(total: usize, tty: bool) -> Self {
        let bar = if tty {
            ProgressBar::new(total as u64)
        } else {
            ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::hidden())
        };
        bar.set_style(
            ProgressStyle::with_template(TEMPLATE)
                .expect("a valid template")
                .progress_chars("#>."),
        );
        Self {
            bar,
            total,
            start: Instant::now(),
            run_start: Instant::now(),
            tty,
            current: String::new(),
        }
    }

    /// What the bar says about the current run.
    fn message(&self) -> String {
        format!("{} ({}s)", self.current, self.run_start.elapsed().as_secs())
    }

    /// A run starts.
    pub fn start(&mut self, workload: &str, rep: usize, reps: usize, allocator: &str) {
        self.current = format!("{workload} · {allocator} · rep {}/{reps}", rep + 1);
        self.run_start = Instant::now();
        self.bar.set_message(self.message());
    }

    /// Redraws (elapsed time of the current run).
    pub fn tick(&self) {
        self.bar.set_message(self.message());
    }

    /// The current run ended; `outcome` is a short description.
    pub fn finish(&mut self, outcome: &str, failed: bool) {
        self.bar.inc(1);
        let done = self.bar.position();
        if !self.tty {
            eprintln!("[{done:>4}/{}] {}: {outcome}", self.total, self.current);
        } else if failed {
            self.bar.println(format!("{}: {outcome}", self.current));
        }
    }

    /// Clears the bar.
    pub fn clear(&self) {
        self.bar.finish_and_clear();
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_minutes_and_seconds() {
        assert_eq!(clock(Duration::from_secs(83)), "1:23");
        assert_eq!(clock(Duration::from_secs(5)), "0:05");
    }

    #[test]
    fn names_workload_allocator_and_counts_runs() {
        let mut p = Progress::with_terminal(4, false);
        p.start("larson", 0, 2, "jemalloc");
        assert!(
            p.message().starts_with("larson · jemalloc · rep 1/2 ("),
            "{}",
            p.message()
        );
        p.finish("ok", false);
        p.start("larson", 1, 2, "jemalloc");
        assert!(p.message().contains("rep 2/2"));
        p.finish("ok", false);
        assert_eq!((p.bar.position(), p.bar.length()), (2, Some(4)));
        p.clear();
    }
}
