//! Shared fixtures: real redis-server, redis_exporter and Prometheus
//! processes on free loopback ports, HTTP stand-ins for the health
//! endpoints, and the `lookout` binary itself. Every process is killed when
//! its handle drops. Waits poll with deadlines; nothing sleeps blindly.

#![allow(dead_code)]

pub mod health;
pub mod saas;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests
/// that start their server right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `f` until it returns `Some`, or panics after `timeout` with `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Async version of [`wait_for`].
pub async fn wait_for_async<T, F: std::future::Future<Output = Option<T>>>(what: &str, timeout: Duration, mut f: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a binary is on this machine; tests that need it fail loudly
/// (the test command installs it) rather than skip silently.
pub fn require(bin: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = Path::new(dir).join(bin);
        if p.exists() {
            return p;
        }
    }
    panic!("`{bin}` is not installed: run tests/run.sh, which installs the test dependencies");
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&format!("127.0.0.1:{port}").parse().unwrap(), Duration::from_millis(200)).is_ok()
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Option<Child>,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child: Some(child),
            name: name.into(),
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        unsafe_kill(c.id(), "TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }
}

/// Sends a signal with kill(1), avoiding unsafe libc calls in tests.
pub fn unsafe_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private redis-server.
pub struct Redis {
    pub port: u16,
    pub dir: tempfile::TempDir,
    args: Vec<String>,
    proc: Proc,
}

impl Redis {
    pub fn start(extra: &[&str]) -> Redis {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let proc = Self::spawn(port, dir.path(), &args);
        let r = Redis { port, dir, args, proc };
        r.wait_up();
        r
    }

    fn spawn(port: u16, dir: &Path, args: &[String]) -> Proc {
        let bin = require("redis-server");
        let mut cmd = Command::new(bin);
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ])
        .arg(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        Proc::spawn("redis-server", &mut cmd)
    }

    fn wait_up(&self) {
        let port = self.port;
        wait_for("redis-server to accept connections", Duration::from_secs(10), || {
            port_open(port).then_some(())
        });
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        self.proc.kill();
        let port = self.port;
        wait_for("redis-server to stop", Duration::from_secs(10), || (!port_open(port)).then_some(()));
    }

    pub fn restart(&mut self) {
        self.proc = Self::spawn(self.port, self.dir.path(), &self.args);
        self.wait_up();
    }

    /// A command through redis-cli (with `-a` when the server has a password).
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(require("redis-cli"));
        cmd.args(["-p", &self.port.to_string()]);
        if let Some(i) = self.args.iter().position(|a| a == "--requirepass") {
            cmd.args(["--no-auth-warning", "-a", &self.args[i + 1]]);
        }
        let out = cmd.args(args).output().expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn info_field(&self, field: &str) -> Option<f64> {
        self.cli(&["INFO"])
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().parse().ok())
    }
}

/// prometheus-redis-exporter scraping one Redis.
pub struct Exporter {
    pub port: u16,
    proc: Proc,
}

impl Exporter {
    pub fn start(redis_url: &str) -> Exporter {
        let port = free_port();
        let mut cmd = Command::new(require("prometheus-redis-exporter"));
        cmd.arg(format!("--redis.addr={redis_url}"))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let proc = Proc::spawn("redis_exporter", &mut cmd);
        wait_for("redis_exporter to listen", Duration::from_secs(15), || {
            port_open(port).then_some(())
        });
        Exporter { port, proc }
    }

    pub fn stop(&mut self) {
        self.proc.kill();
    }
}

/// A Prometheus scraping the given targets every second.
pub struct Prometheus {
    pub port: u16,
    pub dir: tempfile::TempDir,
    proc: Proc,
}

impl Prometheus {
    /// `jobs`: (job name, host:port).
    pub fn start(jobs: &[(&str, String)]) -> Prometheus {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = String::from("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n");
        for (job, target) in jobs {
            cfg.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
            ));
        }
        let cfg_path = dir.path().join("prometheus.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let mut cmd = Command::new(require("prometheus"));
        cmd.arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let proc = Proc::spawn("prometheus", &mut cmd);
        let p = Prometheus { port, dir, proc };
        wait_for("prometheus to be ready", Duration::from_secs(30), || {
            http_get(port, "/-/ready").filter(|(s, _)| *s == 200).map(|_| ())
        });
        p
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Instant query; the first sample's value, if any.
    pub fn query(&self, q: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", percent_encode(q));
        let (_, body) = http_get(self.port, &path)?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A minimal blocking HTTP/1.0 GET on loopback: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_request(port, "GET", path, "")
}

pub fn http_request(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&format!("127.0.0.1:{port}").parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// The value of a sample in Prometheus text exposition, by exact series prefix
/// (`name{label="v"` …).
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, ""));
        if n != name {
            return None;
        }
        labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            .then(|| value.parse().ok())?
    })
}

