//! Synthetic alerts: rules over probe results and cross-check verdicts.
//!
//! Each rule instance (a rule and a probe) moves inactive → pending →
//! firing → resolved with Prometheus's `for:` semantics and Gatus's
//! count-based hysteresis ([`state`]). Alerts are pushed to Alertmanager's
//! API the way Prometheus does it ([`alertmanager`]). When no Alertmanager
//! is configured, or it cannot be reached, they go straight into lookout's
//! own relay as webhook payloads ([`fallback`]): an alert about Redis must
//! reach a person even when Alertmanager is down. The relay is the way
//! around Alertmanager, never a second path beside a healthy one; it only
//! closes, once Alertmanager is back, the incidents it opened.
//!
//! Nothing is sent inside a maintenance window, nor while lookout itself has
//! lost the network ([`network`]). Firing state is persisted in
//! `data_dir/alerts.json`, so a resolve still goes out after a restart.
//!
//! This module is the engine that wires those together every
//! `evaluation_interval`: it reads the rules' conditions ([`rules`]),
//! renders annotations ([`annotations`]), feeds the state machine, carries
//! out its effects and keeps the file.

pub mod alertmanager;
pub mod annotations;
pub mod fallback;
pub mod network;
pub mod rules;
pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use self::alertmanager::{Health, PostableAlert, rfc3339};
use self::annotations::Annotations;
use self::fallback::Fallback;
use self::rules::Condition;
use self::state::{Effect, Input, Phase, State, Status, Timing, Via, step};
use crate::config::Endpoint;
use crate::config::alerts::{AlertsConfig, Rule, RuleName};
use crate::crosscheck::Report;
use crate::probe::{Observation, unix_now};
use crate::relay::RelaySlot;
use crate::settings::Config;

/// The file in `data_dir` that keeps the instances across restarts.
const STATE_FILE: &str = "alerts.json";

/// How long a request to Alertmanager may take unless its endpoint says.
const ALERTMANAGER_TIMEOUT: Duration = Duration::from_secs(10);

/// One rule instance: what it says (labels, annotations) and where it is.
///
/// Serialised flat (`labels`, `annotations`, `state`, `failing`, …): that
/// is both the `alerts.json` format and `/api/v1/alerts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Full label set (alertname, severity, probe, …).
    pub labels: BTreeMap<String, String>,
    /// Rendered annotations.
    pub annotations: BTreeMap<String, String>,
    /// Its state machine's state.
    #[serde(flatten)]
    pub state: State,
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

/// A notification due to one instance: its key, its rule's timings, what to send.
type Due = (String, Timing, Effect);

/// The engine: instances by `rule/key`, and what it knows of Alertmanager.
pub struct Engine {
    instances: HashMap<String, (RuleName, Instance)>,
    am: Health,
    client: alertmanager::Client,
    fallback: Option<Fallback>,
    /// Compiled once, and again only when a reload changes a template
    /// (none until the first round brings the configuration).
    annotations: Annotations,
    state_file: PathBuf,
    lost_network: bool,
}

impl Engine {
    /// Loads persisted state from `data_dir/alerts.json`; alerts go around
    /// Alertmanager through `relay` when there is one.
    pub fn new(data_dir: &Path, relay: Option<Arc<RelaySlot>>) -> Engine {
        let state_file = data_dir.join(STATE_FILE);
        Engine {
            instances: load(&state_file),
            am: Health::default(),
            client: alertmanager::Client::new(ALERTMANAGER_TIMEOUT),
            fallback: relay.map(Fallback::new),
            annotations: Annotations::new(&[]),
            state_file,
            lost_network: false,
        }
    }

    /// Current instances (status page, tests).
    pub fn instances(&self) -> Vec<Instance> {
        self.instances.values().map(|(_, i)| i.clone()).collect()
    }

    /// Writes the instances to `alerts.json` (through a temporary file, so
    /// that a crash mid-write leaves the previous state, not half of one).
    fn persist(&self) {
        let map: HashMap<&String, (RuleName, &Instance)> = self.instances.iter().map(|(k, (r, i))| (k, (*r, i))).collect();
        let tmp = self.state_file.with_extension("json.tmp");
        let res = serde_json::to_vec(&map)
            .map_err(|e| e.to_string())
            .and_then(|b| std::fs::write(&tmp, b).map_err(|e| e.to_string()))
            .and_then(|_| std::fs::rename(&tmp, &self.state_file).map_err(|e| e.to_string()));
        if let Err(e) = res {
            tracing::error!(path = %self.state_file.display(), error = %e, "Cannot persist alert state");
        }
    }

