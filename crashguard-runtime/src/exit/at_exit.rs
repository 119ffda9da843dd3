//! An exit record for a process that ends by calling `exit` itself (`std::process::exit(3)` in
//! the application, a library that exits): the C library runs the handlers registered here, on
//! the exiting thread, after the application's own `atexit` handlers registered later.
//!
//! glibc's `on_exit` hands the handler the exit status; musl has no `on_exit`, and its `atexit`
//! handlers are not told the status, so there the record says the code is unknown.

use std::ffi::{c_int, c_void};

use super::{claim_exit_record, termination, write_exit_record, Detail, ExitReason};

/// Registers the handler once.
pub(crate) fn register() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            extern "C" {
                /// glibc: like `atexit`, with the exit status.
                fn on_exit(
                    function: extern "C" fn(c_int, *mut c_void),
                    argument: *mut c_void,
                ) -> c_int;
            }
            // SAFETY: registering a function that lives as long as the program; the argument is
            // unused.
            unsafe { on_exit(exited_with, std::ptr::null_mut()) };
        }
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        {
            extern "C" fn exited() {
                exited_with_unknown_code();
            }
            // SAFETY: registering a function that lives as long as the program.
            unsafe { libc::atexit(exited) };
        }
    });
}

/// The process is exiting with `status` through `exit`: if no exit record was written (crashguard
/// writes its own before it exits), this is the one.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
extern "C" fn exited_with(status: c_int, _: *mut c_void) {
    if !claim_exit_record() {
        return;
    }
    let reason = ExitReason::Called { code: Some(status) };
    write_exit_record(status, &reason);
    if status != 0 {
        termination::write(&Detail {
            code: status,
            reason: &reason,
        });
    }
}

#[cfg_attr(all(target_os = "linux", target_env = "gnu"), allow(dead_code))]
fn exited_with_unknown_code() {
    if claim_exit_record() {
        write_exit_record(-1, &ExitReason::Called { code: None });
    }
}
