use std::future::Future;

#[crashguard::crash_guarded(http)]
fn handler() -> impl Future<Output = &'static str> {
    async { panic!("a panic while the future runs") }
}

fn main() {}
