//! With the feature `opentelemetry`, a panic inside a span that OpenTelemetry exports carries
//! that span's trace and span ids, as does a request without a `traceparent`; a request's own
//! `traceparent` wins over the span's.

mod support;

use support::{fixture, str_field};

#[test]
fn panics_carry_the_current_spans_ids_unless_the_request_brings_its_own() {
    let run = fixture("with_opentelemetry").run();
    assert_eq!(run.status.code(), Some(0), "{:#?}", run.records);
    let line = run.stdout.lines().next().unwrap_or_default();
    let ids: Vec<&str> = line.strip_prefix("span ").unwrap().split(' ').collect();
    let [trace_id, span_id] = ids[..] else {
        panic!("{line:?}");
    };
    assert_eq!((trace_id.len(), span_id.len()), (32, 16), "{line:?}");

    let panics: Vec<_> = run
        .records
        .iter()
        .filter(|record| record.get("target").is_some_and(|t| t == "crashguard"))
        .map(|record| record["fields"].as_object().unwrap())
        .collect();
    let seen: Vec<(&str, &str, &str, bool)> = panics
        .iter()
        .map(|fields| {
            (
                str_field(fields, "exception.message"),
                str_field(fields, "trace_id"),
                str_field(fields, "span_id"),
                fields.contains_key("url.path"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("no stock row", trace_id, span_id, false),
            ("the handler broke", trace_id, span_id, true),
            (
                "the handler broke",
                "4bf92f3577b34da6a3ce929d0e0e4736",
                "00f067aa0ba902b7",
                true
            ),
        ]
    );
    assert!(panics.iter().all(|fields| fields["trace_flags"] == "01"));
}
