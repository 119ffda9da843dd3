//! The response future of [`CrashGuardService`](super::CrashGuardService): the inner future,
//! polled with the request named and a panic caught, or the answer to a panic already caught.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;

use super::body::GuardedBody;
use super::request::RequestFields;
use super::PanicAnswer;
use crate::guard::{catch_serving, catch_unnamed};
use crate::panic::PanicReport;

pin_project_lite::pin_project! {
    #[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
    /// The response future of [`CrashGuardService`](super::CrashGuardService).
    pub struct ResponseFuture<F, P> {
        // `None` once a panic was answered instead.
        #[pin]
        future: Option<F>,
        // A panic in `poll_ready` or `call`, answered at the first poll.
        panicked: Option<PanicReport>,
        // Moved into the response body, which names the request too.
        fields: Option<RequestFields>,
        answer: P,
    }
}

impl<F, P> ResponseFuture<F, P> {
    pub(super) fn running(future: F, fields: RequestFields, answer: P) -> ResponseFuture<F, P> {
        ResponseFuture {
            future: Some(future),
            panicked: None,
            fields: Some(fields),
            answer,
        }
    }

    pub(super) fn answered(
        report: PanicReport,
        fields: RequestFields,
        answer: P,
    ) -> ResponseFuture<F, P> {
        ResponseFuture {
            future: None,
            panicked: Some(report),
            fields: Some(fields),
            answer,
        }
    }
}

impl<F, P, B, E> Future for ResponseFuture<F, P>
where
    F: Future<Output = Result<Response<B>, E>>,
    P: PanicAnswer,
{
    type Output = Result<Response<GuardedBody<B, P::Body>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(report) = this.panicked.take() {
            let grpc = this.fields.as_ref().is_some_and(|fields| fields.grpc);
            return Poll::Ready(Ok(answer(&report, grpc, this.answer)));
        }
        let (Some(future), Some(fields)) =
            (this.future.as_mut().as_pin_mut(), this.fields.as_ref())
        else {
            panic!("a crashguard response future was polled after it completed");
        };
        match catch_serving(fields, || future.poll(cx)) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(Ok(response))) => {
                let fields = this.fields.take();
                Poll::Ready(Ok(response.map(|body| match fields {
                    Some(fields) => GuardedBody::streaming(body, fields),
                    None => unreachable!("the fields are taken only here"),
                })))
            }
            Ok(Poll::Ready(Err(error))) => Poll::Ready(Err(error)),
            Err(report) => {
                let grpc = fields.grpc;
                // The inner future is in no state to be polled again, nor the request answered
                // twice.
                this.future.set(None);
                this.fields.take();
                Poll::Ready(Ok(answer(&report, grpc, this.answer)))
            }
        }
    }
}

/// The answer to a panic before the response's head went out: to a gRPC call, a trailers-only
/// response with `grpc-status: 13`; otherwise the layer's own answer.
fn answer<B, P: PanicAnswer>(
    report: &PanicReport,
    grpc: bool,
    answer: &mut P,
) -> Response<GuardedBody<B, P::Body>> {
    if grpc {
        let mut response = Response::new(GuardedBody::empty());
        *response.headers_mut() = crate::http::grpc::internal_status(report.incident_id(), true);
        return response;
    }
    match catch_unnamed(|| answer.answer(report)) {
        Ok(response) => response.map(GuardedBody::answer),
        // The answer panicked too (its own record is written): crashguard's 500, without a body,
        // which is of the answer's type.
        Err(_) => {
            let mut response = Response::new(GuardedBody::empty());
            *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            if let Ok(id) = http::HeaderValue::try_from(report.incident_id().to_string()) {
                response
                    .headers_mut()
                    .insert(crate::http::INCIDENT_ID_HEADER, id);
            }
            response
        }
    }
}
