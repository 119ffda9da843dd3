//! The response body of [`CrashGuardService`](super::CrashGuardService): the inner service's
//! body, polled with the request named and a panic caught, or the answer to a panic.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};

use super::request::RequestFields;
use crate::guard::catch_serving;
use crate::http::PanicWhileStreaming;

/// The error type of a [`GuardedBody`]: the inner body's error, or [`PanicWhileStreaming`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project_lite::pin_project! {
    #[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
    /// The response body of [`CrashGuardService`](super::CrashGuardService): the inner
    /// service's body, or the layer's answer to a panic.
    pub struct GuardedBody<B, A> {
        #[pin]
        state: State<B, A>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProjection]
    enum State<B, A> {
        Streaming { #[pin] body: B, fields: RequestFields },
        Answer { #[pin] body: A },
        Finished,
    }
}

impl<B, A> GuardedBody<B, A> {
    pub(super) fn streaming(body: B, fields: RequestFields) -> GuardedBody<B, A> {
        GuardedBody {
            state: State::Streaming { body, fields },
        }
    }

    pub(super) fn answer(body: A) -> GuardedBody<B, A> {
        GuardedBody {
            state: State::Answer { body },
        }
    }

    /// No body: a trailers-only gRPC answer.
    pub(super) fn empty() -> GuardedBody<B, A> {
        GuardedBody {
            state: State::Finished,
        }
    }
}

impl<B, A> Body for GuardedBody<B, A>
where
    B: Body,
    B::Error: Into<BoxError>,
    A: Body<Data = B::Data>,
    A::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let mut state = self.project().state;
        let panicked = match state.as_mut().project() {
            StateProjection::Streaming { body, fields } => {
                match catch_serving(fields, || body.poll_frame(cx)) {
                    Ok(Poll::Ready(None)) => {
                        // Done: the inner body is not polled again.
                        state.set(State::Finished);
                        return Poll::Ready(None);
                    }
                    Ok(polled) => {
                        return polled.map(|frame| frame.map(|frame| frame.map_err(Into::into)))
                    }
                    Err(report) => (report, fields.grpc),
                }
            }
            StateProjection::Answer { body } => {
                return body
                    .poll_frame(cx)
                    .map(|frame| frame.map(|frame| frame.map_err(Into::into)));
            }
            StateProjection::Finished => return Poll::Ready(None),
        };
        let (report, grpc) = panicked;
        state.set(State::Finished);
        // A gRPC body that panicked ends with its status as trailers; any other with an error.
        if grpc {
            let trailers = crate::http::grpc::internal_status(report.incident_id(), false);
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Ready(Some(Err(Box::new(PanicWhileStreaming::new(&report)))))
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Streaming { body, .. } => body.is_end_stream(),
            State::Answer { body } => body.is_end_stream(),
            State::Finished => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Streaming { body, .. } => body.size_hint(),
            State::Answer { body } => body.size_hint(),
            State::Finished => SizeHint::with_exact(0),
        }
    }
}
