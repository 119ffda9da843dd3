//! One record as a line of JSON, built in a fixed buffer: escaping that no input can break out
//! of, and values cut at a character boundary to keep the line within its limit.

use std::fmt::{self, Write as _};
use std::mem::MaybeUninit;
use std::time::{Duration, SystemTime};

use super::keys;
use super::{Severity, TRUNCATION_MARKER};
use crate::config::{MAX_RECORD_BYTES, MIN_RECORD_BYTES};

/// Room always kept for `,"record.truncated":true}` and the newline.
const CLOSING_RESERVE: usize = 32;

/// A record's worth of bytes, not initialised: `MAX_RECORD_BYTES` of them.
pub(crate) type Buffer = [MaybeUninit<u8>; MAX_RECORD_BYTES];

/// One record being built in a fixed buffer, which the caller provides (see `record::emit` for
/// where it lives). Nothing here allocates.
pub(crate) struct Record<'a> {
    /// `buf[..len]` is written; the rest is never read, so it is not zeroed either: clearing
    /// 16 KiB for a record of a few hundred bytes is time and cache a panic storm pays for on
    /// every record.
    buf: &'a mut Buffer,
    len: usize,
    limit: usize,
    truncated: bool,
}

impl Record<'static> {
    /// Starts a record with the fields every record has: `time`, `severity`, `event`, and
    /// `process.pid`, in a buffer of its own.
    #[cfg(test)]
    pub(crate) fn new(event: &str, severity: Severity) -> Record<'static> {
        Record::with_limit(event, severity, MAX_RECORD_BYTES)
    }

    #[cfg(test)]
    fn with_limit(event: &str, severity: Severity, limit: usize) -> Record<'static> {
        let buffer = Box::leak(Box::new(
            [const { MaybeUninit::uninit() }; MAX_RECORD_BYTES],
        ));
        let mut record = Record::empty(buffer, limit);
        record.begin(event, severity);
        record
    }
}

