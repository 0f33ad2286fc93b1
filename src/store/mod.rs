//! The history: every observation and cross-check round, kept in SQLite
//! (WAL mode) under `data_dir` for the reports, the status page and the
//! availability gauges.
//!
//! Writes go through one background thread that batches them into a
//! transaction per burst, so probing never waits on the disk. Reads go
//! through one [`HistoryReader`] per process, on the blocking pool. A store
//! that cannot be opened or written is reported (log +
//! `lookout_history_errors_total`) and probing carries on without it: losing
//! history is better than losing monitoring.
//!
//! The store owns the history's types ([`summary`]); the cross-check judges
//! them. Nothing here imports the cross-check.

mod reader;
mod schema;
pub mod summary;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

use crate::probe::{Observation, Reading};
pub use reader::HistoryReader;
use summary::FLUSH_COLUMNS;
pub use summary::{Availability, PairSummary, StoredEntry, StoredFlush, StoredRound, WindowSummary};

/// Name of the history database file inside `data_dir`.
pub const HISTORY_FILE: &str = "history.db";

/// Why the history store could not do something, with the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `data_dir` could not be created.
    #[error("history store {}: cannot create its directory: {source}", path.display())]
    CreateDir {
        /// The database file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// SQLite refused (a damaged, locked or unwritable file, a full disk).
    #[error("history store {}: {source}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The file was written by a newer lookout, whose schema this build does
    /// not know: refused rather than misread or "migrated" backwards.
    #[error("history store {}: written by a newer lookout (schema version {found}; this build reads up to {supported}): upgrade lookout, or point `data_dir` elsewhere", path.display())]
    Newer {
        /// The database file.
        path: PathBuf,
        /// The file's `user_version`.
        found: i64,
        /// The newest this build reads.
        supported: i64,
    },
    /// The file opens but failed its integrity check.
    #[error("history store {}: integrity check failed: {result}", path.display())]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// `PRAGMA quick_check`'s first complaint.
        result: String,
    },
    /// The writer thread could not be started.
    #[error("history store {}: cannot start the writer thread: {source}", path.display())]
    Thread {
        /// The database file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The store failed to open at start, so there is nothing to read.
    #[error("the history store is unavailable")]
    Unavailable,
    /// A read on the blocking pool panicked or was cancelled.
    #[error("history read did not complete: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl StoreError {
    fn sqlite(path: &Path, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        }
    }
}

enum Cmd {
    Record(Box<Observation>),
    Round(Box<StoredRound>),
    /// A controlled flush's record (not to be confused with [`Cmd::Flush`],
    /// which waits for the queue to be written).
    FlushRecord(Box<StoredFlush>),
    Flush(mpsc::Sender<()>),
}

/// Handle to the daemon's history: the background writer and the one
/// shared reader. Cloning shares both. A handle whose store failed to open
/// stores nothing and reads [`StoreError::Unavailable`].
#[derive(Clone)]
pub struct History {
    tx: Option<mpsc::SyncSender<Cmd>>,
    /// A std mutex, not a tokio one: it is only ever locked on the blocking
    /// pool, around one SQLite call, never across an await.
    reader: Option<Arc<Mutex<HistoryReader>>>,
}

impl History {
    /// Opens (creating if needed) the store under `data_dir` and starts the
    /// writer. On failure the error is returned together with a disabled
    /// handle, so the caller can report it and go on. Blocks on the disk:
    /// call it from the blocking pool.
    pub fn open(data_dir: &Path, retention: Duration) -> (History, Option<StoreError>) {
        match Self::try_open(data_dir, retention) {
            Ok(h) => (h, None),
            Err(e) => (History { tx: None, reader: None }, Some(e)),
        }
    }

