//! `lookout run`: wires configuration, probes, scheduler, history and the
//! HTTP server together, and owns reload and shutdown.
//!
//! Reload (SIGHUP or `POST /-/reload`) loads and validates the new
//! configuration first; only a valid one replaces the running probes and
//! the relay's routes, destinations and credentials, so a typo never stops
//! monitoring or delivery. Shutdown (SIGTERM/SIGINT) stops scheduling
//! and lets runs in flight finish (each bounded by its timeout), then drains
//! every background task ([`Tasks`]): the listener closes after its open
//! requests, the relay's workers finish the delivery under way and write
//! its outcome, a cross-check round or alert evaluation under way completes,
//! a controlled flush stops after the batch in flight and records itself.
//! Last, the history is flushed.
//!
//! The state the loops and the HTTP server share is in [`crate::state`],
//! one small type per concern; the cross-check's feed is
//! [`crate::crosscheck::feed`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::mpsc;

use crate::config;
use crate::crosscheck::feed::{Feed, Rounds};
use crate::probe::{self, Observation, ProbeConfig};
use crate::schedule::{self, Sink};
use crate::settings::{self, Config};
use crate::state::{Alerts, AppState, CurrentConfig, Probes, ReloadRequest};
use crate::store::History;
use crate::task::{Periodic, Tasks};

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
            ConfigSource::File(p) => settings::load(p),
            ConfigSource::Embedded => settings::embedded_default(&config::process_env),
        }
    }
}

/// Where each probe run goes: metrics and log, the history, the
/// cross-check's feed and the latest-observation table.
struct DaemonSink {
    config: Arc<CurrentConfig>,
    probes: Arc<Probes>,
    feed: Arc<Feed>,
    history: History,
}

impl Sink for DaemonSink {
    fn record(&self, config: &ProbeConfig, obs: Observation) {
        crate::telemetry::record(config, &obs);
        if obs.ok {
            tracing::debug!(probe = %obs.name, duration = obs.duration_seconds, "Probe succeeded");
        } else {
            tracing::warn!(probe = %obs.name, kind = %obs.kind, error = obs.error.as_deref().unwrap_or(""), "Probe failed");
        }
        self.history.record(&obs);
        let cfg = self.config.get();
        self.feed.remember(&*cfg, &obs);
        if self.probes.record(obs) {
            self.probes.update_ready(&cfg);
        }
    }
}

/// Evaluates the synthetic alert rules every `alerts.evaluation_interval`
/// (read afresh, so a reload applies).
struct AlertRules {
    engine: crate::alert::Engine,
    config: Arc<CurrentConfig>,
    probes: Arc<Probes>,
    feed: Arc<Feed>,
    alerts: Arc<Alerts>,
}

impl Periodic for AlertRules {
    fn period(&mut self) -> Duration {
        self.config
            .get()
            .alerts
            .as_ref()
            .map(|a| a.evaluation_interval)
            .unwrap_or(Duration::from_secs(5))
    }

    async fn tick(&mut self) {
        let cfg = self.config.get();
        let Some(rules) = cfg.alerts.clone() else { return };
        let latest = self.probes.latest();
        let report = self.feed.latest();
        let inputs = crate::alert::Inputs {
            config: &cfg,
            latest: &latest,
            report: report.as_deref(),
        };
        self.engine.evaluate(&rules, &inputs).await;
        self.alerts.set(self.engine.instances());
    }
}

/// Exports each probe's availability over 1, 7 and 30 days, every minute.
struct AvailabilityGauges(History);

impl Periodic for AvailabilityGauges {
    fn period(&mut self) -> Duration {
        Duration::from_secs(60)
    }

    fn ticks_at_start(&self) -> bool {
        true
    }

