//! Cross-verification: do the health endpoints, Redis and Prometheus agree?
//!
//! Each round judges every source's reading of every canonical metric
//! against the reference (the direct `redis` probe) with a rule that fits
//! the kind of metric. Sources are sampled at different instants, so the
//! rules compare a source's sample with the reference readings taken just
//! before and just after it:
//!
//! - every value must first be plausible: within bounds that follow from
//!   Redis's own invariants whatever the reference says;
//! - counters (`keyspace_hits`, `keyspace_misses`) only grow, so a sample
//!   must lie between the reference readings that bracket it; when the
//!   reference's counters fall — a restart or `CONFIG RESETSTAT` — a sample
//!   not taken after the fall is a `reset` (Prometheus's, from before it,
//!   `stale`), not a mismatch;
//! - gauges and ratios must lie within a tolerance of the bracket (the
//!   lifetime hit ratio, of every ratio the bracket's counters allow);
//! - configuration values (`maxclients`, `maxmemory_bytes`) must be equal;
//! - latencies are different instruments (a client's round trip through a
//!   web framework, Redis's own command time), so they are compared within a
//!   factor — and Prometheus's mean command time, measured inside Redis, only
//!   from above;
//! - Prometheus's sample times are on its own clock: when it is off
//!   lookout's, they are corrected before bracketing.
//!
//! The engine is a pure function of the observations ([`judge`]); the
//! daemon feeds it from its probes ([`feed`]), `lookout report` from runs
//! made on the spot ([`run_now`]). Stored rounds are judged over a window in
//! [`history`].

#[cfg(test)]
mod catalogue;
pub mod config;
pub mod feed;

/// What the cross-check reads of the configuration in force. The whole
/// configuration implements it; the cross-check does not depend on it.
pub trait Setup {
    /// Every probe.
    fn probes(&self) -> &[crate::probe::ProbeConfig];
    /// The cross-check's own section, when there is one.
    fn crosscheck(&self) -> Option<&CrossCheckConfig>;
    /// Where the history lives.
    fn data_dir(&self) -> &std::path::Path;
}
pub mod history;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::metric::Metric;
use crate::probe::{FailureReason, Observation};
use config::{CrossCheckConfig, Tolerance};

/// How long after its scrape timestamp the exporter may have read Redis.
const SCRAPE_SLACK: f64 = 1.0;

/// Prometheus's clock is corrected for when it is off by more than this
/// (seconds) beyond what the probe's own run can explain: NTP keeps honest
/// clocks within milliseconds, so this is skew, not noise.
const SKEW_MARGIN: f64 = 1.0;

/// No Redis uses less: an empty redis-server 7.0.15 reports
/// `used_memory:914664` (`used_memory_startup:876192`). 256 KiB leaves room
/// for older and smaller builds and still catches a KiB figure for up to
/// 256 MiB in use.
const MIN_USED_MEMORY: f64 = 256.0 * 1024.0;

/// No client's round trip to Redis is shorter, even over loopback: the
/// fastest PING `redis-benchmark -c 1 -t ping` measured on a test machine
/// took 16 µs (median 23–31 µs).
const MIN_ROUND_TRIP: f64 = 5e-6;

/// The verdict on one (metric, source).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Within the rule's bound.
    Agree,
    /// Outside it: `deviation` and `bound` say by how much.
    Disagree,
    /// The source's sample is too old to judge (or its exporter target is down).
    Stale,
    /// The source did not report the metric.
    Missing,
    /// Redis restarted between the samples: counters reset.
    Reset,
    /// The source (or the reference) is failing.
    SourceDown,
}

impl Verdict {
    /// All verdicts, for metrics and legends.
    pub const ALL: [Verdict; 6] = [
        Verdict::Agree,
        Verdict::Disagree,
        Verdict::Stale,
        Verdict::Missing,
        Verdict::Reset,
        Verdict::SourceDown,
    ];

    /// The serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Agree => "agree",
            Verdict::Disagree => "disagree",
            Verdict::Stale => "stale",
            Verdict::Missing => "missing",
            Verdict::Reset => "reset",
            Verdict::SourceDown => "source_down",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict on a whole round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overall {
    /// Every (metric, source) agrees.
    Agree,
    /// At least one disagrees.
    Disagree,
    /// None disagrees, but some could not be judged.
    Incomplete,
}

impl Overall {
    /// All values.
    pub const ALL: [Overall; 3] = [Overall::Agree, Overall::Disagree, Overall::Incomplete];

    /// The serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            Overall::Agree => "agree",
            Overall::Disagree => "disagree",
            Overall::Incomplete => "incomplete",
        }
    }

    /// `lookout report`'s exit status: 0 agree, 1 disagree, 2 incomplete.
    pub fn exit_code(self) -> u8 {
        match self {
            Overall::Agree => 0,
            Overall::Disagree => 1,
            Overall::Incomplete => 2,
        }
    }
}

/// One judged (metric, source). The JSON form is a stable interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Canonical metric name (or `hit_rate_5m` in the dashboard section).
    pub metric: String,
    /// Source probe name.
    pub source: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The source's value.
    pub value: Option<f64>,
    /// The reference value it was compared with (the nearest reading).
    pub reference_value: Option<f64>,
    /// How far outside the bound (counters, gauges: signed distance to the
    /// nearest reference value; latency: the ratio source / reference).
    pub deviation: Option<f64>,
    /// The bound applied, e.g. `[1520, 1533]` or `ratio ≤ 20`.
    pub bound: Option<String>,
    /// Why, for a person.
    pub reason: String,
}

/// One round's result. The JSON form is a stable interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// When the round ran, Unix seconds.
    pub timestamp: f64,
    /// Overall verdict.
    pub verdict: Overall,
    /// The reference probe.
    pub reference: String,
    /// One entry per (metric, source).
    pub entries: Vec<Entry>,
    /// The windowed hit rate a dashboard shows (`rate()` over 5m), judged
    /// apart: it is not the lifetime ratio the endpoints report.
    pub dashboard: Vec<Entry>,
}

impl Report {
    /// Entries with a given verdict.
    pub fn count(&self, v: Verdict) -> usize {
        self.entries.iter().filter(|e| e.verdict == v).count()
    }
}

/// A source and what it has observed lately (oldest first).
pub struct Source<'a> {
    /// Probe name.
    pub name: &'a str,
    /// Probe kind (`http_health`, `prometheus`, `redis`).
    pub kind: &'a str,
    /// Recent observations, oldest first; the newest suitable one is judged.
    pub history: &'a [Observation],
    /// An observation older than this many seconds is stale.
    pub max_age: f64,
}

/// The metrics a source is judged on.
pub fn judged_metrics() -> [Metric; 9] {
    Metric::ALL
}

