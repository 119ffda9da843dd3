//! Panics on the dashboard and in readiness: a real service with metrics-exporter-prometheus
//! installed, scraped over HTTP, its panic budget spent by real requests.

mod support;

use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use support::{fixture, scratch_path, str_field, Fixture, Record, Server};

const SIGTERM: i32 = 15;

async fn get(server: &Server, path: &str) -> (u16, String, Option<String>) {
    // A fresh connection each time: a spent budget must not hide behind a pooled one.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let response = client
        .get(server.url(path))
        .send()
        .await
        .expect("an answer");
    let status = response.status().as_u16();
    let incident = response
        .headers()
        .get("x-incident-id")
        .map(|id| id.to_str().unwrap().to_owned());
    (status, response.text().await.unwrap(), incident)
}

/// A panicking request, answered 500; its incident id.
async fn panic_on(server: &Server, path: &str) -> String {
    let (status, _, incident) = get(server, path).await;
    assert_eq!(status, 500, "{path}");
    incident.expect("the 500 names its incident")
}

/// The samples of a Prometheus text exposition: `name{labels}` to value.
fn samples(scrape: &str) -> Vec<(String, f64)> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

fn sample(scrape: &str, series: &str) -> Option<f64> {
    samples(scrape)
        .into_iter()
        .find(|(name, _)| name == series)
        .map(|(_, value)| value)
}

fn service() -> Fixture {
    fixture("metrics_service")
}

