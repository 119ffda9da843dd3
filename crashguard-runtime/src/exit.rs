//! The last record of every process, its exit code, and the Kubernetes termination message.
//!
//! | how it ended | `exit.reason` | exit code |
//! |---|---|---|
//! | main returned `()`, `Ok`, or an [`ExitCode`] | `returned` | 0, or that code |
//! | main returned `Err(e)` | `error` | 1 |
//! | a panic escaped main | `panic` | 101 |
//! | main returned after SIGTERM/SIGINT started a shutdown | `shutdown` | 0, or main's code |
//! | main returned after a spent [panic budget](crate::Config::exit_on_panic_budget) started a shutdown | `panic_budget` | 102, or main's code if not 0 |
//! | the shutdown deadline passed first | `deadline` | 124 |
//! | a second SIGTERM/SIGINT during shutdown | `signal` | 128 + the signal's number |
//! | a fatal signal | `fatal_signal` | 128 + the signal's number, by dying of it |
//!
//! Every way out writes exactly one exit record ([`claim_exit_record`] decides who), through one
//! writer that allocates nothing, so that a fatal-signal handler uses it too, and a short summary
//! to the termination log (see [`termination`]), replacing the one written in advance.

use std::fmt::{self, Debug};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::config::PanicBudget;
use crate::os::signal_name;
use crate::panic::PanicReport;
use crate::record::{self, keys, Severity};
use crate::state::IncidentId;

pub(crate) mod at_exit;
pub(crate) mod termination;

/// The most the kubelet keeps of a termination message.
pub const TERMINATION_MESSAGE_MAX_BYTES: usize = 4096;

/// The exit code of a process whose `main` returned `Err`, as std's own.
pub const EXIT_ERROR: i32 = 1;

/// The exit code of a process ended by a panic, as std's own.
pub const EXIT_PANIC: i32 = 101;

/// The exit code of a process that shut down because it panicked more than its
/// [panic budget](crate::Config::exit_on_panic_budget) allows: next to [`EXIT_PANIC`], and not 0,
/// so that `kubectl describe pod` shows the container as failed.
pub const EXIT_PANIC_BUDGET: i32 = 102;

/// The exit code when a graceful shutdown did not finish before its deadline (as `timeout(1)`).
pub const EXIT_DEADLINE: i32 = 124;

mod sealed {
    pub trait Sealed {}
    impl Sealed for () {}
    impl Sealed for std::process::ExitCode {}
    impl<T: Sealed, E: std::fmt::Debug> Sealed for Result<T, E> {}
}

/// What a `#[crash_guarded]` (or [`run`](crate::run)) `main` may return: `()`, [`ExitCode`], or
/// `Result<T, E>` of those with any `E: Debug` (`anyhow::Error`, `Box<dyn Error>`, …), as std's
/// own `main` allows.
///
/// Sealed: these are all the types it is for. Return an [`ExitCode`] for any other code.
#[diagnostic::on_unimplemented(
    message = "`#[crash_guarded]` main cannot return `{Self}`",
    label = "return `()`, `std::process::ExitCode`, or `Result<(), E>` with `E: Debug`"
)]
pub trait MainOutput: sealed::Sealed {
    /// The exit this value asks for.
    fn into_exit(self) -> MainExit;
}

/// The exit a `main` asked for by what it returned: its code, and the error it returned, if
/// any. Made only by [`MainOutput::into_exit`].
#[derive(Debug)]
pub struct MainExit {
    code: i32,
    error: Option<MainError>,
}

/// The `Err` a `main` returned, as its exit record shows it.
#[derive(Debug)]
pub(crate) struct MainError {
    /// Its `Debug` text, as std's own `main` prints it (for anyhow, the message and the causes),
    /// less a backtrace at its end.
    chain: String,
    /// The backtrace an error type captured and printed at the end of its `Debug` (anyhow and
    /// eyre do with `RUST_BACKTRACE=1`).
    backtrace: Option<String>,
}

