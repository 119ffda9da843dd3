//! The Kubernetes termination message: a one-line summary of how the process ended, which
//! `kubectl describe pod` shows as the container's last state message.
//!
//! It is overwritten, never appended to: the last death is the one to show. The kubelet keeps at
//! most 4096 bytes of it, so crashguard writes no more than that. The file is the configured one
//! (`CRASHGUARD_TERMINATION_LOG`, or `/dev/termination-log` when it exists and is writable),
//! opened without following a symlink and without waiting (a FIFO with no reader is skipped),
//! and written from a fixed buffer: the one writer serves an ordinary exit and a fatal-signal
//! handler alike.

use std::ffi::CString;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use super::TERMINATION_MESSAGE_MAX_BYTES;

/// The termination log's path as the C string `open(2)` takes, made once: a signal handler may
/// not allocate it.
static PATH: OnceLock<Option<CString>> = OnceLock::new();

/// Makes the path ready for a signal handler. Install calls it before the handlers exist.
#[cfg_attr(not(fatal_signals), allow(dead_code))]
pub(crate) fn prepare() {
    path();
}

fn path() -> Option<&'static CString> {
    PATH.get_or_init(|| {
        use std::os::unix::ffi::OsStrExt;
        let path = crate::state::settings().termination_log.as_deref()?;
        CString::new(path.as_os_str().as_bytes()).ok()
    })
    .as_ref()
}

/// The watcher is writing the message in advance.
static WRITING_IN_ADVANCE: AtomicBool = AtomicBool::new(false);

/// Writes what a process killed without a word leaves: unless the process is ending, whose own
/// summary must not be overwritten by this one.
pub(crate) fn write_in_advance(message: &dyn fmt::Display) {
    // Announce, then look; an ending announces (claims the exit), then looks at this flag: with
    // both sequentially consistent, one of the two sees the other.
    WRITING_IN_ADVANCE.store(true, Ordering::SeqCst);
    if !super::is_ending() {
        write_file(message);
    }
    WRITING_IN_ADVANCE.store(false, Ordering::SeqCst);
}

/// Replaces the termination log's content with `message`, the summary of how the process
/// ended, cut to what the kubelet keeps. A message that cannot be written changes nothing about
/// how the process ends. Allocates nothing once [`prepare`] ran.
pub(crate) fn write(message: &dyn fmt::Display) {
    // A message being written in advance finishes first (a bounded wait: it takes
    // microseconds), so that this one is the last word.
    for _ in 0..2000 {
        if !WRITING_IN_ADVANCE.load(Ordering::SeqCst) {
            break;
        }
        crate::os::sleep(std::time::Duration::from_micros(50));
    }
    write_file(message);
}

fn write_file(message: &dyn fmt::Display) {
    let Some(path) = path() else {
        return;
    };
    let mut text = FixedText {
        bytes: [0; TERMINATION_MESSAGE_MAX_BYTES],
        length: 0,
    };
    let _ = fmt::write(&mut text, format_args!("{message}"));
    // SAFETY: `path` is NUL-terminated; open, fstat, write and close are async-signal-safe, and
    // `text` holds `length` initialised bytes.
    unsafe {
        let fd = libc::open(
            path.as_ptr(),
            libc::O_WRONLY
                | libc::O_CREAT
                | libc::O_TRUNC
                | libc::O_CLOEXEC
                | libc::O_NOFOLLOW
                | libc::O_NONBLOCK,
            0o644,
        );
        if fd < 0 {
            return;
        }
        let mut status: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut status) == 0 && status.st_mode & libc::S_IFMT == libc::S_IFREG {
            libc::write(fd, text.bytes.as_ptr().cast(), text.length);
        }
        libc::close(fd);
    }
}

/// Text formatted into a fixed buffer, cut at its end on a character boundary.
struct FixedText {
    bytes: [u8; TERMINATION_MESSAGE_MAX_BYTES],
    length: usize,
}

impl fmt::Write for FixedText {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for ch in text.chars() {
            let mut utf8 = [0; 4];
            let encoded = ch.encode_utf8(&mut utf8).as_bytes();
            if self.length + encoded.len() > self.bytes.len() {
                return Err(fmt::Error);
            }
            self.bytes[self.length..self.length + encoded.len()].copy_from_slice(encoded);
            self.length += encoded.len();
        }
        Ok(())
    }
}
