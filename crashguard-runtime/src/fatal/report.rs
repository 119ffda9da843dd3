//! What a fatal signal leaves: the `fatal_signal` record, the `exit` record and the termination
//! message, built on the emergency stack from what the handler saw.

use std::fmt;

use libc::c_int;

use super::handler::{Crash, SI_KERNEL};
use crate::exit::{self, termination, ExitReason};
use crate::os::signal_name;
use crate::record::{self, keys, Severity};
use crate::state::IncidentId;
use crate::unwind::{self, Module, Trace, WalkEnd};

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

    // Every way out ends with one exit record; this one says the signal will end the process,
    // unless an ordinary exit already wrote its own before something crashed on the way out:
    // then this record says it supersedes that one.
    let writes_exit = exit::claim_exit_record();
    record::emit(
        "fatal_signal",
        Severity::Critical,
        record::Wait::Bounded,
        |record| {
            record.display(keys::MESSAGE, &summary, 1024);
            record.display(keys::INCIDENT_ID, incident, usize::MAX);
            record.str(keys::SIGNAL_NAME, signal_name(crash.signal));
            record.i64(keys::SIGNAL_NUMBER, i64::from(crash.signal));
            record.i64(keys::SIGNAL_CODE, i64::from(crash.code));
            let (code_name, code_meaning) = code_meaning(crash.signal, crash.code);
            record.str(keys::SIGNAL_CODE_NAME, code_name);
            record.str(keys::SIGNAL_CODE_DESCRIPTION, code_meaning);
            if crash.has_address {
                record.display(
                    keys::SIGNAL_FAULT_ADDRESS,
                    format_args!("{:#x}", crash.address),
                    64,
                );
            }
            record.bytes(keys::THREAD_NAME, thread_name);
            record.i64(keys::THREAD_ID, i64::from(crash.thread_id));
            record.bool(keys::STACK_OVERFLOW, crash.stack_overflow);
            record.bool(keys::PANIC_IN_PROGRESS, panic_incident.is_some());
            record.display(
                keys::EXCEPTION_STACKTRACE,
                Frames {
                    trace: &trace,
                    modules,
                },
                usize::MAX,
            );
            match (&crash.registers, trace.end()) {
                (None, _) => record.str(
                    keys::EXCEPTION_STACKTRACE_CUT,
                    "the kernel gave no register context",
                ),
                (Some(_), WalkEnd::Outermost) => {}
                (Some(_), end) => record.display(keys::EXCEPTION_STACKTRACE_CUT, end, 256),
            }
            if !writes_exit {
                record.bool(keys::EXIT_SUPERSEDED, true);
            }
            record.display(
                keys::PROCESS_MODULES,
                UsedModules {
                    trace: &trace,
                    modules,
                },
                usize::MAX,
            );
        },
    );

    if writes_exit {
        let reason = ExitReason::FatalSignal {
            signal: crash.signal,
            incident,
        };
        exit::write_exit_record(128 + crash.signal, &reason);
    }
    termination::write(&summary);
}

/// The records of a process that a terminating signal ends: its exit record, naming the signal,
/// and the termination message. Runs once, on the emergency stack.
pub(super) fn write_terminated(signal: c_int) {
    let reason = ExitReason::Signal(signal);
    if exit::claim_exit_record() {
        exit::write_exit_record(128 + signal, &reason);
        termination::write(&format_args!("killed by {}", signal_name(signal)));
    }
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
