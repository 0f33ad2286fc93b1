//! The listener under abuse: a client that sends its headers slowly, or not
//! at all, is cut off after `header_read_timeout`, and connections beyond
//! `max_connections` are closed at once while the daemon keeps serving.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{Daemon, http_get};

/// Reads until the server closes the connection (or `limit` passes).
fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => continue,
            // Closed with the request unread: the peer resets.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(start.elapsed()),
            Err(_) => return None,
        }
    }
}

#[test]
fn a_slow_client_is_cut_off_and_the_connection_cap_holds() {
    let d = Daemon::start(
        "server:\n  listen: {listen}\n  header_read_timeout: 1s\n  max_connections: 3\ndata_dir: {data_dir}\nprobe_files: []\n",
    );
    let addr = format!("127.0.0.1:{}", d.port);

    // Headers a byte at a time, never finished: closed after about 1 s.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
    let t = closed_within(&mut slow, Duration::from_secs(5)).expect("the slow client is cut off");
    assert!(t < Duration::from_secs(3), "cut off after {t:?}");

    // Idle connections fill the cap; one more is closed at once, unserved.
    let idle: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    // The listener has taken them once a request on a fourth would be refused;
    // until then a fourth is served and closed by us, so poll.
    let t = support::wait_for("a connection over the cap closed unserved", Duration::from_secs(2), || {
        let mut over = TcpStream::connect(&addr).ok()?;
        over.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok();
        let mut answer = String::new();
        over.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
        let start = Instant::now();
        match over.read_to_string(&mut answer) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(start.elapsed()),
            Ok(_) if answer.is_empty() => Some(start.elapsed()),
            _ => None,
        }
    });
    assert!(t < Duration::from_millis(500), "closed after {t:?}");

    // The idle ones time out too, and the daemon serves again.
    let healthy = support::wait_for("/-/healthy after the idle connections time out", Duration::from_secs(5), || {
        http_get(d.port, "/-/healthy").filter(|(s, _)| *s == 200)
    });
    assert_eq!(healthy.0, 200);
    drop(idle);
    assert!(d.logs().contains("Connection limit reached"), "{}", d.logs());
}
