//! The response body of [`CrashGuardService`](super::CrashGuardService): the inner service's
//! body, polled with the request named and a panic caught, or the answer to a panic.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};

use super::guarded;
use super::request::RequestFields;
use crate::state::IncidentId;

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

#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
/// How a response body that panicked ends, after its record is written: an error, so that the
/// server aborts the response instead of ending it as if it were whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PanicWhileStreaming {
    incident: IncidentId,
}

impl PanicWhileStreaming {
    /// The panic's incident id, as in its record.
    pub fn incident_id(&self) -> IncidentId {
        self.incident
    }
}

impl std::fmt::Display for PanicWhileStreaming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the response body panicked (incident {}); the response is cut short",
            self.incident
        )
    }
}

impl std::error::Error for PanicWhileStreaming {}

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
                match guarded(fields, || body.poll_frame(cx)) {
                    Ok(Poll::Ready(None)) => {
                        // Done: the inner body is not polled again.
                        state.set(State::Finished);
                        return Poll::Ready(None);
                    }
                    Ok(polled) => {
                        return polled.map(|frame| frame.map(|frame| frame.map_err(Into::into)))
                    }
                    Err(report) => (report.incident_id(), fields.grpc),
                }
            }
            StateProjection::Answer { body } => {
                return body
                    .poll_frame(cx)
                    .map(|frame| frame.map(|frame| frame.map_err(Into::into)));
            }
            StateProjection::Finished => return Poll::Ready(None),
        };
        let (incident, grpc) = panicked;
        state.set(State::Finished);
        // A gRPC body that panicked ends with its status as trailers; any other with an error.
        if grpc {
            let trailers = crate::http::grpc::internal_status(incident, false);
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Ready(Some(Err(Box::new(PanicWhileStreaming { incident }))))
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
