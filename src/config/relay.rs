//! `relay:`: the Alertmanager-compatible webhook receiver, its routes and
//! destinations. Parsed strictly like the rest of the configuration; the
//! message templates are compiled and test-rendered here, so a broken
//! template is a configuration error, never a silently dropped notification.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::raw::{opt_duration_pub as opt_duration, parse_http_url};
use super::secret::Secret;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRelay {
    pub enabled: Option<bool>,
    pub max_body_bytes: Option<usize>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub dedup_window: Option<Duration>,
    pub auth: Option<RawAuth>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub destinations: Vec<RawDestination>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    pub bearer_token: Option<Secret>,
    pub bearer_token_file: Option<PathBuf>,
    pub basic: Option<RawBasic>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBasic {
    pub username: String,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    #[serde(default)]
    pub matchers: Vec<String>,
    pub destinations: Vec<String>,
    #[serde(default, rename = "continue")]
    pub continue_: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawDestKind {
    Slack,
    Email,
    Pagerduty,
    Webhook,
    Log,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    #[serde(default, deserialize_with = "opt_duration")]
    pub initial_backoff: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub max_backoff: Option<Duration>,
}

/// One destination, every type's fields side by side (exact line numbers in
/// errors); fields of another type are rejected in validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDestination {
    pub name: serde_saphyr::Spanned<String>,
    #[serde(rename = "type")]
    pub kind: RawDestKind,
    pub rate_limit: Option<String>,
    pub retry: Option<RawRetry>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub max_age: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
    // slack
    pub webhook_url: Option<Secret>,
    pub webhook_url_file: Option<PathBuf>,
    pub bot_token: Option<Secret>,
    pub bot_token_file: Option<PathBuf>,
    pub channel: Option<String>,
    pub api_url: Option<String>,
    // email
    pub host: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<RawTls>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    pub from: Option<String>,
    pub to: Option<Vec<String>>,
    // pagerduty
    pub routing_key: Option<Secret>,
    pub routing_key_file: Option<PathBuf>,
    // pagerduty, webhook
    pub url: Option<Secret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawTls {
    None,
    Starttls,
    Tls,
}

/// The relay after validation.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Largest accepted webhook body.
    pub max_body_bytes: usize,
    /// Identical payloads within this window are delivered once.
    pub dedup_window: Duration,
    /// Who may post.
    pub auth: Auth,
    /// Routes, in order.
    pub routes: Vec<Route>,
    /// Destinations by name, in configuration order.
    pub destinations: Vec<DestinationConfig>,
}

/// Authentication of `POST /webhook`.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// Anyone who can reach the listener (which defaults to loopback).
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// `Authorization: Basic …`.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
}

/// A route: which destinations get a notification whose common labels match.
#[derive(Debug, Clone)]
pub struct Route {
    /// All must match; none means every notification.
    pub matchers: Vec<crate::relay::route::Matcher>,
    /// Destination names.
    pub destinations: Vec<String>,
    /// Keep evaluating the routes after this one matched.
    pub continue_: bool,
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

/// What a destination is.
#[derive(Debug, Clone)]
pub enum DestinationKind {
    /// Slack: an incoming webhook, or a bot token and a channel.
    Slack {
        /// Incoming webhook URL.
        webhook_url: Option<Secret>,
        /// Bot token (xoxb-…), with `channel`.
        bot_token: Option<Secret>,
        /// Channel for the bot token.
        channel: Option<String>,
        /// Slack Web API base (default https://slack.com/api/).
        api_url: Option<String>,
    },
    /// Email over SMTP.
    Email {
        /// SMTP host.
        host: String,
        /// SMTP port.
        port: u16,
        /// TLS mode.
        tls: SmtpTls,
        /// AUTH user.
        username: Option<String>,
        /// AUTH password.
        password: Option<Secret>,
        /// Sender.
        from: String,
        /// Envelope recipients.
        to: Vec<String>,
    },
    /// PagerDuty Events API v2.
    Pagerduty {
        /// Integration key.
        routing_key: Secret,
        /// Events endpoint.
        url: String,
    },
    /// Forward the payload unchanged.
    Webhook {
        /// Target (a secret: it may carry a token).
        url: Secret,
    },
    /// Write the notification to lookout's log.
    Log,
}

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

impl DestinationKind {
    /// The `type` as configured.
    pub fn type_name(&self) -> &'static str {
        match self {
            DestinationKind::Slack { .. } => "slack",
            DestinationKind::Email { .. } => "email",
            DestinationKind::Pagerduty { .. } => "pagerduty",
            DestinationKind::Webhook { .. } => "webhook",
            DestinationKind::Log => "log",
        }
    }
}

