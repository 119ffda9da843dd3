//! What every layer may read: the settings in force, how long ago crashguard was installed, and
//! incident ids.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::config::{Config, EnvProblem, Settings};

mod incident;

#[cfg(fatal_signals)]
pub(crate) use incident::prepare_for_signal_handlers;
pub(crate) use incident::refresh_after_fork;
pub use incident::IncidentId;

struct Installed {
    settings: Settings,
    since: Instant,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Makes `config`, with the environment applied, the settings in force. The first call wins and
/// returns the environment values it could not read; later calls change nothing and return
/// `None`.
pub(crate) fn install(config: &Config) -> Option<Vec<EnvProblem>> {
    let mut problems = None;
    INSTALLED.get_or_init(|| {
        let (settings, found) = config.resolve();
        problems = Some(found);
        Installed {
            settings,
            since: Instant::now(),
        }
    });
    problems
}

/// The settings in force: those installed, or the defaults with the environment applied (whose
/// unreadable values install reports, if it ever runs).
pub(crate) fn settings() -> &'static Settings {
    static UNINSTALLED: OnceLock<Settings> = OnceLock::new();
    match INSTALLED.get() {
        Some(installed) => &installed.settings,
        None => UNINSTALLED.get_or_init(|| Config::new().resolve().0),
    }
}

/// Time since [`install`].
pub(crate) fn uptime() -> Duration {
    INSTALLED
        .get()
        .map_or(Duration::ZERO, |installed| installed.since.elapsed())
}
