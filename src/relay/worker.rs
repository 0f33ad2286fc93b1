//! One delivery loop per destination: take the oldest due delivery, wait
//! for the rate limit, deliver within the timeout, then mark it done,
//! schedule a retry (backoff with jitter, never before `Retry-After`) or
//! dead-letter it (a permanent failure, or older than `max_age`). Each
//! outcome is one event that logs and counts.
//!
//! Stopping: a worker takes no new delivery once told to stop, finishes the
//! one under way (bounded by the destination's timeout), and waits for the
//! outcomes of its batch to be on disk before it returns. Returning sooner
//! would leave a delivered notification `pending`, to be sent again after
//! the restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::destination::Delivery;
use super::destination::{Destination, Notification};
use super::outbox::{Mark, Outbox, OutboxError, Pending};
use super::payload::Payload;
use super::retry::{self, DeliveryError, Reason, Retry};
use crate::task::Periodic;

/// A destination's worker.
pub struct Worker {
    /// Destination name.
    pub name: String,
    /// Destination type.
    pub kind: &'static str,
    /// Tuning.
    pub delivery: Delivery,
    /// The destination.
    pub destination: Arc<dyn Destination>,
    /// The outbox.
    pub outbox: Arc<Outbox>,
    /// Signalled when something new is queued.
    pub wake: Arc<Notify>,
}

/// Runs an outbox read on the blocking pool: it waits on SQLite.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, OutboxError> + Send + 'static) -> Result<T, OutboxError> {
    tokio::task::spawn_blocking(f).await?
}

impl Worker {
    /// Runs until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut last_send: Option<Instant> = None;
        loop {
            if stop.is_cancelled() {
                return;
            }
            let (ob, name) = (self.outbox.clone(), self.name.clone());
            let batch = match blocking(move || ob.next_due(&name, 64)).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(destination = %self.name, error = %e, "Cannot read the outbox");
                    sleep_or_stop(&stop, &self.wake, Duration::from_secs(1)).await;
                    continue;
                }
            };
            if batch.is_empty() {
                let (ob, name) = (self.outbox.clone(), self.name.clone());
                let wait = match blocking(move || ob.next_wakeup(&name)).await {
                    Ok(Some(t)) => Duration::from_secs_f64((t - crate::probe::unix_now()).clamp(0.001, 1.0)),
                    _ => Duration::from_secs(1),
                };
                sleep_or_stop(&stop, &self.wake, wait).await;
                continue;
            }
            // One delivery per group per batch: a retry scheduled for a group
            // must hold back its later notifications until the next batch.
            let mut groups = std::collections::HashSet::new();
            // Outcomes are written while the next delivery goes out; all of a
            // batch's are on disk before the next batch is read, so nothing
            // is taken twice.
            let mut marks = tokio::task::JoinSet::new();
            for p in batch {
                // What is not yet sent stays pending for the next start.
                if stop.is_cancelled() {
                    break;
                }
                if !groups.insert(p.group_key.clone()) {
                    continue;
                }
                // Below the timer's 1 ms resolution a sleep would only slow
                // delivery down: such a limit is no limit.
                if let Some(t) = last_send
                    && self.delivery.min_interval >= Duration::from_millis(1)
                {
                    let since = t.elapsed();
                    if since < self.delivery.min_interval {
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tokio::time::sleep(self.delivery.min_interval - since) => {}
                        }
                    }
                }
                last_send = Some(Instant::now());
                let op = self.attempt(p).await;
                let (outbox, name) = (self.outbox.clone(), self.name.clone());
                marks.spawn(async move {
                    if let Err(e) = outbox.mark(op.clone()).await {
                        // The delivery stays pending and will be sent again: a duplicate, never a loss.
                        tracing::error!(destination = %name, outcome = ?op, error = %e, "Cannot record the delivery outcome");
                    }
                });
            }
            // Also when stopping: dropping the set would abort outcomes
            // not yet written, and their deliveries would go out again.
            while marks.join_next().await.is_some() {}
        }
    }

    /// Delivers one notification; returns the outcome to record.
    async fn attempt(&self, p: Pending) -> Mark {
        let age = crate::probe::unix_now() - p.created;
        let started = Instant::now();
        let result = match Payload::parse(p.payload.as_bytes()) {
            Err(e) => Err(DeliveryError::permanent(
                Reason::ClientError,
                format!("stored payload unreadable: {e}"),
            )),
            Ok(payload) => {
                let n = Notification {
                    payload: &payload,
                    raw: &p.payload,
                };
                deliver(self.destination.as_ref(), &self.delivery, &n).await
            }
        };
        let outcome = match result {
            Ok(()) => {
                metrics::histogram!("lookout_relay_delivery_latency_seconds", "destination" => self.name.clone()).record(age.max(0.0));
                tracing::debug!(destination = %self.name, id = p.id, attempts = p.attempts + 1, "Notification delivered");
                (Mark::Done(p.id), "success")
            }
            Err(e) => {
                let too_old = age > self.delivery.max_age.as_secs_f64();
                if e.retry == Retry::No || too_old {
                    let why = if too_old && e.retry == Retry::Yes {
                        format!(
                            "older than max_age ({}); last error: {}",
                            humantime::format_duration(self.delivery.max_age),
                            e.message
                        )
                    } else {
                        e.message.clone()
                    };
                    tracing::error!(destination = %self.name, id = p.id, group = %p.group_key, reason = e.reason.as_str(), error = %why, "Notification dead-lettered");
                    (Mark::Dead(p.id, why), "dead")
                } else {
                    let wait = retry::backoff(p.attempts, self.delivery.initial_backoff, self.delivery.max_backoff, e.retry_after);
                    let next = crate::probe::unix_now() + wait.as_secs_f64();
                    tracing::warn!(destination = %self.name, id = p.id, attempt = p.attempts + 1, reason = e.reason.as_str(), error = %e.message, retry_in = ?wait, "Delivery failed; will retry");
                    (Mark::Retry(p.id, next, e.message.clone()), "retry")
                }
            }
        };
        let (mark, label) = outcome;
        metrics::counter!("lookout_relay_deliveries_total", "destination" => self.name.clone(), "outcome" => label).increment(1);
        metrics::histogram!("lookout_relay_attempt_duration_seconds", "destination" => self.name.clone())
            .record(started.elapsed().as_secs_f64());
        mark
    }
}

