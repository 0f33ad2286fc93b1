//! The relay as Alertmanager and the providers see it: real HTTP, stand-ins
//! that speak Slack's, PagerDuty's and SMTP's protocols, bad input, retries,
//! the dead-letter list, `kill -9` in the middle of a burst, and SIGTERM in
//! the middle of a drain.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sha2::{Digest, Sha256};
use support::saas::{Answer, Attempt, SaaS, SmtpSink, slack_text};
use support::{Daemon, am_payload, http_get, http_post, lookout, outbox_count, wait_for};

const TOKEN: &str = "relay-token-3f9a8b7c";

fn relay_config(saas: &SaaS, smtp: &SmtpSink, extra_dest: &str) -> String {
    format!(
        "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\nrelay:\n  auth:\n    bearer_token: {TOKEN}\n  routes:\n    - matchers: ['alertname=~\"Redis.*\"']\n      destinations: [slack, pager, mail, chain]\n    - destinations: [log]\n  destinations:\n    - name: slack\n      type: slack\n      webhook_url: {}\n      rate_limit: 20/s\n      retry: {{initial_backoff: 200ms, max_backoff: 2s}}\n    - name: pager\n      type: pagerduty\n      routing_key: abcdef0123456789abcdef0123456789\n      url: {}\n      retry: {{initial_backoff: 200ms, max_backoff: 2s}}\n    - name: mail\n      type: email\n      host: 127.0.0.1\n      port: {}\n      tls: none\n      from: lookout@example.org\n      to: [oncall@example.org, sre@example.org]\n    - name: chain\n      type: webhook\n      url: {}\n      retry: {{initial_backoff: 200ms, max_backoff: 2s}}\n    - name: log\n      type: log\n{extra_dest}",
        saas.url("/slack/webhook"),
        saas.url("/v2/enqueue"),
        smtp.port,
        saas.url("/hook")
    )
}

fn auth() -> (&'static str, String) {
    ("Authorization", format!("Bearer {TOKEN}"))
}

#[test]
fn delivers_to_every_destination_in_their_protocols() {
    let saas = SaaS::start();
    let smtp = SmtpSink::start();
    let d = Daemon::start(&relay_config(&saas, &smtp, ""));
    let (k, v) = auth();
    let group = "{}/{severity=\"critical\"}:{alertname=\"RedisHighMemoryUsage\"}";
    let firing = am_payload(
        group,
        "firing",
        &[
            ("RedisHighMemoryUsage", "redis:6379", "firing"),
            ("RedisHighMemoryUsage", "redis-2:6379", "firing"),
        ],
    );
    // Newer Alertmanagers add keys; they must be accepted and forwarded.
    let firing = firing.replacen(
        "\"version\":\"4\"",
        "\"version\":\"4\",\"notification_reason\":\"first notification\"",
        1,
    );
    let (status, body) = http_post(d.port, "/webhook", firing.as_bytes(), &[(k, &v)]).unwrap();
    assert_eq!(status, 200, "{body}");

    wait_for("all four destinations", Duration::from_secs(20), || {
        (saas.received_on("/slack/webhook").len() == 1
            && saas.received_on("/v2/enqueue").len() == 1
            && smtp.mails().len() == 1
            && saas.received_on("/hook").len() == 1)
            .then_some(())
    });
    let slack = &saas.received_on("/slack/webhook")[0].body;
    let att = &slack["attachments"][0];
    assert_eq!(att["color"], "danger");
    assert_eq!(att["title"], "[FIRING:2] RedisHighMemoryUsage (redis critical)");
    assert!(att["text"].as_str().unwrap().contains("https://runbooks.example/redis"), "{slack}");
    let pd = &saas.received_on("/v2/enqueue")[0].body;
    assert_eq!(pd["event_action"], "trigger");
    assert_eq!(pd["routing_key"], "abcdef0123456789abcdef0123456789");
    // Alertmanager's own derivation: the SHA-256 hex of the group key.
    let group_hash: String = Sha256::digest(group.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(pd["dedup_key"], group_hash.as_str(), "{pd}");
    assert_eq!(pd["payload"]["severity"], "critical");
    let mail = &smtp.mails()[0];
    assert_eq!(mail.to.len(), 2);
    assert!(
        mail.data.contains("Subject: [FIRING:2] RedisHighMemoryUsage (redis critical)"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("multipart/alternative") && mail.data.contains("text/html") && mail.data.contains("text/plain"));
    let hook = &saas.received_on("/hook")[0].body;
    assert_eq!(hook["notification_reason"], "first notification", "forwarded unchanged");
    assert_eq!(hook, &serde_json::from_str::<serde_json::Value>(&firing).unwrap());

    // An HA twin's copy of the same notification is delivered once.
    let (status, body) = http_post(d.port, "/webhook", firing.as_bytes(), &[(k, &v)]).unwrap();
    assert_eq!((status, body.contains("duplicate")), (200, true), "{body}");

    // Resolution reaches PagerDuty as a resolve with the same dedup_key.
    let resolved = am_payload(
        group,
        "resolved",
        &[
            ("RedisHighMemoryUsage", "redis:6379", "resolved"),
            ("RedisHighMemoryUsage", "redis-2:6379", "resolved"),
        ],
    );
    assert_eq!(http_post(d.port, "/webhook", resolved.as_bytes(), &[(k, &v)]).unwrap().0, 200);
    wait_for("resolve", Duration::from_secs(20), || {
        (saas.received_on("/v2/enqueue").len() == 2 && smtp.mails().len() == 2).then_some(())
    });
    let pd2 = &saas.received_on("/v2/enqueue")[1].body;
    assert_eq!(pd2["event_action"], "resolve");
    assert_eq!(pd2["dedup_key"], pd["dedup_key"]);
    assert_eq!(saas.received_on("/slack/webhook")[1].body["attachments"][0]["color"], "good");
    assert!(smtp.mails()[1].data.contains("Subject: [RESOLVED] RedisHighMemoryUsage"));

    // Routing: a non-Redis alert goes to the log only.
    let other = am_payload("{}:{alertname=\"Other\"}", "firing", &[("Other", "x", "firing")]);
    assert_eq!(http_post(d.port, "/webhook", other.as_bytes(), &[(k, &v)]).unwrap().0, 200);
    wait_for("log delivery", Duration::from_secs(10), || {
        d.logs().contains("Other on x").then_some(())
    });
    assert_eq!(saas.received_on("/slack/webhook").len(), 2);

    let m = d.metrics();
    assert_eq!(
        support::metric_value(
            &m,
            "lookout_relay_deliveries_total",
            &[("destination", "pager"), ("outcome", "success")]
        ),
        Some(2.0)
    );
    // Firing, its HA copy, resolved, Other; the copy counted as a duplicate.
    assert_eq!(support::metric_value(&m, "lookout_relay_received_total", &[]), Some(4.0));
    assert_eq!(support::metric_value(&m, "lookout_relay_duplicates_total", &[]), Some(1.0));
    for text in [d.metrics(), d.logs()] {
        assert!(
            !text.contains(TOKEN) && !text.contains("abcdef0123456789abcdef0123456789"),
            "no secret in metrics or logs"
        );
    }
}

#[test]
fn bad_input_is_answered_and_changes_nothing() {
    let saas = SaaS::start();
    let smtp = SmtpSink::start();
    let d = Daemon::start(&relay_config(&saas, &smtp, ""));
    let data = d.dir.path().join("data");
    let (k, v) = auth();
    let good = am_payload("{}:{alertname=\"RedisX\"}", "firing", &[("RedisX", "a", "firing")]);
    type Case<'a> = (Vec<u8>, Vec<(&'a str, String)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (b"{not json".to_vec(), vec![(k, v.clone())], 400, "invalid JSON"),
        (
            br#"{"version":"4","status":"firing"}"#.to_vec(),
            vec![(k, v.clone())],
            400,
            "missing field",
        ),
        (
            {
                let mut bad: serde_json::Value = serde_json::from_str(&good).unwrap();
                bad["status"] = "on fire".into();
                bad.to_string().into_bytes()
            },
            vec![(k, v.clone())],
            400,
            "status",
        ),
        (vec![b' '; 2 * 1024 * 1024], vec![(k, v.clone())], 413, "larger than"),
        (good.clone().into_bytes(), vec![], 401, "credentials"),
        (good.clone().into_bytes(), vec![(k, "Bearer wrong".to_string())], 401, "credentials"),
        (good.clone().into_bytes(), vec![(k, format!("Basic {TOKEN}"))], 401, "credentials"),
    ];
    for (body, headers, want, needle) in cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(a, b)| (*a, b.as_str())).collect();
        let (status, text) = http_post(d.port, "/webhook", &body, &h).unwrap();
        assert_eq!(status, want, "{text}");
        assert!(text.contains(needle), "{want}: {text}");
        if status != 413 {
            assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok(), "a JSON body: {text}");
        }
    }
    assert_eq!(http_get(d.port, "/webhook").map(|r| r.0), Some(405));
    assert_eq!(outbox_count(&data, "SELECT COUNT(*) FROM notifications"), 0, "nothing stored");

    // A slow client trickling its request does not stop others being served.
    use std::io::Write;
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    slow.write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{")
        .unwrap();
    let start = std::time::Instant::now();
    let (status, _) = http_post(d.port, "/webhook", good.as_bytes(), &[(k, &v)]).unwrap();
    assert_eq!(status, 200);
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(outbox_count(&data, "SELECT COUNT(*) FROM notifications"), 1);
    drop(slow);
    // Three bad credentials, and the slow client without any: refused before its body is read.
    wait_for("four refusals", Duration::from_secs(5), || {
        (d.metric("lookout_relay_rejected_total", &[("reason", "unauthorized")]) == Some(4.0)).then_some(())
    });
}

