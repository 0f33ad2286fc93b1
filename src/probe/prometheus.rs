//! `kind: prometheus`: the same metrics as Prometheus sees them, from the
//! redis_exporter series, through instant queries on `/api/v1/query`.
//!
//! Besides each value it records when the value was sampled (the exporter's
//! last scrape, from `timestamp(redis_up…)`), whether the exporter target is
//! up (`up`) and whether the exporter reaches Redis (`redis_up`): what tells
//! a stale Prometheus from a wrong one. All queries of a run go out at once.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{FailureReason, Probe, ProbeError, Reading};
use crate::config::Secret;
use crate::config::entry::Scope;
use crate::config::value::parse_http_url;
use crate::metric::Metric;

// ---------------------------------------------------------------------------
// Configuration: the keys of `kind: prometheus`, their validation and the spec.

/// The kind's name in `kind:`.
pub const KIND: &str = "prometheus";

/// The keys of a `kind: prometheus` probe, as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPrometheus {
    /// The Prometheus server; defaults to the top-level `prometheus.url`.
    pub url: Option<Secret>,
    /// Label matchers choosing this Redis's exporter series, in braces:
    /// `{instance="redis-exporter:9121"}` (default `{}`: every series).
    pub selector: Option<String>,
    /// PromQL per canonical metric, replacing the default query.
    pub queries: Option<BTreeMap<Metric, String>>,
}

/// Configuration of a `kind: prometheus` probe.
#[derive(Debug, Clone)]
pub struct PrometheusSpec {
    /// The Prometheus server.
    pub url: url::Url,
    /// Label matchers choosing this Redis's exporter series, e.g. `{instance="redis-exporter:9121"}`.
    pub selector: String,
    /// Per-metric PromQL replacing the defaults.
    pub queries: BTreeMap<Metric, String>,
}

/// Validates a `kind: prometheus` probe's keys into its spec;
/// `default_url` is the top-level `prometheus.url`.
pub fn configure(p: RawPrometheus, scope: &mut Scope<'_>, default_url: Option<&url::Url>) -> Option<PrometheusSpec> {
    let url = match (&p.url, default_url) {
        (Some(u), _) => match parse_http_url(u.expose()) {
            Ok(u) => u,
            Err(e) => {
                scope.error("url", e);
                return None;
            }
        },
        (None, Some(u)) => u.clone(),
        (None, None) => {
            scope.error("url", "required for kind `prometheus` (or set `prometheus.url` at the top level)");
            return None;
        }
    };
    let selector = p.selector.unwrap_or_else(|| "{}".to_string());
    let trimmed = selector.trim();
    if !(trimmed.starts_with('{') && trimmed.ends_with('}')) {
        scope.error(
            "selector",
            format!("`{selector}` is not a label selector: write it in braces, e.g. `{{instance=\"redis-exporter:9121\"}}`"),
        );
        return None;
    }
    Some(PrometheusSpec {
        url,
        selector: trimmed.to_string(),
        queries: p.queries.unwrap_or_default(),
    })
}

/// The probe.
pub struct PrometheusProbe {
    client: reqwest::Client,
    timeout: Duration,
    query_url: reqwest::Url,
    queries: Vec<(Metric, String, bool)>,
    up_query: String,
    redis_up_query: String,
    scrape_time_query: String,
    hit_rate_query: String,
    /// `redis_instance_info`, whose `run_id` label says which Redis the
    /// exporter reads: after a failover, the cross-check tells an exporter
    /// still on the former master by it.
    info_query: String,
}

/// The default PromQL for a metric: the exporter's series under `selector`.
/// `None` for the hit ratio, which is computed from the two counters so that
/// it is the lifetime ratio the health endpoints report.
pub fn default_query(metric: Metric, selector: &str) -> Option<String> {
    let s = selector;
    Some(match metric {
        Metric::LatencySeconds => {
            format!("sum(rate(redis_commands_duration_seconds_total{s}[1m])) / sum(rate(redis_commands_total{s}[1m]))")
        }
        Metric::KeyspaceHits => format!("redis_keyspace_hits_total{s}"),
        Metric::KeyspaceMisses => format!("redis_keyspace_misses_total{s}"),
        Metric::HitRatio => return None,
        Metric::ConnectedClients => format!("redis_connected_clients{s}"),
        Metric::Maxclients => format!("redis_config_maxclients{s}"),
        Metric::UsedMemoryBytes => format!("redis_memory_used_bytes{s}"),
        Metric::MaxmemoryBytes => format!("redis_memory_max_bytes{s}"),
        Metric::MemFragmentationRatio => format!("redis_mem_fragmentation_ratio{s}"),
    })
}

