//! Shared fixtures: real redis-server, redis_exporter and Prometheus
//! processes on free loopback ports, HTTP stand-ins for the health
//! endpoints, and the `lookout` binary itself. Every process is killed when
//! its handle drops. Waits poll with deadlines; nothing sleeps blindly.

#![allow(dead_code)]

pub mod health;
pub mod postgres;
pub mod saas;
pub mod topology;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago (bound and released).
/// Another process may take it before a server binds it: servers started
/// here go through [`start_on_free_port`], which retries on another port
/// when that happens. Used as is only for a port meant to refuse
/// connections.
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

    /// Whether the process has exited (and reaped: its status is kept).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        send_signal(c.id(), libc::SIGTERM);
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

/// Sends signal `sig` (`libc::SIGHUP`…) to process `pid`; panics if it
/// cannot be sent (no such process, not ours), so a test never goes on
/// believing a signal was delivered.
pub fn send_signal(pid: u32, sig: libc::c_int) {
    let target = libc::pid_t::try_from(pid).unwrap_or_else(|_| panic!("pid {pid} out of range"));
    assert!(target > 0, "no process to signal (pid {pid})");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(target, sig) } != 0 {
        panic!("cannot send signal {sig} to {pid}: {}", std::io::Error::last_os_error());
    }
}

/// How many ports [`start_on_free_port`] tries before giving up.
const PORT_ATTEMPTS: usize = 5;

/// Starts a server on a free port: `spawn(port)` starts it, `ready(port,
/// proc)` says whether it serves (and is the one we started). A server
/// that exits before it is ready lost its port to another process (the
/// race [`free_port`] leaves open) and is started again on another port, up
/// to [`PORT_ATTEMPTS`] times; one that neither exits nor gets ready within
/// `timeout` fails the test.
pub fn start_on_free_port(
    name: &str,
    timeout: Duration,
    mut spawn: impl FnMut(u16) -> Proc,
    mut ready: impl FnMut(u16, &mut Proc) -> bool,
) -> (u16, Proc) {
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port();
        let mut proc = spawn(port);
        if wait_ready(name, timeout, port, &mut proc, &mut ready) {
            return (port, proc);
        }
    }
    panic!("{name} exited before it was ready on {PORT_ATTEMPTS} ports in a row");
}

/// Polls until `ready`, with `proc` still running (true), or until `proc`
/// exits (false); panics after `timeout`.
fn wait_ready(name: &str, timeout: Duration, port: u16, proc: &mut Proc, ready: &mut impl FnMut(u16, &mut Proc) -> bool) -> bool {
    wait_for(&format!("{name} to be ready on port {port}"), timeout, || {
        if proc.exited().is_some() {
            return Some(false);
        }
        (ready(port, proc) && proc.exited().is_none()).then_some(true)
    })
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
        let dir = tempfile::tempdir().unwrap();
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (port, proc) = start_on_free_port(
            "redis-server",
            Duration::from_secs(10),
            |port| Self::spawn(port, dir.path(), &args),
            |port, proc| Self::serves(port, &args, proc),
        );
        Redis { port, dir, args, proc }
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

    /// Whether the redis-server answering on `port` is `proc` (its INFO's
    /// `process_id`), not another one that took the port.
    fn serves(port: u16, args: &[String], proc: &Proc) -> bool {
        let info = redis_cli(port, args, &["INFO", "server"]);
        info.lines()
            .find_map(|l| l.trim().strip_prefix("process_id:"))
            .and_then(|p| p.parse::<u32>().ok())
            == Some(proc.pid())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        self.proc.kill();
        let port = self.port;
        wait_for("redis-server to stop", Duration::from_secs(10), || (!port_open(port)).then_some(()));
    }

    /// Starts it again on the same port (the tests' configurations name
    /// it); tries again while the port is briefly held elsewhere.
    pub fn restart(&mut self) {
        for _ in 0..PORT_ATTEMPTS {
            self.proc = Self::spawn(self.port, self.dir.path(), &self.args);
            let args = self.args.clone();
            if wait_ready(
                "redis-server",
                Duration::from_secs(10),
                self.port,
                &mut self.proc,
                &mut |port, proc: &mut Proc| Self::serves(port, &args, proc),
            ) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("redis-server could not bind port {} again", self.port);
    }

    /// The server's `run_id` (INFO server): which Redis answered.
    pub fn run_id(&self) -> String {
        self.cli(&["INFO", "server"])
            .lines()
            .find_map(|l| l.trim().strip_prefix("run_id:").map(str::to_string))
            .expect("INFO server has run_id")
    }

    /// A command through redis-cli (with `-a` when the server has a password).
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, &self.args, args)
    }

    pub fn info_field(&self, field: &str) -> Option<f64> {
        self.cli(&["INFO"])
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().parse().ok())
    }
}

