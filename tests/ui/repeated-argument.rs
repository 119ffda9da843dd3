#[crashguard::crash_guarded(backtrace = false, grace_period = "5s", backtrace = true)]
fn main() {}
