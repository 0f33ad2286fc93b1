//! One dispatcher per destination: claim due deliveries from the outbox in
//! bounded batches, and send up to `concurrency` of them at once, each of a
//! different group; then mark each done, schedule a retry (backoff with
//! jitter, never before `Retry-After`) or dead-letter it (a permanent
//! failure, or older than `max_age`). Each outcome is one event that logs
//! and counts.
//!
//! Order: a group's notifications go out one after another. The outbox
//! offers only the oldest pending delivery of each group, and a group is
//! claimed from the moment its delivery is taken until its outcome is on
//! disk, so its next notification is not even read before then; a retry
//! scheduled for it holds the rest of the group back.
//!
//! Memory: what is held is at most `concurrency` deliveries in flight and a
//! batch of as many waiting, whatever the backlog on disk.
//!
//! Rate: one token bucket per destination, taken before each send, holds
//! across the sends in flight. A `Retry-After` pauses the whole destination:
//! nothing more is sent to it until then, since the next send would only get
//! the same answer.
//!
//! Stopping: a dispatcher starts no new delivery once told to stop, lets the
//! ones in flight finish (each bounded by the destination's timeout), and
//! waits for their outcomes to be on disk before it returns. Returning
//! sooner would leave a delivered notification `pending`, to be sent again
//! after the restart.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::destination::Delivery;
use super::destination::{Destination, Notification};
use super::outbox::{Mark, Pending};
use super::payload::Payload;
use super::retry::{self, DeliveryError, Reason, Retry};
use super::store::RelayStore;
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
    /// Where the deliveries wait.
    pub store: Arc<dyn RelayStore>,
    /// Signalled when something new is queued.
    pub wake: Arc<Notify>,
}

/// Until when a destination said to wait (`Retry-After`), for every send.
#[derive(Default)]
struct Pause(Mutex<Option<Instant>>);

impl Pause {
    /// Pauses until `d` from now, unless already paused longer.
    fn extend(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut p = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if p.is_none_or(|t| t < until) {
            *p = Some(until);
        }
    }

    /// What is left of the pause.
    fn remaining(&self) -> Option<Duration> {
        let p = self.0.lock().unwrap_or_else(|p| p.into_inner());
        p.and_then(|t| t.checked_duration_since(Instant::now())).filter(|d| !d.is_zero())
    }
}

/// What a dispatcher holds: the groups it has claimed (waiting or in
/// flight), the deliveries waiting, and those in flight by task.
struct Claims {
    groups: HashSet<String>,
    waiting: VecDeque<Pending>,
    flights: JoinSet<()>,
    flying: HashMap<tokio::task::Id, String>,
}

impl Claims {
    /// A delivery's outcome is on disk (or the task failed): its group may
    /// be read again.
    fn landed(&mut self, r: Result<tokio::task::Id, tokio::task::JoinError>, name: &str) {
        let id = match r {
            Ok(id) => id,
            Err(e) => {
                // The delivery stays pending and will be sent again: a duplicate, never a loss.
                tracing::error!(destination = %name, error = %e, "A delivery task failed");
                e.id()
            }
        };
        if let Some(g) = self.flying.remove(&id) {
            self.groups.remove(&g);
        }
    }
}

