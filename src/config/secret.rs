//! Secrets as a type: a value that can be used but never shown.
//!
//! `Debug` and `Display` print a fixed placeholder, so a secret that ends up
//! in a log line, an error, a metric label or a report shows as `<redacted>`
//! instead of its value. The value itself is reachable only through
//! [`Secret::expose`], which makes every use greppable.

use std::fmt;

/// A secret string (password, token, a URL with credentials).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value read from configuration, the environment or a file.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A string, or an integer taken as its text: a probe's or destination's
/// keys reach their owner as JSON values, where an unquoted `12345` is a
/// number, and a password of digits must still be a password.
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Secret, E> {
                Ok(Secret(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl schemars::JsonSchema for Secret {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Secret".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        super::schema::secret()
    }
}

/// The one rendering of a URL for anything that leaves the process (logs,
/// reports, API answers, alert descriptions, error messages): scheme, host,
/// port and path stay, so an operator can tell which endpoint failed; the
/// username and password, every query value (`?token=***`) but those of
/// [`SHOWN_QUERY_KEYS`], the fragment and a Slack webhook's path are
/// replaced with `***`, because each of them is where deployments put
/// tokens. Unparseable input is hidden whole.
pub fn redact_url(raw: &str) -> String {
    let Ok(mut u) = url::Url::parse(raw) else {
        return "<unparseable url>".to_string();
    };
    if !u.username().is_empty() {
        let _ = u.set_username(MASK);
    }
    if u.password().is_some() {
        let _ = u.set_password(Some(MASK));
    }
    if u.query().is_some() {
        let shown: Vec<String> = u
            .query_pairs()
            .map(|(k, v)| {
                if SHOWN_QUERY_KEYS.contains(&k.as_ref()) && is_plain(&v, 24) {
                    format!("{k}={v}")
                } else {
                    format!("{}={MASK}", mask_key(&k))
                }
            })
            .collect();
        u.set_query(Some(&shown.join("&")));
    }
    if u.fragment().is_some() {
        u.set_fragment(Some(MASK));
    }
    if is_slack_webhook(&u) {
        u.set_path("/services/***");
    }
    u.to_string()
}

/// What stands for a hidden part.
const MASK: &str = "***";

/// Query keys of connection URLs (libpq's, Redis's) whose values are
/// settings, never credentials: shown, because `sslmode=***` hides exactly
/// what an operator debugging a refused TLS connection needs to read.
/// Anything else in a query may be a token and stays hidden, and so does a
/// long or odd value under one of these keys, in case a token was put there
/// by mistake.
const SHOWN_QUERY_KEYS: &[&str] = &[
    "sslmode",
    "channel_binding",
    "connect_timeout",
    "target_session_attrs",
    "application_name",
    "hostaddr",
    "protocol",
];

/// Short and plain enough to be a name or a setting (`sslmode`, `require`,
/// `read-write`): at most `max` bytes of letters, digits, `_`, `-` and `.`.
fn is_plain(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// A query key is shown only when it looks like a name: a key that is
/// itself a token (`?abc123def456`) is hidden too.
fn mask_key(k: &str) -> &str {
    if is_plain(k, 32) { k } else { MASK }
}

/// A Slack incoming webhook carries its secret in the path
/// (`/services/T…/B…/secret`).
fn is_slack_webhook(u: &url::Url) -> bool {
    u.host_str().is_some_and(|h| h == "hooks.slack.com" || h.ends_with(".slack.com")) && u.path().starts_with("/services/")
}

/// Replaces every URL inside free text (an error from a library, a Redis
/// message) with its [`redact_url`] form, for messages this program did not
/// write itself.
pub fn redact_urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        // The scheme: letters, digits, `+`, `-`, `.` just before `://`.
        let start = rest[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |p| p + 1);
        // A URL ends at white space or a quote; a closing bracket is kept in
        // it, since cutting there could leave the rest of a query value shown.
        let end = rest[i..]
            .find(|c: char| c.is_whitespace() || matches!(c, '`' | '"' | '\'' | '<' | '>'))
            .map_or(rest.len(), |p| i + p);
        out.push_str(&rest[..start]);
        if start == i {
            out.push_str("://");
        } else {
            out.push_str(&redact_url(&rest[start..end]));
        }
        rest = &rest[if start == i { i + 3 } else { end }..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn url_userinfo_query_fragment_hidden() {
        let r = redact_url("http://tok-user:tok-pass@h:1/health?token=tok-q&x=tok-x#tok-f");
        assert!(!r.contains("tok-"), "{r}");
        assert_eq!(r, "http://***:***@h:1/health?token=***&x=***#***");
        let r = redact_url("http://h/p?tok-keyonly-0123456789abcdef0123456789abcdef");
        assert!(!r.contains("tok-"), "{r}");
    }

    #[test]
    fn connection_settings_shown_and_credentials_not() {
        let r = redact_url("postgres://u:tok-p@db:5432/relay?hostaddr=127.0.0.1&sslmode=verify-full&connect_timeout=10&password=tok-q");
        assert_eq!(
            r,
            "postgres://***:***@db:5432/relay?hostaddr=127.0.0.1&sslmode=verify-full&connect_timeout=10&password=***"
        );
        // An empty setting says nothing and is masked like any value.
        assert_eq!(redact_url("redis://c:1/0?protocol="), "redis://c:1/0?protocol=***");
        // A shown key with a value no setting has is hidden all the same.
        let r = redact_url("postgres://db/relay?application_name=tok-0123456789abcdef0123456789&sslmode=a%2Fb");
        assert_eq!(r, "postgres://db/relay?application_name=***&sslmode=***");
    }

    #[test]
    fn slack_webhook_path_hidden() {
        let r = redact_url("https://hooks.slack.com/services/T000/B000/tok-secret");
        assert_eq!(r, "https://hooks.slack.com/services/***");
    }

    #[test]
    fn urls_in_text() {
        let t = redact_urls_in("error sending request for url (http://h/x?token=tok-1): refused; see `redis://u:tok-2@c:1`");
        assert!(!t.contains("tok-"), "{t}");
        assert!(t.contains("http://h/x?token=***"), "{t}");
        let t = redact_urls_in("GET http://h/x?token=ab)tok-3 failed");
        assert!(!t.contains("tok-3"), "{t}");
        assert_eq!(redact_urls_in("no url here ://"), "no url here ://");
    }

    #[test]
    fn url_password_hidden() {
        let r = redact_url("redis://user:hunter2@cache:6379/1");
        assert!(!r.contains("hunter2"), "{r}");
        assert!(r.contains("cache:6379"));
    }
}
