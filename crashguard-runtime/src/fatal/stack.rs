//! The stacks a fatal-signal handler runs on: the thread's alternate signal stack, where the
//! kernel starts it, and the emergency stack it moves to for everything else.
//!
//! The kernel's signal frame takes what the CPU's register state needs (AT_MINSIGSTKSZ: about
//! 1 KiB with AVX2, 3.4 KiB with AVX-512, 12 KiB once a thread uses AMX), out of an alternate stack
//! std makes `max(SIGSTKSZ, AT_MINSIGSTKSZ)` large. What is left can be a few hundred bytes, so
//! the handler moves to a stack of its own at once, with `psm` (a stack switch in a few
//! instructions, with no C library support needed, unlike `makecontext`, which musl lacks).

use std::sync::atomic::{AtomicUsize, Ordering};

use super::InstallError;

/// Room for the stack walk and the 16 KiB record, with a wide margin.
const EMERGENCY_STACK_BYTES: usize = 256 * 1024;

/// What the installing thread gets when it has no alternate stack.
const ALTERNATE_STACK_BYTES: usize = 64 * 1024;

const PAGE: usize = 4096;

/// The lowest usable address of the emergency stack; 0 before install.
static EMERGENCY_STACK: AtomicUsize = AtomicUsize::new(0);

/// Gives the installing thread an alternate signal stack if it has none (std gives one to every
/// thread it starts, unless something replaced its SIGSEGV handler before `main`).
pub(super) fn ensure_alternate_stack() -> Result<(), InstallError> {
    // SAFETY: an all-zero stack_t is a valid value.
    let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigaltstack(2) with a null new stack only writes the current one into `current`.
    if unsafe { libc::sigaltstack(std::ptr::null(), &mut current) } != 0 {
        return Err(InstallError::last("sigaltstack"));
    }
    if current.ss_flags & libc::SS_DISABLE == 0 {
        return Ok(());
    }
    let stack = map_stack(ALTERNATE_STACK_BYTES)?;
    let alternate = libc::stack_t {
        ss_sp: stack.cast(),
        ss_flags: 0,
        ss_size: ALTERNATE_STACK_BYTES,
    };
    // SAFETY: `stack` is a fresh mapping of that size, never unmapped (the thread may use it
    // until the process ends).
    if unsafe { libc::sigaltstack(&alternate, std::ptr::null_mut()) } != 0 {
        return Err(InstallError::last("sigaltstack"));
    }
    Ok(())
}

pub(super) fn prepare_emergency_stack() -> Result<(), InstallError> {
    let stack = map_stack(EMERGENCY_STACK_BYTES)?;
    EMERGENCY_STACK.store(stack as usize, Ordering::Release);
    Ok(())
}

/// Runs `work` on the emergency stack, with every signal blocked: the kernel does not know the
/// handler left the alternate stack, and would start another handler on top of the frames it
/// is still using. The handler's return restores the thread's signal mask.
///
/// Only the one thread handling a fatal signal may call this, and only once at a time.
pub(super) fn on_emergency_stack(work: impl FnOnce()) {
    // SAFETY: sigfillset and pthread_sigmask are async-signal-safe; blocking signals in a
    // handler is undone by the kernel when the handler returns.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
    match EMERGENCY_STACK.load(Ordering::Acquire) {
        // The mapping failed at install (and install said so): try on the alternate stack.
        0 => work(),
        base => {
            // SAFETY: `base` is the low end of a mapping of EMERGENCY_STACK_BYTES (a multiple of
            // the 16-byte alignment both architectures need) with a guard page below, used by
            // no one else: only the thread that won the handler's claim gets here. `work`
            // returns normally (it cannot unwind: the handler's code never panics, and a panic
            // would abort at the `extern "C"` handler's boundary before crossing this frame).
            unsafe { psm::on_stack(base as *mut u8, EMERGENCY_STACK_BYTES, work) }
        }
    }
}

/// A private read-write mapping of `bytes` with a guard page below it.
fn map_stack(bytes: usize) -> Result<*mut u8, InstallError> {
    // SAFETY: an anonymous private mapping has no preconditions; the result is checked.
    let mapping = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes + PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if mapping == libc::MAP_FAILED {
        return Err(InstallError::last("mmap"));
    }
    // SAFETY: the first page lies inside the mapping just made; making it inaccessible turns
    // an overflow of this stack into a fault instead of silent corruption.
    if unsafe { libc::mprotect(mapping, PAGE, libc::PROT_NONE) } != 0 {
        return Err(InstallError::last("mprotect"));
    }
    // SAFETY: `PAGE` is within the mapping.
    Ok(unsafe { mapping.cast::<u8>().add(PAGE) })
}
