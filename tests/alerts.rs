//! Alerts end to end: the guide's rules in a real Prometheus, routed by a
//! real Alertmanager to lookout's relay and on to the stand-ins; and
//! lookout's own synthetic alerts, through Alertmanager and, when it is
//! down, straight through the relay: each built-in rule, reminders,
//! resends, a restart in the middle of an incident, the connectivity check
//! and maintenance windows.

mod support;

use std::time::Duration;

use support::health::{Behaviour, HealthStandIn};
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
    let instance = || instance_of(&d, "HealthEndpointDown");

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

/// What every configuration here starts with.
const HEAD: &str = "server:\n  listen: {listen}\ndata_dir: {data_dir}\nprobe_files: []\n";

/// `relay:` with one webhook destination: `saas`'s `/hook`.
fn relay_to(saas: &SaaS) -> String {
    format!(
        "relay:\n  destinations:\n    - {{name: chain, type: webhook, url: '{}'}}\n",
        saas.url("/hook")
    )
}

/// The instance of `alertname` that lookout lists at `/api/v1/alerts`.
fn instance_of(d: &Daemon, alertname: &str) -> Option<serde_json::Value> {
    let (_, body) = support::http_get(d.port, "/api/v1/alerts")?;
    let list: serde_json::Value = serde_json::from_str(&body).ok()?;
    list.as_array()?.iter().find(|i| i["labels"]["alertname"] == alertname).cloned()
}

