//! Graceful shutdown, tested as the kubelet does it: real processes, real signals, real requests
//! in flight, and the exact records and exit status they leave.

mod support;

use std::time::{Duration, Instant};

use support::{fixture, str_field, Record, Server};

/// The events in order, each thread of a thread dump left out (its summary stays).
fn names(records: &[Record]) -> Vec<&str> {
    records
        .iter()
        .map(|r| str_field(r, "event"))
        .filter(|event| *event != "thread_dump")
        .collect()
}

fn hook(record: &Record) -> (&str, &str) {
    (
        str_field(record, "hook.name"),
        str_field(record, "hook.outcome"),
    )
}

/// SIGTERM or SIGINT while requests are in flight: readiness turns 503 at once, the service keeps
/// serving through the delay, then stops accepting, finishes what it had, runs its hooks in
/// reverse order and exits 0.
async fn drains_in_flight_requests(signal: i32, name: &str) -> Vec<Record> {
    let server =
        Server::start_with(fixture("../service").env("CRASHGUARD_SHUTDOWN_DELAY", "600ms"));
    let client = reqwest::Client::new();
    let slow: Vec<_> = (0..3)
        .map(|_| tokio::spawn(client.get(server.url("/slow")).send()))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!slow.iter().any(|request| request.is_finished()));

    server.signal(signal);
    let signalled = Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    let readyz = fresh().get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 503);
    assert_eq!(readyz.text().await.unwrap(), "shutting down\n");
    let during_delay = fresh().get(server.url("/")).send().await.unwrap();
    assert_eq!(during_delay.status(), 200, "still serving during the delay");

    tokio::time::sleep(Duration::from_millis(900).saturating_sub(signalled.elapsed())).await;
    let refused = fresh().get(server.url("/")).send().await.unwrap_err();
    assert!(
        refused.is_connect(),
        "new connections are refused after the drain: {refused}"
    );

    for request in slow {
        let response = request.await.unwrap().expect("in-flight request completes");
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "slow answer\n");
    }
    let (status, records) = server.finish(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{name}: {records:#?}");
    assert_eq!(
        names(&records),
        ["shutdown", "shutdown_hook", "shutdown_hook", "exit"],
        "{name}"
    );
    assert_eq!(records[0]["signal.name"], name);
    assert_eq!(records[0]["signal.number"], signal);
    assert_eq!(records[0]["shutdown.grace_period_ms"], 30_000);
    assert_eq!(records[0]["shutdown.delay_ms"], 600);
    assert_eq!(
        hook(&records[1]),
        ("flush-metrics", "ok"),
        "last registered runs first"
    );
    assert_eq!(hook(&records[2]), ("close-db-pool", "ok"));
    let exit = &records[3];
    assert_eq!(exit["exit.code"], 0);
    assert_eq!(exit["exit.reason"], "shutdown");
    assert!(str_field(exit, "message").starts_with(&format!(
        "exited with 0: graceful shutdown after {name} finished in "
    )));
    records
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_runs_hooks_in_reverse_and_exits_0() {
    let records = drains_in_flight_requests(libc::SIGTERM, "SIGTERM").await;
    assert_eq!(records[0]["shutdown.interactive"], false);
    assert_eq!(
        records[0]["message"],
        "SIGTERM received: shutting down within 30000 ms"
    );
}

#[tokio::test]
async fn sigint_does_the_same_and_is_marked_interactive() {
    let records = drains_in_flight_requests(libc::SIGINT, "SIGINT").await;
    assert_eq!(records[0]["shutdown.interactive"], true);
    assert_eq!(
        records[0]["message"],
        "SIGINT received (interactive, not a production stop): shutting down within 30000 ms"
    );
}

#[test]
fn a_service_that_ignores_the_signal_exits_by_itself_at_the_deadline() {
    let server = Server::start_with(
        fixture("shutdown_cases")
            .arg("ignores-shutdown")
            .env("CRASHGUARD_GRACE_PERIOD", "2s"),
    );
    let termination_log = server.termination_log.clone();
    let signalled = Instant::now();
    let (status, records) = server.stop_with(libc::SIGTERM, Duration::from_secs(10));
    let took = signalled.elapsed();
    // The deadline is the grace period less a tenth kept for the exit itself (1.8 s); then the
    // thread dump and the exit, which a loaded two-core machine has been seen to stretch by a
    // second.
    assert!(
        took >= Duration::from_millis(1700) && took < Duration::from_millis(4000),
        "{took:?}"
    );
    assert_eq!(status.code(), Some(124));
    // Where the drain hung: a thread dump before the exit record.
    assert_eq!(names(&records), ["shutdown", "thread_dump_summary", "exit"]);
    let exit = records.last().unwrap();
    assert_eq!(exit["exit.reason"], "deadline");
    assert_eq!(exit["exit.code"], 124);
    assert_eq!(exit["shutdown.pending"], "main");
    let message = "shutdown deadline of 2000 ms passed; still running: main";
    assert_eq!(exit["message"], format!("exited with 124: {message}"));
    assert_eq!(std::fs::read_to_string(termination_log).unwrap(), message);
}

fn second_signal_exits_at_once(signal: i32, name: &str) {
    let server = Server::start_with(fixture("shutdown_cases").arg("ignores-shutdown"));
    let termination_log = server.termination_log.clone();
    server.signal(signal);
    server.wait_for_record(|r| r["event"] == "shutdown");
    let again = Instant::now();
    let (status, records) = server.stop_with(signal, Duration::from_secs(10));
    assert!(
        again.elapsed() < Duration::from_secs(1),
        "{:?}",
        again.elapsed()
    );
    assert_eq!(status.code(), Some(128 + signal));
    assert_eq!(names(&records), ["shutdown", "exit"]);
    let exit = &records[1];
    assert_eq!(exit["exit.reason"], "signal");
    assert_eq!(exit["exit.code"], 128 + signal);
    assert_eq!(exit["signal.name"], name);
    assert_eq!(
        std::fs::read_to_string(termination_log).unwrap(),
        format!("second {name} during shutdown")
    );
}

#[test]
fn a_second_sigterm_during_shutdown_exits_at_once_with_143() {
    second_signal_exits_at_once(libc::SIGTERM, "SIGTERM");
}

#[test]
fn a_second_sigint_during_shutdown_exits_at_once_with_130() {
    second_signal_exits_at_once(libc::SIGINT, "SIGINT");
}

#[test]
fn a_hook_that_hangs_is_cut_off_at_the_deadline_and_named() {
    let server = Server::start_with(
        fixture("shutdown_cases")
            .arg("hook-hangs")
            .env("CRASHGUARD_GRACE_PERIOD", "1500ms"),
    );
    let (status, records) = server.stop_with(libc::SIGTERM, Duration::from_secs(10));
    assert_eq!(status.code(), Some(124));
    assert_eq!(
        names(&records),
        [
            "shutdown",
            "shutdown_hook",
            "shutdown_hook",
            "thread_dump_summary",
            "exit"
        ]
    );
    assert_eq!(hook(&records[1]), ("quick", "ok"));
    assert_eq!(hook(&records[2]), ("hangs", "timed_out"));
    assert_eq!(records[2]["severity"], "ERROR");
    let exit = records.last().unwrap();
    assert_eq!(exit["exit.reason"], "deadline");
    assert_eq!(exit["shutdown.pending"], "shutdown hook \"hangs\"");
}

#[test]
fn a_panicking_hook_is_recorded_and_the_other_hooks_still_run() {
    // A grace period the hook's panic cannot outlast: its trace is the process's first, and
    // reading a debug build's debug info took more than the fixture's 3 s on a loaded machine.
    let server = Server::start_with(
        fixture("shutdown_cases")
            .arg("hook-panics")
            .env("CRASHGUARD_GRACE_PERIOD", "20s"),
    );
    let (status, records) = server.stop_with(libc::SIGTERM, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        names(&records),
        [
            "shutdown",
            "shutdown_hook",
            "panic",
            "shutdown_hook",
            "shutdown_hook",
            "exit"
        ]
    );
    assert_eq!(hook(&records[1]), ("last", "ok"));
    assert_eq!(records[2]["exception.message"], "pool already closed");
    assert_eq!(hook(&records[3]), ("panics", "panicked"));
    assert_eq!(hook(&records[4]), ("first", "ok"));
    assert_eq!(records[5]["exit.reason"], "shutdown");
}

#[test]
fn without_the_environment_the_grace_period_is_the_attributes() {
    let server = Server::start_with(fixture("shutdown_cases").arg("ignores-shutdown"));
    let signalled = Instant::now();
    let (status, records) = server.stop_with(libc::SIGTERM, Duration::from_secs(10));
    let took = signalled.elapsed();
    // 2.7 s, then the dump and the exit (see the test above).
    assert!(
        took >= Duration::from_millis(2700) && took < Duration::from_millis(5000),
        "{took:?}"
    );
    assert_eq!(status.code(), Some(124));
    assert_eq!(records[0]["shutdown.grace_period_ms"], 3000);
    assert_eq!(
        records.last().unwrap()["message"],
        "exited with 124: shutdown deadline of 3000 ms passed; still running: main"
    );
}

#[test]
fn the_shutdown_signal_fits_axum_and_tokio_spawn() {
    fn send_static_future<F: std::future::Future<Output = ()> + Send + 'static>(_: &F) {}
    let signal = crashguard::shutdown_signal();
    send_static_future(&signal);
    let token = crashguard::shutdown_token();
    assert!(
        !token.is_cancelled(),
        "no signal has arrived in this test process"
    );
}
