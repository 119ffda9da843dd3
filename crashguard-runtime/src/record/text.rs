//! Records for people: where stderr is a terminal (or `CRASHGUARD_FORMAT=text`), the finished
//! JSON line is shown as a short text instead. A panic is a report of a few lines (the message,
//! where, the incident, the user's frames, the frames of dependencies and std folded into a
//! count); a shutdown, a hook and an exit are one line each; a `main` that returned `Err` is
//! shown as std shows it, then the exit line.
//!
//! The text is made from the JSON line, so there is one schema and one set of field writers, and
//! nothing the record carries can reach the terminal unescaped: control characters stay in
//! their JSON escapes, so no panic message can move the cursor or change a colour. Like the JSON
//! writer, this allocates nothing, so fatal-signal handlers show their records this way too.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU8, Ordering};

use super::keys;

/// How records are shown, decided at install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shown {
    Json,
    Text { colour: bool },
}

static SHOWN: AtomicU8 = AtomicU8::new(0);

pub(crate) fn set_shown(shown: Shown) {
    let code = match shown {
        Shown::Json => 0,
        Shown::Text { colour: false } => 1,
        Shown::Text { colour: true } => 2,
    };
    SHOWN.store(code, Ordering::Relaxed);
}

pub(super) fn shown() -> Shown {
    match SHOWN.load(Ordering::Relaxed) {
        0 => Shown::Json,
        1 => Shown::Text { colour: false },
        _ => Shown::Text { colour: true },
    }
}

/// The most fields a record has.
const MAX_FIELDS: usize = 48;

/// A field's value as it is in the JSON line: a string's contents still escaped, or a number or
/// boolean as written.
#[derive(Clone, Copy)]
enum Value<'a> {
    Escaped(&'a [u8]),
    Bare(&'a [u8]),
}

/// The fields of one of crashguard's own JSON lines: a flat object whose keys need no escaping.
struct Fields<'a> {
    fields: [(&'a [u8], Value<'a>); MAX_FIELDS],
    count: usize,
}

impl<'a> Fields<'a> {
    fn parse(line: &'a [u8]) -> Fields<'a> {
        let mut fields = Fields {
            fields: [(&[][..], Value::Bare(&[])); MAX_FIELDS],
            count: 0,
        };
        let mut at = 1; // past `{`
        while at < line.len() && fields.count < MAX_FIELDS {
            // `"key":`
            let Some(key_end) = find(line, at + 1, b'"') else {
                break;
            };
            let key = &line[at + 1..key_end];
            let start = (key_end + 2).min(line.len());
            let (value, end) = if line.get(start) == Some(&b'"') {
                let close = string_end(line, start + 1);
                (Value::Escaped(&line[start + 1..close]), close + 1)
            } else {
                let end = (start..line.len())
                    .find(|&i| matches!(line[i], b',' | b'}'))
                    .unwrap_or(line.len());
                (Value::Bare(&line[start..end]), end)
            };
            fields.fields[fields.count] = (key, value);
            fields.count += 1;
            if line.get(end) != Some(&b',') {
                break;
            }
            at = end + 1;
        }
        fields
    }

    fn get(&self, key: &str) -> Option<Value<'a>> {
        self.fields[..self.count]
            .iter()
            .find(|(name, _)| *name == key.as_bytes())
            .map(|(_, value)| *value)
    }

    /// A value that is plain text (an event name, a severity): the escaped bytes as they are.
    fn raw(&self, key: &str) -> &'a [u8] {
        match self.get(key) {
            Some(Value::Escaped(bytes) | Value::Bare(bytes)) => bytes,
            None => b"",
        }
    }
}

fn find(line: &[u8], from: usize, byte: u8) -> Option<usize> {
    line.get(from..)?
        .iter()
        .position(|&b| b == byte)
        .map(|i| from + i)
}

/// The index of the quote that closes the string starting at `from`.
fn string_end(line: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < line.len() {
        match line[i] {
            b'\\' => i += 2,
            b'"' => return i,
            _ => i += 1,
        }
    }
    line.len()
}

/// The text being made, in a fixed buffer; what does not fit is cut, ending in `…`.
pub(super) struct Text<'b> {
    buf: &'b mut [MaybeUninit<u8>],
    len: usize,
    colour: bool,
    /// A colour is on and must be reset before the line ends.
    styled: bool,
    cut: bool,
}

