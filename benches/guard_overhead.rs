//! What a guard costs when nothing panics: a guarded call beside the same call unguarded, sync
//! and async, and a guarded axum handler beside the unguarded one.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

#[path = "../tests/support/guarded_samples.rs"]
mod samples;

use samples::{add, add_later, guarded_add, guarded_add_later, guarded_ok, ok, poll_to_end};

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
