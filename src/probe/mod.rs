//! Probes: the three kinds of source lookout reads, behind one small trait.
//!
//! A probe reads canonical metrics from its source and returns a
//! [`Reading`]; the runner ([`run`]) bounds it by its timeout, times it and
//! turns the outcome into an [`Observation`], the record that the metrics,
//! the history store, `lookout check` and the reports all share.
//!
//! Each kind owns its configuration (its keys, their validation, its spec)
//! in its own module; this module is the registry that puts them behind
//! `kind:` ([`kinds`], [`read`], [`build`]).

pub mod assert;
pub mod http_health;
pub mod nodes;
pub mod prometheus;
pub mod redis;
pub mod redis_cluster;
pub mod redis_sentinel;
pub mod topology;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use http_health::{FieldMapping, HttpHealthSpec};
pub use prometheus::PrometheusSpec;
pub use redis::RedisSpec;
pub use redis_cluster::RedisClusterSpec;
pub use redis_sentinel::RedisSentinelSpec;

use crate::config::entry::{Entry, Scope, fields_of};
use crate::config::{Env, Origin, Problem, Schedule, envelope};
use crate::metric::Metric;

/// One probe.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Unique name; the `probe` label of every metric.
    pub name: String,
    /// When it runs.
    pub schedule: Schedule,
    /// Upper bound of one run, connection included.
    pub timeout: Duration,
    /// Extra labels for metrics and alerts.
    pub labels: BTreeMap<String, String>,
    /// What it checks.
    pub spec: ProbeSpec,
    /// Where it was defined.
    pub origin: Origin,
}

/// The kind-specific part of a probe.
#[derive(Debug, Clone)]
pub enum ProbeSpec {
    /// A backend's Redis health endpoint.
    HttpHealth(HttpHealthSpec),
    /// Redis itself.
    Redis(RedisSpec),
    /// Prometheus's view of the redis_exporter series.
    Prometheus(PrometheusSpec),
    /// A master, its replicas and their sentinels.
    RedisSentinel(RedisSentinelSpec),
    /// A Redis Cluster.
    RedisCluster(RedisClusterSpec),
}

impl ProbeSpec {
    /// The `kind` as written in configuration and used in the `kind` label.
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeSpec::HttpHealth(_) => http_health::KIND,
            ProbeSpec::Redis(_) => redis::KIND,
            ProbeSpec::Prometheus(_) => prometheus::KIND,
            ProbeSpec::RedisSentinel(_) => redis_sentinel::KIND,
            ProbeSpec::RedisCluster(_) => redis_cluster::KIND,
        }
    }

    /// The `host:port` the probe connects to: several probes failing to
    /// connect to several hosts at once means lookout lost the network.
    pub fn target(&self) -> Option<String> {
        let u = match self {
            ProbeSpec::HttpHealth(s) => url::Url::parse(s.url.expose()).ok()?,
            ProbeSpec::Redis(s) => url::Url::parse(s.url.expose()).ok()?,
            ProbeSpec::Prometheus(s) => s.url.clone(),
            // The first sentinel: the one a lost network fails first.
            ProbeSpec::RedisSentinel(s) => return s.sentinels.first().cloned(),
            ProbeSpec::RedisCluster(s) => return s.seeds.first().cloned(),
        };
        // The url crate knows http's and https's default ports, not Redis's.
        let port = u
            .port_or_known_default()
            .or_else(|| matches!(u.scheme(), "redis" | "rediss").then_some(6379))
            .unwrap_or(0);
        Some(format!("{}:{port}", u.host_str()?))
    }
}