/// Parses `"1/s"`, `"30/m"`, `"100/h"` into the spacing between sends;
/// `"unlimited"` is no spacing.
pub fn parse_rate(s: &str) -> Result<Duration, String> {
    if s.trim() == "unlimited" {
        return Ok(Duration::ZERO);
    }
    let (n, per) = s
        .split_once('/')
        .ok_or_else(|| format!("invalid rate `{s}`: write e.g. `1/s`, `30/m`"))?;
    let n: f64 = n.trim().parse().map_err(|_| format!("invalid rate `{s}`: `{n}` is not a number"))?;
    let per = match per.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        other => return Err(format!("invalid rate `{s}`: unknown unit `{other}` (s, m or h)")),
    };
    if !(n.is_finite() && n > 0.0) {
        return Err(format!("invalid rate `{s}`: must be positive"));
    }
    Ok(Duration::from_secs_f64(per / n))
}

fn read_secret(value: &Option<Secret>, file: &Option<PathBuf>, name: &str) -> Result<Option<Secret>, String> {
    match (value, file) {
        (Some(_), Some(_)) => Err(format!("give either `{name}` or `{name}_file`, not both")),
        (Some(v), None) => Ok(Some(v.clone())),
        (None, Some(p)) => std::fs::read_to_string(p)
            .map(|s| Some(Secret::new(s.trim_end_matches(['\n', '\r']))))
            .map_err(|e| format!("cannot read `{}`: {e}", p.display())),
        (None, None) => Ok(None),
    }
}

/// A problem in `relay:`: (line, field, message).
pub(crate) type RelayProblem = (Option<u64>, String, String);

