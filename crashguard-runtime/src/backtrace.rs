//! Backtraces for panic records: captured with the `backtrace` crate, trimmed to the user's
//! frames, one frame per line inside a single JSON string.

use std::fmt::Write as _;

/// Frames that belong to the panic machinery or to crashguard itself: a trace starts at the first
/// frame after the run of these at the top.
const MACHINERY: &[&str] = &[
    "backtrace::",
    "crashguard_runtime::",
    "std::panicking::",
    "core::panicking::",
    "std::panic::panic_any",
    "std::sys::backtrace::__rust_end_short_backtrace",
    "rust_begin_unwind",
    "__rustc::rust_begin_unwind",
    "core::result::unwrap_failed",
    "core::option::unwrap_failed",
    "core::option::expect_failed",
    "<alloc::boxed::Box<F,A> as core::ops::function::Fn<Args>>::call",
];

/// Frames between the user's code and the thread's start that say nothing about the bug.
const PLUMBING: &[&str] = &[
    "crashguard_runtime::",
    "std::panicking::catch_unwind",
    "std::panicking::try",
    "std::panic::catch_unwind",
    "<core::panic::unwind_safe::AssertUnwindSafe<F> as core::ops::function::FnOnce<()>>::call_once",
    "<core::panic::unwind_safe::AssertUnwindSafe<F> as core::future::future::Future>::poll",
];

/// Where std starts a thread's (or main's) own code; nothing below it is the user's.
const THREAD_START: &str = "__rust_begin_short_backtrace";

/// Captures the calling thread's stack and renders the user's part of it.
pub(crate) fn capture() -> String {
    let mut trace = backtrace::Backtrace::new_unresolved();
    trace.resolve();
    render(&trace)
}

fn render(trace: &backtrace::Backtrace) -> String {
    let mut lines: Vec<(String, String)> = Vec::new();
    for frame in trace.frames() {
        if frame.symbols().is_empty() {
            lines.push((format!("{:p}", frame.ip()), String::new()));
        }
        for symbol in frame.symbols() {
            let name = symbol
                .name()
                .map_or_else(|| format!("{:p}", frame.ip()), |name| format!("{name:#}"));
            let place = match (symbol.filename(), symbol.lineno()) {
                (Some(file), Some(line)) => match symbol.colno() {
                    Some(column) => format!("{}:{line}:{column}", file.display()),
                    None => format!("{}:{line}", file.display()),
                },
                _ => String::new(),
            };
            lines.push((name, place));
        }
    }

    // From the first machinery frame at the top, skip the unbroken run of machinery frames.
    let is_machinery = |name: &str| MACHINERY.iter().any(|m| name.starts_with(m));
    let first = lines
        .iter()
        .position(|(name, _)| is_machinery(name))
        .unwrap_or(0);
    let start = lines[first..]
        .iter()
        .position(|(name, _)| !is_machinery(name))
        .map_or(lines.len(), |offset| first + offset);
    let end = lines
        .iter()
        .position(|(name, _)| name.contains(THREAD_START))
        .filter(|&end| end >= start)
        .unwrap_or(lines.len());

    let mut text = String::new();
    let user_frames = lines[start..end]
        .iter()
        .filter(|(name, _)| !PLUMBING.iter().any(|p| name.starts_with(p)));
    for (index, (name, place)) in user_frames.enumerate() {
        if index > 0 {
            text.push('\n');
        }
        let _ = write!(text, "{index}: {name}");
        if !place.is_empty() {
            let _ = write!(text, " at {place}");
        }
    }
    text
}
