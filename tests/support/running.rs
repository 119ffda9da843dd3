//! A fixture that runs while the test acts on it: started, waited for until it says `ready`,
//! signalled, and finished, with its stderr collected as it arrives.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{parse_records, wait_at_most, Fixture, Record};

pub struct Running {
    pub child: Child,
    /// The fixture's stdout after its `ready` line.
    pub stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<Vec<u8>>>,
    reader: JoinHandle<()>,
}

impl Running {
    /// Starts `fixture` and waits for it to print `ready`.
    pub fn start(fixture: Fixture) -> Running {
        let mut command = fixture.command;
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fixture");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(read @ 1..) = pipe.read(&mut chunk) {
                sink.lock().unwrap().extend_from_slice(&chunk[..read]);
            }
        });
        Running {
            child,
            stdout,
            stderr,
            reader,
        }
    }

    /// Sends `signal` to the fixture.
    pub fn signal(&self, signal: i32) {
        kill(self.child.id() as i32, signal);
    }

    /// Sends `signal` to the fixture started under `unshare --pid --fork`: unshare's only child,
    /// PID 1 of its namespace.
    pub fn signal_pid_1(&self, signal: i32) {
        kill(child_of(self.child.id() as i32), signal);
    }

    /// Waits (30 s at most: the first thread dump of a debug build reads its debug info) until a
    /// record of `event` has arrived.
    pub fn wait_for(&self, event: &str) {
        let needle = format!("\"event\":\"{event}\"");
        let started = Instant::now();
        while !String::from_utf8_lossy(&self.stderr.lock().unwrap()).contains(&needle) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no {event} record"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Closes stdin, waits for the end (20 s at most), and returns the status and the records.
    pub fn finish(mut self) -> (ExitStatus, Vec<Record>) {
        drop(self.child.stdin.take());
        let status = wait_at_most(&mut self.child, Duration::from_secs(20));
        self.reader.join().unwrap();
        let bytes = self.stderr.lock().unwrap().clone();
        (status, parse_records(&bytes))
    }
}

/// The one child of `parent`, found by the parent pid in each `/proc/<pid>/stat` (the
/// `task/…/children` list needs a kernel option some kernels lack).
fn child_of(parent: i32) -> i32 {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .find(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // `pid (comm) state ppid …`: the name may hold spaces and parentheses.
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(parent)
        })
        .expect("unshare's child")
}

fn kill(pid: i32, signal: i32) {
    // SAFETY: kill(2) on a process of the test's own, not yet reaped.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}
