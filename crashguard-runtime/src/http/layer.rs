//! crashguard's own tower layer: a panic anywhere in serving a request (`poll_ready`, `call`,
//! the response future, the response body) is caught, recorded with the request's fields, and
//! answered: an HTTP problem+json 500, or, to a gRPC request, `grpc-status: 13`.

use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::Problem;
use crate::guard::{catch_serving, catch_unnamed};
use crate::panic::PanicReport;

mod body;
mod request;
mod response;

pub use body::GuardedBody;
use request::RequestFields;
pub use response::ResponseFuture;

/// Puts crashguard around a whole tower service (an axum `Router`, a tonic server, a hyper
/// service): a panic anywhere in serving a request is recorded with the request's method, path,
/// route, `x-request-id` and trace context, and answered by the layer's [`PanicAnswer`]:
/// crashguard's problem+json 500 ([`Problem`]) unless [`CrashGuardLayer::custom`] picks another.
///
/// It catches panics
///
/// - in `call` and in polling the response future: the request is answered (a 500);
/// - in `poll_ready`: the service reports itself ready, and the request it is then given is
///   answered without reaching the inner service;
/// - while the response body is polled, after the status went out: the body ends with a
///   [`PanicWhileStreaming`](super::PanicWhileStreaming) error, so that the server aborts the response (HTTP/1.1 closes the
///   connection before the last chunk, HTTP/2 resets the stream) and the client cannot take a
///   cut body for a whole one. A gRPC response ends instead with trailers that say
///   `grpc-status: 13`.
///
/// A request whose `content-type` is `application/grpc…` is answered as gRPC clients expect:
/// HTTP 200 with `grpc-status: 13` (INTERNAL), a `grpc-message` that names only the incident, and
/// the `x-incident-id` header, whatever the layer's answer (a custom answer is shaped for HTTP
/// clients, which a gRPC client cannot read).
///
/// Nothing is allocated or boxed per request while nothing panics.
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

/// How [`CrashGuardLayer`] answers an HTTP request whose handling panicked, once the panic's
/// record is written. Implemented by [`ProblemAnswer`] and by every
/// `FnMut(&PanicReport) -> Response<B>` that is `Clone`.
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
    type Service = CrashGuardService<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        CrashGuardService {
            inner,
            answer: self.answer.clone(),
            ready_panicked: None,
        }
    }
}

/// The service of [`CrashGuardLayer`].
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
#[derive(Debug, Clone)]
pub struct CrashGuardService<S, P = ProblemAnswer> {
    inner: S,
    answer: P,
    /// `poll_ready` panicked: the next request is answered with this panic's report.
    ready_panicked: Option<PanicReport>,
}

impl<S, P, B, ResponseBody> Service<Request<B>> for CrashGuardService<S, P>
where
    S: Service<Request<B>, Response = Response<ResponseBody>>,
    P: PanicAnswer,
{
    type Response = Response<GuardedBody<ResponseBody, P::Body>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, P>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.ready_panicked.is_some() {
            return Poll::Ready(Ok(()));
        }
        match catch_unnamed(|| self.inner.poll_ready(cx)) {
            Ok(ready) => ready,
            Err(report) => {
                self.ready_panicked = Some(report);
                Poll::Ready(Ok(()))
            }
        }
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let fields = RequestFields::of(&request);
        let answer = self.answer.clone();
        if let Some(report) = self.ready_panicked.take() {
            return ResponseFuture::answered(report, fields, answer);
        }
        match catch_serving(&fields, || self.inner.call(request)) {
            Ok(future) => ResponseFuture::running(future, fields, answer),
            Err(report) => ResponseFuture::answered(report, fields, answer),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::Future;

    use super::*;

    /// A service that is never ready: its `poll_ready` panics.
    struct PanicsWhenPolledForReadiness;

    impl Service<Request<()>> for PanicsWhenPolledForReadiness {
        type Response = Response<String>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<String>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            panic!("the pool is in a state it never expected")
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            unreachable!("never ready, so never called")
        }
    }

    /// A service whose every call panics.
    struct PanicsWhenCalled;

    impl Service<Request<()>> for PanicsWhenCalled {
        type Response = Response<String>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<String>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            panic!("the handler broke")
        }
    }

    #[test]
    fn a_custom_answer_that_panics_too_gives_way_to_a_bare_500_with_the_incident() {
        use http_body::Body as _;
        let answer = |_: &PanicReport| -> Response<String> { panic!("the answer broke too") };
        let mut service = CrashGuardLayer::custom(answer).layer(PanicsWhenCalled);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(matches!(service.poll_ready(&mut cx), Poll::Ready(Ok(()))));
        let mut answered = std::pin::pin!(service.call(Request::new(())));
        let Poll::Ready(Ok(response)) = answered.as_mut().poll(&mut cx) else {
            panic!("the answer is ready at once");
        };
        assert_eq!(response.status(), 500);
        assert!(response.headers().contains_key("x-incident-id"));
        assert!(response.body().is_end_stream(), "no body");
    }

    #[test]
    fn a_panic_in_poll_ready_answers_the_next_request_without_calling_the_service() {
        let mut service = CrashGuardLayer::new().layer(PanicsWhenPolledForReadiness);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(matches!(service.poll_ready(&mut cx), Poll::Ready(Ok(()))));
        let mut answer = std::pin::pin!(service.call(Request::new(())));
        let Poll::Ready(Ok(response)) = answer.as_mut().poll(&mut cx) else {
            panic!("the answer is ready at once");
        };
        assert_eq!(response.status(), 500);
        let incident = response.headers()["x-incident-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(!incident.is_empty());
        // The next readiness poll asks the inner service again.
        let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            service.poll_ready(&mut cx).is_ready()
        }));
        assert_eq!(again.ok(), Some(true), "caught again, ready again");
    }
}