impl MainError {
    pub(crate) fn new(debug: String) -> MainError {
        // anyhow ends its Debug with "\n\nStack backtrace:\n"; eyre's default with "\n\nBacktrace:".
        let split = ["\n\nStack backtrace:\n", "\n\nBacktrace:\n"]
            .iter()
            .find_map(|marker| debug.find(marker).map(|at| (at, marker.len())));
        match split {
            Some((at, marker)) => MainError {
                backtrace: Some(debug[at + marker..].to_owned()),
                chain: debug[..at].to_owned(),
            },
            None => MainError {
                chain: debug,
                backtrace: None,
            },
        }
    }

    /// The error in one line: its first.
    fn summary(&self) -> &str {
        self.chain.lines().next().unwrap_or("")
    }
}

impl MainExit {
    /// The exit code it asks for.
    pub fn code(&self) -> i32 {
        self.code
    }
}

impl MainOutput for () {
    fn into_exit(self) -> MainExit {
        MainExit {
            code: 0,
            error: None,
        }
    }
}

impl MainOutput for ExitCode {
    fn into_exit(self) -> MainExit {
        // ExitCode hides its value; it can only be compared.
        let code = (0..=u8::MAX)
            .find(|&candidate| ExitCode::from(candidate) == self)
            .map_or(EXIT_ERROR, i32::from);
        MainExit { code, error: None }
    }
}

impl<T: MainOutput, E: Debug> MainOutput for Result<T, E> {
    fn into_exit(self) -> MainExit {
        match self {
            Ok(value) => value.into_exit(),
            // Debug, as std's own `main` prints it: for anyhow that includes the causes.
            Err(error) => MainExit {
                code: EXIT_ERROR,
                error: Some(MainError::new(format!("{error:?}"))),
            },
        }
    }
}

/// Why the process is ending; each has its `exit.reason`.
pub(crate) enum ExitReason<'a> {
    Returned,
    /// `main` returned after a signal, or the panic budget, started the shutdown.
    Shutdown {
        cause: ShutdownCause,
        since: Instant,
    },
    Error(&'a MainError),
    Panic(&'a PanicReport),
    Deadline {
        grace_period: Duration,
        pending: &'a str,
    },
    SecondSignal(i32),
    /// Something called `exit` itself; with its code, where the C library tells it.
    Called {
        code: Option<i32>,
    },
    /// A signal whose default action ends the process, which nothing handled.
    #[cfg_attr(not(fatal_signals), allow(dead_code))]
    Signal(i32),
    #[cfg_attr(not(fatal_signals), allow(dead_code))]
    FatalSignal {
        signal: i32,
        incident: IncidentId,
    },
}

impl ExitReason<'_> {
    fn name(&self) -> &'static str {
        match self {
            ExitReason::Returned => "returned",
            ExitReason::Shutdown {
                cause: ShutdownCause::PanicBudget { .. },
                ..
            } => "panic_budget",
            ExitReason::Shutdown { .. } => "shutdown",
            ExitReason::Error(_) => "error",
            ExitReason::Panic(_) => "panic",
            ExitReason::Deadline { .. } => "deadline",
            ExitReason::SecondSignal(_) | ExitReason::Signal(_) => "signal",
            ExitReason::Called { .. } => "exit_called",
            ExitReason::FatalSignal { .. } => "fatal_signal",
        }
    }
}

/// What started a graceful shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShutdownCause {
    Signal(i32),
    /// More panics than the budget allows, with the window's count when it was spent.
    PanicBudget {
        panics: u64,
        budget: PanicBudget,
    },
}

