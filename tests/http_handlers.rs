//! `#[crash_guarded(http)]` and the tower layer against a real axum server on loopback, driven
//! by a real HTTP client: a panicking request gets a 500 whose incident id is its record's, the
//! client learns nothing internal, and the server keeps serving.

mod support;

use reqwest::header::HeaderMap;
use serde_json::Value;
use support::{str_field, Record, Server};

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
}

async fn get(server: &Server, path: &str) -> Answer {
    get_with(&reqwest::Client::new(), server, path).await
}

async fn get_with(client: &reqwest::Client, server: &Server, path: &str) -> Answer {
    let response = client
        .get(server.url(path))
        .header("x-request-id", "req-7")
        .send()
        .await
        .expect("the server answers");
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

impl Answer {
    fn incident(&self) -> &str {
        self.headers["x-incident-id"].to_str().unwrap()
    }

    /// Asserts the default answer: 500, problem+json, the id in header and body, nothing else.
    fn assert_problem(&self) -> String {
        assert_eq!(self.status, 500);
        assert_eq!(self.headers["content-type"], "application/problem+json");
        assert_eq!(self.headers["cache-control"], "no-store");
        let incident = self.incident().to_owned();
        let body: Value = serde_json::from_str(&self.body).unwrap();
        let expected = serde_json::json!({
            "type": "about:blank",
            "title": "Internal Server Error",
            "status": 500,
            "detail": format!(
                "The server failed to complete this request. Quote incident {incident} when reporting it."
            ),
            "incident_id": incident,
        });
        assert_eq!(body, expected);
        incident
    }
}

fn assert_request_fields(record: &Record, path: &str) {
    assert_eq!(record["http.request.method"], "GET");
    assert_eq!(record["url.path"], path);
    assert_eq!(record["http.request.header.x-request-id"], "req-7");
}

#[tokio::test]
async fn a_panicking_handler_answers_500_with_the_incident_id_of_its_record() {
    let server = Server::start("http_service");
    let answer = get(&server, "/panic").await;
    let incident = answer.assert_problem();

    let record = server.panic_record(&incident);
    assert_eq!(
        record["code.function.name"],
        "http_service::panic_with_secret"
    );
    assert_eq!(record["code.file.path"], "fixtures/src/bin/http_service.rs");
    assert_request_fields(&record, "/panic");
    let panics = server
        .records()
        .into_iter()
        .filter(|r| r["event"] == "panic")
        .count();
    assert_eq!(panics, 1, "one record for one panic");
}

#[tokio::test]
async fn the_panic_message_is_in_the_record_and_nowhere_in_the_response() {
    let server = Server::start("http_service");
    let answer = get(&server, "/panic").await;
    let record = server.panic_record(answer.incident());
    assert_eq!(
        record["exception.message"],
        "db password hunter2 rejected at /srv/app/src/db.rs"
    );
    let mut seen_by_client = answer.body.clone();
    for (name, value) in &answer.headers {
        seen_by_client.push_str(&format!("{name}: {}\n", value.to_str().unwrap()));
    }
    for secret in [
        "hunter2",
        "db.rs",
        "password",
        "http_service",
        "panicked",
        "src/",
        "rs:",
    ] {
        assert!(
            !seen_by_client.contains(secret),
            "{secret:?} leaked: {seen_by_client}"
        );
    }
}

#[tokio::test]
async fn other_routes_and_concurrent_requests_are_unaffected() {
    let server = Server::start("http_service");
    let server = std::sync::Arc::new(server);
    let client = reqwest::Client::new();
    let mut requests = tokio::task::JoinSet::new();
    for index in 0..64 {
        let path = if index % 2 == 0 { "/panic" } else { "/ok" };
        let (client, server) = (client.clone(), std::sync::Arc::clone(&server));
        requests.spawn(async move { (path, get_with(&client, &server, path).await) });
    }
    let answers = requests.join_all().await;
    let mut incidents = Vec::new();
    for (path, answer) in &answers {
        if *path == "/ok" {
            assert_eq!((answer.status, answer.body.as_str()), (200, "ok"));
        } else {
            incidents.push(answer.assert_problem());
        }
    }
    incidents.sort();
    incidents.dedup();
    assert_eq!(incidents.len(), 32, "each panic has its own incident id");
    for incident in &incidents {
        server.panic_record(incident);
    }
}

#[tokio::test]
async fn a_thousand_panicking_requests_in_a_row_leave_the_server_alive_and_answering() {
    let server = Server::start("http_service");
    let client = reqwest::Client::new();
    let mut incidents = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let answer = get_with(&client, &server, "/panic").await;
        assert_eq!(answer.status, 500);
        incidents.push(answer.incident().to_owned());
    }
    let ok = get_with(&client, &server, "/ok").await;
    assert_eq!((ok.status, ok.body.as_str()), (200, "ok"));

    server.panic_record(incidents.last().unwrap());
    let recorded: std::collections::HashSet<String> = server
        .records()
        .iter()
        .filter(|record| record["event"] == "panic")
        .map(|record| str_field(record, "incident.id").to_owned())
        .collect();
    let answered: std::collections::HashSet<String> = incidents.into_iter().collect();
    assert_eq!(answered.len(), 1000);
    assert_eq!(
        recorded, answered,
        "every 500 has its record and no record is extra"
    );
}

