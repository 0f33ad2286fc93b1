//! lookout's own metrics and logs.
//!
//! Metric names follow Prometheus conventions (base units, `_total` for
//! counters, `_seconds` for durations). Success is a gauge value, not a
//! label, so `lookout_probe_success == 0` works in a rule.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::probe::Observation;
use crate::probe::ProbeConfig;

/// Buckets for durations: from a loopback PING to a timeout. Every
/// histogram gets buckets: a summary's quantiles cannot be aggregated across
/// instances or replicas.
const DURATION_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Buckets for a notification's time from receipt to delivery: seconds to a
/// day of retries.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0,
];

/// The source revision lookout was built from (`LOOKOUT_REVISION` at build
/// time, else the Git commit `build.rs` read), or `unknown`.
pub const REVISION: &str = match option_env!("LOOKOUT_REVISION") {
    Some(r) => r,
    None => "unknown",
};

/// Installs the process-wide recorder. Call once, from the daemon.
pub fn install_recorder() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets(DURATION_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full("lookout_relay_delivery_latency_seconds".into()), LATENCY_BUCKETS)?
        // A wait for a rate budget runs from nothing to a Retry-After's minutes.
        .set_buckets_for_metric(Matcher::Full("lookout_relay_rate_wait_seconds".into()), LATENCY_BUCKETS)?
        .install_recorder()?;
    describe();
    process_collector().describe();
    metrics::gauge!("lookout_build_info", "version" => env!("CARGO_PKG_VERSION"), "revision" => REVISION).set(1.0);
    Ok(handle)
}

/// The process's own metrics (`process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, `process_open_fds`, …), as every
/// Prometheus exporter has them.
fn process_collector() -> &'static metrics_process::Collector {
    static C: std::sync::OnceLock<metrics_process::Collector> = std::sync::OnceLock::new();
    C.get_or_init(metrics_process::Collector::default)
}

