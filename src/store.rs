//! The history: every observation, kept in SQLite (WAL mode) under
//! `data_dir` for the reports and the status page.
//!
//! Writes go through one background thread that batches them into a
//! transaction per burst, so probing never waits on the disk. A store that
//! cannot be opened or written is reported (log + `lookout_history_errors_total`)
//! and probing carries on without it: losing history is better than losing
//! monitoring.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};

use crate::crosscheck::Report;
use crate::crosscheck::history::{Availability, PairSummary};
use crate::probe::{Observation, Reading};

/// Name of the history database file inside `data_dir`.
pub const HISTORY_FILE: &str = "history.db";

/// A store error, with the file it concerns.
#[derive(Debug, thiserror::Error)]
#[error("history store {path}: {source}")]
pub struct StoreError {
    path: PathBuf,
    #[source]
    source: rusqlite::Error,
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = open_unchecked(path)?;
    let err = |source| StoreError {
        path: path.to_path_buf(),
        source,
    };
    // A database that opens but is damaged fails here rather than on the
    // first write. Only the writer checks: it reads the whole file.
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(err)?;
    if check != "ok" {
        tracing::error!(path = %path.display(), result = %check, "History database failed its integrity check");
        return Err(StoreError {
            path: path.to_path_buf(),
            source: rusqlite::Error::InvalidQuery,
        });
    }
    Ok(conn)
}

