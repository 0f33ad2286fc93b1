//! Several lookout replicas on one PostgreSQL database, as real processes:
//! `kill -9` of one in the middle of a burst loses nothing answered 200;
//! PostgreSQL stopped and started again means 503 while it is down and
//! recovery without a restart; the fallback leader killed means another
//! leads within one lease; two Alertmanagers sending each notification to
//! a different replica have it delivered once; a flapping group and a
//! backlog through two replicas are superseded and digested on the shared
//! store, and a group's next delivery read while a skip lands is not left
//! claimed and unsent; three replicas posting to one Slack bot keep to its
//! one `rate_limit` together, a 429's `Retry-After` one of them gets
//! pauses them all, and a resolve one replica delivers replies in the
//! thread another started.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use support::postgres::{Private, TestDb};
use support::saas::{Answer, SaaS, slack_text};
use support::{Alertmanager, Daemon, am_payload, http_post, wait_for};

/// A replica of the relay on the store at `url`, delivering every
/// notification to the webhook stand-in, `concurrency` at a time.
fn replica_config(url: &str, name: &str, lease: &str, saas: &SaaS, concurrency: usize) -> String {
    format!(
        "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\nrelay:\n  store:\n    url: {url}\n    lease: {lease}\n    replica: {name}\n    pool_size: 6\n  destinations:\n    - name: chain\n      type: webhook\n      url: {}\n      concurrency: {concurrency}\n      retry: {{initial_backoff: 200ms, max_backoff: 1s}}\n",
        saas.url("/hook")
    )
}

fn payload(i: usize) -> (String, String) {
    let g = format!("{{}}:{{alertname=\"RedisBurst{i}\"}}");
    let p = am_payload(&g, "firing", &[("RedisBurst", &format!("i{i}"), "firing")]);
    (g, p)
}

/// How many times the stand-in received each group.
fn delivered(saas: &SaaS) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in saas.received_on("/hook") {
        if let Some(g) = r.body["groupKey"].as_str() {
            *seen.entry(g.to_string()).or_default() += 1;
        }
    }
    seen
}

