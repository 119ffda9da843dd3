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
    /// The current span's OpenTelemetry ids, read when the innermost scope was entered: the hook
    /// reads this copy, never the span, whose locks a panic may hold.
    static SCOPE_TRACE: Cell<Option<TraceContext>> = const { Cell::new(None) };
}

/// While alive, the current span's OpenTelemetry ids are this thread's scope trace (feature
/// `opentelemetry`; nothing without it); restores the outer ids on drop.
pub(crate) struct TraceScope {
    #[cfg(feature = "opentelemetry")]
    outer: Option<TraceContext>,
}

impl TraceScope {
    #[inline]
    fn enter() -> TraceScope {
        TraceScope {
            #[cfg(feature = "opentelemetry")]
            outer: SCOPE_TRACE.with(|current| current.replace(opentelemetry_trace())),
        }
    }
}

impl Drop for TraceScope {
    #[inline]
    fn drop(&mut self) {
        #[cfg(feature = "opentelemetry")]
        SCOPE_TRACE.with(|current| current.set(self.outer));
    }
}

/// Names the guarded function on this thread while alive; restores the outer name on drop.
pub(crate) struct FunctionScope {
    outer: Option<&'static str>,
    _trace: TraceScope,
}

impl FunctionScope {
    #[inline]
    pub(crate) fn enter(function: &'static str) -> FunctionScope {
        FunctionScope {
            outer: GUARDED_FUNCTION.with(|current| current.replace(Some(function))),
            _trace: TraceScope::enter(),
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
#[cfg_attr(not(feature = "http"), allow(dead_code))]
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
    /// The W3C `traceparent` header's bytes, if the request has one: read only when a panic is
    /// recorded.
    fn traceparent(&self) -> Option<&[u8]>;
}

/// A request's place in a distributed trace, from its W3C `traceparent`
/// (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`), named as OpenTelemetry's log data
/// model names the fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceContext {
    trace_id: [u8; 32],
    span_id: [u8; 16],
    trace_flags: [u8; 2],
}

impl TraceContext {
    /// The trace context of a `traceparent` value, if it is one: version `00` exactly, or a later
    /// version with its longer tail (as the spec asks a reader to take it), lowercase hex, ids
    /// not all zeros.
    pub(crate) fn parse(header: &[u8]) -> Option<TraceContext> {
        let header = header.trim_ascii();
        let hex = |bytes: &[u8]| bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let (version, rest) = header.split_at_checked(2)?;
        let longer_allowed = version != b"00";
        if !hex(version) || version == b"ff" {
            return None;
        }
        if rest.len() < 53 || (rest.len() > 53 && (!longer_allowed || rest[53] != b'-')) {
            return None;
        }
        let (trace_id, span_id, flags) = (&rest[1..33], &rest[34..50], &rest[51..53]);
        let dashes = rest[0] == b'-' && rest[33] == b'-' && rest[50] == b'-';
        let zero = |bytes: &[u8]| bytes.iter().all(|&b| b == b'0');
        if !dashes || !hex(trace_id) || !hex(span_id) || !hex(flags) {
            return None;
        }
        if zero(trace_id) || zero(span_id) {
            return None;
        }
        Some(TraceContext {
            trace_id: trace_id.try_into().ok()?,
            span_id: span_id.try_into().ok()?,
            trace_flags: flags.try_into().ok()?,
        })
    }

    /// The trace context of ids given as bytes, as OpenTelemetry holds them; `None` for
    /// all-zero (invalid) ids.
    #[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
    pub(crate) fn of_ids(trace_id: [u8; 16], span_id: [u8; 8], flags: u8) -> Option<TraceContext> {
        fn hex<const N: usize, const HEX: usize>(bytes: [u8; N]) -> [u8; HEX] {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            let mut text = [b'0'; HEX];
            for (pair, byte) in text.chunks_exact_mut(2).zip(bytes) {
                pair[0] = DIGITS[usize::from(byte >> 4)];
                pair[1] = DIGITS[usize::from(byte & 0xf)];
            }
            text
        }
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceContext {
            trace_id: hex(trace_id),
            span_id: hex(span_id),
            trace_flags: hex([flags]),
        })
    }

