//! The load benchmark: axum servers with and without a crash guard, side by side, driven over
//! loopback.
//!
//! ```text
//! cargo run --profile bench --features axum --example load_bench
//! cargo run --profile bench --features axum --example load_bench -- --seconds 2 --rounds 1
//! cargo run --profile bench --features axum --example load_bench -- --only storm --servers tower-http,crashguard
//! ```
//!
//! Options: `--seconds` (measured time per load, 5), `--warmup` (1), `--rounds` (3), `--only`
//! (`healthy`, `storm`, `install` or `sigterm`) and `--servers` (comma-separated: `unprotected`,
//! `tower-http`, `crashguard`, `crashguard-layer`).
//!
//! The servers, each a child process of this one (a panic hook is process-wide):
//!
//! - `unprotected`: axum as it comes; a panicking handler drops its connection;
//! - `tower-http`: tower-http's `CatchPanicLayer` and std's default panic hook;
//! - `crashguard`: handlers under `#[crash_guarded(http)]`, crashguard installed with its defaults
//!   (traces kept);
//! - `crashguard layer`: plain handlers under `crashguard::http::CrashGuardLayer`.
//!
//! Each serves `GET /ok` (answers `ok`) and `GET /boom` (panics on every request). The load comes
//! from this process: one thread per keep-alive HTTP/1.1 connection, each sending its next request
//! when the last answer is in, all to 127.0.0.1, for a fixed time. Loads:
//!
//! - `/ok ×4` and `/ok ×20`: 4 or 20 connections on `/ok`, nothing panicking;
//! - `storm`: 16 connections on `/boom` while 4 measure `/ok`, with and without `RUST_BACKTRACE=1`.
//!
//! Every load runs in rounds, the servers taking turns in an order that rotates from round to
//! round, so that drift on a shared machine hits them alike; each server's median round is
//! reported, with its CPU time per request, and the summary compares servers round by round.
//!
//! After each storm it checks what a user would: every `/boom` request was answered 500 and left
//! a record in the server's stderr, and (crashguard) every 500's incident id names one of those
//! records. Then it measures how long a crashguard server takes to exit on SIGTERM with slow
//! requests in flight, and how long `install` took in each crashguard server.
//!
//! The servers' stderr goes to files, in memory (`/dev/shm`) when the machine has it, and is read
//! after each load, so reading it takes no CPU from the measurement.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use crashguard::{crash_guarded, Config};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        serve(args.get(1).map_or("", String::as_str));
    }
    let options = Options::from_args(&args);
    bench(&options);
}

// ---------------------------------------------------------------------------------------------
// The servers

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unprotected,
    TowerHttp,
    Crashguard,
    CrashguardLayer,
}

const KINDS: [Kind; 4] = [
    Kind::Unprotected,
    Kind::TowerHttp,
    Kind::Crashguard,
    Kind::CrashguardLayer,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Unprotected => "unprotected",
            Kind::TowerHttp => "tower-http",
            Kind::Crashguard => "crashguard",
            Kind::CrashguardLayer => "crashguard layer",
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Kind::Unprotected => "unprotected",
            Kind::TowerHttp => "tower-http",
            Kind::Crashguard => "crashguard",
            Kind::CrashguardLayer => "crashguard-layer",
        }
    }

    fn is_crashguard(self) -> bool {
        matches!(self, Kind::Crashguard | Kind::CrashguardLayer)
    }
}

async fn ok() -> &'static str {
    "ok"
}

async fn boom() -> &'static str {
    panic!("boom")
}

#[crash_guarded(http)]
async fn guarded_ok() -> impl IntoResponse {
    "ok"
}

#[crash_guarded(http)]
async fn guarded_boom() -> impl IntoResponse {
    panic!("boom");
    #[allow(unreachable_code)]
    "unreachable"
}

#[crash_guarded(http)]
async fn guarded_slow(Path(millis): Path<u64>) -> impl IntoResponse {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    "done"
}

fn plain_routes() -> Router {
    Router::new()
        .route("/ok", get(ok))
        .route("/boom", get(boom))
}

