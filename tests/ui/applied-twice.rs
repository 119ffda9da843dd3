#[crashguard::crash_guarded]
#[crashguard::crash_guarded]
fn main() {}
