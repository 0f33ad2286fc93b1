//! `type: slack`, with slack-morphism: an incoming webhook, or a bot token
//! and a channel.
//!
//! The message is one attachment coloured by status (red firing, green
//! resolved) with each alert's summary, the labels that matter and links
//! (runbook, dashboard, source). Text is trimmed to Slack's limits, never
//! rejected. With a bot token, later notifications of a group go into the
//! thread of its first message, and that first message is updated when the
//! group resolves, so a channel shows one line per incident. Which message
//! a group's thread hangs from is kept by the relay store
//! ([`crate::relay::threads`]): replicas sharing a queue share the threads,
//! so a resolve one of them delivers replies in the thread another started.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use super::{Destination, Notification};
use crate::config::Secret;
use crate::config::entry::Scope;
use crate::config::value::{parse_http_url, read_secret};
use crate::relay::destination::DestinationConfig;
use crate::relay::digest::Digest;
use crate::relay::retry::{DeliveryError, Reason, check_status};
use crate::relay::template::{SUBJECT, Templates};
use crate::relay::threads::ThreadStore;

/// Slack's limit on an attachment's text we keep under, in characters.
pub const MAX_TEXT: usize = 3000;
/// Alertmanager's title limit, in characters.
pub const MAX_TITLE: usize = 1024;

// ---------------------------------------------------------------------------
// Configuration: the keys of `type: slack` and their validation.

/// The type's name in `type:`.
pub const TYPE: &str = "slack";

/// Delivery defaults: Slack allows about one message a second per webhook
/// or channel (short bursts aside) and answers 429 beyond.
pub const DELIVERY: super::Delivery = super::Delivery {
    min_interval: std::time::Duration::from_secs(1),
    initial_backoff: std::time::Duration::from_secs(1),
    max_backoff: std::time::Duration::from_secs(300),
    max_age: super::DEFAULT_MAX_AGE,
    timeout: std::time::Duration::from_secs(10),
    // Concurrency: Slack answers 429 to a burst, so a few in flight are enough to keep up with its rate.
    concurrency: 4,
    burst: 1,
    skip_superseded: true,
    coalesce_after: Some(std::time::Duration::from_secs(30)),
};

/// The parts a Slack message is rendered from, with their defaults.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("title", SUBJECT),
    ("text", DEFAULT_TEXT),
    ("digest_title", DIGEST_TITLE),
    ("digest_text", DIGEST_TEXT),
];

/// Slack's limit on a section block's text, in characters.
pub const MAX_SECTION_TEXT: usize = 3000;
/// Sections a digest's list takes at most: Slack allows 50 blocks in a
/// message, one is the title.
pub const MAX_DIGEST_SECTIONS: usize = 48;

const DIGEST_TITLE: &str = "{{ subject }} (queued up to {{ waited }})";

const DIGEST_TEXT: &str = "{% for g in groups %}{% if g.status == 'firing' %}:red_circle:{% else %}:large_green_circle:{% endif %} {{ g.title }}{% if g.notifications > 1 %} ({{ g.notifications }} updates){% endif %}{% for l in g.links %} <{{ l.url }}|{{ l.name }}>{% endfor %}
{% endfor %}";

const DEFAULT_TEXT: &str = "{% for a in alerts %}{% if a.status == 'firing' %}:red_circle:{% else %}:large_green_circle:{% endif %} *{{ a.labels.alertname }}*{% if a.labels.instance %} on `{{ a.labels.instance }}`{% endif %}{% if a.labels.severity %} ({{ a.labels.severity }}){% endif %}: {{ a.annotations.summary or a.annotations.description or '' }}
{% if a.annotations.runbook_url %}<{{ a.annotations.runbook_url }}|Runbook> {% endif %}{% if a.annotations.dashboard_url %}<{{ a.annotations.dashboard_url }}|Dashboard> {% endif %}{% if a.generatorURL %}<{{ a.generatorURL }}|Source>{% endif %}
{% endfor %}";

/// The keys of a `type: slack` destination, as written: an incoming
/// webhook, or a bot token and a channel (threads and resolve updates need
/// the bot token).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSlack {
    /// Incoming webhook URL (a secret: its path is the credential).
    pub webhook_url: Option<Secret>,
    /// File holding the incoming webhook URL.
    pub webhook_url_file: Option<PathBuf>,
    /// Bot token (`xoxb-…`), with `channel`.
    pub bot_token: Option<Secret>,
    /// File holding the bot token.
    pub bot_token_file: Option<PathBuf>,
    /// Channel ID or name for the bot token.
    pub channel: Option<String>,
    /// Slack Web API base (default `https://slack.com/api/`).
    pub api_url: Option<String>,
}

