//! Configuration machinery shared by every owner of a section: located
//! problems, `${VAR}` expansion, secrets, scalar value parsers, the probe
//! envelope and the mapping reader that lets each probe kind and each relay
//! destination own its keys.
//!
//! This module knows no probe kind, destination or rule: `settings` puts the
//! whole `lookout.yaml` together from each owner's section, and each owner
//! (`probe::<kind>`, `relay::destination::<type>`, `crosscheck`, `alert`)
//! validates its own. Nothing here touches the network; the only files read
//! are the configuration and its secret files (`*_file`). Every problem is
//! reported with the file, line and field it concerns, and validation
//! collects all of them rather than stopping at the first.

pub mod alerts;
pub mod entry;
pub mod envelope;
mod expand;
pub mod locate;
pub mod schema;
pub mod secret;
pub mod tls;
pub mod value;
pub mod web;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use envelope::{DEFAULT_EVERY, DEFAULT_TIMEOUT};
pub use expand::{ExpandError, expand};
pub use secret::{Secret, redact_url, redact_urls_in};
pub use value::parse_cron;

/// Default timeout of requests to Prometheus and Alertmanager.
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// `prometheus:` and `alertmanager:` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    /// Base URL (http or https).
    #[serde(deserialize_with = "value::http_url")]
    #[schemars(with = "String")]
    pub url: url::Url,
    /// Per-request timeout (default 10 s).
    #[serde(default, deserialize_with = "value::opt_duration")]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Duration>,
}

impl RawEndpoint {
    /// The endpoint with its defaults filled in.
    pub fn build(self) -> Endpoint {
        Endpoint {
            url: self.url,
            timeout: self.timeout.unwrap_or(DEFAULT_PEER_TIMEOUT),
        }
    }
}

/// An HTTP endpoint of a peer (Prometheus, Alertmanager).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Base URL.
    pub url: url::Url,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// Where a probe was defined, for messages that point back at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file, or `<embedded default>`.
    pub file: PathBuf,
    /// Line of the probe's `name`.
    pub line: u64,
}

/// When a probe runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// A fixed period; run on a tokio interval that never overlaps itself.
    Every(Duration),
    /// A six-field cron expression (seconds first), evaluated in `timezone`
    /// (UTC when not given).
    Cron {
        /// The expression as written.
        expr: String,
        /// Time zone the expression is evaluated in.
        timezone: Option<chrono_tz::Tz>,
    },
}

impl Schedule {
    /// The time between two runs: the period, or the gap between a cron
    /// expression's next two firings (an irregular expression's gaps vary;
    /// the next one stands for them). `None` for a cron expression that
    /// does not parse or never fires.
    pub fn period(&self) -> Option<Duration> {
        match self {
            Schedule::Every(d) => Some(*d),
            Schedule::Cron { expr, .. } => {
                let c = parse_cron(expr).ok()?;
                let now = chrono::Utc::now();
                let a = c.find_next_occurrence(&now, false).ok()?;
                let b = c.find_next_occurrence(&a, false).ok()?;
                (b - a).to_std().ok()
            }
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Every(d) => write!(f, "every {}", humantime::format_duration(*d)),
            Schedule::Cron { expr, timezone } => match timezone {
                Some(tz) => write!(f, "cron `{expr}` ({tz})"),
                None => write!(f, "cron `{expr}` (UTC)"),
            },
        }
    }
}

/// A configuration problem, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// 1-based column, when known.
    pub column: Option<u64>,
    /// The field concerned, when known.
    pub field: Option<String>,
    /// What is wrong, and where possible what would be right.
    pub message: String,
}