impl PrometheusProbe {
    /// Prepares the queries; nothing is sent.
    pub fn new(spec: &PrometheusSpec, timeout: Duration) -> Result<Self, String> {
        let client = crate::http::client_builder(timeout)
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))?;
        let query_url = spec.url.join("api/v1/query").map_err(|e| format!("invalid Prometheus URL: {e}"))?;
        let mut queries = Vec::new();
        for m in Metric::ALL {
            if let Some(q) = spec.queries.get(&m) {
                queries.push((m, q.clone(), false));
            } else if let Some(q) = default_query(m, &spec.selector) {
                // Raw exporter series carry the scrape's timestamp; rates do not.
                queries.push((m, q, m != Metric::LatencySeconds));
            }
        }
        let s = &spec.selector;
        Ok(PrometheusProbe {
            client,
            timeout,
            query_url,
            queries,
            up_query: format!("up{s}"),
            redis_up_query: format!("redis_up{s}"),
            scrape_time_query: format!("timestamp(redis_up{s})"),
            info_query: format!("redis_instance_info{s}"),
            hit_rate_query: format!(
                "sum(rate(redis_keyspace_hits_total{s}[5m])) / (sum(rate(redis_keyspace_hits_total{s}[5m])) + sum(rate(redis_keyspace_misses_total{s}[5m])))"
            ),
        })
    }

    /// Runs one instant query; `Ok(None)` when the result is empty.
    async fn query(&self, q: &str) -> Result<Option<(f64, f64)>, ProbeError> {
        Ok(self.query_series(q).await?.map(|(sample, _)| sample))
    }

    /// As [`Self::query`], with the series' labels.
    async fn query_series(&self, q: &str) -> Result<Option<((f64, f64), BTreeMap<String, String>)>, ProbeError> {
        let resp = self
            .client
            .post(self.query_url.clone())
            .timeout(self.timeout)
            .form(&[("query", q)])
            .send()
            .await
            .map_err(|e| {
                let reason = if e.is_timeout() {
                    FailureReason::Timeout
                } else {
                    FailureReason::Connect
                };
                ProbeError::new(reason, format!("Prometheus query failed: {}", crate::http::describe(&e)))
            })?;
        let status = resp.status();
        let body: ApiResponse = resp.json().await.map_err(|e| {
            ProbeError::new(
                FailureReason::Response,
                format!(
                    "Prometheus answered HTTP {status} with an unreadable body: {}",
                    crate::http::describe(&e)
                ),
            )
        })?;
        if body.status != "success" {
            return Err(ProbeError::new(
                FailureReason::Status,
                format!(
                    "Prometheus rejected `{q}`: {}",
                    body.error.unwrap_or_else(|| format!("HTTP {status}"))
                ),
            ));
        }
        let Some(data) = body.data else { return Ok(None) };
        match data.result_type.as_str() {
            "vector" => {
                let series: Vec<VectorSample> = serde_json::from_value(data.result)
                    .map_err(|e| ProbeError::new(FailureReason::Response, format!("unexpected result of `{q}`: {e}")))?;
                match series.len() {
                    0 => Ok(None),
                    1 => Ok(Some((series[0].value.parse()?, series[0].metric.clone()))),
                    n => Err(ProbeError::new(
                        FailureReason::Response,
                        format!("`{q}` matches {n} series; narrow the probe's `selector` to one Redis (e.g. by `instance`)"),
                    )),
                }
            }
            "scalar" => {
                let s: (f64, String) = serde_json::from_value(data.result)
                    .map_err(|e| ProbeError::new(FailureReason::Response, format!("unexpected result of `{q}`: {e}")))?;
                Ok(Some((SamplePair(s.0, s.1).parse()?, BTreeMap::new())))
            }
            other => Err(ProbeError::new(
                FailureReason::Response,
                format!("`{q}` returned a {other}, expected an instant vector"),
            )),
        }
    }
}