    fn try_open(data_dir: &Path, retention: Duration) -> Result<History, StoreError> {
        let path = data_dir.join(HISTORY_FILE);
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDir {
            path: path.clone(),
            source,
        })?;
        let conn = schema::open_checked(&path)?;
        // Before the writer starts, so no flush of this process is touched.
        interrupt_unfinished_flushes(&conn, &path);
        let reader = HistoryReader::open(data_dir)?;
        // Bounded: if the disk stalls, observations are dropped (and counted)
        // instead of growing memory without limit.
        let (tx, rx) = mpsc::sync_channel::<Cmd>(10_000);
        let p = path.clone();
        thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || writer(conn, rx, retention, p))
            .map_err(|source| StoreError::Thread { path, source })?;
        Ok(History {
            tx: Some(tx),
            reader: Some(Arc::new(Mutex::new(reader))),
        })
    }

    /// Queues an observation for writing. Never blocks.
    pub fn record(&self, obs: &Observation) {
        self.send(Cmd::Record(Box::new(obs.clone())));
    }

    /// Queues a cross-check round for writing. Never blocks.
    pub fn record_round(&self, round: StoredRound) {
        self.send(Cmd::Round(Box::new(round)));
    }

    /// Queues a controlled flush's record for writing (replacing one of the
    /// same id). Never blocks.
    pub fn record_flush(&self, flush: StoredFlush) {
        self.send(Cmd::FlushRecord(Box::new(flush)));
    }

    fn send(&self, cmd: Cmd) {
        if let Some(tx) = &self.tx
            && tx.try_send(cmd).is_err()
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

    /// Runs `f` on the shared reader, on the blocking pool: the async
    /// runtime never waits on SQLite.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&HistoryReader) -> Result<T, StoreError> + Send + 'static,
    {
        let reader = self.reader.clone().ok_or(StoreError::Unavailable)?;
        tokio::task::spawn_blocking(move || f(&reader.lock().unwrap_or_else(|p| p.into_inner()))).await?
    }
}

/// Runs `f` on a reader of the history under `data_dir`, on the blocking
/// pool, for a command that runs beside (or without) the daemon. `None`
/// when there is no history there: a one-shot command does not create one.
pub async fn read_existing<T, F>(data_dir: &Path, f: F) -> Result<Option<T>, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&HistoryReader) -> Result<T, StoreError> + Send + 'static,
{
    let dir = data_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        if !dir.join(HISTORY_FILE).exists() {
            return Ok(None);
        }
        f(&HistoryReader::open(&dir)?).map(Some)
    })
    .await?
}

fn writer(mut conn: Connection, rx: mpsc::Receiver<Cmd>, retention: Duration, path: PathBuf) {
    let mut last_prune: Option<Instant> = None;
    while let Ok(first) = rx.recv() {
        let mut batch = Vec::new();
        let mut rounds = Vec::new();
        let mut waiters = Vec::new();
        let mut flushes = Vec::new();
        let mut push = |c: Cmd, batch: &mut Vec<Box<Observation>>, rounds: &mut Vec<Box<StoredRound>>| match c {
            Cmd::Record(o) => batch.push(o),
            Cmd::Round(r) => rounds.push(r),
            Cmd::FlushRecord(f) => flushes.push(f),
            Cmd::Flush(w) => waiters.push(w),
        };
        push(first, &mut batch, &mut rounds);
        while batch.len() + rounds.len() < 1000 {
            match rx.try_recv() {
                Ok(c) => push(c, &mut batch, &mut rounds),
                Err(_) => break,
            }
        }
        for f in &flushes {
            if let Err(e) = write_flush(&conn, f) {
                metrics::counter!("lookout_history_errors_total", "op" => "write").increment(1);
                tracing::error!(path = %path.display(), error = %e, flush = %f.id, "Cannot write a flush's record to the history store");
            }
        }
        if !(batch.is_empty() && rounds.is_empty())
            && let Err(e) = write_batch(&mut conn, &batch, &rounds)
        {
            metrics::counter!("lookout_history_errors_total", "op" => "write").increment(1);
            tracing::error!(path = %path.display(), error = %e, dropped = batch.len(), "Cannot write observations to the history store");
        }
        if last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
            prune(&conn, retention, &path);
            last_prune = Some(Instant::now());
        }
        for w in waiters {
            let _ = w.send(());
        }
    }
}

fn prune(conn: &Connection, retention: Duration, path: &Path) {
    let cutoff = crate::probe::unix_now() - retention.as_secs_f64();
    let pruned = conn
        .execute("DELETE FROM crosscheck WHERE ts < ?1", params![cutoff])
        .and_then(|_| conn.execute("DELETE FROM crosscheck_rounds WHERE ts < ?1", params![cutoff]))
        .and_then(|_| conn.execute("DELETE FROM observations WHERE ts < ?1", params![cutoff]))
        .and_then(|n| {
            conn.execute("DELETE FROM flushes WHERE finished < ?1", params![cutoff])
                .map(|m| n + m)
        });
    match pruned {
        Ok(n) if n > 0 => tracing::info!(deleted = n, "Pruned history older than the retention"),
        Ok(_) => {}
        Err(e) => {
            metrics::counter!("lookout_history_errors_total", "op" => "prune").increment(1);
            tracing::error!(path = %path.display(), error = %e, "Cannot prune the history store");
        }
    }
}

/// The states a flush ends in; any other in the history is a flush that
/// was running when its daemon stopped.
const FINAL_STATES: [&str; 4] = ["done", "dry_run", "interrupted", "failed"];

