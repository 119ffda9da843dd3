//! The panic hook: one record per panic, with an incident id, the place, the thread, the guarded
//! function and a backtrace folded into the line.
//!
//! # What happens to the hook that was there before
//!
//! [`install`](crate::install) replaces it. std's default hook writes several lines of plain text,
//! which would break a stderr that is otherwise all JSON, so by default the previous hook is
//! dropped. [`Config::keep_previous_panic_hook`](crate::Config::keep_previous_panic_hook) keeps it
//! and runs it after crashguard's record.
//!
//! # Where the record goes
//!
//! When the application has a `tracing` subscriber that takes `ERROR` events for the `crashguard`
//! target, the record is a `tracing` event, emitted on the panicking thread inside its current
//! span, so it carries that span's fields and the application's own log format. Otherwise it is
//! crashguard's JSON line on stderr.
//!
//! # Backtraces
//!
//! A panic's record carries its backtrace in `exception.stacktrace`, unless the same location
//! already panicked within [`Config::backtrace_window`](crate::Config::backtrace_window): then the
//! record carries `exception.stacktrace_ref`, the incident id of the record that has the trace,
//! and `exception.repeats`, how many panics that location has had since it (this one included).
//! Symbols are resolved once per location per window, however hard a route keeps panicking; see
//! the module docs of `backtrace` for the table behind it. No record is ever dropped to save
//! work: every panic gets its own record and incident id.
//!
//! # Panics in the hook
//!
//! std aborts a thread that panics inside its panic hook instead of calling the hook again, so a
//! panicking subscriber cannot make the hook recurse; the abort is a fatal signal of its own.

use std::any::Any;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::panic::PanicHookInfo;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::Instant;

use crate::backtrace::{LocationKey, TracePlan, TraceReuse};
use crate::record::{self, Severity};

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

fn process_tag() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    static TAG: OnceLock<u32> = OnceLock::new();
    *TAG.get_or_init(|| {
        // RandomState is seeded from the OS's randomness; pid and time make forks differ too.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos()),
        );
        hasher.finish() as u32
    })
}

/// What crashguard knows about one panic: given to fallbacks and kept for the exit record.
///
/// A pointer wide, so that a guarded call's `Result<T, PanicReport>` is no bigger than it needs.
#[derive(Debug, Clone)]
pub struct PanicReport {
    details: std::sync::Arc<PanicDetails>,
}

#[derive(Debug)]
struct PanicDetails {
    incident_id: IncidentId,
    /// Borrowed for a `&'static str` payload (`panic!("literal")`): no copy per panic.
    message: Cow<'static, str>,
    location: Option<PanicLocation>,
    /// The handle rather than a copy of its name: cloning it is one atomic increment.
    thread: Thread,
    function: Option<&'static str>,
    request: Option<PanicRequest>,
}

impl PanicDetails {
    fn thread_name(&self) -> &str {
        self.thread.name().unwrap_or("<unnamed>")
    }
}

/// The HTTP request being served when a panic happened, as the tower layer saw it.
#[derive(Debug, Clone)]
struct PanicRequest {
    method: String,
    path: String,
    request_id: Option<String>,
}

impl PanicRequest {
    /// The request being served on this thread, when the `tower` layer is serving one.
    fn current() -> Option<PanicRequest> {
        #[cfg(feature = "tower")]
        {
            crate::http::current_request(|request| {
                request.map(|fields| PanicRequest {
                    method: fields.method.as_str().to_owned(),
                    path: fields.uri.path().to_owned(),
                    request_id: fields
                        .request_id
                        .as_ref()
                        .map(|id| String::from_utf8_lossy(id.as_bytes()).into_owned()),
                })
            })
        }
        #[cfg(not(feature = "tower"))]
        None
    }
}

/// Where a panic happened in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanicLocation {
    /// The source file, as the compiler saw it (`src/main.rs`).
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

impl fmt::Display for PanicLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

impl PanicReport {
    /// The incident id, also in the panic's record.
    pub fn incident_id(&self) -> IncidentId {
        self.details.incident_id
    }

    /// The panic's message, or a placeholder for a payload that is not a string. This is
    /// internal detail: log it, never send it to a client.
    pub fn message(&self) -> &str {
        &self.details.message
    }

    /// Where the panic happened, when std knows.
    pub fn location(&self) -> Option<&PanicLocation> {
        self.details.location.as_ref()
    }

    /// The name of the thread that panicked (`<unnamed>` for a thread without one).
    pub fn thread_name(&self) -> &str {
        self.details.thread_name()
    }