/// Delivers one notification to `destination` within `delivery.timeout`;
/// no answer in time is a transient [`Reason::Timeout`] failure, retried
/// like any other. The workers and `lookout relay send-test` both deliver
/// through here, so a test notification meets the same limit and gets the
/// same verdict as a real one.
pub async fn deliver(destination: &dyn Destination, delivery: &Delivery, n: &Notification<'_>) -> Result<(), DeliveryError> {
    match tokio::time::timeout(delivery.timeout, destination.deliver(n)).await {
        Ok(r) => r,
        Err(_) => Err(DeliveryError::transient(
            Reason::Timeout,
            format!("no answer within {:?}", delivery.timeout),
        )),
    }
}

async fn sleep_or_stop(stop: &CancellationToken, wake: &Notify, d: Duration) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = wake.notified() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

/// Publishes queue depth and the oldest pending age per destination every
/// two seconds, and prunes what was delivered more than a week ago.
pub struct Gauges {
    /// The outbox.
    pub outbox: Arc<Outbox>,
    /// Every destination, so an empty queue reads 0 rather than vanishing.
    pub names: Vec<String>,
}

impl Periodic for Gauges {
    fn period(&mut self) -> Duration {
        Duration::from_secs(2)
    }

    fn ticks_at_start(&self) -> bool {
        true
    }

    async fn tick(&mut self) {
        let ob = self.outbox.clone();
        let Ok(q) = blocking(move || ob.queue()).await else { return };
        let now = crate::probe::unix_now();
        for n in &self.names {
            let (depth, oldest) = q
                .iter()
                .find(|(d, _, _)| d == n)
                .map(|(_, c, o)| (*c as f64, o.map(|o| now - o).unwrap_or(0.0)))
                .unwrap_or((0.0, 0.0));
            metrics::gauge!("lookout_relay_queue_depth", "destination" => n.clone()).set(depth);
            metrics::gauge!("lookout_relay_oldest_pending_age_seconds", "destination" => n.clone()).set(oldest);
        }
        let ob = self.outbox.clone();
        let _ = blocking(move || ob.prune(Duration::from_secs(7 * 24 * 3600))).await;
    }
}