/// Runs the server `kind` on 127.0.0.1, printing `listening on ADDR` once it accepts; never
/// returns.
fn serve(kind: &str) -> ! {
    match kind {
        "crashguard" | "crashguard-layer" => {
            let started = Instant::now();
            crashguard::install(Config::new());
            println!("installed in {} us", started.elapsed().as_micros());
            let router = if kind == "crashguard" {
                Router::new()
                    .route("/ok", get(guarded_ok))
                    .route("/boom", get(guarded_boom))
                    .route("/slow/{millis}", get(guarded_slow))
            } else {
                plain_routes().layer(crashguard::http::CrashGuardLayer::new())
            };
            crashguard::run_async(
                Config::new(),
                crashguard::Flavor::MultiThread(None),
                async move {
                    let listener = listen().await?;
                    axum::serve(listener, router)
                        .with_graceful_shutdown(crashguard::shutdown_signal())
                        .await
                },
            )
        }
        "tower-http" | "unprotected" => {
            let router = if kind == "tower-http" {
                plain_routes().layer(tower_http::catch_panic::CatchPanicLayer::new())
            } else {
                plain_routes()
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            let served = runtime.block_on(async move {
                let listener = listen().await?;
                axum::serve(listener, router).await
            });
            served.expect("serve");
            std::process::exit(0)
        }
        other => {
            eprintln!("unknown server kind {other:?}");
            std::process::exit(2)
        }
    }
}

async fn listen() -> io::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;
    Ok(listener)
}

/// A server child process; its stderr goes to a file (in memory when it can), read after each
/// load.
struct Server {
    kind: Kind,
    child: Child,
    addr: SocketAddr,
    stderr_path: PathBuf,
    stderr_read: u64,
    install: Option<Duration>,
}

