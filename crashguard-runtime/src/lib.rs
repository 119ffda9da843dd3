//! The runtime behind [crashguard](https://docs.rs/crashguard): everything that runs when a
//! `#[crash_guarded]` program panics, returns, is stopped or dies. Depend on `crashguard`, which
//! re-exports what is public here; the attribute expands to calls into it.
//!
//! The modules are layers, each using only those listed before it (ARCHITECTURE.md has the
//! rules, and `tests/architecture.rs` checks them):
//!
//! | layer | modules |
//! |---|---|
//! | state | `os`, `config`, `state`, `counters`, `health`, `memory` |
//! | record | `record` |
//! | context | `context` |
//! | backtrace, unwind | `backtrace`, `unwind` |
//! | panic, guard | `panic`, `guard` |
//! | exit, shutdown | `exit`, `shutdown`, `watch` |
//! | fatal, dumps | `fatal`, `dumps` |
//! | entry | `entry` |
//! | integrations | `http` |

#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod os;

mod config;
mod state;

mod counters;
mod health;

mod memory;

mod record;

mod context;

mod backtrace;
#[cfg(fatal_signals)]
mod unwind;

mod guard;
mod panic;

mod exit;
mod shutdown;
mod watch;

#[cfg(fatal_signals)]
mod fatal;

#[cfg(fatal_signals)]
mod dumps;

mod entry;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;

pub use config::{
    Config, Format, PanicBudget, DEFAULT_BACKTRACE_LOCATIONS, DEFAULT_BACKTRACE_WINDOW,
    DEFAULT_GRACE_PERIOD, DEFAULT_TERMINATION_LOG, MAX_RECORD_BYTES, MIN_RECORD_BYTES,
};
#[cfg(fatal_signals)]
#[cfg_attr(
    docsrs,
    doc(cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))
)]
pub use dumps::{dump_threads, ThreadDump, MAX_THREADS};
pub use entry::{install, run};
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use entry::{run_async, Flavor};
pub use exit::{
    MainExit, MainOutput, EXIT_DEADLINE, EXIT_ERROR, EXIT_PANIC, EXIT_PANIC_BUDGET,
    TERMINATION_MESSAGE_MAX_BYTES,
};
pub use guard::{catch, catch_future, CatchPanic, FromPanic};
pub use health::{health, Health, LastPanic, DEFAULT_HEALTH_WINDOW};
pub use panic::{PanicLocation, PanicReport, NON_STRING_PAYLOAD};
pub use record::TRUNCATION_MARKER;
pub use shutdown::{
    is_ready, is_shutting_down, on_shutdown, on_shutdown_async, readiness, shutdown_signal,
    shutdown_token, Readiness, ShutdownSignal,
};
pub use state::IncidentId;

/// What the attribute's expansion calls, and hooks crashguard's own tests and benchmarks use. Not
/// public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    #[cfg(feature = "tokio")]
    pub use crate::entry::run_async_named;
    pub use crate::entry::{run_future_named, run_named, Flavor, MainReturn};

    /// Whether fatal-signal records can name the executable's functions yet: its symbol table
    /// is read on a background thread after install. Always false where fatal signals are not
    /// handled.
    #[cfg(feature = "test-hooks")]
    pub fn symbols_ready() -> bool {
        #[cfg(fatal_signals)]
        return crate::unwind::symbols::ready();
        #[cfg(not(fatal_signals))]
        return false;
    }

    #[cfg(feature = "test-hooks")]
    pub use crate::panic::write_record_again;

    /// One look of the watcher: memory read, termination message written in advance.
    #[cfg(feature = "test-hooks")]
    pub fn watch_once() {
        crate::watch::look_once();
    }

    /// One record with `value` in the fields `text` and `display` (when it is UTF-8) and
    /// `bytes`, cut to `limit`: the line, for the fuzz target.
    #[cfg(feature = "test-hooks")]
    pub fn record_line(value: &[u8], limit: usize) -> Vec<u8> {
        crate::record::line_for_fuzzing(value, limit)
    }
}
