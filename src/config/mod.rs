//! Configuration: loading, `${VAR}` expansion, strict parsing and one
//! validation pass into typed structs that the rest of lookout trusts.
//!
//! Nothing here touches the network. The only files read are the
//! configuration, the probe files its `probe_files` globs name, and secret
//! files (`*_file`). Every problem found is reported with the file, line and
//! field it concerns; validation collects all of them rather than stopping
//! at the first.

pub mod alerts;
mod expand;
mod raw;
pub mod relay;
pub mod secret;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use expand::{ExpandError, expand};
pub use secret::{Secret, redact_url};

use crate::metric::Metric;
use crate::probe::assert::Assertion;
pub(crate) use raw::parse_cron;
use raw::{RawConfig, RawCrossCheck, RawField, RawKind, RawProbe};

/// Default listen address: loopback, so a fresh install exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
/// Default probe timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default probe period when neither `every` nor `schedule` is given.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(15);
/// Default history retention.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often the redis probe re-reads the INFO sections that rarely change.
pub const DEFAULT_STATIC_INFO_EVERY: Duration = Duration::from_secs(60);
/// Default Redis when neither the probe nor the environment names one.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from; `None` for the embedded default.
    pub source: Option<PathBuf>,
    /// Address of the HTTP listener (`/metrics`, health, status).
    pub listen: SocketAddr,
    /// Where the history database lives.
    pub data_dir: PathBuf,
    /// How long observations are kept.
    pub retention: Duration,
    /// Spread probes that share a period over the period.
    pub spread: bool,
    /// Most probes running at the same instant.
    pub max_concurrency: usize,
    /// Prometheus server that `kind: prometheus` probes query by default.
    pub prometheus: Option<Endpoint>,
    /// Alertmanager that synthetic alerts are pushed to.
    pub alertmanager: Option<Endpoint>,
    /// Every probe, inline ones first, then those of probe files in path order.
    pub probes: Vec<ProbeConfig>,
    /// Cross-verification of the sources; `None` when there is nothing to
    /// compare (no `redis` probe to take as reference, or no other source).
    pub crosscheck: Option<CrossCheckConfig>,
    /// The webhook relay; `None` when disabled.
    pub relay: Option<relay::RelayConfig>,
    /// Synthetic alerts; `None` when disabled.
    pub alerts: Option<alerts::AlertsConfig>,
}

/// `crosscheck:` after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossCheckConfig {
    /// How often a round runs.
    pub every: Duration,
    /// The probe every source is judged against (a `redis` probe).
    pub reference: String,
    /// The probes judged.
    pub sources: Vec<String>,
    /// A Prometheus sample older than this (relative to the probe's run) is stale.
    pub max_staleness: Duration,
    /// Per-metric tolerances; defaults from [`default_tolerance`].
    pub tolerances: BTreeMap<Metric, Tolerance>,
}

impl CrossCheckConfig {
    /// The tolerance in force for a metric.
    pub fn tolerance(&self, m: Metric) -> Tolerance {
        self.tolerances.get(&m).copied().unwrap_or_else(|| default_tolerance(m))
    }
}

/// How far a source may be from the reference. Which fields apply depends on
/// the metric's rule (see the README's cross-check section).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Tolerance {
    /// Absolute slack, in the metric's unit.
    pub abs: f64,
    /// Relative slack, as a fraction of the reference value.
    pub rel: f64,
    /// Largest ratio between two latencies.
    pub factor: f64,
}

