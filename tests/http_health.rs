//! `kind: http_health` against real HTTP servers: the documented shape, a
//! custom shape through `fields`, and each failure an endpoint can have.

mod support;

use std::time::{Duration, Instant};

use lookout::metric::Metric;
use lookout::probe::{self, FailureReason, Observation};
use support::Redis;
use support::health::{Behaviour, HealthStandIn};

fn no_env(_: &str) -> Option<String> {
    None
}

/// Builds the single probe a YAML snippet defines and runs it once.
async fn run_probe(probe_yaml: &str) -> Observation {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lookout.yaml");
    std::fs::write(&path, format!("probe_files: []\nprobes:\n{probe_yaml}")).unwrap();
    let cfg = lookout::settings::load_with_env(&path, &no_env).unwrap_or_else(|e| panic!("{e}"));
    let h = probe::build(&cfg.probes[0]).unwrap();
    probe::run(&h).await
}

fn http_probe(url: &str, extra: &str) -> String {
    format!("  - name: web\n    kind: http_health\n    url: {url}\n    timeout: 1s\n{extra}")
}

#[tokio::test(flavor = "multi_thread")]
async fn documented_shape_matches_redis() {
    let redis = Redis::start(&[]);
    redis.cli(&["SET", "k", "v"]);
    redis.cli(&["GET", "k"]);
    redis.cli(&["GET", "nope"]);
    let s = HealthStandIn::start("/health/redis/", Behaviour::Documented(redis.url()));
    let o = run_probe(&http_probe(&s.url("/health/redis/"), "")).await;
    assert!(o.ok, "{o:?}");
    assert_eq!(o.values[&Metric::KeyspaceHits], redis.info_field("keyspace_hits").unwrap());
    assert_eq!(o.values[&Metric::KeyspaceMisses], redis.info_field("keyspace_misses").unwrap());
    assert_eq!(o.values[&Metric::Maxclients], redis.info_field("maxclients").unwrap());
    assert_eq!(o.values[&Metric::MaxmemoryBytes], 0.0);
    assert!((o.values[&Metric::HitRatio] - 0.5).abs() < 1e-9);
    let lat = o.values[&Metric::LatencySeconds];
    assert!(lat > 0.0 && lat < 0.1, "latency in seconds, not ms: {lat}");
    assert_eq!(o.values.len(), 9, "{:?}", o.values);
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_shape_with_fields_and_scale() {
    let redis = Redis::start(&[]);
    redis.cli(&["GET", "miss"]);
    let s = HealthStandIn::start("/api/health/redis", Behaviour::Custom(redis.url()));
    let fields = "    fields:\n      keyspace_hits: /cache/stats/hit_count\n      keyspace_misses: /cache/stats/miss_count\n      latency_seconds: {pointer: /cache/rtt_us, scale: 0.000001}\n      used_memory_bytes: {pointer: /cache/mem/used_kib, scale: 1024}\n";
    let o = run_probe(&http_probe(&s.url("/api/health/redis"), fields)).await;
    assert!(o.ok, "{o:?}");
    assert_eq!(o.values[&Metric::KeyspaceMisses], 1.0);
    assert_eq!(o.values[&Metric::HitRatio], 0.0, "derived from the counters");
    let lat = o.values[&Metric::LatencySeconds];
    assert!(lat > 0.0 && lat < 0.1, "µs scaled to seconds: {lat}");
    // KiB scaled back to bytes: the server's used_memory, give or take what
    // changed between the two reads.
    let used = o.values[&Metric::UsedMemoryBytes];
    let server = redis.info_field("used_memory").unwrap();
    assert!((used - server).abs() < 64.0 * 1024.0, "{used} bytes, the server says {server}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_failure_has_a_clear_reason() {
    let cases: Vec<(Behaviour, FailureReason, &str)> = vec![
        (
            Behaviour::Unavailable("Redis connection refused"),
            FailureReason::Status,
            "HTTP 503: Redis connection refused",
        ),
        (Behaviour::Hang, FailureReason::Timeout, "timed out"),
        (Behaviour::InvalidJson, FailureReason::Response, "invalid JSON"),
        (Behaviour::WrongShape, FailureReason::Response, "missing fields `/redis/latency_ms`"),
        (Behaviour::Oversized, FailureReason::Response, "larger than 1024 KiB"),
    ];
    for (b, reason, text) in cases {
        let s = HealthStandIn::start("/health/redis/", b.clone());
        let start = Instant::now();
        let o = run_probe(&http_probe(&s.url("/health/redis/"), "")).await;
        assert!(!o.ok, "{b:?}");
        assert_eq!(o.reason, Some(reason), "{b:?}: {o:?}");
        let err = o.error.unwrap();
        assert!(err.contains(text), "{b:?}: `{err}` should contain `{text}`");
        assert!(start.elapsed() < Duration::from_secs(3), "{b:?} bounded by the 1s timeout");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_refused_and_assertions() {
    let port = support::free_port();
    let o = run_probe(&http_probe(&format!("http://127.0.0.1:{port}/health/redis/"), "")).await;
    assert_eq!(o.reason, Some(FailureReason::Connect), "{o:?}");

    let redis = Redis::start(&[]);
    redis.cli(&["GET", "miss"]);
    let s = HealthStandIn::start("/health/redis/", Behaviour::Documented(redis.url()));
    let o = run_probe(&http_probe(
        &s.url("/health/redis/"),
        "    assert:\n      - hit_ratio >= 0.8\n      - latency_seconds < 5\n",
    ))
    .await;
    assert_eq!(o.reason, Some(FailureReason::Assertion), "{o:?}");
    let err = o.error.unwrap();
    assert!(err.contains("hit_ratio >= 0.8 (was 0)"), "{err}");
    assert!(!err.contains("latency_seconds"), "only failed conditions are listed: {err}");
    assert_eq!(o.values.len(), 9, "values are kept on an assertion failure");
}

#[tokio::test(flavor = "multi_thread")]
async fn expect_status_is_the_healthy_answer() {
    use support::health::{Recorder, documented_body};
    // An endpoint whose health is its status: 204, no body, nothing to read.
    let no_content = Recorder::start(204, serde_json::Value::Null, Duration::ZERO);
    let o = run_probe(&http_probe(&no_content.url("/ping"), "    expect_status: 204\n    fields: {}\n")).await;
    assert!(o.ok, "{o:?}");
    assert!(o.values.is_empty(), "{o:?}");
    let o = run_probe(&http_probe(&no_content.url("/ping"), "    fields: {}\n")).await;
    assert_eq!(o.reason, Some(FailureReason::Status), "{o:?}");
    assert!(o.error.as_deref().is_some_and(|e| e.contains("HTTP 204 (expected 200)")), "{o:?}");
    // The documented shape under another status is read when that status is expected…
    let accepted = Recorder::start(202, documented_body(), Duration::ZERO);
    let o = run_probe(&http_probe(&accepted.url("/h"), "    expect_status: 202\n")).await;
    assert!(o.ok, "{o:?}");
    assert_eq!(o.values[&Metric::Maxclients], 100.0);
    // …and a plain 200 is then a failure.
    let ok = Recorder::start(200, documented_body(), Duration::ZERO);
    let o = run_probe(&http_probe(&ok.url("/h"), "    expect_status: 202\n")).await;
    assert!(o.error.as_deref().is_some_and(|e| e.contains("HTTP 200 (expected 202)")), "{o:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn request_headers_reach_the_endpoint() {
    use support::health::{Recorder, documented_body};
    let s = Recorder::start(200, documented_body(), Duration::ZERO);
    let headers = "    headers:\n      Authorization: Bearer health-token-9\n      X-Probe-From: lookout\n";
    let o = run_probe(&http_probe(&s.url("/health/redis/"), headers)).await;
    assert!(o.ok, "{o:?}");
    let got = s.requests_on("/health/redis/");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].headers["authorization"], "Bearer health-token-9");
    assert_eq!(got[0].headers["x-probe-from"], "lookout");
    assert!(!format!("{o:?}").contains("health-token-9"), "the header is a secret");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_skip_verify_accepts_a_certificate_nobody_vouches_for() {
    let ca = support::TestCa::new();
    let body = support::health::documented_body().to_string();
    let (cert, key) = (ca.cert.display().to_string(), ca.key.display().to_string());
    let s = support::PyStandIn::start("https", &["--cert", &cert, "--key", &key, "--body", &body]);
    let url = format!("https://127.0.0.1:{}/health/redis/", s.port);
    let o = run_probe(&http_probe(&url, "")).await;
    assert!(!o.ok, "{o:?}");
    let err = o.error.unwrap_or_default();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert!(s.events_of("get").is_empty(), "no request past a refused handshake");
    let o = run_probe(&http_probe(&url, "    tls_skip_verify: true\n")).await;
    assert!(o.ok, "{o:?}");
    assert_eq!(o.values[&Metric::Maxclients], 100.0);
    assert_eq!(s.events_of("get").len(), 1);
}
