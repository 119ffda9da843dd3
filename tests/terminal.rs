//! What a person sees on a terminal: real programs on a pseudo-terminal, compared with the
//! checked-in `tests/snapshots/terminal.txt` (colours shown as `{red}`…`{reset}`; incident ids,
//! durations, frame counts and code offsets, which change from run to run or from toolchain to
//! toolchain, replaced by placeholders). Run with `UPDATE_SNAPSHOTS=1` and `--test-threads 1`
//! (each test rewrites the file with its own section) to write it anew, then read the diff.

mod support;

use support::terminal::OnTerminal;
use support::{fixture, Fixture};

/// A program run to its end on a terminal: its status and the screen, normalised.
fn on_terminal(fixture: Fixture) -> (Option<i32>, Option<i32>, String) {
    use std::os::unix::process::ExitStatusExt as _;
    let (status, screen) = OnTerminal::start(fixture).finish();
    (status.code(), status.signal(), normalised(&screen))
}

/// The screen with what varies between runs replaced: incident ids, milliseconds, the
/// repository's path, code offsets, counts of folded frames, and the frames of a fatal trace
/// past the first (the C library's differ from machine to machine).
fn normalised(screen: &str) -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/");
    let mut text = screen.replace(root, "");
    for (code, name) in [
        ("\x1b[1;31m", "{red bold}"),
        ("\x1b[31m", "{red}"),
        ("\x1b[33m", "{yellow}"),
        ("\x1b[2m", "{dim}"),
        ("\x1b[0m", "{reset}"),
    ] {
        text = text.replace(code, name);
    }
    let mut out = String::new();
    let mut fatal_frames = None;
    for line in text.lines() {
        let line = placeholders(line);
        if line.contains("fatal signal") {
            fatal_frames = Some(0);
        } else if let Some(frames) = fatal_frames.as_mut() {
            if line.starts_with("    ")
                && line
                    .trim_start()
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit())
            {
                *frames += 1;
                if *frames > 1 {
                    continue;
                }
            } else if !line.starts_with("  ") {
                fatal_frames = None;
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// One line with its varying parts as placeholders.
fn placeholders(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while !rest.is_empty() {
        // `3f9a1c07-12`: an incident id.
        if let Some(id_len) = incident_id_len(rest) {
            out.push_str("<incident>");
            rest = &rest[id_len..];
            continue;
        }
        // `+0x1a2b`: a code offset.
        if let Some(hex) = rest.strip_prefix("+0x") {
            let digits = hex.bytes().take_while(u8::is_ascii_hexdigit).count();
            out.push_str("+0x…");
            rest = &hex[digits..];
            continue;
        }
        // `12 ms`, `… 77 frames`: a number that depends on the run or the toolchain.
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let after = &rest[digits..];
        if digits > 0
            && (after.starts_with(" ms") || after.starts_with(" frame"))
            && out.ends_with(' ')
        {
            out.push('N');
            rest = after;
            continue;
        }
        let next = rest.chars().next().unwrap();
        out.push(next);
        rest = &rest[next.len_utf8()..];
    }
    out
}

fn incident_id_len(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let hex = bytes
        .iter()
        .take(8)
        .filter(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        .count();
    if hex < 8 || bytes.get(8) != Some(&b'-') {
        return None;
    }
    let sequence = bytes[9..].iter().take_while(|b| b.is_ascii_digit()).count();
    (sequence > 0).then_some(9 + sequence)
}

/// Compares `scenario`'s screen with its section of the snapshot file.
fn assert_screen(scenario: &str, screen: &str) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots/terminal.txt");
    let heading = format!("=== {scenario}\n");
    let snapshot = std::fs::read_to_string(path).unwrap_or_default();
    let sections = sections(&snapshot);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        let mut sections = sections;
        sections.retain(|(name, _)| name != scenario);
        sections.push((scenario.to_owned(), screen.to_owned()));
        sections.sort();
        let text: String = sections
            .iter()
            .map(|(name, body)| format!("=== {name}\n{body}"))
            .collect();
        std::fs::write(path, text).unwrap();
        return;
    }
    let expected = sections
        .into_iter()
        .find(|(name, _)| name == scenario)
        .map(|(_, body)| body)
        .unwrap_or_else(|| panic!("no section {heading:?} in {path}; run with UPDATE_SNAPSHOTS=1"));
    assert_eq!(
        screen, expected,
        "the terminal showed, for {scenario}:\n{screen}"
    );
}

fn sections(snapshot: &str) -> Vec<(String, String)> {
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in snapshot.split_inclusive('\n') {
        match line.strip_prefix("=== ") {
            Some(name) => sections.push((name.trim_end().to_owned(), String::new())),
            None => {
                if let Some((_, body)) = sections.last_mut() {
                    body.push_str(line);
                }
            }
        }
    }
    sections
}

#[test]
fn a_panic_in_main_is_a_short_coloured_report_then_one_exit_line() {
    let (code, _, screen) = on_terminal(fixture("sync_main").arg("panic"));
    assert_eq!(code, Some(101));
    assert_screen("main panic", &screen);
}

#[test]
fn an_error_from_main_reads_as_std_prints_it_then_the_exit_line() {
    let (code, _, screen) = on_terminal(fixture("result_main").arg("error"));
    assert_eq!(code, Some(1));
    assert_screen("main error", &screen);
}

#[test]
fn a_segfault_is_a_report_from_the_signal_handler() {
    let (_, signal, screen) = on_terminal(fixture("fatal_cases").arg("null-write-thread"));
    assert_eq!(signal, Some(libc::SIGSEGV));
    assert_screen("segfault", &screen);
}

#[tokio::test]
async fn a_handler_panic_then_ctrl_c_as_a_person_sees_them() {
    let mut terminal = OnTerminal::start(fixture("metrics_service").env("ADDR", "127.0.0.1:0"));
    terminal.wait_for("listening on http://");
    let screen = terminal.screen();
    let base = screen
        .lines()
        .find_map(|line| line.strip_prefix("listening on "))
        .unwrap()
        .trim()
        .to_owned();
    let answer = reqwest::Client::new()
        .get(format!("{base}/orders/5"))
        .header("x-request-id", "r-9")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 500);
    terminal.wait_for("frames of dependencies and std");
    terminal.type_keys(b"\x03");
    let (status, screen) = terminal.finish();
    assert_eq!(status.code(), Some(0));
    let screen = normalised(&screen).replace(&base, "http://<addr>");
    assert_screen("handler panic, then Ctrl-C", &screen);
}