/// Defaults chosen so that honest sources sampled seconds apart agree:
/// `connected_clients` allows for every observer's own connection,
/// memory and fragmentation for allocator churn between samples.
pub fn default_tolerance(m: Metric) -> Tolerance {
    let t = |abs, rel, factor| Tolerance { abs, rel, factor };
    match m {
        Metric::LatencySeconds => t(0.01, 0.0, 50.0),
        Metric::KeyspaceHits | Metric::KeyspaceMisses => t(0.0, 0.0, 0.0),
        Metric::HitRatio => t(0.01, 0.0, 0.0),
        Metric::ConnectedClients => t(5.0, 0.1, 0.0),
        Metric::UsedMemoryBytes => t(256.0 * 1024.0, 0.05, 0.0),
        Metric::Maxclients | Metric::MaxmemoryBytes => t(0.0, 0.0, 0.0),
        Metric::MemFragmentationRatio => t(0.3, 0.2, 0.0),
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

/// One probe.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Unique name; the `probe` label of every metric.
    pub name: String,
    /// When it runs.
    pub schedule: Schedule,
    /// Upper bound of one run, connection included.
    pub timeout: Duration,
    /// Extra labels for metrics and alerts.
    pub labels: BTreeMap<String, String>,
    /// What it checks.
    pub spec: ProbeSpec,
    /// Where it was defined.
    pub origin: Origin,
}

/// The kind-specific part of a probe.
#[derive(Debug, Clone)]
pub enum ProbeSpec {
    /// A backend's Redis health endpoint.
    HttpHealth(HttpHealthSpec),
    /// Redis itself.
    Redis(RedisSpec),
    /// Prometheus's view of the redis_exporter series.
    Prometheus(PrometheusSpec),
}

impl ProbeSpec {
    /// The `kind` as written in configuration and used in the `kind` label.
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeSpec::HttpHealth(_) => "http_health",
            ProbeSpec::Redis(_) => "redis",
            ProbeSpec::Prometheus(_) => "prometheus",
        }
    }
}

/// Configuration of a `kind: http_health` probe.
#[derive(Debug, Clone)]
pub struct HttpHealthSpec {
    /// The endpoint. May carry a token in its query, so it is a secret.
    pub url: Secret,
    /// The URL with any password hidden, for messages.
    pub display_url: String,
    /// Extra request headers; values are secrets (they often carry tokens).
    pub headers: Vec<(String, Secret)>,
    /// Accept any TLS certificate.
    pub tls_skip_verify: bool,
    /// The status a healthy endpoint answers with.
    pub expect_status: u16,
    /// Where each canonical metric sits in the response.
    pub fields: Vec<FieldMapping>,
    /// Conditions the values must meet.
    pub asserts: Vec<Assertion>,
}

/// One canonical metric's place in a JSON response.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldMapping {
    /// The metric.
    pub metric: Metric,
    /// RFC 6901 JSON Pointer.
    pub pointer: String,
    /// Multiplier into the metric's base unit.
    pub scale: f64,
}

/// The response shape the reference endpoints document, used when a probe
/// gives no `fields`.
pub fn default_fields() -> Vec<FieldMapping> {
    let f = |metric, pointer: &str, scale| FieldMapping {
        metric,
        pointer: pointer.to_string(),
        scale,
    };
    vec![
        f(Metric::LatencySeconds, "/redis/latency_ms", 0.001),
        f(Metric::KeyspaceHits, "/redis/hits", 1.0),
        f(Metric::KeyspaceMisses, "/redis/misses", 1.0),
        f(Metric::HitRatio, "/redis/hit_ratio", 1.0),
        f(Metric::ConnectedClients, "/redis/connected_clients", 1.0),
        f(Metric::Maxclients, "/redis/maxclients", 1.0),
        f(Metric::UsedMemoryBytes, "/redis/used_memory", 1.0),
        f(Metric::MaxmemoryBytes, "/redis/maxmemory", 1.0),
        f(Metric::MemFragmentationRatio, "/redis/mem_fragmentation_ratio", 1.0),
    ]
}

/// Configuration of a `kind: redis` probe.
#[derive(Debug, Clone)]
pub struct RedisSpec {
    /// Full connection URL, credentials included.
    pub url: Secret,
    /// The same URL with the password hidden.
    pub display_url: String,
    /// Write, read and delete a key each cycle.
    pub roundtrip: bool,
    /// How often to re-read the INFO sections that rarely change.
    pub static_info_every: Duration,
}

