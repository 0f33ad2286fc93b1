//! The cross-check, end to end, against the real thing: the Django and
//! FastAPI reference endpoints (run with redis-py), redis_exporter and
//! Prometheus scraping a real Redis under traffic, and lookout's daemon.
//! Honest sources must agree on every metric; each lie must be caught with
//! the right verdict; the status page must render and read well in Chromium.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::{Daemon, Exporter, Prometheus, PyEndpoint, Redis, Traffic, http_get, lookout};

/// Canonical metrics: a report has one entry per metric and source.
const METRICS: usize = 9;

/// Each entry's verdict by (source, metric).
type Verdicts = HashMap<(String, String), String>;

fn verdicts(report: &serde_json::Value) -> Verdicts {
    report["entries"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        (
                            e["source"].as_str().unwrap_or("").to_string(),
                            e["metric"].as_str().unwrap_or("").to_string(),
                        ),
                        e["verdict"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn honest_sources_agree_and_every_lie_is_caught() {
    let redis = Redis::start(&["--maxmemory", "256mb"]);
    let other = Redis::start(&[]);
    let _traffic = Traffic::start(&redis.url());
    let exporter = Exporter::start(&redis.url());
    let other_exporter = Exporter::start(&other.url());
    let dead_port = support::free_port();
    let prom = Prometheus::start(&[
        ("redis_a", format!("127.0.0.1:{}", exporter.port)),
        ("redis_b", format!("127.0.0.1:{}", other_exporter.port)),
        ("redis_c", format!("127.0.0.1:{dead_port}")),
    ]);
    let django = PyEndpoint::start("django", &redis.url(), None);
    let fastapi = PyEndpoint::start("fastapi", &redis.url(), None);
    let frozen = PyEndpoint::start("django", &redis.url(), Some("frozen_counters"));
    let kib = PyEndpoint::start("fastapi", &redis.url(), Some("memory_kib"));
    let elsewhere = PyEndpoint::start("django", &other.url(), None);
    let secs = PyEndpoint::start("fastapi", &redis.url(), Some("latency_seconds"));

    let probe = |name: &str, body: String| format!("  - name: {name}\n{body}    every: 1s\n    timeout: 2s\n");
    let http = |url: String| format!("    kind: http_health\n    url: {url}\n");
    let promq = |job: &str| format!("    kind: prometheus\n    url: {}\n    selector: '{{job=\"{job}\"}}'\n", prom.url());
    let mut cfg = String::from(
        "server:\n  listen: {listen}\ndata_dir: {data_dir}\nprobe_files: []\ncrosscheck:\n  every: 1s\n  max_staleness: 5s\nprobes:\n",
    );
    cfg.push_str(&probe("redis", format!("    kind: redis\n    url: {}\n", redis.url())));
    cfg.push_str(&probe("django", http(django.url())));
    cfg.push_str(&probe("fastapi", http(fastapi.url())));
    cfg.push_str(&probe("prometheus", promq("redis_a")));
    cfg.push_str(&probe("frozen", http(frozen.url())));
    cfg.push_str(&probe("kib", http(kib.url())));
    cfg.push_str(&probe("elsewhere", http(elsewhere.url())));
    cfg.push_str(&probe("secs", http(secs.url())));
    cfg.push_str(&probe("prom_wrong_selector", promq("redis_b")));
    cfg.push_str(&probe("prom_target_down", promq("redis_c")));
    let d = Daemon::start(&cfg);

    let honest = ["django", "fastapi", "prometheus"];
    let mut last = serde_json::Value::Null;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if std::time::Instant::now() > deadline {
            let odd: Vec<String> = last["entries"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|e| e["verdict"] != "agree")
                        .map(|e| format!("{}/{}: {} — {}", e["source"], e["metric"], e["verdict"], e["reason"]))
                        .collect()
                })
                .unwrap_or_default();
            panic!("the cross-check did not settle in 60s; entries not agreeing:\n{}", odd.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(250));
        let Some((200, body)) = http_get(d.port, "/report?format=json") else {
            continue;
        };
        let Ok(parsed) = serde_json::from_str::<serde_json::Value>(&body) else {
            continue;
        };
        last = parsed;
        let v = verdicts(&last);
        // Every one of a source's nine entries, not "all of none" before
        // its first reading.
        let all_nine = |source: &str, want: &str| {
            let of_source: Vec<&String> = v.iter().filter(|((src, _), _)| src == source).map(|(_, verdict)| verdict).collect();
            of_source.len() == METRICS && of_source.iter().all(|verdict| *verdict == want)
        };
        let honest_agree = honest.iter().all(|s| all_nine(s, "agree"));
        let caught = v.get(&("frozen".into(), "keyspace_hits".into())).map(String::as_str) == Some("disagree")
            && v.get(&("kib".into(), "used_memory_bytes".into())).map(String::as_str) == Some("disagree")
            && v.get(&("kib".into(), "maxmemory_bytes".into())).map(String::as_str) == Some("disagree")
            && v.get(&("elsewhere".into(), "keyspace_hits".into())).map(String::as_str) == Some("disagree")
            && v.get(&("secs".into(), "latency_seconds".into())).map(String::as_str) == Some("disagree")
            && v.get(&("prom_wrong_selector".into(), "keyspace_hits".into())).map(String::as_str) == Some("disagree")
            && all_nine("prom_target_down", "stale");
        if honest_agree && caught {
            break;
        }
    }
    assert_eq!(last["verdict"], "disagree", "lies make the round disagree");
    assert_eq!(last["reference"], "redis");
    let e = last["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["source"] == "frozen" && e["metric"] == "keyspace_hits")
        .unwrap();
    for k in ["value", "reference_value", "deviation", "bound", "reason"] {
        assert!(!e[k].is_null(), "entry has `{k}`: {e}");
    }
    assert!(e["deviation"].as_f64().unwrap() < 0.0);
    // Latency in seconds under `latency_ms`: caught by the lower bound, with
    // nothing else of that endpoint in doubt.
    for e in last["entries"].as_array().unwrap().iter().filter(|e| e["source"] == "secs") {
        if e["metric"] == "latency_seconds" {
            assert!(e["reason"].as_str().unwrap().contains("below"), "{e}");
        } else {
            assert_eq!(e["verdict"], "agree", "{e}");
        }
    }

    // Metrics.
    assert_eq!(
        d.metric("lookout_crosscheck_agree", &[("metric", "keyspace_hits"), ("source", "django")]),
        Some(1.0)
    );
    assert_eq!(
        d.metric("lookout_crosscheck_agree", &[("metric", "keyspace_hits"), ("source", "frozen")]),
        Some(0.0)
    );
    assert_eq!(d.metric("lookout_crosscheck_verdict", &[("verdict", "disagree")]), Some(1.0));

    // The status page in a real browser: it renders, and shows what matters.
    let shot = support::root().join("target/status-page.png");
    let url = format!("http://127.0.0.1:{}/", d.port);
    let out = support::chromium(&["--window-size=1400,2200", &format!("--screenshot={}", shot.display()), &url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a real screenshot ({} bytes)",
        png.len()
    );
    let dom = String::from_utf8_lossy(&support::chromium(&["--dump-dom", &url]).stdout).into_owned();
    assert!(dom.contains("id=\"matrix\""), "matrix rendered");
    assert!(
        dom.contains("data-metric=\"keyspace_hits\" data-source=\"django\" data-verdict=\"agree\""),
        "honest cell green"
    );
    assert!(
        dom.contains("data-metric=\"keyspace_hits\" data-source=\"frozen\" data-verdict=\"disagree\""),
        "lie cell red"
    );
    for chart in [
        "chart-hit_ratio",
        "chart-latency_seconds",
        "chart-used_memory_bytes",
        "chart-connected_clients",
    ] {
        assert!(dom.contains(chart), "{chart} present");
    }
    assert!(dom.contains("<polyline"), "charts have lines");
    assert!(!dom.to_ascii_lowercase().contains("<script"), "no script");
    assert!(!dom.contains("src=\"http"), "no external asset");

    // `lookout report` against the honest sources only: agree, exit 0, in every format.
    let dir = tempfile::tempdir().unwrap();
    let honest_cfg = dir.path().join("honest.yaml");
    let mut h = format!("data_dir: {}\nprobe_files: []\nprobes:\n", d.dir.path().join("data").display());
    h.push_str(&probe("redis", format!("    kind: redis\n    url: {}\n", redis.url())));
    h.push_str(&probe("django", http(django.url())));
    h.push_str(&probe("fastapi", http(fastapi.url())));
    h.push_str(&probe("prometheus", promq("redis_a")));
    std::fs::write(&honest_cfg, h).unwrap();
    let out = lookout()
        .args(["report", "--format", "json", "-c"])
        .arg(&honest_cfg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["verdict"], "agree");
    assert_eq!(r["entries"].as_array().unwrap().len(), 3 * METRICS);
    // Without a daemon's history (a CI job, a change ticket): the round
    // waits for a Prometheus scrape newer than its first reading of Redis,
    // and agrees.
    let lone = tempfile::tempdir().unwrap();
    let lone_cfg = dir.path().join("lone.yaml");
    std::fs::write(
        &lone_cfg,
        std::fs::read_to_string(&honest_cfg).unwrap().replacen(
            &d.dir.path().join("data").display().to_string(),
            &lone.path().display().to_string(),
            1,
        ),
    )
    .unwrap();
    let out = lookout()
        .args(["report", "--format", "json", "--wait", "10s", "-c"])
        .arg(&lone_cfg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["verdict"], "agree", "{stdout}");
    assert!(!lone.path().join("history.db").exists(), "a one-shot round stores nothing");
    for (fmt, needle) in [
        ("text", "Cross-check AGREE"),
        ("markdown", "| `keyspace_hits` |"),
        ("html", "id=\"matrix\""),
        ("junit", "<testcase classname=\"django\" name=\"keyspace_hits\"/>"),
    ] {
        let out = lookout().args(["report", "--format", fmt, "-c"]).arg(&honest_cfg).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(needle), "{fmt}: {text}");
    }

    // The stored history summarises the daemon's rounds.
    let out = lookout()
        .args(["report", "--window", "1h", "--format", "json", "-c"])
        .arg(&honest_cfg)
        .output()
        .unwrap();
    let w: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(w["rounds"].as_u64().unwrap() >= 1, "{w}");
    let pairs = w["pairs"].as_array().unwrap();
    let frozen_pair = pairs
        .iter()
        .find(|p| p["source"] == "frozen" && p["metric"] == "keyspace_hits")
        .unwrap();
    assert!(frozen_pair["disagree"].as_u64().unwrap() >= 1);
    assert!(
        w["availability"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["probe"] == "redis" && a["ratio"] == 1.0)
    );
    assert_eq!(out.status.code(), Some(1), "the window saw disagreements");
}

/// What the operators themselves do and what exporters do to them, against
/// the real servers: `CONFIG RESETSTAT` (counters to 0, no restart) is a
/// `reset` — Prometheus's sample from before it `stale` — and a stalled
/// exporter (`SIGSTOP`) is `stale`; in no round does an honest source
/// disagree, and once each source is sampled afresh all agree again.
#[test]
fn a_statistics_reset_and_a_stalled_exporter_never_cry_wolf() {
    let redis = Redis::start(&[]);
    let _traffic = Traffic::start(&redis.url());
    let exporter = Exporter::start(&redis.url());
    let prom = Prometheus::start(&[("redis_a", format!("127.0.0.1:{}", exporter.port))]);
    let django = PyEndpoint::start("django", &redis.url(), None);
    let probe = |name: &str, body: String| format!("  - name: {name}\n{body}    every: 1s\n    timeout: 2s\n");
    let mut cfg = String::from(
        "server:\n  listen: {listen}\ndata_dir: {data_dir}\nprobe_files: []\ncrosscheck:\n  every: 1s\n  max_staleness: 5s\nprobes:\n",
    );
    cfg.push_str(&probe("redis", format!("    kind: redis\n    url: {}\n", redis.url())));
    cfg.push_str(&probe("django", format!("    kind: http_health\n    url: {}\n", django.url())));
    cfg.push_str(&probe(
        "prometheus",
        format!(
            "    kind: prometheus\n    url: {}\n    selector: '{{job=\"redis_a\"}}'\n",
            prom.url()
        ),
    ));
    let d = Daemon::start(&cfg);

    // Watches the rounds judged after `since` (Unix seconds) until `done`
    // holds, at most `secs`; with `strict`, every round seen must be free
    // of disagreement. Returns every (source, metric, verdict) seen.
    let watch = |what: &str, since: f64, secs: u64, strict: bool, done: &dyn Fn(&Verdicts) -> bool| {
        let mut seen = std::collections::HashSet::new();
        let mut last = serde_json::Value::Null;
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: not within {secs}s; last round: {last:#}"
            );
            std::thread::sleep(Duration::from_millis(200));
            let Some(r) = http_get(d.port, "/report?format=json").and_then(|(s, b)| (s == 200).then_some(b)) else {
                continue;
            };
            let Ok(r) = serde_json::from_str::<serde_json::Value>(&r) else {
                continue;
            };
            if r["timestamp"].as_f64().is_none_or(|t| t <= since) {
                continue;
            }
            let v = verdicts(&r);
            if strict && let Some(((src, m), _)) = v.iter().find(|(_, verdict)| *verdict == "disagree") {
                let e = r["entries"]
                    .as_array()
                    .and_then(|a| a.iter().find(|e| e["source"] == *src && e["metric"] == *m).cloned());
                panic!("{what}: an honest source disagrees: {}", e.unwrap_or_default());
            }
            seen.extend(v.iter().map(|((s, m), verdict)| (s.clone(), m.clone(), verdict.clone())));
            last = r;
            if done(&v) {
                return seen;
            }
        }
    };
    let all = |want: &'static str, sources: &'static [&'static str]| {
        move |v: &Verdicts| {
            sources
                .iter()
                .all(|s| v.iter().filter(|((src, _), verdict)| src == s && *verdict == want).count() == METRICS)
        }
    };
    let both: &'static [&'static str] = &["django", "prometheus"];
    let now = || lookout::probe::unix_now();
    watch("honest sources agree", 0.0, 90, false, &all("agree", both));

    let hits = redis.info_field("keyspace_hits").unwrap_or(0.0);
    let out = redis.cli(&["CONFIG", "RESETSTAT"]);
    let reset_at = now();
    assert!(out.contains("OK"), "{out}");
    assert!(redis.info_field("keyspace_hits").is_some_and(|h| h < hits), "counters fell");
    // Every round from the reset on, until every source has been sampled
    // well after it.
    let seen = watch("agreement after the statistics reset", reset_at, 60, true, &|v| {
        all("agree", both)(v) && now() > reset_at + 6.0
    });
    let lifetime = ["keyspace_hits", "keyspace_misses", "hit_ratio"];
    assert!(
        seen.iter()
            .any(|(s, m, verdict)| s == "django" && lifetime.contains(&m.as_str()) && verdict == "reset")
            || seen
                .iter()
                .any(|(s, m, verdict)| s == "prometheus" && lifetime.contains(&m.as_str()) && (verdict == "reset" || verdict == "stale")),
        "the reset was recognised in some round: {seen:?}"
    );

    support::send_signal(exporter.pid(), libc::SIGSTOP);
    watch("Prometheus stale while its exporter is stalled", now(), 60, true, &|v| {
        all("stale", &["prometheus"])(v) && all("agree", &["django"])(v)
    });
    support::send_signal(exporter.pid(), libc::SIGCONT);
    watch("agreement once the exporter resumes", now(), 60, true, &all("agree", both));
}