/// A redis-cli command on `port`, with `-a` when `server_args` set a password.
fn redis_cli(port: u16, server_args: &[String], args: &[&str]) -> String {
    let mut cmd = Command::new(require("redis-cli"));
    cmd.args(["-p", &port.to_string()]);
    if let Some(i) = server_args.iter().position(|a| a == "--requirepass") {
        cmd.args(["--no-auth-warning", "-a", &server_args[i + 1]]);
    }
    let out = cmd.args(args).output().expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// prometheus-redis-exporter scraping one Redis.
pub struct Exporter {
    pub port: u16,
    proc: Proc,
}

impl Exporter {
    pub fn start(redis_url: &str) -> Exporter {
        let (port, proc) = start_on_free_port(
            "redis_exporter",
            Duration::from_secs(15),
            |port| {
                let mut cmd = Command::new(require("prometheus-redis-exporter"));
                cmd.arg(format!("--redis.addr={redis_url}"))
                    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                Proc::spawn("redis_exporter", &mut cmd)
            },
            |port, _| http_get(port, "/metrics").is_some_and(|(s, b)| s == 200 && b.contains("redis_exporter_build_info")),
        );
        Exporter { port, proc }
    }

    pub fn stop(&mut self) {
        self.proc.kill();
    }

    /// Its process, to stall it (`SIGSTOP`) and resume it (`SIGCONT`).
    pub fn pid(&self) -> u32 {
        self.proc.pid()
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
        Prometheus::start_with(jobs, "", &[])
    }

    /// `jobs` as in [`Prometheus::start`], then `more`: further entries of
    /// `scrape_configs:` as written (relabelling, several targets).
    pub fn start_with_scrape_configs(jobs: &[(&str, String)], more: &str) -> Prometheus {
        Prometheus::start_with_text(jobs, "", more, &[])
    }

    /// `head`: configuration before `scrape_configs:` (rule files,
    /// alerting); `flags`: extra command-line flags.
    fn start_with(jobs: &[(&str, String)], head: &str, flags: &[&str]) -> Prometheus {
        Prometheus::start_with_text(jobs, head, "", flags)
    }

    fn start_with_text(jobs: &[(&str, String)], head: &str, more: &str, flags: &[&str]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{head}scrape_configs:\n");
        for (job, target) in jobs {
            cfg.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
            ));
        }
        cfg.push_str(more);
        let cfg_path = dir.path().join("prometheus.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let (port, proc) = start_on_free_port(
            "prometheus",
            Duration::from_secs(30),
            |port| {
                let mut cmd = Command::new(require("prometheus"));
                cmd.arg(format!("--config.file={}", cfg_path.display()))
                    .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
                    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                    .args(flags)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                Proc::spawn("prometheus", &mut cmd)
            },
            |port, _| http_get(port, "/-/ready").is_some_and(|(s, _)| s == 200),
        );
        Prometheus { port, dir, proc }
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

/// The first probe of `probes:` as written in `probe_yaml` (its list
/// items), built as the daemon builds it, with an empty environment.
pub fn build_probe(probe_yaml: &str) -> lookout::probe::ProbeHandle {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lookout.yaml");
    std::fs::write(&path, format!("probe_files: []\nprobes:\n{probe_yaml}")).unwrap();
    let cfg = lookout::settings::load_with_env(&path, &|_| None).unwrap_or_else(|e| panic!("{e}"));
    lookout::probe::build(&cfg.probes[0]).unwrap()
}

/// The lookout binary under test, with none of the environment that would
/// change what it probes: no `LOOKOUT_CONFIG`, and no `REDIS_*` variable
/// at all (a test sets the ones it means).
pub fn lookout() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lookout"));
    c.env_remove("LOOKOUT_CONFIG");
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("REDIS_")) {
            c.env_remove(k);
        }
    }
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
    /// Writes `config` (with `{listen}` and `{data_dir}` filled in) and
    /// starts lookout on a free port (another one if that is taken first).
    pub fn start(config: &str) -> Daemon {
        Daemon::start_with(None, config, None)
    }

    /// As [`Daemon::start`], on a given port.
    pub fn start_on(port: u16, config: &str) -> Daemon {
        Daemon::start_with(Some(port), config, None)
    }

    /// As [`Daemon::start`], with shell commands run first in the process
    /// that becomes lookout (resource limits, signal dispositions).
    pub fn start_after(shell: &str, config: &str) -> Daemon {
        Daemon::start_with(None, config, Some(shell))
    }

    /// Starts it and waits until `/-/healthy` answers 200, lookout has
    /// logged that it listens, and is still running. If lookout exits first, the test fails at once with
    /// its log — except when it only lost a port picked here to another
    /// process, which is tried again on another one.
    fn start_with(port: Option<u16>, config: &str, shell: Option<&str>) -> Daemon {
        for _ in 0..PORT_ATTEMPTS {
            let mut d = Daemon::spawn(port.unwrap_or_else(free_port), config, shell);
            let ready = wait_for("lookout to serve /-/healthy", Duration::from_secs(20), || {
                if let Some(status) = d.proc.exited() {
                    return Some(Err(status));
                }
                // Ours: it logged that it bound the port (another server
                // that took the port first would answer too), and is running.
                http_get(d.port, "/-/healthy")
                    .filter(|(s, _)| *s == 200 && d.logs().contains("lookout started"))
                    .and_then(|_| d.proc.exited().is_none().then_some(Ok(())))
            });
            match ready {
                Ok(()) => return d,
                Err(_) if port.is_none() && d.logs().contains(&format!("cannot listen on 127.0.0.1:{}", d.port)) => continue,
                Err(status) => panic!("lookout exited ({status}) before serving:\n{}", d.logs()),
            }
        }
        panic!("lookout could not bind a free port in {PORT_ATTEMPTS} attempts");
    }

    fn spawn(port: u16, config: &str, shell: Option<&str>) -> Daemon {
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
        Daemon {
            port,
            dir,
            config: path,
            proc,
            stderr,
        }
    }

    /// Starts lookout again (after it exited or was killed) on the same
    /// port, configuration and data directory, its log appended to the
    /// same file, and waits until the new process serves.
    pub fn restart(&mut self) {
        self.proc.kill();
        let starts = self.logs().matches("lookout started").count();
        let err = std::fs::OpenOptions::new().append(true).open(&self.stderr).unwrap();
        let mut cmd = lookout();
        cmd.current_dir(self.dir.path())
            .args(["run", "-c"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(err);
        self.proc = Proc::spawn("lookout", &mut cmd);
        wait_for("lookout to serve again", Duration::from_secs(20), || {
            if let Some(status) = self.proc.exited() {
                panic!("lookout exited ({status}) before serving again:\n{}", self.logs());
            }
            http_get(self.port, "/-/healthy")
                .filter(|(s, _)| *s == 200 && self.logs().matches("lookout started").count() > starts)
                .map(|_| ())
        });
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
        let (script, path) = match kind {
            "django" => ("serve_django.py", "/health/redis/"),
            _ => ("serve_fastapi.py", "/api/health/redis"),
        };
        let (port, proc) = start_on_free_port(
            &format!("{kind} endpoint"),
            Duration::from_secs(30),
            |port| {
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
                Proc::spawn(kind, &mut cmd)
            },
            |port, _| http_get(port, path).is_some_and(|(s, _)| s == 200),
        );
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
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("alertmanager.yml");
        std::fs::write(&cfg, config).unwrap();
        let (port, proc) = start_on_free_port(
            "alertmanager",
            Duration::from_secs(30),
            |port| {
                let mut cmd = Command::new(require("prometheus-alertmanager"));
                cmd.arg(format!("--config.file={}", cfg.display()))
                    .arg(format!("--storage.path={}", dir.path().join("data").display()))
                    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                    .arg("--cluster.listen-address=")
                    .arg("--log.level=debug")
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(dir.path().join("alertmanager.log")).unwrap());
                Proc::spawn("alertmanager", &mut cmd)
            },
            |port, _| http_get(port, "/-/ready").is_some_and(|(s, _)| s == 200),
        );
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
    let mut head = String::from("rule_files:\n");
    for r in rules {
        head.push_str(&format!("  - {}\n", r.display()));
    }
    head.push_str(&format!(
        "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am}']\n"
    ));
    Prometheus::start_with(jobs, &head, &["--rules.alert.resend-delay=1s"])
}

/// A test CA and a server certificate it signed, made with the `openssl`
/// CLI (X.509 v3, SAN `IP:127.0.0.1` and `DNS:localhost`), in their own
/// temporary directory.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let p = |f: &str| dir.path().join(f);
        let openssl = |args: &[&str]| {
            let out = Command::new(require("openssl"))
                .current_dir(dir.path())
                .args(args)
                .output()
                .expect("openssl runs");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        std::fs::write(
            p("leaf.ext"),
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=lookout test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            "server.pem",
        ]);
        TestCa {
            ca: p("ca.pem"),
            cert: p("server.pem"),
            key: p("server.key"),
            dir,
        }
    }
}