/// The lookout binary under test.
pub fn lookout() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lookout"));
    c.env_remove("LOOKOUT_CONFIG")
        .env_remove("REDIS_URL")
        .env_remove("REDIS_HOST")
        .env_remove("REDIS_PASSWORD");
    c
}

/// A running `lookout run`.
pub struct Daemon {
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub proc: Proc,
    pub stderr: PathBuf,
}

impl Daemon {
    /// Writes `config` (with `{listen}` and `{data_dir}` filled in) and starts lookout.
    pub fn start(config: &str) -> Daemon {
        Daemon::start_on(free_port(), config)
    }

    /// As [`Daemon::start`], on a given port.
    pub fn start_on(port: u16, config: &str) -> Daemon {
        Daemon::start_with(port, config, None)
    }

    /// As [`Daemon::start`], with shell commands run first in the process
    /// that becomes lookout (resource limits, signal dispositions).
    pub fn start_after(shell: &str, config: &str) -> Daemon {
        Daemon::start_with(free_port(), config, Some(shell))
    }

    fn start_with(port: u16, config: &str, shell: Option<&str>) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lookout.yaml");
        let text = config
            .replace("{listen}", &format!("127.0.0.1:{port}"))
            .replace("{data_dir}", &dir.path().join("data").display().to_string());
        std::fs::write(&path, text).unwrap();
        let stderr = dir.path().join("stderr.log");
        let err = std::fs::File::create(&stderr).unwrap();
        let mut cmd = match shell {
            None => lookout(),
            Some(sh) => {
                let plain = lookout();
                let mut c = Command::new("bash");
                c.arg("-c").arg(format!("{sh}; exec \"$0\" \"$@\"")).arg(plain.get_program());
                for (k, v) in plain.get_envs() {
                    match v {
                        Some(v) => c.env(k, v),
                        None => c.env_remove(k),
                    };
                }
                c
            }
        };
        cmd.current_dir(dir.path())
            .args(["run", "-c"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(err);
        let proc = Proc::spawn("lookout", &mut cmd);
        let d = Daemon {
            port,
            dir,
            config: path,
            proc,
            stderr,
        };
        wait_for("lookout to listen", Duration::from_secs(20), || {
            http_get(port, "/-/healthy").map(|_| ())
        });
        d
    }

    pub fn metrics(&self) -> String {
        http_get(self.port, "/metrics").map(|(_, b)| b).unwrap_or_default()
    }

    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        metric_value(&self.metrics(), name, labels)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn write_config(&self, config: &str) {
        let text = config
            .replace("{listen}", &format!("127.0.0.1:{}", self.port))
            .replace("{data_dir}", &self.dir.path().join("data").display().to_string());
        std::fs::write(&self.config, text).unwrap();
    }
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python of the reference endpoints' venv (made by tests/run.sh).
pub fn venv_python() -> PathBuf {
    let p = root().join(".stack/venv/bin/python");
    if !p.exists() {
        panic!(
            "{} is missing: run tests/run.sh (it creates the reference endpoints' venv)",
            p.display()
        );
    }
    p
}

/// One of the reference health endpoints (Django or FastAPI), for real.
pub struct PyEndpoint {
    pub port: u16,
    pub path: &'static str,
    proc: Proc,
}

impl PyEndpoint {
    /// `kind`: "django" or "fastapi". `lie`: LOOKOUT_REF_LIE (test-only knob).
    pub fn start(kind: &str, redis_url: &str, lie: Option<&str>) -> PyEndpoint {
        let port = free_port();
        let (script, path) = match kind {
            "django" => ("serve_django.py", "/health/redis/"),
            _ => ("serve_fastapi.py", "/api/health/redis"),
        };
        let mut cmd = Command::new(venv_python());
        cmd.arg(root().join("deploy/reference-endpoints").join(script))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .env("REDIS_URL", redis_url)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(l) = lie {
            cmd.env("LOOKOUT_REF_LIE", l);
        }
        let proc = Proc::spawn(kind, &mut cmd);
        wait_for(&format!("{kind} endpoint"), Duration::from_secs(30), || {
            http_get(port, path).filter(|(s, _)| *s == 200).map(|_| ())
        });
        PyEndpoint { port, path, proc }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}{}", self.port, self.path)
    }
}

/// Background Redis traffic (GETs that hit and miss, SETs) until dropped.
pub struct Traffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    pub fn start(redis_url: &str) -> Traffic {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let url = redis_url.to_string();
        let handle = std::thread::spawn(move || {
            let Ok(client) = redis::Client::open(url.as_str()) else { return };
            let Ok(mut c) = client.get_connection() else { return };
            let mut i = 0u64;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                let _: redis::RedisResult<()> = redis::cmd("SET").arg(format!("k{}", i % 50)).arg(i).query(&mut c);
                let _: redis::RedisResult<Option<String>> = redis::cmd("GET").arg(format!("k{}", i % 60)).query(&mut c);
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Traffic {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Headless Chromium, as Debian packages it.
pub fn chromium(args: &[&str]) -> std::process::Output {
    let bin = require("chromium");
    let profile = tempfile::tempdir().unwrap();
    Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("chromium runs")
}

/// A POST with extra headers: (status, body).
pub fn http_post(port: u16, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&format!("127.0.0.1:{port}").parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut req = format!(
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let buf = String::from_utf8_lossy(&buf).into_owned();
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// An Alertmanager webhook payload (version 4) as Alertmanager 0.25 sends it.
pub fn am_payload(group: &str, status: &str, alerts: &[(&str, &str, &str)]) -> String {
    // alerts: (alertname, instance, status)
    let list: Vec<serde_json::Value> = alerts
        .iter()
        .map(|(name, inst, st)| {
            serde_json::json!({
                "status": st,
                "labels": {"alertname": name, "instance": inst, "severity": "critical", "job": "redis"},
                "annotations": {"summary": format!("{name} on {inst}"), "runbook_url": "https://runbooks.example/redis"},
                "startsAt": "2026-11-25T16:43:58Z",
                "endsAt": if *st == "firing" { "0001-01-01T00:00:00Z" } else { "2026-11-25T16:53:58Z" },
                "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
                "fingerprint": ""
            })
        })
        .collect();
    serde_json::json!({
        "receiver": "lookout", "status": status, "alerts": list,
        "groupLabels": {"alertname": alerts[0].0},
        "commonLabels": {"alertname": alerts[0].0, "severity": "critical", "job": "redis"},
        "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "version": "4", "groupKey": group, "truncatedAlerts": 0
    })
    .to_string()
}

/// Rows in a table of the relay's outbox.
pub fn outbox_count(data_dir: &Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open(data_dir.join("outbox.db")).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap_or(-1)
}

/// A real Alertmanager (Debian's prometheus-alertmanager), cluster off.
pub struct Alertmanager {
    pub port: u16,
    pub dir: tempfile::TempDir,
    proc: Proc,
}

impl Alertmanager {
    pub fn start(config: &str) -> Alertmanager {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("alertmanager.yml");
        std::fs::write(&cfg, config).unwrap();
        let mut cmd = Command::new(require("prometheus-alertmanager"));
        cmd.arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("alertmanager.log")).unwrap());
        let proc = Proc::spawn("alertmanager", &mut cmd);
        wait_for("alertmanager ready", Duration::from_secs(30), || {
            http_get(port, "/-/ready").filter(|(s, _)| *s == 200).map(|_| ())
        });
        Alertmanager { port, dir, proc }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }

    pub fn alerts(&self) -> serde_json::Value {
        http_get(self.port, "/api/v2/alerts")
            .and_then(|(_, b)| serde_json::from_str(&b).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    pub fn stop(&mut self) {
        self.proc.kill();
    }
}

/// A Prometheus with rule files, evaluating every second and alerting to `am`.
pub fn prometheus_with_rules(jobs: &[(&str, String)], rules: &[PathBuf], am: &str) -> Prometheus {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = String::from("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n");
    for r in rules {
        cfg.push_str(&format!("  - {}\n", r.display()));
    }
    cfg.push_str(&format!(
        "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am}']\nscrape_configs:\n"
    ));
    for (job, target) in jobs {
        cfg.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
        ));
    }
    let cfg_path = dir.path().join("prometheus.yml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let mut cmd = Command::new(require("prometheus"));
    cmd.arg(format!("--config.file={}", cfg_path.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--rules.alert.resend-delay=1s")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let proc = Proc::spawn("prometheus", &mut cmd);
    let p = Prometheus { port, dir, proc };
    wait_for("prometheus to be ready", Duration::from_secs(30), || {
        http_get(port, "/-/ready").filter(|(s, _)| *s == 200).map(|_| ())
    });
    p
}
