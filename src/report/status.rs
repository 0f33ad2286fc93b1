//! What the daemon's status page (`/`) shows, shaped from the running
//! state: one row per configured probe, the latest cross-check round, and
//! charts of the last hours from the history. Rendering is
//! [`super::html::status_page`]'s.

use std::collections::BTreeMap;

use crate::crosscheck::{Report, Setup};
use crate::metric::Metric;
use crate::probe::Observation;

/// How far back the status page's charts go, in seconds.
pub const CHART_WINDOW: f64 = 3.0 * 3600.0;

/// Most points a chart line is drawn with: more would only weigh the page.
const CHART_POINTS: usize = 240;

/// The metrics charted, in page order.
const CHARTED: [Metric; 4] = [
    Metric::HitRatio,
    Metric::LatencySeconds,
    Metric::UsedMemoryBytes,
    Metric::ConnectedClients,
];

/// One configured probe on the page.
pub struct ProbeRow<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its kind (`redis`, `http_health`, `prometheus`).
    pub kind: &'a str,
    /// Its schedule, as a person wrote it.
    pub schedule: String,
    /// Its last observation; `None` until it has run once.
    pub last: Option<&'a Observation>,
}

/// One chart: a metric's series, one per probe.
pub struct Chart {
    /// The metric charted.
    pub metric: Metric,
    /// One line per probe.
    pub series: Vec<Series>,
}

/// What the status page shows.
pub struct Status<'a> {
    /// Every configured probe, in configuration order.
    pub probes: Vec<ProbeRow<'a>>,
    /// The latest cross-check round.
    pub report: Option<&'a Report>,
    /// Charts over `[since, until]`.
    pub charts: Vec<Chart>,
    /// Start of the charts: the oldest reading there is, up to [`CHART_WINDOW`] back.
    pub since: f64,
    /// End of the charts (now).
    pub until: f64,
    /// lookout's version.
    pub version: &'a str,
    /// With replicas on a shared store: this replica's name, and who leads
    /// the synthetic alerts' fallback (`None`: not known yet).
    pub replica: Option<(String, Option<String>)>,
    /// The controlled flushes the daemon ran lately (and the one running),
    /// newest first: a line each.
    pub flushes: Vec<crate::store::StoredFlush>,
}

/// Shapes the page. `history` holds the readings of the last
/// [`CHART_WINDOW`] up to `until`, oldest first.
pub fn shape<'a>(
    cfg: &'a dyn Setup,
    latest: &'a BTreeMap<String, Observation>,
    report: Option<&'a Report>,
    history: &[Observation],
    until: f64,
) -> Status<'a> {
    let window_start = until - CHART_WINDOW;
    // Charts show the cross-checked probes (all probes without a cross-check).
    let names: Vec<&str> = match cfg.crosscheck() {
        Some(cc) => std::iter::once(cc.reference.as_str())
            .chain(cc.sources.iter().map(String::as_str))
            .collect(),
        None => cfg.probes().iter().map(|p| p.name.as_str()).collect(),
    };
    let charts = CHARTED
        .into_iter()
        .map(|metric| Chart {
            metric,
            series: names.iter().map(|n| series(history, n, metric)).collect(),
        })
        .collect();
    let probes = cfg
        .probes()
        .iter()
        .map(|p| ProbeRow {
            name: &p.name,
            kind: p.spec.kind(),
            schedule: p.schedule.to_string(),
            last: latest.get(&p.name),
        })
        .collect();
    Status {
        probes,
        report,
        charts,
        // Charts span the data there is, up to the window.
        since: history.first().map(|o| o.timestamp.max(window_start)).unwrap_or(window_start),
        until,
        version: env!("CARGO_PKG_VERSION"),
        replica: None,
        flushes: Vec::new(),
    }
}

fn series(history: &[Observation], probe: &str, metric: Metric) -> Series {
    let points: Vec<(f64, f64)> = history
        .iter()
        .filter(|o| o.name == probe)
        .filter_map(|o| o.values.get(&metric).map(|v| (o.timestamp, *v)))
        .collect();
    Series {
        name: probe.to_string(),
        points: downsample(&points, CHART_POINTS),
    }
}

/// One line of a chart: a source's values over time.
pub struct Series {
    /// Legend.
    pub name: String,
    /// (Unix time, value), oldest first.
    pub points: Vec<(f64, f64)>,
}

/// Downsamples a series to at most `n` points by averaging buckets.
pub fn downsample(points: &[(f64, f64)], n: usize) -> Vec<(f64, f64)> {
    if points.len() <= n || n == 0 {
        return points.to_vec();
    }
    let per = points.len().div_ceil(n);
    points
        .chunks(per)
        .map(|c| {
            let t = c.iter().map(|p| p.0).sum::<f64>() / c.len() as f64;
            let v = c.iter().map(|p| p.1).sum::<f64>() / c.len() as f64;
            (t, v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_follow_the_configuration_and_charts_the_readings() {
        let cfg = crate::fixtures::config(
            "probe_files: []\nprobes:\n  - name: a\n    kind: redis\n    every: 1s\n  - name: b\n    kind: redis\n    every: 2s\n",
        );
        let until = 100_000.0;
        let reading = |t: f64, v: f64| Observation {
            values: [(Metric::ConnectedClients, v)].into_iter().collect(),
            ..crate::fixtures::observation("a", t)
        };
        let history = [reading(until - 60.0, 3.0), reading(until - 30.0, 4.0)];
        let latest: BTreeMap<String, Observation> = [("a".to_string(), history[1].clone())].into_iter().collect();
        let s = shape(&cfg, &latest, None, &history, until);
        let rows: Vec<(&str, bool)> = s.probes.iter().map(|p| (p.name, p.last.is_some())).collect();
        assert_eq!(rows, [("a", true), ("b", false)]);
        assert_eq!(s.charts.len(), CHARTED.len());
        let clients = s.charts.iter().find(|c| c.metric == Metric::ConnectedClients).unwrap();
        assert_eq!(clients.series[0].points, [(until - 60.0, 3.0), (until - 30.0, 4.0)]);
        assert!(clients.series[1].points.is_empty());
        assert_eq!((s.since, s.until), (until - 60.0, until), "the charts span the data there is");
    }
}
