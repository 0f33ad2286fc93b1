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

/// `curl` against the listener: the HTTP status (`000` when no HTTP answer
/// came: a refused handshake) and the response headers.
fn curl(args: &[&str], url: &str) -> (String, String) {
    let out = std::process::Command::new(support::require("curl"))
        .args(["-s", "-o", "/dev/null", "-D", "-", "-w", "%{http_code}", "--max-time", "5"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = text.get(text.len().saturating_sub(3)..).unwrap_or("").to_string();
    (code, text)
}

/// `server.web_config_file` in exporter-toolkit's format: the listener
/// speaks TLS only, requires a client certificate signed by the client CA,
/// and a basic-auth user whose bcrypt hash matches; a file the toolkit would
/// take but lookout cannot honour is refused by its field, and a hash is
/// never echoed.
#[test]
fn web_config_file_serves_tls_client_certificates_and_basic_auth() {
    let ca = support::TestCa::new();
    let dir = ca.dir.path();
    let (client_cert, client_key) = ca.client_cert();
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let web = dir.join("web.yml");
    // Relative paths are read from the web configuration file's directory.
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  min_version: TLS12\nhttp_server_config:\n  http2: false\nbasic_auth_users:\n  admin: '{hash}'\n"
        ),
    )
    .unwrap();
    let port = support::free_port();
    let data = tempfile::tempdir().unwrap();
    let cfg = data.path().join("lookout.yaml");
    std::fs::write(
        &cfg,
        format!(
            "server:\n  listen: 127.0.0.1:{port}\n  web_config_file: {}\ndata_dir: {}\nprobe_files: []\n",
            web.display(),
            data.path().join("data").display()
        ),
    )
    .unwrap();
    let mut cmd = support::lookout();
    cmd.args(["run", "-c"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut daemon = support::Proc::spawn("lookout", &mut cmd);
    let url = format!("https://127.0.0.1:{port}/metrics");
    let ca_pem = ca.ca.display().to_string();
    let (cert, key) = (client_cert.display().to_string(), client_key.display().to_string());
    let full = ["--cacert", &ca_pem, "--cert", &cert, "--key", &key, "-u", "admin:s3cret"];
    support::wait_for("lookout serving TLS", Duration::from_secs(20), || {
        assert!(daemon.exited().is_none(), "lookout exited");
        (curl(&full, &url).0 == "200").then_some(())
    });
    // The password: missing or wrong is 401 with the scheme to use.
    let (code, head) = curl(&full[..6], &url);
    assert_eq!(code, "401", "{head}");
    assert!(head.to_ascii_lowercase().contains("www-authenticate: basic"), "{head}");
    assert_eq!(curl(&[&full[..6], &["-u", "admin:wrong"]].concat(), &url).0, "401");
    assert_eq!(curl(&[&full[..6], &["-u", "nobody:s3cret"]].concat(), &url).0, "401");
    // Without a client certificate, or over plain HTTP: no HTTP answer at all.
    assert_eq!(curl(&["--cacert", &ca_pem, "-u", "admin:s3cret"], &url).0, "000");
    assert_eq!(curl(&["-u", "admin:s3cret"], &format!("http://127.0.0.1:{port}/metrics")).0, "000");
    daemon.kill();

    // What lookout cannot honour is refused by field, in the web file.
    for (text, field, says) in [
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAnyClientCert\n  client_ca_file: ca.pem\n",
            "tls_server_config.client_auth_type",
            "without verifying it",
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS11\n",
            "tls_server_config.min_version",
            "TLS 1.2 and 1.3",
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: ca.key\n",
            "tls_server_config.key_file",
            "does not go with",
        ),
        (
            "basic_auth_users:\n  admin: 'hunter2-plain'\n",
            "basic_auth_users.admin",
            "not a bcrypt hash",
        ),
    ] {
        std::fs::write(&web, text).unwrap();
        let out = support::lookout().args(["config", "check", "-c"]).arg(&cfg).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{text}: {err}");
        assert!(
            err.contains("web.yml") && err.contains(field) && err.contains(says),
            "{text}: {err}"
        );
        assert!(!err.contains("hunter2"), "a hash or password is never echoed: {err}");
    }

    // Users without TLS: every route asks for them, but `/webhook` keeps
    // the relay's own credential (Alertmanager sends one Authorization).
    std::fs::write(&web, format!("basic_auth_users:\n  admin: '{hash}'\n")).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "server:\n  listen: 127.0.0.1:{port}\n  web_config_file: {}\ndata_dir: {}\nprobe_files: []\nrelay:\n  auth:\n    bearer_token: relay-token\n  destinations:\n    - {{name: log, type: log}}\n",
            web.display(),
            data.path().join("data").display()
        ),
    )
    .unwrap();
    let mut daemon = support::Proc::spawn("lookout", &mut cmd);
    let plain = format!("http://127.0.0.1:{port}/metrics");
    support::wait_for("lookout serving HTTP", Duration::from_secs(20), || {
        assert!(daemon.exited().is_none(), "lookout exited");
        (curl(&["-u", "admin:s3cret"], &plain).0 == "200").then_some(())
    });
    assert_eq!(curl(&[], &plain).0, "401");
    let body = support::am_payload("g", "firing", &[("A", "i", "firing")]);
    let post = |auth: &str| {
        support::http_post(
            port,
            "/webhook",
            body.as_bytes(),
            &[("Content-Type", "application/json"), ("Authorization", auth)],
        )
        .map(|(s, _)| s)
    };
    assert_eq!(post("Bearer relay-token"), Some(200));
    assert_eq!(post("Bearer wrong"), Some(401));
    daemon.kill();
}
