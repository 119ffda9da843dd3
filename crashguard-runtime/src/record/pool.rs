//! The buffers ordinary records are built in: a few in static memory, claimed with an atomic
//! flag, so that a record costs neither 16 KiB of the writing thread's stack nor an allocation;
//! the heap when all are in use at once.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

use super::json::Buffer;
use crate::config::MAX_RECORD_BYTES;

/// As many records as are built at once on a busy two-core machine, with room to spare.
const SLOTS: usize = 4;

struct Slot {
    in_use: AtomicBool,
    buffer: UnsafeCell<Buffer>,
}

// SAFETY: `buffer` is only reached by the one caller that set `in_use` (see `with_buffer`).
unsafe impl Sync for Slot {}

static POOL: [Slot; SLOTS] = [const {
    Slot {
        in_use: AtomicBool::new(false),
        buffer: UnsafeCell::new([const { MaybeUninit::uninit() }; MAX_RECORD_BYTES]),
    }
}; SLOTS];

/// Runs `build` with a buffer no one else uses while it runs.
pub(super) fn with_buffer<R>(build: impl FnOnce(&mut Buffer) -> R) -> R {
    for slot in &POOL {
        if !slot.in_use.swap(true, Ordering::Acquire) {
            /// Frees the slot however `build` ends, a panic in a subscriber's formatting
            /// included.
            struct Release<'a>(&'a AtomicBool);
            impl Drop for Release<'_> {
                fn drop(&mut self) {
                    self.0.store(false, Ordering::Release);
                }
            }
            let _release = Release(&slot.in_use);
            // SAFETY: `in_use` was false and is now ours until `_release` drops: no other
            // reference to this buffer exists meanwhile.
            return build(unsafe { &mut *slot.buffer.get() });
        }
    }
    // Made on the heap directly: `Box::new` of the array would build it on the stack first.
    // SAFETY: an array of `MaybeUninit` is initialised whatever its bytes.
    let mut heap: Box<Buffer> = unsafe { Box::<Buffer>::new_uninit().assume_init() };
    build(&mut heap)
}
