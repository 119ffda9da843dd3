//! Thread dumps: every thread's stack, as records, while the process goes on (the JVM's
//! `kill -3`, Go's SIGQUIT, Python's faulthandler).
//!
//! A dump is written on SIGQUIT (then the process goes on serving; with `CRASHGUARD_SIGQUIT=exit`
//! it dies by SIGQUIT after its exit record, as Go does), when the shutdown deadline passes
//! (before the `exit` record, so that what still runs shows where the drain hung), and from
//! [`dump_threads`] (a debug endpoint).
//!
//! # How a live thread's stack is read
//!
//! One thread at a time, the dumping thread sends the thread a signal of crashguard's
//! (`SIGRTMIN + 7`). Its handler only hands over the registers the kernel saved and waits; the
//! dumping thread walks that thread's stack from them, with the same unwinder as the fatal
//! handler (allocating nothing while the other thread is stopped: it may hold the allocator's
//! lock), then lets it go, and only then names the frames and writes the record. A thread that
//! does not answer within 100 ms (blocked in the kernel, or with the signal blocked) is listed as
//! such.
//!
//! Each thread gets one `thread_dump` record (`dump.id`, `thread.id`, `thread.name`,
//! `thread.state` as `/proc/self/task` says, `code.stacktrace`), and the dump ends with one
//! `thread_dump_summary` record with the counts. At most [`MAX_THREADS`] threads are dumped; the
//! summary says how many were left out.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libc::{c_int, c_void, siginfo_t};

use crate::record::{self, keys, Severity};
use crate::state::IncidentId;
use crate::unwind::{self, Registers, Trace};

/// The most threads one dump lists.
pub const MAX_THREADS: usize = 512;

/// How long a thread has to answer.
const ANSWER_WITHIN: Duration = Duration::from_millis(100);

/// What one dump wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadDump {
    /// Shared by the dump's records (`dump.id`).
    pub id: String,
    /// The threads whose stacks the records show.
    pub threads: usize,
    /// Threads that did not answer in time, listed without a stack.
    pub unanswered: usize,
    /// Threads left out past [`MAX_THREADS`].
    pub left_out: usize,
}

/// Writes one record per thread of the process with its stack, then a summary record; returns
/// what it wrote. Dumps do not overlap: a second caller waits for the first dump to end.
///
/// # Example
///
/// ```no_run
/// let dump = crashguard::dump_threads();
/// println!("dump {} shows {} threads", dump.id, dump.threads);
/// ```
pub fn dump_threads() -> ThreadDump {
    dump(Names::FromDebugInfo)
}

/// How frames are named.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Names {
    /// Function, file and line from the binary's debug info, as far as it has any: the first
    /// dump of a process reads it, which can take a while.
    FromDebugInfo,
    /// Function names from the symbol table prepared at install: in milliseconds, for the dump
    /// at the shutdown deadline, which must end before the kubelet's SIGKILL.
    FromSymbolTable,
}

/// The dump the shutdown deadline writes, before its exit record: quick.
pub(crate) fn dump_for_deadline() {
    dump(Names::FromSymbolTable);
}

fn dump(names: Names) -> ThreadDump {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    install_answer();
    let id = IncidentId::next().to_string();
    let me = crate::os::current_thread_id();
    let mut tids = thread_ids();
    tids.sort_unstable();
    let left_out = tids.len().saturating_sub(MAX_THREADS);
    tids.truncate(MAX_THREADS);
    let mut dump = ThreadDump {
        id,
        threads: 0,
        unanswered: 0,
        left_out,
    };
    for tid in tids {
        // What the thread is doing before it is asked to answer (which wakes it). A thread
        // that ended since the list was read is left out.
        let Some(state) = thread_state(tid) else {
            continue;
        };
        let stack = if tid == me {
            Stack::Walked(Box::new(Trace::of_this_thread()))
        } else {
            walk_thread(tid)
        };
        if matches!(stack, Stack::Gone) {
            continue;
        }
        if matches!(stack, Stack::Unanswered) {
            dump.unanswered += 1;
        } else {
            dump.threads += 1;
        }
        write_thread_record(&dump.id, tid, &state, &stack, names);
    }
    write_summary(&dump);
    dump
}

/// What a dump knows of one thread's stack.
enum Stack {
    Walked(Box<Trace>),
    Unanswered,
    /// The thread ended before it could be asked.
    Gone,
}

/// The signal a dump sends each thread.
fn dump_signal() -> c_int {
    libc::SIGRTMIN() + 7
}

/// The state of the one request in flight.
const IDLE: u8 = 0;
const ASKED: u8 = 1;
const ANSWERED: u8 = 2;
const RELEASED: u8 = 3;

/// The thread asked, the request's state, and the registers it answered with.
static ASKED_THREAD: AtomicI32 = AtomicI32::new(0);
static REQUEST: AtomicU8 = AtomicU8::new(IDLE);
static PC: AtomicU64 = AtomicU64::new(0);
static SP: AtomicU64 = AtomicU64::new(0);
static FP: AtomicU64 = AtomicU64::new(0);
#[cfg(target_arch = "aarch64")]
static LR: AtomicU64 = AtomicU64::new(0);

