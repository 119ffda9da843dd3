//! A hostile environment must not hang, kill or mislead a guarded process: a log reader that
//! stops reading, settings at their extremes, termination logs that are not files, forks during
//! panics, panics caught in destructors. Every run is bounded, so that a hang fails its test.

mod support;

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{fixture_path, parse_records, str_field, Record};

/// A run of the `hostile` fixture whose stderr nobody reads until it has ended.
struct Unread {
    status: std::process::ExitStatus,
    took: Duration,
    stdout: String,
    stderr: Vec<u8>,
}

/// Runs `scenario` with a stderr pipe the test does not read until the process ended, sending
/// SIGTERM once the fixture says `ready` on stdout if `sigterm`.
fn run_unread(scenario: &str, env: &[(&str, &str)], sigterm: bool) -> Unread {
    let mut command = Command::new(fixture_path("hostile"));
    command
        .arg(scenario)
        .env("CRASHGUARD_TERMINATION_LOG", "")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let mut byte = [0u8; 1];
        // Line by line until `ready`, so that the signal comes once the fixture waits for it.
        while stdout.read(&mut byte).unwrap_or(0) == 1 {
            text.push(byte[0] as char);
            if sigterm && text.ends_with("ready\n") {
                break;
            }
        }
        (text, stdout)
    });
    if sigterm {
        let (text, mut rest) = reader.join().unwrap();
        assert!(text.ends_with("ready\n"), "{text:?}");
        // SAFETY: kill(2) on our own child, not yet reaped.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
        let status = support::wait_at_most(&mut child, Duration::from_secs(30));
        let took = started.elapsed();
        let mut more = String::new();
        rest.read_to_string(&mut more).unwrap();
        return Unread {
            status,
            took,
            stdout: text + &more,
            stderr: read_all(child.stderr.take().unwrap()),
        };
    }
    let status = support::wait_at_most(&mut child, Duration::from_secs(30));
    let took = started.elapsed();
    let (stdout, _) = reader.join().unwrap();
    Unread {
        status,
        took,
        stdout,
        stderr: read_all(child.stderr.take().unwrap()),
    }
}

fn read_all(mut pipe: impl Read) -> Vec<u8> {
    let mut bytes = Vec::new();
    pipe.read_to_end(&mut bytes).unwrap();
    bytes
}

#[test]
fn with_nobody_reading_stderr_a_plain_return_exits_0_at_once() {
    let run = run_unread(
        "stalled-return",
        &[("CRASHGUARD_GRACE_PERIOD", "3s")],
        false,
    );
    assert_eq!(run.status.code(), Some(0), "{:?}", run.status);
    assert!(run.took < Duration::from_secs(4), "took {:?}", run.took);
}

#[test]
fn with_nobody_reading_stderr_a_panic_in_main_exits_101_at_once() {
    let run = run_unread("stalled-panic", &[], false);
    assert_eq!(run.status.code(), Some(101), "{:?}", run.status);
    assert!(run.took < Duration::from_secs(5), "took {:?}", run.took);
}

#[test]
fn with_nobody_reading_stderr_sigterm_still_shuts_down_and_exits_0() {
    let run = run_unread(
        "stalled-sigterm",
        &[("CRASHGUARD_GRACE_PERIOD", "5s")],
        true,
    );
    assert_eq!(run.status.code(), Some(0), "{:?}", run.status);
    assert!(
        run.stdout.contains("shutdown signal after"),
        "{}",
        run.stdout
    );
    assert!(run.took < Duration::from_secs(5), "took {:?}", run.took);
}

