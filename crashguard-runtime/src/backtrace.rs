//! Backtraces for panic records: captured with the `backtrace` crate, trimmed to the user's
//! frames, one frame per line inside a single JSON string.
//!
//! # One trace per location, not per panic
//!
//! Walking the stack and resolving its symbols is the expensive part of a panic, and the
//! `backtrace` crate does both under one process-wide lock. A route that panics on every request
//! would pay for it on every request, and queue every panicking thread behind that lock. So
//! [`TraceReuse`] remembers, for each panic location (`file:line:col`), the incident whose record
//! carries the location's trace. A panic at the same place within the window (60 s by default)
//! takes no trace; its record names that incident in `exception.stacktrace_ref` and counts the
//! panics there since in `exception.repeats`. Every panic still gets its own record and incident
//! id. Once the window has passed, the next panic there is traced afresh.
//!
//! The table has a fixed number of slots, allocated once, and a short lock that guards only a
//! lookup of a few slots: it is never held while a trace is captured or resolved. When a panic
//! lands at a new place and the slots it may use are taken, the location traced longest ago is
//! forgotten; its next panic is traced again, so a record never points at an incident of
//! another location.
//!
//! A record that refers to a trace may reach the log before the record with the trace: the first
//! panic claims its location before it resolves symbols, and panics elsewhere do not wait for it.

use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::state::IncidentId;

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

/// Source files of frames that are panic plumbing whatever their name. A build with
/// `debug = "line-tables-only"` names inlined frames by their short name only (`catch_unwind<…>`,
/// `{closure#0}<…>`), which the name prefixes above cannot recognise; their files still tell.
const PLUMBING_FILES: &[&str] = &[
    "library/std/src/panicking.rs",
    "library/std/src/panic.rs",
    "library/core/src/panic/unwind_safe.rs",
];

/// Frames just above the thread's start that only call the user's `main` or closure.
const LAUNCH: &str = "core::ops::function::";

/// Where std starts a thread's (or main's) own code; nothing below it is the user's.
const THREAD_START: &str = "__rust_begin_short_backtrace";

/// Captures the calling thread's stack and renders the user's part of it.
pub(crate) fn capture() -> String {
    let trace = backtrace::Backtrace::new_unresolved();
    resolve_and_render(trace)
}

/// What resolving a trace may take of the panicking thread's stack (it reads debug info, deep in
/// gimli), with a wide margin: 96 KiB was measured to be enough.
const RESOLVE_STACK: usize = 256 * 1024;

/// Resolves and renders `trace`: in place on a thread with stack to spare, else on crashguard's
/// symbolizer thread, whose stack resolution may use freely (the panicking thread may have only
/// a few KiB left; handing the trace over costs two thread wake-ups). In place, too, when that
/// thread cannot be had or this is it.
fn resolve_and_render(mut trace: backtrace::Backtrace) -> String {
    type Job = (backtrace::Backtrace, std::sync::mpsc::SyncSender<String>);
    thread_local! {
        static IS_SYMBOLIZER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    static SYMBOLIZER: std::sync::OnceLock<Option<Mutex<std::sync::mpsc::Sender<Job>>>> =
        std::sync::OnceLock::new();
    let in_place = |mut trace: backtrace::Backtrace| {
        trace.resolve();
        render(&trace)
    };
    let roomy = stack_left().is_none_or(|left| left >= RESOLVE_STACK);
    if roomy || IS_SYMBOLIZER.try_with(std::cell::Cell::get).unwrap_or(true) {
        return in_place(trace);
    }
    let symbolizer = SYMBOLIZER.get_or_init(|| {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("crashguard-symbolizer".into())
            .spawn(move || {
                IS_SYMBOLIZER.with(|is| is.set(true));
                for (mut trace, answer) in queue {
                    trace.resolve();
                    let _ = answer.send(render(&trace));
                }
            })
            .ok()
            .map(|_| Mutex::new(jobs))
    });
    let Some(jobs) = symbolizer else {
        return in_place(trace);
    };
    let (answer, rendered) = std::sync::mpsc::sync_channel(1);
    let sent = jobs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .send((trace, answer));
    match sent {
        Ok(()) => rendered.recv().unwrap_or_default(),
        Err(std::sync::mpsc::SendError((returned, _))) => {
            trace = returned;
            in_place(trace)
        }
    }
}

/// Bytes of stack left below this point on this thread, where the thread's stack is known:
/// threads other than the main one, on Linux (the main thread's grows on demand, 8 MiB by
/// default).
fn stack_left() -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpid and gettid have no preconditions.
        if unsafe { libc::getpid() == libc::gettid() } {
            return None;
        }
        let marker = 0u8;
        let here = std::ptr::addr_of!(marker) as usize;
        // SAFETY: an all-zero pthread_attr_t is what pthread_getattr_np fills in; it is
        // destroyed after use, and the stack it describes is this thread's own.
        unsafe {
            let mut attributes: libc::pthread_attr_t = std::mem::zeroed();
            if libc::pthread_getattr_np(libc::pthread_self(), &mut attributes) != 0 {
                return None;
            }
            let mut low: *mut libc::c_void = std::ptr::null_mut();
            let mut size: libc::size_t = 0;
            let found = libc::pthread_attr_getstack(&attributes, &mut low, &mut size) == 0;
            libc::pthread_attr_destroy(&mut attributes);
            found.then(|| here.saturating_sub(low as usize))
        }
    }
    #[cfg(not(target_os = "linux"))]
    None
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
    let start = first_user_frame(&lines, start, end);
    while end > start && lines[end - 1].0.starts_with(LAUNCH) {
        end -= 1;
    }

    let mut text = String::new();
    let user_frames = lines[start..end].iter().filter(|(name, place)| {
        // `<crashguard_runtime::guard::CatchPanic<F> as Future>::poll` is crashguard's too.
        let unbracketed = name.strip_prefix('<').unwrap_or(name);
        !PLUMBING
            .iter()
            .any(|p| name.starts_with(p) || unbracketed.starts_with(p))
            && !PLUMBING_FILES.iter().any(|file| place.starts_with(file))
            && !is_crashguard_source(place)
    });
    for (index, (name, place)) in user_frames.enumerate() {
        if index > 0 {
            text.push('\n');
        }
        let _ = write!(text, "{index}: {}", without_generic_arguments(name));
        if !place.is_empty() {
            let _ = write!(text, " at {place}");
        }
    }
    text
}

