//! Synthetic alerts: rules over probe results and cross-check verdicts.
//!
//! Each rule instance (a rule and a probe) moves inactive → pending →
//! firing → resolved with Prometheus's `for:` semantics, and with Gatus's
//! count-based hysteresis on top: pending only after `fail_after`
//! consecutive failing checks, resolved only after `resolve_after`
//! consecutive passing ones, so a flapping endpoint does not page twice a
//! minute.
//!
//! Alerts are pushed to Alertmanager's API the way Prometheus does it
//! (resent every `resend_delay` while firing, `endsAt` four resends ahead so
//! a stopped lookout's alerts expire, resolved alerts resent for 15 minutes).
//! When no Alertmanager is configured, or it cannot be reached, they go
//! straight into lookout's own relay as webhook payloads: an alert about
//! Redis must reach a person even when Alertmanager is down.
//!
//! Nothing is sent inside a maintenance window, nor while lookout itself has
//! lost the network (a `connectivity_target` it cannot reach, or every probe
//! failing to connect at once). Firing state is persisted, so a resolve still
//! goes out after a restart.

pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::alerts::{AlertsConfig, Rule};
use crate::crosscheck::{Report, Verdict};
use crate::metric::Metric;
use crate::probe::ProbeSpec;
use crate::probe::{FailureReason, Observation, unix_now};
use crate::relay::Relay;
use crate::settings::Config;

/// How long a resolved alert keeps being resent (Prometheus: 15m).
const RESOLVED_RETENTION: f64 = 15.0 * 60.0;

/// The state of one rule instance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Instance {
    /// Full label set (alertname, severity, probe, …).
    pub labels: BTreeMap<String, String>,
    /// Rendered annotations.
    pub annotations: BTreeMap<String, String>,
    /// `inactive`, `pending` or `firing`.
    pub state: String,
    /// Consecutive checks with the condition true.
    pub failing: u32,
    /// Consecutive checks with the condition false.
    pub passing: u32,
    /// When it became pending.
    pub pending_since: Option<f64>,
    /// When it fired.
    pub fired_at: Option<f64>,
    /// When it resolved (kept for resending).
    pub resolved_at: Option<f64>,
    /// Last push to Alertmanager.
    pub last_push: Option<f64>,
    /// Last notification through the relay.
    pub last_relay: Option<f64>,
    /// The observation last counted (a check is counted once).
    pub last_check: f64,
}

/// One evaluated condition.
struct Condition {
    key: String,
    probe: String,
    active: bool,
    checked_at: f64,
    value: f64,
    extra: BTreeMap<String, String>,
}

/// What the engine reads each round.
pub struct Inputs<'a> {
    /// The configuration in force.
    pub config: &'a Config,
    /// Latest observation per probe.
    pub latest: &'a BTreeMap<String, Observation>,
    /// Latest cross-check round.
    pub report: Option<&'a Report>,
}

/// The engine.
pub struct Engine {
    instances: HashMap<String, (&'static str, Instance)>,
    am_failing: Option<String>,
    am_checked: f64,
    state_file: PathBuf,
    client: reqwest::Client,
    relay: Option<Arc<Relay>>,
    lost_network: bool,
}

impl Engine {
    /// Loads persisted state from `data_dir/alerts.json`.
    pub fn new(data_dir: &std::path::Path, relay: Option<Arc<Relay>>) -> Engine {
        let state_file = data_dir.join("alerts.json");
        let instances = std::fs::read(&state_file)
            .ok()
            .and_then(|b| serde_json::from_slice::<HashMap<String, (String, Instance)>>(&b).ok())
            .map(|m| {
                m.into_iter()
                    .filter_map(|(k, (rule, inst))| crate::config::alerts::RULES.iter().find(|r| **r == rule).map(|r| (k, (*r, inst))))
                    .collect()
            })
            .unwrap_or_default();
        let client = crate::http::client_builder(Duration::from_secs(10)).build().unwrap_or_default();
        Engine {
            instances,
            am_failing: None,
            am_checked: 0.0,
            state_file,
            client,
            relay,
            lost_network: false,
        }
    }