/// The scrape interval of the target behind the probe's `up{selector}`
/// series, from Prometheus's targets API: how long a scrape newer than a
/// given moment can take to appear. A one-shot round waits that long (and a
/// probe timeout) for one, rather than a guess.
///
/// The target is found by its labels: an active target's `labels` are the
/// ones Prometheus attaches to its `up` series, so equality after dropping
/// `__name__` picks exactly the targets the selector chose. With several
/// (the probe then fails anyway), the longest interval is the bound.
pub async fn scrape_interval(spec: &PrometheusSpec, timeout: Duration) -> Result<Duration, String> {
    let client = crate::http::client_builder(timeout)
        .build()
        .map_err(|e| format!("cannot build HTTP client: {e}"))?;
    let join = |p: &str| spec.url.join(p).map_err(|e| format!("invalid Prometheus URL: {e}"));
    let get = |req: reqwest::RequestBuilder, what: &'static str| async move {
        let resp = req
            .send()
            .await
            .map_err(|e| format!("Prometheus's {what} failed: {}", crate::http::describe(&e)))?;
        let status = resp.status();
        let body: RawApiResponse = resp.json().await.map_err(|e| {
            format!(
                "Prometheus's {what} answered HTTP {status} with an unreadable body: {}",
                crate::http::describe(&e)
            )
        })?;
        if body.status != "success" {
            return Err(format!(
                "Prometheus's {what} answered {}",
                body.error.unwrap_or_else(|| format!("HTTP {status}"))
            ));
        }
        body.data.ok_or_else(|| format!("Prometheus's {what} answered no data"))
    };
    let up = format!("up{}", spec.selector);
    let data = get(client.post(join("api/v1/query")?).form(&[("query", up.as_str())]), "query API").await?;
    let series: Vec<LabelledSample> =
        serde_json::from_value(data["result"].clone()).map_err(|e| format!("unexpected result of `{up}`: {e}"))?;
    let wanted: Vec<BTreeMap<String, String>> = series
        .into_iter()
        .map(|mut s| {
            s.metric.remove("__name__");
            s.metric
        })
        .collect();
    if wanted.is_empty() {
        return Err(format!(
            "no `{up}` series: Prometheus does not scrape an exporter matching the selector"
        ));
    }
    let targets = get(client.get(join("api/v1/targets?state=active")?), "targets API").await?;
    let targets: ActiveTargets =
        serde_json::from_value(targets).map_err(|e| format!("unexpected answer from Prometheus's targets API: {e}"))?;
    let mut longest: Option<Duration> = None;
    for t in targets.active_targets.iter().filter(|t| wanted.contains(&t.labels)) {
        let written = t
            .scrape_interval
            .as_deref()
            .ok_or_else(|| "Prometheus's targets API gives no scrapeInterval (it appeared in Prometheus 2.31)".to_string())?;
        let d = humantime::parse_duration(written)
            .map_err(|e| format!("unreadable scrapeInterval `{written}` in Prometheus's targets API: {e}"))?;
        longest = Some(longest.map_or(d, |l| l.max(d)));
    }
    longest.ok_or_else(|| format!("no active target in Prometheus's targets API carries the labels of `{up}`"))
}

/// An API answer whose `data` is read by shape (the query and the targets
/// APIs differ).
#[derive(Deserialize)]
struct RawApiResponse {
    status: String,
    data: Option<serde_json::Value>,
    error: Option<String>,
}

/// A series of an instant query's vector, with its labels.
#[derive(Deserialize)]
struct LabelledSample {
    metric: BTreeMap<String, String>,
}

/// `data` of `/api/v1/targets`.
#[derive(Deserialize)]
struct ActiveTargets {
    #[serde(rename = "activeTargets", default)]
    active_targets: Vec<ActiveTarget>,
}