/// One of the servers of `tests/standins.py` (aiosmtpd's SMTP, an HTTPS
/// server), recording what it saw as JSON lines.
pub struct PyStandIn {
    pub port: u16,
    pub dir: tempfile::TempDir,
    proc: Proc,
}

impl PyStandIn {
    /// `kind`: `smtp` or `https`; `args`: the script's options after `--port` and `--record`.
    pub fn start(kind: &str, args: &[&str]) -> PyStandIn {
        let dir = tempfile::tempdir().unwrap();
        let rec = dir.path().join("record.jsonl");
        let (port, proc) = start_on_free_port(
            kind,
            Duration::from_secs(20),
            |port| {
                let mut cmd = Command::new(venv_python());
                cmd.arg(root().join("tests/standins.py"))
                    .args([kind, "--port", &port.to_string(), "--record"])
                    .arg(&rec)
                    .args(args)
                    .env("PYTHONDONTWRITEBYTECODE", "1")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                Proc::spawn(kind, &mut cmd)
            },
            |port, _| port_open(port),
        );
        PyStandIn { port, dir, proc }
    }

    /// Everything recorded so far.
    pub fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("record.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The recorded events of one kind (`mail`, `auth`, `starttls`, `get`).
    pub fn events_of(&self, event: &str) -> Vec<serde_json::Value> {
        self.events().into_iter().filter(|e| e["event"] == event).collect()
    }
}

/// How a [`RespStandIn`] answers `CONFIG GET maxclients`.
#[derive(Clone, Copy, Debug)]
pub enum ConfigGet {
    /// `["maxclients", "<n>"]`.
    Answer(u32),
    /// An error, as when CONFIG is renamed away.
    Disabled,
}

/// A small server speaking RESP2 like Redis 6 does where it matters to the
/// probe: `INFO` with more than one section is a syntax error, plain
/// `INFO`'s clients section has no `maxclients`, and `CONFIG GET
/// maxclients` answers as told. Counts the CONFIG commands it got.
pub struct RespStandIn {
    pub port: u16,
    pub config_gets: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl RespStandIn {
    pub fn start(config: ConfigGet) -> RespStandIn {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let config_gets = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = config_gets.clone();
        std::thread::spawn(move || {
            for sock in listener.incoming().flatten() {
                let counter = counter.clone();
                std::thread::spawn(move || resp_session(sock, config, &counter));
            }
        });
        RespStandIn { port, config_gets }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

const REDIS6_INFO: &str = "# Server\r\nredis_version:6.2.14\r\nrun_id:0123456789abcdef0123456789abcdef01234567\r\nuptime_in_seconds:100\r\n\r\n# Clients\r\nconnected_clients:7\r\nblocked_clients:0\r\n\r\n# Memory\r\nused_memory:1048576\r\nmaxmemory:0\r\nmem_fragmentation_ratio:1.5\r\n\r\n# Persistence\r\naof_enabled:0\r\nrdb_last_save_time:1700000000\r\n\r\n# Stats\r\nkeyspace_hits:30\r\nkeyspace_misses:10\r\nevicted_keys:0\r\nrejected_connections:0\r\n\r\n# Replication\r\nrole:master\r\n";

fn resp_session(sock: std::net::TcpStream, config: ConfigGet, config_gets: &std::sync::atomic::AtomicUsize) {
    use std::io::{BufRead, BufReader, Write};
    let Ok(mut w) = sock.try_clone() else { return };
    let mut r = BufReader::new(sock);
    let mut line = String::new();
    let mut read_line = |r: &mut BufReader<std::net::TcpStream>| -> Option<String> {
        line.clear();
        (r.read_line(&mut line).ok()? > 0).then(|| line.trim_end().to_string())
    };
    loop {
        // A command: *<n>\r\n then n bulk strings ($<len>\r\n<bytes>\r\n).
        let Some(head) = read_line(&mut r) else { return };
        let Some(n) = head.strip_prefix('*').and_then(|n| n.parse::<usize>().ok()) else {
            return;
        };
        let mut args = Vec::with_capacity(n);
        for _ in 0..n {
            let Some(_len) = read_line(&mut r) else { return };
            let Some(arg) = read_line(&mut r) else { return };
            args.push(arg);
        }
        let upper: Vec<String> = args.iter().map(|a| a.to_ascii_uppercase()).collect();
        let bulk = |s: &str| format!("${}\r\n{s}\r\n", s.len());
        let reply = match upper.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["PING"] => "+PONG\r\n".to_string(),
            ["INFO"] => bulk(REDIS6_INFO),
            ["INFO", _] => bulk(REDIS6_INFO),
            ["INFO", ..] => "-ERR syntax error\r\n".to_string(),
            ["CONFIG", "GET", "MAXCLIENTS"] => {
                config_gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                match config {
                    ConfigGet::Answer(m) => format!("*2\r\n{}{}", bulk("maxclients"), bulk(&m.to_string())),
                    ConfigGet::Disabled => "-ERR unknown command 'CONFIG', with args beginning with: 'GET' 'maxclients' \r\n".to_string(),
                }
            }
            _ => format!("-ERR unknown command '{}'\r\n", args.first().map(String::as_str).unwrap_or("")),
        };
        if w.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// Runs the `openssl` CLI in `dir`; panics with its stderr on failure.
fn openssl_in(dir: &Path, args: &[&str]) {
    let out = Command::new(require("openssl"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl TestCa {
    /// A client certificate this CA signed (X.509 v3, `clientAuth`), for
    /// mutual TLS: its certificate and key files.
    pub fn client_cert(&self) -> (PathBuf, PathBuf) {
        let dir = self.dir.path();
        std::fs::write(
            dir.join("client.ext"),
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        for args in [
            "req -newkey rsa:2048 -nodes -subj /CN=lookout-probe -keyout client.key -out client.csr",
            "x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile client.ext -out client.pem",
        ] {
            openssl_in(dir, &args.split(' ').collect::<Vec<_>>());
        }
        (dir.join("client.pem"), dir.join("client.key"))
    }
}

/// A redis-server that speaks TLS only (`--port 0 --tls-port P`), with the
/// server certificate of a [`TestCa`]; `auth_clients` makes it require a
/// client certificate that CA signed (`--tls-auth-clients yes`).
pub struct TlsRedis {
    pub port: u16,
    /// The CA's client certificate and key, which redis-cli uses here.
    pub client: (PathBuf, PathBuf),
    ca: PathBuf,
    dir: tempfile::TempDir,
    proc: Proc,
}

impl TlsRedis {
    pub fn start(ca: &TestCa, auth_clients: bool, extra: &[&str]) -> TlsRedis {
        let dir = tempfile::tempdir().unwrap();
        let client = ca.client_cert();
        let (port, proc) = start_on_free_port(
            "redis-server (TLS)",
            Duration::from_secs(10),
            |port| {
                // The last `--port` wins: the plain port is off.
                let mut args: Vec<String> = ["--port", "0", "--tls-port", &port.to_string()].map(String::from).into();
                for (flag, file) in [
                    ("--tls-cert-file", &ca.cert),
                    ("--tls-key-file", &ca.key),
                    ("--tls-ca-cert-file", &ca.ca),
                ] {
                    args.extend([flag.to_string(), file.display().to_string()]);
                }
                args.extend(["--tls-auth-clients", if auth_clients { "yes" } else { "no" }].map(String::from));
                args.extend(extra.iter().map(|a| a.to_string()));
                Redis::spawn(port, dir.path(), &args)
            },
            |port, proc| {
                tls_redis_cli(port, &ca.ca, &client, &["INFO", "server"])
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("process_id:"))
                    .and_then(|p| p.parse::<u32>().ok())
                    == Some(proc.pid())
            },
        );
        TlsRedis {
            port,
            client,
            ca: ca.ca.clone(),
            dir,
            proc,
        }
    }

    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }

    /// A command through `redis-cli --tls`, as the default user.
    pub fn cli(&self, args: &[&str]) -> String {
        tls_redis_cli(self.port, &self.ca, &self.client, args)
    }
}

fn tls_redis_cli(port: u16, ca: &Path, (cert, key): &(PathBuf, PathBuf), args: &[&str]) -> String {
    let out = Command::new(require("redis-cli"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--tls", "--cacert"])
        .arg(ca)
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
