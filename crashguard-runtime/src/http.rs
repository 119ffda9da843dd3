//! Answering HTTP after a panic: a 500 that carries the incident id and nothing internal.
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
//! No panic message, backtrace, type name or source location is ever in it.
//!
//! # Example
//!
//! ```
//! use crashguard_runtime::{FromPanic, PanicReport};
//!
//! let report = crashguard_runtime::guard::catch("demo", || panic!("password=hunter2")).unwrap_err();
//! let response: http::Response<String> = FromPanic::from_panic(&report);
//! assert_eq!(response.status(), 500);
//! assert_eq!(response.headers()["x-incident-id"], report.incident_id().to_string());
//! assert!(!response.body().contains("hunter2"));
//! ```

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Response, StatusCode};

use crate::fallback::FromPanic;
use crate::panic::PanicReport;

/// The response header that carries the incident id of a panic.
pub const INCIDENT_ID_HEADER: &str = "x-incident-id";

/// The content type of the default answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The default answer to a panic: 500, `application/problem+json`, the incident id in the body
/// and in [`INCIDENT_ID_HEADER`].
pub fn problem_response<B: From<String>>(report: &PanicReport) -> Response<B> {
    use std::fmt::Write as _;
    let incident = report.incident_id();
    // The id is hex and a dash: nothing in it needs escaping. Written once, then copied: a
    // storm builds one of these per request.
    let mut id = String::with_capacity(32);
    let _ = write!(id, "{incident}");
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
    let mut response = Response::new(B::from(body));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::try_from(id) {
        headers.insert(INCIDENT_ID_HEADER, value);
    }
    response
}

impl<B: From<String>> FromPanic for Response<B> {
    fn from_panic(report: &PanicReport) -> Self {
        problem_response(report)
    }
}

impl FromPanic for StatusCode {
    /// A bare 500: the status has no room for the incident id, which stays in the record.
    fn from_panic(_: &PanicReport) -> Self {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// The request being served on this thread, for the records of panics while serving it.
#[cfg(feature = "tower")]
pub(crate) use request::current_request;

#[cfg(feature = "tower")]
mod request;

#[cfg(feature = "tower")]
pub use request::{CrashGuardLayer, CrashGuardService, ProblemForPanic, RequestScopeFuture};

#[cfg(feature = "axum")]
mod axum_glue;

#[cfg(feature = "axum")]
pub use axum_glue::{readyz, HttpAnswer};