impl<'a> Record<'a> {
    /// A record with nothing in it yet, to be built in `buffer`.
    pub(super) fn empty(buffer: &'a mut Buffer, limit: usize) -> Record<'a> {
        Record {
            buf: buffer,
            len: 0,
            limit: limit.clamp(MIN_RECORD_BYTES, MAX_RECORD_BYTES),
            truncated: false,
        }
    }

    pub(super) fn begin(&mut self, event: &str, severity: Severity) {
        self.push(b"{");
        self.display(
            keys::TIME,
            humantime::format_rfc3339_micros(SystemTime::now()),
            usize::MAX,
        );
        self.str(keys::SEVERITY, severity.as_str());
        self.str(keys::EVENT, event);
        self.u64(keys::PROCESS_PID, u64::from(crate::os::process_id()));
    }

    /// Adds a string field, escaped, cut to `max` bytes of escaped text if longer.
    pub(crate) fn str_max(&mut self, key: &str, value: &str, max: usize) {
        self.field(key, max, |writer| writer.write_str(value));
    }

    /// Adds a string field, escaped, cut only by the record's own limit.
    pub(crate) fn str(&mut self, key: &str, value: &str) {
        self.field(key, usize::MAX, |writer| writer.write_str(value));
    }

    /// Adds a field from raw bytes; invalid UTF-8 becomes U+FFFD.
    // Used by fatal-signal records, which some platforms do without.
    #[cfg_attr(not(fatal_signals), allow(dead_code))]
    pub(crate) fn bytes(&mut self, key: &str, value: &[u8]) {
        self.display(key, LossyUtf8(value), usize::MAX);
    }

    /// Adds a string field from anything that can be displayed, escaping as it is formatted,
    /// without an intermediate `String`.
    pub(crate) fn display(&mut self, key: &str, value: impl fmt::Display, max: usize) {
        self.field(key, max, |writer| write!(writer, "{value}"));
    }

    /// Adds a string field whose value `write` escapes into the record, cut to `max` bytes.
    /// (A `&str` goes straight to the writer: `write!` would cost a formatting pass.)
    fn field(
        &mut self,
        key: &str,
        max: usize,
        write: impl FnOnce(&mut EscapingWriter<'_, 'a>) -> fmt::Result,
    ) {
        // Key, quotes and at least one character of value, or the field is left out.
        if !self.has_room(key.len() + 8 + TRUNCATION_MARKER.len()) {
            self.truncated = true;
            return;
        }
        self.key(key);
        self.push(b"\"");
        // The value may take `max` bytes, and no more than the record has left.
        let end = self
            .len
            .saturating_add(max)
            .min(self.limit - CLOSING_RESERVE)
            .max(self.len);
        let start = self.len;
        let mut writer = EscapingWriter {
            record: self,
            end,
            cut_at: start,
            cut_room: end.saturating_sub(TRUNCATION_MARKER.len()),
            cut: false,
        };
        // An error only means the value was cut; EscapingWriter never fails otherwise.
        let _ = write(&mut writer);
        if writer.cut {
            // Back to the last character after which the marker still fits.
            self.len = writer.cut_at;
            self.push(TRUNCATION_MARKER.as_bytes());
            self.truncated = true;
        }
        self.push(b"\"");
    }

    /// Adds an unsigned number.
    pub(crate) fn u64(&mut self, key: &str, value: u64) {
        self.raw(key, itoa::Buffer::new().format(value).as_bytes());
    }

    /// Adds a signed number.
    pub(crate) fn i64(&mut self, key: &str, value: i64) {
        self.raw(key, itoa::Buffer::new().format(value).as_bytes());
    }

    /// Adds `true` or `false`.
    pub(crate) fn bool(&mut self, key: &str, value: bool) {
        self.raw(key, if value { b"true" } else { b"false" });
    }

    /// Adds a duration as whole milliseconds.
    pub(crate) fn millis(&mut self, key: &str, value: Duration) {
        self.u64(key, u64::try_from(value.as_millis()).unwrap_or(u64::MAX));
    }

    /// Closes the object and returns the whole line, newline included.
    pub(crate) fn finish(&mut self) -> &[u8] {
        if self.truncated {
            self.push(b",\"");
            self.push(keys::RECORD_TRUNCATED.as_bytes());
            self.push(b"\":true");
        }
        self.push(b"}\n");
        // SAFETY: `push` is the only writer of `buf` and writes every byte below the `len` it
        // sets; `len` otherwise only moves back (a value cut short). So `buf[..len]` is
        // initialised, and `MaybeUninit<u8>` has the layout of `u8`.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr().cast::<u8>(), self.len) }
    }

    fn raw(&mut self, key: &str, value: &[u8]) {
        if !self.has_room(key.len() + 4 + value.len()) {
            self.truncated = true;
            return;
        }
        self.key(key);
        self.push(value);
    }

    #[inline(always)]
    fn key(&mut self, key: &str) {
        // Keys are crashguard's own constants, none of which needs escaping.
        debug_assert!(
            key.bytes().all(|byte| !needs_escape(byte)),
            "key {key:?} needs escaping"
        );
        if self.len > 1 {
            self.push(b",");
        }
        self.push(b"\"");
        self.push(key.as_bytes());
        self.push(b"\":");
    }

    fn has_room(&self, bytes: usize) -> bool {
        self.len + bytes + CLOSING_RESERVE <= self.limit
    }

    /// Appends bytes that were already measured; silently stops at the buffer's end.
    // Always inlined: most pushes are a constant quote, comma or colon, which then become a
    // single store instead of a call to `memcpy`.
    #[inline(always)]
    fn push(&mut self, bytes: &[u8]) {
        // Out of line, so that here the length stays the caller's constant and the copy a store.
        if bytes.len() > self.buf.len() - self.len {
            return self.push_cut(bytes);
        }
        // SAFETY: `bytes` is readable for its length, which fits in `buf` after `len`; `buf`
        // cannot overlap `bytes`, being borrowed mutably here. `MaybeUninit<u8>` has the layout
        // of `u8`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.buf.as_mut_ptr().add(self.len).cast::<u8>(),
                bytes.len(),
            );
        }
        self.len += bytes.len();
    }

    #[cold]
    #[inline(never)]
    fn push_cut(&mut self, bytes: &[u8]) {
        let room = self.buf.len() - self.len;
        for (slot, byte) in self.buf[self.len..].iter_mut().zip(&bytes[..room]) {
            slot.write(*byte);
        }
        self.len += room;
    }
}

