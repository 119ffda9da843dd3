//! Signal names, for records and messages.

/// The conventional name of a signal number (`SIGTERM`), or `"signal"` for one without a name
/// here.
pub(crate) fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGPIPE => "SIGPIPE",
        _ => "signal",
    }
}

/// Sleeps with nanosleep(2), which is async-signal-safe (std's `thread::sleep` promises nothing
/// of the kind).
pub(crate) fn sleep(duration: std::time::Duration) {
    let pause = libc::timespec {
        // `as _`: time_t, which the libc crate deprecates naming on musl.
        tv_sec: duration.as_secs().min(i32::MAX as u64) as _,
        tv_nsec: libc::c_long::from(duration.subsec_nanos() as i32),
    };
    // SAFETY: `pause` is a valid timespec; a null remainder pointer is allowed.
    unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
}
