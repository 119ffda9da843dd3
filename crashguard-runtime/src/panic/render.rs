//! A panic's record, written to one of two sinks from one list of fields: crashguard's JSON line,
//! or a `tracing` event when the application has a subscriber that takes it.

use std::fmt;

use super::report::{PanicLocation, PanicReport, PanicRequest, Summary};
use crate::context::TraceContext;
use crate::record::{self, keys, Severity};
use crate::state::IncidentId;

/// The backtrace part of a panic record.
pub(crate) enum Trace<'a> {
    /// Backtraces are off, or another hook caught the panic first.
    Omitted,
    /// This panic's own trace, rendered.
    Full(&'a str),
    /// The trace is in `first`'s record; this is the `repeats`-th panic at its location since.
    SameAs { first: IncidentId, repeats: u64 },
    /// No trace could be taken, for this reason.
    Skipped(&'static str),
}

/// The panic's message, cut so that the trace still fits in the record.
const MESSAGE_MAX_BYTES: usize = 8 * 1024;
/// The human `message` field repeats the panic message; keep that copy short.
const SUMMARY_MAX_BYTES: usize = 1024;
/// A trace through `tracing` has no record limit to cut it: cap it so the subscriber's line
/// stays below the 16 KiB at which container runtimes split lines.
const TRACING_TRACE_MAX_BYTES: usize = 6 * 1024;

/// Every field of a panic record, the one list both sinks write.
struct PanicFields<'a> {
    summary: Summary<'a>,
    incident_id: IncidentId,
    thread_name: &'a str,
    thread_id: i32,
    function: Option<&'static str>,
    location: Option<&'a PanicLocation>,
    request: Option<&'a PanicRequest>,
    trace_context: Option<&'a TraceContext>,
    message: &'a str,
    trace: &'a Trace<'a>,
}

