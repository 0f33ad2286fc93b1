//! The cross-check over a window of stored history: agreement per
//! (metric, source), the worst deviation, when it disagreed, and each probe's
//! availability — the uptime figure for SLA reports.
//!
//! The store reads and writes the figures ([`crate::store::summary`]); this
//! module turns a round into its stored form and judges a window of them.

use super::Report;
use crate::store::{HistoryReader, StoreError, StoredEntry, StoredRound, WindowSummary};

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

impl Report {
    /// The round as the history stores it.
    pub fn to_stored(&self) -> StoredRound {
        StoredRound {
            timestamp: self.timestamp,
            verdict: self.verdict.as_str(),
            entries: self
                .entries
                .iter()
                .map(|e| StoredEntry {
                    metric: e.metric.clone(),
                    source: e.source.clone(),
                    verdict: e.verdict.as_str(),
                    value: e.value,
                    reference_value: e.reference_value,
                    deviation: e.deviation,
                    reason: (e.verdict != super::Verdict::Agree).then(|| e.reason.clone()),
                })
                .collect(),
        }
    }
}

/// Summarises `[since, until]` from the store.
pub fn summarise(reader: &HistoryReader, since: f64, until: f64) -> Result<WindowSummary, StoreError> {
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
