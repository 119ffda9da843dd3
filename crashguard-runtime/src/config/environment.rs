//! The environment over the code: `Config::resolve` reads every `CRASHGUARD_*` variable, and
//! the rules between settings, returning what it could not use instead of reporting it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::{
    kubernetes_termination_log, Config, Format, PanicBudget, Service, Settings, TerminationLog,
    MAX_GRACE_PERIOD,
};

impl Config {
    /// Applies the environment over the code's values; says which values it could not read.
    pub(crate) fn resolve(&self) -> (Settings, Vec<EnvProblem>) {
        let mut settings = Settings {
            grace_period: self.grace_period,
            shutdown_delay: self.shutdown_delay,
            backtrace: self.backtrace,
            backtrace_window: self.backtrace_window,
            backtrace_locations: self.backtrace_locations,
            termination_log: match &self.termination_log {
                TerminationLog::KubernetesDefault => kubernetes_termination_log(),
                TerminationLog::At(path) => Some(path.clone()),
                TerminationLog::Off => None,
            },
            max_record_bytes: self.max_record_bytes,
            keep_previous_panic_hook: self.keep_previous_panic_hook,
            exit_on_sigquit: self.exit_on_sigquit,
            panic_budget: self.panic_budget,
            exit_on_panic_budget: self.exit_on_panic_budget,
            format: self.format,
            colour: std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
                && std::env::var_os("TERM").is_none_or(|term| term != "dumb"),
            service: self.service.clone(),
            watch_interval: self.watch_interval,
            memory_pressure_percent: self.memory_pressure_percent,
            cgroup: std::env::var_os("CRASHGUARD_CGROUP").map(PathBuf::from),
        };
        let mut problems = Vec::new();
        let mut env = |name: &'static str| match std::env::var(name) {
            Ok(value) => Some(value),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(raw)) => {
                problems.push(EnvProblem::new(
                    name,
                    &raw.to_string_lossy(),
                    "not valid UTF-8",
                ));
                None
            }
        };
        let grace_period = env("CRASHGUARD_GRACE_PERIOD");
        let shutdown_delay = env("CRASHGUARD_SHUTDOWN_DELAY");
        let backtrace = env("CRASHGUARD_BACKTRACE");
        let sigquit = env("CRASHGUARD_SIGQUIT");
        let format = env("CRASHGUARD_FORMAT");
        let panic_budget = env("CRASHGUARD_PANIC_BUDGET");
        let panic_budget_exit = env("CRASHGUARD_PANIC_BUDGET_EXIT");
        let watch_interval = env("CRASHGUARD_WATCH_INTERVAL");
        let memory_pressure = env("CRASHGUARD_MEMORY_PRESSURE");
        if let Some(name) = env("OTEL_SERVICE_NAME").filter(|name| !name.trim().is_empty()) {
            let version = settings.service.take().and_then(|service| service.version);
            settings.service = Some(Service {
                name: name.trim().to_owned(),
                version,
            });
        }
        let mut duration = |variable: &'static str, value: Option<String>, into: &mut Duration| {
            let Some(value) = value else { return };
            match humantime::parse_duration(value.trim()) {
                Ok(duration) => *into = duration,
                Err(error) => problems.push(EnvProblem::new(variable, &value, &error.to_string())),
            }
        };
        duration(
            "CRASHGUARD_GRACE_PERIOD",
            grace_period,
            &mut settings.grace_period,
        );
        duration(
            "CRASHGUARD_SHUTDOWN_DELAY",
            shutdown_delay,
            &mut settings.shutdown_delay,
        );
        duration(
            "CRASHGUARD_WATCH_INTERVAL",
            watch_interval,
            &mut settings.watch_interval,
        );
        if let Some(value) = memory_pressure {
            match value.trim().trim_end_matches('%').parse::<u8>() {
                Ok(percent @ 1..=100) => settings.memory_pressure_percent = percent,
                _ => problems.push(EnvProblem::new(
                    "CRASHGUARD_MEMORY_PRESSURE",
                    &value,
                    "expected a percentage from 1 to 100",
                )),
            }
        }
        if let Some(value) = std::env::var_os("CRASHGUARD_TERMINATION_LOG") {
            settings.termination_log = (!value.is_empty()).then(|| PathBuf::from(value));
        }
        if let Some(value) = backtrace {
            match switch(&value) {
                Some(on) => settings.backtrace = on,
                None if value.trim().eq_ignore_ascii_case("full") => settings.backtrace = true,
                None => problems.push(EnvProblem::new(
                    "CRASHGUARD_BACKTRACE",
                    &value,
                    "expected 1 or 0",
                )),
            }
        }
        if let Some(value) = format {
            match value.trim().to_ascii_lowercase().as_str() {
                "auto" => settings.format = Format::Auto,
                "json" => settings.format = Format::Json,
                "text" => settings.format = Format::Text,
                _ => problems.push(EnvProblem::new(
                    "CRASHGUARD_FORMAT",
                    &value,
                    "expected json, text or auto",
                )),
            }
        }
        if let Some(value) = panic_budget {
            match parse_panic_budget(&value) {
                Ok(budget) => settings.panic_budget = budget,
                Err(problem) => {
                    problems.push(EnvProblem::new("CRASHGUARD_PANIC_BUDGET", &value, &problem))
                }
            }
        }
        if let Some(value) = panic_budget_exit {
            match switch(&value) {
                Some(exit) => settings.exit_on_panic_budget = exit,
                None => problems.push(EnvProblem::new(
                    "CRASHGUARD_PANIC_BUDGET_EXIT",
                    &value,
                    "expected 1 or 0",
                )),
            }
        }
        if let Some(value) = sigquit {
            match value.trim().to_ascii_lowercase().as_str() {
                "exit" => settings.exit_on_sigquit = true,
                "dump" => settings.exit_on_sigquit = false,
                _ => problems.push(EnvProblem::new(
                    "CRASHGUARD_SIGQUIT",
                    &value,
                    "expected exit or dump",
                )),
            }
        }
        let settings = settings.checked(&mut problems);
        (settings, problems)
    }
}

