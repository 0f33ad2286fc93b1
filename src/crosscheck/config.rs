//! `crosscheck:`: which probe is the reference, which sources are judged
//! against it, how often, and the tolerances per metric. Owned here, beside
//! the rules that use it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::config::value::opt_duration;
use crate::config::{DEFAULT_EVERY, Problem, closest};
use crate::metric::Metric;
use crate::probe::{ProbeConfig, ProbeSpec};

/// Default age past which a Prometheus sample is stale.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(30);

/// Shortest `crosscheck.every`: a round judges the probes' readings, and no
/// probe runs more often than its shortest `every`.
pub const MIN_EVERY: Duration = crate::config::envelope::MIN_EVERY;

/// Shortest `crosscheck.max_staleness`: a Prometheus sample is up to one
/// scrape interval old when it is read, and Prometheus scrapes every second
/// at the fastest in practice; below that every sample would be `stale`.
pub const MIN_MAX_STALENESS: Duration = Duration::from_secs(1);

/// `crosscheck:` as written; every key optional.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCrossCheck {
    /// Run the cross-check (default: on whenever there is a `kind: redis`
    /// probe and another source).
    pub enabled: Option<bool>,
    /// How often a round runs (default 15s).
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub every: Option<Duration>,
    /// The `kind: redis` probe every source is judged against (default: the
    /// only one).
    pub reference: Option<String>,
    /// The probes judged (default: every other probe).
    pub sources: Option<Vec<String>>,
    /// A Prometheus sample older than this, relative to the probe's run, is
    /// stale (default 30s).
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub max_staleness: Option<Duration>,
    /// Per-metric tolerances replacing the defaults.
    #[serde(default)]
    pub tolerances: BTreeMap<Metric, RawTolerance>,
}

/// A tolerance as written; which keys apply depends on the metric's rule.
#[derive(Debug, Clone, Copy, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTolerance {
    /// Absolute slack, in the metric's unit.
    pub abs: Option<f64>,
    /// Relative slack, as a fraction of the reference value.
    pub rel: Option<f64>,
    /// Largest ratio between two latencies (latency only).
    pub factor: Option<f64>,
}

/// `crosscheck:` after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossCheckConfig {
    /// How often a round runs.
    pub every: Duration,
    /// The probe every source is judged against (a `redis` probe).
    pub reference: String,
    /// The probes judged.
    pub sources: Vec<String>,
    /// A Prometheus sample older than this (relative to the probe's run) is stale.
    pub max_staleness: Duration,
    /// Per-metric tolerances; defaults from [`default_tolerance`].
    pub tolerances: BTreeMap<Metric, Tolerance>,
}

impl CrossCheckConfig {
    /// The tolerance in force for a metric.
    pub fn tolerance(&self, m: Metric) -> Tolerance {
        self.tolerances.get(&m).copied().unwrap_or_else(|| default_tolerance(m))
    }
}

/// How far a source may be from the reference. Which fields apply depends on
/// the metric's rule (see the README's cross-check section).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Tolerance {
    /// Absolute slack, in the metric's unit.
    pub abs: f64,
    /// Relative slack, as a fraction of the reference value.
    pub rel: f64,
    /// Largest ratio between two latencies.
    pub factor: f64,
}

/// Defaults chosen so that honest sources sampled seconds apart agree:
/// `connected_clients` allows for every observer's own connection,
/// memory and fragmentation for allocator churn between samples.
pub fn default_tolerance(m: Metric) -> Tolerance {
    let t = |abs, rel, factor| Tolerance { abs, rel, factor };
    match m {
        Metric::LatencySeconds => t(0.01, 0.0, 50.0),
        Metric::KeyspaceHits | Metric::KeyspaceMisses => t(0.0, 0.0, 0.0),
        Metric::HitRatio => t(0.01, 0.0, 0.0),
        Metric::ConnectedClients => t(5.0, 0.1, 0.0),
        Metric::UsedMemoryBytes => t(256.0 * 1024.0, 0.05, 0.0),
        Metric::Maxclients | Metric::MaxmemoryBytes => t(0.0, 0.0, 0.0),
        Metric::MemFragmentationRatio => t(0.3, 0.2, 0.0),
    }
}

