//! Fatal signals: SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT (stack overflow included) leave
//! one `fatal_signal` record, then the process dies the way it would have.
//!
//! Signal handlers are the hardest code a service has. A fatal signal can arrive on any thread,
//! at any instruction: inside `malloc`, while a lock is held, in the middle of crashguard's own
//! panic hook. So everything this module does from the handler allocates nothing, takes no lock
//! that can block, and calls only functions that are safe in a signal handler (`write`, `open`,
//! `close`, `sigaction`, `raise`, `_exit`, `gettid`, `prctl`, `clock_gettime`), plus the stack
//! unwinder. Everything that needs allocation (the list of loaded modules with their build ids,
//! the termination log's path, an emergency stack) is prepared at [`install`](crate::install).
//!
//! # What happens on a fatal signal
//!
//! 1. The handler runs on the thread's alternate signal stack (std gives every thread it starts
//!    one, which is what makes a stack overflow catchable), records the signal, the fault
//!    address and the return addresses of the stack, then moves to a 256 KiB emergency stack of
//!    its own to build the record.
//! 2. One record, written straight to fd 2 (never through `tracing`): the signal and what its
//!    `si_code` means, the fault address, the thread, whether it was a stack overflow, and a
//!    backtrace of `module+0xoffset` frames with the modules' build ids (see the README on
//!    `addr2line`), and the function's name for frames in the executable once its symbol table
//!    has been read (on a background thread started at install). If a panic was in progress on that thread (a double panic, `panic = "abort"`),
//!    the record carries that panic's incident id.
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
//! - Unwinding runs on the thread's alternate stack with the system unwinder (libgcc, which finds
//!   unwind tables without taking the loader's lock since glibc 2.35; on older glibc a crash
//!   inside `dlopen` could deadlock here). When the alternate stack has too little room left the
//!   record has no trace; a stack so corrupt that the unwinder itself faults ends the process
//!   by that fault, without a record.
//! - A log reader that stopped reading (a full pipe) gets no record: the handler waits at most a
//!   second for room on stderr, then goes on to die by the signal.
//! - A thread created outside std (by C code) without an alternate stack cannot report its own
//!   stack overflow: the kernel has nowhere to run the handler and kills the process.
//! - Modules loaded after install (`dlopen`) show as bare addresses.

use std::cell::UnsafeCell;
use std::ffi::CString;
use std::fmt;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::OnceLock;

use libc::{c_int, c_void, siginfo_t};

mod symbols;

#[doc(hidden)]
pub use symbols::ready as symbols_ready;

use crate::panic::IncidentId;
use crate::record::{self, current_thread_id, Severity};
use crate::signal::signal_name;

/// The signals after which a process cannot go on.
pub const FATAL_SIGNALS: [c_int; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];

/// `si_code` of a signal the kernel sends without a fault address (a general protection fault).
const SI_KERNEL: c_int = 0x80;

const EMERGENCY_STACK_BYTES: usize = 256 * 1024;
const MAX_FRAMES: usize = 64;
/// A fault this close to the stack pointer is the stack running into its guard page.
const STACK_OVERFLOW_REACH: usize = 64 * 1024;
/// What the system unwinder needs to walk a stack from a signal handler, with a margin.
const UNWIND_STACK_ROOM: usize = 6 * 1024;

/// Memory shared with the signal handler. Each is written either at install, before the handler
/// is registered, or by the one thread that won [`HANDLING`]; see the SAFETY notes at each use.
struct HandlerCell<T>(UnsafeCell<T>);

// SAFETY: access is serialised by install's `Once` and by `HANDLING`, as documented per use.
unsafe impl<T> Sync for HandlerCell<T> {}

impl<T> HandlerCell<T> {
    const fn new(value: T) -> Self {
        HandlerCell(UnsafeCell::new(value))
    }
    fn get(&self) -> *mut T {
        self.0.get()
    }
}

/// The handlers that were installed before crashguard's, one per entry of [`FATAL_SIGNALS`].
static PREVIOUS: HandlerCell<[MaybeUninit<libc::sigaction>; 5]> =
    HandlerCell::new([const { MaybeUninit::zeroed() }; 5]);

/// The kernel thread id of the thread handling a fatal signal; 0 while none is.
static HANDLING: AtomicI32 = AtomicI32::new(0);

