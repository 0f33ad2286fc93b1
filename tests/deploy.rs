//! deploy/ against the real thing: every PromQL expression of the shipped
//! dashboard and rules runs against a real Prometheus scraping a real
//! redis_exporter and a real lookout, and returns data. A panel that would
//! show "No data" fails here. (The static checks — promtool, amtool, the
//! compose files — run in deploy/validate.sh, from the same test command.)

mod support;

use std::time::Duration;

use support::saas::SaaS;
use support::topology::{Cluster, MASTER_NAME, SentinelSetup};
use support::{Daemon, Exporter, Redis, Traffic, http_post, http_request, wait_for};

#[test]
fn every_dashboard_and_rule_expression_returns_data() {
    let redis = Redis::start(&["--maxmemory", "64mb"]);
    let _traffic = Traffic::start(&redis.url());
    let exporter = Exporter::start(&redis.url());
    let saas = SaaS::start();
    // A sentinel setup and a cluster, so that the topology panels and rules
    // have series too.
    let sentinels = SentinelSetup::start(1, 1, 5000);
    let cluster = Cluster::start(3, 2000);
    // One failing delivery, so the relay's failure panel has a series.
    saas.script(&[support::saas::Answer::Status(500, "down")]);
    // lookout first, on a port it holds; Prometheus is told that port, and
    // lookout then gets its Prometheus probe (and the cross-check, which
    // needs a source besides the reference) by a reload.
    let config = |prometheus_probe: &str| {
        format!(
            "server:\n  listen: {{listen}}\n  enable_lifecycle: true\ndata_dir: {{data_dir}}\nprobe_files: []\nprobes:\n  - {{name: redis, kind: redis, url: '{}', every: 1s}}\n  - {{name: ha, kind: redis_sentinel, sentinels: {}, master_name: {MASTER_NAME}, every: 1s}}\n  - {{name: shards, kind: redis_cluster, nodes: {}, every: 1s}}\n{prometheus_probe}relay:\n  destinations:\n    - {{name: chain, type: webhook, url: '{}', retry: {{initial_backoff: 100ms, max_backoff: 200ms}}}}\n",
            redis.url(),
            sentinels.sentinel_list(),
            cluster.seed_list(),
            saas.url("/hook")
        )
    };
    let d = Daemon::start(&config(""));
    let prom = support::prometheus_with_rules(
        &[
            ("redis_exporter", format!("127.0.0.1:{}", exporter.port)),
            ("lookout", format!("127.0.0.1:{}", d.port)),
        ],
        &[],
        "127.0.0.1:1",
    );
    d.write_config(&config(&format!(
        "  - {{name: prometheus, kind: prometheus, url: '{}', selector: '{{job=\"redis_exporter\"}}', every: 1s}}\ncrosscheck: {{reference: redis, every: 1s, max_staleness: 5s}}\n",
        prom.url()
    )));
    let (status, body) = http_request(d.port, "POST", "/-/reload", "").unwrap();
    assert_eq!(status, 200, "{body}");
    let p = support::am_payload("{}:{alertname=\"DeployCheck\"}", "firing", &[("DeployCheck", "x", "firing")]);
    assert_eq!(http_post(d.port, "/webhook", p.as_bytes(), &[]).map(|r| r.0), Some(200));
    wait_for("the retried delivery", Duration::from_secs(20), || {
        (!saas.received_on("/hook").is_empty()).then_some(())
    });
    wait_for("lookout's series in Prometheus", Duration::from_secs(30), || {
        prom.query("lookout_crosscheck_agree")
            .and(prom.query("lookout_relay_queue_depth"))
            .and(prom.query("increase(lookout_relay_deliveries_total{outcome=\"retry\"}[5m])"))
            .and(prom.query("lookout_redis_replication_lag_seconds"))
            .and(prom.query("lookout_redis_cluster_slots_ok"))
    });
    wait_for("a rate over two scrapes", Duration::from_secs(30), || {
        prom.query("sum(rate(redis_commands_total[1m]))").filter(|v| *v > 0.0)
    });

    let root = support::root();
    let promql_check = |args: &[&str]| {
        let out = std::process::Command::new("python3")
            .current_dir(&root)
            .arg("deploy/promql_check.py")
            .args(args)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    let (listed, list) = promql_check(&["--list"]);
    assert!(listed, "{list}");
    let expressions: usize = list
        .lines()
        .find_map(|l| l.strip_suffix(" expressions")?.parse().ok())
        .unwrap_or_else(|| panic!("no expression count in:\n{list}"));
    assert!(expressions > 0, "{list}");
    let (ok, text) = promql_check(&[&prom.url()]);
    assert!(ok, "expressions without data:\n{text}");
    // Every expression was queried and returned data: none skipped.
    let summary = format!("{expressions} passed, 0 failed, 0 skipped");
    assert!(text.lines().any(|l| l == summary), "expected `{summary}`:\n{text}");
    assert!(
        text.contains("lookout_relay_queue_depth"),
        "the relay's panels were among them:\n{text}"
    );
}