/// Validates `crosscheck:` against the probes; `None` when disabled or when
/// there is nothing to compare (problems only when the section asked for it).
pub fn build(file: &Path, problems: &mut Vec<Problem>, raw: Option<RawCrossCheck>, probes: &[ProbeConfig]) -> Option<CrossCheckConfig> {
    let explicit = raw.is_some();
    let raw = raw.unwrap_or_default();
    if raw.enabled == Some(false) {
        return None;
    }
    let bad = |c: &mut Vec<Problem>, field: &str, msg: String| {
        c.push(Problem {
            file: file.to_path_buf(),
            line: None,
            column: None,
            field: Some(format!("crosscheck.{field}")),
            message: msg,
        });
    };
    // A `redis_sentinel` probe's values are the current master's: a
    // reference that follows failovers.
    let direct = |p: &ProbeConfig| matches!(p.spec, ProbeSpec::Redis(_) | ProbeSpec::RedisSentinel(_));
    let redis: Vec<&ProbeConfig> = probes.iter().filter(|p| direct(p)).collect();
    let reference = match &raw.reference {
        Some(r) => match probes.iter().find(|p| &p.name == r) {
            Some(p) if direct(p) => r.clone(),
            Some(_) => {
                bad(
                    problems,
                    "reference",
                    format!("`{r}` is not a `kind: redis` or `kind: redis_sentinel` probe; the reference reads Redis directly"),
                );
                return None;
            }
            None => {
                let names: Vec<&str> = probes.iter().map(|p| p.name.as_str()).collect();
                let hint = closest(r, &names).map(|s| format!(" — did you mean `{s}`?")).unwrap_or_default();
                bad(problems, "reference", format!("no probe named `{r}`{hint}"));
                return None;
            }
        },
        None if redis.len() == 1 => redis[0].name.clone(),
        None if redis.is_empty() => {
            if explicit {
                bad(problems, "reference", "no `kind: redis` probe to use as the reference".into());
            }
            return None;
        }
        None => {
            // Several Redis: which one the others should agree with is the
            // user's call. Without a `crosscheck:` section, do not guess.
            if explicit {
                let names = redis.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ");
                bad(
                    problems,
                    "reference",
                    format!("several `kind: redis` probes ({names}): name the reference"),
                );
            }
            return None;
        }
    };
    let sources = match &raw.sources {
        Some(list) => {
            for s in list {
                if s == &reference {
                    bad(problems, "sources", format!("`{s}` is the reference"));
                } else if !probes.iter().any(|p| &p.name == s) {
                    let names: Vec<&str> = probes.iter().map(|p| p.name.as_str()).collect();
                    let hint = closest(s, &names).map(|x| format!(" — did you mean `{x}`?")).unwrap_or_default();
                    bad(problems, "sources", format!("no probe named `{s}`{hint}"));
                }
            }
            list.clone()
        }
        // A cluster has no one set of values to compare.
        None => probes
            .iter()
            .filter(|p| p.name != reference && !matches!(p.spec, ProbeSpec::RedisCluster(_)))
            .map(|p| p.name.clone())
            .collect(),
    };
    if sources.is_empty() {
        if explicit {
            bad(problems, "sources", "nothing to compare with the reference".into());
        }
        return None;
    }
    let mut tolerances = BTreeMap::new();
    for (m, t) in raw.tolerances {
        let d = default_tolerance(m);
        for (k, v) in [("abs", t.abs), ("rel", t.rel), ("factor", t.factor)] {
            if let Some(v) = v
                && (!v.is_finite() || v < 0.0)
            {
                bad(problems, &format!("tolerances.{m}.{k}"), "must be a non-negative number".into());
            }
        }
        let applies = |k: &str| match m {
            Metric::LatencySeconds => k == "factor" || k == "abs",
            Metric::Maxclients | Metric::MaxmemoryBytes => false,
            _ => k != "factor",
        };
        for (k, v) in [("abs", t.abs), ("rel", t.rel), ("factor", t.factor)] {
            if v.is_some() && !applies(k) {
                let msg = match m {
                    Metric::Maxclients | Metric::MaxmemoryBytes => "configuration values must be equal; no tolerance applies".to_string(),
                    Metric::LatencySeconds => "latency is compared within a `factor` (and an `abs` slack)".to_string(),
                    _ => "use `abs` and `rel` for this metric".to_string(),
                };
                bad(problems, &format!("tolerances.{m}.{k}"), msg);
            }
        }
        if let Some(f) = t.factor
            && f < 1.0
        {
            bad(problems, &format!("tolerances.{m}.factor"), "must be at least 1".into());
        }
        tolerances.insert(
            m,
            Tolerance {
                abs: t.abs.unwrap_or(d.abs),
                rel: t.rel.unwrap_or(d.rel),
                factor: t.factor.unwrap_or(d.factor),
            },
        );
    }
    let every = raw.every.unwrap_or(DEFAULT_EVERY);
    let max_staleness = raw.max_staleness.unwrap_or(DEFAULT_MAX_STALENESS);
    for (field, d, min, why) in [
        (
            "every",
            every,
            MIN_EVERY,
            "a round judges the probes' readings, and no probe runs more often than that",
        ),
        (
            "max_staleness",
            max_staleness,
            MIN_MAX_STALENESS,
            "a Prometheus sample is up to a scrape interval old when read (1 s at the fastest), so every sample would be judged stale",
        ),
    ] {
        if d < min {
            let (d, min) = (humantime::format_duration(d), humantime::format_duration(min));
            bad(problems, field, format!("{d} is shorter than {min}: {why}"));
        }
    }
    Some(CrossCheckConfig {
        every,
        reference,
        sources,
        max_staleness,
        tolerances,
    })
}
