#[crashguard::crash_guarded(crate = "not a path")]
fn main() {}
