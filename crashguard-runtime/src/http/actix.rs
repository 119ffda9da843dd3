//! actix-web glue (feature `actix`): answers for handlers under `#[crash_guarded(http)]`, and
//! [`CrashGuard`], a middleware that puts crashguard around a whole `App`.
//!
//! Both answer a panic as the tower layer does: crashguard's problem+json 500 ([`Problem`]) with
//! the `x-incident-id` header, and a record naming the request's method, path, `x-request-id`
//! and trace context.
//!
//! # Example
//!
//! ```
//! use actix_web::{web, App, HttpResponse, Responder};
//! use crashguard::crash_guarded;
//!
//! #[crash_guarded(http)]
//! async fn price(item: web::Path<String>) -> impl Responder {
//!     let cents: u32 = item.parse().unwrap(); // panics on bad input
//!     HttpResponse::Ok().body(cents.to_string())
//! }
//!
//! let app = App::new()
//!     .wrap(crashguard::http::actix::CrashGuard::new())
//!     .route("/price/{item}", web::get().to(price));
//! ```

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::{Either, HttpResponse, ResponseError};

use super::{Problem, INCIDENT_ID_HEADER, PROBLEM_JSON};
use crate::guard::{catch_serving, catch_unnamed, FromPanic};
use crate::panic::PanicReport;
use crate::state::IncidentId;

mod body;
mod request;

pub use body::GuardedBody;
use request::RequestFields;

/// crashguard's answer to a panic as an actix-web response: the [`Problem`] 500.
fn problem_response(incident: IncidentId) -> HttpResponse {
    let (id, body) = Problem::new(incident).parts();
    HttpResponse::InternalServerError()
        .insert_header((CONTENT_TYPE, PROBLEM_JSON))
        .insert_header((CACHE_CONTROL, "no-store"))
        .insert_header((INCIDENT_ID_HEADER, id))
        .body(body)
}

#[cfg_attr(docsrs, doc(cfg(feature = "actix")))]
#[diagnostic::do_not_recommend]
impl FromPanic for HttpResponse {
    /// crashguard's problem+json 500.
    fn from_panic(report: &PanicReport) -> Self {
        problem_response(report.incident_id())
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "actix")))]
#[diagnostic::do_not_recommend]
impl FromPanic for actix_web::Error {
    /// A [`Panicked`] error, which actix-web answers with crashguard's problem+json 500.
    fn from_panic(report: &PanicReport) -> Self {
        Panicked::new(report, problem_response(report.incident_id())).into()
    }
}

/// What a `#[crash_guarded(http)]` handler declared `-> impl Responder` returns: its own answer,
/// or crashguard's 500 after a panic. Generated code names it; it is not for users.
#[doc(hidden)]
pub type ActixAnswer<T> = Either<T, HttpResponse>;

#[diagnostic::do_not_recommend]
impl<T> FromPanic for Either<T, HttpResponse> {
    fn from_panic(report: &PanicReport) -> Self {
        Either::Right(problem_response(report.incident_id()))
    }
}

/// The actix-web error that answers a panic: what [`CrashGuard`] returns for a request whose
/// handler panicked, and what `FromPanic for actix_web::Error` makes. Its response is the
/// middleware's answer; its `Display` names only the incident, so that a logger printing errors
/// (actix-web's `Logger`) prints nothing of the panic.
#[cfg_attr(docsrs, doc(cfg(feature = "actix")))]
pub struct Panicked {
    incident: IncidentId,
    /// The answer's status, for whoever asks the error (a logger, a tracing middleware).
    status: StatusCode,
    /// Taken by the first `error_response`; later ones build the default answer again.
    response: RefCell<Option<HttpResponse>>,
}

impl Panicked {
    fn new(report: &PanicReport, response: HttpResponse) -> Panicked {
        Panicked {
            incident: report.incident_id(),
            status: response.status(),
            response: RefCell::new(Some(response)),
        }
    }

    /// The panic's incident id, as in its record.
    pub fn incident_id(&self) -> IncidentId {
        self.incident
    }
}

impl fmt::Debug for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Panicked")
            .field("incident", &self.incident)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the request's handler panicked (incident {})",
            self.incident
        )
    }
}

impl ResponseError for Panicked {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        match self.response.borrow_mut().take() {
            Some(response) => response,
            None => problem_response(self.incident),
        }
    }
}

/// The answer [`CrashGuard::new`] gives: crashguard's problem+json 500.
pub type DefaultAnswer = fn(&PanicReport) -> HttpResponse;

