//! `type: log`: writes each notification to lookout's log. The default
//! destination when none is configured, so an alert is never accepted into
//! nowhere.

use super::{Destination, Notification};
use crate::relay::destination::DestinationConfig;
use crate::relay::retry::{DeliveryError, Reason};
use crate::relay::template::{SUBJECT, Templates};

/// The type's name in `type:`.
pub const TYPE: &str = "log";
/// Delivery defaults: writing a log line cannot be rate-limited away.
pub const DELIVERY: super::Delivery = super::Delivery {
    min_interval: std::time::Duration::ZERO,
    initial_backoff: std::time::Duration::from_secs(1),
    max_backoff: std::time::Duration::from_secs(60),
    max_age: super::DEFAULT_MAX_AGE,
    timeout: std::time::Duration::from_secs(5),
    // Concurrency: a log line costs nothing to wait for.
    concurrency: 16,
    burst: 1,
    skip_superseded: false,
    coalesce_after: None,
};
/// The part a log line is rendered from, with its default.
pub const TEMPLATES: &[(&str, &str)] = &[("text", SUBJECT)];

/// `type: log` has no keys of its own.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLog {}

/// The destination.
pub struct Log {
    name: String,
    templates: Templates,
}

impl Log {
    /// Builds it.
    pub fn new(cfg: &DestinationConfig) -> Result<Self, String> {
        Ok(Log {
            name: cfg.name.clone(),
            templates: Templates::compile(TYPE, TEMPLATES, &cfg.templates)?,
        })
    }
}

#[async_trait::async_trait]
impl Destination for Log {
    async fn deliver(&self, n: &Notification<'_>) -> Result<(), DeliveryError> {
        let text = self
            .templates
            .render("text", n.payload)
            .map_err(|e| DeliveryError::permanent(Reason::Template, e))?;
        for a in &n.payload.alerts {
            tracing::info!(
                destination = %self.name,
                group = %n.payload.group_key,
                status = %a.status,
                alertname = a.labels.get("alertname").map(String::as_str).unwrap_or(""),
                summary = a.annotations.get("summary").map(String::as_str).unwrap_or(""),
                "Alert {}", text
            );
        }
        Ok(())
    }
}
