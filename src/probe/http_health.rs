//! `kind: http_health`: a backend's Redis health endpoint.
//!
//! One GET per run. The body is read with a hard size cap (1 MiB) and parsed
//! as JSON; each canonical metric is taken from its JSON Pointer (the
//! documented default shape, or the probe's `fields`). A non-expected status
//! fails the probe with the body's `detail` as the reason, which is how both
//! reference backends explain a 503.

use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{FailureReason, Probe, ProbeError, Reading};
use crate::config::entry::Scope;
use crate::config::value::parse_http_url;
use crate::config::{Secret, redact_url};
use crate::metric::Metric;
use crate::probe::assert::Assertion;

/// Largest body read from a health endpoint; a health answer is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

// ---------------------------------------------------------------------------
// Configuration: the keys of `kind: http_health`, their validation and the
// spec the probe is built from.

/// The kind's name in `kind:`.
pub const KIND: &str = "http_health";

/// The keys of a `kind: http_health` probe, as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHttpHealth {
    /// The health endpoint (http or https). May carry a token in its query:
    /// it is treated as a secret and never printed whole.
    pub url: Option<Secret>,
    /// Extra request headers (e.g. `Authorization`); values are secrets.
    pub headers: Option<BTreeMap<String, Secret>>,
    /// Accept any TLS certificate (a self-signed staging endpoint).
    pub tls_skip_verify: Option<bool>,
    /// The status a healthy endpoint answers with (default 200).
    pub expect_status: Option<u16>,
    /// Where each canonical metric sits in the JSON answer: a JSON Pointer,
    /// or `{pointer, scale}` to convert units. Replaces the whole default
    /// shape when given.
    pub fields: Option<BTreeMap<Metric, RawField>>,
    /// Conditions the values must meet, e.g. `latency_seconds < 0.05`.
    #[serde(rename = "assert")]
    pub asserts: Option<Vec<Assertion>>,
}

/// Where a canonical metric sits in a health endpoint's JSON.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum RawField {
    /// A JSON Pointer to a value already in the metric's base unit.
    Pointer(String),
    /// A JSON Pointer and the factor into the metric's base unit.
    Scaled {
        /// RFC 6901 JSON Pointer.
        pointer: String,
        /// Multiplier (e.g. 0.001 for milliseconds into seconds).
        #[serde(default = "one")]
        scale: f64,
    },
}

fn one() -> f64 {
    1.0
}

/// Configuration of a `kind: http_health` probe.
#[derive(Debug, Clone)]
pub struct HttpHealthSpec {
    /// The endpoint. May carry a token in its query, so it is a secret.
    pub url: Secret,
    /// The URL with any password hidden, for messages.
    pub display_url: String,
    /// Extra request headers; values are secrets (they often carry tokens).
    pub headers: Vec<(String, Secret)>,
    /// Accept any TLS certificate.
    pub tls_skip_verify: bool,
    /// The status a healthy endpoint answers with.
    pub expect_status: u16,
    /// Where each canonical metric sits in the response.
    pub fields: Vec<FieldMapping>,
    /// Conditions the values must meet.
    pub asserts: Vec<Assertion>,
}

/// One canonical metric's place in a JSON response.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldMapping {
    /// The metric.
    pub metric: Metric,
    /// RFC 6901 JSON Pointer.
    pub pointer: String,
    /// Multiplier into the metric's base unit.
    pub scale: f64,
}

/// The response shape the reference endpoints document, used when a probe
/// gives no `fields`.
pub fn default_fields() -> Vec<FieldMapping> {
    let f = |metric, pointer: &str, scale| FieldMapping {
        metric,
        pointer: pointer.to_string(),
        scale,
    };
    vec![
        f(Metric::LatencySeconds, "/redis/latency_ms", 0.001),
        f(Metric::KeyspaceHits, "/redis/hits", 1.0),
        f(Metric::KeyspaceMisses, "/redis/misses", 1.0),
        f(Metric::HitRatio, "/redis/hit_ratio", 1.0),
        f(Metric::ConnectedClients, "/redis/connected_clients", 1.0),
        f(Metric::Maxclients, "/redis/maxclients", 1.0),
        f(Metric::UsedMemoryBytes, "/redis/used_memory", 1.0),
        f(Metric::MaxmemoryBytes, "/redis/maxmemory", 1.0),
        f(Metric::MemFragmentationRatio, "/redis/mem_fragmentation_ratio", 1.0),
    ]
}

