//! What a panic record says about the request being served, taken from the request when it
//! arrives: clones of parts that share their bytes with it, so nothing is allocated per request.

use http::header::{HeaderName, CONTENT_TYPE};
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request};

use crate::context::ServedRequest;

/// The headers looked for in every request; constants, so that finding them parses no name.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

#[derive(Debug)]
pub(super) struct RequestFields {
    method: Method,
    /// The path and query alone: an HTTP/2 request's scheme and authority are never recorded,
    /// and cloning them would cost every request.
    path: Option<PathAndQuery>,
    /// The template axum matched, when the layer is on a `Router` (`Router::layer`).
    #[cfg(feature = "axum")]
    route: Option<axum::extract::MatchedPath>,
    request_id: Option<HeaderValue>,
    traceparent: Option<HeaderValue>,
    /// The request is a gRPC call (`content-type: application/grpc…`), to be answered as one.
    pub(super) grpc: bool,
}

impl RequestFields {
    #[inline]
    pub(super) fn of<B>(request: &Request<B>) -> RequestFields {
        // One pass over the few headers a request has costs less than three lookups, each of
        // which hashes its name.
        let (mut request_id, mut traceparent, mut grpc) = (None, None, false);
        for (name, value) in request.headers() {
            if name == CONTENT_TYPE {
                grpc = value.as_bytes().starts_with(b"application/grpc");
            } else if name == REQUEST_ID {
                request_id.get_or_insert_with(|| value.clone());
            } else if name == TRACEPARENT {
                traceparent.get_or_insert_with(|| value.clone());
            }
        }
        RequestFields {
            method: request.method().clone(),
            path: request.uri().path_and_query().cloned(),
            #[cfg(feature = "axum")]
            route: request
                .extensions()
                .get::<axum::extract::MatchedPath>()
                .cloned(),
            request_id,
            traceparent,
            grpc,
        }
    }
}

impl ServedRequest for RequestFields {
    fn method(&self) -> &str {
        self.method.as_str()
    }

    fn path(&self) -> &str {
        self.path.as_ref().map_or("", PathAndQuery::path)
    }

    /// axum's matched template; for a gRPC call, its path, which names the method
    /// (`/package.Service/Method`) and so is as bounded as a template.
    fn route(&self) -> Option<&str> {
        #[cfg(feature = "axum")]
        if let Some(route) = &self.route {
            return Some(route.as_str());
        }
        self.grpc.then(|| self.path())
    }

    fn request_id(&self) -> Option<&[u8]> {
        self.request_id.as_ref().map(HeaderValue::as_bytes)
    }

    fn traceparent(&self) -> Option<&[u8]> {
        self.traceparent.as_ref().map(HeaderValue::as_bytes)
    }
}
