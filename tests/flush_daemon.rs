//! The controlled flush run by the daemon (`POST /api/v1/redis/flushes`)
//! against a real redis-server: requests checked whole, one flush at a
//! time per probe, progress on `/metrics` and on the API, a stop after the
//! batch in flight (by `DELETE`, and by the daemon's shutdown), the record
//! in the history and on the status page, and `lookout redis flush
//! --daemon` following one to the end. A flush's row is in the history
//! from its start: a daemon killed mid-flush leaves one that the next
//! daemon turns `interrupted`. One flush at a time is per Redis, whichever
//! probe (or probe kind) names it.

mod support;

use std::time::Duration;

use support::{Daemon, Redis, http_get, http_post, http_request, lookout, send_signal, wait_for};

/// A Redis holding `matching` keys `p:N` and `other` keys `q:N`.
fn populated(matching: u64, other: u64) -> Redis {
    let r = Redis::start(&["--enable-debug-command", "yes"]);
    for (n, prefix) in [(matching, "p"), (other, "q")] {
        let out = r.cli(&["DEBUG", "POPULATE", &n.to_string(), prefix, "16"]);
        assert!(out.contains("OK"), "DEBUG POPULATE: {out}");
    }
    r
}

/// The keys matching `pattern`, each once: SCAN may return a key twice
/// while Redis rehashes (as it shrinks its table after a big flush).
fn count(r: &Redis, pattern: &str) -> u64 {
    let out = r.cli(&["--scan", "--pattern", pattern]);
    out.lines()
        .filter(|l| !l.is_empty())
        .collect::<std::collections::HashSet<_>>()
        .len() as u64
}

fn config(redis: &Redis, admin: bool) -> String {
    format!(
        "server:\n  listen: {{listen}}\n  enable_admin_api: {admin}\ndata_dir: {{data_dir}}\nprobe_files: []\nprobes:\n  - name: cache\n    kind: redis\n    url: {}\n    every: 5s\n",
        redis.url()
    )
}

/// `lookout redis flush --match 'p:*' --execute --yes EXTRA… --daemon URL`:
/// the command line asking `d` to flush.
fn flush_command(d: &Daemon, extra: &[&str]) -> std::process::Command {
    let mut c = lookout();
    c.args(["redis", "flush", "--match", "p:*", "--execute", "--yes"])
        .args(extra)
        .arg("--daemon")
        .arg(format!("http://127.0.0.1:{}", d.port));
    c
}