fn install_answer() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // SAFETY: an all-zero sigaction is a valid value; the fields set are the ones
        // sigaction(2) reads. The signal is crashguard's own.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = answer as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(dump_signal(), &action, std::ptr::null_mut());
        }
    });
}

/// The asked thread's handler: hands over its registers, waits until the walk is done. Stores
/// and sleeps only: async-signal-safe.
extern "C" fn answer(_: c_int, _: *mut siginfo_t, context: *mut c_void) {
    if context.is_null() || ASKED_THREAD.load(Ordering::Acquire) != crate::os::current_thread_id() {
        return;
    }
    if REQUEST.load(Ordering::Acquire) != ASKED {
        return;
    }
    // SAFETY: the kernel's ucontext_t for this delivery, valid while the handler runs.
    let registers = unsafe { Registers::from_signal_context(context.cast()) };
    PC.store(registers.pc, Ordering::Relaxed);
    SP.store(registers.sp, Ordering::Relaxed);
    FP.store(registers.fp, Ordering::Relaxed);
    #[cfg(target_arch = "aarch64")]
    LR.store(registers.lr, Ordering::Relaxed);
    if REQUEST
        .compare_exchange(ASKED, ANSWERED, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    // Stay put, so the stack does not change under the walk; bounded, should the dumper die.
    let started = Instant::now();
    while REQUEST.load(Ordering::Acquire) == ANSWERED && started.elapsed() < Duration::from_secs(2)
    {
        crate::os::sleep(Duration::from_micros(50));
    }
}

/// Asks `tid` for its registers and walks its stack while it waits.
fn walk_thread(tid: i32) -> Stack {
    ASKED_THREAD.store(tid, Ordering::Release);
    REQUEST.store(ASKED, Ordering::Release);
    // SAFETY: tgkill(2) to a thread of this process; the handler for the signal is crashguard's.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            crate::os::process_id() as c_int,
            tid,
            dump_signal(),
        )
    } == 0;
    if !sent && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        REQUEST.store(IDLE, Ordering::Release);
        return Stack::Gone;
    }
    let started = Instant::now();
    while sent && REQUEST.load(Ordering::Acquire) == ASKED && started.elapsed() < ANSWER_WITHIN {
        crate::os::sleep(Duration::from_micros(50));
    }
    let answered = REQUEST
        .compare_exchange(ANSWERED, ANSWERED, Ordering::AcqRel, Ordering::Acquire)
        .is_ok();
    if !answered {
        // Too late from here on: the handler sees the request is no longer open.
        REQUEST.store(IDLE, Ordering::Release);
        ASKED_THREAD.store(0, Ordering::Release);
        return Stack::Unanswered;
    }
    let registers = Registers {
        pc: PC.load(Ordering::Relaxed),
        sp: SP.load(Ordering::Relaxed),
        fp: FP.load(Ordering::Relaxed),
        #[cfg(target_arch = "aarch64")]
        lr: LR.load(Ordering::Relaxed),
    };
    // The other thread is stopped and may hold any lock, the allocator's included: the walk
    // allocates nothing, and the trace's box is made before.
    let mut trace = Box::new(Trace::new());
    unwind::walk(&registers, &mut trace);
    REQUEST.store(RELEASED, Ordering::Release);
    ASKED_THREAD.store(0, Ordering::Release);
    REQUEST.store(IDLE, Ordering::Release);
    Stack::Walked(trace)
}

/// `N: function at file:line` per frame, from the binary's debug info where it has some (with
/// [`Names::FromDebugInfo`]), else `N: module+0xoffset function` with the symbol table's name,
/// else `N: module+0xoffset`.
fn render(trace: &Trace, names: Names) -> String {
    let modules = unwind::modules();
    let mut text = String::new();
    for (index, address) in trace.instructions().enumerate() {
        if index > 0 {
            text.push('\n');
        }
        let mut named = false;
        let resolve = |callback: &mut dyn FnMut(&backtrace::Symbol)| {
            if names == Names::FromDebugInfo {
                backtrace::resolve(address as *mut c_void, callback);
            }
        };
        resolve(&mut |symbol| {
            if named {
                return;
            }
            if let Some(name) = symbol.name() {
                let _ = write!(text, "{index}: {name:#}");
                if let (Some(file), Some(line)) = (symbol.filename(), symbol.lineno()) {
                    let _ = write!(text, " at {}:{line}", file.display());
                }
                named = true;
            }
        });
        if !named {
            match modules.iter().find(|m| m.contains(address)) {
                Some(module) => {
                    let offset = address - module.base;
                    let _ = write!(text, "{index}: {}+{offset:#x}", module.file_name());
                    if module.is_executable {
                        if let Some(function) = unwind::symbols::function_at(offset as u64) {
                            let _ = write!(text, " {function}");
                        }
                    }
                }
                None => {
                    let _ = write!(text, "{index}: {address:#x}");
                }
            }
        }
    }
    text
}

