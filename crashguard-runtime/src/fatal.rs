//! Fatal signals: SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT (stack overflow included) leave
//! one `fatal_signal` record, then the process dies the way it would have.
//!
//! Signal handlers are the hardest code a service has. A fatal signal can arrive on any thread,
//! at any instruction: inside `malloc`, while a lock is held, in the middle of crashguard's own
//! panic hook. So everything this module does from the handler allocates nothing, takes no lock
//! that can block, and calls only functions that are safe in a signal handler (`write`, `open`,
//! `read`, `close`, `poll`, `sigaction`, `pthread_sigmask`, `raise`, `_exit`, `gettid`, `prctl`,
//! `clock_gettime`, `nanosleep`). Everything that allocates (the list of loaded modules with
//! their build ids and unwind tables, the unwinder's cache, the termination log's path, an
//! emergency stack) is prepared at [`install`](crate::install).
//!
//! # What happens on a fatal signal
//!
//! 1. The handler runs on the thread's alternate signal stack (std gives every thread it starts
//!    one, which is what makes a stack overflow catchable). However little room the kernel's
//!    signal frame left there (it grows with the CPU's vector registers: about 1 KiB with AVX2,
//!    3 KiB with AVX-512, 11 KiB with AMX), the handler only notes the signal and moves, with
//!    every signal blocked, to a 256 KiB emergency stack of its own made at install.
//! 2. There it walks the interrupted thread's stack from the registers the kernel saved (see
//!    the `unwind` layer: DWARF unwind tables, every read of the crashed stack checked against
//!    its mapping) and writes one record straight to fd 2 (never through `tracing`): the signal
//!    and what its `si_code` means, the fault address, the thread, whether it was a stack
//!    overflow, a backtrace of `module+0xoffset` frames with the modules' build ids (see the
//!    README on `addr2line`), and the function's name for frames in the executable once its
//!    symbol table has been read (on a background thread started at install). A trace cut short
//!    says why in `exception.stacktrace_cut`. If a panic was in progress on that thread (a
//!    double panic, `panic = "abort"`), the record carries that panic's incident id.
//! 3. An `exit` record with reason `fatal_signal` and code 128 + n, then the termination
//!    message.
//! 4. The handler that was installed before is called (std's own stack-overflow handler excepted,
//!    whose text crashguard's record replaces), the default action is restored, and the process
//!    dies by the same signal: a hardware fault is re-executed, anything else is raised again, so
//!    the exit status (139, 135, 132, 136, 134) and any core dump are what they would have been.
//!    PID 1 (a container without an init) cannot kill itself by raising a signal, the kernel
//!    drops it; there the process exits with `_exit(128 + n)` instead, so the number still reads
//!    right.
//!
//! Only the first fatal signal is recorded. A second one while the first is being handled goes to
//! the default action: at once when the handler itself faulted, after up to 5 s when another
//! thread crashed at the same moment (the first thread ends the process before that).
//!
//! # Limits
//!
//! - A log reader that stopped reading (a full pipe) gets no record: the handler waits at most a
//!   second for room on stderr, then goes on to die by the signal.
//! - A thread created outside std (by C code) without an alternate stack cannot report its own
//!   stack overflow: the kernel has nowhere to run the handler and kills the process.
//! - Modules loaded after install (`dlopen`) show as bare addresses, and the walk cannot go
//!   through their frames; a module unloaded after install (`dlclose`) must not be crashed in.
//! - Function names need the executable's symbol table (`strip` removes it); frames always have
//!   `module+0xoffset`, which `addr2line` resolves with the unstripped binary.

use std::fmt;

use libc::c_int;

mod handler;
mod report;
mod stack;

/// The signals after which a process cannot go on.
pub const FATAL_SIGNALS: [c_int; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];

/// What kept fatal-signal handling from being installed.
#[derive(Debug)]
pub(crate) struct InstallError {
    step: &'static str,
    error: std::io::Error,
}

impl InstallError {
    fn last(step: &'static str) -> InstallError {
        InstallError {
            step,
            error: std::io::Error::last_os_error(),
        }
    }
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.step, self.error)
    }
}

/// Installs the handlers once; later calls return the first call's outcome.
pub(crate) fn install() -> Result<(), &'static InstallError> {
    static INSTALLED: std::sync::OnceLock<Result<(), InstallError>> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            crate::state::prepare_for_signal_handlers();
            crate::exit::termination::prepare();
            crate::unwind::prepare();
            if let Ok(executable) = std::env::current_exe() {
                crate::unwind::symbols::load_in_background(executable);
            }
            stack::ensure_alternate_stack()?;
            stack::prepare_emergency_stack()?;
            handler::register()?;
            handler::register_terminating()
        })
        .as_ref()
        .map(|_| ())
}
