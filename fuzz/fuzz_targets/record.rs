//! Any bytes, in any field, under any record limit: the record is one line of JSON within the
//! limit, and each value comes back whole, or cut with the marker and the record marked.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((limit, value)) = data.split_first_chunk::<2>() else {
        return;
    };
    let limit = usize::from(u16::from_le_bytes(*limit));
    let line = crashguard::__private::record_line(value, limit);
    let effective = limit.clamp(crashguard::MIN_RECORD_BYTES, crashguard::MAX_RECORD_BYTES);
    assert!(line.len() <= effective, "{} > {effective}", line.len());
    assert_eq!(line.last(), Some(&b'\n'));
    let body = &line[..line.len() - 1];
    assert!(body.iter().all(|&byte| byte >= 0x20), "one line, no control bytes");
    let Value::Object(record) = serde_json::from_slice(body).expect("JSON") else {
        panic!("an object");
    };
    let truncated = record.get("record.truncated") == Some(&Value::Bool(true));
    let lossy = String::from_utf8_lossy(value);
    for key in ["text", "display", "bytes"] {
        if key != "bytes" && std::str::from_utf8(value).is_err() {
            continue;
        }
        match record.get(key).and_then(Value::as_str) {
            Some(found) if found == lossy => {}
            Some(found) => {
                let kept = found
                    .strip_suffix(crashguard::TRUNCATION_MARKER)
                    .expect("a value that differs is cut, with the marker");
                assert!(lossy.starts_with(kept));
                assert!(truncated);
            }
            None => assert!(truncated, "a field left out marks the record"),
        }
    }
});