/// What the handler saw, for the code that runs on the emergency stack.
struct Crash {
    signal: c_int,
    code: c_int,
    address: usize,
    stack_overflow: bool,
    /// Whether `address` means something: a fault the kernel described, not a general
    /// protection fault (SI_KERNEL, reported at 0) or a signal sent by a process.
    has_address: bool,
    thread_id: i32,
    /// Where the interrupted code was: the first frame of the trace worth showing.
    program_counter: usize,
    frames: [usize; MAX_FRAMES],
    frame_count: usize,
}

static CRASH: HandlerCell<Crash> = HandlerCell::new(Crash {
    signal: 0,
    code: 0,
    address: 0,
    stack_overflow: false,
    has_address: false,
    thread_id: 0,
    program_counter: 0,
    frames: [0; MAX_FRAMES],
    frame_count: 0,
});

/// The context that runs [`on_emergency_stack`], and the one to come back to.
static EMERGENCY_CONTEXT: HandlerCell<MaybeUninit<libc::ucontext_t>> =
    HandlerCell::new(MaybeUninit::zeroed());
static RETURN_CONTEXT: HandlerCell<MaybeUninit<libc::ucontext_t>> =
    HandlerCell::new(MaybeUninit::zeroed());
static EMERGENCY_READY: AtomicBool = AtomicBool::new(false);

/// Prepared at install: everything the record needs that would otherwise allocate.
struct Prepared {
    modules: Vec<Module>,
    termination_log: Option<CString>,
}

static PREPARED: OnceLock<Prepared> = OnceLock::new();

/// An ELF object mapped into the process: the executable, or a shared library.
struct Module {
    /// The address its ELF virtual addresses are relative to.
    base: usize,
    start: usize,
    end: usize,
    path: String,
    build_id: Vec<u8>,
    /// The program itself, whose symbol table crashguard reads for function names.
    is_executable: bool,
}

impl Module {
    fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// Installs the handlers once. Later calls do nothing.
pub(crate) fn install(termination_log: Option<&std::path::Path>) {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        crate::panic::prepare_for_signal_handlers();
        let termination_log = termination_log.and_then(|path| {
            use std::os::unix::ffi::OsStrExt;
            CString::new(path.as_os_str().as_bytes()).ok()
        });
        let _ = PREPARED.set(Prepared {
            modules: loaded_modules(),
            termination_log,
        });
        if let Ok(executable) = std::env::current_exe() {
            symbols::load_in_background(executable);
        }
        ensure_alternate_stack();
        prepare_emergency_stack();
        for (index, &signal) in FATAL_SIGNALS.iter().enumerate() {
            // SAFETY: an all-zero sigaction is a valid value (SIG_DFL, empty mask, no flags);
            // the fields set are the ones sigaction(2) reads.
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction = on_fatal_signal as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            // SAFETY: `action` is initialised; PREVIOUS[index] is written only here, inside the
            // `OnceLock`, before our handler for `signal` exists to read it.
            unsafe {
                libc::sigemptyset(&mut action.sa_mask);
                let previous = (*PREVIOUS.get())[index].as_mut_ptr();
                libc::sigaction(signal, &action, previous);
            }
        }
    });
}

/// Gives the installing thread an alternate signal stack if it has none (std gives one to every
/// thread it starts, unless something replaced its SIGSEGV handler before `main`).
fn ensure_alternate_stack() {
    // SAFETY: an all-zero stack_t is a valid value, and sigaltstack(2) with a null new stack
    // only writes the current one into it.
    let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
    unsafe { libc::sigaltstack(std::ptr::null(), &mut current) };
    if current.ss_flags & libc::SS_DISABLE == 0 {
        return;
    }
    if let Some(stack) = map_stack(64 * 1024) {
        let alternate = libc::stack_t {
            ss_sp: stack.cast(),
            ss_flags: 0,
            ss_size: 64 * 1024,
        };
        // SAFETY: `stack` is a fresh mapping of that size, never unmapped (the thread may use
        // it until the process ends).
        unsafe { libc::sigaltstack(&alternate, std::ptr::null_mut()) };
    }
}

/// Maps `bytes` of stack below a guard page, or `None` if the kernel refuses.
fn map_stack(bytes: usize) -> Option<*mut u8> {
    let page = 4096;
    // SAFETY: an anonymous private mapping has no preconditions; the result is checked.
    let mapping = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes + page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if mapping == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: the first page lies inside the mapping just made; making it inaccessible turns
    // an overflow of this stack into a fault instead of silent corruption.
    unsafe { libc::mprotect(mapping, page, libc::PROT_NONE) };
    // SAFETY: `page` is within the mapping.
    Some(unsafe { mapping.cast::<u8>().add(page) })
}

