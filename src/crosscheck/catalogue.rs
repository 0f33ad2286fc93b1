//! The fault catalogue: every fault operators meet between Redis, the
//! backends' health endpoints, redis_exporter and Prometheus, each with the
//! verdict it must produce — and, in the same round, no honest source judged
//! `disagree`. A check that cries wolf is as useless as one that sleeps.
//!
//! Each case is one round of [`judge`] over a simulated Redis under steady
//! traffic: the reference reads it every 5 s from t=100 to t=160, an honest
//! health endpoint (`django`) and an honest Prometheus (`prometheus`) read it
//! too, and a third source (`faulty`) carries the fault. The end-to-end
//! counterparts against real servers are in `tests/crosscheck.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::fixtures::observation;

/// Seconds at which the round is judged.
const NOW: f64 = 161.0;

/// What happened to the simulated Redis.
#[derive(Clone, Copy, Default)]
struct World {
    /// `CONFIG RESETSTAT` at this instant.
    resetstat_at: Option<f64>,
    /// A restart at this instant.
    restart_at: Option<f64>,
    /// lookout's own round trip to Redis when not the loopback's 0.2 ms.
    reference_rtt: Option<f64>,
}

impl World {
    /// The counters' origin: when they were last at 0.
    fn origin(&self, t: f64) -> Option<f64> {
        [self.resetstat_at, self.restart_at]
            .into_iter()
            .flatten()
            .filter(|r| *r <= t)
            .reduce(f64::max)
    }

    /// What INFO says at `t`, in canonical units.
    fn values(&self, t: f64) -> BTreeMap<Metric, f64> {
        let (hits, misses) = match self.origin(t) {
            // After a reset the traffic misses more: the lifetime ratio moves.
            Some(o) => ((10.0 * (t - o)).floor(), (8.0 * (t - o)).floor()),
            None => (5000.0 + 10.0 * (t - 100.0), 1000.0 + 2.0 * (t - 100.0)),
        };
        let mut v: BTreeMap<Metric, f64> = [
            (Metric::LatencySeconds, self.reference_rtt.unwrap_or(0.0002)),
            (Metric::KeyspaceHits, hits),
            (Metric::KeyspaceMisses, misses),
            (Metric::ConnectedClients, 5.0),
            (Metric::Maxclients, 10000.0),
            (Metric::UsedMemoryBytes, 5_000_000.0),
            (Metric::MaxmemoryBytes, 268_435_456.0),
            (Metric::MemFragmentationRatio, 1.2),
        ]
        .into_iter()
        .collect();
        if let Some(r) = Metric::hit_ratio(hits, misses) {
            v.insert(Metric::HitRatio, r);
        }
        v
    }

    fn run_id(&self, t: f64) -> &'static str {
        if self.restart_at.is_some_and(|r| r <= t) { "b" } else { "a" }
    }

    fn uptime(&self, t: f64) -> f64 {
        t - self.restart_at.filter(|r| *r <= t).unwrap_or(50.0)
    }

    /// The reference's readings, every 5 s from 100 to 160.
    fn reference(&self) -> Vec<Observation> {
        (0..=12)
            .map(|i| {
                let t = 100.0 + 5.0 * i as f64;
                let mut o = observation("redis", t);
                o.values = self.values(t);
                o.facts.run_id = Some(self.run_id(t).into());
                o.facts.uptime_seconds = Some(self.uptime(t));
                o
            })
            .collect()
    }

    /// An honest health endpoint's reading at `t`.
    fn endpoint(&self, name: &str, t: f64) -> Observation {
        let mut o = observation(name, t);
        o.kind = "http_health".into();
        o.values = self.values(t);
        o.values.insert(Metric::LatencySeconds, 0.0006);
        o
    }

    /// An honest Prometheus reading: the exporter scraped Redis at `scraped`,
    /// lookout queried Prometheus at `queried`; both clocks agree.
    fn prometheus(&self, name: &str, scraped: f64, queried: f64) -> Observation {
        let mut o = observation(name, queried);
        o.kind = "prometheus".into();
        o.values = self.values(scraped);
        // Redis's own mean command time: microseconds, far below a round trip.
        o.values.insert(Metric::LatencySeconds, 2e-6);
        o.facts.scrape_timestamp = Some(scraped);
        o.facts.evaluated_at = Some(queried + 0.0005);
        o.facts.target_up = Some(true);
        o.facts.redis_up = Some(true);
        for m in o.values.keys() {
            let t = if *m == Metric::LatencySeconds { queried } else { scraped };
            o.sample_times.insert(*m, t);
        }
        o
    }
}

