//! The storm's check: what a user would look at after a route panicked on every request.

use std::collections::HashSet;

use crate::client::{fnv1a, Tally};
use crate::servers::Kind;

/// What a storm's check found.
pub struct Check {
    pub passed: bool,
    pub text: String,
    /// Panic records with a trace of their own (crashguard).
    pub traces: Option<u64>,
}

/// Checks a storm's outcome as a user would: every `/ok` answered 200; every `/boom` answered
/// 500 (the unprotected server drops the connection instead) and recorded; with crashguard,
/// every 500's incident id distinct and naming a record.
pub fn check_storm(kind: Kind, ok: &Tally, boom: &Tally, stderr: &[u8]) -> Check {
    let mut problems = Vec::new();
    if ok.status_200 != ok.sent || ok.no_answer != 0 {
        problems.push(format!(
            "/ok: {} sent, {} answered 200, {} unanswered",
            ok.sent, ok.status_200, ok.no_answer
        ));
    }
    let text = String::from_utf8_lossy(stderr);
    let (records, traces) = if kind.is_crashguard() {
        let mut ids = HashSet::new();
        let mut traces = 0;
        for line in text.lines() {
            let record: serde_json::Value = match serde_json::from_str(line) {
                Ok(record) => record,
                Err(_) => {
                    problems.push(format!("a stderr line is not a record: {line:.120}"));
                    continue;
                }
            };
            if record["event"] == "panic" {
                ids.insert(fnv1a(
                    record["incident.id"]
                        .as_str()
                        .unwrap_or_default()
                        .as_bytes(),
                ));
                traces += u64::from(record.get("exception.stacktrace").is_some());
            }
        }
        let answered: HashSet<u64> = boom.incidents.iter().copied().collect();
        if answered.len() != boom.incidents.len() {
            problems.push("two 500s carried the same incident id".to_owned());
        }
        let unrecorded = answered.iter().filter(|id| !ids.contains(*id)).count();
        if unrecorded > 0 {
            problems.push(format!("{unrecorded} 500s name an incident with no record"));
        }
        (ids.len() as u64, Some(traces))
    } else {
        (text.matches("panicked at").count() as u64, None)
    };
    if records != boom.sent {
        problems.push(format!("{records} panic records"));
    }
    let counts = if kind == Kind::Unprotected {
        if boom.no_answer != boom.sent {
            problems.push(format!("{} answered", boom.sent - boom.no_answer));
        }
        format!(
            "{} sent, none answered (connection dropped), {records} records",
            boom.sent
        )
    } else {
        if boom.status_500 != boom.sent {
            problems.push(format!(
                "{} answered 500, {} unanswered",
                boom.status_500, boom.no_answer
            ));
        }
        format!(
            "{} sent, {} × 500, {records} records",
            boom.sent, boom.status_500
        )
    };
    let passed = problems.is_empty();
    Check {
        passed,
        traces,
        text: if passed {
            counts
        } else {
            format!("{counts}: {}", problems.join("; "))
        },
    }
}