/// Escapes what is formatted into it straight into the record, stopping at `end`.
struct EscapingWriter<'a, 'b> {
    record: &'a mut Record<'b>,
    /// Where the value must end.
    end: usize,
    /// The end of the last whole character that leaves room for the truncation marker.
    cut_at: usize,
    cut_room: usize,
    cut: bool,
}

impl fmt::Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, mut text: &str) -> fmt::Result {
        if self.cut {
            return Err(fmt::Error);
        }
        while !text.is_empty() {
            // Printable ASCII other than `"` and `\` is its own JSON text: a run of it is copied
            // at once, which is most of a record, instead of a character at a time.
            let plain = plain_prefix_len(text.as_bytes());
            if plain > 0 {
                let room = self.end.saturating_sub(self.record.len);
                // Every byte of an ASCII run is a character boundary, so it may be cut anywhere.
                let run_start = self.record.len;
                self.record.push(&text.as_bytes()[..plain.min(room)]);
                // Any point inside this run is a boundary; one before it may not be.
                let candidate = self.record.len.min(self.cut_room);
                if candidate >= run_start && candidate > self.cut_at {
                    self.cut_at = candidate;
                }
                if plain > room {
                    self.cut = true;
                    return Err(fmt::Error);
                }
                text = &text[plain..];
                continue;
            }
            let Some(ch) = text.chars().next() else { break };
            let mut scratch = [0u8; 8];
            let escaped = escape_char(ch, &mut scratch);
            if self.record.len + escaped.len() > self.end {
                self.cut = true;
                return Err(fmt::Error);
            }
            self.record.push(escaped);
            if self.record.len <= self.cut_room {
                self.cut_at = self.record.len;
            }
            text = &text[ch.len_utf8()..];
        }
        Ok(())
    }
}

/// Whether a byte cannot stand for itself in a JSON string on one line: a quote, a backslash, a
/// control character, or any byte of a non-ASCII character (which `escape_char` examines whole).
#[inline(always)]
fn needs_escape(byte: u8) -> bool {
    !(0x20..0x7f).contains(&byte) || byte == b'"' || byte == b'\\'
}

/// How many bytes at the start of `bytes` need no escaping: eight at a time, since that is most
/// of every record.
fn plain_prefix_len(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH_BITS: u64 = u64::from_ne_bytes([0x80; 8]);
    /// The high bit of each byte that is zero, exact for the lowest such byte (a borrow can only
    /// mark bytes above it).
    fn zero_bytes(word: u64) -> u64 {
        word.wrapping_sub(ONES) & !word & HIGH_BITS
    }
    let mut start = 0;
    while let Some(chunk) = bytes.get(start..start + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH_BITS;
        let high_or_delete = (word.wrapping_add(ONES) | word) & HIGH_BITS;
        let quote = zero_bytes(word ^ (ONES * u64::from(b'"')));
        let backslash = zero_bytes(word ^ (ONES * u64::from(b'\\')));
        let special = control | high_or_delete | quote | backslash;
        if special != 0 {
            // Little-endian: the lowest marked byte is the first one that needs escaping.
            return start + (special.trailing_zeros() / 8) as usize;
        }
        start += 8;
    }
    start
        + bytes[start..]
            .iter()
            .position(|&byte| needs_escape(byte))
            .unwrap_or(bytes.len() - start)
}