    /// Current instances (status page, tests).
    pub fn instances(&self) -> Vec<Instance> {
        self.instances.values().map(|(_, i)| i.clone()).collect()
    }

    fn persist(&self) {
        let map: HashMap<&String, (&str, &Instance)> = self.instances.iter().map(|(k, (r, i))| (k, (*r, i))).collect();
        let tmp = self.state_file.with_extension("json.tmp");
        let res = serde_json::to_vec(&map)
            .map_err(|e| e.to_string())
            .and_then(|b| std::fs::write(&tmp, b).map_err(|e| e.to_string()))
            .and_then(|_| std::fs::rename(&tmp, &self.state_file).map_err(|e| e.to_string()));
        if let Err(e) = res {
            tracing::error!(path = %self.state_file.display(), error = %e, "Cannot persist alert state");
        }
    }

    /// One evaluation round.
    pub async fn evaluate(&mut self, cfg: &AlertsConfig, inputs: &Inputs<'_>) {
        let now = unix_now();
        if self.network_lost(cfg, inputs).await {
            if !self.lost_network {
                tracing::warn!("lookout seems to have lost the network: synthetic alerts are held until it is back");
            }
            self.lost_network = true;
            metrics::gauge!("lookout_network_lost").set(1.0);
            return;
        }
        if self.lost_network {
            tracing::info!("Network is back: synthetic alerts resume");
        }
        self.lost_network = false;
        metrics::gauge!("lookout_network_lost").set(0.0);

        let mut changed = false;
        for rule in &cfg.rules {
            for c in conditions(rule, inputs, self.am_failing.as_deref(), self.am_checked) {
                changed |= self.step(rule, c, now);
            }
        }
        let in_maintenance = cfg.maintenance.iter().any(|w| w.contains(now));
        if in_maintenance {
            metrics::gauge!("lookout_maintenance_active").set(1.0);
        } else {
            metrics::gauge!("lookout_maintenance_active").set(0.0);
            changed |= self.send(cfg, inputs, now).await;
        }
        let mut counts: BTreeMap<(&'static str, &'static str), f64> = BTreeMap::new();
        for rule in &cfg.rules {
            for st in ["pending", "firing"] {
                counts.insert((rule.name, st), 0.0);
            }
        }
        for (rule, i) in self.instances.values() {
            let st: &'static str = match i.state.as_str() {
                "pending" => "pending",
                "firing" => "firing",
                _ => continue,
            };
            if let Some(c) = counts.get_mut(&(*rule, st)) {
                *c += 1.0;
            }
        }
        for ((rule, st), n) in counts {
            metrics::gauge!("lookout_alerts", "alertname" => rule, "state" => st).set(n);
        }
        // Forget instances long resolved.
        let before = self.instances.len();
        // (An inactive instance still counting failing checks is kept: its streak is its hysteresis.)
        // An incident is over once Alertmanager no longer hears its resolve and
        // the relay owes no resolve for it.
        self.instances.retain(|_, (_, i)| {
            !(i.state == "inactive"
                && i.failing == 0
                && !relay_owes_resolve(i)
                && i.resolved_at.is_none_or(|r| now - r > RESOLVED_RETENTION))
        });
        if changed || before != self.instances.len() {
            self.persist();
        }
    }

