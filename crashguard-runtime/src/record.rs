//! The one-line JSON record and the writer that puts it on stderr.
//!
//! Every record is a single JSON object followed by `\n`, built in a fixed buffer on the stack and
//! handed to the kernel with as few `write(2)` calls as the pipe allows (one, for a record of up
//! to 4096 bytes on a pipe). Building and writing allocate nothing and take no blocking lock, so
//! the same code serves the panic hook and, later, a signal handler.
//!
//! # The line cannot be broken
//!
//! Every string is escaped as JSON: quotes, backslashes, all control characters (C0, DEL and C1,
//! which covers ANSI escape sequences), and the line and paragraph separators U+2028/U+2029.
//! Invalid UTF-8 becomes U+FFFD. So no input can end the line early or forge a second record.
//!
//! # The line is bounded
//!
//! containerd and CRI-O split a log line longer than 16 KiB into partial records, which most
//! pipelines never join again. A record is therefore at most [`MAX_RECORD_BYTES`](crate::MAX_RECORD_BYTES) long, newline
//! included. A value that does not fit is cut at a character boundary and ends in
//! [`TRUNCATION_MARKER`]; a field that does not fit at all is left out, and the record then
//! carries `"record.truncated":true`.
//!
//! # Records do not interleave
//!
//! A pipe write of up to 4096 bytes (`PIPE_BUF`) is atomic, and so is any write to a regular
//! file or a terminal on Linux: records that short, which is nearly all of them, go out with one
//! `write(2)` each, side by side, without a lock. A longer write to a pipe may be split and
//! interleaved with other writers, so a longer record takes a spin lock, and waits for the short
//! records already being written. Ordinary callers wait as long as it takes; a signal handler
//! only for a bounded time (the holder may be the very thread it interrupted). So the one
//! exception is a fatal signal: when it interrupts a record being written on its own thread, or
//! the writer it waits for does not finish within the bound, the fatal record is written anyway
//! (on a line of its own), and the interrupted record stays cut short. A stream socket as stderr
//! gives no such guarantee for a write it cannot take at once; pipes, files and terminals are
//! what container runtimes and shells give a process.

//!
//! # Layout
//!
//! [`keys`] names every field (one schema for every record and both sinks), `json` builds a
//! record in a fixed buffer, `writer` puts it on stderr.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::{MAX_RECORD_BYTES, MIN_RECORD_BYTES};

mod json;
pub(crate) mod keys;
mod pool;
mod stderr;
mod text;
mod writer;

#[cfg(fatal_signals)]
pub(crate) use json::LossyUtf8;
pub(crate) use json::Record;
pub(crate) use stderr::prepare as prepare_stderr;
pub(crate) use text::{set_shown, Shown};
pub(crate) use writer::{forget_writers_after_fork, Wait};

/// Ends a string value that was cut to keep the record within its limit.
pub const TRUNCATION_MARKER: &str = "…[truncated]";

static RECORD_LIMIT: AtomicUsize = AtomicUsize::new(MAX_RECORD_BYTES);

pub(crate) fn set_record_limit(bytes: usize) {
    RECORD_LIMIT.store(
        bytes.clamp(MIN_RECORD_BYTES, MAX_RECORD_BYTES),
        Ordering::Relaxed,
    );
}

/// How serious a record is, named as Google Cloud Logging names its `severity` levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Severity {
    /// Routine: a clean exit.
    Info,
    /// Normal but significant: a shutdown starts.
    Notice,
    /// Something is off but the process goes on: a setting that could not be read.
    Warning,
    /// Something went wrong in one place: a panic, an `Err` from main.
    Error,
    /// The process dies: a fatal signal.
    Critical,
}

impl Severity {
    /// The level's name as it appears in the `severity` field.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Notice => "NOTICE",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
            Severity::Critical => "CRITICAL",
        }
    }
}

/// Builds one record and writes it to stderr: `fill` adds the fields after the ones every record
/// has (`time`, `severity`, `event`, `process.pid`), `message` first.
///
/// The 16 KiB the record is built in are never on the caller's stack, which may be small (a
/// thread started with a 32 KiB stack can still panic and be recorded): ordinary callers take a
/// buffer from a small static pool, or from the heap when every one is in use. A signal handler
/// ([`Wait::Bounded`]), which may not allocate and runs on crashguard's emergency stack, builds it
/// there.
pub(crate) fn emit(
    event: &str,
    severity: Severity,
    wait: Wait,
    fill: impl FnOnce(&mut Record<'_>),
) {
    let limit = RECORD_LIMIT.load(Ordering::Relaxed);
    match wait {
        Wait::Patiently => pool::with_buffer(|buffer| {
            build_and_write(Record::empty(buffer, limit), event, severity, wait, fill)
        }),
        Wait::Bounded => emit_on_this_stack(limit, event, severity, fill),
    }
}

/// One record with `value` in three fields (as text where it is UTF-8, as bytes, and through
/// `Display`), within `limit`: the line the fuzz target checks.
#[cfg(feature = "test-hooks")]
pub(crate) fn line_for_fuzzing(value: &[u8], limit: usize) -> Vec<u8> {
    pool::with_buffer(|buffer| {
        let mut record = Record::empty(buffer, limit);
        record.begin("fuzz", Severity::Info);
        if let Ok(text) = std::str::from_utf8(value) {
            record.str("text", text);
            record.display("display", text, usize::MAX);
        }
        record.bytes("bytes", value);
        record.finish().to_vec()
    })
}

/// A `config` record (severity `WARNING`): something crashguard could not set up, and what that
/// means; `feature` names what is missing as a result, if anything in particular is.
pub(crate) fn config_warning(message: &str, feature: Option<&str>) {
    emit("config", Severity::Warning, Wait::Patiently, |record| {
        record.str(keys::MESSAGE, message);
        if let Some(feature) = feature {
            record.str(keys::CONFIG_FEATURE, feature);
        }
    });
}

/// [`emit`] for a signal handler: the buffer on the stack it runs on.
#[inline(never)]
fn emit_on_this_stack(
    limit: usize,
    event: &str,
    severity: Severity,
    fill: impl FnOnce(&mut Record<'_>),
) {
    let mut buffer: json::Buffer = [const { std::mem::MaybeUninit::uninit() }; MAX_RECORD_BYTES];
    build_and_write(
        Record::empty(&mut buffer, limit),
        event,
        severity,
        Wait::Bounded,
        fill,
    );
}

fn build_and_write(
    mut record: Record<'_>,
    event: &str,
    severity: Severity,
    wait: Wait,
    fill: impl FnOnce(&mut Record<'_>),
) {
    record.begin(event, severity);
    fill(&mut record);
    let line = record.finish();
    match text::shown() {
        text::Shown::Json => writer::write_line(line, wait),
        text::Shown::Text { colour } => show_as_text(line, colour, wait),
    }
}

/// Writes the text people see for the JSON `line`, made in a second buffer: the pool's (or the
/// heap's), or, in a signal handler, one on the stack it runs on.
fn show_as_text(line: &[u8], colour: bool, wait: Wait) {
    let write = |buffer: &mut json::Buffer| {
        let mut shown = text::Text::new(buffer, colour);
        text::render(line, &mut shown);
        let shown = shown.finish();
        if !shown.is_empty() {
            writer::write_line(shown, wait);
        }
    };
    match wait {
        Wait::Patiently => pool::with_buffer(write),
        Wait::Bounded => {
            let mut buffer: json::Buffer =
                [const { std::mem::MaybeUninit::uninit() }; MAX_RECORD_BYTES];
            write(&mut buffer);
        }
    }
}