impl<'a> PanicFields<'a> {
    fn of(report: &'a PanicReport, trace: &'a Trace<'a>) -> PanicFields<'a> {
        let details = report.details();
        PanicFields {
            summary: Summary(report),
            incident_id: details.incident_id,
            thread_name: details.thread_name(),
            thread_id: crate::os::current_thread_id(),
            function: details.function,
            location: details.location.as_ref(),
            request: details.request.as_ref(),
            trace_context: details.trace.as_ref(),
            message: &details.message,
            trace,
        }
    }
}

/// Writes `report`'s record, with `trace` as its backtrace.
pub(crate) fn write_record(report: &PanicReport, trace: &Trace<'_>) {
    let fields = PanicFields::of(report, trace);
    if tracing_wants_it() {
        emit_tracing_event(&fields);
    } else {
        write_json(&fields);
    }
}

fn write_json(fields: &PanicFields<'_>) {
    record::emit(
        "panic",
        Severity::Error,
        record::Wait::Patiently,
        |record| fill_json(fields, record),
    );
}

fn fill_json(fields: &PanicFields<'_>, record: &mut record::Record<'_>) {
    record.display(keys::MESSAGE, &fields.summary, SUMMARY_MAX_BYTES);
    record.display(keys::INCIDENT_ID, fields.incident_id, usize::MAX);
    record.str(keys::THREAD_NAME, fields.thread_name);
    record.i64(keys::THREAD_ID, i64::from(fields.thread_id));
    if let Some(function) = fields.function {
        record.str(keys::CODE_FUNCTION_NAME, function);
    }
    if let Some(location) = fields.location {
        record.str(keys::CODE_FILE_PATH, &location.file);
        record.u64(keys::CODE_LINE_NUMBER, u64::from(location.line));
        record.u64(keys::CODE_COLUMN_NUMBER, u64::from(location.column));
    }
    if let Some(request) = fields.request {
        record.str(keys::HTTP_REQUEST_METHOD, &request.method);
        record.str_max(keys::URL_PATH, &request.path, 1024);
        if let Some(route) = &request.route {
            record.str_max(keys::HTTP_ROUTE, route, 1024);
        }
        if let Some(request_id) = &request.request_id {
            record.str_max(keys::HTTP_REQUEST_ID, request_id, 256);
        }
    }
    if let Some(trace) = fields.trace_context {
        record.str(keys::TRACE_ID, trace.trace_id());
        record.str(keys::SPAN_ID, trace.span_id());
        record.str(keys::TRACE_FLAGS, trace.trace_flags());
    }
    record.str(keys::EXCEPTION_TYPE, "panic");
    record.str_max(keys::EXCEPTION_MESSAGE, fields.message, MESSAGE_MAX_BYTES);
    match fields.trace {
        Trace::Omitted => {}
        Trace::Full(trace) => record.str(keys::EXCEPTION_STACKTRACE, trace),
        Trace::SameAs { first, repeats } => {
            record.display(keys::EXCEPTION_STACKTRACE_REF, first, usize::MAX);
            record.u64(keys::EXCEPTION_REPEATS, *repeats);
        }
        Trace::Skipped(why) => record.str(keys::EXCEPTION_STACKTRACE_CUT, why),
    }
}

fn tracing_wants_it() -> bool {
    tracing::dispatcher::get_default(|dispatch| !dispatch.is::<tracing::subscriber::NoSubscriber>())
        && tracing::enabled!(target: "crashguard", tracing::Level::ERROR)
}

/// The same fields as [`write_json`], as a `tracing` event. `tracing` needs its field names
/// written out here; a test checks that they are the JSON record's keys.
fn emit_tracing_event(fields: &PanicFields<'_>) {
    let (full, same_as, repeats, cut) = match fields.trace {
        Trace::Omitted => (None, None, None, None),
        Trace::Full(trace) => (Some(*trace), None, None, None),
        Trace::SameAs { first, repeats } => (None, Some(first), Some(*repeats), None),
        Trace::Skipped(why) => (None, None, None, Some(*why)),
    };
    let (location, request) = (fields.location, fields.request);
    let trace = fields.trace_context;
    tracing::error!(
        target: "crashguard",
        event = "panic",
        incident.id = %fields.incident_id,
        thread.name = fields.thread_name,
        thread.id = fields.thread_id,
        code.function.name = fields.function,
        code.file.path = location.map(|l| l.file.as_str()),
        code.line.number = location.map(|l| l.line),
        code.column.number = location.map(|l| l.column),
        http.request.method = request.map(|r| r.method.as_str()),
        url.path = request.map(|r| r.path.as_str()),
        http.route = request.and_then(|r| r.route.as_deref()),
        "http.request.header.x-request-id" = request.and_then(|r| r.request_id.as_deref()),
        trace_id = trace.map(TraceContext::trace_id),
        span_id = trace.map(TraceContext::span_id),
        trace_flags = trace.map(TraceContext::trace_flags),
        exception.r#type = "panic",
        exception.message = %Capped(fields.message, MESSAGE_MAX_BYTES),
        exception.stacktrace = full.map(|trace| Capped(trace, TRACING_TRACE_MAX_BYTES)).map(tracing::field::display),
        exception.stacktrace_ref = same_as.map(tracing::field::display),
        exception.repeats = repeats,
        exception.stacktrace_cut = cut,
        "{}",
        fields.summary,
    );
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::panic::report::{PanicDetails, PanicLocation};

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

    /// Collects the field names of every event.
    struct FieldNames(std::sync::Mutex<Vec<String>>);

    impl tracing::Subscriber for FieldNames {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            struct Names<'a>(&'a mut Vec<String>);
            impl tracing::field::Visit for Names<'_> {
                fn record_debug(&mut self, field: &tracing::field::Field, _: &dyn fmt::Debug) {
                    self.0.push(field.name().to_owned());
                }
            }
            event.record(&mut Names(&mut self.0.lock().unwrap()));
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[test]
    fn the_tracing_event_has_the_json_records_keys() {
        let report = PanicReport::new(PanicDetails {
            incident_id: IncidentId::next(),
            message: "boom".into(),
            location: Some(PanicLocation {
                file: "src/lib.rs".into(),
                line: 1,
                column: 2,
            }),
            thread: std::thread::current(),
            function: Some("app::handler"),
            request: Some(PanicRequest {
                method: "GET".into(),
                path: "/users/7".into(),
                route: Some("/users/{id}".into()),
                request_id: Some("r-1".into()),
            }),
            trace: crate::context::TraceContext::parse(
                b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        });
        for trace in [
            Trace::Full("0: app::handler"),
            Trace::SameAs {
                first: IncidentId::next(),
                repeats: 2,
            },
            Trace::Skipped("forked"),
        ] {
            let fields = PanicFields::of(&report, &trace);
            let subscriber = FieldNames(Default::default());
            let names = tracing::subscriber::with_default(subscriber, || {
                emit_tracing_event(&fields);
                tracing::dispatcher::get_default(|dispatch| {
                    let names = &dispatch.downcast_ref::<FieldNames>().unwrap().0;
                    std::mem::take(&mut *names.lock().unwrap())
                })
            });
            let mut record = record::Record::new("panic", Severity::Error);
            fill_json(&fields, &mut record);
            let line = record.finish();
            let json: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(line).unwrap();
            let common = [keys::TIME, keys::SEVERITY, keys::EVENT, keys::PROCESS_PID];
            let mut json: Vec<String> = json
                .keys()
                .filter(|key| !common.contains(&key.as_str()) && *key != keys::MESSAGE)
                .cloned()
                .collect();
            json.sort();
            let mut traced: Vec<String> = names
                .into_iter()
                .filter(|name| name != "message" && name != "event")
                .collect();
            traced.sort();
            assert_eq!(traced, json);
        }
    }
}