/// Puts crashguard around an actix-web `App` (or a scope or resource): a panic while a request is
/// served (in a handler, an inner middleware, or while the response body streams) is recorded
/// with the request's method, path, `x-request-id` and trace context, and answered with
/// crashguard's problem+json 500, or the answer given to [`CrashGuard::custom`].
///
/// The answer travels as a [`Panicked`] error, which actix-web turns into the response, so
/// middlewares wrapped outside this one see an error, as for any failed request. A panic while
/// the body streams, after the status went out, ends the body with a
/// [`PanicWhileStreaming`](super::PanicWhileStreaming) error, and actix-web closes the connection
/// before the body's end, so the client cannot take a cut body for a whole one.
///
/// The record has no route template: the middleware runs before actix-web's router matches one.
///
/// # Example
///
/// ```
/// use actix_web::{web, App, HttpResponse};
/// use crashguard::PanicReport;
///
/// let app = App::new()
///     .wrap(crashguard::http::actix::CrashGuard::custom(|report: &PanicReport| {
///         HttpResponse::InternalServerError().body(format!("incident {}\n", report.incident_id()))
///     }))
///     .route("/", web::get().to(|| async { "ok" }));
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "actix")))]
#[derive(Debug, Clone)]
pub struct CrashGuard<A = DefaultAnswer> {
    answer: Rc<A>,
}

impl CrashGuard {
    /// The middleware with crashguard's default answer.
    pub fn new() -> CrashGuard {
        CrashGuard {
            answer: Rc::new(|report: &PanicReport| problem_response(report.incident_id())),
        }
    }
}

impl Default for CrashGuard {
    fn default() -> Self {
        CrashGuard::new()
    }
}

impl<A: Fn(&PanicReport) -> HttpResponse> CrashGuard<A> {
    /// The middleware answering panics with `answer`. Put no more than the report's incident id
    /// in what it sends: the rest is for the logs.
    pub fn custom(answer: A) -> CrashGuard<A> {
        CrashGuard {
            answer: Rc::new(answer),
        }
    }
}

impl<S, B, A> Transform<S, ServiceRequest> for CrashGuard<A>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
    A: Fn(&PanicReport) -> HttpResponse,
{
    type Response = ServiceResponse<GuardedBody<B>>;
    type Error = actix_web::Error;
    type Transform = CrashGuardMiddleware<S, A>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(CrashGuardMiddleware {
            service,
            answer: Rc::clone(&self.answer),
            ready_panicked: Cell::new(None),
        }))
    }
}

/// The service [`CrashGuard`] wraps around the `App`'s.
#[cfg_attr(docsrs, doc(cfg(feature = "actix")))]
pub struct CrashGuardMiddleware<S, A = DefaultAnswer> {
    service: S,
    answer: Rc<A>,
    /// `poll_ready` panicked: the next request is answered with this panic's report.
    ready_panicked: Cell<Option<PanicReport>>,
}

impl<S, B, A> Service<ServiceRequest> for CrashGuardMiddleware<S, A>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
    A: Fn(&PanicReport) -> HttpResponse,
{
    type Response = ServiceResponse<GuardedBody<B>>;
    type Error = actix_web::Error;
    type Future = ResponseFuture<S::Future, A>;

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let panicked = self.ready_panicked.take();
        if panicked.is_some() {
            self.ready_panicked.set(panicked);
            return Poll::Ready(Ok(()));
        }
        match catch_unnamed(|| self.service.poll_ready(cx)) {
            Ok(ready) => ready,
            Err(report) => {
                self.ready_panicked.set(Some(report));
                Poll::Ready(Ok(()))
            }
        }
    }

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let fields = RequestFields::of(&request);
        let answer = Rc::clone(&self.answer);
        if let Some(report) = self.ready_panicked.take() {
            return ResponseFuture::answered(report, fields, answer);
        }
        match catch_serving(&fields, || self.service.call(request)) {
            Ok(future) => ResponseFuture {
                future: Some(future),
                panicked: None,
                fields: Some(fields),
                answer,
            },
            Err(report) => ResponseFuture::answered(report, fields, answer),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`CrashGuardMiddleware`].
    #[cfg_attr(docsrs, doc(cfg(feature = "actix")))]
    pub struct ResponseFuture<F, A> {
        // `None` once a panic was answered instead.
        #[pin]
        future: Option<F>,
        // A panic in `poll_ready` or `call`, answered at the first poll.
        panicked: Option<PanicReport>,
        // Moved into the response body, which names the request too.
        fields: Option<RequestFields>,
        answer: Rc<A>,
    }
}

impl<F, A> ResponseFuture<F, A> {
    fn answered(report: PanicReport, fields: RequestFields, answer: Rc<A>) -> Self {
        ResponseFuture {
            future: None,
            panicked: Some(report),
            fields: Some(fields),
            answer,
        }
    }
}

