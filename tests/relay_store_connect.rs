//! Connecting to the shared PostgreSQL store, against real servers of the
//! test's own (tests/postgres.sh, with `ssl = on` and a certificate of a
//! test CA where TLS is tested): each `sslmode` does what libpq's does, the
//! pool and the fallback leader's session are both encrypted, a failure
//! says what to change and names the server without its password, a server
//! that requires a client certificate gets one; and a replica started while
//! its store is down probes meanwhile, answers webhooks 503, and takes them
//! once the store is up, without a restart.

mod support;

use std::sync::Arc;
use std::time::Duration;

use lookout::config::Secret;
use lookout::config::tls::{read_ca_bundle, read_client_identity};
use lookout::relay::config::{StoreConfig, StoreTls};
use lookout::relay::leader::Leader;
use lookout::relay::store::postgres::Postgres;
use support::postgres::Private;
use support::saas::SaaS;
use support::{Daemon, Redis, TestCa, am_payload, http_get, http_post, wait_for};
use tokio_util::sync::CancellationToken;

const WINDOW: Duration = Duration::from_secs(300);
/// In every URL: the tests' servers trust anyone, so it is never checked,
/// and it must never appear in an error.
const PASSWORD: &str = "pw-7c41e9";

fn url(pg: &Private, sslmode: &str) -> String {
    format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}/test?sslmode={sslmode}", pg.port)
}

fn config(url: String, ca: Option<&TestCa>, client: Option<&TestCa>) -> StoreConfig {
    StoreConfig {
        url: Secret::new(url),
        pool_size: 2,
        lease: Duration::from_secs(3),
        replica: "tls".into(),
        tls: StoreTls {
            ca: ca.map(|c| read_ca_bundle(&c.ca).unwrap()),
            client: client.map(|c| {
                let (cert, key) = c.client_cert();
                read_client_identity(&cert, &key).unwrap()
            }),
        },
    }
}