impl Server {
    fn start(kind: Kind, rust_backtrace: bool, scratch: &std::path::Path) -> Server {
        static STARTS: Mutex<u32> = Mutex::new(0);
        let start = {
            let mut starts = STARTS.lock().unwrap();
            *starts += 1;
            *starts
        };
        let stderr_path = scratch.join(format!("{}-{start}.stderr", kind.arg()));
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
    fn cpu_time(&self) -> Duration {
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
    fn new_stderr(&mut self) -> Vec<u8> {
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

// ---------------------------------------------------------------------------------------------
// The load

#[derive(Debug, Clone)]
struct Options {
    warmup: Duration,
    measure: Duration,
    rounds: usize,
    /// `healthy`, `storm`, `install` or `sigterm`: run that part alone.
    only: Option<String>,
    /// The servers to run, by name; all when empty.
    servers: Vec<String>,
}

impl Options {
    fn kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        KINDS.into_iter().filter(|kind| {
            self.servers.is_empty() || self.servers.iter().any(|name| name == kind.arg())
        })
    }

    fn from_args(args: &[String]) -> Options {
        let mut options = Options {
            warmup: Duration::from_secs(1),
            measure: Duration::from_secs(5),
            rounds: 3,
            only: None,
            servers: Vec::new(),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut number = || -> f64 {
                args.next()
                    .and_then(|value| value.parse().ok())
                    .unwrap_or_else(|| panic!("{arg} takes a number"))
            };
            match arg.as_str() {
                "--seconds" => options.measure = Duration::from_secs_f64(number()),
                "--warmup" => options.warmup = Duration::from_secs_f64(number()),
                "--rounds" => options.rounds = (number() as usize).max(1),
                "--only" => options.only = args.next().cloned(),
                "--servers" => {
                    options.servers = args
                        .next()
                        .map(|names| names.split(',').map(str::to_owned).collect())
                        .unwrap_or_default()
                }
                // cargo passes `--bench` to bench targets; nothing else is expected.
                _ => {}
            }
        }
        options
    }
}

/// Connections on one path.
#[derive(Debug, Clone, Copy)]
struct Load {
    path: &'static str,
    connections: usize,
}

/// What the connections on one path saw.
#[derive(Debug, Default)]
struct Tally {
    /// Every request sent, warm-up included; each got an answer or counts in `no_answer`.
    sent: u64,
    status_200: u64,
    status_500: u64,
    other_status: u64,
    no_answer: u64,
    /// Requests started in the measured window, and their latencies.
    measured: u64,
    latencies_us: Vec<u32>,
    /// `x-incident-id` of every 500, hashed.
    incidents: Vec<u64>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.sent += other.sent;
        self.status_200 += other.status_200;
        self.status_500 += other.status_500;
        self.other_status += other.other_status;
        self.no_answer += other.no_answer;
        self.measured += other.measured;
        self.latencies_us.extend(other.latencies_us);
        self.incidents.extend(other.incidents);
    }

    fn per_second(&self, measure: Duration) -> f64 {
        self.measured as f64 / measure.as_secs_f64()
    }

    fn percentile(&mut self, fraction: f64) -> Duration {
        if self.latencies_us.is_empty() {
            return Duration::ZERO;
        }
        self.latencies_us.sort_unstable();
        let rank = ((fraction * self.latencies_us.len() as f64).ceil() as usize).max(1) - 1;
        Duration::from_micros(u64::from(self.latencies_us[rank]))
    }
}

/// Drives `loads` at `addr` together: warm-up, then the measured window; every connection
/// finishes the request it is in when time is up, so every request sent has its outcome.
fn drive(addr: SocketAddr, loads: &[Load], options: &Options) -> Vec<Tally> {
    let threads: usize = loads.iter().map(|load| load.connections).sum();
    let start = Barrier::new(threads + 1);
    let tallies: Vec<Mutex<Tally>> = loads.iter().map(|_| Mutex::default()).collect();
    std::thread::scope(|scope| {
        for (load, tally) in loads.iter().zip(&tallies) {
            for _ in 0..load.connections {
                let start = &start;
                scope.spawn(move || {
                    start.wait();
                    let began = Instant::now();
                    let measured_from = began + options.warmup;
                    let end = measured_from + options.measure;
                    let mine = connection(addr, load.path, measured_from, end);
                    tally.lock().unwrap().merge(mine);
                });
            }
        }
        start.wait();
    });
    tallies
        .into_iter()
        .map(|tally| tally.into_inner().unwrap())
        .collect()
}

/// One keep-alive connection sending `GET path` until `end`, reconnecting when the server drops
/// it.
fn connection(addr: SocketAddr, path: &str, measured_from: Instant, end: Instant) -> Tally {
    let request = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n");
    let mut tally = Tally {
        latencies_us: Vec::with_capacity(1 << 16),
        ..Tally::default()
    };
    let mut connection: Option<Connection> = None;
    loop {
        let sent_at = Instant::now();
        if sent_at >= end {
            return tally;
        }
        let open = match &mut connection {
            Some(open) => open,
            None => match Connection::open(addr) {
                Ok(opened) => connection.insert(opened),
                Err(_) => {
                    tally.no_answer += 1;
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
            },
        };
        tally.sent += 1;
        let answer = open.get(request.as_bytes());
        let took = sent_at.elapsed();
        match answer {
            Ok(answer) => {
                match answer.status {
                    200 => tally.status_200 += 1,
                    500 => tally.status_500 += 1,
                    _ => tally.other_status += 1,
                }
                if let Some(incident) = answer.incident {
                    tally.incidents.push(incident);
                }
                if sent_at >= measured_from {
                    tally.measured += 1;
                    tally
                        .latencies_us
                        .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                }
            }
            Err(_) => {
                tally.no_answer += 1;
                connection = None;
            }
        }
    }
}

/// A keep-alive HTTP/1.1 client connection with one request in flight at a time; it reads
/// answers into one buffer, without allocating, so that the client takes as little CPU from the
/// servers as it can.
struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

struct Answer {
    status: u16,
    /// `x-incident-id`, hashed.
    incident: Option<u64>,
}

impl Connection {
    fn open(addr: SocketAddr) -> io::Result<Connection> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Connection {
            stream,
            buf: vec![0; 16 * 1024],
        })
    }

    /// Sends `request` and reads its answer, which must have a `content-length` body.
    fn get(&mut self, request: &[u8]) -> io::Result<Answer> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
        self.stream.write_all(request)?;
        let mut filled = 0;
        let head_end = loop {
            if let Some(end) = self.buf[..filled]
                .windows(4)
                .position(|window| window == b"\r\n\r\n")
            {
                break end + 4;
            }
            if filled == self.buf.len() {
                return Err(invalid("head too long"));
            }
            filled += self.read_more(filled)?;
        };
        let head = &self.buf[..head_end];
        let status = std::str::from_utf8(head.get(9..12).unwrap_or_default())
            .ok()
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid("status line"))?;
        let mut length = 0;
        let mut incident = None;
        for line in head.split(|byte| *byte == b'\n').skip(1) {
            if let Some(value) = header_value(line, b"content-length") {
                length = std::str::from_utf8(value)
                    .ok()
                    .and_then(|value| value.parse().ok())
                    .ok_or_else(|| invalid("content-length"))?;
            } else if let Some(value) = header_value(line, b"x-incident-id") {
                incident = Some(fnv1a(value));
            } else if header_value(line, b"transfer-encoding").is_some() {
                return Err(invalid("chunked answers are not expected"));
            }
        }
        let total = head_end + length;
        if total > self.buf.len() {
            self.buf.resize(total, 0);
        }
        while filled < total {
            filled += self.read_more(filled)?;
        }
        Ok(Answer { status, incident })
    }

    fn read_more(&mut self, filled: usize) -> io::Result<usize> {
        match self.stream.read(&mut self.buf[filled..])? {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            read => Ok(read),
        }
    }
}

