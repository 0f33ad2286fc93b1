//! Which replica sends the synthetic alerts' fallback: one leader, chosen
//! through a PostgreSQL advisory lock.
//!
//! Every replica runs the probes and pushes its alerts to Alertmanager
//! (which de-duplicates them by labels). When Alertmanager cannot be
//! reached the alerts go straight to the relay instead, and there every
//! replica's copy would be a separate page (their `startsAt` differ, so the
//! relay's de-duplication does not join them): only the leader sends them.
//!
//! The lock is a session lock (`pg_try_advisory_lock`) on a connection of
//! its own, outside the store's pool: a pooled connection goes back to the
//! pool with the lock still held unless the pool cleans it, and then
//! whichever task took it next would hold the leadership by accident. The
//! lock ends with its session: a leader killed (`kill -9`) closes its socket
//! and the server frees the lock at once; a leader whose machine vanished is
//! found by TCP keepalives (asked of the server for this session, 5 s idle,
//! 3 probes 2 s apart). Followers try every third of a lease, so another
//! replica leads within one lease of the leader's end. A leader that cannot
//! reach the server stops leading at its next check — and could not store a
//! fallback notification then anyway.
//!
//! The leader writes its name into `relay_leader` (created with the
//! store's schema) at each check, so the
//! followers' status pages and metrics say who leads.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::config::StoreConfig;
use super::store::postgres::describe;
use super::store::postgres_tls::connect_config;
use crate::config::secret::redact_url;

/// The advisory lock key of the fallback leadership: "lkleader" in ASCII.
const LOCK: i64 = 0x6c6b_6c65_6164_6572;

/// The leadership as this replica sees it.
pub struct Leader {
    /// This replica's name.
    pub replica: String,
    leading: AtomicBool,
    /// Who leads, as last read (`None`: unknown).
    current: Mutex<Option<String>>,
}

impl Leader {
    /// A replica that does not lead until it has the lock.
    pub fn new(replica: &str) -> Leader {
        Leader {
            replica: replica.to_string(),
            leading: AtomicBool::new(false),
            current: Mutex::new(None),
        }
    }

    /// Whether this replica leads now.
    pub fn leads(&self) -> bool {
        self.leading.load(Ordering::Relaxed)
    }

    /// Who leads, as last seen.
    pub fn current(&self) -> Option<String> {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, leading: bool, current: Option<String>) {
        if self.leading.swap(leading, Ordering::Relaxed) != leading {
            if leading {
                tracing::info!(replica = %self.replica, "This replica now leads: it sends the synthetic alerts' fallback");
            } else {
                tracing::warn!(replica = %self.replica, "This replica no longer leads");
            }
        }
        metrics::gauge!("lookout_relay_leader", "replica" => self.replica.clone()).set(if leading { 1.0 } else { 0.0 });
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = current;
    }

    /// Holds or seeks the lock every `lease / 3` until `stop`; then lets it
    /// go at once (a stopped leader's successor need not wait).
    pub async fn run(&self, cfg: StoreConfig, stop: CancellationToken) {
        let shown = redact_url(cfg.url.expose());
        let period = cfg.lease / 3;
        let mut session: Option<tokio_postgres::Client> = None;
        loop {
            let step = async {
                if session.is_none() {
                    session = Some(connect(&cfg).await?);
                }
                let c = session.as_ref().ok_or_else(|| "no session".to_string())?;
                check(c, &self.replica, self.leads()).await
            };
            match step.await {
                Ok((leading, current)) => self.set(leading, current),
                Err(e) => {
                    if self.leads() || session.is_some() {
                        tracing::warn!(store = %shown, error = %e, "Cannot hold or seek the fallback leadership");
                    }
                    session = None;
                    self.set(false, None);
                }
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(period) => {}
            }
        }
        if let Some(c) = session
            && self.leads()
        {
            let _ = c.execute("SELECT pg_advisory_unlock($1)", &[&LOCK]).await;
        }
        self.set(false, None);
    }
}

/// A session of its own, with server-side keepalives so that the server
/// frees the lock of a leader whose machine vanished.
async fn connect(cfg: &StoreConfig) -> Result<tokio_postgres::Client, String> {
    let (mut pg, tls) = connect_config(cfg)?;
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(Duration::from_secs(3));
    }
    pg.application_name(format!("lookout {} leader", cfg.replica));
    let (client, conn) = pg.connect(tls).await.map_err(|e| describe(&e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
        .batch_execute("SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3")
        .await
        .map_err(|e| describe(&e))?;
    Ok(client)
}

/// One check: takes the lock if free (a leader only proves its session
/// lives: the lock is reentrant, and taking it again would need as many
/// unlocks), says so in `relay_leader`, and reads who leads.
async fn check(c: &tokio_postgres::Client, me: &str, leading: bool) -> Result<(bool, Option<String>), String> {
    let leading = if leading {
        c.execute("SELECT 1", &[]).await.map_err(|e| describe(&e))?;
        true
    } else {
        c.query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK])
            .await
            .map_err(|e| describe(&e))?
            .get::<_, bool>(0)
    };
    if leading {
        c.execute(
            "INSERT INTO relay_leader (id, replica, seen) VALUES (1, $1, extract(epoch from clock_timestamp()))
             ON CONFLICT (id) DO UPDATE SET replica = EXCLUDED.replica, seen = EXCLUDED.seen",
            &[&me],
        )
        .await
        .map_err(|e| describe(&e))?;
        return Ok((true, Some(me.to_string())));
    }
    let current = c
        .query_opt("SELECT replica FROM relay_leader WHERE id = 1", &[])
        .await
        .map_err(|e| describe(&e))?
        .map(|r| r.get::<_, String>(0));
    Ok((false, current))
}
