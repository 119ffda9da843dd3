//! What a guarded function returns when it panicked: [`FromPanic`].

use crate::panic::PanicReport;

/// A value that can stand in for a function's result after a panic, built from the panic's
/// report. `#[crash_guarded(http)]` returns `FromPanic::from_panic(&report)` when the handler
/// panics, so the handler's return type must implement it.
///
/// crashguard implements it for `Result<T, E>` whose `E` implements it, and, with the `http`
/// feature, for `http::Response<B>` and `http::StatusCode` (a 500 that carries the incident id
/// and nothing else), and with the `axum` feature for axum's `ErrorResponse`. Implement it for
/// your own error type to keep your handlers' signatures:
///
/// ```
/// use crashguard_runtime::{FromPanic, IncidentId, PanicReport};
///
/// #[derive(Debug)]
/// enum ApiError {
///     NotFound,
///     Internal { incident: IncidentId },
/// }
///
/// impl FromPanic for ApiError {
///     fn from_panic(report: &PanicReport) -> Self {
///         // Never put `report.message()` in what the client sees.
///         ApiError::Internal { incident: report.incident_id() }
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot carry the answer to a panic",
    label = "`#[crash_guarded(http)]` must turn a panic into this type",
    note = "return `impl IntoResponse`, `Response`, `StatusCode`, or `Result<T, E>` whose `E` implements `crashguard::FromPanic`",
    note = "or implement `crashguard::FromPanic` for your own type, or pick the answer with `#[crash_guarded(fallback = path::to::function)]`"
)]
pub trait FromPanic {
    /// The value to return in place of the panicked call's.
    fn from_panic(report: &PanicReport) -> Self;
}

impl<T, E: FromPanic> FromPanic for Result<T, E> {
    fn from_panic(report: &PanicReport) -> Self {
        Err(E::from_panic(report))
    }
}