/// Every probe kind by name, with the keys it owns: the registry. Adding a
/// kind is its module, a line here, a variant of [`ProbeSpec`] and an arm in
/// [`read_spec`] and [`build`].
pub fn kinds() -> [(&'static str, &'static [&'static str]); 5] {
    [
        (http_health::KIND, fields_of::<http_health::RawHttpHealth>()),
        (redis::KIND, fields_of::<redis::RawRedis>()),
        (prometheus::KIND, fields_of::<prometheus::RawPrometheus>()),
        (redis_sentinel::KIND, fields_of::<redis_sentinel::RawRedisSentinel>()),
        (redis_cluster::KIND, fields_of::<redis_cluster::RawRedisCluster>()),
    ]
}

/// The JSON Schema of a list of probes: one object per kind.
pub fn schema_list(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    use crate::config::schema::{list_of, variant};
    list_of(vec![
        variant::<envelope::RawEnvelope, http_health::RawHttpHealth>(generator, "kind", http_health::KIND),
        variant::<envelope::RawEnvelope, redis::RawRedis>(generator, "kind", redis::KIND),
        variant::<envelope::RawEnvelope, prometheus::RawPrometheus>(generator, "kind", prometheus::KIND),
        variant::<envelope::RawEnvelope, redis_sentinel::RawRedisSentinel>(generator, "kind", redis_sentinel::KIND),
        variant::<envelope::RawEnvelope, redis_cluster::RawRedisCluster>(generator, "kind", redis_cluster::KIND),
    ])
}

/// What building a probe's spec may read besides its own keys.
pub struct Context<'a> {
    /// The environment (the `REDIS_*` convention).
    pub env: Env<'a>,
    /// The top-level `prometheus.url`, the default of `kind: prometheus`.
    pub prometheus: Option<&'a url::Url>,
}

/// Takes a kind's keys out of a probe entry and validates them.
fn read_spec(kind: &str, entry: &mut Entry, scope: &mut Scope<'_>, ctx: &Context<'_>) -> Option<ProbeSpec> {
    match kind {
        http_health::KIND => http_health::configure(entry.take(scope)?, scope).map(ProbeSpec::HttpHealth),
        redis::KIND => redis::configure(entry.take(scope)?, scope, ctx.env).map(ProbeSpec::Redis),
        prometheus::KIND => prometheus::configure(entry.take(scope)?, scope, ctx.prometheus).map(ProbeSpec::Prometheus),
        redis_sentinel::KIND => redis_sentinel::configure(entry.take(scope)?, scope, ctx.env).map(ProbeSpec::RedisSentinel),
        redis_cluster::KIND => redis_cluster::configure(entry.take(scope)?, scope, ctx.env).map(ProbeSpec::RedisCluster),
        _ => None,
    }
}

/// Reads one probe as written in `file`: the envelope, then its kind's keys;
/// every problem goes to `problems`, located at its key.
pub fn read(mut entry: Entry, file: &Path, ctx: &Context<'_>, problems: &mut Vec<Problem>) -> Option<ProbeConfig> {
    let mut scope = entry.scope(file, "", problems);
    let kinds = kinds();
    let names: Vec<&str> = kinds.iter().map(|(k, _)| *k).collect();
    let before = scope.count();
    // Without a valid envelope the kind is unknown, and so are the keys
    // that would be its: report the envelope's problems alone.
    let env = envelope::read(&mut entry, file, &mut scope, &names)?;
    let spec = read_spec(&env.kind, &mut entry, &mut scope, ctx);
    let own = kinds.iter().find(|(k, _)| *k == env.kind).map(|(_, f)| *f).unwrap_or(&[]);
    let valid: Vec<&str> = fields_of::<envelope::RawEnvelope>().iter().chain(own).copied().collect();
    entry.reject_rest(&mut scope, &valid, "kind", &env.kind, &kinds);
    let spec = spec?;
    if scope.count() > before {
        return None;
    }
    Some(ProbeConfig {
        name: env.name,
        schedule: env.schedule,
        timeout: env.timeout,
        labels: env.labels,
        spec,
        origin: env.origin,
    })
}

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
    /// Prometheus: its own clock when it evaluated the probe's queries, Unix
    /// seconds. Its sample timestamps are on that clock; the cross-check
    /// compares it with lookout's to correct them for clock skew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluated_at: Option<f64>,
    /// Prometheus: the hit rate over the last 5 minutes, as a dashboard panel
    /// computes it (`rate()` of hits over hits + misses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hit_rate_5m: Option<f64>,
    /// Topology kinds' nodes: `INFO replication`, read every run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<Box<topology::Replication>>,
    /// Topology kinds: the nodes, their roles, the master and its changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<Box<topology::Topology>>,
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
        ProbeSpec::RedisSentinel(s) => Arc::new(redis_sentinel::RedisSentinelProbe::new(&config.name, s, config.timeout)?),
        ProbeSpec::RedisCluster(s) => Arc::new(redis_cluster::RedisClusterProbe::new(&config.name, s, config.timeout)?),
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
