//! Graceful shutdown: SIGTERM and SIGINT start it, a deadline ends it.
//!
//! Kubernetes sends SIGTERM to the container's PID 1, waits `terminationGracePeriodSeconds`
//! (30 s by default, counted from the start of the preStop hook), then sends SIGKILL. In that
//! time a service must stop taking work, finish what is in flight, close its connections and
//! exit. crashguard's part:
//!
//! 1. The first SIGTERM or SIGINT writes a `shutdown` record (SIGINT is marked `interactive`: a
//!    person pressed Ctrl-C, this is not a production stop) and [`is_shutting_down`] turns true,
//!    so a readiness probe fails and the endpoint is taken out of the load balancer.
//! 2. After [`Config::shutdown_delay`](crate::Config::shutdown_delay) (0 by default), every
//!    [`shutdown_signal`] future resolves and every [`shutdown_token`] is cancelled: the server
//!    stops accepting and drains.
//! 3. When `main` returns, the hooks registered with [`on_shutdown`] and [`on_shutdown_async`] run,
//!    last registered first, each with a `shutdown_hook` record; then the `exit` record.
//! 4. If all that is not done at the deadline (the grace period less a margin of a tenth, at most
//!    500 ms, kept for the exit itself), crashguard writes the `exit` record with reason
//!    `deadline` and what was still running, writes the termination message, and exits with
//!    [`EXIT_DEADLINE`], before the kubelet's SIGKILL would leave nothing.
//! 5. A second SIGTERM or SIGINT during shutdown exits at once with 128 + the signal's number.
//!
//! Signals are received by [`signal-hook`](https://docs.rs/signal-hook) on a thread of
//! crashguard's, so handlers installed before keep running (signal-hook chains to them).
//!
//! # Example
//!
//! ```no_run
//! # async fn serve() {
//! let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await.unwrap();
//! crashguard::on_shutdown("flush-metrics", || println!("flushed"));
//! axum::serve(listener, app)
//!     .with_graceful_shutdown(crashguard::shutdown_signal())
//!     .await
//!     .unwrap();
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::config::PanicBudget;
use crate::exit::{exit_process, ExitReason, ShutdownCause, EXIT_DEADLINE};
use crate::guard::catch_future;
use crate::os::signal_name;
use crate::record::keys;
use crate::record::{self, Severity};

mod readiness;

pub use readiness::{is_ready, readiness, Readiness};

/// Resolves once shutdown starts: after the first SIGTERM or SIGINT (and the configured delay),
/// at once if that already happened. Any number of them can wait; it is `Send + 'static`, so it
/// fits axum's `with_graceful_shutdown` and `tokio::select!` alike.
///
/// Calling it makes sure the signals are handled, even without [`install`](crate::install).
pub fn shutdown_signal() -> ShutdownSignal {
    ensure_signals();
    ShutdownSignal {
        cancelled: state().token.clone().cancelled_owned(),
    }
}

pin_project_lite::pin_project! {
    /// The future of [`shutdown_signal`].
    #[must_use = "futures do nothing unless awaited"]
    pub struct ShutdownSignal {
        #[pin]
        cancelled: WaitForCancellationFutureOwned,
    }
}

impl Future for ShutdownSignal {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.project().cancelled.poll(cx)
    }
}

/// A token cancelled when shutdown starts, for tasks that should stop then. Cancelling it
/// yourself stops only its own children, not the process's shutdown.
pub fn shutdown_token() -> CancellationToken {
    ensure_signals();
    state().token.child_token()
}

/// Whether shutdown has started (a signal arrived, the panic budget asked for it, or `main`
/// returned). Readiness checks should fail from then on.
pub fn is_shutting_down() -> bool {
    let state = state();
    state.started.load(Ordering::SeqCst) || state.signals.load(Ordering::SeqCst) > 0
}

/// Registers a hook to run after `main` returns (close pools, flush buffers). Hooks run last
/// registered first, each bounded by what is left of the deadline, each leaving a
/// `shutdown_hook` record with its name, duration and outcome (`ok`, `panicked`, or `timed_out`
/// when the deadline cut it off).
pub fn on_shutdown(name: impl Into<String>, hook: impl FnOnce() + Send + 'static) {
    register(name.into(), Hook::Sync(Box::new(hook)));
}

