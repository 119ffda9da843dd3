//! A panic in a `panic = "abort"` program: the panic record, then the SIGABRT it ends in.

#[crashguard::crash_guarded]
fn main() {
    panic!("boom with panic = abort");
}
