#[crashguard::crash_guarded]
fn handler() -> u32 {
    7
}

fn main() {
    handler();
}
