//! `lookout run`, `lookout check` and `lookout config check` as a user runs
//! them: real processes, real Redis, signals, reloads and exit codes.

mod support;

use std::time::Duration;

use support::health::{Behaviour, HealthStandIn};
use support::{Daemon, Redis, http_get, http_request, lookout, wait_for};

#[test]
fn redis_stopped_and_restarted_under_a_running_daemon() {
    let mut redis = Redis::start(&[]);
    let d = Daemon::start(&format!(
        "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\nprobes:\n  - name: cache\n    kind: redis\n    url: {}\n    every: 1s\n    timeout: 1s\n",
        redis.url()
    ));
    wait_for("ready", Duration::from_secs(10), || {
        http_get(d.port, "/-/ready").filter(|(s, _)| *s == 200)
    });
    wait_for("success=1", Duration::from_secs(10), || {
        (d.metric("lookout_probe_success", &[("probe", "cache")]) == Some(1.0)).then_some(())
    });
    assert_eq!(
        d.metric("lookout_probe_value", &[("probe", "cache"), ("metric", "maxclients")]),
        redis.info_field("maxclients"),
        "the value exported is the server's"
    );
    assert_eq!(d.metric("lookout_build_info", &[]), Some(1.0));

    redis.stop();
    // Failure within one period plus one timeout (and a margin for a loaded machine).
    wait_for("success=0", Duration::from_secs(5), || {
        (d.metric("lookout_probe_success", &[("probe", "cache")]) == Some(0.0)).then_some(())
    });
    redis.restart();
    wait_for("recovery", Duration::from_secs(5), || {
        (d.metric("lookout_probe_success", &[("probe", "cache")]) == Some(1.0)).then_some(())
    });
    assert!(d.logs().contains("Probe failed"), "failure logged");
}

#[test]
fn reload_keeps_old_config_when_new_is_invalid_and_sigterm_stops_cleanly() {
    let redis = Redis::start(&[]);
    let base = format!(
        "server:\n  listen: {{listen}}\n  enable_lifecycle: true\ndata_dir: {{data_dir}}\nprobe_files: []\nprobes:\n  - name: one\n    kind: redis\n    url: {}\n    every: 1s\n",
        redis.url()
    );
    let mut d = Daemon::start(&base);
    wait_for("ready", Duration::from_secs(10), || {
        http_get(d.port, "/-/ready").filter(|(s, _)| *s == 200)
    });

    d.write_config("server:\n  listen: {listen}\nprobes:\n  - name: one\n    kind: redis\n    evry: 1s\n");
    let (status, body) = http_request(d.port, "POST", "/-/reload", "").unwrap();
    assert_eq!(status, 500, "{body}");
    // `evry` is on line 6 of the file (`lookout.yaml:6:5:`).
    assert!(body.contains("lookout.yaml:6:"), "{body}");
    assert!(body.contains("did you mean `every`"), "{body}");
    assert_eq!(d.metric("lookout_config_last_reload_successful", &[]), Some(0.0));
    wait_for("old probe still running", Duration::from_secs(5), || {
        (d.metric("lookout_probe_success", &[("probe", "one")]) == Some(1.0)).then_some(())
    });

    d.write_config(&format!(
        "{base}  - name: two\n    kind: redis\n    url: {}\n    every: 1s\n",
        redis.url()
    ));
    support::send_signal(d.proc.pid(), libc::SIGHUP);
    wait_for("second probe after SIGHUP", Duration::from_secs(10), || {
        d.metric("lookout_probe_success", &[("probe", "two")]).map(|_| ())
    });
    assert_eq!(d.metric("lookout_config_last_reload_successful", &[]), Some(1.0));
    assert_eq!(http_get(d.port, "/-/reload").map(|(s, _)| s), Some(405));
    assert_eq!(http_get(d.port, "/nope").map(|(s, _)| s), Some(404));

    let status = d.proc.terminate(Duration::from_secs(10)).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(d.logs().contains("lookout stopped"));
    // Both probes' runs are in the history: the one reloaded in included.
    let reader = lookout::store::HistoryReader::open(&d.dir.path().join("data")).unwrap();
    for probe in ["one", "two"] {
        let runs = reader.since(Some(probe), 0.0).unwrap();
        assert!(runs.iter().any(|o| o.ok), "history flushed with `{probe}`'s runs: {runs:?}");
    }
}

