//! `alerts:`: lookout's synthetic alert rules (built in, tunable), their
//! hysteresis, reminders, maintenance windows and the connectivity check.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor, value::MapAccessDeserializer};
use serde::{Deserialize, Deserializer, Serialize};

use super::value::{opt_duration, opt_duration_or_zero, parse_cron};

/// `alerts:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// `false` turns synthetic alerts off (default on).
    pub enabled: Option<bool>,
    /// How often the rules are evaluated (default 5s).
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub evaluation_interval: Option<Duration>,
    /// How often a firing alert is re-sent to Alertmanager (Prometheus's
    /// `--rules.alert.resend-delay`; default 1m).
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub resend_delay: Option<Duration>,
    /// `host:port` lookout must reach to trust its own view; while it cannot,
    /// no alert is sent (lookout lost the network, not Redis).
    pub connectivity_target: Option<String>,
    /// Windows in which no alert is sent.
    #[serde(default)]
    pub maintenance: Vec<RawWindow>,
    /// Built-in rules by name, each tunable.
    #[serde(default, deserialize_with = "rules_by_name")]
    pub rules: BTreeMap<String, RawRule>,
}

/// One maintenance window as written: `start` and `end`, or a cron
/// `schedule` and a `duration`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    /// RFC 3339 start of a one-off window.
    pub start: Option<String>,
    /// RFC 3339 end of a one-off window.
    pub end: Option<String>,
    /// Six-field cron expression starting a recurring window.
    pub schedule: Option<String>,
    /// Length of a recurring window.
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub duration: Option<Duration>,
    /// IANA time zone of `schedule` (default UTC).
    pub timezone: Option<String>,
}

/// A built-in rule's settings as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Turn the rule off (`false`) or on.
    pub enabled: Option<bool>,
    /// How long the condition must hold before firing (Prometheus `for:`; `0s` fires at once).
    #[serde(default, rename = "for", deserialize_with = "opt_duration_or_zero")]
    #[schemars(with = "Option<String>")]
    pub for_: Option<Duration>,
    /// Consecutive failing checks before the alert is pending.
    pub fail_after: Option<u32>,
    /// Consecutive passing checks before it resolves.
    pub resolve_after: Option<u32>,
    /// The `severity` label.
    pub severity: Option<String>,
    /// The rule's threshold (ratio or seconds, per rule).
    pub threshold: Option<f64>,
    /// `RedisHighMemoryUsage`: fragmentation ratio that also fires it.
    pub fragmentation_threshold: Option<f64>,
    /// `RedisHighMemoryUsage`: wasted bytes below which fragmentation is ignored.
    pub min_wasted_bytes: Option<f64>,
    /// Re-notify a firing alert through the relay this often (default 4h).
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub reminder: Option<Duration>,
    /// Extra labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Extra or replacing annotations (templates).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// `deserialize_with` for `alerts.rules`: each rule's settings, refusing
/// where it stands a key that only other rules use, so that the error
/// carries its line and names the rule and the key. An unknown rule name
/// is read as any rule and left to [`build`], which suggests the closest.
fn rules_by_name<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, RawRule>, D::Error> {
    struct Rules;
    impl<'de> Visitor<'de> for Rules {
        type Value = BTreeMap<String, RawRule>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping from rule name to its settings")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut rules = BTreeMap::new();
            while let Some(name) = map.next_key::<String>()? {
                let rule = match RuleName::from_name(&name) {
                    Some(rule) => map.next_value_seed(Settings(rule))?,
                    None => map.next_value::<RawRule>()?,
                };
                rules.insert(name, rule);
            }
            Ok(rules)
        }
    }
    d.deserialize_map(Rules)
}

/// The settings of the built-in rule it holds.
struct Settings(RuleName);

impl<'de> DeserializeSeed<'de> for Settings {
    type Value = RawRule;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawRule, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Settings {
    type Value = RawRule;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the settings of `{}`", self.0)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawRule, A::Error> {
        RawRule::deserialize(MapAccessDeserializer::new(OwnKeys {
            rule: self.0,
            map,
            refused: None,
        }))
    }
}