#[test]
fn a_full_disk_is_answered_503_and_what_was_accepted_stays() {
    let saas = SaaS::start();
    let smtp = SmtpSink::start();
    // Files lookout writes may not grow past 3 MiB: writing the outbox fails
    // as on a full disk (EFBIG instead of ENOSPC; SIGXFSZ ignored, as the
    // shell passes on).
    let d = Daemon::start_after("ulimit -f 3072; trap '' XFSZ", &relay_config(&saas, &smtp, ""));
    let data = d.dir.path().join("data");
    let (k, v) = auth();
    let padding = "x".repeat(200_000);
    let mut accepted = 0;
    let mut refusal = None;
    for i in 0..100 {
        let g = format!("{{}}:{{alertname=\"Full{i}\"}}");
        let mut p: serde_json::Value = serde_json::from_str(&am_payload(&g, "firing", &[("Full", "a", "firing")])).unwrap();
        p["commonAnnotations"]["padding"] = padding.clone().into();
        let (status, body) = http_post(d.port, "/webhook", p.to_string().as_bytes(), &[(k, &v)]).unwrap();
        match status {
            200 => accepted += 1,
            503 => {
                refusal = Some(body);
                break;
            }
            other => panic!("{other}: {body}"),
        }
    }
    let body = refusal.expect("the outbox fills up and says so");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert!(answer["error"].as_str().unwrap_or("").contains("cannot store"), "{body}");
    assert!(accepted >= 3, "{accepted} accepted before the disk filled");
    // Still serving, and every notification answered 200 is in the outbox.
    assert_eq!(http_get(d.port, "/-/healthy").map(|r| r.0), Some(200));
    assert_eq!(outbox_count(&data, "SELECT COUNT(*) FROM notifications"), accepted);
    assert!(d.metric("lookout_relay_store_errors_total", &[]).unwrap_or(0.0) >= 1.0);
}

/// The statuses `path` was answered, in arrival order.
fn answered(saas: &SaaS, path: &str) -> Vec<Attempt> {
    let mut a = saas.attempts_on(path);
    a.sort_by_key(|a| a.at);
    a
}

