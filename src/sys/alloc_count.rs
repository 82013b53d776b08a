//! A counting global allocator: proves that nitro allocates nothing after
//! startup. The binary installs it; `arm` starts the count once everything
//! is reserved, and INFO reports it (tag ALLOCS).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

static ARMED: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU32 = AtomicU32::new(0);

/// The system allocator, counting allocations once armed.
pub struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn count() {
    if ARMED.load(Ordering::Relaxed) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Startup is complete: count from now on.
pub fn arm() {
    ARMED.store(true, Ordering::Relaxed);
}

/// Runs `f` without counting what it allocates: start-up work that can
/// only be done late (the cgroups of a pid 1 whose `SYS/setup` mounts
/// `/sys`). nitro has one thread, so nothing else is missed meanwhile.
pub fn uncounted<T>(f: impl FnOnce() -> T) -> T {
    let armed = ARMED.swap(false, Ordering::Relaxed);
    let result = f();
    ARMED.store(armed, Ordering::Relaxed);
    result
}

/// Allocations since `arm`, or `None` if counting never started.
pub fn allocations() -> Option<u32> {
    ARMED
        .load(Ordering::Relaxed)
        .then(|| ALLOCATIONS.load(Ordering::Relaxed))
}