/// Validates a `kind: http_health` probe's keys into its spec.
pub fn configure(p: RawHttpHealth, scope: &mut Scope<'_>) -> Option<HttpHealthSpec> {
    let before = scope.count();
    let Some(url) = p.url else {
        scope.error("url", "required for kind `http_health`");
        return None;
    };
    if let Err(e) = parse_http_url(url.expose()) {
        scope.error("url", e);
        return None;
    }
    let mut headers = Vec::new();
    for (k, v) in p.headers.unwrap_or_default() {
        if HeaderName::from_bytes(k.as_bytes()).is_err() {
            scope.error("headers", format!("invalid header name `{k}`"));
        } else if HeaderValue::from_str(v.expose()).is_err() {
            scope.error("headers", format!("invalid value for header `{k}`"));
        }
        headers.push((k, v));
    }
    let expect_status = p.expect_status.unwrap_or(200);
    if !(100..=599).contains(&expect_status) {
        scope.error("expect_status", format!("{expect_status} is not an HTTP status"));
    }
    let fields = match p.fields {
        None => default_fields(),
        Some(map) => {
            let mut v = Vec::new();
            for (metric, f) in map {
                let (pointer, scale) = match f {
                    RawField::Pointer(s) => (s, 1.0),
                    RawField::Scaled { pointer, scale } => (pointer, scale),
                };
                if !(pointer.is_empty() || pointer.starts_with('/')) {
                    scope.error(
                        &format!("fields.{metric}"),
                        format!("`{pointer}` is not a JSON Pointer (it must start with `/`, e.g. `/redis/hits`)"),
                    );
                }
                if !scale.is_finite() || scale == 0.0 {
                    scope.error(&format!("fields.{metric}"), "scale must be a non-zero number");
                }
                v.push(FieldMapping { metric, pointer, scale });
            }
            v
        }
    };
    let asserts = p.asserts.unwrap_or_default();
    for a in &asserts {
        if !fields.iter().any(|f| f.metric == a.metric) && a.metric != Metric::HitRatio {
            scope.error(
                "assert",
                format!("`{a}` uses `{}`, which this probe does not read (add it under `fields`)", a.metric),
            );
        }
    }
    if scope.count() > before {
        return None;
    }
    Some(HttpHealthSpec {
        display_url: redact_url(url.expose()),
        url,
        headers,
        tls_skip_verify: p.tls_skip_verify.unwrap_or(false),
        expect_status,
        fields,
        asserts,
    })
}

/// The probe.
pub struct HttpHealthProbe {
    client: reqwest::Client,
    headers: HeaderMap,
    timeout: Duration,
    url: reqwest::Url,
    display_url: String,
    expect_status: u16,
    fields: Vec<FieldMapping>,
    asserts: Vec<Assertion>,
}

impl HttpHealthProbe {
    /// Builds the HTTP client (no request is made).
    pub fn new(spec: &HttpHealthSpec, timeout: Duration) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        for (k, v) in &spec.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("invalid header name `{k}`"))?;
            let mut value = HeaderValue::from_str(v.expose()).map_err(|_| format!("invalid value for header `{k}`"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let client = crate::http::shared_client(spec.tls_skip_verify)?;
        let url = reqwest::Url::parse(spec.url.expose()).map_err(|_| format!("invalid URL `{}`", spec.display_url))?;
        Ok(HttpHealthProbe {
            client,
            headers,
            timeout,
            url,
            display_url: spec.display_url.clone(),
            expect_status: spec.expect_status,
            fields: spec.fields.clone(),
            asserts: spec.asserts.clone(),
        })
    }
}

#[async_trait::async_trait]
impl Probe for HttpHealthProbe {
    async fn check(&self) -> Result<Reading, ProbeError> {
        let resp = self
            .client
            .get(self.url.clone())
            .headers(self.headers.clone())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| request_error(&e, &self.display_url))?;
        let status = resp.status().as_u16();
        let body = read_capped(resp, MAX_BODY_BYTES).await?;
        if status != self.expect_status {
            let detail = serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| {
                v.get("detail")
                    .map(|d| d.as_str().map(str::to_string).unwrap_or_else(|| d.to_string()))
            });
            let msg = match detail {
                Some(d) => format!("HTTP {status}: {}", truncate(&d, 300)),
                None => format!("HTTP {status} (expected {})", self.expect_status),
            };
            return Err(ProbeError::new(FailureReason::Status, msg));
        }
        // No body (a 204 cannot have one) is nothing to read: with `fields: {}`
        // the status alone is the verdict, otherwise the fields are missing.
        let json: serde_json::Value = if body.is_empty() {
            serde_json::json!({})
        } else {
            serde_json::from_slice(&body).map_err(|e| ProbeError::new(FailureReason::Response, format!("invalid JSON in response: {e}")))?
        };
        let reading = extract(&json, &self.fields)?;
        check_asserts(&self.asserts, reading)
    }
}

