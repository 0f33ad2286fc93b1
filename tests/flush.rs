//! `lookout redis flush` against a real redis-server per test: the dry run
//! deletes nothing, `--execute` deletes exactly the matching keys, the
//! snapshot really happens (and a failed one stops everything), the rate cap
//! holds, the record has the numbers, and Ctrl-C stops with 130 and a re-run
//! finishes.

mod support;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{Redis, lookout, send_signal, wait_for};

/// A Redis with `DEBUG POPULATE` allowed, holding `matching` keys `p:N` and
/// `other` keys `q:N`.
fn populated(matching: u64, other: u64, extra: &[&str]) -> Redis {
    let mut args = vec!["--enable-debug-command", "yes"];
    args.extend_from_slice(extra);
    let r = Redis::start(&args);
    for (n, prefix) in [(matching, "p"), (other, "q")] {
        if n > 0 {
            let out = r.cli(&["DEBUG", "POPULATE", &n.to_string(), prefix, "16"]);
            assert!(out.contains("OK"), "DEBUG POPULATE: {out}");
        }
    }
    assert_eq!(dbsize(&r), matching + other);
    r
}

fn dbsize(r: &Redis) -> u64 {
    r.cli(&["DBSIZE"]).trim().parse().expect("DBSIZE is a number")
}

/// Keys matching `pattern`, counted with SCAN through redis-cli.
fn count(r: &Redis, pattern: &str) -> u64 {
    r.cli(&["--scan", "--pattern", pattern]).lines().filter(|l| !l.is_empty()).count() as u64
}

fn flush(r: &Redis, args: &[&str]) -> Command {
    let mut c = lookout();
    c.args(["redis", "flush", "--url", &r.url()]).args(args).stdin(Stdio::null());
    c
}

fn run(mut c: Command) -> (Output, String) {
    let out = c.output().expect("lookout runs");
    let text = describe(&out);
    (out, text)
}

/// Exit status, stdout and stderr, for assertions' messages and matching.
fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn dry_run_counts_and_deletes_nothing() {
    let r = populated(5_000, 5_000, &[]);
    let (out, text) = run(flush(&r, &["--match", "p:*"]));
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("5000 of 10000 keys match `p:*`"), "{text}");
    assert!(text.contains("dry run: nothing deleted"), "{text}");
    assert!(text.contains("MEMORY USAGE of 200 keys"), "{text}");
    assert!(text.contains("  p:"), "a sample of keys: {text}");
    assert!(!text.contains("no configuration file"), "--url needs no configuration: {text}");
    assert_eq!(dbsize(&r), 10_000);
}

#[test]
fn without_url_the_configured_probe_and_redis_env_name_the_redis() {
    let r = populated(300, 700, &[]);
    let dir = tempfile::tempdir().unwrap();
    let mut c = lookout();
    c.args(["redis", "flush", "--match", "q:*", "--db", "0"])
        .env("REDIS_PORT", r.port.to_string())
        .current_dir(dir.path())
        .stdin(Stdio::null());
    let (out, text) = run(c);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!("redis://127.0.0.1:{}/0: 700 of 1000 keys match `q:*`", r.port)),
        "{text}"
    );
}

#[test]
fn execute_without_a_terminal_needs_yes() {
    let r = populated(100, 100, &[]);
    let (out, text) = run(flush(&r, &["--match", "p:*", "--execute", "--no-snapshot"]));
    assert_eq!(out.status.code(), Some(64), "{text}");
    assert!(text.contains("--yes"), "{text}");
    assert_eq!(dbsize(&r), 200);
}

#[test]
fn execute_deletes_exactly_the_matching_keys_and_records_it() {
    let r = populated(5_000, 5_000, &["--requirepass", "s3cr3t-pw"]);
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("flush.md");
    let url = format!("redis://:s3cr3t-pw@127.0.0.1:{}", r.port);
    let mut c = lookout();
    c.args([
        "redis",
        "flush",
        "--url",
        &url,
        "--match",
        "p:*",
        "--execute",
        "--yes",
        "--no-snapshot",
    ])
    .args(["--rate", "unlimited", "--record"])
    .arg(&record)
    .stdin(Stdio::null());
    let (out, text) = run(c);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(count(&r, "p:*"), 0, "{text}");
    assert_eq!(count(&r, "q:*"), 5_000, "{text}");
    assert_eq!(dbsize(&r), 5_000);
    let md = std::fs::read_to_string(&record).expect("the record is written");
    assert!(text.contains(&format!("record: {}", record.display())), "{text}");
    for want in [
        "# Redis controlled flush: done",
        "| keys matched | 5000 of 10000 in the database |",
        "| keys deleted | 5000 |",
        "| pattern | `p:*` |",
        "| snapshot | skipped (--no-snapshot) |",
        "latency during the flush | p50 ",
        "hit rate before",
    ] {
        assert!(md.contains(want), "record lacks `{want}`:\n{md}");
    }
    assert!(
        !text.contains("s3cr3t-pw") && !md.contains("s3cr3t-pw"),
        "password leaked:\n{text}\n{md}"
    );
}

