//! `/metrics` as the ecosystem reads it: `promtool check metrics` finds no
//! problem (a HELP text and one unit per name, counters ending in `_total`,
//! histograms with buckets), on a daemon that has exercised its probes, the
//! cross-check and the relay.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Daemon, Redis, http_get, http_post, require, wait_for};

#[test]
fn promtool_finds_no_problem_in_metrics() {
    let promtool = require("promtool");
    let redis = Redis::start(&[]);
    // The topology kinds' families too: per node, replication, sentinels, cluster.
    let sentinels = support::topology::SentinelSetup::start(1, 1, 5000);
    let cluster = support::topology::Cluster::start(3, 2000);
    let d = Daemon::start(&format!(
        "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\nprobes:\n  - {{name: cache, kind: redis, url: '{}', every: 1s}}\n  - {{name: web, kind: http_health, url: 'http://127.0.0.1:1/health', every: 1s, timeout: 500ms}}\n  - {{name: ha, kind: redis_sentinel, sentinels: {}, master_name: {}, every: 1s}}\n  - {{name: shards, kind: redis_cluster, nodes: {}, every: 1s}}\nrelay:\n  destinations: [{{name: log, type: log}}]\n",
        redis.url(),
        sentinels.sentinel_list(),
        support::topology::MASTER_NAME,
        cluster.seed_list()
    ));
    let body = support::am_payload("g1", "firing", &[("RedisDown", "cache", "firing")]);
    let (status, _) = http_post(d.port, "/webhook", body.as_bytes(), &[("content-type", "application/json")]).unwrap();
    assert_eq!(status, 200);
    // Every family the test means to check has appeared.
    let text = wait_for("metrics of probes, relay and process", Duration::from_secs(20), || {
        let (_, t) = http_get(d.port, "/metrics")?;
        [
            "lookout_observed_used_memory_bytes{",
            "lookout_relay_deliveries_total{",
            "lookout_relay_delivery_latency_seconds_bucket{",
            "lookout_probe_duration_seconds_bucket{",
            "process_resident_memory_bytes ",
            "lookout_build_info{",
            "lookout_redis_replication_lag_bytes{",
            "lookout_redis_failovers_total{",
            "lookout_redis_cluster_slots_ok{",
        ]
        .iter()
        .all(|m| t.contains(m))
        .then_some(t)
    });
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let problems = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && problems.trim().is_empty(),
        "promtool check metrics:\n{problems}"
    );
    assert!(!text.contains("quantile="), "a histogram rendered as a summary:\n{text}");
    let info = text.lines().find(|l| l.starts_with("lookout_build_info{")).unwrap();
    assert!(info.contains("revision=\"") && !info.contains("revision=\"\""), "{info}");
}
