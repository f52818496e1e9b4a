//! A one-line progress bar on standard error (a plain log line per run when
//! standard error is not a terminal).
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Progress {
    total: usize,
    done: usize,
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

/// The bar itself: `[#####.....]` of `width` characters.
pub fn bar(done: usize, total: usize, width: usize) -> String {
    let filled = (done * width)
        .checked_div(total)
        .unwrap_or(width)
        .min(width);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

impl Progress {
    pub fn new(total: usize) -> Self {
        Self {
            total,
            done: 0,
            start: Instant::now(),
            run_start: Instant::now(),
            tty: std::io::stderr().is_terminal(),
            current: String::new(),
        }
    }

    fn line(&self) -> String {
        let elapsed = self.start.elapsed();
        let eta = if self.done > 0 {
            let per = elapsed.as_secs_f64() / self.done as f64;
            format!(
                ", ~{} left",
                clock(Duration::from_secs_f64(
                    per * (self.total - self.done) as f64
                ))
            )
        } else {
            String::new()
        };
        format!(
            "{} {}/{} {} ({}s) | {}{eta}",
            bar(self.done, self.total, 30),
            self.done,
            self.total,
            self.current,
            self.run_start.elapsed().as_secs(),
            clock(elapsed)
        )
    }

    fn draw(&self) {
        if self.tty {
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[2K{}", self.line());
            let _ = e.flush();
        }
    }

    /// A run starts.
    pub fn start(&mut self, workload: &str, rep: usize, reps: usize, allocator: &str) {
        self.current = format!("{workload} · {allocator} · rep {}/{reps}", rep + 1);
        self.run_start = Instant::now();
        self.draw();
    }

    /// Redraws (elapsed time of the current run).
    pub fn tick(&self) {
        self.draw();
    }

    /// The current run ended; `outcome` is a short description.
    pub fn finish(&mut self, outcome: &str, failed: bool) {
        self.done += 1;
        if self.tty {
            if failed {
                let mut e = std::io::stderr().lock();
                let _ = writeln!(e, "\r\x1b[2K{}: {outcome}", self.current);
            }
            self.draw();
        } else {
            eprintln!(
                "[{:>4}/{}] {}: {outcome}",
                self.done, self.total, self.current
            );
        }
    }

    /// Clears the bar.
    pub fn clear(&self) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
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
    fn bar_and_clock() {
        assert_eq!(bar(0, 10, 10), "[..........]");
        assert_eq!(bar(5, 10, 10), "[#####.....]");
        assert_eq!(bar(10, 10, 4), "[####]");
        assert_eq!(bar(0, 0, 4), "[####]");
        assert_eq!(clock(Duration::from_secs(83)), "1:23");
    }

    #[test]
    fn line_names_workload_allocator_and_eta() {
        let mut p = Progress::new(4);
        p.tty = false;
        p.start("larson", 0, 2, "jemalloc");
        assert!(p.line().contains("larson · jemalloc · rep 1/2"));
        assert!(!p.line().contains("left"));
        p.finish("ok", false);
        assert!(p.line().starts_with("[#######"), "{}", p.line());
        assert!(p.line().contains("left"));
    }
}
