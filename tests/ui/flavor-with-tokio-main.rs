#[crashguard::crash_guarded(flavor = "current_thread")]
#[tokio::main]
async fn main() {}