/// Registers an async hook; see [`on_shutdown`]. It runs on the runtime that ran `main` (or, for
/// a sync `main`, on a current-thread runtime crashguard starts for the hooks).
pub fn on_shutdown_async<F>(name: impl Into<String>, hook: impl FnOnce() -> F + Send + 'static)
where
    F: Future<Output = ()> + Send + 'static,
{
    register(
        name.into(),
        Hook::Async(Box::new(move || Box::pin(hook()) as BoxFuture)),
    );
}

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

enum Hook {
    Sync(Box<dyn FnOnce() + Send>),
    Async(Box<dyn FnOnce() -> BoxFuture + Send>),
}

struct State {
    token: CancellationToken,
    /// Shutdown has begun: readiness is false, the deadline is armed.
    started: AtomicBool,
    /// SIGTERM/SIGINT seen so far.
    signals: AtomicUsize,
    /// What the deadline would cut off: `main`, or the hook that is running.
    pending: Mutex<Vec<Pending>>,
    hooks: Mutex<Vec<(String, Hook)>>,
    /// What started the shutdown, and when: the first of a signal and the panic budget.
    cause: Mutex<Option<(ShutdownCause, Instant)>>,
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| State {
        token: CancellationToken::new(),
        started: AtomicBool::new(false),
        signals: AtomicUsize::new(0),
        pending: Mutex::new(Vec::new()),
        hooks: Mutex::new(Vec::new()),
        cause: Mutex::new(None),
    })
}

fn register(name: String, hook: Hook) {
    lock(&state().hooks).push((name, hook));
}

/// A poisoned lock here only means a hook panicked while holding nothing of ours; go on.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts the signal thread once.
pub(crate) fn ensure_signals() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let signals = signal_hook::iterator::Signals::new([libc::SIGTERM, libc::SIGINT]);
        match signals {
            Ok(mut signals) => {
                let spawned = std::thread::Builder::new()
                    .name("crashguard-signals".into())
                    .spawn(move || {
                        for signal in signals.forever() {
                            on_signal(signal);
                        }
                    });
                if let Err(error) = spawned {
                    report_setup_failure(&format!("could not start the signal thread: {error}"));
                }
            }
            Err(error) => {
                report_setup_failure(&format!("could not handle SIGTERM and SIGINT: {error}"))
            }
        }
    });
}

fn report_setup_failure(problem: &str) {
    record::config_warning(problem, None);
}

fn on_signal(signal: i32) {
    let state = state();
    if state.signals.fetch_add(1, Ordering::SeqCst) > 0 {
        exit_process(128 + signal, ExitReason::SecondSignal(signal));
    }
    start_stopping(ShutdownCause::Signal(signal));
}

/// A panic spent the budget and the configuration asks for a shutdown: as after SIGTERM, with
/// the budget as the cause.
pub(crate) fn panic_budget_spent(panics: u64, budget: PanicBudget) {
    start_stopping(ShutdownCause::PanicBudget { panics, budget });
}

/// The first signal, or the panic budget: the `shutdown` record, then the graceful shutdown.
fn start_stopping(cause: ShutdownCause) {
    let state = state();
    // Readiness is off (for a signal, `signals` counts it) and the deadline counts from now,
    // whatever the record below waits for a stalled log reader; the shutdown signal follows the
    // record, so that the record comes before anything the application does on it.
    let since = Instant::now();
    {
        // One shutdown, one record: a signal during a shutdown the budget started (or the
        // reverse) changes nothing.
        let mut first = lock(&state.cause);
        if first.is_some() {
            return;
        }
        *first = Some((cause, since));
    }
    let settings = crate::state::settings();
    let grace_period = settings.grace_period;
    crate::counters::shutdown(match cause {
        ShutdownCause::Signal(signal) => signal_name(signal),
        ShutdownCause::PanicBudget { .. } => "panic_budget",
    });
    record::emit(
        "shutdown",
        Severity::Notice,
        record::Wait::Patiently,
        |record| {
            match cause {
                ShutdownCause::Signal(signal) => {
                    let interactive = signal == libc::SIGINT;
                    record.display(
                        keys::MESSAGE,
                        format_args!(
                            "{} received{}: shutting down within {} ms",
                            signal_name(signal),
                            if interactive {
                                " (interactive, not a production stop)"
                            } else {
                                ""
                            },
                            grace_period.as_millis()
                        ),
                        usize::MAX,
                    );
                    record.str(keys::SIGNAL_NAME, signal_name(signal));
                    record.i64(keys::SIGNAL_NUMBER, i64::from(signal));
                    record.bool(keys::SHUTDOWN_INTERACTIVE, interactive);
                }
                ShutdownCause::PanicBudget { panics, budget } => {
                    record.display(
                        keys::MESSAGE,
                        format_args!(
                            "{panics} panics spent the panic budget of {budget}: shutting down \
                             within {} ms",
                            grace_period.as_millis()
                        ),
                        usize::MAX,
                    );
                    record.str(keys::SHUTDOWN_REASON, "panic_budget");
                    record.u64(keys::HEALTH_PANICS_IN_WINDOW, panics);
                    record.display(keys::HEALTH_PANIC_BUDGET, budget, usize::MAX);
                }
            }
            record.millis(keys::SHUTDOWN_GRACE_PERIOD_MS, grace_period);
            record.millis(keys::SHUTDOWN_DELAY_MS, settings.shutdown_delay);
        },
    );
    begin(since, settings.shutdown_delay, Deadline::Armed);
}