/// The alerts of the notices `hook` received for `alertname` with `status`.
fn notices(hook: &SaaS, status: &str, alertname: &str) -> Vec<serde_json::Value> {
    hook.received_on("/hook")
        .iter()
        .filter(|r| r.body["status"] == status)
        .flat_map(|r| r.body["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["labels"]["alertname"] == alertname)
        .collect()
}

/// Waits for `alertname`'s first firing notice through the relay and
/// returns that alert (labels, annotations) once lookout has had time to
/// send a second one, which it must not have.
fn fires_once(d: &Daemon, hook: &SaaS, alertname: &str, timeout: Duration) -> serde_json::Value {
    let t0 = std::time::Instant::now();
    let first = wait_for(&format!("{alertname} firing through the relay"), timeout, || {
        if t0.elapsed() + Duration::from_millis(100) > timeout {
            eprintln!(
                "lookout: {}\ninstances: {:?}",
                d.logs(),
                support::http_get(d.port, "/api/v1/alerts")
            );
        }
        notices(hook, "firing", alertname).into_iter().next()
    });
    wait_checks(d, 3.0);
    let all = notices(hook, "firing", alertname);
    assert_eq!(all.len(), 1, "{alertname} notified once: {all:?}");
    first
}

/// Waits until lookout's probes have made `n` more checks.
fn wait_checks(d: &Daemon, n: f64) {
    let from = checks_made(d);
    wait_for(&format!("{n} more checks"), Duration::from_secs(20), || {
        (checks_made(d) >= from + n).then_some(())
    });
}

/// The figure in a notified alert's description between `before` and `after`.
fn described_figure(alert: &serde_json::Value, before: &str, after: &str) -> f64 {
    let description = alert["annotations"]["description"].as_str().unwrap_or("");
    description
        .strip_prefix(before)
        .and_then(|d| d.strip_suffix(after))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("description `{description}` is not `{before}<figure>{after}`"))
}

/// Probe runs so far, all results together: each is a new check for the rules.
fn checks_made(d: &Daemon) -> f64 {
    d.metrics()
        .lines()
        .filter(|l| l.starts_with("lookout_probe_runs_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// The labels and annotations of a notified alert are exactly these.
fn assert_says(alert: &serde_json::Value, labels: serde_json::Value, annotations: &[(&str, &str)]) {
    assert_eq!(alert["labels"], labels, "{alert}");
    for (k, v) in annotations {
        assert_eq!(alert["annotations"][k], *v, "annotation `{k}`: {alert}");
    }
}

/// A documented health endpoint body with fixed figures (no Redis behind).
fn endpoint_body(latency_ms: f64) -> serde_json::Value {
    serde_json::json!({"status": "ok", "redis": {"ping": "PONG", "latency_ms": latency_ms, "hits": 1, "misses": 1, "hit_ratio": 0.5,
        "connected_clients": 1, "maxclients": 100, "used_memory": 1, "maxmemory": 0, "mem_fragmentation_ratio": 1.0}})
}

/// Unix seconds now.
fn unix_now() -> f64 {
    lookout::probe::unix_now()
}

/// An RFC 3339 time as Unix seconds.
fn unix(rfc3339: &str) -> Option<f64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp_millis() as f64 / 1000.0)
}

/// An endpoint that answers 503: `HealthEndpointDown` holds from its first check.
fn down_endpoint() -> HealthStandIn {
    HealthStandIn::start("/h", Behaviour::Unavailable("redis down"))
}

/// `probes:` (YAML items), then `alerts:` with rules evaluated every
/// 100 ms, `alerts` (more lines under it) and `rules` (lines under
/// `alerts.rules`).
fn config(probes: &str, alerts: &str, rules: &str) -> String {
    format!("probes:\n{probes}alerts:\n  evaluation_interval: 100ms\n{alerts}  rules:\n{rules}")
}

/// The probe `web` on `url`, checked every 200 ms.
fn web_probe(url: &str) -> String {
    format!("  - {{name: web, kind: http_health, url: '{url}', every: 200ms, timeout: 150ms}}\n")
}

/// The probe `cache` on `redis`, checked every 200 ms.
fn redis_probe(redis: &Redis) -> String {
    format!("  - {{name: cache, kind: redis, url: '{}', every: 200ms}}\n", redis.url())
}

/// [`config`] with the one probe `web` on `url`.
fn watching(url: &str, alerts: &str, rules: &str) -> String {
    config(&web_probe(url), alerts, rules)
}

/// The one firing notice, through the relay, of `rule` (`for: 100ms` and
/// `settings`, more keys of its flow mapping) over `probes`; `rest`: more
/// top-level sections.
fn first_notice(probes: &str, rule: &str, settings: &str, rest: &str) -> serde_json::Value {
    let saas = SaaS::start();
    let d = Daemon::start(&format!(
        "{HEAD}{rest}{}{}",
        config(probes, "", &format!("    {rule}: {{for: 100ms{settings}}}\n")),
        relay_to(&saas)
    ));
    fires_once(&d, &saas, rule, Duration::from_secs(30))
}

#[test]
fn a_firing_alert_is_reminded_through_the_relay_every_reminder() {
    let saas = SaaS::start();
    let web = down_endpoint();
    // The relay delivers identical payloads once within its dedup_window
    // (5m by default), and a reminder is the first notice again: the window
    // is kept below the reminder here.
    let d = Daemon::start(&format!(
        "{HEAD}{}{}  dedup_window: 1s\n",
        watching(
            &web.url("/h"),
            "",
            "    HealthEndpointDown: {for: 100ms, fail_after: 1, reminder: 2s}\n"
        ),
        relay_to(&saas)
    ));
    let firing = |saas: &SaaS| -> Vec<std::time::Instant> {
        saas.received_on("/hook")
            .iter()
            .filter(|r| r.body["status"] == "firing")
            .map(|r| r.at)
            .collect()
    };
    // The first notice and two reminders, `reminder` apart, not every round.
    let at = wait_for("two reminders", Duration::from_secs(20), || {
        let at = firing(&saas);
        (at.len() >= 3).then_some(at)
    });
    for pair in at.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(1500) && gap < Duration::from_millis(4000),
            "reminders {gap:?} apart, reminder: 2s\n{}",
            d.logs()
        );
    }
    // Reminders of the same incident, not new ones.
    let starts: Vec<serde_json::Value> = notices(&saas, "firing", "HealthEndpointDown")
        .iter()
        .map(|a| a["startsAt"].clone())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] == w[1]), "{starts:?}");
}

