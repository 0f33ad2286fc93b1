//! One dispatcher per destination: claim due deliveries from the store in
//! bounded batches, and send up to `concurrency` of them at once, each of a
//! different group; then mark each done, schedule a retry (backoff with
//! jitter, never before `Retry-After`) or dead-letter it (a permanent
//! failure, or older than `max_age`). Each outcome is one event that logs
//! and counts.
//!
//! Order: a group's notifications go out one after another. The store
//! offers only the oldest pending delivery of each group, and a group is
//! claimed from the moment its delivery is taken until its outcome is on
//! disk, so its next notification is not even read before then; a retry
//! scheduled for it holds the rest of the group back.
//!
//! Superseded: every notification carries its group's whole state, so for
//! a destination with `skip_superseded` (chat and email) a delivery with a
//! newer one of its group queued behind it is not sent but marked
//! superseded, and the newer one goes next. The check is made just before
//! the send, so what was superseded while waiting (a rate limit, a retry)
//! is caught too. PagerDuty and webhooks get every event, in order.
//!
//! Coalescing: before each send (at most once a second), a dispatcher of a
//! destination with `coalesce_after` looks whether its queue has waited
//! that long, and if so sends it as one digest ([`super::digest`]).
//!
//! Memory: what is held is at most `concurrency` deliveries in flight and a
//! batch of as many waiting, whatever the backlog on disk.
//!
//! Rate: one budget per destination ([`super::budget`]), a token taken
//! before each send, holds across the sends in flight, and across the
//! replicas that share a PostgreSQL store. A `Retry-After` pauses the whole
//! destination: nothing more is sent to it until then (by any replica, for
//! a shared budget), since the next send would only get the same answer. A
//! token taken for a delivery found superseded just before its send is
//! given back.
//!
//! Stopping: a dispatcher starts no new delivery once told to stop, lets the
//! ones in flight finish (each bounded by the destination's timeout), and
//! waits for their outcomes to be on disk before it returns. Returning
//! sooner would leave a delivered notification `pending`, to be sent again
//! after the restart.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::budget::{RateBudget, ready};
use super::destination::Delivery;
use super::destination::{Destination, Notification};
use super::digest;
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
        // Shared with the other replicas when the store is.
        let budget = me.store.budget(&me.name, me.delivery.min_interval, me.delivery.burst);
        let mut coalesce = Coalesce::new(me.delivery.coalesce_after);
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
                if let Some(co) = coalesce.as_mut()
                    && co.due()
                    && co.run(&me, &mut c.waiting, &mut c.groups, &stop, budget.as_ref()).await
                {
                    continue;
                }
                if c.waiting.is_empty() {
                    // The claimed groups' oldest deliveries are still pending
                    // and come first: ask for that many more than wanted.
                    match me.store.next_due(&me.name, c.groups.len() + concurrency).await {
                        Ok(batch) => {
                            let mut not_now = Vec::new();
                            for p in batch {
                                if c.groups.insert(p.group_key.clone()) {
                                    c.waiting.push_back(p);
                                } else {
                                    not_now.push(p.id);
                                }
                            }
                            // A group's next delivery, read after its outcome was
                            // recorded but before its task landed here: a shared
                            // store leased it to this replica, and would renew
                            // that lease while no one sends it. Given back, it
                            // is offered again on the next read.
                            if !not_now.is_empty()
                                && let Err(e) = me.store.release(&not_now).await
                            {
                                tracing::warn!(destination = %me.name, error = %e, "Cannot give back claims of groups under way; they are taken over when their leases end");
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
                    // Looked for before waiting for the rate limit (a skip
                    // sends nothing, so it needs no token) and again after:
                    // a newer notification may have come in meanwhile. A
                    // skip found only then gives its token back.
                    let mut superseded = me.superseded_by(&p).await;
                    let mut token = false;
                    if superseded.is_none() {
                        if !ready(budget.as_ref(), &stop, &me.name).await {
                            // Not sent: given back below, for the next start
                            // or another replica.
                            c.waiting.push_front(p);
                            break;
                        }
                        token = true;
                        superseded = me.superseded_by(&p).await;
                    }
                    if let Some(by) = superseded {
                        let group = p.group_key.clone();
                        let (w, budget) = (me.clone(), budget.clone());
                        let task = c.flights.spawn(async move {
                            if token && let Err(e) = budget.give_back().await {
                                tracing::warn!(destination = %w.name, error = %e, "Cannot give back the token of a superseded notification");
                            }
                            w.skip(p, by).await
                        });
                        c.flying.insert(task.id(), group);
                        continue;
                    }
                    let group = p.group_key.clone();
                    let (w, budget) = (me.clone(), budget.clone());
                    let task = c.flights.spawn(async move {
                        let op = w.attempt(p, budget.as_ref()).await;
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
        // Nothing in flight any more, whether a reload removed the
        // destination (its series would otherwise keep the last value) or
        // a new worker takes over.
        in_flight.set(0.0);
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

    /// The newer delivery of `p`'s group queued behind it, when this
    /// destination skips superseded notifications and there is one. A
    /// failed read sends `p`: one message too many rather than one lost.
    async fn superseded_by(&self, p: &Pending) -> Option<i64> {
        if !self.delivery.skip_superseded {
            return None;
        }
        match self.store.newer_in_group(&self.name, &p.group_key, p.id).await {
            Ok(newer) => newer,
            Err(e) => {
                tracing::warn!(destination = %self.name, error = %e, "Cannot look for a newer notification of the group; sending this one");
                None
            }
        }
    }

    /// Records that `p` was not sent because `by`, newer, says all it would.
    async fn skip(&self, p: Pending, by: i64) {
        tracing::debug!(destination = %self.name, id = p.id, by, group = %p.group_key, "Notification superseded by a newer one of its group; not sent");
        match self.store.mark(Mark::Superseded(p.id, by)).await {
            Ok(()) => metrics::counter!("lookout_relay_deliveries_total", "destination" => self.name.clone(), "outcome" => "superseded", "reason" => "newer_in_group").increment(1),
            // Still pending: it is looked at again, and skipped again.
            Err(e) => tracing::error!(destination = %self.name, id = p.id, error = %e, "Cannot record a superseded notification"),
        }
    }

    /// Pauses every send of the destination for `d` (its `Retry-After`).
    async fn pause(&self, budget: &dyn RateBudget, d: Duration) {
        if let Err(e) = budget.pause(d).await {
            // This replica pauses all the same; the others learn of it from their own 429.
            tracing::warn!(destination = %self.name, error = %e, paused_for = ?d, "Cannot share the destination's pause with the other replicas");
        }
    }

    /// Delivers one notification; returns the outcome to record.
    async fn attempt(&self, p: Pending, budget: &dyn RateBudget) -> Mark {
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
                        self.pause(budget, r).await;
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

/// How often a destination's queue is looked at for a digest: one small
/// indexed read a second.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// A dispatcher's coalescing ([`super::digest`]): when to look at the queue next, and how many
/// digests in a row failed (for the backoff).
struct Coalesce {
    after: Duration,
    next_look: Instant,
    failures: i64,
}

impl Coalesce {
    /// For a destination with `coalesce_after`; none without.
    fn new(after: Option<Duration>) -> Option<Coalesce> {
        after.map(|after| Coalesce {
            after,
            next_look: Instant::now(),
            failures: 0,
        })
    }

    /// Whether to look at the queue now.
    fn due(&self) -> bool {
        Instant::now() >= self.next_look
    }

    /// Sends what `w`'s destination has queued as one digest when its
    /// oldest has waited longer than `coalesce_after`. The dispatcher's
    /// `waiting` batch is given back first (the digest takes it); the groups
    /// still `claimed` are in flight and left out, since their next
    /// notification must follow the one under way. True when a digest went
    /// out.
    async fn run(
        &mut self,
        w: &Worker,
        waiting: &mut VecDeque<Pending>,
        claimed: &mut HashSet<String>,
        stop: &CancellationToken,
        budget: &dyn RateBudget,
    ) -> bool {
        self.next_look = Instant::now() + LOOK_EVERY;
        let oldest = match w.store.queued(&w.name, 1, 0).await {
            Ok(q) => q.first().map(|p| p.created),
            Err(e) => {
                tracing::error!(destination = %w.name, error = %e, "Cannot read the outbox");
                return false;
            }
        };
        let now = crate::probe::unix_now();
        if oldest.is_none_or(|t| now - t < self.after.as_secs_f64()) {
            return false;
        }
        let mut given_back = Vec::new();
        for p in waiting.drain(..) {
            claimed.remove(&p.group_key);
            given_back.push(p.id);
        }
        // A shared store leased them to this replica: given back, they are
        // the digest's like the rest of the queue, and after a failed digest
        // they are offered again at once rather than when their leases end.
        if !given_back.is_empty()
            && let Err(e) = w.store.release(&given_back).await
        {
            tracing::warn!(destination = %w.name, error = %e, "Cannot give back claims for a digest; they are taken over when their leases end");
        }
        let queued = match w.store.queued(&w.name, digest::MAX_NOTIFICATIONS, digest::MAX_BYTES).await {
            Ok(q) => q.into_iter().filter(|p| !claimed.contains(&p.group_key)).collect::<Vec<_>>(),
            Err(e) => {
                tracing::error!(destination = %w.name, error = %e, "Cannot read the outbox");
                return false;
            }
        };
        let Some(digest) = digest::Digest::build(&queued, now) else {
            return false;
        };
        if !ready(budget, stop, &w.name).await {
            return false;
        }
        let started = Instant::now();
        let sent = match tokio::time::timeout(w.delivery.timeout, w.destination.deliver_digest(&digest)).await {
            Ok(r) => r,
            Err(_) => Err(DeliveryError::transient(
                Reason::Timeout,
                format!("no answer within {:?}", w.delivery.timeout),
            )),
        };
        metrics::histogram!("lookout_relay_attempt_duration_seconds", "destination" => w.name.clone())
            .record(started.elapsed().as_secs_f64());
        match sent {
            Ok(()) => {
                self.failures = 0;
                let note = format!(
                    "delivered in a digest of {} groups ({} notifications) at {}",
                    digest.num_groups,
                    digest.num_notifications,
                    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                );
                let marks = digest.ids.iter().map(|&id| Mark::Digested(id, note.clone())).collect();
                if let Err(e) = w.store.mark_all(marks).await {
                    // Still pending: sent again (alone or in the next digest), never lost.
                    tracing::error!(destination = %w.name, error = %e, "Cannot record the notifications a digest delivered");
                }
                metrics::counter!("lookout_relay_digests_total", "destination" => w.name.clone(), "outcome" => "success").increment(1);
                metrics::counter!("lookout_relay_deliveries_total", "destination" => w.name.clone(), "outcome" => "digested")
                    .increment(digest.num_notifications as u64);
                tracing::info!(destination = %w.name, groups = digest.num_groups, notifications = digest.num_notifications, waited = %digest.waited, "Queued notifications delivered as one digest");
                true
            }
            Err(e) => {
                if let Some(r) = e.retry_after {
                    w.pause(budget, r).await;
                }
                // Permanent or not, the originals stay queued: each is
                // still tried alone, and dead-lettered alone if it must be.
                let wait = retry::backoff(self.failures, w.delivery.initial_backoff, w.delivery.max_backoff, e.retry_after);
                self.failures += 1;
                self.next_look = Instant::now() + wait;
                metrics::counter!("lookout_relay_digests_total", "destination" => w.name.clone(), "outcome" => "retry", "reason" => e.reason.as_str())
                    .increment(1);
                tracing::warn!(destination = %w.name, groups = digest.num_groups, reason = e.reason.as_str(), error = %e.message, retry_in = ?wait, "Digest not delivered; the notifications stay queued");
                false
            }
        }
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

/// Builds the destination `d` and delivers `payload` once through
/// [`deliver`], without the queue: for notices a command sends now and
/// reports on itself (`lookout relay send-test`, `lookout redis flush
/// --notify`). Without the relay's store open, a Slack bot keeps the
/// notice's thread in the outbox file in `data_dir`: a notice's group is
/// its own, and no replica delivers a later notification of it.
pub async fn deliver_now(d: &super::destination::DestinationConfig, data_dir: &std::path::Path, payload: &Payload) -> Result<(), String> {
    let threads: Arc<dyn super::threads::ThreadStore> =
        Arc::new(super::threads::SqliteThreads::beside(&data_dir.join(super::outbox::OUTBOX_FILE)));
    let dest = super::destination::build(d, &threads)?;
    let raw = serde_json::to_string(payload).map_err(|e| e.to_string())?;
    let n = Notification { payload, raw: &raw };
    deliver(dest.as_ref(), &d.delivery, &n).await.map_err(|e| e.message)
}

/// Publishes queue depth and the oldest pending age per destination every
/// two seconds, and prunes what was delivered more than a week ago every
/// ten minutes.
pub struct Gauges {
    store: Arc<dyn RelayStore>,
    names: Box<dyn Fn() -> Vec<String> + Send>,
    /// The destinations published at the last tick: one a reload removed
    /// is set to 0 once (its queue was dead-lettered), rather than keeping
    /// its last depth and age for as long as the process runs. The
    /// recorder cannot drop a series, so 0 is how it says "nothing".
    published: HashSet<String>,
    pruned: Option<Instant>,
}

/// How often delivered rows are pruned. Pruning scans both tables and takes
/// SQLite's write lock; every two seconds, with a backlog of 40,000 queued,
/// it competed with the webhook writer for the lock.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// How long delivered rows (and the Slack threads of their groups) are kept.
const PRUNE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

impl Gauges {
    /// Gauges of `store` for the destinations `names` returns (configured
    /// now: a reload changes them), so an empty queue reads 0 rather than
    /// vanishing.
    pub fn new(store: Arc<dyn RelayStore>, names: Box<dyn Fn() -> Vec<String> + Send>) -> Gauges {
        Gauges {
            store,
            names,
            published: HashSet::new(),
            pruned: None,
        }
    }
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
        let names: HashSet<String> = (self.names)().into_iter().collect();
        for n in &names {
            let (depth, oldest) = q
                .iter()
                .find(|(d, _, _)| d == n)
                .map(|(_, c, o)| (*c as f64, o.map(|o| now - o).unwrap_or(0.0)))
                .unwrap_or((0.0, 0.0));
            metrics::gauge!("lookout_relay_queue_depth", "destination" => n.clone()).set(depth);
            metrics::gauge!("lookout_relay_oldest_pending_age_seconds", "destination" => n.clone()).set(oldest);
        }
        for gone in self.published.difference(&names) {
            metrics::gauge!("lookout_relay_queue_depth", "destination" => gone.clone()).set(0.0);
            metrics::gauge!("lookout_relay_oldest_pending_age_seconds", "destination" => gone.clone()).set(0.0);
        }
        self.published = names;
        if self.pruned.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            self.pruned = Some(Instant::now());
            match self.store.prune(PRUNE_AFTER).await {
                Ok(n) => tracing::debug!(notifications = n, "Pruned what was delivered more than a week ago"),
                // Tried again at the next round; meanwhile the store only grows.
                Err(e) => tracing::warn!(error = %e, "Cannot prune delivered notifications"),
            }
        }
    }
}