/// A Slack destination after validation.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// Incoming webhook URL.
    pub webhook_url: Option<Secret>,
    /// Bot token (xoxb-…), with `channel`.
    pub bot_token: Option<Secret>,
    /// Channel for the bot token.
    pub channel: Option<String>,
    /// Slack Web API base (default https://slack.com/api/).
    pub api_url: Option<String>,
}

/// Validates a `type: slack` destination's keys.
pub fn configure(d: RawSlack, scope: &mut Scope<'_>) -> Option<SlackConfig> {
    let before = scope.count();
    let webhook_url = read_secret(&d.webhook_url, &d.webhook_url_file, "webhook_url").unwrap_or_else(|e| {
        scope.error("webhook_url", e);
        None
    });
    let bot_token = read_secret(&d.bot_token, &d.bot_token_file, "bot_token").unwrap_or_else(|e| {
        scope.error("bot_token", e);
        None
    });
    match (&webhook_url, &bot_token, &d.channel) {
        (Some(_), Some(_), _) => scope.error("bot_token", "give either `webhook_url` or `bot_token` + `channel`, not both"),
        (None, None, _) => scope.error(
            "webhook_url",
            "a Slack destination needs `webhook_url`, or `bot_token` and `channel`",
        ),
        (None, Some(_), None) => scope.error("channel", "required with `bot_token`"),
        _ => {}
    }
    if let Some(u) = &webhook_url
        && let Err(e) = parse_http_url(u.expose())
    {
        scope.error("webhook_url", e);
    }
    if let Some(u) = &d.api_url
        && let Err(e) = parse_http_url(u)
    {
        scope.error("api_url", e);
    }
    (scope.count() == before).then_some(SlackConfig {
        webhook_url,
        bot_token,
        channel: d.channel,
        api_url: d.api_url,
    })
}

type Connector = SlackClientHyperConnector<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>>;

/// The destination.
pub struct Slack {
    name: String,
    client: SlackClient<Connector>,
    webhook: Option<url::Url>,
    bot: Option<(SlackApiToken, SlackChannelId)>,
    /// Where each group's thread is kept: the relay store's, so that every
    /// replica sharing the queue finds the threads the others started.
    threads: Arc<dyn ThreadStore>,
    templates: Templates,
}