/// The value of header `name` if `line` is that header.
fn header_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let rest = line.strip_suffix(b"\r").unwrap_or(line);
    (rest.len() > name.len()
        && rest[..name.len()].eq_ignore_ascii_case(name)
        && rest[name.len()] == b':')
        .then(|| rest[name.len() + 1..].trim_ascii())
}

/// FNV-1a: incident ids are compared by hash, so that the client keeps no strings.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

// ---------------------------------------------------------------------------------------------
// The benchmark

/// One line of the results table.
struct Row {
    server: Kind,
    rust_backtrace: bool,
    load: &'static str,
    ok: Tally,
    boom: Option<Tally>,
    check: String,
    /// `/ok` requests per second in each round, in the order the rounds ran.
    round_rates: Vec<f64>,
    /// The server's CPU time (user and system, all threads) per request answered, in µs, in
    /// each round: steadier than throughput on a machine shared with the load generator.
    round_cpu: Vec<f64>,
    /// In a storm, each round's `/boom` answers per second and `/ok` p99 in ms.
    round_storm: Vec<(f64, f64)>,
}

const OK_ALONE: [Load; 1] = [Load {
    path: "/ok",
    connections: 4,
}];
const OK_SATURATED: [Load; 1] = [Load {
    path: "/ok",
    connections: 20,
}];
const STORM: [Load; 2] = [
    Load {
        path: "/ok",
        connections: 4,
    },
    Load {
        path: "/boom",
        connections: 16,
    },
];

/// `cpu` spread over the requests of `tallies` (warm-up included, as is the CPU time).
fn micros_per_request(cpu: Duration, tallies: &[Tally]) -> f64 {
    let requests: u64 = tallies.iter().map(|tally| tally.sent).sum();
    cpu.as_secs_f64() * 1e6 / requests.max(1) as f64
}

/// The order in which `servers` take their turns in `round`: each round starts one further
/// along, so that no server always runs first (or right after the same one).
fn turns(servers: usize, round: usize) -> impl Iterator<Item = usize> {
    (0..servers).map(move |turn| (round + turn) % servers)
}

