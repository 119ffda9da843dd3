//! The load generator: keep-alive HTTP/1.1 connections on loopback, one thread each.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use crate::cli::Options;

/// Connections on one path.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub path: &'static str,
    pub connections: usize,
}

/// What the connections on one path saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Every request sent, warm-up included; each got an answer or counts in `no_answer`.
    pub sent: u64,
    pub status_200: u64,
    pub status_500: u64,
    pub other_status: u64,
    pub no_answer: u64,
    /// Requests started in the measured window, and their latencies.
    pub measured: u64,
    pub latencies_us: Vec<u32>,
    /// `x-incident-id` of every 500, hashed.
    pub incidents: Vec<u64>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.sent += other.sent;
        self.status_200 += other.status_200;
        self.status_500 += other.status_500;
        self.other_status += other.other_status;
        self.no_answer += other.no_answer;
        self.measured += other.measured;
        self.latencies_us.extend(other.latencies_us);
        self.incidents.extend(other.incidents);
    }
}

/// Drives `loads` at `addr` together: warm-up, then the measured window; every connection
/// finishes the request it is in when time is up, so every request sent has its outcome.
pub fn drive(addr: SocketAddr, loads: &[Load], options: &Options) -> Vec<Tally> {
    let threads: usize = loads.iter().map(|load| load.connections).sum();
    let start = Barrier::new(threads + 1);
    let tallies: Vec<Mutex<Tally>> = loads.iter().map(|_| Mutex::default()).collect();
    std::thread::scope(|scope| {
        for (load, tally) in loads.iter().zip(&tallies) {
            for _ in 0..load.connections {
                let start = &start;
                scope.spawn(move || {
                    start.wait();
                    let began = Instant::now();
                    let measured_from = began + options.warmup;
                    let end = measured_from + options.measure;
                    let mine = connection(addr, load.path, measured_from, end);
                    tally.lock().unwrap().merge(mine);
                });
            }
        }
        start.wait();
    });
    tallies
        .into_iter()
        .map(|tally| tally.into_inner().unwrap())
        .collect()
}

/// One keep-alive connection sending `GET path` until `end`, reconnecting when the server drops
/// it.
fn connection(addr: SocketAddr, path: &str, measured_from: Instant, end: Instant) -> Tally {
    let request = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n");
    let mut tally = Tally {
        latencies_us: Vec::with_capacity(1 << 16),
        ..Tally::default()
    };
    let mut connection: Option<Connection> = None;
    loop {
        let sent_at = Instant::now();
        if sent_at >= end {
            return tally;
        }
        let open = match &mut connection {
            Some(open) => open,
            None => match Connection::open(addr) {
                Ok(opened) => connection.insert(opened),
                Err(_) => {
                    tally.no_answer += 1;
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
            },
        };
        tally.sent += 1;
        let answer = open.get(request.as_bytes());
        let took = sent_at.elapsed();
        match answer {
            Ok(answer) => {
                match answer.status {
                    200 => tally.status_200 += 1,
                    500 => tally.status_500 += 1,
                    _ => tally.other_status += 1,
                }
                if let Some(incident) = answer.incident {
                    tally.incidents.push(incident);
                }
                if sent_at >= measured_from {
                    tally.measured += 1;
                    tally
                        .latencies_us
                        .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                }
            }
            Err(_) => {
                tally.no_answer += 1;
                connection = None;
            }
        }
    }
}

/// A keep-alive HTTP/1.1 client connection with one request in flight at a time; it reads
/// answers into one buffer, without allocating, so that the client takes as little CPU from the
/// servers as it can.
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

pub struct Answer {
    pub status: u16,
    /// `x-incident-id`, hashed.
    incident: Option<u64>,
}

impl Connection {
    pub fn open(addr: SocketAddr) -> io::Result<Connection> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Connection {
            stream,
            buf: vec![0; 16 * 1024],
        })
    }

    /// Sends `request` and reads its answer, which must have a `content-length` body.
    pub fn get(&mut self, request: &[u8]) -> io::Result<Answer> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
        self.stream.write_all(request)?;
        let mut filled = 0;
        let head_end = loop {
            if let Some(end) = self.buf[..filled]
                .windows(4)
                .position(|window| window == b"\r\n\r\n")
            {
                break end + 4;
            }
            if filled == self.buf.len() {
                return Err(invalid("head too long"));
            }
            filled += self.read_more(filled)?;
        };
        let head = &self.buf[..head_end];
        let status = std::str::from_utf8(head.get(9..12).unwrap_or_default())
            .ok()
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid("status line"))?;
        let mut length = 0;
        let mut incident = None;
        for line in head.split(|byte| *byte == b'\n').skip(1) {
            if let Some(value) = header_value(line, b"content-length") {
                length = std::str::from_utf8(value)
                    .ok()
                    .and_then(|value| value.parse().ok())
                    .ok_or_else(|| invalid("content-length"))?;
            } else if let Some(value) = header_value(line, b"x-incident-id") {
                incident = Some(fnv1a(value));
            } else if header_value(line, b"transfer-encoding").is_some() {
                return Err(invalid("chunked answers are not expected"));
            }
        }
        let total = head_end + length;
        if total > self.buf.len() {
            self.buf.resize(total, 0);
        }
        while filled < total {
            filled += self.read_more(filled)?;
        }
        Ok(Answer { status, incident })
    }

    fn read_more(&mut self, filled: usize) -> io::Result<usize> {
        match self.stream.read(&mut self.buf[filled..])? {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            read => Ok(read),
        }
    }
}

/// The value of header `name` if `line` is that header.
fn header_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let rest = line.strip_suffix(b"\r").unwrap_or(line);
    (rest.len() > name.len()
        && rest[..name.len()].eq_ignore_ascii_case(name)
        && rest[name.len()] == b':')
        .then(|| rest[name.len() + 1..].trim_ascii())
}

/// FNV-1a: incident ids are compared by hash, so that the client keeps no strings.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
