//! The runtime behind [crashguard](https://docs.rs/crashguard): everything that runs when a
//! `#[crash_guarded]` program panics, returns or exits. Depend on `crashguard`, which re-exports
//! this crate; the attribute expands to calls into it.
//!
//! One concern per module:
//!
//! - [`record`]: the one-line JSON record and its writer,
//! - [`panic`](mod@panic): the panic hook, incident ids and [`PanicReport`],
//! - [`exit`]: exit records, exit codes and the termination message,
//! - [`config`]: [`Config`] and its environment overrides,
//! - [`shutdown`]: SIGTERM and SIGINT, the shutdown signal, hooks and the deadline,
//! - `fatal` (Linux on x86_64 and aarch64, glibc or musl): SIGSEGV, SIGBUS, SIGILL, SIGFPE,
//!   SIGABRT and stack overflow,
//! - [`guard`]: catching panics in functions and futures, and [`FromPanic`] for what they return,
//! - `http` (feature `http`): the 500 that answers a panic, the tower layer (feature `tower`)
//!   and axum glue (feature `axum`).

#![warn(missing_docs)]

mod backtrace;
pub mod config;
mod entry;
pub mod exit;
mod fallback;
#[cfg(fatal_signals)]
pub mod fatal;
pub mod guard;
#[cfg(feature = "http")]
pub mod http;
pub mod panic;
pub mod record;
pub mod shutdown;
mod signal;
#[cfg(fatal_signals)]
mod unwind;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use config::Config;
pub use entry::{run, run_future_named, run_named};
#[cfg(feature = "tokio")]
pub use entry::{run_async, run_async_named, Flavor};
pub use exit::{MainExit, MainOutput};
pub use fallback::FromPanic;
pub use panic::{IncidentId, PanicLocation, PanicReport};
pub use shutdown::{
    is_shutting_down, on_shutdown, on_shutdown_async, shutdown_signal, shutdown_token,
    ShutdownSignal,
};

use config::Settings;

struct Installed {
    settings: Settings,
    since: Instant,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Installs crashguard for this process: the environment is read, the panic hook replaces the
/// previous one (see [`panic`](mod@panic)), and SIGTERM and SIGINT start a graceful shutdown (see
/// [`shutdown`]), and fatal signals leave a record before the process dies by them (see
/// `fatal`, on Linux with glibc). This is what `#[crash_guarded]` on `main` does first, for
/// programs that do not use the attribute.
///
/// Installing is idempotent: the first call's [`Config`] stays in force and later calls do
/// nothing.
///
/// # Example
///
/// ```
/// crashguard_runtime::install(crashguard_runtime::Config::new().backtrace(false));
/// let caught = std::panic::catch_unwind(|| panic!("boom"));
/// assert!(caught.is_err()); // and stderr got one JSON record for it
/// ```
pub fn install(config: Config) {
    INSTALLED.get_or_init(|| {
        let settings = config.resolve();
        record::set_record_limit(settings.max_record_bytes);
        record::forget_ids_after_fork();
        panic::install_hook(settings.backtrace, settings.keep_previous_panic_hook);
        Installed {
            settings,
            since: Instant::now(),
        }
    });
    shutdown::ensure_signals();
    install_fatal_handling();
}

/// Whether fatal-signal records can name the executable's functions yet: its symbol table is
/// read on a background thread after install. Always false where fatal signals are not handled.
#[doc(hidden)]
pub fn symbols_ready() -> bool {
    #[cfg(fatal_signals)]
    return unwind::symbols::ready();
    #[cfg(not(fatal_signals))]
    return false;
}

/// Installs the fatal-signal handlers, or says once, in a `config` record, why there are none.
fn install_fatal_handling() {
    static REPORTED: std::sync::Once = std::sync::Once::new();
    #[cfg(fatal_signals)]
    let outcome = fatal::install(settings().termination_log.as_deref())
        .map_err(|error| format!("fatal signals will leave no record: {error}"));
    #[cfg(not(fatal_signals))]
    let outcome: Result<(), String> = Err(format!(
        "fatal signals will leave no record: crashguard handles them on Linux (x86_64, aarch64) \
         only, not on {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    ));
    if let Err(message) = outcome {
        REPORTED.call_once(|| {
            record::emit(
                "config",
                record::Severity::Warning,
                record::Wait::Patiently,
                |record| {
                    record.str("message", &message);
                    record.str("config.feature", "fatal_signals");
                },
            )
        });
    }
}

/// The settings in force: those installed, or the defaults with the environment applied.
pub(crate) fn settings() -> &'static Settings {
    static UNINSTALLED: OnceLock<Settings> = OnceLock::new();
    match INSTALLED.get() {
        Some(installed) => &installed.settings,
        None => UNINSTALLED.get_or_init(|| Config::new().resolve()),
    }
}

/// Time since [`install`].
pub(crate) fn uptime() -> Duration {
    INSTALLED
        .get()
        .map_or(Duration::ZERO, |installed| installed.since.elapsed())
}