#[test]
fn snapshot_is_taken_before_deleting() {
    let r = populated(1_000, 1_000, &[]);
    let before: i64 = r.cli(&["LASTSAVE"]).trim().parse().unwrap();
    // LASTSAVE has one-second resolution: start in a later second than the last save.
    wait_for("the clock to pass LASTSAVE", Duration::from_secs(3), || {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?;
        (now.as_secs() as i64 > before).then_some(())
    });
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("flush.md");
    let mut c = flush(&r, &["--match", "p:*", "--execute", "--yes", "--record"]);
    c.arg(&record);
    let (out, text) = run(c);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let after: i64 = r.cli(&["LASTSAVE"]).trim().parse().unwrap();
    assert!(after > before, "LASTSAVE moved: {before} → {after}\n{text}");
    assert!(r.dir.path().join("dump.rdb").is_file(), "the RDB file is in Redis's dir");
    assert_eq!(count(&r, "p:*"), 0, "{text}");
    let md = std::fs::read_to_string(&record).unwrap();
    assert!(md.contains("| snapshot | RDB (BGSAVE) completed at "), "{md}");
}

#[test]
fn a_failed_snapshot_deletes_nothing() {
    // Redis's `dir` removed under it: BGSAVE's child cannot create its file
    // (a read-only directory would not do: the tests may run as root).
    let gone = tempfile::tempdir().unwrap();
    let gone_path = gone.path().to_path_buf();
    let r = populated(1_000, 1_000, &["--dir", &gone_path.display().to_string()]);
    drop(gone);
    assert!(!gone_path.exists());
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("flush.md");
    let mut c = flush(
        &r,
        &["--match", "p:*", "--execute", "--yes", "--snapshot-timeout", "20s", "--record"],
    );
    c.arg(&record);
    let (out, text) = run(c);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("snapshot failed"), "{text}");
    assert!(text.contains("--no-snapshot"), "{text}");
    assert_eq!(dbsize(&r), 2_000, "nothing deleted");
    assert!(!record.exists(), "no record of a flush that did not happen");
}

#[test]
fn the_rate_cap_holds() {
    let r = populated(2_000, 500, &[]);
    let dir = tempfile::tempdir().unwrap();
    let mut c = flush(&r, &["--match", "p:*", "--execute", "--yes", "--no-snapshot", "--rate", "1000/s"]);
    c.current_dir(dir.path());
    let t0 = Instant::now();
    let (out, text) = run(c);
    let took = t0.elapsed();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(count(&r, "p:*"), 0, "{text}");
    assert_eq!(dbsize(&r), 500);
    assert!(took >= Duration::from_millis(1_800), "2000 keys at 1000/s took {took:?}\n{text}");
    assert!(text.contains("keys/s"), "progress lines: {text}");
}

#[test]
fn sigint_stops_with_130_and_a_rerun_finishes() {
    let r = populated(5_000, 1_000, &[]);
    let dir = tempfile::tempdir().unwrap();
    let mut c = flush(&r, &["--match", "p:*", "--execute", "--yes", "--no-snapshot", "--rate", "1000/s"]);
    c.current_dir(dir.path()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c.spawn().expect("lookout starts");
    wait_for("some keys deleted", Duration::from_secs(20), || {
        (count(&r, "p:*") < 4_500).then_some(())
    });
    send_signal(child.id(), libc::SIGINT);
    let out = child.wait_with_output().expect("lookout exits");
    let text = describe(&out);
    assert_eq!(out.status.code(), Some(130), "{text}");
    assert!(text.contains("interrupted after"), "{text}");
    let left = count(&r, "p:*");
    assert!(left > 0 && left < 5_000, "stopped part way: {left} left\n{text}");
    let records: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert_eq!(records.len(), 1, "one record in the working directory");
    let md = std::fs::read_to_string(records[0].path()).unwrap();
    assert!(md.contains("# Redis controlled flush: interrupted"), "{md}");

    let mut again = flush(
        &r,
        &["--match", "p:*", "--execute", "--yes", "--no-snapshot", "--rate", "unlimited"],
    );
    again.arg("--record").arg(dir.path().join("again.md"));
    let (out, text) = run(again);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(&format!("{left} of")), "the re-run finds what was left: {text}");
    assert_eq!(count(&r, "p:*"), 0);
    assert_eq!(dbsize(&r), 1_000);
}

