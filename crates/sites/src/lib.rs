//! # hakmem-sites: the call-site box
//!
//! The prototype's first claim is that the address an allocation is made
//! from labels its purpose. This box keeps the label's statistics:
//!
//! * [`SiteTable`]: a fixed-size, lock-free table of sites ([`SiteId`]: a
//!   Rust `Location` or a return address), each with allocation, free and
//!   byte counters, max size, a size histogram, sampled lifetimes and local
//!   vs remote frees. It never allocates, never takes a lock and touches no
//!   thread-local, so the allocator can call it from `malloc` and `free`.
//! * [`classify`]: each site's inferred policy class (`SMALL_FREQUENT`,
//!   `MEDIUM`, `LARGE_INFREQUENT`) and lifetime class (`SHORT`, `LONG`).
//! * [`report`]: the top sites by bytes and by count as text, and the whole
//!   table as JSON, written into any [`core::fmt::Write`] or a file
//!   descriptor without allocating; sites symbolised with `dladdr` or
//!   `file:line:column`.
//! * [`capture`]: the `#[track_caller]` Rust API ([`alloc_cs`],
//!   [`free_cs`], [`SiteBox`], [`SiteVec`]) over an allocator trait, and
//!   [`Profiled`], which implements it over any `GlobalAlloc`.
//!
//! ## How the allocator uses it
//!
//! ```text
//! malloc (a recorded call):   stamp = SITES.record_alloc(site, size, now)
//!                             keep stamp.to_bits() with the block
//! free of a recorded block:   SITES.record_free(Stamp::from_bits(bits), size, now, remote)
//! at exit / on demand:        SITES.report_text_fd(2, &ReportOptions::new(now))
//!                             SITES.report_json_fd(fd, &ReportOptions::new(now))
//! ```
//!
//! `now` is the caller's clock (nanoseconds by convention, see
//! [`monotonic_ns`]); `site` is [`SiteId::caller`] (Rust),
//! [`SiteId::code`] (C `hak_alloc_cs`: every call) or [`SiteId::sampled`]
//! (sampled `malloc`: with [`SiteTable::set_sample_shift`] set, reports
//! scale those sites' counts).
//!
//! ## JSON schema (`version` 1)
//!
//! One object: `version`, `now`, `capacity`, `stripes`, `sample_shift`,
//! `thresholds` {`small_max`, `large_min`, `frequent_min`, `short_max`,
//! `min_samples`}, `size_bounds` and `lifetime_bounds` (the histogram
//! buckets' upper bounds, see [`SIZE_BOUNDS`], [`LIFE_BOUNDS`]), `sites`
//! (every occupied slot, in slot order), `other` (the catch-all bucket),
//! and `top_by_bytes` / `top_by_count` (slot numbers, best first). A site
//! is an object with `slot`; `kind` (`location`: `file`, `line`, `column`;
//! `code`/`sampled`: `addr` (hex string), `symbol`, `offset`, `object`,
//! each possibly `null`; `other`); `name` (the text report's cell);
//! `weight`, `allocs`, `frees`, `bytes`, `freed_bytes`, `live_blocks`,
//! `live_bytes` (records), `est_allocs`, `est_bytes` (× weight),
//! `avg_size`, `max_size`, `local_frees`, `remote_frees`, `mean_lifetime`,
//! `mean_live_age`, `median_lifetime_bucket` (each possibly `null`),
//! `size_hist`, `lifetime_hist` (arrays), `class` and `lifetime` (names).
#![cfg_attr(not(test), no_std)]

pub mod capture;
pub mod classify;
pub mod hist;
mod id;
mod os;
pub mod placement;
pub mod report;
mod stats;
mod symbol;
mod table;
mod write;

pub use capture::{alloc_cs, free_cs, Profiled, SiteAlloc, SiteBox, SiteVec};
pub use classify::{Class, LifetimeClass, PolicyClass, Thresholds};
pub use hist::{life_bucket, size_bucket, LIFE_BOUNDS, LIFE_BUCKETS, SIZE_BOUNDS, SIZE_BUCKETS};
pub use id::{SiteId, SiteKind};
pub use os::{monotonic_ns, thread_hint};
pub use placement::{Lane, Placement, PlacementStats};
pub use report::{Order, ReportOptions, Top, TOP_MAX};
pub use stats::SiteStats;
pub use symbol::{with_symbol, Symbol};
pub use table::{SiteTable, Sites, Stamp, DEFAULT_SITES, DEFAULT_STRIPES, MAX_PROBE};
pub use write::{FdWriter, SliceWriter};
