//! What is running on this thread, for the records of panics there: the `#[crash_guarded]`
//! function, and the request being served, as any integration describes it (method, path,
//! request id), so that the panic hook needs to know no framework.

use std::cell::Cell;
use std::marker::PhantomData;
use std::ptr::NonNull;

thread_local! {
    /// The `#[crash_guarded]` function running on this thread, if any.
    static GUARDED_FUNCTION: Cell<Option<&'static str>> = const { Cell::new(None) };
    /// The request being served on this thread, if an integration said so.
    static CURRENT_REQUEST: Cell<Option<NonNull<dyn ServedRequest>>> = const { Cell::new(None) };
}

/// Names the guarded function on this thread while alive; restores the outer name on drop.
pub(crate) struct FunctionScope {
    outer: Option<&'static str>,
}

impl FunctionScope {
    #[inline]
    pub(crate) fn enter(function: &'static str) -> FunctionScope {
        FunctionScope {
            outer: GUARDED_FUNCTION.with(|current| current.replace(Some(function))),
        }
    }
}

impl Drop for FunctionScope {
    #[inline]
    fn drop(&mut self) {
        GUARDED_FUNCTION.with(|current| current.set(self.outer));
    }
}

/// The guarded function running on this thread.
pub(crate) fn current_function() -> Option<&'static str> {
    GUARDED_FUNCTION.with(Cell::get)
}

/// A request as a panic record names it, whatever framework is serving it.
#[cfg_attr(not(feature = "tower"), allow(dead_code))]
pub(crate) trait ServedRequest {
    /// `GET`, `POST`, …
    fn method(&self) -> &str;
    /// The path, without the query string (which may carry secrets).
    fn path(&self) -> &str;
    /// The route template the framework matched (`/users/{id}`), if it says: what labels the
    /// panic counter, where the raw path would make a label per user.
    fn route(&self) -> Option<&str>;
    /// The `x-request-id` header's bytes, if the request has one.
    fn request_id(&self) -> Option<&[u8]>;
}

/// Publishes a request to this thread's panic records while alive; restores the outer one on
/// drop.
#[cfg_attr(not(feature = "tower"), allow(dead_code))]
pub(crate) struct RequestScope<'a> {
    outer: Option<NonNull<dyn ServedRequest>>,
    /// The scope borrows the request, so the request outlives it.
    _request: PhantomData<&'a dyn ServedRequest>,
}

#[cfg_attr(not(feature = "tower"), allow(dead_code))]
impl<'a> RequestScope<'a> {
    /// Makes `request` the one being served until the scope is dropped.
    #[inline]
    pub(crate) fn enter(request: &'a (dyn ServedRequest + 'static)) -> RequestScope<'a> {
        RequestScope {
            outer: CURRENT_REQUEST.with(|current| current.replace(Some(NonNull::from(request)))),
            _request: PhantomData,
        }
    }
}

impl Drop for RequestScope<'_> {
    #[inline]
    fn drop(&mut self) {
        CURRENT_REQUEST.with(|current| current.set(self.outer));
    }
}

/// Runs `read` with the request being served on this thread, if any.
pub(crate) fn current_request<R>(read: impl FnOnce(Option<&dyn ServedRequest>) -> R) -> R {
    let current = CURRENT_REQUEST.with(Cell::get);
    // SAFETY: a pointer is stored only by a live `RequestScope`, which borrows the request for
    // its whole life and takes the pointer out when dropped, on this thread (it is not `Send`:
    // it holds a raw pointer). So the request is alive for every read made while it is stored.
    read(current.map(|request| unsafe { request.as_ref() }))
}