#[test]
fn kill_9_of_one_replica_mid_burst_loses_nothing_answered_200() {
    let db = TestDb::create();
    let saas = SaaS::start();
    // Slow enough that the kill comes while deliveries are under way.
    saas.set_delay(Duration::from_millis(20));
    let concurrency = 2;
    let mut replicas: Vec<Daemon> = (0..3)
        .map(|i| Daemon::start(&replica_config(&db.url, &format!("r{i}"), "3s", &saas, concurrency)))
        .collect();
    let ports: Vec<u16> = replicas.iter().map(|d| d.port).collect();
    let n = 600;
    let victim = replicas[0].proc.pid();
    // The test's own round-robin client, four threads; replica 0 is killed
    // a third of the way through (what it had not answered is not counted:
    // Alertmanager would send it again).
    let accepted: Vec<String> = std::thread::scope(|s| {
        let killer = s.spawn(|| {
            wait_for("a third of the burst delivered", Duration::from_secs(30), || {
                (saas.received_on("/hook").len() >= n / 6).then_some(())
            });
            support::send_signal(victim, libc::SIGKILL);
        });
        let clients: Vec<_> = (0..4)
            .map(|t| {
                let ports = ports.clone();
                s.spawn(move || {
                    let mut ok = Vec::new();
                    for i in (t..n).step_by(4) {
                        let (g, p) = payload(i);
                        if let Some((200, _)) = http_post(ports[i % 3], "/webhook", p.as_bytes(), &[]) {
                            ok.push(g);
                        }
                    }
                    ok
                })
            })
            .collect();
        killer.join().unwrap();
        clients.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    replicas[0].proc.kill();
    assert!(accepted.len() > n / 2, "most accepted: {}", accepted.len());
    let started = Instant::now();
    wait_for("every notification answered 200 delivered", Duration::from_secs(60), || {
        let got = delivered(&saas);
        accepted.iter().all(|g| got.contains_key(g)).then_some(())
    });
    let got = delivered(&saas);
    let twice: usize = got.values().map(|c| c - 1).sum();
    eprintln!(
        "{} answered 200, all delivered {:.1}s after the burst; {twice} delivered twice (in flight at the kill: at most {concurrency})",
        accepted.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(twice <= concurrency, "duplicates at most the sends in flight at the kill: {twice}");
    let unique: HashSet<&String> = accepted.iter().collect();
    assert_eq!(unique.len(), accepted.len());
}

#[test]
fn postgres_down_is_503_and_every_replica_recovers_without_a_restart() {
    let pg = Private::start();
    let saas = SaaS::start();
    let replicas: Vec<Daemon> = (0..2)
        .map(|i| Daemon::start(&replica_config(&pg.url(), &format!("r{i}"), "2s", &saas, 4)))
        .collect();
    let post = |d: &Daemon, i: usize| http_post(d.port, "/webhook", payload(i).1.as_bytes(), &[]).map(|(s, _)| s);
    let mut accepted = Vec::new();
    for (i, d) in replicas.iter().enumerate() {
        assert_eq!(post(d, i), Some(200));
        accepted.push(payload(i).0);
    }
    pg.down();
    for (i, d) in replicas.iter().enumerate() {
        let started = Instant::now();
        assert_eq!(post(d, 100 + i), Some(503), "down: Alertmanager is told to retry");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "answered in time: {:?}",
            started.elapsed()
        );
    }
    pg.up();
    for (i, d) in replicas.iter().enumerate() {
        let status = wait_for("intake to recover", Duration::from_secs(20), || {
            let s = post(d, 200 + i)?;
            (s == 200).then_some(s)
        });
        assert_eq!(status, 200);
        accepted.push(payload(200 + i).0);
    }
    wait_for("everything answered 200 delivered", Duration::from_secs(30), || {
        let got = delivered(&saas);
        accepted.iter().all(|g| got.contains_key(g)).then_some(())
    });
    assert!(!delivered(&saas).contains_key(&payload(100).0), "a 503 stored nothing");
}

fn leader_of(d: &Daemon, name: &str) -> Option<f64> {
    d.metric("lookout_relay_leader", &[("replica", name)])
}

#[test]
fn the_fallback_leader_killed_another_leads_within_one_lease() {
    let db = TestDb::create();
    let saas = SaaS::start();
    let lease = Duration::from_secs(3);
    let mut replicas: Vec<Daemon> = (0..3)
        .map(|i| Daemon::start(&replica_config(&db.url, &format!("r{i}"), "3s", &saas, 1)))
        .collect();
    let leader = wait_for("one leader", Duration::from_secs(10), || {
        let leading: Vec<usize> = (0..3).filter(|&i| leader_of(&replicas[i], &format!("r{i}")) == Some(1.0)).collect();
        (leading.len() == 1).then(|| leading[0])
    });
    let page = support::http_get(replicas[(leader + 1) % 3].port, "/").unwrap().1;
    assert!(page.contains(&format!("leader r{leader}")), "the status page names the leader");
    replicas[leader].proc.kill();
    let killed = Instant::now();
    let next = wait_for("another leader", lease * 2, || {
        (0..3)
            .filter(|&i| i != leader)
            .find(|&i| leader_of(&replicas[i], &format!("r{i}")) == Some(1.0))
    });
    let took = killed.elapsed();
    eprintln!(
        "r{next} leads {:.2}s after r{leader} was killed (lease {lease:?})",
        took.as_secs_f64()
    );
    assert!(took <= lease, "within one lease: {took:?}");
    let others = (0..3).filter(|&i| i != leader && i != next);
    for i in others {
        assert_eq!(leader_of(&replicas[i], &format!("r{i}")), Some(0.0), "one leader");
    }
}

#[test]
fn two_alertmanagers_sending_to_two_replicas_are_delivered_once() {
    let db = TestDb::create();
    let saas = SaaS::start();
    let replicas: Vec<Daemon> = (0..2)
        .map(|i| Daemon::start(&replica_config(&db.url, &format!("r{i}"), "2s", &saas, 4)))
        .collect();
    // Two real Alertmanagers that each send every notification, each to
    // its own replica: the worst case of an HA pair, whose gossip only
    // sometimes keeps the second from sending (clustered on loopback with
    // no peer timeout, both sent in most runs and one in others), and the
    // case the store's de-duplication is for.
    let am_config = |port: u16| {
        format!(
            "route:\n  receiver: lookout\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1h\n  repeat_interval: 24h\nreceivers:\n  - name: lookout\n    webhook_configs:\n      - url: http://127.0.0.1:{port}/webhook\n        send_resolved: false\n"
        )
    };
    let first = Alertmanager::start(&am_config(replicas[0].port));
    let second = Alertmanager::start(&am_config(replicas[1].port));
    // What Prometheus does: the same alert to both.
    let alert = r#"[{"labels":{"alertname":"RedisDown","instance":"redis:6379","severity":"critical"},"annotations":{"summary":"down"},"startsAt":"2026-11-30T10:00:00Z"}]"#;
    for am in [&first, &second] {
        let (status, body) = http_post(am.port, "/api/v2/alerts", alert.as_bytes(), &[("Content-Type", "application/json")]).unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let received = |d: &Daemon| d.metric("lookout_relay_received_total", &[]).unwrap_or(0.0);
    wait_for("both Alertmanagers to send it", Duration::from_secs(30), || {
        (received(&replicas[0]) >= 1.0 && received(&replicas[1]) >= 1.0).then_some(())
    });
    let duplicates = || -> f64 {
        replicas
            .iter()
            .map(|d| d.metric("lookout_relay_duplicates_total", &[]).unwrap_or(0.0))
            .sum()
    };
    wait_for("the second copy known as one", Duration::from_secs(10), || {
        (duplicates() == 1.0).then_some(())
    });
    // One stored, so one delivery is all there will ever be.
    assert_eq!(db.count("SELECT COUNT(*) FROM relay_notifications"), 1);
    wait_for("its delivery", Duration::from_secs(10), || {
        (!saas.received_on("/hook").is_empty()).then_some(())
    });
    assert_eq!(saas.received_on("/hook").len(), 1, "one delivery of the pair's two copies");
}

#[test]
fn a_backlog_on_two_replicas_is_superseded_and_digested_on_the_shared_store() {
    let db = TestDb::create();
    let saas = SaaS::start();
    let cfg = |name: &str| {
        format!(
            "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\nrelay:\n  store:\n    url: {}\n    lease: 3s\n    replica: {name}\n    pool_size: 6\n  destinations:\n    - name: slack\n      type: slack\n      webhook_url: {}\n      rate_limit: 1/s\n      concurrency: 1\n      coalesce_after: 5s\n",
            db.url,
            saas.url("/slack/webhook")
        )
    };
    let replicas: Vec<Daemon> = ["r0", "r1"].iter().map(|n| Daemon::start(&cfg(n))).collect();
    let name = |i: usize| format!("RedisStorm{i}");
    let group = |i: usize| format!("{{}}:{{alertname=\"{}\"}}", name(i));
    let post = |r: usize, p: &str| assert_eq!(http_post(replicas[r % 2].port, "/webhook", p.as_bytes(), &[]).unwrap().0, 200);
    let sent = || saas.received_on("/slack/webhook").len();
    // Two notifications spend the replicas' shared budget (1/s, burst 1: the
    // second waits a second for its token)…
    post(0, &am_payload(&group(100), "firing", &[(&name(100), "a", "firing")]));
    post(1, &am_payload(&group(101), "firing", &[(&name(101), "a", "firing")]));
    wait_for("both tokens spent", Duration::from_secs(10), || (sent() == 2).then_some(()));
    // …so a group flapping through both replicas queues, and only its newest goes.
    let flap = "{}:{alertname=\"RedisFlap\"}";
    post(0, &am_payload(flap, "firing", &[("RedisFlap", "a", "firing")]));
    post(1, &am_payload(flap, "resolved", &[("RedisFlap", "a", "resolved")]));
    post(0, &am_payload(flap, "firing", &[("RedisFlap", "b", "firing")]));
    wait_for("the flap's newest state shown", Duration::from_secs(10), || {
        (sent() == 3).then_some(())
    });
    let last = slack_text(&saas.received_on("/slack/webhook")[2].body);
    assert!(
        last.contains("RedisFlap") && last.contains("on `b`") && !last.contains("on `a`"),
        "{last}"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM relay_deliveries WHERE state = 'superseded' AND last_error LIKE 'superseded by delivery %'"),
        2
    );
    // Then twenty groups across both replicas: at 1/s each, ten seconds alone,
    // so once the oldest has waited 5s the rest goes in a digest.
    let n = 20;
    for i in 0..n {
        post(i, &am_payload(&group(i), "firing", &[(&name(i), "a", "firing")]));
    }
    post(1, &am_payload(&group(7), "resolved", &[(&name(7), "a", "resolved")]));
    wait_for("the backlog drained", Duration::from_secs(30), || {
        (db.count("SELECT COUNT(*) FROM relay_deliveries WHERE state = 'pending'") == 0).then_some(())
    });
    assert_eq!(db.count("SELECT COUNT(*) FROM relay_deliveries WHERE state = 'dead'"), 0);
    let digested =
        db.count("SELECT COUNT(*) FROM relay_deliveries WHERE state = 'digested' AND last_error LIKE 'delivered in a digest of %'");
    let superseded = db.count("SELECT COUNT(*) FROM relay_deliveries WHERE state = 'superseded'");
    let done = db.count("SELECT COUNT(*) FROM relay_deliveries WHERE state = 'done'");
    assert_eq!(
        done + digested + superseded,
        n as i64 + 6,
        "{done} done, {digested} digested, {superseded} superseded"
    );
    assert!(digested > 0, "a digest took the backlog");
    let texts: Vec<String> = saas
        .received_on("/slack/webhook")
        .iter()
        .skip(3)
        .map(|r| slack_text(&r.body))
        .collect();
    assert!(texts.len() < n, "{} messages for {n} groups", texts.len());
    for i in 0..n {
        assert!(texts.iter().any(|t| t.contains(&name(i))), "{} never shown: {texts:#?}", name(i));
    }
    // The resolved notification is the last word on its group, never the firing one after it.
    let last7 = texts.iter().rev().find(|t| t.contains(&name(7))).unwrap();
    assert!(last7.contains("RESOLVED"), "{last7}");
}

#[test]
fn a_group_whose_next_notification_is_read_while_a_skip_lands_is_not_stranded() {
    let db = TestDb::create();
    let saas = SaaS::start();
    // Several in flight at once and no digest: a skipped (superseded)
    // delivery's outcome is recorded in a moment, often before the
    // dispatcher has seen that task land and while it reads the group's
    // next delivery, which the shared store then leases to it.
    let cfg = format!(
        "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\nrelay:\n  store:\n    url: {}\n    lease: 30s\n    replica: r0\n  destinations:\n    - name: slack\n      type: slack\n      webhook_url: {}\n      rate_limit: 1/s\n      concurrency: 4\n      coalesce_after: \"off\"\n",
        db.url,
        saas.url("/slack/webhook")
    );
    let d = Daemon::start(&cfg);
    let post = |p: &str| assert_eq!(http_post(d.port, "/webhook", p.as_bytes(), &[]).unwrap().0, 200);
    let sent = || saas.received_on("/slack/webhook").len();
    post(&am_payload(
        "{}:{alertname=\"RedisFirst\"}",
        "firing",
        &[("RedisFirst", "a", "firing")],
    ));
    wait_for("the token spent", Duration::from_secs(10), || (sent() == 1).then_some(()));
    let flap = "{}:{alertname=\"RedisFlap\"}";
    for (st, inst) in [
        ("firing", "a"),
        ("resolved", "a"),
        ("firing", "b"),
        ("resolved", "b"),
        ("firing", "c"),
    ] {
        post(&am_payload(flap, st, &[("RedisFlap", inst, st)]));
    }
    // Stranded, the group's next delivery would stay claimed, its lease
    // renewed, and nothing more of the group would ever go out.
    let last = wait_for("the flap's newest state", Duration::from_secs(8), || {
        saas.received_on("/slack/webhook")
            .iter()
            .skip(1)
            .map(|r| slack_text(&r.body))
            .find(|t| t.contains("on `c`"))
    });
    assert!(last.contains("RedisFlap"), "{last}");
    wait_for("nothing pending", Duration::from_secs(5), || {
        (db.count("SELECT COUNT(*) FROM relay_deliveries WHERE state = 'pending'") == 0).then_some(())
    });
    assert_eq!(db.count("SELECT COUNT(*) FROM relay_deliveries WHERE state = 'superseded'"), 4);
    assert_eq!(sent(), 2, "the first and the flap's newest");
}

/// A burst of groups to three replicas round robin, through one Slack bot
/// limited to 2/s: the stand-in sees 2/s (burst 1) across the whole run,
/// not 2/s per replica; every group is posted. Then a group's firing is
/// delivered by one replica, that replica is killed, and its resolve,
/// delivered by another, replies in the firing's thread and updates its
/// first message.
#[test]
fn three_replicas_keep_to_one_slack_rate_limit_and_share_its_threads() {
    let db = TestDb::create();
    let saas = SaaS::start();
    let cfg = |name: &str| {
        format!(
            "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\nrelay:\n  store:\n    url: {}\n    lease: 3s\n    replica: {name}\n    pool_size: 6\n  destinations:\n    - name: bot\n      type: slack\n      bot_token: xoxb-secret-token\n      channel: C123\n      api_url: {}\n      rate_limit: 2/s\n      coalesce_after: \"off\"\n",
            db.url,
            saas.url("/api")
        )
    };
    let mut replicas: Vec<Daemon> = ["r0", "r1", "r2"].iter().map(|n| Daemon::start(&cfg(n))).collect();
    let (rate, burst) = (2.0, 1.0);
    let name = |i: usize| format!("RedisBurst{i}");
    let group = |i: usize| format!("{{}}:{{alertname=\"{}\"}}", name(i));
    let n = 12;
    for i in 0..n {
        let p = am_payload(&group(i), "firing", &[(&name(i), "a", "firing")]);
        assert_eq!(http_post(replicas[i % 3].port, "/webhook", p.as_bytes(), &[]).unwrap().0, 200);
    }
    let posts = wait_for("every group posted", Duration::from_secs(30), || {
        let posts = saas.received_on("/api/chat.postMessage");
        (posts.len() >= n).then_some(posts)
    });
    assert_eq!(posts.len(), n, "one post per group");
    for i in 0..n {
        assert!(
            posts.iter().any(|p| slack_text(&p.body).contains(&format!("{} ", name(i)))),
            "{} never posted",
            name(i)
        );
    }
    let at: Vec<Instant> = posts.iter().map(|p| p.at).collect();
    let span = (at[n - 1] - at[0]).as_secs_f64();
    let observed = (n - 1) as f64 / span;
    eprintln!("{n} posts from three replicas in {span:.2}s: {observed:.2}/s against a shared rate_limit of {rate}/s (burst {burst})");
    // In every stretch of the run: at most the burst plus the rate's share
    // of it (one more for the spread between a token and its arrival here).
    for i in 0..n {
        for j in i + 1..n {
            let window = (at[j] - at[i]).as_secs_f64();
            let allowed = burst + rate * window + 1.0;
            assert!(
                ((j - i + 1) as f64) <= allowed,
                "{} posts within {window:.3}s: more than one rate_limit allows",
                j - i + 1
            );
        }
    }
    assert!(observed <= rate * 1.1, "{observed:.2}/s");

    // The thread: started by one replica…
    let delivered = |d: &Daemon| {
        d.metric("lookout_relay_deliveries_total", &[("destination", "bot"), ("outcome", "success")])
            .unwrap_or(0.0)
    };
    let before: Vec<f64> = replicas.iter().map(delivered).collect();
    let g = "{}:{alertname=\"RedisThread\"}";
    let p = am_payload(g, "firing", &[("RedisThread", "a", "firing")]);
    assert_eq!(http_post(replicas[0].port, "/webhook", p.as_bytes(), &[]).unwrap().0, 200);
    let first = wait_for("the firing posted", Duration::from_secs(10), || {
        saas.received_on("/api/chat.postMessage")
            .into_iter()
            .find(|p| slack_text(&p.body).contains("RedisThread"))
    });
    assert!(first.body.get("thread_ts").is_none(), "a new thread");
    let first_ts = first.ts.clone().unwrap();
    let starter = wait_for("the replica that posted it known", Duration::from_secs(5), || {
        (0..3).find(|&i| delivered(&replicas[i]) > before[i])
    });
    // …which is then gone: the resolve can only be delivered by another.
    replicas[starter].proc.kill();
    let other = (starter + 1) % 3;
    let p = am_payload(g, "resolved", &[("RedisThread", "a", "resolved")]);
    assert_eq!(http_post(replicas[other].port, "/webhook", p.as_bytes(), &[]).unwrap().0, 200);
    let update = wait_for("the first message updated", Duration::from_secs(15), || {
        saas.received_on("/api/chat.update").into_iter().next()
    });
    let reply = saas
        .received_on("/api/chat.postMessage")
        .into_iter()
        .filter(|p| slack_text(&p.body).contains("RedisThread"))
        .nth(1)
        .expect("the resolve posted");
    assert_eq!(
        reply.body["thread_ts"],
        first_ts.as_str(),
        "the resolve replies in the firing's thread"
    );
    assert_eq!(update.body["ts"], first_ts.as_str(), "and updates its first message");
    assert_eq!(update.body["attachments"][0]["color"], "good");
    assert_eq!(
        db.count("SELECT COUNT(*) FROM relay_threads WHERE group_key LIKE '%RedisThread%'"),
        0,
        "forgotten once resolved"
    );
}

/// Slack answers one replica's post with 429 and `Retry-After: 2`: no
/// replica posts again until the two seconds are over (beyond the sends
/// already granted when the answer came), and then every group goes out.
#[test]
fn a_retry_after_one_replica_gets_pauses_every_replica() {
    let db = TestDb::create();
    let saas = SaaS::start();
    saas.script_on("/api/chat.postMessage", &[Answer::Ok, Answer::Ok, Answer::RateLimited(2)]);
    let cfg = |name: &str| {
        format!(
            "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\nrelay:\n  store:\n    url: {}\n    lease: 3s\n    replica: {name}\n    pool_size: 6\n  destinations:\n    - name: bot\n      type: slack\n      bot_token: xoxb-secret-token\n      channel: C123\n      api_url: {}\n      rate_limit: 10/s\n      coalesce_after: \"off\"\n",
            db.url,
            saas.url("/api")
        )
    };
    let replicas: Vec<Daemon> = ["r0", "r1", "r2"].iter().map(|n| Daemon::start(&cfg(n))).collect();
    let n = 20;
    for i in 0..n {
        let g = format!("{{}}:{{alertname=\"RedisPause{i}\"}}");
        let p = am_payload(&g, "firing", &[(&format!("RedisPause{i}"), "a", "firing")]);
        assert_eq!(http_post(replicas[i % 3].port, "/webhook", p.as_bytes(), &[]).unwrap().0, 200);
    }
    wait_for("every group posted", Duration::from_secs(30), || {
        (saas.received_on("/api/chat.postMessage").len() >= n).then_some(())
    });
    let attempts = saas.attempts_on("/api/chat.postMessage");
    let limited = attempts.iter().find(|a| a.status == 429).expect("the 429 answered").at;
    // Sends granted before the pause was known may still arrive just after
    // the 429; none may come once it has been shared, until it ends.
    let during: Vec<f64> = attempts
        .iter()
        .filter(|a| a.at > limited)
        .map(|a| (a.at - limited).as_secs_f64())
        .filter(|&t| (0.3..1.9).contains(&t))
        .collect();
    let after = attempts
        .iter()
        .filter(|a| a.at > limited)
        .map(|a| (a.at - limited).as_secs_f64())
        .fold(f64::INFINITY, f64::min);
    let resumed = attempts
        .iter()
        .filter(|a| a.at > limited && (a.at - limited) >= Duration::from_millis(300))
        .map(|a| (a.at - limited).as_secs_f64())
        .fold(f64::INFINITY, f64::min);
    eprintln!("first post after the 429: {after:.3}s; posting resumed {resumed:.2}s after it (Retry-After: 2)");
    assert!(
        during.is_empty(),
        "posts while every replica should be paused: {during:?}s after the 429"
    );
}
