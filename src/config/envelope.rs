//! The probe envelope: the keys every probe has whatever its kind (`name`,
//! `kind`, `every` or `schedule`, `timezone`, `timeout`, `labels`), and
//! their validation. The kind's own keys are read by its module in
//! `probe/`; this module only checks that `kind` names one of them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::entry::{Entry, Scope};
use super::value::{check_bounds, opt_cron, opt_duration, opt_tz};
use super::{Origin, Schedule, closest};

/// Default probe timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default probe period when neither `every` nor `schedule` is given.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(15);
/// Shortest `every`: faster probing only loads the target.
pub const MIN_EVERY: Duration = Duration::from_millis(100);
/// Longest `every`: a probe that runs less than weekly monitors nothing.
pub const MAX_EVERY: Duration = Duration::from_secs(7 * 24 * 3600);
/// Shortest `timeout`: below it no connection completes.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(10);
/// Longest `timeout`: a run that long holds a slot for nothing.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// The keys every probe has, as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEnvelope {
    /// Unique name: the `probe` label of every metric. Letters, digits, `_`,
    /// `-` and `.`.
    pub name: String,
    /// What the probe reads: `http_health`, `redis` or `prometheus`
    /// (each kind's keys are in its own section of the reference).
    pub kind: String,
    /// A fixed period (`15s`, `1m`); the default when neither `every` nor
    /// `schedule` is given is 15 s. Between 100ms and 7d.
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub every: Option<Duration>,
    /// A six-field cron expression, seconds first (`*/15 * * * * *`);
    /// instead of `every`.
    #[serde(default, deserialize_with = "opt_cron")]
    #[schemars(with = "Option<String>")]
    pub schedule: Option<String>,
    /// IANA time zone a cron `schedule` is evaluated in (default UTC).
    #[serde(default, deserialize_with = "opt_tz")]
    #[schemars(with = "Option<String>")]
    pub timezone: Option<chrono_tz::Tz>,
    /// Upper bound of one run, connection included (default 5 s). Between
    /// 10ms and 1h.
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Duration>,
    /// Extra labels on every metric and alert of the probe.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The envelope after validation.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Unique name.
    pub name: String,
    /// The kind, one of those given to [`read`].
    pub kind: String,
    /// When it runs.
    pub schedule: Schedule,
    /// Upper bound of one run.
    pub timeout: Duration,
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
    /// Where it was defined.
    pub origin: Origin,
}

/// Takes and validates the envelope's keys of one probe entry. `kinds` are
/// the kinds the probe registry knows.
pub fn read(entry: &mut Entry, file: &Path, scope: &mut Scope<'_>, kinds: &[&str]) -> Option<Envelope> {
    let before = scope.count();
    let raw: RawEnvelope = entry.take(scope)?;
    let line = scope.line_of("name");
    if raw.name.is_empty()
        || !raw
            .name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'))
    {
        scope.error(
            "name",
            format!("invalid probe name `{}`: use letters, digits, `_`, `-` and `.`", raw.name),
        );
    }
    if !kinds.contains(&raw.kind.as_str()) {
        let hint = closest(&raw.kind, kinds)
            .map(|s| format!(" — did you mean `{s}`?"))
            .unwrap_or_default();
        scope.error(
            "kind",
            format!("unknown value `{}`{hint} (expected one of: {})", raw.kind, kinds.join(", ")),
        );
    }
    let schedule = match (raw.every, &raw.schedule) {
        (Some(_), Some(_)) => {
            scope.error("schedule", "give either `every` or `schedule`, not both");
            Schedule::Every(DEFAULT_EVERY)
        }
        (Some(d), None) => {
            if let Err(e) = check_bounds(d, MIN_EVERY, MAX_EVERY) {
                scope.error("every", e);
            }
            if raw.timezone.is_some() {
                scope.error("timezone", "only applies to a cron `schedule`");
            }
            Schedule::Every(d)
        }
        (None, Some(expr)) => Schedule::Cron {
            expr: expr.clone(),
            timezone: raw.timezone,
        },
        (None, None) => Schedule::Every(DEFAULT_EVERY),
    };
    // A timeout longer than the period is not an error: the run is bounded by
    // the timeout and the ticks it overlaps are skipped (and counted).
    let timeout = raw.timeout.unwrap_or(DEFAULT_TIMEOUT);
    if let Err(e) = check_bounds(timeout, MIN_TIMEOUT, MAX_TIMEOUT) {
        scope.error("timeout", e);
    }
    for key in raw.labels.keys() {
        let ok = key.chars().next().is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
            && key.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
            && !key.starts_with("__");
        if !ok || matches!(key.as_str(), "probe" | "kind" | "metric") {
            scope.error("labels", format!("invalid or reserved label name `{key}`"));
        }
    }
    if scope.count() > before {
        return None;
    }
    Some(Envelope {
        name: raw.name,
        kind: raw.kind,
        schedule,
        timeout,
        labels: raw.labels,
        origin: Origin {
            file: file.to_path_buf(),
            line,
        },
    })
}