/// Ends the process after `main` returned with `exit`; `shutdown` is what started a graceful
/// shutdown and when, if anything did. A shutdown the panic budget started ends with
/// [`EXIT_PANIC_BUDGET`] where `main` asked for 0: the process did not end well.
pub(crate) fn exit_returned(exit: MainExit, shutdown: Option<(ShutdownCause, Instant)>) -> ! {
    match (&exit.error, shutdown) {
        (Some(error), _) => exit_process(exit.code, ExitReason::Error(error)),
        (None, Some((cause, since))) => {
            let code = match cause {
                ShutdownCause::PanicBudget { .. } if exit.code == 0 => EXIT_PANIC_BUDGET,
                _ => exit.code,
            };
            exit_process(code, ExitReason::Shutdown { cause, since })
        }
        (None, None) => exit_process(exit.code, ExitReason::Returned),
    }
}

/// Writes the exit record (and, for a bad end, the termination message), then exits. Only the
/// first caller gets through: every way out leaves exactly one exit record.
pub(crate) fn exit_process(code: i32, reason: ExitReason<'_>) -> ! {
    if !claim_exit_record() {
        wait_for_the_other_exit(code);
    }
    exit_claimed(code, reason)
}

/// Another thread claimed the exit record and is ending the process. Should it not (a fatal
/// signal's handler that was answered by a previous handler that recovered), end it anyway.
pub(crate) fn wait_for_the_other_exit(code: i32) -> ! {
    std::thread::sleep(Duration::from_secs(5));
    // SAFETY: _exit(2) has no preconditions; the other exit already wrote the records.
    unsafe { libc::_exit(code) }
}

/// [`exit_process`] for a caller that already won [`claim_exit_record`].
pub(crate) fn exit_claimed(code: i32, reason: ExitReason<'_>) -> ! {
    // Fresh numbers for the record (a signal handler's exit record has the watcher's last).
    crate::memory::now();
    write_exit_record(code, &reason);
    // A clean end too: the message written in advance must not outlive the process.
    termination::write(&Detail {
        code,
        reason: &reason,
    });
    std::process::exit(code)
}

/// Ends the process as `signal`'s default action would, after its exit record and termination
/// message: from an ordinary thread that took the signal over (SIGQUIT, after a thread dump).
#[cfg_attr(not(fatal_signals), allow(dead_code))]
pub(crate) fn exit_by_signal(signal: i32) -> ! {
    if !claim_exit_record() {
        wait_for_the_other_exit(128 + signal);
    }
    let reason = ExitReason::Signal(signal);
    write_exit_record(128 + signal, &reason);
    termination::write(&Detail {
        code: 128 + signal,
        reason: &reason,
    });
    // SAFETY: restoring the default action with a zeroed sigaction (SIG_DFL) is always valid;
    // raise and _exit have no preconditions.
    unsafe {
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(signal, &default, std::ptr::null_mut());
        if libc::getpid() != 1 {
            libc::raise(signal);
        }
        // PID 1 (where the kernel drops the signal), or a signal that did not end the process.
        libc::_exit(128 + signal)
    }
}

