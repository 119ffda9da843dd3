//! `#[crash_guarded]` on `main`: every way a program ends leaves its records, one exit record
//! last, the right exit status and, for a bad end, the termination message.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{fixture, str_field, Record};

const NON_STRING_PAYLOAD: &str = "Box<dyn Any> (a panic payload that is not a string)";

fn assert_panic_record(
    record: &Record,
    function: Option<&str>,
    file: &str,
    line: u64,
    message: &str,
) {
    assert_eq!(record["event"], "panic");
    assert_eq!(record["severity"], "ERROR");
    assert_eq!(record["exception.type"], "panic");
    assert_eq!(record["exception.message"], message);
    assert_eq!(record["code.file.path"], file);
    assert_eq!(record["code.line.number"], line);
    assert_eq!(
        record.get("code.function.name").and_then(|f| f.as_str()),
        function
    );
    let where_ = match function {
        Some(function) => format!("panic in {function} at {file}:{line}:"),
        None => format!("panic at {file}:{line}:"),
    };
    assert!(
        str_field(record, "message").starts_with(&where_),
        "{record:#?}"
    );
    assert!(str_field(record, "message").ends_with(message) || message.len() > 1000);
    let incident = str_field(record, "incident.id");
    assert!(!incident.is_empty() && incident.chars().all(|c| c.is_ascii_graphic()));
    assert!(record["thread.id"].as_i64().unwrap() > 0);
    assert!(record["process.pid"].as_u64().unwrap() > 0);
}

fn assert_exit(record: &Record, code: i64, reason: &str) {
    assert_eq!(record["event"], "exit");
    assert_eq!(record["exit.code"], code);
    assert_eq!(record["exit.reason"], reason);
    assert_eq!(record["severity"], if code == 0 { "INFO" } else { "ERROR" });
}

#[test]
fn a_main_that_returns_exits_0_with_a_single_exit_record() {
    let run = fixture("sync_main").arg("return").run();
    assert_eq!(run.status.code(), Some(0));
    assert_eq!(run.event_names(), ["exit"]);
    assert_exit(run.exit_record(), 0, "returned");
    assert_eq!(
        str_field(run.exit_record(), "message"),
        "exited with 0: main returned"
    );
    assert_eq!(run.stdout, "returned normally\n");
    assert_eq!(
        run.termination_message().as_deref(),
        Some("main returned"),
        "a clean exit replaces the message written in advance with its own"
    );
}

#[test]
fn a_panic_in_sync_main_is_one_record_then_exit_101() {
    let run = fixture("sync_main").arg("panic").run();
    assert_eq!(run.status.code(), Some(101));
    assert_eq!(run.event_names(), ["panic", "exit"]);
    let panic = &run.records[0];
    assert_panic_record(
        panic,
        Some("sync_main::main"),
        "fixtures/src/bin/sync_main.rs",
        12,
        "boom in sync main",
    );
    assert_eq!(panic["thread.name"], "main");
    let exit = run.exit_record();
    assert_exit(exit, 101, "panic");
    assert_eq!(exit["incident.id"], panic["incident.id"]);
    let incident = str_field(panic, "incident.id");
    assert_eq!(
        run.termination_message().unwrap(),
        format!(
            "panic in sync_main::main at fixtures/src/bin/sync_main.rs:12:20: \
             boom in sync main [incident {incident}]"
        )
    );
}

#[test]
fn the_backtrace_is_folded_into_the_line_and_starts_at_the_users_frame() {
    let run = fixture("sync_main").arg("panic").run();
    let trace = str_field(&run.records[0], "exception.stacktrace");
    let frames: Vec<&str> = trace.split('\n').collect();
    assert!(
        frames[0].starts_with("0: sync_main::main::{{closure}} at ")
            && frames[0].ends_with("fixtures/src/bin/sync_main.rs:12:20"),
        "{trace}"
    );
    assert!(frames[1].starts_with("1: sync_main::main at "), "{trace}");
    assert!(
        !trace.contains("panicking"),
        "panic machinery is dropped: {trace}"
    );
    assert!(
        !trace.contains("crashguard_runtime"),
        "crashguard's frames are dropped: {trace}"
    );
}

