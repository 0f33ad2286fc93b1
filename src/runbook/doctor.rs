//! `lookout doctor`: the guide's "troubleshooting data gaps" list, each item
//! a check that says what it found and the one thing to do about it.
//!
//! A gap on the dashboard has one cause among a handful, and each leaves a
//! trace in a different place: Prometheus's targets (the exporter is down or
//! unreachable), the exporter's own metrics (`redis_up` 0 with
//! `redis_exporter_last_scrape_error` saying why), the exporter's
//! `redis_instance_info` (it reads another Redis than the probes do), the
//! rules API (a rule file that was never loaded), Alertmanager's status (no
//! route for critical alerts), the clocks, and lookout's own stores. Each
//! check reads one of them. A check whose input is missing because an
//! earlier one failed says "could not tell" rather than failing again, so
//! the first ✘ is the cause and not one of its echoes.
//!
//! The checks read; none writes anything anywhere.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::grafana::{self, GrafanaConfig};
use crate::config::Endpoint;
use crate::probe::{ProbeConfig, ProbeSpec, unix_now};

/// The guide's alert rules on the exporter's metrics: both must be loaded,
/// healthy and evaluated lately.
pub const GUIDE_RULES: [&str; 2] = ["RedisConnectionExhaustion", "RedisHighMemoryUsage"];

/// A clock further off than this from lookout's fails: NTP keeps honest
/// clocks within milliseconds, and the cross-check corrects Prometheus's
/// sample times only beyond one second.
pub const MAX_SKEW: f64 = 1.0;

/// The default per-request timeout when the configuration gives none.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The scrape interval assumed when the targets API gives none (Prometheus's
/// default).
const DEFAULT_SCRAPE_INTERVAL: f64 = 15.0;

/// A delivery waiting longer than this is a backlog, not a queue.
const BACKLOG_AGE: f64 = 600.0;

/// One check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// ✔: what the guide expects.
    Pass,
    /// ✘: a cause of a data gap, or of alerts that do not arrive.
    Fail,
    /// ?: could not tell (an earlier check failed, a source did not answer).
    Unknown,
    /// –: not applicable to this configuration (no Grafana, relay off).
    Skipped,
}

impl Status {
    /// The checklist's mark.
    pub fn mark(self) -> &'static str {
        match self {
            Status::Pass => "✔",
            Status::Fail => "✘",
            Status::Unknown => "?",
            Status::Skipped => "–",
        }
    }
}

/// One check: its name, outcome, what it found and, unless it passed, the
/// one thing to do. The JSON form is a stable interface.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Dotted name, e.g. `exporter.redis`.
    pub name: String,
    /// The probe the check is about, when there are several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The outcome.
    pub status: Status,
    /// What the check found, for a person.
    pub found: String,
    /// What to do, when it did not pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn new(name: &str, status: Status, found: impl Into<String>, fix: Option<String>) -> Check {
        Check {
            name: name.into(),
            subject: None,
            status,
            found: found.into(),
            fix,
        }
    }
    fn pass(name: &str, found: impl Into<String>) -> Check {
        Check::new(name, Status::Pass, found, None)
    }
    fn fail(name: &str, found: impl Into<String>, fix: impl Into<String>) -> Check {
        Check::new(name, Status::Fail, found, Some(fix.into()))
    }
    fn unknown(name: &str, found: impl Into<String>) -> Check {
        Check::new(name, Status::Unknown, found, None)
    }
    fn skipped(name: &str, found: impl Into<String>) -> Check {
        Check::new(name, Status::Skipped, found, None)
    }
    fn about(mut self, subject: Option<&str>) -> Check {
        self.subject = subject.map(str::to_string);
        self
    }
}

/// The exit status of a list of checks: 0 none failed or was unknown, 1
/// one failed, 2 none failed but one could not tell.
pub fn exit_code(checks: &[Check]) -> u8 {
    if checks.iter().any(|c| c.status == Status::Fail) {
        1
    } else if checks.iter().any(|c| c.status == Status::Unknown) {
        2
    } else {
        0
    }
}

/// What the checks read of the configuration, kept apart from the whole
/// configuration so the runbooks do not depend on how it is put together.
pub struct Inputs<'a> {
    /// Every probe.
    pub probes: &'a [ProbeConfig],
    /// The Redis the others are compared with (the cross-check's reference).
    pub reference: Option<&'a str>,
    /// The top-level `prometheus:`.
    pub prometheus: Option<&'a Endpoint>,
    /// The top-level `alertmanager:`.
    pub alertmanager: Option<&'a Endpoint>,
    /// Whether the relay is on (then Alertmanager must send to it).
    pub relay_on: bool,
    /// The daemon's listener (the webhook's port).
    pub listen: SocketAddr,
    /// Where the daemon keeps history and outbox.
    pub data_dir: &'a Path,
    /// The relay's de-duplication window, to open the outbox.
    pub dedup_window: Duration,
    /// Grafana, when configured.
    pub grafana: Option<&'a GrafanaConfig>,
    /// Where compose files are looked for (the working directory).
    pub workdir: &'a Path,
}

