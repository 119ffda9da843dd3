//! The code that runs inside the fatal-signal handler, and the state it shares with install.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use libc::{c_int, c_void, siginfo_t};

use super::{report, stack, InstallError, FATAL_SIGNALS};
use crate::os::current_thread_id;
use crate::unwind::Registers;

/// `si_code` of a signal the kernel sends without a fault address (a general protection fault).
pub(super) const SI_KERNEL: c_int = 0x80;

/// A fault this close to the stack pointer is the stack running into its guard page.
const STACK_OVERFLOW_REACH: usize = 64 * 1024;

/// The handlers that were installed before crashguard's, one per entry of [`FATAL_SIGNALS`].
/// Written at install, before crashguard's handler for that signal exists; read only by it.
struct PreviousHandlers(UnsafeCell<[MaybeUninit<libc::sigaction>; FATAL_SIGNALS.len()]>);

// SAFETY: each entry is written once, by `register` inside install's `OnceLock`, before the
// handler that reads it is registered (sigaction(2) orders the two); after that it is only read.
unsafe impl Sync for PreviousHandlers {}

static PREVIOUS: PreviousHandlers = PreviousHandlers(UnsafeCell::new(
    [const { MaybeUninit::zeroed() }; FATAL_SIGNALS.len()],
));

/// The kernel thread id of the thread handling a fatal signal; 0 while none is.
static HANDLING: AtomicI32 = AtomicI32::new(0);

/// Registers the handler for every signal in [`FATAL_SIGNALS`], keeping the previous ones.
pub(super) fn register() -> Result<(), InstallError> {
    for (index, &signal) in FATAL_SIGNALS.iter().enumerate() {
        // SAFETY: an all-zero sigaction is a valid value (SIG_DFL, empty mask, no flags);
        // the fields set are the ones sigaction(2) reads.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_fatal_signal as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: `action` is initialised; PREVIOUS[index] is written only here, once (install
        // runs this inside a `OnceLock`), before our handler for `signal` exists to read it.
        let status = unsafe {
            libc::sigemptyset(&mut action.sa_mask);
            let previous = (*PREVIOUS.0.get())[index].as_mut_ptr();
            libc::sigaction(signal, &action, previous)
        };
        if status != 0 {
            return Err(InstallError::last("sigaction"));
        }
    }
    Ok(())
}

/// Signals whose default action ends the process, which a service does not expect: when nothing
/// else handles one, crashguard writes the exit record before the process dies by it. SIGPIPE
/// counts only where it is not ignored (Rust programs ignore it from the start); SIGTERM and
/// SIGINT are shutdown's, SIGQUIT is left as it is.
pub(super) const TERMINATING_SIGNALS: [c_int; 11] = [
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGVTALRM,
    libc::SIGPROF,
    libc::SIGXCPU,
    libc::SIGXFSZ,
    libc::SIGSYS,
    libc::SIGTRAP,
    libc::SIGPIPE,
];

