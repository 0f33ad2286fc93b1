//! Destinations: where the relay delivers. One module per type behind
//! [`Destination`]; a destination says whether a failure is worth retrying,
//! the shared loop in [`super::worker`] decides when.
//!
//! Each type owns its configuration (its keys, their validation) in its
//! module. Adding a type: a module here, a line in [`types`], a
//! [`DestinationKind`] variant, an arm in [`read_kind`] and [`build`], and its
//! default delivery tuning in [`default_delivery`].

pub mod email;
pub mod log;
pub mod pagerduty;
pub mod slack;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use serde::Deserialize;

use super::digest::Digest;
use super::payload::Payload;
use super::retry::{DeliveryError, Reason};
use super::threads::ThreadStore;
use crate::config::entry::{Entry, Scope, fields_of};
use crate::config::value::{opt_duration, opt_text_or_off};

/// One destination.
#[derive(Debug, Clone)]
pub struct DestinationConfig {
    /// Unique name (routes refer to it; metrics label).
    pub name: String,
    /// Type and its settings.
    pub kind: DestinationKind,
    /// Delivery tuning.
    pub delivery: Delivery,
    /// Template overrides by part name (`title`, `text`, `subject`, `html`, `summary`).
    pub templates: BTreeMap<String, String>,
}

/// Delivery tuning of one destination.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Minimum spacing between two sends (from `rate_limit`).
    pub min_interval: Duration,
    /// First retry delay.
    pub initial_backoff: Duration,
    /// Cap of the retry delay.
    pub max_backoff: Duration,
    /// A notification older than this is dead-lettered.
    pub max_age: Duration,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Most sends in flight at once (each of a different group): one send
    /// at a time caps a destination at one over its answer time, 50/s for a
    /// 20 ms receiver, far below an alert storm.
    pub concurrency: usize,
    /// Sends that may go out at once after a quiet spell before
    /// `rate_limit`'s spacing applies (the token bucket's size).
    pub burst: u32,
    /// Send only a group's newest queued notification: each one carries
    /// the group's whole state, so an older one still queued behind a newer
    /// one only tells a person what is no longer true. On for chat and
    /// email; off for PagerDuty and webhooks, which are state machines and
    /// must see every event, in order.
    pub skip_superseded: bool,
    /// Once the oldest queued notification has waited this long (a rate
    /// limit, an outage), send the queue as one digest (none: never). Chat
    /// and email only.
    pub coalesce_after: Option<Duration>,
}

/// What a destination is, with its type's settings.
#[derive(Debug, Clone)]
pub enum DestinationKind {
    /// Slack: an incoming webhook, or a bot token and a channel.
    Slack(slack::SlackConfig),
    /// Email over SMTP.
    Email(email::EmailConfig),
    /// PagerDuty Events API v2.
    Pagerduty(pagerduty::PagerDutyConfig),
    /// Forward the payload unchanged.
    Webhook(webhook::WebhookConfig),
    /// Write the notification to lookout's log.
    Log,
}

impl DestinationKind {
    /// The `type` as configured.
    pub fn type_name(&self) -> &'static str {
        match self {
            DestinationKind::Slack(_) => slack::TYPE,
            DestinationKind::Email(_) => email::TYPE,
            DestinationKind::Pagerduty(_) => pagerduty::TYPE,
            DestinationKind::Webhook(_) => webhook::TYPE,
            DestinationKind::Log => log::TYPE,
        }
    }
}

/// A destination's `retry:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// First retry delay (default per type; 10ms to 24h).
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub initial_backoff: Option<Duration>,
    /// Cap of the retry delay (default per type; 10ms to 24h).
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub max_backoff: Option<Duration>,
}

/// The keys every destination has, whatever its type.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDestinationCommon {
    /// Unique name: routes refer to it, and metrics carry it.
    pub name: String,
    /// `slack`, `email`, `pagerduty`, `webhook` or `log`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Most sends per period (`1/s`, `30/m`, `unlimited`; default per type).
    pub rate_limit: Option<String>,
    /// Sends allowed at once above `rate_limit` after a quiet spell, the
    /// token bucket's size (default per type; 1 to 1000).
    pub burst: Option<u32>,
    /// Most deliveries in flight at once, each of a different group; a
    /// group's notifications always go one after another, in order
    /// (default per type; 1 to 1024).
    pub concurrency: Option<usize>,
    /// Send only a group's newest queued notification, marking the older
    /// ones superseded (default true for `slack` and `email`, false for the
    /// others).
    pub skip_superseded: Option<bool>,
    /// Once the oldest queued notification has waited this long, send the
    /// queue as one digest (`slack` and `email` only; default 30s; `off` or
    /// `0` never; 1s to 24h).
    #[serde(default, deserialize_with = "opt_text_or_off")]
    pub coalesce_after: Option<String>,
    /// Retry backoff.
    pub retry: Option<RawRetry>,
    /// A notification undelivered for this long is dead-lettered (default 24h).
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub max_age: Option<Duration>,
    /// Per-attempt timeout (default per type; 10ms to 1h).
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Duration>,
    /// Template overrides by part (`title`, `text`, `subject`, `html`, `summary`).
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
}

