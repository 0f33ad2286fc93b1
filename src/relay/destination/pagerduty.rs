//! `type: pagerduty`: PagerDuty Events API v2.
//!
//! `dedup_key` is the SHA-256 hex of the group key, exactly as Alertmanager
//! derives it, so moving a PagerDuty receiver from Alertmanager to lookout
//! opens no duplicate incidents. An event resolves only when the whole group
//! has resolved (Alertmanager's behaviour). The summary is cut to PagerDuty's
//! 1,024 characters and the event kept under 512 KB.

use std::path::PathBuf;

use serde::Deserialize;
use sha2::Digest;

use super::{Destination, Notification};
use crate::config::Secret;
use crate::config::entry::Scope;
use crate::config::value::{parse_http_url, read_secret};
use crate::relay::destination::DestinationConfig;
use crate::relay::payload::hex;
use crate::relay::retry::{DeliveryError, Reason, send};
use crate::relay::template::{SUBJECT, Templates};

/// PagerDuty's summary limit, in characters.
pub const MAX_SUMMARY: usize = 1024;
/// PagerDuty's event size limit.
pub const MAX_EVENT_BYTES: usize = 512_000;

// ---------------------------------------------------------------------------
// Configuration: the keys of `type: pagerduty` and their validation.

/// The type's name in `type:`.
pub const TYPE: &str = "pagerduty";
/// Delivery defaults: PagerDuty's Events API takes about 120 events a
/// minute per routing key (2/s) and answers 429 beyond.
pub const DELIVERY: super::Delivery = super::Delivery {
    min_interval: std::time::Duration::from_millis(500),
    initial_backoff: std::time::Duration::from_secs(1),
    max_backoff: std::time::Duration::from_secs(300),
    max_age: super::DEFAULT_MAX_AGE,
    timeout: std::time::Duration::from_secs(10),
    // Concurrency: PagerDuty's rate limit (about 120 events a minute per
    // routing key), not connections, is what holds it back: at 2/s and an
    // answer in 100-300 ms, one send is in flight; 16 cover a raised
    // `rate_limit` or a slow answer (16 in flight at 2/s is 8 s each)
    // without opening hundreds of sockets to a service that would answer
    // them 429. More would only queue at PagerDuty.
    concurrency: 16,
    burst: 1,
    skip_superseded: false,
    coalesce_after: None,
};
/// The part an event's summary is rendered from, with its default.
pub const TEMPLATES: &[(&str, &str)] = &[("summary", SUBJECT)];
/// PagerDuty's Events API v2 endpoint.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// The keys of a `type: pagerduty` destination, as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPagerDuty {
    /// The integration's routing key (Events API v2).
    pub routing_key: Option<Secret>,
    /// File holding the routing key.
    pub routing_key_file: Option<PathBuf>,
    /// Events endpoint (default PagerDuty's own).
    pub url: Option<Secret>,
}

/// A PagerDuty destination after validation.
#[derive(Debug, Clone)]
pub struct PagerDutyConfig {
    /// Integration key.
    pub routing_key: Secret,
    /// Events endpoint.
    pub url: String,
}

/// Validates a `type: pagerduty` destination's keys.
pub fn configure(d: RawPagerDuty, scope: &mut Scope<'_>) -> Option<PagerDutyConfig> {
    let key = read_secret(&d.routing_key, &d.routing_key_file, "routing_key").unwrap_or_else(|e| {
        scope.error("routing_key", e);
        None
    });
    let url = d.url.as_ref().map_or_else(|| DEFAULT_URL.to_string(), |u| u.expose().to_string());
    let url_ok = match parse_http_url(&url) {
        Ok(_) => true,
        Err(e) => {
            scope.error("url", e);
            false
        }
    };
    match key {
        Some(routing_key) if url_ok => Some(PagerDutyConfig { routing_key, url }),
        Some(_) => None,
        None => {
            scope.error("routing_key", "required for type `pagerduty`");
            None
        }
    }
}

/// The destination.
pub struct PagerDuty {
    client: reqwest::Client,
    url: reqwest::Url,
    routing_key: Secret,
    templates: Templates,
}

impl PagerDuty {
    /// Builds it.
    pub fn new(cfg: &DestinationConfig, pd: &PagerDutyConfig) -> Result<Self, String> {
        let PagerDutyConfig { routing_key, url } = pd;
        let client = crate::http::client_builder(cfg.delivery.timeout)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(PagerDuty {
            client,
            url: reqwest::Url::parse(url).map_err(|e| e.to_string())?,
            routing_key: routing_key.clone(),
            templates: Templates::compile(TYPE, TEMPLATES, &cfg.templates)?,
        })
    }
}

