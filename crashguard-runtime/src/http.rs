//! Answering HTTP after a panic (feature `http`): a 500 that carries the incident id and nothing
//! internal; the tower layer (feature `tower`) and axum glue (feature `axum`).
//!
//! The default answer is an [RFC 9457](https://www.rfc-editor.org/rfc/rfc9457) problem document,
//! with the incident id also in the [`INCIDENT_ID_HEADER`] header, so that a user's bug report
//! leads to the panic's record:
//!
//! ```text
//! HTTP/1.1 500 Internal Server Error
//! content-type: application/problem+json
//! cache-control: no-store
//! x-incident-id: 3f9a1c07-1
//!
//! {"type":"about:blank","title":"Internal Server Error","status":500,"detail":"The server failed to complete this request. Quote incident 3f9a1c07-1 when reporting it.","incident_id":"3f9a1c07-1"}
//! ```
//!
//! No panic message, backtrace, type name or source location is ever in it. [`Problem`] is that
//! answer before any framework, for an integration or a user's own error type to send.
//!
//! # Example
//!
//! ```
//! use crashguard::FromPanic;
//!
//! let report = crashguard::catch("demo", || panic!("password=hunter2")).unwrap_err();
//! let response: http::Response<String> = FromPanic::from_panic(&report);
//! assert_eq!(response.status(), 500);
//! assert_eq!(response.headers()["x-incident-id"], report.incident_id().to_string());
//! assert!(!response.body().contains("hunter2"));
//! ```

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Response, StatusCode};

use crate::guard::FromPanic;
use crate::panic::PanicReport;
use crate::state::IncidentId;

#[cfg(feature = "actix")]
#[cfg_attr(docsrs, doc(cfg(feature = "actix")))]
pub mod actix;
#[cfg(feature = "axum")]
mod axum_glue;
#[cfg(feature = "tower")]
mod grpc;
#[cfg(feature = "tower")]
mod layer;
#[cfg(feature = "tonic")]
mod tonic_glue;

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use axum_glue::{readyz, HttpAnswer};
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use layer::{
    CrashGuardLayer, CrashGuardService, GuardedBody, PanicAnswer, ProblemAnswer, ResponseFuture,
};

/// The response header that carries the incident id of a panic.
pub const INCIDENT_ID_HEADER: &str = "x-incident-id";

/// The content type of the default answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// crashguard's answer to a panic, before any framework: status 500, a problem+json body and
/// the incident id, and nothing else about the panic.
///
/// # Example
///
/// Answering in your own error type's `IntoResponse` while keeping the incident id header:
///
/// ```
/// use crashguard::http::Problem;
///
/// let report = crashguard::catch("demo", || panic!("db down")).unwrap_err();
/// let response: http::Response<String> = Problem::for_panic(&report).into_response();
/// assert_eq!(response.status(), 500);
/// assert_eq!(response.headers()["content-type"], "application/problem+json");
/// assert!(response.body().contains(&report.incident_id().to_string()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Problem {
    incident: IncidentId,
}

impl Problem {
    /// The answer for the panic with this incident id.
    pub fn new(incident: IncidentId) -> Problem {
        Problem { incident }
    }

    /// The answer for this panic.
    pub fn for_panic(report: &PanicReport) -> Problem {
        Problem::new(report.incident_id())
    }

    /// The incident the answer names.
    pub fn incident_id(&self) -> IncidentId {
        self.incident
    }

    /// Always 500: a panic is the server's fault.
    pub fn status(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    /// The problem+json document.
    pub fn body(&self) -> String {
        self.parts().1
    }

    /// The incident id as formatted once, and the body built from it: a storm builds one of
    /// these per request.
    pub(crate) fn parts(&self) -> (String, String) {
        use std::fmt::Write as _;
        // The id is hex and a dash: nothing in it needs escaping.
        let mut id = String::with_capacity(32);
        let _ = write!(id, "{}", self.incident);
        let mut body = String::with_capacity(256);
        for piece in [
            "{\"type\":\"about:blank\",\"title\":\"Internal Server Error\",\"status\":500,\
             \"detail\":\"The server failed to complete this request. Quote incident ",
            &id,
            " when reporting it.\",\"incident_id\":\"",
            &id,
            "\"}",
        ] {
            body.push_str(piece);
        }
        (id, body)
    }

    /// The answer as an `http` response: the status, `content-type: application/problem+json`,
    /// `cache-control: no-store` and the [`INCIDENT_ID_HEADER`].
    pub fn into_response<B: From<String>>(self) -> Response<B> {
        let (id, body) = self.parts();
        let mut response = Response::new(B::from(body));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(value) = HeaderValue::try_from(id) {
            headers.insert(INCIDENT_ID_HEADER, value);
        }
        response
    }
}

/// How a response body that panicked ends, after its record is written: an error, so that the
/// server aborts the response instead of ending it as if it were whole: what the body of the
/// tower layer and of the actix-web middleware ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PanicWhileStreaming {
    incident: IncidentId,
}

impl PanicWhileStreaming {
    pub(crate) fn new(report: &PanicReport) -> PanicWhileStreaming {
        PanicWhileStreaming {
            incident: report.incident_id(),
        }
    }

    /// The panic's incident id, as in its record.
    pub fn incident_id(&self) -> IncidentId {
        self.incident
    }
}

impl std::fmt::Display for PanicWhileStreaming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the response body panicked (incident {}); the response is cut short",
            self.incident
        )
    }
}

impl std::error::Error for PanicWhileStreaming {}

/// The default answer to a panic as an `http` response; see [`Problem`].
pub fn problem_response<B: From<String>>(report: &PanicReport) -> Response<B> {
    Problem::for_panic(report).into_response()
}

#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[diagnostic::do_not_recommend]
impl<B: From<String>> FromPanic for Response<B> {
    fn from_panic(report: &PanicReport) -> Self {
        problem_response(report)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[diagnostic::do_not_recommend]
impl FromPanic for StatusCode {
    /// A bare 500: the status has no room for the incident id, which stays in the record.
    fn from_panic(_: &PanicReport) -> Self {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}
