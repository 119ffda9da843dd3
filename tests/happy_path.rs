//! The happy path: a guarded function that does not panic costs what the unguarded one costs, in
//! allocations and in the size of its future.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::mem::{size_of, size_of_val};

use axum::response::IntoResponse;
use crashguard::crash_guarded;

#[path = "support/guarded_samples.rs"]
mod samples;

use samples::{add, add_later, guarded_add, guarded_add_later, guarded_ok, poll_to_end, YieldOnce};

/// The system allocator, counting the calling thread's allocations.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches only a
// const-initialised thread-local, which never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        counted();
        // SAFETY: the caller's guarantees for `layout` pass straight through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        counted();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        counted();
        // SAFETY: `ptr` came from this allocator, that is from `System`, with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn counted() {
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
}

/// How many times `work` allocated on this thread.
fn allocations_in(work: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    work();
    ALLOCATIONS.with(Cell::get) - before
}

async fn greet(id: u64, name: [u8; 64]) -> impl IntoResponse {
    YieldOnce(false).await;
    format!("{id} {}", name.len())
}

#[crash_guarded(http)]
async fn guarded_greet(id: u64, name: [u8; 64]) -> impl IntoResponse {
    YieldOnce(false).await;
    format!("{id} {}", name.len())
}

#[test]
fn a_guarded_call_that_returns_allocates_nothing() {
    // The first guarded call on a thread registers its thread-locals; only later calls count.
    assert_eq!(guarded_add(1, 2), add(1, 2));
    assert_eq!(
        allocations_in(|| {
            for n in 0..1000 {
                assert_eq!(guarded_add(n, 2), n + 2);
            }
        }),
        0
    );
}

#[test]
fn a_guarded_future_that_completes_allocates_nothing() {
    assert_eq!(
        poll_to_end(guarded_add_later(1, 2)),
        poll_to_end(add_later(1, 2))
    );
    assert_eq!(
        allocations_in(|| {
            for n in 0..1000 {
                assert_eq!(poll_to_end(guarded_add_later(n, 2)), n + 2);
            }
        }),
        0
    );
}

#[test]
fn a_guarded_handler_that_answers_allocates_nothing_until_its_response_is_built() {
    drop(poll_to_end(guarded_ok()));
    assert_eq!(
        allocations_in(|| {
            for _ in 0..1000 {
                drop(poll_to_end(guarded_ok()));
            }
        }),
        0
    );
}

#[test]
fn a_guarded_future_grows_by_three_words_at_most() {
    // The guard keeps the body's future as it is and adds the function's name (a `&'static str`)
    // beside it; the async fn awaiting that adds its own state, one word with padding.
    let growth = size_of::<&'static str>() + size_of::<usize>();
    assert!(size_of_val(&guarded_add_later(1, 2)) <= size_of_val(&add_later(1, 2)) + growth);
    assert!(size_of_val(&guarded_greet(7, [0; 64])) <= size_of_val(&greet(7, [0; 64])) + growth);
}
