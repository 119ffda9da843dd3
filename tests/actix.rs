//! actix-web under crashguard, against a real server and a real client: the `CrashGuard`
//! middleware answering a handler's panic, `#[crash_guarded(http)]` on handlers returning
//! `impl Responder` and `Result<HttpResponse, actix_web::Error>`, a body that panics while it
//! streams, a scope with its own answer, and a server that serves on and drains on SIGTERM.

mod support;

use std::time::Duration;

use support::{fixture, str_field, Record, Server};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn actix_service() -> Server {
    Server::start_with(fixture("actix_service"))
}

/// A 500 as crashguard answers it: problem+json, the incident in the header and the body, and
/// nothing of the panic. Returns the incident id.
async fn problem_answer(response: reqwest::Response, not_in_it: &str) -> String {
    assert_eq!(response.status(), 500);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(headers["cache-control"], "no-store");
    let incident = headers["x-incident-id"].to_str().unwrap().to_owned();
    let body: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["status"], 500);
    assert_eq!(body["incident_id"], incident.as_str());
    assert!(!body.to_string().contains(not_in_it), "{body}");
    incident
}

fn assert_request_fields(record: &Record, path: &str) {
    assert_eq!(record["http.request.method"], "GET");
    assert_eq!(record["url.path"], path);
    assert_eq!(record["http.request.header.x-request-id"], "r-7");
    assert_eq!(record["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(record["span_id"], "00f067aa0ba902b7");
    assert_eq!(record["trace_flags"], "01");
}

#[tokio::test]
async fn the_middleware_answers_a_handler_panic_and_records_the_request() {
    let server = actix_service();
    let response = reqwest::Client::new()
        .get(server.url("/boom?token=hunter2"))
        .header("x-request-id", "r-7")
        .header("traceparent", TRACEPARENT)
        .send()
        .await
        .unwrap();
    let incident = problem_answer(response, "boom").await;
    let record = server.panic_record(&incident);
    assert_eq!(record["exception.message"], "boom while serving");
    assert_request_fields(&record, "/boom");
    assert!(!record.contains_key("code.function.name"), "{record:#?}");
}

#[tokio::test]
async fn handlers_under_the_attribute_answer_for_impl_responder_and_for_results() {
    let server = actix_service();
    let client = reqwest::Client::new();
    let healthy = client.get(server.url("/price/12")).send().await.unwrap();
    assert_eq!(healthy.status(), 200);
    assert_eq!(healthy.text().await.unwrap(), "12\n");
    for (path, function, message) in [
        ("/price/twelve", "actix_service::price", "InvalidDigit"),
        ("/stock/many", "actix_service::stock", "a stock count"),
    ] {
        let response = client
            .get(server.url(path))
            .header("x-request-id", "r-7")
            .header("traceparent", TRACEPARENT)
            .send()
            .await
            .unwrap();
        let incident = problem_answer(response, "ParseIntError").await;
        let record = server.panic_record(&incident);
        assert_eq!(record["code.function.name"], function);
        assert!(str_field(&record, "exception.message").contains(message));
        // Inside the middleware, the attribute's record names the request too.
        assert_request_fields(&record, path);
    }
}

#[tokio::test]
async fn a_body_that_panics_after_its_first_chunk_is_cut_short_and_recorded() {
    let server = actix_service();
    let response = reqwest::Client::new()
        .get(server.url("/stream"))
        .header("x-request-id", "r-7")
        .header("traceparent", TRACEPARENT)
        .send()
        .await
        .unwrap();
    support::first_chunk_then_cut(response, b"first chunk\n").await;

    let record = server.wait_for_record(|record| record["event"] == "panic");
    assert_eq!(
        record["exception.message"],
        "the row stream broke after the first chunk"
    );
    assert_request_fields(&record, "/stream");
    assert!(str_field(&record, "incident.id").contains('-'));
}

#[tokio::test]
async fn a_scope_answers_with_its_own_answer() {
    let server = actix_service();
    let response = reqwest::get(server.url("/custom/boom")).await.unwrap();
    assert_eq!(response.status(), 503);
    let body = response.text().await.unwrap();
    let incident = body
        .strip_prefix("try again later (")
        .and_then(|rest| rest.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("{body:?}"));
    let record = server.panic_record(incident);
    assert_eq!(record["url.path"], "/custom/boom");
}

#[tokio::test]
async fn after_many_panics_the_server_serves_on_then_drains_on_sigterm() {
    let server = actix_service();
    let client = reqwest::Client::new();
    const PANICS: usize = 200;
    for round in 0..PANICS {
        let path = ["/boom", "/price/x", "/stock/x", "/custom/boom"][round % 4];
        let status = client.get(server.url(path)).send().await.unwrap().status();
        assert!(status == 500 || status == 503, "{path}: {status}");
    }
    let ok = client.get(server.url("/ok")).send().await.unwrap();
    assert_eq!(ok.text().await.unwrap(), "ok");

    let (status, records) = server.stop_with(libc::SIGTERM, Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{records:#?}");
    let panics = records.iter().filter(|r| r["event"] == "panic").count();
    assert_eq!(panics, PANICS, "one record per panic");
    let exit = records.last().unwrap();
    assert_eq!(exit["event"], "exit");
    assert_eq!(exit["exit.reason"], "shutdown");
    assert_eq!(exit["exit.code"], 0);
}