#[test]
fn a_record_cut_short_by_a_stalled_reader_leaves_the_next_on_a_line_of_its_own() {
    let run = support::fixture("hostile").arg("cut-record").run();
    assert_eq!(run.status.code(), Some(0), "{:?}", run.status);
    // The start record went into the pipe first, before it was filled.
    assert!(run.stdout.starts_with("{\"time\""), "{}", run.stdout);
    assert!(run
        .stdout
        .lines()
        .next()
        .unwrap()
        .contains("\"event\":\"start\""));
    let lines: Vec<&str> = run.stdout.lines().skip(1).collect();
    let cut = lines
        .iter()
        .position(|line| line.starts_with("{\"time\""))
        .expect("the first record's start reached the pipe");
    assert!(
        serde_json::from_str::<serde_json::Value>(lines[cut]).is_err(),
        "the first record was cut: {}",
        lines[cut]
    );
    assert_eq!(lines.len(), cut + 2, "then one more line: {lines:#?}");
    let next: Record = serde_json::from_str(lines[cut + 1]).expect("a whole record");
    assert_eq!(next["exception.message"], "second");
    assert!(lines[..cut].iter().all(|line| line.starts_with("filler ")));
}

#[test]
fn a_grace_period_too_long_for_the_clock_is_clamped_with_a_warning() {
    let run = run_unread(
        "wait-for-shutdown",
        &[("CRASHGUARD_GRACE_PERIOD", "18446744073709551615s")],
        true,
    );
    assert_eq!(run.status.code(), Some(0), "{:?}", run.status);
    let records = parse_records(&run.stderr);
    let warning = &records[0];
    assert_eq!(warning["event"], "config");
    assert_eq!(warning["config.variable"], "CRASHGUARD_GRACE_PERIOD");
    assert!(str_field(warning, "message").contains("longer than crashguard takes"));
    assert_eq!(records.last().unwrap()["exit.reason"], "shutdown");
}

#[test]
fn a_zero_grace_period_never_races_a_plain_return() {
    for attempt in 0..20 {
        let run = support::fixture("hostile")
            .arg("return")
            .env("CRASHGUARD_GRACE_PERIOD", "0")
            .run();
        assert_eq!(
            run.status.code(),
            Some(0),
            "attempt {attempt}: {:?}",
            run.status
        );
        assert_eq!(run.exit_record()["exit.reason"], "returned");
    }
}

#[test]
fn a_shutdown_delay_longer_than_the_grace_period_is_clamped_and_the_deadline_holds() {
    let run = run_unread(
        "wait-for-shutdown",
        &[
            ("CRASHGUARD_GRACE_PERIOD", "2s"),
            ("CRASHGUARD_SHUTDOWN_DELAY", "5s"),
        ],
        true,
    );
    assert_eq!(run.status.code(), Some(0), "{:?}", run.status);
    assert!(run.took < Duration::from_secs(2), "took {:?}", run.took);
    let records = parse_records(&run.stderr);
    assert_eq!(records[0]["config.variable"], "CRASHGUARD_SHUTDOWN_DELAY");
    assert!(str_field(&records[0], "message").contains("using 1000 ms"));
    let shutdown = records.iter().find(|r| r["event"] == "shutdown").unwrap();
    assert_eq!(shutdown["shutdown.delay_ms"], 1000);
}

#[test]
fn a_fifo_as_termination_log_is_refused_and_nothing_hangs() {
    let fifo = support::scratch_path("termination-fifo");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path of our own.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let run = support::fixture("hostile")
        .arg("panic")
        .env("CRASHGUARD_TERMINATION_LOG", fifo.to_str().unwrap())
        .run();
    assert_eq!(run.status.code(), Some(101), "{:?}", run.status);
    assert_eq!(
        run.records[0]["config.variable"],
        "CRASHGUARD_TERMINATION_LOG"
    );
    assert!(str_field(&run.records[0], "message").contains("not a regular file"));
}

