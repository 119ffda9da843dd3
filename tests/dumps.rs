//! Thread dumps: every thread's stack in records, on SIGQUIT while the process goes on, and when
//! the shutdown deadline passes, before the exit record.

mod support;

use std::io::{BufRead, Write};
use std::time::Duration;

use support::running::Running;
use support::{fixture, str_field, Record};

fn start(scenario: &str, env: &[(&str, &str)]) -> Running {
    let mut fixture = fixture("dumps").arg(scenario);
    for (key, value) in env {
        fixture = fixture.env(key, value);
    }
    Running::start(fixture)
}

/// The thread-dump record of the thread named `name`.
fn thread<'a>(records: &'a [Record], name: &str) -> &'a Record {
    records
        .iter()
        .find(|r| r["event"] == "thread_dump" && r["thread.name"] == name)
        .unwrap_or_else(|| panic!("no dump of {name}: {records:#?}"))
}

#[test]
fn sigquit_dumps_every_thread_and_the_service_goes_on() {
    let mut running = start("parked", &[]);
    running.signal(libc::SIGQUIT);
    running.wait_for("thread_dump_summary");
    // Still serving: it answers after the dump.
    writeln!(running.child.stdin.as_mut().unwrap(), "ping").unwrap();
    let mut line = String::new();
    running.stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "pong\n");
    running.signal(libc::SIGTERM);
    let (status, records) = running.finish();
    assert_eq!(status.code(), Some(0), "{status:?}");
    for name in ["parked-1", "parked-2"] {
        let dump = thread(&records, name);
        let trace = str_field(dump, "code.stacktrace");
        assert!(trace.contains("dumps::parked_here"), "{name}: {trace}");
        assert_eq!(dump["thread.state"], "sleeping");
        assert!(dump["thread.id"].as_i64().unwrap() > 0);
    }
    let summary = records
        .iter()
        .find(|r| r["event"] == "thread_dump_summary")
        .unwrap();
    let dumped = records
        .iter()
        .filter(|r| r["event"] == "thread_dump")
        .count();
    let counted = summary["dump.threads"].as_u64().unwrap()
        + summary["dump.unanswered_threads"].as_u64().unwrap();
    assert_eq!(counted as usize, dumped, "{records:#?}");
    let unanswered: Vec<&Record> = records
        .iter()
        .filter(|r| r.get("dump.unanswered").is_some())
        .collect();
    assert!(unanswered.is_empty(), "{unanswered:#?}");
    assert!(records
        .iter()
        .filter(|r| r["event"] == "thread_dump")
        .all(|r| r["dump.id"] == summary["dump.id"]));
    let last = records.last().unwrap();
    assert_eq!(last["event"], "exit");
    assert_eq!(last["exit.reason"], "shutdown");
    assert_eq!(records.iter().filter(|r| r["event"] == "exit").count(), 1);
}

#[test]
fn a_shutdown_that_hangs_shows_where_before_its_deadline_exit() {
    let running = start("stuck-shutdown", &[]);
    let started = std::time::Instant::now();
    running.signal(libc::SIGTERM);
    let (status, records) = running.finish();
    assert_eq!(status.code(), Some(124), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let stuck = thread(&records, "stuck-worker");
    assert!(str_field(stuck, "code.stacktrace").contains("dumps::never_returns"));
    let main = thread(&records, "dumps");
    assert!(
        str_field(main, "code.stacktrace").contains("join"),
        "{main:#?}"
    );
    let exit = records.last().unwrap();
    assert_eq!(exit["exit.reason"], "deadline");
    let dump_at = records
        .iter()
        .position(|r| r["event"] == "thread_dump")
        .unwrap();
    let exit_at = records.len() - 1;
    assert!(dump_at < exit_at);
}

#[test]
fn with_crashguard_sigquit_exit_the_dump_is_followed_by_death_by_sigquit() {
    use std::os::unix::process::ExitStatusExt;
    let running = start("parked", &[("CRASHGUARD_SIGQUIT", "exit")]);
    running.signal(libc::SIGQUIT);
    let (status, records) = running.finish();
    assert_eq!(status.signal(), Some(libc::SIGQUIT), "{status:?}");
    assert!(thread(&records, "parked-1")["code.stacktrace"]
        .as_str()
        .unwrap()
        .contains("parked_here"));
    let exit = records.last().unwrap();
    assert_eq!(exit["exit.reason"], "signal");
    assert_eq!(exit["signal.name"], "SIGQUIT");
    assert_eq!(exit["exit.code"], 131);
}
