//! `type: email`: SMTP with lettre. A multipart text + HTML message whose
//! subject follows Alertmanager's (`[FIRING:2] RedisHighMemoryUsage (cache)`).
//! SMTP answers in the 4xx range and network failures are retried; 5xx
//! answers (unknown recipient, refused sender) are permanent.

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Destination, Notification};
use crate::config::relay::{DestinationConfig, DestinationKind, SmtpTls};
use crate::relay::retry::{DeliveryError, Reason};

/// The destination.
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    templates: std::collections::BTreeMap<String, String>,
}

impl Email {
    /// Builds the transport (connections are made per delivery, pooled).
    pub fn new(cfg: &DestinationConfig) -> Result<Self, String> {
        let DestinationKind::Email {
            host,
            port,
            tls,
            username,
            password,
            from,
            to,
        } = &cfg.kind
        else {
            return Err("not email".into());
        };
        crate::http::install_crypto_provider();
        let builder = match tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            SmtpTls::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(|e| format!("SMTP host `{host}`: {e}"))?
            }
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(|e| format!("SMTP host `{host}`: {e}"))?,
        };
        let mut builder = builder.port(*port).timeout(Some(cfg.delivery.timeout));
        if let (Some(u), Some(p)) = (username, password) {
            builder = builder.credentials(Credentials::new(u.clone(), p.expose().to_string()));
        }
        Ok(Email {
            transport: builder.build(),
            from: from.parse().map_err(|e| format!("from: {e}"))?,
            to: to
                .iter()
                .map(|t| t.parse().map_err(|e| format!("to: {e}")))
                .collect::<Result<_, String>>()?,
            templates: cfg.templates.clone(),
        })
    }
}

#[async_trait::async_trait]
impl Destination for Email {
    async fn deliver(&self, n: &Notification<'_>) -> Result<(), DeliveryError> {
        let render = |part: &str| {
            crate::relay::template::render("email", &self.templates, part, n.payload)
                .map_err(|e| DeliveryError::permanent(Reason::Template, e))
        };
        let subject = render("subject")?.replace(['\r', '\n'], " ");
        let mut b = Message::builder().from(self.from.clone()).subject(subject);
        for t in &self.to {
            b = b.to(t.clone());
        }
        let msg = b
            .multipart(MultiPart::alternative_plain_html(render("text")?, render("html")?))
            .map_err(|e| DeliveryError::permanent(Reason::ClientError, format!("cannot build the message: {e}")))?;
        self.transport.send(msg).await.map(|_| ()).map_err(|e| {
            let text = e.to_string();
            if e.is_permanent() {
                DeliveryError::permanent(Reason::ClientError, format!("SMTP refused: {text}"))
            } else if e.is_timeout() {
                DeliveryError::transient(Reason::Timeout, format!("SMTP timed out: {text}"))
            } else if e.is_transient() {
                DeliveryError::transient(Reason::ServerError, format!("SMTP temporary failure: {text}"))
            } else {
                DeliveryError::transient(Reason::Network, format!("SMTP: {text}"))
            }
        })
    }
}