#[test]
fn a_symlink_as_termination_log_is_refused_and_its_target_left_alone() {
    let victim = support::scratch_path("victim");
    std::fs::write(&victim, "precious").unwrap();
    let link = support::scratch_path("termination-link");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let run = support::fixture("hostile")
        .arg("panic")
        .env("CRASHGUARD_TERMINATION_LOG", link.to_str().unwrap())
        .run();
    assert_eq!(run.status.code(), Some(101), "{:?}", run.status);
    assert!(str_field(&run.records[0], "message").contains("not a regular file"));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

#[test]
fn children_forked_during_panics_never_hang_and_have_ids_of_their_own() {
    let run = support::fixture("hostile").arg("fork-during-panics").run();
    assert_eq!(run.status.code(), Some(0), "{:?}", run.status);
    assert_eq!(run.stdout.trim(), "0 children hung");
    let parent = run
        .records
        .iter()
        .find(|r| r.get("exception.message") == Some(&"the parent's own".into()))
        .unwrap();
    let parent_tag = &str_field(parent, "incident.id")[..8];
    let children: Vec<&Record> = run
        .records
        .iter()
        .filter(|r| r.get("exception.message") == Some(&"in a forked child".into()))
        .collect();
    assert_eq!(children.len(), 30);
    for child in &children {
        assert_ne!(&str_field(child, "incident.id")[..8], parent_tag);
        assert!(str_field(child, "exception.stacktrace_cut").starts_with("a forked child"));
    }
}

#[test]
fn an_abort_after_the_exit_record_says_it_supersedes_it() {
    let run = support::fixture("hostile").arg("abort-after-exit").run();
    assert_eq!(run.status.signal(), Some(libc::SIGABRT), "{:?}", run.status);
    assert_eq!(run.event_names(), ["exit", "fatal_signal"]);
    let fatal = &run.records[1];
    assert_eq!(fatal["exit.superseded"], true);
    assert_eq!(fatal["signal.name"], "SIGABRT");
}

#[test]
fn a_panic_caught_in_a_thread_local_destructor_is_recorded_and_the_process_goes_on() {
    let run = support::fixture("hostile")
        .arg("catch-in-a-thread-local-destructor")
        .run();
    assert_eq!(run.status.code(), Some(0), "{:?}", run.status);
    assert_eq!(run.stdout.trim(), "the thread ended");
    let panics = run.events("panic");
    assert_eq!(panics.len(), 2, "{:#?}", run.records);
    assert_eq!(panics[1]["exception.message"], "in a destructor");
}

#[test]
fn a_panic_on_a_thread_with_the_smallest_stack_is_recorded_with_its_trace_and_the_process_goes_on()
{
    // 16 KiB is the least a thread can have (PTHREAD_STACK_MIN); the record's 16 KiB buffer and
    // the trace's resolution must not come out of it.
    for kib in ["16", "32", "64"] {
        let run = support::fixture("hostile")
            .arg("small-stacks")
            .env("STACK_KIB", kib)
            .run();
        assert_eq!(run.status.code(), Some(0), "{kib} KiB: {:?}", run.status);
        assert_eq!(run.stdout.trim(), "main goes on");
        let panic = run.events("panic")[0];
        assert_eq!(panic["thread.name"], "small-stack");
        assert!(
            str_field(panic, "exception.stacktrace")
                .starts_with("0: hostile::run::{{closure}} at "),
            "{kib} KiB: {panic:#?}"
        );
    }
}

/// Runs `scenario` with stderr on `stderr`, bounded by 30 s; the status, stdout and how long.
fn run_with_stderr(
    scenario: &str,
    stderr: Stdio,
    env: &[(&str, &str)],
) -> (std::process::ExitStatus, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(fixture_path("hostile"))
        .arg(scenario)
        .env("CRASHGUARD_TERMINATION_LOG", "")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let status = support::wait_at_most(&mut child, Duration::from_secs(30));
    let took = started.elapsed();
    let mut text = String::new();
    stdout.read_to_string(&mut text).unwrap();
    (status, text, took)
}

#[test]
fn stderr_on_dev_full_changes_nothing_about_how_the_process_ends() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let (status, _, took) = run_with_stderr("panic", full.into(), &[]);
    assert_eq!(status.code(), Some(101), "{status:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn stderr_on_a_unix_socket_gets_every_record_and_one_nobody_reads_does_not_hang() {
    use std::os::unix::net::UnixStream;
    let (ours, theirs) = UnixStream::pair().unwrap();
    let (status, _, _) = run_with_stderr("panic", std::os::fd::OwnedFd::from(theirs).into(), &[]);
    assert_eq!(status.code(), Some(101), "{status:?}");
    let mut bytes = Vec::new();
    let mut ours = ours;
    ours.read_to_end(&mut bytes).unwrap();
    let records = parse_records(&bytes);
    let events: Vec<&str> = records
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["panic", "exit"]);

    let (unread, theirs) = UnixStream::pair().unwrap();
    let (status, _, took) = run_with_stderr(
        "stalled-return",
        std::os::fd::OwnedFd::from(theirs).into(),
        &[],
    );
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    drop(unread);
}