#[derive(Deserialize)]
struct ActiveTarget {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(rename = "scrapeInterval")]
    scrape_interval: Option<String>,
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    data: Option<ApiData>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorSample {
    value: SamplePair,
    #[serde(default)]
    metric: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct SamplePair(f64, String);

impl SamplePair {
    /// (evaluation timestamp, value). Prometheus sends values as strings, NaN included.
    fn parse(&self) -> Result<(f64, f64), ProbeError> {
        let v: f64 = self
            .1
            .parse()
            .map_err(|_| ProbeError::new(FailureReason::Response, format!("unreadable sample value `{}`", self.1)))?;
        Ok((self.0, v))
    }
}

#[async_trait::async_trait]
impl Probe for PrometheusProbe {
    async fn check(&self) -> Result<Reading, ProbeError> {
        let values = futures::future::join_all(self.queries.iter().map(|(_, q, _)| self.query(q)));
        let facts = futures::future::join4(
            self.query(&self.up_query),
            self.query(&self.redis_up_query),
            self.query(&self.scrape_time_query),
            self.query(&self.hit_rate_query),
        );
        let info = self.query_series(&self.info_query);
        let (values, (up, redis_up, scrape, hit_rate), info) = futures::future::join3(values, facts, info).await;

        let mut reading = Reading::default();
        let up = up?;
        // An instant query without `time` is evaluated at Prometheus's "now".
        reading.facts.evaluated_at = up.map(|(t, _)| t);
        reading.facts.target_up = up.map(|(_, v)| v == 1.0);
        reading.facts.redis_up = redis_up?.map(|(_, v)| v == 1.0);
        reading.facts.scrape_timestamp = scrape?.map(|(_, v)| v);
        // NaN (no lookups in the window) is no rate, not an error.
        reading.facts.hit_rate_5m = hit_rate.ok().flatten().map(|(_, v)| v).filter(|v| v.is_finite());
        // Exporters before `redis_instance_info` had it, or a selector
        // matching several: no run_id, not a failure.
        reading.facts.run_id = info.ok().flatten().and_then(|(_, labels)| labels.get("run_id").cloned());
        let mut first_error = None;
        let mut missing = Vec::new();
        for ((metric, q, raw), result) in self.queries.iter().zip(values) {
            match result {
                Ok(Some((ts, v))) if v.is_finite() => {
                    reading.values.insert(*metric, v);
                    let sampled = if *raw { reading.facts.scrape_timestamp.unwrap_or(ts) } else { ts };
                    reading.sample_times.insert(*metric, sampled);
                }
                Ok(_) => missing.push(format!("{metric} (`{q}`)")),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let (Some(h), Some(m)) = (
            reading.values.get(&Metric::KeyspaceHits),
            reading.values.get(&Metric::KeyspaceMisses),
        ) && let Some(r) = Metric::hit_ratio(*h, *m)
        {
            let t = reading.sample_times.get(&Metric::KeyspaceHits).copied();
            reading.values.insert(Metric::HitRatio, r);
            if let Some(t) = t {
                reading.sample_times.insert(Metric::HitRatio, t);
            }
        }
        if let Some(e) = first_error {
            return Err(e.with_partial(reading));
        }
        match (reading.facts.target_up, reading.facts.redis_up) {
            (None, _) => {
                return Err(ProbeError::new(
                    FailureReason::Upstream,
                    format!(
                        "no `{}` series: Prometheus does not scrape an exporter matching the selector",
                        self.up_query
                    ),
                )
                .with_partial(reading));
            }
            (Some(false), _) => {
                return Err(ProbeError::new(FailureReason::Upstream, "exporter target is down (up == 0)").with_partial(reading));
            }
            (Some(true), Some(false)) => {
                return Err(ProbeError::new(FailureReason::Upstream, "exporter cannot reach Redis (redis_up == 0)").with_partial(reading));
            }
            _ => {}
        }
        // The latency rate needs two scrapes of traffic; its absence alone is no failure.
        missing.retain(|m| !m.starts_with(Metric::LatencySeconds.as_str()));
        if !missing.is_empty() {
            return Err(ProbeError::new(FailureReason::Response, format!("no data for {}", missing.join(", "))).with_partial(reading));
        }
        Ok(reading)
    }
}
