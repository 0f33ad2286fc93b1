//! Probes: the three kinds of source lookout reads, behind one small trait.
//!
//! A probe reads canonical metrics from its source and returns a
//! [`Reading`]; the runner ([`run`]) bounds it by its timeout, times it and
//! turns the outcome into an [`Observation`], the record that the metrics,
//! the history store, `lookout check` and the reports all share.
//!
//! Adding a kind touches this file's [`build`] and the configuration's
//! `ProbeSpec`; nothing else needs to know.

pub mod assert;
pub mod http_health;
pub mod prometheus;
pub mod redis;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::{ProbeConfig, ProbeSpec};
use crate::metric::Metric;

/// What one successful (or partly successful) read produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// Canonical metrics, in base units.
    pub values: BTreeMap<Metric, f64>,
    /// Facts about the source beside the canonical metrics.
    pub facts: Facts,
    /// For sources that report when a value was sampled (Prometheus): the
    /// sample's own timestamp, Unix seconds.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sample_times: BTreeMap<Metric, f64>,
}

/// Facts a probe learns beside the canonical metrics: what the cross-check
/// needs to tell a restarted Redis from a wrong value, and a stale
/// Prometheus from a lying one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// Redis `run_id`: changes when Redis restarts (counters reset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Redis `uptime_in_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<f64>,
    /// `master` or `slave`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Lifetime `evicted_keys`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evicted_keys: Option<f64>,
    /// Lifetime `rejected_connections`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_connections: Option<f64>,
    /// `rdb_last_save_time`, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdb_last_save_time: Option<f64>,
    /// Whether the append-only file is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aof_enabled: Option<bool>,
    /// `mem_fragmentation_bytes` (RSS minus used memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_fragmentation_bytes: Option<f64>,
    /// Prometheus: the exporter target's `up`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_up: Option<bool>,
    /// Prometheus: the exporter's `redis_up` (it reaches Redis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_up: Option<bool>,
    /// Prometheus: time of the exporter's last scrape, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_timestamp: Option<f64>,
    /// Prometheus: the hit rate over the last 5 minutes, as a dashboard panel
    /// computes it (`rate()` of hits over hits + misses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hit_rate_5m: Option<f64>,
}

/// Why a probe failed, as a small set usable as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The run took longer than the probe's timeout.
    Timeout,
    /// Could not connect (refused, DNS, TLS).
    Connect,
    /// The source answered with an error (HTTP status, Redis error, 503 + detail).
    Status,
    /// The answer could not be understood (bad JSON, too large, missing field).
    Response,
    /// The values were read but an `assert:` condition failed.
    Assertion,
    /// The source is reachable but says its own upstream is not (exporter down).
    Upstream,
}

impl FailureReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::Connect => "connect",
            FailureReason::Status => "status",
            FailureReason::Response => "response",
            FailureReason::Assertion => "assertion",
            FailureReason::Upstream => "upstream",
        }
    }
}

/// A failed read. `partial` keeps whatever was read before the failure
/// (an assertion failure has every value).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ProbeError {
    /// Class of failure.
    pub reason: FailureReason,
    /// What went wrong, for a person; never contains a secret.
    pub message: String,
    /// Values read before the failure (boxed: keeps `Result`s small).
    pub partial: Box<Reading>,
}

impl ProbeError {
    /// A failure with nothing read.
    pub fn new(reason: FailureReason, message: impl Into<String>) -> Self {
        ProbeError {
            reason,
            message: message.into(),
            partial: Box::default(),
        }
    }

    /// Attaches what was read before the failure.
    pub fn with_partial(mut self, partial: Reading) -> Self {
        self.partial = Box::new(partial);
        self
    }
}

/// A source of canonical metrics.
#[async_trait::async_trait]
pub trait Probe: Send + Sync {
    /// Reads the source once. Must not block the runtime; the runner bounds
    /// it by the probe's timeout, so it may also be cancelled at any await.
    async fn check(&self) -> Result<Reading, ProbeError>;
}

/// A built probe with its configuration.
#[derive(Clone)]
pub struct ProbeHandle {
    /// Its configuration.
    pub config: Arc<ProbeConfig>,
    /// The probe.
    pub probe: Arc<dyn Probe>,
}

/// Builds the probe a configuration describes. Building does not touch the
/// network; connections are made on the first run.
pub fn build(config: &ProbeConfig) -> Result<ProbeHandle, String> {
    let probe: Arc<dyn Probe> = match &config.spec {
        ProbeSpec::HttpHealth(s) => Arc::new(http_health::HttpHealthProbe::new(s, config.timeout)?),
        ProbeSpec::Redis(s) => Arc::new(redis::RedisProbe::new(&config.name, s, config.timeout)?),
        ProbeSpec::Prometheus(s) => Arc::new(prometheus::PrometheusProbe::new(s, config.timeout)?),
    };
    Ok(ProbeHandle {
        config: Arc::new(config.clone()),
        probe,
    })
}

/// The record of one probe run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Probe name.
    pub name: String,
    /// Probe kind.
    pub kind: String,
    /// Whether the run succeeded.
    pub ok: bool,
    /// Why it failed, for a person.
    pub error: Option<String>,
    /// Why it failed, as a label value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<FailureReason>,
    /// When the run started, Unix seconds.
    pub timestamp: f64,
    /// How long it took.
    pub duration_seconds: f64,
    /// Canonical metrics read (also on failure, when some were).
    pub values: BTreeMap<Metric, f64>,
    /// Facts beside the metrics.
    #[serde(default)]
    pub facts: Facts,
    /// Per-metric sample timestamps, for sources that have them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sample_times: BTreeMap<Metric, f64>,
}

/// Seconds since the Unix epoch, as a float.
pub fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Runs a probe once, bounded by its timeout.
pub async fn run(handle: &ProbeHandle) -> Observation {
    let cfg = &handle.config;
    let timestamp = unix_now();
    let start = Instant::now();
    let outcome = match tokio::time::timeout(cfg.timeout, handle.probe.check()).await {
        Ok(r) => r,
        Err(_) => Err(ProbeError::new(
            FailureReason::Timeout,
            format!("timed out after {}", humantime::format_duration(round_ms(cfg.timeout))),
        )),
    };
    let duration_seconds = start.elapsed().as_secs_f64();
    let (ok, error, reason, reading) = match outcome {
        Ok(r) => (true, None, None, r),
        Err(e) => (false, Some(e.message), Some(e.reason), *e.partial),
    };
    Observation {
        name: cfg.name.clone(),
        kind: cfg.spec.kind().to_string(),
        ok,
        error,
        reason,
        timestamp,
        duration_seconds,
        values: reading.values,
        facts: reading.facts,
        sample_times: reading.sample_times,
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}
