//! A tower layer that covers a whole service: panics in extractors, middleware and handlers
//! without `#[crash_guarded(http)]` get the same record and the same 500, and every panic while a
//! request is served names that request in its record.

use std::any::Any;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

use http::header::HeaderName;
use http::{HeaderValue, Method, Request, Response, Uri};
use tower_http::catch_panic::{CatchPanic, CatchPanicLayer, ResponseForPanic};
use tower_layer::Layer;
use tower_service::Service;

use super::problem_response;
use crate::panic::{forget_stale_panic, take_caught};

/// The header a request id arrives in; a constant, so that finding it does not parse a name per
/// request.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Puts crashguard around a whole tower service (an axum `Router`, a hyper service): a panic
/// anywhere in serving a request is recorded with the request's method, path and
/// `x-request-id`, and answered with crashguard's 500 (see [`crate::http`]).
///
/// It is tower-http's [`CatchPanicLayer`] with crashguard's answer, around a layer that tells the
/// panic hook which request is being served. Like `CatchPanicLayer`, it catches panics in
/// `call` and in polling the response future, not in `poll_ready` nor while a response body
/// streams.
///
/// # Example
///
/// ```
/// use axum::{routing::get, Router};
///
/// let app: Router = Router::new()
///     .route("/", get(|| async { "ok" }))
///     .layer(crashguard_runtime::http::CrashGuardLayer::new());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CrashGuardLayer {
    _private: (),
}

impl CrashGuardLayer {
    /// The layer with crashguard's default answer.
    pub fn new() -> CrashGuardLayer {
        CrashGuardLayer::default()
    }
}

impl<S> Layer<S> for CrashGuardLayer {
    type Service = CatchPanic<CrashGuardService<S>, ProblemForPanic>;

    fn layer(&self, inner: S) -> Self::Service {
        CatchPanicLayer::custom(ProblemForPanic { _private: () }).layer(CrashGuardService { inner })
    }
}

/// crashguard's answer for tower-http's `CatchPanic`: the panic's report, as the hook recorded
/// it, turned into the problem+json 500.
#[derive(Debug, Clone, Copy)]
pub struct ProblemForPanic {
    _private: (),
}

impl ResponseForPanic for ProblemForPanic {
    type ResponseBody = String;

    fn response_for_panic(&mut self, payload: Box<dyn Any + Send + 'static>) -> Response<String> {
        problem_response(&take_caught(&*payload, None))
    }
}

/// The inner half of [`CrashGuardLayer`]: makes the request being served known to the panic hook.
#[derive(Debug, Clone)]
pub struct CrashGuardService<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for CrashGuardService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RequestScopeFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // Clones of these share their bytes with the request: no allocation per request.
        let fields = RequestFields {
            method: request.method().clone(),
            uri: request.uri().clone(),
            request_id: request.headers().get(REQUEST_ID).cloned(),
        };
        let future = {
            let _scope = RequestScope::enter(&fields);
            self.inner.call(request)
        };
        RequestScopeFuture { future, fields }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`CrashGuardService`].
    pub struct RequestScopeFuture<F> {
        #[pin]
        future: F,
        fields: RequestFields,
    }
}

impl<F: Future> Future for RequestScopeFuture<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _scope = RequestScope::enter(this.fields);
        this.future.poll(cx)
    }
}

/// What a panic record says about the request being served.
#[derive(Debug)]
pub(crate) struct RequestFields {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) request_id: Option<HeaderValue>,
}

thread_local! {
    static CURRENT_REQUEST: Cell<Option<NonNull<RequestFields>>> = const { Cell::new(None) };
}

/// Publishes a request's fields to this thread's panic hook while alive.
struct RequestScope {
    outer: Option<NonNull<RequestFields>>,
}

impl RequestScope {
    #[inline]
    fn enter(fields: &RequestFields) -> RequestScope {
        forget_stale_panic();
        RequestScope {
            outer: CURRENT_REQUEST.with(|current| current.replace(Some(NonNull::from(fields)))),
        }
    }
}

impl Drop for RequestScope {
    #[inline]
    fn drop(&mut self) {
        CURRENT_REQUEST.with(|current| current.set(self.outer));
    }
}

/// Runs `read` with the request being served on this thread, if any.
pub(crate) fn current_request<R>(read: impl FnOnce(Option<&RequestFields>) -> R) -> R {
    let current = CURRENT_REQUEST.with(Cell::get);
    // SAFETY: a pointer is stored only by a live `RequestScope`, which borrows the fields for
    // its whole life and removes the pointer when dropped; scopes are created and dropped on
    // this thread within one `call` or `poll`, so the fields outlive every read made under it.
    read(current.map(|fields| unsafe { fields.as_ref() }))
}