/// Configuration of a `kind: prometheus` probe.
#[derive(Debug, Clone)]
pub struct PrometheusSpec {
    /// The Prometheus server.
    pub url: url::Url,
    /// Label matchers choosing this Redis's exporter series, e.g. `{instance="redis-exporter:9121"}`.
    pub selector: String,
    /// Per-metric PromQL replacing the defaults.
    pub queries: BTreeMap<Metric, String>,
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
    fn one(file: &Path, message: impl Into<String>) -> Self {
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

/// Loads and validates the configuration at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_env(path, &process_env)
}

/// [`load`] with an explicit environment.
pub fn load_with_env(path: &Path, env: Env<'_>) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::one(path, format!("cannot read configuration: {e}")))?;
    let raw: RawConfig = parse_yaml(path, &text, env)?;
    // Relative probe-file globs and data_dir are taken relative to the working
    // directory, as users of the CLI expect; the README says so.
    let mut probes: Vec<(PathBuf, RawProbe)> = Vec::new();
    let mut problems = Vec::new();
    let globs = raw.probe_files.clone().unwrap_or_else(|| vec!["probes/*.yaml".to_string()]);
    for pattern in &globs {
        let paths = match glob::glob(pattern) {
            Ok(p) => p,
            Err(e) => {
                problems.push(Problem {
                    file: path.to_path_buf(),
                    line: None,
                    column: None,
                    field: Some("probe_files".into()),
                    message: format!("invalid glob `{pattern}`: {e}"),
                });
                continue;
            }
        };
        let mut files: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
        files.sort();
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(t) => match parse_yaml::<RawProbe>(&file, &t, env) {
                    Ok(p) => probes.push((file, p)),
                    Err(ConfigError(mut ps)) => problems.append(&mut ps),
                },
                Err(e) => problems.push(Problem {
                    file: file.clone(),
                    line: None,
                    column: None,
                    field: None,
                    message: format!("cannot read probe file: {e}"),
                }),
            }
        }
    }
    let mut raw = raw;
    let mut all: Vec<(PathBuf, RawProbe)> = std::mem::take(&mut raw.probes)
        .into_iter()
        .map(|p| (path.to_path_buf(), p))
        .collect();
    all.extend(probes);
    match validate(Some(path), raw, all, env) {
        Ok(c) if problems.is_empty() => Ok(c),
        Ok(_) => Err(ConfigError(problems)),
        Err(ConfigError(mut ps)) => {
            problems.append(&mut ps);
            Err(ConfigError(problems))
        }
    }
}

/// The configuration used when there is no configuration file: one `redis`
/// probe of the Redis named by `REDIS_URL` (or the other `REDIS_*`
/// variables; `redis://127.0.0.1:6379` when none is set), every 15 s.
pub fn embedded_default(env: Env<'_>) -> Result<Config, ConfigError> {
    const TEXT: &str = "probe_files: []\nprobes:\n  - name: redis\n    kind: redis\n    every: 15s\n";
    let file = PathBuf::from("<embedded default>");
    let mut raw: RawConfig = parse_yaml(&file, TEXT, env)?;
    let probes = std::mem::take(&mut raw.probes).into_iter().map(|p| (file.clone(), p)).collect();
    let mut cfg = validate(None, raw, probes, env)?;
    cfg.source = None;
    Ok(cfg)
}

/// Parses YAML text (after `${VAR}` expansion) into `T`, turning a parse
/// error into a located [`Problem`] with a suggestion for misspelt keys.
fn parse_yaml<T: serde::de::DeserializeOwned>(file: &Path, text: &str, env: Env<'_>) -> Result<T, ConfigError> {
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
                key_at(src, line),
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
            (key_at(src, line), text)
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

/// The mapping key written on `line`, if that line has one.
fn key_at(src: &str, line: Option<u64>) -> Option<String> {
    let text = src.lines().nth(line? as usize - 1)?;
    let t = text.trim_start().trim_start_matches("- ").trim_start();
    let (key, _) = t.split_once(':')?;
    let key = key.trim().trim_matches('"').trim_matches('\'');
    (!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')).then(|| key.to_string())
}

/// The expected name closest to a misspelt one, if any is close enough.
pub(crate) fn closest<'a>(got: &str, expected: &[&'a str]) -> Option<&'a str> {
    expected
        .iter()
        .map(|e| (strsim::jaro_winkler(got, e), *e))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, e)| e)
}

struct Collector<'a> {
    problems: Vec<Problem>,
    file: &'a Path,
}

impl Collector<'_> {
    fn at(&mut self, file: &Path, line: u64, field: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: file.to_path_buf(),
            line: Some(line),
            column: None,
            field: Some(field.to_string()),
            message: message.into(),
        });
    }
}

