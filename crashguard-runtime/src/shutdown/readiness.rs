//! Whether the process should take traffic: what a readiness probe answers, and why not.

use super::is_shutting_down;
use crate::config::PanicBudget;

/// Whether the process should take traffic: not once shutdown has started, and not while the
/// [panic budget](crate::Config::panic_budget) is spent. What a readiness probe should answer;
/// [`readiness`] says why not.
pub fn is_ready() -> bool {
    readiness() == Readiness::Ready
}

/// Whether the process should take traffic, and if not, why.
///
/// # Example
///
/// ```
/// let readiness = crashguard::readiness();
/// assert_eq!(readiness, crashguard::Readiness::Ready);
/// assert_eq!(readiness.to_string(), "ready");
/// ```
pub fn readiness() -> Readiness {
    if is_shutting_down() {
        return Readiness::ShuttingDown;
    }
    match crate::state::settings().panic_budget {
        Some(budget) if crate::health::budget_spent() => Readiness::PanicBudgetSpent { budget },
        _ => Readiness::Ready,
    }
}

/// See [`readiness`]. Its `Display` is the reason a readiness probe gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Readiness {
    /// Taking traffic.
    Ready,
    /// Shutdown has started.
    ShuttingDown,
    /// More panics than the budget allows happened in its window, and the window has not been
    /// free of panics since.
    PanicBudgetSpent {
        /// The budget that was spent.
        budget: PanicBudget,
    },
}

impl std::fmt::Display for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Readiness::Ready => f.write_str("ready"),
            Readiness::ShuttingDown => f.write_str("shutting down"),
            Readiness::PanicBudgetSpent { budget } => write!(
                f,
                "panic budget spent: more than {} panics within {}; ready again after {} \
                 without one",
                budget.panics(),
                humantime::format_duration(budget.per()),
                humantime::format_duration(budget.per()),
            ),
        }
    }
}
