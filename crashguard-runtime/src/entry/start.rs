//! The `start` record: the first line of every installed process, saying what it is and where
//! it runs. A `start` with no `exit` of the same process (`process.pid` and `k8s.pod.name`) is a
//! process killed without a word: SIGKILL after the grace period, or the OOM killer.

use crate::record::{self, keys, Severity};

/// The downward API variables a pod spec maps its identity to (documented in the README).
const DOWNWARD_API: [(&str, &str); 3] = [
    ("POD_NAME", keys::K8S_POD_NAME),
    ("POD_NAMESPACE", keys::K8S_NAMESPACE_NAME),
    ("NODE_NAME", keys::K8S_NODE_NAME),
];

pub(super) fn write() {
    let settings = crate::state::settings();
    let executable = std::env::current_exe().ok();
    let memory = crate::memory::now();
    let build_id = build_id();
    let identity: Vec<(&str, String)> = DOWNWARD_API
        .iter()
        .filter_map(|(variable, key)| {
            let value = std::env::var(variable).ok()?;
            (!value.is_empty()).then_some((*key, value))
        })
        .collect();
    let name = settings
        .service
        .as_ref()
        .map(|service| service.name.as_str());
    let version = settings
        .service
        .as_ref()
        .and_then(|service| service.version.as_deref());
    record::emit("start", Severity::Info, record::Wait::Patiently, |record| {
        record.display(
            keys::MESSAGE,
            format_args!(
                "started {}{}{} (pid {})",
                name.unwrap_or("the process"),
                if version.is_some() { " " } else { "" },
                version.unwrap_or(""),
                crate::os::process_id()
            ),
            1024,
        );
        if let Some(name) = name {
            record.str(keys::SERVICE_NAME, name);
        }
        if let Some(version) = version {
            record.str(keys::SERVICE_VERSION, version);
        }
        if let Some(executable) = &executable {
            record.display(keys::PROCESS_EXECUTABLE_PATH, executable.display(), 1024);
        }
        if let Some(build_id) = &build_id {
            record.str(keys::PROCESS_EXECUTABLE_BUILD_ID, build_id);
        }
        for (key, value) in &identity {
            record.str_max(key, value, 256);
        }
        if let Some(limit) = memory.limit {
            record.u64(keys::CGROUP_MEMORY_LIMIT_BYTES, limit);
        }
        if memory.usage.is_none() {
            record.str(
                keys::CGROUP_MEMORY_ERROR,
                "no cgroup memory files could be read (v2 memory.current, v1 \
                 memory.usage_in_bytes): no memory_pressure records",
            );
        }
        record.millis(keys::SHUTDOWN_GRACE_PERIOD_MS, settings.grace_period);
    });
}

/// The executable's GNU build id, in hex, where crashguard read its modules.
fn build_id() -> Option<String> {
    #[cfg(fatal_signals)]
    return crate::unwind::executable_build_id();
    #[cfg(not(fatal_signals))]
    None
}
