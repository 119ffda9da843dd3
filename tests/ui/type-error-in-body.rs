#[crashguard::crash_guarded]
fn main() -> Result<(), String> {
    let port: u16 = "8080";
    println!("{port}");
    Ok(())
}