impl Slack {
    /// Builds the client (no request is made).
    pub fn new(cfg: &DestinationConfig, slack: &SlackConfig, threads: Arc<dyn ThreadStore>) -> Result<Self, String> {
        let SlackConfig {
            webhook_url,
            bot_token,
            channel,
            api_url,
        } = slack;
        crate::http::install_crypto_provider();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("cannot load the system's CA certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let mut connector = SlackClientHyperConnector::with_connector(https);
        if let Some(api) = api_url {
            // slack-morphism joins the base and the method with a `/`.
            connector = connector.with_slack_api_url(api.trim_end_matches('/'));
        }
        let webhook = match webhook_url {
            Some(u) => Some(url::Url::parse(u.expose()).map_err(|_| "invalid webhook_url".to_string())?),
            None => None,
        };
        let bot = match (bot_token, channel) {
            (Some(t), Some(c)) => Some((
                SlackApiToken::new(SlackApiTokenValue(t.expose().to_string())),
                SlackChannelId(c.clone()),
            )),
            _ => None,
        };
        Ok(Slack {
            name: cfg.name.clone(),
            client: SlackClient::new(connector),
            webhook,
            bot,
            threads,
            templates: Templates::compile(TYPE, TEMPLATES, &cfg.templates)?,
        })
    }

    fn content(&self, n: &Notification<'_>) -> Result<SlackMessageContent, DeliveryError> {
        let render = |part: &str| {
            self.templates
                .render(part, n.payload)
                .map_err(|e| DeliveryError::permanent(Reason::Template, e))
        };
        let title = trim(&render("title")?, MAX_TITLE);
        let text = trim(&render("text")?, MAX_TEXT);
        let p = n.payload;
        let color = if p.status == "firing" { "danger" } else { "good" };
        let mut fields = Vec::new();
        for k in ["severity", "instance", "job", "service"] {
            if let Some(v) = p.common_labels.get(k) {
                fields.push(
                    SlackMessageAttachmentFieldObject::new()
                        .with_title(k.to_string())
                        .with_value(v.clone())
                        .with_short(true),
                );
            }
        }
        let counts = format!("{} firing, {} resolved", p.firing().count(), p.resolved().count());
        let attachment = SlackMessageAttachment::new()
            .with_color(color.to_string())
            .with_title(title.clone())
            .with_text(text)
            .with_fallback(format!("{title} ({counts})"))
            .with_fields(fields)
            .with_mrkdwn_in(vec!["text".to_string()]);
        Ok(SlackMessageContent::new()
            .with_text(format!("{title} — {counts}"))
            .with_attachments(vec![attachment]))
    }

    /// A digest in Block Kit: the title, then the rendered list of groups
    /// in mrkdwn sections (whole lines, each section under Slack's 3,000
    /// characters, at most [`MAX_DIGEST_SECTIONS`]: about 140,000 characters,
    /// room for a thousand groups), under one attachment coloured by whether
    /// any group fires, with the counts. The title is also the message's
    /// `text`, which notifications show.
    fn digest_content(&self, d: &Digest) -> Result<SlackMessageContent, DeliveryError> {
        let render = |part: &str| {
            self.templates
                .render_digest(part, d)
                .map_err(|e| DeliveryError::permanent(Reason::Template, e))
        };
        let title = trim(&render("digest_title")?, MAX_TITLE);
        let text = render("digest_text")?;
        let color = if d.num_firing > 0 { "danger" } else { "good" };
        let field = |t: &str, v: usize| {
            SlackMessageAttachmentFieldObject::new()
                .with_title(t.to_string())
                .with_value(v.to_string())
                .with_short(true)
        };
        let attachment = SlackMessageAttachment::new()
            .with_color(color.to_string())
            .with_fallback(title.clone())
            .with_fields(vec![
                field("Firing", d.num_firing),
                field("Resolved", d.num_resolved),
                field("Notifications", d.num_notifications),
            ]);
        let section =
            |t: String| SlackBlock::Section(SlackSectionBlock::new().with_text(SlackBlockText::MarkDown(SlackBlockMarkDownText::new(t))));
        let mut blocks = vec![section(format!("*{title}*"))];
        blocks.extend(sections(&text, MAX_SECTION_TEXT, MAX_DIGEST_SECTIONS).into_iter().map(section));
        Ok(SlackMessageContent::new()
            .with_text(title)
            .with_blocks(blocks)
            .with_attachments(vec![attachment]))
    }

    async fn via_webhook(&self, content: SlackMessageContent) -> Result<(), DeliveryError> {
        let Some(url) = &self.webhook else {
            return Err(DeliveryError::permanent(Reason::ClientError, "no webhook_url or bot_token"));
        };
        self.client
            .post_webhook_message(url, &SlackApiPostWebhookMessageRequest::new(content))
            .await
            .map(|_| ())
            .map_err(slack_error)
    }

    async fn via_bot(
        &self,
        token: &SlackApiToken,
        channel: &SlackChannelId,
        n: &Notification<'_>,
        content: SlackMessageContent,
    ) -> Result<(), DeliveryError> {
        let session = self.client.open_session(token);
        let group = &n.payload.group_key;
        let thread = self.threads.get(&self.name, group).await.map_err(thread_error)?;
        match thread {
            None => {
                let resp = session
                    .chat_post_message(&SlackApiChatPostMessageRequest::new(channel.clone(), content))
                    .await
                    .map_err(slack_error)?;
                if n.payload.status == "firing" {
                    self.threads
                        .set(&self.name, group, &resp.channel.0, &resp.ts.0)
                        .await
                        .map_err(thread_error)?;
                }
            }
            Some((ch, ts)) => {
                let ch = SlackChannelId(ch);
                let ts = SlackTs(ts);
                session
                    .chat_post_message(&SlackApiChatPostMessageRequest::new(ch.clone(), content.clone()).with_thread_ts(ts.clone()))
                    .await
                    .map_err(slack_error)?;
                if n.payload.status == "resolved" {
                    // The incident's first line now says it is over.
                    session
                        .chat_update(&SlackApiChatUpdateRequest::new(ch, content, ts))
                        .await
                        .map_err(slack_error)?;
                    self.threads.clear(&self.name, group).await.map_err(thread_error)?;
                }
            }
        }
        Ok(())
    }
}

/// A thread store that cannot answer now may answer on the next attempt.
fn thread_error(e: crate::relay::outbox::OutboxError) -> DeliveryError {
    DeliveryError::transient(Reason::ServerError, format!("Slack thread store: {e}"))
}

/// `text` cut into sections of whole lines, each at most `max` characters
/// (a longer line is trimmed), at most `most` of them; what does not fit is
/// counted in the last one.
fn sections(text: &str, max: usize, most: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    for (i, line) in lines.iter().enumerate() {
        let line = trim(line, max);
        let fits = out
            .last()
            .is_some_and(|last| last.chars().count() + 1 + line.chars().count() <= max);
        if let (true, Some(last)) = (fits, out.last_mut()) {
            last.push('\n');
            last.push_str(&line);
        } else if out.len() == most {
            // Room for the note: whole lines come off the last section.
            let mut rest = lines.len() - i;
            if let Some(last) = out.last_mut() {
                while last.chars().count() + 32 > max {
                    let Some(cut) = last.rfind('\n') else { break };
                    last.truncate(cut);
                    rest += 1;
                }
                last.push_str(&format!("\n… and {rest} more lines"));
            }
            break;
        } else {
            out.push(line);
        }
    }
    out
}

fn trim(s: &str, max: usize) -> String {
    let count = s.chars().count();
    if count <= max {
        return s.to_string();
    }
    let note = format!("\n… ({} more characters trimmed)", count - max);
    let keep = max.saturating_sub(note.chars().count());
    let mut t: String = s.chars().take(keep).collect();
    t.push_str(&note);
    t
}

/// slack-morphism's errors onto the retry policy: rate limits honour
/// `Retry-After`; HTTP statuses follow the shared table; Web API errors
/// (`ok: false`) are permanent except `ratelimited`.
fn slack_error(e: SlackClientError) -> DeliveryError {
    match e {
        SlackClientError::RateLimitError(r) => DeliveryError {
            retry: crate::relay::retry::Retry::Yes,
            reason: Reason::RateLimited,
            message: format!("Slack rate limit{}", r.code.map(|c| format!(": {c}")).unwrap_or_default()),
            retry_after: r.retry_after,
        },
        SlackClientError::HttpError(h) => match check_status(h.status_code.as_u16(), h.http_response_body.as_deref().unwrap_or(""), None) {
            Ok(()) => DeliveryError::transient(Reason::ServerError, format!("unexpected Slack answer {}", h.status_code)),
            Err(e) => e,
        },
        SlackClientError::ApiError(a) if a.code == "ratelimited" => DeliveryError::transient(Reason::RateLimited, "Slack: ratelimited"),
        SlackClientError::ApiError(a) => {
            let reason = if matches!(
                a.code.as_str(),
                "invalid_auth" | "not_authed" | "account_inactive" | "token_revoked" | "missing_scope"
            ) {
                Reason::AuthError
            } else {
                Reason::ClientError
            };
            DeliveryError::permanent(reason, format!("error response from Slack: {}", a.code))
        }
        other => DeliveryError::transient(Reason::Network, format!("Slack: {other}")),
    }
}

#[async_trait::async_trait]
impl Destination for Slack {
    async fn deliver_digest(&self, d: &Digest) -> Result<(), DeliveryError> {
        let content = self.digest_content(d)?;
        if let Some((token, channel)) = &self.bot {
            // In the channel, not in a thread: it speaks of many groups.
            self.client
                .open_session(token)
                .chat_post_message(&SlackApiChatPostMessageRequest::new(channel.clone(), content))
                .await
                .map_err(slack_error)?;
            // A group the digest showed resolved is over: its next incident
            // starts a new thread, as after a resolve sent alone.
            for g in d.groups.iter().filter(|g| g.status == "resolved") {
                if let Err(e) = self.threads.clear(&self.name, &g.group_key).await {
                    // Sent already: failing here would send the digest twice.
                    tracing::warn!(destination = %self.name, group = %g.group_key, error = %e, "Cannot forget the thread of a group a digest resolved");
                }
            }
            return Ok(());
        }
        self.via_webhook(content).await
    }

