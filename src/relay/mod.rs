//! The relay: an Alertmanager-compatible webhook receiver that delivers
//! to Slack, email, PagerDuty and other webhooks, and loses nothing.
//!
//! `POST /webhook` answers 200 only once the notification is on disk in the
//! outbox (so Alertmanager retries anything not yet safe); one worker per
//! destination then delivers, up to `concurrency` groups at once and each
//! group in order, retrying with backoff, honouring rate limits and
//! `Retry-After`, and dead-letters what cannot be delivered.
//!
//! Routes, destinations and credentials reload with the configuration
//! ([`Relay::reload`]); the store and its queue stay.
//!
//! The workers run on the daemon's [`Tasks`]: at shutdown each finishes the
//! deliveries it has under way (bounded by its timeout) and writes their
//! outcomes before it returns, so a stop neither loses a notification nor
//! sends one twice.

pub mod budget;
pub mod config;
pub mod destination;
pub mod digest;
pub mod leader;
pub mod outbox;
pub mod payload;
pub mod retry;
pub mod route;
pub mod store;
pub mod template;
pub mod threads;
pub mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::task::Tasks;
use config::{Auth, RelayConfig};
use outbox::{Accepted, NewNotification, OutboxError};
use payload::{Envelope, Payload};

/// The running relay.
pub struct Relay {
    /// Where notifications wait: the SQLite outbox or the shared PostgreSQL store.
    pub store: Arc<dyn store::RelayStore>,
    /// The fallback leadership, with a shared store; `None`: this process
    /// is the only one, and leads.
    pub leader: Option<Arc<leader::Leader>>,
    /// Largest accepted body: the listener's limit, set at start.
    pub max_body_bytes: usize,
    /// Routes, destinations and workers in force; replaced whole by a reload.
    live: RwLock<Arc<Live>>,
    tasks: Tasks,
}

/// What a reload replaces: the configuration and a worker per destination.
struct Live {
    config: Arc<RelayConfig>,
    workers: HashMap<String, Running>,
}

/// A destination's worker as the relay holds it.
struct Running {
    /// Signalled when something new is queued for it.
    wake: Arc<Notify>,
    /// Tells it to stop (a reload, or the daemon's stop).
    stop: CancellationToken,
    /// Cancelled once it has stopped, its sends in flight landed.
    done: CancellationToken,
}

/// The relay as the daemon holds it from the start: empty until its store
/// opens. A shared PostgreSQL store may be unreachable when a replica
/// starts; the daemon then keeps trying while its probes run, and intake
/// and `/-/ready/relay` answer 503 (Alertmanager retries) until it opens.
#[derive(Default)]
pub struct RelaySlot {
    relay: OnceLock<Arc<Relay>>,
    /// Why the store is not open yet, as last tried (no secret: the URL is
    /// redacted in the store's errors).
    waiting: Mutex<String>,
}

impl RelaySlot {
    /// The relay, once its store opened.
    pub fn get(&self) -> Option<&Arc<Relay>> {
        self.relay.get()
    }

    /// The relay is running: webhooks are taken from now on.
    pub fn open(&self, relay: Arc<Relay>) {
        let _ = self.relay.set(relay);
    }

