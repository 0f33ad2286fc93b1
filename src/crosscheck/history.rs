//! The cross-check over a window of stored history: agreement per
//! (metric, source), the worst deviation, when it disagreed, and each probe's
//! availability — the uptime figure for SLA reports.

use serde::Serialize;

use crate::store::HistoryReader;

/// One (metric, source) over the window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PairSummary {
    /// Canonical metric.
    pub metric: String,
    /// Source probe.
    pub source: String,
    /// Rounds in the window.
    pub rounds: u64,
    /// Rounds judged agree.
    pub agree: u64,
    /// Rounds judged disagree.
    pub disagree: u64,
    /// agree / (agree + disagree); `None` when never judged.
    pub agreement_ratio: Option<f64>,
    /// Largest |deviation| among disagreements.
    pub worst_deviation: Option<f64>,
    /// First and last disagreement, Unix seconds.
    pub first_disagree: Option<f64>,
    /// Last disagreement.
    pub last_disagree: Option<f64>,
}

/// A probe's availability over the window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Availability {
    /// Probe name.
    pub probe: String,
    /// Runs in the window.
    pub runs: u64,
    /// Successful runs.
    pub ok: u64,
    /// ok / runs.
    pub ratio: Option<f64>,
}

/// The window's summary.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WindowSummary {
    /// Start of the window, Unix seconds.
    pub since: f64,
    /// End of the window.
    pub until: f64,
    /// Rounds stored in the window.
    pub rounds: u64,
    /// Rounds by overall verdict: agree, disagree, incomplete.
    pub round_verdicts: std::collections::BTreeMap<String, u64>,
    /// Per (metric, source).
    pub pairs: Vec<PairSummary>,
    /// Per probe.
    pub availability: Vec<Availability>,
}

impl WindowSummary {
    /// The overall verdict over the window: disagree if any pair ever
    /// disagreed, agree if every pair was judged and always agreed.
    pub fn verdict(&self) -> super::Overall {
        if self.pairs.iter().any(|p| p.disagree > 0) {
            super::Overall::Disagree
        } else if !self.pairs.is_empty() && self.pairs.iter().all(|p| p.agree == p.rounds) {
            super::Overall::Agree
        } else {
            super::Overall::Incomplete
        }
    }
}

/// Summarises `[since, until]` from the store.
pub fn summarise(reader: &HistoryReader, since: f64, until: f64) -> rusqlite::Result<WindowSummary> {
    let (rounds, round_verdicts) = reader.round_counts(since, until)?;
    Ok(WindowSummary {
        since,
        until,
        rounds,
        round_verdicts,
        pairs: reader.pair_summaries(since, until)?,
        availability: reader.availability(since, until)?,
    })
}