impl Worker {
    /// Runs until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let me = Arc::new(self);
        let concurrency = me.delivery.concurrency.max(1);
        let limiter = retry::limiter(me.delivery.min_interval, me.delivery.burst);
        let pause = Arc::new(Pause::default());
        let in_flight = metrics::gauge!("lookout_relay_in_flight", "destination" => me.name.clone());
        let mut c = Claims {
            groups: HashSet::new(),
            waiting: VecDeque::new(),
            flights: JoinSet::new(),
            flying: HashMap::new(),
        };
        loop {
            while let Some(r) = c.flights.try_join_next_with_id() {
                c.landed(r.map(|(id, ())| id), &me.name);
            }
            in_flight.set(c.flights.len() as f64);
            if stop.is_cancelled() {
                break;
            }
            if c.flights.len() < concurrency {
                if c.waiting.is_empty() {
                    // The claimed groups' oldest deliveries are still pending
                    // and come first: ask for that many more than wanted.
                    match me.store.next_due(&me.name, c.groups.len() + concurrency).await {
                        Ok(batch) => {
                            for p in batch {
                                if c.groups.insert(p.group_key.clone()) {
                                    c.waiting.push_back(p);
                                }
                            }
                        }
                        Err(e) => {
                            tracing::error!(destination = %me.name, error = %e, "Cannot read the outbox");
                            me.idle(&stop, &mut c, Some(Duration::from_secs(1))).await;
                            continue;
                        }
                    }
                }
                if let Some(p) = c.waiting.pop_front() {
                    if !ready(&stop, limiter.as_ref(), &pause).await {
                        // Not sent: it stays pending for the next start.
                        break;
                    }
                    let group = p.group_key.clone();
                    let (w, pause) = (me.clone(), pause.clone());
                    let task = c.flights.spawn(async move {
                        let op = w.attempt(p, &pause).await;
                        if let Err(e) = w.store.mark(op.clone()).await {
                            // The delivery stays pending and will be sent again: a duplicate, never a loss.
                            tracing::error!(destination = %w.name, outcome = ?op, error = %e, "Cannot record the delivery outcome");
                        }
                    });
                    c.flying.insert(task.id(), group);
                    continue;
                }
            }
            // Nothing to send now: wait for a send to land, new work, the
            // next retry to come due, or the stop.
            let due = if c.flights.len() < concurrency {
                match me.store.next_wakeup(&me.name).await {
                    Ok(Some(t)) => Some(Duration::from_secs_f64((t - crate::probe::unix_now()).clamp(0.001, 1.0))),
                    _ => Some(Duration::from_secs(1)),
                }
            } else {
                None
            };
            // Due now only because a claimed group's delivery is pending:
            // its landing is what to wait for.
            let due = due.map(|d| {
                if c.flights.is_empty() {
                    d
                } else {
                    d.max(Duration::from_millis(50))
                }
            });
            me.idle(&stop, &mut c, due).await;
        }
        // Also when stopping: dropping a send in flight would lose its
        // outcome, and the delivery would go out again.
        while let Some(r) = c.flights.join_next_with_id().await {
            c.landed(r.map(|(id, ())| id), &me.name);
            in_flight.set(c.flights.len() as f64);
        }
        // Claimed but not sent: given back, for another replica to take now.
        let unsent: Vec<i64> = c.waiting.iter().map(|p| p.id).collect();
        if !unsent.is_empty()
            && let Err(e) = me.store.release(&unsent).await
        {
            tracing::warn!(destination = %me.name, error = %e, "Cannot give back unsent claims; they are taken over when their leases end");
        }
    }

    /// Waits for one of the sends in flight to land, a wake-up, `wait`
    /// (none: no timer) or the stop.
    async fn idle(&self, stop: &CancellationToken, c: &mut Claims, wait: Option<Duration>) {
        let sleep = async {
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = self.wake.notified() => {}
            _ = sleep => {}
            Some(r) = c.flights.join_next_with_id(), if !c.flights.is_empty() => c.landed(r.map(|(id, ())| id), &self.name),
        }
    }

    /// Delivers one notification; returns the outcome to record.
    async fn attempt(&self, p: Pending, pause: &Pause) -> Mark {
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
        let (mark, label, reason) = match result {
            Ok(()) => {
                metrics::histogram!("lookout_relay_delivery_latency_seconds", "destination" => self.name.clone()).record(age.max(0.0));
                tracing::debug!(destination = %self.name, id = p.id, attempts = p.attempts + 1, "Notification delivered");
                (Mark::Done(p.id), "success", None)
            }
            Err(e) => {
                let expired = e.retry == Retry::Yes && age > self.delivery.max_age.as_secs_f64();
                if e.retry == Retry::No || expired {
                    let (why, reason) = if expired {
                        let why = format!(
                            "older than max_age ({}); last error: {}",
                            humantime::format_duration(self.delivery.max_age),
                            e.message
                        );
                        (why, Reason::Expired)
                    } else {
                        (e.message.clone(), e.reason)
                    };
                    tracing::error!(destination = %self.name, id = p.id, group = %p.group_key, reason = reason.as_str(), error = %why, "Notification dead-lettered");
                    (Mark::Dead(p.id, why), "dead", Some(reason))
                } else {
                    if let Some(r) = e.retry_after {
                        // The destination, not this one send, is told to wait.
                        pause.extend(r);
                    }
                    let wait = retry::backoff(p.attempts, self.delivery.initial_backoff, self.delivery.max_backoff, e.retry_after);
                    let next = crate::probe::unix_now() + wait.as_secs_f64();
                    tracing::warn!(destination = %self.name, id = p.id, attempt = p.attempts + 1, reason = e.reason.as_str(), error = %e.message, retry_in = ?wait, paused_for = ?e.retry_after, "Delivery failed; will retry");
                    (Mark::Retry(p.id, next, e.message.clone()), "retry", Some(e.reason))
                }
            }
        };
        match reason {
            None => metrics::counter!("lookout_relay_deliveries_total", "destination" => self.name.clone(), "outcome" => label).increment(1),
            Some(r) => metrics::counter!("lookout_relay_deliveries_total", "destination" => self.name.clone(), "outcome" => label, "reason" => r.as_str())
                .increment(1),
        }
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

/// Builds the destination `d` as the daemon does (with the outbox in
/// `data_dir`, where a Slack bot keeps its threads) and delivers `payload`
/// once through [`deliver`], without the queue: for notices a command sends
/// now and reports on itself (`lookout relay send-test`, `lookout redis
/// flush --notify`).
pub async fn deliver_now(d: &super::destination::DestinationConfig, data_dir: &std::path::Path, payload: &Payload) -> Result<(), String> {
    let dest = super::destination::build(d, &data_dir.join(super::outbox::OUTBOX_FILE))?;
    let raw = serde_json::to_string(payload).map_err(|e| e.to_string())?;
    let n = Notification { payload, raw: &raw };
    deliver(dest.as_ref(), &d.delivery, &n).await.map_err(|e| e.message)
}

/// Waits until a send may go out: no `Retry-After` pause, a token from the
/// bucket. False when stopped first.
async fn ready(stop: &CancellationToken, limiter: Option<&governor::DefaultDirectRateLimiter>, pause: &Pause) -> bool {
    loop {
        if let Some(d) = pause.remaining() {
            tokio::select! {
                _ = stop.cancelled() => return false,
                _ = tokio::time::sleep(d) => {}
            }
        }
        if let Some(l) = limiter {
            tokio::select! {
                _ = stop.cancelled() => return false,
                _ = l.until_ready() => {}
            }
        }
        // A pause that began while waiting for the token applies too.
        if pause.remaining().is_none() {
            return !stop.is_cancelled();
        }
    }
}

/// Publishes queue depth and the oldest pending age per destination every
/// two seconds, and prunes what was delivered more than a week ago.
pub struct Gauges {
    /// Where the deliveries wait.
    pub store: Arc<dyn RelayStore>,
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
        let Ok(q) = self.store.queue().await else { return };
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
        let _ = self.store.prune(Duration::from_secs(7 * 24 * 3600)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_only_grows() {
        let p = Pause::default();
        assert_eq!(p.remaining(), None);
        p.extend(Duration::from_secs(30));
        p.extend(Duration::from_secs(1));
        assert!(p.remaining().is_some_and(|r| r > Duration::from_secs(20)), "the longer pause holds");
    }
}