    /// The `#[crash_guarded]` function the panic happened in, as `module::function`.
    pub fn function(&self) -> Option<&'static str> {
        self.details.function
    }

    /// One line for a human: `panic in app::main at src/main.rs:4:5: boom [incident 3f9a1c07-1]`.
    pub fn summary(&self) -> String {
        format!("{} [incident {}]", Summary(self), self.incident_id())
    }

    fn new(details: PanicDetails) -> PanicReport {
        PanicReport {
            details: std::sync::Arc::new(details),
        }
    }
}

/// Stands for a panic payload that is neither `&str` nor `String` (`panic_any(42)`).
pub const NON_STRING_PAYLOAD: &str = "Box<dyn Any> (a panic payload that is not a string)";

thread_local! {
    /// The `#[crash_guarded]` function running on this thread, if any.
    static GUARDED_FUNCTION: Cell<Option<&'static str>> = const { Cell::new(None) };
    /// The last panic the hook reported on this thread, for the code that catches it.
    static LAST_PANIC: RefCell<Option<PanicReport>> = const { RefCell::new(None) };
    /// Whether `LAST_PANIC` may hold a report. Every guarded poll asks, and a thread-local
    /// without a destructor is cheaper to reach than `LAST_PANIC`.
    static MAYBE_LAST_PANIC: Cell<bool> = const { Cell::new(false) };
}

/// Names the guarded function on this thread while alive; restores the outer name on drop.
pub(crate) struct GuardedScope {
    outer: Option<&'static str>,
}

impl GuardedScope {
    #[inline]
    pub(crate) fn enter(function: &'static str) -> GuardedScope {
        forget_stale_panic();
        GuardedScope {
            outer: GUARDED_FUNCTION.with(|current| current.replace(Some(function))),
        }
    }
}

impl Drop for GuardedScope {
    #[inline]
    fn drop(&mut self) {
        GUARDED_FUNCTION.with(|current| current.set(self.outer));
    }
}

/// Drops a report that nobody took (a panic the application caught itself), so that the next
/// catch on this thread cannot mistake it for its own.
#[inline]
pub(crate) fn forget_stale_panic() {
    if !MAYBE_LAST_PANIC.with(Cell::get) {
        return;
    }
    LAST_PANIC.with(|last| {
        if let Ok(mut last) = last.try_borrow_mut() {
            *last = None;
            MAYBE_LAST_PANIC.with(|maybe| maybe.set(false));
        }
    });
}

/// The report of the panic that was just caught on this thread: the hook's, or, when another hook
/// replaced crashguard's, one made now and recorded now, so no panic goes unrecorded.
pub(crate) fn take_caught(
    payload: &(dyn Any + Send),
    function: Option<&'static str>,
) -> PanicReport {
    if let Some(report) = LAST_PANIC.with(|last| last.borrow_mut().take()) {
        return report;
    }
    let report = PanicReport::new(PanicDetails {
        incident_id: IncidentId::next(),
        message: payload_message(payload),
        location: None,
        thread: std::thread::current(),
        function,
        request: PanicRequest::current(),
    });
    write_record(&report, &Trace::Omitted);
    report
}

/// Installs the hook once; later calls do nothing.
pub(crate) fn install_hook(backtrace: bool, keep_previous: bool) {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            report_panic(info, backtrace);
            if keep_previous {
                previous(info);
            }
        }));
    });
}

fn report_panic(info: &PanicHookInfo<'_>, backtrace: bool) {
    let incident_id = IncidentId::next();
    // Before anything that could abort (a subscriber panicking), for the fatal-signal record.
    PANICKING_INCIDENT.with(|panicking| panicking.set(Some(incident_id)));
    let plan = backtrace.then(|| {
        info.location().map_or(TracePlan::Capture, |location| {
            let location = LocationKey::new(location.file(), location.line(), location.column());
            trace_reuse().plan(location, incident_id, Instant::now())
        })
    });
    let captured = (plan == Some(TracePlan::Capture)).then(crate::backtrace::capture);
    let trace = match (plan, &captured) {
        (Some(TracePlan::Reuse { first, repeats }), _) => Trace::SameAs { first, repeats },
        (_, Some(captured)) => Trace::Full(captured),
        _ => Trace::Omitted,
    };
    let report = PanicReport::new(PanicDetails {
        incident_id,
        message: payload_message(info.payload()),
        location: info.location().map(|location| PanicLocation {
            file: location.file().to_owned(),
            line: location.line(),
            column: location.column(),
        }),
        thread: std::thread::current(),
        function: GUARDED_FUNCTION.with(Cell::get),
        request: PanicRequest::current(),
    });
    write_record(&report, &trace);
    LAST_PANIC.with(|last| *last.borrow_mut() = Some(report));
    MAYBE_LAST_PANIC.with(|maybe| maybe.set(true));
}