    async fn tick(&mut self) {
        let windows = self
            .0
            .read(|reader| {
                let now = probe::unix_now();
                [("1d", 1.0), ("7d", 7.0), ("30d", 30.0)]
                    .into_iter()
                    .map(|(w, days)| reader.availability(now - days * 86400.0, now).map(|a| (w, a)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await;
        match windows {
            Ok(windows) => {
                for (w, list) in windows {
                    for a in list {
                        if let Some(r) = a.ratio {
                            metrics::gauge!("lookout_probe_availability_ratio", "probe" => a.probe, "window" => w).set(r);
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "Availability not computed"),
        }
    }
}

/// Keeps the Prometheus recorder's histograms trimmed, every 5 seconds.
struct MetricsUpkeep(PrometheusHandle);

impl Periodic for MetricsUpkeep {
    fn period(&mut self) -> Duration {
        Duration::from_secs(5)
    }

    fn ticks_at_start(&self) -> bool {
        true
    }

    async fn tick(&mut self) {
        self.0.run_upkeep();
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

/// The longest probe timeout, plus a margin: how long the scheduler's
/// drain waits.
fn grace(cfg: &Config) -> Duration {
    cfg.probes.iter().map(|p| p.timeout).max().unwrap_or_default() + Duration::from_secs(1)
}

/// How long the background tasks' drain waits: a delivery under way is
/// bounded by its destination's timeout, the HTTP server's open requests by
/// five seconds; a margin on top. A task still running after that is cut
/// off (its delivery stays pending and goes out after the restart).
fn drain_grace(cfg: &Config) -> Duration {
    let deliveries = cfg
        .relay
        .iter()
        .flat_map(|r| &r.destinations)
        .map(|d| d.delivery.timeout)
        .max()
        .unwrap_or_default();
    deliveries.max(Duration::from_secs(5)) + Duration::from_secs(1)
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(source: ConfigSource) -> anyhow::Result<()> {
    let cfg = Arc::new(source.load()?);
    for w in &cfg.warnings {
        tracing::warn!(warning = %w, "Configuration warning");
    }
    if matches!(source, ConfigSource::Embedded) {
        tracing::info!("No configuration file: probing the Redis named by REDIS_URL (or REDIS_HOST…), default redis://127.0.0.1:6379");
    }
    let metrics_handle = crate::telemetry::install_recorder()?;
    let (dir, retention) = (cfg.data_dir.clone(), cfg.retention);
    let (history, err) = tokio::task::spawn_blocking(move || History::open(&dir, retention)).await?;
    if let Some(e) = err {
        metrics::counter!("lookout_history_errors_total", "op" => "open").increment(1);
        tracing::error!(error = %e, "History store unavailable; probing goes on without history");
    }
    let config = Arc::new(CurrentConfig::new(cfg.clone()));
    let probes = Arc::new(Probes::default());
    let feed = Arc::new(Feed::default());
    let alerts = Arc::new(Alerts::default());
    let sink: Arc<dyn Sink> = Arc::new(DaemonSink {
        config: config.clone(),
        probes: probes.clone(),
        feed: feed.clone(),
        history: history.clone(),
    });
    config_loaded(true);

    // Before anything says the daemon is up: a SIGHUP or SIGTERM sent as
    // soon as it answers must reach these handlers, not the default action
    // (which ends the process).
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.listen))?;
    tracing::info!(listen = %cfg.listen, probes = cfg.probes.len(), config = %cfg.source.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "<embedded default>".into()), "lookout started");

    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(4);
    let tasks = Tasks::new();
    let relay = match &cfg.relay {
        Some(rc) => {
            let slot = Arc::new(crate::relay::RelaySlot::default());
            match crate::relay::Relay::start(rc.clone(), &cfg.data_dir, &tasks).await {
                Ok(r) => slot.open(r),
                // The store did not open (PostgreSQL down or unreachable):
                // the probes need not wait for it, nor Kubernetes restart
                // the pod for it.
                Err(crate::relay::RelayError::Outbox(e)) => {
                    tracing::error!(
                        error = %e,
                        "Relay store unavailable at start; webhooks are answered 503 until it opens, probes run meanwhile, and it is tried again with backoff"
                    );
                    slot.set_waiting(e.to_string());
                    tasks.spawn(open_relay_later(slot.clone(), config.clone(), tasks.clone()));
                }
                Err(e) => return Err(anyhow::anyhow!("relay: {e}")),
            }
            Some(slot)
        }
        None => None,
    };
    let (dir, alert_relay) = (cfg.data_dir.clone(), relay.clone());
    let engine = tokio::task::spawn_blocking(move || crate::alert::Engine::new(&dir, alert_relay)).await?;
    tasks.every(AlertRules {
        engine,
        config: config.clone(),
        probes: probes.clone(),
        feed: feed.clone(),
        alerts: alerts.clone(),
    });
    let app = crate::server::router(AppState::new(crate::state::Shared {
        config: config.clone(),
        probes: probes.clone(),
        crosscheck: feed.clone(),
        alerts,
        history: history.clone(),
        metrics: metrics_handle.clone(),
        reload: reload_tx,
        relay: relay.clone(),
        flushes: Arc::new(crate::runbook::flush_job::FlushJobs::new(
            history.clone(),
            tasks.clone(),
            relay.clone(),
        )),
    }));
    let server_stop = tasks.stopping();
    let tls = cfg.web.as_ref().and_then(|w| w.tls.clone());
    tasks.spawn(crate::listener::serve(listener, app, cfg.limits, tls, server_stop));
    tasks.every(MetricsUpkeep(metrics_handle));
    let rounds_config = config.clone();
    tasks.every(Rounds {
        feed,
        history: history.clone(),
        config: move || rounds_config.get(),
    });
    tasks.every(AvailabilityGauges(history.clone()));
    let mut running = Some(schedule::start(build_all(&cfg)?, options(&cfg), sink.clone()).await?);
    if cfg.probes.is_empty() {
        probes.update_ready(&cfg);
    }

    loop {
        let reply: Option<ReloadRequest> = tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = sighup.recv() => { tracing::info!("SIGHUP: reloading configuration"); None }
            r = reload_rx.recv() => match r { Some(r) => Some(r), None => continue },
        };
        let outcome = reload(&source, &config, &probes, &mut running, &sink, relay.as_ref()).await;
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    }

    let cfg = config.get();
    if let Some(r) = running.take() {
        r.stop(grace(&cfg)).await;
    }
    if !tasks.drain(drain_grace(&cfg)).await {
        tracing::warn!(grace = ?drain_grace(&cfg), "Background tasks did not stop within the grace period");
    }
    history.flush().await;
    tracing::info!("lookout stopped");
    Ok(())
}
/// First wait between attempts to open the relay's store after it failed
/// at start; doubled after each failure up to [`RELAY_RETRY_MAX`].
const RELAY_RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between attempts: a store back up is found within this.
const RELAY_RETRY_MAX: Duration = Duration::from_secs(30);

/// Tries to open the relay's store until it opens or the daemon stops, with
/// the configuration in force at each attempt (a reload meanwhile is not
/// lost), then puts the relay in `slot`: from then on webhooks are taken.
async fn open_relay_later(slot: Arc<crate::relay::RelaySlot>, config: Arc<CurrentConfig>, tasks: Tasks) {
    let stop = tasks.stopping();
    let mut delay = RELAY_RETRY_FIRST;
    let mut attempts = 1u32;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        attempts += 1;
        let cfg = config.get();
        let Some(rc) = cfg.relay.clone() else { return };
        match crate::relay::Relay::start(rc, &cfg.data_dir, &tasks).await {
            Ok(r) => {
                // A reload that landed while this attempt ran.
                let now = config.get();
                if !Arc::ptr_eq(&now, &cfg)
                    && let Some(rc) = &now.relay
                    && let Err(e) = r.reload(rc.clone())
                {
                    tracing::error!(error = %e, "The reloaded relay configuration could not be applied; the one the store opened with stays");
                }
                slot.open(r);
                tracing::info!(attempts, "Relay store open; webhooks are taken");
                return;
            }
            Err(crate::relay::RelayError::Outbox(e)) => {
                delay = (delay * 2).min(RELAY_RETRY_MAX);
                tracing::warn!(error = %e, attempts, retry_in = ?delay, "Relay store still unavailable; webhooks are answered 503");
                slot.set_waiting(e.to_string());
            }
            Err(e) => {
                // A destination that cannot be built will not be built by
                // trying again.
                tracing::error!(error = %e, "The relay cannot start; webhooks are answered 503 until lookout is restarted with a fixed configuration");
                slot.set_waiting(e.to_string());
                return;
            }
        }
    }
}

fn config_loaded(ok: bool) {
    metrics::gauge!("lookout_config_last_reload_successful").set(if ok { 1.0 } else { 0.0 });
    if ok {
        metrics::gauge!("lookout_config_last_reload_success_timestamp_seconds").set(probe::unix_now());
    }
}

async fn reload(
    source: &ConfigSource,
    config: &CurrentConfig,
    probes: &Probes,
    running: &mut Option<schedule::Running>,
    sink: &Arc<dyn Sink>,
    relay: Option<&Arc<crate::relay::RelaySlot>>,
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
    // The relay's destinations are built before anything changes: one that
    // cannot be rejects the reload whole.
    let relay_outcome = match (relay, &cfg.relay) {
        (Some(slot), Some(rc)) => match slot.get() {
            Some(r) => r.reload(rc.clone()).map_err(|e| format!("relay: {e}")),
            // Not open yet: it opens with the configuration then in force.
            None => Ok(()),
        },
        (None, None) => Ok(()),
        _ => Err("turning the relay on or off (`relay.enabled`) takes effect at the next restart; nothing was reloaded".to_string()),
    };
    if let Err(e) = relay_outcome {
        config_loaded(false);
        tracing::error!(error = %e, "Configuration reload rejected; keeping the running configuration");
        return Err(e);
    }
    let old = config.get();
    let tls = |c: &Config| c.web.as_ref().is_some_and(|w| w.tls.is_some());
    if cfg.listen != old.listen || cfg.data_dir != old.data_dir || cfg.limits != old.limits || tls(&cfg) != tls(&old) {
        tracing::warn!(
            "`server.listen`, `server.header_read_timeout`, `server.max_connections`, TLS (`server.web_config_file`) and `data_dir` changes take effect at the next restart"
        );
    }
    if let Some(r) = running.take() {
        r.stop(grace(&old)).await;
    }
    let cfg = Arc::new(cfg);
    config.set(cfg.clone());
    probes.retain_configured(&cfg);
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