fn prepare_emergency_stack() {
    let Some(stack) = map_stack(EMERGENCY_STACK_BYTES) else {
        return;
    };
    // SAFETY: the contexts are written only here, once, before any handler can use them;
    // getcontext fills EMERGENCY_CONTEXT, which makecontext then points at the new stack and
    // at `on_emergency_stack`, returning into RETURN_CONTEXT when it is done.
    unsafe {
        let context = (*EMERGENCY_CONTEXT.get()).as_mut_ptr();
        if libc::getcontext(context) != 0 {
            return;
        }
        // swapcontext installs this mask: keep every signal blocked while on the emergency stack,
        // as the kernel does not know we left the alternate stack and would reuse it.
        libc::sigfillset(&mut (*context).uc_sigmask);
        (*context).uc_stack.ss_sp = stack.cast();
        (*context).uc_stack.ss_size = EMERGENCY_STACK_BYTES;
        (*context).uc_stack.ss_flags = 0;
        (*context).uc_link = (*RETURN_CONTEXT.get()).as_mut_ptr();
        libc::makecontext(context, on_emergency_stack, 0);
    }
    EMERGENCY_READY.store(true, Ordering::Release);
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
                sleep_millis(25);
            }
            return die(signal, info, context, false);
        }
    }

    // SAFETY: this thread won HANDLING, so it is the only one touching CRASH; `info` is the
    // kernel's siginfo for this delivery (SA_SIGINFO), valid for the handler's duration.
    let crash = unsafe { &mut *CRASH.get() };
    let (code, address) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    crash.signal = signal;
    crash.code = code;
    crash.address = if code > 0 { address } else { 0 };
    crash.has_address = code > 0 && code != SI_KERNEL && signal != libc::SIGABRT;
    crash.thread_id = me;
    crash.stack_overflow = is_stack_overflow(signal, code, address, context);
    crash.program_counter = if context.is_null() {
        0
    } else {
        program_counter(context.cast()).unwrap_or(0)
    };
    crash.frame_count = 0;
    // The unwinder runs on this stack (it cannot cross to another one), which for a thread std
    // started is an alternate stack of about 12 KiB, part of it taken by the signal frame. A
    // fault in the unwinder would end the process without a record, so without room, no trace.
    if stack_room() >= UNWIND_STACK_ROOM {
        // SAFETY: unsynchronised tracing is what a signal handler must use (the synchronised
        // variant takes a lock); HANDLING keeps this the only trace in progress of ours. The
        // closure only stores into the fixed array.
        unsafe {
            backtrace::trace_unsynchronized(|frame| {
                crash.frames[crash.frame_count] = frame.ip() as usize;
                crash.frame_count += 1;
                crash.frame_count < MAX_FRAMES
            });
        }
    }

    // The record is built in buffers far larger than an alternate stack: without the emergency
    // stack (its mapping failed at install) there is no record, only the death.
    if EMERGENCY_READY.load(Ordering::Acquire) {
        // SAFETY: both contexts were prepared at install; swapcontext saves this point into
        // RETURN_CONTEXT and runs `on_emergency_stack` on the emergency stack, which returns
        // here through uc_link. Only the HANDLING thread gets here, once.
        unsafe {
            libc::swapcontext(
                (*RETURN_CONTEXT.get()).as_mut_ptr(),
                (*EMERGENCY_CONTEXT.get()).as_ptr(),
            );
        }
    }
    die(signal, info, context, !crash.stack_overflow);
}

/// Bytes left below the current frame on the alternate signal stack (or a large number when
/// the handler runs on the thread's own stack).
fn stack_room() -> usize {
    let marker = 0u8;
    let here = std::ptr::addr_of!(marker) as usize;
    // SAFETY: an all-zero stack_t is valid; sigaltstack(2) only writes the current one into it.
    let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
    if unsafe { libc::sigaltstack(std::ptr::null(), &mut current) } != 0
        || current.ss_flags & libc::SS_ONSTACK == 0
    {
        return usize::MAX;
    }
    here.saturating_sub(current.ss_sp as usize)
}

extern "C" fn on_emergency_stack() {
    write_fatal_record();
}

