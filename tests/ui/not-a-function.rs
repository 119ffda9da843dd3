use crashguard::crash_guarded;

#[crash_guarded]
pub struct Service;

fn main() {}
