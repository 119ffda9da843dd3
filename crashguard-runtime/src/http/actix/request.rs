//! What a panic record says about the request actix-web is serving, taken from the request when
//! it arrives: clones that share their bytes with it, so nothing is allocated per request.

use actix_web::dev::ServiceRequest;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, Uri};

use crate::context::ServedRequest;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

#[derive(Debug)]
pub(super) struct RequestFields {
    method: Method,
    uri: Uri,
    request_id: Option<HeaderValue>,
    traceparent: Option<HeaderValue>,
}

impl RequestFields {
    #[inline]
    pub(super) fn of(request: &ServiceRequest) -> RequestFields {
        // One pass over the few headers a request has costs less than two lookups, each of
        // which hashes its name.
        let (mut request_id, mut traceparent) = (None, None);
        for (name, value) in request.headers() {
            if *name == REQUEST_ID {
                request_id.get_or_insert_with(|| value.clone());
            } else if *name == TRACEPARENT {
                traceparent.get_or_insert_with(|| value.clone());
            }
        }
        RequestFields {
            method: request.method().clone(),
            uri: request.uri().clone(),
            request_id,
            traceparent,
        }
    }
}

impl ServedRequest for RequestFields {
    fn method(&self) -> &str {
        self.method.as_str()
    }

    fn path(&self) -> &str {
        self.uri.path()
    }

    /// actix-web matches routes after the middleware runs: there is no template to give.
    fn route(&self) -> Option<&str> {
        None
    }

    fn request_id(&self) -> Option<&[u8]> {
        self.request_id.as_ref().map(HeaderValue::as_bytes)
    }

    fn traceparent(&self) -> Option<&[u8]> {
        self.traceparent.as_ref().map(HeaderValue::as_bytes)
    }
}