/// A relabelling mistake, as Prometheus really makes it: targets of two
/// exporters with `job` and `instance` rewritten to the same values are all
/// kept and write into one series, whose value then alternates between the
/// two Redis (seen with one job of two targets:
/// `redis_keyspace_misses_total{instance="redis"}` 50, 0, 0, 50, 0 on
/// queries 0.7 s apart). The mixed source is caught — a probe in phase with
/// the scrapes may only ever see the other Redis, so the reason's "two
/// instances" hint is not required — and the honest ones never disagree.
#[test]
fn relabelling_that_mixes_two_instances_is_caught() {
    let redis = Redis::start(&[]);
    let other = Redis::start(&[]);
    let _traffic = Traffic::start(&redis.url());
    for _ in 0..3 {
        other.cli(&["GET", "absent"]);
    }
    let exporter = Exporter::start(&redis.url());
    let other_exporter = Exporter::start(&other.url());
    // Two jobs relabelled into one `job` and `instance`. (One job with both
    // targets mixes them too, but when the two scrapes fall at nearly the
    // same offset of the interval — it is hashed from the target — the same
    // one always lands last and the series only ever shows that Redis.
    // Different intervals make the newest sample alternate whatever the
    // offsets.)
    let relabel = "    relabel_configs:\n      - target_label: instance\n        replacement: redis\n      - target_label: job\n        replacement: mixed\n";
    let mixed = format!(
        "  - job_name: mixed\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n{relabel}  - job_name: mixed_too\n    scrape_interval: 1300ms\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n{relabel}",
        exporter.port, other_exporter.port
    );
    let prom = Prometheus::start_with_scrape_configs(&[("redis_a", format!("127.0.0.1:{}", exporter.port))], &mixed);
    let django = PyEndpoint::start("django", &redis.url(), None);
    let probe = |name: &str, body: String| format!("  - name: {name}\n{body}    every: 1s\n    timeout: 2s\n");
    let promq = |job: &str| format!("    kind: prometheus\n    url: {}\n    selector: '{{job=\"{job}\"}}'\n", prom.url());
    let mut cfg = String::from(
        "server:\n  listen: {listen}\ndata_dir: {data_dir}\nprobe_files: []\ncrosscheck:\n  every: 1s\n  max_staleness: 5s\nprobes:\n",
    );
    cfg.push_str(&probe("redis", format!("    kind: redis\n    url: {}\n", redis.url())));
    cfg.push_str(&probe("django", format!("    kind: http_health\n    url: {}\n", django.url())));
    cfg.push_str(&probe("prometheus", promq("redis_a")));
    // Out of phase with the 1 s scrapes, to see both instances.
    cfg.push_str(&format!("  - name: mixed\n{}    every: 700ms\n    timeout: 2s\n", promq("mixed")));
    let d = Daemon::start(&cfg);

    let honest = ["django", "prometheus"];
    let mut settled = false;
    let mut last = serde_json::Value::Null;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the mixed series was not caught in 90s; last round: {last:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
        let Some((200, body)) = http_get(d.port, "/report?format=json") else {
            continue;
        };
        let Ok(r) = serde_json::from_str::<serde_json::Value>(&body) else {
            continue;
        };
        let v = verdicts(&r);
        let agree = |s: &str| v.iter().filter(|((src, _), verdict)| src == s && *verdict == "agree").count() == METRICS;
        // Once the honest sources have agreed, they must never disagree.
        settled |= honest.iter().all(|s| agree(s));
        if settled
            && let Some(((s, m), _)) = v
                .iter()
                .find(|((s, _), verdict)| honest.contains(&s.as_str()) && *verdict == "disagree")
        {
            panic!("honest {s}/{m} disagrees: {r:#}");
        }
        let caught = v.get(&("mixed".into(), "keyspace_hits".into())).map(String::as_str) == Some("disagree");
        last = r;
        if settled && caught {
            break;
        }
    }
}

