//! Runs fixture programs (the `fixtures` crate's, built by [`targets`]) as real child
//! processes and reads what they leave: exit status, stdout, and stderr parsed as JSON lines.

#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

pub mod running;
pub mod targets;
pub mod terminal;

pub type Record = Map<String, Value>;

/// A fixture's executable: a program of the `fixtures` crate built for this machine, or, as
/// `../name`, an example of this package (which `cargo test` builds).
pub fn fixture_path(name: &str) -> PathBuf {
    match name.strip_prefix("../") {
        Some(example) => {
            let deps = std::env::current_exe().expect("test binary path");
            let path = deps
                .parent()
                .and_then(|deps| deps.parent())
                .expect("target/<profile>")
                .join("examples")
                .join(example);
            assert!(path.exists(), "{} is not built", path.display());
            path
        }
        None => targets::built(targets::Target::Host, targets::FixtureCrate::Fixtures, name),
    }
}

/// A fixture command with a private termination log and no inherited backtrace settings.
pub fn fixture(name: &str) -> Fixture {
    program(fixture_path(name), &[])
}

/// `program` started through `launcher` (such as `unshare --pid --fork`), set up as [`fixture`].
pub fn program(program: PathBuf, launcher: &[&str]) -> Fixture {
    let termination_log = scratch_path("termination-log");
    let mut command = match launcher.split_first() {
        Some((first, rest)) => {
            let mut command = Command::new(first);
            command.args(rest).arg(program);
            command
        }
        None => Command::new(program),
    };
    command
        .env("CRASHGUARD_TERMINATION_LOG", &termination_log)
        .env_remove("CRASHGUARD_GRACE_PERIOD")
        .env_remove("CRASHGUARD_BACKTRACE")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        // What would change how records are shown or when readiness turns: the tests set them.
        .env_remove("CRASHGUARD_FORMAT")
        .env_remove("CRASHGUARD_PANIC_BUDGET")
        .env_remove("CRASHGUARD_PANIC_BUDGET_EXIT")
        .env_remove("NO_COLOR")
        .env("TERM", "xterm");
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
    /// The `start` record, the first line of an installed process; not in `records`.
    pub start: Option<Record>,
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
    pub fn run(self) -> Finished {
        let (finished, text) = self.run_allowing_text();
        assert!(
            text.is_empty(),
            "stderr lines that are not records: {text:#?}"
        );
        finished
    }

    /// As [`Fixture::run`], but returns the stderr lines that are not JSON (what std itself
    /// prints on some deaths) instead of failing on them.
    pub fn run_allowing_text(mut self) -> (Finished, Vec<String>) {
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
        let text = std::str::from_utf8(&stderr).expect("stderr is UTF-8");
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "stderr ends with a newline: {text:?}"
        );
        let (mut records, mut other) = (Vec::new(), Vec::new());
        for line in text.lines() {
            match serde_json::from_str(line) {
                Ok(Value::Object(record)) => records.push(record),
                _ => other.push(line.to_owned()),
            }
        }
        let start = take_start(&mut records);
        let finished = Finished {
            start,
            status,
            stdout: stdout.join().unwrap(),
            records,
            stderr,
            termination_log: self.termination_log,
        };
        (finished, other)
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

/// Every line of stderr as a JSON object, less the `start` record that opens an installed
/// process (see [`parse_records_with_start`]); anything else fails the test.
pub fn parse_records(stderr: &[u8]) -> Vec<Record> {
    let mut records = parse_records_with_start(stderr);
    take_start(&mut records);
    records
}

/// Takes the `start` record out of `records`, if they open with one: the tests of other records
/// need not count it, and `tests/main_guard.rs` checks it.
fn take_start(records: &mut Vec<Record>) -> Option<Record> {
    let opens_with_start = records
        .first()
        .is_some_and(|record| record.get("event") == Some(&Value::from("start")));
    opens_with_start.then(|| records.remove(0))
}

/// Every line of stderr as a JSON object; anything else fails the test.
pub fn parse_records_with_start(stderr: &[u8]) -> Vec<Record> {
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

/// A fixture server running as a child process, its stderr collected line by line.
pub struct Server {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    pub termination_log: PathBuf,
}

impl Server {
    /// Starts `fixture_<name>` on a free loopback port and waits for it to listen.
    pub fn start(name: &str) -> Server {
        Server::start_with(fixture(name))
    }

    pub fn start_with(fixture: Fixture) -> Server {
        use std::io::BufRead;
        let Fixture {
            mut command,
            termination_log,
        } = fixture;
        let mut child = command
            .env("ADDR", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn server");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = std::sync::Arc::clone(&stderr);
        let stderr_reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&chunk[..n]),
                }
            }
        });
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout
            .read_line(&mut first)
            .expect("read the listening line");
        // Servers say where they listen; other fixtures just say they are ready.
        let base = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_default()
            .to_owned();
        assert!(!first.is_empty(), "the child ended before it was ready");
        // Keep draining stdout so the server never blocks on it.
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stdout.read_to_string(&mut rest);
        });
        Server {
            child,
            base,
            stderr,
            stderr_reader: Some(stderr_reader),
            termination_log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The whole records written so far (a line still being written is left out).
    pub fn records(&self) -> Vec<Record> {
        let bytes = self.stderr.lock().unwrap().clone();
        let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        parse_records(&bytes[..end])
    }

    /// Waits up to 10 s for a record that `matches`.
    pub fn wait_for_record(&self, matches: impl Fn(&Record) -> bool) -> Record {
        let started = Instant::now();
        loop {
            if let Some(record) = self.records().into_iter().find(|r| matches(r)) {
                return record;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no matching record; have {:#?}",
                self.records()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The panic record of `incident`.
    pub fn panic_record(&self, incident: &str) -> Record {
        self.wait_for_record(|record| {
            record.get("event") == Some(&Value::from("panic"))
                && record.get("incident.id") == Some(&Value::from(incident))
        })
    }

    /// Sends `signal` to the process, as the kubelet does.
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: plain kill(2) on our own child's pid, which we have not reaped yet.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Sends `signal` and waits for the process to end; returns its status and every record.
    pub fn stop_with(self, signal: i32, limit: Duration) -> (ExitStatus, Vec<Record>) {
        self.signal(signal);
        self.finish(limit)
    }

    /// Waits for the process to end; returns its status and every record.
    pub fn finish(mut self, limit: Duration) -> (ExitStatus, Vec<Record>) {
        let status = wait_at_most(&mut self.child, limit);
        if let Some(reader) = self.stderr_reader.take() {
            reader.join().unwrap();
        }
        let bytes = self.stderr.lock().unwrap().clone();
        (status, parse_records(&bytes))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a response whose body panics after its first chunk: the status and `first` arrive, then
/// the body ends with an error (the server cut it), within 10 s each: the client never hangs and
/// never takes the cut body for a whole one.
pub async fn first_chunk_then_cut(mut response: reqwest::Response, first: &[u8]) {
    assert_eq!(response.status(), 200, "the head went out before the panic");
    let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
        .await
        .expect("the first chunk arrives")
        .expect("the first chunk reads");
    assert_eq!(chunk.as_deref(), Some(first));
    let rest = tokio::time::timeout(Duration::from_secs(10), response.chunk())
        .await
        .expect("the client does not hang");
    let error = rest.expect_err("the body is cut, not ended as if whole");
    assert!(error.is_body() || error.is_decode(), "{error:?}");
}
