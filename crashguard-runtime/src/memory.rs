//! How much memory the process uses, and how much its container may: the resident set (now and
//! at its peak) from `/proc/self/status`, and the cgroup's usage and limit (cgroup v2's
//! `memory.current` and `memory.max`, v1's `memory.usage_in_bytes` and `memory.limit_in_bytes`,
//! in the process's own cgroup, or `CRASHGUARD_CGROUP`).
//!
//! The latest peak and limit are also kept in atomics, for records a signal handler writes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the process uses and may use; `None` where it could not be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Memory {
    pub(crate) rss: Option<u64>,
    pub(crate) peak_rss: Option<u64>,
    pub(crate) usage: Option<u64>,
    pub(crate) limit: Option<u64>,
}

/// The last peak and limit read; 0 for not known.
static PEAK_RSS: AtomicU64 = AtomicU64::new(0);
static LIMIT: AtomicU64 = AtomicU64::new(0);

/// Reads it all now, and keeps the peak and limit for [`last_known`].
pub(crate) fn now() -> Memory {
    let (rss, peak_rss) = resident_set();
    let cgroup = cgroup_directory();
    let read = |v2: &str, v1: &str| {
        let directory = cgroup.as_ref()?;
        read_number(&directory.join(v2)).or_else(|| read_number(&directory.join(v1)))
    };
    let memory = Memory {
        rss,
        peak_rss,
        usage: read("memory.current", "memory.usage_in_bytes"),
        // v1 says "no limit" with the largest page-aligned i64; v2 with `max`.
        limit: read("memory.max", "memory.limit_in_bytes").filter(|&limit| limit < 1 << 62),
    };
    PEAK_RSS.store(memory.peak_rss.unwrap_or(0), Ordering::Relaxed);
    LIMIT.store(memory.limit.unwrap_or(0), Ordering::Relaxed);
    memory
}

/// The peak resident set and the limit as last read: two loads, safe in a signal handler.
pub(crate) fn last_known() -> (Option<u64>, Option<u64>) {
    let known = |value: u64| (value > 0).then_some(value);
    (
        known(PEAK_RSS.load(Ordering::Relaxed)),
        known(LIMIT.load(Ordering::Relaxed)),
    )
}

/// `VmRSS` and `VmHWM` (the peak), in bytes.
fn resident_set() -> (Option<u64>, Option<u64>) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kilobytes = |key: &str| {
        status.lines().find_map(|line| {
            let value = line.strip_prefix(key)?.trim().strip_suffix("kB")?;
            value.trim().parse::<u64>().ok().map(|kb| kb * 1024)
        })
    };
    (kilobytes("VmRSS:"), kilobytes("VmHWM:"))
}

/// The directory of the process's memory cgroup: `CRASHGUARD_CGROUP`, else its v2 cgroup, else
/// the v1 memory hierarchy's root as a container sees it.
fn cgroup_directory() -> Option<PathBuf> {
    if let Some(directory) = &crate::state::settings().cgroup {
        return Some(directory.clone());
    }
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let directory =
        |root: &str, path: &str| PathBuf::from(format!("{root}{}", path.trim_end_matches('/')));
    // v2: `0::/path`; v1: `N:memory:/path` (or `N:…,memory,…:/path`).
    let v2 = cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(|path| directory("/sys/fs/cgroup", path))
        .filter(|candidate| candidate.join("memory.max").exists());
    let v1 = || {
        let path = cgroup.lines().find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then_some(path)
        })?;
        // In a container with its own cgroup namespace the path reads `/`, and the directory is
        // the mount's root.
        [
            directory("/sys/fs/cgroup/memory", path),
            PathBuf::from("/sys/fs/cgroup/memory"),
        ]
        .into_iter()
        .find(|candidate| candidate.join("memory.limit_in_bytes").exists())
    };
    v2.or_else(v1)
}

fn read_number(path: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
