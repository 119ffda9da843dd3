//! Stack walks from saved registers: the trace of a thread a signal interrupted, taken on any
//! stack, without allocating or taking a lock.
//!
//! The walk reads DWARF call frame information (`.eh_frame`) with [`framehop`], starting from the
//! registers the kernel saved in the signal's `ucontext`, so it does not run on the stack it walks
//! and needs little room of its own. Everything that allocates is done once, by [`prepare`] at
//! install: the list of loaded modules with their build ids and unwind tables, and the
//! unwinder's cache. A walk then reads only those, and the interrupted thread's stack, every read
//! checked against that stack's mapping (see [`memory`]), so a corrupt stack ends the walk, never
//! the process.
//!
//! A walk that stops before the outermost frame says why ([`WalkEnd`]).

use std::cell::UnsafeCell;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use framehop::{CacheNative, FrameAddress, MustNotAllocateDuringUnwind, Unwinder, UnwinderNative};

mod memory;
mod modules;
mod registers;
mod scan;
pub(crate) mod symbols;

pub(crate) use modules::Module;
pub(crate) use registers::Registers;

/// The most frames a trace keeps.
pub(crate) const MAX_FRAMES: usize = 64;

/// Addresses below this are never code (the kernel refuses to map the first page).
const NULL_PAGE: u64 = 4096;

/// Why a walk stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WalkEnd {
    /// The outermost frame (the program's or the thread's entry point) was reached.
    Outermost,
    /// The trace holds [`MAX_FRAMES`] frames.
    FrameLimit,
    /// A read at this address fell outside the thread's stack mapping.
    UnreadableStack(u64),
    /// No caller could be found for the last frame.
    Stuck(&'static str),
    /// No readable mapping holds the stack pointer, so nothing on the stack was read.
    StackNotMapped(u64),
    /// `/proc/self/maps` could not be read, so the stack's bounds are unknown and nothing on it
    /// was read.
    MapsUnreadable,
    /// [`prepare`] has not run: nothing is known of the loaded modules.
    NotPrepared,
    /// Another walk held the unwinder for longer than a walk may wait.
    Busy,
}

impl fmt::Display for WalkEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalkEnd::Outermost => f.write_str("the outermost frame was reached"),
            WalkEnd::FrameLimit => write!(f, "{MAX_FRAMES} frames, the most a trace keeps"),
            WalkEnd::UnreadableStack(address) => write!(
                f,
                "the stack could not be read at {address:#x}, outside the thread's stack mapping"
            ),
            WalkEnd::Stuck(why) => write!(f, "no caller found: {why}"),
            WalkEnd::StackNotMapped(sp) => {
                write!(f, "no readable mapping holds the stack pointer {sp:#x}")
            }
            WalkEnd::MapsUnreadable => f.write_str(
                "/proc/self/maps could not be read, so the stack was not: its bounds are unknown",
            ),
            WalkEnd::NotPrepared => f.write_str("the module list was not prepared"),
            WalkEnd::Busy => f.write_str("another stack walk held the unwinder"),
        }
    }
}

/// The frames of one walk: the interrupted instruction first, then the return addresses.
pub(crate) struct Trace {
    frames: [usize; MAX_FRAMES],
    len: usize,
    end: WalkEnd,
}

impl Trace {
    /// An empty trace, to walk into.
    pub(crate) const fn new() -> Trace {
        Trace {
            frames: [0; MAX_FRAMES],
            len: 0,
            end: WalkEnd::NotPrepared,
        }
    }

    /// The address of each frame's instruction: the first is exact, the others are the call
    /// (one byte before the return address), which is what `addr2line` and symbol tables want.
    pub(crate) fn instructions(&self) -> impl Iterator<Item = usize> + '_ {
        self.frames[..self.len]
            .iter()
            .enumerate()
            .map(|(index, &address)| if index == 0 { address } else { address - 1 })
    }

    /// Why the walk stopped.
    pub(crate) fn end(&self) -> WalkEnd {
        self.end
    }

    /// The calling thread's own stack, from an ordinary thread (not a signal handler): the
    /// system unwinder's walk, as the backtrace crate does it.
    pub(crate) fn of_this_thread() -> Trace {
        let mut trace = Trace::new();
        backtrace::trace(|frame| trace.push(frame.ip() as u64 + 1));
        trace.end = if trace.len < MAX_FRAMES {
            WalkEnd::Outermost
        } else {
            WalkEnd::FrameLimit
        };
        trace
    }

    fn push(&mut self, address: u64) -> bool {
        self.frames[self.len] = address as usize;
        self.len += 1;
        self.len < MAX_FRAMES
    }
}

type NativeUnwinder = UnwinderNative<&'static [u8], MustNotAllocateDuringUnwind>;
type NativeCache = CacheNative<MustNotAllocateDuringUnwind>;

struct Prepared {
    modules: Vec<Module>,
    unwinder: NativeUnwinder,
    cache: CacheSlot,
}

/// The unwinder's cache, which a walk needs to itself.
struct CacheSlot {
    in_use: AtomicBool,
    cache: UnsafeCell<NativeCache>,
}

// SAFETY: `cache` is only reached through `CacheSlot::with`, which lets one walk at a time have
// it (`in_use`), and the cache itself may move between threads (it is `Send`).
unsafe impl Sync for CacheSlot where NativeCache: Send {}

