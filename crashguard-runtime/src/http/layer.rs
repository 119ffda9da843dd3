//! A tower layer that covers a whole service: panics in extractors, middleware and handlers
//! without `#[crash_guarded(http)]` get the same record and the same answer, and every panic while
//! a request is served names that request in its record.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::HeaderName;
use http::{HeaderValue, Method, Request, Response, Uri};
use tower_http::catch_panic::{CatchPanic, CatchPanicLayer, ResponseForPanic};
use tower_layer::Layer;
use tower_service::Service;

use super::Problem;
use crate::context::{RequestScope, ServedRequest};
use crate::panic::{forget_stale_panic, take_caught, PanicReport};

/// The header a request id arrives in; a constant, so that finding it does not parse a name per
/// request.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Puts crashguard around a whole tower service (an axum `Router`, a hyper service): a panic
/// anywhere in serving a request is recorded with the request's method, path and
/// `x-request-id`, and answered by the layer's [`PanicAnswer`]: crashguard's problem+json 500
/// ([`Problem`]) unless [`CrashGuardLayer::custom`] picks another.
///
/// It is tower-http's `CatchPanicLayer` with crashguard's answer, around a layer that tells the
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
///     .layer(crashguard::http::CrashGuardLayer::new());
/// ```
///
/// With an answer of your own, here a plain-text 500 that still names the incident:
///
/// ```
/// use axum::{routing::get, Router};
/// use crashguard::PanicReport;
///
/// let layer = crashguard::http::CrashGuardLayer::custom(|report: &PanicReport| {
///     http::Response::builder()
///         .status(500)
///         .body(format!("incident {}\n", report.incident_id()))
///         .unwrap()
/// });
/// let app: Router = Router::new().route("/", get(|| async { "ok" })).layer(layer);
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct CrashGuardLayer<P = ProblemAnswer> {
    answer: P,
}

impl CrashGuardLayer {
    /// The layer with crashguard's default answer.
    pub fn new() -> CrashGuardLayer {
        CrashGuardLayer::default()
    }
}

impl<P: PanicAnswer> CrashGuardLayer<P> {
    /// The layer answering panics with `answer`.
    pub fn custom(answer: P) -> CrashGuardLayer<P> {
        CrashGuardLayer { answer }
    }
}

/// How [`CrashGuardLayer`] answers a request whose handling panicked, once the panic's record is
/// written. Implemented by [`ProblemAnswer`] and by every `FnMut(&PanicReport) -> Response<B>`.
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub trait PanicAnswer: Clone {
    /// The body of the answer.
    type Body;

    /// The answer to send for the panic `report` describes. Put no more than its incident id in
    /// it: the rest is for the logs.
    fn answer(&mut self, report: &PanicReport) -> Response<Self::Body>;
}

/// crashguard's default answer: the problem+json 500 of [`Problem`].
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct ProblemAnswer;

impl PanicAnswer for ProblemAnswer {
    type Body = String;

    fn answer(&mut self, report: &PanicReport) -> Response<String> {
        Problem::for_panic(report).into_response()
    }
}

impl<F, B> PanicAnswer for F
where
    F: FnMut(&PanicReport) -> Response<B> + Clone,
{
    type Body = B;

    fn answer(&mut self, report: &PanicReport) -> Response<B> {
        self(report)
    }
}

impl<S, P: PanicAnswer> Layer<S> for CrashGuardLayer<P> {
    type Service = CatchPanic<CrashGuardService<S>, ForCatchPanic<P>>;

    fn layer(&self, inner: S) -> Self::Service {
        CatchPanicLayer::custom(ForCatchPanic(self.answer.clone()))
            .layer(CrashGuardService { inner })
    }
}

/// A [`PanicAnswer`] as tower-http's `CatchPanic` takes it: the panic's report, as the hook
/// recorded it, handed to the answer.
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
#[derive(Debug, Clone, Copy)]
pub struct ForCatchPanic<P>(P);

impl<P: PanicAnswer> ResponseForPanic for ForCatchPanic<P> {
    type ResponseBody = P::Body;

    fn response_for_panic(&mut self, payload: Box<dyn Any + Send + 'static>) -> Response<P::Body> {
        self.0.answer(&take_caught(&*payload, None))
    }
}

/// The inner half of [`CrashGuardLayer`]: makes the request being served known to the panic hook.
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
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
            forget_stale_panic();
            let _scope = RequestScope::enter(&fields);
            self.inner.call(request)
        };
        RequestScopeFuture { future, fields }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`CrashGuardService`].
    #[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
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
        forget_stale_panic();
        let _scope = RequestScope::enter(this.fields);
        this.future.poll(cx)
    }
}

/// What a panic record says about the request being served.
#[derive(Debug)]
struct RequestFields {
    method: Method,
    uri: Uri,
    request_id: Option<HeaderValue>,
}

impl ServedRequest for RequestFields {
    fn method(&self) -> &str {
        self.method.as_str()
    }

    fn path(&self) -> &str {
        self.uri.path()
    }

    fn request_id(&self) -> Option<&[u8]> {
        self.request_id.as_ref().map(HeaderValue::as_bytes)
    }
}