fn cfg() -> CrossCheckConfig {
    CrossCheckConfig {
        every: Duration::from_secs(15),
        reference: "redis".into(),
        sources: vec!["django".into(), "prometheus".into(), "faulty".into()],
        max_staleness: Duration::from_secs(30),
        tolerances: BTreeMap::new(),
    }
}

/// One round: the honest sources sampled just before `NOW`, and `faulty`
/// with the history given (oldest first) under its kind.
fn round(world: World, kind: &str, faulty: Vec<Observation>) -> Report {
    let reference = world.reference();
    let django = [world.endpoint("django", 152.0)];
    let prometheus = [world.prometheus("prometheus", 151.0, 153.0)];
    let sources = [
        Source {
            name: "django",
            kind: "http_health",
            history: &django,
            max_age: 60.0,
        },
        Source {
            name: "prometheus",
            kind: "prometheus",
            history: &prometheus,
            max_age: 60.0,
        },
        Source {
            name: "faulty",
            kind,
            history: &faulty,
            max_age: 60.0,
        },
    ];
    let report = judge(&cfg(), &reference, &sources, NOW);
    let cried_wolf: Vec<&Entry> = report
        .entries
        .iter()
        .filter(|e| e.source != "faulty" && e.verdict == Verdict::Disagree)
        .collect();
    assert!(cried_wolf.is_empty(), "an honest source judged disagree: {cried_wolf:#?}");
    report
}

/// One round judging a single source, without the honest ones.
fn alone(kind: &str, name: &str, reference: &[Observation], history: &[Observation]) -> Report {
    let src = [Source {
        name,
        kind,
        history,
        max_age: 60.0,
    }];
    judge(&cfg(), reference, &src, NOW)
}

fn entry(r: &Report, m: Metric) -> &Entry {
    r.entries
        .iter()
        .find(|e| e.metric == m.as_str() && e.source == "faulty")
        .unwrap_or_else(|| panic!("no entry for {m}: {r:#?}"))
}

/// `m` of `faulty` has verdict `v` and a reason containing `why`.
fn expect(r: &Report, m: Metric, v: Verdict, why: &str) {
    let e = entry(r, m);
    assert_eq!(e.verdict, v, "{m}: {e:#?}");
    assert!(e.reason.contains(why), "{m}: reason `{}` lacks `{why}`", e.reason);
}

/// Every metric of `faulty` but those listed agrees.
fn others_agree(r: &Report, except: &[Metric]) {
    for e in r.entries.iter().filter(|e| e.source == "faulty") {
        let m: Metric = e.metric.parse().unwrap_or(Metric::LatencySeconds);
        if !except.contains(&m) {
            assert_eq!(e.verdict, Verdict::Agree, "{e:#?}");
        }
    }
}

/// The reference's readings with five minutes of history before them, so a
/// dashboard's 5-minute window is covered.
fn with_five_minutes_before(w: World) -> Vec<Observation> {
    let mut reference = w.reference();
    let early: Vec<Observation> = (0..60)
        .map(|i| {
            let t = -200.0 + 5.0 * i as f64;
            let mut o = observation("redis", t);
            o.values = w.values(t);
            o.facts.run_id = Some("a".into());
            o.facts.uptime_seconds = Some(w.uptime(t));
            o
        })
        .collect();
    reference.splice(0..0, early);
    reference
}