#[test]
fn config_check_exit_codes_and_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "probe_files: []\nprobes:\n  - name: r\n    kind: redis\n    schedule: '*/15 * * * * *'\n",
    )
    .unwrap();
    let out = lookout().args(["config", "check", "-c"]).arg(&good).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "probe_files: []\nprobes:\n  - name: r\n    kind: redis\n    timeout: forever\n",
    )
    .unwrap();
    // The flag is accepted before the subcommand too.
    let out = lookout().arg("-c").arg(&bad).args(["config", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml:5"), "{err}");
    assert!(err.contains("timeout"), "{err}");

    // A probe file with a problem is named too.
    let probes = dir.path().join("probes");
    std::fs::create_dir(&probes).unwrap();
    std::fs::write(probes.join("web.yaml"), "name: web\nkind: http_health\nurl: not a url\n").unwrap();
    let cfg = dir.path().join("withfiles.yaml");
    std::fs::write(&cfg, format!("probe_files: ['{}/*.yaml']\n", probes.display())).unwrap();
    let out = lookout().args(["config", "check", "-c"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    // Located at the field's own line (3), not the probe's first line.
    assert!(err.contains("web.yaml:3:") && err.contains("`url`"), "{err}");
}

#[test]
fn check_prints_table_and_json_and_never_a_secret() {
    let secret = "tok-9f8e7d6c5b4a";
    let redis = Redis::start(&["--requirepass", secret]);
    let web = HealthStandIn::start("/health/redis/", Behaviour::Unavailable("Redis timeout"));
    let dir = tempfile::tempdir().unwrap();
    let pwfile = dir.path().join("redis-password");
    std::fs::write(&pwfile, format!("{secret}\n")).unwrap();
    let cfg = dir.path().join("lookout.yaml");
    std::fs::write(
        &cfg,
        format!(
            "probe_files: []\nprobes:\n  - name: cache\n    kind: redis\n    host: 127.0.0.1\n    port: {}\n    password_file: {}\n  - name: django\n    kind: http_health\n    url: {}?token={secret}\n    headers:\n      Authorization: Bearer {secret}\n    timeout: 2s\n  - name: wrongpw\n    kind: redis\n    url: redis://:{secret}x@127.0.0.1:{}\n",
            redis.port,
            pwfile.display(),
            web.url("/health/redis/"),
            redis.port
        ),
    )
    .unwrap();
    let out = lookout().args(["check", "-c"]).arg(&cfg).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.starts_with("PROBE"), "{stdout}");
    assert!(stdout.contains("HTTP 503: Redis timeout"), "{stdout}");
    assert!(!stdout.contains(secret) && !stderr.contains(secret), "{stdout}{stderr}");

    let out = lookout().args(["check", "--format", "json", "-c"]).arg(&cfg).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains(secret), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 3);
    let cache = &items[0];
    assert_eq!(cache["name"], "cache");
    assert_eq!(cache["kind"], "redis");
    assert_eq!(cache["ok"], true);
    assert!(cache["error"].is_null());
    assert!(cache["duration_seconds"].as_f64().unwrap() > 0.0);
    assert!(cache["values"]["connected_clients"].as_f64().unwrap() >= 1.0);
    assert_eq!(items[1]["ok"], false);
    assert_eq!(items[2]["ok"], false);

    // Nor in the daemon's metrics, status page or logs.
    let d = Daemon::start(&format!(
        "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\nprobes:\n  - name: wrongpw\n    kind: redis\n    url: redis://:{secret}x@127.0.0.1:{}\n    every: 1s\n",
        redis.port
    ));
    wait_for("a failed run", Duration::from_secs(10), || {
        (d.metric("lookout_probe_success", &[("probe", "wrongpw")]) == Some(0.0)).then_some(())
    });
    let page = http_get(d.port, "/").unwrap().1;
    let api = http_get(d.port, "/api/v1/probes").unwrap().1;
    for text in [d.metrics(), page, api, d.logs()] {
        assert!(!text.contains(secret));
    }
}

/// A `maxmemory` no other Redis on this machine has: proves which server
/// answered a probe.
const UNIQUE_MAXMEMORY: &str = "73400320";

#[test]
fn embedded_default_probes_redis_url_and_says_so() {
    let redis = Redis::start(&["--maxmemory", UNIQUE_MAXMEMORY]);
    let dir = tempfile::tempdir().unwrap();
    assert!(
        !std::path::Path::new("/etc/lookout/lookout.yaml").exists(),
        "this test needs a machine without /etc/lookout/lookout.yaml"
    );
    // No config file anywhere: the embedded default reads REDIS_URL, and says so.
    let out = lookout()
        .current_dir(dir.path())
        .env("REDIS_URL", redis.url())
        .args(["check", "--format", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("no configuration file found")
            && ["config/lookout.yaml", "lookout.yaml", "/etc/lookout/lookout.yaml"]
                .iter()
                .all(|p| stderr.contains(p)),
        "the paths tried are named: {stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["name"], "redis");
    assert_eq!(v[0]["ok"], true);
    assert_eq!(
        v[0]["values"]["maxmemory_bytes"].as_f64().map(|m| m.to_string()),
        Some(UNIQUE_MAXMEMORY.to_string()),
        "the Redis of REDIS_URL answered, not another: {}",
        v[0]
    );

    // ./lookout.yaml is found, and no longer a word about the default.
    std::fs::write(
        dir.path().join("lookout.yaml"),
        "probe_files: []\nprobes:\n  - {name: here, kind: redis}\n",
    )
    .unwrap();
    let out = lookout().current_dir(dir.path()).args(["config", "check"]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.starts_with("lookout.yaml: valid (1 probe)"), "{stdout}");
    assert!(stderr.is_empty(), "{stderr}");
}

/// Runs lookout in `dir` with `args`: (exit status, stdout, stderr).
fn run_in(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = lookout().current_dir(dir).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn exit_codes_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let missing = p.join("no-such-dir");
    let data = p.join("data");
    std::fs::write(p.join("invalid.yaml"), "probe_files: []\nrelay:\n  destinatons: []\n").unwrap();
    std::fs::write(
        p.join("nodata.yaml"),
        format!("data_dir: {}\nprobe_files: []\nrelay: {{}}\n", missing.display()),
    )
    .unwrap();
    std::fs::write(
        p.join("relay.yaml"),
        format!("data_dir: {}\nprobe_files: []\nrelay: {{}}\n", data.display()),
    )
    .unwrap();
    std::fs::write(
        p.join("nothing.yaml"),
        "probe_files: []\nprobes:\n  - {name: r, kind: redis, url: 'redis://127.0.0.1:1'}\n",
    )
    .unwrap();

    // 78: an invalid configuration, for every command.
    let (code, _, err) = run_in(p, &["relay", "dlq", "list", "-c", "invalid.yaml"]);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("invalid.yaml:3"), "{err}");

    // 64: the command line itself, apart from every command's own answers.
    for args in [
        &["relay", "dlq", "drop", "abc", "-c", "relay.yaml"][..],
        &["relay", "dlq", "retry", "-c", "relay.yaml"],
        &["report", "--bogus", "-c", "nothing.yaml"],
        &["report", "--window", "soon", "-c", "nothing.yaml"],
        &["check", "--log-level", "a=[", "-c", "nothing.yaml"],
    ] {
        let (code, _, err) = run_in(p, args);
        assert_eq!(code, Some(64), "{args:?}: {err}");
    }
    let (code, out, _) = run_in(p, &["--help"]);
    assert_eq!((code, out.contains("Usage:")), (Some(0), true));

    // 66: a data_dir that does not exist is said so, and not created.
    for args in [
        &["relay", "dlq", "list", "-c", "nodata.yaml"][..],
        &["relay", "dlq", "retry", "--all", "-c", "nodata.yaml"],
        &["report", "--window", "1h", "-c", "nodata.yaml"],
    ] {
        let (code, _, err) = run_in(p, args);
        assert_eq!(code, Some(66), "{args:?}: {err}");
        assert!(
            err.contains(&missing.display().to_string()) && err.contains("does not exist"),
            "{args:?}: {err}"
        );
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
    }
    // … and so is a data_dir without the file the daemon would have written.
    std::fs::create_dir(&data).unwrap();
    let (code, _, err) = run_in(p, &["relay", "dlq", "list", "-c", "relay.yaml"]);
    assert_eq!(code, Some(66), "{err}");
    assert!(err.contains("no outbox at") && !data.join("outbox.db").exists(), "{err}");

    // 1: an id that is not dead-lettered changes nothing and fails.
    drop(lookout::relay::outbox::Outbox::open(&data, Duration::from_secs(300)).unwrap());
    let (code, out, err) = run_in(p, &["relay", "dlq", "retry", "99", "-c", "relay.yaml"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("no dead-lettered delivery with id 99"), "{err}");
    let (code, out, err) = run_in(p, &["relay", "dlq", "list", "--format", "json", "-c", "relay.yaml"]);
    assert_eq!((code, out.trim()), (Some(0), "[]"), "{err}");

    // 2: a history without a round in the window has nothing to judge;
    // 74: one that is not a database cannot be read.
    std::fs::write(p.join("history.yaml"), format!("data_dir: {}\nprobe_files: []\n", data.display())).unwrap();
    let (history, problem) = lookout::store::History::open(&data, Duration::from_secs(3600));
    assert!(problem.is_none(), "{problem:?}");
    drop(history);
    let (code, out, err) = run_in(p, &["report", "--window", "1h", "-c", "history.yaml"]);
    assert_eq!(code, Some(2), "{out}{err}");
    let garbage = p.join("garbage");
    std::fs::create_dir(&garbage).unwrap();
    std::fs::write(garbage.join("history.db"), "not a database, not at all\n".repeat(100)).unwrap();
    std::fs::write(
        p.join("garbage.yaml"),
        format!("data_dir: {}\nprobe_files: []\n", garbage.display()),
    )
    .unwrap();
    let (code, out, err) = run_in(p, &["report", "--window", "1h", "-c", "garbage.yaml"]);
    assert_eq!(code, Some(74), "{out}{err}");

    // 2: nothing to cross-check (one probe, no reference to compare with).
    let (code, _, err) = run_in(p, &["report", "-c", "nothing.yaml"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("nothing to cross-check"), "{err}");

    // 1: `run` with its port taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    std::fs::write(
        p.join("busy.yaml"),
        format!(
            "server: {{listen: '127.0.0.1:{port}'}}\ndata_dir: {}\nprobe_files: []\n",
            data.display()
        ),
    )
    .unwrap();
    let log = p.join("busy.log");
    let mut cmd = lookout();
    cmd.current_dir(p)
        .args(["run", "-c", "busy.yaml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut run = support::Proc::spawn("lookout", &mut cmd);
    let status = wait_for("`run` to give up on a busy port", Duration::from_secs(20), || run.exited());
    let err = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{err}");
    drop(taken);
}

#[test]
fn every_shipped_configuration_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "x").unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files = vec![format!("{root}/config/lookout.yaml"), format!("{root}/deploy/lookout/lookout.yaml")];
    for e in std::fs::read_dir(format!("{root}/config/examples")).unwrap() {
        files.push(e.unwrap().path().display().to_string());
    }
    for f in files {
        let out = lookout()
            .current_dir(root)
            .env("REDIS_PASSWORD_FILE", &pw)
            .env("LOOKOUT_WEBHOOK_TOKEN_FILE", &pw)
            .args(["config", "check", "-c", &f])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{f}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn a_history_written_before_the_schema_had_a_version_opens_and_is_kept() {
    let redis = Redis::start(&[]);
    let data = tempfile::tempdir().unwrap();
    // The observations table as lookout created it before failure reasons
    // were stored, with a failed run of a minute ago (within the retention).
    let a_minute_ago = lookout::probe::unix_now() - 60.0;
    let old = rusqlite::Connection::open(data.path().join(lookout::store::HISTORY_FILE)).unwrap();
    old.execute_batch(
        "CREATE TABLE observations (id INTEGER PRIMARY KEY, probe TEXT NOT NULL, kind TEXT NOT NULL, ts REAL NOT NULL,
            ok INTEGER NOT NULL, duration REAL NOT NULL, error TEXT, reading TEXT NOT NULL);",
    )
    .unwrap();
    old.execute(
        "INSERT INTO observations (probe, kind, ts, ok, duration, error, reading) VALUES ('cache', 'redis', ?1, 0, 0.5, 'connection refused', '{}')",
        [a_minute_ago],
    )
    .unwrap();
    drop(old);
    let mut d = Daemon::start(&format!(
        "server:\n  listen: {{listen}}\ndata_dir: {}\nprobe_files: []\nprobes:\n  - name: cache\n    kind: redis\n    url: {}\n    every: 1s\n",
        data.path().display(),
        redis.url()
    ));
    wait_for("ready", Duration::from_secs(10), || {
        http_get(d.port, "/-/ready").filter(|(s, _)| *s == 200)
    });
    let status = d.proc.terminate(Duration::from_secs(10)).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", d.logs());
    assert!(!d.logs().contains("History store unavailable"), "{}", d.logs());

    let history = lookout::store::HistoryReader::open(data.path()).unwrap().since(None, 0.0).unwrap();
    let old = &history[0];
    assert_eq!(
        (old.timestamp, old.ok, old.error.as_deref(), old.reason),
        (a_minute_ago, false, Some("connection refused"), None)
    );
    assert!(history[1..].iter().any(|o| o.name == "cache" && o.ok), "new runs stored beside it");
}

/// Every metric name the code exports: the literal first argument of a
/// `counter!`, `gauge!` or `histogram!` (or their `describe_*!`) in `src/`.
fn exported_metrics() -> std::collections::BTreeSet<String> {
    let call = regex::Regex::new(r#"(?:counter|gauge|histogram)!\(\s*"([a-z0-9_]+)""#).unwrap();
    let observed = regex::Regex::new(r#""(lookout_observed_[a-z0-9_]+)""#).unwrap();
    let mut names = std::collections::BTreeSet::new();
    let mut dirs = vec![support::root().join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                names.extend(call.captures_iter(&text).map(|c| c[1].to_string()));
                // The per-metric gauges are named in one table (`observed_name`).
                names.extend(observed.captures_iter(&text).map(|c| c[1].to_string()));
            }
        }
    }
    names
}

/// The metric names in the first column of the README's Metrics table.
fn documented_metrics() -> std::collections::BTreeSet<String> {
    let readme = std::fs::read_to_string(support::root().join("README.md")).unwrap();
    let section = readme.split("\n## Metrics\n").nth(1).expect("a Metrics section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let name = regex::Regex::new(r"`(lookout_[a-z0-9_]+)`").unwrap();
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('|').nth(1))
        .flat_map(|cell| name.captures_iter(cell).map(|c| c[1].to_string()).collect::<Vec<_>>())
        .collect()
}

#[test]
fn readme_lists_every_exported_metric_and_nothing_else() {
    let exported = exported_metrics();
    let documented = documented_metrics();
    assert!(exported.len() >= 20, "the scan found the code's metrics: {exported:?}");
    let undocumented: Vec<_> = exported.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&exported).collect();
    assert!(
        undocumented.is_empty() && stale.is_empty(),
        "README's Metrics table: missing {undocumented:?}; not exported {stale:?}"
    );
}

/// A daemon configuration: `head` (scheduler options…) then `probes`, each
/// an `http_health` probe as (name, url, its other keys).
fn health_daemon(head: &str, probes: &[(&str, String, &str)]) -> String {
    let mut cfg = format!("server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\n{head}probes:\n");
    for (name, url, keys) in probes {
        cfg.push_str(&format!("  - name: {name}\n    kind: http_health\n    url: {url}\n{keys}"));
    }
    cfg
}

#[test]
fn reload_over_http_applies_a_valid_configuration() {
    use support::health::{Recorder, documented_body};
    let s = Recorder::start(200, documented_body(), Duration::ZERO);
    let one = ("one", s.url("/one"), "    every: 1s\n");
    // `POST /-/reload` needs the lifecycle API on, as in Prometheus.
    let lifecycle = |cfg: String| cfg.replacen("  listen: {listen}\n", "  listen: {listen}\n  enable_lifecycle: true\n", 1);
    let d = Daemon::start(&lifecycle(health_daemon("", std::slice::from_ref(&one))));
    wait_for("one", Duration::from_secs(10), || {
        (d.metric("lookout_probe_success", &[("probe", "one")]) == Some(1.0)).then_some(())
    });
    let before = d.metric("lookout_config_last_reload_success_timestamp_seconds", &[]).unwrap_or(0.0);
    assert_eq!(d.metric("lookout_probe_success", &[("probe", "two")]), None);
    // The timestamp has a whole second to move.
    std::thread::sleep(Duration::from_millis(1000));
    d.write_config(&lifecycle(health_daemon("", &[one, ("two", s.url("/two"), "    every: 1s\n")])));
    let (status, body) = http_request(d.port, "POST", "/-/reload", "").unwrap();
    assert_eq!(status, 200, "{body}");
    wait_for("the new probe", Duration::from_secs(10), || {
        (d.metric("lookout_probe_success", &[("probe", "two")]) == Some(1.0)).then_some(())
    });
    assert!(!s.requests_on("/two").is_empty(), "the new probe runs against its endpoint");
    assert_eq!(d.metric("lookout_config_last_reload_successful", &[]), Some(1.0));
    let after = d.metric("lookout_config_last_reload_success_timestamp_seconds", &[]).unwrap_or(0.0);
    assert!(after > before, "reloaded at {after}, started at {before}");
}

/// A probe every 500 ms whose endpoint takes 1.3 s to answer; the time
/// just before it started.
fn slow_probe() -> (support::health::Recorder, std::time::Instant, Daemon) {
    use support::health::{Recorder, documented_body};
    let s = Recorder::start(200, documented_body(), Duration::from_millis(1300));
    let started = std::time::Instant::now();
    let d = Daemon::start(&health_daemon(
        "",
        &[("slow", s.url("/slow"), "    every: 500ms\n    timeout: 3s\n")],
    ));
    (s, started, d)
}

#[test]
fn a_run_longer_than_its_period_skips_ticks_and_counts_them() {
    let (s, _, d) = slow_probe();
    // Each 1.3 s run passes two 500 ms ticks.
    wait_for("skipped ticks counted", Duration::from_secs(10), || {
        d.metric("lookout_probe_skipped_total", &[("probe", "slow")]).filter(|n| *n >= 4.0)
    });
    let runs = s.requests();
    assert!(runs.len() >= 2, "{runs:?}");
    let gaps: Vec<Duration> = runs.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(1300)),
        "a run never overlaps the next: {gaps:?}"
    );
    assert_eq!(s.peak_concurrency(), 1);
}

#[test]
fn skipped_ticks_are_counted_once() {
    let (s, started, d) = slow_probe();
    wait_for("four runs", Duration::from_secs(15), || (s.requests().len() >= 4).then_some(()));
    let skipped = d.metric("lookout_probe_skipped_total", &[("probe", "slow")]).unwrap_or(0.0);
    // Every tick since the start either started a run (all but the first
    // run) or was skipped: together no more than the ticks that passed.
    let runs = s.requests().len() as f64;
    let ticks = started.elapsed().as_secs_f64() / 0.5 + 1.0;
    assert!(
        skipped + runs - 1.0 <= ticks,
        "{skipped} skipped and {runs} runs in {ticks:.1} ticks"
    );
}

#[test]
fn cron_schedules_follow_their_time_zone() {
    use chrono::Timelike;
    use support::health::{Recorder, documented_body};
    let s = Recorder::start(200, documented_body(), Duration::ZERO);
    // Every second of this hour and the next in Kolkata (UTC+5:30): hours
    // that, read in UTC, are five or six hours away.
    let hour = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Kolkata).hour();
    let keys = format!("    schedule: '* * {hour},{} * * *'\n", (hour + 1) % 24);
    let zoned = format!("{keys}    timezone: Asia/Kolkata\n");
    let d = Daemon::start(&health_daemon(
        "",
        &[("zoned", s.url("/zoned"), &zoned), ("utc", s.url("/utc"), &keys)],
    ));
    let runs = |p: &str| {
        d.metric("lookout_probe_runs_total", &[("probe", p), ("result", "success")])
            .unwrap_or(0.0)
    };
    wait_for("runs on the zoned schedule", Duration::from_secs(10), || {
        (runs("zoned") >= 3.0).then_some(())
    });
    // Only the run at start: its hours are not now in UTC.
    assert_eq!(runs("utc"), 1.0);
    assert_eq!(s.requests_on("/utc").len(), 1);
}

