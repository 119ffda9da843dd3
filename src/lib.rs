//! Make a Rust service crash well.
//!
//! On Kubernetes a crashing pod is restarted so smoothly that nobody notices. crashguard makes
//! every way a process ends leave evidence a log pipeline can count: one JSON line per panic,
//! one final `exit` line with the reason and the code, and a termination message that
//! `kubectl describe pod` shows.
//!
//! ```no_run
//! use crashguard::crash_guarded;
//!
//! #[crash_guarded]
//! fn main() -> Result<(), std::num::ParseIntError> {
//!     let port: u16 = std::env::var("PORT").unwrap_or_else(|_| "8080".into()).parse()?;
//!     println!("would listen on {port}");
//!     Ok(())
//! }
//! ```
//!
//! A panic in that `main` writes, on one line of stderr:
//!
//! ```text
//! {"time":"2026-11-25T20:41:07.123456Z","severity":"ERROR","event":"panic","process.pid":7,"message":"panic in app::main at src/main.rs:5:5: boom","incident.id":"3f9a1c07-1","thread.name":"main","thread.id":7,"code.function.name":"app::main","code.file.path":"src/main.rs","code.line.number":5,"code.column.number":5,"exception.type":"panic","exception.message":"boom","exception.stacktrace":"0: app::main::{{closure}} at src/main.rs:5:5\n1: app::main at src/main.rs:3:1"}
//! {"time":"2026-11-25T20:41:07.131020Z","severity":"ERROR","event":"exit","process.pid":7,"message":"exited with 101: panic in app::main at src/main.rs:5:5: boom [incident 3f9a1c07-1]","exit.code":101,"exit.reason":"panic","incident.id":"3f9a1c07-1","process.uptime_ms":8}
//! ```
//!
//! SIGTERM and SIGINT start a graceful shutdown: [`shutdown_signal`] resolves, hooks registered
//! with [`on_shutdown`] run after `main` returns, and a deadline (the grace period) makes sure the
//! process says why it ended before the kubelet's SIGKILL.
//!
//! Everything the attribute does is also available without it: [`install`] and [`run`].

#![warn(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use crashguard_runtime::{
    catch, catch_future, health, install, is_ready, is_shutting_down, on_shutdown,
    on_shutdown_async, readiness, run, shutdown_signal, shutdown_token, CatchPanic, Config, Format,
    FromPanic, Health, IncidentId, LastPanic, MainExit, MainOutput, PanicBudget, PanicLocation,
    PanicReport, Readiness, ShutdownSignal, DEFAULT_BACKTRACE_LOCATIONS, DEFAULT_BACKTRACE_WINDOW,
    DEFAULT_GRACE_PERIOD, DEFAULT_HEALTH_WINDOW, DEFAULT_TERMINATION_LOG, EXIT_DEADLINE,
    EXIT_ERROR, EXIT_PANIC, EXIT_PANIC_BUDGET, MAX_RECORD_BYTES, MIN_RECORD_BYTES,
    NON_STRING_PAYLOAD, TERMINATION_MESSAGE_MAX_BYTES, TRUNCATION_MARKER,
};
// Thread dumps: Linux on x86_64 and aarch64. (A doc comment here would be prepended to the
// items' own docs.)
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[cfg_attr(
    docsrs,
    doc(cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))
)]
pub use crashguard_runtime::{dump_threads, ThreadDump, MAX_THREADS};
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use crashguard_runtime::{run_async, Flavor};

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use crashguard_runtime::http;

/// Guards `fn main` (sync or async) or a function that must answer even when it panics.
///
/// # On `main`
///
/// `#[crash_guarded]` installs crashguard (see [`install`]), runs the body under
/// `catch_unwind`, and ends the process with exactly one `exit` record:
///
/// | `main` … | exit code | `exit.reason` |
/// |---|---|---|
/// | returns `()` or `Ok(())` | 0 | `returned` |
/// | returns an `ExitCode` | that code | `returned` |
/// | returns `Err(e)` (`e` printed with `Debug`, on one line) | 1 | `error` |
/// | panics | 101 | `panic` |
///
/// `main` may return `()`, [`std::process::ExitCode`] or `Result<T, E>` of those with any
/// `E: Debug`. `return` and `?` in the body keep their meaning.
///
/// On an `async fn main` crashguard builds a tokio runtime itself (`flavor` and
/// `worker_threads` as `#[tokio::main]` has them), or, together with `#[tokio::main]` in either
/// order, lets tokio run it.
///
/// ```no_run
/// #[crashguard::crash_guarded(grace_period = "25s", flavor = "current_thread")]
/// async fn main() -> Result<(), std::num::ParseIntError> {
///     tokio::task::yield_now().await;
///     let workers: u32 = "4".parse()?;
///     println!("{workers} workers");
///     Ok(())
/// }
/// ```
///
/// Arguments on `main`:
///
/// | argument | meaning |
/// |---|---|
/// | `grace_period = "25s"` | shutdown deadline ([`Config::grace_period`]; `CRASHGUARD_GRACE_PERIOD` overrides it) |
/// | `backtrace = false` | no backtraces in panic records ([`Config::backtrace`]) |
/// | `flavor = "current_thread"` / `"multi_thread"` | the tokio runtime for an `async fn main` |
/// | `worker_threads = 4` | worker count of the multi-thread runtime |
/// | `crate = "path"` | where generated code finds crashguard, if it is re-exported |
///
/// # On any other function
///
/// `#[crash_guarded(fallback = path)]` runs the function and, if it panics, returns
/// `path(&PanicReport)` instead, after the panic's record was written:
///
/// ```
/// use crashguard::{crash_guarded, PanicReport};
///
/// fn no_price(report: &PanicReport) -> Option<u32> {
///     eprintln!("price lookup failed, incident {}", report.incident_id());
///     None
/// }
///
/// #[crash_guarded(fallback = no_price)]
/// fn price(item: &str) -> Option<u32> {
///     Some(item.parse::<u32>().unwrap()) // panics on bad input
/// }
///
/// assert_eq!(price("12"), Some(12));
/// assert_eq!(price("twelve"), None);
/// ```
pub use crashguard_macros::crash_guarded;

