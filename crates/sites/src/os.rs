//! The two things the box asks of the machine on its recording paths: a
//! per-thread value (to pick a counter stripe and tell local from remote
//! frees) and, for callers that want one, a clock. Both come from the
//! platform box; they are re-exported here because they are part of this
//! box's surface (`Profiled::new` takes the clock as a `fn() -> u64`).

/// `CLOCK_MONOTONIC` in nanoseconds (a vDSO call, ~20 ns). Any monotonic
/// `u64` clock works as the table's clock as long as the
/// [`Thresholds`](crate::Thresholds) are in its unit; nanoseconds are the
/// convention the defaults assume.
pub use hakmem_platform::clock::monotonic_ns;

/// A value that differs between live threads and is stable within one
/// (the thread pointer; one instruction, inlined).
pub use hakmem_platform::thread::hint as thread_hint;
