//! Runs fixture programs (the `fixture_*` examples built from `tests/fixtures/`) as real child
//! processes and reads what they leave: exit status, stdout, and stderr parsed as JSON lines.

#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

pub type Record = Map<String, Value>;

/// A fixture's executable, built by `cargo test` with the other examples.
pub fn fixture_path(name: &str) -> PathBuf {
    let deps = std::env::current_exe().expect("test binary path");
    let path = deps
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>")
        .join("examples")
        .join(format!("fixture_{name}"));
    assert!(path.exists(), "{} is not built", path.display());
    path
}

/// A fixture command with a private termination log and no inherited backtrace settings.
pub fn fixture(name: &str) -> Fixture {
    let termination_log = scratch_path("termination-log");
    let mut command = Command::new(fixture_path(name));
    command
        .env("CRASHGUARD_TERMINATION_LOG", &termination_log)
        .env_remove("CRASHGUARD_GRACE_PERIOD")
        .env_remove("CRASHGUARD_BACKTRACE")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE");
    Fixture {
        command,
        termination_log,
    }
}

pub struct Fixture {
    pub command: Command,
    pub termination_log: PathBuf,
}

/// What a finished fixture left behind.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: Vec<u8>,
    pub records: Vec<Record>,
    pub termination_log: PathBuf,
}

impl Fixture {
    pub fn arg(mut self, arg: &str) -> Fixture {
        self.command.arg(arg);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Fixture {
        self.command.env(key, value);
        self
    }

    /// Runs to the end (killed after 60 s, which fails the test) and parses stderr: every line
    /// must be one JSON object.
    pub fn run(mut self) -> Finished {
        let mut child = self
            .command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fixture");
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            stdout.read_to_string(&mut text).unwrap();
            text
        });
        let stderr = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            stderr.read_to_end(&mut bytes).unwrap();
            bytes
        });
        let status = wait_at_most(&mut child, Duration::from_secs(60));
        let stderr = stderr.join().unwrap();
        Finished {
            status,
            stdout: stdout.join().unwrap(),
            records: parse_records(&stderr),
            stderr,
            termination_log: self.termination_log,
        }
    }
}

impl Finished {
    /// The records whose `event` is `event`.
    pub fn events(&self, event: &str) -> Vec<&Record> {
        self.records
            .iter()
            .filter(|record| record.get("event").and_then(Value::as_str) == Some(event))
            .collect()
    }

    /// The event names in order.
    pub fn event_names(&self) -> Vec<&str> {
        self.records
            .iter()
            .map(|record| record["event"].as_str().expect("event is a string"))
            .collect()
    }

    /// The one exit record, which must be the last line.
    pub fn exit_record(&self) -> &Record {
        let exits = self.events("exit");
        assert_eq!(
            exits.len(),
            1,
            "exactly one exit record: {:#?}",
            self.records
        );
        let last = self.records.last().unwrap();
        assert_eq!(
            last.get("event"),
            Some(&Value::from("exit")),
            "the exit record comes last"
        );
        last
    }

    pub fn termination_message(&self) -> Option<String> {
        std::fs::read(&self.termination_log)
            .ok()
            .map(|bytes| String::from_utf8(bytes).expect("termination message is UTF-8"))
    }
}

pub fn wait_at_most(child: &mut std::process::Child, limit: Duration) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("the child did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every line of stderr as a JSON object; anything else fails the test.
pub fn parse_records(stderr: &[u8]) -> Vec<Record> {
    let text = std::str::from_utf8(stderr).expect("stderr is UTF-8");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "stderr ends with a newline: {text:?}"
    );
    text.lines()
        .map(|line| match serde_json::from_str(line) {
            Ok(Value::Object(record)) => record,
            _ => panic!("stderr line is not a JSON object: {line:?}\n--- stderr:\n{text}"),
        })
        .collect()
}

/// A fresh path under cargo's scratch directory for integration tests.
pub fn scratch_path(stem: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!(
        "{stem}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

pub fn str_field<'a>(record: &'a Record, key: &str) -> &'a str {
    record
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{key} is a string in {record:#?}"))
}
