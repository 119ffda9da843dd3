#[crashguard::crash_guarded(grace_period = "soon")]
fn main() {}