fn honest() -> World {
    World::default()
}

#[test]
fn baseline_every_honest_source_agrees() {
    let w = honest();
    let r = round(w, "http_health", vec![w.endpoint("faulty", 152.0)]);
    assert_eq!(r.verdict, Overall::Agree, "{r:#?}");
}

#[test]
fn fault_frozen_counters_disagree() {
    let w = honest();
    let mut o = w.endpoint("faulty", 152.0);
    o.values = w.values(110.0);
    o.values.insert(Metric::LatencySeconds, 0.0006);
    let r = round(w, "http_health", vec![o]);
    expect(&r, Metric::KeyspaceHits, Verdict::Disagree, "frozen");
    expect(&r, Metric::KeyspaceMisses, Verdict::Disagree, "frozen");
}

#[test]
fn fault_memory_in_kib_disagrees_on_both_memory_figures() {
    let w = honest();
    let mut o = w.endpoint("faulty", 152.0);
    for m in [Metric::UsedMemoryBytes, Metric::MaxmemoryBytes] {
        let v = o.values[&m];
        o.values.insert(m, (v / 1024.0).floor());
    }
    let r = round(w, "http_health", vec![o]);
    expect(&r, Metric::UsedMemoryBytes, Verdict::Disagree, "KiB");
    expect(&r, Metric::MaxmemoryBytes, Verdict::Disagree, "differs");
    others_agree(&r, &[Metric::UsedMemoryBytes, Metric::MaxmemoryBytes]);
}

#[test]
fn fault_endpoint_reading_another_redis_disagrees() {
    let w = honest();
    let mut o = w.endpoint("faulty", 152.0);
    // A second Redis, with its own (smaller) traffic and footprint.
    o.values.insert(Metric::KeyspaceHits, 42.0);
    o.values.insert(Metric::KeyspaceMisses, 7.0);
    o.values.insert(Metric::HitRatio, 42.0 / 49.0);
    o.values.insert(Metric::UsedMemoryBytes, 1_200_000.0);
    o.values.insert(Metric::MaxmemoryBytes, 0.0);
    let r = round(w, "http_health", vec![o]);
    for m in [Metric::KeyspaceHits, Metric::KeyspaceMisses] {
        expect(&r, m, Verdict::Disagree, "below the reference");
    }
    expect(&r, Metric::UsedMemoryBytes, Verdict::Disagree, "outside");
    expect(&r, Metric::MaxmemoryBytes, Verdict::Disagree, "differs");
}

#[test]
fn fault_prometheus_selector_on_another_exporter_disagrees() {
    let w = honest();
    let mut o = w.prometheus("faulty", 151.0, 153.0);
    o.values.insert(Metric::KeyspaceHits, 90_000.0);
    o.values.insert(Metric::KeyspaceMisses, 10_000.0);
    o.values.insert(Metric::HitRatio, 0.9);
    let r = round(w, "prometheus", vec![o]);
    expect(&r, Metric::KeyspaceHits, Verdict::Disagree, "another Redis");
    expect(&r, Metric::HitRatio, Verdict::Disagree, "outside");
}

#[test]
fn fault_exporter_target_down_is_stale_everywhere() {
    let w = honest();
    let mut o = w.prometheus("faulty", 151.0, 153.0);
    o.ok = false;
    o.reason = Some(FailureReason::Upstream);
    o.error = Some("up{job=\"redis\"} is 0".into());
    o.facts.target_up = Some(false);
    let r = round(w, "prometheus", vec![o]);
    assert!(
        r.entries
            .iter()
            .filter(|e| e.source == "faulty")
            .all(|e| e.verdict == Verdict::Stale),
        "{r:#?}"
    );
    assert_eq!(r.verdict, Overall::Incomplete);
}