/// Judges every source against the reference readings (oldest first).
pub fn judge(cfg: &CrossCheckConfig, reference: &[Observation], sources: &[Source<'_>], now: f64) -> Report {
    let refs: Vec<&Observation> = reference.iter().filter(|o| o.ok || !o.values.is_empty()).collect();
    let resets = resets(&refs);
    let r = Reference {
        latest: reference.last(),
        resets,
        refs,
    };
    let mut entries = Vec::new();
    let mut dashboard = Vec::new();
    for src in sources {
        let chosen = choose(src, &r.refs);
        for m in judged_metrics() {
            entries.push(judge_one(cfg, m, src, chosen, &r, now));
        }
        if src.kind == "prometheus"
            && let Some(o) = chosen
        {
            dashboard.push(judge_hit_rate(src.name, o, &r.refs));
        }
    }
    let verdict = if entries.iter().any(|e| e.verdict == Verdict::Disagree) {
        Overall::Disagree
    } else if entries.iter().all(|e| e.verdict == Verdict::Agree) {
        Overall::Agree
    } else {
        Overall::Incomplete
    };
    Report {
        timestamp: now,
        verdict,
        reference: cfg.reference.clone(),
        entries,
        dashboard,
    }
}

/// The reference's readings, and what a round learns from them once.
struct Reference<'r> {
    /// Readings with values, oldest first.
    refs: Vec<&'r Observation>,
    /// The newest reading, failed or not.
    latest: Option<&'r Observation>,
    /// Where the reference's counters fell, oldest first.
    resets: Vec<Reset<'r>>,
}

/// The reference's keyspace counters fell between two consecutive readings:
/// Redis restarted, or someone ran `CONFIG RESETSTAT` (counters to 0,
/// `run_id` and uptime unchanged — checked against redis-server 7.0.15).
/// Every lifetime counter and the lifetime hit ratio start again; a
/// source's sample is only comparable with readings on the same side.
struct Reset<'r> {
    /// The last reading before the fall.
    before: &'r Observation,
    /// The first reading after it.
    after: &'r Observation,
    /// A new `run_id` or a lower uptime: a restart, not a statistics reset.
    restart: bool,
}

impl Reset<'_> {
    /// What happened, for a person.
    fn describe(&self) -> String {
        // A topology reference: a new run_id after a master change is the
        // new master's, whose counters are its own.
        let failover = self
            .after
            .facts
            .topology
            .as_deref()
            .and_then(|t| t.last_failover.as_ref())
            .filter(|f| f.at > self.before.timestamp);
        match failover {
            Some(f) if self.restart => format!("the master changed (failover from {} to {})", f.from, f.to),
            _ if self.restart => "Redis restarted (run_id changed or uptime fell)".into(),
            _ => "Redis's statistics were reset (counters fell with run_id and uptime unchanged: CONFIG RESETSTAT)".into(),
        }
    }
}

/// Which node of the reference's topology a source reads, when it is not the
/// master: the former master after a failover, or a replica.
enum Follows<'a> {
    /// The former master: the source did not follow the failover.
    FormerMaster(&'a crate::probe::topology::Failover),
    /// A replica (by `run_id`): its counters are its own.
    Replica(&'a str),
}

/// Which node `o` reads, by its `run_id`, in the topology of the
/// reference's newest reading; `None` for the master or when unknown. A
/// sample from before the failover read the former master rightly.
fn follows<'a>(o: &Observation, latest: &'a Observation, sampled: f64) -> Option<Follows<'a>> {
    let run_id = o.facts.run_id.as_deref()?;
    let t = latest.facts.topology.as_deref()?;
    if latest.facts.run_id.as_deref() == Some(run_id) {
        return None;
    }
    if let Some(f) = &t.last_failover
        && f.from_run_id.as_deref() == Some(run_id)
        && sampled > f.at
    {
        return Some(Follows::FormerMaster(f));
    }
    t.nodes
        .iter()
        .find(|n| n.role == "replica" && n.run_id.as_deref() == Some(run_id))
        .map(|n| Follows::Replica(n.address.as_str()))
}

/// The falls of the reference's counters (`keyspace_hits`,
/// `keyspace_misses`) and its restarts, between consecutive readings.
fn resets<'r>(refs: &[&'r Observation]) -> Vec<Reset<'r>> {
    let counters = [Metric::KeyspaceHits, Metric::KeyspaceMisses];
    let seq: Vec<&'r Observation> = refs
        .iter()
        .filter(|o| o.facts.run_id.is_some() || counters.iter().any(|m| o.values.contains_key(m)))
        .copied()
        .collect();
    seq.windows(2)
        .filter_map(|w| {
            let (p, q) = (w[0], w[1]);
            let restart = matches!((&p.facts.run_id, &q.facts.run_id), (Some(x), Some(y)) if x != y)
                || matches!((p.facts.uptime_seconds, q.facts.uptime_seconds), (Some(x), Some(y)) if y < x);
            let fell = counters
                .iter()
                .any(|m| matches!((p.values.get(m), q.values.get(m)), (Some(x), Some(y)) if y < x));
            (restart || fell).then_some(Reset {
                before: p,
                after: q,
                restart,
            })
        })
        .collect()
}

/// Where a sample taken in `[a, b]` lies relative to the first reset it does
/// not follow: `Some((reset, true))` wholly before it, `Some((reset, false))`
/// possibly on either side, `None` after every reset.
fn reset_around<'x, 'r>(resets: &'x [Reset<'r>], a: f64, b: f64) -> Option<(&'x Reset<'r>, bool)> {
    resets
        .iter()
        .find(|r| a < r.after.timestamp + r.after.duration_seconds)
        .map(|r| (r, b <= r.before.timestamp))
}

/// How far ahead of lookout's clock Prometheus's is (negative: behind), when
/// it is off by more than the probe's own run can explain and a second.
///
/// Prometheus stamps samples with its own clock; compared with lookout's
/// readings as they are, a clock 10 s behind makes every honest counter look
/// 10 s ahead of the reference — a disagreement that is not there.
fn clock_offset(kind: &str, o: &Observation) -> Option<f64> {
    if kind != "prometheus" {
        return None;
    }
    let off = o.facts.evaluated_at? - (o.timestamp + o.duration_seconds / 2.0);
    (off.abs() > o.duration_seconds / 2.0 + SKEW_MARGIN).then_some(off)
}

/// When a Prometheus source sampled `m`, on lookout's clock.
fn sample_time(kind: &str, o: &Observation, m: Metric) -> Option<f64> {
    let t = o.sample_times.get(&m).copied().or(o.facts.scrape_timestamp)?;
    Some(t - clock_offset(kind, o).unwrap_or(0.0))
}

/// The interval in which a source read Redis.
fn sample_window(kind: &str, o: &Observation, m: Metric) -> (f64, f64) {
    if kind == "prometheus" {
        let t = sample_time(kind, o, m).unwrap_or(o.timestamp);
        if m == Metric::LatencySeconds {
            // A rate over the last minute.
            return (t - 60.0, t);
        }
        (t, t + SCRAPE_SLACK)
    } else {
        (o.timestamp, o.timestamp + o.duration_seconds)
    }
}

/// The newest observation of the source whose sample is bracketed by
/// reference readings, or else the newest observation.
fn choose<'a>(src: &Source<'a>, refs: &[&Observation]) -> Option<&'a Observation> {
    let newest = src.history.last()?;
    let bracketed = src.history.iter().rev().take_while(|o| o.ok == newest.ok).find(|o| {
        let (_, b) = sample_window(src.kind, o, Metric::KeyspaceHits);
        refs.iter().any(|r| r.timestamp >= b)
    });
    Some(bracketed.unwrap_or(newest))
}

