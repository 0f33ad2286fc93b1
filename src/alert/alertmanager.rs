//! The push to Alertmanager's API (`POST /api/v2/alerts`), the way
//! Prometheus does it, and the health check when there is nothing to push,
//! so that an Alertmanager outage is known before an alert needs it.
//!
//! Answers are judged by the relay's status table
//! ([`crate::relay::retry`]), so that lookout has one idea of what an HTTP
//! failure is, and its messages (`HTTP 503 (server error): …`) read the
//! same wherever they appear. Any failure, retryable or not, makes
//! Alertmanager "unreachable" for the round: an alert must reach a person
//! whether Alertmanager is down or refuses it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::config::Endpoint;
use crate::relay::retry::{self, DeliveryError, Reason};

/// What the last exchange with Alertmanager showed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    /// Why it failed, when it did: the `error` of `AlertmanagerUnreachable`.
    pub failing: Option<String>,
    /// When lookout last tried it, Unix seconds (0: never).
    pub checked_at: f64,
}

/// One alert as Alertmanager's API takes it (`postableAlert`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PostableAlert<'a> {
    /// Full label set.
    pub labels: &'a BTreeMap<String, String>,
    /// Rendered annotations.
    pub annotations: &'a BTreeMap<String, String>,
    /// When it fired, RFC 3339.
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    /// When Alertmanager should consider it resolved, RFC 3339.
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    /// lookout's own address, as the alert's source.
    #[serde(rename = "generatorURL")]
    pub generator_url: &'a str,
}

/// The HTTP side of talking to Alertmanager.
pub struct Client {
    http: reqwest::Client,
}

impl Client {
    /// A client; `timeout` bounds a request unless the endpoint sets its own.
    pub fn new(timeout: Duration) -> Client {
        let http = crate::http::client_builder(timeout).build().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "Cannot build the Alertmanager client as configured; using defaults");
            reqwest::Client::new()
        });
        Client { http }
    }

    /// Pushes `alerts` in one request.
    pub async fn push(&self, am: &Endpoint, alerts: &[PostableAlert<'_>]) -> Result<(), DeliveryError> {
        let url = am.url.join("api/v2/alerts").map_err(bad_url)?;
        retry::send(self.http.post(url).timeout(am.timeout).json(alerts)).await
    }

    /// Asks Alertmanager whether it is healthy (`GET /-/healthy`).
    pub async fn healthy(&self, am: &Endpoint) -> Result<(), DeliveryError> {
        let url = am.url.join("-/healthy").map_err(bad_url)?;
        retry::send(self.http.get(url).timeout(am.timeout)).await
    }
}

/// A base URL that cannot take the API path: a configuration fault that no
/// retry will mend.
fn bad_url(e: url::ParseError) -> DeliveryError {
    DeliveryError::permanent(Reason::ClientError, format!("invalid Alertmanager URL: {e}"))
}

/// The last second RFC 3339 can write (9999-12-31T23:59:59Z).
const LAST_RFC3339_SECOND: f64 = 253_402_300_799.0;

/// Unix seconds as RFC 3339 with milliseconds, as Alertmanager's API takes
/// times (and Alertmanager's own webhooks give them). Clamped to what the
/// format can write, so that a wild timestamp cannot panic the engine.
pub fn rfc3339(t: f64) -> String {
    let t = if t.is_finite() { t.clamp(0.0, LAST_RFC3339_SECOND) } else { 0.0 };
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_secs_f64(t)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_keeps_alertmanagers_field_names() {
        let labels: BTreeMap<String, String> = [("alertname".to_string(), "RedisUnreachable".to_string())].into();
        let annotations = BTreeMap::new();
        let alert = PostableAlert {
            labels: &labels,
            annotations: &annotations,
            starts_at: rfc3339(1_764_028_800.0),
            ends_at: rfc3339(1_764_028_800.5),
            generator_url: "http://127.0.0.1:9464/",
        };
        let json = serde_json::to_value(&alert).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({
                "labels": {"alertname": "RedisUnreachable"},
                "annotations": {},
                "startsAt": "2025-11-25T00:00:00.000Z",
                "endsAt": "2025-11-25T00:00:00.500Z",
                "generatorURL": "http://127.0.0.1:9464/",
            })
        );
    }

    #[test]
    fn times_before_the_epoch_or_not_finite_do_not_panic() {
        assert_eq!(rfc3339(-5.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(f64::NAN), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1e300), "9999-12-31T23:59:59.000Z");
    }
}
