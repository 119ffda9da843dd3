//! The same small functions guarded and unguarded, shared by the happy-path tests and the
//! guard-overhead benchmark so that both measure the same code.

#![allow(dead_code)]

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use axum::response::IntoResponse;
use crashguard::{crash_guarded, PanicReport};

/// Pending once, as a handler waiting on a database would be.
pub struct YieldOnce(pub bool);

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

/// Polls `future` to the end on this thread with a waker that does nothing: no executor.
pub fn poll_to_end<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

pub fn no_total(_: &PanicReport) -> u64 {
    0
}

#[inline(never)]
pub fn add(a: u64, b: u64) -> u64 {
    a.wrapping_add(b)
}

#[crash_guarded(fallback = no_total)]
#[inline(never)]
pub fn guarded_add(a: u64, b: u64) -> u64 {
    a.wrapping_add(b)
}

pub async fn add_later(a: u64, b: u64) -> u64 {
    YieldOnce(false).await;
    a.wrapping_add(b)
}

#[crash_guarded(fallback = no_total)]
pub async fn guarded_add_later(a: u64, b: u64) -> u64 {
    YieldOnce(false).await;
    a.wrapping_add(b)
}

pub async fn ok() -> impl IntoResponse {
    YieldOnce(false).await;
    "ok"
}

#[crash_guarded(http)]
pub async fn guarded_ok() -> impl IntoResponse {
    YieldOnce(false).await;
    "ok"
}