    fn step(&mut self, rule: &Rule, c: Condition, now: f64) -> bool {
        let key = format!("{}/{}", rule.name, c.key);
        let entry = self.instances.entry(key).or_insert_with(|| {
            (
                rule.name,
                Instance {
                    labels: BTreeMap::new(),
                    annotations: BTreeMap::new(),
                    state: "inactive".into(),
                    failing: 0,
                    passing: 0,
                    pending_since: None,
                    fired_at: None,
                    resolved_at: None,
                    last_push: None,
                    last_relay: None,
                    last_check: 0.0,
                },
            )
        });
        let inst = &mut entry.1;
        let before = inst.state.clone();
        if c.checked_at > inst.last_check {
            inst.last_check = c.checked_at;
            if c.active {
                inst.failing += 1;
                inst.passing = 0;
            } else {
                inst.passing += 1;
                inst.failing = 0;
            }
        }
        if c.active {
            let mut labels: BTreeMap<String, String> = [
                ("alertname".to_string(), rule.name.to_string()),
                ("severity".to_string(), rule.severity.clone()),
            ]
            .into();
            if !c.probe.is_empty() {
                labels.insert("probe".into(), c.probe.clone());
            }
            labels.extend(rule.labels.clone());
            inst.labels = labels;
            inst.annotations = render_annotations(rule, &c);
        }
        match inst.state.as_str() {
            "inactive" if c.active && inst.failing >= rule.fail_after => {
                inst.state = "pending".into();
                inst.pending_since = Some(now);
            }
            "pending" if !c.active => {
                inst.state = "inactive".into();
                inst.pending_since = None;
            }
            "firing" if !c.active && inst.passing >= rule.resolve_after => {
                inst.state = "inactive".into();
                inst.resolved_at = Some(now);
                inst.pending_since = None;
                tracing::info!(alert = %rule.name, probe = %c.probe, "Synthetic alert resolved");
            }
            _ => {}
        }
        if inst.state == "pending" && inst.pending_since.is_some_and(|s| now - s >= rule.for_.as_secs_f64()) {
            inst.state = "firing".into();
            inst.fired_at = Some(now);
            inst.resolved_at = None;
            inst.last_push = None;
            inst.last_relay = None;
            tracing::warn!(alert = %rule.name, probe = %c.probe, summary = inst.annotations.get("summary").map(String::as_str).unwrap_or(""), "Synthetic alert firing");
        }
        before != inst.state
    }

    /// Pushes to Alertmanager (or the relay) what is due.
    async fn send(&mut self, cfg: &AlertsConfig, inputs: &Inputs<'_>, now: f64) -> bool {
        let resend = cfg.resend_delay.as_secs_f64();
        let generator = format!("http://{}/", inputs.config.listen);
        let mut batch = Vec::new();
        let mut keys = Vec::new();
        for (k, (_, i)) in &self.instances {
            let due = i.last_push.is_none_or(|t| now - t >= resend);
            if i.state == "firing" && due {
                batch.push(am_alert(i, now + 4.0 * resend, &generator));
                keys.push(k.clone());
            } else if i.state == "inactive"
                && i.fired_at.is_some()
                && i.resolved_at.is_some_and(|r| now - r <= RESOLVED_RETENTION)
                && (due || i.last_push < i.resolved_at)
            {
                batch.push(am_alert(i, i.resolved_at.unwrap_or(now), &generator));
                keys.push(k.clone());
            }
        }
        let mut pushed = false;
        if let Some(am) = &inputs.config.alertmanager {
            self.am_checked = now;
            if batch.is_empty() {
                // Nothing to send: probe Alertmanager's health so that its outage is known.
                let url = am.url.join("-/healthy").ok();
                let ok = match url {
                    Some(u) => self
                        .client
                        .get(u)
                        .timeout(am.timeout)
                        .send()
                        .await
                        .map(|r| r.status().is_success())
                        .unwrap_or(false),
                    None => false,
                };
                self.am_failing = (!ok).then(|| "health check failed".to_string());
            } else {
                let url = am.url.join("api/v2/alerts");
                let res = match url {
                    Ok(u) => self
                        .client
                        .post(u)
                        .timeout(am.timeout)
                        .json(&batch)
                        .send()
                        .await
                        .map_err(|e| crate::http::describe(&e))
                        .and_then(|r| {
                            if r.status().is_success() {
                                Ok(())
                            } else {
                                Err(format!("HTTP {}", r.status()))
                            }
                        }),
                    Err(e) => Err(e.to_string()),
                };
                match res {
                    Ok(()) => {
                        pushed = true;
                        self.am_failing = None;
                        metrics::counter!("lookout_alert_notifications_total", "via" => "alertmanager", "outcome" => "success")
                            .increment(batch.len() as u64);
                        for k in &keys {
                            if let Some((_, i)) = self.instances.get_mut(k) {
                                i.last_push = Some(now);
                            }
                        }
                    }
                    Err(e) => {
                        metrics::counter!("lookout_alert_notifications_total", "via" => "alertmanager", "outcome" => "failure")
                            .increment(batch.len() as u64);
                        tracing::warn!(error = %e, "Cannot push synthetic alerts to Alertmanager; using the relay");
                        self.am_failing = Some(e);
                    }
                }
            }
        }
        // The relay is the way around Alertmanager, not a second path: it
        // carries alerts only when there is no Alertmanager or it cannot be
        // reached (a failed push or health check this round).
        if inputs.config.alertmanager.is_none() || self.am_failing.is_some() {
            self.via_relay(cfg, now).await;
        }
        pushed
    }

