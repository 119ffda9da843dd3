#[crashguard::crash_guarded(retries = 3)]
fn main() {}