fn validate(source: Option<&Path>, raw: RawConfig, probes: Vec<(PathBuf, RawProbe)>, env: Env<'_>) -> Result<Config, ConfigError> {
    let file = source.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("<embedded default>"));
    let mut c = Collector {
        problems: Vec::new(),
        file: &file,
    };
    let prometheus = raw.prometheus.map(|e| Endpoint {
        url: e.url,
        timeout: e.timeout.unwrap_or(Duration::from_secs(10)),
    });
    let alertmanager = raw.alertmanager.map(|e| Endpoint {
        url: e.url,
        timeout: e.timeout.unwrap_or(Duration::from_secs(10)),
    });
    let max_concurrency = raw.scheduler.max_concurrency.unwrap_or(64);
    if max_concurrency == 0 {
        let f = c.file.to_path_buf();
        c.problems.push(Problem {
            file: f,
            line: None,
            column: None,
            field: Some("scheduler.max_concurrency".into()),
            message: "must be at least 1".into(),
        });
    }

    let mut seen: HashMap<String, Origin> = HashMap::new();
    let mut out = Vec::new();
    for (pfile, p) in probes {
        let line = p.name.referenced.line();
        let origin = Origin { file: pfile.clone(), line };
        let name = p.name.value.clone();
        if name.is_empty() || !name.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.')) {
            c.at(
                &pfile,
                line,
                "name",
                format!("invalid probe name `{name}`: use letters, digits, `_`, `-` and `.`"),
            );
        }
        if let Some(first) = seen.get(&name) {
            c.at(
                &pfile,
                line,
                "name",
                format!(
                    "duplicate probe name `{name}` (first defined at {}:{})",
                    first.file.display(),
                    first.line
                ),
            );
        } else {
            seen.insert(name.clone(), origin.clone());
        }
        if let Some(p) = build_probe(&mut c, &pfile, line, p, prometheus.as_ref(), env) {
            out.push(p);
        }
    }
    if !c.problems.is_empty() {
        return Err(ConfigError(c.problems));
    }
    let crosscheck = build_crosscheck(&mut c, raw.crosscheck, &out);
    let alerts = match alerts::build(raw.alerts) {
        Ok(a) => a,
        Err(errs) => {
            for (field, message) in errs {
                c.problems.push(Problem {
                    file: c.file.to_path_buf(),
                    line: None,
                    column: None,
                    field: Some(field),
                    message,
                });
            }
            None
        }
    };
    let relay = match relay::build(raw.relay.unwrap_or_default()) {
        Ok(r) => r,
        Err(errs) => {
            for (line, field, message) in errs {
                let field = if line.is_some() {
                    field
                } else {
                    field.trim_start_matches("relay.").to_string()
                };
                let field = if line.is_some() {
                    format!("relay.destinations.{field}")
                } else {
                    format!("relay.{field}")
                };
                c.problems.push(Problem {
                    file: c.file.to_path_buf(),
                    line,
                    column: None,
                    field: Some(field),
                    message,
                });
            }
            None
        }
    };
    if !c.problems.is_empty() {
        return Err(ConfigError(c.problems));
    }
    Ok(Config {
        alerts,
        relay,
        crosscheck,
        source: source.map(Path::to_path_buf),
        listen: raw
            .server
            .listen
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("constant address parses")),
        data_dir: raw.data_dir.unwrap_or_else(|| PathBuf::from("./data")),
        retention: raw.history.retention.unwrap_or(DEFAULT_RETENTION),
        spread: raw.scheduler.spread.unwrap_or(true),
        max_concurrency,
        prometheus,
        alertmanager,
        probes: out,
    })
}