/// A rule's settings mapping that refuses, as it reads them, the keys of
/// other rules. The error is raised at the key's value, so that it carries
/// that line.
struct OwnKeys<A> {
    rule: RuleName,
    map: A,
    /// A key just read that this rule does not use.
    refused: Option<String>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for OwnKeys<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        let Some(key) = self.map.next_key::<String>()? else {
            return Ok(None);
        };
        let others = RuleName::ALL.iter().any(|r| r.own_keys().contains(&key.as_str()));
        if others && !self.rule.own_keys().contains(&key.as_str()) {
            self.refused = Some(key.clone());
        }
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        match self.refused.take() {
            None => self.map.next_value_seed(seed),
            Some(key) => {
                let rule = self.rule;
                let valid: Vec<&str> = COMMON_KEYS.iter().chain(rule.own_keys()).copied().collect();
                let message = format!("`{rule}` does not use `{key}` (its keys: {})", valid.join(", "));
                match self.map.next_value_seed(Refuse(message)) {
                    Ok(never) => match never {},
                    Err(e) => Err(e),
                }
            }
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// Reads a value only to refuse it with its message.
struct Refuse(String);

impl<'de> DeserializeSeed<'de> for Refuse {
    type Value = std::convert::Infallible;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        de::IgnoredAny::deserialize(d)?;
        Err(de::Error::custom(self.0))
    }
}

/// The keys every rule takes.
const COMMON_KEYS: [&str; 8] = [
    "enabled",
    "for",
    "fail_after",
    "resolve_after",
    "severity",
    "reminder",
    "labels",
    "annotations",
];

/// The built-in rules. Each is its own variant (not a string) so that the
/// engine's `match` on what a rule evaluates is checked for exhaustiveness,
/// and a misspelt name cannot get past configuration.
///
/// Serialised as the rule's `alertname` (the variant name verbatim), which
/// is also how `alerts.json` in `data_dir` has always stored it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RuleName {
    /// An HTTP health endpoint does not answer, or answers an error.
    HealthEndpointDown,
    /// An HTTP health endpoint reports a slow Redis round trip (or times out).
    HealthEndpointSlow,
    /// lookout cannot reach Redis itself.
    RedisUnreachable,
    /// `connected_clients` near `maxclients`.
    RedisConnectionExhaustion,
    /// Memory near `maxmemory`, or fragmentation that wastes real memory.
    RedisHighMemoryUsage,
    /// The cross-check found sources disagreeing with the reference.
    CrossCheckMismatch,
    /// Prometheus lacks fresh data about Redis.
    MonitoringDataGap,
    /// lookout cannot push to Alertmanager (its alerts then go through the relay).
    AlertmanagerUnreachable,
}

impl RuleName {
    /// Every built-in rule, in the order they are evaluated and listed.
    pub const ALL: [RuleName; 8] = [
        RuleName::HealthEndpointDown,
        RuleName::HealthEndpointSlow,
        RuleName::RedisUnreachable,
        RuleName::RedisConnectionExhaustion,
        RuleName::RedisHighMemoryUsage,
        RuleName::CrossCheckMismatch,
        RuleName::MonitoringDataGap,
        RuleName::AlertmanagerUnreachable,
    ];

    /// The `alertname` label, as written in `alerts.rules`.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleName::HealthEndpointDown => "HealthEndpointDown",
            RuleName::HealthEndpointSlow => "HealthEndpointSlow",
            RuleName::RedisUnreachable => "RedisUnreachable",
            RuleName::RedisConnectionExhaustion => "RedisConnectionExhaustion",
            RuleName::RedisHighMemoryUsage => "RedisHighMemoryUsage",
            RuleName::CrossCheckMismatch => "CrossCheckMismatch",
            RuleName::MonitoringDataGap => "MonitoringDataGap",
            RuleName::AlertmanagerUnreachable => "AlertmanagerUnreachable",
        }
    }

    /// The keys this rule uses beyond [`COMMON_KEYS`]: a key that another
    /// rule uses means nothing here, and is refused rather than ignored.
    pub fn own_keys(self) -> &'static [&'static str] {
        match self {
            RuleName::HealthEndpointSlow | RuleName::RedisConnectionExhaustion => &["threshold"],
            RuleName::RedisHighMemoryUsage => &["threshold", "fragmentation_threshold", "min_wasted_bytes"],
            RuleName::HealthEndpointDown
            | RuleName::RedisUnreachable
            | RuleName::CrossCheckMismatch
            | RuleName::MonitoringDataGap
            | RuleName::AlertmanagerUnreachable => &[],
        }
    }

    /// The rule called `name`, if it is built in.
    pub fn from_name(name: &str) -> Option<RuleName> {
        RuleName::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl std::fmt::Display for RuleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Which built-in rule (its `alertname`).
    pub name: RuleName,
    /// How long the condition must hold before firing (Prometheus `for:`).
    pub for_: Duration,
    /// Consecutive failing checks before pending (Gatus's failure threshold).
    pub fail_after: u32,
    /// Consecutive passing checks before resolving.
    pub resolve_after: u32,
    /// `severity` label.
    pub severity: String,
    /// The rule's threshold (its meaning depends on the rule).
    pub threshold: f64,
    /// RedisHighMemoryUsage: fragmentation ratio threshold.
    pub fragmentation_threshold: f64,
    /// RedisHighMemoryUsage: fragmentation only counts above this many wasted bytes.
    pub min_wasted_bytes: f64,
    /// Re-notify while firing this often (relay path; Alertmanager has its own repeat_interval).
    pub reminder: Duration,
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
    /// Annotation templates (minijinja: `value`, `probe`, `threshold`, `labels`).
    pub annotations: BTreeMap<String, String>,
}

