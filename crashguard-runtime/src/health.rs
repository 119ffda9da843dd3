//! What panics leave on the process's health: how many, how recent, and whether the panic budget
//! is spent.
//!
//! Panics are counted in a window: the budget's (see
//! [`Config::panic_budget`](crate::Config::panic_budget)), or [`DEFAULT_HEALTH_WINDOW`] without
//! one. The window is kept as ten slots of a tenth of it each, as circuit breakers keep theirs: a
//! panic counts for between one window and one window and a tenth, in constant memory however
//! many panics there are.
//!
//! The budget is spent when the window holds more panics than it allows. It stays spent until the
//! window holds none: a process that keeps panicking at any rate stays out of rotation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use crate::config::PanicBudget;
use crate::state::IncidentId;

/// The window panics are counted in when no budget is set.
pub const DEFAULT_HEALTH_WINDOW: Duration = Duration::from_secs(60);

/// What panics have done to the process so far; see [`health`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// Panics since the process started, caught or not.
    pub panics: u64,
    /// Panics in the last [`window`](Health::window).
    pub panics_in_window: u64,
    /// The window: the budget's, or [`DEFAULT_HEALTH_WINDOW`].
    pub window: Duration,
    /// The latest panic, if there was one.
    pub last_panic: Option<LastPanic>,
    /// The budget in force, if any.
    pub budget: Option<PanicBudget>,
    /// Whether the budget is spent: the process should not take traffic.
    pub budget_spent: bool,
}

/// The latest panic: its incident id and when it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LastPanic {
    /// The panic's incident id, as in its record.
    pub incident_id: IncidentId,
    /// When it happened.
    pub at: SystemTime,
}

/// The process's panic health now.
///
/// # Example
///
/// ```
/// let before = crashguard::health().panics;
/// let report = crashguard::catch("demo", || panic!("boom")).unwrap_err();
/// let health = crashguard::health();
/// assert_eq!(health.panics, before + 1);
/// assert_eq!(health.last_panic.unwrap().incident_id, report.incident_id());
/// assert!(!health.budget_spent); // no budget is set
/// ```
pub fn health() -> Health {
    let tracker = tracker();
    let now = Instant::now();
    let mut state = lock(&tracker.state);
    let panics_in_window = state.window.count(now);
    let budget_spent = state.still_spent(panics_in_window);
    Health {
        panics: tracker.panics.load(Ordering::Relaxed),
        panics_in_window,
        window: state.window.length(),
        last_panic: state.last,
        budget: state.budget,
        budget_spent,
    }
}

/// Whether the budget is spent. Cheaper than [`health`]: a readiness probe asks it.
pub(crate) fn budget_spent() -> bool {
    let mut state = lock(&tracker().state);
    if state.budget.is_none() {
        return false;
    }
    let count = state.window.count(Instant::now());
    state.still_spent(count)
}

/// Puts the installed settings' budget in force: the window is counted anew if its length
/// changes (panics before install were counted in the default window).
pub(crate) fn configure(budget: Option<PanicBudget>) {
    let mut state = lock(&tracker().state);
    let length = window_for(budget);
    if state.window.length() != length {
        state.window = Window::new(length, Instant::now());
    }
    state.budget = budget;
}

/// What runs when a panic spends the budget, with the window's count: set by a layer above this
/// one when the configuration asks for a shutdown.
static WHEN_SPENT: OnceLock<fn(u64, PanicBudget)> = OnceLock::new();

/// Sets what runs (once) when a panic spends the budget.
pub(crate) fn when_budget_spent(run: fn(u64, PanicBudget)) {
    let _ = WHEN_SPENT.set(run);
}

/// Counts a panic. Called by the panic hook after its record, so that anything the budget does
/// comes after the panic's own record.
pub(crate) fn note_panic(incident_id: IncidentId, at: SystemTime) {
    let tracker = tracker();
    tracker.panics.fetch_add(1, Ordering::Relaxed);
    let spent_now = {
        let mut state = lock(&tracker.state);
        let now = Instant::now();
        // A window that emptied since the last look ends a spent budget, whether or not a probe
        // looked while it was empty.
        let before = state.window.count(now);
        state.still_spent(before);
        let count = state.window.add(now);
        state.last = Some(LastPanic { incident_id, at });
        match state.budget {
            Some(budget) if count > u64::from(budget.panics()) && !state.spent => {
                state.spent = true;
                Some((count, budget))
            }
            _ => None,
        }
    };
    if let (Some((count, budget)), Some(run)) = (spent_now, WHEN_SPENT.get()) {
        run(count, budget);
    }
}

