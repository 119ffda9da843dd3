//! tonic glue: a gRPC method under `#[crash_guarded(http)]` answers a panic with
//! `Status::internal`, naming only the incident.

use super::grpc;
use super::INCIDENT_ID_HEADER;
use crate::guard::FromPanic;
use crate::panic::PanicReport;

/// `INTERNAL` (13), with a fixed message that names only the incident id, and the id in the
/// `x-incident-id` metadata: what a gRPC client needs to quote, and nothing about the panic.
///
/// ```
/// use crashguard::FromPanic;
///
/// let report = crashguard::catch("demo", || panic!("db password rejected")).unwrap_err();
/// let status = tonic::Status::from_panic(&report);
/// assert_eq!(status.code(), tonic::Code::Internal);
/// assert!(status.message().contains(&report.incident_id().to_string()));
/// assert!(!status.message().contains("password"));
/// assert_eq!(
///     status.metadata().get("x-incident-id").unwrap(),
///     report.incident_id().to_string().as_str()
/// );
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
// Not listed in the compiler's "is implemented for" help: it would point into crashguard's code.
#[diagnostic::do_not_recommend]
impl FromPanic for tonic::Status {
    fn from_panic(report: &PanicReport) -> Self {
        let incident = report.incident_id();
        let mut status = tonic::Status::internal(grpc::message(incident));
        if let Ok(value) = incident.to_string().parse() {
            status.metadata_mut().insert(INCIDENT_ID_HEADER, value);
        }
        status
    }
}