/// A maintenance window.
#[derive(Debug, Clone, PartialEq)]
pub enum Window {
    /// From `start` to `end`, Unix seconds.
    Once {
        /// Start.
        start: f64,
        /// End.
        end: f64,
    },
    /// Starting at each cron occurrence, for `duration`.
    Recurring {
        /// Six-field cron expression.
        schedule: String,
        /// Length of each window.
        duration: Duration,
        /// Time zone of the schedule.
        timezone: chrono_tz::Tz,
    },
}

impl Window {
    /// Whether `t` (Unix seconds) is inside the window.
    pub fn contains(&self, t: f64) -> bool {
        match self {
            Window::Once { start, end } => t >= *start && t < *end,
            Window::Recurring {
                schedule,
                duration,
                timezone,
            } => {
                let Ok(cron) = parse_cron(schedule) else { return false };
                let Some(now) = chrono::DateTime::from_timestamp(t as i64, 0) else {
                    return false;
                };
                let now = now.with_timezone(timezone);
                // The last occurrence before now (or now), if the window it opened is still open.
                cron.find_previous_occurrence(&now, true)
                    .map(|prev| (now.timestamp() - prev.timestamp()) as f64 <= duration.as_secs_f64())
                    .unwrap_or(false)
            }
        }
    }
}

/// `alerts:` after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsConfig {
    /// How often rules are evaluated.
    pub evaluation_interval: Duration,
    /// Resend firing alerts to Alertmanager this often (Prometheus: 1m).
    pub resend_delay: Duration,
    /// `host:port` lookout must reach before it alerts at all.
    pub connectivity_target: Option<String>,
    /// Maintenance windows: no synthetic alert goes out inside one.
    pub maintenance: Vec<Window>,
    /// Enabled rules.
    pub rules: Vec<Rule>,
}

fn default_rule(name: RuleName) -> Rule {
    let r = |for_s: u64, sev: &str, threshold: f64, summary: &str, description: &str| Rule {
        name,
        for_: Duration::from_secs(for_s),
        fail_after: 1,
        resolve_after: 1,
        severity: sev.to_string(),
        threshold,
        fragmentation_threshold: 1.8,
        min_wasted_bytes: 100.0 * 1024.0 * 1024.0,
        reminder: Duration::from_secs(4 * 3600),
        labels: BTreeMap::new(),
        annotations: [
            ("summary".to_string(), summary.to_string()),
            ("description".to_string(), description.to_string()),
        ]
        .into(),
    };
    match name {
        RuleName::HealthEndpointDown => Rule {
            fail_after: 2,
            resolve_after: 2,
            ..r(
                60,
                "critical",
                0.0,
                "Health endpoint {{ probe }} is down",
                "{{ probe }} fails: {{ error }}",
            )
        },
        RuleName::HealthEndpointSlow => r(
            300,
            "warning",
            0.25,
            "Health endpoint {{ probe }} is slow",
            "Redis round trip seen by {{ probe }} is {{ value }} s (threshold {{ threshold }} s)",
        ),
        RuleName::RedisUnreachable => Rule {
            fail_after: 2,
            ..r(
                60,
                "critical",
                0.0,
                "Redis is unreachable from lookout ({{ probe }})",
                "{{ error }}",
            )
        },
        RuleName::RedisConnectionExhaustion => r(
            300,
            "critical",
            0.85,
            "Redis connections near maxclients ({{ probe }})",
            "connected_clients is {{ (value * 100) | round(1) }}% of maxclients (threshold {{ (threshold * 100) | round }}%)",
        ),
        RuleName::RedisHighMemoryUsage => r(
            600,
            "critical",
            0.9,
            "Redis memory usage high ({{ probe }})",
            "{{ cause }}: {{ value }} (threshold {{ threshold }})",
        ),
        RuleName::CrossCheckMismatch => r(
            300,
            "warning",
            0.0,
            "Sources disagree about Redis ({{ probe }})",
            "{{ value | int }} {{ 'metric disagrees' if value == 1 else 'metrics disagree' }} with the reference: {{ error }}",
        ),
        RuleName::MonitoringDataGap => r(120, "warning", 0.0, "Monitoring data gap ({{ probe }})", "{{ error }}"),
        RuleName::AlertmanagerUnreachable => r(
            60,
            "critical",
            0.0,
            "Alertmanager is unreachable",
            "lookout cannot push alerts to Alertmanager: {{ error }}; they go to its own relay",
        ),
    }
}

