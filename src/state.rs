//! The running daemon's state, one small type per concern, and the slice
//! of it the HTTP server reads ([`AppState`]).
//!
//! The daemon writes these (the probe sink, reloads, the alert loop); the
//! server only reads them. Both import this module, not each other. Every
//! lock here is a std lock held for a copy or a swap, never across an
//! await, so a tokio lock would only add overhead.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{mpsc, oneshot};

use crate::alert::Instance;
use crate::crosscheck::feed::Feed;
use crate::probe::Observation;
use crate::relay::RelaySlot;
use crate::settings::Config;
use crate::store::History;

/// A reload request from the HTTP server, answered with the outcome.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// The configuration in force, replaced whole by a reload.
pub struct CurrentConfig(RwLock<Arc<Config>>);

impl CurrentConfig {
    /// Starts with `config`.
    pub fn new(config: Arc<Config>) -> CurrentConfig {
        CurrentConfig(RwLock::new(config))
    }

    /// The configuration in force.
    pub fn get(&self) -> Arc<Config> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `config` in force.
    pub fn set(&self, config: Arc<Config>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = config;
    }
}

/// The last observation of every configured probe, and whether each has
/// run once (`/-/ready`).
#[derive(Default)]
pub struct Probes {
    latest: RwLock<BTreeMap<String, Observation>>,
    ready: AtomicBool,
}

impl Probes {
    /// Keeps `obs` as its probe's latest; true when the probe had none.
    pub fn record(&self, obs: Observation) -> bool {
        self.latest
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(obs.name.clone(), obs)
            .is_none()
    }

    /// A copy of the latest observations, by probe name.
    pub fn latest(&self) -> BTreeMap<String, Observation> {
        self.latest.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Forgets probes `cfg` no longer has, then re-judges readiness.
    pub fn retain_configured(&self, cfg: &Config) {
        self.latest
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|name, _| cfg.probes.iter().any(|p| &p.name == name));
        self.update_ready(cfg);
    }

    /// Ready once every probe of `cfg` has run once.
    pub fn update_ready(&self, cfg: &Config) {
        let all = {
            let latest = self.latest.read().unwrap_or_else(|p| p.into_inner());
            cfg.probes.iter().all(|p| latest.contains_key(&p.name))
        };
        self.ready.store(all, Ordering::Release);
    }

    /// Whether every probe has run once.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// The synthetic alert instances as the alert loop last left them
/// (pending, firing, recently resolved).
#[derive(Default)]
pub struct Alerts(RwLock<Vec<Instance>>);

impl Alerts {
    /// The instances.
    pub fn get(&self) -> Vec<Instance> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the instances after an evaluation.
    pub fn set(&self, list: Vec<Instance>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = list;
    }
}

/// What the HTTP handlers see of the running daemon. One `Arc` around
/// [`Shared`]: axum clones the state for every extractor of every request,
/// and cloning and dropping ten reference counts (shared by both runtime
/// threads) twice a webhook took 2% of lookout's CPU under webhook load
/// (`perf record` during `PART=1 bench/relay-storm.sh`).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The handle the router is given.
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The daemon's parts the handlers read, behind [`AppState`].
pub struct Shared {
    /// The configuration in force.
    pub config: Arc<CurrentConfig>,
    /// The probes' latest observations.
    pub probes: Arc<Probes>,
    /// The cross-check, for its latest round.
    pub crosscheck: Arc<Feed>,
    /// The synthetic alerts.
    pub alerts: Arc<Alerts>,
    /// The history, for the status page's charts.
    pub history: History,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Asks the daemon to reload.
    pub reload: mpsc::Sender<ReloadRequest>,
    /// The webhook relay, when enabled (empty until its store opens).
    pub relay: Option<Arc<RelaySlot>>,
    /// The controlled flushes the daemon runs and ran.
    pub flushes: Arc<crate::runbook::flush_job::FlushJobs>,
}