/// Validates `relay:`.
pub(crate) fn build(raw: RawRelay) -> Result<Option<RelayConfig>, Vec<RelayProblem>> {
    let mut errs: Vec<RelayProblem> = Vec::new();
    if raw.enabled == Some(false) {
        return Ok(None);
    }
    let auth = match raw.auth {
        None => Auth::None,
        Some(a) => match (read_secret(&a.bearer_token, &a.bearer_token_file, "bearer_token"), a.basic) {
            (Err(e), _) => {
                errs.push((None, "relay.auth.bearer_token".into(), e));
                Auth::None
            }
            (Ok(Some(_)), Some(_)) => {
                errs.push((None, "relay.auth".into(), "give either `bearer_token` or `basic`, not both".into()));
                Auth::None
            }
            (Ok(Some(t)), None) => Auth::Bearer(t),
            (Ok(None), Some(b)) => match read_secret(&b.password, &b.password_file, "password") {
                Ok(Some(p)) => Auth::Basic {
                    username: b.username,
                    password: p,
                },
                Ok(None) => {
                    errs.push((None, "relay.auth.basic.password".into(), "required".into()));
                    Auth::None
                }
                Err(e) => {
                    errs.push((None, "relay.auth.basic.password".into(), e));
                    Auth::None
                }
            },
            (Ok(None), None) => Auth::None,
        },
    };
    let mut destinations = Vec::new();
    for d in raw.destinations {
        let line = Some(d.name.referenced.line());
        let name = d.name.value.clone();
        if destinations.iter().any(|x: &DestinationConfig| x.name == name) {
            errs.push((line, "name".into(), format!("duplicate destination name `{name}`")));
        }
        let mut bad = |f: &str, m: String| errs.push((line, f.to_string(), m));
        let kind = match d.kind {
            RawDestKind::Slack => {
                let webhook_url = read_secret(&d.webhook_url, &d.webhook_url_file, "webhook_url").unwrap_or_else(|e| {
                    bad("webhook_url", e);
                    None
                });
                let bot_token = read_secret(&d.bot_token, &d.bot_token_file, "bot_token").unwrap_or_else(|e| {
                    bad("bot_token", e);
                    None
                });
                match (&webhook_url, &bot_token, &d.channel) {
                    (Some(_), Some(_), _) => bad("bot_token", "give either `webhook_url` or `bot_token` + `channel`, not both".into()),
                    (None, None, _) => bad(
                        "webhook_url",
                        "a Slack destination needs `webhook_url`, or `bot_token` and `channel`".into(),
                    ),
                    (None, Some(_), None) => bad("channel", "required with `bot_token`".into()),
                    _ => {}
                }
                if let Some(u) = &webhook_url
                    && let Err(e) = parse_http_url(u.expose())
                {
                    bad("webhook_url", e);
                }
                if let Some(u) = &d.api_url
                    && let Err(e) = parse_http_url(u)
                {
                    bad("api_url", e);
                }
                DestinationKind::Slack {
                    webhook_url,
                    bot_token,
                    channel: d.channel.clone(),
                    api_url: d.api_url.clone(),
                }
            }
            RawDestKind::Email => {
                let password = read_secret(&d.password, &d.password_file, "password").unwrap_or_else(|e| {
                    bad("password", e);
                    None
                });
                let tls = match d.tls.unwrap_or(RawTls::Starttls) {
                    RawTls::None => SmtpTls::None,
                    RawTls::Starttls => SmtpTls::Starttls,
                    RawTls::Tls => SmtpTls::Tls,
                };
                let from = d.from.clone().unwrap_or_default();
                if from.parse::<lettre::message::Mailbox>().is_err() {
                    bad("from", format!("`{from}` is not an email address"));
                }
                let to = d.to.clone().unwrap_or_default();
                if to.is_empty() {
                    bad("to", "at least one recipient".into());
                }
                for t in &to {
                    if t.parse::<lettre::message::Mailbox>().is_err() {
                        bad("to", format!("`{t}` is not an email address"));
                    }
                }
                let host = d.host.clone().unwrap_or_default();
                if host.is_empty() {
                    bad("host", "required for type `email`".into());
                }
                if password.is_some() && d.username.is_none() {
                    bad("username", "required with `password`".into());
                }
                let port = d.port.unwrap_or(match tls {
                    SmtpTls::Tls => 465,
                    SmtpTls::Starttls => 587,
                    SmtpTls::None => 25,
                });
                DestinationKind::Email {
                    host,
                    port,
                    tls,
                    username: d.username.clone(),
                    password,
                    from,
                    to,
                }
            }
            RawDestKind::Pagerduty => {
                let key = read_secret(&d.routing_key, &d.routing_key_file, "routing_key").unwrap_or_else(|e| {
                    bad("routing_key", e);
                    None
                });
                let url = d
                    .url
                    .as_ref()
                    .map(|u| u.expose().to_string())
                    .unwrap_or_else(|| "https://events.pagerduty.com/v2/enqueue".into());
                if let Err(e) = parse_http_url(&url) {
                    bad("url", e);
                }
                match key {
                    Some(k) => DestinationKind::Pagerduty { routing_key: k, url },
                    None => {
                        bad("routing_key", "required for type `pagerduty`".into());
                        DestinationKind::Log
                    }
                }
            }
            RawDestKind::Webhook => match &d.url {
                Some(u) => {
                    if let Err(e) = parse_http_url(u.expose()) {
                        bad("url", e);
                    }
                    DestinationKind::Webhook { url: u.clone() }
                }
                None => {
                    bad("url", "required for type `webhook`".into());
                    DestinationKind::Log
                }
            },
            RawDestKind::Log => DestinationKind::Log,
        };
        // Fields that belong to other types.
        let belongs: &[(&str, bool, &[RawDestKind])] = &[
            (
                "webhook_url",
                d.webhook_url.is_some() || d.webhook_url_file.is_some(),
                &[RawDestKind::Slack],
            ),
            (
                "bot_token",
                d.bot_token.is_some() || d.bot_token_file.is_some(),
                &[RawDestKind::Slack],
            ),
            ("channel", d.channel.is_some(), &[RawDestKind::Slack]),
            ("api_url", d.api_url.is_some(), &[RawDestKind::Slack]),
            ("host", d.host.is_some(), &[RawDestKind::Email]),
            ("port", d.port.is_some(), &[RawDestKind::Email]),
            ("tls", d.tls.is_some(), &[RawDestKind::Email]),
            ("username", d.username.is_some(), &[RawDestKind::Email]),
            ("password", d.password.is_some() || d.password_file.is_some(), &[RawDestKind::Email]),
            ("from", d.from.is_some(), &[RawDestKind::Email]),
            ("to", d.to.is_some(), &[RawDestKind::Email]),
            (
                "routing_key",
                d.routing_key.is_some() || d.routing_key_file.is_some(),
                &[RawDestKind::Pagerduty],
            ),
            ("url", d.url.is_some(), &[RawDestKind::Pagerduty, RawDestKind::Webhook]),
        ];
        for (field, set, kinds) in belongs {
            if *set && !kinds.contains(&d.kind) {
                bad(field, format!("not a field of type `{}`", kind.type_name()));
            }
        }
        let defaults = crate::relay::destination::default_delivery(kind.type_name());
        let min_interval = match &d.rate_limit {
            Some(r) => parse_rate(r).unwrap_or_else(|e| {
                bad("rate_limit", e);
                defaults.min_interval
            }),
            None => defaults.min_interval,
        };
        let retry = d.retry.unwrap_or_default();
        let delivery = Delivery {
            min_interval,
            initial_backoff: retry.initial_backoff.unwrap_or(defaults.initial_backoff),
            max_backoff: retry.max_backoff.unwrap_or(defaults.max_backoff),
            max_age: d.max_age.unwrap_or(defaults.max_age),
            timeout: d.timeout.unwrap_or(defaults.timeout),
        };
        if delivery.initial_backoff > delivery.max_backoff {
            bad("retry", "`initial_backoff` is longer than `max_backoff`".into());
        }
        if let Err(e) = crate::relay::template::check(kind.type_name(), &d.templates) {
            bad("templates", e);
        }
        destinations.push(DestinationConfig {
            name,
            kind,
            delivery,
            templates: d.templates,
        });
    }
    let mut routes = Vec::new();
    for (i, r) in raw.routes.into_iter().enumerate() {
        let mut matchers = Vec::new();
        for m in &r.matchers {
            match m.parse::<crate::relay::route::Matcher>() {
                Ok(m) => matchers.push(m),
                Err(e) => errs.push((None, format!("relay.routes[{i}].matchers"), e)),
            }
        }
        for d in &r.destinations {
            if !destinations.iter().any(|x| &x.name == d) {
                let names: Vec<&str> = destinations.iter().map(|x| x.name.as_str()).collect();
                let hint = super::closest(d, &names)
                    .map(|s| format!(" — did you mean `{s}`?"))
                    .unwrap_or_default();
                errs.push((
                    None,
                    format!("relay.routes[{i}].destinations"),
                    format!("no destination named `{d}`{hint}"),
                ));
            }
        }
        if r.destinations.is_empty() {
            errs.push((
                None,
                format!("relay.routes[{i}].destinations"),
                "a route needs at least one destination".into(),
            ));
        }
        routes.push(Route {
            matchers,
            destinations: r.destinations,
            continue_: r.continue_,
        });
    }
    if routes.is_empty() && !destinations.is_empty() {
        // No routes: everything goes everywhere.
        routes.push(Route {
            matchers: vec![],
            destinations: destinations.iter().map(|d| d.name.clone()).collect(),
            continue_: false,
        });
    }
    if destinations.is_empty() {
        // A relay that accepts alerts must deliver them somewhere: the log.
        destinations.push(DestinationConfig {
            name: "log".into(),
            kind: DestinationKind::Log,
            delivery: crate::relay::destination::default_delivery("log"),
            templates: BTreeMap::new(),
        });
        routes = vec![Route {
            matchers: vec![],
            destinations: vec!["log".into()],
            continue_: false,
        }];
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Some(RelayConfig {
        max_body_bytes: raw.max_body_bytes.unwrap_or(1024 * 1024),
        dedup_window: raw.dedup_window.unwrap_or(Duration::from_secs(300)),
        auth,
        routes,
        destinations,
    }))
}