/// Above `REMEMBER_KEYS` the command deletes without the survey's keys:
/// SCAN pipelined with UNLINK, the same loop, driven here directly.
#[tokio::test]
async fn without_the_surveyed_keys_execute_scans_for_them() {
    use lookout::runbook::flush::{self, Plan, Rate};
    let r = populated(3_000, 3_000, &[]);
    let client = redis::Client::open(r.url()).expect("a valid URL");
    let mut conn = flush::connect(&client, "test", Duration::from_secs(5)).await.expect("connects");
    let guard = flush::connect(&client, "test", Duration::from_secs(5)).await.expect("connects");
    let plan = Plan {
        pattern: "p:*".into(),
        scan_count: 100,
        rate: Rate::Unlimited,
        max_latency: Duration::from_secs(1),
        expected: 3_000,
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut ticks = 0;
    let out = flush::execute(&mut conn, guard, &plan, None, &stop, |_| ticks += 1).await;
    assert!(out.stopped.is_none(), "{:?}", out.stopped);
    assert_eq!(out.deleted, 3_000);
    assert!(ticks > 1, "progress after each batch");
    assert_eq!(count(&r, "p:*"), 0);
    assert_eq!(dbsize(&r), 3_000);
}

#[test]
fn the_latency_guard_pauses_while_redis_is_slow() {
    let r = populated(3_000, 100, &[]);
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("flush.md");
    let mut c = flush(
        &r,
        &[
            "--match",
            "p:*",
            "--execute",
            "--yes",
            "--no-snapshot",
            "--rate",
            "2000/s",
            "--record",
        ],
    );
    c.arg(&record).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c.spawn().expect("lookout starts");
    wait_for("some keys deleted", Duration::from_secs(20), || {
        (count(&r, "p:*") < 2_800).then_some(())
    });
    // Redis busy for 1.5 s: the guard's PING goes unanswered for longer
    // than its 1 s limit, and the round trip after it is still slow.
    r.cli(&["DEBUG", "SLEEP", "1.5"]);
    let out = child.wait_with_output().expect("lookout exits");
    let text = describe(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("flush: paused: round trip"), "{text}");
    assert_eq!(count(&r, "p:*"), 0, "{text}");
    let md = std::fs::read_to_string(&record).unwrap();
    let pauses = md
        .lines()
        .find_map(|l| l.strip_prefix("| latency pauses | "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse::<u32>().ok());
    assert!(pauses.is_some_and(|n| n >= 1), "{md}");
}

/// A configuration whose relay has a Slack destination and a webhook one,
/// both on the stand-in, with retries short enough for a test.
fn notify_config(dir: &std::path::Path, saas: &support::saas::SaaS, smtp: &support::saas::SmtpSink) -> std::path::PathBuf {
    let path = dir.join("lookout.yaml");
    let yaml = format!(
        "data_dir: {}\nprobe_files: []\nrelay:\n  destinations:\n    - name: slack\n      type: slack\n      webhook_url: {}\n    - name: chain\n      type: webhook\n      url: {}\n      timeout: 2s\n    - name: mail\n      type: email\n      host: 127.0.0.1\n      port: {}\n      tls: none\n      from: lookout@example.org\n      to: [change@example.org]\n",
        dir.join("data").display(),
        saas.url("/slack/webhook"),
        saas.url("/hook"),
        smtp.port,
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

fn notify_flush(r: &Redis, config: &std::path::Path, record: &std::path::Path, notify: &[&str]) -> Command {
    let mut c = flush(r, &["--match", "p:*", "--execute", "--yes", "--no-snapshot", "--rate", "unlimited"]);
    c.arg("--record").arg(record).arg("-c").arg(config);
    for n in notify {
        c.args(["--notify", n]);
    }
    c
}

#[test]
fn notify_sends_the_record_through_the_relay_destinations() {
    let r = populated(300, 200, &[]);
    let saas = support::saas::SaaS::start();
    let smtp = support::saas::SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let config = notify_config(dir.path(), &saas, &smtp);
    let record = dir.path().join("flush.md");
    let (out, text) = run(notify_flush(&r, &config, &record, &["slack", "chain", "mail"]));
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(count(&r, "p:*"), 0, "{text}");
    assert!(text.contains("notify: the record was sent to `slack` (slack)"), "{text}");
    assert!(text.contains("notify: the record was sent to `chain` (webhook)"), "{text}");
    let md = std::fs::read_to_string(&record).expect("the record is written");
    let title = format!("Redis controlled flush on redis://127.0.0.1:{}: 300 keys deleted", r.port);

    let slack = &saas.received_on("/slack/webhook")[0].body;
    let att = &slack["attachments"][0];
    assert_eq!(att["color"], "good", "informational, not an alert: {slack}");
    assert!(att["title"].as_str().unwrap_or_default().contains(&title), "{slack}");
    assert!(
        att["text"].as_str().unwrap_or_default().contains("| keys matched | 300 of 500"),
        "{slack}"
    );

    let hook = &saas.received_on("/hook")[0].body;
    assert_eq!(hook["status"], "resolved", "{hook}");
    assert_eq!(hook["commonLabels"]["severity"], "info", "{hook}");
    assert_eq!(hook["commonLabels"]["alertname"], title.as_str(), "{hook}");
    assert_eq!(hook["alerts"][0]["annotations"]["summary"], md.as_str(), "the record whole: {hook}");

    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{text}");
    assert_eq!(mails[0].to, ["<change@example.org>"]);
    assert!(mails[0].data.contains("Redis controlled flush on"), "{}", mails[0].data);
    assert!(mails[0].data.contains("keys matched"), "the record in the body: {}", mails[0].data);
}

#[test]
fn an_unknown_notify_destination_is_refused_before_anything_is_deleted() {
    let r = populated(100, 100, &[]);
    let saas = support::saas::SaaS::start();
    let smtp = support::saas::SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let config = notify_config(dir.path(), &saas, &smtp);
    let record = dir.path().join("flush.md");
    let (out, text) = run(notify_flush(&r, &config, &record, &["slack", "pagr"]));
    assert_eq!(out.status.code(), Some(64), "{text}");
    assert!(
        text.contains("no destination named `pagr` (configured: slack, chain, mail)"),
        "{text}"
    );
    assert_eq!(dbsize(&r), 200, "nothing deleted: {text}");
    assert!(!record.exists(), "no record without a flush");
    assert!(saas.received().is_empty());
}

#[test]
fn a_failed_notify_is_reported_after_the_flush_and_its_record() {
    let r = populated(100, 100, &[]);
    let saas = support::saas::SaaS::start();
    saas.script_on("/hook", &[support::saas::Answer::Status(500, "down")]);
    let smtp = support::saas::SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let config = notify_config(dir.path(), &saas, &smtp);
    let record = dir.path().join("flush.md");
    let (out, text) = run(notify_flush(&r, &config, &record, &["chain", "slack"]));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(count(&r, "p:*"), 0, "the flush happened: {text}");
    assert!(text.contains("done: 100 keys deleted"), "the result is shown: {text}");
    assert!(text.contains("sending the record to `chain` failed"), "{text}");
    assert!(
        text.contains("notify: the record was sent to `slack`"),
        "the others still go: {text}"
    );
    assert!(text.contains("a notification failed"), "{text}");
    assert!(std::fs::read_to_string(&record).unwrap().contains("# Redis controlled flush: done"));
}

/// The masters of `c` (indexes into its nodes) with the slot ranges each serves.
fn masters_of(c: &support::topology::Cluster) -> Vec<(usize, Vec<(u32, u32)>)> {
    let nodes = c.nodes[0].cli(&["CLUSTER", "NODES"]);
    let mut out = Vec::new();
    for line in nodes.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 9 || !f[2].contains("master") {
            continue;
        }
        let port: u16 = f[1].split(['@', ':']).nth(1).and_then(|p| p.parse().ok()).expect("host:port@cport");
        let index = c.nodes.iter().position(|n| n.port == port).expect("a node of the cluster");
        let slots = f[8..]
            .iter()
            .filter_map(|r| match r.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => r.parse().ok().map(|s| (s, s)),
            })
            .collect();
        out.push((index, slots));
    }
    out
}

/// Writes `n` keys `PREFIX:N` in one MSET (one slot when PREFIX has a hash tag).
fn mset(node: &Redis, prefix: &str, n: usize) {
    let mut args = vec!["MSET".to_string()];
    for i in 0..n {
        args.push(format!("{prefix}:{i}"));
        args.push("v".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(node.cli(&args).contains("OK"));
}

/// Writes `matching` keys `p:{tag}:N` and `other` keys `q:{tag}:N` on every
/// master, each master's under a hash tag of a slot it serves.
fn populate_cluster(c: &support::topology::Cluster, matching: usize, other: usize) -> Vec<usize> {
    let masters = masters_of(c);
    for (index, slots) in &masters {
        let node = &c.nodes[*index];
        let tag = (0..)
            .map(|t| format!("t{t}"))
            .find(|t| {
                let slot: u32 = node.cli(&["CLUSTER", "KEYSLOT", &format!("{{{t}}}")]).trim().parse().unwrap();
                slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
            })
            .unwrap();
        mset(node, &format!("p:{{{tag}}}"), matching);
        mset(node, &format!("q:{{{tag}}}"), other);
        assert_eq!(dbsize(node), (matching + other) as u64);
    }
    masters.into_iter().map(|(i, _)| i).collect()
}

#[test]
fn a_cluster_is_flushed_on_every_master_with_counts_per_node() {
    let c = support::topology::Cluster::start(3, 2000);
    let masters = populate_cluster(&c, 200, 100);
    assert_eq!(masters.len(), 3);
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("flush.md");
    // One seed, a replica: the masters are learnt from the cluster.
    let replica = c
        .nodes
        .iter()
        .position(|n| n.cli(&["ROLE"]).starts_with("slave"))
        .expect("a replica");
    let seed = format!("127.0.0.1:{}", c.nodes[replica].port);

    // The dry run through a configured `redis_cluster` probe, the flush by --cluster.
    let config = dir.path().join("lookout.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: {}\nprobe_files: []\nprobes:\n  - {{name: shards, kind: redis_cluster, nodes: [{seed}]}}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut dry = lookout();
    dry.args(["redis", "flush", "--probe", "shards", "--match", "p:*", "-c"])
        .arg(&config)
        .stdin(Stdio::null());
    let (out, text) = run(dry);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("600 of 900 keys match `p:*`"), "{text}");
    for m in &masters {
        assert!(
            text.contains(&format!("127.0.0.1:{}: 200 of 300 keys match", c.nodes[*m].port)),
            "{text}"
        );
    }

    let mut c2 = lookout();
    c2.args([
        "redis",
        "flush",
        "--cluster",
        &seed,
        "--match",
        "p:*",
        "--execute",
        "--yes",
        "--no-snapshot",
    ])
    .args(["--rate", "unlimited", "--record"])
    .arg(&record)
    .stdin(Stdio::null());
    let (out, text) = run(c2);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("done: 600 keys deleted"), "{text}");
    let md = std::fs::read_to_string(&record).expect("the record is written");
    assert!(md.contains("| keys deleted | 600 |"), "{md}");
    assert!(md.contains("## Per master"), "{md}");
    for m in &masters {
        let node = &c.nodes[*m];
        assert_eq!(count(node, "p:*"), 0, "{text}");
        assert_eq!(count(node, "q:*"), 100, "{text}");
        assert!(
            md.contains(&format!("| redis://127.0.0.1:{}/ | 200 of 300 | 200 |", node.port))
                || md.contains(&format!("| redis://127.0.0.1:{} | 200 of 300 | 200 |", node.port)),
            "{md}"
        );
    }
}

#[test]
fn through_sentinels_the_master_they_name_is_flushed() {
    use support::topology::{MASTER_NAME, SentinelSetup};
    let s = SentinelSetup::start(1, 1, 5000);
    mset(&s.master, "p", 300);
    mset(&s.master, "q", 100);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lookout.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: {}\nprobe_files: []\nprobes:\n  - {{name: ha, kind: redis_sentinel, sentinels: {}, master_name: {MASTER_NAME}}}\n",
            dir.path().join("data").display(),
            s.sentinel_list()
        ),
    )
    .unwrap();
    let record = dir.path().join("flush.md");
    let mut c = lookout();
    c.args([
        "redis",
        "flush",
        "--probe",
        "ha",
        "--match",
        "p:*",
        "--execute",
        "--yes",
        "--no-snapshot",
        "-c",
    ])
    .arg(&config)
    .arg("--record")
    .arg(&record)
    .stdin(Stdio::null());
    let (out, text) = run(c);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!("the master of `{MASTER_NAME}` is redis://127.0.0.1:{}", s.master.port)),
        "{text}"
    );
    assert!(text.contains("done: 300 keys deleted"), "{text}");
    assert_eq!(count(&s.master, "p:*"), 0, "{text}");
    assert_eq!(count(&s.master, "q:*"), 100, "{text}");
    let md = std::fs::read_to_string(&record).expect("the record is written");
    assert!(md.contains(&format!("on redis://127.0.0.1:{}", s.master.port)), "{md}");
}
