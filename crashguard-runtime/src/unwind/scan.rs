//! Finding a caller where there are no unwind tables: code built without them (musl's libc in a
//! static binary: `abort`, `raise`), which a walk must step over to reach the frames that called
//! it. The stack above the frame is searched for the first word that is a return address: one
//! that points into a module's code just after a call instruction, and, where that call's target
//! can be known (a direct call, or one through the global offset table), a call of the function
//! the walk is in (the "stack scanning" of crash reporters such as Breakpad). A stale return
//! address of a call through a register, left in an uninitialised local, can still be taken for
//! the caller; the frames after it are then those of an earlier call.

use framehop::UnwindRegsNative;

use super::memory::StackMapping;
use super::modules::Module;

/// How far up the stack a caller is searched for: 1 KiB, more than the frames of the C
/// functions that lack tables.
const SCAN_WORDS: u64 = 128;

/// Where the executable's symbols do not say where the function the walk is in starts, a
/// call's target must lie this close below the address: functions without tables are small C
/// functions.
const CALLEE_REACH: u64 = 16 * 1024;

/// The return address of the frame at `registers`' stack pointer, which is in the function at
/// `callee`, found by scanning; moves the stack pointer past it, and restores the frame pointer
/// where the callee saved it. `None` if no word within reach qualifies.
pub(super) fn caller(
    stack: &StackMapping,
    registers: &mut UnwindRegsNative,
    callee: u64,
    modules: &[Module],
) -> Option<u64> {
    let sp = registers.sp();
    for slot in (0..SCAN_WORDS).map(|word| sp + word * 8) {
        let word = stack.read(slot).ok()?;
        let Some(call) = call_of(word, callee, modules) else {
            continue;
        };
        registers.set_sp(slot + 8);
        if let Some(saved) = call.and_then(|start| saved_frame_pointer(start, slot, stack, modules))
        {
            set_frame_pointer(registers, saved);
        }
        return Some(word);
    }
    None
}

/// Whether `address` returns from a call into the function that holds `callee`: `Some` with
/// that function's start where the call names it, `Some(None)` for a call through a register.
fn call_of(address: u64, callee: u64, modules: &[Module]) -> Option<Option<u64>> {
    let module = modules.iter().find(|m| m.contains(address as usize))?;
    let target = match call_before(module, address)? {
        Call::Direct(target) => target,
        Call::Through(slot) => module.read_word(slot)?,
        Call::Indirect => return Some(None),
    };
    calls(target, callee, modules).then_some(Some(target))
}

/// Where a function that begins by pushing the frame pointer (`push %rbp`, perhaps after
/// `endbr64`) saved its caller's: just below its return address.
#[cfg(target_arch = "x86_64")]
fn saved_frame_pointer(
    start: u64,
    return_slot: u64,
    stack: &StackMapping,
    modules: &[Module],
) -> Option<u64> {
    const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];
    const PUSH_RBP: u8 = 0x55;
    let module = modules.iter().find(|m| m.contains(start as usize))?;
    let prologue = module.code_before(start + 5, 5)?;
    let pushes = prologue[0] == PUSH_RBP || (prologue[..4] == ENDBR64 && prologue[4] == PUSH_RBP);
    pushes.then(|| stack.read(return_slot - 8).ok()).flatten()
}

#[cfg(target_arch = "x86_64")]
fn set_frame_pointer(registers: &mut UnwindRegsNative, value: u64) {
    registers.set_bp(value);
}

/// aarch64 saves the frame pointer with the link register (`stp x29, x30`), at an offset the
/// prologue chooses: not recovered.
#[cfg(target_arch = "aarch64")]
fn saved_frame_pointer(_: u64, _: u64, _: &StackMapping, _: &[Module]) -> Option<u64> {
    None
}

#[cfg(target_arch = "aarch64")]
fn set_frame_pointer(registers: &mut UnwindRegsNative, value: u64) {
    registers.set_fp(value);
}

/// Whether a call of `target` enters the function that holds `callee`.
fn calls(target: u64, callee: u64, modules: &[Module]) -> bool {
    let executable = modules
        .iter()
        .find(|m| m.is_executable && m.contains(callee as usize));
    let start = executable.and_then(|module| {
        let base = module.base as u64;
        super::symbols::function_start(callee - base).map(|start| start + base)
    });
    match start {
        Some(start) => target == start,
        None => target <= callee && callee - target < CALLEE_REACH,
    }
}

/// The call instruction that ends just before a return address.
enum Call {
    /// A call of a fixed address.
    Direct(u64),
    /// A call of the address held at a fixed address (a global offset table slot).
    #[cfg_attr(target_arch = "aarch64", allow(dead_code))]
    Through(u64),
    /// A call through a register, or memory the call does not name.
    Indirect,
}

/// `call rel32`, or `call r/m` in its 2-, 3-, 6- and 7-byte forms.
#[cfg(target_arch = "x86_64")]
fn call_before(module: &Module, address: u64) -> Option<Call> {
    let code = module.code_before(address, 7)?;
    if code[2] == 0xe8 {
        let offset = i32::from_le_bytes([code[3], code[4], code[5], code[6]]);
        return Some(Call::Direct(address.wrapping_add_signed(i64::from(offset))));
    }
    // `ff 15 disp32`: call [rip + disp32], relative to the return address.
    if code[1] == 0xff && code[2] == 0x15 {
        let offset = i32::from_le_bytes([code[3], code[4], code[5], code[6]]);
        return Some(Call::Through(
            address.wrapping_add_signed(i64::from(offset)),
        ));
    }
    let indirect = |at: usize| code[at] == 0xff && (code[at + 1] >> 3) & 7 == 2;
    (indirect(5) || indirect(4) || indirect(1) || indirect(0)).then_some(Call::Indirect)
}

/// `bl`, or `blr` with or without pointer authentication.
#[cfg(target_arch = "aarch64")]
fn call_before(module: &Module, address: u64) -> Option<Call> {
    let code = module.code_before(address, 4)?;
    let instruction = u32::from_le_bytes([code[0], code[1], code[2], code[3]]);
    if instruction & 0xfc00_0000 == 0x9400_0000 {
        // imm26, in instructions, sign-extended from bit 25.
        let offset = (((instruction & 0x03ff_ffff) << 6) as i32 >> 6) as i64 * 4;
        return Some(Call::Direct((address - 4).wrapping_add_signed(offset)));
    }
    let blr = instruction & 0xffff_fc1f == 0xd63f_0000;
    let blra = instruction & 0xfeff_f800 == 0xd63f_0800;
    (blr || blra).then_some(Call::Indirect)
}
