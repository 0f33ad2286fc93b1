//! Reading the history back: observations over a window for the status
//! page's charts and `lookout report`'s reference readings, and the
//! aggregates behind SLA reports and the availability gauges.
//!
//! Every call here blocks on SQLite; async code reaches a reader through
//! [`super::History::read`] or [`super::read_existing`], which run it on the
//! blocking pool.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use serde::de::IntoDeserializer;

use super::summary::{Availability, FLUSH_COLUMNS, PairSummary, StoredFlush};
use super::{HISTORY_FILE, StoreError, schema};
use crate::probe::{FailureReason, Observation, Reading};

/// Read access to the history, on its own connection (WAL lets readers run
/// beside the writer).
pub struct HistoryReader {
    conn: Connection,
    path: PathBuf,
}

impl HistoryReader {
    /// Opens the store under `data_dir` for reading (creating it, with its
    /// schema, when there is none: check first where that is unwanted).
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(HISTORY_FILE);
        Ok(HistoryReader {
            conn: schema::open(&path)?,
            path,
        })
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        StoreError::sqlite(&self.path, e)
    }

    /// The controlled flushes the daemon recorded, newest first, at most
    /// `limit`; with `id`, that one only.
    pub fn flushes(&self, id: Option<&str>, limit: usize) -> Result<Vec<StoredFlush>, StoreError> {
        let read = || -> rusqlite::Result<Vec<StoredFlush>> {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT {FLUSH_COLUMNS} FROM flushes WHERE (?1 IS NULL OR id = ?1) ORDER BY started DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![id, limit as i64], StoredFlush::from_row)?;
            rows.collect()
        };
        read().map_err(|e| self.err(e))
    }

    /// Observations of `probe` (or every probe) since `since`, oldest first.
    pub fn since(&self, probe: Option<&str>, since: f64) -> Result<Vec<Observation>, StoreError> {
        self.since_raw(probe, since).map_err(|e| self.err(e))
    }

    fn since_raw(&self, probe: Option<&str>, since: f64) -> rusqlite::Result<Vec<Observation>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT probe, kind, ts, ok, duration, error, reading, reason FROM observations WHERE ts >= ?1 AND (?2 IS NULL OR probe = ?2) ORDER BY ts",
        )?;
        let rows = stmt.query_map(params![since, probe], |r| {
            let reading: String = r.get(6)?;
            let reading: Reading = serde_json::from_str(&reading).unwrap_or_default();
            Ok(Observation {
                name: r.get(0)?,
                kind: r.get(1)?,
                timestamp: r.get(2)?,
                ok: r.get(3)?,
                duration_seconds: r.get(4)?,
                error: r.get(5)?,
                reason: r.get::<_, Option<String>>(7)?.as_deref().and_then(parse_reason),
                values: reading.values,
                facts: reading.facts,
                sample_times: reading.sample_times,
            })
        })?;
        rows.collect()
    }

    /// Rounds in `[since, until]`, and how many had each overall verdict.
    pub fn round_counts(&self, since: f64, until: f64) -> Result<(u64, BTreeMap<String, u64>), StoreError> {
        let counts = || -> rusqlite::Result<BTreeMap<String, u64>> {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT verdict, COUNT(*) FROM crosscheck_rounds WHERE ts >= ?1 AND ts <= ?2 GROUP BY verdict")?;
            let rows = stmt.query_map(params![since, until], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
            rows.collect()
        };
        let map = counts().map_err(|e| self.err(e))?;
        Ok((map.values().sum(), map))
    }

    /// Agreement per (metric, source) in `[since, until]`. The pairs are
    /// those of the window's first and last rounds; each is then one range
    /// scan of the covering `(metric, source, ts, verdict, deviation)` index,
    /// so the cost follows the window, not the table.
    pub fn pair_summaries(&self, since: f64, until: f64) -> Result<Vec<PairSummary>, StoreError> {
        self.pair_summaries_raw(since, until).map_err(|e| self.err(e))
    }

    fn pair_summaries_raw(&self, since: f64, until: f64) -> rusqlite::Result<Vec<PairSummary>> {
        let mut pairs_stmt = self.conn.prepare_cached(
            "SELECT DISTINCT metric, source FROM crosscheck
             WHERE ts IN ((SELECT MIN(ts) FROM crosscheck WHERE ts >= ?1 AND ts <= ?2), (SELECT MAX(ts) FROM crosscheck WHERE ts >= ?1 AND ts <= ?2))
             ORDER BY source, metric",
        )?;
        let pairs: Vec<(String, String)> = pairs_stmt
            .query_map(params![since, until], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT COUNT(*),
                    SUM(verdict = 'agree'), SUM(verdict = 'disagree'),
                    MAX(CASE WHEN verdict = 'disagree' THEN ABS(deviation) END),
                    MIN(CASE WHEN verdict = 'disagree' THEN ts END),
                    MAX(CASE WHEN verdict = 'disagree' THEN ts END)
             FROM crosscheck INDEXED BY crosscheck_pair WHERE metric = ?1 AND source = ?2 AND ts >= ?3 AND ts <= ?4",
        )?;
        let mut why = self.conn.prepare_cached(
            "SELECT reason FROM crosscheck INDEXED BY crosscheck_pair
             WHERE metric = ?1 AND source = ?2 AND ts >= ?3 AND ts <= ?4 AND verdict = 'disagree'
             ORDER BY ts DESC LIMIT 1",
        )?;
        let mut out = Vec::with_capacity(pairs.len());
        for (metric, source) in pairs {
            let p = stmt.query_row(params![metric, source, since, until], |r| {
                let agree = r.get::<_, Option<i64>>(1)?.unwrap_or(0) as u64;
                let disagree = r.get::<_, Option<i64>>(2)?.unwrap_or(0) as u64;
                Ok(PairSummary {
                    metric: metric.clone(),
                    source: source.clone(),
                    rounds: r.get::<_, i64>(0)? as u64,
                    agree,
                    disagree,
                    agreement_ratio: (agree + disagree > 0).then(|| agree as f64 / (agree + disagree) as f64),
                    worst_deviation: r.get(3)?,
                    first_disagree: r.get(4)?,
                    last_disagree: r.get(5)?,
                    last_disagree_reason: None,
                })
            })?;
            let p = PairSummary {
                last_disagree_reason: if p.disagree > 0 {
                    why.query_row(params![metric, source, since, until], |r| r.get(0))
                        .optional()?
                        .flatten()
                } else {
                    None
                },
                ..p
            };
            out.push(p);
        }
        Ok(out)
    }

    /// Runs and successes per probe in `[since, until]`.
    pub fn availability(&self, since: f64, until: f64) -> Result<Vec<Availability>, StoreError> {
        let rows = || -> rusqlite::Result<Vec<Availability>> {
            let mut stmt = self.conn.prepare_cached(
                "SELECT probe, COUNT(*), SUM(ok) FROM observations INDEXED BY observations_probe_ts_ok WHERE ts >= ?1 AND ts <= ?2 GROUP BY probe ORDER BY probe",
            )?;
            let rows = stmt.query_map(params![since, until], |r| {
                let runs = r.get::<_, i64>(1)? as u64;
                let ok = r.get::<_, i64>(2)? as u64;
                Ok(Availability {
                    probe: r.get(0)?,
                    runs,
                    ok,
                    ratio: (runs > 0).then(|| ok as f64 / runs as f64),
                })
            })?;
            rows.collect()
        };
        rows().map_err(|e| self.err(e))
    }

    /// Count of stored observations (tests, diagnostics).
    pub fn count(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM observations", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }
}

/// A stored failure reason back to its type. A name this build does not
/// know (written by a newer one) reads as no reason rather than failing the
/// whole read.
fn parse_reason(s: &str) -> Option<FailureReason> {
    FailureReason::deserialize(s.into_deserializer())
        .map_err(|_: serde::de::value::Error| ())
        .ok()
}
