//! Reading a stack that may be corrupt: every read is checked against the stack's mapping, found
//! in `/proc/self/maps` with `open`, `read` and `close` (async-signal-safe) and a parser that
//! needs no allocation, so a wild frame pointer ends a walk instead of faulting inside a signal
//! handler.

use std::ops::Range;

/// How far below a stack mapping the stack pointer may be and still belong to it: a thread that
/// overflowed its stack has moved it into the guard page (or the gap below the main thread's
/// stack) already.
const GUARD_REACH: u64 = 64 * 1024;

/// The readable memory of one thread's stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StackMapping {
    range: Range<u64>,
}

impl StackMapping {
    /// The readable mapping that holds the stack pointer `sp`, or, when `sp` has run into the
    /// guard page below a stack, the mapping just above it.
    pub(super) fn around(sp: u64) -> Result<StackMapping, NoStack> {
        let mut choice = Err(NoStack::NotMapped);
        let listed = for_each_mapping(|mapping| match mapping.choose_for(sp) {
            Choice::Skip => true,
            Choice::Found(range) => {
                choice = Ok(StackMapping { range });
                false
            }
            Choice::Stop => false,
        });
        if !listed {
            return Err(NoStack::MapsUnreadable);
        }
        choice
    }

    /// The 8 bytes at `address`, if they lie inside the mapping.
    pub(super) fn read(&self, address: u64) -> Result<u64, ()> {
        let end = address.checked_add(8).ok_or(())?;
        if address < self.range.start || end > self.range.end {
            return Err(());
        }
        // SAFETY: the 8 bytes lie inside a readable mapping of this process (checked above);
        // a stack is never unmapped while its thread is stopped in a signal handler or waits to
        // be walked. The value may be garbage, which a walk treats as a number.
        Ok(unsafe { std::ptr::read_unaligned(address as *const u64) })
    }
}

/// Why a stack has no mapping to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NoStack {
    /// No readable mapping holds the stack pointer.
    NotMapped,
    /// `/proc/self/maps` could not be opened (no `/proc` in this container).
    MapsUnreadable,
}

/// One line of `/proc/self/maps`, as far as a walk needs it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Mapping {
    start: u64,
    end: u64,
    readable: bool,
}

enum Choice {
    Skip,
    Found(Range<u64>),
    Stop,
}

impl Mapping {
    fn choose_for(&self, sp: u64) -> Choice {
        if self.end <= sp {
            return Choice::Skip;
        }
        if self.start > sp.saturating_add(GUARD_REACH) {
            return Choice::Stop;
        }
        if !self.readable {
            // A guard page: the stack, if any, lies just above it.
            return Choice::Skip;
        }
        Choice::Found(self.start..self.end)
    }
}

/// Calls `visit` with each mapping, in address order, until it returns false; false if the
/// mappings cannot be read. Allocates nothing.
fn for_each_mapping(mut visit: impl FnMut(Mapping) -> bool) -> bool {
    // SAFETY: a NUL-terminated path; open(2) is async-signal-safe.
    let fd = unsafe {
        libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return false;
    }
    let mut parser = MapsParser::default();
    let mut buffer = [0u8; 2048];
    'reading: loop {
        // SAFETY: `buffer` is writable for its length; read(2) is async-signal-safe.
        let read = unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) };
        if read <= 0 {
            if read < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {
                continue;
            }
            break;
        }
        for &byte in &buffer[..read as usize] {
            if let Some(mapping) = parser.push(byte) {
                if !visit(mapping) {
                    break 'reading;
                }
            }
        }
    }
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(fd) };
    true
}

/// Reads `start-end perms …\n` lines a byte at a time, so that no line length can overflow it.
#[derive(Default)]
struct MapsParser {
    field: Field,
    mapping: Mapping,
    malformed: bool,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Field {
    #[default]
    Start,
    End,
    Permissions,
    Rest,
}

impl MapsParser {
    fn push(&mut self, byte: u8) -> Option<Mapping> {
        if byte == b'\n' {
            let complete =
                !self.malformed && matches!(self.field, Field::Permissions | Field::Rest);
            let mapping = self.mapping;
            *self = MapsParser::default();
            return complete.then_some(mapping);
        }
        match self.field {
            Field::Start => match hex_digit(byte) {
                Some(digit) => self.mapping.start = shift_in(self.mapping.start, digit),
                None if byte == b'-' => self.field = Field::End,
                None => self.malformed = true,
            },
            Field::End => match hex_digit(byte) {
                Some(digit) => self.mapping.end = shift_in(self.mapping.end, digit),
                None if byte == b' ' => self.field = Field::Permissions,
                None => self.malformed = true,
            },
            Field::Permissions => {
                if byte == b' ' {
                    self.field = Field::Rest;
                } else if byte == b'r' {
                    self.mapping.readable = true;
                }
            }
            Field::Rest => {}
        }
        None
    }
}

fn shift_in(value: u64, digit: u8) -> u64 {
    value.wrapping_shl(4) | u64::from(digit)
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<Mapping> {
        let mut parser = MapsParser::default();
        text.bytes().filter_map(|byte| parser.push(byte)).collect()
    }

    #[test]
    fn maps_lines_give_their_range_and_whether_they_are_readable() {
        let long_path = "/x".repeat(3000);
        let text = format!(
            "55d0c0a00000-55d0c0a21000 r--p 00000000 fe:01 123 /usr/bin/app\n\
             7f0000000000-7f0000001000 ---p 00000000 00:00 0 \n\
             7f0000001000-7f0000801000 rw-p 00000000 00:00 0 {long_path}\n"
        );
        assert_eq!(
            parse(&text),
            [
                Mapping {
                    start: 0x55d0c0a00000,
                    end: 0x55d0c0a21000,
                    readable: true
                },
                Mapping {
                    start: 0x7f0000000000,
                    end: 0x7f0000001000,
                    readable: false
                },
                Mapping {
                    start: 0x7f0000001000,
                    end: 0x7f0000801000,
                    readable: true
                },
            ]
        );
    }

    #[test]
    fn a_stack_pointer_in_the_guard_page_belongs_to_the_stack_above_it() {
        let guard = Mapping {
            start: 0x1000,
            end: 0x2000,
            readable: false,
        };
        let stack = Mapping {
            start: 0x2000,
            end: 0x9000,
            readable: true,
        };
        assert!(matches!(guard.choose_for(0x1800), Choice::Skip));
        assert!(matches!(stack.choose_for(0x1800), Choice::Found(r) if r == (0x2000..0x9000)));
        assert!(matches!(stack.choose_for(0x3000), Choice::Found(_)));
        let far = Mapping {
            start: 0x100_0000,
            end: 0x200_0000,
            readable: true,
        };
        assert!(matches!(far.choose_for(0x3000), Choice::Stop));
    }

    #[test]
    fn this_threads_stack_holds_its_locals_and_reads_stop_at_its_end() {
        let local = std::hint::black_box(0x5eed_u64);
        let address = std::ptr::addr_of!(local) as u64;
        let stack = StackMapping::around(address).expect("this thread's stack is mapped");
        assert_eq!(StackMapping::around(0x100), Err(NoStack::NotMapped));
        assert_eq!(stack.read(address), Ok(0x5eed));
        assert_eq!(stack.read(stack.range.end - 4), Err(()));
        assert_eq!(stack.read(u64::MAX - 3), Err(()));
        assert_eq!(stack.read(stack.range.start.wrapping_sub(8)), Err(()));
    }
}