fn build_crosscheck(c: &mut Collector<'_>, raw: Option<RawCrossCheck>, probes: &[ProbeConfig]) -> Option<CrossCheckConfig> {
    let explicit = raw.is_some();
    let raw = raw.unwrap_or_default();
    if raw.enabled == Some(false) {
        return None;
    }
    let file = c.file.to_path_buf();
    let bad = |c: &mut Collector<'_>, field: &str, msg: String| {
        c.problems.push(Problem {
            file: file.clone(),
            line: None,
            column: None,
            field: Some(format!("crosscheck.{field}")),
            message: msg,
        });
    };
    let redis: Vec<&ProbeConfig> = probes.iter().filter(|p| matches!(p.spec, ProbeSpec::Redis(_))).collect();
    let reference = match &raw.reference {
        Some(r) => match probes.iter().find(|p| &p.name == r) {
            Some(p) if matches!(p.spec, ProbeSpec::Redis(_)) => r.clone(),
            Some(_) => {
                bad(
                    c,
                    "reference",
                    format!("`{r}` is not a `kind: redis` probe; the reference reads Redis directly"),
                );
                return None;
            }
            None => {
                let names: Vec<&str> = probes.iter().map(|p| p.name.as_str()).collect();
                let hint = closest(r, &names).map(|s| format!(" — did you mean `{s}`?")).unwrap_or_default();
                bad(c, "reference", format!("no probe named `{r}`{hint}"));
                return None;
            }
        },
        None if redis.len() == 1 => redis[0].name.clone(),
        None if redis.is_empty() => {
            if explicit {
                bad(c, "reference", "no `kind: redis` probe to use as the reference".into());
            }
            return None;
        }
        None => {
            // Several Redis: which one the others should agree with is the
            // user's call. Without a `crosscheck:` section, do not guess.
            if explicit {
                let names = redis.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ");
                bad(
                    c,
                    "reference",
                    format!("several `kind: redis` probes ({names}): name the reference"),
                );
            }
            return None;
        }
    };
    let sources = match &raw.sources {
        Some(list) => {
            for s in list {
                if s == &reference {
                    bad(c, "sources", format!("`{s}` is the reference"));
                } else if !probes.iter().any(|p| &p.name == s) {
                    let names: Vec<&str> = probes.iter().map(|p| p.name.as_str()).collect();
                    let hint = closest(s, &names).map(|x| format!(" — did you mean `{x}`?")).unwrap_or_default();
                    bad(c, "sources", format!("no probe named `{s}`{hint}"));
                }
            }
            list.clone()
        }
        None => probes.iter().filter(|p| p.name != reference).map(|p| p.name.clone()).collect(),
    };
    if sources.is_empty() {
        if explicit {
            bad(c, "sources", "nothing to compare with the reference".into());
        }
        return None;
    }
    let mut tolerances = BTreeMap::new();
    for (m, t) in raw.tolerances {
        let d = default_tolerance(m);
        for (k, v) in [("abs", t.abs), ("rel", t.rel), ("factor", t.factor)] {
            if let Some(v) = v
                && (!v.is_finite() || v < 0.0)
            {
                bad(c, &format!("tolerances.{m}.{k}"), "must be a non-negative number".into());
            }
        }
        let applies = |k: &str| match m {
            Metric::LatencySeconds => k == "factor" || k == "abs",
            Metric::Maxclients | Metric::MaxmemoryBytes => false,
            _ => k != "factor",
        };
        for (k, v) in [("abs", t.abs), ("rel", t.rel), ("factor", t.factor)] {
            if v.is_some() && !applies(k) {
                let msg = match m {
                    Metric::Maxclients | Metric::MaxmemoryBytes => "configuration values must be equal; no tolerance applies".to_string(),
                    Metric::LatencySeconds => "latency is compared within a `factor` (and an `abs` slack)".to_string(),
                    _ => "use `abs` and `rel` for this metric".to_string(),
                };
                bad(c, &format!("tolerances.{m}.{k}"), msg);
            }
        }
        if let Some(f) = t.factor
            && f < 1.0
        {
            bad(c, &format!("tolerances.{m}.factor"), "must be at least 1".into());
        }
        tolerances.insert(
            m,
            Tolerance {
                abs: t.abs.unwrap_or(d.abs),
                rel: t.rel.unwrap_or(d.rel),
                factor: t.factor.unwrap_or(d.factor),
            },
        );
    }
    Some(CrossCheckConfig {
        every: raw.every.unwrap_or(DEFAULT_EVERY),
        reference,
        sources,
        max_staleness: raw.max_staleness.unwrap_or(Duration::from_secs(30)),
        tolerances,
    })
}

fn kind_name(k: RawKind) -> &'static str {
    match k {
        RawKind::HttpHealth => "http_health",
        RawKind::Redis => "redis",
        RawKind::Prometheus => "prometheus",
    }
}