#[test]
fn termination_logs_that_cannot_be_written_change_nothing_about_how_the_process_ends() {
    let directory = support::scratch_path("termination-directory");
    std::fs::create_dir_all(&directory).unwrap();
    let missing = support::scratch_path("no-such-directory").join("termination-log");
    for path in [
        directory.to_str().unwrap(),
        missing.to_str().unwrap(),
        "/proc/self/mem",
    ] {
        let run = support::fixture("hostile")
            .arg("panic")
            .env("CRASHGUARD_TERMINATION_LOG", path)
            .run();
        assert_eq!(run.status.code(), Some(101), "{path}: {:?}", run.status);
        assert_eq!(run.exit_record()["exit.code"], 101, "{path}");
    }
}

#[test]
fn two_thousand_threads_panicking_at_once_each_leave_one_record() {
    let run = support::fixture("hostile").arg("many-threads").run();
    assert_eq!(run.status.code(), Some(0), "{:?}", run.status);
    assert_eq!(run.stdout.trim(), "2000 threads panicked");
    let mut messages: Vec<&str> = run
        .events("panic")
        .iter()
        .map(|r| str_field(r, "exception.message"))
        .collect();
    messages.sort_unstable();
    messages.dedup();
    assert_eq!(messages.len(), 2000);
}

#[test]
fn random_messages_through_a_real_child_come_back_exactly() {
    // A fixed-seed generator: every run sends the same messages, among them quotes, backslashes,
    // control characters, ANSI escapes, forged records and every plane of Unicode.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let pieces = [
        "\"",
        "\\",
        "\n",
        "\r",
        "\u{1b}[31m",
        "\u{0}",
        "}\n{\"event\":\"exit\"}",
        "é",
        "\u{2028}",
        "🦀",
        "\u{10ffff}",
    ];
    let mut messages = Vec::new();
    for _ in 0..300 {
        let mut message = String::new();
        for _ in 0..next() % 200 {
            match next() % 3 {
                0 => message.push_str(pieces[(next() % pieces.len() as u64) as usize]),
                1 => message.push(char::from_u32((next() % 0x11_0000) as u32).unwrap_or('?')),
                _ => message.push(char::from(b' ' + (next() % 95) as u8)),
            }
        }
        messages.push(message);
    }
    let file = support::scratch_path("messages");
    let mut bytes = Vec::new();
    for message in &messages {
        bytes.extend_from_slice(&(message.len() as u32).to_le_bytes());
        bytes.extend_from_slice(message.as_bytes());
    }
    std::fs::write(&file, bytes).unwrap();
    let run = support::fixture("hostile")
        .arg("messages-from-file")
        .env("MESSAGES", file.to_str().unwrap())
        .run();
    assert_eq!(run.status.code(), Some(0), "{:?}", run.status);
    let recorded: Vec<&str> = run
        .events("panic")
        .iter()
        .map(|r| str_field(r, "exception.message"))
        .collect();
    assert_eq!(recorded, messages);
}