/// Maps the `severity` label onto PagerDuty's four.
pub fn severity(label: Option<&str>) -> &'static str {
    match label.map(str::to_ascii_lowercase).as_deref() {
        Some("critical") | Some("page") | Some("fatal") => "critical",
        Some("warning") | Some("warn") => "warning",
        Some("info") | Some("informational") | Some("none") => "info",
        _ => "error",
    }
}

/// SHA-256 hex of the group key (Alertmanager's `notify.Key.Hash()`).
pub fn dedup_key(group_key: &str) -> String {
    hex(&sha2::Sha256::digest(group_key.as_bytes()))
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}

/// The event for a notification.
pub fn event(routing_key: &str, summary: &str, n: &Notification<'_>) -> serde_json::Value {
    let p = n.payload;
    let resolved = p.status == "resolved";
    let firing: Vec<_> = p.firing().collect();
    let resolved_alerts: Vec<_> = p.resolved().collect();
    let mut ev = serde_json::json!({
        "routing_key": routing_key,
        "dedup_key": dedup_key(&p.group_key),
        "event_action": if resolved { "resolve" } else { "trigger" },
        "client": "lookout",
        "client_url": p.external_url,
    });
    if !resolved {
        ev["payload"] = serde_json::json!({
            "summary": truncate(summary, MAX_SUMMARY),
            "source": p.common_labels.get("instance").cloned().unwrap_or_else(|| "lookout".into()),
            "severity": severity(p.common_labels.get("severity").map(String::as_str)),
            "component": p.common_labels.get("job").cloned(),
            "group": p.common_labels.get("alertname").cloned(),
            "custom_details": {
                "firing": firing,
                "resolved": resolved_alerts,
                "num_firing": firing.len(),
                "num_resolved": resolved_alerts.len(),
            },
        });
        let links: Vec<_> = p
            .alerts
            .iter()
            .flat_map(|a| {
                [("runbook_url", "Runbook"), ("dashboard_url", "Dashboard")]
                    .into_iter()
                    .filter_map(|(k, t)| a.annotations.get(k).map(|u| serde_json::json!({"href": u, "text": t})))
                    .chain((!a.generator_url.is_empty()).then(|| serde_json::json!({"href": a.generator_url, "text": "Source"})))
            })
            .take(20)
            .collect();
        if !links.is_empty() {
            ev["links"] = serde_json::Value::Array(links);
        }
        if oversized(&ev) {
            ev["payload"]["custom_details"] = serde_json::json!({"error": "Custom details have been removed because the original event exceeds the maximum size of 512KB"});
        }
        // Links carry annotations whole (a runbook URL of any length).
        if oversized(&ev)
            && let Some(o) = ev.as_object_mut()
        {
            o.remove("links");
        }
    }
    // What is left comes from labels and the external URL: cut each string.
    if oversized(&ev) {
        if let Some(payload) = ev.get_mut("payload") {
            cut_strings(payload);
        }
        cut_strings(&mut ev);
    }
    ev
}

/// Cuts each string member of an object to [`MAX_SUMMARY`] characters.
fn cut_strings(object: &mut serde_json::Value) {
    for v in object.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
        if let Some(s) = v.as_str()
            && s.chars().count() > MAX_SUMMARY
        {
            *v = truncate(s, MAX_SUMMARY).into();
        }
    }
}

/// Whether an event is over PagerDuty's size limit.
fn oversized(ev: &serde_json::Value) -> bool {
    serde_json::to_vec(ev).map_or(true, |v| v.len() > MAX_EVENT_BYTES)
}

#[async_trait::async_trait]
impl Destination for PagerDuty {
    async fn deliver(&self, n: &Notification<'_>) -> Result<(), DeliveryError> {
        let summary = self
            .templates
            .render("summary", n.payload)
            .map_err(|e| DeliveryError::permanent(Reason::Template, e))?;
        let ev = event(self.routing_key.expose(), &summary, n);
        // PagerDuty answers 202 Accepted; its 400 body lists what is invalid.
        send(self.client.post(self.url.clone()).json(&ev)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_key_is_alertmanagers() {
        assert_eq!(
            dedup_key("{}:{alertname=\"ProbeDown\"}"),
            "1d5b72e75b25fb067258bb43aeba87346932b48ca29eeb4a38797debd53e7f55"
        );
        assert_eq!(severity(Some("CRITICAL")), "critical");
        assert_eq!(severity(None), "error");
    }

    #[test]
    fn summary_is_cut_to_the_limit() {
        let p = crate::relay::template::sample();
        let raw = serde_json::to_string(&p).unwrap();
        let n = Notification { payload: &p, raw: &raw };
        let ev = event("k", &"x".repeat(5000), &n);
        assert_eq!(ev["payload"]["summary"].as_str().unwrap().chars().count(), MAX_SUMMARY);
        assert_eq!(ev["event_action"], "trigger");
        assert_eq!(ev["payload"]["severity"], "critical");
    }
}