fn build_probe(
    c: &mut Collector<'_>,
    file: &Path,
    line: u64,
    p: RawProbe,
    prometheus: Option<&Endpoint>,
    env: Env<'_>,
) -> Option<ProbeConfig> {
    let before = c.problems.len();
    for (field, kind) in p.set_fields() {
        if kind != p.kind {
            c.at(
                file,
                line,
                field,
                format!(
                    "not a field of kind `{}` (it belongs to kind `{}`)",
                    kind_name(p.kind),
                    kind_name(kind)
                ),
            );
        }
    }
    let schedule = match (p.every, &p.schedule) {
        (Some(_), Some(_)) => {
            c.at(file, line, "schedule", "give either `every` or `schedule`, not both");
            Schedule::Every(DEFAULT_EVERY)
        }
        (Some(d), None) => {
            if p.timezone.is_some() {
                c.at(file, line, "timezone", "only applies to a cron `schedule`");
            }
            Schedule::Every(d)
        }
        (None, Some(expr)) => Schedule::Cron {
            expr: expr.clone(),
            timezone: p.timezone,
        },
        (None, None) => Schedule::Every(DEFAULT_EVERY),
    };
    let timeout = p.timeout.unwrap_or(DEFAULT_TIMEOUT);
    if let Schedule::Every(every) = schedule
        && timeout > every
    {
        // Not an error: the run is bounded by the timeout and the next tick is
        // skipped (and counted) while it runs. Worth a warning at most.
        tracing::debug!(probe = %p.name.value, "timeout longer than the period; overlapping ticks will be skipped");
    }
    for key in p.labels.keys() {
        let ok = key.chars().next().is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
            && key.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
            && !key.starts_with("__");
        if !ok || matches!(key.as_str(), "probe" | "kind" | "metric") {
            c.at(file, line, "labels", format!("invalid or reserved label name `{key}`"));
        }
    }
    let spec = match p.kind {
        RawKind::HttpHealth => http_spec(c, file, line, &p),
        RawKind::Redis => redis_spec(c, file, line, &p, env),
        RawKind::Prometheus => prometheus_spec(c, file, line, &p, prometheus),
    };
    if c.problems.len() > before {
        return None;
    }
    Some(ProbeConfig {
        name: p.name.value,
        schedule,
        timeout,
        labels: p.labels,
        spec: spec?,
        origin: Origin {
            file: file.to_path_buf(),
            line,
        },
    })
}

fn http_spec(c: &mut Collector<'_>, file: &Path, line: u64, p: &RawProbe) -> Option<ProbeSpec> {
    let Some(url) = &p.url else {
        c.at(file, line, "url", "required for kind `http_health`");
        return None;
    };
    if let Err(e) = raw::parse_http_url(url.expose()) {
        c.at(file, line, "url", e);
        return None;
    }
    let mut headers = Vec::new();
    for (k, v) in p.headers.clone().unwrap_or_default() {
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            c.at(file, line, "headers", format!("invalid header name `{k}`"));
        } else if reqwest::header::HeaderValue::from_str(v.expose()).is_err() {
            c.at(file, line, "headers", format!("invalid value for header `{k}`"));
        }
        headers.push((k, v));
    }
    let expect_status = p.expect_status.unwrap_or(200);
    if !(100..=599).contains(&expect_status) {
        c.at(file, line, "expect_status", format!("{expect_status} is not an HTTP status"));
    }
    let fields = match &p.fields {
        None => default_fields(),
        Some(map) => {
            let mut v = Vec::new();
            for (metric, f) in map {
                let (pointer, scale) = match f {
                    RawField::Pointer(s) => (s.clone(), 1.0),
                    RawField::Scaled { pointer, scale } => (pointer.clone(), *scale),
                };
                if !(pointer.is_empty() || pointer.starts_with('/')) {
                    c.at(
                        file,
                        line,
                        "fields",
                        format!("`{metric}`: `{pointer}` is not a JSON Pointer (it must start with `/`, e.g. `/redis/hits`)"),
                    );
                }
                if !scale.is_finite() || scale == 0.0 {
                    c.at(file, line, "fields", format!("`{metric}`: scale must be a non-zero number"));
                }
                v.push(FieldMapping {
                    metric: *metric,
                    pointer,
                    scale,
                });
            }
            v
        }
    };
    let asserts = p.asserts.clone().unwrap_or_default();
    for a in &asserts {
        if !fields.iter().any(|f| f.metric == a.metric) && a.metric != Metric::HitRatio {
            c.at(
                file,
                line,
                "assert",
                format!("`{a}` uses `{}`, which this probe does not read (add it under `fields`)", a.metric),
            );
        }
    }
    Some(ProbeSpec::HttpHealth(HttpHealthSpec {
        display_url: redact_url(url.expose()),
        url: url.clone(),
        headers,
        tls_skip_verify: p.tls_skip_verify.unwrap_or(false),
        expect_status,
        fields,
        asserts,
    }))
}

