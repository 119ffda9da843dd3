//! Running a function or a future so that a panic inside it comes back as a [`PanicReport`].
//!
//! The hook has already written the panic's record by the time the panic is caught; catching
//! only hands the same report (same incident id) to whoever decides what happens next.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::panic::{take_caught, GuardedScope, PanicReport};

/// Runs `body`, naming `function` in the records of panics inside it.
#[inline]
pub fn catch<T>(function: &'static str, body: impl FnOnce() -> T) -> Result<T, PanicReport> {
    let _scope = GuardedScope::enter(function);
    // Unwind safety is the caller's business: a caught panic ends the guarded call, whose state
    // is not looked at again.
    catch_unwind(AssertUnwindSafe(body)).map_err(|payload| take_caught(&*payload, Some(function)))
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

/// Wraps `body` so that a panic in any of its polls resolves it to `Err(PanicReport)`.
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