#[test]
fn retries_honour_retry_after_and_permanent_failures_are_dead_lettered() {
    let saas = SaaS::start();
    let smtp = SmtpSink::start();
    // Slack: rate limited for 2 s (ten times its 200 ms backoff), then
    // accepted. PagerDuty: a 500, then accepted. The chain: accepted.
    let retry_after = Duration::from_secs(2);
    saas.script_on("/slack/webhook", &[Answer::RateLimited(retry_after.as_secs())]);
    saas.script_on("/v2/enqueue", &[Answer::Status(500, "rollup_error")]);
    let d = Daemon::start(&relay_config(&saas, &smtp, ""));
    let (k, v) = auth();
    let p = am_payload("{}:{alertname=\"RedisA\"}", "firing", &[("RedisA", "a", "firing")]);
    assert_eq!(http_post(d.port, "/webhook", p.as_bytes(), &[(k, &v)]).unwrap().0, 200);
    wait_for("delivery after retries", Duration::from_secs(20), || {
        (saas.received_on("/slack/webhook").len() == 1
            && saas.received_on("/v2/enqueue").len() == 1
            && saas.received_on("/hook").len() == 1)
            .then_some(())
    });
    let statuses = |path: &str| answered(&saas, path).iter().map(|a| a.status).collect::<Vec<_>>();
    assert_eq!(statuses("/slack/webhook"), [429, 200]);
    assert_eq!(statuses("/v2/enqueue"), [500, 202]);
    assert_eq!(statuses("/hook"), [200]);
    let slack = answered(&saas, "/slack/webhook");
    let gap = slack[1].at - slack[0].at;
    assert!(gap >= retry_after, "retried {gap:?} after a 429 with Retry-After: 2");
    let m = d.metrics();
    let retries = |dst: &str| support::metric_value(&m, "lookout_relay_deliveries_total", &[("destination", dst), ("outcome", "retry")]);
    assert_eq!((retries("slack"), retries("pager"), retries("chain")), (Some(1.0), Some(1.0), None));

    // A 400 is permanent: tried once, dead-lettered with the provider's
    // reason, then retried by hand.
    saas.script_on("/slack/webhook", &[Answer::Status(400, "invalid_payload")]);
    let p = am_payload("{}:{alertname=\"RedisB\"}", "firing", &[("RedisB", "b", "firing")]);
    assert_eq!(http_post(d.port, "/webhook", p.as_bytes(), &[(k, &v)]).unwrap().0, 200);
    let cfg = d.config.clone();
    let list = wait_for("a dead letter", Duration::from_secs(20), || {
        let out = lookout()
            .current_dir(d.dir.path())
            .args(["relay", "dlq", "list", "--format", "json", "-c"])
            .arg(&cfg)
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v.as_array()?.len() == 1).then_some(v)
    });
    assert_eq!(list[0]["destination"], "slack", "{list}");
    assert!(list[0]["reason"].as_str().unwrap().contains("invalid_payload"), "{list}");
    assert_eq!(statuses("/slack/webhook"), [429, 200, 400], "the 400 tried once");
    wait_for("the others delivered", Duration::from_secs(20), || {
        (saas.received_on("/v2/enqueue").len() == 2 && saas.received_on("/hook").len() == 2).then_some(())
    });
    let out = lookout()
        .current_dir(d.dir.path())
        .args(["relay", "dlq", "retry", "--all", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for("redelivery from the DLQ", Duration::from_secs(20), || {
        (saas.received_on("/slack/webhook").len() == 2).then_some(())
    });
    assert_eq!(statuses("/slack/webhook"), [429, 200, 400, 200]);

    // send-test proves a destination works, without the queue.
    let out = lookout()
        .current_dir(d.dir.path())
        .args(["relay", "send-test", "--destination", "pager", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        saas.received_on("/v2/enqueue").last().unwrap().body["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("LookoutTestNotification")
    );
}

#[test]
fn slack_bot_threads_a_group_and_updates_its_first_message() {
    let saas = SaaS::start();
    let smtp = SmtpSink::start();
    let bot = format!(
        "    - name: bot\n      type: slack\n      bot_token: xoxb-secret-token\n      channel: C123\n      api_url: {}\n      skip_superseded: false\n",
        saas.url("/api")
    );
    // Every state posted, none skipped: the thread is what is tested here.
    let cfg = relay_config(&saas, &smtp, &bot).replace("destinations: [slack, pager, mail, chain]", "destinations: [bot]");
    let d = Daemon::start(&cfg);
    let (k, v) = auth();
    let g = "{}:{alertname=\"RedisConnectionExhaustion\"}";
    for (status, alerts) in [
        ("firing", vec![("RedisConnectionExhaustion", "a", "firing")]),
        (
            "firing",
            vec![
                ("RedisConnectionExhaustion", "a", "firing"),
                ("RedisConnectionExhaustion", "b", "firing"),
            ],
        ),
        (
            "resolved",
            vec![
                ("RedisConnectionExhaustion", "a", "resolved"),
                ("RedisConnectionExhaustion", "b", "resolved"),
            ],
        ),
    ] {
        let p = am_payload(g, status, &alerts);
        assert_eq!(http_post(d.port, "/webhook", p.as_bytes(), &[(k, &v)]).unwrap().0, 200);
    }
    wait_for("three posts and an update", Duration::from_secs(20), || {
        if saas.received().is_empty() && d.logs().contains("dead-lettered") {
            panic!("{}", d.logs());
        }
        (saas.received_on("/api/chat.postMessage").len() == 3 && saas.received_on("/api/chat.update").len() == 1).then_some(())
    });
    let posts = saas.received_on("/api/chat.postMessage");
    assert_eq!(posts[0].headers["authorization"], "Bearer xoxb-secret-token");
    assert!(posts[0].body.get("thread_ts").is_none());
    assert_eq!(posts[1].body["thread_ts"], "1700000000.000001");
    assert_eq!(posts[2].body["thread_ts"], "1700000000.000001");
    let update = &saas.received_on("/api/chat.update")[0].body;
    assert_eq!(update["ts"], "1700000000.000001");
    assert_eq!(update["attachments"][0]["color"], "good");
}

/// A relay whose every notification goes to the webhook target alone,
/// which takes `delay` to answer each.
/// Every Redis notification to the webhook `chain` only, which sends
/// `concurrency` at once to a target answering after `delay`.
fn chain_only(delay: Duration, concurrency: usize) -> (SaaS, SmtpSink, Daemon) {
    let saas = SaaS::start();
    let smtp = SmtpSink::start();
    saas.set_delay(delay);
    let cfg = relay_config(&saas, &smtp, "")
        .replace("destinations: [slack, pager, mail, chain]", "destinations: [chain]")
        .replace(
            "      type: webhook\n",
            &format!("      type: webhook\n      concurrency: {concurrency}\n"),
        );
    let d = Daemon::start(&cfg);
    (saas, smtp, d)
}

/// Posts `n` notifications of distinct groups from four threads; returns
/// the group keys answered 200.
fn burst(port: u16, n: usize) -> Vec<String> {
    burst_from(port, 0, n)
}

/// Posts a burst of `n` groups (all accepted) and waits until some are
/// delivered to the webhook target, most not yet.
fn burst_under_way(port: u16, saas: &SaaS, n: usize) -> Vec<String> {
    let accepted = burst(port, n);
    assert_eq!(accepted.len(), n, "every webhook accepted");
    wait_for("deliveries under way", Duration::from_secs(10), || {
        (saas.received_on("/hook").len() >= 10).then_some(())
    });
    accepted
}

/// Starts lookout again on the daemon's configuration and data directory.
fn restart(d: &Daemon) -> support::Proc {
    let mut cmd = lookout();
    cmd.current_dir(d.dir.path())
        .args(["run", "-c"])
        .arg(&d.config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    support::Proc::spawn("lookout", &mut cmd)
}

/// How many times the webhook target received each group.
fn delivered_groups(saas: &SaaS) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in saas.received_on("/hook") {
        if let Some(g) = r.body["groupKey"].as_str() {
            *seen.entry(g.to_string()).or_default() += 1;
        }
    }
    seen
}

#[test]
fn kill_9_mid_burst_loses_nothing() {
    // Two at a time: slow enough for the kill to come mid-drain.
    let (saas, _smtp, mut d) = chain_only(Duration::from_millis(20), 2);
    let (k, v) = auth();
    let n = 300;
    let accepted = burst(d.port, n);
    assert_eq!(accepted.len(), n, "every webhook accepted");
    // Mid-delivery: some delivered, most not.
    wait_for("deliveries under way", Duration::from_secs(10), || {
        (saas.received_on("/hook").len() >= 10).then_some(())
    });
    support::send_signal(d.proc.pid(), libc::SIGKILL);
    d.proc.kill();
    let before = saas.received_on("/hook").len();
    assert!(before < n, "killed mid-burst ({before} of {n} delivered)");

    // Restart on the same data directory.
    let _again = restart(&d);
    wait_for("every accepted notification delivered", Duration::from_secs(60), || {
        let got: HashSet<String> = delivered_groups(&saas).into_keys().collect();
        accepted.iter().all(|g| got.contains(g)).then_some(())
    });
    let total = saas.received_on("/hook").len();
    assert!(total - n <= 4, "duplicates are rare: {} extra", total - n);

    // An Alertmanager retrying a request whose answer the crash lost: the
    // restarted relay still knows the notification and stores it only once.
    let g = "{}:{alertname=\"RedisBurst0\"}";
    let again = am_payload(g, "firing", &[("RedisBurst", "i0", "firing")]);
    let (status, body) = http_post(d.port, "/webhook", again.as_bytes(), &[(k, &v)]).unwrap();
    assert_eq!((status, body.contains("duplicate")), (200, true), "{body}");
}

#[test]
fn sigterm_mid_drain_finishes_deliveries_under_way_and_sends_none_twice() {
    // Slow enough that the queue is still draining when the signal comes,
    // with several deliveries in flight at that moment.
    let (saas, _smtp, mut d) = chain_only(Duration::from_millis(50), 4);
    let data = d.dir.path().join("data");
    let n = 200;
    let accepted = burst_under_way(d.port, &saas, n);

    let status = d.proc.terminate(Duration::from_secs(20)).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(d.logs().contains("lookout stopped"), "{}", d.logs());
    let before = saas.received_on("/hook").len();
    assert!(before < n, "stopped mid-drain ({before} of {n} delivered)");
    // What the target received is exactly what the outbox recorded as done:
    // no delivery under way was cut off, no outcome was left unwritten.
    let done = outbox_count(
        &data,
        "SELECT COUNT(*) FROM deliveries WHERE destination = 'chain' AND state = 'done'",
    );
    assert_eq!(done, before as i64, "outcomes on disk at exit");

    let _again = restart(&d);
    wait_for("every accepted notification delivered", Duration::from_secs(60), || {
        let got = delivered_groups(&saas);
        accepted.iter().all(|g| got.contains_key(g)).then_some(())
    });
    let got = delivered_groups(&saas);
    let twice: Vec<&String> = got.iter().filter(|(_, c)| **c > 1).map(|(g, _)| g).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    assert_eq!(got.len(), n, "none lost");
    assert_eq!(saas.received_on("/hook").len(), n);
}

/// A relay with one webhook destination `chain` (its extra keys given),
/// every notification routed to it, and `auth` as `relay.auth`.
fn webhook_relay(saas: &SaaS, auth: &str, chain_keys: &str) -> String {
    format!(
        "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\nrelay:\n{auth}  destinations:\n    - name: chain\n      type: webhook\n      url: {}\n{chain_keys}",
        saas.url("/hook")
    )
}

/// The dead-letter list as `lookout relay dlq list --format json` prints it.
fn dead_letters(d: &Daemon) -> Option<Vec<serde_json::Value>> {
    let out = lookout()
        .current_dir(d.dir.path())
        .args(["relay", "dlq", "list", "--format", "json", "-c"])
        .arg(&d.config)
        .output()
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&out.stdout).ok()?.as_array().cloned()
}

#[test]
fn max_age_dead_letters_what_cannot_be_delivered_in_time_and_says_why() {
    let saas = SaaS::start();
    // Failing far longer than max_age: only max_age can end the retries.
    saas.script_on("/hook", &vec![Answer::Status(500, "upstream down"); 40]);
    let d = Daemon::start(&webhook_relay(
        &saas,
        "",
        "      max_age: 1500ms\n      retry: {initial_backoff: 100ms, max_backoff: 300ms}\n",
    ));
    let p = am_payload("{}:{alertname=\"RedisOld\"}", "firing", &[("RedisOld", "a", "firing")]);
    assert_eq!(http_post(d.port, "/webhook", p.as_bytes(), &[]).unwrap().0, 200);
    let list = wait_for("a dead letter", Duration::from_secs(15), || {
        dead_letters(&d).filter(|l| !l.is_empty())
    });
    assert_eq!(list.len(), 1, "{list:?}");
    let reason = list[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("older than max_age (1s 500ms)"), "{reason}");
    assert!(reason.contains("last error") && reason.contains("500"), "{reason}");
    let tried = answered(&saas, "/hook");
    assert!(
        tried.len() >= 3 && tried.iter().all(|a| a.status == 500),
        "retried until then: {tried:?}"
    );
    let span = tried[tried.len() - 1].at - tried[0].at;
    assert!(
        span >= Duration::from_millis(1200),
        "dead-lettered after max_age, not before: {span:?}"
    );
    // Nothing more is sent for it.
    let n = tried.len();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(saas.attempts_on("/hook").len(), n, "no attempt after the dead letter");
    assert_eq!(
        d.metric("lookout_relay_deliveries_total", &[("destination", "chain"), ("outcome", "dead")]),
        Some(1.0)
    );
}

#[test]
fn rate_limit_spaces_the_sends() {
    let saas = SaaS::start();
    let d = Daemon::start(&webhook_relay(&saas, "", "      rate_limit: 4/s\n"));
    for i in 0..5 {
        let g = format!("{{}}:{{alertname=\"RedisRate{i}\"}}");
        let p = am_payload(&g, "firing", &[("RedisRate", "a", "firing")]);
        assert_eq!(http_post(d.port, "/webhook", p.as_bytes(), &[]).unwrap().0, 200);
    }
    wait_for("five deliveries", Duration::from_secs(15), || {
        (saas.received_on("/hook").len() == 5).then_some(())
    });
    let sent = answered(&saas, "/hook");
    let gaps: Vec<Duration> = sent.windows(2).map(|w| w[1].at - w[0].at).collect();
    // 4/s is one send every 250 ms. Arrivals are that apart give or take
    // the network (the first send also connects), so each gap may fall a
    // little short, but not the four together.
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(200)),
        "sends closer than the limit: {gaps:?}"
    );
    let span = sent[4].at - sent[0].at;
    assert!(span >= Duration::from_millis(950), "five sends in {span:?}: {gaps:?}");
}