fn redis_spec(c: &mut Collector<'_>, file: &Path, line: u64, p: &RawProbe, env: Env<'_>) -> Option<ProbeSpec> {
    // Compose passes an unset variable as an empty one: treat empty as unset.
    let env = |k: &str| env(k).filter(|v| !v.is_empty());
    let explicit_parts =
        p.host.is_some() || p.port.is_some() || p.username.is_some() || p.password.is_some() || p.password_file.is_some() || p.db.is_some();
    if p.url.is_some() && explicit_parts {
        c.at(file, line, "url", "give either `url` or host/port/username/password/db, not both");
        return None;
    }
    let password = match (&p.password, &p.password_file) {
        (Some(_), Some(_)) => {
            c.at(file, line, "password_file", "give either `password` or `password_file`, not both");
            return None;
        }
        (Some(pw), None) => Some(pw.clone()),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(s) => Some(Secret::new(s.trim_end_matches(['\n', '\r']))),
            Err(e) => {
                c.at(file, line, "password_file", format!("cannot read `{}`: {e}", path.display()));
                return None;
            }
        },
        (None, None) => None,
    };
    let url = if let Some(u) = &p.url {
        u.expose().to_string()
    } else if explicit_parts {
        compose_redis_url(p.host.clone(), p.port, p.username.clone(), password, p.db)
    } else if let Some(u) = env("REDIS_URL").filter(|s| !s.is_empty()) {
        u
    } else if ["REDIS_HOST", "REDIS_PORT", "REDIS_USERNAME", "REDIS_PASSWORD", "REDIS_DB"]
        .iter()
        .any(|k| env(k).is_some())
    {
        let port = match env("REDIS_PORT").map(|s| s.parse::<u16>()) {
            Some(Ok(p)) => Some(p),
            Some(Err(_)) => {
                c.at(file, line, "port", "environment variable REDIS_PORT is not a port number");
                return None;
            }
            None => None,
        };
        let db = match env("REDIS_DB").map(|s| s.parse::<i64>()) {
            Some(Ok(d)) => Some(d),
            Some(Err(_)) => {
                c.at(file, line, "db", "environment variable REDIS_DB is not a number");
                return None;
            }
            None => None,
        };
        compose_redis_url(
            env("REDIS_HOST"),
            port,
            env("REDIS_USERNAME"),
            env("REDIS_PASSWORD").map(Secret::new),
            db,
        )
    } else {
        DEFAULT_REDIS_URL.to_string()
    };
    match url::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.host_str().is_some_and(|h| !h.is_empty()) => {}
        _ => {
            c.at(
                file,
                line,
                "url",
                format!(
                    "invalid Redis URL `{}`: expected redis://[user:password@]host[:port][/db] or rediss://…",
                    redact_url(&url)
                ),
            );
            return None;
        }
    }
    if url.starts_with("rediss://") {
        c.at(
            file,
            line,
            "url",
            "rediss:// (TLS) is not supported by this build yet; use redis:// or a TLS tunnel",
        );
        return None;
    }
    Some(ProbeSpec::Redis(RedisSpec {
        display_url: redact_url(&url),
        url: Secret::new(url),
        roundtrip: p.roundtrip.unwrap_or(false),
        static_info_every: p.static_info_every.unwrap_or(DEFAULT_STATIC_INFO_EVERY),
    }))
}

/// Builds `redis://user:pass@host:port/db` with each part percent-encoded.
fn compose_redis_url(host: Option<String>, port: Option<u16>, user: Option<String>, password: Option<Secret>, db: Option<i64>) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let mut s = String::from("redis://");
    let user = user.unwrap_or_default();
    if !user.is_empty() || password.is_some() {
        s.push_str(&utf8_percent_encode(&user, NON_ALPHANUMERIC).to_string());
        if let Some(pw) = &password {
            s.push(':');
            s.push_str(&utf8_percent_encode(pw.expose(), NON_ALPHANUMERIC).to_string());
        }
        s.push('@');
    }
    let host = host.filter(|h| !h.is_empty()).unwrap_or_else(|| "127.0.0.1".to_string());
    if host.contains(':') && !host.starts_with('[') {
        s.push_str(&format!("[{host}]"));
    } else {
        s.push_str(&host);
    }
    s.push_str(&format!(":{}", port.unwrap_or(6379)));
    if let Some(db) = db {
        s.push_str(&format!("/{db}"));
    }
    s
}