impl Problem {
    /// A problem with a field of `file`; the line is found afterwards from
    /// the field's path in the text (see `locate`).
    pub fn at_field(file: &Path, field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            file: file.to_path_buf(),
            line: None,
            column: None,
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError(pub Vec<Problem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "invalid configuration ({n} problem{}):", if n == 1 { "" } else { "s" })?;
        for p in &self.0 {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// A single problem without a line.
    pub fn one(file: &Path, message: impl Into<String>) -> Self {
        ConfigError(vec![Problem {
            file: file.to_path_buf(),
            line: None,
            column: None,
            field: None,
            message: message.into(),
        }])
    }
}

/// The environment, as a function, so tests can give their own.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Parses YAML text (after `${VAR}` expansion) into `T`, turning a parse
/// error into a located [`Problem`] with a suggestion for misspelt keys.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(file: &Path, text: &str, env: Env<'_>) -> Result<T, ConfigError> {
    let expanded = expand(text, env).map_err(|e| {
        let line = match &e {
            ExpandError::Unset { line, .. } | ExpandError::Unterminated { line } | ExpandError::BadName { line, .. } => *line as u64,
        };
        let msg = e.to_string();
        let msg = msg.split_once(": ").map(|(_, m)| m.to_string()).unwrap_or(msg);
        ConfigError(vec![Problem {
            file: file.to_path_buf(),
            line: Some(line),
            column: None,
            field: None,
            message: msg,
        }])
    })?;
    // An empty file is an empty mapping, not an error.
    let src = if expanded.trim().is_empty() { "{}" } else { expanded.as_str() };
    serde_saphyr::from_str::<T>(src).map_err(|e| ConfigError(vec![problem_from_yaml(file, src, &e)]))
}

fn problem_from_yaml(file: &Path, src: &str, e: &serde_saphyr::Error) -> Problem {
    let loc = e.location();
    let line = loc.map(|l| l.line());
    let column = loc.map(|l| l.column());
    let inner = e.without_snippet();
    let (field, message) = match inner {
        serde_saphyr::Error::SerdeUnknownField { field, expected, .. } => {
            let hint = closest(field, expected)
                .map(|s| format!(" — did you mean `{s}`?"))
                .unwrap_or_default();
            (
                Some(field.clone()),
                format!("unknown key{hint} (valid keys here: {})", expected.join(", ")),
            )
        }
        serde_saphyr::Error::SerdeUnknownVariant { variant, expected, .. } => {
            let hint = closest(variant, expected)
                .map(|s| format!(" — did you mean `{s}`?"))
                .unwrap_or_default();
            (
                key_at(src, line, column),
                format!("unknown value `{variant}`{hint} (expected one of: {})", expected.join(", ")),
            )
        }
        serde_saphyr::Error::SerdeMissingField { field, .. } => (Some((*field).to_string()), "missing required field".to_string()),
        other => {
            let options = serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off };
            let text = other.render_with_options(options);
            // The renderer appends " at line L, column C"; the Problem says it already.
            let text = match text.rfind(" at line ") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            (key_at(src, line, column), text)
        }
    };
    Problem {
        file: file.to_path_buf(),
        line,
        column,
        field,
        message,
    }
}

/// The mapping key whose value is at `line` and `column`: the last `key:`
/// before the column on that line (flow style, `{a: 1, b: x}`), or the
/// line's own key (block style).
fn key_at(src: &str, line: Option<u64>, column: Option<u64>) -> Option<String> {
    let text = src.lines().nth(line?.checked_sub(1)? as usize)?;
    let upto = column
        .and_then(|c| text.char_indices().nth(c.saturating_sub(1) as usize).map(|(i, _)| i))
        .unwrap_or(text.len());
    let is_key = |k: &str| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let before = &text[..upto];
    // The last `key:` that starts after a separator, before the value.
    let found = before
        .rmatch_indices(':')
        .map(|(i, _)| &before[..i])
        .filter_map(|head| {
            let start = head.rfind(['{', ',', '[', ' ', '-']).map_or(0, |j| j + 1);
            let k = head[start..].trim().trim_matches('"').trim_matches('\'');
            is_key(k).then(|| k.to_string())
        })
        .next();
    found.or_else(|| {
        let t = text.trim_start().trim_start_matches("- ").trim_start();
        let (key, _) = t.split_once(':')?;
        let key = key.trim().trim_matches('"').trim_matches('\'');
        is_key(key).then(|| key.to_string())
    })
}

/// The expected name closest to a misspelt one, if any is close enough.
pub fn closest<'a>(got: &str, expected: &[&'a str]) -> Option<&'a str> {
    expected
        .iter()
        .map(|e| (strsim::jaro_winkler(got, e), *e))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, e)| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_style_errors_name_their_key() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct S {
            a: Option<u32>,
            server: Option<std::collections::BTreeMap<String, bool>>,
        }
        let e = parse_yaml::<S>(Path::new("t.yaml"), "a: 1\nserver: {x: true, spread: maybe}\n", &|_| None).unwrap_err();
        assert_eq!(e.0[0].line, Some(2), "{e}");
        assert_eq!(e.0[0].field.as_deref(), Some("spread"), "{e}");
    }

    #[test]
    fn unset_variable_is_located() {
        let e = parse_yaml::<serde::de::IgnoredAny>(Path::new("t.yaml"), "a: 1\nserver:\n  listen: ${LISTEN}\n", &|_| None).unwrap_err();
        assert_eq!(e.0[0].line, Some(3));
    }
}