#[test]
fn backtraces_are_kept_whatever_rust_backtrace_says() {
    let run = fixture("sync_main")
        .arg("panic")
        .env("RUST_BACKTRACE", "0")
        .run();
    assert!(run.records[0].contains_key("exception.stacktrace"));
}

#[test]
fn crashguard_backtrace_0_leaves_the_trace_out() {
    let run = fixture("sync_main")
        .arg("panic")
        .env("CRASHGUARD_BACKTRACE", "0")
        .run();
    assert_eq!(run.event_names(), ["panic", "exit"]);
    assert!(!run.records[0].contains_key("exception.stacktrace"));
    assert_eq!(run.status.code(), Some(101));
}

#[test]
fn a_panic_in_async_main_above_tokio_main_exits_101() {
    let run = fixture("async_crashguard_first").arg("panic").run();
    assert_eq!(run.status.code(), Some(101));
    assert_eq!(run.event_names(), ["panic", "exit"]);
    assert_panic_record(
        &run.records[0],
        Some("async_crashguard_first::main"),
        "fixtures/src/bin/async_crashguard_first.rs",
        10,
        "boom in async main",
    );
    assert_exit(run.exit_record(), 101, "panic");
    assert_eq!(
        run.exit_record()["incident.id"],
        run.records[0]["incident.id"]
    );
}

#[test]
fn a_panic_in_async_main_below_tokio_main_exits_101() {
    let run = fixture("async_tokio_first").arg("panic").run();
    assert_eq!(run.status.code(), Some(101));
    assert_eq!(run.event_names(), ["panic", "exit"]);
    assert_panic_record(
        &run.records[0],
        Some("async_tokio_first::main"),
        "fixtures/src/bin/async_tokio_first.rs",
        10,
        "boom in async main",
    );
    assert_exit(run.exit_record(), 101, "panic");
}

#[test]
fn async_mains_under_tokio_return_0_in_either_attribute_order() {
    for name in ["async_crashguard_first", "async_tokio_first"] {
        let run = fixture(name).arg("return").run();
        assert_eq!(run.status.code(), Some(0), "{name}");
        assert_eq!(run.event_names(), ["exit"], "{name}");
        assert_exit(run.exit_record(), 0, "returned");
        assert_eq!(run.stdout, "returned normally\n");
    }
}

#[test]
fn an_async_main_without_tokio_main_runs_on_the_runtime_crashguard_builds() {
    let run = fixture("async_own_runtime").arg("return").run();
    assert_eq!(run.status.code(), Some(0));
    assert_eq!(run.stdout, "runtime flavor CurrentThread\n");
    assert_exit(run.exit_record(), 0, "returned");

    let run = fixture("async_own_runtime").arg("panic").run();
    assert_eq!(run.status.code(), Some(101));
    assert_eq!(run.event_names(), ["panic", "exit"]);
    assert!(
        !run.records[0].contains_key("exception.stacktrace"),
        "backtrace = false"
    );

    let run = fixture("async_own_runtime").arg("error").run();
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(run.exit_record()["error.message"], "\"no database\"");
}

#[test]
fn a_panicking_task_is_recorded_and_main_goes_on() {
    let run = fixture("async_own_runtime").arg("task-panic").run();
    assert_eq!(run.event_names(), ["panic", "exit"]);
    assert_eq!(run.records[0]["exception.message"], "boom in a task");
    assert_eq!(
        run.stdout,
        "runtime flavor CurrentThread\ntask failed: true\n"
    );
    assert_eq!(run.status.code(), Some(0));
}

#[test]
fn an_err_from_main_exits_1_with_the_error_on_one_line() {
    let run = fixture("result_main").arg("error").run();
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(run.event_names(), ["exit"]);
    let exit = run.exit_record();
    assert_exit(exit, 1, "error");
    let error = "loading the config\n\nCaused by:\n    line one\n    line two";
    assert_eq!(
        exit["error.message"], error,
        "the whole chain, as std prints it"
    );
    assert_eq!(
        exit["message"], "exited with 1: main returned an error: loading the config",
        "one sentence: the error's first line"
    );
    assert_eq!(
        run.stderr.iter().filter(|b| **b == b'\n').count(),
        2,
        "one line, after the start record's"
    );
    assert_eq!(
        run.termination_message().unwrap(),
        "main returned an error: loading the config"
    );
    assert!(!exit.contains_key("error.stacktrace"));
}