struct Tracker {
    panics: AtomicU64,
    state: Mutex<TrackerState>,
}

struct TrackerState {
    window: Window,
    budget: Option<PanicBudget>,
    last: Option<LastPanic>,
    /// The budget was spent and the window has not been empty since.
    spent: bool,
}

impl TrackerState {
    fn still_spent(&mut self, panics_in_window: u64) -> bool {
        if self.spent && panics_in_window == 0 {
            self.spent = false;
        }
        self.spent
    }
}

fn window_for(budget: Option<PanicBudget>) -> Duration {
    budget.map_or(DEFAULT_HEALTH_WINDOW, |budget| budget.per())
}

fn tracker() -> &'static Tracker {
    static TRACKER: OnceLock<Tracker> = OnceLock::new();
    TRACKER.get_or_init(|| {
        let budget = crate::state::settings().panic_budget;
        Tracker {
            panics: AtomicU64::new(0),
            state: Mutex::new(TrackerState {
                window: Window::new(window_for(budget), Instant::now()),
                budget,
                last: None,
                spent: false,
            }),
        }
    })
}

/// A panicking thread never holds this lock while it could panic; a poisoned one is still whole.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Slots a window is kept in.
const SLOTS_PER_WINDOW: u32 = 10;
/// The slots kept: one more than the window, so that a panic counts for at least a whole one.
const SLOTS: usize = SLOTS_PER_WINDOW as usize + 1;

/// Counts in a sliding window, kept as slots of a tenth of it.
struct Window {
    slot_length: Duration,
    epoch: Instant,
    counts: [u64; SLOTS],
    /// The slot (counted from `epoch`) that `counts` was last brought up to.
    newest: u64,
}

impl Window {
    fn new(length: Duration, epoch: Instant) -> Window {
        Window {
            slot_length: (length / SLOTS_PER_WINDOW).max(Duration::from_nanos(1)),
            epoch,
            counts: [0; SLOTS],
            newest: 0,
        }
    }

    fn length(&self) -> Duration {
        self.slot_length * SLOTS_PER_WINDOW
    }

    fn add(&mut self, now: Instant) -> u64 {
        let slot = self.advance(now);
        self.counts[slot] += 1;
        self.counts.iter().sum()
    }

    fn count(&mut self, now: Instant) -> u64 {
        self.advance(now);
        self.counts.iter().sum()
    }

    /// Empties the slots that fell out of the window since the last look; returns the index of
    /// `now`'s slot.
    fn advance(&mut self, now: Instant) -> usize {
        let elapsed = now.saturating_duration_since(self.epoch).as_nanos();
        let slot = u64::try_from(elapsed / self.slot_length.as_nanos()).unwrap_or(u64::MAX);
        if slot > self.newest {
            let stale = (slot - self.newest).min(SLOTS as u64);
            for passed in 1..=stale {
                self.counts[((self.newest + passed) % SLOTS as u64) as usize] = 0;
            }
            self.newest = slot;
        }
        (self.newest % SLOTS as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_panic_counts_for_at_least_a_window_and_at_most_a_tenth_more() {
        let start = Instant::now();
        let mut window = Window::new(10 * SECOND, start);
        assert_eq!(window.add(start + Duration::from_millis(900)), 1);
        assert_eq!(window.count(start + Duration::from_millis(10_899)), 1);
        assert_eq!(window.count(start + 11 * SECOND), 0);
    }

    #[test]
    fn slots_are_emptied_as_the_window_slides() {
        let start = Instant::now();
        let mut window = Window::new(10 * SECOND, start);
        for second in 0..10 {
            window.add(start + second * SECOND);
        }
        assert_eq!(window.count(start + 10 * SECOND), 10);
        assert_eq!(window.count(start + 15 * SECOND), 5);
        assert_eq!(window.add(start + 16 * SECOND), 5);
        // A long quiet spell empties every slot, however far the clock went.
        assert_eq!(window.count(start + 3600 * SECOND), 0);
        assert_eq!(window.add(start + 3601 * SECOND), 1);
    }

    #[test]
    fn the_window_length_is_the_budget_s() {
        let window = Window::new(10 * SECOND, Instant::now());
        assert_eq!(window.length(), 10 * SECOND);
    }
}