#[test]
fn fault_stalled_exporter_samples_not_advancing_is_stale() {
    let w = honest();
    // Prometheus keeps answering with the last sample it got, at 115, for
    // every query since (within its 5-minute lookback).
    let history: Vec<Observation> = [125.0, 139.0, 153.0].iter().map(|q| w.prometheus("faulty", 115.0, *q)).collect();
    let r = round(w, "prometheus", history);
    for m in [Metric::KeyspaceHits, Metric::HitRatio, Metric::UsedMemoryBytes] {
        expect(&r, m, Verdict::Stale, "exporter stalled");
    }
}

#[test]
fn fault_latency_in_seconds_under_latency_ms_disagrees() {
    let w = honest();
    let mut o = w.endpoint("faulty", 152.0);
    // 0.6 ms written as 0.0006 "ms": 1000× too small, yet within 10 ms of
    // the reference — the absolute slack must not let it through.
    o.values.insert(Metric::LatencySeconds, 0.0006 * 0.001);
    let r = round(w, "http_health", vec![o]);
    expect(&r, Metric::LatencySeconds, Verdict::Disagree, "below");
    others_agree(&r, &[Metric::LatencySeconds]);

    // lookout 1 ms away from Redis, the endpoint claiming 10 µs: above the
    // 5 µs floor, below a fiftieth of the reference.
    let w = World {
        reference_rtt: Some(0.001),
        ..World::default()
    };
    let mut o = w.endpoint("faulty", 152.0);
    o.values.insert(Metric::LatencySeconds, 1e-5);
    let r = round(w, "http_health", vec![o]);
    expect(
        &r,
        Metric::LatencySeconds,
        Verdict::Disagree,
        "below what a round trip through the application can take",
    );
    assert_eq!(entry(&r, Metric::LatencySeconds).bound.as_deref(), Some("ratio ≥ 1/50"));
}

#[test]
fn fault_latency_in_microseconds_under_latency_ms_disagrees() {
    let w = honest();
    let mut o = w.endpoint("faulty", 152.0);
    // 0.6 ms reported as 600 (µs) in the milliseconds field: 0.6 s.
    o.values.insert(Metric::LatencySeconds, 0.6);
    let r = round(w, "http_health", vec![o]);
    expect(&r, Metric::LatencySeconds, Verdict::Disagree, "× the reference's median round trip");
    others_agree(&r, &[Metric::LatencySeconds]);
}

#[test]
fn fault_statistics_reset_is_a_reset_then_agrees() {
    // CONFIG RESETSTAT at 147.5: no restart, run_id and uptime unchanged.
    let w = World {
        resetstat_at: Some(147.5),
        ..World::default()
    };
    let lifetime = [Metric::KeyspaceHits, Metric::KeyspaceMisses, Metric::HitRatio];

    // The endpoint sampled before the reset: reset, never disagree.
    let r = round(w, "http_health", vec![w.endpoint("faulty", 141.0)]);
    for m in lifetime {
        expect(&r, m, Verdict::Reset, "CONFIG RESETSTAT");
    }
    // Sampled between the readings around the reset: reset.
    let r = round(w, "http_health", vec![w.endpoint("faulty", 146.0)]);
    for m in lifetime {
        expect(&r, m, Verdict::Reset, "statistics were reset");
    }
    // Sampled after it: judged again, and agrees.
    let r = round(w, "http_health", vec![w.endpoint("faulty", 152.0)]);
    others_agree(&r, &[]);

    // Prometheus's sample from before the reset is stale, not wrong.
    let r = round(w, "prometheus", vec![w.prometheus("faulty", 141.0, 153.0)]);
    for m in lifetime {
        expect(&r, m, Verdict::Stale, "predates the reset");
    }
    others_agree(&r, &lifetime);
    // Scraped just before the reset, between the readings around it: its
    // lifetime hit ratio is the old one, the reference's after it the new
    // one — a reset, where a plain bracket would see a disagreement.
    let r = round(w, "prometheus", vec![w.prometheus("faulty", 147.0, 153.0)]);
    for m in lifetime {
        expect(&r, m, Verdict::Reset, "statistics were reset");
    }
    // Scraped after it: judged again, and agrees.
    let r = round(w, "prometheus", vec![w.prometheus("faulty", 151.0, 153.0)]);
    others_agree(&r, &[]);
}

