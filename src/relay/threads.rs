//! Which message each alert group's Slack thread hangs from: state a Slack
//! bot destination keeps between notifications, held by the relay store.
//!
//! A group's first firing message starts its thread; later notifications
//! reply in it, and the resolved one updates the first message and forgets
//! the thread, so the next incident starts a new one. With replicas on
//! PostgreSQL, the firing may be delivered by one replica and the resolve
//! by another: the thread must be where both look, so the store holds it
//! ([`super::store::RelayStore::threads`]): the PostgreSQL store in its
//! `relay_threads` table, the SQLite store in the outbox file's `threads`
//! table ([`SqliteThreads`], as older versions wrote it).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use super::outbox::OutboxError;

/// The thread of each (destination, group).
#[async_trait::async_trait]
pub trait ThreadStore: Send + Sync {
    /// The channel and message timestamp of `group`'s thread.
    async fn get(&self, destination: &str, group: &str) -> Result<Option<(String, String)>, OutboxError>;

    /// Remembers `group`'s first message (replacing any before).
    async fn set(&self, destination: &str, group: &str, channel: &str, ts: &str) -> Result<(), OutboxError>;

    /// Forgets `group`'s thread.
    async fn clear(&self, destination: &str, group: &str) -> Result<(), OutboxError>;
}

/// Threads in a SQLite file: the outbox's, in its `threads` table (created
/// when missing; rows written by older versions are found), on a
/// connection of its own opened at first use, so a webhook-only Slack never
/// touches it. Every call runs on the blocking pool.
pub struct SqliteThreads {
    path: PathBuf,
    /// A std mutex: locked only on the blocking pool, around one statement.
    conn: Arc<Mutex<Option<Connection>>>,
}

impl SqliteThreads {
    /// Threads kept in the SQLite file `file`.
    pub fn beside(file: &Path) -> SqliteThreads {
        SqliteThreads {
            path: file.to_path_buf(),
            conn: Arc::default(),
        }
    }

    async fn call<T: Send + 'static>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static) -> Result<T, OutboxError> {
        let (path, conn) = (self.path.clone(), self.conn.clone());
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            let run = |slot: &mut Option<Connection>| {
                let c = match slot {
                    Some(c) => c,
                    None => slot.insert(open(&path)?),
                };
                f(c)
            };
            run(&mut conn).map_err(|source| OutboxError::Sqlite { path, source })
        })
        .await?
    }
}

#[async_trait::async_trait]
impl ThreadStore for SqliteThreads {
    async fn get(&self, destination: &str, group: &str) -> Result<Option<(String, String)>, OutboxError> {
        let (d, g) = (destination.to_string(), group.to_string());
        self.call(move |c| {
            c.prepare_cached("SELECT channel, ts FROM threads WHERE destination = ?1 AND group_key = ?2")?
                .query_row(params![d, g], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .await
    }

    async fn set(&self, destination: &str, group: &str, channel: &str, ts: &str) -> Result<(), OutboxError> {
        let row = [destination, group, channel, ts].map(str::to_string);
        self.call(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO threads (destination, group_key, channel, ts) VALUES (?1, ?2, ?3, ?4)",
                params![row[0], row[1], row[2], row[3]],
            )
            .map(|_| ())
        })
        .await
    }

    async fn clear(&self, destination: &str, group: &str) -> Result<(), OutboxError> {
        let (d, g) = (destination.to_string(), group.to_string());
        self.call(move |c| {
            c.execute("DELETE FROM threads WHERE destination = ?1 AND group_key = ?2", params![d, g])
                .map(|_| ())
        })
        .await
    }
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS threads (
            destination TEXT NOT NULL,
            group_key TEXT NOT NULL,
            channel TEXT NOT NULL,
            ts TEXT NOT NULL,
            PRIMARY KEY (destination, group_key)
        );",
    )?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn threads_written_by_the_outbox_of_old_are_found_set_and_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = crate::relay::outbox::Outbox::open(dir.path(), std::time::Duration::ZERO).unwrap();
        // The table as the outbox used to create and fill it.
        let old = Connection::open(outbox.path()).unwrap();
        old.execute_batch(
            "CREATE TABLE threads (destination TEXT NOT NULL, group_key TEXT NOT NULL, channel TEXT NOT NULL, ts TEXT NOT NULL, PRIMARY KEY (destination, group_key));
             INSERT INTO threads VALUES ('bot', 'g1', 'C1', '1700000000.000001');",
        )
        .unwrap();
        let threads = SqliteThreads::beside(outbox.path());
        let thread = |g: &'static str| threads.get("bot", g);
        assert_eq!(thread("g1").await.unwrap(), Some(("C1".into(), "1700000000.000001".into())));
        assert_eq!(thread("g2").await.unwrap(), None);
        threads.set("bot", "g2", "C2", "1700000000.000002").await.unwrap();
        assert_eq!(thread("g2").await.unwrap(), Some(("C2".into(), "1700000000.000002".into())));
        threads.clear("bot", "g1").await.unwrap();
        assert_eq!(thread("g1").await.unwrap(), None);
    }
}