/// Runs every check, in the checklist's order.
pub async fn run(inputs: &Inputs<'_>) -> Vec<Check> {
    let mut out = Vec::new();
    let prom = prometheus_api(inputs.probes, inputs.prometheus);
    let prom_time = match &prom {
        None => {
            out.push(Check::skipped(
                "prometheus.reachable",
                "no Prometheus configured (no `prometheus:` section and no `kind: prometheus` probe)",
            ));
            None
        }
        Some(api) => {
            let (check, time) = reachable(api).await;
            out.push(check);
            time
        }
    };
    let up = prom_time.is_some();
    let redis = redis_facts(inputs).await;
    for scrape in scrapes(inputs) {
        let Some(api) = prom.as_ref().filter(|_| up) else {
            for name in [
                "exporter.target",
                "exporter.redis",
                "exporter.same_redis",
                "prometheus.samples_fresh",
            ] {
                if prom.is_some() {
                    out.push(Check::unknown(name, "Prometheus did not answer").about(scrape.probe.as_deref()));
                }
            }
            continue;
        };
        out.extend(
            exporter_checks(api, &scrape, redis.as_ref().ok())
                .await
                .into_iter()
                .map(|c| c.about(scrape.probe.as_deref())),
        );
    }
    match prom.as_ref().filter(|_| up) {
        Some(api) => out.extend(rules(api, prom_time.unwrap_or_else(unix_now)).await),
        None => {
            for r in GUIDE_RULES {
                let name = format!("rule.{r}");
                out.push(match prom {
                    Some(_) => Check::unknown(&name, "Prometheus did not answer"),
                    None => Check::skipped(&name, "no Prometheus configured"),
                });
            }
        }
    }
    out.extend(alertmanager(inputs, prom.as_ref().filter(|_| up)).await);
    let mut grafana_checks = Vec::new();
    let mut grafana_skew = None;
    match inputs.grafana {
        None => grafana_checks.push(Check::skipped("grafana", "no `grafana:` section")),
        Some(g) => {
            let o = grafana::check(g).await;
            grafana_skew = o.skew;
            for (name, f) in [("grafana.datasource", o.datasource), ("grafana.dashboard", o.dashboard)] {
                grafana_checks.push(match f {
                    Ok(found) => Check::pass(name, found),
                    Err((found, fix)) => Check::fail(name, found, fix),
                });
            }
        }
    }
    out.push(clocks(prom_time, prom.is_some(), &redis, grafana_skew));
    out.push(compose(inputs.workdir, up));
    out.extend(own_state(inputs).await);
    out.push(reload(inputs.listen).await);
    out.extend(grafana_checks);
    out
}

/// The checklist as text: one line per check, the fix indented under it.
pub fn render_text(checks: &[Check]) -> String {
    let label = |c: &Check| match &c.subject {
        Some(s) => format!("{} [{s}]", c.name),
        None => c.name.clone(),
    };
    let width = checks.iter().map(|c| label(c).chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for c in checks {
        let l = label(c);
        let pad = " ".repeat(width - l.chars().count());
        out.push_str(&format!("{} {l}{pad}  {}\n", c.status.mark(), c.found));
        if let Some(fix) = c.fix.as_deref().filter(|f| !f.is_empty()) {
            out.push_str(&format!("  {}  fix: {fix}\n", " ".repeat(width)));
        }
    }
    let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
    out.push_str(&format!(
        "\n{} passed, {} failed, {} could not tell, {} not applicable\n",
        count(Status::Pass),
        count(Status::Fail),
        count(Status::Unknown),
        count(Status::Skipped)
    ));
    out
}

/// A JSON API (Prometheus's or Alertmanager's) at a base URL.
pub struct Api {
    client: reqwest::Client,
    base: url::Url,
}

impl Api {
    /// A client for `base` with `timeout` per request.
    pub fn new(base: &url::Url, timeout: Duration) -> Result<Api, String> {
        let client = crate::http::client_builder(timeout)
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let mut base = base.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(Api { client, base })
    }

    /// GET `path` (relative to the base) as JSON: its status and body.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<(u16, serde_json::Value), String> {
        let mut url = self.base.join(path).map_err(|e| format!("invalid URL: {e}"))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let resp = self.client.get(url).send().await.map_err(|e| crate::http::describe(&e))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| crate::http::describe(&e))?;
        Ok((status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))))
    }

    /// A Prometheus API call's `data`, or why there is none.
    pub async fn data(&self, path: &str, query: &[(&str, &str)]) -> Result<serde_json::Value, String> {
        let (status, body) = self.get(path, query).await?;
        if body["status"] != "success" {
            let why = body["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {status}"));
            return Err(format!("{path}: {why}"));
        }
        Ok(body["data"].clone())
    }

    /// An instant query's samples: labels, value and evaluation time.
    pub async fn query(&self, q: &str) -> Result<Vec<Sample>, String> {
        let data = self.data("api/v1/query", &[("query", q)]).await?;
        let vec = match data["resultType"].as_str() {
            Some("vector") => data["result"].as_array().cloned().unwrap_or_default(),
            Some("scalar") => vec![serde_json::json!({"metric": {}, "value": data["result"]})],
            _ => Vec::new(),
        };
        Ok(vec
            .iter()
            .filter_map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
                    .unwrap_or_default();
                Some(Sample {
                    labels,
                    at: s["value"][0].as_f64()?,
                    value: s["value"][1].as_str()?.parse().ok()?,
                })
            })
            .collect())
    }
}

/// One sample of an instant query.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
    /// The evaluation time, on Prometheus's clock.
    pub at: f64,
}

