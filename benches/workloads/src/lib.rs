//! Benchmark workloads (work in progress).
