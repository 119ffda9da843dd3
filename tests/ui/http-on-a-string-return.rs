#[crashguard::crash_guarded(http)]
async fn greet() -> String {
    "hello".to_owned()
}

fn main() {
    let _ = greet();
}
