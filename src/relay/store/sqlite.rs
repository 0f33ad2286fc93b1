//! The embedded store: the SQLite [`Outbox`] behind [`RelayStore`].
//!
//! The outbox's reads block on SQLite, so each runs on the blocking pool;
//! its writes already go through its own writer thread and are async.
//!
//! One process uses it, so a destination's send budget is the process's
//! own (the trait's default), and Slack's threads stay in the outbox file's
//! `threads` table, where older versions kept them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{Accepted, Dead, Mark, NewNotification, OutboxError, Pending, RelayStore};
use crate::relay::outbox::Outbox;
use crate::relay::threads::{SqliteThreads, ThreadStore};

/// The SQLite outbox as a [`RelayStore`].
pub struct Sqlite(pub Arc<Outbox>, Arc<SqliteThreads>);

impl Sqlite {
    /// Opens (creating) the outbox under `data_dir`, on the blocking pool.
    pub async fn open(data_dir: &Path, dedup_window: Duration) -> Result<Sqlite, OutboxError> {
        let dir = data_dir.to_path_buf();
        let outbox = tokio::task::spawn_blocking(move || Outbox::open(&dir, dedup_window)).await??;
        // Slack's threads in the outbox's file, where older versions kept them.
        let threads = Arc::new(SqliteThreads::beside(outbox.path()));
        Ok(Sqlite(Arc::new(outbox), threads))
    }

    /// Runs `f` on the outbox on the blocking pool: it waits on SQLite.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Outbox) -> Result<T, OutboxError> + Send + 'static,
    ) -> Result<T, OutboxError> {
        let o = self.0.clone();
        tokio::task::spawn_blocking(move || f(&o)).await?
    }
}

#[async_trait::async_trait]
impl RelayStore for Sqlite {
    fn describe(&self) -> String {
        format!("SQLite {}", self.0.path().display())
    }

    async fn ingest(&self, n: NewNotification) -> Result<Accepted, OutboxError> {
        self.0.ingest(n).await
    }

    async fn next_due(&self, destination: &str, limit: usize) -> Result<Vec<Pending>, OutboxError> {
        let d = destination.to_string();
        self.blocking(move |o| o.next_due(&d, limit)).await
    }

    async fn next_wakeup(&self, destination: &str) -> Result<Option<f64>, OutboxError> {
        let d = destination.to_string();
        self.blocking(move |o| o.next_wakeup(&d)).await
    }

    async fn mark(&self, op: Mark) -> Result<(), OutboxError> {
        self.0.mark(op).await
    }

    async fn mark_all(&self, ops: Vec<Mark>) -> Result<(), OutboxError> {
        self.0.mark_all(ops).await
    }

    async fn newer_in_group(&self, destination: &str, group: &str, than: i64) -> Result<Option<i64>, OutboxError> {
        let (d, g) = (destination.to_string(), group.to_string());
        self.blocking(move |o| o.newer_in_group(&d, &g, than)).await
    }

    async fn queued(&self, destination: &str, limit: usize, max_bytes: usize) -> Result<Vec<Pending>, OutboxError> {
        let d = destination.to_string();
        self.blocking(move |o| o.queued(&d, limit, max_bytes)).await
    }

    async fn dead_letter_unconfigured(&self, configured: &[String]) -> Result<Vec<(String, i64)>, OutboxError> {
        let names = configured.to_vec();
        self.blocking(move |o| o.dead_letter_unconfigured(&names)).await
    }

    async fn queue(&self) -> Result<Vec<(String, i64, Option<f64>)>, OutboxError> {
        self.blocking(|o| o.queue()).await
    }

    async fn dlq(&self) -> Result<Vec<Dead>, OutboxError> {
        self.blocking(|o| o.dlq()).await
    }

    async fn dlq_retry(&self, ids: &[i64]) -> Result<usize, OutboxError> {
        let ids = ids.to_vec();
        self.blocking(move |o| o.dlq_retry(&ids)).await
    }

    async fn dlq_drop(&self, ids: &[i64]) -> Result<usize, OutboxError> {
        let ids = ids.to_vec();
        self.blocking(move |o| o.dlq_drop(&ids)).await
    }

    async fn prune(&self, age: Duration) -> Result<usize, OutboxError> {
        self.blocking(move |o| o.prune(age)).await
    }

    fn threads(&self) -> Arc<dyn ThreadStore> {
        self.1.clone()
    }
}
