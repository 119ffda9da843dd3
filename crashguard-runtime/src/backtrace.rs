//! Backtraces for panic records: captured with the `backtrace` crate, trimmed to the user's
//! frames, one frame per line inside a single JSON string.

use std::fmt::Write as _;

/// Frames through which a panic starts: the user's code called the last of these.
const PANIC_ENTRY: &[&str] = &[
    "rust_begin_unwind",
    "__rustc::rust_begin_unwind",
    "core::panicking::",
    "std::panicking::begin_panic",
    "std::panic::panic_any",
    "core::result::unwrap_failed",
    "core::option::unwrap_failed",
    "core::option::expect_failed",
];

/// Frames between the user's code and the thread's start that say nothing about the bug.
const PLUMBING: &[&str] = &[
    "crashguard_runtime::",
    "std::panicking::catch_unwind",
    "std::panicking::try",
    "std::panic::catch_unwind",
    "<core::panic::unwind_safe::AssertUnwindSafe<F> as core::ops::function::FnOnce<()>>::call_once",
    "<core::panic::unwind_safe::AssertUnwindSafe<F> as core::future::future::Future>::poll",
    "__rust_try",
];

/// Frames just above the thread's start that only call the user's `main` or closure.
const LAUNCH: &str = "core::ops::function::";

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
                (Some(file), Some(line)) => {
                    let file = file.to_string_lossy();
                    let file = short_path(&file);
                    match symbol.colno() {
                        Some(column) => format!("{file}:{line}:{column}"),
                        None => format!("{file}:{line}"),
                    }
                }
                _ => String::new(),
            };
            lines.push((name, place));
        }
    }

    // The panic entered std through a run of PANIC_ENTRY frames; the user's code called it.
    let is_entry = |name: &str| PANIC_ENTRY.iter().any(|entry| name.starts_with(entry));
    let start = lines
        .iter()
        .position(|(name, _)| is_entry(name))
        .map_or(0, |first| {
            lines[first..]
                .iter()
                .position(|(name, _)| !is_entry(name))
                .map_or(lines.len(), |offset| first + offset)
        });
    let mut end = lines
        .iter()
        .position(|(name, _)| name.contains(THREAD_START))
        .filter(|&end| end >= start)
        .unwrap_or(lines.len());
    while end > start && lines[end - 1].0.starts_with(LAUNCH) {
        end -= 1;
    }

    let mut text = String::new();
    let user_frames = lines[start..end].iter().filter(|(name, _)| {
        // `<crashguard_runtime::guard::CatchPanic<F> as Future>::poll` is crashguard's too.
        let unbracketed = name.strip_prefix('<').unwrap_or(name);
        !PLUMBING
            .iter()
            .any(|p| name.starts_with(p) || unbracketed.starts_with(p))
    });
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

/// Drops what makes paths long without telling more: the registry's cache folder before a
/// dependency's `name-version/` and the commit hash in `/rustc/<hash>/`.
fn short_path(path: &str) -> &str {
    if let Some(index) = path.find("/registry/src/") {
        let after = &path[index + "/registry/src/".len()..];
        if let Some(slash) = after.find('/') {
            return &after[slash + 1..];
        }
    }
    if let Some(after) = path.strip_prefix("/rustc/") {
        if let Some(slash) = after.find('/') {
            return &after[slash + 1..];
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::short_path;

    #[test]
    fn paths_lose_the_registry_cache_and_the_rustc_hash() {
        assert_eq!(
            short_path(
                "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/axum-0.8.9/src/a.rs"
            ),
            "axum-0.8.9/src/a.rs"
        );
        assert_eq!(
            short_path(
                "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/ops/function.rs"
            ),
            "library/core/src/ops/function.rs"
        );
        assert_eq!(short_path("/work/app/src/main.rs"), "/work/app/src/main.rs");
    }
}
