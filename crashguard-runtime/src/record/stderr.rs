//! Writing to fd 2 without blocking for long, whatever it is.
//!
//! A log reader that stops reading (a stalled node agent) fills the pipe, and a plain `write(2)`
//! to a full pipe blocks until someone reads: a panic record would hang the request, an exit
//! record the whole process, until the kubelet's SIGKILL. So:
//!
//! - When stderr is a pipe or FIFO, install opens a handle of crashguard's own on it
//!   (`/proc/self/fd/2`, non-blocking): the application's fd 2 keeps its own flags, and a write
//!   crashguard cannot make at once waits in `poll(2)` instead, for a bounded time.
//! - A socket is written with `MSG_DONTWAIT`; a regular file or a terminal as it is. A pipe with
//!   no handle of crashguard's (no `/proc`, or fd 2 pointed elsewhere after install) is polled
//!   before each write, and written a page at a time.
//! - Each record waits at most [`PATIENCE`] for room. One that gives up marks stderr as stalled,
//!   and while it is, records do not wait at all: one try, then the record is lost, and the
//!   process goes on as it would have. The first record that gets through clears the mark.
//! - A record cut short (room for its start only) is remembered: the next one starts on a fresh
//!   line, so that the cut record cannot swallow it.
//!
//! Every function here is async-signal-safe.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a pipe holds in one buffer, and takes whole in one write (`PIPE_BUF`).
const PIPE_PAGE: usize = 4096;

/// The longest a record waits for a reader to make room.
pub(super) const PATIENCE: Duration = Duration::from_secs(1);

/// crashguard's own non-blocking handle on the pipe fd 2 is; -1 when there is none.
static OWN: AtomicI32 = AtomicI32::new(-1);
/// What fd 2 was when that handle was opened: if the application points fd 2 elsewhere later,
/// records follow fd 2.
static OWN_DEVICE: AtomicU64 = AtomicU64::new(0);
static OWN_INODE: AtomicU64 = AtomicU64::new(0);
/// fd 2 is a socket.
static SOCKET: AtomicBool = AtomicBool::new(false);
/// fd 2 is a pipe crashguard has no handle of its own on: poll before writing to it.
static BARE_PIPE: AtomicBool = AtomicBool::new(false);
/// A record gave up waiting for room and none has got through since.
static STALLED: AtomicBool = AtomicBool::new(false);
/// The last record was cut short.
static CUT: AtomicBool = AtomicBool::new(false);

/// Looks at what fd 2 is and, for a pipe, opens crashguard's own handle on it. Install calls it
/// once.
pub(crate) fn prepare() {
    let Some(status) = status_of(libc::STDERR_FILENO) else {
        return;
    };
    match status.st_mode & libc::S_IFMT {
        libc::S_IFSOCK => SOCKET.store(true, Ordering::Relaxed),
        libc::S_IFIFO => {
            // SAFETY: a NUL-terminated path; open(2) has no other preconditions.
            let own = unsafe {
                libc::open(
                    c"/proc/self/fd/2".as_ptr(),
                    libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
                )
            };
            // Without /proc (or with no reader left), fd 2 it is, with poll before each write.
            if own >= 0 {
                let (device, inode) = identity(&status);
                OWN_DEVICE.store(device, Ordering::Relaxed);
                OWN_INODE.store(inode, Ordering::Relaxed);
                OWN.store(own, Ordering::Release);
            } else {
                BARE_PIPE.store(true, Ordering::Relaxed);
            }
        }
        _ => {}
    }
}

/// Which file a status is of: its device and inode.
// `st_dev` is a u64 on Linux, an i32 on macOS.
#[allow(clippy::unnecessary_cast)]
fn identity(status: &libc::stat) -> (u64, u64) {
    (status.st_dev as u64, status.st_ino as u64)
}

fn status_of(fd: i32) -> Option<libc::stat> {
    // SAFETY: an all-zero stat is a valid value for fstat(2) to fill in.
    let mut status: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat(2) writes only into `status`; it is async-signal-safe.
    (unsafe { libc::fstat(fd, &mut status) } == 0).then_some(status)
}

/// Don't wait; and where the system has it, no SIGPIPE for a peer that left (Rust programs
/// ignore SIGPIPE anyway, but a library's process may not).
#[cfg(target_os = "linux")]
const SEND_FLAGS: i32 = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
#[cfg(not(target_os = "linux"))]
const SEND_FLAGS: i32 = libc::MSG_DONTWAIT;