#[test]
fn few_lookups_after_a_reset_let_the_lifetime_ratio_swing_honestly() {
    let w = World {
        resetstat_at: Some(147.5),
        ..World::default()
    };
    let mut reference = w.reference();
    // A trickle of lookups since the reset: 1 hit (ratio 1), then 3 hits and
    // a miss (0.75) five seconds later.
    for (i, (hits, misses)) in [(10, (1.0, 0.0)), (11, (3.0, 1.0)), (12, (5.0, 1.0))] {
        let v = &mut reference[i].values;
        v.insert(Metric::KeyspaceHits, hits);
        v.insert(Metric::KeyspaceMisses, misses);
        v.insert(Metric::HitRatio, hits / (hits + misses));
    }
    // Sampled between them, after the first miss and before the next hits:
    // 0.5, outside both readings' ratios, and honest.
    let mut o = w.endpoint("faulty", 152.0);
    o.values.insert(Metric::KeyspaceHits, 1.0);
    o.values.insert(Metric::KeyspaceMisses, 1.0);
    o.values.insert(Metric::HitRatio, 0.5);
    let r = alone("http_health", "faulty", &reference, &[o]);
    expect(&r, Metric::HitRatio, Verdict::Agree, "within tolerance");
    assert_eq!(entry(&r, Metric::HitRatio).bound.as_deref(), Some("[0.4900, 1]"));
}

#[test]
fn fault_redis_restart_is_a_reset() {
    let w = World {
        restart_at: Some(147.5),
        ..World::default()
    };
    let r = round(w, "http_health", vec![w.endpoint("faulty", 146.0)]);
    for m in [Metric::KeyspaceHits, Metric::KeyspaceMisses, Metric::HitRatio] {
        expect(&r, m, Verdict::Reset, "restarted");
    }
    let r = round(w, "prometheus", vec![w.prometheus("faulty", 141.0, 153.0)]);
    expect(&r, Metric::KeyspaceHits, Verdict::Stale, "restarted");
}

#[test]
fn fault_clients_from_the_replication_section_disagrees() {
    let w = honest();
    let mut o = w.endpoint("faulty", 152.0);
    // `connected_slaves` (INFO replication) mapped as connected_clients.
    o.values.insert(Metric::ConnectedClients, 0.0);
    let r = round(w, "http_health", vec![o]);
    expect(
        &r,
        Metric::ConnectedClients,
        Verdict::Disagree,
        "the connection that read INFO is itself a client",
    );
    let e = entry(&r, Metric::ConnectedClients);
    assert_eq!(e.bound.as_deref(), Some("a whole number ≥ 1"));
    assert_eq!(
        (e.deviation, e.reference_value),
        (Some(-1.0), Some(5.0)),
        "distance to the bound, and the reference's reading"
    );
    others_agree(&r, &[Metric::ConnectedClients]);
}

#[test]
fn fault_hit_ratio_as_a_percentage_disagrees() {
    let w = honest();
    let mut o = w.endpoint("faulty", 152.0);
    let pct = o.values[&Metric::HitRatio] * 100.0;
    o.values.insert(Metric::HitRatio, pct);
    let r = round(w, "http_health", vec![o]);
    expect(&r, Metric::HitRatio, Verdict::Disagree, "outside [0, 1]");
    others_agree(&r, &[Metric::HitRatio]);
}

#[test]
fn fault_windowed_hit_rate_reported_as_lifetime_ratio_disagrees() {
    let w = honest();
    let mut o = w.endpoint("faulty", 152.0);
    // The last minute's rate, not hits / (hits + misses).
    o.values.insert(Metric::HitRatio, 0.5);
    let r = round(w, "http_health", vec![o]);
    expect(
        &r,
        Metric::HitRatio,
        Verdict::Disagree,
        "does not follow from the source's own counters",
    );
}

