//! Where accepted notifications wait: one trait, two stores.
//!
//! [`RelayStore`] is the outbox's set of operations, async: intake stores a
//! notification durably before the webhook is answered 200, the workers
//! take due deliveries and record their outcomes, operators list and act on
//! the dead-letter list, housekeeping prunes. Two implementations:
//!
//! - [`sqlite`]: the embedded outbox in `data_dir` ([`super::outbox`]), for
//!   one process: nothing to run, and gone with the node's disk.
//! - [`postgres`]: a PostgreSQL database shared by several replicas. Any
//!   replica accepts a webhook; deliveries are claimed with a lease, so a
//!   replica that dies mid-delivery has its claims taken over once the
//!   lease runs out.
//!
//! Both keep the same promises, proved by one test suite run against each
//! (`tests/relay_store.rs`): nothing answered 200 is lost across a reopen;
//! one copy within the de-duplication window is stored; a group's
//! deliveries are offered one at a time, oldest first; a superseded
//! delivery names its newer one and a digest's originals are marked at
//! once; what is queued for a destination no longer configured is
//! dead-lettered; dead letters are listed, retried and dropped; delivered,
//! superseded and digested rows are pruned.

pub mod postgres;
pub mod postgres_tls;
pub mod sqlite;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::budget::{self, RateBudget};
use super::config::RelayConfig;
pub use super::outbox::{Accepted, Dead, Mark, NewNotification, OutboxError, Pending};
use super::threads::ThreadStore;

/// The relay's durable queue.
///
/// Claims: a delivery returned by [`RelayStore::next_due`] is the caller's
/// until its outcome is recorded with [`RelayStore::mark`]. The SQLite store
/// has one process and offers a claimed group's delivery again (its worker
/// remembers what it holds); the PostgreSQL store leases it to this
/// replica, and offers it to no one until the lease runs out.
#[async_trait::async_trait]
pub trait RelayStore: Send + Sync {
    /// Which store this is, for logs and the status page (no secret).
    fn describe(&self) -> String;

    /// Stores a notification durably; resolves once it is committed.
    async fn ingest(&self, n: NewNotification) -> Result<Accepted, OutboxError>;

    /// Up to `limit` due deliveries of `destination`, oldest first, each the
    /// oldest pending of its group (so a group's firing and resolved go in
    /// order).
    async fn next_due(&self, destination: &str, limit: usize) -> Result<Vec<Pending>, OutboxError>;

    /// When the next pending delivery of `destination` that is not due now
    /// may be taken (a retry's backoff, another replica's lease), Unix
    /// seconds; a store may also answer with a time already past. One due
    /// now is the worker's to find: it is woken when one is queued or a send
    /// lands, and looks again every second regardless.
    async fn next_wakeup(&self, destination: &str) -> Result<Option<f64>, OutboxError>;

    /// Records a delivery's outcome.
    async fn mark(&self, op: Mark) -> Result<(), OutboxError>;

    /// Records many outcomes at once (a digest's originals), each as
    /// [`RelayStore::mark`] would.
    async fn mark_all(&self, ops: Vec<Mark>) -> Result<(), OutboxError>;

    /// The newest pending delivery of `group` to `destination` queued
    /// after delivery `than`, if any: the one about to be sent, `than`, is
    /// then superseded.
    async fn newer_in_group(&self, destination: &str, group: &str, than: i64) -> Result<Option<i64>, OutboxError>;

    /// `destination`'s pending deliveries, due or not, oldest first: at most
    /// `limit`, and no more once their payloads pass `max_bytes` (the first
    /// is always returned), so what a digest holds in memory is bounded.
    /// Nothing is claimed; groups another replica holds a delivery of are
    /// left out (their next notification must follow the one under way).
    async fn queued(&self, destination: &str, limit: usize, max_bytes: usize) -> Result<Vec<Pending>, OutboxError>;

    /// Dead-letters every pending delivery to a destination not in
    /// `configured`, with that reason; returns how many per destination.
    async fn dead_letter_unconfigured(&self, configured: &[String]) -> Result<Vec<(String, i64)>, OutboxError>;

    /// Pending deliveries and the receipt time of the oldest, per destination.
    async fn queue(&self) -> Result<Vec<(String, i64, Option<f64>)>, OutboxError>;

    /// The dead-letter list.
    async fn dlq(&self) -> Result<Vec<Dead>, OutboxError>;

    /// Puts dead deliveries (all when `ids` is empty) back in the queue, due
    /// now, their age restarted; returns how many.
    async fn dlq_retry(&self, ids: &[i64]) -> Result<usize, OutboxError>;

    /// Removes dead deliveries (all when `ids` is empty); returns how many.
    async fn dlq_drop(&self, ids: &[i64]) -> Result<usize, OutboxError>;

    /// Deletes what was delivered or dropped more than `age` ago; returns
    /// how many notifications went. Slack threads of groups with no
    /// delivery left to their destination go too: a group that fires and
    /// never resolves (or whose destination was removed) would otherwise
    /// keep its row for ever. A group notified again within `age` (an
    /// Alertmanager repeat) keeps its thread; one silent for longer starts
    /// a new thread when it next fires.
    async fn prune(&self, age: Duration) -> Result<usize, OutboxError>;

    /// Gives back claims that will not be sent (a worker stopping with
    /// deliveries still waiting), so that another replica need not wait for
    /// their leases. Nothing to give back in a store without leases.
    async fn release(&self, ids: &[i64]) -> Result<(), OutboxError> {
        let _ = ids;
        Ok(())
    }

    /// The send budget of `destination` (`min_interval` between sends,
    /// `burst` at once), for every process that shares this store. The
    /// default is the process's own ([`budget::Local`]): right for a store
    /// only one process uses.
    fn budget(&self, destination: &str, min_interval: Duration, burst: u32) -> Arc<dyn RateBudget> {
        let _ = destination;
        Arc::new(budget::Local::new(min_interval, burst))
    }

    /// Where a Slack bot keeps the message each group's thread hangs from.
    fn threads(&self) -> Arc<dyn ThreadStore>;
}

/// Opens the configured store: PostgreSQL when `relay.store` is set, else
/// the SQLite outbox under `data_dir`.
pub async fn open(config: &RelayConfig, data_dir: &Path) -> Result<Arc<dyn RelayStore>, OutboxError> {
    match &config.store {
        Some(s) => Ok(Arc::new(postgres::Postgres::open(s, config.dedup_window).await?)),
        None => Ok(Arc::new(sqlite::Sqlite::open(data_dir, config.dedup_window).await?)),
    }
}