/// Reference readings of `m` around `[a, b]`: the last that ended before
/// `a`, and the first that started after `b`.
fn bracket<'r>(refs: &[&'r Observation], m: Metric, a: f64, b: f64) -> (Option<&'r Observation>, Option<&'r Observation>) {
    let with = |o: &&&Observation| o.values.contains_key(&m);
    let before = refs.iter().filter(with).rfind(|o| o.timestamp + o.duration_seconds <= a).copied();
    let after = refs.iter().filter(with).find(|o| o.timestamp >= b).copied();
    (before, after)
}

/// A number for a person: integers without decimals, small values in
/// scientific notation. Reasons, bounds and every report use it.
pub fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 0.01 {
        format!("{v:.4}")
    } else {
        format!("{v:.3e}")
    }
}

fn ago(now: f64, t: f64) -> String {
    humantime::format_duration(std::time::Duration::from_secs((now - t).max(0.0) as u64)).to_string()
}

/// A bound every honest reading of `m` keeps whatever the reference says,
/// from Redis's own invariants: what is wrong when `v` breaks it.
///
/// Each was checked against redis-server 7.0.15 (see the README's
/// cross-check section). Deliberately absent, because Redis does not
/// guarantee them: `used_memory ≤ used_memory_rss` (RSS can be lower after
/// pages are swapped out), `used_memory ≤ maxmemory` (`CONFIG SET maxmemory 1`
/// is accepted with 900 KB in use), `connected_clients ≤ maxclients`
/// (lowering `maxclients` keeps the clients already connected: 3 > 1 seen),
/// `mem_fragmentation_ratio ≥ 1` (below 1 when swapped).
/// A value that breaks one of [`implausible`]'s bounds.
struct Implausible {
    /// The bound, for the entry's `bound`.
    bound: String,
    /// How far outside it.
    deviation: f64,
    /// Why no Redis can have the value, for a person.
    why: String,
}

fn implausible(m: Metric, v: f64, server_side: bool, o: &Observation, hit_ratio_tol: f64) -> Option<Implausible> {
    let whole = v.fract() == 0.0;
    let fail = |bound: &str, deviation: f64, why: String| {
        Some(Implausible {
            bound: bound.to_string(),
            deviation,
            why,
        })
    };
    // Below a whole-number floor: how far below; above it: the fraction.
    let floor = |limit: f64| if v < limit { v - limit } else { v - v.round() };
    match m {
        Metric::KeyspaceHits | Metric::KeyspaceMisses if v < 0.0 || !whole => fail(
            "a whole number ≥ 0",
            floor(0.0),
            format!("{m} {} is not a count: a counter is a whole number, never negative", fmt_num(v)),
        ),
        Metric::HitRatio if !(0.0..=1.0).contains(&v) => fail(
            "[0, 1]",
            if v > 1.0 { v - 1.0 } else { v },
            format!("hit_ratio {} is outside [0, 1]: a ratio of lookups, not a percentage", fmt_num(v)),
        ),
        Metric::HitRatio => {
            let own = Metric::hit_ratio(
                o.values.get(&Metric::KeyspaceHits).copied()?,
                o.values.get(&Metric::KeyspaceMisses).copied()?,
            )?;
            ((v - own).abs() > hit_ratio_tol).then(|| Implausible {
                bound: format!("hits / (hits + misses) of the same sample ± {}", fmt_num(hit_ratio_tol)),
                deviation: v - own,
                why: format!(
                    "hit_ratio {} does not follow from the source's own counters ({}): not the lifetime ratio",
                    fmt_num(v),
                    fmt_num(own)
                ),
            })
        }
        Metric::ConnectedClients if v < 1.0 || !whole => fail(
            "a whole number ≥ 1",
            floor(1.0),
            format!(
                "connected_clients {} is impossible: the connection that read INFO is itself a client",
                fmt_num(v)
            ),
        ),
        Metric::Maxclients if v < 1.0 || !whole => fail(
            "a whole number ≥ 1",
            floor(1.0),
            format!("maxclients {} is impossible: Redis refuses a limit below 1", fmt_num(v)),
        ),
        Metric::UsedMemoryBytes if v < MIN_USED_MEMORY || !whole => fail(
            "a whole number of bytes ≥ 262144",
            floor(MIN_USED_MEMORY),
            format!(
                "used_memory {} is below what an empty Redis uses (≥ 256 KiB; 893 KiB measured): KiB instead of bytes?",
                fmt_num(v)
            ),
        ),
        Metric::MaxmemoryBytes if v < 0.0 || !whole => fail(
            "a whole number of bytes ≥ 0",
            floor(0.0),
            format!("maxmemory {} is not a number of bytes", fmt_num(v)),
        ),
        Metric::MemFragmentationRatio if v <= 0.0 => fail(
            "> 0",
            v,
            format!(
                "mem_fragmentation_ratio {} is impossible: a running Redis has resident memory",
                fmt_num(v)
            ),
        ),
        Metric::LatencySeconds if v <= 0.0 => fail(
            "> 0",
            v,
            format!("latency {} s is impossible: every command takes time", fmt_num(v)),
        ),
        Metric::LatencySeconds if !server_side && v < MIN_ROUND_TRIP => fail(
            "≥ 5e-6 s",
            v - MIN_ROUND_TRIP,
            format!(
                "latency {} s is below any network round trip to Redis (≥ 5 µs; 16 µs is the fastest loopback PING measured): seconds written as milliseconds?",
                fmt_num(v)
            ),
        ),
        _ => None,
    }
}