const RESET: &[u8] = b"\x1b[0m";
const RED_BOLD: &[u8] = b"\x1b[1;31m";
const RED: &[u8] = b"\x1b[31m";
const YELLOW: &[u8] = b"\x1b[33m";
const DIM: &[u8] = b"\x1b[2m";

/// Room kept for the cut mark and the closing newline.
const CLOSING: usize = 16;

impl<'b> Text<'b> {
    pub(super) fn new(buf: &'b mut [MaybeUninit<u8>], colour: bool) -> Text<'b> {
        Text {
            buf,
            len: 0,
            colour,
            styled: false,
            cut: false,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.cut {
            return;
        }
        let room = self.buf.len().saturating_sub(self.len + CLOSING);
        let mut take = bytes.len().min(room);
        // Cut before a character, never inside one.
        while take < bytes.len() && take > 0 && bytes[take] & 0b1100_0000 == 0b1000_0000 {
            take -= 1;
        }
        for (slot, &byte) in self.buf[self.len..self.len + take].iter_mut().zip(bytes) {
            slot.write(byte);
        }
        self.len += take;
        if take < bytes.len() {
            self.cut = true;
        }
    }

    /// Switches colour, whole or not at all: half an escape sequence would garble the terminal.
    /// Once the text is cut nothing more is pushed, and `finish` resets what is still on.
    fn style(&mut self, style: &[u8]) {
        let reset = style == RESET;
        if !self.colour || self.cut || (reset && !self.styled) {
            return;
        }
        if self.len + style.len() + CLOSING > self.buf.len() {
            self.cut = true;
            return;
        }
        self.push(style);
        self.styled = !reset;
    }

    /// Pushes a JSON string's escaped contents as text: `\n`, `\t`, `\"`, `\\` become what they
    /// stand for (a newline followed by `indent`); every other escape stays as it is written, so
    /// that no control character reaches the terminal.
    fn unescaped(&mut self, escaped: &[u8], indent: &[u8]) {
        let mut i = 0;
        while i < escaped.len() {
            let plain = escaped[i..]
                .iter()
                .position(|&b| b == b'\\')
                .map_or(escaped.len(), |offset| i + offset);
            self.push(&escaped[i..plain]);
            if plain + 1 >= escaped.len() {
                break;
            }
            match escaped[plain + 1] {
                b'n' => {
                    self.push(b"\n");
                    self.push(indent);
                }
                b't' => self.push(b"\t"),
                b'"' => self.push(b"\""),
                b'\\' => self.push(b"\\"),
                other => self.push(&[b'\\', other]),
            }
            i = plain + 2;
        }
    }

    fn value(&mut self, value: Value<'_>, indent: &[u8]) {
        match value {
            Value::Escaped(escaped) => self.unescaped(escaped, indent),
            Value::Bare(bare) => self.push(bare),
        }
    }

    /// The finished text, newline included; empty when the record is not shown.
    pub(super) fn finish(&mut self) -> &[u8] {
        if self.len > 0 {
            if self.cut {
                self.push_closing("…".as_bytes());
            }
            if self.styled {
                self.push_closing(RESET);
            }
            self.push_closing(b"\n");
        }
        // SAFETY: `push` and `push_closing` wrote every byte below `len`, and `MaybeUninit<u8>`
        // has the layout of `u8`.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr().cast::<u8>(), self.len) }
    }

    /// Pushes into the room kept for the end.
    fn push_closing(&mut self, bytes: &[u8]) {
        let take = bytes.len().min(self.buf.len() - self.len);
        for (slot, &byte) in self.buf[self.len..self.len + take].iter_mut().zip(bytes) {
            slot.write(byte);
        }
        self.len += take;
    }
}

/// Makes the text people see for `line`, one of crashguard's JSON records.
pub(super) fn render(line: &[u8], text: &mut Text<'_>) {
    let fields = Fields::parse(line);
    match fields.raw(keys::EVENT) {
        // What a person starting a program needs no line for.
        b"start" => {}
        b"panic" => panic_report(&fields, text),
        b"fatal_signal" | b"thread_dump" => stack_report(&fields, text),
        b"exit" => exit_line(&fields, text),
        _ => one_line(&fields, text),
    }
}

fn severity_style(fields: &Fields<'_>) -> &'static [u8] {
    match fields.raw(keys::SEVERITY) {
        b"CRITICAL" | b"ERROR" => RED,
        b"WARNING" | b"NOTICE" => YELLOW,
        _ => DIM,
    }
}

/// `crashguard: <message>`, coloured by severity.
fn one_line(fields: &Fields<'_>, text: &mut Text<'_>) {
    if fields.raw(keys::SHUTDOWN_INTERACTIVE) == b"true" {
        // After the terminal's own `^C`.
        text.push(b"\n");
    }
    text.style(severity_style(fields));
    text.push(b"crashguard: ");
    if let Some(message) = fields.get(keys::MESSAGE) {
        text.value(message, b"  ");
    }
}

/// As std shows a `main` that returned `Err`, then the exit line.
fn exit_line(fields: &Fields<'_>, text: &mut Text<'_>) {
    if let Some(error) = fields.get(keys::ERROR_MESSAGE) {
        text.push(b"Error: ");
        text.value(error, b"");
        if let Some(backtrace) = fields.get(keys::ERROR_STACKTRACE) {
            text.push(b"\n\nStack backtrace:\n");
            text.value(backtrace, b"");
        }
        text.push(b"\n");
    }
    one_line(fields, text);
}

/// The headline, then what the record says about the incident, the thread and the request.
fn headline(fields: &Fields<'_>, text: &mut Text<'_>) {
    text.style(RED_BOLD);
    if let Some(message) = fields.get(keys::MESSAGE) {
        text.value(message, b"  ");
    }
    text.style(RESET);
    let mut parts = 0;
    let mut part = |text: &mut Text<'_>, label: &[u8], value: Value<'_>| {
        text.push(if parts == 0 { b"\n  " } else { b", " });
        if parts == 0 {
            text.style(DIM);
        }
        parts += 1;
        text.push(label);
        text.value(value, b"");
    };
    for (label, key) in [
        (&b"incident "[..], keys::INCIDENT_ID),
        (b"thread ", keys::THREAD_NAME),
        (b"", keys::HTTP_REQUEST_METHOD),
    ] {
        if let Some(value) = fields.get(key) {
            part(text, label, value);
        }
    }
    if let Some(path) = fields.get(keys::URL_PATH) {
        text.push(b" ");
        text.value(path, b"");
    }
    for (label, key) in [
        (&b"route "[..], keys::HTTP_ROUTE),
        (b"x-request-id ", keys::HTTP_REQUEST_ID),
        (b"fault address ", keys::SIGNAL_FAULT_ADDRESS),
    ] {
        if let Some(value) = fields.get(key) {
            part(text, label, value);
        }
    }
    if parts > 0 {
        text.style(RESET);
    }
}

/// A panic: the headline, the user's frames, every run of other frames folded into a count.
fn panic_report(fields: &Fields<'_>, text: &mut Text<'_>) {
    headline(fields, text);
    if let Some(Value::Escaped(trace)) = fields.get(keys::EXCEPTION_STACKTRACE) {
        let mut folded = 0usize;
        for frame in split_escaped_newlines(trace) {
            if is_users(frame) {
                fold(text, &mut folded);
                text.push(b"\n    ");
                text.unescaped(frame, b"");
            } else {
                folded += 1;
            }
        }
        fold(text, &mut folded);
    }
    if let Some(first) = fields.get(keys::EXCEPTION_STACKTRACE_REF) {
        text.push(b"\n    ");
        text.style(DIM);
        text.push(b"the trace is in the record of incident ");
        text.value(first, b"");
        text.push(b" (CRASHGUARD_FORMAT=json shows it)");
        text.style(RESET);
    }
    trace_cut(fields, keys::EXCEPTION_STACKTRACE_CUT, text);
}

/// A fatal signal or a thread's dump: the headline and every frame (few, and all of them
/// matter: there is no user code to fold around in a crash inside a library).
fn stack_report(fields: &Fields<'_>, text: &mut Text<'_>) {
    headline(fields, text);
    for key in [keys::EXCEPTION_STACKTRACE, keys::CODE_STACKTRACE] {
        if let Some(Value::Escaped(trace)) = fields.get(key) {
            for frame in split_escaped_newlines(trace) {
                text.push(b"\n    ");
                text.unescaped(frame, b"");
            }
        }
    }
    trace_cut(fields, keys::EXCEPTION_STACKTRACE_CUT, text);
    trace_cut(fields, keys::CODE_STACKTRACE_CUT, text);
}

fn trace_cut(fields: &Fields<'_>, key: &str, text: &mut Text<'_>) {
    if let Some(why) = fields.get(key) {
        text.push(b"\n    ");
        text.style(DIM);
        text.push(b"(trace cut: ");
        text.value(why, b"");
        text.push(b")");
        text.style(RESET);
    }
}

/// `… 12 frames of dependencies and std`, for the run of frames just passed.
fn fold(text: &mut Text<'_>, folded: &mut usize) {
    if *folded == 0 {
        return;
    }
    text.push(b"\n    ");
    text.style(DIM);
    text.push("… ".as_bytes());
    text.push(itoa::Buffer::new().format(*folded).as_bytes());
    text.push(if *folded == 1 {
        &b" frame of dependencies or std"[..]
    } else {
        &b" frames of dependencies and std"[..]
    });
    text.style(RESET);
    *folded = 0;
}

/// The frames of an escaped trace: its lines are separated by the escape `\n` (and not by the
/// `n` after an escaped backslash).
fn split_escaped_newlines(chunk: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(chunk);
    std::iter::from_fn(move || {
        let current = rest?;
        let mut i = 0;
        while i + 1 < current.len() {
            if current[i] == b'\\' {
                if current[i + 1] == b'n' {
                    rest = Some(&current[i + 2..]);
                    return Some(&current[..i]);
                }
                i += 2;
            } else {
                i += 1;
            }
        }
        rest = None;
        Some(current)
    })
    .filter(|frame| !frame.is_empty())
}

/// Whether a rendered frame (`3: app::handler at src/handler.rs:7:5`) is the application's own:
/// it has a place, and the place is not std's (`library/…`), a registry crate's
/// (`tokio-1.48.0/src/…`), or another absolute path under cargo's home.
fn is_users(frame: &[u8]) -> bool {
    let Some(at) = frame.windows(4).rposition(|window| window == b" at ") else {
        return false;
    };
    let place = &frame[at + 4..];
    if place.starts_with(b"library/") || place.starts_with(b"/rustc/") {
        return false;
    }
    if place.windows(8).any(|window| window == b"/.cargo/") {
        return false;
    }
    // `name-1.2.3/src/…`: a crate from a registry, as the trace shortens its path.
    let first = place
        .iter()
        .position(|&b| b == b'/')
        .map_or(place, |slash| &place[..slash]);
    let versioned = first
        .iter()
        .rposition(|&b| b == b'-')
        .is_some_and(|dash| first[dash + 1..].first().is_some_and(u8::is_ascii_digit));
    !versioned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(line: &str, colour: bool) -> String {
        let mut buffer = vec![MaybeUninit::uninit(); 16 * 1024];
        let mut text = Text::new(&mut buffer, colour);
        render(line.as_bytes(), &mut text);
        String::from_utf8(text.finish().to_vec()).unwrap()
    }

    #[test]
    fn a_panic_shows_the_users_frames_and_folds_the_others() {
        let line = r#"{"time":"t","severity":"ERROR","event":"panic","process.pid":7,"message":"panic in app::get at src/main.rs:9:5: no user 7","incident.id":"ab-1","thread.name":"tokio-rt-worker","thread.id":8,"code.function.name":"app::get","http.request.method":"GET","url.path":"/users/7","http.route":"/users/{id}","exception.type":"panic","exception.message":"no user 7","exception.stacktrace":"0: app::get::{{closure}} at src/main.rs:9:5\n1: <core::pin::Pin<P> as core::future::future::Future>::poll at library/core/src/future/future.rs:133:9\n2: axum::handler::Handler::call at axum-0.8.9/src/handler/mod.rs:1:1\n3: app::main at src/main.rs:3:1\n4: main"}"#;
        assert_eq!(
            shown(line, false),
            "panic in app::get at src/main.rs:9:5: no user 7\n  incident ab-1, thread tokio-rt-worker, GET /users/7, route /users/{id}\n    0: app::get::{{closure}} at src/main.rs:9:5\n    … 2 frames of dependencies and std\n    3: app::main at src/main.rs:3:1\n    … 1 frame of dependencies or std\n"
        );
    }

    #[test]
    fn no_control_character_of_a_message_reaches_the_terminal() {
        let line =
            r#"{"event":"shutdown","severity":"NOTICE","message":"a\u001b[2Jb\rc\nd \"q\" \\"}"#;
        assert_eq!(
            shown(line, false),
            "crashguard: a\\u001b[2Jb\\rc\n  d \"q\" \\\n"
        );
        let coloured = shown(line, true);
        assert!(
            coloured.starts_with("\x1b[33mcrashguard: a\\u001b"),
            "{coloured:?}"
        );
        assert!(coloured.ends_with("\x1b[0m\n"), "{coloured:?}");
    }

    #[test]
    fn an_error_from_main_reads_as_std_writes_it_then_the_exit_line() {
        let line = r#"{"event":"exit","severity":"ERROR","message":"exited with 1: main returned an error: no config","exit.code":1,"exit.reason":"error","error.message":"no config\n\nCaused by:\n    gone"}"#;
        assert_eq!(
            shown(line, false),
            "Error: no config\n\nCaused by:\n    gone\ncrashguard: exited with 1: main returned an error: no config\n"
        );
    }

    #[test]
    fn an_escaped_backslash_before_n_is_not_a_new_frame() {
        let frames: Vec<&[u8]> =
            split_escaped_newlines(br"0: a at C:\\new\n1: b at src/b.rs:1:1").collect();
        assert_eq!(
            frames,
            [&br"0: a at C:\\new"[..], &b"1: b at src/b.rs:1:1"[..]]
        );
    }

    #[test]
    fn no_input_makes_the_text_panic_and_a_cut_text_ends_its_colour() {
        for line in [
            &b""[..],
            b"{",
            b"{\"",
            b"{\"k\"",
            b"{\"k\":",
            b"{\"k\":\"\\",
            b"{\"event\":\"panic\",\"message\":\"x\\",
        ] {
            let mut buffer = vec![MaybeUninit::uninit(); 64];
            let mut text = Text::new(&mut buffer, true);
            render(line, &mut text);
            text.finish();
        }
        let long = "x".repeat(200);
        let line = format!(
            r#"{{"event":"panic","severity":"ERROR","message":"{long}","incident.id":"a-1"}}"#
        );
        let mut buffer = vec![MaybeUninit::uninit(); 80];
        let mut text = Text::new(&mut buffer, true);
        render(line.as_bytes(), &mut text);
        let shown = String::from_utf8(text.finish().to_vec()).unwrap();
        assert!(shown.ends_with("…\x1b[0m\n"), "{shown:?}");
    }

    #[test]
    fn the_start_record_shows_nothing() {
        assert_eq!(shown(r#"{"event":"start","message":"started"}"#, true), "");
    }

    #[test]
    fn registry_std_and_unplaced_frames_are_not_the_users() {
        assert!(is_users(b"0: app::f at src/main.rs:1:1"));
        assert!(is_users(b"0: app::f at /srv/app/src/main.rs:1:1"));
        assert!(is_users(b"0: my_app::f at my-app/src/lib.rs:1:1"));
        assert!(!is_users(b"0: tokio::x at tokio-1.48.0/src/lib.rs:1:1"));
        assert!(!is_users(b"0: std::x at library/std/src/rt.rs:1:1"));
        assert!(!is_users(
            b"0: g at /root/.cargo/git/checkouts/g/src/lib.rs:1:1"
        ));
        assert!(!is_users(b"0: main"));
    }

    #[test]
    fn text_too_long_for_the_buffer_is_cut_with_a_mark() {
        let long = "x".repeat(100);
        let line = format!(r#"{{"event":"config","severity":"WARNING","message":"{long}"}}"#);
        let mut buffer = vec![MaybeUninit::uninit(); 64];
        let mut text = Text::new(&mut buffer, false);
        render(line.as_bytes(), &mut text);
        let shown = String::from_utf8(text.finish().to_vec()).unwrap();
        assert!(shown.ends_with("x…\n"), "{shown:?}");
        assert!(shown.len() <= 64);
    }
}