    /// Delivers state changes (and reminders) through lookout's own relay.
    async fn via_relay(&mut self, cfg: &AlertsConfig, now: f64) {
        let Some(relay) = self.relay.clone() else { return };
        let mut sent_any = false;
        let keys: Vec<String> = self.instances.keys().cloned().collect();
        for k in keys {
            let Some((rule, i)) = self.instances.get(&k).cloned() else {
                continue;
            };
            let reminder = cfg
                .rules
                .iter()
                .find(|r| r.name == rule)
                .map(|r| r.reminder.as_secs_f64())
                .unwrap_or(4.0 * 3600.0);
            let firing_due = i.state == "firing" && i.last_relay.is_none_or(|t| now - t >= reminder);
            let resolved_due = i.state == "inactive" && relay_owes_resolve(&i);
            if !(firing_due || resolved_due) {
                continue;
            }
            let p = webhook_payload(&i, if firing_due { "firing" } else { "resolved" });
            let raw = serde_json::to_string(&p).unwrap_or_default();
            match relay.ingest_payload(&p, raw).await {
                Ok(_) => {
                    sent_any = true;
                    metrics::counter!("lookout_alert_notifications_total", "via" => "relay", "outcome" => "success").increment(1);
                    if let Some((_, inst)) = self.instances.get_mut(&k) {
                        inst.last_relay = Some(now);
                        if resolved_due {
                            // Done with this incident.
                            inst.fired_at = None;
                        }
                    }
                }
                Err(_) => metrics::counter!("lookout_alert_notifications_total", "via" => "relay", "outcome" => "failure").increment(1),
            }
        }
        if sent_any {
            self.persist();
        }
    }

    async fn network_lost(&self, cfg: &AlertsConfig, inputs: &Inputs<'_>) -> bool {
        if let Some(target) = &cfg.connectivity_target {
            let conn = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(target.as_str())).await;
            return !matches!(conn, Ok(Ok(_)));
        }
        // Without a target: every probe failing to connect at once, with more
        // than one probe, says more about lookout than about the targets.
        let obs: Vec<&Observation> = inputs.latest.values().collect();
        obs.len() > 1
            && obs
                .iter()
                .all(|o| !o.ok && matches!(o.reason, Some(FailureReason::Connect) | Some(FailureReason::Timeout)))
            && {
                let hosts: std::collections::HashSet<String> = inputs.config.probes.iter().filter_map(probe_host).collect();
                hosts.len() > 1
            }
    }
}

/// Whether the relay announced this incident's firing and not yet its
/// resolve: the relay resolves only what it announced, so an incident that
/// Alertmanager carried is not resolved a second time around it.
fn relay_owes_resolve(i: &Instance) -> bool {
    i.fired_at.is_some_and(|f| i.last_relay.is_some_and(|r| r >= f)) && i.resolved_at.is_some() && i.last_relay < i.resolved_at
}

