//! The crash matrix: each way a process dies by a signal leaves exactly one `fatal_signal`
//! record, whose trace names the function that crashed, and one `exit` record; it writes the
//! termination message, and the process still dies by that signal. Every case runs on this
//! machine, as a static musl binary, and on aarch64 under qemu (`host::`, `musl::`, `aarch64::`).

mod support;

use std::os::unix::process::ExitStatusExt;

use support::targets::{FixtureCrate, Target};
use support::{str_field, Finished, Record};

/// Runs one test body on every target of the matrix.
macro_rules! on_every_target {
    ($(fn $name:ident($target:ident: Target) $body:block)*) => {
        $(fn $name($target: Target) $body)*

        mod host {
            $(#[test] fn $name() { super::$name(super::Target::Host) })*
        }
        mod musl {
            $(#[test] fn $name() { super::$name(super::Target::Musl) })*
        }
        mod aarch64 {
            $(#[test] fn $name() { super::$name(super::Target::Aarch64) })*
        }
    };
}

/// Runs `scenario` of `fatal_cases` on `target`; `None` where this machine cannot.
fn crash(target: Target, scenario: &str) -> Option<(Finished, Vec<String>)> {
    let fixture = target.fixture(FixtureCrate::Fixtures, "fatal_cases")?;
    Some(target.run(fixture.arg(scenario)))
}

/// As [`crash`], for a scenario after which stderr holds nothing but records.
fn crash_cleanly(target: Target, scenario: &str) -> Option<Finished> {
    let (run, text) = crash(target, scenario)?;
    assert!(
        text.is_empty(),
        "{target:?}: lines that are not records: {text:#?}"
    );
    Some(run)
}

/// Checks what every fatal death leaves, and returns the fatal record.
fn assert_fatal<'a>(run: &'a Finished, signal: i32, name: &str, code_names: &[&str]) -> &'a Record {
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
    let code_name = str_field(record, "signal.code_name");
    assert!(
        code_names.contains(&code_name),
        "{code_name} in {code_names:?}"
    );
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
    assert!(!trace.is_empty(), "a trace: {record:#?}");
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

/// The first frame of the trace in a function of `fatal_cases` (not one of std's or libc's)
/// names `function`, and the executable is listed with its 20-byte build id.
fn assert_crashed_in(record: &Record, function: &str) {
    let trace = str_field(record, "exception.stacktrace");
    let ours = trace
        .lines()
        .find(|frame| frame.contains(": fatal_cases+0x") && frame.contains(" fatal_cases::"))
        .unwrap_or_else(|| panic!("a frame in a function of fatal_cases: {trace}"));
    assert!(
        ours.ends_with(&format!(" fatal_cases::{function}")),
        "the first frame in the executable is {function}: {trace}"
    );
    let executable = str_field(record, "process.modules")
        .lines()
        .find(|line| line.starts_with("fatal_cases "))
        .expect("the executable is listed");
    let build_id = executable.rsplit(' ').next().unwrap();
    assert_eq!(build_id.len(), 40, "{executable}");
}

/// The walk went all the way: to the outermost frame, or, as a static musl binary, to musl's
/// entry point, which has no unwind information.
fn assert_whole_trace(target: Target, record: &Record, outermost: &str) {
    let trace = str_field(record, "exception.stacktrace");
    assert!(trace.contains(outermost), "reaches {outermost}: {trace}");
    match (target, record.get("exception.stacktrace_cut")) {
        (_, None) => {}
        (Target::Musl, Some(why)) => assert_eq!(
            why,
            "no caller found: the last frame has no unwind information, and no return address \
             was found on the stack above it",
            "{trace}"
        ),
        (_, Some(why)) => panic!("the trace was cut: {why}\n{trace}"),
    }
}

/// Where a thread that std started begins.
const THREAD_START: &str = "thread_start";

on_every_target! {
    fn a_null_pointer_write_in_a_named_thread_names_the_function_and_dies_by_sigsegv(target: Target) {
        let Some(run) = crash_cleanly(target, "null-write-thread") else { return };
        let record = assert_fatal(&run, libc::SIGSEGV, "SIGSEGV", &["SEGV_MAPERR"]);
        assert_eq!(run.event_names(), ["fatal_signal", "exit"]);
        assert_eq!(record["thread.name"], "crash-worker");
        assert_ne!(record["thread.id"], record["process.pid"]);
        assert_eq!(record["signal.fault_address"], "0x0");
        assert!(str_field(record, "exception.stacktrace").starts_with("0: fatal_cases+0x"));
        assert_crashed_in(record, "null_write");
        assert_whole_trace(target, record, THREAD_START);
        assert_eq!(run.stdout, "", "the process did not go on");
    }

    fn a_null_pointer_write_in_main_is_one_sigsegv_record_then_death_by_sigsegv(target: Target) {
        let Some(run) = crash_cleanly(target, "null-write-main") else { return };
        let record = assert_fatal(&run, libc::SIGSEGV, "SIGSEGV", &["SEGV_MAPERR"]);
        assert_eq!(run.event_names(), ["fatal_signal", "exit"]);
        assert_eq!(record["stack_overflow"], false);
        assert_eq!(record["thread.name"], "main");
        assert_eq!(
            record["message"],
            format!(
                "fatal signal SIGSEGV (address not mapped to object) at 0x0 in thread 'main' [incident {}]",
                str_field(record, "incident.id")
            )
        );
        assert_crashed_in(record, "null_write");
        assert_whole_trace(target, record, " main");
    }

    fn a_handler_left_2_kib_of_alternate_stack_still_writes_the_whole_trace(target: Target) {
        // The alternate stack is sized from the signal frame this CPU needs, measured by the
        // fixture, so that the handler has 2 KiB left whatever the CPU: less than the 6 KiB a
        // walk on that stack needs.
        let Some(run) = crash_cleanly(target, "tight-alternate-stack") else { return };
        let measured = &run.records[0];
        assert_eq!(measured["event"], "fixture");
        let frame = measured["signal_frame_bytes"].as_u64().unwrap();
        let stack = measured["alternate_stack_bytes"].as_u64().unwrap();
        assert!(stack <= frame + 2048 + 16, "{stack} bytes for a {frame}-byte frame");
        eprintln!("{target:?}: signal frame {frame} bytes, alternate stack {stack} bytes");
        let record = assert_fatal(&run, libc::SIGSEGV, "SIGSEGV", &["SEGV_MAPERR"]);
        assert_eq!(record["thread.name"], "tight-worker");
        assert_crashed_in(record, "null_write");
        assert_whole_trace(target, record, THREAD_START);
    }

    fn a_stack_pointer_outside_any_mapping_ends_the_walk_and_says_so(target: Target) {
        let Some(run) = crash_cleanly(target, "wild-stack-pointer") else { return };
        let record = assert_fatal(&run, libc::SIGILL, "SIGILL", &["ILL_ILLOPN", "ILL_ILLOPC"]);
        let trace = str_field(record, "exception.stacktrace");
        assert_eq!(trace.lines().count(), 1, "only the faulting instruction: {trace}");
        assert_crashed_in(record, "wild_stack_pointer");
        assert_eq!(
            record["exception.stacktrace_cut"],
            "no readable mapping holds the stack pointer 0x100"
        );
    }

    fn a_crash_right_after_start_has_module_offsets_and_build_ids(target: Target) {
        let Some(run) = crash_cleanly(target, "early-null-write") else { return };
        let record = assert_fatal(&run, libc::SIGSEGV, "SIGSEGV", &["SEGV_MAPERR"]);
        let trace = str_field(record, "exception.stacktrace");
        assert!(trace.lines().count() > 5, "{trace}");
        assert!(trace.starts_with("0: fatal_cases+0x"), "{trace}");
        assert!(str_field(record, "process.modules").starts_with("fatal_cases "));
    }

    fn a_read_past_a_truncated_mapping_is_sigbus(target: Target) {
        let Some(run) = crash_cleanly(target, "sigbus") else { return };
        let record = assert_fatal(&run, libc::SIGBUS, "SIGBUS", &["BUS_ADRERR"]);
        assert_ne!(record["signal.fault_address"], "0x0");
        assert!(str_field(record, "exception.stacktrace").contains(" fatal_cases::truncated_mapping\n"));
        assert_eq!(run.stdout, "");
    }

    fn an_illegal_instruction_is_sigill(target: Target) {
        let Some(run) = crash_cleanly(target, "sigill") else { return };
        // x86_64's ud2 is an illegal operand; aarch64's udf an illegal opcode on Linux, and an
        // illegal operand as qemu-user reports it.
        let record = assert_fatal(&run, libc::SIGILL, "SIGILL", &["ILL_ILLOPN", "ILL_ILLOPC"]);
        assert_crashed_in(record, "illegal_instruction");
        assert_whole_trace(target, record, " main");
    }

    fn a_raised_sigfpe_is_recorded_as_sent_by_raise(target: Target) {
        let Some(run) = crash_cleanly(target, "sigfpe") else { return };
        let record = assert_fatal(&run, libc::SIGFPE, "SIGFPE", &["SI_TKILL"]);
        assert!(!record.contains_key("signal.fault_address"));
        assert_crashed_in(record, "raise_sigfpe");
    }

    fn abort_is_sigabrt_with_the_caller_in_the_trace(target: Target) {
        let Some(run) = crash_cleanly(target, "abort") else { return };
        let record = assert_fatal(&run, libc::SIGABRT, "SIGABRT", &["SI_TKILL"]);
        assert_eq!(record["panic.in_progress"], false);
        let trace = str_field(record, "exception.stacktrace");
        assert!(trace.contains(" fatal_cases::abort_here\n"), "{trace}");
        assert_whole_trace(target, record, " main");
    }

    fn a_double_panic_aborts_with_the_incident_of_the_panic_in_progress(target: Target) {
        let Some((run, text)) = crash(target, "double-panic") else { return };
        // std's own words before it aborts; it writes them itself, crashguard cannot intercept them.
        assert_eq!(text, ["thread caused non-unwinding panic. aborting."]);
        assert_eq!(
            run.event_names(),
            ["panic", "panic", "panic", "fatal_signal", "exit"]
        );
        let record = assert_fatal(&run, libc::SIGABRT, "SIGABRT", &["SI_TKILL"]);
        assert_eq!(record["panic.in_progress"], true);
        assert_eq!(record["incident.id"], run.records[2]["incident.id"]);
        assert_eq!(
            run.records[2]["exception.message"],
            "panic in a destructor during cleanup"
        );
    }

    fn a_stack_overflow_in_main_is_named_and_std_prints_nothing(target: Target) {
        let Some(run) = crash_cleanly(target, "stack-overflow-main") else { return };
        let record = assert_fatal(&run, libc::SIGSEGV, "SIGSEGV", &["SEGV_MAPERR", "SEGV_ACCERR"]);
        assert_eq!(record["stack_overflow"], true);
        assert_eq!(record["thread.name"], "main");
        assert!(str_field(record, "message").starts_with("stack overflow (SIGSEGV) in thread 'main'"));
        assert_crashed_in(record, "recurse");
        assert_eq!(record["exception.stacktrace_cut"], "64 frames, the most a trace keeps");
    }

    fn a_stack_overflow_in_a_named_thread_is_named(target: Target) {
        let Some(run) = crash_cleanly(target, "stack-overflow-thread") else { return };
        let record = assert_fatal(&run, libc::SIGSEGV, "SIGSEGV", &["SEGV_MAPERR", "SEGV_ACCERR"]);
        assert_eq!(record["stack_overflow"], true);
        assert_eq!(record["thread.name"], "deep-worker");
        assert_ne!(record["thread.id"], record["process.pid"]);
        assert_crashed_in(record, "recurse");
    }

    fn an_allocation_failure_aborts_with_a_record(target: Target) {
        let Some((run, text)) = crash(target, "alloc-failure") else { return };
        // std's allocation error handler writes these lines itself before aborting.
        assert_eq!(
            text,
            [
                "memory allocation of 70368744177664 bytes failed",
                "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace"
            ]
        );
        assert_fatal(&run, libc::SIGABRT, "SIGABRT", &["SI_TKILL"]);
    }

    fn a_panic_in_a_panic_abort_build_shares_its_incident_with_the_sigabrt(target: Target) {
        let Some(fixture) = target.fixture(FixtureCrate::PanicAbort, "panic-abort-fixture") else { return };
        let (run, text) = target.run(fixture);
        assert!(text.is_empty(), "{text:#?}");
        assert_eq!(run.event_names(), ["panic", "fatal_signal", "exit"]);
        assert_eq!(
            run.records[0]["exception.message"],
            "boom with panic = abort"
        );
        let record = assert_fatal(&run, libc::SIGABRT, "SIGABRT", &["SI_TKILL"]);
        assert_eq!(record["panic.in_progress"], true);
        assert_eq!(record["incident.id"], run.records[0]["incident.id"]);
    }

    fn as_pid_1_a_segfault_still_dies_by_sigsegv(target: Target) {
        if target.emulation_falls_short(
            "as_pid_1_a_segfault_still_dies_by_sigsegv",
            "qemu-user as PID 1 never exits: it kills itself with the guest's SIGSEGV, which the \
             kernel drops for PID 1, then waits in sigsuspend (the run hit the 60 s limit); the \
             kernel itself forces a fault's signal on PID 1, as the host and musl cases show",
        ) {
            return;
        }
        let Some(fixture) = target.fixture_as_pid_1(FixtureCrate::Fixtures, "fatal_cases") else { return };
        let (run, text) = target.run(fixture.arg("null-write-main"));
        assert!(text.is_empty(), "{text:#?}");
        // unshare reports its child's death by the same signal.
        let record = assert_fatal(&run, libc::SIGSEGV, "SIGSEGV", &["SEGV_MAPERR"]);
        assert_eq!(record["process.pid"], 1);
        assert_crashed_in(record, "null_write");
    }

    fn as_pid_1_an_abort_exits_134_since_the_kernel_drops_the_signal(target: Target) {
        let Some(fixture) = target.fixture_as_pid_1(FixtureCrate::Fixtures, "fatal_cases") else { return };
        let (run, text) = target.run(fixture.arg("abort"));
        assert!(text.is_empty(), "{text:#?}");
        assert_eq!(run.status.code(), Some(134), "{:?}", run.status);
        let fatal = run.events("fatal_signal");
        assert_eq!(fatal.len(), 1);
        assert_eq!(fatal[0]["signal.name"], "SIGABRT");
        assert_eq!(fatal[0]["process.pid"], 1);
        assert_eq!(run.exit_record()["exit.code"], 134);
    }

    fn a_crash_while_another_thread_holds_the_stderr_lock_is_still_recorded(target: Target) {
        let Some(run) = crash_cleanly(target, "stderr-locked") else { return };
        assert_fatal(&run, libc::SIGSEGV, "SIGSEGV", &["SEGV_MAPERR"]);
        assert_eq!(run.event_names(), ["fatal_signal", "exit"]);
    }
}

#[test]
fn with_nobody_reading_a_full_stderr_the_process_still_dies_by_its_signal() {
    use std::time::{Duration, Instant};
    let Some(fixture) = Target::Host.fixture(FixtureCrate::Fixtures, "fatal_cases") else {
        return;
    };
    let termination_log = fixture.termination_log.clone();
    let mut command = fixture.command;
    let mut child = command
        .arg("stderr-full")
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
    let (run, text) = support::fixture("panicking_subscriber").run_allowing_text();
    // std's own words: it aborts a thread that panics inside the panic hook.
    assert_eq!(
        text.last().map(String::as_str),
        Some("thread panicked while processing panic. aborting.")
    );
    assert_eq!(run.event_names(), ["fatal_signal", "exit"]);
    let record = assert_fatal(&run, libc::SIGABRT, "SIGABRT", &["SI_TKILL"]);
    assert_eq!(
        record["panic.in_progress"], true,
        "the first panic's incident"
    );
}
