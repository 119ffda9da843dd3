//! The server kinds, and the child processes that run them, as this process sees them.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Unprotected,
    TowerHttp,
    Crashguard,
    CrashguardLayer,
}

pub const KINDS: [Kind; 4] = [
    Kind::Unprotected,
    Kind::TowerHttp,
    Kind::Crashguard,
    Kind::CrashguardLayer,
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Unprotected => "unprotected",
            Kind::TowerHttp => "tower-http",
            Kind::Crashguard => "crashguard",
            Kind::CrashguardLayer => "crashguard layer",
        }
    }

    pub fn arg(self) -> &'static str {
        match self {
            Kind::Unprotected => "unprotected",
            Kind::TowerHttp => "tower-http",
            Kind::Crashguard => "crashguard",
            Kind::CrashguardLayer => "crashguard-layer",
        }
    }

    pub fn is_crashguard(self) -> bool {
        matches!(self, Kind::Crashguard | Kind::CrashguardLayer)
    }
}

/// A server child process; its stderr goes to a file (in memory when it can), read after each
/// load.
pub struct Server {
    pub kind: Kind,
    pub child: Child,
    pub addr: SocketAddr,
    stderr_path: PathBuf,
    stderr_read: u64,
    pub install: Option<Duration>,
}

impl Server {
    pub fn start(kind: Kind, rust_backtrace: bool, scratch: &std::path::Path) -> Server {
        static STARTS: Mutex<u32> = Mutex::new(0);
        let start = {
            let mut starts = STARTS.lock().unwrap();
            *starts += 1;
            *starts
        };
        let stderr_path = scratch.join(format!("{}-{start}.stderr", kind.arg()));
        // The servers are this program itself (`serve KIND`), so this finds them wherever cargo put
        // it: target/<profile>/examples/ or, for a bench, target/<profile>/deps/ with a hash suffix.
        let mut command = Command::new(std::env::current_exe().expect("own path"));
        command
            .args(["serve", kind.arg()])
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .env_remove("CRASHGUARD_BACKTRACE")
            .env("CRASHGUARD_TERMINATION_LOG", "")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path).expect("a stderr file"));
        if rust_backtrace {
            command.env("RUST_BACKTRACE", "1");
        }
        let mut child = command.spawn().expect("start a server");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut install = None;
        let addr = loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).expect("server stdout") == 0 {
                panic!("the {} server ended before it listened", kind.name());
            }
            if let Some(micros) = line
                .trim()
                .strip_prefix("installed in ")
                .and_then(|rest| rest.strip_suffix(" us"))
            {
                install = Some(Duration::from_micros(micros.parse().unwrap()));
            }
            if let Some(addr) = line.trim().strip_prefix("listening on ") {
                break addr.parse().expect("a socket address");
            }
        };
        Server {
            kind,
            child,
            addr,
            stderr_path,
            stderr_read: 0,
            install,
        }
    }

    /// CPU time the server has used so far, user and system, all its threads: fields 14 and 15
    /// of `/proc/<pid>/stat`, in clock ticks of 1/100 s (`USER_HZ` on Linux).
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("the server's /proc stat");
        // The command name (field 2) may hold spaces; the fields after it do not.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |index: usize| -> u64 { fields[index].parse().expect("a tick count") };
        // `fields[0]` is field 3 (state), so utime (14) and stime (15) are at 11 and 12.
        Duration::from_millis((ticks(11) + ticks(12)) * 10)
    }

    /// What the server wrote to stderr since the last call.
    pub fn new_stderr(&mut self) -> Vec<u8> {
        let mut file = File::open(&self.stderr_path).expect("the stderr file");
        file.seek(SeekFrom::Start(self.stderr_read)).unwrap();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        self.stderr_read += bytes.len() as u64;
        bytes
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr_path);
    }
}