/// The Prometheus lookout queries: the top-level one, else the first
/// `kind: prometheus` probe's.
pub fn prometheus_api(probes: &[ProbeConfig], top: Option<&Endpoint>) -> Option<Api> {
    let (url, timeout) = match top {
        Some(e) => (e.url.clone(), e.timeout),
        None => probes.iter().find_map(|p| match &p.spec {
            ProbeSpec::Prometheus(s) => Some((s.url.clone(), p.timeout)),
            _ => None,
        })?,
    };
    Api::new(&url, timeout.min(TIMEOUT)).ok()
}

/// Prometheus answers ready; its clock (from `time()`) for the skew and
/// freshness checks.
async fn reachable(api: &Api) -> (Check, Option<f64>) {
    const NAME: &str = "prometheus.reachable";
    let fix = "start Prometheus, or correct `prometheus.url` (and the probes' `url`)";
    match api.get("-/ready", &[]).await {
        Err(e) => {
            return (
                Check::fail(
                    NAME,
                    format!("Prometheus at {} did not answer: {e}", crate::config::redact_url(api.base.as_str())),
                    fix,
                ),
                None,
            );
        }
        Ok((s, _)) if s != 200 => {
            return (
                Check::fail(
                    NAME,
                    format!(
                        "Prometheus at {} is not ready (HTTP {s})",
                        crate::config::redact_url(api.base.as_str())
                    ),
                    "wait for it to finish starting (replaying its WAL), or read its log",
                ),
                None,
            );
        }
        Ok(_) => {}
    }
    match api.query("time()").await {
        Ok(s) if !s.is_empty() => (
            Check::pass(
                NAME,
                format!(
                    "Prometheus at {} is ready and answers queries",
                    crate::config::redact_url(api.base.as_str())
                ),
            ),
            Some(s[0].value),
        ),
        Ok(_) => (Check::fail(NAME, "time() returned nothing", fix), None),
        Err(e) => (Check::fail(NAME, format!("Prometheus is ready but a query failed: {e}"), fix), None),
    }
}

/// A Prometheus probe's view of the exporter: which series are its.
struct Scrape {
    probe: Option<String>,
    selector: String,
}

fn scrapes(inputs: &Inputs<'_>) -> Vec<Scrape> {
    let mut out: Vec<Scrape> = inputs
        .probes
        .iter()
        .filter_map(|p| match &p.spec {
            ProbeSpec::Prometheus(s) => Some(Scrape {
                probe: Some(p.name.clone()),
                selector: s.selector.clone(),
            }),
            _ => None,
        })
        .collect();
    if out.is_empty() && inputs.prometheus.is_some() {
        out.push(Scrape {
            probe: None,
            selector: "{}".into(),
        });
    }
    if out.len() == 1 {
        out[0].probe = None;
    }
    out
}

/// The equality matchers of a selector (`{job="redis",instance=~"x"}` →
/// `job=redis`): what a target's labels must carry to be this exporter.
fn equalities(selector: &str) -> Vec<(String, String)> {
    let inner = selector.trim().trim_start_matches('{').trim_end_matches('}');
    let mut out = Vec::new();
    for part in inner.split(',') {
        let Some((k, v)) = part.split_once('=') else { continue };
        let k = k.trim();
        if k.ends_with('!') || v.starts_with('~') || k.is_empty() {
            continue;
        }
        out.push((k.to_string(), v.trim().trim_matches('"').to_string()));
    }
    out
}

/// Redis's own answers: `run_id`, `tcp_port`, and its clock.
#[derive(Debug, Clone)]
struct RedisFacts {
    probe: String,
    run_id: String,
    port: String,
    /// Redis's clock minus lookout's, seconds.
    skew: f64,
}

async fn redis_facts(inputs: &Inputs<'_>) -> Result<RedisFacts, String> {
    let p = inputs
        .probes
        .iter()
        .find(|p| Some(p.name.as_str()) == inputs.reference && matches!(p.spec, ProbeSpec::Redis(_)))
        .or_else(|| inputs.probes.iter().find(|p| matches!(p.spec, ProbeSpec::Redis(_))))
        .ok_or_else(|| "no `kind: redis` probe".to_string())?;
    let ProbeSpec::Redis(spec) = &p.spec else {
        return Err("no `kind: redis` probe".into());
    };
    // The probe's own client: its TLS CA and client certificate included.
    let client = crate::probe::redis::client_for(spec)?;
    let mut conn = super::flush::connect(&client, &spec.display_url, p.timeout.min(TIMEOUT))
        .await
        .map_err(|e| e.to_string())?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await
        .map_err(|e| crate::config::redact_urls_in(&e.to_string()))?;
    let before = unix_now();
    let (secs, micros): (f64, f64) = redis::cmd("TIME")
        .query_async(&mut conn)
        .await
        .map_err(|e| crate::config::redact_urls_in(&e.to_string()))?;
    let after = unix_now();
    let info = crate::probe::redis::parse_info(&info);
    Ok(RedisFacts {
        probe: p.name.clone(),
        run_id: info.get("run_id").cloned().unwrap_or_default(),
        port: info.get("tcp_port").cloned().unwrap_or_default(),
        skew: secs + micros / 1e6 - (before + after) / 2.0,
    })
}