    /// One evaluation round: conditions, transitions, deliveries, metrics,
    /// housekeeping.
    pub async fn evaluate(&mut self, cfg: &AlertsConfig, inputs: &Inputs<'_>) {
        let now = unix_now();
        if network::lost(cfg, inputs).await {
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

        if !self.annotations.compiled_from(&cfg.rules) {
            self.annotations = Annotations::new(&cfg.rules);
        }
        let mut changed = false;
        for rule in &cfg.rules {
            let timing = Timing::of(Some(rule), cfg.resend_delay);
            for c in rules::conditions(rule, inputs, &self.am) {
                changed |= self.check(rule, &timing, c, now);
            }
        }
        let maintenance = cfg.maintenance.iter().any(|w| w.contains(now));
        metrics::gauge!("lookout_maintenance_active").set(if maintenance { 1.0 } else { 0.0 });
        changed |= self.deliver(cfg, inputs.config, now, maintenance).await;
        self.export_counts(cfg);
        let before = self.instances.len();
        self.instances.retain(|_, (_, i)| !i.state.finished(now));
        if changed || before != self.instances.len() {
            self.persist();
        }
    }

    /// Feeds one condition to its instance; true when the phase changed.
    fn check(&mut self, rule: &Rule, timing: &Timing, c: Condition, now: f64) -> bool {
        let (_, inst) = self
            .instances
            .entry(format!("{}/{}", rule.name, c.key))
            .or_insert_with(|| (rule.name, Instance::default()));
        if c.active {
            // What an alert says is what it said when last true: a resolve
            // carries the labels and text of the firing.
            inst.labels = labels(rule, &c);
            inst.annotations = self.annotations.render(rule, &c);
        }
        let input = Input::Check {
            active: c.active,
            checked_at: c.checked_at,
        };
        let (next, effects) = step(timing, inst.state, input, now);
        let changed = next.phase != inst.state.phase;
        inst.state = next;
        for e in effects {
            match e {
                Effect::Fired => {
                    let summary = inst.annotations.get("summary").map(String::as_str).unwrap_or("");
                    tracing::warn!(alert = %rule.name, probe = %c.probe, summary, "Synthetic alert firing");
                }
                Effect::Resolved => tracing::info!(alert = %rule.name, probe = %c.probe, "Synthetic alert resolved"),
                Effect::Push { .. } | Effect::Relay { .. } => {}
            }
        }
        changed
    }

    /// What is due now, instance by instance, in answer to `ask` (an
    /// [`Input::Due`]).
    fn due(&self, cfg: &AlertsConfig, ask: Input, now: f64) -> Vec<Due> {
        self.instances
            .iter()
            .flat_map(|(k, (rule, i))| {
                let timing = Timing::of(cfg.rules.iter().find(|r| r.name == *rule), cfg.resend_delay);
                let (_, effects) = step(&timing, i.state, ask, now);
                effects.into_iter().map(move |e| (k.clone(), timing, e))
            })
            .collect()
    }

    /// Marks the instance `key` as delivered on `via`.
    fn delivered(&mut self, key: &str, timing: &Timing, via: Via, status: Status, now: f64) {
        if let Some((_, i)) = self.instances.get_mut(key) {
            i.state = step(timing, i.state, Input::Delivered { via, status }, now).0;
        }
    }

    /// Sends what is due: to Alertmanager when there is one, and through
    /// the relay what the state machine gives it — everything when there is
    /// no Alertmanager or it could not be reached this round, otherwise only
    /// the resolves of incidents the relay announced. True when a delivery
    /// changed a state.
    async fn deliver(&mut self, cfg: &AlertsConfig, config: &Config, now: f64, maintenance: bool) -> bool {
        let mut changed = false;
        // Inside a window nothing could be sent, so Alertmanager is not even
        // asked: its check count (for AlertmanagerUnreachable) stays put.
        if let Some(am) = &config.alertmanager
            && !maintenance
        {
            let generator = format!("http://{}/", config.listen);
            changed |= self.push(cfg, am, &generator, now).await;
        }
        let ask = Input::Due {
            via: Via::Relay,
            maintenance,
            alertmanager_up: config.alertmanager.is_some() && self.am.failing.is_none(),
        };
        changed |= self.relay(cfg, ask, now).await;
        changed
    }

    /// Pushes what is due to Alertmanager, or checks its health when nothing
    /// is; records the outcome in `self.am`.
    async fn push(&mut self, cfg: &AlertsConfig, am: &Endpoint, generator: &str, now: f64) -> bool {
        self.am.checked_at = now;
        let ask = Input::Due {
            via: Via::Alertmanager,
            maintenance: false,
            alertmanager_up: true,
        };
        let due = self.due(cfg, ask, now);
        if due.is_empty() {
            self.am.failing = self.client.healthy(am).await.err().map(|e| format!("health check failed: {e}"));
            return false;
        }
        let alerts: Vec<PostableAlert<'_>> = due
            .iter()
            .filter_map(|(k, _, e)| {
                let Effect::Push { ends_at, .. } = *e else { return None };
                let (_, i) = self.instances.get(k)?;
                Some(PostableAlert {
                    labels: &i.labels,
                    annotations: &i.annotations,
                    starts_at: rfc3339(i.state.fired_at.unwrap_or(ends_at)),
                    ends_at: rfc3339(ends_at),
                    generator_url: generator,
                })
            })
            .collect();
        let n = alerts.len() as u64;
        let res = self.client.push(am, &alerts).await;
        drop(alerts);
        let outcome = if res.is_ok() { "success" } else { "failure" };
        metrics::counter!("lookout_alert_notifications_total", "via" => "alertmanager", "outcome" => outcome).increment(n);
        match res {
            Ok(()) => {
                self.am.failing = None;
                for (k, timing, e) in &due {
                    if let Effect::Push { status, .. } = *e {
                        self.delivered(k, timing, Via::Alertmanager, status, now);
                    }
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, reason = e.reason.as_str(), "Cannot push synthetic alerts to Alertmanager; using the relay");
                self.am.failing = Some(e.message);
                false
            }
        }
    }

    /// Hands what is due to the relay, one notification at a time.
    async fn relay(&mut self, cfg: &AlertsConfig, ask: Input, now: f64) -> bool {
        let due = self.due(cfg, ask, now);
        let Some(fallback) = &self.fallback else { return false };
        let mut accepted = Vec::new();
        for (k, timing, e) in due {
            let Effect::Relay { status } = e else { continue };
            let Some((_, i)) = self.instances.get(&k) else { continue };
            if fallback.notify(i, status).await {
                accepted.push((k, timing, status));
            }
        }
        for (k, timing, status) in &accepted {
            self.delivered(k, timing, Via::Relay, *status, now);
        }
        !accepted.is_empty()
    }

    /// `lookout_alerts{alertname, state}`: pending and firing instances of
    /// each enabled rule, zeros included so that a rule's series exist.
    fn export_counts(&self, cfg: &AlertsConfig) {
        let mut counts: BTreeMap<(RuleName, Phase), f64> = BTreeMap::new();
        for rule in &cfg.rules {
            for phase in [Phase::Pending, Phase::Firing] {
                counts.insert((rule.name, phase), 0.0);
            }
        }
        for (rule, i) in self.instances.values() {
            if let Some(c) = counts.get_mut(&(*rule, i.state.phase)) {
                *c += 1.0;
            }
        }
        for ((rule, phase), n) in counts {
            metrics::gauge!("lookout_alerts", "alertname" => rule.as_str(), "state" => phase.as_str()).set(n);
        }
    }
}

/// An instance's labels: `alertname`, `severity`, `probe` (when it is about
/// one), then the rule's own labels, which may override them.
fn labels(rule: &Rule, c: &Condition) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = [
        ("alertname".to_string(), rule.name.to_string()),
        ("severity".to_string(), rule.severity.clone()),
    ]
    .into();
    if !c.probe.is_empty() {
        labels.insert("probe".into(), c.probe.clone());
    }
    labels.extend(rule.labels.clone());
    labels
}

