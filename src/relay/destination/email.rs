//! `type: email`: SMTP with lettre. A multipart text + HTML message whose
//! subject follows Alertmanager's (`[FIRING:2] RedisHighMemoryUsage (cache)`).
//! SMTP answers in the 4xx range and network failures are retried; 5xx
//! answers (unknown recipient, refused sender) are permanent.

use std::path::PathBuf;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use super::{Destination, Notification};
use crate::config::Secret;
use crate::config::entry::Scope;
use crate::config::value::read_secret;
use crate::relay::destination::DestinationConfig;
use crate::relay::digest::Digest;
use crate::relay::retry::{DeliveryError, Reason};
use crate::relay::template::{SUBJECT, Templates};

// ---------------------------------------------------------------------------
// Configuration: the keys of `type: email` and their validation.

/// The type's name in `type:`.
pub const TYPE: &str = "email";

/// Delivery defaults: an SMTP relay takes mail quickly but greylists and
/// answers 4xx under load, so retries start later and attempts get longer.
pub const DELIVERY: super::Delivery = super::Delivery {
    min_interval: std::time::Duration::from_millis(100),
    initial_backoff: std::time::Duration::from_secs(5),
    max_backoff: std::time::Duration::from_secs(600),
    max_age: super::DEFAULT_MAX_AGE,
    timeout: std::time::Duration::from_secs(30),
    // Concurrency: an SMTP relay limits connections per client; this many are pooled.
    concurrency: 8,
    burst: 1,
    skip_superseded: true,
    coalesce_after: Some(std::time::Duration::from_secs(30)),
};

/// The parts an email is rendered from, with their defaults.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("subject", SUBJECT),
    ("text", DEFAULT_TEXT),
    ("html", DEFAULT_HTML),
    ("digest_subject", SUBJECT),
    ("digest_text", DIGEST_TEXT),
    ("digest_html", DIGEST_HTML),
];

const DIGEST_TEXT: &str = "{{ subject }}
{{ num_notifications }} notifications queued up to {{ waited }}, each group in its newest state:
{% for g in groups %}
- {{ g.title }}{% if g.notifications > 1 %} ({{ g.notifications }} updates){% endif %}
{% for l in g.links %}  {{ l.name }}: {{ l.url }}
{% endfor %}{% endfor %}
Sent by lookout{% if externalURL %} for {{ externalURL }}{% endif %}
";

const DIGEST_HTML: &str = "<!doctype html><html><body style=\"font-family:sans-serif\">
<h2 style=\"color:{% if num_firing %}#c62828{% else %}#1e7b34{% endif %}\">{{ subject }}</h2>
<p>{{ num_notifications }} notifications queued up to {{ waited }}, each group in its newest state.</p>
{% for g in groups %}<div style=\"border-left:4px solid {% if g.status == 'firing' %}#c62828{% else %}#1e7b34{% endif %};padding:4px 10px;margin:6px 0\">
<b>{{ g.title }}</b>{% if g.notifications > 1 %} ({{ g.notifications }} updates){% endif %}<br>
{% for l in g.links %}<a href=\"{{ l.url }}\">{{ l.name }}</a> {% endfor %}
</div>{% endfor %}
<p style=\"color:#777\">Sent by lookout</p></body></html>";

const DEFAULT_TEXT: &str = "{{ subject }}
{% if firing %}
Firing ({{ num_firing }}):
{% for a in firing %}- {{ a.labels.alertname }}{% if a.labels.instance %} on {{ a.labels.instance }}{% endif %}: {{ a.annotations.summary or '' }}
  since {{ a.startsAt }}{% for k, v in a.labels|items %}{% if k != 'alertname' %} {{ k }}={{ v }}{% endif %}{% endfor %}
{% if a.annotations.description %}  {{ a.annotations.description }}
{% endif %}{% if a.annotations.runbook_url %}  Runbook: {{ a.annotations.runbook_url }}
{% endif %}{% if a.generatorURL %}  Source: {{ a.generatorURL }}
{% endif %}{% endfor %}{% endif %}{% if resolved %}
Resolved ({{ num_resolved }}):
{% for a in resolved %}- {{ a.labels.alertname }}{% if a.labels.instance %} on {{ a.labels.instance }}{% endif %}: {{ a.annotations.summary or '' }} (ended {{ a.endsAt }})
{% endfor %}{% endif %}
Sent by lookout{% if externalURL %} for {{ externalURL }}{% endif %}
";