/// Turns the flushes a previous daemon left running (it was killed: SIGKILL,
/// the OOM killer, the node lost) into `interrupted` ones, with a record
/// that says what is known: what was asked, by whom, and the keys deleted
/// at the daemon's last progress update. Only the daemon calls it, when
/// its history opens, before it can start a flush of its own: a row still
/// running then belongs to a process that is gone. Each is one event that
/// logs and counts (`lookout_flush_runs_total{outcome="interrupted"}`).
fn interrupt_unfinished_flushes(conn: &Connection, path: &Path) {
    let found = (|| -> rusqlite::Result<Vec<StoredFlush>> {
        let mut stmt = conn.prepare(&format!(
            "SELECT {FLUSH_COLUMNS} FROM flushes WHERE state NOT IN ('done', 'dry_run', 'interrupted', 'failed')"
        ))?;
        let rows = stmt.query_map([], StoredFlush::from_row)?;
        rows.collect()
    })();
    let found = match found {
        Ok(f) => f,
        Err(e) => {
            metrics::counter!("lookout_history_errors_total", "op" => "read").increment(1);
            tracing::error!(path = %path.display(), error = %e, "Cannot read the flushes a previous daemon left running");
            return;
        }
    };
    for mut f in found {
        debug_assert!(!FINAL_STATES.contains(&f.state.as_str()));
        let was = std::mem::replace(&mut f.state, "interrupted".into());
        let why = format!(
            "the daemon stopped while it ran; {} keys deleted at the last update; re-run to continue",
            f.deleted
        );
        f.finished = f.updated.max(f.started);
        f.record = summary::interrupted_record(&f, &was, &why);
        f.error = Some(why);
        match write_flush(conn, &f) {
            Ok(()) => {
                metrics::counter!("lookout_flush_runs_total", "probe" => f.probe.clone(), "outcome" => "interrupted").increment(1);
                tracing::warn!(flush = %f.id, probe = %f.probe, was = %was, deleted = f.deleted, matched = f.matched, "A Redis flush was cut short when the daemon stopped: recorded as interrupted");
            }
            Err(e) => {
                metrics::counter!("lookout_history_errors_total", "op" => "write").increment(1);
                tracing::error!(path = %path.display(), error = %e, flush = %f.id, "Cannot mark a flush the previous daemon left running as interrupted");
            }
        }
    }
}

fn write_flush(conn: &Connection, f: &StoredFlush) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO flushes (id, probe, target, pattern, state, user, started, finished, matched, deleted, record, origin, request, updated, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        f.id,
        f.probe,
        f.target,
        f.pattern,
        f.state,
        f.user,
        f.started,
        f.finished,
        f.matched as i64,
        f.deleted as i64,
        f.record,
        f.origin,
        f.request.to_string(),
        f.updated,
        f.error
    ])?;
    Ok(())
}