/// The exporter's target, its reach of Redis, which Redis, and how fresh.
async fn exporter_checks(api: &Api, scrape: &Scrape, redis: Option<&RedisFacts>) -> Vec<Check> {
    let sel = &scrape.selector;
    let mut out = Vec::new();
    // The target: by the selector's equalities, else by the job and instance
    // of the series the selector picks.
    let targets = match api.data("api/v1/targets", &[("state", "active")]).await {
        Ok(d) => d["activeTargets"].as_array().cloned().unwrap_or_default(),
        Err(e) => {
            out.push(Check::unknown("exporter.target", format!("the targets API failed: {e}")));
            Vec::new()
        }
    };
    let mut wanted = equalities(sel);
    if wanted.is_empty()
        && let Ok(s) = api.query(&format!("redis_up{sel}")).await
        && let Some(first) = s.first()
    {
        for k in ["job", "instance"] {
            if let Some(v) = first.labels.get(k) {
                wanted.push((k.to_string(), v.clone()));
            }
        }
    }
    let mine: Vec<&serde_json::Value> = targets
        .iter()
        .filter(|t| !wanted.is_empty() && wanted.iter().all(|(k, v)| t["labels"][k].as_str() == Some(v)))
        .collect();
    let interval = mine
        .first()
        .and_then(|t| t["scrapeInterval"].as_str())
        .and_then(|s| humantime::parse_duration(s).ok())
        .map(|d| d.as_secs_f64())
        .unwrap_or(DEFAULT_SCRAPE_INTERVAL);
    let target_up = if !out.is_empty() {
        false
    } else if mine.is_empty() {
        out.push(Check::fail(
            "exporter.target",
            format!("no scrape target matches the selector `{sel}` ({} active targets)", targets.len()),
            "add the exporter to Prometheus's scrape_configs, or correct the probe's `selector`",
        ));
        false
    } else {
        let down: Vec<String> = mine
            .iter()
            .filter(|t| t["health"] == "down")
            .map(|t| {
                format!(
                    "{} is {}: {}",
                    t["scrapeUrl"].as_str().unwrap_or("?"),
                    t["health"].as_str().unwrap_or("?"),
                    t["lastError"].as_str().unwrap_or("")
                )
            })
            .collect();
        if mine.iter().all(|t| t["health"] == "unknown") {
            out.push(Check::unknown("exporter.target", "Prometheus has not scraped the exporter yet"));
            false
        } else if down.is_empty() {
            let urls: Vec<&str> = mine.iter().filter_map(|t| t["scrapeUrl"].as_str()).collect();
            out.push(Check::pass("exporter.target", format!("{} up", urls.join(", "))));
            true
        } else {
            out.push(Check::fail(
                "exporter.target",
                down.join("; "),
                "start redis_exporter, or correct its address in Prometheus's scrape_configs",
            ));
            false
        }
    };
    if !target_up {
        for name in ["exporter.redis", "exporter.same_redis", "prometheus.samples_fresh"] {
            out.push(Check::unknown(name, "the exporter's target is not scraped: nothing fresh to read"));
        }
        return out;
    }
    // The exporter reaching Redis.
    let reaches = match api.query(&format!("redis_up{sel}")).await {
        Err(e) => {
            out.push(Check::unknown("exporter.redis", format!("query failed: {e}")));
            false
        }
        Ok(s) if s.is_empty() => {
            out.push(Check::fail(
                "exporter.redis",
                format!("no `redis_up{sel}` series: the target is not redis_exporter"),
                "point the scrape target at redis_exporter's port (9121 by default)",
            ));
            false
        }
        Ok(s) if s.iter().all(|x| x.value == 1.0) => {
            out.push(Check::pass("exporter.redis", "redis_up is 1: the exporter reaches Redis"));
            true
        }
        Ok(_) => {
            let why = api
                .query(&format!("redis_exporter_last_scrape_error{sel}"))
                .await
                .ok()
                .and_then(|s| s.into_iter().find_map(|x| x.labels.get("err").filter(|e| !e.is_empty()).cloned()))
                .unwrap_or_else(|| "no message".into());
            out.push(Check::fail(
                "exporter.redis",
                format!("redis_up is 0; the exporter's last error: {why}"),
                exporter_fix(&why),
            ));
            false
        }
    };
    // Which Redis it reads.
    if !reaches {
        out.push(Check::unknown("exporter.same_redis", "the exporter does not reach a Redis"));
    } else {
        match (api.query(&format!("redis_instance_info{sel}")).await, redis) {
            (Err(e), _) => out.push(Check::unknown("exporter.same_redis", format!("query failed: {e}"))),
            (_, None) => out.push(Check::unknown(
                "exporter.same_redis",
                "lookout could not read Redis itself to compare (see clock.skew)",
            )),
            (Ok(s), Some(r)) => {
                let seen: Vec<(String, String)> = s
                    .iter()
                    .map(|x| {
                        (
                            x.labels.get("run_id").cloned().unwrap_or_default(),
                            x.labels.get("tcp_port").cloned().unwrap_or_default(),
                        )
                    })
                    .collect();
                if seen.is_empty() {
                    out.push(Check::unknown(
                        "exporter.same_redis",
                        format!("no `redis_instance_info{sel}` series"),
                    ));
                } else if seen.iter().all(|(id, _)| *id == r.run_id) {
                    out.push(Check::pass(
                        "exporter.same_redis",
                        format!(
                            "the exporter reads the Redis the `{}` probe reads (run_id {}…, port {})",
                            r.probe,
                            short(&r.run_id),
                            r.port
                        ),
                    ));
                } else {
                    let other: Vec<String> = seen
                        .iter()
                        .filter(|(id, _)| *id != r.run_id)
                        .map(|(id, p)| format!("run_id {}… on port {p}", short(id)))
                        .collect();
                    out.push(Check::fail(
                        "exporter.same_redis",
                        format!(
                            "Prometheus's series come from another Redis ({}) than the `{}` probe reads (run_id {}… on port {})",
                            other.join(", "),
                            r.probe,
                            short(&r.run_id),
                            r.port
                        ),
                        "point the scrape target (or the exporter's --redis.addr) at the Redis the health endpoints and probes use",
                    ));
                }
            }
        }
    }
    // Freshness: the newest sample's age on Prometheus's own clock.
    match api.query(&format!("time() - timestamp(redis_up{sel})")).await {
        Err(e) => out.push(Check::unknown("prometheus.samples_fresh", format!("query failed: {e}"))),
        Ok(s) if s.is_empty() => out.push(Check::fail(
            "prometheus.samples_fresh",
            "no recent sample of redis_up (stale for more than 5 minutes)",
            "check the target in Prometheus's /targets page",
        )),
        Ok(s) => {
            let age = s.iter().map(|x| x.value).fold(0.0, f64::max);
            let limit = 3.0 * interval;
            if age <= limit {
                out.push(Check::pass(
                    "prometheus.samples_fresh",
                    format!("newest sample {age:.1}s old (scrape interval {interval}s)"),
                ));
            } else {
                out.push(Check::fail(
                    "prometheus.samples_fresh",
                    format!("newest sample {age:.1}s old, more than three scrape intervals ({limit}s)"),
                    "Prometheus is not keeping up with its scrapes: read its log, and the target's scrape duration against its timeout",
                ));
            }
        }
    }
    out
}

