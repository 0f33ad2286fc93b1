//! `lookout.yaml` as a whole: the top-level document, put together from
//! each owner's section. The configuration machinery (`config`) knows no
//! probe kind or destination; this module is where the probes (`probe`),
//! the relay (`relay`), the cross-check (`crosscheck`) and the synthetic
//! alerts (`alert`) each validate their own part, and every problem is
//! collected with its file, line and field.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::alerts;
use crate::config::entry::Entry;
use crate::config::locate::locate;
use crate::config::value::{opt_duration, opt_socket_addr};
use crate::config::{ConfigError, Endpoint, Env, Origin, Problem, RawEndpoint, parse_yaml, process_env};
use crate::crosscheck::config::{CrossCheckConfig, RawCrossCheck};
use crate::probe::{self, ProbeConfig};
use crate::relay::config::{RawRelay, RelayConfig};
use crate::runbook::grafana::{GrafanaConfig, RawGrafana};

/// Default listen address: loopback, so a fresh install exposes nothing.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9464);
/// Default time a client has to send a request's headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Default history retention.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default data directory (history, outbox, alert state).
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Default probe-file glob.
pub const DEFAULT_PROBE_FILES: &str = "probes/*.yaml";
/// Default cap of probes running at the same instant.
pub const DEFAULT_MAX_CONCURRENCY: usize = 64;

/// Top level of `lookout.yaml`, as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    /// The HTTP listener.
    #[serde(default)]
    pub server: RawServer,
    /// Where the history, the relay's outbox and the alert state live
    /// (default `./data`).
    pub data_dir: Option<PathBuf>,
    /// The probe history.
    #[serde(default)]
    pub history: RawHistory,
    /// How probes are scheduled.
    #[serde(default)]
    pub scheduler: RawScheduler,
    /// Globs of files holding one probe each (default `probes/*.yaml`),
    /// relative to the working directory.
    pub probe_files: Option<Vec<String>>,
    /// Probes defined inline; each has the common keys and its kind's.
    #[serde(default)]
    #[schemars(schema_with = "probe::schema_list")]
    pub probes: Vec<Entry>,
    /// The Prometheus server `kind: prometheus` probes query by default.
    pub prometheus: Option<RawEndpoint>,
    /// The Alertmanager synthetic alerts are pushed to.
    pub alertmanager: Option<RawEndpoint>,
    /// Cross-verification of the sources.
    pub crosscheck: Option<RawCrossCheck>,
    /// The Alertmanager-compatible webhook relay.
    pub relay: Option<RawRelay>,
    /// Synthetic alerts.
    pub alerts: Option<alerts::RawAlerts>,
    /// Grafana, for `lookout doctor`'s datasource and dashboard checks.
    pub grafana: Option<RawGrafana>,
}

/// `server:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address of the HTTP listener (default `127.0.0.1:9464`).
    #[serde(default, deserialize_with = "opt_socket_addr")]
    #[schemars(with = "Option<String>")]
    pub listen: Option<SocketAddr>,
    /// Allow `POST /-/reload` (default false, as in Prometheus): anyone who
    /// can reach the listener could otherwise make the daemon re-read its
    /// files and restart every probe. SIGHUP reloads either way.
    pub enable_lifecycle: Option<bool>,
    /// Allow the API that changes data (`POST /api/v1/redis/flushes`: a
    /// controlled flush run by the daemon, and its `DELETE` to stop it);
    /// default false, as Prometheus's `--web.enable-admin-api`: a flush
    /// deletes keys, so reaching the listener must not be enough.
    pub enable_admin_api: Option<bool>,
    /// Time a client has to send a request's headers, which is also the
    /// longest a kept-alive connection may sit idle (default 10s; 100ms to
    /// 5m): a slow or idle client cannot hold a connection.
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub header_read_timeout: Option<Duration>,
    /// Connections served at once (default 1024, or the descriptor limit
    /// less 128 when that is lower; 1 to 65536); one more is closed at once.
    pub max_connections: Option<usize>,
    /// TLS and basic authentication for the whole listener, in the file
    /// format of Prometheus's exporter-toolkit (`--web.config.file`):
    /// `tls_server_config` and `basic_auth_users` (bcrypt hashes).
    pub web_config_file: Option<PathBuf>,
}

