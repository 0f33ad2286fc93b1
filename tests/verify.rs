//! `lookout verify` on real parts: Redis under traffic, redis_exporter,
//! Prometheus with the guide's rules, the Django reference endpoint. An
//! honest stack passes (exit 0) in every format; an endpoint that reports
//! memory in KiB fails it (exit 1), named in the output.

mod support;

use std::time::{Duration, Instant};

use support::{Exporter, PyEndpoint, Redis, Traffic, lookout};

/// `lookout verify ARGS -c config`: (exit status, stdout, wall time).
fn verify(config: &std::path::Path, args: &[&str]) -> (i32, String, Duration) {
    let start = Instant::now();
    let out = lookout().arg("verify").args(args).arg("-c").arg(config).output().unwrap();
    let took = start.elapsed();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        took,
    )
}

#[test]
fn an_honest_stack_passes_and_a_lying_endpoint_fails() {
    let redis = Redis::start(&["--maxmemory", "256mb", "--maxclients", "40"]);
    let _traffic = Traffic::start(&redis.url());
    let exporter = Exporter::start(&redis.url());
    let rules = support::root().join("deploy/prometheus/alerts/redis.rules.yml");
    let prom = support::prometheus_with_rules(
        &[("redis", format!("127.0.0.1:{}", exporter.port))],
        &[rules],
        &format!("127.0.0.1:{}", support::free_port()),
    );
    let django = PyEndpoint::start("django", &redis.url(), None);
    let kib = PyEndpoint::start("fastapi", &redis.url(), Some("memory_kib"));
    let dir = tempfile::tempdir().unwrap();
    let config = |endpoint: &str| {
        let path = dir.path().join("lookout.yaml");
        std::fs::write(
            &path,
            format!(
                "data_dir: {}\nprobe_files: []\nprobes:\n  - name: redis\n    kind: redis\n    url: {}\n  - name: web\n    kind: http_health\n    url: {endpoint}\n  - name: prometheus\n    kind: prometheus\n    url: {}\n    selector: '{{job=\"redis\"}}'\n",
                dir.path().join("data").display(),
                redis.url(),
                prom.url()
            ),
        )
        .unwrap();
        path
    };

    // Prometheus needs a minute's rate for the latency: poll until the
    // honest stack passes, then time one more run.
    let honest = config(&django.url());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (code, out, _) = verify(&honest, &["--format", "json"]);
        if code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the honest stack never passed (exit {code}):\n{out}");
        std::thread::sleep(Duration::from_secs(1));
    }
    let (code, out, took) = verify(&honest, &["--format", "json"]);
    assert_eq!(code, 0, "{out}");
    println!("honest verify took {took:?}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdict"], "pass");
    assert_eq!(v["round"]["verdict"], "agree");
    for suite in ["probes", "crosscheck", "rules"] {
        assert!(
            v["cases"].as_array().unwrap().iter().any(|c| c["suite"] == suite),
            "{suite} missing: {out}"
        );
    }
    assert!(
        v["cases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "RedisConnectionExhaustion" && c["status"] == "pass"),
        "{out}"
    );
    for (fmt, needle) in [
        ("text", "Verify PASSED"),
        ("markdown", "| ✔ | rules | `RedisHighMemoryUsage` |"),
        ("junit", "<testsuite name=\"crosscheck\""),
    ] {
        let (code, out, _) = verify(&honest, &["--format", fmt, "--after", "flush"]);
        assert!(code == 0 && out.contains(needle), "{fmt} (exit {code}): {out}");
    }

    // An endpoint reporting memory in KiB: the round disagrees, exit 1.
    let lying = config(&kib.url());
    let (code, out, _) = verify(&lying, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Verify FAILED") && out.contains("used_memory_bytes/web"), "{out}");

    // Clients near maxclients: RedisConnectionExhaustion is pending (its
    // `for: 5m` has not passed), and verify fails on the rule.
    let held: Vec<redis::Connection> = (0..34)
        .map(|_| redis::Client::open(redis.url()).unwrap().get_connection().unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let out = loop {
        let (code, out, _) = verify(&honest, &["--format", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        let pending = v["cases"].as_array().into_iter().flatten().any(|c| {
            c["name"] == "RedisConnectionExhaustion" && c["status"] == "fail" && c["detail"].as_str().unwrap_or("").starts_with("pending")
        });
        if pending {
            assert_eq!(code, 1, "{out}");
            break out;
        }
        assert!(Instant::now() < deadline, "the rule never went pending: {out}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(out.contains("127.0.0.1"), "the alert's instance is named: {out}");
    drop(held);

    // `--after failover` without a `redis_sentinel` probe cannot tell.
    let (code, out, _) = verify(&honest, &["--after", "failover"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no `kind: redis_sentinel` probe is configured"), "{out}");
}

/// Without Prometheus, what can be checked still gives 0 or 1: the rules
/// and the cross-check are skipped with why; asking for them (`--require`)
/// makes their absence "could not tell".
#[test]
fn without_prometheus_the_rest_decides_unless_a_part_is_required() {
    let redis = Redis::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let config = |url: &str| {
        let path = dir.path().join("lookout.yaml");
        std::fs::write(
            &path,
            format!(
                "data_dir: {}\nprobe_files: []\nprobes:\n  - name: redis\n    kind: redis\n    url: {url}\n    timeout: 2s\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        path
    };
    let up = config(&redis.url());
    let (code, out, _) = verify(&up, &["--format", "json"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let status = |suite: &str| {
        v["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["suite"] == suite)
            .map(|c| {
                (
                    c["status"].as_str().unwrap_or("").to_string(),
                    c["detail"].as_str().unwrap_or("").to_string(),
                )
            })
            .unwrap_or_else(|| panic!("no {suite} case: {out}"))
    };
    assert_eq!(status("probes").0, "pass");
    let (rules, why) = status("rules");
    assert!(rules == "skipped" && why.contains("no Prometheus configured"), "{out}");
    let (cc, why) = status("crosscheck");
    assert!(cc == "skipped" && why.contains("nothing to cross-check"), "{out}");

    let (code, out, _) = verify(&up, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Verify PASSED") && out.contains("2 skipped"), "{out}");

    // Asked for, the rules cannot be told.
    let (code, out, _) = verify(&up, &["--require", "rules"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("required (--require rules) but skipped"), "{out}");

    // What is checked still fails the run.
    let down = config(&format!("redis://127.0.0.1:{}", support::free_port()));
    let (code, out, _) = verify(&down, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Verify FAILED"), "{out}");
}