const DEFAULT_HTML: &str = "<!doctype html><html><body style=\"font-family:sans-serif\">
<h2 style=\"color:{% if status == 'firing' %}#c62828{% else %}#1e7b34{% endif %}\">{{ subject }}</h2>
{% for a in alerts %}<div style=\"border-left:4px solid {% if a.status == 'firing' %}#c62828{% else %}#1e7b34{% endif %};padding:4px 10px;margin:8px 0\">
<b>{{ a.labels.alertname }}</b> {{ a.status }}{% if a.labels.instance %} on {{ a.labels.instance }}{% endif %}<br>
{{ a.annotations.summary or '' }}<br>
<small>{% for k, v in a.labels|items %}{{ k }}={{ v }} {% endfor %}</small><br>
{% if a.annotations.runbook_url %}<a href=\"{{ a.annotations.runbook_url }}\">Runbook</a> {% endif %}{% if a.generatorURL %}<a href=\"{{ a.generatorURL }}\">Source</a>{% endif %}
</div>{% endfor %}
<p style=\"color:#777\">Sent by lookout</p></body></html>";

/// The keys of a `type: email` destination, as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    /// SMTP host.
    pub host: Option<String>,
    /// SMTP port (default 587 with `starttls`, 465 with `tls`, 25 with `none`).
    pub port: Option<u16>,
    /// `starttls` (default), `tls` (from the first byte) or `none` (a local relay).
    pub tls: Option<RawTls>,
    /// PEM file of the CA certificates that sign the SMTP server's
    /// certificate, trusted instead of the public CAs (a relay with a
    /// company CA). With `tls` `starttls` or `tls`.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate (default false). The mail and the SMTP
    /// password then go to whoever can answer on the path: for a test relay
    /// only. With `tls` `starttls` or `tls`.
    pub tls_skip_verify: Option<bool>,
    /// SMTP AUTH user.
    pub username: Option<String>,
    /// SMTP AUTH password.
    pub password: Option<Secret>,
    /// File holding the SMTP AUTH password.
    pub password_file: Option<PathBuf>,
    /// Sender address.
    pub from: Option<String>,
    /// Recipient addresses.
    pub to: Option<Vec<String>>,
}

/// `tls:` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawTls {
    /// Plain SMTP.
    None,
    /// STARTTLS, required.
    Starttls,
    /// TLS from the first byte.
    Tls,
}

/// TLS mode for SMTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP (a local relay).
    None,
    /// Plain connect, then STARTTLS (required).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// An email destination after validation.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// SMTP host.
    pub host: String,
    /// SMTP port.
    pub port: u16,
    /// TLS mode.
    pub tls: SmtpTls,
    /// PEM CA certificates trusted instead of the public CAs.
    pub ca: Option<crate::config::tls::Pem>,
    /// Any server certificate is accepted.
    pub tls_skip_verify: bool,
    /// AUTH user.
    pub username: Option<String>,
    /// AUTH password.
    pub password: Option<Secret>,
    /// Sender.
    pub from: String,
    /// Envelope recipients.
    pub to: Vec<String>,
}