fn probe_host(p: &crate::probe::ProbeConfig) -> Option<String> {
    let u = match &p.spec {
        ProbeSpec::HttpHealth(s) => url::Url::parse(s.url.expose()).ok()?,
        ProbeSpec::Redis(s) => url::Url::parse(s.url.expose()).ok()?,
        ProbeSpec::Prometheus(s) => s.url.clone(),
    };
    Some(format!("{}:{}", u.host_str()?, u.port_or_known_default().unwrap_or(0)))
}

fn render_annotations(rule: &Rule, c: &Condition) -> BTreeMap<String, String> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
    let mut ctx: BTreeMap<String, minijinja::Value> = BTreeMap::new();
    ctx.insert("value".into(), c.value.into());
    ctx.insert("probe".into(), c.probe.clone().into());
    ctx.insert("threshold".into(), rule.threshold.into());
    for (k, v) in &c.extra {
        ctx.insert(k.clone(), v.clone().into());
    }
    rule.annotations
        .iter()
        .map(|(k, src)| (k.clone(), env.render_str(src, &ctx).unwrap_or_else(|_| src.clone())))
        .collect()
}

fn rfc3339(t: f64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_secs_f64(t.max(0.0))).to_string()
}

fn am_alert(i: &Instance, ends_at: f64, generator: &str) -> serde_json::Value {
    serde_json::json!({
        "labels": i.labels,
        "annotations": i.annotations,
        "startsAt": rfc3339(i.fired_at.unwrap_or(ends_at)),
        "endsAt": rfc3339(ends_at),
        "generatorURL": generator,
    })
}

/// An Alertmanager webhook payload for one instance, as Alertmanager would
/// have sent it, so the relay's routes and templates apply unchanged.
pub fn webhook_payload(i: &Instance, status: &str) -> crate::relay::payload::Payload {
    let name = i.labels.get("alertname").cloned().unwrap_or_default();
    let probe = i.labels.get("probe").cloned().unwrap_or_default();
    let mut group_labels = BTreeMap::new();
    group_labels.insert("alertname".to_string(), name.clone());
    if !probe.is_empty() {
        group_labels.insert("probe".to_string(), probe.clone());
    }
    let alert = crate::relay::payload::Alert {
        status: status.to_string(),
        labels: i.labels.clone(),
        annotations: i.annotations.clone(),
        starts_at: rfc3339(i.fired_at.unwrap_or(0.0)),
        ends_at: if status == "firing" {
            "0001-01-01T00:00:00Z".into()
        } else {
            rfc3339(i.resolved_at.unwrap_or(0.0))
        },
        generator_url: String::new(),
        fingerprint: String::new(),
        extra: BTreeMap::new(),
    };
    let fp = crate::relay::payload::fingerprint_of(&alert);
    crate::relay::payload::Payload {
        version: "4".into(),
        group_key: format!("{{}}/lookout:{{alertname=\"{name}\", probe=\"{probe}\"}}"),
        truncated_alerts: 0,
        status: status.to_string(),
        receiver: "lookout".into(),
        group_labels,
        common_labels: i.labels.clone(),
        common_annotations: i.annotations.clone(),
        external_url: String::new(),
        alerts: vec![crate::relay::payload::Alert { fingerprint: fp, ..alert }],
        extra: BTreeMap::new(),
    }
}

