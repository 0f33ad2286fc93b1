//! `kind: redis` against real redis-server instances.

mod support;

use lookout::metric::Metric;
use lookout::probe::{self, FailureReason};
use support::Redis;

fn build(probe_yaml: &str, env: &dyn Fn(&str) -> Option<String>) -> probe::ProbeHandle {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lookout.yaml");
    std::fs::write(&path, format!("probe_files: []\nprobes:\n{probe_yaml}")).unwrap();
    let cfg = lookout::settings::load_with_env(&path, env).unwrap_or_else(|e| panic!("{e}"));
    probe::build(&cfg.probes[0]).unwrap()
}

fn no_env(_: &str) -> Option<String> {
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn values_match_info_and_roundtrip_works() {
    let redis = Redis::start(&["--maxmemory", "64mb"]);
    redis.cli(&["SET", "a", "1"]);
    redis.cli(&["GET", "a"]);
    redis.cli(&["GET", "b"]);
    let h = build(
        &format!("  - name: cache\n    kind: redis\n    url: {}\n    roundtrip: true\n", redis.url()),
        &no_env,
    );
    let o = probe::run(&h).await;
    assert!(o.ok, "{o:?}");
    // The round trip's own GET counts as a hit after the INFO was read.
    assert_eq!(o.values[&Metric::KeyspaceHits], 1.0);
    assert_eq!(o.values[&Metric::KeyspaceMisses], 1.0);
    assert_eq!(o.values[&Metric::HitRatio], 0.5);
    assert_eq!(o.values[&Metric::MaxmemoryBytes], 64.0 * 1024.0 * 1024.0);
    assert_eq!(o.values[&Metric::Maxclients], redis.info_field("maxclients").unwrap());
    assert!(o.values[&Metric::ConnectedClients] >= 1.0);
    assert!(o.facts.run_id.as_deref().is_some_and(|r| r.len() == 40));
    assert_eq!(o.facts.role.as_deref(), Some("master"));
    assert_eq!(o.facts.aof_enabled, Some(false));
    assert_eq!(redis.cli(&["EXISTS", "lookout:probe:cache"]).trim(), "0", "round-trip key deleted");
    // One connection for every run: the server's connection count does not grow.
    let first = redis.info_field("total_connections_received").unwrap();
    for _ in 0..5 {
        assert!(probe::run(&h).await.ok);
    }
    assert_eq!(
        redis.info_field("total_connections_received").unwrap(),
        first + 1.0,
        "only the redis-cli call above connected"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn config_disabled_still_works() {
    let redis = Redis::start(&["--rename-command", "CONFIG", ""]);
    let h = build(&format!("  - name: cache\n    kind: redis\n    url: {}\n", redis.url()), &no_env);
    let o = probe::run(&h).await;
    assert!(o.ok, "{o:?}");
    assert_eq!(
        o.values.get(&Metric::Maxclients).copied(),
        redis.info_field("maxclients"),
        "from INFO clients on Redis 7"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn password_from_redis_env_and_no_leak() {
    let secret = "s3cret-Pa55word";
    let redis = Redis::start(&["--requirepass", secret, "--maxmemory", "73400320"]);
    let port = redis.port.to_string();
    let env = move |k: &str| match k {
        "REDIS_HOST" => Some("127.0.0.1".to_string()),
        "REDIS_PORT" => Some(port.clone()),
        "REDIS_PASSWORD" => Some(secret.to_string()),
        _ => None,
    };
    let h = build("  - name: cache\n    kind: redis\n", &env);
    let o = probe::run(&h).await;
    assert!(o.ok, "{o:?}");
    // This server answered (not one on 6379 that a broken lookup would reach).
    assert_eq!(o.facts.run_id, Some(redis.run_id()), "{o:?}");
    assert_eq!(o.values.get(&Metric::MaxmemoryBytes), Some(&73400320.0), "{o:?}");

    let h = build(
        &format!(
            "  - name: cache\n    kind: redis\n    url: redis://:wrong-{secret}@127.0.0.1:{}\n",
            redis.port
        ),
        &no_env,
    );
    let o = probe::run(&h).await;
    assert!(!o.ok);
    let text = format!("{o:?}");
    assert!(!text.contains(secret), "{text}");
    assert!(
        o.error.unwrap().to_lowercase().contains("pass"),
        "the reason names the auth problem"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_and_restart_recovers_without_rebuild() {
    let mut redis = Redis::start(&[]);
    let h = build(
        &format!("  - name: cache\n    kind: redis\n    url: {}\n    timeout: 1s\n", redis.url()),
        &no_env,
    );
    assert!(probe::run(&h).await.ok);
    let run_id = probe::run(&h).await.facts.run_id;
    redis.stop();
    let o = probe::run(&h).await;
    assert!(!o.ok);
    assert!(
        matches!(o.reason, Some(FailureReason::Connect) | Some(FailureReason::Status)),
        "{o:?}"
    );
    assert!(o.duration_seconds < 1.5, "failure within one timeout: {o:?}");
    redis.restart();
    let o = probe::run(&h).await;
    assert!(o.ok, "{o:?}");
    assert_ne!(o.facts.run_id, run_id, "a restart shows as a new run_id at once");
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_6_maxclients_comes_from_config_get() {
    use support::{ConfigGet, RespStandIn};
    let s = RespStandIn::start(ConfigGet::Answer(4321));
    let h = build(&format!("  - name: old\n    kind: redis\n    url: {}\n", s.url()), &no_env);
    let o = probe::run(&h).await;
    assert!(o.ok, "{o:?}");
    assert_eq!(o.values.get(&Metric::Maxclients), Some(&4321.0), "{o:?}");
    assert_eq!(o.values[&Metric::ConnectedClients], 7.0, "INFO read without sections");
    assert_eq!(o.values[&Metric::HitRatio], 0.75);
    let asked = s.config_gets.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(asked, 1);
    // Static like INFO server: not asked again on every run.
    let o = probe::run(&h).await;
    assert_eq!(o.values.get(&Metric::Maxclients), Some(&4321.0), "{o:?}");
    assert_eq!(s.config_gets.load(std::sync::atomic::Ordering::SeqCst), asked);
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_6_without_config_succeeds_without_maxclients() {
    use support::{ConfigGet, RespStandIn};
    let s = RespStandIn::start(ConfigGet::Disabled);
    let h = build(&format!("  - name: managed\n    kind: redis\n    url: {}\n", s.url()), &no_env);
    for _ in 0..2 {
        let o = probe::run(&h).await;
        assert!(o.ok, "{o:?}");
        assert_eq!(o.values.get(&Metric::Maxclients), None, "{o:?}");
        assert_eq!(o.values[&Metric::UsedMemoryBytes], 1048576.0);
    }
    assert_eq!(
        s.config_gets.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "tried once, then let be"
    );
}
