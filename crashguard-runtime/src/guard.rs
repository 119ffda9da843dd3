//! Running a function or a future so that a panic inside it comes back as a [`PanicReport`], and
//! [`FromPanic`], what a guarded function returns instead.
//!
//! The hook has already written the panic's record by the time the panic is caught; catching
//! only hands the same report (same incident id) to whoever decides what happens next.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::context::{FunctionScope, RequestScope, ServedRequest};
use crate::panic::{forget_stale_panic, take_caught, PanicReport};

/// Runs `body`, naming `function` in the records of panics inside it; a panic comes back as its
/// report, after the hook wrote its record. This is what `#[crash_guarded(fallback = f)]` does
/// with a sync function.
///
/// # Example
///
/// ```
/// let parsed = crashguard::catch("parse_port", || "80a".parse::<u16>().unwrap());
/// let report = parsed.unwrap_err();
/// assert_eq!(report.function(), Some("parse_port"));
/// assert!(report.message().contains("InvalidDigit"));
/// ```
#[inline]
pub fn catch<T>(function: &'static str, body: impl FnOnce() -> T) -> Result<T, PanicReport> {
    forget_stale_panic();
    let _scope = FunctionScope::enter(function);
    // Unwind safety is the caller's business: a caught panic ends the guarded call, whose state
    // is not looked at again.
    catch_unwind(AssertUnwindSafe(body)).map_err(|payload| take_caught(&*payload, Some(function)))
}

/// Runs `run` with `request` as the request being served on this thread: a panic comes back as
/// its report, recorded with the request's fields. What every integration serving requests does
/// around each step of serving one.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
#[inline]
pub(crate) fn catch_serving<R>(
    request: &(dyn ServedRequest + 'static),
    run: impl FnOnce() -> R,
) -> Result<R, PanicReport> {
    let _scope = RequestScope::enter(request);
    catch_unnamed(run)
}

/// Runs `run`, a panic in which comes back as its report; no function or request is named
/// beyond what is already on this thread.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
#[inline]
pub(crate) fn catch_unnamed<R>(run: impl FnOnce() -> R) -> Result<R, PanicReport> {
    forget_stale_panic();
    catch_unwind(AssertUnwindSafe(run)).map_err(|payload| take_caught(&*payload, None))
}

pin_project_lite::pin_project! {
    /// A future whose panics, in any poll, end it with a [`PanicReport`]. Made by
    /// [`catch_future`]; it is the body's future plus one name, with no allocation.
    #[must_use = "futures do nothing unless polled"]
    pub struct CatchPanic<F> {
        #[pin]
        body: F,
        function: &'static str,
    }
}

/// Wraps `body` so that a panic in any of its polls resolves it to `Err(PanicReport)`. This is
/// what `#[crash_guarded(fallback = f)]` does with an `async fn`.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let answer = crashguard::catch_future("lookup", async {
///     tokio::task::yield_now().await;
///     panic!("no row 7")
/// })
/// .await;
/// assert_eq!(answer.unwrap_err().message(), "no row 7");
/// # });
/// ```
#[inline]
pub fn catch_future<F: Future>(function: &'static str, body: F) -> CatchPanic<F> {
    CatchPanic { body, function }
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, PanicReport>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let function = *this.function;
        let body = this.body;
        match catch(function, || body.poll(cx)) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(report) => Poll::Ready(Err(report)),
        }
    }
}

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
/// use crashguard::{FromPanic, IncidentId, PanicReport};
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

// The impls of crashguard are not recommended: the message's notes name the return types that
// work, in the words a handler is written with, rather than a list of impls and their files.
#[diagnostic::do_not_recommend]
impl<T, E: FromPanic> FromPanic for Result<T, E> {
    fn from_panic(report: &PanicReport) -> Self {
        Err(E::from_panic(report))
    }
}