/// Whether a shutdown's deadline is armed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Deadline {
    Armed,
    /// Nothing is left to bound: `main` returned and no hook is registered.
    None,
}

/// Begins shutdown once: readiness off, then after `delay` (never past the deadline) the
/// shutdown signal, and the deadline, counted from `since`.
fn begin(since: Instant, delay: Duration, deadline: Deadline) {
    let state = state();
    if state.started.swap(true, Ordering::SeqCst) {
        return;
    }
    if deadline == Deadline::None && delay.is_zero() {
        state.token.cancel();
        return;
    }
    let grace_period = crate::state::settings().grace_period;
    let deadline_at = since
        .checked_add(grace_period.saturating_sub(exit_margin(grace_period)))
        .unwrap_or(since);
    let signal_at = since
        .checked_add(delay)
        .unwrap_or(deadline_at)
        .min(deadline_at);
    let armed = std::thread::Builder::new()
        .name("crashguard-deadline".into())
        .spawn(move || {
            sleep_until(signal_at);
            state.token.cancel();
            if deadline == Deadline::Armed {
                sleep_until(deadline_at);
                deadline_passed(grace_period);
            }
        });
    if armed.is_err() {
        // Without a deadline thread the signal still has to reach the application.
        state.token.cancel();
    }
}

/// Time kept between crashguard's own deadline and the kubelet's SIGKILL for writing the exit
/// record and the termination message: a tenth of the grace period, at most 500 ms.
fn exit_margin(grace_period: Duration) -> Duration {
    (grace_period / 10).min(Duration::from_millis(500))
}

fn sleep_until(when: Instant) {
    let now = Instant::now();
    if when > now {
        std::thread::sleep(when - now);
    }
}

/// Something still running when the deadline passes.
#[derive(Clone, PartialEq, Eq)]
enum Pending {
    Main,
    Hook(String),
}

impl std::fmt::Display for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pending::Main => f.write_str("main"),
            Pending::Hook(name) => write!(f, "shutdown hook {name:?}"),
        }
    }
}

/// What runs when the deadline passes, before its exit record: the thread dump, which a layer
/// above this one provides.
static BEFORE_DEADLINE_EXIT: OnceLock<fn()> = OnceLock::new();

/// Sets what runs when the deadline passes, before its exit record.
#[cfg_attr(not(fatal_signals), allow(dead_code))]
pub(crate) fn before_deadline_exit(run: fn()) {
    let _ = BEFORE_DEADLINE_EXIT.set(run);
}

