//! `type: webhook`: forwards the Alertmanager payload unchanged to another
//! URL (chaining receivers).

use super::{Destination, Notification};
use crate::config::relay::{DestinationConfig, DestinationKind};
use crate::relay::retry::{DeliveryError, send};

/// The destination.
pub struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl Webhook {
    /// Builds it.
    pub fn new(cfg: &DestinationConfig) -> Result<Self, String> {
        let DestinationKind::Webhook { url } = &cfg.kind else {
            return Err("not a webhook".into());
        };
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
