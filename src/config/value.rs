//! Scalar values as written in configuration: durations, URLs, cron
//! expressions, time zones, listen addresses. Each is parsed where it
//! stands (a `deserialize_with` helper), so an error carries the line and
//! column of the value, and the message says what a valid one looks like.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Longest duration any key accepts (366 days): larger values only come
/// from typos, and past it adding a duration to a clock can overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// A duration such as `15s`, `1m30s`, `500ms` or `7d`, greater than zero
/// and at most [`MAX_DURATION`]. Keys with tighter bounds check them with
/// [`check_bounds`] where the key is known.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| format!("invalid duration `{s}`: {e} (write e.g. `15s`, `500ms`, `5m`)"))?;
    if d.is_zero() {
        return Err(format!("invalid duration `{s}`: must be greater than zero"));
    }
    if d > MAX_DURATION {
        return Err(format!("invalid duration `{s}`: must be at most 366d"));
    }
    Ok(d)
}

/// Checks `d` against a key's documented range; the message names both
/// ends so it says what to write instead.
pub fn check_bounds(d: Duration, min: Duration, max: Duration) -> Result<(), String> {
    if d < min || d > max {
        return Err(format!(
            "{} is out of range: must be between {} and {}",
            humantime::format_duration(d),
            humantime::format_duration(min),
            humantime::format_duration(max)
        ));
    }
    Ok(())
}

/// `deserialize_with` for an optional duration. Accepts a string only: a
/// bare number is ambiguous (seconds? milliseconds?).
pub fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map(Some).map_err(serde::de::Error::custom)
}

/// `deserialize_with` for a setting written as text that may also be `off`:
/// YAML reads an unquoted `off` (or `no`, `false`) as the boolean false, and
/// a user writing `coalesce_after: off` means the word, not a type error.
pub fn opt_text_or_off<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TextOrOff {
        Off(bool),
        Text(String),
    }
    match TextOrOff::deserialize(d)? {
        TextOrOff::Off(false) => Ok(Some("off".to_owned())),
        TextOrOff::Off(true) => Err(serde::de::Error::custom("expected a duration or `off`, found `true`")),
        TextOrOff::Text(s) => Ok(Some(s)),
    }
}

/// `deserialize_with` for an optional duration that may be zero, as
/// Prometheus's `for: 0s` is (fire at the first failing evaluation).
pub fn opt_duration_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    match humantime::parse_duration(s.trim()) {
        Ok(d) if d.is_zero() => Ok(Some(d)),
        _ => parse_duration(&s).map(Some).map_err(serde::de::Error::custom),
    }
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
    // croner also takes a seventh (year) field; the scheduler's documented
    // form is six, and a seventh is more often a misplaced field than a year.
    let fields = s.split_whitespace().count();
    if fields != 6 && !s.trim_start().starts_with('@') {
        return Err(format!(
            "invalid cron expression `{s}`: {fields} fields, expected six with seconds first (e.g. `*/15 * * * * *`)"
        ));
    }
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

/// Largest secret file read: a token, password or webhook URL is a few
/// hundred bytes; the cap keeps a wrong path (a log, `/dev/zero`) from
/// filling memory.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Reads a secret given either inline (`name`) or from a file (`name_file`),
/// trimming the file's final newline. The file must be a regular file (a
/// FIFO would hang start-up, a device could be endless), at most
/// [`MAX_SECRET_FILE_BYTES`], and not empty (an empty token would let
/// through whoever sends an empty one). Errors name the path, never the
/// content.
pub fn read_secret(value: &Option<super::Secret>, file: &Option<std::path::PathBuf>, name: &str) -> Result<Option<super::Secret>, String> {
    match (value, file) {
        (Some(_), Some(_)) => Err(format!("give either `{name}` or `{name}_file`, not both")),
        (Some(v), None) => Ok(Some(v.clone())),
        (None, Some(p)) => read_secret_file(p).map(Some),
        (None, None) => Ok(None),
    }
}

/// One secret file, checked before it is opened (opening a FIFO blocks).
fn read_secret_file(p: &std::path::Path) -> Result<super::Secret, String> {
    use std::io::Read;
    let cannot = |e: std::io::Error| format!("cannot read `{}`: {e}", p.display());
    let meta = std::fs::metadata(p).map_err(cannot)?;
    if !meta.is_file() {
        return Err(format!("`{}` is not a regular file", p.display()));
    }
    if meta.len() > MAX_SECRET_FILE_BYTES {
        return Err(format!("`{}` is larger than {} KiB", p.display(), MAX_SECRET_FILE_BYTES / 1024));
    }
    let mut buf = Vec::new();
    std::fs::File::open(p)
        .and_then(|f| f.take(MAX_SECRET_FILE_BYTES + 1).read_to_end(&mut buf))
        .map_err(cannot)?;
    // The file may have grown between the check and the read.
    if buf.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(format!("`{}` is larger than {} KiB", p.display(), MAX_SECRET_FILE_BYTES / 1024));
    }
    let text = String::from_utf8(buf).map_err(|_| format!("`{}` is not UTF-8 text", p.display()))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.trim().is_empty() {
        return Err(format!("`{}` is empty", p.display()));
    }
    Ok(super::Secret::new(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_bounded() {
        assert!(parse_duration("1ns").is_ok());
        assert!(parse_duration("18446744073709551615s").is_err());
        assert!(parse_duration("1000000000000d").is_err());
        assert!(parse_duration("367d").is_err());
        assert!(check_bounds(Duration::from_nanos(1), Duration::from_millis(100), Duration::from_secs(1)).is_err());
    }

    #[test]
    fn cron_has_six_fields() {
        assert!(parse_cron("*/15 * * * * *").is_ok());
        assert!(parse_cron("0 0 * * * * 2027").unwrap_err().contains("7 fields"));
        assert!(parse_cron("*/5 * * * *").unwrap_err().contains("5 fields"));
    }

    #[test]
    fn secret_files_checked() {
        let dir = tempfile::tempdir().unwrap();
        let f = |name: &str| Some(dir.path().join(name));
        std::fs::write(dir.path().join("ok"), "tok\n").unwrap();
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        std::fs::write(dir.path().join("big"), vec![b'a'; 70 * 1024]).unwrap();
        assert_eq!(read_secret(&None, &f("ok"), "t").unwrap().unwrap().expose(), "tok");
        assert!(read_secret(&None, &f("empty"), "t").unwrap_err().contains("empty"));
        assert!(read_secret(&None, &f("big"), "t").unwrap_err().contains("64 KiB"));
        let dev = Some(std::path::PathBuf::from("/dev/zero"));
        assert!(read_secret(&None, &dev, "t").unwrap_err().contains("not a regular file"));
        assert!(read_secret(&None, &Some(dir.path().to_path_buf()), "t").is_err());
    }
}