/// Handles each of [`TERMINATING_SIGNALS`] that has its default action now. One the application
/// handles already keeps its handler; one it handles later replaces crashguard's (see
/// [`on_terminating_signal`]).
pub(super) fn register_terminating() -> Result<(), InstallError> {
    for &signal in &TERMINATING_SIGNALS {
        // SAFETY: an all-zero sigaction is a valid value.
        let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: sigaction(2) with a null new action only writes the current one.
        if unsafe { libc::sigaction(signal, std::ptr::null(), &mut current) } != 0 {
            return Err(InstallError::last("sigaction"));
        }
        if current.sa_sigaction != libc::SIG_DFL {
            continue;
        }
        // SAFETY: as in `register`.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_terminating_signal as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: `action` is initialised; the previous action was the default, kept nowhere.
        let status = unsafe {
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if status != 0 {
            return Err(InstallError::last("sigaction"));
        }
    }
    Ok(())
}

/// The handler for [`TERMINATING_SIGNALS`]: the exit record, the termination message, then death
/// by the same signal. When it is not the signal's handler any more (a handler installed later,
/// by signal-hook or tokio, chains to the one it replaced), the application handles the signal,
/// and this does nothing.
extern "C" fn on_terminating_signal(signal: c_int, _: *mut siginfo_t, _: *mut c_void) {
    // SAFETY: as in `register_terminating`.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: sigaction(2) with a null new action only writes the current one; it is
    // async-signal-safe.
    unsafe { libc::sigaction(signal, std::ptr::null(), &mut current) };
    if current.sa_sigaction != on_terminating_signal as *const () as usize {
        return;
    }
    let me = current_thread_id();
    // A fatal signal being handled ends the process with its own records.
    if HANDLING
        .compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    stack::on_emergency_stack(|| report::write_terminated(signal));
    // SAFETY: restoring the default action with a zeroed sigaction (SIG_DFL) is always valid;
    // getpid, _exit and raise are async-signal-safe.
    unsafe {
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(signal, &default, std::ptr::null_mut());
        if libc::getpid() == 1 {
            // The kernel drops signals PID 1 sends itself with the default action.
            libc::_exit(128 + signal);
        }
        // Blocked while this handler runs; delivered, with the default action, on return.
        libc::raise(signal);
    }
}

/// What the handler saw, before it leaves the alternate stack.
pub(super) struct Crash {
    pub(super) signal: c_int,
    pub(super) code: c_int,
    pub(super) address: usize,
    /// Whether `address` means something: a fault the kernel described, not a general
    /// protection fault (SI_KERNEL, reported at 0) or a signal sent by a process.
    pub(super) has_address: bool,
    pub(super) stack_overflow: bool,
    pub(super) thread_id: i32,
    /// Where the interrupted code was, if the kernel said.
    pub(super) registers: Option<Registers>,
}

/// The handler for every signal in [`FATAL_SIGNALS`].
extern "C" fn on_fatal_signal(signal: c_int, info: *mut siginfo_t, context: *mut c_void) {
    let me = current_thread_id();
    match HANDLING.compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {}
        // The handler itself crashed, or a handler we chained to aborted: no second record.
        Err(owner) if owner == me => return die(signal, info, context, false),
        // Another thread is writing the record and will end the process; give it time.
        Err(_) => {
            for _ in 0..200 {
                crate::os::sleep(Duration::from_millis(25));
            }
            return die(signal, info, context, false);
        }
    }

    // SAFETY: `info` is the kernel's siginfo for this delivery (SA_SIGINFO), valid for the
    // handler's duration.
    let (code, address) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    let registers = (!context.is_null()).then(|| {
        // SAFETY: a non-null `context` is the kernel's ucontext_t for this delivery.
        unsafe { Registers::from_signal_context(context.cast()) }
    });
    let crash = Crash {
        signal,
        code,
        address: if code > 0 { address } else { 0 },
        has_address: code > 0 && code != SI_KERNEL && signal != libc::SIGABRT,
        stack_overflow: is_stack_overflow(signal, code, address, registers.as_ref()),
        thread_id: me,
        registers,
    };
    stack::on_emergency_stack(|| report::write(&crash));
    die(signal, info, context, !crash.stack_overflow);
}

/// A SIGSEGV or SIGBUS from the kernel at an address within reach of the stack pointer.
fn is_stack_overflow(
    signal: c_int,
    code: c_int,
    address: usize,
    registers: Option<&Registers>,
) -> bool {
    if !(signal == libc::SIGSEGV || signal == libc::SIGBUS) || code <= 0 {
        return false;
    }
    registers
        .is_some_and(|registers| address.abs_diff(registers.sp as usize) <= STACK_OVERFLOW_REACH)
}

/// Chains to the previous handler (if asked and there is one), then dies by `signal`.
fn die(signal: c_int, info: *mut siginfo_t, context: *mut c_void, chain: bool) {
    if let Some(index) = FATAL_SIGNALS.iter().position(|&s| s == signal) {
        // SAFETY: PREVIOUS was filled at install, before this handler was registered.
        let previous = unsafe { (*PREVIOUS.0.get())[index].assume_init_ref() };
        let handler = previous.sa_sigaction;
        if chain && handler != libc::SIG_DFL && handler != libc::SIG_IGN {
            // SAFETY: the previous handler was registered for this signal with these flags,
            // so calling it with the kernel's own arguments is what the kernel would have done.
            unsafe {
                if previous.sa_flags & libc::SA_SIGINFO != 0 {
                    let handler: extern "C" fn(c_int, *mut siginfo_t, *mut c_void) =
                        std::mem::transmute(handler);
                    handler(signal, info, context);
                } else {
                    let handler: extern "C" fn(c_int) = std::mem::transmute(handler);
                    handler(signal);
                }
            }
        }
    }
    // SAFETY: restoring the default action with a zeroed sigaction (SIG_DFL) is always valid.
    let code = unsafe {
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(signal, &default, std::ptr::null_mut());
        (*info).si_code
    };
    // A fault the instruction itself caused happens again when it is re-executed; an
    // asynchronous machine-check report (BUS_MCEERR_AO) would not.
    const BUS_MCEERR_AO: c_int = 5;
    let synchronous_fault =
        code > 0 && signal != libc::SIGABRT && !(signal == libc::SIGBUS && code == BUS_MCEERR_AO);
    if synchronous_fault {
        // Returning re-executes the faulting instruction, which now kills the process with the
        // kernel's own siginfo, and the kernel forces it even on PID 1.
        return;
    }
    // SAFETY: getpid, _exit and raise are async-signal-safe and have no preconditions.
    unsafe {
        if libc::getpid() == 1 {
            // The kernel drops signals PID 1 sends itself with the default action.
            libc::_exit(128 + signal);
        }
        // Blocked while this handler runs; delivered, with the default action, on return.
        libc::raise(signal);
    }
}
