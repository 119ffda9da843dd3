#[crashguard::crash_guarded(http)]
fn touch() {}

fn main() {
    touch();
}