fn post(d: &Daemon, body: &str) -> (u16, serde_json::Value) {
    let (status, text) = http_post(d.port, "/api/v1/redis/flushes", body.as_bytes(), &[]).expect("the daemon answers");
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

fn get(d: &Daemon, path: &str) -> serde_json::Value {
    let (status, text) = http_get(d.port, path).expect("the daemon answers");
    assert_eq!(status, 200, "{path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Polls the flush `id` until its state is `state`.
fn until_state(d: &Daemon, id: &str, state: &str) -> serde_json::Value {
    wait_for(&format!("flush {id} to be {state}"), Duration::from_secs(30), || {
        let p = get(d, &format!("/api/v1/redis/flushes/{id}"));
        (p["state"] == state).then_some(p)
    })
}

#[test]
fn the_daemon_runs_a_flush_exports_its_progress_and_keeps_its_record() {
    let redis = populated(20_000, 1_000);
    let mut d = Daemon::start(&config(&redis, true));

    // Malformed requests: 4xx with the reason, nothing started.
    let (status, v) = post(&d, r#"{"match": "p:*", "exectue": true}"#);
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("unknown field `exectue`"), "{v}");
    let (status, v) = post(&d, r#"{"match": "p:*", "probe": "nope"}"#);
    assert!(
        status == 400 && v["error"].as_str().unwrap().contains("no probe named `nope`"),
        "{v}"
    );
    let (status, v) = post(&d, r#"{"match": "p:*", "rate": "fast"}"#);
    assert!(status == 400 && v["error"].as_str().unwrap().contains("`rate`"), "{v}");
    let (status, _) = post(&d, "not json");
    assert_eq!(status, 400);
    let (status, _) = http_request(d.port, "POST", "/api/v1/redis/flushes", r#"{"match": "p:*"}"#).unwrap();
    assert_eq!(status, 415, "a body that does not say it is JSON");
    let (status, _) = http_post(
        d.port,
        "/api/v1/redis/flushes",
        br#"{"match": "p:*"}"#,
        &[("Origin", "http://elsewhere.example")],
    )
    .unwrap();
    assert_eq!(status, 403, "another site's page cannot start a flush");

    // A dry run counts and deletes nothing.
    let (status, v) = post(&d, r#"{"match": "p:*"}"#);
    assert_eq!(status, 202, "{v}");
    let dry = until_state(&d, v["id"].as_str().unwrap(), "dry_run");
    assert_eq!(dry["matched"], 20_000, "{dry}");
    assert!(
        dry["record"].as_str().unwrap().contains("# Redis controlled flush: dry run"),
        "{dry}"
    );
    assert_eq!(count(&redis, "p:*"), 20_000);
    assert_eq!(d.metric("lookout_flush_keys_matched", &[("probe", "cache")]), Some(20_000.0));

    // A slow flush: running on /metrics, a second one refused with 409.
    let (status, v) = post(&d, r#"{"match": "p:*", "execute": true, "rate": "2000/s", "snapshot": false}"#);
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (status, busy) = post(&d, r#"{"match": "q:*", "execute": true}"#);
    assert_eq!(status, 409, "{busy}");
    assert_eq!(busy["running"], id.as_str());
    wait_for("deletions on /metrics", Duration::from_secs(10), || {
        let running = d.metric("lookout_flush_running", &[("probe", "cache")]) == Some(1.0);
        let deleted = d.metric("lookout_flush_keys_deleted_total", &[("probe", "cache")]).unwrap_or(0.0);
        (running && deleted > 0.0).then_some(())
    });
    let p = get(&d, &format!("/api/v1/redis/flushes/{id}"));
    assert!(p["state"] == "deleting" && p["deleted"].as_u64().unwrap() > 0, "{p}");

    // DELETE stops it after the batch in flight; the record says so.
    let (status, _) = http_request(d.port, "DELETE", &format!("/api/v1/redis/flushes/{id}"), "").unwrap();
    assert_eq!(status, 202);
    let stopped = until_state(&d, &id, "interrupted");
    let record = stopped["record"].as_str().unwrap();
    assert!(
        record.contains("# Redis controlled flush: interrupted") && record.contains("stopped on request"),
        "{record}"
    );
    let left = count(&redis, "p:*");
    assert!(left > 0 && left < 20_000, "{left} keys left");
    assert_eq!(stopped["deleted"].as_u64().unwrap(), 20_000 - left, "{stopped}");
    assert_eq!(d.metric("lookout_flush_running", &[("probe", "cache")]), Some(0.0));
    assert_eq!(
        d.metric("lookout_flush_runs_total", &[("probe", "cache"), ("outcome", "interrupted")]),
        Some(1.0)
    );

    // The command line asks the daemon for the rest, follows it, prints the record.
    let out = flush_command(&d, &["--no-snapshot", "--rate", "unlimited"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("# Redis controlled flush: done") && stdout.contains("Run by the lookout daemon"),
        "{stdout}"
    );
    assert_eq!(count(&redis, "p:*"), 0);
    assert_eq!(count(&redis, "q:*"), 1_000, "only the pattern's keys");
    assert_eq!(
        d.metric("lookout_flush_keys_deleted_total", &[("probe", "cache")]),
        Some(20_000.0),
        "every key counted once across the two runs"
    );
    assert!(
        d.metric("lookout_flush_last_success_timestamp_seconds", &[("probe", "cache")])
            .is_some_and(|t| t > 0.0)
    );

    // Listed newest first, and a line each on the status page.
    let list = get(&d, "/api/v1/redis/flushes");
    let states: Vec<&str> = list.as_array().unwrap().iter().map(|f| f["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["done", "interrupted", "dry_run"], "{list}");
    assert!(list[0].get("record").is_none(), "the list leaves the records out");
    let (_, page) = http_get(d.port, "/").unwrap();
    assert_eq!(page.matches("<tr data-flush=").count(), 3, "{page}");

    // Held by the latency guard: paused on /metrics; the daemon's shutdown
    // stops it, and the history keeps the record.
    let (status, v) = post(&d, r#"{"match": "q:*", "execute": true, "max_latency": "1us", "snapshot": false}"#);
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    until_state(&d, &id, "paused");
    assert_eq!(d.metric("lookout_flush_paused", &[("probe", "cache")]), Some(1.0));
    send_signal(d.proc.pid(), libc::SIGTERM);
    wait_for("the daemon to exit", Duration::from_secs(15), || d.proc.exited());
    let data = d.dir.path().join("data");
    let stored = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(lookout::store::read_existing(&data, move |r| r.flushes(Some(&id), 1)))
        .unwrap()
        .unwrap();
    assert_eq!(stored.len(), 1, "the record is in the history");
    assert_eq!(stored[0].state, "interrupted");
    assert!(stored[0].record.contains("stopped on request"), "{}", stored[0].record);
    assert_eq!(
        count(&redis, "q:*"),
        1_000 - stored[0].deleted,
        "only the batch before the guard's first PING"
    );
}

#[test]
fn the_flush_api_is_off_unless_enabled() {
    let redis = populated(10, 0);
    let d = Daemon::start(&config(&redis, false));
    let (status, v) = post(&d, r#"{"match": "p:*", "execute": true}"#);
    assert_eq!(status, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("server.enable_admin_api"), "{v}");
    assert_eq!(count(&redis, "p:*"), 10);
    let out = flush_command(&d, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("HTTP 403") && stderr.contains("enable_admin_api"), "{stderr}");
}

/// The Redis password is in the probe's URL: it reaches none of the flush's
/// answers, records, metrics, status page or logs.
#[test]
fn the_redis_password_stays_out_of_everything_the_flush_shows() {
    const PASSWORD: &str = "s3cret-flush-pw";
    let redis = Redis::start(&["--requirepass", PASSWORD, "--enable-debug-command", "yes"]);
    assert!(redis.cli(&["DEBUG", "POPULATE", "500", "p", "16"]).contains("OK"));
    let url = redis.url().replacen("redis://", &format!("redis://:{PASSWORD}@"), 1);
    let d = Daemon::start(&format!(
        "server:\n  listen: {{listen}}\n  enable_admin_api: true\ndata_dir: {{data_dir}}\nprobe_files: []\nprobes:\n  - name: cache\n    kind: redis\n    url: {url}\n    every: 5s\n"
    ));
    let (status, v) = post(&d, r#"{"match": "p:*", "execute": true, "warm": ["http://127.0.0.1:1/?token=x"]}"#);
    assert_eq!(status, 202, "{v}");
    let done = wait_for("the flush to end", Duration::from_secs(30), || {
        let p = get(&d, &format!("/api/v1/redis/flushes/{}", v["id"].as_str().unwrap()));
        (p["finished"].is_number()).then_some(p)
    });
    assert_eq!(done["deleted"], 500, "{done}");
    assert!(done["target"].as_str().unwrap().contains("127.0.0.1"), "{done}");
    let (_, page) = http_get(d.port, "/").unwrap();
    let (_, list) = http_get(d.port, "/api/v1/redis/flushes").unwrap();
    for (what, text) in [
        ("the flush", done.to_string()),
        ("the list", list),
        ("the status page", page),
        ("/metrics", d.metrics()),
        ("the logs", d.logs()),
    ] {
        assert!(!text.contains(PASSWORD), "{what} shows the password:\n{text}");
    }
}

/// Ctrl-C on `lookout redis flush --daemon` asks the daemon to stop: the
/// flush ends after the batch in flight, the command exits 130 and prints
/// the record, which says it was stopped on request.
#[test]
fn ctrl_c_on_the_command_line_stops_the_daemons_flush() {
    let redis = populated(20_000, 0);
    let d = Daemon::start(&config(&redis, true));
    let child = flush_command(&d, &["--no-snapshot", "--rate", "2000/s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the daemon to delete", Duration::from_secs(10), || {
        d.metric("lookout_flush_keys_deleted_total", &[("probe", "cache")])
            .filter(|n| *n > 0.0)
    });
    send_signal(child.id(), libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stdout}{stderr}");
    assert!(stderr.contains("the daemon stops the flush after the batch in flight"), "{stderr}");
    assert!(
        stdout.contains("# Redis controlled flush: interrupted") && stdout.contains("stopped on request"),
        "{stdout}"
    );
    let left = count(&redis, "p:*");
    assert!(left > 0, "stopped before the end");
    assert_eq!(d.metric("lookout_flush_running", &[("probe", "cache")]), Some(0.0));
    let list = get(&d, "/api/v1/redis/flushes");
    assert_eq!(list[0]["state"], "interrupted", "{list}");
    assert_eq!(list[0]["deleted"].as_u64().unwrap(), 20_000 - left, "{list}");
}

/// The flush `id` as the history under `data` keeps it (read beside the
/// daemon, as `lookout report` does).
fn stored(data: &std::path::Path, id: &str) -> Option<lookout::store::StoredFlush> {
    let id = id.to_string();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(lookout::store::read_existing(data, move |r| r.flushes(Some(&id), 1)))
        .unwrap()
        .and_then(|mut v| v.pop())
}

/// SIGKILL runs no code of the daemon's: what the change ticket gets is
/// the row written when the flush started and updated while it ran, which
/// the restarted daemon turns `interrupted` with the keys deleted at the
/// last update. A re-run deletes the rest.
#[test]
fn a_flush_cut_short_by_kill_9_is_recorded_as_interrupted_by_the_next_daemon() {
    let redis = populated(30_000, 500);
    let mut d = Daemon::start(&config(&redis, true));
    let data = d.dir.path().join("data");
    let (status, v) = post(
        &d,
        r#"{"match": "p:*", "execute": true, "rate": "1000/s", "snapshot": false, "user": "ops-ana"}"#,
    );
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["origin"], "127.0.0.1", "{v}");

    // The row is there while it runs, and its count of keys deleted moves.
    let running = wait_for("the running flush's progress in the history", Duration::from_secs(20), || {
        stored(&data, &id).filter(|f| f.state == "deleting" && f.deleted > 0)
    });
    assert_eq!(running.matched, 30_000, "{running:?}");
    assert_eq!(running.user, "ops-ana");
    assert_eq!(running.request["match"], "p:*", "{running:?}");
    assert_eq!(running.request["rate"], "1000/s", "{running:?}");
    assert!(running.record.is_empty(), "no record before it ends");

    send_signal(d.proc.pid(), libc::SIGKILL);
    wait_for("the daemon to die", Duration::from_secs(10), || d.proc.exited());
    let at_kill = stored(&data, &id).expect("the row survives the kill");
    let left = count(&redis, "p:*");
    assert!(left > 0, "killed before the end");
    assert!(
        at_kill.deleted > 0 && at_kill.deleted <= 30_000 - left,
        "the last update ({}) counts at most what is gone ({})",
        at_kill.deleted,
        30_000 - left
    );
    assert!(
        30_000 - left - at_kill.deleted <= 3_000,
        "at 1000 keys/s the last update is at most a few seconds behind: {} uncounted",
        30_000 - left - at_kill.deleted
    );
    assert!(!["done", "interrupted", "failed"].contains(&at_kill.state.as_str()), "{at_kill:?}");
    eprintln!(
        "killed with {} of 30000 keys deleted; the row said {} ({} uncounted)",
        30_000 - left,
        at_kill.deleted,
        30_000 - left - at_kill.deleted
    );

    d.restart();
    let why = format!(
        "the daemon stopped while it ran; {} keys deleted at the last update; re-run to continue",
        at_kill.deleted
    );
    let list = get(&d, "/api/v1/redis/flushes");
    assert_eq!(list[0]["id"], id.as_str(), "{list}");
    assert_eq!(list[0]["state"], "interrupted", "{list}");
    assert_eq!(list[0]["error"], why.as_str(), "{list}");
    assert_eq!(list[0]["deleted"], at_kill.deleted, "{list}");
    let one = get(&d, &format!("/api/v1/redis/flushes/{id}"));
    let record = one["record"].as_str().unwrap();
    for part in [
        "# Redis controlled flush: interrupted",
        why.as_str(),
        "| keys matched | 30000 |",
        "ops-ana from 127.0.0.1",
        "`p:*`",
    ] {
        assert!(record.contains(part), "{part} missing from:\n{record}");
    }
    let (_, page) = http_get(d.port, "/").unwrap();
    assert!(
        page.contains(&format!("<tr data-flush=\"{id}\" data-state=\"interrupted\">")) && page.contains(&why),
        "{page}"
    );
    assert!(d.logs().contains("cut short when the daemon stopped"), "{}", d.logs());
    assert_eq!(
        d.metric("lookout_flush_runs_total", &[("probe", "cache"), ("outcome", "interrupted")]),
        Some(1.0)
    );

    // The re-run deletes what is left, and only that.
    let (status, v) = post(&d, r#"{"match": "p:*", "execute": true, "rate": "unlimited", "snapshot": false}"#);
    assert_eq!(status, 202, "{v}");
    let done = until_state(&d, v["id"].as_str().unwrap(), "done");
    assert_eq!(done["deleted"], left, "{done}");
    assert_eq!(count(&redis, "p:*"), 0);
    assert_eq!(count(&redis, "q:*"), 500);
}

/// Two probes naming one Redis (the same address and database, or the
/// master the sentinels name) share its one flush at a time; another
/// database of the same server does not.
#[test]
fn one_flush_at_a_time_per_redis_whichever_probe_names_it() {
    use support::topology::{MASTER_NAME, Sentinel};
    let redis = populated(20_000, 0);
    let sentinel = Sentinel::start(redis.port, 5000);
    let d = Daemon::start(&format!(
        "server:\n  listen: {{listen}}\n  enable_admin_api: true\ndata_dir: {{data_dir}}\nprobe_files: []\nprobes:\n  - {{name: cache, kind: redis, url: '{url}', every: 5s}}\n  - {{name: sessions, kind: redis, url: '{url}/0', every: 5s}}\n  - {{name: other_db, kind: redis, url: '{url}/1', every: 5s}}\n  - {{name: ha, kind: redis_sentinel, sentinels: ['{}'], master_name: {MASTER_NAME}, every: 5s}}\n",
        sentinel.address(),
        url = redis.url()
    ));
    let (status, v) = post(
        &d,
        r#"{"probe": "cache", "match": "p:*", "execute": true, "rate": "1000/s", "snapshot": false}"#,
    );
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();

    // Another probe with the same address and database: refused at once.
    let (status, busy) = post(&d, r#"{"probe": "sessions", "match": "p:*", "execute": true}"#);
    assert_eq!(status, 409, "{busy}");
    assert_eq!(busy["running"], id.as_str(), "{busy}");
    let server = format!("127.0.0.1:{}/0", redis.port);
    assert_eq!(busy["redis"], server.as_str(), "{busy}");
    assert!(busy["error"].as_str().unwrap().contains("a flush of the same Redis"), "{busy}");
    // The same probe with `db` pointing elsewhere is another database: it runs.
    let (status, v) = post(&d, r#"{"probe": "cache", "db": 1, "match": "p:*"}"#);
    assert_eq!(status, 202, "{v}");
    until_state(&d, v["id"].as_str().unwrap(), "dry_run");
    let (status, v) = post(&d, r#"{"probe": "other_db", "match": "p:*"}"#);
    assert_eq!(status, 202, "{v}");
    until_state(&d, v["id"].as_str().unwrap(), "dry_run");

    // Through the sentinels, the master is known once they are asked: the
    // flush ends failed, naming the running one, before touching anything.
    let before = count(&redis, "p:*");
    let (status, v) = post(
        &d,
        r#"{"probe": "ha", "match": "p:*", "execute": true, "rate": "unlimited", "snapshot": false}"#,
    );
    assert_eq!(status, 202, "{v}");
    let failed = until_state(&d, v["id"].as_str().unwrap(), "failed");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains(&id) && error.contains(&server), "{failed}");
    assert_eq!(failed["deleted"], 0, "{failed}");
    assert!(count(&redis, "p:*") <= before, "only the first flush deletes");
    assert!(
        d.metric("lookout_flush_running", &[("probe", "cache")]) == Some(1.0),
        "the first one runs on"
    );

    // Once it has stopped, the other probe may flush the same Redis.
    let (status, _) = http_request(d.port, "DELETE", &format!("/api/v1/redis/flushes/{id}"), "").unwrap();
    assert_eq!(status, 202);
    until_state(&d, &id, "interrupted");
    let (status, v) = post(
        &d,
        r#"{"probe": "sessions", "match": "p:*", "execute": true, "rate": "unlimited", "snapshot": false}"#,
    );
    assert_eq!(status, 202, "{v}");
    until_state(&d, v["id"].as_str().unwrap(), "done");
    assert_eq!(count(&redis, "p:*"), 0);
}

/// `--watch` goes with the request: once every key is gone the daemon
/// follows the hit rate (`watching`, still under way), then verifies, and
/// the record carries both.
#[test]
fn the_daemon_watches_the_recovery_and_verifies_for_watch() {
    let redis = populated(300, 100);
    let d = Daemon::start(&config(&redis, true));
    let child = flush_command(&d, &["--no-snapshot", "--watch", "3s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let watching = wait_for("the flush to be watching", Duration::from_secs(20), || {
        let list = get(&d, "/api/v1/redis/flushes");
        (list[0]["state"] == "watching").then_some(list)
    });
    assert_eq!(watching[0]["deleted"], 300, "{watching}");
    assert_eq!(watching[0]["request"]["watch"], "3s", "{watching}");
    assert_eq!(
        d.metric("lookout_flush_running", &[("probe", "cache")]),
        Some(1.0),
        "under way while it watches"
    );
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("watching the hit rate's recovery"), "{stderr}");
    assert!(
        stdout.contains("# Redis controlled flush: done") && stdout.contains("## Hit rate after the flush"),
        "{stdout}"
    );
    assert!(stdout.contains("| | Part | Check | Detail |"), "the verify's section: {stdout}");
    let list = get(&d, "/api/v1/redis/flushes");
    let state = list[0]["state"].as_str().unwrap();
    // With only a Redis probe, verify passes or cannot tell; neither fails the flush.
    assert_eq!(state, "done", "{list}");
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(count(&redis, "p:*"), 0);
}

/// `--notify` goes with the request: the daemon checks the names before
/// anything is deleted, and queues the record in its relay's outbox once
/// the flush has deleted; the relay's worker delivers it.
#[test]
fn the_daemon_queues_the_record_for_notify_through_its_relay() {
    let redis = populated(300, 100);
    let d = Daemon::start(&format!(
        "server:\n  listen: {{listen}}\n  enable_admin_api: true\ndata_dir: {{data_dir}}\nprobe_files: []\nprobes:\n  - {{name: cache, kind: redis, url: '{}', every: 5s}}\nrelay:\n  auth:\n    bearer_token: tok-flush\n  destinations:\n    - {{name: ops-log, type: log}}\n",
        redis.url()
    ));
    let flush = |notify: &str| flush_command(&d, &["--no-snapshot", "--notify", notify]).output().unwrap();

    let out = flush("ops-slack");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("`notify`: no destination named `ops-slack` (configured: ops-log)"),
        "{stderr}"
    );
    assert_eq!(count(&redis, "p:*"), 300, "nothing deleted");

    let out = flush("ops-log");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("# Redis controlled flush: done") && stdout.contains("Notice: queued in the relay's outbox for `ops-log`."),
        "{stdout}"
    );
    assert_eq!(count(&redis, "p:*"), 0);
    wait_for("the relay to deliver the record", Duration::from_secs(20), || {
        let logs = d.logs();
        logs.lines()
            .any(|l| l.contains("ops-log") && l.contains("Redis controlled flush on") && l.contains("300 keys deleted"))
            .then_some(())
    });
    let list = get(&d, "/api/v1/redis/flushes");
    assert_eq!(list[0]["request"]["notify"], serde_json::json!(["ops-log"]), "{list}");
}
