//! `kind: prometheus` against a real Prometheus scraping a real
//! redis_exporter of a real Redis (1 s scrapes).

mod support;

use std::time::Duration;

use lookout::metric::Metric;
use lookout::probe::{self, FailureReason};
use support::{Exporter, Prometheus, Redis, wait_for_async};

#[tokio::test(flavor = "multi_thread")]
async fn reads_exporter_series_and_tells_a_down_target() {
    let redis = Redis::start(&["--maxmemory", "32mb"]);
    redis.cli(&["SET", "a", "1"]);
    redis.cli(&["GET", "a"]);
    redis.cli(&["GET", "zz"]);
    let mut exporter = Exporter::start(&redis.url());
    let prom = Prometheus::start(&[("redis_exporter", format!("127.0.0.1:{}", exporter.port))]);
    let h = support::build_probe(&format!(
        "  - name: prom\n    kind: prometheus\n    url: {}\n    selector: '{{job=\"redis_exporter\"}}'\n",
        prom.url()
    ));

    let o = wait_for_async("a successful prometheus probe", Duration::from_secs(30), || {
        let h = h.clone();
        async move {
            let o = probe::run(&h).await;
            o.ok.then_some(o)
        }
    })
    .await;
    assert_eq!(o.facts.target_up, Some(true));
    assert_eq!(o.facts.redis_up, Some(true));
    assert_eq!(o.values[&Metric::KeyspaceHits], 1.0);
    assert_eq!(o.values[&Metric::KeyspaceMisses], 1.0);
    assert_eq!(o.values[&Metric::HitRatio], 0.5);
    assert_eq!(o.values[&Metric::MaxmemoryBytes], 32.0 * 1024.0 * 1024.0);
    assert_eq!(o.values[&Metric::Maxclients], redis.info_field("maxclients").unwrap());
    let scrape = o.facts.scrape_timestamp.unwrap();
    let now = probe::unix_now();
    assert!(now - scrape < 5.0 && now >= scrape - 1.0, "scrape time {scrape} vs now {now}");
    assert_eq!(o.sample_times[&Metric::KeyspaceHits], scrape);
    // Prometheus's clock when it evaluated the queries: here, the same
    // machine's, within the probe's run.
    let evaluated = o.facts.evaluated_at.expect("the evaluation time is recorded");
    assert!(
        evaluated >= o.timestamp - 0.01 && evaluated <= o.timestamp + o.duration_seconds + 0.01,
        "evaluated at {evaluated}, probe ran from {} for {} s",
        o.timestamp,
        o.duration_seconds
    );

    // A wrong selector is an upstream failure with a reason, not a panic.
    let wrong = support::build_probe(&format!(
        "  - name: prom\n    kind: prometheus\n    url: {}\n    selector: '{{job=\"nope\"}}'\n",
        prom.url()
    ));
    let o = probe::run(&wrong).await;
    assert_eq!(o.reason, Some(FailureReason::Upstream), "{o:?}");

    // Exporter gone: Prometheus marks the target down.
    exporter.stop();
    let o = wait_for_async("the target to be reported down", Duration::from_secs(30), || {
        let h = h.clone();
        async move {
            let o = probe::run(&h).await;
            (o.facts.target_up == Some(false)).then_some(o)
        }
    })
    .await;
    assert!(!o.ok);
    assert!(o.error.unwrap().contains("up == 0"));
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_down_is_a_connect_failure() {
    let port = support::free_port();
    let h = support::build_probe(&format!(
        "  - name: prom\n    kind: prometheus\n    url: http://127.0.0.1:{port}\n    timeout: 1s\n"
    ));
    let o = probe::run(&h).await;
    assert_eq!(o.reason, Some(FailureReason::Connect), "{o:?}");
}

/// The scrape interval a one-shot round waits for is the exporter target's,
/// read from the targets API: the job's own (4 s), not the global one (1 s)
/// nor another job's; a selector matching no target says so.
#[tokio::test(flavor = "multi_thread")]
async fn the_scrape_interval_is_the_exporter_targets_own() {
    let redis = Redis::start(&[]);
    let exporter = Exporter::start(&redis.url());
    let prom = Prometheus::start_with_scrape_configs(
        &[("fast", format!("127.0.0.1:{}", exporter.port))],
        &format!(
            "  - job_name: slow\n    scrape_interval: 4s\n    scrape_timeout: 3s\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            exporter.port
        ),
    );
    let spec = |selector: &str| -> lookout::probe::prometheus::PrometheusSpec {
        match &support::build_probe(&format!(
            "  - name: prom\n    kind: prometheus\n    url: {}\n    selector: '{selector}'\n",
            prom.url()
        ))
        .config
        .spec
        {
            probe::ProbeSpec::Prometheus(s) => s.clone(),
            _ => unreachable!("a prometheus probe"),
        }
    };
    let interval = |selector: &'static str| {
        let s = spec(selector);
        async move { lookout::probe::prometheus::scrape_interval(&s, Duration::from_secs(2)).await }
    };
    let slow = wait_for_async("the slow job's target", Duration::from_secs(30), || async {
        interval("{job=\"slow\"}").await.ok()
    })
    .await;
    assert_eq!(slow, Duration::from_secs(4));
    let fast = wait_for_async("the fast job's target", Duration::from_secs(30), || async {
        interval("{job=\"fast\"}").await.ok()
    })
    .await;
    assert_eq!(fast, Duration::from_secs(1));
    let none = interval("{job=\"absent\"}").await.unwrap_err();
    assert!(none.contains("no `up{job=\"absent\"}` series"), "{none}");
}
