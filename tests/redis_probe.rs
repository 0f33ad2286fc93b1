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

/// The problems of a configuration that must not load: `(line, field, message)`.
fn problems(probe_yaml: &str) -> Vec<(Option<u64>, Option<String>, String)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lookout.yaml");
    std::fs::write(&path, format!("probe_files: []\nprobes:\n{probe_yaml}")).unwrap();
    match lookout::settings::load_with_env(&path, &no_env) {
        Ok(_) => panic!("loaded: {probe_yaml}"),
        Err(e) => e.0.into_iter().map(|p| (p.line, p.field, p.message)).collect(),
    }
}

/// One run of a probe that must fail, and within `bound`: its reason and error.
async fn failure(probe_yaml: &str, bound: std::time::Duration) -> (Option<FailureReason>, String) {
    let h = build(probe_yaml, &no_env);
    let t0 = std::time::Instant::now();
    let o = probe::run(&h).await;
    assert!(!o.ok, "{o:?}");
    assert!(t0.elapsed() < bound, "bounded by the timeout: {:?}", t0.elapsed());
    (o.reason, o.error.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_the_servers_ca_reads_info() {
    let ca = support::TestCa::new();
    let redis = support::TlsRedis::start(&ca, false, &["--maxmemory", "77594624"]);
    let h = build(
        &format!(
            "  - name: tls\n    kind: redis\n    url: {}\n    ca_file: {}\n    roundtrip: true\n",
            redis.url(),
            ca.ca.display()
        ),
        &no_env,
    );
    let o = probe::run(&h).await;
    assert!(o.ok, "{o:?}");
    assert_eq!(o.values.get(&Metric::MaxmemoryBytes), Some(&77594624.0), "{o:?}");
    let run_id = redis
        .cli(&["INFO", "server"])
        .lines()
        .find_map(|l| l.trim().strip_prefix("run_id:").map(str::to_string));
    assert_eq!(o.facts.run_id, run_id, "this server answered");
    // The connection is kept: a second run does not connect again.
    let before = redis.cli(&["INFO", "stats"]);
    assert!(probe::run(&h).await.ok);
    let connections = |info: &str| {
        info.lines()
            .find_map(|l| l.trim().strip_prefix("total_connections_received:").map(str::to_string))
    };
    let after = redis.cli(&["INFO", "stats"]);
    let (b, a) = (connections(&before).unwrap(), connections(&after).unwrap());
    assert_eq!(a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap() + 1, "only redis-cli connected");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_a_wrong_ca_fails_within_the_timeout_and_says_why() {
    let ca = support::TestCa::new();
    let other = support::TestCa::new();
    let redis = support::TlsRedis::start(&ca, false, &[]);
    // Another CA, and the system's CAs (no `ca_file`): neither signed it.
    for ca_key in [format!("    ca_file: {}\n", other.ca.display()), String::new()] {
        let yaml = format!(
            "  - name: tls\n    kind: redis\n    url: {}\n    timeout: 2s\n{ca_key}",
            redis.url()
        );
        let (reason, error) = failure(&yaml, std::time::Duration::from_secs(3)).await;
        assert_eq!(reason, Some(FailureReason::Connect), "{error}");
        // Both test CAs have the same name: the other one is found but does not verify.
        let refused = error.contains("UnknownIssuer") || error.contains("BadSignature");
        assert!(refused && error.contains("`ca_file`"), "{error}");
        assert!(error.contains(&format!("rediss://127.0.0.1:{}", redis.port)), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_works_with_a_client_certificate_and_fails_without() {
    let ca = support::TestCa::new();
    let redis = support::TlsRedis::start(&ca, true, &["--maxmemory", "79691776"]);
    let (cert, key) = &redis.client;
    let base = format!(
        "  - name: mtls\n    kind: redis\n    url: {}\n    timeout: 2s\n    ca_file: {}\n",
        redis.url(),
        ca.ca.display()
    );
    let h = build(
        &format!("{base}    cert_file: {}\n    key_file: {}\n", cert.display(), key.display()),
        &no_env,
    );
    let o = probe::run(&h).await;
    assert!(o.ok, "{o:?}");
    assert_eq!(o.values.get(&Metric::MaxmemoryBytes), Some(&79691776.0), "{o:?}");

    let (_, error) = failure(&base, std::time::Duration::from_secs(3)).await;
    assert!(error.contains("CertificateRequired") && error.contains("`cert_file`"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_skip_verify_accepts_a_certificate_of_an_unknown_ca() {
    let ca = support::TestCa::new();
    let redis = support::TlsRedis::start(&ca, false, &["--maxmemory", "81788928"]);
    let h = build(
        &format!(
            "  - name: tls\n    kind: redis\n    url: {}\n    tls_skip_verify: true\n",
            redis.url()
        ),
        &no_env,
    );
    let o = probe::run(&h).await;
    assert!(o.ok, "{o:?}");
    assert_eq!(o.values.get(&Metric::MaxmemoryBytes), Some(&81788928.0), "{o:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_acl_user_over_tls_and_a_wrong_password_is_an_auth_error() {
    let secret = "Probe-Pa55-acl";
    let ca = support::TestCa::new();
    let redis = support::TlsRedis::start(&ca, false, &["--maxmemory", "83886080"]);
    // As narrow as a managed Redis's monitoring user.
    let set = redis.cli(&[
        "ACL",
        "SETUSER",
        "probe",
        "on",
        &format!(">{secret}"),
        "+ping",
        "+info",
        "+config|get",
    ]);
    assert_eq!(set.trim(), "OK");
    let pw = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(pw.path(), format!("{secret}\n")).unwrap();
    let h = build(
        &format!(
            "  - name: acl\n    kind: redis\n    host: 127.0.0.1\n    port: {}\n    tls: true\n    username: probe\n    password_file: {}\n    ca_file: {}\n",
            redis.port,
            pw.path().display(),
            ca.ca.display()
        ),
        &no_env,
    );
    let o = probe::run(&h).await;
    assert!(o.ok, "{o:?}");
    assert_eq!(o.values.get(&Metric::MaxmemoryBytes), Some(&83886080.0), "{o:?}");
    assert!(
        redis.cli(&["CLIENT", "LIST"]).lines().any(|l| l.contains(" user=probe ")),
        "the probe's kept connection is the ACL user's"
    );

    // The backends' REDIS_URL, with only the CA given here.
    let url = format!("rediss://probe:{secret}@127.0.0.1:{}", redis.port);
    let env = move |k: &str| (k == "REDIS_URL").then(|| url.clone());
    let h = build(&format!("  - name: acl\n    kind: redis\n    ca_file: {}\n", ca.ca.display()), &env);
    let o = probe::run(&h).await;
    assert!(o.ok, "{o:?}");
    assert_eq!(o.values.get(&Metric::MaxmemoryBytes), Some(&83886080.0), "{o:?}");

    let h = build(
        &format!(
            "  - name: acl\n    kind: redis\n    url: rediss://probe:wrong-{secret}@127.0.0.1:{}\n    ca_file: {}\n",
            redis.port,
            ca.ca.display()
        ),
        &no_env,
    );
    let o = probe::run(&h).await;
    assert!(!o.ok, "{o:?}");
    let text = format!("{o:?}");
    assert!(!text.contains(secret), "{text}");
    let error = o.error.unwrap_or_default();
    assert!(
        error.to_lowercase().contains("authentication failed"),
        "an authentication error: {error}"
    );
}

#[test]
fn tls_keys_are_checked_when_the_configuration_loads() {
    let ca = support::TestCa::new();
    let other = support::TestCa::new();
    let (cert, key) = ca.client_cert();
    let (_, other_key) = other.client_cert();
    let d = tempfile::tempdir().unwrap();
    let text = d.path().join("notes.txt");
    std::fs::write(&text, "not a certificate\n").unwrap();
    let head = "  - name: r\n    kind: redis\n";
    let cases: Vec<(String, &str, &str)> = vec![
        (
            format!("{head}    url: redis://127.0.0.1:6379\n    ca_file: {}\n", ca.ca.display()),
            "ca_file",
            "is redis://",
        ),
        (
            format!(
                "{head}    url: rediss://127.0.0.1:6379\n    ca_file: {}\n",
                d.path().join("missing.pem").display()
            ),
            "ca_file",
            "cannot read",
        ),
        (
            format!("{head}    url: rediss://127.0.0.1:6379\n    ca_file: {}\n", text.display()),
            "ca_file",
            "no PEM certificate",
        ),
        (
            format!("{head}    url: rediss://127.0.0.1:6379\n    cert_file: {}\n", cert.display()),
            "cert_file",
            "needs `key_file`",
        ),
        (
            format!(
                "{head}    url: rediss://127.0.0.1:6379\n    cert_file: {}\n    key_file: {}\n",
                cert.display(),
                text.display()
            ),
            "key_file",
            "no PEM private key",
        ),
        (
            format!(
                "{head}    url: rediss://127.0.0.1:6379\n    cert_file: {}\n    key_file: {}\n",
                cert.display(),
                other_key.display()
            ),
            "key_file",
            "does not go with",
        ),
        (
            format!(
                "{head}    url: rediss://127.0.0.1:6379\n    ca_file: {}\n    tls_skip_verify: true\n",
                ca.ca.display()
            ),
            "tls_skip_verify",
            "not both",
        ),
        (
            format!("{head}    host: 127.0.0.1\n    tls_skip_verify: true\n"),
            "tls_skip_verify",
            "`tls: true`",
        ),
    ];
    for (yaml, field, says) in cases {
        let found = problems(&yaml);
        let line = yaml
            .lines()
            .position(|l| l.trim_start().starts_with(&format!("{field}:")))
            .map(|i| i as u64 + 3);
        assert!(
            found
                .iter()
                .any(|(l, f, m)| f.as_deref() == Some(field) && *l == line && m.contains(says)),
            "{yaml}\n{found:?}"
        );
        // A key's content is never repeated.
        assert!(found.iter().all(|(_, _, m)| !m.contains("PRIVATE KEY")), "{found:?}");
    }
    // A key that goes with its certificate loads.
    build(
        &format!(
            "{head}    url: rediss://127.0.0.1:6379\n    cert_file: {}\n    key_file: {}\n",
            cert.display(),
            key.display()
        ),
        &no_env,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_and_plain_ports_mixed_up_fail_within_the_timeout_and_say_so() {
    let redis = Redis::start(&[]);
    let yaml = format!(
        "  - name: tls\n    kind: redis\n    url: rediss://127.0.0.1:{}\n    timeout: 1s\n",
        redis.port
    );
    let (reason, error) = failure(&yaml, std::time::Duration::from_secs(2)).await;
    // Redis waits for the end of a line that never comes: the connection
    // gives up just before the run does, and says what it was doing.
    assert_eq!(reason, Some(FailureReason::Timeout), "{error}");
    assert!(error.contains("does this port speak TLS"), "{error}");

    // And the other way round: redis:// to a TLS-only port.
    let ca = support::TestCa::new();
    let tls = support::TlsRedis::start(&ca, false, &[]);
    let yaml = format!(
        "  - name: plain\n    kind: redis\n    url: redis://127.0.0.1:{}\n    timeout: 1s\n",
        tls.port
    );
    let (reason, error) = failure(&yaml, std::time::Duration::from_secs(2)).await;
    assert_eq!(reason, Some(FailureReason::Connect), "{error}");
    assert!(error.contains("does it take rediss://"), "{error}");
}