fn bench(options: &Options) {
    // Servers' stderr goes to files in memory when the machine has a tmpfs: a pod's stderr is a
    // pipe that another process drains, not the pod's own disk, so the disk is not measured.
    let memory = std::path::Path::new("/dev/shm");
    let base = if memory.is_dir() {
        memory.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let scratch = base.join(format!("crashguard-load-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("a scratch directory");
    println!("{}", machine());
    println!(
        "warm-up {:?}, measured {:?} per load, {} rounds of the healthy loads\n",
        options.warmup, options.measure, options.rounds
    );
    let mut installs = Vec::new();
    let mut rows = Vec::new();
    let runs = |part: &str| options.only.as_deref().is_none_or(|only| only == part);

    // Healthy loads, the servers side by side, round after round and in turns that rotate, so that
    // drift and the order of turns hit all alike;
    // each server's median round is kept.
    if runs("healthy") {
        let mut servers: Vec<Server> = options
            .kinds()
            .map(|kind| Server::start(kind, false, &scratch))
            .collect();
        installs.extend(servers.iter().filter_map(|server| server.install));
        for (name, loads) in [("/ok ×4", &OK_ALONE[..]), ("/ok ×20", &OK_SATURATED[..])] {
            let mut runs: Vec<Vec<Tally>> = servers.iter().map(|_| Vec::new()).collect();
            let mut cpu: Vec<Vec<f64>> = servers.iter().map(|_| Vec::new()).collect();
            for round in 0..options.rounds {
                for index in turns(servers.len(), round) {
                    let server = &mut servers[index];
                    eprintln!("{name}, round {}: {}", round + 1, server.kind.name());
                    let before = server.cpu_time();
                    let mut tallies = drive(server.addr, loads, options);
                    cpu[index].push(micros_per_request(server.cpu_time() - before, &tallies));
                    server.new_stderr();
                    runs[index].push(tallies.remove(0));
                }
            }
            for ((server, mut tallies), round_cpu) in servers.iter().zip(runs).zip(cpu) {
                let round_rates = tallies
                    .iter()
                    .map(|tally| tally.per_second(options.measure))
                    .collect();
                tallies.sort_by_key(|tally| tally.measured);
                let median = tallies.swap_remove(tallies.len() / 2);
                let check = if median.status_200 == median.sent && median.no_answer == 0 {
                    "all 200".to_owned()
                } else {
                    format!("FAILED: {median:?}")
                };
                rows.push(Row {
                    server: server.kind,
                    rust_backtrace: false,
                    load: name,
                    ok: median,
                    boom: None,
                    check,
                    round_rates,
                    round_cpu,
                    round_storm: Vec::new(),
                });
            }
        }
    }

    // Storms, with and without RUST_BACKTRACE=1, in rounds as above; each server's median round
    // (by panicking requests answered) is kept, and a check that failed in any round is shown.
    for rust_backtrace in [false, true].into_iter().filter(|_| runs("storm")) {
        let mut servers: Vec<Server> = options
            .kinds()
            .map(|kind| Server::start(kind, rust_backtrace, &scratch))
            .collect();
        installs.extend(servers.iter().filter_map(|server| server.install));
        let mut results: Vec<Vec<(Tally, Tally, Check)>> =
            servers.iter().map(|_| Vec::new()).collect();
        let mut cpu: Vec<Vec<f64>> = servers.iter().map(|_| Vec::new()).collect();
        let mut storm: Vec<Vec<(f64, f64)>> = servers.iter().map(|_| Vec::new()).collect();
        for round in 0..options.rounds {
            for index in turns(servers.len(), round) {
                let server = &mut servers[index];
                eprintln!(
                    "storm, RUST_BACKTRACE={}, round {}: {}",
                    u8::from(rust_backtrace),
                    round + 1,
                    server.kind.name()
                );
                let before = server.cpu_time();
                let mut tallies = drive(server.addr, &STORM, options);
                cpu[index].push(micros_per_request(server.cpu_time() - before, &tallies));
                let mut boom = tallies.pop().unwrap();
                let mut ok = tallies.pop().unwrap();
                eprintln!(
                    "  /ok {:.0}/s, p99 {:.2} ms; /boom {:.0}/s, p99 {:.2} ms",
                    ok.per_second(options.measure),
                    ok.percentile(0.99).as_secs_f64() * 1e3,
                    boom.per_second(options.measure),
                    boom.percentile(0.99).as_secs_f64() * 1e3,
                );
                storm[index].push((
                    boom.per_second(options.measure),
                    ok.percentile(0.99).as_secs_f64() * 1e3,
                ));
                let check = check_storm(server.kind, &ok, &boom, &server.new_stderr());
                results[index].push((ok, boom, check));
            }
        }
        for (((server, mut results), round_cpu), round_storm) in
            servers.iter().zip(results).zip(cpu).zip(storm)
        {
            let failures: Vec<String> = results
                .iter()
                .filter(|(_, _, check)| !check.passed)
                .map(|(_, _, check)| check.text.clone())
                .collect();
            let traces: Option<u64> = results.iter().map(|(_, _, check)| check.traces).sum();
            let rounds = results.len();
            results.sort_by_key(|(_, boom, _)| boom.measured);
            let (ok, boom, mut check) = results.swap_remove(results.len() / 2);
            if let Some(traces) = traces {
                let _ = write!(
                    check.text,
                    " ({traces} traced in {rounds} rounds, the others refer to one)"
                );
            }
            rows.push(Row {
                server: server.kind,
                rust_backtrace,
                load: "storm",
                ok,
                boom: Some(boom),
                check: if failures.is_empty() {
                    check.text
                } else {
                    format!("FAILED: {}", failures.join(" | "))
                },
                round_rates: Vec::new(),
                round_cpu,
                round_storm,
            });
        }
    }

    // Install time, from more starts of an idle crashguard server than the loads made.
    if runs("install") {
        for _ in 0..20 {
            installs.extend(Server::start(Kind::Crashguard, false, &scratch).install);
        }
    }

    let shutdowns: Vec<Shutdown> = (0..3)
        .filter(|_| runs("sigterm"))
        .map(|_| sigterm_with_requests_in_flight(&scratch))
        .collect();
    let _ = std::fs::remove_dir_all(&scratch);

    println!("{}", table(&mut rows, options));
    println!("{}", summary(&mut rows, &installs, &shutdowns));
}

/// What a storm's check found.
struct Check {
    passed: bool,
    text: String,
    /// Panic records with a trace of their own (crashguard).
    traces: Option<u64>,
}

/// Checks a storm's outcome as a user would: every `/ok` answered 200; every `/boom` answered
/// 500 (the unprotected server drops the connection instead) and recorded; with crashguard,
/// every 500's incident id distinct and naming a record.
fn check_storm(kind: Kind, ok: &Tally, boom: &Tally, stderr: &[u8]) -> Check {
    let mut problems = Vec::new();
    if ok.status_200 != ok.sent || ok.no_answer != 0 {
        problems.push(format!(
            "/ok: {} sent, {} answered 200, {} unanswered",
            ok.sent, ok.status_200, ok.no_answer
        ));
    }
    let text = String::from_utf8_lossy(stderr);
    let (records, traces) = if kind.is_crashguard() {
        let mut ids = HashSet::new();
        let mut traces = 0;
        for line in text.lines() {
            let record: serde_json::Value = match serde_json::from_str(line) {
                Ok(record) => record,
                Err(_) => {
                    problems.push(format!("a stderr line is not a record: {line:.120}"));
                    continue;
                }
            };
            if record["event"] == "panic" {
                ids.insert(fnv1a(
                    record["incident.id"]
                        .as_str()
                        .unwrap_or_default()
                        .as_bytes(),
                ));
                traces += u64::from(record.get("exception.stacktrace").is_some());
            }
        }
        let answered: HashSet<u64> = boom.incidents.iter().copied().collect();
        if answered.len() != boom.incidents.len() {
            problems.push("two 500s carried the same incident id".to_owned());
        }
        let unrecorded = answered.iter().filter(|id| !ids.contains(*id)).count();
        if unrecorded > 0 {
            problems.push(format!("{unrecorded} 500s name an incident with no record"));
        }
        (ids.len() as u64, Some(traces))
    } else {
        (text.matches("panicked at").count() as u64, None)
    };
    if records != boom.sent {
        problems.push(format!("{records} panic records"));
    }
    let counts = if kind == Kind::Unprotected {
        if boom.no_answer != boom.sent {
            problems.push(format!("{} answered", boom.sent - boom.no_answer));
        }
        format!(
            "{} sent, none answered (connection dropped), {records} records",
            boom.sent
        )
    } else {
        if boom.status_500 != boom.sent {
            problems.push(format!(
                "{} answered 500, {} unanswered",
                boom.status_500, boom.no_answer
            ));
        }
        format!(
            "{} sent, {} × 500, {records} records",
            boom.sent, boom.status_500
        )
    };
    let passed = problems.is_empty();
    Check {
        passed,
        traces,
        text: if passed {
            counts
        } else {
            format!("{counts}: {}", problems.join("; "))
        },
    }
}

/// A crashguard server gets SIGTERM while slow requests are in flight.
struct Shutdown {
    /// SIGTERM to the last answer: what the slowest request still needed.
    slowest_needed: Duration,
    /// SIGTERM to the process's end.
    exited_after: Duration,
    answered: usize,
    exit_code: Option<i32>,
}

fn sigterm_with_requests_in_flight(scratch: &std::path::Path) -> Shutdown {
    let mut server = Server::start(Kind::Crashguard, false, scratch);
    let requests = [300, 400, 500, 600];
    let started = Barrier::new(requests.len() + 1);
    let answers: Mutex<Vec<(u16, Instant)>> = Mutex::new(Vec::new());
    let addr = server.addr;
    let (signalled, exited, status) = std::thread::scope(|scope| {
        for millis in requests {
            let (started, answers) = (&started, &answers);
            scope.spawn(move || {
                let mut connection = Connection::open(addr).expect("connect");
                started.wait();
                let request = format!("GET /slow/{millis} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n");
                let answer = connection.get(request.as_bytes());
                let status = answer.map_or(0, |answer| answer.status);
                answers.lock().unwrap().push((status, Instant::now()));
            });
        }
        started.wait();
        std::thread::sleep(Duration::from_millis(100));
        let pid = i32::try_from(server.child.id()).unwrap();
        let signalled = Instant::now();
        // SAFETY: kill(2) on our own child, which has not been reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = server.child.wait().expect("wait for the server");
        (signalled, Instant::now(), status)
    });
    let answers = answers.into_inner().unwrap();
    let last = answers.iter().map(|(_, at)| *at).max().unwrap_or(signalled);
    server.new_stderr();
    Shutdown {
        slowest_needed: last.saturating_duration_since(signalled),
        exited_after: exited - signalled,
        answered: answers.iter().filter(|(status, _)| *status == 200).count(),
        exit_code: status.code(),
    }
}

// ---------------------------------------------------------------------------------------------
// Output

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map_or("unknown", |rest| rest.trim_start_matches([' ', '\t', ':']));
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "machine: {cores} cores, {model}, Linux {}, {rustc}",
        kernel.trim()
    )
}

fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

fn table(rows: &mut [Row], options: &Options) -> String {
    let mut out = String::from(
        "| server | RUST_BACKTRACE | load | /ok req/s | /ok p50 | /ok p99 | /boom answered/s | /boom p50 | /boom p99 | server CPU per request | check |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for row in rows.iter_mut() {
        let (boom_rate, boom_p50, boom_p99) = match &mut row.boom {
            Some(boom) => (
                format!("{:.0}", boom.per_second(options.measure)),
                millis(boom.percentile(0.50)),
                millis(boom.percentile(0.99)),
            ),
            None => ("–".to_owned(), "–".to_owned(), "–".to_owned()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.1} µs | {} |",
            row.server.name(),
            if row.rust_backtrace { "1" } else { "unset" },
            row.load,
            row.ok.per_second(options.measure),
            millis(row.ok.percentile(0.50)),
            millis(row.ok.percentile(0.99)),
            boom_rate,
            boom_p50,
            boom_p99,
            spread(&row.round_cpu).1,
            row.check,
        );
    }
    out
}

/// The smallest, middle and largest of `values` (zeros when empty).
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match (sorted.first(), sorted.last()) {
        (Some(&low), Some(&high)) => (low, sorted[sorted.len() / 2], high),
        _ => (0.0, 0.0, 0.0),
    }
}

