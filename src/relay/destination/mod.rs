//! Destinations: where the relay delivers. One module per type behind
//! [`Destination`]; a destination says whether a failure is worth retrying,
//! the shared loop in [`super::worker`] decides when.
//!
//! Adding a type: a module here, a `DestinationKind` variant with its
//! validation in `config/relay.rs`, an arm in [`build`], and its default
//! delivery tuning in [`default_delivery`].

pub mod email;
pub mod log;
pub mod pagerduty;
pub mod slack;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use super::outbox::Outbox;
use super::payload::Payload;
use super::retry::DeliveryError;
use crate::config::relay::{Delivery, DestinationConfig, DestinationKind};

/// A notification on its way.
pub struct Notification<'a> {
    /// The payload, parsed.
    pub payload: &'a Payload,
    /// The payload exactly as received (forwarded as is by `webhook`).
    pub raw: &'a str,
}

/// Somewhere notifications go.
#[async_trait::async_trait]
pub trait Destination: Send + Sync {
    /// Delivers one notification. Must not retry by itself.
    async fn deliver(&self, n: &Notification<'_>) -> Result<(), DeliveryError>;
}

/// Builds a destination (no network until the first delivery).
pub fn build(cfg: &DestinationConfig, outbox: Arc<Outbox>) -> Result<Arc<dyn Destination>, String> {
    Ok(match &cfg.kind {
        DestinationKind::Log => Arc::new(log::Log::new(cfg)),
        DestinationKind::Webhook { .. } => Arc::new(webhook::Webhook::new(cfg)?),
        DestinationKind::Pagerduty { .. } => Arc::new(pagerduty::PagerDuty::new(cfg)?),
        DestinationKind::Email { .. } => Arc::new(email::Email::new(cfg)?),
        DestinationKind::Slack { .. } => Arc::new(slack::Slack::new(cfg, outbox)?),
    })
}

/// Delivery defaults by type: Slack allows about one message a second per
/// webhook, PagerDuty about 120 events a minute per key.
pub fn default_delivery(kind: &str) -> Delivery {
    let d = |min_ms: u64, initial_s: u64, max_s: u64, timeout_s: u64| Delivery {
        min_interval: Duration::from_millis(min_ms),
        initial_backoff: Duration::from_secs(initial_s),
        max_backoff: Duration::from_secs(max_s),
        max_age: Duration::from_secs(24 * 3600),
        timeout: Duration::from_secs(timeout_s),
    };
    match kind {
        "slack" => d(1000, 1, 300, 10),
        "pagerduty" => d(500, 1, 300, 10),
        "email" => d(100, 5, 600, 30),
        "webhook" => d(0, 1, 300, 10),
        _ => d(0, 1, 60, 5),
    }
}