/// Whether the session of one of the store's pooled connections is
/// encrypted, as the server sees it.
async fn encrypted(store: &Postgres) -> bool {
    let c = store.pool().get().await.unwrap();
    c.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// The error of opening a store with `cfg`, which must fail.
async fn refused(cfg: &StoreConfig) -> String {
    match Postgres::open(cfg, WINDOW).await {
        Ok(_) => panic!("opened"),
        Err(e) => {
            let e = e.to_string();
            assert!(!e.contains(PASSWORD), "the password is shown: {e}");
            e
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_the_ca_encrypts_the_pool_and_the_leader_session() {
    let ca = TestCa::new();
    let pg = Private::start_tls(&ca, false);
    let cfg = config(url(&pg, "verify-full"), Some(&ca), None);
    let store = Postgres::open(&cfg, WINDOW).await.unwrap();
    assert!(encrypted(&store).await);

    // The fallback leader's session is its own, outside the pool.
    let leader = Arc::new(Leader::new("tls"));
    let stop = CancellationToken::new();
    let run = tokio::spawn({
        let (leader, cfg, stop) = (leader.clone(), cfg.clone(), stop.clone());
        async move { leader.run(cfg, stop).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !leader.leads() {
        assert!(tokio::time::Instant::now() < deadline, "the leader never took the lock");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = store.pool().get().await.unwrap();
    let rows = c
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'lookout tls leader'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.iter().map(|r| r.get::<_, bool>(0)).collect::<Vec<_>>(), [true]);
    stop.cancel();
    run.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_ca_is_refused_naming_the_server_and_what_to_change() {
    let (ca, other) = (TestCa::new(), TestCa::new());
    let pg = Private::start_tls(&ca, false);
    for mode in ["verify-full", "verify-ca", "require"] {
        let e = refused(&config(url(&pg, mode), Some(&other), None)).await;
        assert!(e.contains(&format!("127.0.0.1:{}", pg.port)), "{mode}: {e}");
        // Both test CAs have the same name: the server's certificate names
        // the other as its issuer, whose signature does not match.
        assert!(e.contains("BadSignature") && e.contains("`relay.store.ca_file`"), "{mode}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_refuses_a_host_the_certificate_does_not_name_and_verify_ca_does_not_check_it() {
    let ca = TestCa::new();
    let pg = Private::start_tls(&ca, false);
    // Connects to 127.0.0.1, checks the certificate for `db.example`.
    let named = |mode: &str| {
        format!(
            "postgres://postgres:{PASSWORD}@db.example:{}/test?hostaddr=127.0.0.1&sslmode={mode}",
            pg.port
        )
    };
    let e = refused(&config(named("verify-full"), Some(&ca), None)).await;
    assert!(e.contains("db.example") && e.contains("does not name the URL's host"), "{e}");
    let store = Postgres::open(&config(named("verify-ca"), Some(&ca), None), WINDOW).await.unwrap();
    assert!(encrypted(&store).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_ca_prefer_and_require_encrypt_unchecked_as_libpq_does() {
    let ca = TestCa::new();
    let pg = Private::start_tls(&ca, false);
    for mode in ["prefer", "require"] {
        let store = Postgres::open(&config(url(&pg, mode), None, None), WINDOW).await.unwrap();
        assert!(encrypted(&store).await, "{mode}");
    }
    let store = Postgres::open(&config(url(&pg, "disable"), None, None), WINDOW).await.unwrap();
    assert!(!encrypted(&store).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_tls_is_refused_by_require_and_used_by_prefer_and_disable() {
    let ca = TestCa::new();
    let pg = Private::start();
    for (mode, with_ca) in [("require", None), ("verify-full", Some(&ca))] {
        let e = refused(&config(url(&pg, mode), with_ca, None)).await;
        assert!(e.contains(&format!("127.0.0.1:{}", pg.port)), "{mode}: {e}");
        assert!(
            e.contains("server does not support TLS") && e.contains("`ssl = off`"),
            "{mode}: {e}"
        );
    }
    for mode in ["prefer", "disable"] {
        let store = Postgres::open(&config(url(&pg, mode), None, None), WINDOW).await.unwrap();
        assert!(!encrypted(&store).await, "{mode}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_requires_a_client_certificate_gets_one() {
    let ca = TestCa::new();
    let pg = Private::start_tls(&ca, true);
    let store = Postgres::open(&config(url(&pg, "verify-full"), Some(&ca), Some(&ca)), WINDOW)
        .await
        .unwrap();
    assert!(encrypted(&store).await);
    let c = store.pool().get().await.unwrap();
    let presented: bool = c
        .query_one("SELECT client_dn IS NOT NULL FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(presented);
    let e = refused(&config(url(&pg, "verify-full"), Some(&ca), None)).await;
    assert!(e.contains("`relay.store.cert_file`"), "{e}");
}

/// The keys are checked against the URL's `sslmode` when the configuration
/// loads, each problem at its key.
#[test]
fn tls_keys_are_checked_against_the_sslmode_when_the_configuration_loads() {
    let ca = TestCa::new();
    let (cert, key) = ca.client_cert();
    let dir = tempfile::tempdir().unwrap();
    let check = |store: &str| {
        let path = dir.path().join("lookout.yaml");
        std::fs::write(&path, format!("probe_files: []\nrelay:\n  store:\n{store}")).unwrap();
        let out = support::lookout().args(["config", "check", "-c"]).arg(&path).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!err.contains(PASSWORD), "{err}");
        (out.status.code(), err)
    };
    let ok = check(&format!(
        "    url: postgres://u:{PASSWORD}@db.example/x?sslmode=verify-full\n    ca_file: {}\n    cert_file: {}\n    key_file: {}\n",
        ca.ca.display(),
        cert.display(),
        key.display()
    ));
    assert_eq!(ok.0, Some(0), "{}", ok.1);
    for (store, field, says) in [
        (
            format!("    url: postgres://u:{PASSWORD}@db.example/x?sslmode=verify-full\n"),
            "relay.store.ca_file",
            "required by `sslmode=verify-full`",
        ),
        (
            format!(
                "    url: postgres://u:{PASSWORD}@db.example/x?sslmode=disable\n    ca_file: {}\n",
                ca.ca.display()
            ),
            "relay.store.ca_file",
            "applies to TLS only",
        ),
        (
            format!("    url: postgres://u:{PASSWORD}@db.example/x?sslmode=verify_full\n"),
            "relay.store.url",
            "unknown `sslmode=verify_full`",
        ),
        (
            format!("    url: postgres://u:{PASSWORD}@db.example/x?sslrootcert=/ca.pem\n"),
            "relay.store.url",
            "`relay.store.ca_file`",
        ),
        (
            format!("    url: postgres://u:{PASSWORD}@db.example/x\n    cert_file: {}\n", cert.display()),
            "relay.store.cert_file",
            "needs `key_file`",
        ),
        (
            format!("    url: postgres://u:{PASSWORD}@db.example/x\n    ca_file: {}\n", key.display()),
            "relay.store.ca_file",
            "no PEM certificate",
        ),
    ] {
        let (code, err) = check(&store);
        assert_eq!(code, Some(78), "{store}: {err}");
        assert!(err.contains(field) && err.contains(says), "{store}: {err}");
    }
}

#[test]
fn a_replica_started_before_its_store_probes_meanwhile_and_takes_webhooks_once_it_opens() {
    let ca = TestCa::new();
    let pg = Private::start_tls(&ca, false);
    pg.down();
    let redis = Redis::start(&[]);
    let saas = SaaS::start();
    let mut d = Daemon::start(&format!(
        "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\nprobes:\n  - name: redis\n    kind: redis\n    url: redis://127.0.0.1:{}\n    every: 1s\nrelay:\n  store:\n    url: {}\n    ca_file: {}\n    replica: early\n  destinations:\n    - name: chain\n      type: webhook\n      url: {}\n",
        redis.port,
        url(&pg, "verify-full"),
        ca.ca.display(),
        saas.url("/hook")
    ));
    // The probes do not wait for the store.
    wait_for("the first round of probes", Duration::from_secs(20), || {
        http_get(d.port, "/-/ready").filter(|(s, _)| *s == 200)
    });
    let (status, body) = http_get(d.port, "/-/ready/relay").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not open yet") && !body.contains(PASSWORD), "{body}");
    let group = "{}:{alertname=\"EarlyBird\"}";
    let payload = am_payload(group, "firing", &[("EarlyBird", "i1", "firing")]);
    let answer = http_post(d.port, "/webhook", payload.as_bytes(), &[]).map(|(s, _)| s);
    assert_eq!(answer, Some(503));

    pg.up();
    // Tried again with backoff (1 s doubling, at most 30 s apart).
    wait_for("the store to open", Duration::from_secs(60), || {
        http_get(d.port, "/-/ready/relay").filter(|(s, _)| *s == 200)
    });
    let answer = http_post(d.port, "/webhook", payload.as_bytes(), &[]).map(|(s, _)| s);
    assert_eq!(answer, Some(200));
    wait_for("the delivery", Duration::from_secs(20), || {
        (!saas.received_on("/hook").is_empty()).then_some(())
    });
    let logs = d.logs();
    assert!(
        logs.contains("Relay store unavailable at start") && logs.contains("Relay store open"),
        "{logs}"
    );
    assert!(!logs.contains(PASSWORD), "{logs}");
    assert!(d.proc.exited().is_none(), "{logs}");
}
