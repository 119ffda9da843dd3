//! The last record of every process, its exit code, and the Kubernetes termination message.
//!
//! | how it ended | `exit.reason` | exit code |
//! |---|---|---|
//! | main returned `()`, `Ok`, or an [`ExitCode`] | `returned` | 0, or that code |
//! | main returned `Err(e)` | `error` | 1 |
//! | a panic escaped main | `panic` | 101 |
//! | main returned after SIGTERM/SIGINT started a shutdown | `shutdown` | 0, or main's code |
//! | the shutdown deadline passed first | `deadline` | 124 |
//! | a second SIGTERM/SIGINT during shutdown | `signal` | 128 + the signal's number |
//!
//! When the code is not 0 a short summary also goes to the termination log (see
//! [`Config::termination_log`](crate::Config::termination_log)), which `kubectl describe pod`
//! shows as the container's last state message. It is overwritten, never appended to: the last
//! death is the one to show. The kubelet keeps at most 4096 bytes of it, so crashguard writes no
//! more than that.

use std::fmt::Debug;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::panic::PanicReport;
use crate::record::{self, Severity};
use crate::signal::signal_name;

/// The most the kubelet keeps of a termination message.
pub const TERMINATION_MESSAGE_MAX_BYTES: usize = 4096;

/// The exit code of a process whose `main` returned `Err`, as std's own.
pub const EXIT_ERROR: i32 = 1;

/// The exit code of a process ended by a panic, as std's own.
pub const EXIT_PANIC: i32 = 101;

/// The exit code when a graceful shutdown did not finish before its deadline (as `timeout(1)`).
pub const EXIT_DEADLINE: i32 = 124;

/// What a `#[crash_guarded]` (or [`run`](crate::run)) `main` may return: `()`, [`ExitCode`], or
/// `Result<T, E>` of those with any `E: Debug` (`anyhow::Error`, `Box<dyn Error>`, …).
#[diagnostic::on_unimplemented(
    message = "`#[crash_guarded]` main cannot return `{Self}`",
    label = "return `()`, `std::process::ExitCode`, or `Result<(), E>` with `E: Debug`"
)]
pub trait MainOutput {
    /// The exit this value asks for.
    fn into_exit(self) -> MainExit;
}

/// The exit a `main` asked for by what it returned.
#[derive(Debug)]
pub struct MainExit {
    code: i32,
    error: Option<String>,
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
                error: Some(format!("{error:?}")),
            },
        }
    }
}

/// Why the process is ending; each has its `exit.reason`.
pub(crate) enum ExitReason<'a> {
    Returned,
    Error(&'a str),
    Panic(&'a PanicReport),
    Deadline {
        grace_period: Duration,
        pending: &'a str,
    },
    SecondSignal(i32),
}

/// Ends the process after `main` returned.
pub(crate) fn exit_returned(exit: MainExit) -> ! {
    match &exit.error {
        Some(error) => exit_process(exit.code, ExitReason::Error(error)),
        None => exit_process(exit.code, ExitReason::Returned),
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
    std::thread::sleep(std::time::Duration::from_secs(5));
    // SAFETY: _exit(2) has no preconditions; the other exit already wrote the records.
    unsafe { libc::_exit(code) }
}

/// [`exit_process`] for a caller that already won [`claim_exit_record`].
pub(crate) fn exit_claimed(code: i32, reason: ExitReason<'_>) -> ! {
    let severity = if code == 0 {
        Severity::Info
    } else {
        Severity::Error
    };
    let stopping_signal = crate::shutdown::stopping_signal();
    let (reason_name, detail) = match &reason {
        ExitReason::Returned => match stopping_signal {
            Some((signal, since)) => (
                "shutdown",
                format!(
                    "graceful shutdown after {} finished in {} ms",
                    signal_name(signal),
                    since.elapsed().as_millis()
                ),
            ),
            None if code == 0 => ("returned", "main returned".to_owned()),
            None => ("returned", format!("main returned exit code {code}")),
        },
        ExitReason::Error(error) => ("error", format!("main returned an error: {error}")),
        ExitReason::Panic(report) => ("panic", report.summary()),
        ExitReason::Deadline {
            grace_period,
            pending,
        } => (
            "deadline",
            format!(
                "shutdown deadline of {} ms passed; still running: {pending}",
                grace_period.as_millis()
            ),
        ),
        ExitReason::SecondSignal(signal) => (
            "signal",
            format!("second {} during shutdown", signal_name(*signal)),
        ),
    };
    record::emit("exit", severity, record::Wait::Patiently, |record| {
        record.display(
            "message",
            format_args!("exited with {code}: {detail}"),
            2048,
        );
        record.i64("exit.code", i64::from(code));
        record.str("exit.reason", reason_name);
        if let ExitReason::SecondSignal(signal) = &reason {
            record.str("signal.name", signal_name(*signal));
            record.i64("signal.number", i64::from(*signal));
        }
        if let ExitReason::Deadline { pending, .. } = &reason {
            record.str("shutdown.pending", pending);
        }
        if let ExitReason::Panic(report) = &reason {
            record.display("incident.id", report.incident_id(), usize::MAX);
        }
        if let ExitReason::Error(error) = &reason {
            record.str_max("error.message", error, 8 * 1024);
        }
        record.millis("process.uptime_ms", crate::uptime());
    });

    if code != 0 {
        if let Some(path) = crate::settings().termination_log.as_deref() {
            write_termination_message(path, &detail);
        }
    }
    std::process::exit(code)
}

/// Whether the caller is the one to write the process's exit record: true once, for the first
/// caller, whether an ordinary exit or a fatal signal. Async-signal-safe.
pub(crate) fn claim_exit_record() -> bool {
    static CLAIMED: AtomicBool = AtomicBool::new(false);
    !CLAIMED.swap(true, Ordering::SeqCst)
}

/// Replaces the termination log's content with `message`, cut to what the kubelet keeps.
pub(crate) fn write_termination_message(path: &Path, message: &str) {
    let mut end = message.len().min(TERMINATION_MESSAGE_MAX_BYTES);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    // A message that cannot be written changes nothing about how the process ends.
    if let Ok(mut file) = std::fs::File::create(path) {
        let _ = file.write_all(&message.as_bytes()[..end]);
    }
}