    pub(crate) fn trace_id(&self) -> &str {
        ascii(&self.trace_id)
    }

    pub(crate) fn span_id(&self) -> &str {
        ascii(&self.span_id)
    }

    pub(crate) fn trace_flags(&self) -> &str {
        ascii(&self.trace_flags)
    }
}

/// Where the panic on this thread sits in a distributed trace: the `traceparent` of the request
/// being served, else, with the feature `opentelemetry`, the OpenTelemetry ids of the `tracing`
/// span that was current when the innermost crashguard scope (a guarded function's poll, a step
/// of serving a request) was entered. Reads no lock: the hook may run while one is held.
pub(crate) fn current_trace() -> Option<TraceContext> {
    current_request(|request| {
        request
            .and_then(ServedRequest::traceparent)
            .and_then(TraceContext::parse)
    })
    .or_else(|| SCOPE_TRACE.with(Cell::get))
}

#[cfg(feature = "opentelemetry")]
fn opentelemetry_trace() -> Option<TraceContext> {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    // Through tracing's current span, which is found in any state of the thread; not
    // OpenTelemetry's own current context, a thread-local a thread-local destructor may find
    // destroyed.
    let span = tracing::Span::current();
    if span.is_none() {
        return None;
    }
    let context = span.context();
    let span = context.span();
    let ids = span.span_context();
    TraceContext::of_ids(
        ids.trace_id().to_bytes(),
        ids.span_id().to_bytes(),
        ids.trace_flags().to_u8(),
    )
}

/// Bytes `parse` checked to be hex digits, as text.
fn ascii(hex: &[u8]) -> &str {
    std::str::from_utf8(hex).unwrap_or_default()
}

/// Publishes a request to this thread's panic records while alive; restores the outer one on
/// drop.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) struct RequestScope<'a> {
    outer: Option<NonNull<dyn ServedRequest>>,
    _trace: TraceScope,
    /// The scope borrows the request, so the request outlives it.
    _request: PhantomData<&'a dyn ServedRequest>,
}

#[cfg_attr(not(feature = "http"), allow(dead_code))]
impl<'a> RequestScope<'a> {
    /// Makes `request` the one being served until the scope is dropped.
    #[inline]
    pub(crate) fn enter(request: &'a (dyn ServedRequest + 'static)) -> RequestScope<'a> {
        RequestScope {
            outer: CURRENT_REQUEST.with(|current| current.replace(Some(NonNull::from(request)))),
            _trace: TraceScope::enter(),
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

#[cfg(test)]
mod tests {
    use super::TraceContext;

    #[test]
    fn a_traceparent_gives_its_trace_and_span_ids_and_flags() {
        let parsed =
            TraceContext::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
                .unwrap();
        assert_eq!(parsed.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.span_id(), "00f067aa0ba902b7");
        assert_eq!(parsed.trace_flags(), "01");
        // A later version may carry more after the flags.
        assert!(
            TraceContext::parse(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-ab")
                .is_some()
        );
    }

    #[test]
    fn ids_as_bytes_are_written_as_a_traceparent_writes_them() {
        let trace_id = 0x4bf92f3577b34da6a3ce929d0e0e4736_u128.to_be_bytes();
        let span_id = 0x00f067aa0ba902b7_u64.to_be_bytes();
        let context = TraceContext::of_ids(trace_id, span_id, 1).unwrap();
        assert_eq!(
            Some(context),
            TraceContext::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        assert_eq!(TraceContext::of_ids([0; 16], span_id, 1), None);
        assert_eq!(TraceContext::of_ids(trace_id, [0; 8], 1), None);
    }

    #[test]
    fn what_is_not_a_traceparent_gives_nothing() {
        for bad in [
            &b""[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            b"00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        ] {
            assert_eq!(
                TraceContext::parse(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
