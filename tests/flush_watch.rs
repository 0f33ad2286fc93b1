//! `lookout redis flush --watch`: after the flush, the hit rate of each
//! interval while a client refills the cache, and `lookout verify --after
//! flush` when the configuration names the Redis; both in the record.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::{Redis, lookout};

const KEYS: usize = 500;

/// A cache-aside client: GET each key, SET it on a miss, round and round.
fn client(url: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
        while !stop.load(Ordering::SeqCst) {
            for i in 0..KEYS {
                let k = format!("page:{i}");
                let v: Option<String> = redis::cmd("GET").arg(&k).query(&mut conn).unwrap();
                if v.is_none() {
                    let _: () = redis::cmd("SET").arg(&k).arg("x").query(&mut conn).unwrap();
                }
            }
        }
    })
}

#[test]
fn the_watch_follows_the_recovery_and_the_record_keeps_it() {
    let redis = Redis::start(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = client(redis.url(), stop.clone());
    support::wait_for("a warm cache", Duration::from_secs(10), || {
        (redis.info_field("keyspace_hits").unwrap_or(0.0) > 5.0 * KEYS as f64).then_some(())
    });
    let dir = tempfile::tempdir().unwrap();

    // With --url: the watch, and verify said not to have run.
    let record = dir.path().join("url.md");
    let out = lookout()
        .args([
            "redis",
            "flush",
            "--url",
            &redis.url(),
            "--match",
            "page:*",
            "--execute",
            "--yes",
            "--no-snapshot",
        ])
        .args(["--watch", "3s", "--record"])
        .arg(&record)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("watch: the hit rate every 1s for 3s"), "{stderr}");
    assert!(stderr.matches("watch: +").count() >= 2, "{stderr}");
    assert!(
        stdout.contains("hit rate recovered"),
        "a client refilling 500 keys recovers within a second: {stdout}{stderr}"
    );
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(
        text.contains("## Hit rate after the flush") && text.contains("| after | hit rate in the interval | lookups |"),
        "{text}"
    );
    assert!(text.contains("verify: not run"), "{text}");

    // With the configuration: verify runs after the watch and its Markdown
    // joins the record.
    let cfg = dir.path().join("lookout.yaml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir: {}\nprobe_files: []\nprobes:\n  - name: cache\n    kind: redis\n    url: {}\n",
            dir.path().join("data").display(),
            redis.url()
        ),
    )
    .unwrap();
    let record = dir.path().join("cfg.md");
    let out = lookout()
        .args([
            "redis",
            "flush",
            "--match",
            "page:*",
            "--execute",
            "--yes",
            "--no-snapshot",
            "--watch",
            "2s",
            "-c",
        ])
        .arg(&cfg)
        .arg("--record")
        .arg(&record)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    // No Prometheus and nothing to cross-check: those parts are skipped,
    // and the verdict is the probes'.
    assert!(
        stdout.contains("Verify PASSED after a flush"),
        "the rules skipped without Prometheus: {stdout}"
    );
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(
        text.contains("## Verify PASSED after a flush")
            && text.contains("| ✔ | probes | `cache` |")
            && text.contains("| – | rules | `rules` | no Prometheus configured"),
        "{text}"
    );

    stop.store(true, Ordering::SeqCst);
    traffic.join().unwrap();
}

/// On a terminal (a pty made by util-linux `script`) the progress is an
/// indicatif bar; off a terminal it stays plain lines (tests/flush.rs).
#[test]
fn a_terminal_gets_a_progress_bar() {
    let redis = Redis::start(&[]);
    let mut conn = redis::Client::open(redis.url()).unwrap().get_connection().unwrap();
    let mut pipe = redis::pipe();
    for i in 0..3000 {
        pipe.cmd("SET").arg(format!("bar:{i}")).arg("x").ignore();
    }
    let _: () = pipe.query(&mut conn).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let command = format!(
        "{} redis flush --url {} --match 'bar:*' --execute --yes --no-snapshot --rate 2000/s --record {}",
        env!("CARGO_BIN_EXE_lookout"),
        redis.url(),
        dir.path().join("record.md").display()
    );
    let out = std::process::Command::new(support::require("script"))
        .args(["-qec", &command, "/dev/null"])
        .env_remove("LOOKOUT_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("flush [") && text.contains("keys/s, ETA"), "no bar drawn: {text:?}");
    assert!(text.contains("3000/3000 keys"), "the bar ends full: {text:?}");
    assert!(!text.contains("flush: 0/3000 keys deleted"), "plain lines on a terminal: {text:?}");
}
