#[crashguard::crash_guarded(fallback)]
fn price() -> u32 {
    7
}

fn main() {
    price();
}