#[tokio::test]
async fn panics_are_counted_per_route_template_and_function_and_shutdown_and_hooks_after_sigterm() {
    let final_scrape = scratch_path("final-scrape");
    let server =
        Server::start_with(service().env("METRICS_AT_EXIT", final_scrape.to_str().unwrap()));
    let before = SystemTime::now();
    let mut incidents = Vec::new();
    for id in 1..=3 {
        incidents.push(panic_on(&server, &format!("/users/{id}")).await);
    }
    for id in [5, 6] {
        incidents.push(panic_on(&server, &format!("/orders/{id}")).await);
    }
    assert_eq!(get(&server, "/orders/0").await.0, 200);
    let after = SystemTime::now();

    let (status, scrape, _) = get(&server, "/metrics").await;
    assert_eq!(status, 200);
    let panics: Vec<_> = samples(&scrape)
        .into_iter()
        .filter(|(series, _)| series.starts_with("crashguard_panics_total"))
        .collect();
    let mut panics = panics;
    panics.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        panics,
        [
            (r#"crashguard_panics_total{function="",route="/users/{id}"}"#.to_owned(), 3.0),
            (
                r#"crashguard_panics_total{function="metrics_service::order",route="/orders/{id}"}"#
                    .to_owned(),
                2.0
            ),
        ],
        "one series per route template, never per path: {scrape}"
    );
    assert!(
        scrape.contains("# TYPE crashguard_panics_total counter"),
        "{scrape}"
    );
    let last = sample(&scrape, "crashguard_last_panic_timestamp_seconds").expect("the gauge");
    let unix = |time: SystemTime| {
        time.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    assert!(
        unix(before) <= last && last <= unix(after),
        "{last} not in the test's time"
    );

    // The records carry the same route template, next to the raw path.
    let record = server.panic_record(&incidents[0]);
    assert_eq!(record["http.route"], "/users/{id}");
    assert_eq!(record["url.path"], "/users/1");

    let (status, records) = server.stop_with(SIGTERM, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{records:#?}");
    let scrape = std::fs::read_to_string(&final_scrape).expect("the final scrape");
    assert_eq!(
        sample(&scrape, r#"crashguard_shutdowns_total{signal="SIGTERM"}"#),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(
        sample(
            &scrape,
            r#"crashguard_shutdown_hooks_total{hook="flush",outcome="ok"}"#
        ),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(
        sample(
            &scrape,
            r#"crashguard_shutdown_hooks_total{hook="broken",outcome="panicked"}"#
        ),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(
        samples(&scrape)
            .iter()
            .filter(|(series, _)| series.starts_with("crashguard_shutdowns_total"))
            .count(),
        1,
        "{scrape}"
    );
}

fn health(body: &str) -> Value {
    serde_json::from_str(body).expect("health is JSON")
}

#[tokio::test]
async fn the_fourth_panic_of_a_3_per_10_s_budget_turns_readyz_503_until_a_clean_window() {
    let server = Server::start_with(service().env("CRASHGUARD_PANIC_BUDGET", "3/10s"));
    for id in 1..=3 {
        panic_on(&server, &format!("/users/{id}")).await;
    }
    assert_eq!(
        get(&server, "/readyz").await,
        (200, "ready\n".to_owned(), None)
    );
    // Before the request: the panic is noted after it, so it counts for at least a window from
    // here.
    let spent = Instant::now();
    let fourth = panic_on(&server, "/orders/4").await;
    let (status, reason, _) = get(&server, "/readyz").await;
    assert_eq!(status, 503);
    assert_eq!(
        reason,
        "panic budget spent: more than 3 panics within 10s; ready again after 10s without one\n"
    );
    let (_, body, _) = get(&server, "/health").await;
    let now = health(&body);
    assert_eq!(now["panics"], 4, "{now}");
    assert_eq!(now["panics_in_window"], 4, "{now}");
    assert_eq!(now["window_ms"], 10_000, "{now}");
    assert_eq!(now["budget"], "3/10s", "{now}");
    assert_eq!(now["budget_spent"], true, "{now}");
    assert_eq!(now["last_incident_id"], fourth.as_str(), "{now}");
    // The service still answers what does not panic, and does not shut down on its own.
    assert_eq!(get(&server, "/ok").await.0, 200);

    let ready_again = loop {
        let (status, body, _) = get(&server, "/readyz").await;
        if status == 200 {
            assert_eq!(body, "ready\n");
            break spent.elapsed();
        }
        assert!(spent.elapsed() < Duration::from_secs(20), "still not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A panic counts for a whole window and at most a tenth more (and the test's polling and a
    // busy machine's delays on top).
    assert!(
        ready_again >= Duration::from_secs(10),
        "ready after {ready_again:?}"
    );
    assert!(
        ready_again <= Duration::from_secs(14),
        "ready after {ready_again:?}"
    );
    let (_, body, _) = get(&server, "/health").await;
    let later = health(&body);
    assert_eq!(later["panics"], 4, "{later}");
    assert_eq!(later["panics_in_window"], 0, "{later}");
    assert_eq!(later["budget_spent"], false, "{later}");
    let (status, records) = server.stop_with(SIGTERM, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{records:#?}");
}

#[tokio::test]
async fn a_spent_budget_set_to_exit_shuts_down_gracefully_with_code_102_and_its_reason() {
    let final_scrape = scratch_path("final-scrape");
    let server = Server::start_with(
        service()
            .env("CRASHGUARD_PANIC_BUDGET", "3/10s")
            .env("CRASHGUARD_PANIC_BUDGET_EXIT", "1")
            .env("METRICS_AT_EXIT", final_scrape.to_str().unwrap()),
    );
    for id in 1..=4 {
        panic_on(&server, &format!("/users/{id}")).await;
    }
    let termination_log = server.termination_log.clone();
    let (status, records) = server.finish(Duration::from_secs(10));
    assert_eq!(status.code(), Some(102), "{records:#?}");
    let events: Vec<&str> = records.iter().map(|r| str_field(r, "event")).collect();
    assert_eq!(
        events,
        [
            "panic",
            "panic",
            "panic",
            "panic",
            "shutdown",
            "panic",
            "shutdown_hook",
            "shutdown_hook",
            "shutdown_hook",
            "exit"
        ],
        "{records:#?}"
    );
    let shutdown: &Record = &records[4];
    assert_eq!(shutdown["shutdown.reason"], "panic_budget");
    assert_eq!(shutdown["health.panics_in_window"], 4);
    assert_eq!(shutdown["health.panic_budget"], "3/10s");
    assert_eq!(
        str_field(shutdown, "message"),
        "4 panics spent the panic budget of 3/10s: shutting down within 30000 ms"
    );
    assert!(shutdown.get("signal.name").is_none());
    let exit = records.last().unwrap();
    assert_eq!(exit["exit.code"], 102);
    assert_eq!(exit["exit.reason"], "panic_budget");
    let message = str_field(exit, "message");
    assert!(
        message.starts_with(
            "exited with 102: graceful shutdown after 4 panics spent the panic budget of 3/10s \
             finished in "
        ),
        "{message}"
    );
    let termination = std::fs::read_to_string(termination_log).expect("a termination message");
    assert!(
        termination.starts_with("graceful shutdown after 4 panics spent the panic budget of 3/10s"),
        "{termination}"
    );
    let scrape = std::fs::read_to_string(&final_scrape).expect("the final scrape");
    assert_eq!(
        sample(
            &scrape,
            r#"crashguard_shutdowns_total{signal="panic_budget"}"#
        ),
        Some(1.0),
        "{scrape}"
    );
}

#[test]
fn an_unreadable_panic_budget_is_reported_and_none_is_used() {
    let run = fixture("sync_main")
        .arg("return")
        .env("CRASHGUARD_PANIC_BUDGET", "three per ten")
        .env("CRASHGUARD_PANIC_BUDGET_EXIT", "sometimes")
        .run();
    let configs = run.events("config");
    let variables: Vec<&str> = configs
        .iter()
        .map(|r| str_field(r, "config.variable"))
        .collect();
    assert_eq!(
        variables,
        ["CRASHGUARD_PANIC_BUDGET", "CRASHGUARD_PANIC_BUDGET_EXIT"],
        "{:#?}",
        run.records
    );
    assert_eq!(
        str_field(configs[0], "message"),
        "ignored CRASHGUARD_PANIC_BUDGET=\"three per ten\": expected panics per window, such as \
         3/10s, or off; using the value set in code"
    );
}
