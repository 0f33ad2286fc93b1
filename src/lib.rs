//! lookout: a synthetic-monitoring daemon for a Redis cache.
//!
//! It probes the backends' Redis health endpoints, Redis itself and
//! Prometheus's view of the same values on a schedule, keeps the history,
//! and exports what it sees as Prometheus metrics. See the README for the
//! configuration reference and the stable interfaces.

pub mod alert;
pub mod cmd;
pub mod config;
pub mod crosscheck;
pub mod daemon;
#[cfg(test)]
mod fixtures;
pub mod http;
pub mod listener;
pub mod metric;
pub mod probe;
pub mod relay;
pub mod report;
pub mod runbook;
pub mod schedule;
pub mod server;
pub mod settings;
pub mod state;
pub mod store;
pub mod table;
pub mod task;
pub mod telemetry;