/// `history:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHistory {
    /// How long observations are kept (default 7d).
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub retention: Option<Duration>,
}

/// `scheduler:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawScheduler {
    /// Spread probes that share a period over the period (default true).
    pub spread: Option<bool>,
    /// Most probes running at the same instant (default 64).
    pub max_concurrency: Option<usize>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from; `None` for the embedded default.
    pub source: Option<PathBuf>,
    /// Address of the HTTP listener (`/metrics`, health, status).
    pub listen: SocketAddr,
    /// Whether `POST /-/reload` is served (`server.enable_lifecycle`).
    pub enable_lifecycle: bool,
    /// Whether the flush API is served (`server.enable_admin_api`).
    pub enable_admin_api: bool,
    /// The listener's connection limits.
    pub limits: crate::listener::Limits,
    /// The listener's TLS and basic-auth users (`server.web_config_file`).
    pub web: Option<crate::config::web::WebConfig>,
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
    pub relay: Option<RelayConfig>,
    /// Synthetic alerts; `None` when disabled.
    pub alerts: Option<alerts::AlertsConfig>,
    /// Grafana, for `lookout doctor`; `None` when not configured.
    pub grafana: Option<GrafanaConfig>,
    /// What is valid but probably not meant (a `probe_files` glob that
    /// matches nothing), for `config check` and the daemon's log.
    pub warnings: Vec<Problem>,
}

/// At most this many probe files, over every `probe_files` pattern: a
/// thousand probes is far beyond one daemon's schedule, and a pattern that
/// matches more names the wrong directory (`/usr/**` ran for minutes).
pub const MAX_PROBE_FILES: usize = 1000;

/// At most this many bytes of probe files in all (a probe file is a few
/// hundred bytes), so that a pattern matching large files fails fast
/// rather than reading them.
pub const MAX_PROBE_BYTES: u64 = 4 * 1024 * 1024;

/// Loads and validates the configuration at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_env(path, &process_env)
}

