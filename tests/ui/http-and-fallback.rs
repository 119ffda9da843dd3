fn zero(_: &crashguard::PanicReport) -> u32 {
    0
}

#[crashguard::crash_guarded(http, fallback = zero)]
fn price() -> u32 {
    7
}

fn main() {
    price();
}