#[test]
fn fault_counter_overflowing_to_negative_disagrees() {
    let w = honest();
    let mut o = w.endpoint("faulty", 152.0);
    // A 64-bit counter read into a signed 32-bit integer.
    o.values.insert(Metric::KeyspaceHits, -2_147_483_000.0);
    o.values.remove(&Metric::HitRatio);
    let r = round(w, "http_health", vec![o]);
    expect(&r, Metric::KeyspaceHits, Verdict::Disagree, "never negative");
}

#[test]
fn fault_missing_field_defaulted_to_zero_disagrees() {
    let w = honest();
    let mut o = w.endpoint("faulty", 152.0);
    o.values.insert(Metric::MemFragmentationRatio, 0.0);
    o.values.insert(Metric::UsedMemoryBytes, 0.0);
    let r = round(w, "http_health", vec![o]);
    expect(&r, Metric::MemFragmentationRatio, Verdict::Disagree, "resident memory");
    expect(&r, Metric::UsedMemoryBytes, Verdict::Disagree, "empty Redis");
}

#[test]
fn fault_relabelling_mixes_two_instances_disagrees() {
    let w = honest();
    // `instance` relabelled to one value for two exporters: the series
    // alternates between this Redis and another with fewer hits.
    let mut other = w.prometheus("faulty", 151.0, 153.0);
    other.values.insert(Metric::KeyspaceHits, 700.0);
    other.values.insert(Metric::KeyspaceMisses, 90.0);
    other.values.insert(Metric::HitRatio, 700.0 / 790.0);
    let history = vec![w.prometheus("faulty", 141.0, 143.0), other];
    let r = round(w, "prometheus", history);
    expect(&r, Metric::KeyspaceHits, Verdict::Disagree, "two instances behind one series");
}

#[test]
fn fault_prometheus_clock_skew_is_corrected_not_a_disagreement() {
    let w = honest();
    for skew in [-20.0, 20.0, -600.0] {
        // The exporter scraped at 151 and lookout queried at 153 (lookout's
        // clock); Prometheus stamped both on its own, `skew` s off.
        let mut o = w.prometheus("faulty", 151.0, 153.0);
        o.facts.scrape_timestamp = Some(151.0 + skew);
        o.facts.evaluated_at = Some(153.0005 + skew);
        for t in o.sample_times.values_mut() {
            *t += skew;
        }
        let r = round(w, "prometheus", vec![o.clone()]);
        others_agree(&r, &[]);
        expect(&r, Metric::KeyspaceHits, Verdict::Agree, "clock is");

        // Without its evaluation time (stored by an older lookout) a clock
        // 20 s behind would make honest counters look ahead of Redis.
        if skew == -20.0 {
            o.facts.evaluated_at = None;
            let r = alone("prometheus", "faulty", &w.reference(), &[o]);
            assert_eq!(entry(&r, Metric::KeyspaceHits).verdict, Verdict::Disagree, "uncorrected skew");
        }
    }
}

#[test]
fn fault_configuration_of_another_redis_disagrees() {
    let w = honest();
    let mut o = w.endpoint("faulty", 152.0);
    o.values.insert(Metric::Maxclients, 4064.0);
    let r = round(w, "http_health", vec![o]);
    expect(&r, Metric::Maxclients, Verdict::Disagree, "configuration value");
    others_agree(&r, &[Metric::Maxclients]);
}

