//! What [`install`](crate::install) sets up, with defaults that suit a pod and environment
//! variables that override the code.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `CRASHGUARD_GRACE_PERIOD` | shutdown deadline, e.g. `25s`, `1500ms`, `1m 30s` | [`Config::grace_period`], else 30 s |
//! | `CRASHGUARD_TERMINATION_LOG` | file for the termination message; empty turns it off | `/dev/termination-log` when it exists and is writable |
//! | `CRASHGUARD_SHUTDOWN_DELAY` | time between SIGTERM and the shutdown signal, serving on while endpoints are removed | [`Config::shutdown_delay`], else 0 |
//! | `CRASHGUARD_BACKTRACE` | `0`, `false` or `off` leaves backtraces out of panic records | on |
//! | `CRASHGUARD_WATCH_INTERVAL` | how often the termination message written in advance is refreshed and memory looked at; `0` turns it off | [`Config::watch_interval`], else 5 s |
//! | `CRASHGUARD_MEMORY_PRESSURE` | the share of the memory limit, in percent, that makes a `memory_pressure` record | [`Config::memory_pressure_percent`], else 90 |
//! | `CRASHGUARD_CGROUP` | the cgroup directory whose memory files crashguard reads | the process's own |
//! | `CRASHGUARD_FORMAT` | `json`, `text` (records for people), or `auto`: text where stderr is a terminal, JSON elsewhere | [`Config::format`], else `auto` |
//! | `NO_COLOR` | any value but empty turns the text's colours off, as does `TERM=dumb` | colours on a terminal |
//! | `OTEL_SERVICE_NAME` | the `start` record's `service.name` | [`Config::service`], which `#[crash_guarded]` sets to the package's name |
//! | `CRASHGUARD_SIGQUIT` | `dump`: a thread dump, the process goes on; `exit`: the dump, then death by SIGQUIT | [`Config::exit_on_sigquit`], else `dump` |
//! | `CRASHGUARD_PANIC_BUDGET` | panics allowed per window before readiness turns false, e.g. `3/10s`; `off` turns it off | [`Config::panic_budget`], else none |
//! | `CRASHGUARD_PANIC_BUDGET_EXIT` | `1`: a spent budget also shuts the process down gracefully, to be restarted; `0`: readiness only | [`Config::exit_on_panic_budget`], else `0` |
//!
//! An environment value that cannot be read is reported in a `config` record at install and the
//! code's value is used instead. This module only reads: it returns what it could not read, and
//! install writes the records.

use std::path::PathBuf;
use std::time::Duration;

mod environment;

pub(crate) use environment::EnvProblem;

/// The largest record crashguard writes, newline included: 16 KiB, the line length above which
/// containerd and CRI-O split a log line.
pub const MAX_RECORD_BYTES: usize = 16 * 1024;

/// The smallest limit [`Config::max_record_bytes`] accepts.
pub const MIN_RECORD_BYTES: usize = 1024;

/// Kubernetes' default `terminationGracePeriodSeconds`.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);

/// Where Kubernetes reads a container's termination message by default.
pub const DEFAULT_TERMINATION_LOG: &str = "/dev/termination-log";

/// How long a location's backtrace stands for its later panics, by default.
pub const DEFAULT_BACKTRACE_WINDOW: Duration = Duration::from_secs(60);

/// How many panic locations are remembered for reusing traces, by default.
pub const DEFAULT_BACKTRACE_LOCATIONS: usize = 256;

/// The settings of [`install`](crate::install) and `#[crash_guarded]` on main.
///
/// # Example
///
/// ```
/// use std::time::Duration;
///
/// let config = crashguard::Config::new()
///     .grace_period(Duration::from_secs(25))
///     .backtrace(false)
///     .termination_log("/tmp/termination-log");
/// crashguard::install(config);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    grace_period: Duration,
    shutdown_delay: Duration,
    backtrace: bool,
    backtrace_window: Duration,
    backtrace_locations: usize,
    termination_log: TerminationLog,
    max_record_bytes: usize,
    keep_previous_panic_hook: bool,
    exit_on_sigquit: bool,
    panic_budget: Option<PanicBudget>,
    exit_on_panic_budget: bool,
    format: Format,
    service: Option<Service>,
    watch_interval: Duration,
    memory_pressure_percent: u8,
}

