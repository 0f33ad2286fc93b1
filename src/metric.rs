//! The canonical metrics: one vocabulary shared by every probe kind, the
//! Prometheus metrics lookout exports, the history store and the reports.
//!
//! Every source reports in base units (seconds, bytes, plain counts), so a
//! value read from a health endpoint, from Redis's INFO and from Prometheus
//! can be compared without knowing where it came from.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A canonical metric. The serialised names are a stable interface: they key
/// `lookout check --format json` values, the `metric` label of
/// `lookout_probe_value` and the reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Round trip of one PING (or the endpoint's own figure), in seconds.
    LatencySeconds,
    /// Lifetime `keyspace_hits` counter.
    KeyspaceHits,
    /// Lifetime `keyspace_misses` counter.
    KeyspaceMisses,
    /// Lifetime hits / (hits + misses).
    HitRatio,
    /// Clients connected to Redis, including every observer's own connection.
    ConnectedClients,
    /// The server's client limit.
    Maxclients,
    /// `used_memory`, in bytes.
    UsedMemoryBytes,
    /// `maxmemory`, in bytes (0 = no limit).
    MaxmemoryBytes,
    /// `mem_fragmentation_ratio` (RSS / used memory).
    MemFragmentationRatio,
}

impl Metric {
    /// Every canonical metric, in report order.
    pub const ALL: [Metric; 9] = [
        Metric::LatencySeconds,
        Metric::KeyspaceHits,
        Metric::KeyspaceMisses,
        Metric::HitRatio,
        Metric::ConnectedClients,
        Metric::Maxclients,
        Metric::UsedMemoryBytes,
        Metric::MaxmemoryBytes,
        Metric::MemFragmentationRatio,
    ];

    /// The canonical name, as used in configuration, labels and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::LatencySeconds => "latency_seconds",
            Metric::KeyspaceHits => "keyspace_hits",
            Metric::KeyspaceMisses => "keyspace_misses",
            Metric::HitRatio => "hit_ratio",
            Metric::ConnectedClients => "connected_clients",
            Metric::Maxclients => "maxclients",
            Metric::UsedMemoryBytes => "used_memory_bytes",
            Metric::MaxmemoryBytes => "maxmemory_bytes",
            Metric::MemFragmentationRatio => "mem_fragmentation_ratio",
        }
    }

    /// Lifetime hit ratio from the two counters; `None` before the first lookup,
    /// where a ratio would be 0/0.
    pub fn hit_ratio(hits: f64, misses: f64) -> Option<f64> {
        let total = hits + misses;
        (total > 0.0).then(|| hits / total)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a name that is not a canonical metric.
#[derive(Debug, thiserror::Error)]
#[error("unknown metric `{0}` (expected one of: {list})", list = Metric::ALL.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", "))]
pub struct UnknownMetric(pub String);

impl FromStr for Metric {
    type Err = UnknownMetric;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Metric::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownMetric(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Metric::ALL {
            assert_eq!(m.as_str().parse::<Metric>().ok(), Some(m));
            assert_eq!(serde_json::to_string(&m).ok(), Some(format!("\"{}\"", m.as_str())));
        }
        assert!("hit_rate".parse::<Metric>().is_err());
    }

    #[test]
    fn hit_ratio_is_undefined_before_first_lookup() {
        assert_eq!(Metric::hit_ratio(0.0, 0.0), None);
        assert_eq!(Metric::hit_ratio(3.0, 1.0), Some(0.75));
    }
}
