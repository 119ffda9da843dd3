//! The registers a walk starts from, read from the `ucontext_t` the kernel gives a signal handler.

use framehop::UnwindRegsNative;

/// Where a thread was: its program counter, stack pointer and frame pointer (and, on aarch64,
/// the link register, where a function that has not saved it yet keeps its return address).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Registers {
    pub(crate) pc: u64,
    pub(crate) sp: u64,
    pub(crate) fp: u64,
    #[cfg(target_arch = "aarch64")]
    pub(crate) lr: u64,
}

impl Registers {
    /// The registers of the code a signal interrupted.
    ///
    /// # Safety
    ///
    /// `context` is the `ucontext_t` the kernel passed to an `SA_SIGINFO` handler that is still
    /// running.
    #[cfg(target_arch = "x86_64")]
    pub(crate) unsafe fn from_signal_context(context: *const libc::ucontext_t) -> Registers {
        // SAFETY: the caller vouches for `context`; gregs is a plain array of the saved values.
        let gregs = unsafe { &(*context).uc_mcontext.gregs };
        Registers {
            pc: gregs[libc::REG_RIP as usize] as u64,
            sp: gregs[libc::REG_RSP as usize] as u64,
            fp: gregs[libc::REG_RBP as usize] as u64,
        }
    }

    /// The registers of the code a signal interrupted.
    ///
    /// # Safety
    ///
    /// `context` is the `ucontext_t` the kernel passed to an `SA_SIGINFO` handler that is still
    /// running.
    #[cfg(target_arch = "aarch64")]
    pub(crate) unsafe fn from_signal_context(context: *const libc::ucontext_t) -> Registers {
        // SAFETY: the caller vouches for `context`; the fields are the saved values.
        let saved = unsafe { &(*context).uc_mcontext };
        Registers {
            pc: saved.pc,
            sp: saved.sp,
            fp: saved.regs[29],
            lr: saved.regs[30],
        }
    }

    /// The registers as framehop takes them. On aarch64 return addresses may carry a pointer
    /// authentication code in their high bits; the highest known code address says which bits
    /// are address.
    #[cfg(target_arch = "x86_64")]
    pub(super) fn for_unwinder(&self, _max_code_address: u64) -> UnwindRegsNative {
        UnwindRegsNative::new(self.pc, self.sp, self.fp)
    }

    #[cfg(target_arch = "aarch64")]
    pub(super) fn for_unwinder(&self, max_code_address: u64) -> UnwindRegsNative {
        let mask = framehop::aarch64::PtrAuthMask::from_max_known_address(max_code_address);
        UnwindRegsNative::new_with_ptr_auth_mask(mask, self.lr, self.sp, self.fp)
    }

    /// The registers at this point of the calling function (which must be inlined into it).
    #[cfg(all(test, target_arch = "x86_64"))]
    #[inline(always)]
    pub(crate) fn of_this_call() -> Registers {
        let (pc, sp, fp): (u64, u64, u64);
        // SAFETY: reads three registers into outputs; touches no memory.
        unsafe {
            std::arch::asm!(
                "lea {pc}, [rip]",
                "mov {sp}, rsp",
                "mov {fp}, rbp",
                pc = out(reg) pc,
                sp = out(reg) sp,
                fp = out(reg) fp,
                options(nomem, nostack, preserves_flags),
            );
        }
        Registers { pc, sp, fp }
    }

    #[cfg(all(test, target_arch = "aarch64"))]
    #[inline(always)]
    pub(crate) fn of_this_call() -> Registers {
        let (pc, sp, fp, lr): (u64, u64, u64, u64);
        // SAFETY: reads four registers into outputs; touches no memory.
        unsafe {
            std::arch::asm!(
                "adr {pc}, .",
                "mov {sp}, sp",
                "mov {fp}, x29",
                "mov {lr}, x30",
                pc = out(reg) pc,
                sp = out(reg) sp,
                fp = out(reg) fp,
                lr = out(reg) lr,
                options(nomem, nostack, preserves_flags),
            );
        }
        Registers { pc, sp, fp, lr }
    }
}