/// The JSON text for one character: itself, or an escape that keeps the line whole.
fn escape_char(ch: char, scratch: &mut [u8; 8]) -> &[u8] {
    let short: &[u8] = match ch {
        '"' => b"\\\"",
        '\\' => b"\\\\",
        '\n' => b"\\n",
        '\r' => b"\\r",
        '\t' => b"\\t",
        _ => b"",
    };
    if !short.is_empty() {
        scratch[..short.len()].copy_from_slice(short);
        return &scratch[..short.len()];
    }
    let code = u32::from(ch);
    // C0, DEL, C1 (ANSI's 8-bit CSI among them) and the separators some JSON readers split on.
    if code < 0x20 || (0x7f..=0x9f).contains(&code) || code == 0x2028 || code == 0x2029 {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        scratch[..2].copy_from_slice(b"\\u");
        for (i, shift) in [12, 8, 4, 0].into_iter().enumerate() {
            scratch[2 + i] = HEX[((code >> shift) & 0xf) as usize];
        }
        return &scratch[..6];
    }
    ch.encode_utf8(&mut scratch[..]).as_bytes()
}

/// Displays bytes as text, invalid sequences as U+FFFD, without allocating.
// Used by fatal-signal records, which some platforms do without.
#[cfg_attr(not(fatal_signals), allow(dead_code))]
pub(crate) struct LossyUtf8<'a>(pub(crate) &'a [u8]);