/// Writes `report`'s record as the hook wrote it, with `trace` as its backtrace: the record
/// writer's share of a panic's cost, for crashguard's benchmarks. Not public API.
#[doc(hidden)]
pub fn write_record_again(report: &PanicReport, trace: Option<&str>) {
    write_record(report, &trace.map_or(Trace::Omitted, Trace::Full));
}

/// The table that decides which panics capture a trace, sized by the installed settings.
fn trace_reuse() -> &'static TraceReuse {
    static TABLE: OnceLock<TraceReuse> = OnceLock::new();
    TABLE.get_or_init(|| {
        let settings = crate::settings();
        TraceReuse::new(settings.backtrace_locations, settings.backtrace_window)
    })
}

/// The backtrace part of a panic record.
enum Trace<'a> {
    /// Backtraces are off, or another hook caught the panic first.
    Omitted,
    /// This panic's own trace, rendered.
    Full(&'a str),
    /// The trace is in `first`'s record; this is the `repeats`-th panic at its location since.
    SameAs { first: IncidentId, repeats: u64 },
}

fn payload_message(payload: &(dyn Any + Send)) -> Cow<'static, str> {
    if let Some(text) = payload.downcast_ref::<&'static str>() {
        Cow::Borrowed(text)
    } else if let Some(text) = payload.downcast_ref::<String>() {
        Cow::Owned(text.clone())
    } else {
        Cow::Borrowed(NON_STRING_PAYLOAD)
    }
}

/// The panic's message, cut so that the trace still fits in the record.
const MESSAGE_MAX_BYTES: usize = 8 * 1024;
/// The human `message` field repeats the panic message; keep that copy short.
const SUMMARY_MAX_BYTES: usize = 1024;

fn write_record(report: &PanicReport, trace: &Trace<'_>) {
    let details = &*report.details;
    if tracing_wants_it() {
        emit_tracing_event(report, trace);
        return;
    }
    record::emit(
        "panic",
        Severity::Error,
        record::Wait::Patiently,
        |record| {
            record.display("message", Summary(report), SUMMARY_MAX_BYTES);
            record.display("incident.id", details.incident_id, usize::MAX);
            record.str("thread.name", details.thread_name());
            record.i64("thread.id", i64::from(record::current_thread_id()));
            if let Some(function) = details.function {
                record.str("code.function.name", function);
            }
            if let Some(location) = &details.location {
                record.str("code.file.path", &location.file);
                record.u64("code.line.number", u64::from(location.line));
                record.u64("code.column.number", u64::from(location.column));
            }
            if let Some(request) = &details.request {
                record.str("http.request.method", &request.method);
                record.str_max("url.path", &request.path, 1024);
                if let Some(request_id) = &request.request_id {
                    record.str_max("http.request.header.x-request-id", request_id, 256);
                }
            }
            record.str("exception.type", "panic");
            record.str_max("exception.message", &details.message, MESSAGE_MAX_BYTES);
            match trace {
                Trace::Omitted => {}
                Trace::Full(trace) => record.str("exception.stacktrace", trace),
                Trace::SameAs { first, repeats } => {
                    record.display("exception.stacktrace_ref", first, usize::MAX);
                    record.u64("exception.repeats", *repeats);
                }
            }
        },
    );
}

/// `summary()` without the allocation.
struct Summary<'a>(&'a PanicReport);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let report = &*self.0.details;
        f.write_str("panic")?;
        if let Some(function) = report.function {
            write!(f, " in {function}")?;
        }
        if let Some(location) = &report.location {
            write!(f, " at {location}")?;
        }
        write!(f, ": {}", report.message)
    }
}

fn tracing_wants_it() -> bool {
    tracing::dispatcher::get_default(|dispatch| !dispatch.is::<tracing::subscriber::NoSubscriber>())
        && tracing::enabled!(target: "crashguard", tracing::Level::ERROR)
}

/// A trace through `tracing` has no record limit to cut it: cap it so the subscriber's line
/// stays below the 16 KiB at which container runtimes split lines.
const TRACING_TRACE_MAX_BYTES: usize = 6 * 1024;