/// Every `rust` block of the README, compiled as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

// The traits generated code checks, also named here: a compiler message then names them
// `CrashguardFeatures`, `crashguard::MainReturn`, not by their path through `__private`.
#[doc(hidden)]
pub use __private::{ActixFeature, AxumFeature, CrashguardFeatures, MainReturn, TokioFeature};

/// Used by the code `#[crash_guarded]` generates. Not public API: it changes without notice.
///
/// The expansion calls trait functions through qualified paths (`<T as Trait>::f`), never
/// functions with bounds, so that a type that does not fit is reported by the trait's
/// `on_unimplemented` at the user's return type, with no "required by a bound in" pointing here.
#[doc(hidden)]
pub mod __private {
    #[cfg(feature = "test-hooks")]
    pub use crashguard_runtime::__private::{
        record_line, symbols_ready, watch_once, write_record_again,
    };
    pub use crashguard_runtime::__private::{Flavor, MainReturn};
    pub use crashguard_runtime::{catch, catch_future, Config, FromPanic};

    /// Which of crashguard's features are on: the `Self` of the checks below, which generated
    /// code calls only where it needs the feature.
    pub struct CrashguardFeatures;

    /// The runtime crashguard builds for an `async fn main`: the `tokio` feature.
    #[diagnostic::on_unimplemented(
        message = "`#[crash_guarded]` on an `async fn main` without `#[tokio::main]` needs crashguard's `tokio` feature",
        label = "crashguard would build the tokio runtime for this `main`",
        note = "enable the feature (it is on by default), or put `#[tokio::main]` on `main` as well"
    )]
    pub trait TokioFeature {
        /// `flavor = "current_thread"`.
        fn current_thread() -> Flavor;
        /// `flavor = "multi_thread"`, the default, with `worker_threads`.
        fn multi_thread(workers: Option<usize>) -> Flavor;
    }

    #[cfg(feature = "tokio")]
    impl TokioFeature for CrashguardFeatures {
        #[inline]
        fn current_thread() -> Flavor {
            Flavor::CurrentThread
        }

        #[inline]
        fn multi_thread(workers: Option<usize>) -> Flavor {
            Flavor::MultiThread(workers)
        }
    }

    /// The answer of a handler declared `-> impl IntoResponse`: the `axum` feature.
    #[diagnostic::on_unimplemented(
        message = "`#[crash_guarded(http)]` on a handler returning `impl IntoResponse` needs crashguard's `axum` feature",
        label = "crashguard answers for this handler through axum's `IntoResponse`",
        note = "enable the `axum` feature, or return a concrete type such as `http::Response<B>` or `Result<T, E>`"
    )]
    pub trait AxumFeature {
        /// The handler's own answer.
        fn completed<T>(output: T) -> Answer<T>;
        /// crashguard's 500.
        fn panicked<T>(report: &crashguard_runtime::PanicReport) -> Answer<T>;
    }

    /// One type for both answers, which is `IntoResponse`.
    #[cfg(feature = "axum")]
    pub type Answer<T> = crashguard_runtime::http::HttpAnswer<T>;

    #[cfg(feature = "axum")]
    impl AxumFeature for CrashguardFeatures {
        #[inline]
        fn completed<T>(output: T) -> Answer<T> {
            crashguard_runtime::http::HttpAnswer::Completed(output)
        }

        #[inline]
        fn panicked<T>(report: &crashguard_runtime::PanicReport) -> Answer<T> {
            FromPanic::from_panic(report)
        }
    }

    /// The answer of a handler declared `-> impl Responder`: the `actix` feature.
    #[diagnostic::on_unimplemented(
        message = "`#[crash_guarded(http)]` on a handler returning `impl Responder` needs crashguard's `actix` feature",
        label = "crashguard answers for this handler through actix-web's `Responder`",
        note = "enable the `actix` feature, or return a concrete type such as `HttpResponse` or `Result<T, E>`"
    )]
    pub trait ActixFeature {
        /// The handler's own answer.
        fn completed<T>(output: T) -> ActixAnswer<T>;
        /// crashguard's 500.
        fn panicked<T>(report: &crashguard_runtime::PanicReport) -> ActixAnswer<T>;
    }

    /// One type for both answers, which is `Responder`.
    #[cfg(feature = "actix")]
    pub type ActixAnswer<T> = crashguard_runtime::http::actix::ActixAnswer<T>;

    #[cfg(feature = "actix")]
    impl ActixFeature for CrashguardFeatures {
        #[inline]
        fn completed<T>(output: T) -> ActixAnswer<T> {
            crashguard_runtime::http::actix::ActixAnswer::Left(output)
        }

        #[inline]
        fn panicked<T>(report: &crashguard_runtime::PanicReport) -> ActixAnswer<T> {
            FromPanic::from_panic(report)
        }
    }

    /// Without the `actix` feature, the handler's own type.
    #[cfg(not(feature = "actix"))]
    pub type ActixAnswer<T> = T;

    /// Without the `axum` feature, the handler's own type: the error is then only the missing
    /// feature, not also "not `IntoResponse`".
    #[cfg(not(feature = "axum"))]
    pub type Answer<T> = T;
}
