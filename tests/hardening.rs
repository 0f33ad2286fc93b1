//! Abuse resistance: secrets never leave the process, the webhook refuses
//! strangers before reading what they send, the reload endpoint is gated,
//! and out-of-range or hostile configuration values are refused, not
//! obeyed.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use support::health::{Behaviour, HealthStandIn};
use support::saas::SaaS;
use support::{Daemon, Redis, http_get, http_request, lookout, wait_for};

/// One distinct marker per place a secret can be configured; none of them
/// may appear in anything lookout writes or answers.
const MARKERS: &[&str] = &[
    "mk01hhuser",
    "mk02hhpass",
    "mk03hhquery",
    "mk04hhheader",
    "mk05okquery",
    "mk06okheader",
    "mk07redispwfile",
    "mk08redisurlpw",
    "mk09promuser",
    "mk10prompass",
    "mk11promquery",
    "mk12amuser",
    "mk13ampass",
    "mk14amquery",
    "mk15relaytoken",
    "mk16hookquery",
    "mk17downuser",
    "mk18downpass",
    "mk19downquery",
    "mk20slackpath",
    "mk21slackbot",
    "mk22pdkey",
    "mk23pduser",
    "mk24pdquery",
    "mk25smtppw",
    "mk26topprom",
    "mk27redisquery",
    "mk28redispw",
    "mk29pdkey",
    "mk30slackbot",
    "mk31basicpw",
    "mk32slackhook",
];

/// Panics naming every marker found in `text`, and where.
fn assert_no_marker(surface: &str, text: &str) {
    let found: Vec<&&str> = MARKERS.iter().filter(|m| text.contains(**m)).collect();
    assert!(found.is_empty(), "{surface} leaks {found:?}:\n{text}");
}

/// Every file under `dir`, read as bytes (databases included).
fn assert_no_marker_in_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            assert_no_marker_in_files(&p);
        } else if let Ok(bytes) = std::fs::read(&p) {
            assert_no_marker(&p.display().to_string(), &String::from_utf8_lossy(&bytes));
        }
    }
}

/// The files the `*_file` keys name, in `dir`.
fn write_secret_files(dir: &Path, redis_password: &str) {
    for (name, value) in [
        ("redis_pw", redis_password.to_string()),
        ("relay_token", "mk15relaytoken".into()),
        ("slack_url", "http://127.0.0.1:1/services/T0/B0/mk20slackpath".into()),
        ("slack_bot", "xoxb-mk21slackbot".into()),
        ("pd_key", "mk22pdkey".into()),
        ("smtp_pw", "mk25smtppw".into()),
    ] {
        std::fs::write(dir.join(name), format!("{value}\n")).unwrap();
    }
}

