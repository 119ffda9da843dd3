//! Answering a gRPC call after a panic: gRPC clients read the outcome of a call in
//! `grpc-status` (13, INTERNAL, for a server fault), in the response's headers when nothing was
//! sent yet (a "trailers-only" response) or in its trailers, never in the HTTP status, which
//! stays 200.

use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};

use super::INCIDENT_ID_HEADER;
use crate::state::IncidentId;

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// gRPC's status code for a server fault.
pub(crate) const INTERNAL: &str = "13";

/// The fixed message a client gets: the incident id and nothing about the panic.
pub(crate) fn message(incident: IncidentId) -> String {
    format!("The server failed to complete this call. Quote incident {incident} when reporting it.")
}

/// `grpc-status: 13`, `grpc-message` and `x-incident-id`, as headers of a trailers-only
/// response (with the gRPC content type, which such a response needs) or as trailers.
pub(crate) fn internal_status(incident: IncidentId, trailers_only: bool) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(4);
    if trailers_only {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    }
    headers.insert(GRPC_STATUS, HeaderValue::from_static(INTERNAL));
    // ASCII without `%`: nothing in it needs gRPC's percent-encoding.
    if let Ok(value) = HeaderValue::try_from(message(incident)) {
        headers.insert(GRPC_MESSAGE, value);
    }
    if let Ok(value) = HeaderValue::try_from(incident.to_string()) {
        headers.insert(INCIDENT_ID_HEADER, value);
    }
    headers
}