    /// Records why the store did not open.
    pub fn set_waiting(&self, why: String) {
        *self.waiting.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// Why the store is not open yet.
    pub fn waiting(&self) -> String {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Why a webhook was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// 400: the body is not a webhook payload.
    #[error("{0}")]
    BadRequest(String),
    /// 503: it could not be stored; Alertmanager should retry.
    #[error(transparent)]
    Unavailable(#[from] OutboxError),
}

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The store did not open.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// A destination could not be built from its configuration.
    #[error("destination `{name}`: {message}")]
    Destination {
        /// The destination's name.
        name: String,
        /// What was wrong.
        message: String,
    },
}

/// Builds every destination of `config` (all or none: the first failure is
/// returned before any worker starts), then starts a worker for each, on
/// `tasks`. Each starts only once every worker of `after` has stopped: a
/// reloaded destination's new worker must not read a delivery its old one
/// still has in flight (it would send it twice, and out of its group's
/// order).
fn start_workers(
    config: &RelayConfig,
    store: &Arc<dyn store::RelayStore>,
    tasks: &Tasks,
    after: Vec<CancellationToken>,
) -> Result<HashMap<String, Running>, RelayError> {
    // Slack's threads are the store's: shared by the replicas of a shared store.
    let threads = store.threads();
    let mut built = Vec::new();
    for d in &config.destinations {
        let dest = destination::build(d, &threads).map_err(|message| RelayError::Destination {
            name: d.name.clone(),
            message,
        })?;
        built.push((d, dest));
    }
    let mut workers = HashMap::new();
    for (d, dest) in built {
        let running = Running {
            wake: Arc::new(Notify::new()),
            stop: tasks.stopping().child_token(),
            done: CancellationToken::new(),
        };
        let w = worker::Worker {
            name: d.name.clone(),
            kind: d.kind.type_name(),
            delivery: d.delivery.clone(),
            destination: dest,
            store: store.clone(),
            wake: running.wake.clone(),
        };
        let (stop, done, after) = (running.stop.clone(), running.done.clone(), after.clone());
        tasks.spawn(async move {
            for previous in &after {
                previous.cancelled().await;
            }
            w.run(stop).await;
            done.cancel();
        });
        workers.insert(d.name.clone(), running);
    }
    Ok(workers)
}

impl Relay {
    /// Opens the store (`relay.store`, else the outbox in `data_dir`),
    /// dead-letters what is queued for destinations no longer configured,
    /// and starts one worker per destination, and the queue gauges, on
    /// `tasks`.
    pub async fn start(config: RelayConfig, data_dir: &std::path::Path, tasks: &Tasks) -> Result<Arc<Relay>, RelayError> {
        let store = store::open(&config, data_dir).await?;
        tracing::info!(store = %store.describe(), "Relay store open");
        orphans(store.as_ref(), &config).await;
        let workers = start_workers(&config, &store, tasks, Vec::new())?;
        let leader = config.store.as_ref().map(|s| {
            let l = Arc::new(leader::Leader::new(&s.replica));
            let (run, cfg, stop) = (l.clone(), s.clone(), tasks.stopping());
            tasks.spawn(async move { run.run(cfg, stop).await });
            l
        });
        let relay = Arc::new(Relay {
            store: store.clone(),
            leader,
            max_body_bytes: config.max_body_bytes,
            live: RwLock::new(Arc::new(Live {
                config: Arc::new(config),
                workers,
            })),
            tasks: tasks.clone(),
        });
        let weak = Arc::downgrade(&relay);
        tasks.every(worker::Gauges::new(
            store,
            Box::new(move || {
                weak.upgrade()
                    .map(|r| r.config().destinations.iter().map(|d| d.name.clone()).collect())
                    .unwrap_or_default()
            }),
        ));
        Ok(relay)
    }

    /// Whether this replica sends the synthetic alerts' fallback: the only
    /// process, or the leader of several.
    pub fn leads(&self) -> bool {
        self.leader.as_ref().is_none_or(|l| l.leads())
    }

    /// This replica's name and who leads, with a shared store.
    pub fn replica(&self) -> Option<(String, Option<String>)> {
        self.leader.as_ref().map(|l| (l.replica.clone(), l.current()))
    }

    fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The routes and destinations in force.
    pub fn config(&self) -> Arc<RelayConfig> {
        self.live().config.clone()
    }

    /// Replaces the routes, destinations and credentials, as Alertmanager
    /// reloads its receivers. Every destination is built first: one that
    /// cannot be changes nothing and says why. Queued notifications stay
    /// queued; the old workers finish their sends in flight and the new
    /// ones start after them. What is queued for a destination no longer
    /// configured is dead-lettered with that reason, once its worker has
    /// stopped.
    ///
    /// With a shared store this changes this replica only: the others keep
    /// their configuration until they reload too, and the first replica
    /// without a destination dead-letters its queue for all of them.
    pub fn reload(&self, config: RelayConfig) -> Result<(), RelayError> {
        let old = self.live();
        if config.max_body_bytes != self.max_body_bytes || config.dedup_window != old.config.dedup_window {
            tracing::warn!("`relay.max_body_bytes` and `relay.dedup_window` changes take effect at the next restart");
        }
        if store_key(&config) != store_key(&old.config) {
            tracing::warn!("`relay.store` changes take effect at the next restart");
        }
        let after: Vec<CancellationToken> = old.workers.values().map(|r| r.done.clone()).collect();
        let workers = start_workers(&config, &self.store, &self.tasks, after.clone())?;
        tracing::info!(
            destinations = config.destinations.len(),
            routes = config.routes.len(),
            "Relay routes and destinations reloaded"
        );
        let config = Arc::new(config);
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Live {
            config: config.clone(),
            workers,
        });
        for r in old.workers.values() {
            r.stop.cancel();
        }
        let (store, stop, config) = (self.store.clone(), self.tasks.stopping(), config.clone());
        self.tasks.spawn(async move {
            for previous in &after {
                tokio::select! {
                    _ = previous.cancelled() => {}
                    _ = stop.cancelled() => return,
                }
            }
            orphans(store.as_ref(), &config).await;
        });
        Ok(())
    }

    /// Checks the request's credentials, in constant time.
    pub fn authorised(&self, header: Option<&str>) -> bool {
        use subtle::ConstantTimeEq;
        let config = self.config();
        let expected = match &config.auth {
            Auth::None => return true,
            Auth::Bearer(t) => format!("Bearer {}", t.expose()),
            Auth::Basic { username, password } => {
                use base64::Engine;
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{username}:{}", password.expose()))
                )
            }
        };
        let got = header.unwrap_or("").trim();
        // The scheme is case-insensitive; compare it apart from the secret part.
        let (gs, gv) = got.split_once(' ').unwrap_or(("", got));
        let (es, ev) = expected.split_once(' ').unwrap_or(("", ""));
        gs.eq_ignore_ascii_case(es) & bool::from(gv.trim().as_bytes().ct_eq(ev.as_bytes()))
    }

