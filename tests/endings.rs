//! Every way a process ends leaves one exit record, last: `exit` called by the application, and
//! each signal whose default action ends the process, then death by that signal (or, as PID 1,
//! 128 + n). An application's own handler for such a signal keeps it, installed before
//! crashguard or after.

mod support;

use std::io::BufRead;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use support::running::Running;
use support::{fixture, fixture_path, program, str_field};

#[test]
fn exit_called_by_the_application_leaves_one_exit_record_with_its_code() {
    let run = fixture("endings").arg("exit-3").run();
    assert_eq!(run.status.code(), Some(3), "{:?}", run.status);
    let exit = run.exit_record();
    assert_eq!(exit["exit.code"], 3);
    assert_eq!(exit["exit.reason"], "exit_called");
    assert_eq!(exit["message"], "exited with 3: exit() was called");
    assert_eq!(
        run.termination_message().as_deref(),
        Some("exit() was called")
    );
}

/// The signals whose default action ends the process, which crashguard records.
const TERMINATING: [(i32, &str); 10] = [
    (libc::SIGHUP, "SIGHUP"),
    (libc::SIGUSR1, "SIGUSR1"),
    (libc::SIGUSR2, "SIGUSR2"),
    (libc::SIGALRM, "SIGALRM"),
    (libc::SIGVTALRM, "SIGVTALRM"),
    (libc::SIGPROF, "SIGPROF"),
    (libc::SIGXCPU, "SIGXCPU"),
    (libc::SIGXFSZ, "SIGXFSZ"),
    (libc::SIGSYS, "SIGSYS"),
    (libc::SIGTRAP, "SIGTRAP"),
];

/// Starts `scenario` (through `launcher`) and waits for it to be ready.
fn start(scenario: &str, launcher: &[&str]) -> Running {
    start_with(scenario, launcher, &[])
}

fn start_with(scenario: &str, launcher: &[&str], env: &[(&str, &str)]) -> Running {
    let mut fixture = program(fixture_path("endings"), launcher).arg(scenario);
    for (key, value) in env {
        fixture = fixture.env(key, value);
    }
    Running::start(fixture)
}

#[test]
fn each_terminating_signal_leaves_one_exit_record_naming_it_then_death_by_it() {
    for (number, name) in TERMINATING {
        let running = start("wait-for-a-signal", &[]);
        running.signal(number);
        let (status, records) = running.finish();
        assert_eq!(status.signal(), Some(number), "{name}: {status:?}");
        let exits: Vec<_> = records.iter().filter(|r| r["event"] == "exit").collect();
        assert_eq!(exits.len(), 1, "{name}: {records:#?}");
        let exit = records.last().unwrap();
        assert_eq!(exit["event"], "exit", "{name}: the exit record is last");
        assert_eq!(exit["exit.reason"], "signal");
        assert_eq!(exit["signal.name"], name);
        assert_eq!(exit["exit.code"], 128 + number);
        assert_eq!(
            str_field(exit, "message"),
            format!("exited with {}: killed by {name}", 128 + number)
        );
    }
}

#[test]
fn as_pid_1_a_terminating_signal_exits_128_plus_n() {
    for (number, name) in TERMINATING {
        let running = start("wait-for-a-signal", &["unshare", "--pid", "--fork"]);
        running.signal_pid_1(number);
        let (status, records) = running.finish();
        assert_eq!(status.code(), Some(128 + number), "{name}: {status:?}");
        assert_eq!(records.last().unwrap()["signal.name"], name);
    }
}

#[test]
fn an_applications_own_sighup_handler_runs_and_the_process_lives_on() {
    for scenario in ["own-handler-after", "own-handler-first"] {
        let mut running = start(scenario, &[]);
        running.signal(libc::SIGHUP);
        let mut line = String::new();
        running.stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "reloaded on SIGHUP\n", "{scenario}");
        running.signal(libc::SIGTERM);
        let (status, records) = running.finish();
        assert_eq!(status.code(), Some(0), "{scenario}: {status:?}");
        let exit = records.last().unwrap();
        assert_eq!(exit["exit.reason"], "shutdown", "{scenario}");
        assert!(records
            .iter()
            .all(|r| r.get("signal.name") != Some(&"SIGHUP".into())));
    }
}

/// A cgroup directory of the test's own: the memory files crashguard reads.
fn fake_cgroup(usage: u64, limit: u64) -> std::path::PathBuf {
    let directory = support::scratch_path("cgroup");
    std::fs::create_dir_all(&directory).unwrap();
    std::fs::write(directory.join("memory.current"), format!("{usage}\n")).unwrap();
    std::fs::write(directory.join("memory.max"), format!("{limit}\n")).unwrap();
    directory
}

#[test]
fn a_process_killed_without_a_word_leaves_the_termination_message_written_in_advance() {
    let cgroup = fake_cgroup(100 << 20, 512 << 20);
    let termination_log = support::scratch_path("termination-log");
    let env = [
        (
            "CRASHGUARD_TERMINATION_LOG",
            termination_log.to_str().unwrap(),
        ),
        ("CRASHGUARD_CGROUP", cgroup.to_str().unwrap()),
        ("CRASHGUARD_WATCH_INTERVAL", "200ms"),
    ];
    let running = start_with("wait-for-a-signal", &[], &env);
    std::thread::sleep(Duration::from_millis(1500));
    running.signal(libc::SIGKILL);
    let (status, records) = running.finish();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(
        records.iter().all(|r| r["event"] != "exit"),
        "SIGKILL runs no code"
    );
    let message = std::fs::read_to_string(&termination_log).unwrap();
    assert!(
        message.starts_with(
            "killed without a record (SIGKILL: the grace period ran out, or the OOM killer); \
             last seen 20"
        ),
        "{message}"
    );
    assert!(message.contains(", up 1 s, RSS "), "{message}");
    assert!(message.ends_with(" of a 512 MiB limit"), "{message}");

    // The next process in the same container ends cleanly: no stale claim is left.
    let clean = fixture("sync_main")
        .arg("return")
        .env(
            "CRASHGUARD_TERMINATION_LOG",
            termination_log.to_str().unwrap(),
        )
        .run();
    assert_eq!(clean.status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(&termination_log).unwrap(),
        "main returned"
    );
}

#[test]
fn memory_near_the_cgroups_limit_leaves_a_memory_pressure_record() {
    let cgroup = fake_cgroup(950, 1000);
    let env = [("CRASHGUARD_CGROUP", cgroup.to_str().unwrap())];
    let running = start_with("wait-for-a-signal", &[], &env);
    running.signal(libc::SIGUSR1);
    let (_, records) = running.finish();
    let pressure = records
        .iter()
        .find(|r| r["event"] == "memory_pressure")
        .unwrap_or_else(|| panic!("{records:#?}"));
    assert_eq!(pressure["severity"], "WARNING");
    assert_eq!(pressure["cgroup.memory.usage_bytes"], 950);
    assert_eq!(pressure["cgroup.memory.limit_bytes"], 1000);
    assert!(str_field(pressure, "message").starts_with("memory at 95% of the cgroup's limit"));
    let exit = records.last().unwrap();
    assert_eq!(exit["cgroup.memory.limit_bytes"], 1000);
    assert!(exit["process.memory.peak_rss_bytes"].as_u64().unwrap() > 1 << 20);
}