/// Validates a `type: email` destination's keys.
pub fn configure(d: RawEmail, scope: &mut Scope<'_>) -> Option<EmailConfig> {
    let before = scope.count();
    let password = read_secret(&d.password, &d.password_file, "password").unwrap_or_else(|e| {
        scope.error("password", e);
        None
    });
    let tls = match d.tls.unwrap_or(RawTls::Starttls) {
        RawTls::None => SmtpTls::None,
        RawTls::Starttls => SmtpTls::Starttls,
        RawTls::Tls => SmtpTls::Tls,
    };
    let from = d.from.unwrap_or_default();
    if from.parse::<Mailbox>().is_err() {
        scope.error("from", format!("`{from}` is not an email address"));
    }
    let to = d.to.unwrap_or_default();
    if to.is_empty() {
        scope.error("to", "at least one recipient");
    }
    for t in &to {
        if t.parse::<Mailbox>().is_err() {
            scope.error("to", format!("`{t}` is not an email address"));
        }
    }
    let host = d.host.unwrap_or_default();
    if host.is_empty() {
        scope.error("host", "required for type `email`");
    }
    if password.is_some() && d.username.is_none() {
        scope.error("username", "required with `password`");
    }
    let tls_skip_verify = d.tls_skip_verify.unwrap_or(false);
    if tls == SmtpTls::None {
        for (key, set) in [("ca_file", d.ca_file.is_some()), ("tls_skip_verify", tls_skip_verify)] {
            if set {
                scope.error(key, "applies to TLS only, and `tls` is `none`: use `starttls` or `tls`");
            }
        }
    } else if tls_skip_verify && d.ca_file.is_some() {
        scope.error("tls_skip_verify", "give either `ca_file` or `tls_skip_verify`, not both");
    }
    let ca = d
        .ca_file
        .as_ref()
        .and_then(|f| crate::config::tls::read_ca_bundle(f).map_err(|e| scope.error("ca_file", e)).ok());
    let port = d.port.unwrap_or(match tls {
        SmtpTls::Tls => 465,
        SmtpTls::Starttls => 587,
        SmtpTls::None => 25,
    });
    (scope.count() == before).then_some(EmailConfig {
        host,
        port,
        tls,
        ca,
        tls_skip_verify,
        username: d.username,
        password,
        from,
        to,
    })
}

/// The destination.
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    templates: Templates,
}

impl Email {
    /// Builds the transport (connections are made on demand and pooled, as
    /// many as the destination's `concurrency`).
    pub fn new(cfg: &DestinationConfig, email: &EmailConfig) -> Result<Self, String> {
        let EmailConfig {
            host,
            port,
            tls,
            ca,
            tls_skip_verify,
            username,
            password,
            from,
            to,
        } = email;
        crate::http::install_crypto_provider();
        let params = || {
            let mut b = TlsParameters::builder(host.clone());
            if let Some(pem) = ca {
                let certs = Certificate::from_pem(&pem.0).map_err(|e| format!("ca_file: {e}"))?;
                b = b.certificate_store(CertificateStore::None).add_root_certificate(certs);
            }
            b.dangerous_accept_invalid_certs(*tls_skip_verify)
                .build_rustls()
                .map_err(|e| format!("SMTP TLS for `{host}`: {e}"))
        };
        let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host);
        let builder = match tls {
            SmtpTls::None => builder,
            SmtpTls::Starttls => builder.tls(Tls::Required(params()?)),
            SmtpTls::Tls => builder.tls(Tls::Wrapper(params()?)),
        };
        // One pooled connection per delivery in flight: opening (and TLS
        // negotiating) a connection per message is what makes SMTP slow.
        let pool = lettre::transport::smtp::PoolConfig::new().max_size(u32::try_from(cfg.delivery.concurrency).unwrap_or(u32::MAX));
        let mut builder = builder.port(*port).timeout(Some(cfg.delivery.timeout)).pool_config(pool);
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
            templates: Templates::compile(TYPE, TEMPLATES, &cfg.templates)?,
        })
    }
}

impl Email {
    /// Sends one multipart text + HTML message.
    async fn send(&self, subject: &str, text: String, html: String) -> Result<(), DeliveryError> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(subject.replace(['\r', '\n'], " "));
        for t in &self.to {
            b = b.to(t.clone());
        }
        let msg = b
            .multipart(MultiPart::alternative_plain_html(text, html))
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

#[async_trait::async_trait]
impl Destination for Email {
    async fn deliver(&self, n: &Notification<'_>) -> Result<(), DeliveryError> {
        let render = |part: &str| {
            self.templates
                .render(part, n.payload)
                .map_err(|e| DeliveryError::permanent(Reason::Template, e))
        };
        self.send(&render("subject")?, render("text")?, render("html")?).await
    }

    async fn deliver_digest(&self, d: &Digest) -> Result<(), DeliveryError> {
        let render = |part: &str| {
            self.templates
                .render_digest(part, d)
                .map_err(|e| DeliveryError::permanent(Reason::Template, e))
        };
        self.send(&render("digest_subject")?, render("digest_text")?, render("digest_html")?)
            .await
    }
}
