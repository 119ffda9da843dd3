//! A fixture on a pseudo-terminal, as a person runs it: stdin, stdout and stderr are the
//! terminal, which is the fixture's controlling terminal, so that typing Ctrl-C sends SIGINT
//! through the terminal's own line discipline (and echoes `^C`).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{wait_at_most, Fixture};

pub struct OnTerminal {
    child: Child,
    keyboard: File,
    screen: Arc<Mutex<Vec<u8>>>,
    reader: JoinHandle<()>,
}

impl OnTerminal {
    /// Starts `fixture` with a new pseudo-terminal as its stdin, stdout and stderr.
    pub fn start(fixture: Fixture) -> OnTerminal {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two descriptors into the integers it is given; the name,
        // termios and window size pointers may be null.
        let opened = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
        for fd in [master, slave] {
            // SAFETY: fcntl on descriptors just opened. Close-on-exec, so that no fixture another
            // test starts meanwhile holds the terminal open after this one's child exits.
            assert_eq!(
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) },
                0
            );
        }
        // SAFETY: both descriptors were just opened and are owned by nothing else.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let mut command = fixture.command;
        command
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: setsid and ioctl are async-signal-safe, as code between fork and exec must be;
        // the terminal becomes the new session's controlling terminal, as a shell's is.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("spawn on a terminal");
        // The parent's copies of the slave are gone with `command`'s: the child's end is the
        // last, so reading the master ends (EIO) once the child exits.
        drop(command);
        let keyboard = File::from(master.try_clone().unwrap());
        let mut screen_end = File::from(master);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let sink = screen.clone();
        let reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(read @ 1..) = screen_end.read(&mut chunk) {
                sink.lock().unwrap().extend_from_slice(&chunk[..read]);
            }
        });
        OnTerminal {
            child,
            keyboard,
            screen,
            reader,
        }
    }

    /// What the terminal shows so far, its `\r\n` as `\n`.
    pub fn screen(&self) -> String {
        let bytes = self.screen.lock().unwrap().clone();
        String::from_utf8(bytes)
            .expect("the terminal got UTF-8")
            .replace("\r\n", "\n")
    }

    /// Waits up to 20 s for the terminal to show `text`.
    pub fn wait_for(&self, text: &str) {
        let started = Instant::now();
        while !self.screen().contains(text) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the terminal never showed {text:?}; it shows {:?}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Types `keys` on the terminal.
    pub fn type_keys(&mut self, keys: &[u8]) {
        self.keyboard.write_all(keys).unwrap();
    }

    /// Waits for the program to end; its status and everything the terminal showed.
    pub fn finish(mut self) -> (ExitStatus, String) {
        let status = wait_at_most(&mut self.child, Duration::from_secs(30));
        drop(self.keyboard);
        self.reader.join().unwrap();
        let screen = String::from_utf8(self.screen.lock().unwrap().clone())
            .expect("the terminal got UTF-8")
            .replace("\r\n", "\n");
        (status, screen)
    }
}
