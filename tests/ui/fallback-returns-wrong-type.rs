fn no_price(_: &crashguard::PanicReport) -> String {
    String::new()
}

#[crashguard::crash_guarded(fallback = no_price)]
fn price() -> u32 {
    7
}

fn main() {
    price();
}
