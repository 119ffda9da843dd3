//! Guarding `main`: install, run the body under `catch_unwind`, end with one exit record.

use std::convert::Infallible;
use std::future::Future;

use crate::config::{Config, EnvProblem, Format};
use crate::exit::{exit_process, exit_returned, ExitReason, MainOutput, EXIT_PANIC};
use crate::guard::{catch, catch_future};
use crate::panic::PanicReport;
use crate::record::{self, keys, Severity};

mod start;

/// Installs crashguard for this process: the environment is read, the panic hook replaces the
/// previous one, SIGTERM and SIGINT start a graceful shutdown, and fatal signals leave a record
/// before the process dies by them (on Linux; elsewhere a `config` record says they will not).
/// This is what `#[crash_guarded]` on `main` does first, for programs that do not use the
/// attribute.
///
/// Installing is idempotent: the first call's [`Config`] stays in force and later calls do
/// nothing.
///
/// # Example
///
/// ```
/// crashguard::install(crashguard::Config::new().backtrace(false));
/// let caught = std::panic::catch_unwind(|| panic!("boom"));
/// assert!(caught.is_err()); // and stderr got one JSON record for it
/// ```
pub fn install(config: Config) {
    if let Some(problems) = crate::state::install(&config) {
        let settings = crate::state::settings();
        record::set_record_limit(settings.max_record_bytes);
        record::prepare_stderr();
        record::set_shown(shown(settings));
        record::forget_writers_after_fork();
        crate::panic::install_hook(settings.backtrace, settings.keep_previous_panic_hook);
        crate::exit::at_exit::register();
        // The start record comes first, once the modules (and so the build id) are read.
        let fatal = fatal_handling();
        start::write();
        for problem in &problems {
            report_env_problem(problem);
        }
        if let Err(message) = fatal {
            record::config_warning(&message, Some("fatal_signals"));
        }
    }
    crate::health::configure(crate::state::settings().panic_budget);
    if crate::state::settings().exit_on_panic_budget {
        crate::health::when_budget_spent(crate::shutdown::panic_budget_spent);
    }
    crate::shutdown::ensure_signals();
    crate::watch::start();
    #[cfg(fatal_signals)]
    {
        crate::dumps::handle_sigquit(crate::state::settings().exit_on_sigquit);
        crate::shutdown::before_deadline_exit(crate::dumps::dump_for_deadline);
    }
}

/// How records are shown, for the format in force and what stderr is.
fn shown(settings: &crate::config::Settings) -> record::Shown {
    use std::io::IsTerminal as _;
    let terminal = std::io::stderr().is_terminal();
    match settings.format {
        Format::Json => record::Shown::Json,
        Format::Auto if !terminal => record::Shown::Json,
        Format::Auto | Format::Text => record::Shown::Text {
            colour: terminal && settings.colour,
        },
    }
}

fn report_env_problem(problem: &EnvProblem) {
    let EnvProblem {
        variable,
        value,
        message,
    } = problem;
    record::emit(
        "config",
        Severity::Warning,
        record::Wait::Patiently,
        |record| {
            record.str_max(keys::MESSAGE, message, 2048);
            record.str(keys::CONFIG_VARIABLE, variable);
            record.str_max(keys::CONFIG_VALUE, value, 1024);
        },
    );
}

