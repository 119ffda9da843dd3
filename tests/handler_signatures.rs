//! A guarded function keeps its signature: direct calls, receivers, generics, lifetimes, pattern
//! arguments and sync handlers behave as without the attribute, and a panic becomes the answer.
//! Denying warnings here pins that the expansion makes none (`cargo clippy` in CI adds clippy's).

#![deny(warnings)]

use std::fmt::Debug;

use axum::extract::Path;
use axum::http::{Response, StatusCode};
use crashguard::{crash_guarded, PanicReport};

// One line each, as written: rustc's `unused_braces` looks at braces on one line only.
#[rustfmt::skip]
#[crash_guarded(http)]
async fn one_expression() -> impl axum::response::IntoResponse { "x" }

#[rustfmt::skip]
#[crash_guarded(http)]
fn one_expression_sync() -> StatusCode { StatusCode::NO_CONTENT }

#[rustfmt::skip]
#[crash_guarded(fallback = no_length)]
fn one_expression_with_fallback(text: &str) -> usize { text.len() }

fn no_length(_: &PanicReport) -> usize {
    0
}

#[crash_guarded(http)]
async fn returns_early(flag: bool) -> Result<&'static str, StatusCode> {
    if flag {
        return Ok("early");
    }
    Err(StatusCode::NOT_FOUND)
}

#[tokio::test]
async fn one_expression_bodies_expand_without_a_warning_and_still_answer() {
    use axum::response::IntoResponse;
    let answer = one_expression().await.into_response();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(one_expression_sync(), StatusCode::NO_CONTENT);
    assert_eq!(one_expression_with_fallback("four"), 4);
    assert_eq!(returns_early(true).await, Ok("early"));
    assert_eq!(returns_early(false).await, Err(StatusCode::NOT_FOUND));
}

#[crash_guarded(http)]
fn render_sync(name: &str) -> Response<String> {
    if name.is_empty() {
        panic!("empty name");
    }
    Response::new(format!("hello {name}"))
}

#[test]
fn a_sync_handler_returns_its_answer_or_the_500() {
    assert_eq!(render_sync("ada").body(), "hello ada");
    let failed = render_sync("");
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(failed.headers()["content-type"], "application/problem+json");
    assert!(failed.headers().contains_key("x-incident-id"));
    assert!(!failed.body().contains("empty name"));
}

fn not_found(_: &PanicReport) -> Option<&'static str> {
    None
}

struct Catalogue {
    items: Vec<String>,
}

impl Catalogue {
    #[crash_guarded(fallback = not_found)]
    fn item<'a, K>(&'a self, key: K) -> Option<&'a str>
    where
        K: TryInto<usize> + Debug,
        K::Error: Debug,
    {
        Some(self.items[key.try_into().unwrap()].as_str())
    }

    #[crash_guarded(fallback = no_count)]
    async fn count_async(&self, Path(limit): Path<usize>) -> Result<usize, String> {
        tokio::task::yield_now().await;
        if limit == 0 {
            return Err("limit 0".to_owned());
        }
        assert!(limit <= self.items.len(), "limit {limit} too large");
        Ok(limit)
    }
}

fn no_count(report: &PanicReport) -> Result<usize, String> {
    Err(format!("incident {}", report.incident_id()))
}

#[test]
fn methods_with_receivers_generics_and_where_clauses_keep_working() {
    let catalogue = Catalogue {
        items: vec!["tea".to_owned(), "cake".to_owned()],
    };
    assert_eq!(catalogue.item(1_u8), Some("cake"));
    assert_eq!(
        catalogue.item(9_u64),
        None,
        "out of bounds panics, the fallback answers"
    );
    assert_eq!(
        catalogue.item(-1_i32),
        None,
        "a failed conversion panics too"
    );
}

#[tokio::test]
async fn async_methods_with_pattern_arguments_keep_return_and_question_mark() {
    let catalogue = Catalogue {
        items: vec!["tea".to_owned(), "cake".to_owned()],
    };
    assert_eq!(catalogue.count_async(Path(2)).await, Ok(2));
    assert_eq!(
        catalogue.count_async(Path(0)).await,
        Err("limit 0".to_owned())
    );
    let failed = catalogue.count_async(Path(7)).await.unwrap_err();
    assert!(failed.starts_with("incident "), "{failed}");
}

#[crash_guarded(http)]
async fn generic_handler<T: std::str::FromStr>(
    Path(raw): Path<String>,
) -> Result<String, StatusCode>
where
    T::Err: Debug,
{
    let value: T = raw.parse().unwrap();
    let _ = value;
    Ok(format!("parsed {raw}"))
}

#[tokio::test]
async fn a_generic_async_handler_is_called_directly_like_any_function() {
    assert_eq!(
        generic_handler::<u8>(Path("7".to_owned())).await,
        Ok("parsed 7".to_owned())
    );
    assert_eq!(
        generic_handler::<u8>(Path("seven".to_owned())).await,
        Err(StatusCode::INTERNAL_SERVER_ERROR)
    );
}

#[tokio::test]
async fn guarded_handlers_are_still_axum_handlers() {
    let app: axum::Router = axum::Router::new()
        .route("/{raw}", axum::routing::get(generic_handler::<u32>))
        .route("/", axum::routing::get(|| async { "root" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::new();
    let ok = client
        .get(format!("http://{addr}/42"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "parsed 42");
    let failed = client.get(format!("http://{addr}/x")).send().await.unwrap();
    assert_eq!(failed.status(), 500);
}

#[crash_guarded(http)]
async fn listing(
    Path(page): Path<String>,
) -> Result<impl axum::response::IntoResponse, StatusCode> {
    let page: u32 = page.parse().map_err(|_| StatusCode::BAD_REQUEST)?;
    assert!(page < 100, "page {page} is past the end");
    Ok(format!("page {page}"))
}

#[tokio::test]
async fn a_result_of_impl_into_response_keeps_question_mark_and_answers_a_panic_with_err() {
    use axum::response::IntoResponse;
    let ok = listing(Path("3".to_owned())).await.unwrap().into_response();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        listing(Path("three".to_owned())).await.err(),
        Some(StatusCode::BAD_REQUEST)
    );
    assert_eq!(
        listing(Path("300".to_owned())).await.err(),
        Some(StatusCode::INTERNAL_SERVER_ERROR)
    );
}
