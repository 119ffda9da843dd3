fn zero() -> u32 {
    0
}

#[crashguard::crash_guarded(fallback = zero)]
fn price() -> u32 {
    7
}

fn main() {
    let _ = price();
}
