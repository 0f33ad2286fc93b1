//! The relay: an Alertmanager-compatible webhook receiver that delivers
//! to Slack, email, PagerDuty and other webhooks, and loses nothing.
//!
//! `POST /webhook` answers 200 only once the notification is on disk in the
//! outbox (so Alertmanager retries anything not yet safe); one worker per
//! destination then delivers, up to `concurrency` groups at once and each
//! group in order, retrying with backoff, honouring rate limits and
//! `Retry-After`, and dead-letters what cannot be delivered.
//!
//! The workers run on the daemon's [`Tasks`]: at shutdown each finishes the
//! deliveries it has under way (bounded by its timeout) and writes their
//! outcomes before it returns, so a stop neither loses a notification nor
//! sends one twice.

pub mod config;
pub mod destination;
pub mod digest;
pub mod outbox;
pub mod payload;
pub mod retry;
pub mod route;
pub mod template;
pub mod worker;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::task::Tasks;
use config::{Auth, RelayConfig};
use outbox::{Accepted, NewNotification, Outbox, OutboxError};
use payload::{Envelope, Payload};

/// The running relay.
pub struct Relay {
    /// Its configuration.
    pub config: RelayConfig,
    /// The outbox.
    pub outbox: Arc<Outbox>,
    wake: HashMap<String, Arc<Notify>>,
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
    /// The outbox did not open.
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

impl Relay {
    /// Opens the outbox (on the blocking pool) and starts one worker per
    /// destination, and the queue gauges, on `tasks`.
    pub async fn start(config: RelayConfig, data_dir: &std::path::Path, tasks: &Tasks) -> Result<Arc<Relay>, RelayError> {
        let (dir, window) = (data_dir.to_path_buf(), config.dedup_window);
        let outbox = Arc::new(
            tokio::task::spawn_blocking(move || Outbox::open(&dir, window))
                .await
                .map_err(OutboxError::from)??,
        );
        let mut wake = HashMap::new();
        let mut workers = Vec::new();
        for d in &config.destinations {
            let dest = destination::build(d, outbox.clone()).map_err(|message| RelayError::Destination {
                name: d.name.clone(),
                message,
            })?;
            let n = Arc::new(Notify::new());
            wake.insert(d.name.clone(), n.clone());
            workers.push(worker::Worker {
                name: d.name.clone(),
                kind: d.kind.type_name(),
                delivery: d.delivery.clone(),
                destination: dest,
                outbox: outbox.clone(),
                wake: n,
            });
        }
        for w in workers {
            tasks.spawn(w.run(tasks.stopping()));
        }
        let relay = Arc::new(Relay { config, outbox, wake });
        tasks.every(worker::Gauges {
            outbox: relay.outbox.clone(),
            names: relay.config.destinations.iter().map(|d| d.name.clone()).collect(),
        });
        Ok(relay)
    }

    /// Checks the request's credentials, in constant time.
    pub fn authorised(&self, header: Option<&str>) -> bool {
        use subtle::ConstantTimeEq;
        let expected = match &self.config.auth {
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
        let p = Envelope::parse(body).map_err(|e| IngestError::BadRequest(e.0))?;
        // The strict walk in `Envelope::parse` has checked every string, so
        // the body is valid UTF-8: stored and forwarded byte for byte.
        let raw = String::from_utf8(body.to_vec()).map_err(|_| IngestError::BadRequest("the body is not valid UTF-8".into()))?;
        self.store(raw, p.group_key.to_string(), p.dedup_key(), &p.common_labels).await
    }

    /// Stores an already-parsed payload (synthetic alerts enter here when
    /// Alertmanager is unreachable).
    pub async fn ingest_payload(&self, p: &Payload, raw: String) -> Result<Accepted, IngestError> {
        self.store(raw, p.group_key.clone(), p.dedup_key(), &p.common_labels).await
    }

    async fn store(
        &self,
        raw: String,
        group_key: String,
        dedup: String,
        common_labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<Accepted, IngestError> {
        let destinations = route::destinations(&self.config.routes, common_labels);
        if destinations.is_empty() {
            // Counted, not logged at warn: a misrouted flood must not flood the log too.
            metrics::counter!("lookout_relay_unrouted_total").increment(1);
            tracing::debug!(group = %group_key, "Notification matched no route; it is stored with no destination");
        }
        let n = NewNotification {
            payload: raw,
            group_key,
            dedup,
            destinations: destinations.clone(),
        };
        let outcome = self.outbox.ingest(n).await?;
        if outcome == Accepted::Stored {
            for d in &destinations {
                if let Some(w) = self.wake.get(d) {
                    w.notify_one();
                }
            }
        }
        Ok(outcome)
    }
}