    async fn deliver(&self, n: &Notification<'_>) -> Result<(), DeliveryError> {
        let content = self.content(n)?;
        if let Some((token, channel)) = &self.bot {
            return self.via_bot(token, channel, n, content).await;
        }
        self.via_webhook(content).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_list_is_cut_at_lines_into_sections_and_what_does_not_fit_is_counted() {
        let text: String = (0..100).map(|i| format!("group {i:03} {}\n", "x".repeat(40))).collect();
        let s = sections(&text, 200, 10);
        assert_eq!(s.len(), 10);
        assert!(s.iter().all(|x| x.chars().count() <= 200), "{s:?}");
        // Three 50-character lines to a section; what is left is counted in the last.
        assert!(s[0].starts_with("group 000") && s[1].starts_with("group 003"), "{s:?}");
        assert!(s[9].starts_with("group 027") && s[9].ends_with("\n… and 70 more lines"), "{}", s[9]);
        assert_eq!(sections("a\n\nb\n", 200, 10), ["a\nb"]);
    }

    #[test]
    fn long_text_is_trimmed_not_rejected() {
        let t = trim(&"a".repeat(10_000), MAX_TEXT);
        assert_eq!(t.chars().count(), MAX_TEXT);
        assert!(t.ends_with("more characters trimmed)"));
        assert_eq!(trim("short", MAX_TEXT), "short");
    }
}
