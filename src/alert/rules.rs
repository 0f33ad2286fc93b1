//! What each built-in rule looks at: the conditions a rule yields this
//! round, one per probe it applies to (or per cross-check source, or one
//! for Alertmanager itself). Pure reading of the inputs; the state machine
//! in [`super::state`] decides what the conditions mean over time.

use std::collections::BTreeMap;

use super::Inputs;
use super::alertmanager::Health;
use crate::config::alerts::{Rule, RuleName};
use crate::crosscheck::{Report, Verdict};
use crate::metric::Metric;
use crate::probe::{FailureReason, Observation};
use crate::probe::{ProbeConfig, ProbeSpec};
use crate::settings::Config;

/// One evaluated condition of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// What the instance is of, within its rule (the probe, the source).
    pub key: String,
    /// The `probe` label; empty for a rule about lookout itself.
    pub probe: String,
    /// Whether the condition holds.
    pub active: bool,
    /// When the check behind it was made, Unix seconds.
    pub checked_at: f64,
    /// `value` in the annotation templates.
    pub value: f64,
    /// More template variables (`error`, `cause`).
    pub extra: BTreeMap<String, String>,
}

/// Default staleness of a Prometheus scrape when no cross-check sets one.
const DEFAULT_MAX_STALENESS: f64 = 30.0;

/// The conditions of `rule` now. `am` is what the last exchange with
/// Alertmanager showed, for the rule about Alertmanager itself.
pub fn conditions(rule: &Rule, inputs: &Inputs<'_>, am: &Health) -> Vec<Condition> {
    match rule.name {
        RuleName::CrossCheckMismatch => inputs.report.map(cross_check).unwrap_or_default(),
        RuleName::AlertmanagerUnreachable => alertmanager(inputs.config, am).into_iter().collect(),
        RuleName::HealthEndpointDown
        | RuleName::HealthEndpointSlow
        | RuleName::RedisUnreachable
        | RuleName::RedisConnectionExhaustion
        | RuleName::RedisHighMemoryUsage
        | RuleName::MonitoringDataGap => inputs
            .config
            .probes
            .iter()
            .filter_map(|p| probe(rule, inputs.config, p, inputs.latest.get(&p.name)?))
            .collect(),
    }
}

/// A condition about one probe's latest observation.
fn of_probe(p: &ProbeConfig, o: &Observation, active: bool, value: f64, extra: &[(&str, String)]) -> Condition {
    Condition {
        key: p.name.clone(),
        probe: p.name.clone(),
        active,
        checked_at: o.timestamp,
        value,
        extra: extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .chain([("error".to_string(), o.error.clone().unwrap_or_default())])
            .collect(),
    }
}

/// 1 when a yes/no condition holds, for `value`.
fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// The condition of a per-probe rule on probe `p`, if the rule applies to
/// that kind of probe (and, for ratios, the figures are there).
fn probe(rule: &Rule, cfg: &Config, p: &ProbeConfig, o: &Observation) -> Option<Condition> {
    let v = |m: Metric| o.values.get(&m).copied();
    match (rule.name, &p.spec) {
        (RuleName::HealthEndpointDown, ProbeSpec::HttpHealth(_)) => {
            // A failed assertion is an answer: the endpoint is up.
            let down = !o.ok && o.reason != Some(FailureReason::Assertion);
            Some(of_probe(p, o, down, flag(down), &[]))
        }
        (RuleName::HealthEndpointSlow, ProbeSpec::HttpHealth(_)) => {
            let lat = v(Metric::LatencySeconds).unwrap_or(0.0);
            let slow = lat > rule.threshold || o.reason == Some(FailureReason::Timeout);
            Some(of_probe(p, o, slow, lat, &[]))
        }
        (RuleName::RedisUnreachable, ProbeSpec::Redis(_)) => Some(of_probe(p, o, !o.ok, flag(!o.ok), &[])),
        (RuleName::RedisConnectionExhaustion, ProbeSpec::Redis(_)) => {
            let (c, m) = (v(Metric::ConnectedClients)?, v(Metric::Maxclients)?);
            (m > 0.0).then(|| of_probe(p, o, c / m > rule.threshold, c / m, &[]))
        }
        (RuleName::RedisHighMemoryUsage, ProbeSpec::Redis(_)) => {
            let used = v(Metric::UsedMemoryBytes).unwrap_or(0.0);
            let max = v(Metric::MaxmemoryBytes).unwrap_or(0.0);
            let frag = v(Metric::MemFragmentationRatio).unwrap_or(0.0);
            let wasted = o.facts.mem_fragmentation_bytes.unwrap_or(0.0);
            let mem = max > 0.0 && used / max > rule.threshold;
            // A small or idle Redis shows a huge ratio over a few KB: only
            // fragmentation that wastes real memory counts (Redis's own
            // active defrag ignores less than 100 MB by default).
            let fragged = frag > rule.fragmentation_threshold && wasted > rule.min_wasted_bytes;
            let (value, cause) = if mem || !fragged {
                (if max > 0.0 { used / max } else { 0.0 }, "used/maxmemory")
            } else {
                (frag, "fragmentation ratio")
            };
            Some(of_probe(p, o, mem || fragged, value, &[("cause", cause.to_string())]))
        }
        (RuleName::MonitoringDataGap, ProbeSpec::Prometheus(_)) => {
            let gap = o.facts.target_up == Some(false) || o.facts.redis_up == Some(false) || o.reason == Some(FailureReason::Upstream);
            let max_staleness = cfg
                .crosscheck
                .as_ref()
                .map(|c| c.max_staleness.as_secs_f64())
                .unwrap_or(DEFAULT_MAX_STALENESS);
            let stale = o.facts.scrape_timestamp.is_some_and(|t| o.timestamp - t > max_staleness);
            Some(of_probe(p, o, gap || stale, flag(gap || stale), &[]))
        }
        _ => None,
    }
}

/// One condition per source of the cross-check: the metrics on which it
/// disagrees with the reference.
fn cross_check(r: &Report) -> Vec<Condition> {
    let mut by_source: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in &r.entries {
        let bad = by_source.entry(e.source.as_str()).or_default();
        if e.verdict == Verdict::Disagree {
            bad.push(e.metric.as_str());
        }
    }
    by_source
        .into_iter()
        .map(|(source, bad)| Condition {
            key: source.to_string(),
            probe: source.to_string(),
            active: !bad.is_empty(),
            checked_at: r.timestamp,
            value: bad.len() as f64,
            extra: [("error".to_string(), bad.join(", "))].into(),
        })
        .collect()
}

/// Alertmanager's own reachability, once lookout has tried it.
fn alertmanager(cfg: &Config, am: &Health) -> Option<Condition> {
    if cfg.alertmanager.is_none() || am.checked_at <= 0.0 {
        return None;
    }
    Some(Condition {
        key: "alertmanager".into(),
        probe: String::new(),
        active: am.failing.is_some(),
        checked_at: am.checked_at,
        value: flag(am.failing.is_some()),
        extra: [("error".to_string(), am.failing.clone().unwrap_or_default())].into(),
    })
}
