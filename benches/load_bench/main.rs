//! The load benchmark: axum servers with and without a crash guard, side by side, over loopback.
//!
//! ```text
//! cargo bench --features axum --bench load_bench
//! cargo bench --features axum --bench load_bench -- --seconds 2 --rounds 1
//! cargo bench --features axum --bench load_bench -- --only storm --servers tower-http,crashguard
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

mod check;
mod cli;
mod client;
mod report;
mod serve;
mod servers;
mod sigterm;
mod stats;

use std::fmt::Write as _;

use check::{check_storm, Check};
use cli::Options;
use client::{drive, Load, Tally};
use report::{machine, summary, table, Row};
use servers::{Kind, Server};
use sigterm::{sigterm_with_requests_in_flight, Shutdown};
use stats::micros_per_request;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        serve::serve(args.get(1).map_or("", String::as_str));
    }
    let options = Options::from_args(&args);
    bench(&options);
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
                let (before, client_before) = (server.cpu_time(), own_cpu_time());
                let mut tallies = drive(server.addr, &STORM, options);
                let server_cpu = micros_per_request(server.cpu_time() - before, &tallies);
                let client_cpu = micros_per_request(own_cpu_time() - client_before, &tallies);
                cpu[index].push(server_cpu);
                let mut boom = tallies.pop().unwrap();
                let mut ok = tallies.pop().unwrap();
                eprintln!(
                    "  /ok {:.0}/s, p99 {:.2} ms; /boom {:.0}/s, p99 {:.2} ms; CPU per request: \
                     server {server_cpu:.1} µs, this client {client_cpu:.1} µs",
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

/// The CPU time this process (the load client; the servers are children) has used, user and
/// system, all threads.
fn own_cpu_time() -> std::time::Duration {
    // SAFETY: getrusage fills the struct it is given, which is plain data.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| {
        std::time::Duration::from_secs(t.tv_sec as u64)
            + std::time::Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}