fn summary(rows: &mut [Row], installs: &[Duration], shutdowns: &[Shutdown]) -> String {
    let mut out = String::new();
    // Each round ran the servers one after the other, so a round's ratio compares like with like;
    // the median of the rounds' ratios is steadier than a ratio of medians.
    let rounds = |server: Kind, load: &str, of: fn(&Row) -> &Vec<f64>| {
        rows.iter()
            .find(|row| row.server == server && row.load == load)
            .map_or_else(Vec::new, |row| of(row).clone())
    };
    for load in ["/ok ×4", "/ok ×20"] {
        for kind in [Kind::Crashguard, Kind::CrashguardLayer] {
            for (what, of) in [
                (
                    "throughput",
                    (|row| &row.round_rates) as fn(&Row) -> &Vec<f64>,
                ),
                ("server CPU per request", |row| &row.round_cpu),
            ] {
                let ratios: Vec<f64> = rounds(kind, load, of)
                    .iter()
                    .zip(&rounds(Kind::Unprotected, load, of))
                    .map(|(guarded, unguarded)| guarded / unguarded)
                    .collect();
                if ratios.is_empty() {
                    continue;
                }
                let (low, middle, high) = spread(&ratios);
                let _ = writeln!(
                    out,
                    "{load}, no panics: {} / unprotected {what} = {middle:.3} (median of {} \
                     rounds, each the ratio of two runs in one round; {low:.3} to {high:.3})",
                    kind.name(),
                    ratios.len(),
                );
            }
        }
    }
    // Storms, round by round: crashguard against tower-http in the same round.
    for rust_backtrace in [false, true] {
        let storm_rounds = |server: Kind| {
            rows.iter()
                .find(|row| {
                    row.server == server
                        && row.load == "storm"
                        && row.rust_backtrace == rust_backtrace
                })
                .map_or_else(Vec::new, |row| row.round_storm.clone())
        };
        let peer = storm_rounds(Kind::TowerHttp);
        for kind in [Kind::Crashguard, Kind::CrashguardLayer] {
            let pairs: Vec<((f64, f64), (f64, f64))> = storm_rounds(kind)
                .into_iter()
                .zip(peer.iter().copied())
                .collect();
            if pairs.is_empty() {
                continue;
            }
            let ratios: Vec<f64> = pairs
                .iter()
                .map(|((ours, _), (theirs, _))| ours / theirs)
                .collect();
            let p99_gaps: Vec<f64> = pairs
                .iter()
                .map(|((_, ours), (_, theirs))| ours - theirs)
                .collect();
            let ahead = pairs
                .iter()
                .filter(|((ours, _), (theirs, _))| ours >= theirs)
                .count();
            let no_worse = pairs
                .iter()
                .filter(|((_, ours), (_, theirs))| ours <= theirs)
                .count();
            let (low, ratio, high) = spread(&ratios);
            let (best, gap, worst) = spread(&p99_gaps);
            let _ = writeln!(
                out,
                "storm, RUST_BACKTRACE={}: {} / tower-http, round by round: /boom answered {ratio:.3} \
                 (median; {low:.3} to {high:.3}; at least as many in {ahead} of {} rounds); \
                 /ok p99 {gap:+.2} ms (median; {best:+.2} to {worst:+.2}; no worse in {no_worse} of {} rounds)",
                if rust_backtrace { "1" } else { "unset" },
                kind.name(),
                pairs.len(),
                pairs.len(),
            );
        }
    }
    let mut installs = installs.to_vec();
    installs.sort_unstable();
    if let (Some(min), Some(max)) = (installs.first(), installs.last()) {
        let micros = |duration: &Duration| duration.as_secs_f64() * 1e6;
        let _ = writeln!(
            out,
            "install: {:.0} µs median, {:.0} µs min, {:.0} µs max over {} starts",
            micros(&installs[installs.len() / 2]),
            micros(min),
            micros(max),
            installs.len()
        );
    }
    for shutdown in shutdowns {
        let _ = writeln!(
            out,
            "SIGTERM with 4 slow requests in flight: the slowest needed {} more, the process exited \
             after {} ({} later), {}/4 answered 200, exit code {:?}",
            millis(shutdown.slowest_needed),
            millis(shutdown.exited_after),
            millis(shutdown.exited_after.saturating_sub(shutdown.slowest_needed)),
            shutdown.answered,
            shutdown.exit_code,
        );
    }
    out
}
