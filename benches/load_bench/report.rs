//! The printed results: the machine, the table of loads and the summary below it.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use crate::cli::Options;
use crate::client::Tally;
use crate::servers::Kind;
use crate::sigterm::Shutdown;
use crate::stats::spread;

/// One line of the results table.
pub struct Row {
    pub server: Kind,
    pub rust_backtrace: bool,
    pub load: &'static str,
    pub ok: Tally,
    pub boom: Option<Tally>,
    pub check: String,
    /// `/ok` requests per second in each round, in the order the rounds ran.
    pub round_rates: Vec<f64>,
    /// The server's CPU time (user and system, all threads) per request answered, in µs, in
    /// each round: steadier than throughput on a machine shared with the load generator.
    pub round_cpu: Vec<f64>,
    /// In a storm, each round's `/boom` answers per second and `/ok` p99 in ms.
    pub round_storm: Vec<(f64, f64)>,
}

pub fn machine() -> String {
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

pub fn table(rows: &mut [Row], options: &Options) -> String {
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

pub fn summary(rows: &mut [Row], installs: &[Duration], shutdowns: &[Shutdown]) -> String {
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