/// How often the watcher refreshes the termination message and looks at memory, by default.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(5);

/// The share of the memory limit at which a `memory_pressure` record is written, by default.
pub const DEFAULT_MEMORY_PRESSURE_PERCENT: u8 = 90;

/// How records are written; see [`Config::format`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Text for people where stderr is a terminal, JSON lines elsewhere.
    #[default]
    Auto,
    /// One JSON object per line, always.
    Json,
    /// Text for people, always; coloured only on a terminal (and not with `NO_COLOR` set or
    /// `TERM=dumb`).
    Text,
}

/// How many panics a window may hold before the process stops taking traffic; see
/// [`Config::panic_budget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PanicBudget {
    panics: u32,
    per: Duration,
}

/// The shortest window a [`PanicBudget`] counts in.
const SHORTEST_BUDGET_WINDOW: Duration = Duration::from_millis(10);

impl PanicBudget {
    /// `panics` panics per `per` (at least 10 ms).
    pub fn new(panics: u32, per: Duration) -> PanicBudget {
        PanicBudget {
            panics,
            per: per.max(SHORTEST_BUDGET_WINDOW),
        }
    }

    /// The panics a window may hold; one more spends the budget.
    pub fn panics(&self) -> u32 {
        self.panics
    }

    /// The window.
    pub fn per(&self) -> Duration {
        self.per
    }
}

impl std::fmt::Display for PanicBudget {
    /// As `CRASHGUARD_PANIC_BUDGET` takes it: `3/10s`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}",
            self.panics,
            humantime::format_duration(self.per)
        )
    }
}

