//! The response body of [`CrashGuardMiddleware`](super::CrashGuardMiddleware): the inner
//! service's body, polled with the request named and a panic caught.

use std::error::Error as StdError;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use actix_web::web::Bytes;

use super::request::RequestFields;
use crate::guard::catch_serving;
use crate::http::PanicWhileStreaming;

pin_project_lite::pin_project! {
    /// The response body of [`CrashGuardMiddleware`](super::CrashGuardMiddleware).
    #[cfg_attr(docsrs, doc(cfg(feature = "actix")))]
    pub struct GuardedBody<B> {
        #[pin]
        state: State<B>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProjection]
    enum State<B> {
        Streaming { #[pin] body: B, fields: RequestFields },
        Finished,
    }
}

impl<B> GuardedBody<B> {
    pub(super) fn streaming(body: B, fields: RequestFields) -> GuardedBody<B> {
        GuardedBody {
            state: State::Streaming { body, fields },
        }
    }
}

impl<B: MessageBody> MessageBody for GuardedBody<B> {
    type Error = Box<dyn StdError>;

    fn size(&self) -> BodySize {
        match &self.state {
            State::Streaming { body, .. } => body.size(),
            State::Finished => BodySize::Sized(0),
        }
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let mut state = self.project().state;
        let report = match state.as_mut().project() {
            StateProjection::Streaming { body, fields } => {
                match catch_serving(fields, || body.poll_next(cx)) {
                    Ok(Poll::Ready(None)) => {
                        state.set(State::Finished);
                        return Poll::Ready(None);
                    }
                    Ok(polled) => {
                        return polled.map(|chunk| chunk.map(|chunk| chunk.map_err(Into::into)))
                    }
                    Err(report) => report,
                }
            }
            StateProjection::Finished => return Poll::Ready(None),
        };
        state.set(State::Finished);
        Poll::Ready(Some(Err(Box::new(PanicWhileStreaming::new(&report)))))
    }

    /// A body that is whole already cannot panic: actix-web sends it as it is.
    fn try_into_bytes(self) -> Result<Bytes, Self> {
        match self.state {
            State::Streaming { body, fields } => body
                .try_into_bytes()
                .map_err(|body| GuardedBody::streaming(body, fields)),
            State::Finished => Ok(Bytes::new()),
        }
    }
}
