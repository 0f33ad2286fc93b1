//! The history database's schema, and how an older file is brought up to
//! it when opened.
//!
//! The version lives in `PRAGMA user_version`. Files written before it
//! existed say 0: they lack the `reason` column of `observations` (why a
//! probe failed, as a label value), which is added on open. Version 2 adds
//! the `reason` of a cross-check verdict other than `agree` (why a source
//! disagreed, was stale…), so a report over a window can say why, not only
//! when; `agree` rows keep it empty, so a day of 1 s rounds does not grow by
//! a sentence per row. Version 3 adds `flushes`: the controlled flushes the
//! daemon ran, each with its Markdown record (a new table, created on open
//! like the others, so the step only moves the version). Version 4 gives a
//! flush's row what a change ticket needs when the daemon was killed in the
//! middle: the row is written when the flush starts and updated while it
//! runs, so it gains what was asked (`request`), from where (`origin`), when
//! its figures were last written (`updated`) and why it stopped (`error`).
//! Every change is a
//! step here that an old `data_dir` goes through once, so a downgrade is the
//! only thing that cannot open a file.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::StoreError;

/// The schema this build writes.
pub const VERSION: i64 = 4;

const TABLES: &str = "CREATE TABLE IF NOT EXISTS observations (
    id INTEGER PRIMARY KEY,
    probe TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts REAL NOT NULL,
    ok INTEGER NOT NULL,
    duration REAL NOT NULL,
    error TEXT,
    reading TEXT NOT NULL,
    reason TEXT
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
    deviation REAL,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS crosscheck_ts ON crosscheck(ts);
-- Covering and in group order: a window summary is one index scan,
-- no sort and no table lookups (a day of 1 s rounds is 2.3 M rows).
CREATE INDEX IF NOT EXISTS crosscheck_pair ON crosscheck(metric, source, ts, verdict, deviation);
CREATE TABLE IF NOT EXISTS flushes (
    id TEXT PRIMARY KEY,
    probe TEXT NOT NULL,
    target TEXT NOT NULL,
    pattern TEXT NOT NULL,
    state TEXT NOT NULL,
    user TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL NOT NULL,
    matched INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    record TEXT NOT NULL,
    origin TEXT NOT NULL DEFAULT '',
    request TEXT NOT NULL DEFAULT '{}',
    updated REAL NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX IF NOT EXISTS flushes_started ON flushes(started);";

/// Opens the file for the writer: the schema as [`open`], and an integrity
/// check, so a database that opens but is damaged fails here rather than on
/// the first write. Only the writer checks: it reads the whole file.
pub fn open_checked(path: &Path) -> Result<Connection, StoreError> {
    let conn = open(path)?;
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| StoreError::sqlite(path, e))?;
    if check != "ok" {
        tracing::error!(path = %path.display(), result = %check, "History database failed its integrity check");
        return Err(StoreError::Damaged {
            path: path.to_path_buf(),
            result: check,
        });
    }
    Ok(conn)
}

/// Opens (creating) the file in WAL mode and brings its schema up to
/// [`VERSION`]. Readers go through here too: a `lookout report` run on an
/// old `data_dir` before the daemon was upgraded must find the new column.
pub fn open(path: &Path) -> Result<Connection, StoreError> {
    let err = |e| StoreError::sqlite(path, e);
    let mut conn = Connection::open(path).map_err(err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(err)?;
    if found > VERSION {
        return Err(StoreError::Newer {
            path: path.to_path_buf(),
            found,
            supported: VERSION,
        });
    }
    conn.execute_batch(TABLES).map_err(err)?;
    migrate(&mut conn).map_err(err)?;
    Ok(conn)
}

/// Steps an older file up to [`VERSION`], in one transaction that holds the
/// write lock, so the daemon and a command opening the same old file at
/// once do not both add the column.
fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version >= VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version < 1 && !has_column(&tx, "observations", "reason")? {
        tx.execute_batch("ALTER TABLE observations ADD COLUMN reason TEXT")?;
    }
    if version < 2 && !has_column(&tx, "crosscheck", "reason")? {
        tx.execute_batch("ALTER TABLE crosscheck ADD COLUMN reason TEXT")?;
    }
    // Version 3's `flushes` table was created with the others, above (with
    // version 4's columns when it is new).
    if version < 4 && !has_column(&tx, "flushes", "request")? {
        tx.execute_batch(
            "ALTER TABLE flushes ADD COLUMN origin TEXT NOT NULL DEFAULT '';
             ALTER TABLE flushes ADD COLUMN request TEXT NOT NULL DEFAULT '{}';
             ALTER TABLE flushes ADD COLUMN updated REAL NOT NULL DEFAULT 0;
             ALTER TABLE flushes ADD COLUMN error TEXT;
             UPDATE flushes SET updated = finished;",
        )?;
    }
    tx.pragma_update(None, "user_version", VERSION)?;
    tx.commit()
}

fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    let mut stmt = conn.prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?;
    stmt.exists(rusqlite::params![table, column])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables as lookout wrote them before the schema had a version.
    const UNVERSIONED: &str = "CREATE TABLE observations (
        id INTEGER PRIMARY KEY, probe TEXT NOT NULL, kind TEXT NOT NULL, ts REAL NOT NULL,
        ok INTEGER NOT NULL, duration REAL NOT NULL, error TEXT, reading TEXT NOT NULL);
        INSERT INTO observations (probe, kind, ts, ok, duration, error, reading)
        VALUES ('cache', 'redis', 1.0, 0, 0.5, 'refused', '{}');";

    #[test]
    fn an_unversioned_file_gains_the_reason_column_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        Connection::open(&path).unwrap().execute_batch(UNVERSIONED).unwrap();
        let conn = open_checked(&path).unwrap();
        assert!(has_column(&conn, "observations", "reason").unwrap());
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, VERSION);
        let (n, reason): (i64, Option<String>) = conn
            .query_row("SELECT COUNT(*), MAX(reason) FROM observations", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!((n, reason), (1, None));
        assert!(has_column(&conn, "crosscheck", "reason").unwrap());
        drop(conn);
        // Opening again is a no-op.
        open(&path).unwrap();
    }

    #[test]
    fn a_version_1_file_gains_the_verdict_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE crosscheck (ts REAL NOT NULL, metric TEXT NOT NULL, source TEXT NOT NULL, verdict TEXT NOT NULL,
                value REAL, reference_value REAL, deviation REAL);
             INSERT INTO crosscheck VALUES (1.0, 'hit_ratio', 'web', 'disagree', 0.5, 0.9, 0.4);
             PRAGMA user_version = 1;",
        )
        .unwrap();
        drop(old);
        let conn = open(&path).unwrap();
        let (n, reason): (i64, Option<String>) = conn
            .query_row("SELECT COUNT(*), MAX(reason) FROM crosscheck", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!((n, reason), (1, None));
    }

    #[test]
    fn a_version_2_file_gains_the_flushes_table_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE crosscheck_rounds (ts REAL NOT NULL, verdict TEXT NOT NULL);
             INSERT INTO crosscheck_rounds VALUES (1.0, 'agree');
             PRAGMA user_version = 2;",
        )
        .unwrap();
        drop(old);
        let conn = open_checked(&path).unwrap();
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, VERSION);
        assert!(has_column(&conn, "flushes", "record").unwrap());
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM crosscheck_rounds", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn a_version_3_file_gains_the_flush_progress_columns_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE flushes (id TEXT PRIMARY KEY, probe TEXT NOT NULL, target TEXT NOT NULL, pattern TEXT NOT NULL,
                state TEXT NOT NULL, user TEXT NOT NULL, started REAL NOT NULL, finished REAL NOT NULL,
                matched INTEGER NOT NULL, deleted INTEGER NOT NULL, record TEXT NOT NULL);
             INSERT INTO flushes VALUES ('f1', 'cache', 'redis://h:6379/0', 'p:*', 'done', 'ops', 1.0, 2.0, 5, 5, '# r');
             PRAGMA user_version = 3;",
        )
        .unwrap();
        drop(old);
        let conn = open_checked(&path).unwrap();
        let (request, updated, error): (String, f64, Option<String>) = conn
            .query_row("SELECT request, updated, error FROM flushes WHERE id = 'f1'", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!((request.as_str(), updated, error), ("{}", 2.0, None));
        drop(conn);
        open(&path).unwrap();
    }

    #[test]
    fn a_file_from_a_newer_lookout_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 99;").unwrap();
        let e = open(&path).unwrap_err();
        assert!(matches!(e, StoreError::Newer { found: 99, .. }), "{e}");
        assert!(e.to_string().contains("newer lookout"), "{e}");
    }
}