/// A configuration with a marker in every secret-bearing key: probes that
/// succeed (a health endpoint with a token in its query and a header, a
/// Redis with a password) and fail (the rest point at a closed port), an
/// unreachable Alertmanager (so synthetic alerts go through the relay),
/// and destinations that accept and that fail.
fn leaky_config(secrets: &Path, health_port: u16, redis_port: u16, saas: &SaaS) -> String {
    let s = secrets.display();
    format!(
        r##"server:
  listen: {{listen}}
  enable_lifecycle: true
data_dir: {{data_dir}}
probe_files: []
prometheus:
  url: "http://127.0.0.1:1/?token=mk26topprom"
alertmanager:
  url: "http://mk12amuser:mk13ampass@127.0.0.1:1/?token=mk14amquery"
  timeout: 1s
probes:
  - name: ok_health
    kind: http_health
    url: "http://127.0.0.1:{health_port}/health?token=mk05okquery"
    headers: {{Authorization: "Bearer mk06okheader"}}
    every: 1s
  - name: down_health
    kind: http_health
    url: "http://mk01hhuser:mk02hhpass@127.0.0.1:1/health?token=mk03hhquery"
    headers: {{X-Token: "mk04hhheader"}}
    every: 1s
  - name: cache
    kind: redis
    host: 127.0.0.1
    port: {redis_port}
    password_file: {s}/redis_pw
    every: 1s
  - name: cache_down
    kind: redis
    url: "redis://:mk08redisurlpw@127.0.0.1:1/0?token=mk27redisquery"
    every: 1s
  - name: prom
    kind: prometheus
    url: "http://mk09promuser:mk10prompass@127.0.0.1:1/?token=mk11promquery"
    selector: '{{job="x"}}'
    every: 1s
crosscheck:
  every: 1s
  reference: cache
  max_staleness: 5s
alerts:
  evaluation_interval: 1s
  rules:
    HealthEndpointDown: {{for: 1s, fail_after: 1}}
    RedisUnreachable: {{for: 1s, fail_after: 1}}
relay:
  auth:
    bearer_token_file: {s}/relay_token
  destinations:
    - {{name: hook_ok, type: webhook, url: "{hook}?token=mk16hookquery"}}
    - name: hook_down
      type: webhook
      url: "http://mk17downuser:mk18downpass@127.0.0.1:1/hook?token=mk19downquery"
      retry: {{initial_backoff: 100ms, max_backoff: 200ms}}
    - {{name: slack_hook, type: slack, webhook_url_file: {s}/slack_url, retry: {{initial_backoff: 100ms, max_backoff: 200ms}}}}
    - {{name: slack_bot, type: slack, bot_token_file: {s}/slack_bot, channel: "#ops", api_url: "http://127.0.0.1:1/api/", retry: {{initial_backoff: 100ms, max_backoff: 200ms}}}}
    - name: pager
      type: pagerduty
      routing_key_file: {s}/pd_key
      url: "http://mk23pduser:mk22pdkey@127.0.0.1:1/v2/enqueue?token=mk24pdquery"
      retry: {{initial_backoff: 100ms, max_backoff: 200ms}}
    - {{name: mail, type: email, host: 127.0.0.1, port: 1, tls: none, username: u, password_file: {s}/smtp_pw, from: a@example.org, to: [b@example.org], retry: {{initial_backoff: 100ms, max_backoff: 200ms}}}}
"##,
        hook = saas.url("/hook"),
    )
}

