//! gRPC with tonic: a real tonic server whose methods are an `#[tonic::async_trait]` impl under
//! `#[crash_guarded(http)]` and `CrashGuardLayer`, called by a real tonic client (the fixture's
//! `client` mode) over HTTP/2 on loopback.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{fixture, fixture_path, Server};

const SECRET: &str = "hunter2";

/// The client's lines: one per call, then the repeated calls' tally.
fn tonic_client(server: &Server, repeats: usize) -> Vec<Value> {
    let output = std::process::Command::new(fixture_path("grpc_service"))
        .args(["client", &server.base, &repeats.to_string()])
        .env("CRASHGUARD_TERMINATION_LOG", "")
        .output()
        .expect("run the tonic client");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

#[test]
fn panicking_methods_answer_internal_with_the_incident_and_the_server_stays_healthy() {
    let server = Server::start_with(fixture("grpc_service"));
    let calls = tonic_client(&server, 1000);
    let [ping, boom, unguarded, replies, repeated] = &calls[..] else {
        panic!("five lines: {calls:#?}");
    };

    assert_eq!(ping["code"], "Ok");
    assert_eq!(ping["message"], "hello");

    // Under `#[crash_guarded(http)]`: the method's own `Status`.
    assert_eq!(boom["code"], "Internal", "{boom:#}");
    let incident = boom["metadata"]["x-incident-id"]
        .as_str()
        .expect("the id in the metadata");
    assert_eq!(
        boom["message"],
        format!(
            "The server failed to complete this call. Quote incident {incident} when reporting it."
        )
    );
    assert!(
        !boom.to_string().contains(SECRET),
        "nothing internal: {boom}"
    );
    let record = server.panic_record(incident);
    assert_eq!(record["code.function.name"], "grpc_service::boom");
    assert_eq!(record["url.path"], "/test.Echo/Boom");
    assert_eq!(record["http.route"], "/test.Echo/Boom");
    assert_eq!(record["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(record["span_id"], "b7ad6b7169203331");
    assert!(record["exception.message"]
        .as_str()
        .unwrap()
        .contains(SECRET));

    // Without the attribute, the layer answers: the same status, in a trailers-only response.
    assert_eq!(unguarded["code"], "Internal", "{unguarded:#}");
    let incident = unguarded["metadata"]["x-incident-id"].as_str().unwrap();
    let record = server.panic_record(incident);
    assert!(record.get("code.function.name").is_none());
    assert_eq!(record["exception.message"], "an unguarded method panicked");

    // A server-streaming method that panics after its first reply ends with status 13.
    assert_eq!(
        replies["replies"],
        serde_json::json!(["first reply"]),
        "{replies:#}"
    );
    assert_eq!(replies["code"], "Internal", "{replies:#}");
    let incident = replies["metadata"]["x-incident-id"]
        .as_str()
        .expect("in the trailers");
    let record = server.panic_record(incident);
    assert_eq!(
        record["exception.message"],
        "the second reply could not be made"
    );
    assert_eq!(record["url.path"], "/test.Echo/Replies");

    assert_eq!(
        repeated["repeated"],
        serde_json::json!({ "Internal": 1000 })
    );
    assert_eq!(repeated["healthy_after"], true);
    let (status, records) = server.stop_with(libc::SIGTERM, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{:#?}", records.last());
    let panics = records.iter().filter(|r| r["event"] == "panic").count();
    assert_eq!(panics, 1003, "one record per panic");
}