#[test]
fn alertmanager_gets_a_firing_alert_every_resend_delay_with_ends_at_four_resends_ahead() {
    let web = down_endpoint();
    let am = Alertmanager::start("route:\n  receiver: none\nreceivers:\n  - name: none\n");
    let resend = 1.0;
    let d = Daemon::start(&format!(
        "{HEAD}alertmanager:\n  url: {}\n  timeout: 1s\n{}",
        am.url(),
        watching(
            &web.url("/h"),
            "  resend_delay: 1s\n",
            "    HealthEndpointDown: {for: 100ms, fail_after: 1}\n"
        )
    ));
    // Every push lookout records (its `last_push`), and every `endsAt`
    // Alertmanager holds with when it was first seen.
    let mut pushes: Vec<f64> = Vec::new();
    let mut ends: Vec<(f64, f64)> = Vec::new();
    wait_for("six pushes", Duration::from_secs(30), || {
        if let Some(p) = instance_of(&d, "HealthEndpointDown").and_then(|i| i["last_push"].as_f64())
            && !pushes.contains(&p)
        {
            pushes.push(p);
        }
        let alerts = am.alerts();
        let held = alerts
            .as_array()
            .and_then(|a| a.iter().find(|a| a["labels"]["alertname"] == "HealthEndpointDown"))
            .and_then(|a| unix(a["endsAt"].as_str()?));
        if let Some(e) = held
            && !ends.iter().any(|(seen, _)| *seen == e)
        {
            ends.push((e, unix_now()));
        }
        (pushes.len() >= 6).then_some(())
    });
    // One push every resend_delay (rounds are 100 ms apart), not more often.
    for pair in pushes.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= resend && gap < 1.9 * resend, "pushes {gap:.3} s apart: {pushes:?}");
    }
    // endsAt four resend delays after the push that set it, as Prometheus does.
    assert!(ends.len() >= 4, "{ends:?}");
    for (e, seen) in &ends {
        let ahead = e - seen;
        assert!(
            ahead > 3.0 * resend + 0.2 && ahead <= 4.0 * resend + 0.05,
            "endsAt {ahead:.3} s ahead when first seen"
        );
        let latest = pushes.last().copied().unwrap_or(0.0);
        if e - 4.0 * resend <= latest {
            assert!(
                pushes.iter().any(|p| (e - 4.0 * resend - p).abs() < 0.002),
                "endsAt {e} is no push + {}s: {pushes:?}",
                4.0 * resend
            );
        }
    }
}

