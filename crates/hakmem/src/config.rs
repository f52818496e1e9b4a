//! What the one-time set-up (`init.rs`) decided, for every layer to read:
//! the options and the starting policy. Written once, before the set-up
//! reports done; the defaults before that.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

use hakmem_options::Options;
use hakmem_policy_rcu::{FrozenPolicy, DEFAULT_POLICY};

static READY: AtomicBool = AtomicBool::new(false);

/// Storage written once, before [`READY`] is set.
struct Once<T>(UnsafeCell<MaybeUninit<T>>);
// SAFETY: written once, by `publish`, before the Release store of READY;
// read only after an Acquire load of READY sees true.
unsafe impl<T> Sync for Once<T> {}

static OPTIONS: Once<Options> = Once(UnsafeCell::new(MaybeUninit::uninit()));
static START_POLICY: Once<FrozenPolicy> = Once(UnsafeCell::new(MaybeUninit::uninit()));

/// Stores the set-up's decisions and publishes them.
///
/// # Safety
/// Called at most once in the process, by one thread (the set-up, under its
/// lock), before anything reads the values through [`options`] or
/// [`start_policy`] with them published.
pub(crate) unsafe fn publish(opts: Options, policy: FrozenPolicy) -> &'static FrozenPolicy {
    // SAFETY: per the contract no other thread writes these, and none reads
    // them before READY is set below.
    let p = unsafe {
        (*OPTIONS.0.get()).write(opts);
        (*START_POLICY.0.get()).write(policy)
    };
    READY.store(true, Ordering::Release);
    p
}

/// The options (the defaults before the set-up ran).
pub(crate) fn options() -> &'static Options {
    if READY.load(Ordering::Acquire) {
        // SAFETY: written before READY became true and never again.
        unsafe { (*OPTIONS.0.get()).assume_init_ref() }
    } else {
        &Options::DEFAULT
    }
}

/// The policy the process started with (the built-in one before the
/// set-up ran).
pub(crate) fn start_policy() -> &'static FrozenPolicy {
    if READY.load(Ordering::Acquire) {
        // SAFETY: written before READY became true and never again.
        unsafe { (*START_POLICY.0.get()).assume_init_ref() }
    } else {
        &DEFAULT_POLICY
    }
}