fn open_unchecked(path: &Path) -> Result<Connection, StoreError> {
    let err = |source| StoreError {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open(path).map_err(err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS observations (
            id INTEGER PRIMARY KEY,
            probe TEXT NOT NULL,
            kind TEXT NOT NULL,
            ts REAL NOT NULL,
            ok INTEGER NOT NULL,
            duration REAL NOT NULL,
            error TEXT,
            reading TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS observations_probe_ts ON observations(probe, ts);
        -- Covering: availability over a window reads the index alone.
        CREATE INDEX IF NOT EXISTS observations_probe_ts_ok ON observations(probe, ts, ok);
        CREATE INDEX IF NOT EXISTS observations_ts ON observations(ts);
        CREATE TABLE IF NOT EXISTS crosscheck_rounds (
            ts REAL NOT NULL,
            verdict TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS crosscheck_rounds_ts ON crosscheck_rounds(ts);
        CREATE TABLE IF NOT EXISTS crosscheck (
            ts REAL NOT NULL,
            metric TEXT NOT NULL,
            source TEXT NOT NULL,
            verdict TEXT NOT NULL,
            value REAL,
            reference_value REAL,
            deviation REAL
        );
        CREATE INDEX IF NOT EXISTS crosscheck_ts ON crosscheck(ts);
        -- Covering and in group order: a window summary is one index scan,
        -- no sort and no table lookups (a day of 1 s rounds is 2.3 M rows).
        CREATE INDEX IF NOT EXISTS crosscheck_pair ON crosscheck(metric, source, ts, verdict, deviation);",
    )
    .map_err(err)?;
    Ok(conn)
}

enum Cmd {
    Record(Box<Observation>),
    Round(Box<Report>),
    Flush(mpsc::Sender<()>),
}

/// Handle to the background writer. Cloning shares the writer.
#[derive(Clone)]
pub struct History {
    tx: Option<mpsc::SyncSender<Cmd>>,
    path: PathBuf,
}

impl History {
    /// Opens (creating if needed) the store under `data_dir` and starts the
    /// writer. On failure the error is returned together with a disabled
    /// handle, so the caller can report it and go on.
    pub fn open(data_dir: &Path, retention: Duration) -> (History, Option<StoreError>) {
        let path = data_dir.join(HISTORY_FILE);
        if let Err(e) = std::fs::create_dir_all(data_dir) {
            return (
                History {
                    tx: None,
                    path: path.clone(),
                },
                Some(StoreError {
                    path,
                    source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
                }),
            );
        }
        let conn = match open(&path) {
            Ok(c) => c,
            Err(e) => return (History { tx: None, path }, Some(e)),
        };
        // Bounded: if the disk stalls, observations are dropped (and counted)
        // instead of growing memory without limit.
        let (tx, rx) = mpsc::sync_channel::<Cmd>(10_000);
        let p = path.clone();
        let spawned = thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || writer(conn, rx, retention, p));
        match spawned {
            Ok(_) => (History { tx: Some(tx), path }, None),
            Err(e) => (
                History {
                    tx: None,
                    path: path.clone(),
                },
                Some(StoreError {
                    path,
                    source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
                }),
            ),
        }
    }

    /// A handle that stores nothing (for one-shot commands).
    pub fn disabled() -> History {
        History {
            tx: None,
            path: PathBuf::new(),
        }
    }

    /// Where the database is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues an observation for writing. Never blocks.
    pub fn record(&self, obs: &Observation) {
        if let Some(tx) = &self.tx
            && tx.try_send(Cmd::Record(Box::new(obs.clone()))).is_err()
        {
            metrics::counter!("lookout_history_errors_total", "op" => "queue_full").increment(1);
        }
    }

    /// Queues a cross-check round for writing. Never blocks.
    pub fn record_round(&self, report: &Report) {
        if let Some(tx) = &self.tx
            && tx.try_send(Cmd::Round(Box::new(report.clone()))).is_err()
        {
            metrics::counter!("lookout_history_errors_total", "op" => "queue_full").increment(1);
        }
    }

    /// Waits until everything queued so far is written (shutdown, tests).
    pub async fn flush(&self) {
        let Some(tx) = self.tx.clone() else { return };
        let _ = tokio::task::spawn_blocking(move || {
            let (done_tx, done_rx) = mpsc::channel();
            if tx.send(Cmd::Flush(done_tx)).is_ok() {
                let _ = done_rx.recv_timeout(Duration::from_secs(10));
            }
        })
        .await;
    }
}

fn writer(mut conn: Connection, rx: mpsc::Receiver<Cmd>, retention: Duration, path: PathBuf) {
    let mut last_prune: Option<Instant> = None;
    loop {
        let first = match rx.recv() {
            Ok(c) => c,
            Err(_) => return,
        };
        let mut batch = Vec::new();
        let mut rounds = Vec::new();
        let mut waiters = Vec::new();
        let mut push = |c: Cmd, batch: &mut Vec<Box<Observation>>, rounds: &mut Vec<Box<Report>>| match c {
            Cmd::Record(o) => batch.push(o),
            Cmd::Round(r) => rounds.push(r),
            Cmd::Flush(w) => waiters.push(w),
        };
        push(first, &mut batch, &mut rounds);
        while batch.len() + rounds.len() < 1000 {
            match rx.try_recv() {
                Ok(c) => push(c, &mut batch, &mut rounds),
                Err(_) => break,
            }
        }
        if !(batch.is_empty() && rounds.is_empty())
            && let Err(e) = write_batch(&mut conn, &batch, &rounds)
        {
            metrics::counter!("lookout_history_errors_total", "op" => "write").increment(1);
            tracing::error!(path = %path.display(), error = %e, dropped = batch.len(), "Cannot write observations to the history store");
        }
        if last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
            let cutoff = crate::probe::unix_now() - retention.as_secs_f64();
            let pruned = conn
                .execute("DELETE FROM crosscheck WHERE ts < ?1", params![cutoff])
                .and_then(|_| conn.execute("DELETE FROM crosscheck_rounds WHERE ts < ?1", params![cutoff]))
                .and_then(|_| conn.execute("DELETE FROM observations WHERE ts < ?1", params![cutoff]));
            match pruned {
                Ok(n) if n > 0 => tracing::info!(deleted = n, "Pruned history older than the retention"),
                Ok(_) => {}
                Err(e) => {
                    metrics::counter!("lookout_history_errors_total", "op" => "prune").increment(1);
                    tracing::error!(path = %path.display(), error = %e, "Cannot prune the history store");
                }
            }
            last_prune = Some(Instant::now());
        }
        for w in waiters {
            let _ = w.send(());
        }
    }
}

fn write_batch(conn: &mut Connection, batch: &[Box<Observation>], rounds: &[Box<Report>]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut round = tx.prepare_cached("INSERT INTO crosscheck_rounds (ts, verdict) VALUES (?1, ?2)")?;
        let mut entry = tx.prepare_cached(
            "INSERT INTO crosscheck (ts, metric, source, verdict, value, reference_value, deviation) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for r in rounds {
            round.execute(params![r.timestamp, r.verdict.as_str()])?;
            for e in &r.entries {
                entry.execute(params![
                    r.timestamp,
                    e.metric,
                    e.source,
                    e.verdict.as_str(),
                    e.value,
                    e.reference_value,
                    e.deviation
                ])?;
            }
        }
    }
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO observations (probe, kind, ts, ok, duration, error, reading) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for o in batch {
            let reading = Reading {
                values: o.values.clone(),
                facts: o.facts.clone(),
                sample_times: o.sample_times.clone(),
            };
            let json = serde_json::to_string(&reading).unwrap_or_else(|_| "{}".to_string());
            stmt.execute(params![o.name, o.kind, o.timestamp, o.ok, o.duration_seconds, o.error, json])?;
        }
    }
    tx.commit()
}