fn write_batch(conn: &mut Connection, batch: &[Box<Observation>], rounds: &[Box<StoredRound>]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut round = tx.prepare_cached("INSERT INTO crosscheck_rounds (ts, verdict) VALUES (?1, ?2)")?;
        let mut entry = tx.prepare_cached(
            "INSERT INTO crosscheck (ts, metric, source, verdict, value, reference_value, deviation, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for r in rounds {
            round.execute(params![r.timestamp, r.verdict])?;
            for e in &r.entries {
                entry.execute(params![
                    r.timestamp,
                    e.metric,
                    e.source,
                    e.verdict,
                    e.value,
                    e.reference_value,
                    e.deviation,
                    e.reason
                ])?;
            }
        }
    }
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO observations (probe, kind, ts, ok, duration, error, reading, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for o in batch {
            let reading = Reading {
                values: o.values.clone(),
                facts: o.facts.clone(),
                sample_times: o.sample_times.clone(),
            };
            let json = serde_json::to_string(&reading).unwrap_or_else(|_| "{}".to_string());
            stmt.execute(params![
                o.name,
                o.kind,
                o.timestamp,
                o.ok,
                o.duration_seconds,
                o.error,
                json,
                o.reason.map(|r| r.as_str())
            ])?;
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::Metric;
    use crate::probe::FailureReason;

    fn obs(name: &str, ts: f64) -> Observation {
        Observation {
            values: [(Metric::KeyspaceHits, 42.0)].into_iter().collect(),
            ..crate::fixtures::observation(name, ts)
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
        let all = h.read(|r| r.since(None, 0.0)).await.unwrap();
        // The first batch is written before the first prune, which then removes "old".
        let a = all.iter().rfind(|o| o.name == "a").unwrap();
        assert_eq!(a.values[&Metric::KeyspaceHits], 42.0);
        assert!(all.iter().all(|o| o.name != "old"), "pruned");
    }

    #[tokio::test]
    async fn a_failure_reason_survives_the_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (h, err) = History::open(dir.path(), Duration::from_secs(3600));
        assert!(err.is_none());
        let mut failed = obs("prom", crate::probe::unix_now());
        failed.ok = false;
        failed.error = Some("exporter target down".into());
        failed.reason = Some(FailureReason::Upstream);
        h.record(&failed);
        h.flush().await;
        let back = read_existing(dir.path(), |r| r.since(Some("prom"), 0.0)).await.unwrap().unwrap();
        assert_eq!(back, vec![failed]);
    }

    #[tokio::test]
    async fn why_a_source_disagreed_survives_the_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (h, err) = History::open(dir.path(), Duration::from_secs(3600));
        assert!(err.is_none());
        let now = crate::probe::unix_now();
        let entry = |verdict, reason: Option<&str>| StoredEntry {
            metric: "hit_ratio".into(),
            source: "web".into(),
            verdict,
            value: Some(0.5),
            reference_value: Some(0.9),
            deviation: Some(0.4),
            reason: reason.map(str::to_string),
        };
        for (i, (v, why)) in [
            ("disagree", Some("first why")),
            ("disagree", Some("0.5 is 0.4 from 0.9")),
            ("agree", None),
        ]
        .into_iter()
        .enumerate()
        {
            h.record_round(StoredRound {
                timestamp: now - 10.0 + i as f64,
                verdict: v,
                entries: vec![entry(v, why)],
            });
        }
        h.flush().await;
        let pairs = read_existing(dir.path(), move |r| r.pair_summaries(now - 60.0, now))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(pairs[0].disagree, 2);
        assert_eq!(pairs[0].last_disagree_reason.as_deref(), Some("0.5 is 0.4 from 0.9"));
    }

    fn flush_row(id: &str, state: &str) -> StoredFlush {
        StoredFlush {
            id: id.into(),
            probe: "cache".into(),
            target: "redis://127.0.0.1:6379/0".into(),
            pattern: "p:*".into(),
            state: state.into(),
            user: "ops".into(),
            origin: "10.0.0.7".into(),
            request: serde_json::json!({"match": "p:*", "execute": true, "rate": "5000/s"}),
            started: 100.0,
            finished: 100.0,
            updated: 160.0,
            error: None,
            matched: 1000,
            deleted: 400,
            record: String::new(),
        }
    }

    #[tokio::test]
    async fn a_flush_left_running_by_a_killed_daemon_is_interrupted_when_the_next_one_opens_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let (h, err) = History::open(dir.path(), Duration::from_secs(3600 * 24 * 365 * 100));
        assert!(err.is_none());
        h.record_flush(flush_row("running", "deleting"));
        h.record_flush(flush_row("ended", "done"));
        h.flush().await;
        drop(h);
        let (h, err) = History::open(dir.path(), Duration::from_secs(3600 * 24 * 365 * 100));
        assert!(err.is_none());
        let all = h.read(|r| r.flushes(None, 10)).await.unwrap();
        let f = all.iter().find(|f| f.id == "running").unwrap();
        assert_eq!(f.state, "interrupted");
        assert_eq!(f.finished, 160.0, "the last moment it is known to have run");
        let why = "the daemon stopped while it ran; 400 keys deleted at the last update; re-run to continue";
        assert_eq!(f.error.as_deref(), Some(why));
        for part in [
            why,
            "`p:*`",
            "ops",
            "10.0.0.7",
            "| keys matched | 1000 |",
            "deleting",
            "\"execute\":true",
        ] {
            assert!(f.record.contains(part), "{part} missing from:\n{}", f.record);
        }
        let ended = all.iter().find(|f| f.id == "ended").unwrap();
        assert_eq!(
            (ended.state.as_str(), ended.error.as_ref()),
            ("done", None),
            "a finished flush is left alone"
        );
    }

    #[tokio::test]
    async fn a_missing_history_is_not_created_by_a_reader() {
        let dir = tempfile::tempdir().unwrap();
        let got = read_existing(dir.path(), |r| r.count()).await.unwrap();
        assert!(got.is_none());
        assert!(!dir.path().join(HISTORY_FILE).exists());
    }

    #[tokio::test]
    async fn corrupt_store_is_reported_and_reads_say_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(HISTORY_FILE), vec![0x42u8; 8192]).unwrap();
        let (h, err) = History::open(dir.path(), Duration::from_secs(60));
        assert!(err.is_some());
        assert!(matches!(h.read(|r| r.count()).await, Err(StoreError::Unavailable)));
    }
}