/// Posts `p` with each `Authorization` value (None: no header); the statuses.
fn post_with(port: u16, p: &str, auths: &[Option<&str>]) -> Vec<u16> {
    auths
        .iter()
        .map(|a| {
            let h: Vec<(&str, &str)> = a.iter().map(|v| ("Authorization", *v)).collect();
            http_post(port, "/webhook", p.as_bytes(), &h).map(|r| r.0).unwrap_or(0)
        })
        .collect()
}

#[test]
fn basic_auth_and_a_token_file_let_in_only_the_right_credentials() {
    use base64::Engine;
    let b64 = |s: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s));
    let saas = SaaS::start();
    let secrets = tempfile::tempdir().unwrap();
    let password = secrets.path().join("password");
    std::fs::write(&password, "s3cr3t-basic\n").unwrap();
    let token = secrets.path().join("token");
    std::fs::write(&token, "tok-from-file-77\n").unwrap();
    let p = am_payload("{}:{alertname=\"RedisAuth\"}", "firing", &[("RedisAuth", "a", "firing")]);

    let basic = format!(
        "  auth:\n    basic:\n      username: alertmanager\n      password_file: {}\n",
        password.display()
    );
    let d = Daemon::start(&webhook_relay(&saas, &basic, ""));
    let data = d.dir.path().join("data");
    let wrong = [
        None,
        Some(b64("alertmanager:wrong").as_str()),
        Some(b64("someone:s3cr3t-basic").as_str()),
        Some("Bearer s3cr3t-basic"),
    ]
    .map(|a| a.map(str::to_string));
    let wrong: Vec<Option<&str>> = wrong.iter().map(Option::as_deref).collect();
    assert_eq!(post_with(d.port, &p, &wrong), [401; 4]);
    assert_eq!(
        outbox_count(&data, "SELECT COUNT(*) FROM notifications"),
        0,
        "nothing stored on 401"
    );
    assert_eq!(post_with(d.port, &p, &[Some(&b64("alertmanager:s3cr3t-basic"))]), [200]);
    assert_eq!(outbox_count(&data, "SELECT COUNT(*) FROM notifications"), 1);
    wait_for("delivery", Duration::from_secs(10), || {
        (saas.received_on("/hook").len() == 1).then_some(())
    });
    drop(d);

    let bearer = format!("  auth:\n    bearer_token_file: {}\n", token.display());
    let d = Daemon::start(&webhook_relay(&saas, &bearer, ""));
    let data = d.dir.path().join("data");
    let statuses = post_with(
        d.port,
        &p,
        &[
            None,
            Some("Bearer tok-from-file"),
            Some("Bearer tok-from-file-77x"),
            Some("Basic tok-from-file-77"),
        ],
    );
    assert_eq!(statuses, [401; 4]);
    assert_eq!(
        outbox_count(&data, "SELECT COUNT(*) FROM notifications"),
        0,
        "nothing stored on 401"
    );
    // The file's trailing newline is not part of the token.
    assert_eq!(post_with(d.port, &p, &[Some("Bearer tok-from-file-77")]), [200]);
    assert_eq!(outbox_count(&data, "SELECT COUNT(*) FROM notifications"), 1);
    assert_eq!(d.metric("lookout_relay_rejected_total", &[("reason", "unauthorized")]), Some(4.0));
}

/// A relay whose every notification goes to PagerDuty alone.
fn pager_only(saas: &SaaS) -> Daemon {
    let smtp = SmtpSink::start();
    Daemon::start(&relay_config(saas, &smtp, "").replace("destinations: [slack, pager, mail, chain]", "destinations: [pager]"))
}

#[test]
fn pagerduty_resolves_only_once_the_whole_group_has() {
    let saas = SaaS::start();
    let d = pager_only(&saas);
    let (k, v) = auth();
    let g = "{}:{alertname=\"RedisPartial\"}";
    let send = |status: &str, alerts: &[(&str, &str, &str)]| {
        let p = am_payload(g, status, alerts);
        assert_eq!(http_post(d.port, "/webhook", p.as_bytes(), &[(k, &v)]).unwrap().0, 200);
    };
    send("firing", &[("RedisPartial", "a", "firing"), ("RedisPartial", "b", "firing")]);
    wait_for("the trigger", Duration::from_secs(10), || {
        (saas.received_on("/v2/enqueue").len() == 1).then_some(())
    });
    // Alertmanager's notification when one of two alerts resolved: still `firing`.
    send("firing", &[("RedisPartial", "a", "resolved"), ("RedisPartial", "b", "firing")]);
    wait_for("the second event", Duration::from_secs(10), || {
        (saas.received_on("/v2/enqueue").len() == 2).then_some(())
    });
    let events: Vec<serde_json::Value> = saas.received_on("/v2/enqueue").into_iter().map(|r| r.body).collect();
    assert_eq!(events[1]["event_action"], "trigger", "no resolve while b fires: {}", events[1]);
    assert_eq!(events[1]["payload"]["custom_details"]["num_resolved"], 1);
    send("resolved", &[("RedisPartial", "a", "resolved"), ("RedisPartial", "b", "resolved")]);
    wait_for("the resolve", Duration::from_secs(10), || {
        (saas.received_on("/v2/enqueue").len() == 3).then_some(())
    });
    let events: Vec<serde_json::Value> = saas.received_on("/v2/enqueue").into_iter().map(|r| r.body).collect();
    let actions: Vec<&str> = events.iter().map(|e| e["event_action"].as_str().unwrap_or("")).collect();
    assert_eq!(actions, ["trigger", "trigger", "resolve"]);
    assert!(
        events.iter().all(|e| e["dedup_key"] == events[0]["dedup_key"]),
        "one incident: {events:?}"
    );
}