/// Reads `alerts.json`: a map from `rule/key` to `[rule, instance]`. An
/// entry that cannot be read (a rule since removed, a damaged file) is left
/// out rather than failing the rest: losing one instance's history costs a
/// repeated notice at most.
fn load(path: &Path) -> HashMap<String, (RuleName, Instance)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return HashMap::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "Cannot read alert state; starting afresh");
            return HashMap::new();
        }
    };
    parse_state(&bytes).unwrap_or_else(|e| {
        tracing::warn!(path = %path.display(), error = %e, "Alert state is not JSON; starting afresh");
        HashMap::new()
    })
}

/// The instances in an `alerts.json`, skipping unreadable entries.
fn parse_state(bytes: &[u8]) -> Result<HashMap<String, (RuleName, Instance)>, serde_json::Error> {
    let entries: HashMap<String, serde_json::Value> = serde_json::from_slice(bytes)?;
    Ok(entries
        .into_iter()
        .filter_map(|(k, v)| match serde_json::from_value::<(RuleName, Instance)>(v) {
            Ok(entry) => Some((k, entry)),
            Err(e) => {
                tracing::warn!(instance = %k, error = %e, "Leaving out an alert state entry it cannot read");
                None
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `alerts.json` as lookout wrote it before rules and states were enums.
    const OLD_FILE: &str = r#"{
        "HealthEndpointDown/web": ["HealthEndpointDown", {
            "labels": {"alertname": "HealthEndpointDown", "probe": "web", "severity": "critical"},
            "annotations": {"summary": "Health endpoint web is down", "description": "web fails: HTTP 503"},
            "state": "firing", "failing": 4, "passing": 0,
            "pending_since": 1764028800.5, "fired_at": 1764028860.5, "resolved_at": null,
            "last_push": 1764028920.0, "last_relay": null, "last_check": 1764028921.25
        }],
        "RedisUnreachable/cache": ["RedisUnreachable", {
            "labels": {}, "annotations": {},
            "state": "inactive", "failing": 1, "passing": 0,
            "pending_since": null, "fired_at": null, "resolved_at": null,
            "last_push": null, "last_relay": null, "last_check": 1764028921.0
        }],
        "SomeRetiredRule/web": ["SomeRetiredRule", {
            "labels": {}, "annotations": {}, "state": "pending", "failing": 1, "passing": 0,
            "pending_since": 1.0, "fired_at": null, "resolved_at": null,
            "last_push": null, "last_relay": null, "last_check": 1.0
        }]
    }"#;

    #[test]
    fn an_old_state_file_still_loads() {
        let m = parse_state(OLD_FILE.as_bytes()).expect("the old format is JSON");
        assert_eq!(m.len(), 2, "the entry of an unknown rule is left out, the others kept");
        let (rule, down) = &m["HealthEndpointDown/web"];
        assert_eq!(*rule, RuleName::HealthEndpointDown);
        assert_eq!(down.labels["probe"], "web");
        assert_eq!(
            down.state,
            State {
                phase: Phase::Firing,
                failing: 4,
                passing: 0,
                pending_since: Some(1764028800.5),
                fired_at: Some(1764028860.5),
                resolved_at: None,
                last_push: Some(1764028920.0),
                last_relay: None,
                last_check: 1764028921.25,
            }
        );
        assert_eq!(m["RedisUnreachable/cache"].1.state.phase, Phase::Inactive);
    }

    #[test]
    fn the_state_file_is_written_in_the_same_format() {
        let m = parse_state(OLD_FILE.as_bytes()).expect("the old format is JSON");
        let (rule, down) = &m["HealthEndpointDown/web"];
        let written = serde_json::to_value((rule, down)).expect("serialises");
        let old: serde_json::Value = serde_json::from_str(OLD_FILE).expect("JSON");
        assert_eq!(written, old["HealthEndpointDown/web"]);
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_panic() {
        assert!(parse_state(b"{\"HealthEndpointDown/web\": [").is_err());
        assert!(parse_state(b"[]").is_err());
    }

    #[test]
    fn persisted_state_survives_a_restart() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut e = Engine::new(dir.path(), None);
        e.instances = parse_state(OLD_FILE.as_bytes()).expect("the old format is JSON");
        e.persist();
        let again = Engine::new(dir.path(), None);
        assert_eq!(again.instances, e.instances);
        assert!(!dir.path().join("alerts.json.tmp").exists());
    }
}