/// What the `start` record calls the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Service {
    pub(crate) name: String,
    pub(crate) version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TerminationLog {
    /// `/dev/termination-log` when it exists and is writable.
    KubernetesDefault,
    At(PathBuf),
    Off,
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl Config {
    /// The defaults: a 30 s grace period, backtraces on (resolved once a minute per panic
    /// location), the Kubernetes termination log, 16 KiB records, and std's previous panic hook
    /// replaced.
    pub fn new() -> Config {
        Config {
            grace_period: DEFAULT_GRACE_PERIOD,
            shutdown_delay: Duration::ZERO,
            backtrace: true,
            backtrace_window: DEFAULT_BACKTRACE_WINDOW,
            backtrace_locations: DEFAULT_BACKTRACE_LOCATIONS,
            termination_log: TerminationLog::KubernetesDefault,
            max_record_bytes: MAX_RECORD_BYTES,
            keep_previous_panic_hook: false,
            exit_on_sigquit: false,
            panic_budget: None,
            exit_on_panic_budget: false,
            format: Format::Auto,
            service: None,
            watch_interval: DEFAULT_WATCH_INTERVAL,
            memory_pressure_percent: DEFAULT_MEMORY_PRESSURE_PERCENT,
        }
    }

    /// How long a graceful shutdown may take before crashguard ends the process itself.
    /// Set it a little below the pod's `terminationGracePeriodSeconds`.
    /// `CRASHGUARD_GRACE_PERIOD` overrides it.
    pub fn grace_period(mut self, grace_period: Duration) -> Config {
        self.grace_period = grace_period;
        self
    }

    /// How long to keep serving after SIGTERM before the shutdown signal fires (0 by default).
    /// Readiness turns false at once; the delay covers the moment in which Kubernetes removes the
    /// pod from its endpoints while requests still arrive. A preStop hook (`sleep 5`) does the
    /// same outside the process. `CRASHGUARD_SHUTDOWN_DELAY` overrides it.
    pub fn shutdown_delay(mut self, delay: Duration) -> Config {
        self.shutdown_delay = delay;
        self
    }

    /// Whether panic records carry a backtrace (they do by default, whatever `RUST_BACKTRACE`
    /// says: a service's panic is rare and the trace is the evidence).
    /// `CRASHGUARD_BACKTRACE=0` overrides it.
    pub fn backtrace(mut self, enabled: bool) -> Config {
        self.backtrace = enabled;
        self
    }

    /// How long a panic's trace stands for its location: a panic at the same `file:line:col`
    /// within `window` of the traced one carries no trace of its own, only the traced panic's
    /// incident id and a count of repeats (60 s by default). So a route that panics on every
    /// request resolves symbols once a minute, not once a request. `Duration::ZERO` traces every
    /// panic.
    pub fn backtrace_window(mut self, window: Duration) -> Config {
        self.backtrace_window = window;
        self
    }

    /// How many panic locations [`backtrace_window`](Config::backtrace_window) remembers (256 by
    /// default, at least 1). The table is allocated once at this size; when it is full, the
    /// location traced longest ago is forgotten and traced afresh if it panics again.
    pub fn backtrace_locations(mut self, locations: usize) -> Config {
        self.backtrace_locations = locations.max(1);
        self
    }

    /// Writes the termination message to `path` instead of `/dev/termination-log`.
    /// `CRASHGUARD_TERMINATION_LOG` overrides it.
    pub fn termination_log(mut self, path: impl Into<PathBuf>) -> Config {
        self.termination_log = TerminationLog::At(path.into());
        self
    }

    /// Writes no termination message.
    pub fn no_termination_log(mut self) -> Config {
        self.termination_log = TerminationLog::Off;
        self
    }

    /// Caps every record at `bytes`, newline included, between 1 KiB and the default 16 KiB
    /// (longer lines are split by containerd and CRI-O).
    pub fn max_record_bytes(mut self, bytes: usize) -> Config {
        self.max_record_bytes = bytes.clamp(MIN_RECORD_BYTES, MAX_RECORD_BYTES);
        self
    }

    /// Also runs the panic hook that was installed before crashguard's, after crashguard's
    /// record. Off by default: the hook before is usually std's, whose multi-line text would
    /// break a stderr that is otherwise all JSON.
    pub fn keep_previous_panic_hook(mut self, keep: bool) -> Config {
        self.keep_previous_panic_hook = keep;
        self
    }

    /// The program's name and version in the `start` record (`service.name`, `service.version`,
    /// as OpenTelemetry names them). `#[crash_guarded]` sets the package's own (`CARGO_PKG_NAME`,
    /// `CARGO_PKG_VERSION`); `OTEL_SERVICE_NAME` overrides the name.
    pub fn service(mut self, name: impl Into<String>, version: impl Into<String>) -> Config {
        self.service = Some(Service {
            name: name.into(),
            version: Some(version.into()),
        });
        self
    }

    /// [`Config::service`] from the package the attribute expands in, where cargo built it.
    #[doc(hidden)]
    pub fn __package(self, name: Option<&'static str>, version: Option<&'static str>) -> Config {
        match (name, version) {
            (Some(name), Some(version)) => self.service(name, version),
            _ => self,
        }
    }

    /// How often the watcher thread refreshes the termination message written in advance (what a
    /// process killed without a word leaves) and looks at the memory (5 s by default).
    /// `CRASHGUARD_WATCH_INTERVAL` overrides it; zero turns the watcher off.
    pub fn watch_interval(mut self, interval: Duration) -> Config {
        self.watch_interval = interval;
        self
    }

    /// The share of the cgroup's memory limit, in percent, at which a `memory_pressure` record is
    /// written (90 by default; at most once a minute). `CRASHGUARD_MEMORY_PRESSURE` overrides it.
    pub fn memory_pressure_percent(mut self, percent: u8) -> Config {
        self.memory_pressure_percent = percent.clamp(1, 100);
        self
    }

    /// What SIGQUIT does: a thread dump, after which the process goes on serving (the default,
    /// as the JVM's `kill -3`), or, with `true`, the dump, the exit record and death by SIGQUIT
    /// (as Go). `CRASHGUARD_SIGQUIT=exit` or `=dump` overrides it. An application's own SIGQUIT
    /// handler keeps SIGQUIT.
    pub fn exit_on_sigquit(mut self, exit: bool) -> Config {
        self.exit_on_sigquit = exit;
        self
    }

    /// How many panics the process may have in a window of `per` before it stops taking traffic:
    /// one panic more, and [`is_ready`](crate::is_ready) turns false, so that
    /// `crashguard::http::readyz` answers 503 with the reason and Kubernetes takes the pod out of
    /// its Service. Readiness comes back once a whole window has passed without a panic (unless
    /// the process is shutting down). None by default: panics never touch readiness.
    /// `CRASHGUARD_PANIC_BUDGET=3/10s` overrides it, `=off` turns it off.
    ///
    /// A window shorter than 10 ms is taken as 10 ms.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// // More than 3 panics within 10 s: not ready, and (with the second line) restarted.
    /// let config = crashguard::Config::new()
    ///     .panic_budget(3, Duration::from_secs(10))
    ///     .exit_on_panic_budget(true);
    /// # let _ = config;
    /// ```
    pub fn panic_budget(mut self, panics: u32, per: Duration) -> Config {
        self.panic_budget = Some(PanicBudget::new(panics, per));
        self
    }

    /// Whether a spent [`panic_budget`](Config::panic_budget) also shuts the process down: a
    /// `shutdown` record with reason `panic_budget`, the shutdown signal as after SIGTERM, the
    /// hooks, then the exit record with reason `panic_budget`, exit code
    /// [`EXIT_PANIC_BUDGET`](crate::EXIT_PANIC_BUDGET) and the termination message, so that
    /// Kubernetes restarts the container. Off by default: the pod only stops taking traffic.
    /// `CRASHGUARD_PANIC_BUDGET_EXIT=1` or `=0` overrides it.
    pub fn exit_on_panic_budget(mut self, exit: bool) -> Config {
        self.exit_on_panic_budget = exit;
        self
    }

    /// How records are written: [`Format::Auto`] (the default) writes them for people where
    /// stderr is a terminal and as JSON lines elsewhere (a pipe, a file: what a pod's log
    /// collector reads). `CRASHGUARD_FORMAT=json`, `=text` or `=auto` overrides it.
    ///
    /// ```
    /// // JSON even on a terminal, for a program whose stderr a person pipes into jq.
    /// let config = crashguard::Config::new().format(crashguard::Format::Json);
    /// # let _ = config;
    /// ```
    pub fn format(mut self, format: Format) -> Config {
        self.format = format;
        self
    }
}

/// The longest grace period crashguard takes: longer ones overflow clocks on some systems, and no
/// pod waits that long.
pub const MAX_GRACE_PERIOD: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// A [`Config`] with the environment applied: what actually runs.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) grace_period: Duration,
    pub(crate) shutdown_delay: Duration,
    pub(crate) backtrace: bool,
    pub(crate) backtrace_window: Duration,
    pub(crate) backtrace_locations: usize,
    pub(crate) termination_log: Option<PathBuf>,
    pub(crate) max_record_bytes: usize,
    pub(crate) keep_previous_panic_hook: bool,
    pub(crate) exit_on_sigquit: bool,
    pub(crate) panic_budget: Option<PanicBudget>,
    pub(crate) exit_on_panic_budget: bool,
    pub(crate) format: Format,
    /// Whether text may be coloured: `NO_COLOR` is unset or empty, and `TERM` is not `dumb`.
    pub(crate) colour: bool,
    pub(crate) service: Option<Service>,
    pub(crate) watch_interval: Duration,
    pub(crate) memory_pressure_percent: u8,
    /// Where the cgroup's memory files are (`CRASHGUARD_CGROUP`), if not the process's own.
    pub(crate) cgroup: Option<PathBuf>,
}

/// `/dev/termination-log` if this container has one we may write; checked without truncating it.
fn kubernetes_termination_log() -> Option<PathBuf> {
    std::fs::OpenOptions::new()
        .append(true)
        .open(DEFAULT_TERMINATION_LOG)
        .ok()
        .map(|_| PathBuf::from(DEFAULT_TERMINATION_LOG))
}