/// Renders `/metrics`, the process metrics read fresh.
pub fn render(handle: &PrometheusHandle) -> String {
    process_collector().collect();
    handle.render()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("lookout_probe_success", "Whether the probe's last run succeeded (1) or failed (0).");
    describe_histogram!("lookout_probe_duration_seconds", metrics::Unit::Seconds, "Duration of probe runs.");
    describe_gauge!(
        "lookout_probe_value",
        "Deprecated (removed in the next release): use the lookout_observed_* gauges. Last value of a canonical metric, in base units."
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
    describe_gauge!("lookout_build_info", "lookout's version and source revision, as labels.");
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
    describe_gauge!(
        "lookout_flush_running",
        "Controlled flushes run by the daemon under way on the probe's Redis (0 or 1; one probe may flush two databases at once)."
    );
    describe_gauge!(
        "lookout_flush_paused",
        "Whether the running flush is held by its latency guard (1/0)."
    );
    describe_gauge!(
        "lookout_flush_keys_matched",
        "Keys the last flush's survey matched on the probe's Redis."
    );
    describe_counter!(
        "lookout_flush_keys_deleted_total",
        "Keys deleted by the daemon's controlled flushes."
    );
    describe_counter!(
        "lookout_flush_runs_total",
        "Controlled flushes ended, by outcome (done, dry_run, interrupted, failed)."
    );
    describe_gauge!(
        "lookout_flush_last_success_timestamp_seconds",
        metrics::Unit::Seconds,
        "Unix time the last flush that deleted every matching key ended."
    );
    for m in crate::metric::Metric::ALL {
        describe_gauge!(
            observed_name(m),
            format!("Last {} read by a probe ({}).", m.as_str(), observed_help(m))
        );
    }
    describe_gauge!(
        "lookout_probe_availability_ratio",
        "Share of the probe's runs that succeeded over the window."
    );
    describe_gauge!(
        "lookout_crosscheck_agree",
        "Whether the source agrees with the reference on the metric (1/0; NaN when it could not be judged)."
    );
    describe_gauge!(
        "lookout_crosscheck_deviation",
        "How far the source is from the reference on the metric, in the rule's terms."
    );
    describe_gauge!("lookout_crosscheck_verdict", "1 for the last cross-check round's verdict.");
    describe_gauge!(
        "lookout_crosscheck_last_round_timestamp_seconds",
        metrics::Unit::Seconds,
        "Unix time of the last cross-check round."
    );
    describe_gauge!("lookout_alerts", "Synthetic alert instances by rule and state.");
    describe_counter!(
        "lookout_alert_notifications_total",
        "Synthetic alert notifications sent, by path and outcome."
    );
    describe_gauge!("lookout_maintenance_active", "Whether a maintenance window is in force (1/0).");
    describe_gauge!(
        "lookout_network_lost",
        "Whether lookout believes it has lost the network itself (1/0); no alert is sent meanwhile."
    );
    describe_gauge!(
        "lookout_redis_node_up",
        "Whether lookout's PING and INFO of the topology's node succeeded (1/0)."
    );
    describe_gauge!(
        "lookout_redis_node_role",
        "1 for the node's current role in the topology (master, replica), 0 for the other."
    );
    describe_gauge!(
        "lookout_redis_node_latency_seconds",
        metrics::Unit::Seconds,
        "Median PING round trip of the topology's node."
    );
    describe_gauge!(
        "lookout_redis_replication_link_up",
        "Whether the replica's master_link_status is up (1/0)."
    );
    describe_gauge!(
        "lookout_redis_replication_lag_bytes",
        metrics::Unit::Bytes,
        "Bytes of its master's replication stream the replica has not processed."
    );
    describe_gauge!(
        "lookout_redis_replication_lag_seconds",
        metrics::Unit::Seconds,
        "Seconds since the replica's master last heard from it."
    );
    describe_gauge!(
        "lookout_redis_masters",
        "Reachable nodes of the topology that say they are master (more than one: split brain)."
    );
    describe_gauge!(
        "lookout_redis_sentinels_up",
        "Sentinels (configured, and found by SENTINEL SENTINELS) that answered SENTINEL MASTER."
    );
    describe_gauge!(
        "lookout_redis_sentinels_agree",
        "Whether every answering sentinel names the same master (1/0)."
    );
    describe_gauge!(
        "lookout_redis_sentinel_quorum_ok",
        "Whether SENTINEL CKQUORUM says quorum and failover authorisation can be reached (1/0)."
    );
    describe_counter!("lookout_redis_failovers_total", "Master changes seen by the probe.");
    describe_gauge!(
        "lookout_redis_cluster_state_ok",
        "Whether CLUSTER INFO says cluster_state:ok (1/0)."
    );
    describe_gauge!(
        "lookout_redis_cluster_slots_assigned",
        "Slots of the 16,384 assigned to a shard (cluster_slots_assigned)."
    );
    describe_gauge!(
        "lookout_redis_cluster_slots_ok",
        "Slots of the 16,384 served: assigned and their master not failing (cluster_slots_ok)."
    );
    describe_gauge!(
        "lookout_redis_cluster_shards_without_master",
        "Shards owning slots with no master lookout can reach."
    );
    describe_gauge!("lookout_redis_cluster_nodes_failing", "Nodes the cluster marks fail or pfail.");
    describe_gauge!(
        "lookout_redis_last_failover_timestamp_seconds",
        metrics::Unit::Seconds,
        "Unix time the probe last saw the master change."
    );
    describe_counter!("lookout_relay_received_total", "Webhooks accepted and stored.");
    describe_counter!(
        "lookout_relay_duplicates_total",
        "Webhooks already stored within the dedup window: answered 200, not delivered again."
    );
    describe_counter!("lookout_relay_rejected_total", "Webhooks refused, by reason.");
    describe_counter!("lookout_relay_unrouted_total", "Notifications that matched no route.");
    describe_counter!(
        "lookout_relay_store_errors_total",
        "Outbox writes that failed (the webhook was answered 503)."
    );
    describe_counter!(
        "lookout_relay_lease_lost_total",
        "Delivery outcomes not recorded because the claim's lease ran out first and another replica took the delivery over (it may be sent twice)."
    );
    describe_counter!(
        "lookout_relay_deliveries_total",
        "Delivery attempts by destination and outcome (success, retry, dead; digested: delivered inside a digest; superseded: not sent, a newer notification of the group was); failures by reason (network, timeout, rate_limited, server_error, auth_error, client_error, template, expired, unconfigured)."
    );
    describe_gauge!("lookout_relay_in_flight", "Deliveries under way to the destination.");
    describe_gauge!(
        "lookout_relay_leader",
        "With a shared PostgreSQL store: 1 while this replica (label) leads, and sends the synthetic alerts' fallback; 0 otherwise."
    );
    describe_counter!(
        "lookout_relay_digests_total",
        "Digests sent in place of a destination's backlog, by outcome (success, retry); a retry by reason."
    );
    describe_histogram!(
        "lookout_relay_attempt_duration_seconds",
        metrics::Unit::Seconds,
        "Duration of one delivery attempt."
    );
    describe_histogram!(
        "lookout_relay_rate_wait_seconds",
        metrics::Unit::Seconds,
        "Time a send waited for the destination's rate budget (its rate limit and any Retry-After pause; shared by the replicas of a PostgreSQL store)."
    );
    describe_counter!(
        "lookout_relay_rate_budget_errors_total",
        "Tokens that could not be taken from a destination's shared rate budget (PostgreSQL unreachable); the send waits and asks again."
    );
    describe_gauge!("lookout_relay_queue_depth", "Notifications waiting for the destination.");
    describe_gauge!(
        "lookout_relay_oldest_pending_age_seconds",
        metrics::Unit::Seconds,
        "Age of the oldest notification waiting for the destination."
    );
    describe_histogram!(
        "lookout_relay_delivery_latency_seconds",
        metrics::Unit::Seconds,
        "Time from a notification's receipt to its delivery."
    );
}

/// The unit of a canonical metric, for its help text.
fn observed_help(m: crate::metric::Metric) -> &'static str {
    use crate::metric::Metric::*;
    match m {
        LatencySeconds => "seconds",
        KeyspaceHits | KeyspaceMisses => "the lifetime counter as Redis reports it",
        HitRatio | MemFragmentationRatio => "a ratio",
        ConnectedClients | Maxclients => "clients",
        UsedMemoryBytes | MaxmemoryBytes => "bytes",
    }
}

