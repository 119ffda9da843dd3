//! Panic storms: every panic gets its own record and incident id, but a location's trace is
//! captured once and later records at that place refer to it.

mod support;

use std::collections::HashSet;

use serde_json::Value;
use support::{fixture, str_field, Record};

/// `file:line:col` of a panic record.
fn site(record: &Record) -> String {
    format!(
        "{}:{}:{}",
        str_field(record, "code.file.path"),
        record["code.line.number"],
        record["code.column.number"]
    )
}

/// A record with a trace of its own, and nothing pointing elsewhere.
fn assert_traced(record: &Record) {
    let trace = str_field(record, "exception.stacktrace");
    assert!(
        trace.starts_with("0: ") && trace.contains("fixtures/src/bin/panic_storm.rs"),
        "{record:#?}"
    );
    assert_eq!(record.get("exception.stacktrace_ref"), None, "{record:#?}");
    assert_eq!(record.get("exception.repeats"), None, "{record:#?}");
}

/// A record without a trace that names `first`'s incident as the one with it.
fn assert_refers_to(record: &Record, first: &Record, repeats: u64) {
    assert_eq!(record.get("exception.stacktrace"), None, "{record:#?}");
    assert_eq!(record["exception.stacktrace_ref"], first["incident.id"]);
    assert_eq!(record["exception.repeats"], repeats, "{record:#?}");
    assert_eq!(site(record), site(first));
}

fn distinct_incidents(panics: &[&Record]) -> usize {
    panics
        .iter()
        .map(|record| str_field(record, "incident.id"))
        .collect::<HashSet<_>>()
        .len()
}

#[test]
fn ten_thousand_panics_at_one_location_are_ten_thousand_records_and_one_trace() {
    let run = fixture("panic_storm")
        .arg("one-location")
        .arg("10000")
        .run();
    assert_eq!(run.status.code(), Some(0));
    assert_eq!(run.records.len(), 10_001, "10,000 panics and the exit");
    let panics = run.events("panic");
    assert_eq!(panics.len(), 10_000);
    assert_eq!(distinct_incidents(&panics), 10_000);
    assert_traced(panics[0]);
    for (index, record) in panics.iter().enumerate() {
        assert_eq!(record["exception.message"], format!("storm {index}"));
        if index > 0 {
            assert_refers_to(record, panics[0], index as u64);
        }
    }
}

#[test]
fn panics_at_two_locations_each_get_their_own_trace() {
    let run = fixture("panic_storm").arg("two-locations").run();
    assert_eq!(run.status.code(), Some(0));
    let panics = run.events("panic");
    assert_eq!(panics.len(), 6);
    let (left, right) = (panics[0], panics[1]);
    assert_traced(left);
    assert_traced(right);
    assert_ne!(site(left), site(right));
    for round in 1..3 {
        assert_refers_to(panics[2 * round], left, round as u64);
        assert_refers_to(panics[2 * round + 1], right, round as u64);
    }
}

#[test]
fn with_more_panic_sites_than_slots_the_location_traced_longest_ago_is_traced_again() {
    // Four slots, eight sites, each panicking twice in a row.
    let run = fixture("panic_storm").arg("more-sites-than-slots").run();
    assert_eq!(run.status.code(), Some(0));
    let panics = run.events("panic");
    assert_eq!(panics.len(), 8 * 2 + 4 + 1);
    for pair in panics[..16].chunks(2) {
        assert_traced(pair[0]);
        assert_refers_to(pair[1], pair[0], 1);
    }
    let sites: HashSet<String> = panics[..16].iter().map(|record| site(record)).collect();
    assert_eq!(sites.len(), 8, "eight distinct sites");
    // The four traced last are still remembered...
    for (later, first) in panics[16..20].iter().zip(panics[8..16].iter().step_by(2)) {
        assert_refers_to(later, first, 2);
    }
    // ...and the first site was forgotten to make room, so it is traced again.
    assert_traced(panics[20]);
    assert_eq!(site(panics[20]), site(panics[0]));
    assert_eq!(distinct_incidents(&panics), panics.len());
}

#[test]
fn a_thousand_threads_panicking_at_once_leave_a_thousand_whole_records() {
    let run = fixture("panic_storm")
        .arg("threads-at-once")
        .arg("1000")
        .run();
    assert_eq!(run.status.code(), Some(0));
    assert_eq!(run.records.len(), 1_001, "every line is one whole record");
    let panics = run.events("panic");
    assert_eq!(panics.len(), 1_000);
    assert_eq!(distinct_incidents(&panics), 1_000);
    let messages: HashSet<&str> = panics
        .iter()
        .map(|record| str_field(record, "exception.message"))
        .collect();
    let expected: Vec<String> = (0..1000).map(|index| format!("thread {index}")).collect();
    assert_eq!(
        messages,
        expected.iter().map(String::as_str).collect::<HashSet<_>>()
    );
    let traced: Vec<&Record> = panics
        .iter()
        .copied()
        .filter(|record| record.contains_key("exception.stacktrace"))
        .collect();
    assert_eq!(traced.len(), 1, "one trace for the one location");
    assert_traced(traced[0]);
    let mut repeats: Vec<u64> = panics
        .iter()
        .filter(|record| !record.contains_key("exception.stacktrace"))
        .map(|record| {
            assert_eq!(
                record["exception.stacktrace_ref"], traced[0]["incident.id"],
                "{record:#?}"
            );
            assert_eq!(site(record), site(traced[0]));
            record["exception.repeats"].as_u64().unwrap()
        })
        .collect();
    repeats.sort_unstable();
    assert_eq!(repeats, (1..1000).collect::<Vec<u64>>());
}

#[test]
fn once_the_window_has_passed_the_location_is_traced_again() {
    // A one-second window; the fixture sleeps 1.2 s between two pairs of panics.
    let run = fixture("panic_storm").arg("window-passes").run();
    assert_eq!(run.status.code(), Some(0));
    let panics = run.events("panic");
    assert_eq!(panics.len(), 5, "a warm-up elsewhere, then two pairs");
    assert_eq!(panics[0]["exception.message"], "warm-up");
    let panics = &panics[1..];
    assert_traced(panics[0]);
    assert_refers_to(panics[1], panics[0], 1);
    assert_traced(panics[2]);
    assert_eq!(site(panics[2]), site(panics[0]));
    assert_refers_to(panics[3], panics[2], 1);
}

#[test]
fn with_backtraces_off_records_carry_neither_a_trace_nor_a_reference() {
    let run = fixture("panic_storm")
        .arg("one-location")
        .arg("3")
        .env("CRASHGUARD_BACKTRACE", "0")
        .run();
    assert_eq!(run.status.code(), Some(0));
    let panics = run.events("panic");
    assert_eq!(panics.len(), 3);
    for record in panics {
        for field in [
            "exception.stacktrace",
            "exception.stacktrace_ref",
            "exception.repeats",
        ] {
            assert_eq!(record.get(field), None::<&Value>, "{field}: {record:#?}");
        }
    }
}