/// Read access to the history, on its own connection (WAL lets readers run
/// beside the writer).
pub struct HistoryReader {
    conn: Connection,
}

impl HistoryReader {
    /// Opens the store under `data_dir` for reading.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Ok(HistoryReader {
            conn: open_unchecked(&data_dir.join(HISTORY_FILE))?,
        })
    }

    /// Observations of `probe` (or every probe) since `since`, oldest first.
    pub fn since(&self, probe: Option<&str>, since: f64) -> rusqlite::Result<Vec<Observation>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT probe, kind, ts, ok, duration, error, reading FROM observations WHERE ts >= ?1 AND (?2 IS NULL OR probe = ?2) ORDER BY ts",
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
                reason: None,
                values: reading.values,
                facts: reading.facts,
                sample_times: reading.sample_times,
            })
        })?;
        rows.collect()
    }

    /// Rounds in `[since, until]`, and how many had each overall verdict.
    pub fn round_counts(&self, since: f64, until: f64) -> rusqlite::Result<(u64, std::collections::BTreeMap<String, u64>)> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT verdict, COUNT(*) FROM crosscheck_rounds WHERE ts >= ?1 AND ts <= ?2 GROUP BY verdict")?;
        let rows = stmt.query_map(params![since, until], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
        let map: std::collections::BTreeMap<String, u64> = rows.collect::<rusqlite::Result<_>>()?;
        Ok((map.values().sum(), map))
    }

    /// Agreement per (metric, source) in `[since, until]`. The pairs are
    /// those of the window's first and last rounds; each is then one range
    /// scan of the covering `(metric, source, ts, verdict, deviation)` index,
    /// so the cost follows the window, not the table.
    pub fn pair_summaries(&self, since: f64, until: f64) -> rusqlite::Result<Vec<PairSummary>> {
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
                })
            })?;
            out.push(p);
        }
        Ok(out)
    }

    /// Runs and successes per probe in `[since, until]`.
    pub fn availability(&self, since: f64, until: f64) -> rusqlite::Result<Vec<Availability>> {
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
    }

    /// Count of stored observations (tests, diagnostics).
    pub fn count(&self) -> rusqlite::Result<i64> {
        self.conn.query_row("SELECT COUNT(*) FROM observations", [], |r| r.get(0))
    }

    /// The newest observation of a probe.
    pub fn latest(&self, probe: &str) -> rusqlite::Result<Option<Observation>> {
        let ts: Option<f64> = self
            .conn
            .query_row("SELECT MAX(ts) FROM observations WHERE probe = ?1", params![probe], |r| r.get(0))
            .optional()?
            .flatten();
        match ts {
            Some(ts) => Ok(self.since(Some(probe), ts)?.pop()),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::Metric;

    fn obs(name: &str, ts: f64) -> Observation {
        let mut values = std::collections::BTreeMap::new();
        values.insert(Metric::KeyspaceHits, 42.0);
        Observation {
            name: name.into(),
            kind: "redis".into(),
            ok: true,
            error: None,
            reason: None,
            timestamp: ts,
            duration_seconds: 0.001,
            values,
            facts: Default::default(),
            sample_times: Default::default(),
        }
    }

    #[tokio::test]
    async fn writes_reads_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let (h, err) = History::open(dir.path(), Duration::from_secs(3600));
        assert!(err.is_none());
        let now = crate::probe::unix_now();
        h.record(&obs("old", now - 7200.0));
        h.record(&obs("a", now));
        h.flush().await;
        let r = HistoryReader::open(dir.path()).unwrap();
        let all = r.since(None, 0.0).unwrap();
        // The first batch is written before the first prune, which then removes "old".
        assert!(all.iter().any(|o| o.name == "a"));
        assert_eq!(r.latest("a").unwrap().unwrap().values[&Metric::KeyspaceHits], 42.0);
        assert!(all.iter().all(|o| o.name != "old"), "pruned");
    }

    #[test]
    fn corrupt_store_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(HISTORY_FILE), vec![0x42u8; 8192]).unwrap();
        let (_h, err) = History::open(dir.path(), Duration::from_secs(60));
        assert!(err.is_some());
    }
}
