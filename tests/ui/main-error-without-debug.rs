pub struct ConfigError;

#[crashguard::crash_guarded]
fn main() -> Result<(), ConfigError> {
    Ok(())
}
