//! What only the tower layer catches, against a real server: a response body that panics while
//! it streams, a service whose `poll_ready` panics, and gRPC calls from an independent client
//! (Python's grpcio), each panic recorded with the request's fields and trace context.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{fixture, str_field, Server};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn layer_service() -> Server {
    Server::start_with(fixture("layer_service"))
}

#[tokio::test]
async fn a_body_that_panics_after_its_first_chunk_is_cut_short_and_recorded_with_the_request() {
    let server = layer_service();
    let response = reqwest::Client::new()
        .get(server.url("/stream?secret=hunter2"))
        .header("x-request-id", "r-1")
        .header("traceparent", TRACEPARENT)
        .send()
        .await
        .unwrap();
    support::first_chunk_then_cut(response, b"first chunk\n").await;

    let record = server.wait_for_record(|record| record["event"] == "panic");
    assert_eq!(
        str_field(&record, "exception.message"),
        "the row stream broke after the first chunk"
    );
    assert_eq!(record["http.request.method"], "GET");
    assert_eq!(record["url.path"], "/stream", "no query string");
    assert_eq!(record["http.route"], "/stream");
    assert_eq!(record["http.request.header.x-request-id"], "r-1");
    assert_eq!(record["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(record["span_id"], "00f067aa0ba902b7");
    assert_eq!(record["trace_flags"], "01");
    assert!(str_field(&record, "incident.id").contains('-'));
    // The server goes on serving.
    let ok = reqwest::get(server.url("/ok")).await.unwrap();
    assert_eq!(ok.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn a_panic_in_poll_ready_is_recorded_and_answered_500_and_the_service_recovers() {
    let server = layer_service();
    let client = reqwest::Client::new();
    let answered = client.get(server.url("/not-ready")).send().await.unwrap();
    assert_eq!(answered.status(), 500);
    let incident = answered.headers()["x-incident-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(answered.text().await.unwrap().contains(&incident));
    let record = server.panic_record(&incident);
    assert_eq!(
        record["exception.message"],
        "the connection pool is in a state it never expected"
    );
    // The next readiness poll succeeds, and the request reaches the service.
    let next = client.get(server.url("/not-ready")).send().await.unwrap();
    assert_eq!(next.status(), 200);
    assert_eq!(next.text().await.unwrap(), "ready after all\n");
}

#[tokio::test]
async fn a_traceparent_that_is_not_one_leaves_no_trace_ids() {
    let server = layer_service();
    let answered = reqwest::Client::new()
        .get(server.url("/boom"))
        .header("traceparent", "00-not-a-trace-01")
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 500);
    let incident = answered.headers()["x-incident-id"].to_str().unwrap();
    let record = server.panic_record(incident);
    assert!(record.get("trace_id").is_none(), "{record:#?}");
    assert!(record.get("span_id").is_none(), "{record:#?}");
}

/// Runs `tests/clients/grpc_calls.py` against the server; `None` where Python's grpcio is not
/// installed (CI installs it; there its absence fails the test).
fn grpc_calls(server: &Server, repeats: usize) -> Option<Value> {
    let has_grpcio = Command::new("python3")
        .args(["-c", "import grpc"])
        .status()
        .is_ok_and(|status| status.success());
    if !has_grpcio {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install grpcio (pip install grpcio)"
        );
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "skipped: the gRPC client needs Python's grpcio (pip install grpcio)"
        );
        return None;
    }
    let address = server.base.trim_start_matches("http://");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/grpc_calls.py");
    let output = Command::new("python3")
        .args([script, address, &repeats.to_string()])
        .output()
        .expect("run the gRPC client");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).expect("the client prints JSON"))
}

#[test]
fn grpc_calls_that_panic_get_status_internal_naming_only_the_incident() {
    let server = layer_service();
    let Some(seen) = grpc_calls(&server, 1000) else {
        return;
    };
    let unary = &seen["unary"];
    assert_eq!(unary["code"], "INTERNAL", "{seen:#}");
    let incident = unary["trailing"]["x-incident-id"]
        .as_str()
        .or_else(|| unary["initial"]["x-incident-id"].as_str())
        .expect("the incident id in the metadata");
    assert_eq!(
        unary["details"],
        format!(
            "The server failed to complete this call. Quote incident {incident} when reporting it."
        ),
    );
    let record = server.panic_record(incident);
    assert_eq!(record["url.path"], "/grpc.Test/Boom");
    assert_eq!(record["http.route"], "/grpc.Test/Boom");
    assert_eq!(record["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(
        !unary.to_string().contains("boom while serving"),
        "nothing internal: {unary}"
    );

    let stream = &seen["stream"];
    assert_eq!(stream["messages"], serde_json::json!(["hello"]), "{seen:#}");
    assert_eq!(stream["code"], "INTERNAL", "{seen:#}");
    let incident = stream["trailing"]["x-incident-id"]
        .as_str()
        .expect("in the trailers");
    let record = server.panic_record(incident);
    assert_eq!(
        record["exception.message"],
        "the stream of replies broke after one"
    );

    assert_eq!(
        seen["repeated"],
        serde_json::json!({ "INTERNAL": 1000 }),
        "{seen:#}"
    );
    let (status, records) = server.stop_with(libc::SIGTERM, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    let panics = records.iter().filter(|r| r["event"] == "panic").count();
    assert_eq!(panics, 1002, "one record per panic");
}