impl fmt::Display for LossyUtf8<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_char(char::REPLACEMENT_CHARACTER)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn parse(line: &[u8]) -> serde_json::Map<String, Value> {
        assert_eq!(line.last(), Some(&b'\n'), "a record ends in a newline");
        let text = std::str::from_utf8(&line[..line.len() - 1]).expect("records are UTF-8");
        assert!(!text.contains('\n'), "one line only: {text}");
        match serde_json::from_str(text).expect("records are JSON") {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn the_plain_prefix_ends_at_the_first_byte_that_needs_escaping_wherever_it_is() {
        for special in 0..=255u8 {
            for at in 0..20 {
                for len in at + 1..=at + 12 {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = special;
                    let expected = if needs_escape(special) { at } else { len };
                    assert_eq!(
                        plain_prefix_len(&bytes),
                        expected,
                        "byte {special:#04x} at {at} of {len}"
                    );
                }
            }
        }
    }

    proptest! {
        #[test]
        fn the_plain_prefix_matches_a_byte_by_byte_scan(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let naive = bytes.iter().position(|&byte| needs_escape(byte)).unwrap_or(bytes.len());
            prop_assert_eq!(plain_prefix_len(&bytes), naive);
        }
    }

    #[test]
    fn every_record_has_time_severity_event_and_pid() {
        let mut record = Record::new("exit", Severity::Info);
        record.str("message", "bye");
        let fields = parse(record.finish());
        assert_eq!(fields["severity"], "INFO");
        assert_eq!(fields["event"], "exit");
        assert_eq!(fields["message"], "bye");
        assert_eq!(fields["process.pid"], u64::from(std::process::id()));
        let time = fields["time"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(time).is_ok(), "{time}");
    }

    #[test]
    fn control_characters_and_ansi_escapes_stay_inside_the_string() {
        let nasty = "a\nb\r\"c\"\\\u{1b}[31mred\u{7f}\u{9b}\u{2028}\0}\n{\"event\":\"forged\"}";
        let mut record = Record::new("panic", Severity::Error);
        record.str("message", nasty);
        let line = record.finish().to_vec();
        assert!(!line[..line.len() - 1].iter().any(|b| *b < 0x20));
        assert_eq!(parse(&line)["message"], nasty);
        assert_eq!(parse(&line)["event"], "panic");
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        let mut record = Record::new("panic", Severity::Error);
        record.bytes("message", b"ok \xff\xfe end");
        assert_eq!(parse(record.finish())["message"], "ok \u{fffd}\u{fffd} end");
    }

    #[test]
    fn numbers_and_booleans() {
        let mut record = Record::new("exit", Severity::Info);
        record.i64("exit.code", -3);
        record.i64("zero", 0);
        record.u64("big", u64::MAX);
        record.bool("flag", true);
        record.millis("grace_period_ms", Duration::from_millis(1500));
        let fields = parse(record.finish());
        assert_eq!(fields["exit.code"], -3);
        assert_eq!(fields["zero"], 0);
        assert_eq!(fields["big"], u64::MAX);
        assert_eq!(fields["flag"], true);
        assert_eq!(fields["grace_period_ms"], 1500);
    }

    #[test]
    fn a_long_value_is_cut_with_a_marker_and_the_record_stays_within_the_limit() {
        let long = "é".repeat(20_000);
        let mut record = Record::new("panic", Severity::Error);
        record.str("message", &long);
        record.str("after", "dropped");
        let line = record.finish().to_vec();
        assert!(line.len() <= MAX_RECORD_BYTES, "{} bytes", line.len());
        let fields = parse(&line);
        let message = fields["message"].as_str().unwrap();
        assert!(message.ends_with(TRUNCATION_MARKER));
        assert!(message
            .trim_end_matches(TRUNCATION_MARKER)
            .chars()
            .all(|c| c == 'é'));
        assert_eq!(fields["record.truncated"], true);
        assert!(!fields.contains_key("after"));
    }

    #[test]
    fn a_per_field_maximum_leaves_room_for_later_fields() {
        let mut record = Record::new("panic", Severity::Error);
        record.str_max("message", &"x".repeat(5000), 100);
        record.str("after", "kept");
        let fields = parse(record.finish());
        assert!(fields["message"].as_str().unwrap().len() <= 100 + TRUNCATION_MARKER.len());
        assert_eq!(fields["after"], "kept");
    }

    #[test]
    fn a_value_within_its_maximum_is_never_cut() {
        let mut record = Record::new("fatal_signal", Severity::Critical);
        record.str_max("signal.fault_address", "0xffff800012345678", 18);
        let fields = parse(record.finish());
        assert_eq!(fields["signal.fault_address"], "0xffff800012345678");
        assert!(!fields.contains_key("record.truncated"));
    }

    #[test]
    fn a_cut_value_and_its_marker_fit_the_maximum() {
        let mut record = Record::new("panic", Severity::Error);
        record.str_max("message", &"y".repeat(500), 100);
        let fields = parse(record.finish());
        let message = fields["message"].as_str().unwrap();
        assert_eq!(message.len(), 100);
        assert!(message.ends_with(TRUNCATION_MARKER));
    }

    proptest! {
        #[test]
        fn any_string_in_any_field_parses_back_to_itself(key in "[a-z.]{1,12}", value in any::<String>()) {
            let mut record = Record::new("panic", Severity::Error);
            record.str(&key, &value);
            let fields = parse(record.finish());
            prop_assert_eq!(fields[&key].as_str().unwrap(), value.as_str());
        }

        #[test]
        fn any_bytes_make_one_line_of_json(value in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut record = Record::new("panic", Severity::Error);
            record.bytes("message", &value);
            let fields = parse(record.finish());
            prop_assert_eq!(fields["message"].as_str().unwrap(), String::from_utf8_lossy(&value));
        }

        #[test]
        fn oversized_values_are_cut_never_split(value in "\\PC{0,3000}", limit in MIN_RECORD_BYTES..4096usize) {
            let mut record = Record::with_limit("panic", Severity::Error, limit);
            record.str("message", &value);
            let line = record.finish().to_vec();
            prop_assert!(line.len() <= limit);
            let fields = parse(&line);
            let message = fields["message"].as_str().unwrap();
            if let Some(kept) = message.strip_suffix(TRUNCATION_MARKER) {
                prop_assert!(value.starts_with(kept));
                prop_assert_eq!(&fields["record.truncated"], &Value::Bool(true));
            } else {
                prop_assert_eq!(message, value.as_str());
            }
        }
    }
}