/// Installs the fatal-signal handlers; why there are none, if there are none.
fn fatal_handling() -> Result<(), String> {
    #[cfg(fatal_signals)]
    return crate::fatal::install()
        .map_err(|error| format!("fatal signals will leave no record: {error}"));
    #[cfg(not(fatal_signals))]
    Err(format!(
        "fatal signals will leave no record: crashguard handles them on Linux (x86_64, aarch64) \
         only, not on {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    ))
}

/// Runs `body` as a guarded `main`: installs crashguard with `config`, runs the body, and ends
/// the process with exactly one `exit` record: code 0 (or the returned [`ExitCode`]) when it
/// returns, 1 when it returns `Err`, 101 when it panics. This is what `#[crash_guarded]` on a
/// sync `main` expands to.
///
/// [`ExitCode`]: std::process::ExitCode
///
/// # Example
///
/// ```no_run
/// // In `fn main`:
/// crashguard::run(crashguard::Config::new(), || -> Result<(), String> {
///     let port: u16 = "8080".parse().map_err(|e| format!("bad port: {e}"))?;
///     println!("listening on {port}");
///     Ok(())
/// })
/// ```
pub fn run<T: MainOutput>(config: Config, body: impl FnOnce() -> T) -> ! {
    run_named(config, "main", body)
}

/// [`run`], naming the guarded function in panic records.
#[doc(hidden)]
pub fn run_named<T: MainOutput>(
    config: Config,
    function: &'static str,
    body: impl FnOnce() -> T,
) -> ! {
    install(config);
    crate::shutdown::main_started();
    let result = catch(function, body);
    crate::shutdown::after_main_blocking();
    finish(result)
}

/// Guards the body of an `async fn main` that another attribute (`#[tokio::main]`) runs: the
/// returned future never completes, it ends the process instead.
#[doc(hidden)]
pub async fn run_future_named<T: MainOutput>(
    config: Config,
    function: &'static str,
    body: impl Future<Output = T>,
) -> Infallible {
    install(config);
    crate::shutdown::main_started();
    let result = catch_future(function, body).await;
    crate::shutdown::after_main().await;
    finish(result)
}

/// Which tokio runtime crashguard builds for an `async fn main` it runs itself.
#[cfg(feature = "tokio")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// One thread, as `#[tokio::main(flavor = "current_thread")]`.
    CurrentThread,
    /// A worker pool, as `#[tokio::main]`; `None` means one worker per core.
    MultiThread(Option<usize>),
}

/// Runs `body` as a guarded `async fn main` on a tokio runtime of the given flavor; otherwise as
/// [`run`].
///
/// # Example
///
/// ```no_run
/// use crashguard::{run_async, Config, Flavor};
///
/// // In `fn main`:
/// run_async(Config::new(), Flavor::CurrentThread, async {
///     tokio::task::yield_now().await;
/// })
/// ```
#[cfg(feature = "tokio")]
pub fn run_async<T: MainOutput>(
    config: Config,
    flavor: Flavor,
    body: impl Future<Output = T>,
) -> ! {
    run_async_named(config, "main", flavor, body)
}

/// [`run_async`], naming the guarded function in panic records.
#[cfg(feature = "tokio")]
#[doc(hidden)]
pub fn run_async_named<T: MainOutput>(
    config: Config,
    function: &'static str,
    flavor: Flavor,
    body: impl Future<Output = T>,
) -> ! {
    install(config);
    let mut builder = match flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Flavor::MultiThread(workers) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(workers) = workers {
                builder.worker_threads(workers);
            }
            builder
        }
    };
    match builder.enable_all().build() {
        Ok(runtime) => {
            crate::shutdown::main_started();
            finish(runtime.block_on(async {
                let result = catch_future(function, body).await;
                crate::shutdown::after_main().await;
                result
            }))
        }
        Err(error) => {
            let error = format!("could not start the tokio runtime: {error}");
            let error = crate::exit::MainError::new(error);
            exit_process(crate::exit::EXIT_ERROR, ExitReason::Error(&error))
        }
    }
}

/// Without the `tokio` feature no runtime can be asked for: generated code that asks fails on
/// the missing feature (the facade's check), and this type has no values.
#[cfg(not(feature = "tokio"))]
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {}

/// What `main` returns, as `#[crash_guarded]` runs it: every [`MainOutput`]. Generated code calls
/// these through `<Returned as MainReturn>::…`, so that a type `main` cannot return is reported
/// at that type, in this trait's words, and not as a bound of a function of crashguard's. (In
/// this crate, so that its frames are crashguard's in a backtrace.)
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`#[crash_guarded]` on `main` cannot return `{Self}`",
    label = "`main` returns this type",
    note = "return `()`, `std::process::ExitCode`, or `Result<T, E>` with such a `T` and any `E: Debug` (`anyhow::Error`, `Box<dyn Error>`, …)",
    note = "for another exit code, return an `ExitCode`: `ExitCode::from(3)`"
)]
pub trait MainReturn: Sized {
    /// A sync `main`: [`run_named`].
    fn run(config: Config, function: &'static str, body: impl FnOnce() -> Self) -> !;

    /// An `async fn main` that another attribute (`#[tokio::main]`) runs: [`run_future_named`].
    fn run_future(
        config: Config,
        function: &'static str,
        body: impl Future<Output = Self>,
    ) -> impl Future<Output = Infallible>;

    /// An `async fn main` on the runtime crashguard builds: `run_async_named`.
    fn run_async(
        config: Config,
        function: &'static str,
        flavor: Flavor,
        body: impl Future<Output = Self>,
    ) -> !;
}

// Not recommended: the error then names what `main` returns, not the bound it fails.
#[diagnostic::do_not_recommend]
impl<T: MainOutput> MainReturn for T {
    #[inline]
    fn run(config: Config, function: &'static str, body: impl FnOnce() -> T) -> ! {
        run_named(config, function, body)
    }

    #[inline]
    fn run_future(
        config: Config,
        function: &'static str,
        body: impl Future<Output = T>,
    ) -> impl Future<Output = Infallible> {
        run_future_named(config, function, body)
    }

    #[inline]
    fn run_async(
        config: Config,
        function: &'static str,
        flavor: Flavor,
        body: impl Future<Output = T>,
    ) -> ! {
        #[cfg(feature = "tokio")]
        {
            run_async_named(config, function, flavor, body)
        }
        #[cfg(not(feature = "tokio"))]
        {
            let _ = (config, function, body);
            match flavor {}
        }
    }
}

fn finish<T: MainOutput>(result: Result<T, PanicReport>) -> ! {
    // Formatting the error (its Debug) and dropping main's value are user code too.
    match result.and_then(|output| catch("main", || output.into_exit())) {
        Ok(exit) => exit_returned(exit, crate::shutdown::shutdown_cause()),
        Err(report) => exit_process(EXIT_PANIC, ExitReason::Panic(&report)),
    }
}
