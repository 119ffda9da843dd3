#[crashguard::crash_guarded]
fn main() -> i32 {
    0
}