#[test]
fn dashboard_rate_counts_a_statistics_reset_as_prometheus_does() {
    let w = World {
        resetstat_at: Some(147.5),
        ..World::default()
    };
    let reference = with_five_minutes_before(w);
    let mut p = w.prometheus("prometheus", 155.0, 156.0);
    // Every lookup of the window [-145, 155]: 10 hits a second, 2 misses a
    // second before the reset at 147.5 and 8 after it.
    p.facts.hit_rate_5m = Some(3000.0 / (3000.0 + 2.0 * 292.5 + 8.0 * 7.5));
    let r = alone("prometheus", "prometheus", &reference, &[p]);
    assert_eq!(r.dashboard[0].verdict, Verdict::Agree, "{:#?}", r.dashboard);
    assert!(r.entries.iter().all(|e| e.verdict != Verdict::Disagree), "{r:#?}");
}

#[test]
fn a_metric_the_source_does_not_report_is_missing() {
    let w = honest();
    let mut o = w.endpoint("faulty", 152.0);
    o.values.remove(&Metric::Maxclients);
    let r = round(w, "http_health", vec![o]);
    expect(&r, Metric::Maxclients, Verdict::Missing, "");
    others_agree(&r, &[Metric::Maxclients]);
    assert_eq!(r.verdict, Overall::Incomplete, "{r:#?}");
}

#[test]
fn a_failing_source_is_source_down_not_disagree() {
    let w = honest();
    let mut o = w.endpoint("faulty", 152.0);
    o.ok = false;
    o.error = Some("HTTP 503: Redis timeout".into());
    o.values.clear();
    let r = round(w, "http_health", vec![o]);
    for m in Metric::ALL {
        expect(&r, m, Verdict::SourceDown, "");
    }
}

#[test]
fn uptime_falling_with_the_same_run_id_is_a_reset() {
    // A restart that kept its run_id (a managed Redis restored in place):
    // the reference's uptime falling is the signal.
    let w = World {
        restart_at: Some(147.5),
        ..World::default()
    };
    let mut reference = w.reference();
    for o in &mut reference {
        o.facts.run_id = Some("a".into());
    }
    let before = [w.endpoint("faulty", 146.0)];
    let r = alone("http_health", "faulty", &reference, &before);
    for m in [Metric::KeyspaceHits, Metric::KeyspaceMisses, Metric::HitRatio] {
        expect(&r, m, Verdict::Reset, "");
    }
}

#[test]
fn tolerances_from_the_configuration_are_the_bounds_applied() {
    let w = honest();
    let mut o = w.endpoint("faulty", 152.0);
    // 20 more clients than the reference: outside the default (5, 10 %),
    // inside a configured 25.
    let clients = o.values[&Metric::ConnectedClients] + 20.0;
    o.values.insert(Metric::ConnectedClients, clients);
    let r = round(w, "http_health", vec![o.clone()]);
    expect(&r, Metric::ConnectedClients, Verdict::Disagree, "");
    let mut cfg = cfg();
    cfg.tolerances.insert(
        Metric::ConnectedClients,
        crate::crosscheck::config::Tolerance {
            abs: 25.0,
            rel: 0.0,
            factor: 0.0,
        },
    );
    let history = [o];
    let src = [Source {
        name: "faulty",
        kind: "http_health",
        history: &history,
        max_age: 60.0,
    }];
    let r = judge(&cfg, &w.reference(), &src, NOW);
    expect(&r, Metric::ConnectedClients, Verdict::Agree, "");
}

#[test]
fn a_dashboard_rate_that_is_not_the_windowed_rate_disagrees() {
    let w = honest();
    let reference = with_five_minutes_before(w);
    // Steady traffic: 10 hits and 2 misses a second, so the 5m rate is 10/12.
    let mut p = w.prometheus("prometheus", 155.0, 156.0);
    p.facts.hit_rate_5m = Some(10.0 / 12.0);
    let r = alone("prometheus", "prometheus", &reference, std::slice::from_ref(&p));
    assert_eq!(r.dashboard[0].verdict, Verdict::Agree, "{:#?}", r.dashboard);
    p.facts.hit_rate_5m = Some(0.5);
    let r = alone("prometheus", "prometheus", &reference, &[p]);
    assert_eq!(r.dashboard[0].verdict, Verdict::Disagree, "{:#?}", r.dashboard);
}