#[test]
fn max_concurrency_bounds_the_runs_at_one_instant() {
    use support::health::{Recorder, documented_body};
    let peak = |limit: usize| {
        let s = Recorder::start(200, documented_body(), Duration::from_millis(250));
        let probes: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|p| (*p, s.url(&format!("/{p}")), "    every: 1s\n"))
            .collect();
        let head = format!("scheduler:\n  spread: false\n  max_concurrency: {limit}\n");
        let d = Daemon::start(&health_daemon(&head, &probes));
        wait_for("two rounds", Duration::from_secs(10), || (s.requests().len() >= 6).then_some(()));
        drop(d);
        s.peak_concurrency()
    };
    assert_eq!(peak(1), 1);
    // The same probes with room for three do run together.
    assert!(peak(3) >= 2);
}

#[test]
fn log_format_and_log_level_options() {
    use support::health::{Recorder, documented_body};
    let s = Recorder::start(200, documented_body(), Duration::ZERO);
    let cfg = health_daemon("", &[("p", s.url("/p"), "    every: 1s\n")]);
    let succeeded = |d: &Daemon| {
        wait_for("a run", Duration::from_secs(10), || {
            (d.metric("lookout_probe_success", &[("probe", "p")]) == Some(1.0)).then_some(())
        })
    };

    // JSON, at debug: every line an object, the per-run debug line among them.
    let d = Daemon::start_after("set -- \"$@\" --log-format json --log-level debug", &cfg);
    succeeded(&d);
    let lines: Vec<serde_json::Value> = wait_for("the debug line", Duration::from_secs(5), || {
        let logs = d.logs();
        logs.contains("Probe succeeded").then(|| {
            logs.lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
                .collect()
        })
    });
    let started = lines.iter().find(|l| l["message"] == "lookout started").expect("the start line");
    assert_eq!(started["level"], "INFO", "{started}");
    assert!(started["timestamp"].is_string() && started["listen"].is_string(), "{started}");
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "Probe succeeded" && l["level"] == "DEBUG" && l["probe"] == "p")
    );
    drop(d);

    // Text at the default level: no JSON, no debug line.
    let d = Daemon::start(&cfg);
    succeeded(&d);
    let logs = d.logs();
    let line = logs.lines().find(|l| l.contains("lookout started")).expect("the start line");
    assert!(
        line.contains("INFO") && serde_json::from_str::<serde_json::Value>(line).is_err(),
        "{line}"
    );
    assert!(!logs.contains("Probe succeeded"), "{logs}");

    drop(d);

    // logfmt: `key=value` pairs, the start line's fields among them.
    let d = Daemon::start_after("set -- \"$@\" --log-format logfmt", &cfg);
    succeeded(&d);
    let logs = d.logs();
    let line = logs.lines().find(|l| l.contains("lookout started")).expect("the start line");
    assert!(
        line.contains("level=info") && line.contains("message=\"lookout started\"") && line.contains("listen="),
        "{line}"
    );

    // Nothing else exists.
    let out = lookout().args(["--log-format", "yaml", "config", "check"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("[possible values: text, json, logfmt]"), "{err}");
}