#[test]
fn json_when_asked_for_even_on_a_terminal() {
    let (code, _, screen) = on_terminal(
        fixture("sync_main")
            .arg("panic")
            .env("CRASHGUARD_FORMAT", "json"),
    );
    assert_eq!(code, Some(101));
    let events: Vec<String> = screen
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).expect("a JSON record");
            record["event"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(events, ["start", "panic", "exit"]);
}

#[test]
fn no_colour_with_no_color_set() {
    let (_, _, screen) = on_terminal(fixture("sync_main").arg("panic").env("NO_COLOR", "1"));
    assert!(
        !screen.contains("{red") && !screen.contains("{dim"),
        "no colour: {screen}"
    );
    assert!(screen.starts_with("panic in sync_main::main"), "{screen}");
    let (_, _, screen) = on_terminal(fixture("sync_main").arg("panic").env("TERM", "dumb"));
    assert!(!screen.contains("{red"), "no colour: {screen}");
}

#[test]
fn a_pipe_gets_json_unless_text_is_asked_for_and_then_no_colour() {
    let piped = fixture("sync_main").arg("panic").run();
    assert_eq!(piped.event_names(), ["panic", "exit"]);
    let (text, lines) = fixture("sync_main")
        .arg("panic")
        .env("CRASHGUARD_FORMAT", "text")
        .run_allowing_text();
    assert!(text.records.is_empty(), "{:#?}", text.records);
    assert!(
        lines[0].starts_with("panic in sync_main::main at fixtures/src/bin/sync_main.rs"),
        "{lines:#?}"
    );
    assert!(
        lines.iter().all(|line| !line.contains('\x1b')),
        "{lines:#?}"
    );
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("crashguard: exited with 101"),
        "{lines:#?}"
    );
}