/// An on-off variable's value: `1`, `true`, `on`, `yes`, or `0`, `false`, `off`, `no`.
fn switch(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Some(true),
        "0" | "false" | "off" | "no" => Some(false),
        _ => None,
    }
}

/// `CRASHGUARD_PANIC_BUDGET`: `3/10s` (or `3 per 10s`), or `off`.
fn parse_panic_budget(value: &str) -> Result<Option<PanicBudget>, String> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let expected = || "expected panics per window, such as 3/10s, or off".to_owned();
    let (panics, per) = value
        .split_once('/')
        .or_else(|| value.split_once(" per "))
        .ok_or_else(expected)?;
    let panics = panics.trim().parse::<u32>().map_err(|_| expected())?;
    let per = humantime::parse_duration(per.trim()).map_err(|error| error.to_string())?;
    Ok(Some(PanicBudget::new(panics, per)))
}

/// A setting that could not be used as given: what it was, and what crashguard does instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvProblem {
    /// The environment variable, or the `Config` method, it came from.
    pub(crate) variable: &'static str,
    pub(crate) value: String,
    /// The whole sentence for the `config` record.
    pub(crate) message: String,
}

impl EnvProblem {
    /// An environment value that could not be read: the code's value stays.
    fn new(variable: &'static str, value: &str, problem: &str) -> EnvProblem {
        EnvProblem {
            variable,
            value: value.to_owned(),
            message: format!(
                "ignored {variable}={value:?}: {problem}; using the value set in code"
            ),
        }
    }

    /// A value crashguard had to change.
    fn adjusted(variable: &'static str, value: impl fmt::Debug, message: String) -> EnvProblem {
        EnvProblem {
            variable,
            value: format!("{value:?}"),
            message,
        }
    }
}

impl Settings {
    /// The rules between settings: a grace period that fits the clocks, a shutdown delay that
    /// leaves the drain time before the deadline, a termination log that is a regular file.
    fn checked(mut self, problems: &mut Vec<EnvProblem>) -> Settings {
        if self.grace_period > MAX_GRACE_PERIOD {
            problems.push(EnvProblem::adjusted(
                "CRASHGUARD_GRACE_PERIOD",
                self.grace_period,
                format!(
                    "the grace period of {} s is longer than crashguard takes; using {} s",
                    self.grace_period.as_secs(),
                    MAX_GRACE_PERIOD.as_secs()
                ),
            ));
            self.grace_period = MAX_GRACE_PERIOD;
        }
        let longest_delay = self.grace_period / 2;
        if self.shutdown_delay > longest_delay {
            problems.push(EnvProblem::adjusted(
                "CRASHGUARD_SHUTDOWN_DELAY",
                self.shutdown_delay,
                format!(
                    "the shutdown delay of {} ms would leave the drain no time before the \
                     {} ms deadline; using {} ms, half the grace period",
                    self.shutdown_delay.as_millis(),
                    self.grace_period.as_millis(),
                    longest_delay.as_millis()
                ),
            ));
            self.shutdown_delay = longest_delay;
        }
        if let Some(path) = &self.termination_log {
            // What is there must be a regular file (the kubelet mounts one), never a link
            // another file would be overwritten through, nor a FIFO that would block.
            if let Ok(found) = std::fs::symlink_metadata(path) {
                if !found.file_type().is_file() {
                    problems.push(EnvProblem::adjusted(
                        "CRASHGUARD_TERMINATION_LOG",
                        path,
                        format!(
                            "the termination log {} is not a regular file (a symlink, a FIFO, \
                             a directory or a device): no termination message will be written",
                            path.display()
                        ),
                    ));
                    self.termination_log = None;
                }
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_budget_reads_as_panics_per_window_or_off() {
        let budget =
            |panics, seconds| Ok(Some(PanicBudget::new(panics, Duration::from_secs(seconds))));
        assert_eq!(parse_panic_budget("3/10s"), budget(3, 10));
        assert_eq!(parse_panic_budget(" 5 per 1m "), budget(5, 60));
        assert_eq!(parse_panic_budget("0/1s"), budget(0, 1));
        assert_eq!(parse_panic_budget("OFF"), Ok(None));
        assert!(parse_panic_budget("3").is_err());
        assert!(parse_panic_budget("-1/10s").is_err());
        assert!(parse_panic_budget("3/ten").is_err());
    }

    #[test]
    fn a_budget_window_is_never_shorter_than_ten_milliseconds() {
        assert_eq!(
            PanicBudget::new(1, Duration::ZERO).per(),
            Duration::from_millis(10)
        );
        assert_eq!(
            PanicBudget::new(3, Duration::from_secs(10)).to_string(),
            "3/10s"
        );
    }
}
