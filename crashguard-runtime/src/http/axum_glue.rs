//! axum glue: handlers returning `impl IntoResponse`, and axum's `ErrorResponse`.

use axum_core::response::{ErrorResponse, IntoResponse, Response};
use http::StatusCode;

use super::problem_response;
use crate::guard::FromPanic;
use crate::panic::PanicReport;
use crate::shutdown::Readiness;

/// What a `#[crash_guarded(http)]` handler declared `-> impl IntoResponse` returns: its own
/// answer, or crashguard's 500 after a panic. One type, so the signature stays as written.
/// Generated code names it; it is not for users.
#[doc(hidden)]
#[derive(Debug)]
pub enum HttpAnswer<T> {
    /// The handler finished.
    Completed(T),
    /// The handler panicked; this is the answer to send.
    Panicked(Response),
}

impl<T: IntoResponse> IntoResponse for HttpAnswer<T> {
    #[inline]
    fn into_response(self) -> Response {
        match self {
            HttpAnswer::Completed(answer) => answer.into_response(),
            HttpAnswer::Panicked(response) => response,
        }
    }
}

#[diagnostic::do_not_recommend]
impl<T> FromPanic for HttpAnswer<T> {
    fn from_panic(report: &PanicReport) -> Self {
        HttpAnswer::Panicked(problem_response(report))
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
#[diagnostic::do_not_recommend]
impl FromPanic for ErrorResponse {
    fn from_panic(report: &PanicReport) -> Self {
        ErrorResponse::from(problem_response::<axum_core::body::Body>(report))
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
/// An axum handler for a readiness probe: 200 `ready` while [`is_ready`](crate::is_ready), else
/// 503 with the reason ([`Readiness`](crate::Readiness)): `shutting down` once shutdown starts, so
/// Kubernetes stops sending new requests while in-flight ones finish, or the spent
/// [panic budget](crate::Config::panic_budget), so that a pod that keeps panicking is taken out
/// of its Service.
///
/// ```
/// use axum::{routing::get, Router};
///
/// let app: Router = Router::new().route("/readyz", get(crashguard::http::readyz));
/// ```
pub async fn readyz() -> (StatusCode, String) {
    match crate::shutdown::readiness() {
        Readiness::Ready => (StatusCode::OK, "ready\n".to_owned()),
        not_ready => (StatusCode::SERVICE_UNAVAILABLE, format!("{not_ready}\n")),
    }
}