/// Without a daemon, a round waits for the exporter target's own scrape
/// interval (4 s here, from Prometheus's targets API, beside other jobs
/// scraped every second) and no longer: on an honest stack it agrees, and
/// returns within one interval, the probe timeout and a few seconds.
#[test]
fn a_one_shot_round_waits_for_the_targets_scrape_interval() {
    let redis = Redis::start(&[]);
    let _traffic = Traffic::start(&redis.url());
    let exporter = Exporter::start(&redis.url());
    let prom = Prometheus::start_with_scrape_configs(
        &[],
        &format!(
            "  - job_name: slow\n    scrape_interval: 4s\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            exporter.port
        ),
    );
    let django = PyEndpoint::start("django", &redis.url(), None);
    // The latency rate needs two scrapes of traffic.
    support::wait_for("Prometheus's latency rate", Duration::from_secs(30), || {
        prom.query("sum(rate(redis_commands_total{job=\"slow\"}[1m]))").filter(|v| *v > 0.0)
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("lookout.yaml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir: {}\nprobe_files: []\nprobes:\n  - name: redis\n    kind: redis\n    url: {}\n    timeout: 2s\n  - name: django\n    kind: http_health\n    url: {}\n    timeout: 2s\n  - name: prometheus\n    kind: prometheus\n    url: {}\n    selector: '{{job=\"slow\"}}'\n    timeout: 2s\n",
            dir.path().join("data").display(),
            redis.url(),
            django.url(),
            prom.url()
        ),
    )
    .unwrap();
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let out = lookout().args(["report", "--format", "json", "-c"]).arg(&cfg).output().unwrap();
        let took = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(r["verdict"], "agree", "{stdout}");
        assert_eq!(r["entries"].as_array().unwrap().len(), 2 * METRICS);
        assert!(
            took < Duration::from_secs(4 + 2 + 3),
            "one interval, a timeout and a few seconds: {took:?}"
        );
    }
}