/// [`load`] with an explicit environment.
pub fn load_with_env(path: &Path, env: Env<'_>) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::one(path, format!("cannot read configuration: {e}")))?;
    let raw: RawSettings = parse_yaml(path, &text, env)?;
    // Relative probe-file globs and data_dir are taken relative to the working
    // directory, as users of the CLI expect; the README says so.
    let mut probes: Vec<(PathBuf, Entry)> = Vec::new();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let globs = raw.probe_files.clone().unwrap_or_else(|| vec![DEFAULT_PROBE_FILES.to_string()]);
    let (mut matched, mut bytes) = (0usize, 0u64);
    for pattern in &globs {
        let paths = match glob::glob(pattern) {
            Ok(p) => p,
            Err(e) => {
                problems.push(Problem::at_field(path, "probe_files", format!("invalid glob `{pattern}`: {e}")));
                continue;
            }
        };
        // One past the budget is enough to know it is exceeded: `/usr/**`
        // stops here instead of listing the whole tree.
        let room = MAX_PROBE_FILES - matched;
        let mut files: Vec<PathBuf> = paths.filter_map(Result::ok).take(room + 1).collect();
        if files.len() > room {
            problems.push(Problem::at_field(
                path,
                "probe_files",
                format!(
                    "`{pattern}` matches more than the {MAX_PROBE_FILES} probe files lookout reads (with the patterns before it): narrow it to the directory of probe files"
                ),
            ));
            break;
        }
        matched += files.len();
        files.sort();
        if files.is_empty() && raw.probe_files.is_some() {
            warnings.push(Problem::at_field(
                path,
                "probe_files",
                format!(
                    "`{pattern}` matches no file (relative to the working directory {})",
                    std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default()
                ),
            ));
        }
        for file in files {
            // A glob matches directories, FIFOs and devices too: reading one
            // would fail, hang, or never end.
            match std::fs::metadata(&file) {
                Ok(m) if !m.is_file() => {
                    problems.push(Problem {
                        file: file.clone(),
                        line: None,
                        column: None,
                        field: None,
                        message: format!("not a regular file (matched by `{pattern}` in `probe_files`)"),
                    });
                    continue;
                }
                Ok(m) => {
                    bytes += m.len();
                    if bytes > MAX_PROBE_BYTES {
                        problems.push(Problem::at_field(
                            path,
                            "probe_files",
                            format!(
                                "the files `{pattern}` matches (with the patterns before it) hold more than {} MiB: probe files are a few hundred bytes each; narrow the pattern",
                                MAX_PROBE_BYTES / (1024 * 1024)
                            ),
                        ));
                        break;
                    }
                }
                Err(_) => {}
            }
            match std::fs::read_to_string(&file) {
                Ok(t) => match parse_yaml::<Entry>(&file, &t, env) {
                    Ok(p) => probes.push((file, p)),
                    Err(ConfigError(mut ps)) => {
                        if holds_a_list(&t) {
                            ps = vec![Problem {
                                file: file.clone(),
                                line: Some(1),
                                column: None,
                                field: None,
                                message: "a probe file holds one probe (a mapping with `name` and `kind`), not a list: put each probe in its own file, or the list under `probes:` in the configuration".into(),
                            }];
                        }
                        problems.append(&mut ps)
                    }
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
    let mut all: Vec<(PathBuf, Entry)> = std::mem::take(&mut raw.probes)
        .into_iter()
        .map(|p| (path.to_path_buf(), p))
        .collect();
    all.extend(probes);
    let result = match validate(Some(path), raw, all, env) {
        Ok(mut c) if problems.is_empty() => {
            c.warnings = locate_all(ConfigError(warnings), path, &text, env).0;
            Ok(c)
        }
        Ok(_) => Err(ConfigError(problems)),
        Err(ConfigError(mut ps)) => {
            problems.append(&mut ps);
            Err(ConfigError(problems))
        }
    };
    result.map_err(|e| locate_all(e, path, &text, env))
}

/// `text` validated as the configuration file `path` would be, except that
/// `probe_files` is not expanded: only the probes under `probes:` count and
/// no other file is read for them. The fuzz target drives the loader through
/// here with arbitrary bytes, where a glob must not walk the machine.
pub fn from_text(path: &Path, text: &str, env: Env<'_>) -> Result<Config, ConfigError> {
    let mut raw: RawSettings = parse_yaml(path, text, env)?;
    let probes = std::mem::take(&mut raw.probes)
        .into_iter()
        .map(|p| (path.to_path_buf(), p))
        .collect();
    validate(Some(path), raw, probes, env).map_err(|e| locate_all(e, path, text, env))
}

/// Whether a YAML text's document is a sequence (`- name: …` at the top).
fn holds_a_list(text: &str) -> bool {
    text.lines()
        .map(str::trim_end)
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#') && l.trim() != "---")
        .is_some_and(|l| l.starts_with("- ") || l == "-")
}

/// Gives a line to every problem of `path` found after parsing (a value
/// compared with another, a route naming no destination): the line of the
/// field it names.
fn locate_all(mut e: ConfigError, path: &Path, text: &str, env: Env<'_>) -> ConfigError {
    let Ok(src) = crate::config::expand(text, env) else { return e };
    for p in e.0.iter_mut().filter(|p| p.line.is_none() && p.file == path) {
        if let Some((line, column)) = p.field.as_deref().and_then(|f| locate(&src, f)) {
            p.line = Some(line);
            p.column = Some(column);
        }
    }
    e
}

/// The configuration used when there is no configuration file: one `redis`
/// probe of the Redis named by `REDIS_URL` (or the other `REDIS_*`
/// variables; `redis://127.0.0.1:6379` when none is set), every 15 s.
pub fn embedded_default(env: Env<'_>) -> Result<Config, ConfigError> {
    const TEXT: &str = "probe_files: []\nprobes:\n  - name: redis\n    kind: redis\n    every: 15s\n";
    let file = PathBuf::from("<embedded default>");
    let mut raw: RawSettings = parse_yaml(&file, TEXT, env)?;
    let probes = std::mem::take(&mut raw.probes).into_iter().map(|p| (file.clone(), p)).collect();
    let mut cfg = validate(None, raw, probes, env)?;
    cfg.source = None;
    Ok(cfg)
}

impl crate::runbook::verify::VerifyConfig for Config {
    fn prometheus(&self) -> Option<&Endpoint> {
        self.prometheus.as_ref()
    }
}

impl crate::crosscheck::Setup for Config {
    fn probes(&self) -> &[ProbeConfig] {
        &self.probes
    }

    fn crosscheck(&self) -> Option<&CrossCheckConfig> {
        self.crosscheck.as_ref()
    }

    fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

/// The JSON Schema (draft 2020-12) of `lookout.yaml`, generated from the
/// same types the loader reads, so it cannot drift from what is accepted
/// (beyond rules a schema cannot say, such as cross-references).
pub fn schema() -> serde_json::Value {
    let mut s = schemars::SchemaGenerator::default().into_root_schema_for::<RawSettings>();
    s.insert("title".into(), "lookout.yaml".into());
    s.insert(
        "description".into(),
        "Configuration of lookout, the synthetic-monitoring daemon and alert relay.".into(),
    );
    s.to_value()
}

/// Validates the document: each owner its section, every problem collected.
fn validate(source: Option<&Path>, raw: RawSettings, probes: Vec<(PathBuf, Entry)>, env: Env<'_>) -> Result<Config, ConfigError> {
    let file = source.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("<embedded default>"));
    let mut problems: Vec<Problem> = Vec::new();
    let prometheus = raw.prometheus.map(RawEndpoint::build);
    let alertmanager = raw.alertmanager.map(RawEndpoint::build);
    let max_concurrency = raw.scheduler.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY);
    if max_concurrency == 0 {
        problems.push(Problem {
            file: file.clone(),
            line: None,
            column: None,
            field: Some("scheduler.max_concurrency".into()),
            message: "must be at least 1".into(),
        });
    }
    let mut server_problem = |field: &str, message: String| {
        problems.push(Problem {
            file: file.clone(),
            line: None,
            column: None,
            field: Some(format!("server.{field}")),
            message,
        })
    };
    if let Some(t) = raw.server.header_read_timeout
        && let Err(e) = crate::config::value::check_bounds(t, Duration::from_millis(100), Duration::from_secs(300))
    {
        server_problem("header_read_timeout", e);
    }
    if let Some(n) = raw.server.max_connections
        && !(1..=65536).contains(&n)
    {
        server_problem("max_connections", format!("{n} is out of range: must be between 1 and 65536"));
    }
    let web = match &raw.server.web_config_file {
        Some(p) => match crate::config::web::load(p) {
            Ok(w) => Some(w),
            Err(ConfigError(mut ps)) => {
                if ps.iter().all(|x| x.file != file) {
                    problems.push(Problem::at_field(
                        &file,
                        "server.web_config_file",
                        format!("`{}` is not usable (below)", p.display()),
                    ));
                }
                problems.append(&mut ps);
                None
            }
        },
        None => None,
    };
    // Sections that refer to probes are judged only when every probe is
    // valid; the rest of the problems are all reported together.
    let before_probes = problems.len();

    let ctx = probe::Context {
        env,
        prometheus: prometheus.as_ref().map(|e| &e.url),
    };
    let mut seen: HashMap<String, Origin> = HashMap::new();
    let mut out = Vec::new();
    for (pfile, entry) in probes {
        let Some(p) = probe::read(entry, &pfile, &ctx, &mut problems) else {
            continue;
        };
        if let Some(first) = seen.get(&p.name) {
            problems.push(Problem {
                file: pfile.clone(),
                line: Some(p.origin.line),
                column: None,
                field: Some("name".into()),
                message: format!(
                    "duplicate probe name `{}` (first defined at {}:{})",
                    p.name,
                    first.file.display(),
                    first.line
                ),
            });
            continue;
        }
        seen.insert(p.name.clone(), p.origin.clone());
        out.push(p);
    }
    if problems.len() > before_probes {
        return Err(ConfigError(problems));
    }
    let crosscheck = crate::crosscheck::config::build(&file, &mut problems, raw.crosscheck, &out);
    let alerts = match alerts::build(raw.alerts) {
        Ok(a) => a,
        Err(errs) => {
            for (field, message) in errs {
                problems.push(Problem {
                    file: file.clone(),
                    line: None,
                    column: None,
                    field: Some(field),
                    message,
                });
            }
            None
        }
    };
    let retention = raw.history.retention.unwrap_or(DEFAULT_RETENTION);
    // The history must hold at least the latest round and each probe's
    // latest run, or what the status page and `report --window` read of
    // it comes and goes between two writes.
    let longest = out
        .iter()
        .filter_map(|p| {
            p.schedule
                .period()
                .map(|d| (d, format!("probe `{}` runs every {}", p.name, humantime::format_duration(d))))
        })
        .chain(crosscheck.iter().map(|c| {
            (
                c.every,
                format!("a cross-check round every {}", humantime::format_duration(c.every)),
            )
        }))
        .max_by_key(|(d, _)| *d);
    if let Some((d, what)) = longest
        && retention < d
    {
        problems.push(Problem::at_field(
            &file,
            "history.retention",
            format!(
                "{} keeps less than one run ({what}): the history would lose the latest reading before the next is written",
                humantime::format_duration(retention)
            ),
        ));
    }
    let relay = crate::relay::config::build(&file, raw.relay.unwrap_or_default(), &mut problems);
    let grafana = raw.grafana.and_then(|g| crate::runbook::grafana::build(&file, g, &mut problems));
    // A reminder goes through the relay byte for byte as the first notice:
    // sooner than the relay's de-duplication window, it would be taken for
    // a copy and never delivered.
    if let (Some(a), Some(r)) = (&alerts, &relay) {
        for rule in a.rules.iter().filter(|rule| rule.reminder < r.dedup_window) {
            problems.push(Problem {
                file: file.clone(),
                line: None,
                column: None,
                field: Some(format!("alerts.rules.{}.reminder", rule.name.as_str())),
                message: format!(
                    "{} is shorter than `relay.dedup_window` ({}): the relay would take each reminder for a copy of the first notice; raise `reminder` or lower `dedup_window`",
                    humantime::format_duration(rule.reminder),
                    humantime::format_duration(r.dedup_window)
                ),
            });
        }
    }
    if !problems.is_empty() {
        return Err(ConfigError(problems));
    }
    Ok(Config {
        alerts,
        relay,
        grafana,
        crosscheck,
        source: source.map(Path::to_path_buf),
        listen: raw.server.listen.unwrap_or(DEFAULT_LISTEN),
        enable_lifecycle: raw.server.enable_lifecycle.unwrap_or(false),
        enable_admin_api: raw.server.enable_admin_api.unwrap_or(false),
        limits: crate::listener::Limits {
            header_read_timeout: raw.server.header_read_timeout.unwrap_or(DEFAULT_HEADER_READ_TIMEOUT),
            max_connections: raw.server.max_connections.unwrap_or_else(crate::listener::default_max_connections),
        },
        web,
        data_dir: raw.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        retention,
        spread: raw.scheduler.spread.unwrap_or(true),
        max_concurrency,
        prometheus,
        alertmanager,
        probes: out,
        warnings: Vec::new(),
    })
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
    fn coalesce_after_off_may_be_written_unquoted() {
        // YAML reads a bare `off` as the boolean false.
        let dest = |value: &str| {
            let c = load_str(&format!(
                "probe_files: []\nrelay:\n  destinations:\n    - {{name: mail, type: email, host: 127.0.0.1, from: a@example.org, to: [b@example.org], coalesce_after: {value}}}\n"
            ));
            c.map(|c| c.relay.expect("relay").destinations[0].delivery.coalesce_after)
        };
        assert_eq!(dest("off").unwrap(), None);
        assert_eq!(dest("\"off\"").unwrap(), None);
        assert_eq!(dest("45s").unwrap(), Some(Duration::from_secs(45)));
        let e = dest("true").unwrap_err();
        assert_eq!(e.0[0].field.as_deref(), Some("relay.destinations.coalesce_after"), "{e}");
    }

    #[test]
    fn minimal_defaults() {
        let c = load_str("probe_files: []\n").unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN);
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
        let crate::probe::ProbeSpec::Redis(r) = &c.probes[0].spec else {
            panic!()
        };
        assert_eq!(r.url.expose(), "redis://:p%40ss@cache:6379/2");
        assert!(!r.display_url.contains("p%40ss"));
        assert!(!format!("{c:?}").contains("p%40ss"));
    }

    #[test]
    fn every_problem_has_a_line() {
        let e = load_str(
            "probe_files: []\nscheduler:\n  max_concurrency: 0\nprobes:\n  - {name: r, kind: redis}\n  - {name: web, kind: http_health, url: 'http://x/', tls_skip_verify: 'yes'}\n",
        )
        .unwrap_err();
        let located: Vec<(Option<u64>, Option<&str>)> = e.0.iter().map(|p| (p.line, p.field.as_deref())).collect();
        // A quoted 'yes' is a string, not a boolean; flow style keeps the field.
        assert_eq!(
            located,
            vec![(Some(3), Some("scheduler.max_concurrency")), (Some(6), Some("tls_skip_verify"))],
            "{e}"
        );
        let e = load_str(
            "probe_files: []\nscheduler:\n  max_concurrency: 0\nprobes:\n  - {name: r, kind: redis}\nrelay:\n  destinations: [{name: a, type: log}]\n  routes:\n    - destinations: [b]\ncrosscheck:\n  reference: nope\n",
        )
        .unwrap_err();
        let mut located: Vec<(Option<u64>, Option<&str>)> = e.0.iter().map(|p| (p.line, p.field.as_deref())).collect();
        located.sort();
        assert_eq!(
            located,
            vec![
                (Some(3), Some("scheduler.max_concurrency")),
                (Some(9), Some("relay.routes[0].destinations")),
                (Some(11), Some("crosscheck.reference")),
            ],
            "{e}"
        );
    }

    #[test]
    fn an_empty_glob_warns_and_a_list_in_a_probe_file_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("lookout.yaml");
        std::fs::write(&cfg, format!("probe_files: ['{}/none/*.yaml']\n", dir.path().display())).unwrap();
        let c = load_with_env(&cfg, &no_env).unwrap();
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert_eq!(c.warnings[0].line, Some(1));
        assert!(c.warnings[0].message.contains("matches no file"), "{}", c.warnings[0]);

        std::fs::create_dir(dir.path().join("p")).unwrap();
        std::fs::write(
            dir.path().join("p/two.yaml"),
            "# two probes\n- name: a\n  kind: redis\n- name: b\n  kind: redis\n",
        )
        .unwrap();
        std::fs::write(&cfg, format!("probe_files: ['{}/p/*.yaml']\n", dir.path().display())).unwrap();
        let e = load_with_env(&cfg, &no_env).unwrap_err();
        assert!(e.0[0].message.contains("holds one probe"), "{e}");
    }

    #[test]
    fn probe_file_globs_are_bounded_in_count_size_and_type() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("lookout.yaml");
        let probes = dir.path().join("p");
        std::fs::create_dir(&probes).unwrap();
        for i in 0..=MAX_PROBE_FILES {
            std::fs::write(probes.join(format!("{i:04}.yaml")), format!("name: r{i}\nkind: redis\n")).unwrap();
        }
        let load = |globs: &str| {
            std::fs::write(&cfg, format!("# probes\nprobe_files: {globs}\n")).unwrap();
            load_with_env(&cfg, &no_env)
        };
        let e = load(&format!("['{}/*.yaml']", probes.display())).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!((e.0[0].line, e.0[0].field.as_deref()), (Some(2), Some("probe_files")), "{e}");
        assert!(e.0[0].message.contains("more than the 1000 probe files"), "{e}");
        // The budget is over every pattern, and exactly 1000 is fine.
        std::fs::remove_file(probes.join("1000.yaml")).unwrap();
        assert_eq!(load(&format!("['{}/*.yaml']", probes.display())).unwrap().probes.len(), 1000);
        let e = load(&format!("['{0}/0*.yaml', '{0}/0000.yaml']", probes.display())).unwrap_err();
        assert!(e.0[0].message.contains("with the patterns before it"), "{e}");

        let big = dir.path().join("big");
        std::fs::create_dir(&big).unwrap();
        let padding = format!("name: b\nkind: redis\n#{}\n", "x".repeat(MAX_PROBE_BYTES as usize));
        std::fs::write(big.join("b.yaml"), padding).unwrap();
        let e = load(&format!("['{}/*.yaml']", big.display())).unwrap_err();
        assert_eq!(e.0[0].field.as_deref(), Some("probe_files"), "{e}");
        assert!(e.0[0].message.contains("more than 4 MiB"), "{e}");

        let e = load(&format!("['{}']", probes.display())).unwrap_err();
        assert!(e.0[0].message.contains("not a regular file"), "{e}");
    }

    #[test]
    fn durations_below_what_they_mean_are_refused_with_file_line_and_field() {
        for (text, line, field, says) in [
            (
                "probe_files: []\nprobes:\n  - {name: r, kind: redis, every: 10m}\nhistory:\n  retention: 5m\n",
                5,
                "history.retention",
                "probe `r` runs every 10m",
            ),
            (
                "probe_files: []\nprobes:\n  - {name: r, kind: redis, every: 1s}\n  - {name: w, kind: http_health, url: 'http://x/', every: 1s}\ncrosscheck:\n  every: 2m\nhistory:\n  retention: 1m\n",
                8,
                "history.retention",
                "a cross-check round every 2m",
            ),
            (
                "probe_files: []\nprobes:\n  - {name: r, kind: redis}\n  - {name: w, kind: http_health, url: 'http://x/'}\ncrosscheck:\n  every: 10ms\n",
                6,
                "crosscheck.every",
                "shorter than 100ms",
            ),
            (
                "probe_files: []\nprobes:\n  - {name: r, kind: redis}\n  - {name: w, kind: http_health, url: 'http://x/'}\ncrosscheck:\n  max_staleness: 500ms\n",
                6,
                "crosscheck.max_staleness",
                "shorter than 1s",
            ),
            (
                "probe_files: []\nalerts:\n  evaluation_interval: 1m\n  resend_delay: 30s\n",
                4,
                "alerts.resend_delay",
                "shorter than `alerts.evaluation_interval` (1m)",
            ),
        ] {
            let e = load_str(text).unwrap_err();
            assert_eq!(e.0.len(), 1, "{text}: {e}");
            let p = &e.0[0];
            assert_eq!((p.line, p.field.as_deref()), (Some(line), Some(field)), "{text}: {e}");
            assert!(p.file.ends_with("lookout.yaml"), "{e}");
            assert!(p.message.contains(says), "{text}: {e}");
        }
        // At the minimums, all accepted.
        load_str(
            "probe_files: []\nprobes:\n  - {name: r, kind: redis, every: 100ms}\n  - {name: w, kind: http_health, url: 'http://x/', every: 1s}\ncrosscheck:\n  every: 100ms\n  max_staleness: 1s\nhistory:\n  retention: 1s\nalerts:\n  evaluation_interval: 100ms\n  resend_delay: 100ms\n",
        )
        .unwrap();
    }

    #[test]
    fn for_zero_is_accepted_as_prometheus_accepts_it() {
        let c = load_str("probe_files: []\nalerts:\n  rules:\n    HealthEndpointDown: {for: 0s}\n").unwrap();
        let rule = c
            .alerts
            .unwrap()
            .rules
            .into_iter()
            .find(|r| r.name.as_str() == "HealthEndpointDown")
            .unwrap();
        assert_eq!(rule.for_, Duration::ZERO);
        assert!(load_str("probe_files: []\nalerts:\n  rules:\n    HealthEndpointDown: {reminder: 0s}\n").is_err());
    }

    #[test]
    fn a_reminder_the_relay_would_swallow_is_refused() {
        let e = load_str("probe_files: []\nalerts:\n  rules:\n    HealthEndpointDown: {reminder: 1m}\nrelay: {dedup_window: 5m}\n")
            .unwrap_err();
        assert_eq!(e.0[0].field.as_deref(), Some("alerts.rules.HealthEndpointDown.reminder"), "{e}");
        assert_eq!(e.0[0].line, Some(4), "{e}");
        assert!(
            load_str("probe_files: []\nalerts:\n  rules:\n    HealthEndpointDown: {reminder: 1m}\nrelay: {dedup_window: 30s}\n").is_ok()
        );
    }

    #[test]
    fn url_errors_hide_password() {
        let e = load_str("probe_files: []\nprobes:\n  - name: r\n    kind: redis\n    url: 'http://u:hunter2@x'\n").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
