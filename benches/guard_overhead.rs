//! What a guard costs when nothing panics: a guarded call beside the same call unguarded, sync
//! and async, and a guarded axum handler beside the unguarded one.

use std::future::Future;
use std::hint::black_box;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use axum::response::IntoResponse;
use crashguard::{crash_guarded, PanicReport};
use criterion::{criterion_group, criterion_main, Criterion};

fn no_total(_: &PanicReport) -> u64 {
    0
}

#[inline(never)]
fn add(a: u64, b: u64) -> u64 {
    a.wrapping_add(b)
}

#[crash_guarded(fallback = no_total)]
#[inline(never)]
fn guarded_add(a: u64, b: u64) -> u64 {
    a.wrapping_add(b)
}

/// Pending once, as a handler waiting on a database would be.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if std::mem::replace(&mut self.0, true) {
            Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

async fn add_later(a: u64, b: u64) -> u64 {
    YieldOnce(false).await;
    a.wrapping_add(b)
}

#[crash_guarded(fallback = no_total)]
async fn guarded_add_later(a: u64, b: u64) -> u64 {
    YieldOnce(false).await;
    a.wrapping_add(b)
}

async fn ok() -> impl IntoResponse {
    YieldOnce(false).await;
    "ok"
}

#[crash_guarded(http)]
async fn guarded_ok() -> impl IntoResponse {
    YieldOnce(false).await;
    "ok"
}

/// Polls `future` to the end with a waker that does nothing: no executor in the measurement.
fn poll_to_end<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

fn sync_call(c: &mut Criterion) {
    let mut group = c.benchmark_group("sync call");
    group.bench_function("unguarded", |b| b.iter(|| add(black_box(1), black_box(2))));
    group.bench_function("guarded", |b| {
        b.iter(|| guarded_add(black_box(1), black_box(2)))
    });
    group.finish();
}

fn async_call(c: &mut Criterion) {
    let mut group = c.benchmark_group("async call, pending once");
    group.bench_function("unguarded", |b| {
        b.iter(|| poll_to_end(add_later(black_box(1), black_box(2))))
    });
    group.bench_function("guarded", |b| {
        b.iter(|| poll_to_end(guarded_add_later(black_box(1), black_box(2))))
    });
    group.finish();
}

fn axum_handler(c: &mut Criterion) {
    let mut group = c.benchmark_group("axum handler, pending once");
    group.bench_function("unguarded", |b| b.iter(|| poll_to_end(ok())));
    group.bench_function("guarded (http)", |b| b.iter(|| poll_to_end(guarded_ok())));
    group.finish();
}

criterion_group!(benches, sync_call, async_call, axum_handler);
criterion_main!(benches);