/// The JSON Schema of a list of destinations: one object per type.
pub fn schema_list(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    use crate::config::schema::{list_of, variant};
    list_of(vec![
        variant::<RawDestinationCommon, slack::RawSlack>(generator, "type", slack::TYPE),
        variant::<RawDestinationCommon, email::RawEmail>(generator, "type", email::TYPE),
        variant::<RawDestinationCommon, pagerduty::RawPagerDuty>(generator, "type", pagerduty::TYPE),
        variant::<RawDestinationCommon, webhook::RawWebhook>(generator, "type", webhook::TYPE),
        variant::<RawDestinationCommon, log::RawLog>(generator, "type", log::TYPE),
    ])
}

/// Every destination type by name, with the keys it owns: the registry.
pub fn types() -> [(&'static str, &'static [&'static str]); 5] {
    [
        (slack::TYPE, fields_of::<slack::RawSlack>()),
        (email::TYPE, fields_of::<email::RawEmail>()),
        (pagerduty::TYPE, fields_of::<pagerduty::RawPagerDuty>()),
        (webhook::TYPE, fields_of::<webhook::RawWebhook>()),
        (log::TYPE, fields_of::<log::RawLog>()),
    ]
}

/// The template parts a type renders, with their defaults (none: the type
/// sends the payload as received).
pub fn templates(type_name: &str) -> &'static [(&'static str, &'static str)] {
    match type_name {
        slack::TYPE => slack::TEMPLATES,
        email::TYPE => email::TEMPLATES,
        pagerduty::TYPE => pagerduty::TEMPLATES,
        log::TYPE => log::TEMPLATES,
        _ => &[],
    }
}

/// Takes a type's keys out of a destination entry and validates them.
pub fn read_kind(type_name: &str, entry: &mut Entry, scope: &mut Scope<'_>) -> Option<DestinationKind> {
    match type_name {
        slack::TYPE => slack::configure(entry.take(scope)?, scope).map(DestinationKind::Slack),
        email::TYPE => email::configure(entry.take(scope)?, scope).map(DestinationKind::Email),
        pagerduty::TYPE => pagerduty::configure(entry.take(scope)?, scope).map(DestinationKind::Pagerduty),
        webhook::TYPE => webhook::configure(entry.take(scope)?, scope).map(DestinationKind::Webhook),
        log::TYPE => entry.take::<log::RawLog>(scope).map(|_| DestinationKind::Log),
        _ => None,
    }
}

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

    /// Delivers many groups' queued notifications as one message. Only the
    /// types that accept `coalesce_after` (chat and email) make digests.
    async fn deliver_digest(&self, _digest: &Digest) -> Result<(), DeliveryError> {
        Err(DeliveryError::permanent(
            Reason::ClientError,
            "this destination type sends no digests",
        ))
    }
}

/// Whether a type can send digests (and so takes `coalesce_after`).
pub fn makes_digests(type_name: &str) -> bool {
    matches!(type_name, slack::TYPE | email::TYPE)
}

/// Builds a destination (no network until the first delivery). `threads`
/// is where a Slack bot keeps the message each group's thread hangs from:
/// the relay store's, so that replicas sharing a queue share its threads.
pub fn build(cfg: &DestinationConfig, threads: &Arc<dyn ThreadStore>) -> Result<Arc<dyn Destination>, String> {
    Ok(match &cfg.kind {
        DestinationKind::Log => Arc::new(log::Log::new(cfg)?),
        DestinationKind::Webhook(w) => Arc::new(webhook::Webhook::new(cfg, w)?),
        DestinationKind::Pagerduty(p) => Arc::new(pagerduty::PagerDuty::new(cfg, p)?),
        DestinationKind::Email(e) => Arc::new(email::Email::new(cfg, e)?),
        DestinationKind::Slack(s) => Arc::new(slack::Slack::new(cfg, s, threads.clone())?),
    })
}

/// A notification undelivered for this long is dead-lettered, by default,
/// whatever the type: a day covers a weekend outage's first night.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Delivery defaults of a type, each declared beside its type
/// (`<type>::DELIVERY`, with the provider's limits that set them).
pub fn default_delivery(type_name: &str) -> Delivery {
    match type_name {
        slack::TYPE => slack::DELIVERY,
        email::TYPE => email::DELIVERY,
        pagerduty::TYPE => pagerduty::DELIVERY,
        webhook::TYPE => webhook::DELIVERY,
        _ => log::DELIVERY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::template::{Templates, sample};

    #[test]
    fn every_types_default_templates_render() {
        let p = sample();
        for (t, _) in types() {
            let compiled = Templates::compile(t, templates(t), &Default::default()).unwrap();
            for (part, _) in templates(t) {
                let (out, expected) = if part.starts_with(crate::relay::digest::PART_PREFIX) {
                    let out = compiled.render_digest(part, &crate::relay::template::sample_digest()).unwrap();
                    // A digest's one-line parts count the groups; the others list them.
                    let one_line = part.ends_with("title") || part.ends_with("subject");
                    (
                        out,
                        if one_line {
                            "[DIGEST] 2 alert groups"
                        } else {
                            "RedisHighMemoryUsage"
                        },
                    )
                } else {
                    (compiled.render(part, &p).unwrap(), "RedisHighMemoryUsage")
                };
                assert!(out.contains(expected), "{t}/{part}: {out}");
            }
        }
        let email = Templates::compile("email", email::TEMPLATES, &Default::default()).unwrap();
        let text = email.render("text", &p).unwrap();
        assert!(
            text.contains("Runbook: https://example/runbook") && text.contains("Resolved (1)"),
            "{text}"
        );
        assert!(templates(webhook::TYPE).is_empty());
    }
}
