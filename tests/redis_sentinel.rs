//! `kind: redis_sentinel` against a real master, two replicas and three
//! sentinels, through a failover.

mod support;

use std::time::Duration;

use lookout::probe::{self, topology::Topology};
use support::topology::{MASTER_NAME, SentinelSetup};
use support::{Daemon, lookout, wait_for};

fn topology(o: &probe::Observation) -> &Topology {
    o.facts.topology.as_deref().unwrap_or_else(|| panic!("no topology in {o:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn follows_a_sentinel_failover_and_counts_it_once() {
    let s = SentinelSetup::start(2, 3, 5000);
    let h = support::build_probe(&format!(
        "  - name: ha\n    kind: redis_sentinel\n    sentinels: {}\n    master_name: {MASTER_NAME}\n    every: 1s\n    timeout: 2s\n",
        s.sentinel_list()
    ));
    let old = format!("127.0.0.1:{}", s.master.port);
    let old_run_id = s.master.run_id();
    let o = probe::run(&h).await;
    assert!(o.ok, "{o:?}");
    let t = topology(&o);
    assert_eq!(t.master.as_deref(), Some(old.as_str()));
    assert_eq!(t.sentinels_agree, Some(true));
    assert_eq!(t.quorum_ok, Some(true), "{:?}", t.quorum_message);
    assert_eq!(t.nodes.len(), 3);
    assert_eq!(t.nodes[0].role, "master");
    assert_eq!(
        o.facts.run_id.as_deref(),
        Some(old_run_id.as_str()),
        "the probe's values are the master's"
    );
    for n in &t.nodes[1..] {
        assert_eq!(n.role, "replica");
        assert!(n.ok, "{n:?}");
        assert_eq!(n.link_up, Some(true), "{n:?}");
        assert!(n.lag_bytes.is_some_and(|b| b >= 0.0) && n.lag_seconds.is_some(), "{n:?}");
    }
    assert_eq!(t.claimed_masters(), 1);
    assert!(t.failover.is_none());

    s.sentinels[0].cli(&["SENTINEL", "FAILOVER", MASTER_NAME]);
    let mut failovers = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let new = loop {
        assert!(std::time::Instant::now() < deadline, "no new master within 20 s");
        let o = probe::run(&h).await;
        if let Some(t) = o.facts.topology.as_deref() {
            failovers.extend(t.failover.clone());
            if o.ok && t.master.as_deref() != Some(old.as_str()) {
                break t.master.clone().unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // A few more runs: the change is reported by one run only.
    for _ in 0..3 {
        let o = probe::run(&h).await;
        failovers.extend(topology(&o).failover.clone());
        assert_eq!(topology(&o).last_failover.as_ref().map(|f| f.to.as_str()), Some(new.as_str()));
    }
    assert_eq!(failovers.len(), 1, "{failovers:?}");
    assert_eq!(failovers[0].from, old);
    assert_eq!(failovers[0].from_run_id.as_deref(), Some(old_run_id.as_str()));
    assert_eq!(failovers[0].to, new);
    let o = probe::run(&h).await;
    let t = topology(&o);
    let now_master = t.nodes.iter().find(|n| n.address == new).unwrap();
    assert_eq!(now_master.role, "master");
    assert!(
        t.nodes.iter().any(|n| n.address == old && n.role == "replica"),
        "the former master is listed as a replica: {t:?}"
    );
}

#[test]
fn daemon_follows_a_killed_master_and_shows_the_failover() {
    let mut s = SentinelSetup::start(2, 3, 1000);
    let cfg = format!(
        "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\nprobes:\n  - name: ha\n    kind: redis_sentinel\n    sentinels: {}\n    master_name: {MASTER_NAME}\n    every: 500ms\n    timeout: 1s\n",
        s.sentinel_list()
    );
    // One-shot first: `lookout check --format json` has the topology.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lookout.yaml");
    std::fs::write(
        &path,
        cfg.replace("{listen}", "127.0.0.1:0")
            .replace("{data_dir}", &dir.path().display().to_string()),
    )
    .unwrap();
    let out = lookout().args(["check", "--format", "json", "-c"]).arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let old = format!("127.0.0.1:{}", s.master.port);
    assert_eq!(json[0]["topology"]["master"], old.as_str(), "{json}");
    let roles: Vec<&str> = json[0]["topology"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["master", "replica", "replica"]);
    let out = lookout().args(["check", "-c"]).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("master={old} replicas=2/2 sentinels=3/3 quorum=ok")),
        "{text}"
    );

    let d = Daemon::start(&cfg);
    let labels = [("probe", "ha")];
    wait_for("the first run", Duration::from_secs(10), || {
        d.metric("lookout_redis_masters", &labels).filter(|m| *m == 1.0)
    });
    assert_eq!(d.metric("lookout_redis_failovers_total", &labels), Some(0.0));
    assert_eq!(d.metric("lookout_redis_sentinel_quorum_ok", &labels), Some(1.0));
    assert_eq!(d.metric("lookout_redis_sentinels_up", &labels), Some(3.0));

    s.master.stop();
    let killed = std::time::Instant::now();
    let new_port = wait_for("the sentinels to promote a replica", Duration::from_secs(15), || {
        s.sentinels[0].master_port().filter(|p| *p != s.master.port)
    });
    let promoted = killed.elapsed();
    let new = format!("127.0.0.1:{new_port}");
    wait_for("lookout to report the new master", Duration::from_secs(3), || {
        d.metric("lookout_redis_node_role", &[("probe", "ha"), ("node", &new), ("role", "master")])
            .filter(|v| *v == 1.0)
    });
    let seen = killed.elapsed();
    println!("kill -9 → sentinels promoted {promoted:?}, lookout reported {seen:?}");
    assert_eq!(d.metric("lookout_redis_failovers_total", &labels), Some(1.0));
    assert_eq!(
        d.metric("lookout_redis_node_role", &[("probe", "ha"), ("node", &old), ("role", "master")]),
        Some(0.0)
    );
    assert_eq!(d.metric("lookout_redis_node_up", &[("probe", "ha"), ("node", &old)]), Some(0.0));
    let page = support::http_get(d.port, "/").unwrap().1;
    assert!(
        page.contains(&format!("Last failover: <code>{old}</code> → <code>{new}</code>")),
        "{page}"
    );
    assert_eq!(d.logs().matches("Redis master changed").count(), 1, "{}", d.logs());
    // The history keeps the observation that saw the change, failover and all.
    let history = d.dir.path().join("data").join("history.db");
    let stored = wait_for("the failover in the history", Duration::from_secs(5), || {
        let c = rusqlite::Connection::open(&history).ok()?;
        c.query_row(
            "SELECT reading FROM observations WHERE probe = 'ha' AND json_extract(reading, '$.facts.topology.failover') IS NOT NULL",
            [],
            |r| r.get::<_, String>(0),
        )
        .ok()
    });
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["facts"]["topology"]["failover"]["from"], old.as_str());
    assert_eq!(stored["facts"]["topology"]["failover"]["to"], new.as_str());
    // Still one after two more runs.
    let last = || d.metric("lookout_probe_last_run_timestamp_seconds", &labels).unwrap_or(0.0);
    let t0 = last();
    wait_for("two more runs", Duration::from_secs(5), || (last() > t0 + 0.9).then_some(()));
    assert_eq!(d.metric("lookout_redis_failovers_total", &labels), Some(1.0));
}

#[test]
fn the_crosscheck_follows_the_master_and_names_a_source_left_behind() {
    use support::health::{Behaviour, HealthStandIn};
    let s = SentinelSetup::start(2, 3, 5000);
    let old = format!("127.0.0.1:{}", s.master.port);
    // An endpoint whose REDIS_URL still names the master of before.
    let stuck = HealthStandIn::start("/h", Behaviour::Documented(s.master.url()));
    let cfg = format!(
        "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\ncrosscheck:\n  reference: ha\n  every: 1s\n  max_staleness: 5s\nprobes:\n  - name: ha\n    kind: redis_sentinel\n    sentinels: {}\n    master_name: {MASTER_NAME}\n    every: 500ms\n    timeout: 1s\n  - name: stuck\n    kind: http_health\n    url: {}\n    every: 500ms\n",
        s.sentinel_list(),
        stuck.url("/h")
    );
    let d = Daemon::start(&cfg);
    let entry = |metric: &str| {
        let (_, body) = support::http_get(d.port, "/report?format=json")?;
        let report: serde_json::Value = serde_json::from_str(&body).ok()?;
        report["entries"]
            .as_array()?
            .iter()
            .find(|e| e["source"] == "stuck" && e["metric"] == metric)
            .cloned()
    };
    // Before the failover the endpoint reads the master: configuration agrees.
    wait_for("maxclients to agree", Duration::from_secs(15), || {
        entry("maxclients").filter(|e| e["verdict"] == "agree")
    });
    s.sentinels[0].cli(&["SENTINEL", "FAILOVER", MASTER_NAME]);
    let e = wait_for("the endpoint left behind to be named", Duration::from_secs(20), || {
        entry("maxclients").filter(|e| e["verdict"] == "disagree")
    });
    let reason = e["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "stuck reports run_id {} of the former master {old}; it did not follow the failover to 127.0.0.1:",
            s.master.run_id()
        )),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_a_broken_replication_link_and_a_lost_quorum() {
    let mut s = SentinelSetup::start(2, 3, 1000);
    let h = support::build_probe(&format!(
        "  - name: ha\n    kind: redis_sentinel\n    sentinels: {}\n    master_name: {MASTER_NAME}\n    every: 1s\n    timeout: 2s\n",
        s.sentinel_list()
    ));
    let replica = format!("127.0.0.1:{}", s.replicas[0].port);
    // The replica follows an address nobody answers on.
    let dead = support::free_port().to_string();
    s.replicas[0].cli(&["REPLICAOF", "127.0.0.1", &dead]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let o = probe::run(&h).await;
        let n = topology(&o).nodes.iter().find(|n| n.address == replica).cloned();
        if n.as_ref().is_some_and(|n| n.link_up == Some(false)) {
            assert!(o.ok, "a replica's link down is a fact, not a failed run: {o:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "link down not reported: {n:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Two of three sentinels stopped: the last one still names the master,
    // but no failover could be authorised.
    s.sentinels[1].stop();
    s.sentinels[2].stop();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let o = probe::run(&h).await;
        let t = topology(&o);
        if t.quorum_ok == Some(false) {
            assert_eq!(t.sentinels.iter().filter(|v| v.ok).count(), 1);
            assert_eq!(t.master.as_deref(), Some(format!("127.0.0.1:{}", s.master.port).as_str()));
            assert!(
                t.quorum_message.as_deref().is_some_and(|m| m.contains("NOQUORUM")),
                "{:?}",
                t.quorum_message
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "quorum loss not reported: {t:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn verify_after_failover_names_the_new_master_and_a_source_left_behind() {
    use support::health::{Behaviour, HealthStandIn};
    let s = SentinelSetup::start(2, 3, 5000);
    let old = format!("127.0.0.1:{}", s.master.port);
    let old_run_id = s.master.run_id();
    // The rules part reads Prometheus: the guide's rules over an exporter
    // beside each node, as a sidecar would be, so one of them reads
    // whichever node is promoted.
    let exporters: Vec<support::Exporter> = std::iter::once(&s.master)
        .chain(s.replicas.iter())
        .map(|n| support::Exporter::start(&n.url()))
        .collect();
    let jobs: Vec<(String, String)> = exporters
        .iter()
        .enumerate()
        .map(|(i, e)| (format!("redis{i}"), format!("127.0.0.1:{}", e.port)))
        .collect();
    let jobs: Vec<(&str, String)> = jobs.iter().map(|(j, t)| (j.as_str(), t.clone())).collect();
    let rules = support::root().join("deploy/prometheus/alerts/redis.rules.yml");
    let prom = support::prometheus_with_rules(&jobs, &[rules], &format!("127.0.0.1:{}", support::free_port()));
    // A Prometheus whose only exporter stays on the former master's address.
    let prom_old = support::Prometheus::start(&[("redis", jobs[0].1.clone())]);
    let stuck = HealthStandIn::start("/h", Behaviour::Documented(s.master.url()));
    // A daemon records the master before the change, and sees the change.
    let d = Daemon::start(&format!(
        "server:\n  listen: {{listen}}\ndata_dir: {{data_dir}}\nprobe_files: []\nprobes:\n  - name: ha\n    kind: redis_sentinel\n    sentinels: {}\n    master_name: {MASTER_NAME}\n    every: 500ms\n    timeout: 1s\n",
        s.sentinel_list()
    ));
    wait_for("the daemon's first run", Duration::from_secs(10), || {
        d.metric("lookout_redis_masters", &[("probe", "ha")]).filter(|m| *m == 1.0)
    });

    s.sentinels[0].cli(&["SENTINEL", "FAILOVER", MASTER_NAME]);
    let new_port = wait_for("the sentinels to promote a replica", Duration::from_secs(20), || {
        s.sentinels[0].master_port().filter(|p| *p != s.master.port)
    });
    let new = format!("127.0.0.1:{new_port}");
    let promoted = s.replicas.iter().find(|r| r.port == new_port).expect("a replica promoted");
    let followed = HealthStandIn::start("/h", Behaviour::Documented(promoted.url()));
    // Lookups on the new master, so the hit ratio has something to compare.
    let _traffic = support::Traffic::start(&promoted.url());

    let dir = tempfile::tempdir().unwrap();
    let config_on = |file: &str, endpoint: &str, data: &std::path::Path, prom_url: &str| {
        let path = dir.path().join(file);
        std::fs::write(
            &path,
            format!(
                "data_dir: {}\nprobe_files: []\nprometheus:\n  url: {prom_url}\ncrosscheck:\n  reference: ha\nprobes:\n  - name: ha\n    kind: redis_sentinel\n    sentinels: {}\n    master_name: {MASTER_NAME}\n    timeout: 2s\n  - name: web\n    kind: http_health\n    url: {endpoint}\n",
                data.display(),
                s.sentinel_list(),
            ),
        )
        .unwrap();
        path
    };
    let config = |file: &str, endpoint: &str, data: &std::path::Path| config_on(file, endpoint, data, &prom.url());
    let verify = |path: &std::path::Path, args: &[&str]| {
        let out = lookout()
            .args(["verify", "--after", "failover", "--timeout", "30s"])
            .args(args)
            .arg("-c")
            .arg(path)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };

    // The endpoint followed: once the former master has rejoined as a
    // replica and the rules are evaluated, it passes and names the new master.
    let empty = dir.path().join("data");
    let honest = config("followed.yaml", &followed.url("/h"), &empty);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let out = loop {
        let (code, out) = verify(&honest, &["--previous-run-id", &old_run_id]);
        if code == 0 {
            break out;
        }
        assert!(std::time::Instant::now() < deadline, "never passed (exit {code}):\n{out}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(out.contains("Verify PASSED after a failover"), "{out}");
    assert!(
        out.contains(&format!("new master {new} (run_id ")) && out.contains(&format!("before: {old} (run_id {old_run_id})")),
        "{out}"
    );
    assert!(
        out.contains(&format!("replica {old}")),
        "the former master is checked as a replica: {out}"
    );
    // The exporter beside the new master reads it as master, and the
    // former master's series say `slave` now.
    assert!(
        out.contains(&format!("the new master {new} (run_id ")),
        "exporter on the new master: {out}"
    );
    assert!(
        out.contains(&format!("the former master {old} is no longer master")),
        "no stale master series: {out}"
    );

    // A Prometheus whose exporter stayed on the former master's address:
    // the exporter did not follow, named with what Prometheus holds.
    let behind = config_on("exporter-behind.yaml", &followed.url("/h"), &empty, &prom_old.url());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let out = loop {
        let (code, out) = verify(&behind, &["--previous-run-id", &old_run_id, "--format", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        let case = v["cases"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == "exporter on the new master")
            .cloned();
        if case.as_ref().is_some_and(|c| c["status"] == "fail") {
            assert_eq!(code, 1, "{out}");
            break case.unwrap()["detail"].as_str().unwrap_or("").to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the exporter left behind was not named: {out}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        out.contains(&format!("no exporter reads the new master {new}")) && out.contains(&format!("run_id {old_run_id} as role slave")),
        "{out}"
    );

    // Without the former run_id and with no history, it cannot tell.
    let (code, out) = verify(&honest, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("give --previous-run-id"), "{out}");

    // With the daemon's history, the former master is the one it recorded.
    wait_for("the daemon to see the failover", Duration::from_secs(10), || {
        d.metric("lookout_redis_failovers_total", &[("probe", "ha")]).filter(|m| *m == 1.0)
    });
    let recorded = config("recorded.yaml", &followed.url("/h"), &d.dir.path().join("data"));
    let (code, out) = verify(&recorded, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("before: {old} (run_id {old_run_id})")), "{out}");

    // An endpoint still on the former master: named by the cross-check.
    let left = config("stuck.yaml", &stuck.url("/h"), &empty);
    let (code, out) = verify(&left, &["--previous-run-id", &old_run_id, "--format", "json"]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let named = v["cases"].as_array().unwrap().iter().any(|c| {
        c["suite"] == "crosscheck"
            && c["status"] == "fail"
            && c["detail"].as_str().unwrap_or("").contains(&format!(
                "web reports run_id {old_run_id} of the former master {old}; it did not follow the failover to {new}"
            ))
    });
    assert!(named, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sentinels_not_configured_are_found_and_counted() {
    let s = SentinelSetup::start(1, 3, 5000);
    // Only the first sentinel is configured.
    let h = support::build_probe(&format!(
        "  - name: ha\n    kind: redis_sentinel\n    sentinels: [{}]\n    master_name: {MASTER_NAME}\n    every: 1s\n    timeout: 2s\n",
        s.sentinels[0].address()
    ));
    let up = |t: &Topology| {
        let mut a: Vec<String> = t.sentinels.iter().filter(|v| v.ok).map(|v| v.address.clone()).collect();
        a.sort();
        a
    };
    let o = probe::run(&h).await;
    let t = topology(&o);
    let mut want: Vec<String> = s.sentinels.iter().map(|x| x.address()).collect();
    want.sort();
    assert_eq!(up(t), want, "found in the first run: {t:?}");
    assert_eq!(t.sentinels_agree, Some(true));

    // A sentinel added later counts once the others know it.
    let added = support::topology::Sentinel::start(s.master.port, 5000);
    wait_for("the sentinels to know the new one", Duration::from_secs(15), || {
        s.sentinels[0]
            .cli(&["SENTINEL", "SENTINELS", MASTER_NAME])
            .contains(&added.port.to_string())
            .then_some(())
    });
    want.push(added.address());
    want.sort();
    let o = probe::run(&h).await;
    let t = topology(&o);
    assert_eq!(up(t), want, "{t:?}");
    assert_eq!(t.sentinels.len(), 4, "each sentinel once: {t:?}");
}
