//! What a fatal signal leaves: the `fatal_signal` record, the `exit` record and the termination
//! message, built on the emergency stack from what the handler saw.

use std::ffi::CString;
use std::fmt;
use std::sync::OnceLock;

use libc::c_int;

use super::handler::{Crash, SI_KERNEL};
use crate::panic::IncidentId;
use crate::record::{self, Severity};
use crate::signal::signal_name;
use crate::unwind::{self, Module, Trace, WalkEnd};

/// The termination log's path, made at install (it would allocate in the handler).
static TERMINATION_LOG: OnceLock<Option<CString>> = OnceLock::new();

pub(super) fn prepare(termination_log: Option<CString>) {
    let _ = TERMINATION_LOG.set(termination_log);
}

/// Walks the crashed stack, then writes the records and the termination message. Runs once, on
/// the emergency stack, by the thread that claimed the handler.
pub(super) fn write(crash: &Crash) {
    let mut trace = Trace::new();
    if let Some(registers) = &crash.registers {
        unwind::walk(registers, &mut trace);
    }
    let modules = unwind::modules();
    let panic_incident = crate::panic::incident_in_progress();
    let incident = panic_incident.unwrap_or_else(IncidentId::next);
    let mut thread_name = [0u8; 17];
    let thread_name = thread_name_of(crash.thread_id, &mut thread_name);
    let summary = Summary {
        crash,
        thread_name,
        incident,
    };

    record::emit(
        "fatal_signal",
        Severity::Critical,
        record::Wait::Bounded,
        |record| {
            record.display("message", &summary, 1024);
            record.display("incident.id", incident, usize::MAX);
            record.str("signal.name", signal_name(crash.signal));
            record.i64("signal.number", i64::from(crash.signal));
            record.i64("signal.code", i64::from(crash.code));
            let (code_name, code_meaning) = code_meaning(crash.signal, crash.code);
            record.str("signal.code_name", code_name);
            record.str("signal.code_description", code_meaning);
            if crash.has_address {
                record.display(
                    "signal.fault_address",
                    format_args!("{:#x}", crash.address),
                    64,
                );
            }
            record.bytes("thread.name", thread_name);
            record.i64("thread.id", i64::from(crash.thread_id));
            record.bool("stack_overflow", crash.stack_overflow);
            record.bool("panic.in_progress", panic_incident.is_some());
            record.display(
                "exception.stacktrace",
                Frames {
                    trace: &trace,
                    modules,
                },
                usize::MAX,
            );
            match (&crash.registers, trace.end()) {
                (None, _) => record.str(
                    "exception.stacktrace_cut",
                    "the kernel gave no register context",
                ),
                (Some(_), WalkEnd::Outermost) => {}
                (Some(_), end) => record.display("exception.stacktrace_cut", end, 256),
            }
            record.display(
                "process.modules",
                UsedModules {
                    trace: &trace,
                    modules,
                },
                usize::MAX,
            );
        },
    );

    // Every way out ends with one exit record; this one says the signal will end the process,
    // unless an ordinary exit already wrote its own before something crashed on the way out.
    if crate::exit::claim_exit_record() {
        write_exit_record(crash, incident);
    }

    if let Some(path) = TERMINATION_LOG.get().and_then(Option::as_ref) {
        write_termination_message(path, &summary);
    }
}

fn write_exit_record(crash: &Crash, incident: IncidentId) {
    let code = 128 + crash.signal;
    record::emit("exit", Severity::Critical, record::Wait::Bounded, |exit| {
        exit.display(
            "message",
            format_args!(
                "exited with {code}: killed by {}",
                signal_name(crash.signal)
            ),
            usize::MAX,
        );
        exit.i64("exit.code", i64::from(code));
        exit.str("exit.reason", "fatal_signal");
        exit.str("signal.name", signal_name(crash.signal));
        exit.display("incident.id", incident, usize::MAX);
        exit.millis("process.uptime_ms", crate::uptime());
    });
}

/// The thread's name as the kernel knows it (15 bytes at most); `main` for the main thread, as
/// std calls it.
fn thread_name_of(thread_id: i32, buffer: &mut [u8; 17]) -> &[u8] {
    // SAFETY: getpid has no preconditions.
    if thread_id == unsafe { libc::getpid() } {
        return b"main";
    }
    // SAFETY: PR_GET_NAME writes at most 16 bytes, NUL included, into the buffer.
    unsafe {
        libc::prctl(
            libc::PR_GET_NAME,
            buffer.as_mut_ptr() as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let length = buffer.iter().position(|&b| b == 0).unwrap_or(16);
    &buffer[..length]
}

/// `fatal signal SIGSEGV (address not mapped to object) at 0x0 in thread 'main'`.
struct Summary<'a> {
    crash: &'a Crash,
    thread_name: &'a [u8],
    incident: IncidentId,
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let crash = self.crash;
        let name = signal_name(crash.signal);
        if crash.stack_overflow {
            write!(f, "stack overflow ({name})")?;
        } else {
            write!(
                f,
                "fatal signal {name} ({})",
                code_meaning(crash.signal, crash.code).1
            )?;
            if crash.has_address {
                write!(f, " at {:#x}", crash.address)?;
            }
        }
        write!(
            f,
            " in thread '{}' [incident {}]",
            record::LossyUtf8(self.thread_name),
            self.incident
        )
    }
}

/// `0: app+0x1f3a2 app::handler` per frame.
struct Frames<'a> {
    trace: &'a Trace,
    modules: &'a [Module],
}

