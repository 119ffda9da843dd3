//! Putting a finished line on stderr: whole, never interleaved with another record, and never
//! waiting without bound when a signal handler writes.

use std::cell::Cell;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::Duration;

use crate::os::current_thread_id;

/// The longest line that one `write(2)` puts on a pipe whole (`PIPE_BUF` on Linux). The kernel
/// never interleaves such a write with another, so lines up to this length are written side by
/// side without waiting for each other; longer ones take the writer lock.
const ATOMIC_WRITE_BYTES: usize = 4096;

/// The thread writing a long line, which must be alone on stderr; 0 when there is none.
static WRITER: AtomicI32 = AtomicI32::new(0);

/// How many short lines are being written right now; a long line waits for them.
static SHORT_WRITERS: AtomicU32 = AtomicU32::new(0);

thread_local! {
    /// Whether this thread is counted in `SHORT_WRITERS`: a signal handler that interrupted it
    /// must not wait for itself.
    static WRITING_SHORT: Cell<bool> = const { Cell::new(false) };
}

/// How a writer waits for the lock.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Ordinary code: wait as long as the holder needs.
    Patiently,
    /// A signal handler: the holder may never run again, so write anyway after a while.
    Bounded,
}

/// Writes a finished record to stderr whole. Errors (stderr closed, reader gone) are ignored:
/// losing a log line must never change how the process ends.
pub(crate) fn write_line(line: &[u8], wait: Wait) {
    if line.len() <= ATOMIC_WRITE_BYTES && wait == Wait::Patiently {
        write_short_line(line);
    } else {
        write_long_line(line, wait);
    }
}

/// A line the kernel writes whole: only a long line being written holds it back.
fn write_short_line(line: &[u8]) {
    let mut backoff = Backoff::default();
    loop {
        // Announce, then look: a long writer announces itself, then looks at `SHORT_WRITERS`,
        // so with both sequentially consistent, at least one of the two sees the other.
        SHORT_WRITERS.fetch_add(1, Ordering::SeqCst);
        // Right after counting, and cleared right before uncounting: a fatal-signal handler on
        // this thread must know whether to leave this thread's count out of its wait.
        let _ = WRITING_SHORT.try_with(|writing| writing.set(true));
        let owner = WRITER.load(Ordering::SeqCst);
        if owner == 0 {
            break;
        }
        let _ = WRITING_SHORT.try_with(|writing| writing.set(false));
        SHORT_WRITERS.fetch_sub(1, Ordering::SeqCst);
        // Called from a handler that interrupted this thread's own long line: waiting would
        // never end. Start on a fresh line.
        if owner == current_thread_id() {
            write_all_stderr(b"\n");
            write_all_stderr(line);
            return;
        }
        while WRITER.load(Ordering::Relaxed) != 0 {
            backoff.wait(Wait::Patiently);
        }
    }
    write_all_stderr(line);
    let _ = WRITING_SHORT.try_with(|writing| writing.set(false));
    SHORT_WRITERS.fetch_sub(1, Ordering::Release);
}

/// A line that may be split, or one written from a signal handler: alone, or, after a bounded
/// wait in a signal handler, on a line of its own.
fn write_long_line(line: &[u8], wait: Wait) {
    let me = current_thread_id();
    let mut holding = false;
    let mut leading_newline = false;
    let mut backoff = Backoff::default();
    loop {
        match WRITER.compare_exchange(0, me, Ordering::SeqCst, Ordering::Relaxed) {
            Ok(_) => {
                holding = true;
                break;
            }
            // We interrupted our own write: waiting would never end. Start on a fresh line.
            Err(owner) if owner == me => {
                leading_newline = true;
                break;
            }
            // The holder did not finish in time and may be mid-line: start on a fresh one.
            Err(_) if wait == Wait::Bounded && backoff.exhausted() => {
                leading_newline = true;
                break;
            }
            Err(_) => backoff.wait(wait),
        }
    }
    // The short lines already on their way finish first (this thread's own among them, if a
    // signal interrupted it, never does).
    let interrupted_own = WRITING_SHORT.try_with(Cell::get).unwrap_or(false);
    let others = |count: u32| count.saturating_sub(u32::from(interrupted_own));
    while others(SHORT_WRITERS.load(Ordering::SeqCst)) > 0 {
        if wait == Wait::Bounded && backoff.exhausted() {
            break;
        }
        backoff.wait(wait);
    }
    // An interrupted short line needs no newline: a pipe takes it whole or not at all.
    if leading_newline {
        write_all_stderr(b"\n");
    }
    write_all_stderr(line);
    if holding {
        WRITER.store(0, Ordering::Release);
    }
}

/// Waiting for another writer, whose write(2) takes microseconds.
#[derive(Default)]
struct Backoff {
    attempts: u32,
}

impl Backoff {
    /// A signal handler gives up after about 100 ms: the writer it waits for may be the code it
    /// interrupted, or stuck on a full pipe.
    fn exhausted(&self) -> bool {
        self.attempts >= 2_000
    }

    fn wait(&mut self, wait: Wait) {
        self.attempts = self.attempts.saturating_add(1);
        if self.attempts < 64 {
            std::hint::spin_loop();
        } else if wait == Wait::Patiently {
            // Let the writer run rather than sleep 50 µs, which under a panic storm became the
            // tail latency of every request that panicked beside another.
            std::thread::yield_now();
        } else {
            crate::os::sleep(Duration::from_micros(50));
        }
    }
}

/// Writes the whole line to stderr, or gives up after a bounded wait (see [`super::stderr`]).
fn write_all_stderr(line: &[u8]) {
    super::stderr::write_all(line);
}

/// A forked child does not have the parent's other threads, so none of them is writing a record
/// any more; nor are its pid and thread id the parent's.
pub(crate) fn forget_writers_after_fork() {
    extern "C" fn in_child() {
        crate::os::forget_ids_in_child();
        crate::state::refresh_after_fork();
        WRITER.store(0, Ordering::Relaxed);
        SHORT_WRITERS.store(0, Ordering::Relaxed);
    }
    // SAFETY: registering a fork handler has no preconditions; `in_child` only stores to
    // atomics and a thread-local without a destructor.
    unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
}
