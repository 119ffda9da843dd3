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

mod render;
mod report;

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::PanicHookInfo;
use std::sync::OnceLock;
use std::time::Instant;

use crate::backtrace::{LocationKey, TracePlan, TraceReuse};
use crate::state::IncidentId;
use render::{write_record, Trace};
use report::{payload_message, PanicDetails, PanicRequest};
pub use report::{PanicLocation, PanicReport, NON_STRING_PAYLOAD};

thread_local! {
    /// The last panic the hook reported on this thread, for the code that catches it.
    static LAST_PANIC: RefCell<Option<PanicReport>> = const { RefCell::new(None) };
    /// Whether `LAST_PANIC` may hold a report. Every guarded poll asks, and a thread-local
    /// without a destructor is cheaper to reach than `LAST_PANIC`.
    static MAYBE_LAST_PANIC: Cell<bool> = const { Cell::new(false) };
    /// The incident id the hook gave this thread's latest panic. A `Copy` value with no
    /// destructor, so that reading it never registers one (which allocates).
    static PANICKING_INCIDENT: Cell<Option<IncidentId>> = const { Cell::new(None) };
}

/// Drops a report that nobody took (a panic the application caught itself), so that the next
/// catch on this thread cannot mistake it for its own.
#[inline]
pub(crate) fn forget_stale_panic() {
    if !MAYBE_LAST_PANIC.with(Cell::get) {
        return;
    }
    // `try_with`: a thread-local's destructor may catch a panic after LAST_PANIC is gone.
    let _ = LAST_PANIC.try_with(|last| {
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
    let reported = LAST_PANIC
        .try_with(|last| last.try_borrow_mut().ok().and_then(|mut last| last.take()))
        .ok()
        .flatten();
    if let Some(report) = reported {
        return report;
    }
    let report = PanicReport::new(PanicDetails {
        incident_id: IncidentId::next(),
        message: payload_message(payload),
        location: None,
        thread: std::thread::current(),
        function,
        request: PanicRequest::current(),
        trace: crate::context::current_trace(),
    });
    write_record(&report, &Trace::Omitted);
    count(&report);
    report
}

/// Counts a recorded panic: the metrics, then the health, whose spent budget may start a
/// shutdown whose record must follow the panic's.
fn count(report: &PanicReport) {
    // A forked child inherits the locks the parent's other threads held (the health window's, a
    // metrics recorder's), which nobody will release there: it counts nothing.
    if crate::os::is_forked_child() {
        return;
    }
    let at = std::time::SystemTime::now();
    let details = report.details();
    let route = details
        .request
        .as_ref()
        .and_then(|request| request.route.as_deref());
    crate::counters::panic(details.function, route, at);
    crate::health::note_panic(details.incident_id, at);
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
    let _ = PANICKING_INCIDENT.try_with(|panicking| panicking.set(Some(incident_id)));
    // In a forked child, a lock the backtrace crate (or the reuse table) held in another thread
    // of the parent is held for ever: capturing would hang this thread.
    let forked = backtrace && crate::os::is_forked_child();
    let plan = (backtrace && !forked).then(|| {
        info.location().map_or(TracePlan::Capture, |location| {
            let location = LocationKey::new(location.file(), location.line(), location.column());
            trace_reuse().plan(location, incident_id, Instant::now())
        })
    });
    let captured = (plan == Some(TracePlan::Capture)).then(crate::backtrace::capture);
    let trace = match (plan, &captured) {
        (Some(TracePlan::Reuse { first, repeats }), _) => Trace::SameAs { first, repeats },
        (_, Some(captured)) => Trace::Full(captured),
        _ if forked => Trace::Skipped(FORKED_CHILD),
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
        function: crate::context::current_function(),
        request: PanicRequest::current(),
        trace: crate::context::current_trace(),
    });
    write_record(&report, &trace);
    count(&report);
    let stored = LAST_PANIC.try_with(|last| {
        if let Ok(mut last) = last.try_borrow_mut() {
            *last = Some(report);
        }
    });
    if stored.is_ok() {
        MAYBE_LAST_PANIC.with(|maybe| maybe.set(true));
    }
}

/// Why a panic in a forked child has no trace.
const FORKED_CHILD: &str =
    "a forked child: a lock the trace needs may be held by a parent's thread that did not survive the fork";

/// Writes `report`'s record as the hook wrote it, with `trace` as its backtrace: the record
/// writer's share of a panic's cost, for crashguard's benchmarks.
#[cfg(feature = "test-hooks")]
pub fn write_record_again(report: &PanicReport, trace: Option<&str>) {
    write_record(report, &trace.map_or(Trace::Omitted, Trace::Full));
}

/// The table that decides which panics capture a trace, sized by the installed settings.
fn trace_reuse() -> &'static TraceReuse {
    static TABLE: OnceLock<TraceReuse> = OnceLock::new();
    TABLE.get_or_init(|| {
        let settings = crate::state::settings();
        TraceReuse::new(settings.backtrace_locations, settings.backtrace_window)
    })
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