/// The first characters of a `run_id`, enough to tell two apart.
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// The fix for an exporter that cannot reach Redis, by its error. An
/// authentication failure is reported by redis_exporter 1.45 as `dial
/// redis: unknown network redis` (measured with a wrong `--redis.password`):
/// it then retries the address as a network name.
fn exporter_fix(err: &str) -> String {
    let e = err.to_ascii_lowercase();
    if e.contains("auth") || e.contains("wrongpass") || e.contains("password") || e.contains("unknown network") {
        "give the exporter Redis's password (REDIS_PASSWORD or --redis.password-file) and user, as Redis's `requirepass`/ACL expect".into()
    } else if e.contains("no such host") || e.contains("lookup") {
        "the exporter cannot resolve Redis's host name: correct --redis.addr (REDIS_ADDR) or the DNS name".into()
    } else if e.contains("refused") {
        "nothing listens at the exporter's --redis.addr: start Redis or correct the address".into()
    } else if e.contains("timeout") || e.contains("i/o") {
        "Redis does not answer the exporter in time: check the network path and Redis's latency".into()
    } else {
        "check the exporter's --redis.addr and credentials against the Redis it should read".into()
    }
}

/// The guide's rules: loaded, healthy, evaluated lately (on Prometheus's
/// clock, `now`).
async fn rules(api: &Api, now: f64) -> Vec<Check> {
    let groups = match api.data("api/v1/rules", &[("type", "alert")]).await {
        Ok(d) => d["groups"].as_array().cloned().unwrap_or_default(),
        Err(e) => {
            return GUIDE_RULES
                .iter()
                .map(|r| Check::unknown(&format!("rule.{r}"), format!("the rules API failed: {e}")))
                .collect();
        }
    };
    GUIDE_RULES
        .iter()
        .map(|name| {
            let check = format!("rule.{name}");
            let found = groups.iter().find_map(|g| {
                g["rules"].as_array()?.iter().find(|r| r["name"] == *name).map(|r| {
                    (
                        g["file"].as_str().unwrap_or("").to_string(),
                        g["interval"].as_f64().unwrap_or(60.0),
                        r.clone(),
                    )
                })
            });
            let Some((file, interval, r)) = found else {
                return Check::fail(
                    &check,
                    format!("`{name}` is not loaded ({} rule groups)", groups.len()),
                    "add deploy/prometheus/alerts/redis.rules.yml to Prometheus's rule_files and reload it (POST /-/reload or SIGHUP)",
                );
            };
            if r["health"] != "ok" {
                return Check::fail(
                    &check,
                    format!(
                        "`{name}` ({file}) is {}: {}",
                        r["health"].as_str().unwrap_or("?"),
                        r["lastError"].as_str().unwrap_or("")
                    ),
                    "fix the rule's expression (promtool check rules) and reload Prometheus",
                );
            }
            let last = r["lastEvaluation"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_micros() as f64 / 1e6);
            match last {
                Some(t) if now - t <= 3.0 * interval + 5.0 => Check::pass(
                    &check,
                    format!(
                        "`{name}` loaded from {file}, healthy, {} ({:.0}s ago)",
                        r["state"].as_str().unwrap_or("?"),
                        (now - t).max(0.0)
                    ),
                ),
                Some(t) => Check::fail(
                    &check,
                    format!(
                        "`{name}` last evaluated {:.0}s ago, more than three intervals ({interval}s)",
                        now - t
                    ),
                    "Prometheus's rule evaluation is falling behind: read its log (prometheus_rule_group_iterations_missed_total)",
                ),
                None => Check::unknown(&check, format!("`{name}` has not been evaluated yet")),
            }
        })
        .collect()
}