fn deadline_passed(grace_period: Duration) -> ! {
    // Claim the exit first, so that a hook finishing at this very moment cannot write `ok`
    // after our `timed_out`, nor an exit record of its own.
    if !crate::exit::claim_exit_record() {
        crate::exit::wait_for_the_other_exit(EXIT_DEADLINE);
    }
    let pending = lock(&state().pending).clone();
    for pending in &pending {
        if let Pending::Hook(name) = pending {
            hook_record(name, "timed_out", None);
        }
    }
    // Where the drain hung: the threads still running, before the exit record.
    if let Some(run) = BEFORE_DEADLINE_EXIT.get() {
        run();
    }
    let pending = if pending.is_empty() {
        "nothing (exiting)".to_owned()
    } else {
        let names: Vec<String> = pending.iter().map(ToString::to_string).collect();
        names.join(", ")
    };
    crate::exit::exit_claimed(
        EXIT_DEADLINE,
        ExitReason::Deadline {
            grace_period,
            pending: &pending,
        },
    )
}

/// `main` is running: what the deadline would name.
pub(crate) fn main_started() {
    lock(&state().pending).push(Pending::Main);
}

/// What started the shutdown, and when, if a signal or the panic budget did.
pub(crate) fn shutdown_cause() -> Option<(ShutdownCause, Instant)> {
    *lock(&state().cause)
}

/// `main` returned (or panicked): begin shutdown if no signal did, then run the hooks.
pub(crate) async fn after_main() {
    let state = state();
    lock(&state.pending).retain(|p| *p != Pending::Main);
    let hooks = std::mem::take(&mut *lock(&state.hooks));
    // A deadline bounds what is left to run: the hooks. With none, `main`'s own exit follows at
    // once, and a deadline could only race it.
    let deadline = if hooks.is_empty() {
        Deadline::None
    } else {
        Deadline::Armed
    };
    begin(Instant::now(), Duration::ZERO, deadline);
    for (name, hook) in hooks.into_iter().rev() {
        let pending = Pending::Hook(name.clone());
        lock(&state.pending).push(pending.clone());
        let started = Instant::now();
        let outcome = match hook {
            Hook::Async(hook) => catch_future("shutdown hook", hook()).await.is_ok(),
            Hook::Sync(hook) => run_sync_hook(hook).await,
        };
        lock(&state.pending).retain(|p| *p != pending);
        let outcome = if outcome { "ok" } else { "panicked" };
        hook_record(&name, outcome, Some(started.elapsed()));
    }
}

/// For a sync `main` (and for `#[tokio::main]` above `#[crash_guarded]`, whose runtime is gone by
/// then): runs [`after_main`] on a current-thread runtime of its own.
pub(crate) fn after_main_blocking() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(after_main()),
        Err(error) => report_setup_failure(&format!(
            "could not start a runtime for the shutdown hooks: {error}"
        )),
    }
}

/// Runs a sync hook on a thread of its own, so that a hook that blocks forever cannot keep the
/// deadline from ending the process.
async fn run_sync_hook(hook: Box<dyn FnOnce() + Send>) -> bool {
    let (done, finished) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("crashguard-shutdown-hook".into())
        .spawn(move || {
            let outcome = crate::guard::catch("shutdown hook", hook).is_ok();
            let _ = done.send(outcome);
        });
    match spawned {
        Ok(_) => finished.await.unwrap_or(false),
        Err(_) => false,
    }
}

fn hook_record(name: &str, outcome: &'static str, took: Option<Duration>) {
    crate::counters::shutdown_hook(name, outcome);
    let severity = if outcome == "ok" {
        Severity::Info
    } else {
        Severity::Error
    };
    record::emit(
        "shutdown_hook",
        severity,
        record::Wait::Patiently,
        |record| {
            match took {
                Some(took) => record.display(
                    keys::MESSAGE,
                    format_args!(
                        "shutdown hook {name:?} {outcome} after {} ms",
                        took.as_millis()
                    ),
                    2048,
                ),
                None => record.display(
                    keys::MESSAGE,
                    format_args!("shutdown hook {name:?} {outcome}: the deadline passed"),
                    2048,
                ),
            }
            record.str(keys::HOOK_NAME, name);
            record.str(keys::HOOK_OUTCOME, outcome);
            if let Some(took) = took {
                record.millis(keys::HOOK_DURATION_MS, took);
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_margin_is_a_tenth_of_the_grace_period_at_most_half_a_second() {
        assert_eq!(
            exit_margin(Duration::from_secs(30)),
            Duration::from_millis(500)
        );
        assert_eq!(
            exit_margin(Duration::from_secs(2)),
            Duration::from_millis(200)
        );
        assert_eq!(exit_margin(Duration::ZERO), Duration::ZERO);
    }
}