impl fmt::Display for Frames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, address) in self.trace.instructions().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            match self.modules.iter().find(|m| m.contains(address)) {
                Some(module) => {
                    let offset = address - module.base;
                    write!(f, "{index}: {}+{offset:#x}", module.file_name())?;
                    if module.is_executable {
                        if let Some(function) = unwind::symbols::function_at(offset as u64) {
                            write!(f, " {function}")?;
                        }
                    }
                }
                None => write!(f, "{index}: {address:#x}")?,
            }
        }
        Ok(())
    }
}

/// `name path build-id` for each module a frame points into.
struct UsedModules<'a> {
    trace: &'a Trace,
    modules: &'a [Module],
}

impl fmt::Display for UsedModules<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for module in self.modules {
            if !self
                .trace
                .instructions()
                .any(|address| module.contains(address))
            {
                continue;
            }
            if !first {
                f.write_str("\n")?;
            }
            first = false;
            write!(f, "{} {} build-id ", module.file_name(), module.path)?;
            for byte in &module.build_id {
                write!(f, "{byte:02x}")?;
            }
        }
        Ok(())
    }
}

fn write_termination_message(path: &CString, summary: &Summary<'_>) {
    let mut buffer = FixedText {
        bytes: [0; crate::exit::TERMINATION_MESSAGE_MAX_BYTES],
        length: 0,
    };
    let _ = fmt::write(&mut buffer, format_args!("{summary}"));
    // SAFETY: `path` is a NUL-terminated string made at install; open, write and close are
    // async-signal-safe, and `buffer` holds `length` initialised bytes.
    unsafe {
        let fd = libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644,
        );
        if fd >= 0 {
            libc::write(fd, buffer.bytes.as_ptr().cast(), buffer.length);
            libc::close(fd);
        }
    }
}

/// Text formatted into a fixed buffer, cut at its end on a character boundary.
struct FixedText {
    bytes: [u8; crate::exit::TERMINATION_MESSAGE_MAX_BYTES],
    length: usize,
}

impl fmt::Write for FixedText {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for ch in text.chars() {
            let mut utf8 = [0; 4];
            let encoded = ch.encode_utf8(&mut utf8).as_bytes();
            if self.length + encoded.len() > self.bytes.len() {
                return Err(fmt::Error);
            }
            self.bytes[self.length..self.length + encoded.len()].copy_from_slice(encoded);
            self.length += encoded.len();
        }
        Ok(())
    }
}

/// The name and meaning of a signal's `si_code`, as `siginfo.h` and sigaction(2) give them.
fn code_meaning(signal: c_int, code: c_int) -> (&'static str, &'static str) {
    match (signal, code) {
        (_, libc::SI_USER) => ("SI_USER", "sent by kill"),
        (_, libc::SI_TKILL) => ("SI_TKILL", "sent by tkill or raise"),
        (_, libc::SI_QUEUE) => ("SI_QUEUE", "sent by sigqueue"),
        (_, SI_KERNEL) => ("SI_KERNEL", "sent by the kernel"),
        (libc::SIGSEGV, 1) => ("SEGV_MAPERR", "address not mapped to object"),
        (libc::SIGSEGV, 2) => ("SEGV_ACCERR", "invalid permissions for mapped object"),
        (libc::SIGBUS, 1) => ("BUS_ADRALN", "invalid address alignment"),
        (libc::SIGBUS, 2) => ("BUS_ADRERR", "nonexistent physical address"),
        (libc::SIGBUS, 3) => ("BUS_OBJERR", "object-specific hardware error"),
        (libc::SIGILL, 1) => ("ILL_ILLOPC", "illegal opcode"),
        (libc::SIGILL, 2) => ("ILL_ILLOPN", "illegal operand"),
        (libc::SIGILL, 3) => ("ILL_ILLADR", "illegal addressing mode"),
        (libc::SIGILL, 4) => ("ILL_ILLTRP", "illegal trap"),
        (libc::SIGILL, 5) => ("ILL_PRVOPC", "privileged opcode"),
        (libc::SIGILL, 6) => ("ILL_PRVREG", "privileged register"),
        (libc::SIGILL, 7) => ("ILL_COPROC", "coprocessor error"),
        (libc::SIGILL, 8) => ("ILL_BADSTK", "internal stack error"),
        (libc::SIGFPE, 1) => ("FPE_INTDIV", "integer divide by zero"),
        (libc::SIGFPE, 2) => ("FPE_INTOVF", "integer overflow"),
        (libc::SIGFPE, 3) => ("FPE_FLTDIV", "floating-point divide by zero"),
        (libc::SIGFPE, 4) => ("FPE_FLTOVF", "floating-point overflow"),
        (libc::SIGFPE, 5) => ("FPE_FLTUND", "floating-point underflow"),
        (libc::SIGFPE, 6) => ("FPE_FLTRES", "floating-point inexact result"),
        (libc::SIGFPE, 7) => ("FPE_FLTINV", "floating-point invalid operation"),
        (libc::SIGFPE, 8) => ("FPE_FLTSUB", "subscript out of range"),
        _ => ("unknown", "unknown cause"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_codes_have_their_posix_names() {
        assert_eq!(code_meaning(libc::SIGSEGV, 1).0, "SEGV_MAPERR");
        assert_eq!(code_meaning(libc::SIGFPE, 1).1, "integer divide by zero");
        assert_eq!(code_meaning(libc::SIGABRT, libc::SI_TKILL).0, "SI_TKILL");
    }
}