#[test]
fn pagerduty_events_stay_under_512_kb_with_a_huge_annotation() {
    let saas = SaaS::start();
    let d = pager_only(&saas);
    let (k, v) = auth();
    // 600 KB in an annotation PagerDuty's custom details carry, and in one its links carry.
    for (i, annotation) in ["description", "runbook_url"].iter().enumerate() {
        let g = format!("{{}}:{{alertname=\"RedisHuge{i}\"}}");
        let mut p: serde_json::Value = serde_json::from_str(&am_payload(&g, "firing", &[("RedisHuge", "a", "firing")])).unwrap();
        p["alerts"][0]["annotations"][annotation] = format!("https://x.example/{}", "y".repeat(600_000)).into();
        let (status, body) = http_post(d.port, "/webhook", p.to_string().as_bytes(), &[(k, &v)]).unwrap();
        assert_eq!(status, 200, "{body}");
        wait_for("the event", Duration::from_secs(10), || {
            (saas.received_on("/v2/enqueue").len() == i + 1).then_some(())
        });
        let ev = &saas.received_on("/v2/enqueue")[i];
        let size: usize = ev.headers["content-length"].to_str().unwrap().parse().unwrap();
        assert!(size < 512_000, "{annotation}: an event of {size} bytes");
        assert_eq!(ev.body["event_action"], "trigger", "{annotation}");
        assert_eq!(ev.body["payload"]["severity"], "critical", "{annotation}");
        assert!(
            ev.body["payload"]["summary"].as_str().is_some_and(|s| s.contains("RedisHuge")),
            "{annotation}"
        );
    }
    assert_eq!(saas.attempts_on("/v2/enqueue").len(), 2, "each accepted at once (202)");
}

/// A relay with the given email destinations, every notification to all of them.
fn email_relay(destinations: &[(&str, String)]) -> String {
    let names: Vec<&str> = destinations.iter().map(|(n, _)| *n).collect();
    let mut cfg = format!(
        "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\nrelay:\n  routes:\n    - destinations: [{}]\n  destinations:\n",
        names.join(", ")
    );
    for (name, keys) in destinations {
        cfg.push_str(&format!(
            "    - name: {name}\n      type: email\n      host: 127.0.0.1\n      from: lookout@example.org\n      to: [oncall@example.org]\n      retry: {{initial_backoff: 300ms, max_backoff: 1s}}\n{keys}"
        ));
    }
    cfg
}

#[test]
fn email_auth_is_sent_and_a_refused_login_is_dead_lettered() {
    let smtp = support::PyStandIn::start("smtp", &["--auth", "lookout:mail-Pa55"]);
    let d = Daemon::start(&email_relay(&[
        (
            "good",
            format!(
                "      port: {}\n      tls: none\n      username: lookout\n      password: mail-Pa55\n",
                smtp.port
            ),
        ),
        (
            "bad",
            format!(
                "      port: {}\n      tls: none\n      username: lookout\n      password: wrong\n",
                smtp.port
            ),
        ),
    ]));
    let p = am_payload("{}:{alertname=\"RedisMail\"}", "firing", &[("RedisMail", "a", "firing")]);
    assert_eq!(http_post(d.port, "/webhook", p.as_bytes(), &[]).unwrap().0, 200);
    let mail = wait_for("the mail", Duration::from_secs(15), || smtp.events_of("mail").pop());
    assert_eq!(mail["user"], "lookout", "{mail}");
    assert_eq!(mail["to"], serde_json::json!(["oncall@example.org"]));
    assert!(
        mail["data"].as_str().is_some_and(|m| m.contains("Subject: [FIRING:1] RedisMail")),
        "{mail}"
    );
    // 535: a permanent failure, not retried.
    let list = wait_for("the refused login dead-lettered", Duration::from_secs(15), || {
        dead_letters(&d).filter(|l| !l.is_empty())
    });
    assert_eq!(list[0]["destination"], "bad", "{list:?}");
    assert!(list[0]["reason"].as_str().is_some_and(|r| r.contains("535")), "{list:?}");
    let auths: Vec<bool> = smtp.events_of("auth").iter().map(|a| a["ok"] == true).collect();
    assert_eq!((auths.len(), auths.iter().filter(|ok| **ok).count()), (2, 1), "one try each");
    assert_eq!(smtp.events_of("mail").len(), 1);
    assert!(!d.logs().contains("mail-Pa55"), "no password in the logs");
}

#[test]
fn email_starttls_and_implicit_tls_verify_the_server_certificate() {
    // The test CA is one lookout cannot be told to trust (the email
    // destination has no `ca_file`): both servers must be refused.
    let ca = support::TestCa::new();
    let (cert, key) = (ca.cert.display().to_string(), ca.key.display().to_string());
    let tls_args = |mode| vec!["--tls", mode, "--cert", &cert, "--key", &key, "--auth", "lookout:mail-Pa55"];
    let starttls = support::PyStandIn::start("smtp", &tls_args("starttls"));
    let implicit = support::PyStandIn::start("smtp", &tls_args("tls"));
    let creds = "      username: lookout\n      password: mail-Pa55\n";
    let d = Daemon::start(&email_relay(&[
        ("starttls", format!("      port: {}\n      tls: starttls\n{creds}", starttls.port)),
        ("implicit", format!("      port: {}\n      tls: tls\n{creds}", implicit.port)),
    ]));
    let p = am_payload("{}:{alertname=\"RedisTls\"}", "firing", &[("RedisTls", "a", "firing")]);
    assert_eq!(http_post(d.port, "/webhook", p.as_bytes(), &[]).unwrap().0, 200);
    let refused = |dest: &str| {
        without_colours(&d.logs())
            .lines()
            .any(|l| l.contains("Delivery failed") && l.contains(&format!("destination={dest}")) && l.contains("UnknownIssuer"))
    };
    wait_for("both refused for their certificate", Duration::from_secs(15), || {
        (refused("starttls") && refused("implicit")).then_some(())
    });
    assert!(
        !starttls.events_of("starttls").is_empty(),
        "lookout asked for STARTTLS before anything else"
    );
    for s in [&starttls, &implicit] {
        assert!(s.events_of("auth").is_empty() && s.events_of("mail").is_empty(), "{:?}", s.events());
    }
}

/// Log text without terminal colour codes (`ESC [ … m`).
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

/// An SMTP stand-in speaking `mode` (`starttls` or `tls`) with `ca`'s
/// server certificate, and taking the login `lookout:mail-Pa55`.
fn tls_smtp(ca: &support::TestCa, mode: &str) -> support::PyStandIn {
    let (cert, key) = (ca.cert.display().to_string(), ca.key.display().to_string());
    support::PyStandIn::start(
        "smtp",
        &["--tls", mode, "--cert", &cert, "--key", &key, "--auth", "lookout:mail-Pa55"],
    )
}

#[test]
fn email_with_ca_file_delivers_over_starttls_and_implicit_tls() {
    let ca = support::TestCa::new();
    let starttls = tls_smtp(&ca, "starttls");
    let implicit = tls_smtp(&ca, "tls");
    let unverified = tls_smtp(&ca, "starttls");
    let creds = "      username: lookout\n      password: mail-Pa55\n";
    let ca_file = format!("      ca_file: {}\n", ca.ca.display());
    let d = Daemon::start(&email_relay(&[
        (
            "starttls",
            format!("      port: {}\n      tls: starttls\n{ca_file}{creds}", starttls.port),
        ),
        (
            "implicit",
            format!("      port: {}\n      tls: tls\n{ca_file}{creds}", implicit.port),
        ),
        (
            "unverified",
            format!(
                "      port: {}\n      tls: starttls\n      tls_skip_verify: true\n{creds}",
                unverified.port
            ),
        ),
    ]));
    let p = am_payload("{}:{alertname=\"RedisCa\"}", "firing", &[("RedisCa", "a", "firing")]);
    assert_eq!(http_post(d.port, "/webhook", p.as_bytes(), &[]).unwrap().0, 200);
    for (name, smtp) in [("starttls", &starttls), ("implicit", &implicit), ("unverified", &unverified)] {
        let mail = wait_for(&format!("the mail through {name}"), Duration::from_secs(15), || {
            smtp.events_of("mail").pop()
        });
        assert_eq!(mail["tls"], true, "{name}: {mail}");
        assert_eq!(mail["user"], "lookout", "{name}: {mail}");
        assert!(
            mail["data"].as_str().is_some_and(|m| m.contains("Subject: [FIRING:1] RedisCa")),
            "{name}: {mail}"
        );
    }
    assert_eq!(starttls.events_of("starttls").len(), 1, "{:?}", starttls.events());
    assert!(!d.logs().contains("mail-Pa55"), "no password in the logs");
}