fn judge_one(cfg: &CrossCheckConfig, m: Metric, src: &Source<'_>, chosen: Option<&Observation>, r: &Reference<'_>, now: f64) -> Entry {
    let refs = &r.refs[..];
    let mut e = Entry {
        metric: m.as_str().to_string(),
        source: src.name.to_string(),
        verdict: Verdict::Missing,
        value: None,
        reference_value: None,
        deviation: None,
        bound: None,
        reason: String::new(),
    };
    let Some(o) = chosen else {
        e.verdict = Verdict::SourceDown;
        e.reason = "no observation yet".into();
        return e;
    };
    e.value = o.values.get(&m).copied();
    // The exporter side of Prometheus down: what Prometheus holds is stale, not wrong.
    if src.kind == "prometheus" && o.reason == Some(FailureReason::Upstream)
        || o.facts.target_up == Some(false)
        || o.facts.redis_up == Some(false)
    {
        e.verdict = Verdict::Stale;
        e.reason = o.error.clone().unwrap_or_else(|| "exporter target down".into());
        return e;
    }
    if !o.ok && e.value.is_none() {
        e.verdict = Verdict::SourceDown;
        e.reason = o.error.clone().unwrap_or_else(|| "probe failing".into());
        return e;
    }
    if now - o.timestamp > src.max_age {
        e.verdict = Verdict::Stale;
        e.reason = format!("last observation {} ago", ago(now, o.timestamp));
        return e;
    }
    let offset = clock_offset(src.kind, o);
    if src.kind == "prometheus"
        && let Some(t) = sample_time(src.kind, o, m)
        && m != Metric::LatencySeconds
        && o.timestamp - t > cfg.max_staleness.as_secs_f64()
    {
        e.verdict = Verdict::Stale;
        e.reason = format!(
            "Prometheus's sample is {} old (max {}): is the exporter stalled or the scrape failing?",
            ago(o.timestamp, t),
            humantime::format_duration(cfg.max_staleness)
        );
        return e;
    }
    let Some(v) = e.value else {
        e.verdict = Verdict::Missing;
        let no_lookups = m == Metric::HitRatio
            && o.values.get(&Metric::KeyspaceHits) == Some(&0.0)
            && o.values.get(&Metric::KeyspaceMisses) == Some(&0.0);
        e.reason = if no_lookups {
            "no lookups yet in the source's sample (0/0)".into()
        } else {
            format!("{} did not report {m}", src.name)
        };
        return e;
    };
    // A value no Redis can have is wrong whatever the reference says.
    if let Some(bad) = implausible(m, v, src.kind == "prometheus", o, cfg.tolerance(Metric::HitRatio).abs) {
        e.verdict = Verdict::Disagree;
        e.reference_value = nearest(refs, m, o.timestamp).and_then(|r| r.values.get(&m)).copied();
        e.deviation = Some(bad.deviation);
        e.bound = Some(bad.bound);
        e.reason = bad.why;
        return e;
    }
    match r.latest {
        Some(l) if !l.ok && l.values.is_empty() => {
            e.verdict = Verdict::SourceDown;
            e.reason = format!(
                "reference `{}` is failing: {}",
                cfg.reference,
                l.error.as_deref().unwrap_or("unknown error")
            );
            return e;
        }
        None => {
            e.verdict = Verdict::SourceDown;
            e.reason = format!("no reading from the reference `{}` yet", cfg.reference);
            return e;
        }
        _ => {}
    }
    let (a, b) = sample_window(src.kind, o, m);
    let lifetime = matches!(m, Metric::KeyspaceHits | Metric::KeyspaceMisses | Metric::HitRatio);
    if let Some(latest) = r.latest {
        match follows(o, latest, a) {
            Some(Follows::FormerMaster(f)) => {
                e.verdict = Verdict::Disagree;
                e.reference_value = latest.values.get(&m).copied();
                e.reason = format!(
                    "{} reports run_id {} of the former master {}; it did not follow the failover to {}",
                    src.name,
                    f.from_run_id.as_deref().unwrap_or("?"),
                    f.from,
                    f.to
                );
                return e;
            }
            // Configuration and gauges compare with the master's; a
            // replica's counters count its own reads, never the master's.
            Some(Follows::Replica(node)) if lifetime => {
                e.verdict = Verdict::Missing;
                e.reason = format!(
                    "{} reads the replica {node}: its counters are not the master's, not compared",
                    src.name
                );
                return e;
            }
            _ => {}
        }
    }
    if lifetime && let Some((reset, wholly_before)) = reset_around(&r.resets, a, b) {
        e.reference_value = reset.after.values.get(&m).copied();
        if wholly_before && src.kind == "prometheus" {
            // Prometheus lags by a scrape: its sample is from the old
            // lifetime, not wrong, and the next scrape will be comparable.
            e.verdict = Verdict::Stale;
            e.reason = format!(
                "Prometheus's sample predates the reset: {}; waiting for a scrape after it",
                reset.describe()
            );
        } else {
            e.verdict = Verdict::Reset;
            e.reason = format!(
                "{} {} this sample: lifetime counters (and the hit ratio) started again",
                reset.describe(),
                if wholly_before { "after" } else { "around" }
            );
        }
        return e;
    }
    let (before, after) = bracket(refs, m, a, b);
    let tol = cfg.tolerance(m);
    match m {
        Metric::KeyspaceHits | Metric::KeyspaceMisses => {
            // The source's own previous sample, when it is higher and no
            // reset lies between: the series went backwards by itself.
            let earlier = src
                .history
                .iter()
                .filter(|x| x.timestamp < o.timestamp)
                .filter(|x| reset_around(&r.resets, sample_window(src.kind, x, m).0, f64::INFINITY).is_none())
                .filter_map(|x| x.values.get(&m).copied())
                .reduce(f64::max)
                .filter(|p| *p > v);
            counter(&mut e, v, before, after, tol, earlier)
        }
        Metric::LatencySeconds => {
            // Like the reference's, the source's figure is the median of its
            // readings of the last minute: one slow request in a web worker is
            // noise, a slow endpoint stays slow.
            let mut own: Vec<f64> = src
                .history
                .iter()
                .filter(|x| x.timestamp <= o.timestamp && x.timestamp >= o.timestamp - 60.0)
                .filter_map(|x| x.values.get(&Metric::LatencySeconds))
                .copied()
                .collect();
            own.sort_by(f64::total_cmp);
            let v = own.get(own.len() / 2).copied().unwrap_or(v);
            e.value = Some(v);
            latency(&mut e, v, refs, a, b, tol, src.kind == "prometheus")
        }
        Metric::Maxclients | Metric::MaxmemoryBytes => equal(&mut e, v, before, after, refs),
        _ => within(&mut e, v, before, after, refs, tol, m, (a + b) / 2.0),
    }
    if let Some(off) = offset
        && e.verdict != Verdict::Disagree
    {
        e.reason.push_str(&format!(
            " (Prometheus's clock is {:.1} s {} lookout's; its sample times were corrected)",
            off.abs(),
            if off < 0.0 { "behind" } else { "ahead of" }
        ));
    }
    e
}

fn nearest<'r>(refs: &[&'r Observation], m: Metric, t: f64) -> Option<&'r Observation> {
    refs.iter()
        .filter(|o| o.values.contains_key(&m))
        .min_by(|x, y| (x.timestamp - t).abs().total_cmp(&(y.timestamp - t).abs()))
        .copied()
}

