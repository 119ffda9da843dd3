//! What a server child process runs: `serve KIND` serves `/ok` and `/boom` on 127.0.0.1.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use crashguard::{crash_guarded, Config};

async fn ok() -> &'static str {
    "ok"
}

async fn boom() -> &'static str {
    panic!("boom")
}

#[crash_guarded(http)]
async fn guarded_ok() -> impl IntoResponse {
    "ok"
}

#[crash_guarded(http)]
async fn guarded_boom() -> impl IntoResponse {
    panic!("boom");
    #[allow(unreachable_code)]
    "unreachable"
}

#[crash_guarded(http)]
async fn guarded_slow(Path(millis): Path<u64>) -> impl IntoResponse {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    "done"
}

fn plain_routes() -> Router {
    Router::new()
        .route("/ok", get(ok))
        .route("/boom", get(boom))
}

/// Runs the server `kind` on 127.0.0.1, printing `listening on ADDR` once it accepts; never
/// returns.
pub fn serve(kind: &str) -> ! {
    match kind {
        "crashguard" | "crashguard-layer" => {
            let started = Instant::now();
            crashguard::install(Config::new());
            println!("installed in {} us", started.elapsed().as_micros());
            let router = if kind == "crashguard" {
                Router::new()
                    .route("/ok", get(guarded_ok))
                    .route("/boom", get(guarded_boom))
                    .route("/slow/{millis}", get(guarded_slow))
            } else {
                plain_routes().layer(crashguard::http::CrashGuardLayer::new())
            };
            crashguard::run_async(
                Config::new(),
                crashguard::Flavor::MultiThread(None),
                async move {
                    let listener = listen().await?;
                    axum::serve(listener, router)
                        .with_graceful_shutdown(crashguard::shutdown_signal())
                        .await
                },
            )
        }
        "tower-http" | "unprotected" => {
            let router = if kind == "tower-http" {
                plain_routes().layer(tower_http::catch_panic::CatchPanicLayer::new())
            } else {
                plain_routes()
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            let served = runtime.block_on(async move {
                let listener = listen().await?;
                axum::serve(listener, router).await
            });
            served.expect("serve");
            std::process::exit(0)
        }
        other => {
            eprintln!("unknown server kind {other:?}");
            std::process::exit(2)
        }
    }
}

async fn listen() -> io::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;
    Ok(listener)
}