    /// Validates, routes and durably stores a webhook body.
    pub async fn ingest(&self, body: &[u8]) -> Result<Accepted, IngestError> {
        // Stored and forwarded byte for byte.
        let text = std::str::from_utf8(body).map_err(|e| IngestError::BadRequest(format!("the body is not valid UTF-8: {e}")))?;
        let p = Envelope::parse_str(text).map_err(|e| IngestError::BadRequest(e.0))?;
        self.store(text.to_owned(), p.group_key.to_string(), p.dedup_key(), &p.common_labels)
            .await
    }

    /// Stores an already-parsed payload (synthetic alerts enter here when
    /// Alertmanager is unreachable).
    pub async fn ingest_payload(&self, p: &Payload, raw: String) -> Result<Accepted, IngestError> {
        self.store(raw, p.group_key.clone(), p.dedup_key(), &p.common_labels).await
    }

    /// Queues `p` for the destinations named `to`, past the routes: a
    /// notice addressed by name (a controlled flush's record, with the
    /// request's `notify`), as durable as an alert: in the outbox, retried,
    /// dead-lettered, delivered by the leader when replicas share a store.
    pub async fn send_to(&self, p: &Payload, to: Vec<String>) -> Result<Accepted, IngestError> {
        let raw = serde_json::to_string(p).map_err(|e| IngestError::BadRequest(e.to_string()))?;
        self.queue(raw, p.group_key.clone(), p.dedup_key(), to).await
    }

    async fn store(
        &self,
        raw: String,
        group_key: String,
        dedup: String,
        common_labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<Accepted, IngestError> {
        let destinations = route::destinations(&self.live().config.routes, common_labels);
        if destinations.is_empty() {
            // Counted, not logged at warn: a misrouted flood must not flood the log too.
            metrics::counter!("lookout_relay_unrouted_total").increment(1);
            tracing::debug!(group = %group_key, "Notification matched no route; it is stored with no destination");
        }
        self.queue(raw, group_key, dedup, destinations).await
    }

    async fn queue(&self, raw: String, group_key: String, dedup: String, destinations: Vec<String>) -> Result<Accepted, IngestError> {
        let live = self.live();
        let n = NewNotification {
            payload: raw,
            group_key,
            dedup,
            destinations: destinations.clone(),
        };
        let outcome = self.store.ingest(n).await?;
        if outcome == Accepted::Stored {
            for d in &destinations {
                if let Some(w) = live.workers.get(d) {
                    w.wake.notify_one();
                }
            }
        }
        Ok(outcome)
    }
}

/// What of `relay.store` a reload cannot change (the store stays open,
/// with the TLS files it was opened with).
fn store_key(c: &RelayConfig) -> Option<(&str, usize, std::time::Duration, &str, &config::StoreTls)> {
    c.store
        .as_ref()
        .map(|s| (s.url.expose(), s.pool_size, s.lease, s.replica.as_str(), &s.tls))
}

/// Dead-letters what is queued for destinations `config` no longer has
/// (removed by a reload, or while lookout was stopped): kept pending, it
/// would wait forever; dead, `lookout relay dlq` shows it and why.
async fn orphans(store: &dyn store::RelayStore, config: &RelayConfig) {
    let names: Vec<String> = config.destinations.iter().map(|d| d.name.clone()).collect();
    match store.dead_letter_unconfigured(&names).await {
        Ok(counts) => {
            for (destination, n) in counts {
                metrics::counter!("lookout_relay_deliveries_total", "destination" => destination.clone(), "outcome" => "dead", "reason" => "unconfigured")
                    .increment(n as u64);
                tracing::error!(destination = %destination, notifications = n, "Destination no longer configured; its queued notifications are dead-lettered");
            }
        }
        Err(e) => tracing::error!(error = %e, "Cannot dead-letter the notifications of removed destinations"),
    }
}
