//! SIGTERM to a crashguard server with slow requests in flight: how long it takes to exit.

use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use crate::client::Connection;
use crate::servers::{Kind, Server};

/// A crashguard server gets SIGTERM while slow requests are in flight.
pub struct Shutdown {
    /// SIGTERM to the last answer: what the slowest request still needed.
    pub slowest_needed: Duration,
    /// SIGTERM to the process's end.
    pub exited_after: Duration,
    pub answered: usize,
    pub exit_code: Option<i32>,
}

pub fn sigterm_with_requests_in_flight(scratch: &std::path::Path) -> Shutdown {
    let mut server = Server::start(Kind::Crashguard, false, scratch);
    let requests = [300, 400, 500, 600];
    let started = Barrier::new(requests.len() + 1);
    let answers: Mutex<Vec<(u16, Instant)>> = Mutex::new(Vec::new());
    let addr = server.addr;
    let (signalled, exited, status) = std::thread::scope(|scope| {
        for millis in requests {
            let (started, answers) = (&started, &answers);
            scope.spawn(move || {
                let mut connection = Connection::open(addr).expect("connect");
                started.wait();
                let request = format!("GET /slow/{millis} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n");
                let answer = connection.get(request.as_bytes());
                let status = answer.map_or(0, |answer| answer.status);
                answers.lock().unwrap().push((status, Instant::now()));
            });
        }
        started.wait();
        std::thread::sleep(Duration::from_millis(100));
        let pid = i32::try_from(server.child.id()).unwrap();
        let signalled = Instant::now();
        // SAFETY: kill(2) on our own child, which has not been reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = server.child.wait().expect("wait for the server");
        (signalled, Instant::now(), status)
    });
    let answers = answers.into_inner().unwrap();
    let last = answers.iter().map(|(_, at)| *at).max().unwrap_or(signalled);
    server.new_stderr();
    Shutdown {
        slowest_needed: last.saturating_duration_since(signalled),
        exited_after: exited - signalled,
        answered: answers.iter().filter(|(status, _)| *status == 200).count(),
        exit_code: status.code(),
    }
}