#[test]
fn an_errs_captured_backtrace_goes_in_a_field_of_its_own_and_the_lines_stay_short() {
    // RUST_BACKTRACE=1, as images often set: anyhow captures a backtrace and ends its Debug
    // with it.
    let run = fixture("result_main")
        .arg("error")
        .env("RUST_BACKTRACE", "1")
        .run();
    assert_eq!(run.status.code(), Some(1));
    let exit = run.exit_record();
    assert_eq!(
        exit["message"],
        "exited with 1: main returned an error: loading the config"
    );
    assert_eq!(
        exit["error.message"],
        "loading the config\n\nCaused by:\n    line one\n    line two"
    );
    let backtrace = str_field(exit, "error.stacktrace");
    assert!(backtrace.contains("result_main::main"), "{backtrace}");
    assert!(!exit.contains_key("record.truncated"));
    let termination = run.termination_message().unwrap();
    assert_eq!(termination, "main returned an error: loading the config");
    assert!(termination.len() < 1024);
}

#[test]
fn question_mark_and_return_keep_their_meaning_in_main() {
    let run = fixture("result_main").arg("question-mark").run();
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(
        run.exit_record()["error.message"],
        "invalid digit found in string",
        "`?` converted the ParseIntError into anyhow::Error"
    );
    assert_eq!(run.stdout, "");

    let run = fixture("result_main").arg("early-return").run();
    assert_eq!(run.status.code(), Some(0));
    assert_exit(run.exit_record(), 0, "returned");
}

#[test]
fn an_exit_code_from_main_is_the_process_exit_status() {
    for code in [0, 3, 255] {
        let run = fixture("exit_code_main").arg(&code.to_string()).run();
        assert_eq!(run.status.code(), Some(code));
        assert_exit(run.exit_record(), i64::from(code), "returned");
    }
}

#[test]
fn a_panic_in_a_spawned_thread_is_recorded_while_main_goes_on() {
    let run = fixture("sync_main").arg("thread-panic").run();
    assert_eq!(run.event_names(), ["panic", "exit"]);
    let panic = &run.records[0];
    assert_panic_record(
        panic,
        None,
        "fixtures/src/bin/sync_main.rs",
        19,
        "boom in a worker",
    );
    assert_eq!(panic["thread.name"], "worker-7");
    assert_ne!(panic["thread.id"], panic["process.pid"]);
    assert_eq!(run.stdout, "main goes on\n");
    assert_exit(run.exit_record(), 0, "returned");
    assert_eq!(run.status.code(), Some(0));
}

#[test]
fn a_payload_that_is_not_a_string_gets_a_placeholder() {
    let run = fixture("sync_main").arg("non-string-payload").run();
    assert_eq!(run.records[0]["exception.message"], NON_STRING_PAYLOAD);
    assert_eq!(run.status.code(), Some(101));
}

#[test]
fn newlines_quotes_and_control_characters_stay_inside_one_line() {
    let run = fixture("sync_main").arg("nasty-message").run();
    let nasty = "line one\nline \"two\"\r\n\t\\ \u{1b}[31mred\u{1b}[0m \u{0}\u{7}\u{7f}\n\
                 {\"event\":\"exit\",\"exit.code\":0}";
    assert_eq!(run.event_names(), ["panic", "exit"], "no forged record");
    assert_eq!(run.records[0]["exception.message"], nasty);
    assert_eq!(
        run.stderr.iter().filter(|b| **b == b'\n').count(),
        3,
        "the start record, the panic, the exit"
    );
    assert!(
        !run.stderr.contains(&0x1b),
        "no raw ANSI escape reaches the log"
    );
}

#[test]
fn a_huge_message_is_cut_to_keep_the_record_under_16_kib() {
    let run = fixture("sync_main").arg("huge-message").run();
    let first_line = run.stderr.split(|b| *b == b'\n').next().unwrap();
    assert!(first_line.len() < 16 * 1024, "{} bytes", first_line.len());
    let message = str_field(&run.records[0], "exception.message");
    assert!(
        message.ends_with("…[truncated]"),
        "{}",
        &message[message.len() - 40..]
    );
    assert!(message.starts_with("xxxxxxxx"));
    assert_eq!(run.records[0]["record.truncated"], true);
    let termination = run.termination_message().unwrap();
    assert!(
        termination.len() <= 4096 && termination.len() > 4000,
        "{}",
        termination.len()
    );
    assert!(termination.starts_with("panic in sync_main::main at "));
}

