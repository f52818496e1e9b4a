//! Thread lifecycle: giving a thread its heap on its first slow path, and
//! returning the heap when the thread exits.
//!
//! Exit is noticed through a `pthread_key_create` destructor, created once,
//! lazily, in a slow path. The thread's slot says `LIVE` before
//! `pthread_setspecific` runs, because glibc may `calloc` inside it and that
//! nested call must find the heap ready. After the destructor ran, the slot
//! says `DEAD`; later calls on that thread (other libraries' destructors)
//! are served by a shared fallback heap under a lock.

use core::sync::atomic::{AtomicUsize, Ordering};

use hakmem_platform::thread::Key;
use hakmem_platform::SpinLock;

use crate::state::{Heap, PLACEHOLDER, REGISTRY};
use crate::tls::{self, STATE_DEAD, STATE_LIVE};

/// pthread key + 1 (0: not created yet).
static KEY: AtomicUsize = AtomicUsize::new(0);
static KEY_INIT: SpinLock<()> = SpinLock::new(());
/// The heap of threads that already returned theirs.
static FALLBACK: SpinLock<HeapPtr> = SpinLock::new(HeapPtr(core::ptr::null_mut()));

struct HeapPtr(*mut Heap);
// SAFETY: the fallback heap is only used under its lock.
unsafe impl Send for HeapPtr {}

/// Runs `f` on the calling thread's heap, creating it on first use; `None`
/// when no heap could be created (out of memory). The set-up must have run.
#[inline]
pub(crate) fn with_heap<R>(f: impl FnOnce(&mut Heap) -> R) -> Option<R> {
    let slot = tls::slot();
    // SAFETY: the slot is this thread's.
    let h = unsafe { (*slot).heap };
    if h != PLACEHOLDER.get() {
        // SAFETY: a thread's own heap is touched by this thread alone.
        return Some(f(unsafe { &mut *h }));
    }
    with_heap_cold(f)
}

/// Runs `f` on the calling thread's own heap if it has one (never creates
/// one: for giving memory back, which a thread without a heap has none of).
pub(crate) fn with_own_heap<R>(f: impl FnOnce(&mut Heap) -> R) -> Option<R> {
    let slot = tls::slot();
    // SAFETY: the slot is this thread's.
    let h = unsafe { (*slot).heap };
    // SAFETY: a thread's own heap is touched by this thread alone.
    (h != PLACEHOLDER.get()).then(|| f(unsafe { &mut *h }))
}

#[cold]
#[inline(never)]
fn with_heap_cold<R>(f: impl FnOnce(&mut Heap) -> R) -> Option<R> {
    // (the entry points ran the set-up before: the free mark is set)
    let slot = tls::slot();
    // SAFETY: our slot.
    if unsafe { (*slot).state } == STATE_DEAD {
        let mut g = FALLBACK.lock();
        if g.0.is_null() {
            g.0 = REGISTRY.acquire()?;
            // SAFETY: the new heap is ours (under the lock).
            unsafe { (*g.0).mark = crate::state::free_mark() };
        }
        // SAFETY: the fallback heap is used under its lock only.
        let h = unsafe { &mut *g.0 };
        h.sync_policy();
        return Some(f(h));
    }
    let h = REGISTRY.acquire()?;
    // SAFETY: the new heap is ours; the slot is ours.
    unsafe {
        (*h).mark = crate::state::free_mark();
        (*h).sync_policy();
        (*slot).heap = h;
        (*slot).state = STATE_LIVE;
    }
    if let Some(key) = key() {
        // SAFETY: the key's destructor is `thread_exit`, which takes a heap
        // of this thread from the registry: `h` is one.
        unsafe { hakmem_platform::thread::set_specific(key, h.cast()) };
    }
    // SAFETY: the new heap is ours, touched by this thread alone.
    Some(f(unsafe { &mut *h }))
}

fn key() -> Option<Key> {
    let k = KEY.load(Ordering::Acquire);
    if k != 0 {
        // SAFETY: KEY holds `into_raw + 1` of the key made below.
        return Some(unsafe { Key::from_raw((k - 1) as u32) });
    }
    let _g = KEY_INIT.lock();
    let k = KEY.load(Ordering::Acquire);
    if k != 0 {
        // SAFETY: KEY holds `into_raw + 1` of the key made below.
        return Some(unsafe { Key::from_raw((k - 1) as u32) });
    }
    let key = hakmem_platform::thread::key_create(thread_exit)?;
    KEY.store(key.into_raw() as usize + 1, Ordering::Release);
    Some(key)
}

/// The pthread key destructor: the thread is exiting.
///
/// # Safety
/// Called only by the thread library, at the exit of a thread that set a
/// value for the key, with that value: a heap of this thread from the
/// registry ([`with_heap_cold`] sets nothing else).
unsafe extern "C" fn thread_exit(arg: *mut core::ffi::c_void) {
    let h = arg.cast::<Heap>();
    if h.is_null() {
        return;
    }
    let slot = tls::slot();
    // SAFETY: our slot; the heap is ours and no longer reachable through it.
    unsafe {
        (*slot).heap = PLACEHOLDER.get();
        (*slot).state = STATE_DEAD;
        (*h).release_all();
    }
    // SAFETY: the heap came from the registry, was this thread's and is
    // unreachable now (the slot holds the placeholder).
    unsafe { REGISTRY.release(h) };
}

/// The fallback heap's lock, for the fork handlers.
pub(crate) fn fork_lock() -> &'static SpinLock<impl Sized> {
    &FALLBACK
}
