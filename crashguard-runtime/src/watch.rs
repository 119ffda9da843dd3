//! The watcher: a thread that, every few seconds (`CRASHGUARD_WATCH_INTERVAL`, 5 s by default),
//! rewrites the termination message in advance and looks at memory.
//!
//! SIGKILL (the kubelet's after the grace period, the OOM killer's) runs no code: only what was
//! written before survives. So the termination log says, from start, what an operator needs if
//! that happens: that the process was killed without a record, when it was last seen, its
//! resident set (and peak) against the cgroup's memory limit, and its uptime. Every recorded end
//! replaces it with the real summary; so does a clean exit.
//!
//! When the cgroup's usage crosses `CRASHGUARD_MEMORY_PRESSURE` (90 % by default) of its limit,
//! a `memory_pressure` record says so, at most once a minute.

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use crate::exit::termination;
use crate::memory::Memory;
use crate::record::{self, keys, Severity};

/// The least time between two `memory_pressure` records.
const PRESSURE_EVERY: Duration = Duration::from_secs(60);

/// Starts the watcher once, unless its interval is zero.
pub(crate) fn start() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let interval = crate::state::settings().watch_interval;
        if interval.is_zero() {
            return;
        }
        // The first look now, so that even a kill in the first seconds finds a message.
        let mut watch = Watch {
            last_pressure: None,
        };
        watch.look();
        let _ = std::thread::Builder::new()
            .name("crashguard-watch".into())
            .spawn(move || loop {
                std::thread::sleep(interval);
                watch.look();
            });
    });
}

struct Watch {
    last_pressure: Option<Instant>,
}

/// One look of the watcher, for the benchmark that measures what it costs.
#[cfg(feature = "test-hooks")]
pub(crate) fn look_once() {
    Watch {
        last_pressure: None,
    }
    .look();
}

impl Watch {
    /// One look: the memory, the message in advance, perhaps a `memory_pressure` record.
    fn look(&mut self) {
        let memory = crate::memory::now();
        termination::write_in_advance(&KilledWithoutARecord {
            memory,
            seen: SystemTime::now(),
        });
        if let (Some(usage), Some(limit)) = (memory.usage, memory.limit) {
            let threshold = u64::from(crate::state::settings().memory_pressure_percent);
            let due = self
                .last_pressure
                .is_none_or(|last| last.elapsed() >= PRESSURE_EVERY);
            if usage.saturating_mul(100) >= limit.saturating_mul(threshold) && due {
                self.last_pressure = Some(Instant::now());
                pressure_record(&memory, usage, limit);
            }
        }
    }
}

fn pressure_record(memory: &Memory, usage: u64, limit: u64) {
    record::emit(
        "memory_pressure",
        Severity::Warning,
        record::Wait::Patiently,
        |record| {
            record.display(
                keys::MESSAGE,
                format_args!(
                    "memory at {}% of the cgroup's limit: {} of {}",
                    usage * 100 / limit.max(1),
                    Bytes(usage),
                    Bytes(limit)
                ),
                1024,
            );
            record.u64(keys::CGROUP_MEMORY_USAGE_BYTES, usage);
            record.u64(keys::CGROUP_MEMORY_LIMIT_BYTES, limit);
            if let Some(rss) = memory.rss {
                record.u64(keys::PROCESS_MEMORY_RSS_BYTES, rss);
            }
            if let Some(peak) = memory.peak_rss {
                record.u64(keys::PROCESS_MEMORY_PEAK_RSS_BYTES, peak);
            }
        },
    );
}

/// `killed without a record (SIGKILL: …); last seen …, up 12 s, RSS 45 MiB (peak 50 MiB) of a
/// 512 MiB limit`.
struct KilledWithoutARecord {
    memory: Memory,
    seen: SystemTime,
}

impl fmt::Display for KilledWithoutARecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "killed without a record (SIGKILL: the grace period ran out, or the OOM killer); \
             last seen {}, up {} s",
            humantime::format_rfc3339_seconds(self.seen),
            crate::state::uptime().as_secs()
        )?;
        if let Some(rss) = self.memory.rss {
            write!(f, ", RSS {}", Bytes(rss))?;
        }
        if let Some(peak) = self.memory.peak_rss {
            write!(f, " (peak {})", Bytes(peak))?;
        }
        match self.memory.limit {
            Some(limit) => write!(f, " of a {} limit", Bytes(limit)),
            None => f.write_str(", no memory limit"),
        }
    }
}

/// Bytes in MiB, as people read memory limits.
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = self.0 as f64 / (1024.0 * 1024.0);
        if mib >= 10.0 {
            write!(f, "{mib:.0} MiB")
        } else {
            write!(f, "{mib:.1} MiB")
        }
    }
}