impl CacheSlot {
    /// Runs `walk` with the cache, waiting up to about 100 ms for another walk to finish.
    fn with<R>(&self, walk: impl FnOnce(&mut NativeCache) -> R) -> Option<R> {
        for attempt in 0..1000 {
            if self
                .in_use
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                // SAFETY: `in_use` was false and is now ours: no other reference exists until
                // it is released below.
                let result = walk(unsafe { &mut *self.cache.get() });
                self.in_use.store(false, Ordering::Release);
                return Some(result);
            }
            if attempt > 16 {
                crate::os::sleep(std::time::Duration::from_micros(100));
            }
        }
        None
    }
}

static PREPARED: OnceLock<Prepared> = OnceLock::new();

/// Reads the loaded modules and their unwind tables, and makes the unwinder's cache, once. Not
/// safe in a signal handler (it allocates); install calls it.
pub(crate) fn prepare() {
    PREPARED.get_or_init(|| {
        let modules = modules::loaded();
        let mut unwinder = NativeUnwinder::new();
        for module in &modules {
            if let Some(unwind) = module.unwind_module() {
                unwinder.add_module(unwind);
            }
        }
        Prepared {
            modules,
            unwinder,
            cache: CacheSlot {
                in_use: AtomicBool::new(false),
                cache: UnsafeCell::new(NativeCache::new_in()),
            },
        }
    });
}

impl Prepared {
    fn has_unwind_info(&self, address: u64) -> bool {
        self.modules
            .iter()
            .find(|module| module.contains(address as usize))
            .is_some_and(|module| module.has_unwind_info(address))
    }
}

/// The executable's GNU build id in hex, once [`prepare`] ran.
pub(crate) fn executable_build_id() -> Option<String> {
    let module = modules().iter().find(|module| module.is_executable)?;
    (!module.build_id.is_empty()).then(|| {
        module
            .build_id
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    })
}

/// The modules [`prepare`] found; empty before it ran.
pub(crate) fn modules() -> &'static [Module] {
    PREPARED.get().map_or(&[], |prepared| &prepared.modules)
}

/// Walks the stack of the thread whose registers these are, into `trace`. Allocates nothing,
/// takes no lock, and reads the stack only inside its mapping: safe in a signal handler, and on
/// a stack other than the one walked.
pub(crate) fn walk(registers: &Registers, trace: &mut Trace) {
    trace.len = 0;
    trace.push(registers.pc);
    let Some(prepared) = PREPARED.get() else {
        trace.end = WalkEnd::NotPrepared;
        return;
    };
    let stack = match memory::StackMapping::around(registers.sp) {
        Ok(stack) => stack,
        Err(memory::NoStack::NotMapped) => {
            trace.end = WalkEnd::StackNotMapped(registers.sp);
            return;
        }
        Err(memory::NoStack::MapsUnreadable) => {
            trace.end = WalkEnd::MapsUnreadable;
            return;
        }
    };
    let walked = prepared.cache.with(|cache| {
        let mut read = |address: u64| stack.read(address);
        let max_code_address = prepared.unwinder.max_known_code_address();
        let mut unwind_registers = registers.for_unwinder(max_code_address);
        let mut frame = FrameAddress::InstructionPointer(registers.pc);
        loop {
            let caller =
                if prepared.has_unwind_info(frame.address_for_lookup()) {
                    prepared
                        .unwinder
                        .unwind_frame(frame, &mut unwind_registers, cache, &mut read)
                } else {
                    let callee = frame.address_for_lookup();
                    match scan::caller(&stack, &mut unwind_registers, callee, &prepared.modules) {
                        Some(caller) => Ok(Some(caller)),
                        None => return WalkEnd::Stuck(
                            "the last frame has no unwind information, and no return address was \
                         found on the stack above it",
                        ),
                    }
                };
            match caller {
                // The outermost frame's caller is 0 (or, past `_start`, whatever the kernel
                // left there): no code lives in the first page.
                Ok(None) => return WalkEnd::Outermost,
                Ok(Some(caller)) if caller < NULL_PAGE => return WalkEnd::Outermost,
                Ok(Some(caller)) => {
                    if !trace.push(caller) {
                        return WalkEnd::FrameLimit;
                    }
                    frame = FrameAddress::from_return_address(caller)
                        .expect("a return address above the first page is not null");
                }
                Err(framehop::Error::CouldNotReadStack(address)) => {
                    return WalkEnd::UnreadableStack(address)
                }
                Err(framehop::Error::ReturnAddressIsNull) => return WalkEnd::Outermost,
                Err(
                    framehop::Error::FramepointerUnwindingMovedBackwards
                    | framehop::Error::DidNotAdvance,
                ) => return WalkEnd::Stuck("the stack pointer did not move up"),
                Err(framehop::Error::IntegerOverflow) => {
                    return WalkEnd::Stuck("an address overflowed")
                }
            }
        }
    });
    trace.end = walked.unwrap_or(WalkEnd::Busy);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn walk_from_here(trace: &mut Trace) {
        walk(&Registers::of_this_call(), trace);
    }

    #[test]
    fn a_walk_from_a_function_reaches_the_test_and_the_outermost_frame() {
        prepare();
        let mut trace = Trace::new();
        walk_from_here(&mut trace);
        let names: Vec<String> = trace
            .instructions()
            .map(|address| {
                let mut name = String::new();
                backtrace::resolve(address as *mut std::ffi::c_void, |symbol| {
                    if let Some(symbol_name) = symbol.name() {
                        name = format!("{symbol_name:#}");
                    }
                });
                name
            })
            .collect();
        assert!(
            names.iter().any(|name| name
                .ends_with("a_walk_from_a_function_reaches_the_test_and_the_outermost_frame")),
            "{names:#?}"
        );
        assert!(
            matches!(trace.end(), WalkEnd::Outermost | WalkEnd::FrameLimit),
            "{}",
            trace.end()
        );
    }
}
