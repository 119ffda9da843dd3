#[crashguard::crash_guarded(flavor = "current_thread")]
fn main() {}