/// Alertmanager: reachable, routing critical alerts to a receiver that
/// sends somewhere, and sending to lookout's webhook when the relay is on.
async fn alertmanager(inputs: &Inputs<'_>, prom: Option<&Api>) -> Vec<Check> {
    let configured = inputs.alertmanager.map(|e| (e.url.clone(), e.timeout));
    let discovered = match (&configured, prom) {
        (None, Some(api)) => api.data("api/v1/alertmanagers", &[]).await.ok().and_then(|d| {
            let u = d["activeAlertmanagers"][0]["url"].as_str()?;
            let mut url = url::Url::parse(u).ok()?;
            url.set_path("/");
            Some((url, TIMEOUT))
        }),
        _ => None,
    };
    let Some((url, timeout)) = configured.or(discovered) else {
        return vec![Check::skipped(
            "alertmanager.reachable",
            "no `alertmanager:` section and Prometheus names no Alertmanager",
        )];
    };
    let after = |why: &str| ["alertmanager.routes_critical", "alertmanager.lookout_webhook"].map(|n| Check::unknown(n, why.to_string()));
    let shown = crate::config::redact_url(url.as_str());
    let api = match Api::new(&url, timeout.min(TIMEOUT)) {
        Ok(a) => a,
        Err(e) => return vec![Check::unknown("alertmanager.reachable", e)],
    };
    let status = match api.get("api/v2/status", &[]).await {
        Ok((200, body)) => body,
        Ok((s, _)) => {
            let mut v = vec![Check::fail(
                "alertmanager.reachable",
                format!("Alertmanager at {shown} answered HTTP {s}"),
                "check the Alertmanager URL (it must be the API's base, not a path under it)",
            )];
            v.extend(after("Alertmanager did not answer"));
            return v;
        }
        Err(e) => {
            let mut v = vec![Check::fail(
                "alertmanager.reachable",
                format!("Alertmanager at {shown} did not answer: {e}"),
                "start Alertmanager, or correct `alertmanager.url` (or Prometheus's alerting.alertmanagers)",
            )];
            v.extend(after("Alertmanager did not answer"));
            return v;
        }
    };
    let mut out = vec![Check::pass(
        "alertmanager.reachable",
        format!(
            "Alertmanager {} at {shown} answers",
            status["versionInfo"]["version"].as_str().unwrap_or("")
        ),
    )];
    let config: serde_json::Value = match status["config"]["original"]
        .as_str()
        .map(serde_saphyr::from_str::<serde_json::Value>)
    {
        Some(Ok(c)) => c,
        _ => {
            out.extend(after("Alertmanager's status has no readable configuration"));
            return out;
        }
    };
    let labels: BTreeMap<String, String> = [("alertname", GUIDE_RULES[0]), ("severity", "critical")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let receiver = route(&config["route"], &labels);
    let receivers = config["receivers"].as_array().cloned().unwrap_or_default();
    let integrations = |name: &str| -> usize {
        receivers
            .iter()
            .find(|r| r["name"] == name)
            .and_then(|r| r.as_object())
            .map(|r| {
                r.iter()
                    .filter(|(k, v)| k.ends_with("_configs") && v.as_array().is_some_and(|a| !a.is_empty()))
                    .count()
            })
            .unwrap_or(0)
    };
    out.push(match receiver {
        None => Check::fail("alertmanager.routes_critical", "the configuration has no route", "give Alertmanager a `route:` with a receiver"),
        Some(r) if integrations(&r) > 0 => Check::pass("alertmanager.routes_critical", format!("a critical {} goes to the receiver `{r}`", GUIDE_RULES[0])),
        Some(r) => Check::fail(
            "alertmanager.routes_critical",
            format!("a critical {} goes to the receiver `{r}`, which has no integration: it reaches nobody", GUIDE_RULES[0]),
            "route `severity=\"critical\"` to a receiver with a webhook (lookout's relay), Slack, PagerDuty or email config (deploy/alertmanager/alertmanager.yml)",
        ),
    });
    if !inputs.relay_on {
        out.push(Check::skipped("alertmanager.lookout_webhook", "the relay is off"));
        return out;
    }
    let port = inputs.listen.port();
    let hooks: Vec<(String, String)> = receivers
        .iter()
        .flat_map(|r| {
            let name = r["name"].as_str().unwrap_or("").to_string();
            r["webhook_configs"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(move |w| Some((name.clone(), w["url"].as_str()?.to_string())))
        })
        .collect();
    let ours = hooks.iter().find(|(_, u)| {
        url::Url::parse(u).is_ok_and(|u| u.path().trim_end_matches('/') == "/webhook" && u.port_or_known_default() == Some(port))
    });
    out.push(match ours {
        Some((r, _)) => Check::pass(
            "alertmanager.lookout_webhook",
            format!("the receiver `{r}` sends to lookout's /webhook (port {port})"),
        ),
        None => Check::fail(
            "alertmanager.lookout_webhook",
            format!(
                "no receiver sends to lookout's /webhook on port {port} ({} webhook configs)",
                hooks.len()
            ),
            format!(
                "add a receiver with `webhook_configs: [{{url: http://<lookout host>:{port}/webhook}}]` and route critical alerts to it"
            ),
        ),
    });
    out
}

/// The receiver Alertmanager's routing tree gives `labels` (the first
/// matching route at each level; `continue` is not followed, the first
/// receiver is what matters here).
fn route(node: &serde_json::Value, labels: &BTreeMap<String, String>) -> Option<String> {
    let receiver = node["receiver"].as_str()?.to_string();
    for child in node["routes"].as_array().into_iter().flatten() {
        if matches(child, labels) {
            let mut c = child.clone();
            if c["receiver"].is_null() {
                c["receiver"] = receiver.clone().into();
            }
            return route(&c, labels);
        }
    }
    Some(receiver)
}

/// Whether a route's `match`, `match_re` and `matchers` all hold.
fn matches(route: &serde_json::Value, labels: &BTreeMap<String, String>) -> bool {
    let get = |k: &str| labels.get(k).map(String::as_str).unwrap_or("");
    let re = |pattern: &str, v: &str| regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|r| r.is_match(v));
    let eq = route["match"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| v.as_str() == Some(get(k))));
    let rx = route["match_re"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| re(v.as_str().unwrap_or(""), get(k))));
    let ms = route["matchers"].as_array().is_none_or(|a| {
        a.iter().all(|m| {
            let s = m.as_str().unwrap_or("");
            for op in ["!=", "=~", "!~", "="] {
                if let Some((k, v)) = s.split_once(op) {
                    let (k, v) = (k.trim(), v.trim().trim_matches('"'));
                    return match op {
                        "=" => get(k) == v,
                        "!=" => get(k) != v,
                        "=~" => re(v, get(k)),
                        _ => !re(v, get(k)),
                    };
                }
            }
            false
        })
    });
    eq && rx && ms
}