/// What a panic's record carries for a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TracePlan {
    /// A trace of its own, captured and resolved now.
    Capture,
    /// No trace: the record of `first`, at the same location, has it, and this is the
    /// `repeats`-th panic there since.
    Reuse { first: IncidentId, repeats: u64 },
}

/// A panic location, as the table compares it: the file by a 64-bit hash, line and column as
/// they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocationKey {
    file_hash: u64,
    line: u32,
    column: u32,
}

impl LocationKey {
    pub(crate) fn new(file: &str, line: u32, column: u32) -> LocationKey {
        // FNV-1a: stable and allocation-free; two files would have to collide in 64 bits, at the
        // same line and column, to share a trace.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in file.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        LocationKey {
            file_hash: hash,
            line,
            column,
        }
    }

    /// Where the search for this location's slot starts.
    fn home(&self, slots: usize) -> usize {
        let place = (u64::from(self.line) << 32) | u64::from(self.column);
        // Fibonacci hashing spreads neighbouring lines of one file over the table.
        let mixed = (self.file_hash ^ place).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (mixed >> 32) as usize % slots
    }
}

/// How many slots, from a location's home slot on, may hold it.
const PROBE: usize = 8;

/// The fixed-size table that decides which panics capture a trace; see the module docs.
pub(crate) struct TraceReuse {
    window: Duration,
    slots: Mutex<Box<[Option<Slot>]>>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    location: LocationKey,
    /// The incident whose record has the location's trace.
    first: IncidentId,
    traced_at: Instant,
    /// Panics at the location since `first`.
    repeats: u64,
}

impl TraceReuse {
    /// A table of `locations` slots (at least one), each trace standing for `window`.
    pub(crate) fn new(locations: usize, window: Duration) -> TraceReuse {
        TraceReuse {
            window,
            slots: Mutex::new(vec![None; locations.max(1)].into_boxed_slice()),
        }
    }

    /// Decides whether `incident`, a panic at `location` at time `now`, captures a trace.
    pub(crate) fn plan(
        &self,
        location: LocationKey,
        incident: IncidentId,
        now: Instant,
    ) -> TracePlan {
        if self.window.is_zero() {
            return TracePlan::Capture;
        }
        // A hook that panicked while holding the lock left whole slots behind: each is written
        // in one assignment.
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let len = slots.len();
        let home = location.home(len);
        let mut free = None;
        let mut stalest: Option<(usize, Instant)> = None;
        for index in (0..PROBE.min(len)).map(|offset| (home + offset) % len) {
            match &mut slots[index] {
                Some(slot) if slot.location == location => {
                    if now.saturating_duration_since(slot.traced_at) < self.window {
                        slot.repeats += 1;
                        return TracePlan::Reuse {
                            first: slot.first,
                            repeats: slot.repeats,
                        };
                    }
                    // The window has passed: this panic is traced and starts a new one.
                    free = Some(index);
                    break;
                }
                Some(slot) => {
                    if stalest.is_none_or(|(_, traced_at)| slot.traced_at < traced_at) {
                        stalest = Some((index, slot.traced_at));
                    }
                }
                None => {
                    free.get_or_insert(index);
                }
            }
        }
        let index = free.or(stalest.map(|(index, _)| index)).unwrap_or(home);
        slots[index] = Some(Slot {
            location,
            first: incident,
            traced_at: now,
            repeats: 0,
        });
        TracePlan::Capture
    }
}

