//! What a caught panic costs, hook included, side by side: std's default hook with and without
//! `RUST_BACKTRACE=1`, and crashguard's with a fresh trace for every panic, with the location's
//! trace reused (the default) and the same with a Prometheus recorder counting the panics
//! (feature `metrics`), and without traces. Then the record writer alone.
//!
//! A panic hook is process-wide, so each case runs in a child process of this benchmark, with the
//! same arguments (criterion's filters work). The children's stderr, where every panic leaves its
//! record, goes to `/dev/null`: writing costs one `write(2)` there, and nothing reads it.

use std::hint::black_box;
use std::panic::catch_unwind;
use std::process::{Command, Stdio};
use std::time::Duration;

use crashguard::Config;
use criterion::Criterion;

/// Names what the child process installs before it measures.
const CASE_VARIABLE: &str = "CRASHGUARD_BENCH_CASE";

struct Case {
    name: &'static str,
    rust_backtrace: bool,
    install: Option<fn() -> Config>,
    /// Installs metrics-exporter-prometheus's recorder first, as a service with a `/metrics`
    /// endpoint does.
    prometheus: bool,
    /// Also measures the record writer alone.
    record_writer: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "std hook, RUST_BACKTRACE=1",
        rust_backtrace: true,
        install: None,
        prometheus: false,
        record_writer: false,
    },
    Case {
        name: "std hook, no backtrace",
        rust_backtrace: false,
        install: None,
        prometheus: false,
        record_writer: false,
    },
    Case {
        name: "crashguard, fresh trace each panic",
        rust_backtrace: false,
        install: Some(|| Config::new().backtrace_window(Duration::ZERO)),
        prometheus: false,
        record_writer: false,
    },
    Case {
        name: "crashguard, trace reused (default)",
        rust_backtrace: false,
        install: Some(Config::new),
        prometheus: false,
        record_writer: true,
    },
    Case {
        name: "crashguard, trace reused, Prometheus recorder installed",
        rust_backtrace: false,
        install: Some(Config::new),
        prometheus: true,
        record_writer: false,
    },
    Case {
        name: "crashguard, no trace",
        rust_backtrace: false,
        install: Some(|| Config::new().backtrace(false)),
        prometheus: false,
        record_writer: false,
    },
];

fn main() {
    match std::env::var(CASE_VARIABLE) {
        Ok(index) => measure(index.parse().expect("a case index")),
        Err(_) => {
            for index in 0..CASES.len() {
                run_child(index);
            }
        }
    }
}

fn run_child(index: usize) {
    let mut command = Command::new(std::env::current_exe().expect("own path"));
    command
        .args(std::env::args_os().skip(1))
        .env(CASE_VARIABLE, index.to_string())
        // A real file, so that the watcher's look writes its message as in a pod.
        .env(
            "CRASHGUARD_TERMINATION_LOG",
            std::env::temp_dir().join("crashguard-bench-termination-log"),
        )
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env_remove("CRASHGUARD_BACKTRACE")
        .stderr(Stdio::null());
    if CASES[index].rust_backtrace {
        command.env("RUST_BACKTRACE", "1");
    }
    let status = command.status().expect("run a benchmark case");
    assert!(status.success(), "case {:?}: {status}", CASES[index].name);
}

fn measure(index: usize) {
    let case = &CASES[index];
    if case.prometheus {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("install the Prometheus recorder");
    }
    if let Some(config) = case.install {
        crashguard::install(config());
    }
    let mut criterion = Criterion::default().configure_from_args();
    criterion
        .benchmark_group("caught panic")
        .bench_function(case.name, |b| {
            b.iter(|| catch_unwind(|| panic!("boom {}", black_box(7))).is_err())
        });
    if case.record_writer {
        record_writer(&mut criterion);
        watcher(&mut criterion);
    }
    criterion.final_summary();
}

/// Building and writing one panic record, without the panic: with no trace (a repeat at a known
/// location) and with a trace of 20 frames.
fn record_writer(criterion: &mut Criterion) {
    let report = crashguard::__private::catch("bench::record_writer", || panic!("boom"))
        .expect_err("it panicked");
    let trace: String = (0..20)
        .map(|frame| {
            format!(
                "{frame}: app::handlers::orders::load_order::{{{{closure}}}} at src/handlers/orders.rs:{}:13\n",
                100 + frame
            )
        })
        .collect();
    let mut group = criterion.benchmark_group("record writer");
    group.bench_function("panic record, trace referred to", |b| {
        b.iter(|| crashguard::__private::write_record_again(black_box(&report), None))
    });
    group.bench_function("panic record, 20-frame trace", |b| {
        b.iter(|| crashguard::__private::write_record_again(black_box(&report), Some(&trace)))
    });
    group.finish();
}

/// One look of the watcher: the process's memory and its cgroup's read, the termination message
/// written in advance. It looks every 5 s by default: the share of a core is this time / 5 s.
fn watcher(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("watcher");
    group.bench_function("one look", |b| b.iter(crashguard::__private::watch_once));
    group.finish();
}