/// Reads the response body, failing once it passes `cap` bytes.
async fn read_capped(resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, ProbeError> {
    if resp.content_length().is_some_and(|n| n as usize > cap) {
        return Err(ProbeError::new(
            FailureReason::Response,
            format!("response body larger than {} KiB", cap / 1024),
        ));
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ProbeError::new(
                FailureReason::Response,
                format!("error reading response body: {}", crate::http::describe(&e)),
            )
        })?;
        if body.len() + chunk.len() > cap {
            return Err(ProbeError::new(
                FailureReason::Response,
                format!("response body larger than {} KiB", cap / 1024),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn request_error(e: &reqwest::Error, url: &str) -> ProbeError {
    let reason = if e.is_timeout() {
        FailureReason::Timeout
    } else if e.is_connect() {
        FailureReason::Connect
    } else {
        FailureReason::Response
    };
    ProbeError::new(reason, format!("GET {url}: {}", crate::http::describe(e)))
}

/// Takes each mapped metric out of the response. A missing field fails the
/// probe; an explicit `null` means the endpoint has no value (e.g. the hit
/// ratio before the first lookup) and is left out. Public for the fuzz
/// target: whatever an endpoint answers is read here.
pub fn extract(json: &serde_json::Value, fields: &[FieldMapping]) -> Result<Reading, ProbeError> {
    let mut reading = Reading::default();
    if let Some(status) = json.get("status").and_then(|s| s.as_str())
        && status != "ok"
    {
        return Err(ProbeError::new(
            FailureReason::Status,
            format!("endpoint reports status `{}`", truncate(status, 100)),
        ));
    }
    // Which Redis the endpoint reads, when it says (`/redis/run_id`):
    // after a failover, the cross-check tells an endpoint still on the
    // former master by it. Optional: the contract does not require it.
    reading.facts.run_id = json.pointer("/redis/run_id").and_then(|v| v.as_str()).map(|s| truncate(s, 64));
    let mut missing = Vec::new();
    for f in fields {
        match json.pointer(&f.pointer) {
            None => missing.push(format!("`{}` ({})", f.pointer, f.metric)),
            Some(serde_json::Value::Null) => {}
            Some(v) => {
                let n = v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().parse::<f64>().ok()));
                match n.filter(|n| n.is_finite()) {
                    Some(n) => {
                        reading.values.insert(f.metric, n * f.scale);
                    }
                    None => {
                        return Err(ProbeError::new(
                            FailureReason::Response,
                            format!(
                                "field `{}` ({}) is not a number: {}",
                                f.pointer,
                                f.metric,
                                truncate(&v.to_string(), 80)
                            ),
                        )
                        .with_partial(reading));
                    }
                }
            }
        }
    }
    if !missing.is_empty() {
        return Err(ProbeError::new(
            FailureReason::Response,
            format!("missing field{} {}", if missing.len() > 1 { "s" } else { "" }, missing.join(", ")),
        )
        .with_partial(reading));
    }
    if !reading.values.contains_key(&Metric::HitRatio)
        && let (Some(h), Some(m)) = (
            reading.values.get(&Metric::KeyspaceHits),
            reading.values.get(&Metric::KeyspaceMisses),
        )
        && let Some(r) = Metric::hit_ratio(*h, *m)
    {
        reading.values.insert(Metric::HitRatio, r);
    }
    Ok(reading)
}

/// Evaluates `assert:` conditions; every failed one is named with its value.
pub(crate) fn check_asserts(asserts: &[Assertion], reading: Reading) -> Result<Reading, ProbeError> {
    let failed: Vec<String> = asserts
        .iter()
        .filter_map(|a| match reading.values.get(&a.metric) {
            Some(v) if a.holds(*v) => None,
            Some(v) => Some(format!("{a} (was {v})")),
            None => Some(format!("{a} (no value)")),
        })
        .collect();
    if failed.is_empty() {
        Ok(reading)
    } else {
        Err(ProbeError::new(FailureReason::Assertion, format!("assertion failed: {}", failed.join("; "))).with_partial(reading))
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_shape() {
        let body = serde_json::json!({"status": "ok", "redis": {"ping": "PONG", "latency_ms": 0.42, "hits": 1520, "misses": 80, "hit_ratio": 0.95, "connected_clients": 12, "maxclients": 10000, "used_memory": 1048576, "maxmemory": 0, "mem_fragmentation_ratio": 1.04}});
        let r = extract(&body, &default_fields()).unwrap();
        assert!((r.values[&Metric::LatencySeconds] - 0.00042).abs() < 1e-12);
        assert_eq!(r.values[&Metric::KeyspaceHits], 1520.0);
        assert_eq!(r.values[&Metric::UsedMemoryBytes], 1048576.0);
        assert_eq!(r.values.len(), 9);
    }

    #[test]
    fn missing_and_null() {
        let body = serde_json::json!({"redis": {"hits": 1, "misses": 1, "hit_ratio": null}});
        let fields: Vec<_> = default_fields()
            .into_iter()
            .filter(|f| matches!(f.metric, Metric::KeyspaceHits | Metric::HitRatio | Metric::UsedMemoryBytes))
            .collect();
        let e = extract(&body, &fields).unwrap_err();
        assert!(e.message.contains("/redis/used_memory"), "{}", e.message);
        assert_eq!(e.partial.values[&Metric::KeyspaceHits], 1.0);
        assert!(!e.partial.values.contains_key(&Metric::HitRatio));
    }

    #[test]
    fn status_not_ok_fails() {
        let body = serde_json::json!({"status": "degraded", "redis": {}});
        assert_eq!(extract(&body, &[]).unwrap_err().reason, FailureReason::Status);
    }

    #[test]
    fn asserts_report_values() {
        let mut r = Reading::default();
        r.values.insert(Metric::HitRatio, 0.5);
        let a: Assertion = "hit_ratio >= 0.8".parse().unwrap();
        let e = check_asserts(&[a], r).unwrap_err();
        assert!(e.message.contains("was 0.5"), "{}", e.message);
    }
}
