//! The record's schema: every field's key, in one place. Keys follow OpenTelemetry's semantic
//! conventions (`exception.*`, `code.*`, `thread.*`, `http.*`), with `severity` and `message` as
//! Google Cloud Logging reads them; the README's table documents each. A field is added here
//! first, then where its event is written (and, for a panic, in both of its sinks: JSON and
//! `tracing`, which a test keeps in step).

// The fatal-signal keys are unused where fatal signals are not handled.
#![cfg_attr(not(fatal_signals), allow(dead_code))]

// Every record.
pub(crate) const TIME: &str = "time";
pub(crate) const SEVERITY: &str = "severity";
pub(crate) const EVENT: &str = "event";
pub(crate) const PROCESS_PID: &str = "process.pid";
pub(crate) const MESSAGE: &str = "message";
pub(crate) const RECORD_TRUNCATED: &str = "record.truncated";

// Panics, fatal signals and exits.
pub(crate) const INCIDENT_ID: &str = "incident.id";
pub(crate) const THREAD_NAME: &str = "thread.name";
pub(crate) const THREAD_ID: &str = "thread.id";
pub(crate) const CODE_FUNCTION_NAME: &str = "code.function.name";
pub(crate) const CODE_FILE_PATH: &str = "code.file.path";
pub(crate) const CODE_LINE_NUMBER: &str = "code.line.number";
pub(crate) const CODE_COLUMN_NUMBER: &str = "code.column.number";
pub(crate) const HTTP_REQUEST_METHOD: &str = "http.request.method";
pub(crate) const HTTP_ROUTE: &str = "http.route";
// OpenTelemetry's log data model's names, without a namespace.
pub(crate) const TRACE_ID: &str = "trace_id";
pub(crate) const SPAN_ID: &str = "span_id";
pub(crate) const TRACE_FLAGS: &str = "trace_flags";
pub(crate) const URL_PATH: &str = "url.path";
pub(crate) const HTTP_REQUEST_ID: &str = "http.request.header.x-request-id";
pub(crate) const EXCEPTION_TYPE: &str = "exception.type";
pub(crate) const EXCEPTION_MESSAGE: &str = "exception.message";
pub(crate) const EXCEPTION_STACKTRACE: &str = "exception.stacktrace";
pub(crate) const EXCEPTION_STACKTRACE_REF: &str = "exception.stacktrace_ref";
pub(crate) const EXCEPTION_STACKTRACE_CUT: &str = "exception.stacktrace_cut";
pub(crate) const EXCEPTION_REPEATS: &str = "exception.repeats";

// Signals.
pub(crate) const SIGNAL_NAME: &str = "signal.name";
pub(crate) const SIGNAL_NUMBER: &str = "signal.number";
pub(crate) const SIGNAL_CODE: &str = "signal.code";
pub(crate) const SIGNAL_CODE_NAME: &str = "signal.code_name";
pub(crate) const SIGNAL_CODE_DESCRIPTION: &str = "signal.code_description";
pub(crate) const SIGNAL_FAULT_ADDRESS: &str = "signal.fault_address";
pub(crate) const STACK_OVERFLOW: &str = "stack_overflow";
pub(crate) const PANIC_IN_PROGRESS: &str = "panic.in_progress";
pub(crate) const PROCESS_MODULES: &str = "process.modules";
/// On a fatal signal after the exit record: that record's code is not how the process ends.
pub(crate) const EXIT_SUPERSEDED: &str = "exit.superseded";

// Thread dumps.
pub(crate) const DUMP_ID: &str = "dump.id";
pub(crate) const THREAD_STATE: &str = "thread.state";
pub(crate) const CODE_STACKTRACE: &str = "code.stacktrace";
pub(crate) const CODE_STACKTRACE_CUT: &str = "code.stacktrace_cut";
pub(crate) const DUMP_UNANSWERED: &str = "dump.unanswered";
pub(crate) const DUMP_THREADS: &str = "dump.threads";
pub(crate) const DUMP_UNANSWERED_THREADS: &str = "dump.unanswered_threads";
pub(crate) const DUMP_LEFT_OUT: &str = "dump.left_out";

// Shutdown.
pub(crate) const SHUTDOWN_REASON: &str = "shutdown.reason";
pub(crate) const HEALTH_PANICS_IN_WINDOW: &str = "health.panics_in_window";
pub(crate) const HEALTH_PANIC_BUDGET: &str = "health.panic_budget";
pub(crate) const SHUTDOWN_INTERACTIVE: &str = "shutdown.interactive";
pub(crate) const SHUTDOWN_GRACE_PERIOD_MS: &str = "shutdown.grace_period_ms";
pub(crate) const SHUTDOWN_DELAY_MS: &str = "shutdown.delay_ms";
pub(crate) const SHUTDOWN_PENDING: &str = "shutdown.pending";
pub(crate) const HOOK_NAME: &str = "hook.name";
pub(crate) const HOOK_OUTCOME: &str = "hook.outcome";
pub(crate) const HOOK_DURATION_MS: &str = "hook.duration_ms";

// Exits.
pub(crate) const EXIT_CODE: &str = "exit.code";
pub(crate) const EXIT_REASON: &str = "exit.reason";
pub(crate) const ERROR_MESSAGE: &str = "error.message";
pub(crate) const ERROR_STACKTRACE: &str = "error.stacktrace";
pub(crate) const PROCESS_UPTIME_MS: &str = "process.uptime_ms";
pub(crate) const PROCESS_MEMORY_PEAK_RSS_BYTES: &str = "process.memory.peak_rss_bytes";

// Memory pressure.
pub(crate) const PROCESS_MEMORY_RSS_BYTES: &str = "process.memory.rss_bytes";
pub(crate) const CGROUP_MEMORY_USAGE_BYTES: &str = "cgroup.memory.usage_bytes";

// The start record.
pub(crate) const SERVICE_NAME: &str = "service.name";
pub(crate) const SERVICE_VERSION: &str = "service.version";
pub(crate) const PROCESS_EXECUTABLE_PATH: &str = "process.executable.path";
pub(crate) const PROCESS_EXECUTABLE_BUILD_ID: &str = "process.executable.build_id.gnu";
pub(crate) const K8S_POD_NAME: &str = "k8s.pod.name";
pub(crate) const K8S_NAMESPACE_NAME: &str = "k8s.namespace.name";
pub(crate) const K8S_NODE_NAME: &str = "k8s.node.name";
pub(crate) const CGROUP_MEMORY_LIMIT_BYTES: &str = "cgroup.memory.limit_bytes";
pub(crate) const CGROUP_MEMORY_ERROR: &str = "cgroup.memory.error";

// Settings.
pub(crate) const CONFIG_VARIABLE: &str = "config.variable";
pub(crate) const CONFIG_VALUE: &str = "config.value";
pub(crate) const CONFIG_FEATURE: &str = "config.feature";