/// The counter rule. `earlier`: the highest of the source's own earlier
/// samples of the counter when above this one and Redis did not reset since
/// — a series going backwards by itself, the mark of two instances behind
/// one series.
fn counter(e: &mut Entry, v: f64, before: Option<&Observation>, after: Option<&Observation>, tol: Tolerance, earlier: Option<f64>) {
    let m: Metric = e.metric.parse().unwrap_or(Metric::KeyspaceHits);
    let mixed = earlier
        .map(|p| {
            format!(
                "; it went back from the source's own earlier sample {} while Redis's did not: two instances behind one series (relabelling?)",
                fmt_num(p)
            )
        })
        .unwrap_or_default();
    let lo = before.and_then(|o| o.values.get(&m)).copied();
    let hi = after.and_then(|o| o.values.get(&m)).copied();
    let slack = tol.abs + tol.rel * hi.or(lo).unwrap_or(0.0);
    e.bound = Some(format!(
        "[{}, {}]",
        lo.map(fmt_num).unwrap_or_else(|| "?".into()),
        hi.map(fmt_num).unwrap_or_else(|| "?".into())
    ));
    match (lo, hi) {
        (None, None) => {
            e.verdict = Verdict::Missing;
            e.reason = "no reference reading around the sample".into();
        }
        (Some(l), _) if v < l - slack => {
            e.reference_value = Some(l);
            e.deviation = Some(v - l);
            // Lower than a reading taken before it: a counter never goes back,
            // unless Redis restarted after that reading.
            let restarted = after.is_some_and(|a| {
                a.facts
                    .uptime_seconds
                    .is_some_and(|u| u < a.timestamp - before.map(|b| b.timestamp).unwrap_or(0.0))
            });
            if restarted {
                e.verdict = Verdict::Reset;
                e.reason = "Redis restarted (uptime fell): counters reset".into();
            } else {
                e.verdict = Verdict::Disagree;
                e.reason = format!(
                    "{} is below the reference's earlier reading {} (frozen or wrong counter?{mixed})",
                    fmt_num(v),
                    fmt_num(l)
                );
            }
        }
        (_, Some(h)) if v > h + slack => {
            e.reference_value = Some(h);
            e.deviation = Some(v - h);
            e.verdict = Verdict::Disagree;
            e.reason = format!(
                "{} is above the reference's later reading {} (another Redis or database?{mixed})",
                fmt_num(v),
                fmt_num(h)
            );
        }
        _ => {
            e.reference_value = hi.or(lo);
            e.deviation = Some(0.0);
            e.verdict = Verdict::Agree;
            e.reason = match (lo, hi) {
                (Some(_), Some(_)) => "between the reference readings before and after the sample".into(),
                (Some(_), None) => "not below the reference's last reading (no later reading yet)".into(),
                _ => "not above the reference's next reading (no earlier reading kept)".into(),
            };
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn within(
    e: &mut Entry,
    v: f64,
    before: Option<&Observation>,
    after: Option<&Observation>,
    refs: &[&Observation],
    tol: Tolerance,
    m: Metric,
    t: f64,
) {
    let mut vals: Vec<f64> = [before, after].iter().flatten().filter_map(|o| o.values.get(&m)).copied().collect();
    if vals.is_empty()
        && let Some(n) = nearest(refs, m, t).and_then(|o| o.values.get(&m))
    {
        vals.push(*n);
    }
    if vals.is_empty() {
        e.verdict = Verdict::Missing;
        e.reason = "the reference did not report it".into();
        return;
    }
    let mut lo_ref = vals.iter().copied().fold(f64::INFINITY, f64::min);
    let mut hi_ref = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == Metric::HitRatio
        && let Some((l, h)) = ratio_span(before, after)
    {
        lo_ref = lo_ref.min(l);
        hi_ref = hi_ref.max(h);
    }
    let slack = tol.abs.max(tol.rel * hi_ref.abs());
    // Every canonical metric is non-negative.
    let (lo, mut hi) = ((lo_ref - slack).max(0.0), hi_ref + slack);
    if m == Metric::HitRatio {
        hi = hi.min(1.0);
    }
    let nearest_val = if (v - lo_ref).abs() < (v - hi_ref).abs() { lo_ref } else { hi_ref };
    e.reference_value = Some(nearest_val);
    e.bound = Some(format!("[{}, {}]", fmt_num(lo), fmt_num(hi)));
    if v >= lo && v <= hi {
        e.verdict = Verdict::Agree;
        e.deviation = Some(if v < lo_ref {
            v - lo_ref
        } else if v > hi_ref {
            v - hi_ref
        } else {
            0.0
        });
        e.reason = "within tolerance of the reference".into();
    } else {
        e.verdict = Verdict::Disagree;
        e.deviation = Some(v - nearest_val);
        let factor = if nearest_val != 0.0 { v / nearest_val } else { f64::INFINITY };
        let hint = if m == Metric::UsedMemoryBytes && (factor - 1.0 / 1024.0).abs() < 0.0005 {
            " (1/1024 of it: reported in KiB instead of bytes?)"
        } else {
            ""
        };
        e.reason = format!(
            "{} is outside {} of the reference's {}{hint}",
            fmt_num(v),
            e.bound.clone().unwrap_or_default(),
            fmt_num(nearest_val)
        );
    }
}

/// Every lifetime hit ratio a sample taken between two readings can have:
/// its hits and misses lie between the readings' (no reset in between), so
/// the ratio lies in `[h0 / (h0 + m1), h1 / (h1 + m0)]`. With few lookups —
/// just after a start or a statistics reset — that is wide, and a ratio
/// outside both readings' is honest; with many it closes on them.
fn ratio_span(before: Option<&Observation>, after: Option<&Observation>) -> Option<(f64, f64)> {
    let get = |o: Option<&Observation>, m| o.and_then(|o| o.values.get(&m)).copied();
    let (h0, m0) = (get(before, Metric::KeyspaceHits)?, get(before, Metric::KeyspaceMisses)?);
    let (h1, m1) = (get(after, Metric::KeyspaceHits)?, get(after, Metric::KeyspaceMisses)?);
    if h1 < h0 || m1 < m0 {
        return None;
    }
    Some((Metric::hit_ratio(h0, m1)?, Metric::hit_ratio(h1, m0)?))
}

fn equal(e: &mut Entry, v: f64, before: Option<&Observation>, after: Option<&Observation>, refs: &[&Observation]) {
    let m: Metric = e.metric.parse().unwrap_or(Metric::Maxclients);
    let mut vals: Vec<f64> = [before, after].iter().flatten().filter_map(|o| o.values.get(&m)).copied().collect();
    if vals.is_empty() {
        vals.extend(refs.last().and_then(|o| o.values.get(&m)).copied());
    }
    let Some(&r) = vals.last() else {
        e.verdict = Verdict::Missing;
        e.reason = "the reference did not report it".into();
        return;
    };
    e.reference_value = Some(r);
    e.bound = Some(format!("= {}", fmt_num(r)));
    if vals.contains(&v) {
        e.verdict = Verdict::Agree;
        e.deviation = Some(0.0);
        e.reason = "equal to the reference".into();
    } else {
        e.verdict = Verdict::Disagree;
        e.deviation = Some(v - r);
        e.reason = format!("configuration value {} differs from the reference's {}", fmt_num(v), fmt_num(r));
    }
}

fn latency(e: &mut Entry, v: f64, refs: &[&Observation], a: f64, b: f64, tol: Tolerance, server_side: bool) {
    // One PING is noisy: take the median of the reference's readings around the sample.
    let mut around: Vec<f64> = refs
        .iter()
        .filter(|o| o.timestamp >= a - 60.0 && o.timestamp <= b + 60.0)
        .filter_map(|o| o.values.get(&Metric::LatencySeconds))
        .copied()
        .collect();
    if around.is_empty() {
        around.extend(
            refs.iter()
                .rev()
                .take(5)
                .filter_map(|o| o.values.get(&Metric::LatencySeconds))
                .copied(),
        );
    }
    if around.is_empty() {
        e.verdict = Verdict::Missing;
        e.reason = "the reference did not report it".into();
        return;
    }
    around.sort_by(f64::total_cmp);
    let r = around[around.len() / 2];
    e.reference_value = Some(r);
    let ratio = if r > 0.0 { v / r } else { f64::INFINITY };
    e.deviation = Some(ratio);
    let f = tol.factor.max(1.0);
    // Two sub-millisecond figures a few ms apart are both fast: beyond the
    // factor, the absolute slack still allows a scheduling hiccup in a web
    // worker. It widens the bound upwards only: nothing makes a round trip
    // through an application much faster than lookout's own.
    let close_above = v >= r && v - r <= tol.abs;
    if !server_side && ratio < 1.0 / f {
        e.verdict = Verdict::Disagree;
        e.bound = Some(format!("ratio ≥ 1/{}", fmt_num(f)));
        e.reason = format!(
            "latency {} s is below what a round trip through the application can take (reference {} s, so at least {} s: 1/{} of it); seconds written as milliseconds?",
            fmt_num(v),
            fmt_num(r),
            fmt_num(r / f),
            fmt_num(f)
        );
        return;
    }
    let ok = ratio <= f || close_above;
    e.bound = Some(if server_side {
        format!("ratio ≤ {}, or at most {} ms above", fmt_num(f), fmt_num(tol.abs * 1000.0))
    } else {
        format!(
            "ratio within [1/{0}, {0}], or at most {1} ms above",
            fmt_num(f),
            fmt_num(tol.abs * 1000.0)
        )
    });
    if ok {
        e.verdict = Verdict::Agree;
        e.reason = if server_side {
            "Redis's own mean command time is not above the round trip (×factor)".into()
        } else {
            format!("{:.1}× the reference's round trip, within the factor", ratio)
        };
    } else {
        e.verdict = Verdict::Disagree;
        e.reason = format!("{:.1}× the reference's median round trip of {:.3} ms", ratio, r * 1000.0);
    }
}

/// How much a counter grew over consecutive readings, as Prometheus's
/// `rate()` counts it: a fall is a reset (restart or `CONFIG RESETSTAT`)
/// after which the counter grew from 0 to its new value.
fn increase(readings: &[&Observation], m: Metric) -> f64 {
    let vals: Vec<f64> = readings.iter().filter_map(|o| o.values.get(&m)).copied().collect();
    vals.windows(2).map(|w| if w[1] >= w[0] { w[1] - w[0] } else { w[1] }).sum()
}

/// The 5-minute windowed hit rate Prometheus computes (what the dashboard
/// panel shows) against the same rate from the reference's own readings.
fn judge_hit_rate(source: &str, o: &Observation, refs: &[&Observation]) -> Entry {
    let mut e = Entry {
        metric: "hit_rate_5m".into(),
        source: source.to_string(),
        verdict: Verdict::Missing,
        value: o.facts.hit_rate_5m,
        reference_value: None,
        deviation: None,
        bound: None,
        reason: String::new(),
    };
    let t = sample_time("prometheus", o, Metric::KeyspaceHits).unwrap_or(o.timestamp);
    let end = nearest(refs, Metric::KeyspaceHits, t);
    let start = nearest(refs, Metric::KeyspaceHits, t - 300.0).filter(|s| (s.timestamp - (t - 300.0)).abs() < 60.0);
    let rate = match (start, end) {
        (Some(s), Some(en)) => {
            let span: Vec<&Observation> = refs
                .iter()
                .filter(|o| o.timestamp >= s.timestamp && o.timestamp <= en.timestamp)
                .copied()
                .collect();
            Metric::hit_ratio(increase(&span, Metric::KeyspaceHits), increase(&span, Metric::KeyspaceMisses))
        }
        _ => None,
    };
    match (e.value, rate) {
        (None, _) => e.reason = "Prometheus has no 5m rate yet (needs 5 minutes of scrapes with lookups)".into(),
        (_, None) => e.reason = "not enough reference history (5 minutes) to compute the rate".into(),
        (Some(v), Some(r)) => {
            e.reference_value = Some(r);
            e.deviation = Some(v - r);
            e.bound = Some("±0.05".into());
            // rate() extrapolates to the window's edges; allow for it.
            if (v - r).abs() <= 0.05 {
                e.verdict = Verdict::Agree;
                e.reason = "the dashboard's windowed hit rate matches the reference's".into();
            } else {
                e.verdict = Verdict::Disagree;
                e.reason = format!("dashboard hit rate {:.3} vs {:.3} from the reference over the same 5 minutes", v, r);
            }
        }
    }
    e
}

/// Publishes a round as metrics.
pub fn record_metrics(r: &Report) {
    for e in &r.entries {
        let agree = match e.verdict {
            Verdict::Agree => 1.0,
            Verdict::Disagree => 0.0,
            // Unknown, not disagreeing: a rule on `== 0` must not fire.
            _ => f64::NAN,
        };
        metrics::gauge!("lookout_crosscheck_agree", "metric" => e.metric.clone(), "source" => e.source.clone()).set(agree);
        metrics::gauge!("lookout_crosscheck_deviation", "metric" => e.metric.clone(), "source" => e.source.clone())
            .set(e.deviation.unwrap_or(f64::NAN));
    }
    for v in Overall::ALL {
        metrics::gauge!("lookout_crosscheck_verdict", "verdict" => v.as_str()).set(if v == r.verdict { 1.0 } else { 0.0 });
    }
    metrics::gauge!("lookout_crosscheck_last_round_timestamp_seconds").set(r.timestamp);
}

/// Prometheus's default scrape interval: what a one-shot round waits for
/// (plus the probe's timeout) when the targets API cannot say.
const DEFAULT_SCRAPE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(15);
/// How often a one-shot round asks Prometheus again for a newer scrape.
const SCRAPE_POLL: std::time::Duration = std::time::Duration::from_millis(250);
/// Reference readings on each side of a one-shot bracket (each is itself
/// the median of three PINGs)…
const SIDE_READINGS: usize = 3;
/// …this far apart, so that one stall of the machine does not slow them all.
const SIDE_SPACING: std::time::Duration = std::time::Duration::from_millis(100);

/// The longest scrape interval of the Prometheus sources' exporter targets,
/// from Prometheus's targets API; [`DEFAULT_SCRAPE_INTERVAL`] for a source
/// it cannot be read for (the round then still runs, only its wait is a
/// guess). Zero without a Prometheus source: nothing to wait for.
async fn scrape_interval(sources: &[crate::probe::ProbeHandle]) -> std::time::Duration {
    let intervals = sources.iter().filter_map(|h| match &h.config.spec {
        crate::probe::ProbeSpec::Prometheus(spec) => Some(async move {
            crate::probe::prometheus::scrape_interval(spec, h.config.timeout)
                .await
                .unwrap_or_else(|e| {
                    tracing::info!(probe = %h.config.name, error = %e, default = ?DEFAULT_SCRAPE_INTERVAL, "Scrape interval unknown; waiting for the default");
                    DEFAULT_SCRAPE_INTERVAL
                })
        }),
        _ => None,
    });
    futures::future::join_all(intervals).await.into_iter().max().unwrap_or_default()
}

/// Whether a Prometheus reading holds a scrape taken after `t` (lookout's
/// clock, Prometheus's skew taken out) for every counter it reports.
fn scraped_after(kind: &str, o: &Observation, t: f64) -> bool {
    [Metric::KeyspaceHits, Metric::KeyspaceMisses]
        .iter()
        .all(|m| sample_time(kind, o, *m).is_some_and(|s| s > t))
}

/// One round now, for `lookout report`: the reference is read, then every
/// source at once, then the reference again, so each source's sample is
/// bracketed. A Prometheus source is waited for (at most `wait`, by default
/// its target's scrape interval from the targets API and a probe timeout)
/// until it holds a scrape newer than the reading before. Readings the daemon stored in the last minutes (same
/// `data_dir`) are added, so a Prometheus sample taken before this command
/// started can be bracketed too.
pub async fn run_now(cfg: &(impl Setup + ?Sized), wait: Option<std::time::Duration>) -> anyhow::Result<Report> {
    run_now_after(cfg, wait, None).await
}

/// [`run_now`] after a known master change: the reference's readings
/// carry `failover` as their last one, so a source still reporting the
/// former master's `run_id` is named as left behind exactly as the daemon
/// names it. A one-shot probe has seen no master change of its own, so
/// without this the former master (now a replica) would be judged as one.
pub async fn run_now_after(
    cfg: &(impl Setup + ?Sized),
    wait: Option<std::time::Duration>,
    failover: Option<&crate::probe::topology::Failover>,
) -> anyhow::Result<Report> {
    use crate::probe;
    let cc = cfg.crosscheck().ok_or_else(|| {
        anyhow::anyhow!(
            "nothing to cross-check: the configuration needs a `kind: redis` probe (the reference) and at least one other probe"
        )
    })?;
    let find = |n: &str| {
        cfg.probes()
            .iter()
            .find(|p| p.name == n)
            .ok_or_else(|| anyhow::anyhow!("no probe named `{n}`"))
    };
    let reference = probe::build(find(&cc.reference)?).map_err(|e| anyhow::anyhow!(e))?;
    let sources = cc
        .sources
        .iter()
        .map(|n| find(n).and_then(|p| probe::build(p).map_err(|e| anyhow::anyhow!(e))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut refs = Vec::new();
    let since = probe::unix_now() - 7.0 * 60.0;
    let name = cc.reference.clone();
    // Without stored readings the round still runs, bracketed by its own two.
    match crate::store::read_existing(cfg.data_dir(), move |r| r.since(Some(&name), since)).await {
        Ok(stored) => refs.extend(stored.unwrap_or_default()),
        Err(e) => tracing::debug!(error = %e, "Stored reference readings not used"),
    }
    let slowest = sources.iter().map(|h| h.config.timeout).max().unwrap_or_default();
    let wait = match wait {
        Some(w) => w,
        None => scrape_interval(&sources).await + slowest,
    };
    // The bracket: readings of Redis, the sources, readings after. A
    // Prometheus sample is only judged against readings around it, so a
    // Prometheus source is read again until it holds a scrape newer than the
    // last reading before (or `wait` passes: then it is `stale`, with the
    // reason). Several spaced readings on each side give the latency rule a
    // median of round trips, not one that a scheduling hiccup decides.
    for _ in 1..SIDE_READINGS {
        refs.push(probe::run(&reference).await);
        tokio::time::sleep(SIDE_SPACING).await;
    }
    let first = probe::run(&reference).await;
    let after = first.timestamp + first.duration_seconds;
    refs.push(first);
    let deadline = std::time::Instant::now() + wait;
    let observed = futures::future::join_all(sources.iter().map(|h| async move {
        let mut o = probe::run(h).await;
        // Only an answering Prometheus is waited for: a failing one is judged
        // as it is (`source_down`), at once.
        while h.config.spec.kind() == "prometheus"
            && o.ok
            && !scraped_after(h.config.spec.kind(), &o, after)
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(SCRAPE_POLL).await;
            o = probe::run(h).await;
        }
        o
    }))
    .await;
    refs.push(probe::run(&reference).await);
    for _ in 1..SIDE_READINGS {
        tokio::time::sleep(SIDE_SPACING).await;
        refs.push(probe::run(&reference).await);
    }
    refs.sort_by(|a, b| a.timestamp.total_cmp(&b.timestamp));
    if let Some(f) = failover {
        for t in refs.iter_mut().filter_map(|o| o.facts.topology.as_deref_mut()) {
            if t.last_failover.is_none() && t.master.as_deref() == Some(f.to.as_str()) {
                t.last_failover = Some(f.clone());
            }
        }
    }
    let inputs: Vec<(String, String, Vec<Observation>, f64)> = sources
        .iter()
        .zip(observed)
        .map(|(h, o)| (h.config.name.clone(), h.config.spec.kind().to_string(), vec![o], f64::INFINITY))
        .collect();
    let srcs: Vec<Source<'_>> = inputs
        .iter()
        .map(|(n, k, h, a)| Source {
            name: n,
            kind: k,
            history: h,
            max_age: *a,
        })
        .collect();
    Ok(judge(cc, &refs, &srcs, probe::unix_now()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::probe::Facts;

    fn cfg() -> CrossCheckConfig {
        CrossCheckConfig {
            every: Duration::from_secs(15),
            reference: "redis".into(),
            sources: vec!["web".into(), "prom".into()],
            max_staleness: Duration::from_secs(30),
            tolerances: BTreeMap::new(),
        }
    }

    fn obs(name: &str, ts: f64, run_id: &str, vals: &[(Metric, f64)]) -> Observation {
        Observation {
            name: name.into(),
            kind: "redis".into(),
            ok: true,
            error: None,
            reason: None,
            timestamp: ts,
            duration_seconds: 0.01,
            values: vals.iter().copied().collect(),
            facts: Facts {
                run_id: Some(run_id.into()),
                ..Facts::default()
            },
            sample_times: BTreeMap::new(),
        }
    }

    fn full(hits: f64, mem: f64) -> Vec<(Metric, f64)> {
        vec![
            (Metric::LatencySeconds, 0.0002),
            (Metric::KeyspaceHits, hits),
            (Metric::KeyspaceMisses, 10.0),
            (Metric::HitRatio, hits / (hits + 10.0)),
            (Metric::ConnectedClients, 5.0),
            (Metric::Maxclients, 10000.0),
            (Metric::UsedMemoryBytes, mem),
            (Metric::MaxmemoryBytes, 0.0),
            (Metric::MemFragmentationRatio, 1.2),
        ]
    }

    fn entry<'a>(r: &'a Report, m: Metric, s: &str) -> &'a Entry {
        r.entries.iter().find(|e| e.metric == m.as_str() && e.source == s).unwrap()
    }

    fn judge_web(web: Observation, refs: &[Observation]) -> Report {
        let h = [web];
        judge(
            &cfg(),
            refs,
            &[Source {
                name: "web",
                kind: "http_health",
                history: &h,
                max_age: 60.0,
            }],
            120.0,
        )
    }

    #[test]
    fn honest_source_agrees() {
        let refs = [
            obs("redis", 100.0, "a", &full(1000.0, 5e6)),
            obs("redis", 110.0, "a", &full(1100.0, 5.1e6)),
        ];
        let r = judge_web(obs("web", 105.0, "", &full(1050.0, 5.05e6)), &refs);
        assert_eq!(r.verdict, Overall::Agree, "{r:#?}");
    }

    /// A `redis_sentinel` reference: master `a` until 108, then `b`
    /// (replica `c` beside it).
    fn failed_over() -> Vec<Observation> {
        use crate::probe::topology::{Failover, Node, Topology};
        let with = |mut o: Observation, failover: bool| {
            let master = if failover { "127.0.0.1:2" } else { "127.0.0.1:1" };
            o.facts.topology = Some(Box::new(Topology {
                master: Some(master.into()),
                nodes: vec![Node {
                    address: "127.0.0.1:3".into(),
                    role: "replica".into(),
                    ok: true,
                    run_id: Some("c".into()),
                    ..Node::default()
                }],
                last_failover: failover.then(|| Failover {
                    from: "127.0.0.1:1".into(),
                    from_run_id: Some("a".into()),
                    to: "127.0.0.1:2".into(),
                    at: 108.0,
                }),
                ..Topology::default()
            }));
            o
        };
        vec![
            with(obs("redis", 100.0, "a", &full(1000.0, 5e6)), false),
            with(obs("redis", 110.0, "b", &full(200.0, 5e6)), true),
            with(obs("redis", 115.0, "b", &full(300.0, 5e6)), true),
        ]
    }

    #[test]
    fn a_source_left_on_the_former_master_is_named() {
        let refs = failed_over();
        let r = judge_web(obs("web", 112.0, "a", &full(1050.0, 5e6)), &refs);
        let e = entry(&r, Metric::UsedMemoryBytes, "web");
        assert_eq!(e.verdict, Verdict::Disagree);
        assert_eq!(
            e.reason,
            "web reports run_id a of the former master 127.0.0.1:1; it did not follow the failover to 127.0.0.1:2"
        );
        // Once it follows, it agrees.
        let r = judge_web(obs("web", 112.0, "b", &full(250.0, 5e6)), &refs);
        assert_eq!(r.verdict, Overall::Agree, "{r:#?}");
        // A sample from before the failover read the master of its time.
        let r = judge_web(obs("web", 105.0, "a", &full(1050.0, 5e6)), &refs);
        assert_ne!(entry(&r, Metric::UsedMemoryBytes, "web").verdict, Verdict::Disagree, "{r:#?}");
    }

    #[test]
    fn a_replica_is_never_judged_on_counters() {
        let r = judge_web(obs("web", 112.0, "c", &full(7.0, 5e6)), &failed_over());
        let e = entry(&r, Metric::KeyspaceHits, "web");
        assert_eq!(e.verdict, Verdict::Missing);
        assert!(e.reason.contains("reads the replica 127.0.0.1:3"), "{}", e.reason);
        assert_eq!(entry(&r, Metric::Maxclients, "web").verdict, Verdict::Agree);
    }

    #[test]
    fn frozen_counter_disagrees_and_says_why() {
        let refs = [
            obs("redis", 100.0, "a", &full(1000.0, 5e6)),
            obs("redis", 110.0, "a", &full(1100.0, 5e6)),
        ];
        let r = judge_web(obs("web", 105.0, "", &full(900.0, 5e6)), &refs);
        let e = entry(&r, Metric::KeyspaceHits, "web");
        assert_eq!(e.verdict, Verdict::Disagree);
        assert_eq!(e.deviation, Some(-100.0));
        assert_eq!(e.bound.as_deref(), Some("[1000, 1100]"));
        assert!(e.reason.contains("frozen"), "{}", e.reason);
        assert_eq!(r.verdict, Overall::Disagree);
    }

    #[test]
    fn restart_between_readings_is_a_reset() {
        let refs = [
            obs("redis", 100.0, "a", &full(1000.0, 5e6)),
            obs("redis", 110.0, "b", &full(3.0, 5e6)),
        ];
        let r = judge_web(obs("web", 105.0, "", &full(2.0, 5e6)), &refs);
        assert_eq!(entry(&r, Metric::KeyspaceHits, "web").verdict, Verdict::Reset);
        assert_eq!(r.verdict, Overall::Incomplete);
    }

    #[test]
    fn memory_in_kib_is_caught_with_a_hint() {
        let refs = [
            obs("redis", 100.0, "a", &full(1000.0, 50e6)),
            obs("redis", 110.0, "a", &full(1000.0, 50e6)),
        ];
        let r = judge_web(obs("web", 105.0, "", &full(1000.0, 50e6 / 1024.0)), &refs);
        let e = entry(&r, Metric::UsedMemoryBytes, "web");
        assert_eq!(e.verdict, Verdict::Disagree);
        assert!(e.reason.contains("KiB"), "{}", e.reason);
    }

    #[test]
    fn config_values_must_be_equal_and_latency_within_factor() {
        let refs = [
            obs("redis", 100.0, "a", &full(1000.0, 5e6)),
            obs("redis", 110.0, "a", &full(1000.0, 5e6)),
        ];
        let mut vals = full(1000.0, 5e6);
        vals[5] = (Metric::Maxclients, 9999.0);
        vals[0] = (Metric::LatencySeconds, 0.0002 * 60.0 + 0.01);
        let r = judge_web(obs("web", 105.0, "", &vals), &refs);
        assert_eq!(entry(&r, Metric::Maxclients, "web").verdict, Verdict::Disagree);
        let l = entry(&r, Metric::LatencySeconds, "web");
        assert_eq!(l.verdict, Verdict::Disagree);
        assert!((l.deviation.unwrap() - 110.0).abs() < 1e-9);
    }

    #[test]
    fn prometheus_lag_is_bracketed_by_its_scrape_time_and_staleness_detected() {
        let refs: Vec<Observation> = (0..10)
            .map(|i| obs("redis", 100.0 + 5.0 * i as f64, "a", &full(1000.0 + 50.0 * i as f64, 5e6)))
            .collect();
        // Sampled at 112 (hits 1110: between the readings at 110 and 115), read by the probe at 140.
        let mut p = obs("prom", 140.0, "", &full(1110.0, 5e6));
        p.kind = "prometheus".into();
        p.facts.scrape_timestamp = Some(112.0);
        p.facts.target_up = Some(true);
        p.facts.redis_up = Some(true);
        let h = [p.clone()];
        let src = [Source {
            name: "prom",
            kind: "prometheus",
            history: &h,
            max_age: 60.0,
        }];
        let r = judge(&cfg(), &refs, &src, 141.0);
        assert_eq!(entry(&r, Metric::KeyspaceHits, "prom").verdict, Verdict::Agree, "{r:#?}");

        p.facts.scrape_timestamp = Some(100.0);
        let h = [p.clone()];
        let src = [Source {
            name: "prom",
            kind: "prometheus",
            history: &h,
            max_age: 60.0,
        }];
        let r = judge(&cfg(), &refs, &src, 141.0);
        assert_eq!(entry(&r, Metric::KeyspaceHits, "prom").verdict, Verdict::Stale);

        p.facts.target_up = Some(false);
        p.ok = false;
        p.reason = Some(FailureReason::Upstream);
        let h = [p];
        let src = [Source {
            name: "prom",
            kind: "prometheus",
            history: &h,
            max_age: 60.0,
        }];
        let r = judge(&cfg(), &refs, &src, 141.0);
        assert!(r.entries.iter().all(|e| e.verdict == Verdict::Stale));
        assert_eq!(r.verdict, Overall::Incomplete);
    }

    #[test]
    fn failing_source_and_reference() {
        let refs = [obs("redis", 100.0, "a", &full(1000.0, 5e6))];
        let mut web = obs("web", 105.0, "", &[]);
        web.ok = false;
        web.error = Some("HTTP 503: Redis down".into());
        let r = judge_web(web, &refs);
        assert!(
            r.entries
                .iter()
                .all(|e| e.verdict == Verdict::SourceDown && e.reason.contains("503"))
        );

        let mut down = obs("redis", 110.0, "a", &[]);
        down.ok = false;
        down.error = Some("connection refused".into());
        let r = judge_web(obs("web", 105.0, "", &full(1000.0, 5e6)), &[refs[0].clone(), down]);
        assert!(r.entries.iter().all(|e| e.verdict == Verdict::SourceDown), "{r:#?}");
    }
}