#[test]
fn email_tls_keys_are_checked_when_the_configuration_loads() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "not a certificate\n").unwrap();
    let ca = support::TestCa::new();
    let cases = [
        (
            format!("      tls: none\n      ca_file: {}\n", ca.ca.display()),
            "ca_file",
            "`tls` is `none`",
        ),
        (
            "      tls: none\n      tls_skip_verify: true\n".to_string(),
            "tls_skip_verify",
            "`tls` is `none`",
        ),
        (format!("      ca_file: {}\n", notes.display()), "ca_file", "no PEM certificate"),
        (
            format!("      ca_file: {}\n", dir.path().join("missing.pem").display()),
            "ca_file",
            "cannot read",
        ),
        (
            format!("      ca_file: {}\n      tls_skip_verify: true\n", ca.ca.display()),
            "tls_skip_verify",
            "not both",
        ),
    ];
    for (keys, field, says) in cases {
        let text = email_relay(&[("mail", keys)])
            .replace("{listen}", "127.0.0.1:0")
            .replace("{data_dir}", &dir.path().display().to_string());
        let path = dir.path().join("lookout.yaml");
        std::fs::write(&path, &text).unwrap();
        let Err(e) = lookout::settings::load_with_env(&path, &|_| None) else {
            panic!("loaded:\n{text}");
        };
        let line = text
            .lines()
            .position(|l| l.trim_start().starts_with(&format!("{field}:")))
            .map(|i| i as u64 + 1);
        assert!(
            e.0.iter()
                .any(|p| p.field.as_deref().is_some_and(|f| f.ends_with(field)) && p.line == line && p.message.contains(says)),
            "{text}\n{e}"
        );
    }
}

/// The groups of what the webhook target received, in the order answered,
/// with when.
fn received_groups(saas: &SaaS) -> Vec<(String, String, std::time::Instant)> {
    saas.received_on("/hook")
        .into_iter()
        .map(|r| {
            let g = r.body["groupKey"].as_str().unwrap_or_default().to_string();
            let st = r.body["status"].as_str().unwrap_or_default().to_string();
            (g, st, r.at)
        })
        .collect()
}