/// Text cut at a character boundary to at most `.1` bytes, with the truncation marker.
struct Capped<'a>(&'a str, usize);

impl fmt::Display for Capped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Capped(text, max) = *self;
        if text.len() <= max {
            return f.write_str(text);
        }
        let mut end = max.saturating_sub(record::TRUNCATION_MARKER.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        f.write_str(&text[..end])?;
        f.write_str(record::TRUNCATION_MARKER)
    }
}

fn emit_tracing_event(report: &PanicReport, trace: &Trace<'_>) {
    let details = &*report.details;
    let (full, same_as, repeats) = match trace {
        Trace::Omitted => (None, None, None),
        Trace::Full(trace) => (Some(*trace), None, None),
        Trace::SameAs { first, repeats } => (None, Some(first), Some(*repeats)),
    };
    let location = details.location.as_ref();
    let request = details.request.as_ref();
    tracing::error!(
        target: "crashguard",
        event = "panic",
        incident.id = %details.incident_id,
        thread.name = details.thread_name(),
        thread.id = record::current_thread_id(),
        code.function.name = details.function,
        code.file.path = location.map(|l| l.file.as_str()),
        code.line.number = location.map(|l| l.line),
        code.column.number = location.map(|l| l.column),
        http.request.method = request.map(|r| r.method.as_str()),
        url.path = request.map(|r| r.path.as_str()),
        "http.request.header.x-request-id" = request.and_then(|r| r.request_id.as_deref()),
        exception.r#type = "panic",
        exception.message = %Capped(&details.message, MESSAGE_MAX_BYTES),
        exception.stacktrace = full.map(|trace| Capped(trace, TRACING_TRACE_MAX_BYTES)).map(tracing::field::display),
        exception.stacktrace_ref = same_as.map(tracing::field::display),
        exception.repeats = repeats,
        "{}",
        Summary(report),
    );
}

/// Makes [`IncidentId::next`] safe to call from a signal handler: the process tag is computed
/// now, so later calls only read it and bump an atomic.
// Used by fatal-signal records, which some platforms do without.
#[cfg_attr(not(fatal_signals), allow(dead_code))]
pub(crate) fn prepare_for_signal_handlers() {
    process_tag();
}

thread_local! {
    /// The incident id the hook gave this thread's latest panic. A `Copy` value with no
    /// destructor, so that reading it never registers one (which allocates).
    static PANICKING_INCIDENT: Cell<Option<IncidentId>> = const { Cell::new(None) };
}

/// The incident id of the panic this thread is in the middle of, if any: the one a
/// `panic = "abort"` or a panic during unwinding is about to abort with. Reads only a
/// const-initialised thread-local without a destructor, so a signal handler may call it.
// Used by fatal-signal records, which some platforms do without.
#[cfg_attr(not(fatal_signals), allow(dead_code))]
pub(crate) fn incident_in_progress() -> Option<IncidentId> {
    if !std::thread::panicking() {
        return None;
    }
    PANICKING_INCIDENT.try_with(Cell::get).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_text_keeps_short_text_and_cuts_long_text_on_a_character_boundary() {
        assert_eq!(Capped("short", 100).to_string(), "short");
        let cut = Capped(&"é".repeat(100), 50).to_string();
        assert!(
            cut.len() <= 50 && cut.ends_with(record::TRUNCATION_MARKER),
            "{cut}"
        );
        assert!(cut
            .trim_end_matches(record::TRUNCATION_MARKER)
            .chars()
            .all(|c| c == 'é'));
    }

    #[test]
    fn incident_ids_are_distinct_short_and_printable() {
        let first = IncidentId::next().to_string();
        let second = IncidentId::next().to_string();
        assert_ne!(first, second);
        assert_eq!(first[..9], second[..9], "same process, same prefix");
        assert!(first.len() <= 20 && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
    }

    #[test]
    fn the_summary_names_function_place_message_and_incident() {
        let report = PanicReport::new(PanicDetails {
            incident_id: IncidentId {
                process: 0xabc,
                sequence: 7,
            },
            message: "boom".into(),
            location: Some(PanicLocation {
                file: "src/main.rs".into(),
                line: 4,
                column: 5,
            }),
            thread: std::thread::current(),
            function: Some("app::main"),
            request: None,
        });
        assert_eq!(
            report.summary(),
            "panic in app::main at src/main.rs:4:5: boom [incident 00000abc-7]"
        );
    }
}
