#[derive(Debug)]
pub struct ApiError;

#[crashguard::crash_guarded(http)]
fn user() -> Result<String, ApiError> {
    Ok("7".to_owned())
}

fn main() {
    let _ = user();
}
