use axum::extract::Path;
use axum::response::IntoResponse;
use crashguard::crash_guarded;

#[crash_guarded] // panic hook, exit record, termination message
#[tokio::main]
async fn main() -> Result<(), std::io::Error> {
    let app = axum::Router::new()
        .route("/users/{id}", axum::routing::get(get_user))
        .layer(crashguard::http::CrashGuardLayer::new()); // extractors and middleware too
    let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(crashguard::shutdown_signal()) // SIGTERM drains, then exits 0
        .await
}

#[crash_guarded(http)] // a panic here answers 500 with an incident id
async fn get_user(Path(id): Path<u64>) -> impl IntoResponse {
    format!("user {id}")
}