/// Whether `place` is in crashguard-runtime's own source: a path checkout (`…/crashguard-runtime/src/`)
/// or a registry one (`crashguard-runtime-0.1.0/src/`).
fn is_crashguard_source(place: &str) -> bool {
    place.match_indices("crashguard-runtime").any(|(index, _)| {
        let rest = &place[index + "crashguard-runtime".len()..];
        (index == 0 || place[..index].ends_with('/'))
            && (rest.starts_with("/src/")
                || rest
                    .strip_prefix('-')
                    .and_then(|version| version.split_once('/'))
                    .is_some_and(|(version, rest)| {
                        version.starts_with(|c: char| c.is_ascii_digit())
                            && rest.starts_with("src/")
                    }))
    })
}

/// `name` without the generic arguments that follow a name (`poll<alloc::boxed::Box<…>>` becomes
/// `poll`): the short names of inlined frames carry every type argument spelled out, often a few
/// hundred characters of them, which would fill the record before the trace ends. A qualified
/// path (`<T as Trait>::f`) keeps its brackets.
fn without_generic_arguments(name: &str) -> std::borrow::Cow<'_, str> {
    let bytes = name.as_bytes();
    let follows_a_name = |index: usize| {
        index > 0
            && matches!(bytes[index - 1], b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'}' | b':')
    };
    // `app::<impl app::Trait for app::Type>::f` names an impl, not arguments.
    let opens_arguments =
        |index: usize| follows_a_name(index) && !name[index + 1..].starts_with("impl ");
    if !(0..bytes.len()).any(|index| bytes[index] == b'<' && opens_arguments(index)) {
        return std::borrow::Cow::Borrowed(name);
    }
    let mut kept = String::with_capacity(name.len());
    let mut depth = 0usize;
    for (index, ch) in name.char_indices() {
        match ch {
            '<' if depth > 0 || opens_arguments(index) => depth += 1,
            // `fn() -> T` inside the arguments: that `>` closes nothing.
            '>' if depth > 0 && index > 0 && bytes[index - 1] != b'-' => depth -= 1,
            _ if depth > 0 => {}
            _ => kept.push(ch),
        }
    }
    // A turbofish (`f::<T>`) leaves its `::` behind.
    let kept = kept.replace("::::", "::");
    std::borrow::Cow::Owned(kept.strip_suffix("::").map(str::to_owned).unwrap_or(kept))
}

