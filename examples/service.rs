//! An axum service under crashguard: every panic is one JSON line on stderr, a panicking request
//! gets a 500 with an incident id (and nothing internal), and the server keeps serving.
//!
//! ```sh
//! cargo run --example service --features axum
//! curl -i localhost:3000/panic     # 500, problem+json, x-incident-id
//! curl -i localhost:3000/users/0   # a panic answered with the API's own error type
//! ```
//!
//! SIGTERM or Ctrl-C starts a graceful shutdown: `/readyz` turns 503, the server stops accepting,
//! in-flight requests (try `/slow`) finish, the shutdown hooks run, and the process exits 0 with
//! one `exit` record.
//!
//! `ADDR` sets the address to bind (default `127.0.0.1:3000`).

use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use crashguard::{crash_guarded, FromPanic, IncidentId, PanicReport};

#[crash_guarded]
#[tokio::main]
async fn main() -> Result<(), std::io::Error> {
    let app = Router::new()
        .route("/", get(hello))
        .route("/panic", get(always_panics))
        .route("/slow", get(slow))
        .route("/users/{id}", get(get_user))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(crashguard::http::readyz))
        // Panics outside guarded handlers (extractors, middleware) get the same record and 500.
        .layer(crashguard::http::CrashGuardLayer::new());

    // Run after main returns, last registered first.
    crashguard::on_shutdown("close-db-pool", || {
        std::thread::sleep(Duration::from_millis(20));
    });
    crashguard::on_shutdown_async("flush-metrics", || async {
        tokio::time::sleep(Duration::from_millis(20)).await;
    });

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(crashguard::shutdown_signal())
        .await
}

#[crash_guarded(http)]
async fn hello() -> impl IntoResponse {
    "hello from a guarded handler\n"
}

#[crash_guarded(http)]
async fn always_panics() -> impl IntoResponse {
    let secret = "postgres://app:hunter2@db/prod";
    panic!("could not connect to {secret}");
    #[allow(unreachable_code)]
    "unreachable"
}

#[crash_guarded(http)]
async fn slow() -> impl IntoResponse {
    tokio::time::sleep(Duration::from_secs(2)).await;
    "slow answer\n"
}

#[derive(serde::Serialize)]
struct User {
    id: u64,
    name: String,
}

/// The API's own error type; a panic in a handler returning it becomes `Internal`.
enum ApiError {
    NotFound,
    Internal(IncidentId),
}

impl FromPanic for ApiError {
    fn from_panic(report: &PanicReport) -> Self {
        ApiError::Internal(report.incident_id())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::NotFound => (StatusCode::NOT_FOUND, "no such user\n").into_response(),
            ApiError::Internal(incident) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal error, incident {incident}\n"),
            )
                .into_response(),
        }
    }
}

#[crash_guarded(http)]
async fn get_user(Path(id): Path<u64>) -> Result<Json<User>, ApiError> {
    match id {
        0 => panic!("user 0 is corrupt"),
        1..=99 => Ok(Json(User {
            id,
            name: format!("user-{id}"),
        })),
        _ => Err(ApiError::NotFound),
    }
}
