//! `lookout run`: wires configuration, probes, scheduler, history and the
//! HTTP server together, and owns reload and shutdown.
//!
//! Reload (SIGHUP or `POST /-/reload`) loads and validates the new
//! configuration first; only a valid one replaces the running probes, so a
//! typo never stops monitoring. Shutdown (SIGTERM/SIGINT) stops scheduling,
//! lets runs in flight finish (each bounded by its timeout), flushes the
//! history and closes the listener.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::config::{self, Config, ProbeConfig, Schedule};
use crate::crosscheck::{self, Report};
use crate::probe::{self, Observation};
use crate::schedule::{self, Sink};
use crate::store::History;

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A file.
    File(PathBuf),
    /// No file: the embedded default.
    Embedded,
}

impl ConfigSource {
    /// Loads and validates it.
    pub fn load(&self) -> Result<Config, config::ConfigError> {
        match self {
            ConfigSource::File(p) => config::load(p),
            ConfigSource::Embedded => config::embedded_default(&config::process_env),
        }
    }
}

/// What the HTTP handlers see of the running daemon.
pub struct Shared {
    /// The last observation of every configured probe.
    pub latest: RwLock<BTreeMap<String, Observation>>,
    /// The configuration in force.
    pub config: RwLock<Arc<Config>>,
    /// Set once every probe of the current configuration has run once.
    pub ready: std::sync::atomic::AtomicBool,
    /// Recent observations per probe (oldest first), for the cross-check.
    recent: Mutex<HashMap<String, VecDeque<Observation>>>,
    /// The latest cross-check round.
    pub report: RwLock<Option<Arc<Report>>>,
    /// Synthetic alert instances (pending, firing, recently resolved).
    pub alerts: RwLock<Vec<crate::alert::Instance>>,
    /// The history store.
    pub history: History,
}

/// How much recent history the cross-check keeps in memory: enough to
/// bracket a Prometheus sample up to `max_staleness` old and to compute a
/// 5-minute rate.
const RECENT_WINDOW: f64 = 7.0 * 60.0;