/// The per-metric gauge of a canonical metric: one name, one unit, as
/// Prometheus's conventions ask (`lookout_probe_value{metric=…}` mixes them).
pub fn observed_name(m: crate::metric::Metric) -> &'static str {
    use crate::metric::Metric::*;
    match m {
        LatencySeconds => "lookout_observed_latency_seconds",
        KeyspaceHits => "lookout_observed_keyspace_hits",
        KeyspaceMisses => "lookout_observed_keyspace_misses",
        HitRatio => "lookout_observed_hit_ratio",
        ConnectedClients => "lookout_observed_connected_clients",
        Maxclients => "lookout_observed_maxclients",
        UsedMemoryBytes => "lookout_observed_used_memory_bytes",
        MaxmemoryBytes => "lookout_observed_maxmemory_bytes",
        MemFragmentationRatio => "lookout_observed_mem_fragmentation_ratio",
    }
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
        metrics::gauge!(
            observed_name(*metric),
            probe_labels(cfg, &[("probe", obs.name.clone()), ("kind", obs.kind.clone())])
        )
        .set(*value);
    }
    if let Some(t) = &obs.facts.topology {
        record_topology(cfg, &obs.name, t);
    }
}

/// Records a topology's facts (`redis_sentinel`, `redis_cluster`): per
/// node, and for the whole. A master change is one event that logs and
/// counts.
///
/// The node's role is a label of `lookout_redis_node_role` alone, set 1 for
/// the current role and 0 for the other: a `role` label on every per-node
/// series would leave the former master's series behind after a failover
/// (the exporter keeps every series it has seen), still saying `master`.
fn record_topology(cfg: &ProbeConfig, probe: &str, t: &crate::probe::topology::Topology) {
    let p = || probe.to_string();
    for n in &t.nodes {
        let nl = || probe_labels(cfg, &[("probe", p()), ("node", n.address.clone())]);
        metrics::gauge!("lookout_redis_node_up", nl()).set(if n.ok { 1.0 } else { 0.0 });
        for role in ["master", "replica"] {
            let mut labels = nl();
            labels.push(metrics::Label::new("role", role));
            metrics::gauge!("lookout_redis_node_role", labels).set(if n.role == role { 1.0 } else { 0.0 });
        }
        if let Some(v) = n.latency_seconds {
            metrics::gauge!("lookout_redis_node_latency_seconds", nl()).set(v);
        }
        if let Some(up) = n.link_up {
            metrics::gauge!("lookout_redis_replication_link_up", nl()).set(if up { 1.0 } else { 0.0 });
        }
        if let Some(v) = n.lag_bytes {
            metrics::gauge!("lookout_redis_replication_lag_bytes", nl()).set(v);
        }
        if let Some(v) = n.lag_seconds {
            metrics::gauge!("lookout_redis_replication_lag_seconds", nl()).set(v);
        }
    }
    let pl = || probe_labels(cfg, &[("probe", p())]);
    match &t.cluster {
        // A cluster has a master per shard: more than one is no split brain.
        None => metrics::gauge!("lookout_redis_masters", pl()).set(t.claimed_masters() as f64),
        Some(c) => {
            metrics::gauge!("lookout_redis_cluster_state_ok", pl()).set(if c.state_ok { 1.0 } else { 0.0 });
            metrics::gauge!("lookout_redis_cluster_slots_assigned", pl()).set(f64::from(c.slots_assigned));
            metrics::gauge!("lookout_redis_cluster_slots_ok", pl()).set(f64::from(c.slots_ok));
            metrics::gauge!("lookout_redis_cluster_shards_without_master", pl()).set(f64::from(c.shards_without_master));
            metrics::gauge!("lookout_redis_cluster_nodes_failing", pl()).set(f64::from(c.failing_nodes));
        }
    }
    if !t.sentinels.is_empty() {
        metrics::gauge!("lookout_redis_sentinels_up", pl()).set(t.sentinels.iter().filter(|s| s.ok).count() as f64);
    }
    if let Some(a) = t.sentinels_agree {
        metrics::gauge!("lookout_redis_sentinels_agree", pl()).set(if a { 1.0 } else { 0.0 });
    }
    if let Some(q) = t.quorum_ok {
        metrics::gauge!("lookout_redis_sentinel_quorum_ok", pl()).set(if q { 1.0 } else { 0.0 });
    }
    // Present from the first run, so that `increase()` sees the first failover.
    metrics::counter!("lookout_redis_failovers_total", pl()).increment(0);
    if let Some(f) = &t.failover {
        metrics::counter!("lookout_redis_failovers_total", pl()).increment(1);
        metrics::gauge!("lookout_redis_last_failover_timestamp_seconds", pl()).set(f.at);
        tracing::warn!(probe, from = %f.from, to = %f.to, "Redis master changed");
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
    /// `key=value` pairs per line (logfmt), as Prometheus and Grafana Loki read them.
    Logfmt,
}

/// Sets up logging to stderr. `level` is a tracing filter (`info`,
/// `lookout=debug`, …). tokio-cron-scheduler logs every tick at INFO, so it
/// is held at WARN unless the filter names it.
pub fn init_logging(format: LogFormat, level: &str) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let mut filter = EnvFilter::try_new(level).map_err(|e| anyhow::anyhow!("invalid --log-level `{level}`: {e}"))?;
    if !level.contains("tokio_cron_scheduler") {
        filter = filter.add_directive("tokio_cron_scheduler=warn".parse()?);
    }
    let res = match format {
        // Colours only for a person at a terminal, never in a file or journald.
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .try_init(),
        LogFormat::Logfmt => tracing_subscriber::registry()
            .with(filter)
            .with(tracing_logfmt::builder().layer().with_writer(std::io::stderr))
            .try_init()
            .map_err(Into::into),
    };
    res.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}
