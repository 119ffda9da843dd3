fn zero(_: &crashguard::PanicReport) -> u32 {
    0
}

#[crashguard::crash_guarded(fallback = zero, grace_period = "5s")]
fn price() -> u32 {
    7
}

fn main() {
    price();
}