impl<F, B, A> Future for ResponseFuture<F, A>
where
    F: Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
    A: Fn(&PanicReport) -> HttpResponse,
{
    type Output = Result<ServiceResponse<GuardedBody<B>>, actix_web::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // A custom answer that panics as well (its own record is written) gives way to
        // crashguard's.
        let answer = |report: &PanicReport| {
            let response = catch_unnamed(|| (this.answer)(report))
                .unwrap_or_else(|_| problem_response(report.incident_id()));
            Panicked::new(report, response).into()
        };
        if let Some(report) = this.panicked.take() {
            return Poll::Ready(Err(answer(&report)));
        }
        let (Some(future), Some(fields)) =
            (this.future.as_mut().as_pin_mut(), this.fields.as_ref())
        else {
            panic!("a crashguard response future was polled after it completed");
        };
        match catch_serving(fields, || future.poll(cx)) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(Ok(response))) => match this.fields.take() {
                Some(fields) => Poll::Ready(Ok(
                    response.map_body(|_, body| GuardedBody::streaming(body, fields))
                )),
                None => unreachable!("the fields are taken only here"),
            },
            Ok(Poll::Ready(Err(error))) => Poll::Ready(Err(error)),
            Err(report) => {
                // The inner future is in no state to be polled again.
                this.future.set(None);
                Poll::Ready(Err(answer(&report)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future as _;

    use actix_web::test::TestRequest;

    use super::*;

    /// A service whose first `poll_ready` panics, and whose calls panic when asked to.
    struct Breaks {
        polls: Cell<u32>,
    }

    impl Service<ServiceRequest> for Breaks {
        type Response = ServiceResponse;
        type Error = actix_web::Error;
        type Future = Ready<Result<ServiceResponse, actix_web::Error>>;

        fn poll_ready(&self, _: &mut Context<'_>) -> Poll<Result<(), actix_web::Error>> {
            self.polls.set(self.polls.get() + 1);
            if self.polls.get() == 1 {
                panic!("the pool is in a state it never expected");
            }
            Poll::Ready(Ok(()))
        }

        fn call(&self, request: ServiceRequest) -> Self::Future {
            if request.path() == "/boom" {
                panic!("the handler broke");
            }
            ready(Ok(request.into_response(HttpResponse::Ok().finish())))
        }
    }

    /// The middleware around [`Breaks`], with `guard`'s answer.
    fn guarded<A>(guard: CrashGuard<A>) -> CrashGuardMiddleware<Breaks, A>
    where
        A: Fn(&PanicReport) -> HttpResponse,
    {
        let service = Breaks {
            polls: Cell::new(0),
        };
        match Transform::new_transform(&guard, service).into_inner() {
            Ok(middleware) => middleware,
            Err(()) => unreachable!("the transform cannot fail"),
        }
    }

    /// What the middleware answered `path` with: the status and the incident header, if any.
    fn answer<A>(middleware: &CrashGuardMiddleware<Breaks, A>, path: &str) -> (u16, Option<String>)
    where
        A: Fn(&PanicReport) -> HttpResponse,
    {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(matches!(
            middleware.poll_ready(&mut cx),
            Poll::Ready(Ok(()))
        ));
        let request = TestRequest::with_uri(path).to_srv_request();
        let mut future = std::pin::pin!(middleware.call(request));
        let Poll::Ready(answered) = future.as_mut().poll(&mut cx) else {
            panic!("the answer is ready at once");
        };
        let response = match answered {
            Ok(response) => response.into_parts().1.map_into_boxed_body(),
            Err(error) => error.error_response(),
        };
        let incident = response
            .headers()
            .get(INCIDENT_ID_HEADER)
            .map(|id| id.to_str().unwrap().to_owned());
        (response.status().as_u16(), incident)
    }

    #[test]
    fn a_panic_in_poll_ready_answers_the_next_request_and_the_service_recovers() {
        let middleware = guarded(CrashGuard::new());
        let (status, incident) = answer(&middleware, "/ok");
        assert_eq!(status, 500);
        assert!(incident.is_some());
        assert_eq!(answer(&middleware, "/ok"), (200, None), "ready again");
    }

    #[test]
    fn a_custom_answer_that_panics_too_gives_way_to_crashguards() {
        let middleware = guarded(CrashGuard::custom(|_: &PanicReport| -> HttpResponse {
            panic!("the answer broke too")
        }));
        let _ = answer(&middleware, "/ok");
        let (status, incident) = answer(&middleware, "/boom");
        assert_eq!(status, 500);
        assert!(incident.is_some(), "crashguard's answer names the incident");
    }

    #[test]
    fn the_error_reports_the_status_of_the_answer_it_carries() {
        let report = crate::catch("demo", || panic!("the handler broke")).unwrap_err();
        let answered = Panicked::new(&report, HttpResponse::ServiceUnavailable().finish());
        assert_eq!(answered.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answered.error_response().status(), 503);
        // Asked again, the error answers with crashguard's 500, which names the incident.
        let again = answered.error_response();
        assert_eq!(again.status(), 500);
        assert_eq!(
            again
                .headers()
                .get(INCIDENT_ID_HEADER)
                .unwrap()
                .to_str()
                .unwrap(),
            report.incident_id().to_string()
        );
    }

    #[test]
    fn a_handler_panic_is_answered_with_crashguards_500() {
        let middleware = guarded(CrashGuard::new());
        let _ = answer(&middleware, "/ok");
        let (status, incident) = answer(&middleware, "/boom");
        assert_eq!(status, 500);
        assert!(incident.is_some(), "crashguard's answer names the incident");
    }
}
