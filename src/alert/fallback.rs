//! The way around Alertmanager: synthetic alerts handed straight to
//! lookout's own relay as Alertmanager webhook payloads, so that an alert
//! about Redis reaches a person when there is no Alertmanager, or the one
//! there is cannot be reached. The payload is what Alertmanager itself
//! would have sent, so the relay's routes, templates and de-duplication
//! apply unchanged.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Instance;
use super::alertmanager::rfc3339;
use super::state::Status;
use crate::relay::RelaySlot;
use crate::relay::payload::{Alert, Payload, fingerprint_of};

/// `endsAt` of a firing alert in Alertmanager's webhooks (Go's zero time).
const STILL_FIRING: &str = "0001-01-01T00:00:00Z";

/// lookout's relay, as the synthetic alerts' fallback.
pub struct Fallback {
    relay: Arc<RelaySlot>,
}

impl Fallback {
    /// Hands alerts to `relay` (once its store is open).
    pub fn new(relay: Arc<RelaySlot>) -> Fallback {
        Fallback { relay }
    }

    /// Hands one notification to the relay; true when it was accepted
    /// (stored for delivery: the relay's own retries take it from there).
    /// A replica that does not lead sends nothing and answers false: the
    /// leader sends it, and should this replica become the leader before
    /// the alert is over, it sends it then (a page late rather than none).
    pub async fn notify(&self, i: &Instance, status: Status) -> bool {
        let Some(relay) = self.relay.get() else {
            // The store has not opened: nothing could be stored.
            metrics::counter!("lookout_alert_notifications_total", "via" => "relay", "outcome" => "failure").increment(1);
            return false;
        };
        if !relay.leads() {
            metrics::counter!("lookout_alert_notifications_total", "via" => "relay", "outcome" => "follower").increment(1);
            return false;
        }
        let p = webhook_payload(i, status);
        let raw = match serde_json::to_string(&p) {
            Ok(raw) => raw,
            Err(e) => {
                tracing::error!(error = %e, "Cannot serialise a synthetic alert for the relay");
                return false;
            }
        };
        let accepted = relay.ingest_payload(&p, raw).await.is_ok();
        let outcome = if accepted { "success" } else { "failure" };
        metrics::counter!("lookout_alert_notifications_total", "via" => "relay", "outcome" => outcome).increment(1);
        accepted
    }
}

/// An Alertmanager webhook payload (version 4) for one instance, grouped by
/// `alertname` and `probe` as lookout's own group.
pub fn webhook_payload(i: &Instance, status: Status) -> Payload {
    let name = i.labels.get("alertname").cloned().unwrap_or_default();
    let probe = i.labels.get("probe").cloned().unwrap_or_default();
    let mut group_labels = BTreeMap::new();
    group_labels.insert("alertname".to_string(), name.clone());
    if !probe.is_empty() {
        group_labels.insert("probe".to_string(), probe.clone());
    }
    let alert = Alert {
        status: status.as_str().to_string(),
        labels: i.labels.clone(),
        annotations: i.annotations.clone(),
        starts_at: rfc3339(i.state.fired_at.unwrap_or(0.0)),
        ends_at: match status {
            Status::Firing => STILL_FIRING.into(),
            Status::Resolved => rfc3339(i.state.resolved_at.unwrap_or(0.0)),
        },
        generator_url: String::new(),
        fingerprint: String::new(),
        extra: BTreeMap::new(),
    };
    let fingerprint = fingerprint_of(&alert);
    Payload {
        version: "4".into(),
        group_key: format!("{{}}/lookout:{{alertname=\"{name}\", probe=\"{probe}\"}}"),
        truncated_alerts: 0,
        status: status.as_str().to_string(),
        receiver: "lookout".into(),
        group_labels,
        common_labels: i.labels.clone(),
        common_annotations: i.annotations.clone(),
        external_url: String::new(),
        alerts: vec![Alert { fingerprint, ..alert }],
        extra: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::state::{Phase, State};

    #[test]
    fn a_payload_as_alertmanager_would_send_it() {
        let i = Instance {
            labels: [
                ("alertname".to_string(), "RedisUnreachable".to_string()),
                ("probe".to_string(), "cache".to_string()),
                ("severity".to_string(), "critical".to_string()),
            ]
            .into(),
            annotations: [("summary".to_string(), "Redis is unreachable from lookout (cache)".to_string())].into(),
            state: State {
                phase: Phase::Inactive,
                fired_at: Some(1_764_028_800.0),
                resolved_at: Some(1_764_028_860.0),
                ..State::default()
            },
        };
        let firing = webhook_payload(&i, Status::Firing);
        assert_eq!(firing.group_key, "{}/lookout:{alertname=\"RedisUnreachable\", probe=\"cache\"}");
        assert_eq!((firing.status.as_str(), firing.receiver.as_str()), ("firing", "lookout"));
        assert_eq!(firing.alerts[0].starts_at, "2025-11-25T00:00:00.000Z");
        assert_eq!(firing.alerts[0].ends_at, STILL_FIRING);
        assert_eq!(firing.group_labels.len(), 2);
        let resolved = webhook_payload(&i, Status::Resolved);
        assert_eq!(resolved.alerts[0].ends_at, "2025-11-25T00:01:00.000Z");
        assert_eq!(
            firing.alerts[0].fingerprint, resolved.alerts[0].fingerprint,
            "one alert, whatever its status"
        );
        assert!(!firing.alerts[0].fingerprint.is_empty());
    }
}
