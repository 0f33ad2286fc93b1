//! Alerts end to end: the guide's rules in a real Prometheus, routed by a
//! real Alertmanager to lookout's relay and on to the stand-ins; and
//! lookout's own synthetic alerts, through Alertmanager and, when it is
//! down, straight through the relay.

mod support;

use std::time::Duration;

use support::saas::{SaaS, SmtpSink};
use support::{Alertmanager, Daemon, Exporter, Redis, wait_for};

const TOKEN: &str = "am-to-lookout-token";

fn names(received: &[support::saas::Received], status: &str) -> Vec<String> {
    received
        .iter()
        .filter(|r| r.body["status"] == status)
        .flat_map(|r| r.body["alerts"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn the_guides_rules_fire_through_alertmanager_to_every_destination_and_resolve() {
    let redis = Redis::start(&[]);
    let exporter = Exporter::start(&redis.url());
    let saas = SaaS::start();
    let smtp = SmtpSink::start();
    let d = Daemon::start(&format!(
        "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\nalerts: {{enabled: false}}\nrelay:\n  auth: {{bearer_token: {TOKEN}}}\n  routes:\n    - matchers: ['severity=\"critical\"']\n      destinations: [slack, pager, mail, chain]\n  destinations:\n    - {{name: slack, type: slack, webhook_url: '{}', rate_limit: 50/s}}\n    - {{name: pager, type: pagerduty, routing_key: k0123456789abcdef0123456789abcde, url: '{}'}}\n    - {{name: mail, type: email, host: 127.0.0.1, port: {}, tls: none, from: lookout@example.org, to: [oncall@example.org]}}\n    - {{name: chain, type: webhook, url: '{}'}}\n",
        saas.url("/slack/webhook"),
        saas.url("/v2/enqueue"),
        smtp.port,
        saas.url("/hook")
    ));

    // The shipped Alertmanager configuration, pointed at this lookout, with test timings.
    let root = support::root();
    let token_file = d.dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let am_cfg = std::fs::read_to_string(root.join("deploy/local/alertmanager.yml"))
        .unwrap()
        .replace("http://127.0.0.1:9464/webhook", &format!("http://127.0.0.1:{}/webhook", d.port))
        .replace("../../.stack/webhook-token", &token_file.display().to_string())
        .replace("group_wait: 30s", "group_wait: 1s")
        .replace("group_interval: 5m", "group_interval: 1s");
    let am = Alertmanager::start(&am_cfg);

    // The shipped rules, with `for:` shortened for the test.
    let rules = d.dir.path().join("redis.rules.yml");
    let text = std::fs::read_to_string(root.join("deploy/prometheus/alerts/redis.rules.yml")).unwrap();
    let re = regex::Regex::new(r"for: \d+[smh]").unwrap();
    std::fs::write(&rules, re.replace_all(&text, "for: 2s").as_ref()).unwrap();
    let _prom = support::prometheus_with_rules(
        &[("redis_exporter", format!("127.0.0.1:{}", exporter.port))],
        &[rules],
        &format!("127.0.0.1:{}", am.port),
    );

    // Push Redis into both conditions: clients above 85% of a lowered
    // maxclients, memory above 90% of a small maxmemory.
    let used = redis.info_field("used_memory").unwrap();
    redis.cli(&["CONFIG", "SET", "maxmemory", &format!("{}", (used * 1.03) as u64)]);
    assert!(redis.info_field("maxmemory").unwrap() > 0.0);
    redis.cli(&["CONFIG", "SET", "maxclients", "20"]);
    // 17 held + the exporter's own connection while it scrapes = 18 of 20: above 85%,
    // and still room for the exporter to connect.
    let hold: Vec<std::net::TcpStream> = (0..17)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap())
        .collect();

    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    wait_for("both alerts at every destination", Duration::from_secs(90), || {
        if std::time::Instant::now() + Duration::from_millis(200) > deadline {
            eprintln!(
                "prometheus alerts: {:?}\nalertmanager: {}\n{}\nlookout: {}",
                support::http_get(_prom.port, "/api/v1/alerts"),
                am.alerts(),
                am.logs(),
                d.logs()
            );
        }
        let hooks = saas.received_on("/hook");
        let fired = names(&hooks, "firing");
        (fired.iter().any(|n| n == "RedisConnectionExhaustion") && fired.iter().any(|n| n == "RedisHighMemoryUsage")).then_some(())
    });
    wait_for("slack, pagerduty and email too", Duration::from_secs(30), || {
        (saas.received_on("/slack/webhook").len() >= 2 && saas.received_on("/v2/enqueue").len() >= 2 && smtp.mails().len() >= 2)
            .then_some(())
    });
    let hook = &saas.received_on("/hook")[0];
    assert!(
        hook.body["groupKey"].as_str().unwrap().contains("alertname"),
        "a real Alertmanager payload: {}",
        hook.body
    );
    assert!(smtp.mails().iter().any(|m| m.data.contains("[FIRING:1] Redis")));

    // Back to normal: both resolve.
    drop(hold);
    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    wait_for("both resolved", Duration::from_secs(90), || {
        let resolved = names(&saas.received_on("/hook"), "resolved");
        (resolved.iter().any(|n| n == "RedisConnectionExhaustion") && resolved.iter().any(|n| n == "RedisHighMemoryUsage")).then_some(())
    });
    wait_for("pagerduty resolves", Duration::from_secs(30), || {
        saas.received_on("/v2/enqueue")
            .iter()
            .any(|r| r.body["event_action"] == "resolve")
            .then_some(())
    });
}

#[test]
fn synthetic_alerts_go_through_alertmanager_and_around_it_when_it_is_down() {
    let mut redis = Redis::start(&[]);
    let saas = SaaS::start();
    // Alertmanager routes everything back to lookout's relay.
    let port_holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let lookout_port = port_holder.local_addr().unwrap().port();
    drop(port_holder);
    let mut am = Alertmanager::start(&format!(
        "route:\n  receiver: lookout\n  group_by: [alertname, probe]\n  group_wait: 1s\n  group_interval: 1s\nreceivers:\n  - name: lookout\n    webhook_configs:\n      - url: http://127.0.0.1:{lookout_port}/webhook\n        send_resolved: true\n"
    ));
    let cfg = format!(
        "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\nalertmanager:\n  url: {}\n  timeout: 1s\nprobes:\n  - {{name: cache, kind: redis, url: '{}', every: 500ms, timeout: 400ms}}\nalerts:\n  evaluation_interval: 500ms\n  resend_delay: 2s\n  rules:\n    RedisUnreachable: {{for: 1s, fail_after: 2, resolve_after: 2}}\n    AlertmanagerUnreachable: {{for: 1s}}\nrelay:\n  destinations:\n    - {{name: chain, type: webhook, url: '{}'}}\n",
        am.url(),
        redis.url(),
        saas.url("/hook")
    );
    let d = Daemon::start_on(lookout_port, &cfg);
    wait_for("healthy", Duration::from_secs(10), || {
        (d.metric("lookout_probe_success", &[("probe", "cache")]) == Some(1.0)).then_some(())
    });

    redis.stop();
    // Pushed to Alertmanager with lookout's labels, and routed back to the relay.
    let t0 = std::time::Instant::now();
    let alert = wait_for("RedisUnreachable in Alertmanager", Duration::from_secs(20), || {
        if t0.elapsed() > Duration::from_secs(19) {
            eprintln!("lookout: {}\nalerts: {:?}", d.logs(), support::http_get(d.port, "/api/v1/alerts"));
        }
        am.alerts()
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == "RedisUnreachable")
            .cloned()
    });
    assert_eq!(alert["labels"]["probe"], "cache");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert!(alert["annotations"]["summary"].as_str().unwrap().contains("cache"));
    wait_for("delivered via Alertmanager", Duration::from_secs(20), || {
        names(&saas.received_on("/hook"), "firing")
            .contains(&"RedisUnreachable".to_string())
            .then_some(())
    });
    assert_eq!(saas.received_on("/hook")[0].body["receiver"], "lookout");

    redis.restart();
    wait_for("resolved via Alertmanager", Duration::from_secs(20), || {
        names(&saas.received_on("/hook"), "resolved")
            .contains(&"RedisUnreachable".to_string())
            .then_some(())
    });

    // Alertmanager down: its own outage is alerted, straight through the relay.
    am.stop();
    wait_for("AlertmanagerUnreachable through the relay", Duration::from_secs(20), || {
        names(&saas.received_on("/hook"), "firing")
            .contains(&"AlertmanagerUnreachable".to_string())
            .then_some(())
    });
    // And a Redis outage still reaches a person.
    let before = names(&saas.received_on("/hook"), "firing")
        .iter()
        .filter(|n| *n == "RedisUnreachable")
        .count();
    redis.stop();
    wait_for("RedisUnreachable without Alertmanager", Duration::from_secs(20), || {
        (names(&saas.received_on("/hook"), "firing")
            .iter()
            .filter(|n| *n == "RedisUnreachable")
            .count()
            > before)
            .then_some(())
    });
    let via_relay = saas
        .received_on("/hook")
        .into_iter()
        .rev()
        .find(|r| r.body["alerts"][0]["labels"]["alertname"] == "RedisUnreachable")
        .unwrap();
    assert!(
        via_relay.body["groupKey"].as_str().unwrap().contains("lookout"),
        "synthesised by lookout: {}",
        via_relay.body
    );
}

#[test]
fn hysteresis_keeps_a_flapping_probe_quiet() {
    let redis = Redis::start(&[]);
    let saas = SaaS::start();
    let flaky = support::health::HealthStandIn::start("/h", support::health::Behaviour::Flapping);
    let cfg = format!(
        "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\nprobes:\n  - {{name: cache, kind: redis, url: '{}', every: 300ms}}\n  - {{name: web, kind: http_health, url: '{}', every: 300ms, timeout: 250ms}}\nalerts:\n  evaluation_interval: 100ms\n  rules:\n    HealthEndpointDown: {{for: 100ms, fail_after: 3, resolve_after: 3}}\nrelay:\n  destinations:\n    - {{name: chain, type: webhook, url: '{}'}}\n",
        redis.url(),
        flaky.url("/h"),
        saas.url("/hook")
    );
    let d = Daemon::start(&cfg);
    // Every other check fails: never three in a row.
    wait_for("enough checks", Duration::from_secs(20), || {
        (d.metric("lookout_probe_runs_total", &[("probe", "web"), ("result", "status")])
            .unwrap_or(0.0)
            >= 8.0)
            .then_some(())
    });
    assert!(saas.received_on("/hook").is_empty(), "a flapping endpoint does not page");
    let alerts = support::http_get(d.port, "/api/v1/alerts").unwrap().1;
    assert!(!alerts.contains("\"firing\""), "{alerts}");
}

/// The firing and resolved notices of `alertname` received by `hook`.
fn count(received: &[support::saas::Received], status: &str, alertname: &str) -> usize {
    names(received, status).iter().filter(|n| *n == alertname).count()
}

/// lookout with `cfg`, once its probe `web` has seen the endpoint healthy.
fn start_watching_web(cfg: &str) -> Daemon {
    let d = Daemon::start(cfg);
    wait_for("a healthy endpoint", Duration::from_secs(10), || {
        (d.metric("lookout_probe_success", &[("probe", "web")]) == Some(1.0)).then_some(())
    });
    d
}

#[test]
fn a_healthy_alertmanager_is_the_only_path_for_synthetic_alerts() {
    // Redis behind a health endpoint: stopping it takes the endpoint down.
    let mut redis = Redis::start(&[]);
    let web = support::health::HealthStandIn::start("/h", support::health::Behaviour::Documented(redis.url()));
    // Alertmanager delivers to one receiver, lookout's relay to another, so
    // that every notice says which way it went.
    let via_am = SaaS::start();
    let via_relay = SaaS::start();
    let am = Alertmanager::start(&format!(
        "route:\n  receiver: hook\n  group_by: [alertname, probe]\n  group_wait: 1s\n  group_interval: 1s\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: '{}'\n        send_resolved: true\n",
        via_am.url("/hook")
    ));
    let cfg = format!(
        "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\nalertmanager:\n  url: {}\n  timeout: 1s\nprobes:\n  - {{name: web, kind: http_health, url: '{}', every: 500ms, timeout: 400ms}}\nalerts:\n  evaluation_interval: 500ms\n  resend_delay: 2s\n  rules:\n    HealthEndpointDown: {{for: 1s, fail_after: 1}}\nrelay:\n  destinations:\n    - {{name: chain, type: webhook, url: '{}'}}\n",
        am.url(),
        web.url("/h"),
        via_relay.url("/hook")
    );
    let d = start_watching_web(&cfg);
    let pushed = || {
        d.metric(
            "lookout_alert_notifications_total",
            &[("via", "alertmanager"), ("outcome", "success")],
        )
        .unwrap_or(0.0)
    };
    let relayed = || d.metric("lookout_alert_notifications_total", &[("via", "relay")]);
    // Waits for the notice `status` through Alertmanager, then for two more
    // pushes: by then lookout has had several rounds with nothing due, each
    // a chance to page through the relay as well. It must not have.
    let only_through_alertmanager = |status: &str| {
        wait_for(&format!("{status} through Alertmanager"), Duration::from_secs(20), || {
            (count(&via_am.received_on("/hook"), status, "HealthEndpointDown") > 0).then_some(())
        });
        let from = pushed();
        wait_for("two more pushes to Alertmanager", Duration::from_secs(20), || {
            (pushed() >= from + 2.0).then_some(())
        });
        assert!(
            via_relay.received_on("/hook").is_empty() && relayed().is_none(),
            "{status} went around a healthy Alertmanager too: relay received {:?}, relay notifications {:?}\nlookout: {}",
            via_relay.received_on("/hook").iter().map(|r| &r.body).collect::<Vec<_>>(),
            relayed(),
            d.logs()
        );
    };

    redis.stop();
    only_through_alertmanager("firing");
    redis.restart();
    only_through_alertmanager("resolved");
}

#[test]
fn health_endpoint_down_fires_after_fail_after_and_for_not_before() {
    let mut redis = Redis::start(&[]);
    let web = support::health::HealthStandIn::start("/h", support::health::Behaviour::Documented(redis.url()));
    let saas = SaaS::start();
    let cfg = format!(
        "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\nprobes:\n  - {{name: web, kind: http_health, url: '{}', every: 200ms, timeout: 150ms}}\nalerts:\n  evaluation_interval: 100ms\n  rules:\n    HealthEndpointDown: {{for: 2s, fail_after: 3, resolve_after: 2}}\nrelay:\n  destinations:\n    - {{name: chain, type: webhook, url: '{}'}}\n",
        web.url("/h"),
        saas.url("/hook")
    );
    let d = start_watching_web(&cfg);
    let instance = || -> Option<serde_json::Value> {
        let (_, body) = support::http_get(d.port, "/api/v1/alerts")?;
        let list: serde_json::Value = serde_json::from_str(&body).ok()?;
        list.as_array()?
            .iter()
            .find(|i| i["labels"]["alertname"] == "HealthEndpointDown")
            .cloned()
    };

    redis.stop();
    // Every state seen on the way: not pending before three failed checks,
    // not firing before `for:` has run in pending.
    let mut seen_pending = None;
    let fired = wait_for("HealthEndpointDown firing", Duration::from_secs(20), || {
        let i = instance()?;
        let failing = i["failing"].as_u64().unwrap_or(0);
        match i["state"].as_str()? {
            "inactive" => assert!(failing < 3, "inactive after {failing} failed checks: {i}"),
            "pending" => {
                assert!(failing >= 3, "pending after only {failing} failed checks: {i}");
                seen_pending = Some(i.clone());
            }
            "firing" => return Some(i),
            other => panic!("unknown state {other}: {i}"),
        }
        None
    });
    let pending = seen_pending.expect("a pending stage before firing (for: 2s)");
    let since = pending["pending_since"].as_f64().unwrap();
    let fired_at = fired["fired_at"].as_f64().unwrap();
    assert!(
        fired_at - since >= 2.0,
        "fired {:.2} s after pending, before for: 2s",
        fired_at - since
    );
    assert!(fired["failing"].as_u64().unwrap() >= 3, "{fired}");
    // Notified once, as of the firing: nothing went out while pending.
    wait_for("the firing notice", Duration::from_secs(10), || {
        (count(&saas.received_on("/hook"), "firing", "HealthEndpointDown") == 1).then_some(())
    });
    let notices = saas.received_on("/hook");
    assert_eq!(notices.len(), 1, "{:?}", notices.iter().map(|r| &r.body).collect::<Vec<_>>());
    assert_eq!(
        notices[0].body["alerts"][0]["startsAt"],
        lookout::alert::alertmanager::rfc3339(fired_at).as_str(),
        "the notice is of this firing"
    );

    redis.restart();
    wait_for("the resolve", Duration::from_secs(20), || {
        (count(&saas.received_on("/hook"), "resolved", "HealthEndpointDown") == 1).then_some(())
    });
    assert_eq!(count(&saas.received_on("/hook"), "firing", "HealthEndpointDown"), 1);
}

#[test]
fn the_relay_resolves_alertmanager_unreachable_once_alertmanager_is_back() {
    let redis = Redis::start(&[]);
    let via_relay = SaaS::start();
    let via_am = SaaS::start();
    // First an Alertmanager address where nothing listens.
    let nowhere = support::free_port();
    let cfg = |am_url: &str| {
        format!(
            "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\nalertmanager:\n  url: {am_url}\n  timeout: 1s\nprobes:\n  - {{name: cache, kind: redis, url: '{}', every: 500ms}}\nalerts:\n  evaluation_interval: 500ms\n  resend_delay: 2s\n  rules:\n    AlertmanagerUnreachable: {{for: 1s}}\nrelay:\n  destinations:\n    - {{name: chain, type: webhook, url: '{}'}}\n",
            redis.url(),
            via_relay.url("/hook")
        )
    };
    let d = Daemon::start(&cfg(&format!("http://127.0.0.1:{nowhere}")));
    wait_for("AlertmanagerUnreachable through the relay", Duration::from_secs(20), || {
        (count(&via_relay.received_on("/hook"), "firing", "AlertmanagerUnreachable") > 0).then_some(())
    });

    // An Alertmanager appears (a reload points lookout at it).
    let am = Alertmanager::start(&format!(
        "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: '{}'\n        send_resolved: true\n",
        via_am.url("/hook")
    ));
    d.write_config(&cfg(&am.url()));
    support::send_signal(d.proc.pid(), libc::SIGHUP);
    // The relay told a person Alertmanager was unreachable: it tells them
    // it is back, whatever Alertmanager itself makes of an alert that
    // resolved within its group_wait.
    wait_for(
        "AlertmanagerUnreachable resolved through the relay",
        Duration::from_secs(20),
        || (count(&via_relay.received_on("/hook"), "resolved", "AlertmanagerUnreachable") > 0).then_some(()),
    );
    assert_eq!(
        count(&via_relay.received_on("/hook"), "firing", "AlertmanagerUnreachable"),
        1,
        "one notice, no reminder: {:?}",
        via_relay.received_on("/hook").iter().map(|r| &r.body).collect::<Vec<_>>()
    );
}
