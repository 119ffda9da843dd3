//! [`PanicReport`]: what crashguard knows about one panic, for fallbacks and the exit record.

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::thread::Thread;

use crate::context::TraceContext;
use crate::state::IncidentId;

/// What crashguard knows about one panic: given to fallbacks and kept for the exit record.
///
/// A pointer wide, so that a guarded call's `Result<T, PanicReport>` is no bigger than it needs.
///
/// # Example
///
/// ```
/// let report = crashguard::catch("lookup", || -> u32 { panic!("no row 7") }).unwrap_err();
/// assert_eq!(report.message(), "no row 7");
/// assert_eq!(report.function(), Some("lookup"));
/// assert!(report.summary().starts_with("panic in lookup"));
/// ```
#[derive(Debug, Clone)]
pub struct PanicReport {
    details: Arc<PanicDetails>,
}

#[derive(Debug)]
pub(crate) struct PanicDetails {
    pub(crate) incident_id: IncidentId,
    /// Borrowed for a `&'static str` payload (`panic!("literal")`): no copy per panic.
    pub(crate) message: Cow<'static, str>,
    pub(crate) location: Option<PanicLocation>,
    /// The handle rather than a copy of its name: cloning it is one atomic increment.
    pub(crate) thread: Thread,
    pub(crate) function: Option<&'static str>,
    pub(crate) request: Option<PanicRequest>,
    /// Where the panic sits in a distributed trace: the request's `traceparent`, or the current
    /// OpenTelemetry span's.
    pub(crate) trace: Option<TraceContext>,
}

impl PanicDetails {
    pub(crate) fn thread_name(&self) -> &str {
        self.thread.name().unwrap_or("<unnamed>")
    }
}

/// The request being served when a panic happened, as the integration serving it described it.
#[derive(Debug, Clone)]
pub(crate) struct PanicRequest {
    pub(crate) method: String,
    pub(crate) path: String,
    /// The route template the framework matched (`/users/{id}`), where it says.
    pub(crate) route: Option<String>,
    pub(crate) request_id: Option<String>,
}

impl PanicRequest {
    /// The request being served on this thread, if an integration is serving one.
    pub(crate) fn current() -> Option<PanicRequest> {
        crate::context::current_request(|request| {
            request.map(|request| PanicRequest {
                method: request.method().to_owned(),
                path: request.path().to_owned(),
                route: request.route().map(str::to_owned),
                request_id: request
                    .request_id()
                    .map(|id| String::from_utf8_lossy(id).into_owned()),
            })
        })
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

    pub(crate) fn new(details: PanicDetails) -> PanicReport {
        PanicReport {
            details: Arc::new(details),
        }
    }

    pub(crate) fn details(&self) -> &PanicDetails {
        &self.details
    }
}

/// Stands for a panic payload that is neither `&str` nor `String` (`panic_any(42)`).
pub const NON_STRING_PAYLOAD: &str = "Box<dyn Any> (a panic payload that is not a string)";

pub(crate) fn payload_message(payload: &(dyn Any + Send)) -> Cow<'static, str> {
    if let Some(text) = payload.downcast_ref::<&'static str>() {
        Cow::Borrowed(text)
    } else if let Some(text) = payload.downcast_ref::<String>() {
        Cow::Owned(text.clone())
    } else {
        Cow::Borrowed(NON_STRING_PAYLOAD)
    }
}

/// [`PanicReport::summary`] without the allocation or the incident.
pub(crate) struct Summary<'a>(pub(crate) &'a PanicReport);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_function_place_message_and_incident() {
        let report = PanicReport::new(PanicDetails {
            incident_id: IncidentId::next(),
            message: "boom".into(),
            location: Some(PanicLocation {
                file: "src/main.rs".into(),
                line: 4,
                column: 5,
            }),
            thread: std::thread::current(),
            function: Some("app::main"),
            request: None,
            trace: None,
        });
        assert_eq!(
            report.summary(),
            format!(
                "panic in app::main at src/main.rs:4:5: boom [incident {}]",
                report.incident_id()
            )
        );
    }
}