/// Drops what makes paths long without telling more: the registry's cache folder before a
/// dependency's `name-version/` and the commit hash in `/rustc/<hash>/`.
/// Skips the frames of Rust's own library that raised the panic on the user's behalf (an index
/// out of bounds is three frames of `core` and `alloc` above the user's): the trace starts at
/// the user's frame, where there is one.
fn first_user_frame(lines: &[(String, String)], start: usize, end: usize) -> usize {
    let is_library = |(name, place): &(String, String)| {
        let unbracketed = name.strip_prefix('<').unwrap_or(name);
        place.starts_with("library/")
            || (place.is_empty()
                && ["core::", "alloc::", "std::"]
                    .iter()
                    .any(|library| unbracketed.starts_with(library)))
    };
    lines[start..end]
        .iter()
        .position(|line| !is_library(line))
        .map_or(start, |first| start + first)
}

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
    use super::*;

    #[test]
    fn the_trace_starts_at_the_users_frame_past_the_librarys() {
        let frame = |name: &str, place: &str| (name.to_owned(), place.to_owned());
        let lines = [
            frame(
                "<usize as core::slice::index::SliceIndex<[T]>>::index",
                "library/core/src/slice/index.rs:255:10",
            ),
            frame(
                "core::slice::index::<impl core::ops::index::Index<I> for [T]>::index",
                "library/core/src/slice/index.rs:16:9",
            ),
            frame(
                "<alloc::vec::Vec<T,A> as core::ops::index::Index<I>>::index",
                "library/alloc/src/vec/mod.rs:3361:9",
            ),
            frame("app::lookup", "src/main.rs:7:5"),
            frame(
                "core::ops::function::FnOnce::call_once",
                "library/core/src/ops/function.rs:250:5",
            ),
        ];
        assert_eq!(first_user_frame(&lines, 0, lines.len()), 3);
        // Only library frames: nothing to skip to.
        assert_eq!(first_user_frame(&lines[..3], 0, 3), 0);
    }

    fn at(line: u32) -> LocationKey {
        LocationKey::new("src/main.rs", line, 5)
    }

    #[test]
    fn repeats_at_one_location_refer_to_the_first_until_the_window_passes() {
        let table = TraceReuse::new(16, Duration::from_secs(60));
        let start = Instant::now();
        let first = IncidentId::next();
        assert_eq!(table.plan(at(4), first, start), TracePlan::Capture);
        for repeats in 1..=3 {
            assert_eq!(
                table.plan(
                    at(4),
                    IncidentId::next(),
                    start + Duration::from_secs(repeats)
                ),
                TracePlan::Reuse { first, repeats }
            );
        }
        let later = start + Duration::from_secs(60);
        let fresh = IncidentId::next();
        assert_eq!(table.plan(at(4), fresh, later), TracePlan::Capture);
        assert_eq!(
            table.plan(at(4), IncidentId::next(), later),
            TracePlan::Reuse {
                first: fresh,
                repeats: 1
            }
        );
    }

    #[test]
    fn each_location_has_its_own_trace() {
        let table = TraceReuse::new(16, Duration::from_secs(60));
        let now = Instant::now();
        let (line_4, col_9) = (IncidentId::next(), IncidentId::next());
        assert_eq!(table.plan(at(4), line_4, now), TracePlan::Capture);
        assert_eq!(
            table.plan(LocationKey::new("src/main.rs", 4, 9), col_9, now),
            TracePlan::Capture
        );
        assert_eq!(
            table.plan(
                LocationKey::new("src/lib.rs", 4, 5),
                IncidentId::next(),
                now
            ),
            TracePlan::Capture
        );
        assert_eq!(
            table.plan(at(4), IncidentId::next(), now),
            TracePlan::Reuse {
                first: line_4,
                repeats: 1
            }
        );
    }

    #[test]
    fn a_full_table_forgets_the_location_traced_longest_ago() {
        let table = TraceReuse::new(2, Duration::from_secs(60));
        let start = Instant::now();
        let tick = |n: u64| start + Duration::from_millis(n);
        let (one, two, three) = (IncidentId::next(), IncidentId::next(), IncidentId::next());
        assert_eq!(table.plan(at(1), one, tick(1)), TracePlan::Capture);
        assert_eq!(table.plan(at(2), two, tick(2)), TracePlan::Capture);
        assert_eq!(table.plan(at(3), three, tick(3)), TracePlan::Capture);
        assert_eq!(
            table.plan(at(3), IncidentId::next(), tick(4)),
            TracePlan::Reuse {
                first: three,
                repeats: 1
            }
        );
        assert_eq!(
            table.plan(at(2), IncidentId::next(), tick(5)),
            TracePlan::Reuse {
                first: two,
                repeats: 1
            }
        );
        assert_eq!(
            table.plan(at(1), IncidentId::next(), tick(6)),
            TracePlan::Capture
        );
    }

    #[test]
    fn generic_arguments_after_a_name_are_dropped_and_qualified_paths_kept() {
        for (name, shown) in [
            (
                "poll<alloc::boxed::Box<(dyn Future<Output=u8> + Send)>>",
                "poll",
            ),
            ("{closure#0}<app::handler::{async_fn#0}>", "{closure#0}"),
            (
                "{async_block#0}<fn() -> app::Env, app::Env, ()>",
                "{async_block#0}",
            ),
            ("call_once<core::task::poll::Poll<&str>, F>", "call_once"),
            ("app::parse::<u64>", "app::parse"),
            (
                "<app::Orders<T> as app::Store>::load",
                "<app::Orders as app::Store>::load",
            ),
            ("app::main::{{closure}}", "app::main::{{closure}}"),
            (
                "app::<impl app::Store for app::Db>::load",
                "app::<impl app::Store for app::Db>::load",
            ),
        ] {
            assert_eq!(without_generic_arguments(name), shown, "{name}");
        }
    }

    #[test]
    fn crashguards_own_source_is_recognised_checked_out_or_from_the_registry() {
        assert!(is_crashguard_source(
            "/work/crashguard-runtime/src/guard.rs:47:39"
        ));
        assert!(is_crashguard_source(
            "crashguard-runtime-0.1.0/src/guard.rs:19:5"
        ));
        assert!(!is_crashguard_source(
            "/work/app/src/crashguard-runtime.rs:1:1"
        ));
        assert!(!is_crashguard_source(
            "my-crashguard-runtime-fork/src/lib.rs:1:1"
        ));
    }

    #[test]
    fn a_zero_window_traces_every_panic() {
        let table = TraceReuse::new(16, Duration::ZERO);
        let now = Instant::now();
        assert_eq!(
            table.plan(at(4), IncidentId::next(), now),
            TracePlan::Capture
        );
        assert_eq!(
            table.plan(at(4), IncidentId::next(), now),
            TracePlan::Capture
        );
    }

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