/// The conditions of one rule, now.
fn conditions(rule: &Rule, inputs: &Inputs<'_>, am_failing: Option<&str>, am_checked: f64) -> Vec<Condition> {
    let mut out = Vec::new();
    let cfg = inputs.config;
    let cond = |probe: &str, o: &Observation, active: bool, value: f64, extra: &[(&str, String)]| Condition {
        key: probe.to_string(),
        probe: probe.to_string(),
        active,
        checked_at: o.timestamp,
        value,
        extra: extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .chain([("error".to_string(), o.error.clone().unwrap_or_default())])
            .collect(),
    };
    for p in &cfg.probes {
        let Some(o) = inputs.latest.get(&p.name) else { continue };
        let v = |m: Metric| o.values.get(&m).copied();
        match (rule.name, &p.spec) {
            ("HealthEndpointDown", ProbeSpec::HttpHealth(_)) => {
                let down = !o.ok && o.reason != Some(FailureReason::Assertion);
                out.push(cond(&p.name, o, down, if down { 1.0 } else { 0.0 }, &[]));
            }
            ("HealthEndpointSlow", ProbeSpec::HttpHealth(_)) => {
                let lat = v(Metric::LatencySeconds).unwrap_or(0.0);
                let slow = lat > rule.threshold || (o.reason == Some(FailureReason::Timeout));
                out.push(cond(&p.name, o, slow, lat, &[]));
            }
            ("RedisUnreachable", ProbeSpec::Redis(_)) => out.push(cond(&p.name, o, !o.ok, if o.ok { 0.0 } else { 1.0 }, &[])),
            ("RedisConnectionExhaustion", ProbeSpec::Redis(_)) => {
                if let (Some(c), Some(m)) = (v(Metric::ConnectedClients), v(Metric::Maxclients))
                    && m > 0.0
                {
                    out.push(cond(&p.name, o, c / m > rule.threshold, c / m, &[]));
                }
            }
            ("RedisHighMemoryUsage", ProbeSpec::Redis(_)) => {
                let used = v(Metric::UsedMemoryBytes).unwrap_or(0.0);
                let max = v(Metric::MaxmemoryBytes).unwrap_or(0.0);
                let frag = v(Metric::MemFragmentationRatio).unwrap_or(0.0);
                let wasted = o.facts.mem_fragmentation_bytes.unwrap_or(0.0);
                let mem = max > 0.0 && used / max > rule.threshold;
                // A small or idle Redis shows a huge ratio over a few KB: only
                // fragmentation that wastes real memory counts (Redis's own
                // active defrag ignores less than 100 MB by default).
                let fragged = frag > rule.fragmentation_threshold && wasted > rule.min_wasted_bytes;
                let (value, cause) = if mem || !fragged {
                    (if max > 0.0 { used / max } else { 0.0 }, "used/maxmemory")
                } else {
                    (frag, "fragmentation ratio")
                };
                out.push(cond(&p.name, o, mem || fragged, value, &[("cause", cause.to_string())]));
            }
            ("MonitoringDataGap", ProbeSpec::Prometheus(_)) => {
                let gap = o.facts.target_up == Some(false) || o.facts.redis_up == Some(false) || o.reason == Some(FailureReason::Upstream);
                let stale = o
                    .facts
                    .scrape_timestamp
                    .is_some_and(|t| o.timestamp - t > cfg.crosscheck.as_ref().map(|c| c.max_staleness.as_secs_f64()).unwrap_or(30.0));
                out.push(cond(&p.name, o, gap || stale, if gap || stale { 1.0 } else { 0.0 }, &[]));
            }
            _ => {}
        }
    }
    if rule.name == "CrossCheckMismatch"
        && let Some(r) = inputs.report
    {
        let mut by_source: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for e in &r.entries {
            let v = by_source.entry(e.source.as_str()).or_default();
            if e.verdict == Verdict::Disagree {
                v.push(e.metric.as_str());
            }
        }
        for (source, bad) in by_source {
            out.push(Condition {
                key: source.to_string(),
                probe: source.to_string(),
                active: !bad.is_empty(),
                checked_at: r.timestamp,
                value: bad.len() as f64,
                extra: [("error".to_string(), bad.join(", "))].into(),
            });
        }
    }
    if rule.name == "AlertmanagerUnreachable" && cfg.alertmanager.is_some() && am_checked > 0.0 {
        out.push(Condition {
            key: "alertmanager".into(),
            probe: String::new(),
            active: am_failing.is_some(),
            checked_at: am_checked,
            value: if am_failing.is_some() { 1.0 } else { 0.0 },
            extra: [("error".to_string(), am_failing.unwrap_or("").to_string())].into(),
        });
    }
    out
}
