//! lookout's own metrics and logs.
//!
//! Metric names follow Prometheus conventions (base units, `_total` for
//! counters, `_seconds` for durations). Success is a gauge value, not a
//! label, so `lookout_probe_success == 0` works in a rule.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::probe::Observation;
use crate::probe::ProbeConfig;

/// Buckets for probe durations: from a loopback PING to a timeout.
const DURATION_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Installs the process-wide recorder. Call once, from the daemon.
pub fn install_recorder() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full("lookout_probe_duration_seconds".into()), DURATION_BUCKETS)?
        .install_recorder()?;
    describe();
    metrics::gauge!("lookout_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("lookout_probe_success", "Whether the probe's last run succeeded (1) or failed (0).");
    describe_histogram!("lookout_probe_duration_seconds", metrics::Unit::Seconds, "Duration of probe runs.");
    describe_gauge!(
        "lookout_probe_value",
        "Last value of a canonical metric read by a probe, in base units."
    );
    describe_gauge!(
        "lookout_probe_last_run_timestamp_seconds",
        metrics::Unit::Seconds,
        "Unix time the probe last ran."
    );
    describe_counter!(
        "lookout_probe_skipped_total",
        "Ticks skipped because the probe's previous run was still in flight."
    );
    describe_counter!("lookout_probe_runs_total", "Probe runs by result (success, or the failure reason).");
    describe_gauge!("lookout_build_info", "lookout's version, as a label.");
    describe_gauge!(
        "lookout_config_last_reload_successful",
        "Whether the last configuration reload succeeded."
    );
    describe_gauge!(
        "lookout_config_last_reload_success_timestamp_seconds",
        metrics::Unit::Seconds,
        "Unix time of the last successful configuration load."
    );
    describe_counter!("lookout_history_errors_total", "Failures of the history store, by operation.");
}

fn probe_labels(cfg: &ProbeConfig, extra: &[(&'static str, String)]) -> Vec<metrics::Label> {
    let mut labels: Vec<metrics::Label> = extra.iter().map(|(k, v)| metrics::Label::new(*k, v.clone())).collect();
    for (k, v) in &cfg.labels {
        labels.push(metrics::Label::new(k.clone(), v.clone()));
    }
    labels
}

/// Records one observation in the metrics.
pub fn record(cfg: &ProbeConfig, obs: &Observation) {
    let pk = probe_labels(cfg, &[("probe", obs.name.clone()), ("kind", obs.kind.clone())]);
    metrics::gauge!("lookout_probe_success", pk.clone()).set(if obs.ok { 1.0 } else { 0.0 });
    metrics::histogram!("lookout_probe_duration_seconds", pk).record(obs.duration_seconds);
    metrics::gauge!("lookout_probe_last_run_timestamp_seconds", "probe" => obs.name.clone()).set(obs.timestamp);
    let result = obs.reason.map(|r| r.as_str()).unwrap_or(if obs.ok { "success" } else { "failure" });
    metrics::counter!("lookout_probe_runs_total", "probe" => obs.name.clone(), "result" => result).increment(1);
    for (metric, value) in &obs.values {
        metrics::gauge!(
            "lookout_probe_value",
            probe_labels(cfg, &[("probe", obs.name.clone()), ("metric", metric.as_str().to_string())])
        )
        .set(*value);
    }
}

/// Counts a skipped tick.
pub fn skipped(probe: &str, n: u64) {
    metrics::counter!("lookout_probe_skipped_total", "probe" => probe.to_string()).increment(n);
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Sets up logging to stderr. `level` is a tracing filter (`info`,
/// `lookout=debug`, …). tokio-cron-scheduler logs every tick at INFO, so it
/// is held at WARN unless the filter names it.
pub fn init_logging(format: LogFormat, level: &str) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let mut filter = EnvFilter::try_new(level).map_err(|e| anyhow::anyhow!("invalid --log-level `{level}`: {e}"))?;
    if !level.contains("tokio_cron_scheduler") {
        filter = filter.add_directive("tokio_cron_scheduler=warn".parse()?);
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let res = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    res.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}