#[test]
fn the_termination_message_replaces_what_was_there() {
    let fixture = fixture("sync_main").arg("panic");
    std::fs::write(&fixture.termination_log, "stale ".repeat(2000)).unwrap();
    let run = fixture.run();
    let message = run.termination_message().unwrap();
    assert!(message.starts_with("panic in sync_main::main"), "{message}");
    assert!(!message.contains("stale"));
}

#[test]
fn sixty_four_threads_panicking_at_once_leave_sixty_four_whole_records() {
    let run = fixture("sync_main").arg("threads-panic-together").run();
    let text = std::str::from_utf8(&run.stderr).unwrap();
    let long = text.lines().filter(|line| line.len() > 4096).count();
    assert_eq!(
        long, 32,
        "half the records are longer than a pipe takes at once"
    );
    let panics = run.events("panic");
    assert_eq!(panics.len(), 64);
    let mut seen: Vec<String> = panics
        .iter()
        .map(|record| {
            let message = str_field(record, "exception.message");
            let (head, tail) = message.split_at(9);
            let index: usize = head["thread ".len()..].parse().unwrap();
            let length = if index.is_multiple_of(2) { 3000 } else { 300 };
            assert_eq!(tail, format!(" {}", "m".repeat(length)), "whole message");
            head.to_owned()
        })
        .collect();
    seen.sort();
    let expected: Vec<String> = (0..64).map(|index| format!("thread {index:02}")).collect();
    assert_eq!(seen, expected);
    let mut incidents: Vec<&str> = panics.iter().map(|r| str_field(r, "incident.id")).collect();
    incidents.sort();
    incidents.dedup();
    assert_eq!(incidents.len(), 64, "one incident id per panic");
    assert_exit(run.exit_record(), 0, "returned");
}

#[test]
fn a_forked_child_does_not_wait_for_a_record_its_parent_was_writing() {
    let run = fixture("sync_main").arg("fork-while-writing").run();
    assert_eq!(run.stdout.trim(), "child exited with 101");
    let panic = &run.events("panic")[..];
    assert_eq!(
        panic.len(),
        1,
        "only the child's record reaches this stderr"
    );
    assert_eq!(panic[0]["exception.message"], "boom in the forked child");
    assert_exit(run.exit_record(), 101, "panic");
    assert_eq!(panic[0]["process.pid"], run.exit_record()["process.pid"]);
}

#[test]
fn with_stderr_closed_the_exit_status_is_unchanged() {
    let path = support::fixture_path("sync_main");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("exec \"$0\" panic 2>&-")
        .arg(&path)
        .env_remove("RUST_BACKTRACE")
        .env("CRASHGUARD_TERMINATION_LOG", "")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let status = support::wait_at_most(&mut child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(101));
}

#[test]
fn with_stderr_closed_inside_the_process_writes_fail_quietly() {
    // std reopens a closed fd 2 on /dev/null before main, so close it from inside instead.
    let run = fixture("sync_main").arg("close-stderr-then-panic").run();
    assert_eq!(run.status.code(), Some(101));
    // Only the start record, written before fd 2 was closed.
    assert!(run.records.is_empty(), "{:#?}", run.records);
    assert!(run.start.is_some());
    assert!(run
        .termination_message()
        .unwrap()
        .contains("boom with stderr closed"));
}

#[test]
fn when_the_stderr_reader_is_gone_the_exit_status_is_unchanged() {
    let mut child = Command::new(support::fixture_path("sync_main"))
        .arg("late-panic")
        .env("CRASHGUARD_TERMINATION_LOG", "")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let status = support::wait_at_most(&mut child, Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(101),
        "not killed by SIGPIPE: {status:?}"
    );
    assert_eq!(status.signal(), None);
}

