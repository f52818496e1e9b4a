//! Service-like workloads that run for seconds and whose best allocator
//! policy differs from hakmem's built-in one (the learning A/B of
//! `cargo xtask bench-matrix --ab`). Each is a loop over *units of work*
//! (a request, a query, a chunk of input) that the programs in `src/bin`
//! drive: `request-burst`, `query-batches`, `index-build` and
//! `phase-shift` (two of them one after the other).
//!
//! * [`RequestBurst`]: a request handler that builds a tree of many small
//!   objects (a parsed document, an AST) and frees it at the end of the
//!   request. Thousands of blocks of each small size are freed and
//!   allocated again per request: bigger per-thread caches keep them in
//!   the thread's bins.
//! * [`QueryBatches`]: an analytical query engine: each query allocates
//!   its column buffers (a few MiB each, sizes set by the columns' widths
//!   and the query's row count), scans them and frees them all. The freed
//!   buffers of one query are what the next one needs: a large-block cache
//!   big enough for a whole query's buffers saves every page fault.
//! * [`IndexBuild`]: an indexer: it reads its input in chunks (a buffer of
//!   the chunk's size, MiB, sizes varying widely from chunk to chunk),
//!   parses each chunk into small records kept in a growing in-memory
//!   index, then frees the chunk buffer. Freed chunk buffers rarely fit the
//!   next chunk: cached, they only hold memory.
//!
//! Every unit of work also does work proportional to its data (it writes or
//! reads every cache line of its buffers), so the allocator is a realistic
//! share of the run time, not all of it.

use crate::{Block, Rng, Sampler};

/// A request handler: each request allocates `objects` small blocks
/// (`min..=max` bytes, skewed towards small sizes), links them, reads them
/// back, then frees them in allocation order.
#[derive(Debug, Clone, Copy)]
pub struct RequestBurst {
    /// Blocks per request.
    pub objects: usize,
    /// Smallest block.
    pub min: usize,
    /// Largest block.
    pub max: usize,
}

impl RequestBurst {
    /// One request; returns a checksum (so the reads are not optimised
    /// away).
    pub fn request(&self, rng: &mut Rng, s: &mut Sampler, tree: &mut Vec<Block>) -> u64 {
        let span = self.max - self.min;
        for _ in 0..self.objects {
            // u^2: small sizes are the most common, as in real object graphs
            let u = rng.below(1 << 16) as u64;
            let size = self.min + ((span as u64 * u * u) >> 32) as usize;
            tree.push(Block::alloc(size, s));
        }
        let mut sum = 0u64;
        for b in tree.iter() {
            // SAFETY: a live block of at least one byte.
            sum = sum.wrapping_add(u64::from(unsafe { b.as_ptr().read() }));
        }
        for b in tree.drain(..) {
            b.free(s);
        }
        sum
    }
}

/// Writes one byte in every cache line of `b` (the work a unit does on its
/// buffers), leaving the tag (first word) and the last byte that
/// [`Block::check`] reads intact.
pub fn write_lines(b: &Block, value: u8) {
    let p = b.as_ptr();
    let n = b.size();
    let mut off = 64;
    while off + 1 < n {
        // SAFETY: 64 <= off < n - 1: inside the block, past the tag, before
        // the last byte.
        unsafe { p.add(off).write_volatile(value) };
        off += 64;
    }
}

/// An analytical query engine: each query allocates one buffer per column
/// (`rows × width` bytes; the query's row count varies by ±`jitter`‰
/// around `rows`), writes every cache line of them (the scan and the
/// materialised results), and frees them at the end of the query.
#[derive(Debug, Clone)]
pub struct QueryBatches {
    /// Bytes per row of each column.
    pub widths: Vec<usize>,
    /// Rows of a query, on average.
    pub rows: usize,
    /// Variation of the row count, ‰ either way.
    pub jitter: usize,
}

impl QueryBatches {
    /// One query.
    pub fn query(&self, rng: &mut Rng, s: &mut Sampler, cols: &mut Vec<Block>) {
        let j = self.rows * self.jitter / 1000;
        let rows = self.rows - j + rng.below(2 * j + 1);
        for &w in &self.widths {
            let b = Block::alloc(rows * w, s);
            write_lines(&b, 1);
            cols.push(b);
        }
        for b in cols.drain(..) {
            b.free(s);
        }
    }

    /// Bytes of one query's buffers, on average.
    pub fn bytes(&self) -> usize {
        self.widths.iter().map(|w| w * self.rows).sum()
    }
}

/// An indexer: each chunk of input is read into a buffer of
/// `chunk_min..=chunk_max` bytes (log-uniform: chunk sizes vary widely),
/// then parsed front to back: the parser writes its way through the buffer
/// (every cache line) and allocates one record of `rec_min..=rec_max`
/// bytes, which stays in the index, per `record_every` bytes of input.
/// Then the buffer is freed.
#[derive(Debug, Clone, Copy)]
pub struct IndexBuild {
    /// Smallest chunk buffer.
    pub chunk_min: usize,
    /// Largest chunk buffer.
    pub chunk_max: usize,
    /// Bytes of input per record.
    pub record_every: usize,
    /// Smallest record.
    pub rec_min: usize,
    /// Largest record.
    pub rec_max: usize,
}

impl IndexBuild {
    /// One chunk; the new records go to `index`.
    pub fn chunk(&self, rng: &mut Rng, s: &mut Sampler, index: &mut Vec<Block>) {
        let lo = (self.chunk_min as f64).ln();
        let hi = (self.chunk_max as f64).ln();
        let u = rng.below(1 << 20) as f64 / (1u64 << 20) as f64;
        let size = ((lo + (hi - lo) * u).exp() as usize).max(128);
        let buf = Block::alloc(size, s);
        let p = buf.as_ptr();
        let step = self.record_every.max(64);
        let mut off = 64;
        while off < size - 1 {
            let end = (off + step).min(size - 1);
            while off < end {
                // SAFETY: 64 <= off < size - 1: inside the buffer, past the
                // tag, before the last byte.
                unsafe { p.add(off).write_volatile(3) };
                off += 64;
            }
            index.push(Block::alloc(rng.range(self.rec_min, self.rec_max), s));
        }
        buf.free(s);
    }
}
