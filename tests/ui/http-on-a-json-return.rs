use axum::Json;

#[crashguard::crash_guarded(http)]
async fn user() -> Json<u64> {
    Json(7)
}

fn main() {
    let _ = user();
}