#[test]
fn a_groups_notifications_keep_their_order_while_hundreds_of_groups_are_in_flight() {
    let delay = Duration::from_millis(20);
    let (saas, _smtp, d) = chain_only(delay, 64);
    let (k, v) = auth();
    let g = "{}:{alertname=\"RedisOrder\"}";
    // Firing, resolved, firing again (another alert, so not a duplicate),
    // each queued among a hundred other groups: all three are waiting at
    // once, with many groups before, between and after them.
    let steps = [
        am_payload(g, "firing", &[("RedisOrder", "a", "firing")]),
        am_payload(g, "resolved", &[("RedisOrder", "a", "resolved")]),
        am_payload(g, "firing", &[("RedisOrder", "b", "firing")]),
    ];
    let mut others = 0;
    for p in &steps {
        assert_eq!(http_post(d.port, "/webhook", p.as_bytes(), &[(k, &v)]).unwrap().0, 200);
        others += burst_from(d.port, others, 100).len();
    }
    assert_eq!(others, 300, "every webhook accepted");
    wait_for("every notification delivered", Duration::from_secs(30), || {
        (saas.received_on("/hook").len() == 303).then_some(())
    });
    let mine: Vec<_> = received_groups(&saas).into_iter().filter(|(k, _, _)| k == g).collect();
    let order: Vec<&str> = mine.iter().map(|(_, s, _)| s.as_str()).collect();
    assert_eq!(order, ["firing", "resolved", "firing"]);
    let alerts: Vec<String> = saas
        .received_on("/hook")
        .iter()
        .filter(|r| r.body["groupKey"] == g)
        .map(|r| r.body["alerts"][0]["labels"]["instance"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(alerts, ["a", "a", "b"], "the third is the second firing");
    // One at a time: each was sent only once the one before was answered,
    // so answers are at least the target's delay apart.
    for w in mine.windows(2) {
        let gap = w[1].2 - w[0].2;
        assert!(gap >= delay, "two of the group in flight at once ({gap:?} apart)");
    }
    assert!(saas.max_in_flight() > 1, "other groups went in parallel");
    assert!(
        saas.max_in_flight() <= 64,
        "at most `concurrency` at once: {}",
        saas.max_in_flight()
    );
    let got = delivered_groups(&saas);
    assert!(got.iter().all(|(k, n)| *n == 1 || k == g), "none sent twice");
}

/// Posts `n` notifications of distinct groups numbered from `from`, from
/// four threads; returns the group keys answered 200.
fn burst_from(port: u16, from: usize, n: usize) -> Vec<String> {
    let (k, v) = auth();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let v = v.clone();
                s.spawn(move || {
                    let mut ok = Vec::new();
                    for i in (from + t..from + n).step_by(4) {
                        let g = format!("{{}}:{{alertname=\"RedisBurst{i}\"}}");
                        let p = am_payload(&g, "firing", &[("RedisBurst", &format!("i{i}"), "firing")]);
                        match http_post(port, "/webhook", p.as_bytes(), &[(k, &v)]) {
                            Some((200, _)) => ok.push(g),
                            other => eprintln!("webhook {i} not accepted: {other:?}"),
                        }
                    }
                    ok
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn throughput_scales_with_concurrency() {
    // One at a time, 200 sends to a target answering after 20 ms take at
    // least 4 s; 32 at a time, a fraction of a second.
    let (saas, _smtp, d) = chain_only(Duration::from_millis(20), 32);
    let n = 200;
    let accepted = burst(d.port, n);
    assert_eq!(accepted.len(), n, "every webhook accepted");
    let ingested = std::time::Instant::now();
    wait_for("every notification delivered", Duration::from_secs(30), || {
        (saas.received_on("/hook").len() >= n).then_some(())
    });
    let took = ingested.elapsed();
    let sent = answered(&saas, "/hook");
    let span = sent[sent.len() - 1].at - sent[0].at;
    assert!(took < Duration::from_secs(2), "the rest delivered {took:?} after the burst");
    assert!(span < Duration::from_secs(2), "200 sends took {span:?}");
    let most = saas.max_in_flight();
    assert!((2..=32).contains(&most), "{most} in flight at most");
    assert_eq!(delivered_groups(&saas).len(), n, "each once");
    assert_eq!(d.metric("lookout_relay_in_flight", &[("destination", "chain")]), Some(0.0));
}

#[test]
fn a_retry_after_pauses_the_whole_destination() {
    let saas = SaaS::start();
    let delay = Duration::from_millis(50);
    saas.set_delay(delay);
    let pause = Duration::from_secs(2);
    saas.script_on("/hook", &[Answer::RateLimited(pause.as_secs())]);
    let d = Daemon::start(&webhook_relay(&saas, "", "      concurrency: 4\n"));
    // 100 groups, four at a time at 50 ms each: over a second of work, so
    // plenty is still queued when the 429 comes back.
    let mut accepted = 0;
    for i in 0..100 {
        let g = format!("{{}}:{{alertname=\"RedisPause{i}\"}}");
        let p = am_payload(&g, "firing", &[("RedisPause", "a", "firing")]);
        accepted += usize::from(http_post(d.port, "/webhook", p.as_bytes(), &[]).unwrap().0 == 200);
    }
    assert_eq!(accepted, 100);
    wait_for("every notification delivered", Duration::from_secs(30), || {
        (saas.received_on("/hook").len() == 100).then_some(())
    });
    let tried = answered(&saas, "/hook");
    let limited = tried.iter().find(|a| a.status == 429).expect("a 429").at;
    // Sends already on their way when the answer came are answered; after
    // it, nothing goes out until Retry-After has passed.
    let answer_landed = limited + delay + Duration::from_millis(100);
    let during: Vec<Duration> = tried
        .iter()
        .filter(|a| a.at > answer_landed && a.at < limited + pause)
        .map(|a| a.at - limited)
        .collect();
    assert!(during.is_empty(), "sent during the pause: {during:?}");
    let after = tried.iter().filter(|a| a.at >= limited + pause).count();
    assert!(after > 1, "the queue, not only the limited send, waited: {after} after the pause");
    assert_eq!(tried.len(), 101, "the limited one retried once");
    assert_eq!(
        d.metric(
            "lookout_relay_deliveries_total",
            &[("destination", "chain"), ("outcome", "retry"), ("reason", "rate_limited")]
        ),
        Some(1.0)
    );
}

/// Slack, PagerDuty and email (a real SMTP server, aiosmtpd), Slack and
/// email limited to one send a second so that what follows a first
/// notification queues; `extra` is added to both.
fn storm_config(saas: &SaaS, smtp_port: u16, extra: &str) -> String {
    format!(
        "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\nrelay:\n  auth:\n    bearer_token: {TOKEN}\n  destinations:\n    - name: slack\n      type: slack\n      webhook_url: {}\n      rate_limit: 1/s\n{extra}    - name: pager\n      type: pagerduty\n      routing_key: abcdef0123456789abcdef0123456789\n      url: {}\n    - name: mail\n      type: email\n      host: 127.0.0.1\n      port: {smtp_port}\n      tls: none\n      from: lookout@example.org\n      to: [oncall@example.org]\n      rate_limit: 1/s\n{extra}",
        saas.url("/slack/webhook"),
        saas.url("/v2/enqueue"),
    )
}

/// The mails an aiosmtpd stand-in received, as their data.
fn mails(smtp: &support::PyStandIn) -> Vec<String> {
    smtp.events_of("mail")
        .iter()
        .map(|m| m["data"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn superseded_states_are_skipped_for_chat_and_email_and_kept_for_pagerduty() {
    let saas = SaaS::start();
    let smtp = support::PyStandIn::start("smtp", &[]);
    let d = Daemon::start(&storm_config(&saas, smtp.port, ""));
    let data = d.dir.path().join("data");
    let (k, v) = auth();
    let post = |p: &str| assert_eq!(http_post(d.port, "/webhook", p.as_bytes(), &[(k, &v)]).unwrap().0, 200);
    // A first notification takes each rate-limited destination's token…
    post(&am_payload(
        "{}:{alertname=\"RedisFirst\"}",
        "firing",
        &[("RedisFirst", "x", "firing")],
    ));
    wait_for("the first sends", Duration::from_secs(10), || {
        (saas.received_on("/slack/webhook").len() == 1 && mails(&smtp).len() == 1).then_some(())
    });
    // …so a group's firing, resolved and firing again all queue behind it.
    let g = "{}:{alertname=\"RedisFlap\"}";
    post(&am_payload(g, "firing", &[("RedisFlap", "a", "firing")]));
    post(&am_payload(g, "resolved", &[("RedisFlap", "a", "resolved")]));
    post(&am_payload(g, "firing", &[("RedisFlap", "b", "firing")]));
    wait_for("PagerDuty gets every event", Duration::from_secs(20), || {
        (saas.received_on("/v2/enqueue").len() == 4).then_some(())
    });
    let actions: Vec<String> = saas
        .received_on("/v2/enqueue")
        .iter()
        .skip(1)
        .map(|r| r.body["event_action"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(actions, ["trigger", "resolve", "trigger"], "in order");
    wait_for("the newest state in chat and email", Duration::from_secs(20), || {
        (saas.received_on("/slack/webhook").len() == 2 && mails(&smtp).len() == 2).then_some(())
    });
    let slack = saas.received_on("/slack/webhook");
    let text = slack[1].body["attachments"][0]["text"].as_str().unwrap_or_default().to_string();
    assert!(
        text.contains("RedisFlap") && text.contains("on `b`") && !text.contains("on `a`"),
        "{text}"
    );
    let mail = &mails(&smtp)[1];
    assert!(mail.contains("RedisFlap on b") && !mail.contains("RedisFlap on a"), "{mail}");
    // Recorded as superseded, with the reason; nothing dead-lettered. A
    // send is recorded once its answer is back, just after the stand-in
    // has it: waited for.
    let count = |sql: &str| outbox_count(&data, sql);
    wait_for("every delivery recorded", Duration::from_secs(10), || {
        (count("SELECT COUNT(*) FROM deliveries WHERE state = 'pending'") == 0).then_some(())
    });
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM deliveries WHERE state = 'superseded' AND destination IN ('slack', 'mail') AND last_error LIKE 'superseded by delivery %'"
        ),
        4
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM deliveries WHERE state = 'dead'"),
        0,
        "nothing dead-lettered"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM deliveries WHERE state = 'superseded' AND destination = 'pager'"),
        0
    );
    for dst in ["slack", "mail"] {
        assert_eq!(
            d.metric("lookout_relay_deliveries_total", &[("destination", dst), ("outcome", "superseded")]),
            Some(2.0),
            "{dst}"
        );
    }
    // Nothing more goes out: what was skipped is not sent later.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!((saas.received_on("/slack/webhook").len(), mails(&smtp).len()), (2, 2));
}

#[test]
fn a_backlog_for_chat_and_email_becomes_one_digest_while_pagerduty_gets_every_event_in_order() {
    let saas = SaaS::start();
    let smtp = support::PyStandIn::start("smtp", &[]);
    let cfg = storm_config(&saas, smtp.port, "      coalesce_after: 2s\n").replace(
        "      routing_key: abcdef0123456789abcdef0123456789\n",
        "      routing_key: abcdef0123456789abcdef0123456789\n      rate_limit: 50/s\n",
    );
    let d = Daemon::start(&cfg);
    let data = d.dir.path().join("data");
    let (k, v) = auth();
    let post = |p: &str| assert_eq!(http_post(d.port, "/webhook", p.as_bytes(), &[(k, &v)]).unwrap().0, 200);
    // 30 groups at once, one of them firing then resolved: at 1/s, chat and
    // email would take half a minute.
    let n = 30;
    let name = |i: usize| format!("RedisStorm{i}");
    let group = |i: usize| format!("{{}}:{{alertname=\"{}\"}}", name(i));
    for i in 0..n {
        post(&am_payload(&group(i), "firing", &[(&name(i), "a", "firing")]));
    }
    post(&am_payload(&group(7), "resolved", &[(&name(7), "a", "resolved")]));
    let pending = |dst: &str| {
        outbox_count(
            &data,
            &format!("SELECT COUNT(*) FROM deliveries WHERE destination = '{dst}' AND state = 'pending'"),
        )
    };
    wait_for("the backlogs drained", Duration::from_secs(20), || {
        (pending("slack") == 0 && pending("mail") == 0 && pending("pager") == 0).then_some(())
    });

    // Slack: a few alone, then the rest in one digest naming every group.
    let slack = saas.received_on("/slack/webhook");
    let texts: Vec<String> = slack.iter().map(|r| slack_text(&r.body)).collect();
    let digests: Vec<&String> = texts.iter().filter(|t| t.contains("[DIGEST]")).collect();
    assert_eq!(digests.len(), 1, "{texts:#?}");
    assert!(slack.len() <= 5, "{} Slack messages for {n} groups", slack.len());
    for i in 0..n {
        assert!(
            texts.iter().any(|t| t.contains(&format!("{} (", name(i)))),
            "group {i} never shown: {texts:#?}"
        );
    }
    if digests[0].contains(&name(7)) {
        // In its newest state, once.
        assert!(digests[0].contains(&format!("[RESOLVED] {} (", name(7))), "{}", digests[0]);
    }
    let digested = outbox_count(
        &data,
        "SELECT COUNT(*) FROM deliveries WHERE destination = 'slack' AND state = 'digested' AND last_error LIKE 'delivered in a digest of %'",
    );
    assert!(digested >= 20, "{digested} delivered by the digest");
    assert_eq!(
        d.metric("lookout_relay_digests_total", &[("destination", "slack"), ("outcome", "success")]),
        Some(1.0)
    );

    // Email through a real SMTP server: the same.
    let mails = mails(&smtp);
    let digest_mails: Vec<&String> = mails.iter().filter(|m| m.contains("Subject: [DIGEST]")).collect();
    assert_eq!(digest_mails.len(), 1, "{} mails", mails.len());
    assert!(mails.len() <= 5, "{} mails for {n} groups", mails.len());
    assert!(
        digest_mails[0].contains("Runbook: https://runbooks.example/redis"),
        "{}",
        digest_mails[0]
    );

    // PagerDuty: every event, each group's in order.
    let events = saas.received_on("/v2/enqueue");
    assert_eq!(events.len(), n + 1);
    let key: String = Sha256::digest(group(7).as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let flap: Vec<&str> = events
        .iter()
        .filter(|e| e.body["dedup_key"] == key.as_str())
        .map(|e| e.body["event_action"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        flap,
        ["trigger", "resolve"],
        "{:?}",
        events.iter().map(|e| &e.body["payload"]["summary"]).collect::<Vec<_>>()
    );
    assert_eq!(outbox_count(&data, "SELECT COUNT(*) FROM deliveries WHERE state = 'dead'"), 0);
}

/// Webhook destinations on the stand-in, one per `(name, path, keys)`,
/// every notification to each of `to`; `auth` is `relay.auth`'s lines.
fn hooks_config(saas: &SaaS, auth: &str, hooks: &[(&str, &str, &str)], to: &str) -> String {
    let mut cfg = format!(
        "server:\n  listen: {{listen}}\n  enable_lifecycle: true\ndata_dir: {{data_dir}}\nprobe_files: []\nrelay:\n{auth}  routes:\n    - destinations: [{to}]\n  destinations:\n"
    );
    for (name, path, keys) in hooks {
        cfg.push_str(&format!(
            "    - name: {name}\n      type: webhook\n      url: {}\n{keys}",
            saas.url(path)
        ));
    }
    cfg
}

#[test]
fn a_reload_changes_routes_destinations_and_auth_with_a_burst_in_flight_and_loses_nothing() {
    let saas = SaaS::start();
    saas.set_delay(Duration::from_millis(50));
    // `gone` sends one a minute: its queue is still there when it is removed.
    let before = hooks_config(
        &saas,
        "",
        &[
            ("chain", "/hook", "      concurrency: 2\n"),
            ("gone", "/gone", "      rate_limit: 1/m\n"),
        ],
        "chain, gone",
    );
    let d = Daemon::start(&before);
    let data = d.dir.path().join("data");
    let n = 200;
    burst_under_way(d.port, &saas, n);

    // An invalid file changes nothing and says why.
    d.write_config(&before.replace("destinations: [chain, gone]", "destinations: [chain, gnoe]"));
    let (status, body) = support::http_request(d.port, "POST", "/-/reload", "").unwrap();
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("no destination named `gnoe`"), "{body}");

    // `gone`'s queue shows in its gauge before it is removed.
    let depth = |name: &str| d.metric("lookout_relay_queue_depth", &[("destination", name)]);
    wait_for("gone's queue in its gauge", Duration::from_secs(10), || {
        depth("gone").filter(|&q| q > 0.0)
    });

    // Mid-burst: `gone` removed, `next` added, `chain` changed, a token required.
    std::thread::sleep(Duration::from_millis(1100));
    d.write_config(&hooks_config(
        &saas,
        &format!("  auth:\n    bearer_token: {TOKEN}\n"),
        &[("chain", "/hook", "      concurrency: 8\n"), ("next", "/next", "")],
        "chain, next",
    ));
    let (status, body) = support::http_request(d.port, "POST", "/-/reload", "").unwrap();
    assert_eq!(status, 200, "{body}");
    let in_flight_at_reload = saas.received_on("/hook").len();
    assert!(
        in_flight_at_reload < n,
        "reloaded mid-burst ({in_flight_at_reload} of {n} delivered)"
    );

    // The credentials apply at once.
    let (k, v) = auth();
    let p = am_payload("{}:{alertname=\"RedisAfter\"}", "firing", &[("RedisAfter", "a", "firing")]);
    assert_eq!(http_post(d.port, "/webhook", p.as_bytes(), &[]).unwrap().0, 401);
    assert_eq!(http_post(d.port, "/webhook", p.as_bytes(), &[(k, &v)]).unwrap().0, 200);

    // Nothing lost, nothing sent twice; the new route in force.
    wait_for("every accepted notification delivered", Duration::from_secs(30), || {
        (delivered_groups(&saas).len() == n + 1).then_some(())
    });
    assert!(delivered_groups(&saas).values().all(|&c| c == 1), "none sent twice");
    wait_for("the new destination", Duration::from_secs(10), || {
        (saas.received_on("/next").len() == 1).then_some(())
    });

    // What was queued for `gone` is dead-lettered, with the reason.
    let gone = wait_for("the removed destination's queue dead-lettered", Duration::from_secs(10), || {
        let pending = outbox_count(
            &data,
            "SELECT COUNT(*) FROM deliveries WHERE destination = 'gone' AND state = 'pending'",
        );
        (pending == 0).then(|| {
            outbox_count(
                &data,
                "SELECT COUNT(*) FROM deliveries WHERE destination = 'gone' AND state = 'dead' AND last_error = 'destination `gone` is no longer configured'",
            )
        })
    });
    assert_eq!(gone as usize + saas.received_on("/gone").len(), n);
    assert!(gone as usize >= n - 2, "{gone} dead-lettered");
    // Its series say nothing is queued or under way, rather than keeping
    // the last value they had.
    wait_for("the removed destination's gauges at 0", Duration::from_secs(10), || {
        (depth("gone") == Some(0.0)
            && d.metric("lookout_relay_oldest_pending_age_seconds", &[("destination", "gone")]) == Some(0.0)
            && d.metric("lookout_relay_in_flight", &[("destination", "gone")]) == Some(0.0))
        .then_some(())
    });
}

#[test]
fn a_group_a_digest_shows_resolved_starts_a_new_slack_thread_when_it_fires_again() {
    let saas = SaaS::start();
    let cfg = format!(
        "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\nrelay:\n  destinations:\n    - name: bot\n      type: slack\n      bot_token: xoxb-secret-token\n      channel: C123\n      api_url: {}\n      rate_limit: 1/s\n      coalesce_after: 2s\n",
        saas.url("/api")
    );
    let d = Daemon::start(&cfg);
    let post = |p: &str| assert_eq!(http_post(d.port, "/webhook", p.as_bytes(), &[]).unwrap().0, 200);
    let a = "{}:{alertname=\"RedisThreadA\"}";
    post(&am_payload(a, "firing", &[("RedisThreadA", "a", "firing")]));
    wait_for("the group's first message", Duration::from_secs(10), || {
        (saas.received_on("/api/chat.postMessage").len() == 1).then_some(())
    });
    for i in 0..5 {
        let g = format!("{{}}:{{alertname=\"RedisThreadB{i}\"}}");
        post(&am_payload(&g, "firing", &[(&format!("RedisThreadB{i}"), "a", "firing")]));
    }
    post(&am_payload(a, "resolved", &[("RedisThreadA", "a", "resolved")]));
    let texts = || -> Vec<(String, bool)> {
        saas.received_on("/api/chat.postMessage")
            .iter()
            .map(|r| (slack_text(&r.body), r.body.get("thread_ts").is_some()))
            .collect()
    };
    let digest = wait_for("a digest", Duration::from_secs(15), || {
        texts().into_iter().find(|(t, _)| t.contains("[DIGEST]"))
    });
    assert!(digest.0.contains("[RESOLVED] RedisThreadA"), "{}", digest.0);
    assert!(!digest.1, "a digest goes to the channel, not into a thread");
    let before = saas.received_on("/api/chat.postMessage").len();
    post(&am_payload(a, "firing", &[("RedisThreadA", "b", "firing")]));
    let again = wait_for("the group firing again", Duration::from_secs(10), || {
        let t = texts();
        (t.len() > before).then(|| t[before].clone())
    });
    assert!(again.0.contains("RedisThreadA"), "{}", again.0);
    assert!(!again.1, "a new incident, a new thread: {}", again.0);
}