#[test]
fn an_alert_firing_at_sigterm_resolves_after_the_restart() {
    let mut redis = Redis::start(&[]);
    let web = HealthStandIn::start("/h", Behaviour::Documented(redis.url()));
    let saas = SaaS::start();
    // Both lookouts keep their state in the same data_dir.
    let data = tempfile::tempdir().unwrap();
    let cfg = format!(
        "{}{}{}",
        HEAD.replace("{data_dir}", &data.path().display().to_string()),
        watching(
            &web.url("/h"),
            "",
            "    HealthEndpointDown: {for: 100ms, fail_after: 1, resolve_after: 1}\n"
        ),
        relay_to(&saas)
    );
    let mut first = start_watching_web(&cfg);
    redis.stop();
    wait_for("the firing notice", Duration::from_secs(20), || {
        (count(&saas.received_on("/hook"), "firing", "HealthEndpointDown") == 1).then_some(())
    });
    // Stopped while firing, once the state file says so (and that the relay
    // announced it): when it fired.
    let persisted = || -> Option<f64> {
        let text = std::fs::read_to_string(data.path().join("alerts.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let [_, inst] = v.get("HealthEndpointDown/web")?.as_array()?.as_slice() else {
            return None;
        };
        (inst["state"] == "firing" && inst["last_relay"].is_f64()).then_some(inst["fired_at"].as_f64()?)
    };
    let fired_at = wait_for("the firing persisted", Duration::from_secs(10), persisted);
    let status = first.proc.terminate(Duration::from_secs(15)).expect("lookout stops on SIGTERM");
    assert!(status.success(), "SIGTERM is a clean stop: {status}\n{}", first.logs());

    // Back with the endpoint still down: the same incident goes on, not
    // announced again.
    let second = Daemon::start(&cfg);
    wait_checks(&second, 5.0);
    let inst = instance_of(&second, "HealthEndpointDown").expect("the instance survives the restart");
    assert_eq!(
        (&inst["state"], inst["fired_at"].as_f64()),
        (&serde_json::json!("firing"), Some(fired_at)),
        "{inst}"
    );
    assert_eq!(count(&saas.received_on("/hook"), "firing", "HealthEndpointDown"), 1);

    redis.restart();
    wait_for("the resolve after the restart", Duration::from_secs(20), || {
        (count(&saas.received_on("/hook"), "resolved", "HealthEndpointDown") == 1).then_some(())
    });
    assert_eq!(
        count(&saas.received_on("/hook"), "firing", "HealthEndpointDown"),
        1,
        "no second notice of the same firing after the restart\n{}",
        second.logs()
    );
}

#[test]
fn nothing_is_sent_while_the_connectivity_target_is_unreachable() {
    let saas = SaaS::start();
    let web = down_endpoint();
    let target = support::free_port();
    let d = Daemon::start(&format!(
        "{HEAD}{}{}",
        watching(
            &web.url("/h"),
            &format!("  connectivity_target: 127.0.0.1:{target}\n"),
            "    HealthEndpointDown: {for: 100ms, fail_after: 1}\n"
        ),
        relay_to(&saas)
    ));
    wait_for("lookout to see the network lost", Duration::from_secs(10), || {
        (d.metric("lookout_network_lost", &[]) == Some(1.0)).then_some(())
    });
    // Many failed checks, each of which alone would fire the rule.
    wait_checks(&d, 10.0);
    assert!(
        saas.received_on("/hook").is_empty(),
        "sent while the connectivity target is unreachable: {:?}",
        saas.received_on("/hook").iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    assert_eq!(d.metric("lookout_network_lost", &[]), Some(1.0));

    // The target answers again: the same condition now fires.
    let _back = std::net::TcpListener::bind(("127.0.0.1", target)).unwrap();
    fires_once(&d, &saas, "HealthEndpointDown", Duration::from_secs(20));
    assert_eq!(d.metric("lookout_network_lost", &[]), Some(0.0));
}

#[test]
fn inside_a_maintenance_window_a_firing_alert_sends_nothing_but_is_listed() {
    let saas = SaaS::start();
    let web = down_endpoint();
    let am = Alertmanager::start("route:\n  receiver: none\nreceivers:\n  - name: none\n");
    let hour = Duration::from_secs(3600);
    let now = std::time::SystemTime::now();
    let d = Daemon::start(&format!(
        "{HEAD}alertmanager:\n  url: {}\n  timeout: 1s\n{}{}",
        am.url(),
        watching(
            &web.url("/h"),
            &format!(
                "  resend_delay: 1s\n  maintenance:\n    - {{start: '{}', end: '{}'}}\n",
                humantime::format_rfc3339_seconds(now - hour),
                humantime::format_rfc3339_seconds(now + hour)
            ),
            "    HealthEndpointDown: {for: 100ms, fail_after: 1}\n"
        ),
        relay_to(&saas)
    ));
    // Firing, and still so two seconds (twenty rounds, two resend delays) later.
    let firing = wait_for("HealthEndpointDown firing for 2 s", Duration::from_secs(20), || {
        let i = instance_of(&d, "HealthEndpointDown").filter(|i| i["state"] == "firing")?;
        (unix_now() - i["fired_at"].as_f64()? >= 2.0).then_some(i)
    });
    assert_eq!(d.metric("lookout_maintenance_active", &[]), Some(1.0));
    assert_eq!(firing["labels"]["probe"], "web", "{firing}");
    assert_eq!(am.alerts(), serde_json::json!([]), "nothing pushed to Alertmanager");
    assert!(saas.received_on("/hook").is_empty(), "nothing through the relay");
    assert!(firing["last_push"].is_null() && firing["last_relay"].is_null(), "{firing}");
}

#[test]
fn health_endpoint_slow_fires_with_its_labels_and_annotations() {
    let web = HealthStandIn::start("/h", Behaviour::Fixed(endpoint_body(300.0)));
    let alert = first_notice(&web_probe(&web.url("/h")), "HealthEndpointSlow", ", threshold: 0.1", "");
    assert_says(
        &alert,
        serde_json::json!({"alertname": "HealthEndpointSlow", "severity": "warning", "probe": "web"}),
        &[
            ("summary", "Health endpoint web is slow"),
            ("description", "Redis round trip seen by web is 0.3 s (threshold 0.1 s)"),
        ],
    );
}

#[test]
fn redis_connection_exhaustion_fires_with_its_labels_and_annotations() {
    let redis = Redis::start(&["--maxclients", "20"]);
    // 17 held + lookout's own: 18 or more of 20, above 85%.
    let _hold: Vec<std::net::TcpStream> = (0..17)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap())
        .collect();
    let alert = first_notice(&redis_probe(&redis), "RedisConnectionExhaustion", "", "");
    assert_says(
        &alert,
        serde_json::json!({"alertname": "RedisConnectionExhaustion", "severity": "critical", "probe": "cache"}),
        &[("summary", "Redis connections near maxclients (cache)")],
    );
    let percent = described_figure(&alert, "connected_clients is ", "% of maxclients (threshold 85.0%)");
    assert!((90.0..=100.0).contains(&percent), "{alert}");
}

#[test]
fn redis_high_memory_usage_ignores_small_fragmentation_and_fires_near_maxmemory() {
    let redis = Redis::start(&["--maxmemory", "4mb"]);
    let saas = SaaS::start();
    // A small idle Redis: a huge ratio over a few wasted megabytes at most.
    let ratio = redis.info_field("mem_fragmentation_ratio").unwrap_or(0.0);
    let wasted = redis.info_field("mem_fragmentation_bytes").unwrap_or(f64::MAX);
    assert!(ratio > 1.8 && wasted < 100.0 * 1024.0 * 1024.0, "ratio {ratio}, wasted {wasted}");
    let d = Daemon::start(&format!(
        "{HEAD}{}{}",
        config(&redis_probe(&redis), "", "    RedisHighMemoryUsage: {for: 100ms}\n"),
        relay_to(&saas)
    ));
    // lookout reads the same ratio, over many checks, and stays quiet.
    wait_for("lookout to read the ratio", Duration::from_secs(10), || {
        d.metric("lookout_probe_value", &[("probe", "cache"), ("metric", "mem_fragmentation_ratio")])
            .filter(|r| *r > 1.8)
    });
    wait_checks(&d, 10.0);
    assert!(saas.received_on("/hook").is_empty(), "fired on an idle Redis's fragmentation");
    assert_eq!(
        d.metric("lookout_alerts", &[("alertname", "RedisHighMemoryUsage"), ("state", "pending")]),
        Some(0.0)
    );

    // Filled to above 90% of maxmemory.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_connection().unwrap();
    let value = "x".repeat(32 * 1024);
    for i in 0.. {
        let used = redis.info_field("used_memory").unwrap_or(0.0);
        if used / (4.0 * 1024.0 * 1024.0) > 0.93 {
            break;
        }
        assert!(i < 500, "cannot fill Redis: used {used}");
        let _: redis::RedisResult<()> = redis::cmd("SET").arg(format!("fill{i}")).arg(&value).query(&mut c);
    }
    let alert = fires_once(&d, &saas, "RedisHighMemoryUsage", Duration::from_secs(20));
    assert_says(
        &alert,
        serde_json::json!({"alertname": "RedisHighMemoryUsage", "severity": "critical", "probe": "cache"}),
        &[("summary", "Redis memory usage high (cache)")],
    );
    let usage = described_figure(&alert, "used/maxmemory: ", " (threshold 0.9)");
    assert!(usage > 0.9 && usage <= 1.0, "{alert}");
}

#[test]
fn cross_check_mismatch_fires_for_the_source_that_disagrees() {
    let redis = Redis::start(&[]);
    // It says maxclients is 100 and used_memory 1 byte: this Redis has neither.
    let web = HealthStandIn::start("/h", Behaviour::Fixed(endpoint_body(0.3)));
    let alert = first_notice(
        &format!("{}{}", redis_probe(&redis), web_probe(&web.url("/h"))),
        "CrossCheckMismatch",
        "",
        "crosscheck: {every: 1s, max_staleness: 5s}\n",
    );
    assert_says(
        &alert,
        serde_json::json!({"alertname": "CrossCheckMismatch", "severity": "warning", "probe": "web"}),
        &[("summary", "Sources disagree about Redis (web)")],
    );
    let description = alert["annotations"]["description"].as_str().unwrap_or("");
    let (n, metrics) = description
        .split_once(" metrics disagree with the reference: ")
        .or_else(|| description.split_once(" metric disagrees with the reference: "))
        .unwrap_or_else(|| panic!("{description}"));
    let names: Vec<&str> = metrics.split(", ").collect();
    assert_eq!(n.parse::<usize>().ok(), Some(names.len()), "{description}");
    assert!(
        names.contains(&"maxclients") && names.contains(&"used_memory_bytes"),
        "{description}"
    );
}

#[test]
fn monitoring_data_gap_fires_when_prometheuss_target_is_down() {
    let dead = support::free_port();
    let prom = support::Prometheus::start(&[("redis_exporter", format!("127.0.0.1:{dead}"))]);
    wait_for("Prometheus to see the target down", Duration::from_secs(20), || {
        (prom.query("up{job=\"redis_exporter\"}") == Some(0.0)).then_some(())
    });
    let probe = format!(
        "  - {{name: prom, kind: prometheus, url: '{}', selector: '{{job=\"redis_exporter\"}}', every: 500ms}}\n",
        prom.url()
    );
    let alert = first_notice(&probe, "MonitoringDataGap", "", "");
    assert_says(
        &alert,
        serde_json::json!({"alertname": "MonitoringDataGap", "severity": "warning", "probe": "prom"}),
        &[("summary", "Monitoring data gap (prom)")],
    );
    let description = alert["annotations"]["description"].as_str().unwrap_or("");
    assert!(description.contains("up == 0"), "{description}");
}

#[test]
fn a_rule_key_the_rule_does_not_use_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let check = |rules: &str| {
        let path = dir.path().join("lookout.yaml");
        std::fs::write(&path, format!("probe_files: []\nalerts:\n  rules:\n{rules}")).unwrap();
        let out = support::lookout().args(["config", "check", "-c"]).arg(&path).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = check("    CrossCheckMismatch: {threshold: 0.5}\n");
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("lookout.yaml:4:") && err.contains("`CrossCheckMismatch` does not use `threshold`"),
        "{err}"
    );
    // Located at the key's own line.
    let (code, err) = check("    RedisConnectionExhaustion:\n      for: 1m\n      threshold: 0.9\n      fragmentation_threshold: 2\n");
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("lookout.yaml:7:") && err.contains("`RedisConnectionExhaustion` does not use `fragmentation_threshold`"),
        "{err}"
    );
    // Where the rule uses it, the key is taken.
    let (code, err) = check("    RedisHighMemoryUsage: {threshold: 0.8, fragmentation_threshold: 2, min_wasted_bytes: 1000}\n");
    assert_eq!(code, Some(0), "{err}");
}