/// Output and errors of a `lookout` command.
fn run_lookout(args: &[&str], config: &Path) -> (Option<i32>, String) {
    // Run beside the file, away from the repository's own `probes/`.
    let dir = config.parent().unwrap_or(Path::new("/"));
    let out = lookout()
        .current_dir(dir)
        .args(args)
        .arg("-c")
        .arg(config)
        .output()
        .expect("lookout runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

const REPORT_FORMATS: &[&str] = &["text", "json", "markdown", "html", "junit"];

#[test]
fn no_secret_leaves_the_process() {
    let redis_pw = "mk07redispwfile";
    let redis = Redis::start(&["--requirepass", redis_pw]);
    let health = HealthStandIn::start(
        "/health",
        Behaviour::Documented(format!("redis://:{redis_pw}@127.0.0.1:{}", redis.port)),
    );
    let saas = SaaS::start();
    let secrets = tempfile::tempdir().unwrap();
    write_secret_files(secrets.path(), redis_pw);
    let config = leaky_config(secrets.path(), health.port, redis.port, &saas);

    for log_format in ["text", "json"] {
        let d = Daemon::start_after(&format!("set -- \"$@\" --log-level debug --log-format {log_format}"), &config);
        let cfg = d.config.clone();
        // The command line, on both paths (the config names failing and
        // working probes), in every format.
        for args in [vec!["config", "check"], vec!["check"], vec!["check", "--format", "json"]] {
            let mut a = args.clone();
            a.extend(["--log-level", "debug", "--log-format", log_format]);
            let (_, text) = run_lookout(&a, &cfg);
            assert_no_marker(&format!("lookout {}", a.join(" ")), &text);
        }
        for f in REPORT_FORMATS {
            let (_, text) = run_lookout(&["report", "--format", f, "--log-format", log_format], &cfg);
            assert_no_marker(&format!("lookout report --format {f}"), &text);
        }

        // The daemon: a synthetic alert for the failing endpoint reaches the
        // destination that accepts, and the failing ones have retried.
        wait_for("a synthetic alert delivered", Duration::from_secs(30), || {
            saas.received_on("/hook")
                .iter()
                .any(|r| r.body.to_string().contains("down_health"))
                .then_some(())
        });
        wait_for("a cross-check round", Duration::from_secs(20), || {
            http_get(d.port, "/report?format=json").filter(|(s, _)| *s == 200)
        });
        wait_for("failed deliveries", Duration::from_secs(20), || {
            d.logs().contains("Delivery failed").then_some(())
        });
        for r in saas.received() {
            assert_no_marker("a delivered notification", &r.body.to_string());
        }
        let mut paths: Vec<String> = ["/", "/api/v1/probes", "/api/v1/alerts", "/metrics", "/report"]
            .iter()
            .map(|p| p.to_string())
            .collect();
        paths.extend(REPORT_FORMATS.iter().map(|f| format!("/report?format={f}")));
        for p in &paths {
            let (status, body) = http_get(d.port, p).unwrap_or_else(|| panic!("GET {p} answers"));
            assert_eq!(status, 200, "GET {p}: {body}");
            assert_no_marker(&format!("GET {p}"), &body);
        }

        // A rejected reload answers with locations and messages only.
        let good = std::fs::read_to_string(&cfg).unwrap();
        std::fs::write(
            &cfg,
            good.replace("http://127.0.0.1:1/api/", "ftp://127.0.0.1:1/api/?token=mk21slackbot")
                .replace("kind: prometheus", "kind: prometheus\n    timeout: 2h")
                .replace("url: \"http://mk17downuser", "url: \"gopher://mk17downuser"),
        )
        .unwrap();
        let (status, body) = http_request(d.port, "POST", "/-/reload", "").unwrap();
        assert_eq!(status, 500, "{body}");
        assert_no_marker("a rejected reload's answer", &body);
        let (code, text) = run_lookout(&["config", "check"], &cfg);
        assert_eq!(code, Some(78), "{text}");
        assert_no_marker("config check of an invalid file", &text);
        std::fs::write(&cfg, good).unwrap();

        let mut d = d;
        d.proc.terminate(Duration::from_secs(15)).expect("lookout stops");
        assert_no_marker(&format!("the daemon's {log_format} log"), &d.logs());
        assert_no_marker_in_files(&d.dir.path().join("data"));
        let (_, text) = run_lookout(&["report", "--window", "1h"], &cfg);
        assert_no_marker("lookout report --window", &text);
    }
}

/// Configuration errors say which key is wrong, never what its URL was.
#[test]
fn configuration_errors_never_echo_a_url() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lookout.yaml");
    for (case, must_name) in [
        (
            "probes:\n  - {name: h, kind: http_health, url: \"ftp://mk01hhuser:mk02hhpass@h/health?token=mk03hhquery\"}\n",
            "url",
        ),
        (
            "relay:\n  destinations:\n    - {name: w, type: webhook, url: \"gopher://h/hook?token=mk19downquery\"}\n",
            "relay.destinations.url",
        ),
        (
            "relay:\n  destinations:\n    - {name: p, type: pagerduty, routing_key: k, url: \"mk23pduser@h?token=mk24pdquery\"}\n",
            "relay.destinations.url",
        ),
        (
            "relay:\n  destinations:\n    - {name: s, type: slack, webhook_url: \"hooks.slack.com/services/T0/B0/mk20slackpath\"}\n",
            "relay.destinations.webhook_url",
        ),
        (
            "probes:\n  - {name: r, kind: redis, url: \"redis://:mk08redisurlpw@/0?token=mk27redisquery\"}\n",
            "url",
        ),
        ("alertmanager:\n  url: \"mailto:mk12amuser?token=mk14amquery\"\n", "url"),
    ] {
        std::fs::write(&path, case).unwrap();
        let (code, text) = run_lookout(&["config", "check"], &path);
        assert_eq!(code, Some(78), "{case}: {text}");
        assert!(text.contains(must_name), "{case}: the error names `{must_name}`: {text}");
        assert_no_marker(case, &text);
    }
}

/// A relay that wants a bearer token, logging what it accepts.
fn relay_daemon() -> Daemon {
    Daemon::start(
        "server:\n  listen: {listen}\ndata_dir: {data_dir}\nprobe_files: []\nrelay:\n  auth:\n    bearer_token: tok-hardening\n  destinations:\n    - {name: log, type: log}\n",
    )
}

/// Reads a response's status line and headers (up to the blank line).
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Whether the server closes the connection within `within` (reads to EOF,
/// discarding a response body).
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

#[test]
fn webhook_refuses_strangers_before_reading_their_body() {
    let d = relay_daemon();

    // A declared body that never comes: 401 at once, then the connection closes.
    let mut s = connect(d.port);
    let t = Instant::now();
    s.write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
        .unwrap();
    let head = read_head(&mut s);
    let took = t.elapsed();
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(took < Duration::from_secs(1), "401 after {took:?}");
    assert!(head.to_ascii_lowercase().contains("www-authenticate: bearer"), "{head}");
    assert!(closed_within(&mut s, Duration::from_secs(2)), "connection left open after the 401");

    // `Expect: 100-continue` without credentials: no 100, a 401.
    let mut s = connect(d.port);
    s.write_all(
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");

    // With credentials the same request is invited and accepted.
    let body = support::am_payload("{}:{alertname=\"X\"}", "firing", &[("X", "i", "firing")]);
    let mut s = connect(d.port);
    write!(
        s,
        "POST /webhook HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-hardening\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    )
    .unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 100"), "{head}");
    s.write_all(body.as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // 150 unauthenticated 1 MB uploads at once cost no memory.
    let before = rss_kib(d.proc.pid());
    let uploads: Vec<_> = (0..150)
        .map(|_| {
            let port = d.port;
            std::thread::spawn(move || {
                let mut s = connect(port);
                let _ =
                    s.write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n");
                let _ = s.write_all(&vec![b'x'; 1_000_000]);
                read_head(&mut s)
            })
        })
        .collect();
    for u in uploads {
        let head = u.join().unwrap();
        assert!(head.is_empty() || head.starts_with("HTTP/1.1 401"), "{head}");
    }
    let after = rss_kib(d.proc.pid());
    assert!(
        after < before + 30 * 1024,
        "RSS grew from {before} KiB to {after} KiB under unauthenticated uploads"
    );
}

/// A process's resident set size (`VmRSS`), in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// A raw request with the given extra header lines; the status code.
fn post_with(port: u16, path: &str, headers: &str, body: &str) -> u16 {
    let mut s = connect(port);
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let head = read_head(&mut s);
    head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn reload_over_http_is_gated() {
    let base = "server:\n  listen: {listen}\ndata_dir: {data_dir}\nprobe_files: []\n";
    let d = Daemon::start(base);
    assert_eq!(post_with(d.port, "/-/reload", "", ""), 403, "off by default");

    d.write_config(&base.replace("{listen}\n", "{listen}\n  enable_lifecycle: true\n"));
    support::send_signal(d.proc.pid(), libc::SIGHUP);
    wait_for("the lifecycle API after SIGHUP", Duration::from_secs(10), || {
        (post_with(d.port, "/-/reload", "", "") == 200).then_some(())
    });
    // A cross-site form post is refused whatever its timing.
    for ct in ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"] {
        assert_eq!(
            post_with(d.port, "/-/reload", &format!("Content-Type: {ct}\r\n"), "a=b"),
            415,
            "{ct}"
        );
    }
    // Nor does another site's script, even without a body.
    assert_eq!(post_with(d.port, "/-/reload", "Origin: http://evil.example\r\n", ""), 403);
    assert_eq!(post_with(d.port, "/-/reload", "Sec-Fetch-Site: cross-site\r\n", ""), 403);
    // One a second.
    wait_for("the next second", Duration::from_secs(5), || {
        (post_with(d.port, "/-/reload", "Content-Type: application/json\r\nOrigin: http://x\r\n", "{}") == 200).then_some(())
    });
    assert_eq!(post_with(d.port, "/-/reload", "", ""), 429);
}

/// `config check` on `text`: its exit status and output, or a panic if it
/// does not finish in 10 s (a FIFO used to hang it).
fn config_check(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lookout.yaml");
    std::fs::write(&path, text).unwrap();
    let out_path = dir.path().join("out");
    let mut child = lookout()
        .current_dir(dir.path())
        .args(["config", "check", "-c"])
        .arg(&path)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Killed, not left behind, if it hangs.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`config check` still running after 10 s on:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
    (status.code(), err)
}

#[test]
fn out_of_range_values_are_refused_by_name() {
    let probe = |extra: &str| format!("probe_files: []\nprobes:\n  - {{name: r, kind: redis, {extra}}}\n");
    let relay = |extra: &str| format!("relay:\n{extra}");
    for (text, field) in [
        (
            relay("  destinations:\n    - {name: s, type: webhook, url: \"http://h/\", rate_limit: \"0.0000000000000000001/h\"}\n"),
            "rate_limit",
        ),
        (
            relay("  destinations:\n    - {name: s, type: webhook, url: \"http://h/\", rate_limit: \"1e300/s\"}\n"),
            "rate_limit",
        ),
        (
            relay("  destinations:\n    - {name: s, type: webhook, url: \"http://h/\", timeout: 2h}\n"),
            "timeout",
        ),
        (
            relay("  destinations:\n    - {name: s, type: webhook, url: \"http://h/\", retry: {initial_backoff: 1ns}}\n"),
            "initial_backoff",
        ),
        (
            relay("  destinations:\n    - {name: s, type: webhook, url: \"http://h/\", concurrency: 0}\n"),
            "concurrency",
        ),
        (
            relay("  destinations:\n    - {name: s, type: webhook, url: \"http://h/\", concurrency: 1025}\n"),
            "concurrency",
        ),
        (
            relay("  destinations:\n    - {name: s, type: webhook, url: \"http://h/\", burst: 0}\n"),
            "burst",
        ),
        (probe("every: 1ns"), "every"),
        (probe("every: 18446744073709551615s"), "every"),
        (probe("timeout: 1000000000000d"), "timeout"),
        (probe("timeout: 2h"), "timeout"),
        (relay("  max_body_bytes: 0\n"), "max_body_bytes"),
        (relay("  max_body_bytes: 18446744073709551615\n"), "max_body_bytes"),
    ] {
        let (code, err) = config_check(&text);
        assert_eq!(code, Some(78), "{text}: {err}");
        assert!(err.contains(field), "{text}: names `{field}`: {err}");
    }
}

#[test]
fn secret_files_must_be_small_regular_non_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'a'; 65 * 1024]).unwrap();
    for (path, why) in [
        (Path::new("/dev/zero"), "not a regular file"),
        (fifo.as_path(), "not a regular file"),
        (dir.path(), "not a regular file"),
        (empty.as_path(), "empty"),
        (big.as_path(), "larger than 64 KiB"),
    ] {
        let (code, err) = config_check(&format!("relay:\n  auth:\n    bearer_token_file: {}\n", path.display()));
        assert_eq!(code, Some(78), "{}: {err}", path.display());
        assert!(err.contains(why), "{}: {err}", path.display());
        assert!(err.contains("bearer_token"), "{err}");
    }
}

/// The same keys given inline rather than from files, with basic
/// authentication on the relay: nothing of them in `check`, the log, the
/// API or `data_dir`.
#[test]
fn inline_secrets_never_printed() {
    let config = "server:\n  listen: {listen}\ndata_dir: {data_dir}\nprobe_files: []\nprobes:\n  - {name: cache, kind: redis, host: 127.0.0.1, port: 1, password: mk28redispw, every: 1s}\nrelay:\n  auth:\n    basic: {username: am, password: mk31basicpw}\n  destinations:\n    - {name: pager, type: pagerduty, routing_key: mk29pdkey, url: \"http://127.0.0.1:1/\"}\n    - {name: bot, type: slack, bot_token: xoxb-mk30slackbot, channel: \"#ops\", api_url: \"http://127.0.0.1:1/api/\"}\n    - {name: hook, type: slack, webhook_url: \"https://hooks.slack.com/services/T0/B0/mk32slackhook\"}\n";
    let d = Daemon::start_after("set -- \"$@\" --log-level debug", config);
    for args in [vec!["check"], vec!["check", "--format", "json"], vec!["config", "check"]] {
        let (_, text) = run_lookout(&args, &d.config);
        assert_no_marker(&format!("lookout {}", args.join(" ")), &text);
    }
    // A wrong password is refused without the right one in the answer.
    let (status, body) = support::http_post(d.port, "/webhook", b"{}", &[("Authorization", "Basic YW06d3Jvbmc=")]).unwrap();
    assert_eq!(status, 401);
    assert_no_marker("a refused webhook", &body);
    wait_for("the Redis probe to fail", Duration::from_secs(10), || {
        d.logs().contains("Probe failed").then_some(())
    });
    for p in ["/", "/api/v1/probes", "/api/v1/alerts", "/metrics"] {
        let (_, body) = http_get(d.port, p).unwrap();
        assert_no_marker(p, &body);
    }
    let mut d = d;
    d.proc.terminate(Duration::from_secs(15)).expect("lookout stops");
    assert_no_marker("the daemon's log", &d.logs());
    assert_no_marker_in_files(&d.dir.path().join("data"));
}