/// A SIGSEGV or SIGBUS from the kernel at an address within reach of the stack pointer.
fn is_stack_overflow(signal: c_int, code: c_int, address: usize, context: *mut c_void) -> bool {
    if !(signal == libc::SIGSEGV || signal == libc::SIGBUS) || code <= 0 || context.is_null() {
        return false;
    }
    let Some(stack_pointer) = stack_pointer(context.cast()) else {
        return false;
    };
    address.abs_diff(stack_pointer) <= STACK_OVERFLOW_REACH
}

#[cfg(target_arch = "x86_64")]
fn stack_pointer(context: *const libc::ucontext_t) -> Option<usize> {
    // SAFETY: the kernel passes a valid ucontext_t to an SA_SIGINFO handler.
    Some(unsafe { (*context).uc_mcontext.gregs[libc::REG_RSP as usize] } as usize)
}

#[cfg(target_arch = "x86_64")]
fn program_counter(context: *const libc::ucontext_t) -> Option<usize> {
    // SAFETY: as for `stack_pointer`.
    Some(unsafe { (*context).uc_mcontext.gregs[libc::REG_RIP as usize] } as usize)
}

#[cfg(target_arch = "aarch64")]
fn stack_pointer(context: *const libc::ucontext_t) -> Option<usize> {
    // SAFETY: the kernel passes a valid ucontext_t to an SA_SIGINFO handler.
    Some(unsafe { (*context).uc_mcontext.sp } as usize)
}

