//! The daemon's cross-check: the recent readings it is fed as probes run,
//! the periodic round that judges them, and the latest round for `/report`
//! and the alert rules.
//!
//! Only the cross-checked probes' readings are kept, and only for
//! [`RECENT_WINDOW`]: enough to bracket a Prometheus sample up to
//! `max_staleness` old and to compute a 5-minute rate. A round is a pure
//! [`super::judge`] of a snapshot; the lock is not held while judging.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::{Overall, Report, Setup, Source, Verdict, judge, record_metrics};
use crate::probe::ProbeConfig;
use crate::probe::{self, Observation};
use crate::store::History;
use crate::task::Periodic;

/// How much recent history the cross-check keeps in memory, in seconds.
pub const RECENT_WINDOW: f64 = 7.0 * 60.0;

/// How often rounds run when no cross-check is configured (the loop idles,
/// ready for a reload that adds one).
const IDLE_PERIOD: Duration = Duration::from_secs(15);

/// The cross-check's input and output. Shared by the probe sink (which
/// feeds it), the round loop (which judges) and the readers of the latest
/// round (`/report`, the status page, the alert rules).
#[derive(Default)]
pub struct Feed {
    recent: Mutex<HashMap<String, VecDeque<Observation>>>,
    latest: RwLock<Option<Arc<Report>>>,
}

impl Feed {
    /// Keeps `obs` if its probe is cross-checked in `cfg`, forgetting what
    /// has left the window.
    pub fn remember(&self, cfg: &impl Setup, obs: &Observation) {
        let Some(cc) = cfg.crosscheck() else { return };
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

    /// Judges the recent readings once, at `now`; `None` without a
    /// cross-check in `cfg`.
    pub fn round(&self, cfg: &impl Setup, now: f64) -> Option<Report> {
        let cc = cfg.crosscheck()?;
        let (reference, histories) = {
            let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            let snapshot = |name: &str| -> Vec<Observation> { recent.get(name).map(|q| q.iter().cloned().collect()).unwrap_or_default() };
            let histories: Vec<(&ProbeConfig, Vec<Observation>)> = cc
                .sources
                .iter()
                .filter_map(|n| cfg.probes().iter().find(|p| &p.name == n))
                .map(|p| (p, snapshot(&p.name)))
                .collect();
            (snapshot(&cc.reference), histories)
        };
        let sources: Vec<Source<'_>> = histories
            .iter()
            .map(|(p, h)| Source {
                name: &p.name,
                kind: p.spec.kind(),
                history: h,
                max_age: max_age(p),
            })
            .collect();
        Some(judge(cc, &reference, &sources, now))
    }

    /// The latest round, if one has run.
    pub fn latest(&self) -> Option<Arc<Report>> {
        self.latest.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn publish(&self, report: Report) {
        *self.latest.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(report));
    }
}

/// A source whose newest observation is older than this is stale: three
/// periods and a timeout.
pub fn max_age(p: &ProbeConfig) -> f64 {
    let period = p.schedule.period().map_or(60.0, |d| d.as_secs_f64());
    3.0 * period + p.timeout.as_secs_f64()
}

/// The round loop: every `crosscheck.every` (read afresh each time, so a
/// reload applies), a round is judged and published as metrics, history and
/// the latest report.
pub struct Rounds<C> {
    /// What is judged, and where the round goes.
    pub feed: Arc<Feed>,
    /// Where rounds are stored.
    pub history: History,
    /// The configuration in force.
    pub config: C,
}

impl<S: Setup + Send + Sync, C: Fn() -> Arc<S> + Send + 'static> Periodic for Rounds<C> {
    fn period(&mut self) -> Duration {
        (self.config)().crosscheck().map(|c| c.every).unwrap_or(IDLE_PERIOD)
    }

    async fn tick(&mut self) {
        let Some(report) = self.feed.round(&*(self.config)(), probe::unix_now()) else {
            return;
        };
        record_metrics(&report);
        if report.verdict == Overall::Disagree {
            let bad: Vec<String> = report
                .entries
                .iter()
                .filter(|e| e.verdict == Verdict::Disagree)
                .map(|e| format!("{}/{}", e.metric, e.source))
                .collect();
            tracing::warn!(disagree = %bad.join(", "), "Cross-check: sources disagree");
        }
        self.history.record_round(report.to_stored());
        self.feed.publish(report);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crosscheck::Verdict;
    use crate::settings::Config;

    use crate::fixtures::observation as obs;

    fn config() -> Config {
        crate::fixtures::config(
            "probe_files: []\nprobes:\n  - name: cache\n    kind: redis\n    url: redis://127.0.0.1:6379\n    every: 1s\n  - name: web\n    kind: http_health\n    url: http://127.0.0.1:9/health\n    every: 5s\n    timeout: 2s\n",
        )
    }

    #[test]
    fn keeps_only_cross_checked_probes_within_the_window() {
        let cfg = config();
        let feed = Feed::default();
        feed.remember(&cfg, &obs("cache", 1000.0));
        feed.remember(&cfg, &obs("cache", 1000.0 + RECENT_WINDOW + 1.0));
        feed.remember(&cfg, &obs("stranger", 1000.0));
        let recent = feed.recent.lock().unwrap();
        assert_eq!(recent.keys().collect::<Vec<_>>(), ["cache"]);
        assert_eq!(recent["cache"].len(), 1, "the reading older than the window is forgotten");
    }

    #[test]
    fn a_round_judges_every_source_and_max_age_is_three_periods_and_a_timeout() {
        let cfg = config();
        let feed = Feed::default();
        feed.remember(&cfg, &obs("cache", 1000.0));
        let report = feed.round(&cfg, 1001.0).expect("a cross-check is configured");
        assert!(report.entries.iter().all(|e| e.source == "web" && e.verdict == Verdict::SourceDown));
        assert!(feed.latest().is_none(), "published by the loop, not by judging");
        let web = cfg.probes.iter().find(|p| p.name == "web").unwrap();
        assert_eq!(max_age(web), 17.0);
    }
}
