//! The configuration file as written: serde types that mirror the YAML
//! one-to-one, reject unknown keys, and parse scalar values (durations,
//! addresses, cron expressions) where they stand, so that every error the
//! parser reports carries the line and column of the offending value.
//! [`super::validate`] turns these into the typed [`super::Config`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

use super::secret::Secret;
use crate::metric::Metric;
use crate::probe::assert::Assertion;

/// Top level of `lookout.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub history: RawHistory,
    #[serde(default)]
    pub scheduler: RawScheduler,
    pub probe_files: Option<Vec<String>>,
    #[serde(default)]
    pub probes: Vec<RawProbe>,
    pub prometheus: Option<RawEndpoint>,
    pub alertmanager: Option<RawEndpoint>,
    pub crosscheck: Option<RawCrossCheck>,
    pub relay: Option<super::relay::RawRelay>,
    pub alerts: Option<super::alerts::RawAlerts>,
}

/// `crosscheck:`; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCrossCheck {
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub every: Option<Duration>,
    pub reference: Option<String>,
    pub sources: Option<Vec<String>>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub max_staleness: Option<Duration>,
    #[serde(default)]
    pub tolerances: BTreeMap<Metric, RawTolerance>,
}

/// A tolerance; which keys apply depends on the metric's rule.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTolerance {
    pub abs: Option<f64>,
    pub rel: Option<f64>,
    pub factor: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    #[serde(default, deserialize_with = "opt_socket_addr")]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHistory {
    #[serde(default, deserialize_with = "opt_duration")]
    pub retention: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScheduler {
    pub spread: Option<bool>,
    pub max_concurrency: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEndpoint {
    #[serde(deserialize_with = "http_url")]
    pub url: url::Url,
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
}

/// The probe kinds, as spelled in `kind:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawKind {
    HttpHealth,
    Redis,
    Prometheus,
}

/// One probe, with the fields of every kind side by side. A flat struct
/// (rather than an enum tagged by `kind`) keeps exact line numbers in parse
/// errors; fields that do not belong to the probe's kind are rejected in
/// validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProbe {
    pub name: Spanned<String>,
    pub kind: RawKind,
    #[serde(default, deserialize_with = "opt_duration")]
    pub every: Option<Duration>,
    #[serde(default, deserialize_with = "opt_cron")]
    pub schedule: Option<String>,
    #[serde(default, deserialize_with = "opt_tz")]
    pub timezone: Option<chrono_tz::Tz>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,

    // http_health, prometheus and redis all take a URL, each of its own scheme.
    pub url: Option<Secret>,

    // http_health
    pub headers: Option<BTreeMap<String, Secret>>,
    pub tls_skip_verify: Option<bool>,
    pub expect_status: Option<u16>,
    pub fields: Option<BTreeMap<Metric, RawField>>,
    #[serde(rename = "assert")]
    pub asserts: Option<Vec<Assertion>>,

    // redis
    pub host: Option<String>,
    pub port: Option<u16>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    pub db: Option<i64>,
    pub roundtrip: Option<bool>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub static_info_every: Option<Duration>,

    // prometheus
    pub selector: Option<String>,
    pub queries: Option<BTreeMap<Metric, String>>,
}

impl RawProbe {
    /// Names of the kind-specific fields that are set, for rejecting those
    /// that do not belong to the probe's kind.
    pub fn set_fields(&self) -> Vec<(&'static str, RawKind)> {
        use RawKind::*;
        let mut v = Vec::new();
        let mut add = |set: bool, name: &'static str, kind: RawKind| {
            if set {
                v.push((name, kind));
            }
        };
        add(self.headers.is_some(), "headers", HttpHealth);
        add(self.tls_skip_verify.is_some(), "tls_skip_verify", HttpHealth);
        add(self.expect_status.is_some(), "expect_status", HttpHealth);
        add(self.fields.is_some(), "fields", HttpHealth);
        add(self.asserts.is_some(), "assert", HttpHealth);
        add(self.host.is_some(), "host", Redis);
        add(self.port.is_some(), "port", Redis);
        add(self.username.is_some(), "username", Redis);
        add(self.password.is_some(), "password", Redis);
        add(self.password_file.is_some(), "password_file", Redis);
        add(self.db.is_some(), "db", Redis);
        add(self.roundtrip.is_some(), "roundtrip", Redis);
        add(self.static_info_every.is_some(), "static_info_every", Redis);
        add(self.selector.is_some(), "selector", Prometheus);
        add(self.queries.is_some(), "queries", Prometheus);
        v
    }
}

/// Where a canonical metric sits in a health endpoint's JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawField {
    Pointer(String),
    Scaled {
        pointer: String,
        #[serde(default = "one")]
        scale: f64,
    },
}

fn one() -> f64 {
    1.0
}

/// A duration such as `15s`, `1m30s`, `500ms` or `7d`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| format!("invalid duration `{s}`: {e} (write e.g. `15s`, `500ms`, `5m`)"))?;
    if d.is_zero() {
        return Err(format!("invalid duration `{s}`: must be greater than zero"));
    }
    Ok(d)
}

/// [`opt_duration`] for sibling modules.
pub(crate) fn opt_duration_pub<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    opt_duration(d)
}

/// Accepts a string duration only: a bare number is ambiguous (seconds? ms?).
fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map(Some).map_err(serde::de::Error::custom)
}

fn opt_socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse()
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("invalid listen address `{s}` (write host:port, e.g. `127.0.0.1:9464`)")))
}

fn http_url<'de, D: Deserializer<'de>>(d: D) -> Result<url::Url, D::Error> {
    let s = String::deserialize(d)?;
    parse_http_url(&s).map_err(serde::de::Error::custom)
}

/// An http(s) URL with a host; the error never repeats credentials.
pub(crate) fn parse_http_url(s: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(s).map_err(|e| format!("invalid URL `{}`: {e}", super::secret::redact_url(s)))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(format!(
            "invalid URL `{}`: expected http:// or https:// with a host",
            super::secret::redact_url(s)
        ));
    }
    Ok(u)
}

/// Parses a cron expression exactly as the scheduler will (six fields,
/// seconds first; day-of-month and day-of-week both must match).
pub(crate) fn parse_cron(s: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(s)
        .map_err(|e| format!("invalid cron expression `{s}`: {e} (six fields with seconds first, e.g. `*/15 * * * * *`)"))
}

fn opt_cron<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    parse_cron(&s).map(|_| Some(s)).map_err(serde::de::Error::custom)
}

fn opt_tz<'de, D: Deserializer<'de>>(d: D) -> Result<Option<chrono_tz::Tz>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse::<chrono_tz::Tz>()
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("unknown time zone `{s}` (an IANA name such as `Europe/Paris` or `UTC`)")))
}