/// The one exit-record writer. Allocates nothing and takes no lock that can block, so a
/// fatal-signal handler calls it too.
pub(crate) fn write_exit_record(code: i32, reason: &ExitReason<'_>) {
    let (severity, wait) = match reason {
        ExitReason::FatalSignal { .. } => (Severity::Critical, record::Wait::Bounded),
        ExitReason::Signal(_) => (Severity::Error, record::Wait::Bounded),
        _ if code == 0 => (Severity::Info, record::Wait::Patiently),
        _ => (Severity::Error, record::Wait::Patiently),
    };
    record::emit("exit", severity, wait, |record| {
        match reason {
            ExitReason::Called { code: None } => {
                record.display(keys::MESSAGE, Detail { code, reason }, 2048)
            }
            _ => record.display(
                keys::MESSAGE,
                format_args!("exited with {code}: {}", Detail { code, reason }),
                2048,
            ),
        }
        if !matches!(reason, ExitReason::Called { code: None }) {
            record.i64(keys::EXIT_CODE, i64::from(code));
        }
        record.str(keys::EXIT_REASON, reason.name());
        match reason {
            ExitReason::SecondSignal(signal) | ExitReason::Signal(signal) => {
                record.str(keys::SIGNAL_NAME, signal_name(*signal));
                record.i64(keys::SIGNAL_NUMBER, i64::from(*signal));
            }
            ExitReason::FatalSignal { signal, incident } => {
                record.str(keys::SIGNAL_NAME, signal_name(*signal));
                record.display(keys::INCIDENT_ID, incident, usize::MAX);
            }
            ExitReason::Deadline { pending, .. } => record.str(keys::SHUTDOWN_PENDING, pending),
            ExitReason::Panic(report) => {
                record.display(keys::INCIDENT_ID, report.incident_id(), usize::MAX)
            }
            ExitReason::Error(error) => {
                record.str_max(keys::ERROR_MESSAGE, &error.chain, 4 * 1024);
                if let Some(backtrace) = &error.backtrace {
                    // Last, and capped: what is cut when the record is too long.
                    record.str_max(keys::ERROR_STACKTRACE, backtrace, 8 * 1024);
                }
            }
            ExitReason::Returned | ExitReason::Shutdown { .. } | ExitReason::Called { .. } => {}
        }
        record.millis(keys::PROCESS_UPTIME_MS, crate::state::uptime());
        let (peak_rss, limit) = crate::memory::last_known();
        if let Some(peak_rss) = peak_rss {
            record.u64(keys::PROCESS_MEMORY_PEAK_RSS_BYTES, peak_rss);
        }
        if let Some(limit) = limit {
            record.u64(keys::CGROUP_MEMORY_LIMIT_BYTES, limit);
        }
    });
}

/// What the exit record's message and the termination message say after `exited with N: `.
struct Detail<'a> {
    code: i32,
    reason: &'a ExitReason<'a>,
}

impl fmt::Display for Detail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            ExitReason::Returned if self.code == 0 => f.write_str("main returned"),
            ExitReason::Returned => write!(f, "main returned exit code {}", self.code),
            ExitReason::Shutdown {
                cause: ShutdownCause::Signal(signal),
                since,
            } => write!(
                f,
                "graceful shutdown after {} finished in {} ms",
                signal_name(*signal),
                since.elapsed().as_millis()
            ),
            ExitReason::Shutdown {
                cause: ShutdownCause::PanicBudget { panics, budget },
                since,
            } => write!(
                f,
                "graceful shutdown after {panics} panics spent the panic budget of {budget} \
                 finished in {} ms",
                since.elapsed().as_millis()
            ),
            ExitReason::Error(error) => write!(f, "main returned an error: {}", error.summary()),
            ExitReason::Panic(report) => write!(f, "{}", report.summary()),
            ExitReason::Deadline {
                grace_period,
                pending,
            } => write!(
                f,
                "shutdown deadline of {} ms passed; still running: {pending}",
                grace_period.as_millis()
            ),
            ExitReason::SecondSignal(signal) => {
                write!(f, "second {} during shutdown", signal_name(*signal))
            }
            ExitReason::FatalSignal { signal, .. } | ExitReason::Signal(signal) => {
                write!(f, "killed by {}", signal_name(*signal))
            }
            ExitReason::Called { code: Some(_) } => f.write_str("exit() was called"),
            ExitReason::Called { code: None } => {
                f.write_str("exit() was called (the C library does not tell the code)")
            }
        }
    }
}

/// Whether the caller is the one to write the process's exit record: true once, for the first
/// caller, whether an ordinary exit or a fatal signal. Async-signal-safe.
pub(crate) fn claim_exit_record() -> bool {
    !CLAIMED.swap(true, Ordering::SeqCst)
}

/// Whether some way out has claimed the exit record: the process is ending.
pub(crate) fn is_ending() -> bool {
    CLAIMED.load(Ordering::SeqCst)
}

static CLAIMED: AtomicBool = AtomicBool::new(false);
