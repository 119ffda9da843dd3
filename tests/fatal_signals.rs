//! The crash matrix: each way a process dies by a signal leaves exactly one `fatal_signal`
//! record and one `exit` record, writes the termination message, and still dies by that signal.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;

use support::{fixture, program, str_field, Finished, Record};

/// Checks what every fatal death leaves, and returns the fatal record.
fn assert_fatal<'a>(run: &'a Finished, signal: i32, name: &str, code_name: &str) -> &'a Record {
    assert_eq!(
        run.status.signal(),
        Some(signal),
        "killed by {name}: {:?}",
        run.status
    );
    let fatal: Vec<&Record> = run.events("fatal_signal");
    assert_eq!(
        fatal.len(),
        1,
        "exactly one fatal record: {:#?}",
        run.records
    );
    let record = fatal[0];
    assert_eq!(record["severity"], "CRITICAL");
    assert_eq!(record["signal.name"], name);
    assert_eq!(record["signal.number"], signal);
    assert_eq!(record["signal.code_name"], code_name);
    assert!(str_field(record, "incident.id").contains('-'));
    assert!(record["thread.id"].as_i64().unwrap() > 0);
    assert_frames_are_module_offsets(record);

    let exit = run.exit_record();
    assert_eq!(exit["exit.reason"], "fatal_signal");
    assert_eq!(exit["exit.code"], 128 + signal);
    assert_eq!(exit["incident.id"], record["incident.id"]);
    assert_eq!(
        run.termination_message().as_deref(),
        Some(str_field(record, "message")),
        "the termination message is the record's summary"
    );
    record
}

/// Frames are `N: module+0xoffset`, perhaps followed by the function's name, and each module is
/// listed with its build id.
fn assert_frames_are_module_offsets(record: &Record) {
    let trace = str_field(record, "exception.stacktrace");
    let modules = str_field(record, "process.modules");
    for (index, frame) in trace.lines().enumerate() {
        let (number, location) = frame.split_once(": ").expect("N: location");
        assert_eq!(number, index.to_string());
        let location = location.split(' ').next().unwrap();
        if let Some((module, offset)) = location.split_once("+0x") {
            assert!(u64::from_str_radix(offset, 16).is_ok(), "{frame}");
            assert!(
                modules
                    .lines()
                    .any(|line| line.starts_with(&format!("{module} "))),
                "{module} is listed in {modules}"
            );
        } else {
            assert!(location.starts_with("0x"), "{frame}");
        }
    }
    for module in modules.lines() {
        let (_, build_id) = module
            .split_once(" build-id ")
            .expect("name path build-id hex");
        assert!(build_id.chars().all(|c| c.is_ascii_hexdigit()), "{module}");
    }
}

fn first_frame(record: &Record) -> &str {
    str_field(record, "exception.stacktrace")
        .lines()
        .next()
        .unwrap()
}

#[test]
fn a_null_pointer_write_is_one_sigsegv_record_then_death_by_sigsegv() {
    let run = fixture("fatal_cases").arg("null-write").run();
    let record = assert_fatal(&run, libc::SIGSEGV, "SIGSEGV", "SEGV_MAPERR");
    assert_eq!(run.event_names(), ["fatal_signal", "exit"]);
    assert_eq!(record["signal.fault_address"], "0x0");
    assert_eq!(record["stack_overflow"], false);
    assert_eq!(record["thread.name"], "main");
    assert_eq!(
        record["message"],
        format!(
            "fatal signal SIGSEGV (address not mapped to object) at 0x0 in thread 'main' [incident {}]",
            str_field(record, "incident.id")
        )
    );
    assert!(first_frame(record).starts_with("0: fixture_fatal_cases+0x"));
    assert_eq!(run.stdout, "", "the process did not go on");
}