/// Where a write goes, and how it avoids blocking.
#[derive(Clone, Copy)]
enum Target {
    /// crashguard's non-blocking handle on fd 2's pipe.
    Own(i32),
    /// fd 2, a socket: `send` with `MSG_DONTWAIT`.
    Socket,
    /// fd 2 itself: a file or a terminal, which take what is written.
    Stderr,
    /// fd 2, a pipe that may be full: `poll` first, then a page at a time.
    BarePipe,
}

impl Target {
    fn now() -> Target {
        let own = OWN.load(Ordering::Acquire);
        if own >= 0 {
            let still_the_same = status_of(libc::STDERR_FILENO).is_some_and(|status| {
                identity(&status)
                    == (
                        OWN_DEVICE.load(Ordering::Relaxed),
                        OWN_INODE.load(Ordering::Relaxed),
                    )
            });
            if still_the_same {
                return Target::Own(own);
            }
            // fd 2 is something else now: whatever it is, it may be full.
            return Target::BarePipe;
        }
        if SOCKET.load(Ordering::Relaxed) {
            Target::Socket
        } else if BARE_PIPE.load(Ordering::Relaxed) {
            Target::BarePipe
        } else {
            Target::Stderr
        }
    }

    fn fd(self) -> i32 {
        match self {
            Target::Own(fd) => fd,
            Target::Socket | Target::Stderr | Target::BarePipe => libc::STDERR_FILENO,
        }
    }

    /// One write; the byte count, or the error.
    fn write(self, bytes: &[u8]) -> Result<usize, i32> {
        // SAFETY: `bytes` is valid for its length; write(2) and send(2) only read it and are
        // async-signal-safe.
        let written = unsafe {
            match self {
                Target::Socket => libc::send(
                    libc::STDERR_FILENO,
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    SEND_FLAGS,
                ),
                Target::Own(fd) => libc::write(fd, bytes.as_ptr().cast(), bytes.len()),
                Target::Stderr | Target::BarePipe => {
                    libc::write(libc::STDERR_FILENO, bytes.as_ptr().cast(), bytes.len())
                }
            }
        };
        if written >= 0 {
            Ok(written as usize)
        } else {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        }
    }

    /// Whether there is room within `timeout`.
    fn writable_within(self, timeout: Duration) -> bool {
        let mut descriptor = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd; poll(2) is async-signal-safe.
        unsafe { libc::poll(&mut descriptor, 1, millis) > 0 }
    }
}

/// Writes all of `line`, waiting at most [`PATIENCE`] (none while stderr is stalled); a line
/// that cannot be written whole is lost, or left cut short and remembered as such.
pub(super) fn write_all(line: &[u8]) {
    let target = Target::now();
    let started = Instant::now();
    let patience = if STALLED.load(Ordering::Relaxed) {
        Duration::ZERO
    } else {
        PATIENCE
    };
    if CUT.load(Ordering::Relaxed) && write_whole(target, b"\n", started, patience) {
        CUT.store(false, Ordering::Relaxed);
    }
    write_whole(target, line, started, patience);
}

/// Writes `bytes` whole if it can within `patience` of `started`; true if it did.
fn write_whole(target: Target, mut bytes: &[u8], started: Instant, patience: Duration) -> bool {
    let whole = bytes.len();
    // fd 2 itself may block: write only when there is room, and no more than a pipe's page,
    // which the room poll(2) reports always holds.
    let checks_first = matches!(target, Target::BarePipe);
    while !bytes.is_empty() {
        let left = patience.saturating_sub(started.elapsed());
        if checks_first && !target.writable_within(left) {
            break;
        }
        let chunk = if checks_first {
            &bytes[..bytes.len().min(PIPE_PAGE)]
        } else {
            bytes
        };
        match target.write(chunk) {
            Ok(0) => break,
            Ok(written) => {
                bytes = &bytes[written..];
                STALLED.store(false, Ordering::Relaxed);
            }
            Err(libc::EINTR) => {}
            Err(libc::EAGAIN) if !left.is_zero() && target.writable_within(left) => {}
            Err(libc::EAGAIN) => {
                STALLED.store(true, Ordering::Relaxed);
                break;
            }
            // EPIPE, EBADF, ENOSPC, …: the line is lost, the process goes on as it would have.
            Err(_) => break,
        }
    }
    if !bytes.is_empty() && bytes.len() < whole {
        CUT.store(true, Ordering::Relaxed);
    }
    bytes.is_empty()
}
