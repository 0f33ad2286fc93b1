//! `lookout doctor` against real parts: Redis with a password, three
//! redis_exporters (the right password, a wrong one, one stopped), a fourth
//! reading another Redis, Prometheus with the guide's rule files (and a
//! second one without them), Alertmanager routing critical alerts to
//! lookout's webhook, and a stand-in answering as Grafana's HTTP API does.
//! An honest configuration passes every check (exit 0); each fault is named
//! by the check that owns it (exit 1).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use support::{Alertmanager, Proc, Prometheus, Redis, http_get, lookout, require, start_on_free_port};

const PASSWORD: &str = "s3cret-pw";
const TOKEN: &str = "glsa_doctor_test_token";
const PROM_PASSWORD: &str = "prom-url-pw";

/// redis_exporter reading `redis` with `password` (none when empty).
fn exporter(redis: &Redis, password: &str) -> (u16, Proc) {
    start_on_free_port(
        "redis_exporter",
        Duration::from_secs(15),
        |port| {
            let mut cmd = Command::new(require("prometheus-redis-exporter"));
            cmd.arg(format!("--redis.addr={}", redis.url()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if !password.is_empty() {
                cmd.arg(format!("--redis.password={password}"));
            }
            Proc::spawn("redis_exporter", &mut cmd)
        },
        |port, _| http_get(port, "/metrics").is_some_and(|(s, b)| s == 200 && b.contains("redis_exporter_build_info")),
    )
}

/// A Prometheus with `rules` (paths under deploy/prometheus/alerts),
/// alerting to `am`, scraping `jobs` every second.
fn prometheus(jobs: &[(&str, String)], rules: &[&str], am: &str) -> Prometheus {
    let root = support::root().join("deploy/prometheus/alerts");
    let files: Vec<std::path::PathBuf> = rules.iter().map(|r| root.join(r)).collect();
    support::prometheus_with_rules(jobs, &files, am)
}

/// A stand-in for Grafana's HTTP API: the datasource list, a datasource's
/// health and the dashboard search, behind a bearer token. `moved` puts
/// the dashboard in another folder.
struct Grafana {
    port: u16,
    moved: Arc<AtomicBool>,
    /// Seconds added to the `Date` header: a stale clock.
    skew: Arc<AtomicI64>,
}

impl Grafana {
    fn start() -> Grafana {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let moved = Arc::new(AtomicBool::new(false));
        let m = moved.clone();
        let skew = Arc::new(AtomicI64::new(0));
        let k = skew.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut reader = BufReader::new(s.try_clone().unwrap());
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                let mut authorised = false;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if line.to_ascii_lowercase().starts_with("authorization:") && line.contains(&format!("Bearer {TOKEN}")) {
                        authorised = true;
                    }
                }
                let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
                let folder = if m.load(Ordering::SeqCst) { "General" } else { "Trinity Cache" };
                let (status, body) = if !authorised {
                    (401, r#"{"message":"Unauthorized"}"#.to_string())
                } else if path == "/api/datasources" {
                    (200, r#"[{"id":1,"uid":"loki","type":"loki","isDefault":false},{"id":2,"uid":"prom","name":"Prometheus","type":"prometheus","isDefault":true}]"#.to_string())
                } else if path == "/api/datasources/uid/prom/health" {
                    (
                        200,
                        r#"{"status":"OK","message":"Successfully queried the Prometheus API."}"#.to_string(),
                    )
                } else if path.starts_with("/api/search?") {
                    (
                        200,
                        format!(
                            r#"[{{"id":7,"uid":"redis-cache","title":"Redis Cache Overview","type":"dash-db","folderTitle":"{folder}"}}]"#
                        ),
                    )
                } else {
                    (404, r#"{"message":"Not found"}"#.to_string())
                };
                let date = (chrono::Utc::now() + chrono::Duration::seconds(k.load(Ordering::SeqCst))).format("%a, %d %b %Y %H:%M:%S GMT");
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\nDate: {date}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Grafana { port, moved, skew }
    }
}

/// Runs `lookout doctor --format json` with `config`: (exit status, checks).
fn doctor(dir: &std::path::Path, config: &str) -> (i32, Vec<serde_json::Value>) {
    let path = dir.join("lookout.yaml");
    std::fs::write(&path, config).unwrap();
    let out = lookout()
        .current_dir(dir)
        .args(["doctor", "--format", "json", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let checks: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    (out.status.code().unwrap_or(-1), checks)
}

fn status_of<'a>(checks: &'a [serde_json::Value], name: &str) -> Option<&'a str> {
    checks.iter().find(|c| c["name"] == name).and_then(|c| c["status"].as_str())
}

/// Polls doctor until `name` has `status`; returns the run.
fn until(dir: &std::path::Path, config: &str, name: &str, status: &str) -> (i32, Vec<serde_json::Value>) {
    let mut last = Vec::new();
    let found = wait_for_opt(Duration::from_secs(40), || {
        let (code, checks) = doctor(dir, config);
        if status_of(&checks, name) == Some(status) {
            return Some((code, checks));
        }
        last = checks;
        None
    });
    found.unwrap_or_else(|| {
        panic!(
            "{name} never became {status}; last run: {}",
            serde_json::to_string_pretty(&last).unwrap()
        )
    })
}

fn wait_for_opt<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    None
}

#[test]
fn an_honest_stack_passes_and_each_fault_is_named_by_its_check() {
    let redis = Redis::start(&["--requirepass", PASSWORD]);
    let other = Redis::start(&[]);
    let (good_port, _good) = exporter(&redis, PASSWORD);
    let (wrong_port, _wrong) = exporter(&redis, "not-the-password");
    let (stopped_port, mut stopped) = exporter(&redis, PASSWORD);
    let (other_port, _other_exp) = exporter(&other, "");
    let listen = support::free_port();
    let am = Alertmanager::start(&format!(
        "route:\n  receiver: default\n  routes:\n    - receiver: lookout\n      matchers: ['severity = \"critical\"']\nreceivers:\n  - name: default\n  - name: lookout\n    webhook_configs:\n      - url: http://127.0.0.1:{listen}/webhook\n"
    ));
    let am_addr = format!("127.0.0.1:{}", am.port);
    let jobs = [
        ("redis", format!("127.0.0.1:{good_port}")),
        ("wrong_password", format!("127.0.0.1:{wrong_port}")),
        ("stopped", format!("127.0.0.1:{stopped_port}")),
        ("wrong_port", format!("127.0.0.1:{other_port}")),
    ];
    let prom = prometheus(&jobs, &["redis.rules.yml", "lookout.rules.yml"], &am_addr);
    let prom_norules = prometheus(&jobs[..1], &["lookout.rules.yml"], &am_addr);
    let grafana = Grafana::start();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("grafana-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        "services:\n  redis:\n    image: redis:7\n  prometheus:\n    image: prom/prometheus\n    profiles: [cache-monitoring]\n",
    )
    .unwrap();

    let config = |prom_url: &str, job: &str| {
        format!(
            "server:\n  listen: 127.0.0.1:{listen}\ndata_dir: {}\nprobe_files: []\nalertmanager:\n  url: {}\ngrafana:\n  url: http://127.0.0.1:{}\n  token_file: {}\nrelay:\n  destinations:\n    - name: log\n      type: log\nprobes:\n  - name: cache\n    kind: redis\n    url: redis://:{PASSWORD}@127.0.0.1:{}\n  - name: prom\n    kind: prometheus\n    url: {prom_url}\n    selector: '{{job=\"{job}\"}}'\n",
            dir.path().join("data").display(),
            am.url(),
            grafana.port,
            token_file.display(),
            redis.port,
        )
    };

    // Honest: every check passes or does not apply; exit 0.
    // Credentials in Prometheus's URL (Prometheus without a web config
    // ignores them) must not be printed.
    let honest = config(&format!("http://doctor:{PROM_PASSWORD}@127.0.0.1:{}", prom.port), "redis");
    let (code, checks) = wait_for_opt(Duration::from_secs(40), || {
        let (code, checks) = doctor(dir.path(), &honest);
        (code == 0).then_some((code, checks))
    })
    .unwrap_or_else(|| {
        let (_, checks) = doctor(dir.path(), &honest);
        panic!("the honest stack never passed: {}", serde_json::to_string_pretty(&checks).unwrap())
    });
    assert_eq!(code, 0);
    for name in [
        "prometheus.reachable",
        "exporter.target",
        "exporter.redis",
        "exporter.same_redis",
        "prometheus.samples_fresh",
        "rule.RedisConnectionExhaustion",
        "rule.RedisHighMemoryUsage",
        "alertmanager.reachable",
        "alertmanager.routes_critical",
        "alertmanager.lookout_webhook",
        "clock.skew",
        "compose.profile",
        "grafana.datasource",
        "grafana.dashboard",
    ] {
        assert_eq!(status_of(&checks, name), Some("pass"), "{name}: {checks:#?}");
    }
    // The text form is the checklist, and no secret is in either form.
    let path = dir.path().join("lookout.yaml");
    let started = std::time::Instant::now();
    let text = lookout()
        .current_dir(dir.path())
        .args(["doctor", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    println!("honest doctor took {:?}", started.elapsed());
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    println!("{text}");
    assert!(text.contains("✔ exporter.redis"), "{text}");
    for secret in [PASSWORD, TOKEN, PROM_PASSWORD] {
        assert!(!text.contains(secret), "a secret in the output: {text}");
    }
    assert!(text.contains("Prometheus at http://***:***@127.0.0.1"), "{text}");

    // The exporter has the wrong password: exporter.redis says so, with the
    // exporter's own message, and asks for the password.
    let (code, checks) = until(dir.path(), &config(&prom.url(), "wrong_password"), "exporter.redis", "fail");
    assert_eq!(code, 1);
    assert_eq!(status_of(&checks, "exporter.target"), Some("pass"));
    let c = checks.iter().find(|c| c["name"] == "exporter.redis").unwrap();
    assert!(c["found"].as_str().unwrap().contains("last error"), "{c}");
    assert!(c["fix"].as_str().unwrap().contains("password"), "{c}");
    assert!(!serde_json::to_string(&checks).unwrap().contains(PASSWORD));

    // Prometheus scrapes the wrong port (another Redis's exporter): the
    // series come from another Redis.
    let (code, checks) = until(dir.path(), &config(&prom.url(), "wrong_port"), "exporter.same_redis", "fail");
    assert_eq!(code, 1);
    assert_eq!(status_of(&checks, "exporter.redis"), Some("pass"));
    let c = checks.iter().find(|c| c["name"] == "exporter.same_redis").unwrap();
    assert!(c["found"].as_str().unwrap().contains(&format!("port {}", other.port)), "{c}");

    // The exporter stopped: its target is down, with Prometheus's lastError;
    // what depends on it could not be told.
    stopped.kill();
    let (code, checks) = until(dir.path(), &config(&prom.url(), "stopped"), "exporter.target", "fail");
    assert_eq!(code, 1);
    let c = checks.iter().find(|c| c["name"] == "exporter.target").unwrap();
    assert!(c["found"].as_str().unwrap().contains("refused"), "{c}");
    assert_eq!(status_of(&checks, "exporter.redis"), Some("unknown"));

    // A Prometheus without the guide's rule file.
    let (code, checks) = until(
        dir.path(),
        &config(&prom_norules.url(), "redis"),
        "rule.RedisConnectionExhaustion",
        "fail",
    );
    assert_eq!(code, 1);
    assert_eq!(status_of(&checks, "rule.RedisHighMemoryUsage"), Some("fail"));
    assert_eq!(status_of(&checks, "exporter.redis"), Some("pass"));

    // Grafana's dashboard moved out of its folder.
    grafana.moved.store(true, Ordering::SeqCst);
    let (_, checks) = until(dir.path(), &honest, "grafana.dashboard", "fail");
    assert_eq!(status_of(&checks, "grafana.datasource"), Some("pass"));
    grafana.moved.store(false, Ordering::SeqCst);

    // Grafana's clock two minutes behind: clock.skew names it.
    grafana.skew.store(-120, Ordering::SeqCst);
    let (code, checks) = until(dir.path(), &honest, "clock.skew", "fail");
    assert_eq!(code, 1);
    let c = checks.iter().find(|c| c["name"] == "clock.skew").unwrap();
    assert!(c["found"].as_str().unwrap().contains("Grafana -120s"), "{c}");
    grafana.skew.store(0, Ordering::SeqCst);

    // Prometheus not running, with the monitoring services behind the
    // compose profile: both say so.
    let dead = format!("http://127.0.0.1:{}", support::free_port());
    let (code, checks) = until(dir.path(), &config(&dead, "redis"), "compose.profile", "fail");
    assert_eq!(code, 1);
    assert_eq!(status_of(&checks, "prometheus.reachable"), Some("fail"));
    let c = checks.iter().find(|c| c["name"] == "compose.profile").unwrap();
    assert!(c["fix"].as_str().unwrap().contains("--profile cache-monitoring"), "{c}");

    // Alertmanager stopped.
    let mut am = am;
    am.stop();
    let (code, checks) = until(dir.path(), &honest, "alertmanager.reachable", "fail");
    assert_eq!(code, 1);
    assert_eq!(status_of(&checks, "alertmanager.routes_critical"), Some("unknown"));
    assert_eq!(status_of(&checks, "exporter.redis"), Some("pass"));
}

/// A server answering every request with 400: a destination that refuses
/// every notification for good.
fn refusing_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            let _ = std::io::Read::read_exact(&mut reader, &mut body);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\nConnection: close\r\n\r\nbad request");
        }
    });
    port
}

#[test]
fn lookouts_own_state_dead_letters_history_and_a_rejected_reload() {
    let redis = Redis::start(&[]);
    let refusing = refusing_server();
    let config = format!(
        "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\nprobes:\n  - name: cache\n    kind: redis\n    url: {}\n    every: 1s\nrelay:\n  destinations:\n    - name: chain\n      type: webhook\n      url: http://127.0.0.1:{refusing}/hook\n",
        redis.url()
    );
    let d = support::Daemon::start(&config);
    let body = support::am_payload("{}:{alertname=\"RedisDown\"}", "firing", &[("RedisDown", "cache:6379", "firing")]);
    let (status, _) = support::http_request(d.port, "POST", "/webhook", &body).expect("the relay answers");
    assert_eq!(status, 200);
    // doctor reads its own copy: the daemon's file is made invalid below.
    let copy = d.dir.path().join("doctor.yaml");
    std::fs::copy(&d.config, &copy).unwrap();
    let run = || {
        let out = lookout()
            .current_dir(d.dir.path())
            .args(["doctor", "--format", "json", "-c"])
            .arg(&copy)
            .output()
            .unwrap();
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap_or_default()
    };
    let checks = wait_for_opt(Duration::from_secs(20), || {
        let c = run();
        (status_of(&c, "lookout.dead_letters") == Some("fail") && status_of(&c, "lookout.history") == Some("pass")).then_some(c)
    })
    .unwrap_or_else(|| panic!("no dead letter seen: {:#?}", run()));
    let c = checks.iter().find(|c| c["name"] == "lookout.dead_letters").unwrap();
    assert!(c["found"].as_str().unwrap().starts_with("1 "), "{c}");
    assert!(c["fix"].as_str().unwrap().contains("lookout relay dlq"), "{c}");
    assert_eq!(status_of(&checks, "lookout.outbox"), Some("pass"));
    assert_eq!(status_of(&checks, "lookout.config_reload"), Some("pass"));
    assert_eq!(status_of(&checks, "prometheus.reachable"), Some("skipped"));

    // A reload the daemon rejects: it runs the old configuration, and says so.
    let good = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(&d.config, good.replace("every: 1s", "every: soon")).unwrap();
    support::send_signal(d.proc.pid(), libc::SIGHUP);
    wait_for_opt(Duration::from_secs(20), || {
        (status_of(&run(), "lookout.config_reload") == Some("fail")).then_some(())
    })
    .unwrap_or_else(|| panic!("the rejected reload was not seen: {:#?}", run()));
}