#[test]
fn frames_in_the_executable_are_named_once_its_symbols_are_read() {
    let run = fixture("fatal_cases").arg("null-write-later").run();
    let record = assert_fatal(&run, libc::SIGSEGV, "SIGSEGV", "SEGV_MAPERR");
    let trace = str_field(record, "exception.stacktrace");
    let frames: Vec<&str> = trace.lines().collect();
    assert!(
        frames[0].starts_with("0: fixture_fatal_cases+0x")
            && frames[0].ends_with(" fixture_fatal_cases::null_write"),
        "{trace}"
    );
    assert!(
        frames[1].ends_with(" fixture_fatal_cases::main::{{closure}}"),
        "{trace}"
    );
}

#[test]
fn a_read_past_a_truncated_mapping_is_sigbus() {
    let run = fixture("fatal_cases").arg("sigbus").run();
    let record = assert_fatal(&run, libc::SIGBUS, "SIGBUS", "BUS_ADRERR");
    assert_ne!(record["signal.fault_address"], "0x0");
    assert_eq!(run.stdout, "");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn an_illegal_instruction_is_sigill() {
    let run = fixture("fatal_cases").arg("sigill").run();
    let record = assert_fatal(&run, libc::SIGILL, "SIGILL", "ILL_ILLOPN");
    assert!(first_frame(record).starts_with("0: fixture_fatal_cases+0x"));
}

#[test]
fn a_raised_sigfpe_is_recorded_as_sent_by_raise() {
    let run = fixture("fatal_cases").arg("sigfpe").run();
    let record = assert_fatal(&run, libc::SIGFPE, "SIGFPE", "SI_TKILL");
    assert!(!record.contains_key("signal.fault_address"));
}

#[test]
fn abort_is_sigabrt() {
    let run = fixture("fatal_cases").arg("abort").run();
    let record = assert_fatal(&run, libc::SIGABRT, "SIGABRT", "SI_TKILL");
    assert_eq!(record["panic.in_progress"], false);
}

#[test]
fn a_double_panic_aborts_with_the_incident_of_the_panic_in_progress() {
    let (run, text) = fixture("fatal_cases")
        .arg("double-panic")
        .run_allowing_text();
    // std's own words before it aborts; it writes them itself, crashguard cannot intercept them.
    assert_eq!(text, ["thread caused non-unwinding panic. aborting."]);
    assert_eq!(
        run.event_names(),
        ["panic", "panic", "panic", "fatal_signal", "exit"]
    );
    let record = assert_fatal(&run, libc::SIGABRT, "SIGABRT", "SI_TKILL");
    assert_eq!(record["panic.in_progress"], true);
    assert_eq!(record["incident.id"], run.records[2]["incident.id"]);
    assert_eq!(
        run.records[2]["exception.message"],
        "panic in a destructor during cleanup"
    );
}

#[test]
fn a_stack_overflow_in_main_is_named_and_std_prints_nothing() {
    let run = fixture("fatal_cases").arg("stack-overflow-main").run();
    let record = assert_fatal(&run, libc::SIGSEGV, "SIGSEGV", "SEGV_MAPERR");
    assert_eq!(record["stack_overflow"], true);
    assert_eq!(record["thread.name"], "main");
    assert!(str_field(record, "message").starts_with("stack overflow (SIGSEGV) in thread 'main'"));
    assert!(!String::from_utf8_lossy(&run.stderr).contains("has overflowed its stack"));
}

#[test]
fn a_stack_overflow_in_a_named_thread_is_named() {
    let run = fixture("fatal_cases").arg("stack-overflow-thread").run();
    let record = assert_fatal(&run, libc::SIGSEGV, "SIGSEGV", "SEGV_ACCERR");
    assert_eq!(record["stack_overflow"], true);
    assert_eq!(record["thread.name"], "deep-worker");
    assert_ne!(record["thread.id"], record["process.pid"]);
}

#[test]
fn an_allocation_failure_aborts_with_a_record() {
    let (run, text) = fixture("fatal_cases")
        .arg("alloc-failure")
        .run_allowing_text();
    // std's allocation error handler writes these lines itself before aborting.
    assert_eq!(
        text,
        [
            "memory allocation of 70368744177664 bytes failed",
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace"
        ]
    );
    assert_fatal(&run, libc::SIGABRT, "SIGABRT", "SI_TKILL");
}

#[test]
fn a_crash_while_another_thread_holds_the_stderr_lock_is_still_recorded() {
    let run = fixture("fatal_cases").arg("stderr-locked").run();
    assert_fatal(&run, libc::SIGSEGV, "SIGSEGV", "SEGV_MAPERR");
    assert_eq!(run.event_names(), ["fatal_signal", "exit"]);
}

#[test]
fn with_nobody_reading_a_full_stderr_the_process_still_dies_by_its_signal() {
    use std::time::{Duration, Instant};
    let termination_log = support::scratch_path("termination-log");
    let mut child = Command::new(support::fixture_path("fatal_cases"))
        .arg("stderr-full")
        .env("CRASHGUARD_TERMINATION_LOG", &termination_log)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The pipe is never read until the process has ended.
    let started = Instant::now();
    let status = support::wait_at_most(&mut child, Duration::from_secs(30));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
    let message = std::fs::read_to_string(termination_log).unwrap();
    assert!(message.starts_with("fatal signal SIGSEGV"), "{message}");
}

#[test]
fn a_subscriber_that_panics_on_the_panic_record_neither_recurses_nor_hangs() {
    let (run, text) = fixture("panicking_subscriber").run_allowing_text();
    // std's own words: it aborts a thread that panics inside the panic hook.
    assert_eq!(
        text.last().map(String::as_str),
        Some("thread panicked while processing panic. aborting.")
    );
    assert_eq!(run.event_names(), ["fatal_signal", "exit"]);
    let record = assert_fatal(&run, libc::SIGABRT, "SIGABRT", "SI_TKILL");
    assert_eq!(
        record["panic.in_progress"], true,
        "the first panic's incident"
    );
}

#[test]
fn a_panic_in_a_panic_abort_build_shares_its_incident_with_the_sigabrt() {
    let run = program(panic_abort_fixture(), &[]).run();
    assert_eq!(run.event_names(), ["panic", "fatal_signal", "exit"]);
    assert_eq!(
        run.records[0]["exception.message"],
        "boom with panic = abort"
    );
    let record = assert_fatal(&run, libc::SIGABRT, "SIGABRT", "SI_TKILL");
    assert_eq!(record["panic.in_progress"], true);
    assert_eq!(record["incident.id"], run.records[0]["incident.id"]);
}

#[test]
fn as_pid_1_a_segfault_still_dies_by_sigsegv() {
    let run = as_pid_1("null-write");
    // unshare reports its child's death by the same signal.
    let record = assert_fatal(&run, libc::SIGSEGV, "SIGSEGV", "SEGV_MAPERR");
    assert_eq!(record["process.pid"], 1);
}

#[test]
fn as_pid_1_an_abort_exits_134_since_the_kernel_drops_the_signal() {
    let run = as_pid_1("abort");
    assert_eq!(run.status.code(), Some(134), "{:?}", run.status);
    let fatal = run.events("fatal_signal");
    assert_eq!(fatal.len(), 1);
    assert_eq!(fatal[0]["signal.name"], "SIGABRT");
    assert_eq!(fatal[0]["process.pid"], 1);
    assert_eq!(run.exit_record()["exit.code"], 134);
}

/// Runs a fatal case as PID 1 of a new PID namespace, as in a container without an init.
fn as_pid_1(scenario: &str) -> Finished {
    program(
        support::fixture_path("fatal_cases"),
        &["unshare", "--pid", "--fork"],
    )
    .arg(scenario)
    .run()
}

/// Builds `tests/panic-abort`, a program compiled with `panic = "abort"`, once.
fn panic_abort_fixture() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("panic-abort");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--manifest-path"])
        .arg(root.join("tests/panic-abort/Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("run cargo");
    assert!(status.success(), "building tests/panic-abort failed");
    target.join("debug/panic-abort-fixture")
}
