//! deploy/ against the real thing: every PromQL expression of the shipped
//! dashboard and rules runs against a real Prometheus scraping a real
//! redis_exporter and a real lookout, and returns data. A panel that would
//! show "No data" fails here. (The static checks — promtool, amtool, the
//! compose files — run in deploy/validate.sh, from the same test command.)

mod support;

use std::time::Duration;

use support::saas::SaaS;
use support::{Daemon, Exporter, Redis, Traffic, http_post, wait_for};

#[test]
fn every_dashboard_and_rule_expression_returns_data() {
    let redis = Redis::start(&["--maxmemory", "64mb"]);
    let _traffic = Traffic::start(&redis.url());
    let exporter = Exporter::start(&redis.url());
    let saas = SaaS::start();
    // One failing delivery, so the relay's failure panel has a series.
    saas.script(&[support::saas::Answer::Status(500, "down")]);
    let port = support::free_port();
    let prom = support::prometheus_with_rules(
        &[
            ("redis_exporter", format!("127.0.0.1:{}", exporter.port)),
            ("lookout", format!("127.0.0.1:{port}")),
        ],
        &[],
        "127.0.0.1:1",
    );
    let d = Daemon::start_on(
        port,
        &format!(
            "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\nprobes:\n  - {{name: redis, kind: redis, url: '{}', every: 1s}}\n  - {{name: prometheus, kind: prometheus, url: '{}', selector: '{{job=\"redis_exporter\"}}', every: 1s}}\ncrosscheck: {{every: 1s, max_staleness: 5s}}\nrelay:\n  destinations:\n    - {{name: chain, type: webhook, url: '{}', retry: {{initial_backoff: 100ms, max_backoff: 200ms}}}}\n",
            redis.url(),
            prom.url(),
            saas.url("/hook")
        ),
    );
    let p = support::am_payload("{}:{alertname=\"DeployCheck\"}", "firing", &[("DeployCheck", "x", "firing")]);
    assert_eq!(http_post(d.port, "/webhook", p.as_bytes(), &[]).map(|r| r.0), Some(200));
    wait_for("the retried delivery", Duration::from_secs(20), || {
        (!saas.received_on("/hook").is_empty()).then_some(())
    });
    wait_for("lookout's series in Prometheus", Duration::from_secs(30), || {
        prom.query("lookout_crosscheck_agree")
            .and(prom.query("lookout_relay_queue_depth"))
            .and(prom.query("increase(lookout_relay_deliveries_total{outcome=\"retry\"}[5m])"))
    });
    wait_for("a rate over two scrapes", Duration::from_secs(30), || {
        prom.query("sum(rate(redis_commands_total[1m]))").filter(|v| *v > 0.0)
    });

    let root = support::root();
    let out = std::process::Command::new("python3")
        .current_dir(&root)
        .arg("deploy/promql_check.py")
        .arg(prom.url())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "expressions without data:\n{text}");
    assert!(text.contains("lookout_relay_queue_depth") || text.contains("passed"), "{text}");
}