#[test]
fn with_a_tracing_subscriber_the_panic_goes_through_it_inside_the_span() {
    let run = fixture("with_tracing").run();
    assert_eq!(run.status.code(), Some(101));
    assert_eq!(run.records.len(), 2);
    let event = &run.records[0];
    assert_eq!(event["level"], "ERROR");
    assert_eq!(event["target"], "crashguard");
    let fields = event["fields"].as_object().unwrap();
    assert_eq!(fields["event"], "panic");
    assert_eq!(fields["exception.message"], "boom inside a span");
    assert_eq!(
        fields["message"],
        "panic in with_tracing::main at fixtures/src/bin/with_tracing.rs:13:5: boom inside a span"
    );
    assert_eq!(event["span"]["request_id"], "req-42");
    assert_eq!(event["span"]["user"], 7);
    let exit = run.exit_record();
    assert_exit(exit, 101, "panic");
    assert_eq!(exit["incident.id"], fields["incident.id"]);
}

#[test]
fn an_unreadable_environment_setting_is_reported_and_ignored() {
    let run = fixture("sync_main")
        .arg("return")
        .env("CRASHGUARD_GRACE_PERIOD", "soon")
        .run();
    assert_eq!(run.event_names(), ["config", "exit"]);
    let config = &run.records[0];
    assert_eq!(config["severity"], "WARNING");
    assert_eq!(config["config.variable"], "CRASHGUARD_GRACE_PERIOD");
    assert_eq!(config["config.value"], "soon");
    assert!(str_field(config, "message").starts_with("ignored CRASHGUARD_GRACE_PERIOD=\"soon\""));
    assert_eq!(run.status.code(), Some(0));
}

#[test]
fn the_first_line_is_a_start_record_naming_the_package_the_process_and_its_pod() {
    let run = fixture("exit_code_main")
        .env("POD_NAME", "checkout-7d9f-x2")
        .env("POD_NAMESPACE", "shop")
        .env("NODE_NAME", "node-3")
        .run();
    let start = run.start.as_ref().expect("a start record, first");
    assert_eq!(start["severity"], "INFO");
    assert_eq!(start["service.name"], "crashguard-fixtures");
    assert_eq!(start["service.version"], "0.0.0");
    assert_eq!(
        start["message"],
        format!(
            "started crashguard-fixtures 0.0.0 (pid {})",
            start["process.pid"]
        )
    );
    assert!(str_field(start, "process.executable.path").ends_with("/exit_code_main"));
    let build_id = str_field(start, "process.executable.build_id.gnu");
    assert!(build_id.len() == 40 && build_id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(start["k8s.pod.name"], "checkout-7d9f-x2");
    assert_eq!(start["k8s.namespace.name"], "shop");
    assert_eq!(start["k8s.node.name"], "node-3");
    assert_eq!(start["shutdown.grace_period_ms"], 30_000);
    assert_eq!(start["process.pid"], run.exit_record()["process.pid"]);

    let run = fixture("exit_code_main")
        .env("OTEL_SERVICE_NAME", "checkout")
        .run();
    let start = run.start.as_ref().unwrap();
    assert_eq!(start["service.name"], "checkout");
    assert_eq!(start["service.version"], "0.0.0");
    for key in ["k8s.pod.name", "k8s.namespace.name", "k8s.node.name"] {
        assert!(!start.contains_key(key), "{key} without the downward API");
    }
}

#[test]
fn the_trace_of_a_panic_std_raises_starts_at_the_users_frame() {
    let run = fixture("sync_main").arg("std-panics").run();
    let functions = [
        ("index", "index_out_of_bounds"),
        ("unwrap", "unwrap_none"),
        ("expect", "expect_err"),
        ("arithmetic", "add_overflow"),
        ("borrow", "borrow_twice"),
        ("range", "slice_range"),
    ];
    let panics = run.events("panic");
    assert_eq!(panics.len(), functions.len(), "{:#?}", run.records);
    for (panic, (guarded, function)) in panics.iter().zip(functions) {
        assert_eq!(panic["code.function.name"], guarded);
        let trace = str_field(panic, "exception.stacktrace");
        let first = trace.lines().next().unwrap();
        assert!(
            first.starts_with(&format!("0: sync_main::{function} at "))
                && first.contains("fixtures/src/bin/sync_main.rs:"),
            "{guarded}: {trace}"
        );
    }
}