/// Default `alerts.evaluation_interval`.
pub const DEFAULT_EVALUATION_INTERVAL: Duration = Duration::from_secs(5);

/// Shortest `alerts.evaluation_interval`: the rules read the probes' latest
/// readings, and no probe runs more often than its shortest `every`.
pub const MIN_EVALUATION_INTERVAL: Duration = super::envelope::MIN_EVERY;

/// Validates `alerts:`; problems are `(field, message)`.
pub(crate) fn build(raw: Option<RawAlerts>) -> Result<Option<AlertsConfig>, Vec<(String, String)>> {
    let raw = raw.unwrap_or_default();
    if raw.enabled == Some(false) {
        return Ok(None);
    }
    let mut errs = Vec::new();
    let known = RuleName::ALL.map(RuleName::as_str);
    for name in raw.rules.keys() {
        if RuleName::from_name(name).is_none() {
            let hint = super::closest(name, &known)
                .map(|s| format!(" — did you mean `{s}`?"))
                .unwrap_or_default();
            errs.push((
                format!("alerts.rules.{name}"),
                format!("unknown rule{hint} (built in: {})", known.join(", ")),
            ));
        }
    }
    let mut rules = Vec::new();
    for name in RuleName::ALL {
        let mut r = default_rule(name);
        if let Some(o) = raw.rules.get(name.as_str()) {
            if o.enabled == Some(false) {
                continue;
            }
            r.for_ = o.for_.unwrap_or(r.for_);
            r.fail_after = o.fail_after.unwrap_or(r.fail_after).max(1);
            r.resolve_after = o.resolve_after.unwrap_or(r.resolve_after).max(1);
            r.severity = o.severity.clone().unwrap_or(r.severity);
            r.threshold = o.threshold.unwrap_or(r.threshold);
            r.fragmentation_threshold = o.fragmentation_threshold.unwrap_or(r.fragmentation_threshold);
            r.min_wasted_bytes = o.min_wasted_bytes.unwrap_or(r.min_wasted_bytes);
            r.reminder = o.reminder.unwrap_or(r.reminder);
            r.labels.extend(o.labels.clone());
            r.annotations.extend(o.annotations.clone());
            for (k, src) in &o.annotations {
                if let Err(e) = minijinja::Environment::new().template_from_str(src) {
                    errs.push((
                        format!("alerts.rules.{name}.annotations.{k}"),
                        format!("template does not compile: {e}"),
                    ));
                }
            }
        }
        rules.push(r);
    }
    let mut maintenance = Vec::new();
    for (i, w) in raw.maintenance.iter().enumerate() {
        let field = format!("alerts.maintenance[{i}]");
        let parse = |s: &Option<String>, what: &str| -> Result<f64, String> {
            let s = s.as_deref().ok_or_else(|| format!("`{what}` is required"))?;
            humantime::parse_rfc3339_weak(s)
                .map(|t| t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0))
                .map_err(|e| format!("`{what}`: {e} (RFC 3339, e.g. 2026-12-01T02:00:00Z)"))
        };
        match (&w.schedule, &w.start) {
            (Some(s), None) => {
                if let Err(e) = parse_cron(s) {
                    errs.push((field.clone(), e));
                }
                let tz = match w.timezone.as_deref().unwrap_or("UTC").parse::<chrono_tz::Tz>() {
                    Ok(tz) => tz,
                    Err(_) => {
                        errs.push((field.clone(), "unknown `timezone`".into()));
                        chrono_tz::UTC
                    }
                };
                match w.duration {
                    Some(d) => maintenance.push(Window::Recurring {
                        schedule: s.clone(),
                        duration: d,
                        timezone: tz,
                    }),
                    None => errs.push((field, "a recurring window needs `duration`".into())),
                }
            }
            (None, Some(_)) => match (parse(&w.start, "start"), parse(&w.end, "end")) {
                (Ok(start), Ok(end)) if end > start => maintenance.push(Window::Once { start, end }),
                (Ok(_), Ok(_)) => errs.push((field, "`end` must be after `start`".into())),
                (Err(e), _) | (_, Err(e)) => errs.push((field, e)),
            },
            _ => errs.push((
                field,
                "give `start` and `end` (one-off) or `schedule` and `duration` (recurring)".into(),
            )),
        }
    }
    let evaluation_interval = raw.evaluation_interval.unwrap_or(DEFAULT_EVALUATION_INTERVAL);
    if evaluation_interval < MIN_EVALUATION_INTERVAL {
        errs.push((
            "alerts.evaluation_interval".into(),
            format!(
                "{} is shorter than {}: the rules read the probes' latest readings, and no probe runs more often than that",
                humantime::format_duration(evaluation_interval),
                humantime::format_duration(MIN_EVALUATION_INTERVAL)
            ),
        ));
    }
    // What happens at an evaluation cannot happen more often than they run:
    // a shorter value would silently mean the interval.
    let at_least_one_evaluation = |errs: &mut Vec<(String, String)>, field: String, d: Duration, why: &str| {
        if d < evaluation_interval {
            errs.push((
                field,
                format!(
                    "{} is shorter than `alerts.evaluation_interval` ({}): {why}",
                    humantime::format_duration(d),
                    humantime::format_duration(evaluation_interval)
                ),
            ));
        }
    };
    if let Some(d) = raw.resend_delay {
        at_least_one_evaluation(
            &mut errs,
            "alerts.resend_delay".into(),
            d,
            "firing alerts are re-sent from an evaluation",
        );
    }
    for (i, w) in raw.maintenance.iter().enumerate() {
        if let Some(d) = w.duration {
            at_least_one_evaluation(
                &mut errs,
                format!("alerts.maintenance[{i}].duration"),
                d,
                "a window that short can fall between two evaluations and silence nothing",
            );
        }
    }
    for (name, o) in &raw.rules {
        if let Some(d) = o.reminder {
            at_least_one_evaluation(
                &mut errs,
                format!("alerts.rules.{name}.reminder"),
                d,
                "reminders are sent from an evaluation",
            );
        }
    }
    if let Some(t) = &raw.connectivity_target
        && t.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none()
    {
        errs.push(("alerts.connectivity_target".into(), format!("`{t}` is not host:port")));
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Some(AlertsConfig {
        evaluation_interval,
        resend_delay: raw.resend_delay.unwrap_or(Duration::from_secs(60)),
        connectivity_target: raw.connectivity_target,
        maintenance,
        rules,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maintenance_windows() {
        let once = Window::Once { start: 100.0, end: 200.0 };
        assert!(once.contains(150.0) && !once.contains(200.0) && !once.contains(99.0));
        // Every day at 02:00 UTC for 2 hours.
        let daily = Window::Recurring {
            schedule: "0 0 2 * * *".into(),
            duration: Duration::from_secs(7200),
            timezone: chrono_tz::UTC,
        };
        let day = 1_764_028_800.0; // 2025-11-25T00:00:00Z
        assert!(!daily.contains(day + 3600.0));
        assert!(daily.contains(day + 2.0 * 3600.0 + 60.0));
        assert!(!daily.contains(day + 4.0 * 3600.0 + 60.0));
    }

    #[test]
    fn rule_names_are_their_alertnames_in_every_form() {
        for rule in RuleName::ALL {
            let name = rule.as_str();
            assert_eq!(RuleName::from_name(name), Some(rule));
            assert_eq!(rule.to_string(), name);
            // The persisted form (alerts.json) is the same string.
            assert_eq!(serde_json::to_string(&rule).ok(), Some(format!("\"{name}\"")));
            assert_eq!(serde_json::from_str::<RuleName>(&format!("\"{name}\"")).ok(), Some(rule));
        }
        assert_eq!(RuleName::from_name("healthendpointdown"), None);
        let all = build(None).ok().flatten().map(|c| c.rules).unwrap_or_default();
        assert_eq!(
            all.iter().map(|r| r.name).collect::<Vec<_>>(),
            RuleName::ALL,
            "every rule on by default"
        );
    }

    /// `alerts.rules.<rule>` with `yaml` (a flow mapping) as its settings,
    /// read and built; a reading error as its message.
    fn with_rule(rule: &str, yaml: &str) -> Result<Option<AlertsConfig>, String> {
        let raw: RawAlerts = serde_saphyr::from_str(&format!("rules:\n  {rule}: {yaml}\n")).map_err(|e| e.to_string())?;
        build(Some(raw)).map_err(|errs| format!("{errs:?}"))
    }

    #[test]
    fn durations_below_one_evaluation_are_refused_by_field() {
        let build_yaml = |yaml: &str| -> Result<Option<AlertsConfig>, Vec<(String, String)>> {
            build(Some(serde_saphyr::from_str::<RawAlerts>(yaml).expect("valid YAML")))
        };
        let fields = |yaml: &str| -> Vec<String> {
            build_yaml(yaml)
                .expect_err(yaml)
                .into_iter()
                .map(|(f, m)| {
                    assert!(m.contains("is shorter than"), "{f}: {m}");
                    f
                })
                .collect()
        };
        assert_eq!(fields("evaluation_interval: 10ms\n"), ["alerts.evaluation_interval"]);
        assert_eq!(
            fields(
                "evaluation_interval: 30s\nresend_delay: 10s\nmaintenance:\n  - {schedule: '0 0 2 * * *', duration: 20s}\nrules:\n  HealthEndpointDown: {reminder: 29s}\n"
            ),
            [
                "alerts.resend_delay",
                "alerts.maintenance[0].duration",
                "alerts.rules.HealthEndpointDown.reminder"
            ]
        );
        // The defaults (5 s) against the same values: all fine; `for: 0s` too.
        assert!(
            build_yaml(
                "resend_delay: 10s\nmaintenance:\n  - {schedule: '0 0 2 * * *', duration: 20s}\nrules:\n  HealthEndpointDown: {reminder: 29s, for: 0s}\n"
            )
            .is_ok()
        );
        assert!(build_yaml("evaluation_interval: 100ms\nresend_delay: 100ms\n").is_ok());
    }

    #[test]
    fn each_rule_takes_only_the_keys_it_uses() {
        // (key, value, the rules that use it): every other rule refuses it.
        let specific = [
            (
                "threshold",
                "0.5",
                &[
                    RuleName::HealthEndpointSlow,
                    RuleName::RedisConnectionExhaustion,
                    RuleName::RedisHighMemoryUsage,
                ][..],
            ),
            ("fragmentation_threshold", "2.0", &[RuleName::RedisHighMemoryUsage][..]),
            ("min_wasted_bytes", "1000", &[RuleName::RedisHighMemoryUsage][..]),
        ];
        for rule in RuleName::ALL {
            for (key, value, users) in specific {
                let got = with_rule(rule.as_str(), &format!("{{for: 1m, {key}: {value}}}"));
                if users.contains(&rule) {
                    assert!(got.is_ok(), "{rule} uses `{key}`: {got:?}");
                } else {
                    let err = got.expect_err("a key the rule does not use is refused");
                    assert!(err.contains(&format!("`{rule}` does not use `{key}`")), "{err}");
                }
            }
            // The keys every rule takes.
            let common = "{enabled: true, for: 1s, fail_after: 2, resolve_after: 2, severity: page, reminder: 1h, labels: {team: x}, annotations: {summary: s}}";
            assert!(with_rule(rule.as_str(), common).is_ok(), "{rule} takes the common keys");
        }
        // A misspelt key is still an unknown one, and an unknown rule is still named.
        assert!(with_rule("CrossCheckMismatch", "{treshold: 1}").is_err_and(|e| e.contains("treshold")));
        assert!(with_rule("CrossCheckMismach", "{threshold: 1}").is_err_and(|e| e.contains("did you mean `CrossCheckMismatch`")));
    }

    #[test]
    fn unknown_rule_is_named_with_a_suggestion() {
        let raw = RawAlerts {
            rules: [("RedisUnreachble".to_string(), RawRule::default())].into(),
            ..RawAlerts::default()
        };
        let errs = build(Some(raw)).unwrap_err();
        assert!(errs[0].1.contains("did you mean `RedisUnreachable`"), "{errs:?}");
    }
}