#[test]
fn lookout_config_chooses_the_file_and_c_overrides_it() {
    use support::health::{Recorder, documented_body};
    let s = Recorder::start(200, documented_body(), Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let write = |file: &str, probe: &str| {
        let path = dir.path().join(file);
        let cfg = format!(
            "probe_files: []\nprobes:\n  - name: {probe}\n    kind: http_health\n    url: {}\n",
            s.url("/")
        );
        std::fs::write(&path, cfg).unwrap();
        path
    };
    // One the search path would find, one named by the variable, one by -c.
    write("lookout.yaml", "from-search");
    let env = write("env.yaml", "from-env");
    let cli = write("cli.yaml", "from-cli");
    let probes = |args: &[&str], env_config: Option<&std::path::Path>| {
        let mut cmd = lookout();
        cmd.current_dir(dir.path()).args(["check", "--format", "json"]).args(args);
        if let Some(p) = env_config {
            cmd.env("LOOKOUT_CONFIG", p);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let list = v.as_array().or_else(|| v["probes"].as_array()).cloned().unwrap_or_default();
        list.iter()
            .map(|p| p["name"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(probes(&[], None), ["from-search"]);
    assert_eq!(probes(&[], Some(&env)), ["from-env"]);
    assert_eq!(probes(&["-c", &cli.display().to_string()], Some(&env)), ["from-cli"]);
}
