//! Counters for a dashboard (feature `metrics`): panics, shutdowns and shutdown hooks handed to
//! the [`metrics`](https://docs.rs/metrics) facade, for whichever exporter the application
//! installed. Without the feature these functions are empty and the facade is not linked; with
//! it and no recorder, each call reaches the facade's no-op recorder.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `crashguard_panics_total` | counter | `function`: the `#[crash_guarded]` function; `route`: the route template (axum's `MatchedPath`) where known. Never the raw path: the label set stays bounded |
//! | `crashguard_last_panic_timestamp_seconds` | gauge | (none): Unix time of the latest panic |
//! | `crashguard_shutdowns_total` | counter | `signal`: `SIGTERM`, `SIGINT`, or `panic_budget` when crashguard started the shutdown itself |
//! | `crashguard_shutdown_hooks_total` | counter | `hook`: the name given to `on_shutdown`; `outcome`: `ok`, `panicked` or `timed_out` |

use std::time::SystemTime;

#[cfg(feature = "metrics")]
const PANICS: &str = "crashguard_panics_total";
#[cfg(feature = "metrics")]
const LAST_PANIC: &str = "crashguard_last_panic_timestamp_seconds";
#[cfg(feature = "metrics")]
const SHUTDOWNS: &str = "crashguard_shutdowns_total";
#[cfg(feature = "metrics")]
const SHUTDOWN_HOOKS: &str = "crashguard_shutdown_hooks_total";

/// One panic: in `function` (the guarded one), while serving `route` (a template), at `at`.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn panic(function: Option<&'static str>, route: Option<&str>, at: SystemTime) {
    #[cfg(feature = "metrics")]
    {
        describe_once();
        let route = route.unwrap_or_default().to_owned();
        metrics::counter!(PANICS, "function" => function.unwrap_or_default(), "route" => route)
            .increment(1);
        let since_epoch = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        metrics::gauge!(LAST_PANIC).set(since_epoch.as_secs_f64());
    }
}

/// A graceful shutdown began, because of `signal` (a signal's name, or `panic_budget`).
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn shutdown(signal: &'static str) {
    #[cfg(feature = "metrics")]
    {
        describe_once();
        metrics::counter!(SHUTDOWNS, "signal" => signal).increment(1);
    }
}

/// A shutdown hook ended with `outcome`.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn shutdown_hook(hook: &str, outcome: &'static str) {
    #[cfg(feature = "metrics")]
    {
        describe_once();
        metrics::counter!(SHUTDOWN_HOOKS, "hook" => hook.to_owned(), "outcome" => outcome)
            .increment(1);
    }
}

/// Describes the metrics to the recorder in force at the first event: a recorder installed by
/// `main`'s body is in place by then, where one described at install would not be yet.
#[cfg(feature = "metrics")]
fn describe_once() {
    static DESCRIBED: std::sync::Once = std::sync::Once::new();
    DESCRIBED.call_once(|| {
        use metrics::Unit;
        metrics::describe_counter!(
            PANICS,
            Unit::Count,
            "Panics, by guarded function and route template."
        );
        metrics::describe_gauge!(LAST_PANIC, Unit::Seconds, "Unix time of the latest panic.");
        metrics::describe_counter!(
            SHUTDOWNS,
            Unit::Count,
            "Graceful shutdowns begun, by the signal (or panic_budget) that began them."
        );
        metrics::describe_counter!(
            SHUTDOWN_HOOKS,
            Unit::Count,
            "Shutdown hooks run, by hook and outcome (ok, panicked, timed_out)."
        );
    });
}
