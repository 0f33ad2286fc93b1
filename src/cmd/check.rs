//! `lookout check`: every probe once, now, as a table or as JSON.
//!
//! The JSON form is a stable interface (documented in the README): an array
//! with one object per probe: `name`, `kind`, `ok`, `error`,
//! `duration_seconds`, `values` keyed by canonical metric name.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use super::{Format, block_on, fail};
use crate::metric::Metric;
use crate::probe::{self, Observation};
use crate::settings::Config;

/// `lookout check`'s flags.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

impl CheckArgs {
    /// Runs every probe once and prints the results; exit 0 all succeeded,
    /// 1 otherwise.
    pub fn execute(self, cfg: &Config) -> ExitCode {
        let results = match block_on(run_all(cfg)) {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return fail(1, e),
            Err(status) => return status,
        };
        match print(&results, self.format, &mut std::io::stdout().lock()) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => fail(1, e),
        }
    }
}

/// One probe's result in `--format json`.
#[derive(Debug, Serialize)]
pub struct CheckResult<'a> {
    /// Probe name.
    pub name: &'a str,
    /// Probe kind.
    pub kind: &'a str,
    /// Whether it succeeded.
    pub ok: bool,
    /// Why not.
    pub error: Option<&'a str>,
    /// How long it took.
    pub duration_seconds: f64,
    /// Values by canonical metric name.
    pub values: &'a BTreeMap<Metric, f64>,
    /// Topology kinds: the master, the nodes with their roles, the sentinels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topology: Option<&'a crate::probe::topology::Topology>,
}

/// Runs every probe once, concurrently: what each source says now, without
/// the daemon's schedule or history.
pub async fn run_all(cfg: &Config) -> anyhow::Result<Vec<Observation>> {
    let handles = cfg
        .probes
        .iter()
        .map(|p| probe::build(p).map_err(|e| anyhow::anyhow!("probe `{}`: {e}", p.name)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(futures::future::join_all(handles.iter().map(probe::run)).await)
}

/// Writes the results in `format`; returns whether all succeeded, which
/// decides the exit status.
pub fn print(results: &[Observation], format: Format, out: &mut dyn Write) -> std::io::Result<bool> {
    let text = match format {
        Format::Json => {
            let items: Vec<CheckResult<'_>> = results
                .iter()
                .map(|o| CheckResult {
                    name: &o.name,
                    kind: &o.kind,
                    ok: o.ok,
                    error: o.error.as_deref(),
                    duration_seconds: o.duration_seconds,
                    values: &o.values,
                    topology: o.facts.topology.as_deref(),
                })
                .collect();
            super::json(&items).map_err(std::io::Error::other)?
        }
        Format::Text => {
            let rows: Vec<Vec<String>> = results
                .iter()
                .map(|o| {
                    vec![
                        o.name.clone(),
                        o.kind.clone(),
                        if o.ok { "ok".into() } else { "FAIL".into() },
                        format!("{:.1}ms", o.duration_seconds * 1000.0),
                        [
                            format_values(&o.values),
                            o.facts.topology.as_deref().map(format_topology).unwrap_or_default(),
                        ]
                        .join(" ")
                        .trim()
                        .to_string(),
                        o.error.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            crate::table::render(&["PROBE", "KIND", "OK", "DURATION", "VALUES", "ERROR"], &rows)
        }
    };
    out.write_all(text.as_bytes())?;
    Ok(results.iter().all(|o| o.ok))
}

/// Values in a compact human form: `latency=0.4ms hits=1520 …`.
pub fn format_values(values: &BTreeMap<Metric, f64>) -> String {
    values
        .iter()
        .map(|(m, v)| match m {
            Metric::LatencySeconds => format!("latency={:.2}ms", v * 1000.0),
            Metric::KeyspaceHits => format!("hits={v}"),
            Metric::KeyspaceMisses => format!("misses={v}"),
            Metric::HitRatio => format!("hit_ratio={v:.4}"),
            Metric::ConnectedClients => format!("clients={v}"),
            Metric::Maxclients => format!("maxclients={v}"),
            Metric::UsedMemoryBytes => format!("used_memory={}", bytes(*v)),
            Metric::MaxmemoryBytes => format!("maxmemory={}", if *v == 0.0 { "none".into() } else { bytes(*v) }),
            Metric::MemFragmentationRatio => format!("frag={v:.2}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A topology in a compact human form: `master=10.0.0.5:6379 replicas=2/2
/// sentinels=3/3 quorum=ok`, or `cluster=ok slots=16384/16384 nodes=6/6`.
pub fn format_topology(t: &crate::probe::topology::Topology) -> String {
    let up = |role: Option<&str>| {
        let of: Vec<_> = t.nodes.iter().filter(|n| role.is_none_or(|r| n.role == r)).collect();
        format!("{}/{}", of.iter().filter(|n| n.ok).count(), of.len())
    };
    match &t.cluster {
        Some(c) => format!(
            "cluster={} slots={}/16384 nodes={}",
            if c.state_ok { "ok" } else { "fail" },
            c.slots_ok,
            up(None)
        ),
        None => {
            let mut s = format!(
                "master={} replicas={} sentinels={}/{}",
                t.master.as_deref().unwrap_or("unknown"),
                up(Some("replica")),
                t.sentinels.iter().filter(|v| v.ok).count(),
                t.sentinels.len()
            );
            if let Some(q) = t.quorum_ok {
                s.push_str(if q { " quorum=ok" } else { " quorum=LOST" });
            }
            if t.sentinels_agree == Some(false) {
                s.push_str(" sentinels_disagree");
            }
            s
        }
    }
}

/// A byte count in binary units, one decimal: `1.5MiB`.
fn bytes(v: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = v;
    let mut i = 0;
    while x >= 1024.0 && i < UNITS.len() - 1 {
        x /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{v}B") } else { format!("{x:.1}{}", UNITS[i]) }
}
