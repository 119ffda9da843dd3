//! Incident ids: what joins a panic's record, its 500 and its termination message.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Identifies one panic: printed in its record, in the termination message and, for a request,
/// in the 500 the client receives, so a bug report leads to the log line.
///
/// Eight hex digits chosen at random when the process starts, then a sequence number:
/// `3f9a1c07-1`, `3f9a1c07-2`, …; unique within the process and very likely across replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IncidentId {
    process: u32,
    sequence: u64,
}

impl IncidentId {
    /// A fresh id, never handed out before in this process.
    pub fn next() -> IncidentId {
        static SEQUENCE: AtomicU64 = AtomicU64::new(1);
        IncidentId {
            process: process_tag(),
            sequence: SEQUENCE.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // By hand rather than `{:08x}-{}`: every panic record and every 500 formats one, and
        // the formatting machinery's padding costs more than the digits.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 9];
        for (index, digit) in text[..8].iter_mut().enumerate() {
            *digit = HEX[((self.process >> (28 - 4 * index)) & 0xf) as usize];
        }
        text[8] = b'-';
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)?;
        f.write_str(itoa::Buffer::new().format(self.sequence))
    }
}

/// The process's tag, the first half of every incident id; 0 until first needed.
static TAG: AtomicU32 = AtomicU32::new(0);

fn process_tag() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    match TAG.load(Ordering::Acquire) {
        0 => {
            // RandomState is seeded from the OS's randomness; pid and time make forks differ.
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u32(std::process::id());
            hasher.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |elapsed| elapsed.as_nanos()),
            );
            let tag = (hasher.finish() as u32).max(1);
            match TAG.compare_exchange(0, tag, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => tag,
                Err(first) => first,
            }
        }
        tag => tag,
    }
}

/// A forked child is another process: its incident ids must not repeat the parent's, which go on
/// with the same sequence. Derives a new tag from the parent's and the child's pid, with integer
/// mixing only, as a fork handler must (no allocation, no lock).
pub(crate) fn refresh_after_fork() {
    // SAFETY: getpid(2) has no preconditions and is async-signal-safe.
    let pid = unsafe { libc::getpid() } as u64;
    let parent = u64::from(TAG.load(Ordering::Relaxed));
    // splitmix64's finaliser: every input bit moves about half the output bits.
    let mut mixed = (parent << 32 | pid).wrapping_add(0x9e37_79b9_7f4a_7c15);
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    mixed ^= mixed >> 31;
    TAG.store((mixed as u32).max(1), Ordering::Release);
}

/// Makes [`IncidentId::next`] safe to call from a signal handler: the process tag is computed
/// now, so later calls only read it and bump an atomic.
// Used by fatal-signal records, which some platforms do without.
#[cfg_attr(not(fatal_signals), allow(dead_code))]
pub(crate) fn prepare_for_signal_handlers() {
    process_tag();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incident_ids_are_distinct_short_and_printable() {
        let first = IncidentId::next().to_string();
        let second = IncidentId::next().to_string();
        assert_ne!(first, second);
        assert_eq!(first[..9], second[..9], "same process, same prefix");
        assert!(first.len() <= 20 && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
    }

    #[test]
    fn an_id_is_eight_hex_digits_a_dash_and_the_sequence() {
        let id = IncidentId {
            process: 0xabc,
            sequence: 7,
        };
        assert_eq!(id.to_string(), "00000abc-7");
    }
}
