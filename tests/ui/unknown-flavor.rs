#[crashguard::crash_guarded(flavor = "green_threads")]
async fn main() {}
