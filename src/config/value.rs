//! Scalar values as written in configuration: durations, URLs, cron
//! expressions, time zones, listen addresses. Each is parsed where it
//! stands (a `deserialize_with` helper), so an error carries the line and
//! column of the value, and the message says what a valid one looks like.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration such as `15s`, `1m30s`, `500ms` or `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| format!("invalid duration `{s}`: {e} (write e.g. `15s`, `500ms`, `5m`)"))?;
    if d.is_zero() {
        return Err(format!("invalid duration `{s}`: must be greater than zero"));
    }
    Ok(d)
}

/// `deserialize_with` for an optional duration. Accepts a string only: a
/// bare number is ambiguous (seconds? milliseconds?).
pub fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map(Some).map_err(serde::de::Error::custom)
}

/// `deserialize_with` for an optional `host:port` listen address.
pub fn opt_socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse()
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("invalid listen address `{s}` (write host:port, e.g. `127.0.0.1:9464`)")))
}

/// `deserialize_with` for a required http(s) URL.
pub fn http_url<'de, D: Deserializer<'de>>(d: D) -> Result<url::Url, D::Error> {
    let s = String::deserialize(d)?;
    parse_http_url(&s).map_err(serde::de::Error::custom)
}

/// An http(s) URL with a host. The error names what is wrong but never
/// repeats the value: a URL may carry a token anywhere (userinfo, query,
/// path), and the error's location already says which key it is.
pub fn parse_http_url(s: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(s).map_err(|e| format!("invalid URL: {e} (write http://host[:port]/path or https://…)"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!(
            "invalid URL: the scheme is `{}`, expected http:// or https://",
            truncate_scheme(u.scheme())
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("invalid URL: it has no host (write http://host[:port]/path)".to_string());
    }
    Ok(u)
}

/// A scheme is not secret, but it is user input: a long one is cut.
fn truncate_scheme(s: &str) -> String {
    s.chars().take(16).collect()
}

/// Parses a cron expression exactly as the scheduler will (six fields,
/// seconds first; day-of-month and day-of-week both must match).
pub fn parse_cron(s: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(s)
        .map_err(|e| format!("invalid cron expression `{s}`: {e} (six fields with seconds first, e.g. `*/15 * * * * *`)"))
}

/// `deserialize_with` for an optional cron expression (kept as written).
pub fn opt_cron<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    parse_cron(&s).map(|_| Some(s)).map_err(serde::de::Error::custom)
}

/// `deserialize_with` for an optional IANA time zone.
pub fn opt_tz<'de, D: Deserializer<'de>>(d: D) -> Result<Option<chrono_tz::Tz>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse::<chrono_tz::Tz>()
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("unknown time zone `{s}` (an IANA name such as `Europe/Paris` or `UTC`)")))
}

/// Reads a secret given either inline (`name`) or from a file (`name_file`),
/// trimming the file's final newline.
pub fn read_secret(value: &Option<super::Secret>, file: &Option<std::path::PathBuf>, name: &str) -> Result<Option<super::Secret>, String> {
    match (value, file) {
        (Some(_), Some(_)) => Err(format!("give either `{name}` or `{name}_file`, not both")),
        (Some(v), None) => Ok(Some(v.clone())),
        (None, Some(p)) => std::fs::read_to_string(p)
            .map(|s| Some(super::Secret::new(s.trim_end_matches(['\n', '\r']))))
            .map_err(|e| format!("cannot read `{}`: {e}", p.display())),
        (None, None) => Ok(None),
    }
}
