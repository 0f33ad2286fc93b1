//! `type: webhook`: forwards the Alertmanager payload unchanged to another
//! URL (chaining receivers).

use super::{Destination, Notification};
use crate::config::relay::{DestinationConfig, DestinationKind};
use crate::relay::retry::{DeliveryError, check_status, from_reqwest};

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
        let resp = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(n.raw.to_string())
            .send()
            .await
            .map_err(|e| from_reqwest(&e))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.text().await.unwrap_or_default();
        check_status(status, &body, retry_after.as_deref())
    }
}