#[tokio::test]
async fn panics_in_extractors_middleware_and_unguarded_handlers_are_covered_by_the_layer() {
    let server = Server::start("http_service");
    for (path, message) in [
        ("/extractor", "extractor exploded"),
        ("/middleware", "middleware exploded"),
        ("/unguarded", "unguarded handler exploded"),
    ] {
        let answer = get(&server, path).await;
        let incident = answer.assert_problem();
        let record = server.panic_record(&incident);
        assert_eq!(record["exception.message"], message);
        assert_request_fields(&record, path);
        assert!(!record.contains_key("code.function.name"), "{record:#?}");
    }
    assert_eq!(get(&server, "/ok").await.status, 200);
}

#[tokio::test]
async fn a_custom_fallback_answers_its_own_way_with_the_same_incident() {
    let server = Server::start("http_service");
    let answer = get(&server, "/teapot").await;
    assert_eq!(answer.status, 418);
    let incident = answer
        .body
        .strip_prefix("short and stout, incident ")
        .expect("the fallback's body");
    let record = server.panic_record(incident);
    assert_eq!(record["exception.message"], "the kettle boiled over");
    assert_eq!(record["code.function.name"], "http_service::teapot");
}

#[tokio::test]
async fn a_user_error_type_implementing_from_panic_answers_its_own_way() {
    let server = Server::start("http_service");
    let answer = get(&server, "/orders/0").await;
    assert_eq!(answer.status, 503);
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["error"], "internal");
    let record = server.panic_record(body["incident"].as_str().unwrap());
    assert_eq!(record["exception.message"], "order 0 is corrupt");
    assert_request_fields(&record, "/orders/0");

    let not_found = get(&server, "/orders/1").await;
    assert_eq!(
        (not_found.status, not_found.body.as_str()),
        (404, r#"{"error":"not_found","id":1}"#)
    );
    let found = get(&server, "/orders/5").await;
    assert_eq!((found.status, found.body.as_str()), (200, r#"{"id":5}"#));
}

#[tokio::test]
async fn response_status_code_and_axum_result_handlers_carry_the_500() {
    let server = Server::start("http_service");
    for path in ["/response", "/axum-result"] {
        let incident = get(&server, path).await.assert_problem();
        assert_request_fields(&server.panic_record(&incident), path);
    }
    let bare = get(&server, "/status").await;
    assert_eq!((bare.status, bare.body.as_str()), (500, ""));
    assert!(!bare.headers.contains_key("x-incident-id"));
    let record = server.wait_for_record(|r| r.get("url.path") == Some(&Value::from("/status")));
    assert_eq!(record["exception.message"], "boom as StatusCode");
}

#[tokio::test]
async fn the_main_example_answers_and_its_panic_route_gives_the_documented_500() {
    let server = Server::start("../service");
    let hello = get(&server, "/").await;
    assert_eq!(
        (hello.status, hello.body.as_str()),
        (200, "hello from a guarded handler\n")
    );
    let incident = get(&server, "/panic").await.assert_problem();
    let record = server.panic_record(&incident);
    assert_eq!(
        record["exception.message"],
        "could not connect to postgres://app:hunter2@db/prod"
    );
    let user = get(&server, "/users/0").await;
    assert_eq!(user.status, 500);
    let incident = user
        .body
        .trim()
        .strip_prefix("internal error, incident ")
        .unwrap();
    server.panic_record(incident);
    assert_eq!(get(&server, "/healthz").await.body, "ok");
}
