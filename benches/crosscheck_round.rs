//! CPU time of one cross-check round with four sources (the reference and
//! three sources), on the in-memory history the daemon keeps (7 minutes of
//! 1 s readings). Run with `cargo bench --bench crosscheck_round`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lookout::crosscheck::config::CrossCheckConfig;
use lookout::crosscheck::{Source, judge};
use lookout::metric::Metric;
use lookout::probe::{Facts, Observation};

fn obs(name: &str, kind: &str, t: f64, i: f64) -> Observation {
    let mut values = BTreeMap::new();
    for (m, v) in [
        (Metric::LatencySeconds, 0.0002),
        (Metric::KeyspaceHits, 1000.0 + 10.0 * i),
        (Metric::KeyspaceMisses, 100.0 + i),
        (Metric::HitRatio, 0.9),
        (Metric::ConnectedClients, 12.0),
        (Metric::Maxclients, 10000.0),
        (Metric::UsedMemoryBytes, 5e6),
        (Metric::MaxmemoryBytes, 0.0),
        (Metric::MemFragmentationRatio, 1.1),
    ] {
        values.insert(m, v);
    }
    let mut facts = Facts {
        run_id: Some("a".repeat(40)),
        ..Facts::default()
    };
    let mut sample_times = BTreeMap::new();
    if kind == "prometheus" {
        facts.scrape_timestamp = Some(t - 5.0);
        facts.target_up = Some(true);
        facts.redis_up = Some(true);
        for m in Metric::ALL {
            sample_times.insert(m, t - 5.0);
        }
    }
    Observation {
        name: name.into(),
        kind: kind.into(),
        ok: true,
        error: None,
        reason: None,
        timestamp: t,
        duration_seconds: 0.001,
        values,
        facts,
        sample_times,
    }
}

fn main() {
    let cfg = CrossCheckConfig {
        every: Duration::from_secs(15),
        reference: "redis".into(),
        sources: vec!["django".into(), "fastapi".into(), "prometheus".into()],
        max_staleness: Duration::from_secs(30),
        tolerances: BTreeMap::new(),
    };
    let n = 420;
    let refs: Vec<Observation> = (0..n).map(|i| obs("redis", "redis", 1000.0 + i as f64, i as f64)).collect();
    let hist = |name: &str, kind: &str| -> Vec<Observation> { (0..n).map(|i| obs(name, kind, 1000.3 + i as f64, i as f64)).collect() };
    let (d, f, p) = (
        hist("django", "http_health"),
        hist("fastapi", "http_health"),
        hist("prometheus", "prometheus"),
    );
    let sources = [
        Source {
            name: "django",
            kind: "http_health",
            history: &d,
            max_age: 60.0,
        },
        Source {
            name: "fastapi",
            kind: "http_health",
            history: &f,
            max_age: 60.0,
        },
        Source {
            name: "prometheus",
            kind: "prometheus",
            history: &p,
            max_age: 60.0,
        },
    ];
    let now = 1000.0 + n as f64;
    let r = judge(&cfg, &refs, &sources, now);
    assert_eq!(r.entries.len(), 27);
    let rounds = 2000;
    let start = Instant::now();
    let mut agree = 0;
    for _ in 0..rounds {
        agree += judge(&cfg, &refs, &sources, now).count(lookout::crosscheck::Verdict::Agree);
    }
    let per = start.elapsed() / rounds;
    println!(
        "one cross-check round, 4 sources, {n} readings each: {per:?} ({} agree verdicts per round)",
        agree / rounds as usize
    );
}