impl Shared {
    fn new(config: Arc<Config>, history: History) -> Self {
        Shared {
            latest: RwLock::new(BTreeMap::new()),
            config: RwLock::new(config),
            ready: false.into(),
            recent: Mutex::new(HashMap::new()),
            report: RwLock::new(None),
            alerts: RwLock::new(Vec::new()),
            history,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.read().map(|c| c.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The latest cross-check round.
    pub fn report(&self) -> Option<Arc<Report>> {
        self.report.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn remember(&self, obs: &Observation) {
        // Only the cross-checked probes' recent readings are kept.
        let cfg = self.config();
        let Some(cc) = cfg.crosscheck.as_ref() else { return };
        if cc.reference != obs.name && !cc.sources.iter().any(|s| s == &obs.name) {
            return;
        }
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let q = recent.entry(obs.name.clone()).or_default();
        q.push_back(obs.clone());
        while q.front().is_some_and(|o| obs.timestamp - o.timestamp > RECENT_WINDOW) {
            q.pop_front();
        }
    }

    /// Runs one cross-check round on the recent observations.
    pub fn crosscheck_round(&self) -> Option<Report> {
        let cfg = self.config();
        let cc = cfg.crosscheck.as_ref()?;
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let snapshot = |name: &str| -> Vec<Observation> { recent.get(name).map(|q| q.iter().cloned().collect()).unwrap_or_default() };
        let reference = snapshot(&cc.reference);
        let histories: Vec<(String, String, Vec<Observation>, f64)> = cc
            .sources
            .iter()
            .filter_map(|n| cfg.probes.iter().find(|p| &p.name == n))
            .map(|p| (p.name.clone(), p.spec.kind().to_string(), snapshot(&p.name), max_age(p)))
            .collect();
        drop(recent);
        let sources: Vec<crosscheck::Source<'_>> = histories
            .iter()
            .map(|(n, k, h, a)| crosscheck::Source {
                name: n,
                kind: k,
                history: h,
                max_age: *a,
            })
            .collect();
        Some(crosscheck::judge(cc, &reference, &sources, probe::unix_now()))
    }

    fn update_ready(&self) {
        let cfg = self.config();
        let latest = self.latest.read().unwrap_or_else(|p| p.into_inner());
        let all = cfg.probes.iter().all(|p| latest.contains_key(&p.name));
        self.ready.store(all, std::sync::atomic::Ordering::Release);
    }
}

struct DaemonSink(Arc<Shared>);

impl Sink for DaemonSink {
    fn record(&self, config: &ProbeConfig, obs: Observation) {
        crate::telemetry::record(config, &obs);
        if obs.ok {
            tracing::debug!(probe = %obs.name, duration = obs.duration_seconds, "Probe succeeded");
        } else {
            tracing::warn!(probe = %obs.name, kind = %obs.kind, error = obs.error.as_deref().unwrap_or(""), "Probe failed");
        }
        self.0.history.record(&obs);
        self.0.remember(&obs);
        let newly = {
            let mut latest = self.0.latest.write().unwrap_or_else(|p| p.into_inner());
            latest.insert(obs.name.clone(), obs).is_none()
        };
        if newly {
            self.0.update_ready();
        }
    }
}

/// A reload request from the HTTP server, answered with the outcome.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// A source whose newest observation is older than this is stale: three
/// periods and a timeout.
pub fn max_age(p: &ProbeConfig) -> f64 {
    let period = match &p.schedule {
        Schedule::Every(d) => d.as_secs_f64(),
        Schedule::Cron { expr, .. } => config::parse_cron(expr)
            .ok()
            .and_then(|c| {
                let now = chrono::Utc::now();
                let a = c.find_next_occurrence(&now, false).ok()?;
                let b = c.find_next_occurrence(&a, false).ok()?;
                Some((b - a).num_milliseconds() as f64 / 1000.0)
            })
            .unwrap_or(60.0),
    };
    3.0 * period + p.timeout.as_secs_f64()
}

/// Runs cross-check rounds every `crosscheck.every` (read afresh each time,
/// so a reload applies), publishing each as metrics, history and `/report`.
async fn crosscheck_loop(shared: Arc<Shared>, stop: tokio_util::sync::CancellationToken) {
    loop {
        let every = shared
            .config()
            .crosscheck
            .as_ref()
            .map(|c| c.every)
            .unwrap_or(Duration::from_secs(15));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let Some(report) = shared.crosscheck_round() else { continue };
        crosscheck::record_metrics(&report);
        if report.verdict == crosscheck::Overall::Disagree {
            let bad: Vec<String> = report
                .entries
                .iter()
                .filter(|e| e.verdict == crosscheck::Verdict::Disagree)
                .map(|e| format!("{}/{}", e.metric, e.source))
                .collect();
            tracing::warn!(disagree = %bad.join(", "), "Cross-check: sources disagree");
        }
        shared.history.record_round(report.to_stored());
        *shared.report.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(report));
    }
}

/// Evaluates the synthetic alert rules every `alerts.evaluation_interval`.
async fn alert_loop(shared: Arc<Shared>, relay: Option<Arc<crate::relay::Relay>>, stop: tokio_util::sync::CancellationToken) {
    let mut engine = crate::alert::Engine::new(&shared.config().data_dir, relay);
    loop {
        let cfg = shared.config();
        let every = cfg.alerts.as_ref().map(|a| a.evaluation_interval).unwrap_or(Duration::from_secs(5));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let Some(alerts) = cfg.alerts.clone() else { continue };
        let latest = shared.latest.read().unwrap_or_else(|p| p.into_inner()).clone();
        let report = shared.report();
        let inputs = crate::alert::Inputs {
            config: &cfg,
            latest: &latest,
            report: report.as_deref(),
        };
        engine.evaluate(&alerts, &inputs).await;
        *shared.alerts.write().unwrap_or_else(|p| p.into_inner()) = engine.instances();
    }
}

/// Exports each probe's availability over 1, 7 and 30 days, every minute.
async fn availability_loop(shared: Arc<Shared>, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let res = shared
            .history
            .read(|reader| {
                let now = probe::unix_now();
                [("1d", 1.0), ("7d", 7.0), ("30d", 30.0)]
                    .into_iter()
                    .map(|(w, days)| reader.availability(now - days * 86400.0, now).map(|a| (w, a)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await;
        match res {
            Ok(windows) => {
                for (w, list) in windows {
                    for a in list {
                        if let Some(r) = a.ratio {
                            metrics::gauge!("lookout_probe_availability_ratio", "probe" => a.probe.clone(), "window" => w).set(r);
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "Availability not computed"),
        }
    }
}

fn build_all(cfg: &Config) -> anyhow::Result<Vec<probe::ProbeHandle>> {
    cfg.probes
        .iter()
        .map(|p| probe::build(p).map_err(|e| anyhow::anyhow!("probe `{}`: {e}", p.name)))
        .collect()
}

fn options(cfg: &Config) -> schedule::Options {
    schedule::Options {
        spread: cfg.spread,
        max_concurrency: cfg.max_concurrency,
    }
}

/// The longest probe timeout, plus a margin: how long shutdown waits.
fn grace(cfg: &Config) -> Duration {
    cfg.probes.iter().map(|p| p.timeout).max().unwrap_or_default() + Duration::from_secs(1)
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(source: ConfigSource) -> anyhow::Result<()> {
    let cfg = Arc::new(source.load()?);
    if matches!(source, ConfigSource::Embedded) {
        tracing::info!("No configuration file: probing the Redis named by REDIS_URL (or REDIS_HOST…), default redis://127.0.0.1:6379");
    }
    let metrics_handle = crate::telemetry::install_recorder()?;
    let (history, err) = History::open(&cfg.data_dir, cfg.retention);
    if let Some(e) = err {
        metrics::counter!("lookout_history_errors_total", "op" => "open").increment(1);
        tracing::error!(error = %e, "History store unavailable; probing goes on without history");
    }
    let shared = Arc::new(Shared::new(cfg.clone(), history.clone()));
    let sink: Arc<dyn Sink> = Arc::new(DaemonSink(shared.clone()));
    config_loaded(true);

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.listen))?;
    tracing::info!(listen = %cfg.listen, probes = cfg.probes.len(), config = %cfg.source.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "<embedded default>".into()), "lookout started");

    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(4);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let relay = match &cfg.relay {
        Some(rc) => {
            Some(crate::relay::Relay::start(rc.clone(), &cfg.data_dir, shutdown.clone()).map_err(|e| anyhow::anyhow!("relay: {e}"))?)
        }
        None => None,
    };
    tokio::spawn(alert_loop(shared.clone(), relay.clone(), shutdown.clone()));
    let app = crate::server::router(crate::server::AppState {
        shared: shared.clone(),
        metrics: metrics_handle.clone(),
        reload: reload_tx,
        relay,
    });
    let server_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { server_shutdown.cancelled().await })
            .await
    });
    let upkeep_handle = metrics_handle.clone();
    let upkeep_stop = shutdown.clone();
    tokio::spawn(async move {
        let mut t = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = upkeep_stop.cancelled() => return,
                _ = t.tick() => upkeep_handle.run_upkeep(),
            }
        }
    });

    tokio::spawn(crosscheck_loop(shared.clone(), shutdown.clone()));
    tokio::spawn(availability_loop(shared.clone(), shutdown.clone()));
    let mut running = Some(schedule::start(build_all(&cfg)?, options(&cfg), sink.clone()).await?);
    if cfg.probes.is_empty() {
        shared.update_ready();
    }

    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let reply: Option<ReloadRequest> = tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = sighup.recv() => { tracing::info!("SIGHUP: reloading configuration"); None }
            r = reload_rx.recv() => match r { Some(r) => Some(r), None => continue },
        };
        let outcome = reload(&source, &shared, &mut running, &sink).await;
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    }

