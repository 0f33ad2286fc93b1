//! `type: webhook`: forwards the Alertmanager payload unchanged to another
//! URL (chaining receivers).

use serde::Deserialize;

use super::{Destination, Notification};
use crate::config::Secret;
use crate::config::entry::Scope;
use crate::config::value::parse_http_url;
use crate::relay::destination::DestinationConfig;
use crate::relay::retry::{DeliveryError, send};

// ---------------------------------------------------------------------------
// Configuration: the keys of `type: webhook` and their validation.

/// The type's name in `type:`.
pub const TYPE: &str = "webhook";

/// Delivery defaults: no rate of its own (the next hop is usually another
/// relay or Alertmanager-compatible receiver).
pub const DELIVERY: super::Delivery = super::Delivery {
    min_interval: std::time::Duration::ZERO,
    initial_backoff: std::time::Duration::from_secs(1),
    max_backoff: std::time::Duration::from_secs(300),
    max_age: super::DEFAULT_MAX_AGE,
    timeout: std::time::Duration::from_secs(10),
    // Concurrency: what is in flight is the rate times the answer time
    // (Little's law), so 256 in flight carry 12,800/s to a receiver that
    // answers in 20 ms, 2,560/s at 100 ms. Alertmanager sends each
    // aggregation group from its own goroutine, with no cap at all; 64 held
    // lookout to 3,200/s at 20 ms, 0.57x Alertmanager in
    // `bench/relay-delivery.sh`. The next hop is usually another relay,
    // built for many requests at once. 256 sockets at most, opened only
    // while a backlog lasts (the systemd unit allows 65,536 descriptors; at
    // a bare soft limit of 1,024, a full `server.max_connections` plus 256
    // sends would not fit, and `concurrency:` lowers it).
    concurrency: 256,
    burst: 1,
    skip_superseded: false,
    coalesce_after: None,
};

/// The keys of a `type: webhook` destination, as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// Where the payload is forwarded (a secret: it may carry a token).
    pub url: Option<Secret>,
}

/// A webhook destination after validation.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Target (a secret: it may carry a token).
    pub url: Secret,
}

/// Validates a `type: webhook` destination's keys.
pub fn configure(d: RawWebhook, scope: &mut Scope<'_>) -> Option<WebhookConfig> {
    let Some(url) = d.url else {
        scope.error("url", "required for type `webhook`");
        return None;
    };
    if let Err(e) = parse_http_url(url.expose()) {
        scope.error("url", e);
        return None;
    }
    Some(WebhookConfig { url })
}

/// The destination.
pub struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl Webhook {
    /// Builds it.
    pub fn new(cfg: &DestinationConfig, webhook: &WebhookConfig) -> Result<Self, String> {
        let url = &webhook.url;
        let client = crate::http::client_builder(cfg.delivery.timeout)
            .build()
            .map_err(|e| e.to_string())?;
        let url = reqwest::Url::parse(url.expose()).map_err(|_| "invalid url".to_string())?;
        Ok(Webhook { client, url })
    }
}

#[async_trait::async_trait]
impl Destination for Webhook {
    async fn deliver(&self, n: &Notification<'_>) -> Result<(), DeliveryError> {
        let req = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(n.raw.to_string());
        send(req).await
    }
}