fn prometheus_spec(c: &mut Collector<'_>, file: &Path, line: u64, p: &RawProbe, prometheus: Option<&Endpoint>) -> Option<ProbeSpec> {
    let url = match (&p.url, prometheus) {
        (Some(u), _) => match raw::parse_http_url(u.expose()) {
            Ok(u) => u,
            Err(e) => {
                c.at(file, line, "url", e);
                return None;
            }
        },
        (None, Some(ep)) => ep.url.clone(),
        (None, None) => {
            c.at(
                file,
                line,
                "url",
                "required for kind `prometheus` (or set `prometheus.url` at the top level)",
            );
            return None;
        }
    };
    let selector = p.selector.clone().unwrap_or_else(|| "{}".to_string());
    let trimmed = selector.trim();
    if !(trimmed.starts_with('{') && trimmed.ends_with('}')) {
        c.at(
            file,
            line,
            "selector",
            format!("`{selector}` is not a label selector: write it in braces, e.g. `{{instance=\"redis-exporter:9121\"}}`"),
        );
        return None;
    }
    Some(ProbeSpec::Prometheus(PrometheusSpec {
        url,
        selector: trimmed.to_string(),
        queries: p.queries.clone().unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn load_str(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lookout.yaml");
        std::fs::write(&path, text).unwrap();
        load_with_env(&path, &no_env)
    }

    #[test]
    fn minimal_defaults() {
        let c = load_str("probe_files: []\n").unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert!(c.probes.is_empty());
        assert_eq!(c.retention, DEFAULT_RETENTION);
    }

    #[test]
    fn typo_is_located_and_suggested() {
        let e = load_str("probe_files: []\nprobes:\n  - name: r\n    kind: redis\n    tmeout: 5s\n").unwrap_err();
        let p = &e.0[0];
        assert_eq!(p.line, Some(5));
        assert_eq!(p.field.as_deref(), Some("tmeout"));
        assert!(p.message.contains("did you mean `timeout`"), "{p}");
    }

    #[test]
    fn bad_duration_names_line_and_field() {
        let e = load_str("probe_files: []\nprobes:\n  - name: r\n    kind: redis\n    every: 5 parsecs\n").unwrap_err();
        let p = &e.0[0];
        assert_eq!(p.line, Some(5), "{p}");
        assert_eq!(p.field.as_deref(), Some("every"), "{p}");
    }

    #[test]
    fn bad_cron_and_duplicate() {
        let e = load_str("probe_files: []\nprobes:\n  - name: r\n    kind: redis\n    schedule: '*/5 * * * *'\n").unwrap_err();
        assert!(e.0[0].message.contains("cron"), "{e}");
        let e = load_str("probe_files: []\nprobes:\n  - name: r\n    kind: redis\n  - name: r\n    kind: redis\n").unwrap_err();
        assert_eq!(e.0[0].line, Some(5), "{e}");
        assert!(e.0[0].message.contains("duplicate"), "{e}");
    }

    #[test]
    fn field_of_another_kind_rejected() {
        let e = load_str("probe_files: []\nprobes:\n  - name: r\n    kind: redis\n    selector: '{}'\n").unwrap_err();
        assert_eq!(e.0[0].field.as_deref(), Some("selector"));
    }

    #[test]
    fn redis_env_convention() {
        let env = |k: &str| match k {
            "REDIS_HOST" => Some("cache".to_string()),
            "REDIS_PASSWORD" => Some("p@ss".to_string()),
            "REDIS_DB" => Some("2".to_string()),
            _ => None,
        };
        let c = embedded_default(&env).unwrap();
        let ProbeSpec::Redis(r) = &c.probes[0].spec else { panic!() };
        assert_eq!(r.url.expose(), "redis://:p%40ss@cache:6379/2");
        assert!(!r.display_url.contains("p%40ss"));
        assert!(!format!("{c:?}").contains("p%40ss"));
    }

    #[test]
    fn url_errors_hide_password() {
        let e = load_str("probe_files: []\nprobes:\n  - name: r\n    kind: redis\n    url: 'http://u:hunter2@x'\n").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn unset_variable_is_located() {
        let e = load_str("probe_files: []\nserver:\n  listen: ${LISTEN}\n").unwrap_err();
        assert_eq!(e.0[0].line, Some(3));
    }
}