#[cfg(target_arch = "aarch64")]
fn program_counter(context: *const libc::ucontext_t) -> Option<usize> {
    // SAFETY: as for `stack_pointer`.
    Some(unsafe { (*context).uc_mcontext.pc } as usize)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn stack_pointer(_: *const libc::ucontext_t) -> Option<usize> {
    None
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn program_counter(_: *const libc::ucontext_t) -> Option<usize> {
    None
}

/// Chains to the previous handler (if asked and there is one), then dies by `signal`.
fn die(signal: c_int, info: *mut siginfo_t, context: *mut c_void, chain: bool) {
    if let Some(index) = FATAL_SIGNALS.iter().position(|&s| s == signal) {
        // SAFETY: PREVIOUS was filled at install, before this handler was registered.
        let previous = unsafe { (*PREVIOUS.get())[index].assume_init_ref() };
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

fn sleep_millis(millis: i64) {
    let pause = libc::timespec {
        tv_sec: 0,
        tv_nsec: millis * 1_000_000,
    };
    // SAFETY: nanosleep(2) is async-signal-safe; a null remainder is allowed.
    unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
}

/// Builds and writes the record and the termination message. Runs once, on the emergency stack
/// when there is one, by the thread that holds HANDLING.
fn write_fatal_record() {
    // SAFETY: only the HANDLING thread calls this, after filling CRASH.
    let crash = unsafe { &*CRASH.get() };
    let prepared = PREPARED.get();
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
            if let Some(prepared) = prepared {
                record.display(
                    "exception.stacktrace",
                    Frames {
                        crash,
                        modules: &prepared.modules,
                    },
                    usize::MAX,
                );
                record.display(
                    "process.modules",
                    UsedModules {
                        crash,
                        modules: &prepared.modules,
                    },
                    usize::MAX,
                );
            }
        },
    );

    // Every way out ends with one exit record; this one says the signal will end the process,
    // unless an ordinary exit already wrote its own before something crashed on the way out.
    if crate::exit::claim_exit_record() {
        write_exit_record(crash, incident);
    }

    if let Some(path) = prepared.and_then(|p| p.termination_log.as_ref()) {
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

/// `0: app+0x1f3a2` per frame, the offset of the call (one byte before the return address).
struct Frames<'a> {
    crash: &'a Crash,
    modules: &'a [Module],
}

impl fmt::Display for Frames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let frames = &self.crash.frames[..self.crash.frame_count];
        // The trace starts in this handler; the interrupted code begins at the frame whose
        // address is the program counter the kernel saved.
        let pc = self.crash.program_counter;
        let start = frames
            .iter()
            .position(|&ip| ip == pc || ip == pc + 1)
            .unwrap_or(0);
        for (index, &ip) in frames[start..].iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            // The faulting frame's address is exact; the others are return addresses.
            let address = if index == 0 { ip } else { ip.saturating_sub(1) };
            match self
                .modules
                .iter()
                .find(|m| (m.start..m.end).contains(&address))
            {
                Some(module) => {
                    let offset = address - module.base;
                    write!(f, "{index}: {}+{offset:#x}", module.file_name())?;
                    if module.is_executable {
                        if let Some(function) = symbols::function_at(offset as u64) {
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
    crash: &'a Crash,
    modules: &'a [Module],
}

impl fmt::Display for UsedModules<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let frames = &self.crash.frames[..self.crash.frame_count];
        let mut first = true;
        for module in self.modules {
            if !frames
                .iter()
                .any(|&ip| (module.start..=module.end).contains(&ip))
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

/// The executable and shared libraries mapped now, with their build ids.
fn loaded_modules() -> Vec<Module> {
    let mut modules: Vec<Module> = Vec::new();
    // SAFETY: dl_iterate_phdr calls back with valid dl_phdr_info for each loaded object;
    // `data` is the `modules` vector, alive for the whole call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(collect_module),
            (&mut modules as *mut Vec<Module>).cast(),
        );
    }
    modules
}

unsafe extern "C" fn collect_module(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut c_void,
) -> c_int {
    // SAFETY: see `loaded_modules`: both pointers are valid for this call.
    let (info, modules) = unsafe { (&*info, &mut *data.cast::<Vec<Module>>()) };
    let base = info.dlpi_addr as usize;
    // SAFETY: dlpi_phdr points at dlpi_phnum program headers.
    let headers =
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
    let mut start = usize::MAX;
    let mut end = 0;
    let mut build_id = Vec::new();
    for header in headers {
        let segment = base + header.p_vaddr as usize;
        if header.p_type == libc::PT_LOAD {
            start = start.min(segment);
            end = end.max(segment + header.p_memsz as usize);
        } else if header.p_type == libc::PT_NOTE && build_id.is_empty() {
            // SAFETY: a PT_NOTE segment of a loaded object is mapped and p_memsz long.
            let notes = unsafe {
                std::slice::from_raw_parts(segment as *const u8, header.p_memsz as usize)
            };
            build_id = gnu_build_id(notes).map(<[u8]>::to_vec).unwrap_or_default();
        }
    }
    if start < end {
        // SAFETY: dlpi_name is a NUL-terminated string (empty for the executable).
        let name = unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) };
        let is_executable = name.to_bytes().is_empty();
        let path = if is_executable {
            std::env::current_exe()
                .map(|path| path.display().to_string())
                .unwrap_or_else(|_| "<executable>".to_owned())
        } else {
            name.to_string_lossy().into_owned()
        };
        // The vDSO has no file to symbolize against; keep it anyway, it names its frames.
        modules.push(Module {
            base,
            start,
            end,
            path,
            build_id,
            is_executable,
        });
    }
    0
}

/// The `NT_GNU_BUILD_ID` note's bytes in a PT_NOTE segment.
fn gnu_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let word = |bytes: &[u8]| u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let align = |n: usize| (n + 3) & !3;
    while notes.len() >= 12 {
        let (name_size, desc_size, kind) = (word(notes), word(&notes[4..]), word(&notes[8..]));
        let name_end = 12 + align(name_size);
        let desc_end = name_end + align(desc_size);
        if desc_end > notes.len() {
            return None;
        }
        if kind as u32 == NT_GNU_BUILD_ID && &notes[12..12 + name_size] == b"GNU\0" {
            return Some(&notes[name_end..name_end + desc_size]);
        }
        notes = &notes[desc_end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_binary_has_a_build_id_and_its_code_is_in_a_module() {
        let modules = loaded_modules();
        let here = the_test_binary_has_a_build_id_and_its_code_is_in_a_module as *const () as usize;
        let module = modules
            .iter()
            .find(|m| (m.start..m.end).contains(&here))
            .expect("the test binary is a loaded module");
        assert_eq!(module.build_id.len(), 20, "a GNU build id is a SHA-1");
        assert!(module
            .path
            .ends_with(&*std::env::current_exe().unwrap().to_string_lossy()));
    }

    #[test]
    fn si_codes_have_their_posix_names() {
        assert_eq!(code_meaning(libc::SIGSEGV, 1).0, "SEGV_MAPERR");
        assert_eq!(code_meaning(libc::SIGFPE, 1).1, "integer divide by zero");
        assert_eq!(code_meaning(libc::SIGABRT, libc::SI_TKILL).0, "SI_TKILL");
    }
}