fn write_thread_record(dump_id: &str, tid: i32, state: &str, stack: &Stack, names: Names) {
    let name = read_trimmed(&format!("/proc/self/task/{tid}/comm"));
    let trace = match stack {
        Stack::Walked(trace) => Some((render(trace, names), trace.end())),
        _ => None,
    };
    record::emit(
        "thread_dump",
        Severity::Info,
        record::Wait::Patiently,
        |record| {
            match stack {
                Stack::Unanswered => record.display(
                    keys::MESSAGE,
                    format_args!(
                        "thread {tid} '{name}' ({state}) did not answer within {} ms",
                        ANSWER_WITHIN.as_millis()
                    ),
                    1024,
                ),
                _ => record.display(
                    keys::MESSAGE,
                    format_args!("thread {tid} '{name}' ({state})"),
                    1024,
                ),
            }
            record.str(keys::DUMP_ID, dump_id);
            record.i64(keys::THREAD_ID, i64::from(tid));
            record.str(keys::THREAD_NAME, &name);
            record.str(keys::THREAD_STATE, state);
            match &trace {
                Some((text, end)) => {
                    record.str(keys::CODE_STACKTRACE, text);
                    if *end != unwind::WalkEnd::Outermost {
                        record.display(keys::CODE_STACKTRACE_CUT, end, 256);
                    }
                }
                None => record.bool(keys::DUMP_UNANSWERED, true),
            }
        },
    );
}

fn write_summary(dump: &ThreadDump) {
    record::emit(
        "thread_dump_summary",
        Severity::Info,
        record::Wait::Patiently,
        |record| {
            record.display(
                keys::MESSAGE,
                format_args!(
                    "thread dump {}: {} threads, {} did not answer, {} left out",
                    dump.id, dump.threads, dump.unanswered, dump.left_out
                ),
                1024,
            );
            record.str(keys::DUMP_ID, &dump.id);
            record.u64(keys::DUMP_THREADS, dump.threads as u64);
            record.u64(keys::DUMP_UNANSWERED_THREADS, dump.unanswered as u64);
            record.u64(keys::DUMP_LEFT_OUT, dump.left_out as u64);
        },
    );
}

/// The process's threads, as `/proc/self/task` lists them.
fn thread_ids() -> Vec<i32> {
    std::fs::read_dir("/proc/self/task")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|text| text.trim_end().to_owned())
        .unwrap_or_default()
}

/// The kernel's word for what a thread is doing: `running`, `sleeping`, `disk sleep`, …; `None`
/// for a thread that is gone.
fn thread_state(tid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // `tid (comm) S …`: the name may hold spaces and parentheses; the state follows the last `)`.
    let code = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    let state = match code {
        Some('R') => "running",
        Some('S') => "sleeping",
        Some('D') => "disk sleep",
        Some('T') => "stopped",
        Some('t') => "tracing stop",
        Some('Z') => "zombie",
        Some('X') => "dead",
        Some('I') => "idle",
        _ => "unknown",
    };
    Some(state.to_owned())
}

/// Handles SIGQUIT, when nothing else does: a dump, and the process goes on; with `exit`, the
/// dump, the exit record and death by SIGQUIT.
pub(crate) fn handle_sigquit(exit: bool) {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        // Only where SIGQUIT still has its default action: an application's handler stays.
        // SAFETY: an all-zero sigaction is valid; sigaction(2) with a null new action only
        // writes the current one.
        let default = unsafe {
            let mut current: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGQUIT, std::ptr::null(), &mut current) == 0
                && current.sa_sigaction == libc::SIG_DFL
        };
        if !default {
            return;
        }
        let Ok(mut signals) = signal_hook::iterator::Signals::new([libc::SIGQUIT]) else {
            return;
        };
        let _ = std::thread::Builder::new()
            .name("crashguard-dumps".into())
            .spawn(move || {
                for _ in signals.forever() {
                    dump_threads();
                    if exit {
                        crate::exit::exit_by_signal(libc::SIGQUIT);
                    }
                }
            });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_parked_in_a_named_function_shows_it_in_the_dump() {
        crate::unwind::prepare();
        // Parked until the test is done with it, however long resolving names takes.
        #[inline(never)]
        fn parked_in_a_named_function(
            parked: std::sync::mpsc::Sender<i32>,
            release: std::sync::mpsc::Receiver<()>,
        ) {
            parked.send(crate::os::current_thread_id()).unwrap();
            let _ = release.recv();
        }
        let (parked, tid) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || parked_in_a_named_function(parked, released));
        let tid = tid.recv().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        install_answer();
        let Stack::Walked(trace) = walk_thread(tid) else {
            panic!("the thread answered");
        };
        let text = render(&trace, Names::FromDebugInfo);
        assert!(text.contains("parked_in_a_named_function"), "{text}");
        assert_eq!(thread_state(tid).as_deref(), Some("sleeping"));
        release.send(()).unwrap();
        thread.join().unwrap();
    }
}