    let cfg = shared.config();
    if let Some(r) = running.take() {
        r.stop(grace(&cfg)).await;
    }
    history.flush().await;
    shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server stopped with an error"),
        Err(_) => tracing::warn!("HTTP server did not stop within 5s"),
        _ => {}
    }
    tracing::info!("lookout stopped");
    Ok(())
}

fn config_loaded(ok: bool) {
    metrics::gauge!("lookout_config_last_reload_successful").set(if ok { 1.0 } else { 0.0 });
    if ok {
        metrics::gauge!("lookout_config_last_reload_success_timestamp_seconds").set(probe::unix_now());
    }
}

async fn reload(
    source: &ConfigSource,
    shared: &Arc<Shared>,
    running: &mut Option<schedule::Running>,
    sink: &Arc<dyn Sink>,
) -> Result<(), String> {
    let src = source.clone();
    let loaded = tokio::task::spawn_blocking(move || src.load()).await.map_err(|e| e.to_string())?;
    let new = match loaded
        .map_err(|e| e.to_string())
        .and_then(|c| build_all(&c).map(|h| (c, h)).map_err(|e| e.to_string()))
    {
        Ok(n) => n,
        Err(e) => {
            config_loaded(false);
            tracing::error!(error = %e, "Configuration reload rejected; keeping the running configuration");
            return Err(e);
        }
    };
    let (cfg, handles) = new;
    let old = shared.config();
    if cfg.listen != old.listen || cfg.data_dir != old.data_dir {
        tracing::warn!("`server.listen` and `data_dir` changes take effect at the next restart");
    }
    if let Some(r) = running.take() {
        r.stop(grace(&old)).await;
    }
    let cfg = Arc::new(cfg);
    {
        let mut c = shared.config.write().unwrap_or_else(|p| p.into_inner());
        *c = cfg.clone();
        let mut latest = shared.latest.write().unwrap_or_else(|p| p.into_inner());
        latest.retain(|name, _| cfg.probes.iter().any(|p| &p.name == name));
    }
    shared.update_ready();
    match schedule::start(handles, options(&cfg), sink.clone()).await {
        Ok(r) => *running = Some(r),
        Err(e) => {
            config_loaded(false);
            tracing::error!(error = %e, "Cannot start the reloaded probes");
            return Err(e.to_string());
        }
    }
    config_loaded(true);
    tracing::info!(probes = cfg.probes.len(), "Configuration reloaded");
    Ok(())
}
