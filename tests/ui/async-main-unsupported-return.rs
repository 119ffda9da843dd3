#[crashguard::crash_guarded(flavor = "current_thread")]
async fn main() -> i32 {
    0
}
