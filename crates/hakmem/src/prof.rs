//! The profiler (`HAKMEM_PROF=1`) as an observer of `malloc` calls, and
//! the classification of timed calls into path categories.
//!
//! It hangs off the observer seam (`observe.rs`): while it is on, one small
//! `malloc` in about 2^`HAKMEM_PROF_SAMPLE` is due and timed, standing for
//! the calls counted down before it; calls above the small sizes (shown one
//! by one) are timed one in 2^shift, each standing for 2^shift. The fast
//! paths are unchanged, so off it costs nothing. `free`, `realloc` and
//! `calloc` sample on their own slow paths (`api.rs`); system calls are
//! timed by the platform wrapper (`state::Os`).
//!
//! A timed call's category comes from what its own heap's counters did
//! while it ran: an adoption, a drain of remote frees, a refill or a spill,
//! else the plain hit. Those counters are this thread's own, so other
//! threads do not blur the classification; a large call is a map when any
//! `mmap` was timed meanwhile (another thread's, rarely, blurs that one).

use hakmem_tiny_sll::TINY_MAX;

use crate::classes::{class_size, NCLASSES, SLAB_MAX};
use crate::observe::{self, Call, Observer, Take};
use crate::profile::{self, Cat};
use crate::state::{Heap, PLACEHOLDER};
use crate::tls;

/// The profiler, as an observer.
#[derive(Debug)]
pub(crate) struct Profiler;

/// The observer.
pub(crate) static PROFILER: Profiler = Profiler;

/// Turns the profiler on (one call in 2^`shift` timed) or off.
pub fn set_profiling(on: bool, shift: u32) {
    profile::set(on, shift);
    crate::secure::refresh_special();
    observe::set_active(observe::PROF, on);
}

impl Observer for Profiler {
    fn which(&self) -> u8 {
        observe::PROF
    }

    fn period(&self, rnd: u32) -> usize {
        // uniform in [base/2, 3 base/2): mean 2^shift, never 0
        let base = 1u64 << profile::shift();
        (base / 2 + ((rnd as u64 * base) >> 32)).max(1) as usize
    }

    fn on_call(&self, call: &Call) -> Take {
        if call.due || sampled() {
            Take::Time
        } else {
            Take::Pass
        }
    }

    fn on_timed(&self, _ns: u32) {
        // recorded by `after_malloc`, which knows the category
    }
}

/// True for about one call in 2^shift: the calls the slow paths of
/// `free`, `realloc` and `calloc` time while the profiler is on (a
/// per-thread countdown, restarted with jitter from the thread's
/// generator, so that it does not alias with a program's loops).
///
/// One countdown decrement per call: the rate is read only when it is due
/// (at 2^0 every restart is 1, so every call is due).
#[inline(always)]
pub(crate) fn sampled() -> bool {
    // the countdown is due rarely: the jittered period is drawn only then
    // (inline: a call here would make the cross-thread `free` that inlines
    // this save registers on every call)
    crate::tls::prof_due() && {
        let base = 1u64 << profile::shift();
        let next = base / 2 + ((crate::tls::random() as u64 * base) >> 32);
        crate::tls::prof_restart(next as usize);
        true
    }
}

/// A thread's counters before a timed call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Before {
    heap: *mut Heap,
    refills: u64,
    spills: u64,
    drained: u64,
    adopted: u64,
    maps: u64,
}

/// The thread's counters now (summed over every class: a sampled call's
/// drain may have served any class's slabs).
pub(crate) fn before() -> Before {
    let heap = tls::heap();
    // SAFETY: the thread's own heap (registered heaps live forever) or the
    // placeholder (never written); its counters have one writer, this
    // thread, and are read with relaxed loads.
    let h = unsafe { &*heap };
    let (mut refills, mut spills, mut drained) = (0, 0, 0);
    for c in &h.stats.classes[..NCLASSES] {
        refills += c.refills.get();
        spills += c.spills.get();
        drained += c.remote_drained.get();
    }
    Before {
        heap,
        refills,
        spills,
        drained,
        adopted: h.stats.superslabs_adopted.get(),
        maps: profile::maps(),
    }
}

/// A timed `malloc` of `call.size` that took `ns`: its category, recorded
/// with the weight of the calls it stands for.
pub(crate) fn after_malloc(call: &Call, b: Before, ns: u64) {
    let weight = if call.due {
        call.calls.max(1)
    } else {
        profile::weight()
    };
    let a = before();
    let small = call.size <= SLAB_MAX;
    let cat = if !small {
        if a.maps != b.maps {
            Cat::LargeMap
        } else {
            Cat::LargeHit
        }
    } else if a.adopted != b.adopted {
        Cat::Adopt
    } else if a.drained != b.drained {
        Cat::RemoteDrain
    } else if a.refills != b.refills || a.heap != b.heap || b.heap == PLACEHOLDER.get() {
        // (a thread's first call gets its heap and refills)
        if call.size <= TINY_MAX {
            Cat::TinyRefill
        } else {
            Cat::MidRefill
        }
    } else if call.size <= TINY_MAX {
        Cat::TinyPop
    } else {
        Cat::MidHit
    };
    profile::record(cat, ns, weight);
}

/// A timed `free` of a block of `class` (`None` for a large block) that
/// took `ns`; `remote`: the block is another heap's. Frees that were none
/// of a spill, a remote free or a large free (an own block that missed the
/// fast path) are not a category.
pub(crate) fn after_free(class: Option<usize>, remote: bool, b: Before, ns: u64) {
    let a = before();
    let cat = match class {
        None => Cat::LargeFree,
        Some(_) if remote => Cat::RemoteFree,
        Some(c) if a.spills != b.spills => {
            if class_size(c) <= TINY_MAX {
                Cat::TinySpill
            } else {
                Cat::MidSpill
            }
        }
        Some(_) => return,
    };
    profile::record(cat, ns, profile::weight());
}