/// Prometheus's, Redis's and Grafana's clocks against lookout's.
/// Grafana's is read from its `Date` header, whole seconds: it is allowed
/// a second more. A clock that could not be read makes the check "could
/// not tell", unless another is already off.
fn clocks(prom_time: Option<f64>, configured: bool, redis: &Result<RedisFacts, String>, grafana: Option<f64>) -> Check {
    const NAME: &str = "clock.skew";
    let now = unix_now();
    let mut parts = Vec::new();
    let mut missing = Vec::new();
    let mut worst: f64 = 0.0;
    if let Some(g) = grafana {
        worst = worst.max((g.abs() - 1.0).max(0.0));
        parts.push(format!("Grafana {g:+.0}s"));
    }
    match prom_time {
        // The query's evaluation time was read a moment ago: the time since
        // is well under the margin.
        Some(t) => {
            let skew = t - now;
            worst = worst.max(skew.abs());
            parts.push(format!("Prometheus {skew:+.3}s"));
        }
        None if configured => missing.push("Prometheus did not answer".to_string()),
        None => {}
    }
    match redis {
        Ok(r) => {
            worst = worst.max(r.skew.abs());
            parts.push(format!("Redis {:+.3}s", r.skew));
        }
        Err(e) => missing.push(format!("Redis could not be read: {e}")),
    }
    let mut found = if parts.is_empty() {
        String::from("no clock to compare")
    } else {
        format!("against lookout's clock: {}", parts.join(", "))
    };
    if !missing.is_empty() {
        found = format!("{found}; {}", missing.join("; "));
    }
    if worst > MAX_SKEW {
        Check::fail(NAME, found, "synchronise the clocks (chrony or systemd-timesyncd on every host)")
    } else if !missing.is_empty() || parts.is_empty() {
        Check::unknown(NAME, found)
    } else {
        Check::pass(NAME, found)
    }
}

/// The profile the compose examples put the monitoring services behind.
pub const MONITORING_PROFILE: &str = "cache-monitoring";

/// A compose file in the working directory that puts the monitoring
/// services behind [`MONITORING_PROFILE`]: `docker compose up` without
/// `--profile` starts Redis alone, the commonest cause of "No data" on a
/// development machine.
fn compose(dir: &Path, prometheus_up: bool) -> Check {
    const NAME: &str = "compose.profile";
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains("compose") && (n.ends_with(".yml") || n.ends_with(".yaml")))
        })
        .collect();
    files.sort();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else { continue };
        let Ok(doc) = serde_saphyr::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let behind: Vec<String> = doc["services"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, s)| s["profiles"].as_array().is_some_and(|p| p.iter().any(|x| x == MONITORING_PROFILE)))
            .map(|(n, _)| n.clone())
            .collect();
        if behind.is_empty() {
            continue;
        }
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        return if prometheus_up {
            Check::pass(
                NAME,
                format!(
                    "{name} puts {} behind the `{MONITORING_PROFILE}` profile, and Prometheus answers",
                    behind.join(", ")
                ),
            )
        } else {
            Check::fail(
                NAME,
                format!(
                    "{name} puts {} behind the `{MONITORING_PROFILE}` profile, and Prometheus does not answer: they were started without it",
                    behind.join(", ")
                ),
                format!("docker compose -f {name} --profile {MONITORING_PROFILE} up -d"),
            )
        };
    }
    Check::skipped(
        NAME,
        format!("no compose file with a `{MONITORING_PROFILE}` profile in {}", dir.display()),
    )
}

/// The daemon's last configuration reload, from its own `/metrics` at the
/// configured listen address.
async fn reload(listen: SocketAddr) -> Check {
    const NAME: &str = "lookout.config_reload";
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let Ok(base) = url::Url::parse(&format!("http://{addr}/")) else {
        return Check::unknown(NAME, format!("cannot make a URL of {addr}"));
    };
    let Ok(api) = Api::new(&base, Duration::from_secs(2)) else {
        return Check::unknown(NAME, "cannot build an HTTP client");
    };
    let text = match api.get("metrics", &[]).await {
        Ok((200, serde_json::Value::String(t))) => t,
        _ => return Check::skipped(NAME, format!("no daemon answers at {addr} (not running on this host?)")),
    };
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    match value("lookout_config_last_reload_successful") {
        Some(1.0) => {
            let at = value("lookout_config_last_reload_success_timestamp_seconds")
                .map(|t| {
                    format!(
                        ", last at {}",
                        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs_f64(t.max(0.0)))
                    )
                })
                .unwrap_or_default();
            Check::pass(NAME, format!("the daemon at {addr} runs its configuration file as loaded{at}"))
        }
        Some(_) => Check::fail(
            NAME,
            format!("the daemon at {addr} rejected its last reload: it still runs the configuration before it"),
            "run `lookout config check` on the file, fix what it names, then reload (SIGHUP)",
        ),
        None => Check::unknown(NAME, format!("{addr}/metrics has no lookout_config_last_reload_successful")),
    }
}

