//! What the operating system tells every layer above: signal names, the process's and the
//! thread's ids, and a sleep, each safe to call from a signal handler.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

/// The conventional name of a signal number (`SIGTERM`), or `"signal"` for one without a name.
/// Async-signal-safe: a search of a constant table.
pub(crate) fn signal_name(signal: i32) -> &'static str {
    signal_hook::low_level::signal_name(signal).unwrap_or("signal")
}

/// Sleeps with nanosleep(2), which is async-signal-safe (std's `thread::sleep` promises nothing
/// of the kind).
pub(crate) fn sleep(duration: Duration) {
    let pause = libc::timespec {
        // `as _`: time_t, which the libc crate deprecates naming on musl.
        tv_sec: duration.as_secs().min(i32::MAX as u64) as _,
        tv_nsec: libc::c_long::from(duration.subsec_nanos() as i32),
    };
    // SAFETY: `pause` is a valid timespec; a null remainder pointer is allowed.
    unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
}

/// The process id, cached: a panic storm writes many records. 0 until first asked.
static PROCESS_ID: AtomicU32 = AtomicU32::new(0);

thread_local! {
    /// This thread's kernel id, once asked for; 0 until then.
    static THREAD_ID: Cell<i32> = const { Cell::new(0) };
}

/// The process id, as `getpid(2)` gives it, without a system call per record.
pub(crate) fn process_id() -> u32 {
    match PROCESS_ID.load(Ordering::Relaxed) {
        0 => {
            let pid = std::process::id();
            PROCESS_ID.store(pid, Ordering::Relaxed);
            pid
        }
        pid => pid,
    }
}

/// The kernel's id for the calling thread, as `ps -L` and `/proc/<pid>/task` show it.
pub(crate) fn current_thread_id() -> i32 {
    THREAD_ID
        .try_with(|cached| match cached.get() {
            0 => {
                let id = gettid();
                cached.set(id);
                id
            }
            id => id,
        })
        .unwrap_or_else(|_| gettid())
}

/// Whether this process is a forked child of the one crashguard was installed in.
static FORKED: AtomicBool = AtomicBool::new(false);

/// A forked child has a new pid, and its one thread a new id: forget the cached ones. Called in
/// the child, where only async-signal-safe work is allowed: a few stores.
pub(crate) fn forget_ids_in_child() {
    PROCESS_ID.store(0, Ordering::Relaxed);
    let _ = THREAD_ID.try_with(|cached| cached.set(0));
    FORKED.store(true, Ordering::Relaxed);
}

/// Whether this process was forked from the one crashguard was installed in: locks that the
/// parent's other threads held at the fork (the backtrace crate's among them) are held for ever
/// here.
pub(crate) fn is_forked_child() -> bool {
    FORKED.load(Ordering::Relaxed)
}

#[cfg(target_os = "linux")]
fn gettid() -> i32 {
    // SAFETY: gettid(2) has no preconditions and is async-signal-safe.
    unsafe { libc::gettid() }
}

/// macOS's system-wide thread id (what Activity Monitor and `sample` show), which fits an i32
/// for any thread a process lives to see.
#[cfg(target_vendor = "apple")]
fn gettid() -> i32 {
    let mut id: u64 = 0;
    // SAFETY: a null thread means the calling thread; `id` is a valid place for the result.
    unsafe { libc::pthread_threadid_np(0, &mut id) };
    id as i32
}