/// lookout's own stores: the relay's backlog and dead letters, the history.
async fn own_state(inputs: &Inputs<'_>) -> Vec<Check> {
    let dir = inputs.data_dir.to_path_buf();
    let history = dir.join(crate::store::HISTORY_FILE);
    let mut out = vec![match std::fs::metadata(&history) {
        Ok(m) => Check::pass(
            "lookout.history",
            format!("{} holds {}", history.display(), super::flush::bytes(m.len())),
        ),
        Err(_) => Check::skipped(
            "lookout.history",
            format!("no history at {} (the daemon has not run with this data_dir)", history.display()),
        ),
    }];
    if !inputs.relay_on {
        out.push(Check::skipped("lookout.outbox", "the relay is off"));
        return out;
    }
    if !dir.join(crate::relay::outbox::OUTBOX_FILE).is_file() {
        out.push(Check::skipped("lookout.outbox", format!("no outbox in {} yet", dir.display())));
        return out;
    }
    let window = inputs.dedup_window;
    let read = tokio::task::spawn_blocking(move || {
        let o = crate::relay::outbox::Outbox::open(&dir, window)?;
        Ok::<_, crate::relay::outbox::OutboxError>((o.queue()?, o.dlq()?.len()))
    })
    .await;
    match read {
        Ok(Ok((queue, dead))) => {
            let now = unix_now();
            let pending: i64 = queue.iter().map(|(_, n, _)| n).sum();
            let oldest = queue.iter().filter_map(|(_, _, t)| *t).fold(f64::INFINITY, f64::min);
            let age = if oldest.is_finite() { now - oldest } else { 0.0 };
            out.push(if age > BACKLOG_AGE {
                Check::fail(
                    "lookout.outbox",
                    format!("{pending} deliveries pending, the oldest {age:.0}s old"),
                    "a destination is failing: `lookout relay dlq list` and the daemon's log name it",
                )
            } else {
                Check::pass("lookout.outbox", format!("{pending} deliveries pending"))
            });
            out.push(if dead > 0 {
                Check::fail(
                    "lookout.dead_letters",
                    format!("{dead} notifications given up on"),
                    "read them with `lookout relay dlq list`; resend with `lookout relay dlq retry` once the destination works",
                )
            } else {
                Check::pass("lookout.dead_letters", "no dead letters")
            });
        }
        Ok(Err(e)) => out.push(Check::unknown("lookout.outbox", format!("cannot read the outbox: {e}"))),
        Err(e) => out.push(Check::unknown("lookout.outbox", format!("cannot read the outbox: {e}"))),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> BTreeMap<String, String> {
        [("alertname", "RedisConnectionExhaustion"), ("severity", "critical")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect()
    }

    #[test]
    fn the_routing_tree_takes_the_first_matching_route() {
        let cfg: serde_json::Value = serde_saphyr::from_str(
            "route:\n  receiver: default\n  routes:\n  - receiver: other\n    matchers: ['alertname=\"LookoutDown\"']\n  - receiver: lookout\n    matchers:\n    - severity=\"critical\"\n",
        )
        .unwrap();
        assert_eq!(route(&cfg["route"], &labels()).as_deref(), Some("lookout"));
        let cfg: serde_json::Value = serde_saphyr::from_str(
            "route:\n  receiver: default\n  routes:\n  - receiver: pager\n    match_re: {severity: 'crit.*'}\n  - receiver: lookout\n    match: {severity: critical}\n",
        )
        .unwrap();
        assert_eq!(route(&cfg["route"], &labels()).as_deref(), Some("pager"));
        let cfg: serde_json::Value =
            serde_saphyr::from_str("route:\n  receiver: default\n  routes:\n  - receiver: x\n    matchers: ['severity!=\"critical\"']\n")
                .unwrap();
        assert_eq!(route(&cfg["route"], &labels()).as_deref(), Some("default"));
    }

    #[test]
    fn only_equalities_of_a_selector_pick_targets() {
        assert_eq!(
            equalities(r#"{job="redis", instance=~"a.*", env!="dev",zone="eu"}"#),
            vec![("job".to_string(), "redis".to_string()), ("zone".to_string(), "eu".to_string())]
        );
        assert!(equalities("{}").is_empty());
    }

    #[test]
    fn exit_code_is_the_worst_outcome() {
        let c = |s| Check::new("x", s, "", None);
        assert_eq!(exit_code(&[c(Status::Pass), c(Status::Skipped)]), 0);
        assert_eq!(exit_code(&[c(Status::Pass), c(Status::Unknown)]), 2);
        assert_eq!(exit_code(&[c(Status::Unknown), c(Status::Fail)]), 1);
    }

    #[test]
    fn an_authentication_failure_asks_for_the_password() {
        assert!(exporter_fix("dial redis: unknown network redis").contains("password"));
        assert!(exporter_fix("dial tcp 127.0.0.1:1: connect: connection refused").contains("nothing listens"));
        assert!(exporter_fix("dial tcp: lookup redis: no such host").contains("resolve"));
    }
}
