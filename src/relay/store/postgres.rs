//! The shared store: a PostgreSQL database that several lookout replicas
//! use at once, so that losing any one of them loses nothing.
//!
//! Intake: concurrent webhooks are committed together, as the SQLite
//! writer does, by two writer tasks that each take whatever is queued (up
//! to [`MAX_BATCH`], waiting up to [`GATHER`] under load for as many as
//! last time) and commit it in one transaction — one WAL flush for many
//! notifications. Each batch is one prepared statement whatever its
//! size (arrays bound once, `unnest`ed by the server; data-modifying CTEs
//! for the keys, the notifications and the deliveries), so a batch costs one
//! round trip. Measured with `bench/relay-replicas.sh`: five statements in
//! a transaction (seven round trips) took two replicas to 3.5k webhooks/s. A webhook is answered 200 only after its
//! batch committed; when PostgreSQL is down the pool cannot hand out a
//! connection and intake answers 503, and recovers by itself once the
//! server is back (the pool reconnects).
//!
//! De-duplication across replicas: each notification's identity is a row of
//! `relay_dedup` (its primary key), inserted in the same transaction as the
//! notification. A copy arriving at another replica within the window finds
//! the row (or waits on its lock until the first commits) and is counted a
//! duplicate; one outside the window refreshes the row and is stored. Keys
//! are inserted sorted, so two batches that share keys lock them in the same
//! order and never deadlock.
//!
//! Delivery: a worker claims the oldest pending delivery of each group
//! with `FOR UPDATE SKIP LOCKED` and a lease (`lease_owner`,
//! `lease_until`). A group's next delivery is never offered while an older
//! one is pending, so a group goes out in order even across replicas; a
//! claimed delivery is offered to no one until its lease runs out, which is
//! how a crashed replica's claims are taken over. A keeper task renews the
//! leases of this replica's claims every third of a lease, so a slow send is
//! not taken over while it is under way. Outcomes are recorded only by the
//! lease's owner (`WHERE lease_owner = me`): a replica that lost its lease
//! (paused longer than the lease) cannot overwrite the new owner's outcome.
//! At least once, then: a send whose outcome was not recorded before the
//! crash goes out again after the lease.
//!
//! Superseded and digested: a dispatcher skipping a superseded delivery
//! marks its own claim, as any outcome. A digest claims nothing: it reads
//! the destination's queue, due or not, leaving out the groups another
//! replica holds a live lease in (their next notification must follow the
//! one under way), and marks the originals digested unless another replica
//! has claimed one meanwhile (it is sending that one alone: a duplicate,
//! never a loss). Two replicas coalescing the same backlog at once may both
//! send a digest, for the same reason. The states are plain text, so they
//! needed no new schema version.
//!
//! Rate limits: every replica delivers to the same Slack channel, so a
//! destination's `rate_limit` is one budget for them all, a row of
//! `relay_rate` (schema 3) holding the generic cell rate algorithm's
//! theoretical arrival time (`tat`) and a `Retry-After` pause
//! (`paused_until`). A send takes its token with one statement
//! (`relay_rate_take`, a function so that the row is locked before the
//! server's clock is read: replicas' clocks may disagree, and a clock read
//! before waiting for another replica's lock would be stale), which answers
//! go or how long to wait; a 429 sets the pause for every replica. A
//! destination without a rate limit has no row and pays no round trip: its
//! pauses stay with the replica that was told (each other replica is told
//! by its own next 429). When the database does not answer, no token is
//! taken and nothing is sent: [`crate::relay::budget::ready`] asks again.
//!
//! Slack threads: `relay_threads` (schema 3), so a resolve delivered by one
//! replica replies in, and updates, the thread another started.
//!
//! Time: receipt and retry times are the replica's clock (Unix seconds, as
//! in the SQLite outbox); leases and rate budgets are the server's clock, so
//! replicas with skewed clocks still agree on when a lease ends and when
//! the next token is due.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{mpsc, oneshot};

use super::{Accepted, Dead, Mark, NewNotification, OutboxError, Pending, RelayStore};
use crate::config::secret::redact_url;
use crate::relay::budget::{Pause, RateBudget, Take};
use crate::relay::config::StoreConfig;
use crate::relay::threads::ThreadStore;

/// The schema's version, kept in `lookout_schema` under [`COMPONENT`].
pub const SCHEMA_VERSION: i32 = 3;
/// The relay's row in `lookout_schema`.
const COMPONENT: &str = "relay";
/// Advisory lock key held while the schema is created or migrated, so
/// replicas starting together do not race: "lookout" in ASCII.
const MIGRATE_LOCK: i64 = 0x006c_6f6f_6b6f_7574;

/// Most webhooks committed in one transaction.
const MAX_BATCH: usize = 512;
/// Intake writers per replica. PostgreSQL's CPU per commit, not its WAL
/// fsync, is what limits intake on a small host: measured with
/// `bench/relay-replicas.sh` (two replicas, 8 connections each, 2 cores),
/// four writers each committed 0.9 webhooks a transaction, and the server
/// spent 7.7 s of CPU in 10 s (154 µs a webhook) while PostgreSQL's own
/// group commit already shared each WAL fsync among 3.6. Two writers
/// gathering for [`GATHER`] commit 2.3–2.7 a transaction, and the server
/// spends 64–75 µs a webhook (median ratios to Alertmanager 0.37 and 0.30,
/// against 0.31 and 0.26 with four writers, in the same sessions).
/// One writer commits 2.0 a transaction but sends one batch at a time;
/// two keep one batch filling while the other commits.
const WRITERS: usize = 2;
/// Group commit: how long a writer may wait for more webhooks before it
/// commits a batch smaller than its last one, so that concurrent requests
/// share a transaction rather than each paying for its own. Tokio's timer
/// counts milliseconds, so this is its shortest wait; taken only under
/// load (the batch before held at least [`GATHER_FROM`]), so a lone webhook
/// is never delayed.
const GATHER: Duration = Duration::from_millis(1);
/// Smallest batch after which a writer waits [`GATHER`] for the next to be
/// as large.
const GATHER_FROM: usize = 2;
/// Webhooks waiting for a writer; beyond this intake answers 503.
const QUEUE: usize = 4096;
/// Longest a batch may take before its webhooks are answered 503: a
/// stalled server must not hold Alertmanager's requests for its own 10s
/// timeout.
const BATCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for a pooled connection, and to make a new one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Tables and indexes of version 1.
const SCHEMA_V1: &str = "
CREATE TABLE relay_notifications (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    received double precision NOT NULL,
    group_key text NOT NULL,
    dedup text NOT NULL,
    payload text NOT NULL
);
CREATE TABLE relay_deliveries (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    notification bigint NOT NULL REFERENCES relay_notifications(id),
    destination text NOT NULL,
    group_key text NOT NULL,
    state text NOT NULL DEFAULT 'pending',
    attempts bigint NOT NULL DEFAULT 0,
    next_attempt double precision NOT NULL,
    created double precision NOT NULL,
    last_error text,
    lease_owner text,
    lease_until double precision
);
-- Partial: only pending rows are ever searched by queue order or group, and
-- the done ones (most of the table) then cost the indexes nothing.
CREATE INDEX relay_deliveries_queue ON relay_deliveries (destination, id) WHERE state = 'pending';
CREATE INDEX relay_deliveries_group ON relay_deliveries (destination, group_key, id) WHERE state = 'pending';
CREATE INDEX relay_deliveries_notification ON relay_deliveries (notification);
CREATE INDEX relay_deliveries_state ON relay_deliveries (state, created);
CREATE TABLE relay_dedup (
    key text PRIMARY KEY,
    received double precision NOT NULL
);
";

/// Version 2: who leads the synthetic alerts' fallback (see
/// [`crate::relay::leader`]), one row.
const SCHEMA_V2: &str = "
CREATE TABLE relay_leader (
    id integer PRIMARY KEY,
    replica text NOT NULL,
    seen double precision NOT NULL
);
";

/// Version 3: what the replicas' destinations share: each rate-limited
/// destination's budget (see the module's docs) and Slack's threads.
///
/// `relay_rate_take(destination, spacing, tolerance)` takes a token of the
/// generic cell rate algorithm: one send per `spacing` seconds, `tolerance`
/// (spacing × (burst − 1)) seconds ahead of that allowed, so `burst` at
/// once after a quiet spell. It answers 0 for go (and moves `tat` on by
/// one spacing), else the seconds until a token is due or the pause ends.
/// The row is locked before `clock_timestamp()` is read.
const SCHEMA_V3: &str = "
CREATE TABLE relay_rate (
    destination text PRIMARY KEY,
    tat timestamptz NOT NULL DEFAULT '-infinity',
    paused_until timestamptz
);
CREATE TABLE relay_threads (
    destination text NOT NULL,
    group_key text NOT NULL,
    channel text NOT NULL,
    ts text NOT NULL,
    PRIMARY KEY (destination, group_key)
);
CREATE FUNCTION relay_rate_take(dest text, spacing double precision, tolerance double precision)
RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    r relay_rate%ROWTYPE;
    t timestamptz;
    due timestamptz;
BEGIN
    SELECT * INTO r FROM relay_rate WHERE destination = dest FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO relay_rate (destination) VALUES (dest) ON CONFLICT (destination) DO NOTHING;
        SELECT * INTO r FROM relay_rate WHERE destination = dest FOR UPDATE;
    END IF;
    t := clock_timestamp();
    IF r.paused_until > t THEN
        RETURN extract(epoch FROM r.paused_until - t)::double precision;
    END IF;
    due := greatest(r.tat, t) - make_interval(secs => tolerance);
    IF due > t THEN
        RETURN extract(epoch FROM due - t)::double precision;
    END IF;
    UPDATE relay_rate SET tat = greatest(r.tat, t) + make_interval(secs => spacing) WHERE destination = dest;
    RETURN 0;
END
$$;
";

/// The server's clock, in Unix seconds (for leases).
const SERVER_NOW: &str = "extract(epoch from clock_timestamp())::double precision";

/// A webhook waiting for its batch.
struct Job {
    n: NewNotification,
    reply: oneshot::Sender<Result<Accepted, OutboxError>>,
}

/// The PostgreSQL store.
pub struct Postgres {
    inner: Arc<Inner>,
    tx: mpsc::Sender<Job>,
}

/// What the writers and the lease keeper share with the store.
struct Inner {
    pool: Pool,
    /// The URL, redacted: how errors name the store.
    shown: String,
    /// This process's claims are leased in this name: the replica's name
    /// and a random suffix, so a restarted replica does not mistake the
    /// claims of its previous life for its own.
    owner: String,
    lease: Duration,
    window: Duration,
    /// Claimed and not yet marked: the lease keeper renews these.
    held: Mutex<HashSet<i64>>,
}

impl Inner {
    fn err(&self, message: impl std::fmt::Display) -> OutboxError {
        OutboxError::Postgres {
            store: self.shown.clone(),
            message: crate::config::secret::redact_urls_in(&message.to_string()),
        }
    }

    fn pg(&self, e: tokio_postgres::Error) -> OutboxError {
        self.err(describe(&e))
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, OutboxError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => self.pg(e),
            other => self.err(format!("no connection: {other}")),
        })
    }
}

/// Clears a claim as its outcome is recorded.
const CLEAR: &str = "lease_owner = NULL, lease_until = NULL";

/// A digest's originals (`$1`) marked digested with the note `$3`. They
/// were never claimed (a digest claims nothing): any pending one is marked
/// unless another replica (`$2` is this one) holds a live lease on it, since
/// that one is sending it alone.
const MARK_DIGESTED: &str =
    "UPDATE relay_deliveries SET state = 'digested', attempts = attempts + 1, last_error = $3, lease_owner = NULL, lease_until = NULL
     WHERE id = ANY($1) AND state = 'pending'
       AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < extract(epoch from clock_timestamp())::double precision)";

/// A delivery from a row of (id, attempts, created, payload, group_key).
fn pending(r: &tokio_postgres::Row) -> Pending {
    Pending {
        id: r.get(0),
        attempts: r.get(1),
        created: r.get(2),
        payload: r.get(3),
        group_key: r.get(4),
    }
}

/// Records `op` on `c` (a pooled connection or a transaction); returns the
/// rows changed: 0 when this replica no longer holds the delivery's lease
/// (the new owner records it).
async fn mark_one<C: GenericClient>(c: &C, owner: &str, op: &Mark) -> Result<u64, tokio_postgres::Error> {
    match op {
        Mark::Done(id) => {
            c.execute(
                &format!("UPDATE relay_deliveries SET state = 'done', attempts = attempts + 1, last_error = NULL, {CLEAR} WHERE id = $1 AND lease_owner = $2"),
                &[id, &owner],
            )
            .await
        }
        Mark::Retry(id, next, err) => {
            c.execute(
                &format!("UPDATE relay_deliveries SET attempts = attempts + 1, next_attempt = $3, last_error = $4, {CLEAR} WHERE id = $1 AND lease_owner = $2"),
                &[id, &owner, next, err],
            )
            .await
        }
        Mark::Dead(id, reason) => {
            c.execute(
                &format!("UPDATE relay_deliveries SET state = 'dead', attempts = attempts + 1, last_error = $3, {CLEAR} WHERE id = $1 AND lease_owner = $2"),
                &[id, &owner, reason],
            )
            .await
        }
        Mark::Superseded(id, by) => {
            c.execute(
                &format!("UPDATE relay_deliveries SET state = 'superseded', last_error = $3, {CLEAR} WHERE id = $1 AND lease_owner = $2 AND state = 'pending'"),
                &[id, &owner, &format!("superseded by delivery {by} of its group")],
            )
            .await
        }
        Mark::Digested(id, note) => c.execute(MARK_DIGESTED, &[&vec![*id], &owner, note]).await,
    }
}

impl Inner {
    /// After an outcome was recorded (`n` rows changed): the claim is no
    /// longer renewed, and a lost lease is counted.
    fn recorded(&self, op: &Mark, n: u64) {
        let id = match op {
            Mark::Done(id) | Mark::Retry(id, ..) | Mark::Dead(id, _) | Mark::Superseded(id, _) | Mark::Digested(id, _) => *id,
        };
        self.held.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        if n > 0 {
            return;
        }
        if let Mark::Digested(..) = op {
            tracing::debug!(store = %self.shown, id, "A digested notification was held by another replica or no longer pending");
        } else {
            // Taken over after the lease ran out: the new owner records it.
            metrics::counter!("lookout_relay_lease_lost_total").increment(1);
            tracing::warn!(store = %self.shown, id, "A delivery's lease ran out before its outcome was recorded; another replica owns it now");
        }
    }
}

/// The driver's error in words, URLs redacted. Its Display says only
/// "db error" or what failed: the server's words are in the DbError, and
/// the cause (a refused connection, a type mismatch) in its source.
pub fn describe(e: &tokio_postgres::Error) -> String {
    let text = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                text = format!("{text}: {c}");
                cause = c.source();
            }
            text
        }
    };
    let text = match super::postgres_tls::hint(&text) {
        Some(hint) => format!("{text} — {hint}"),
        None => text,
    };
    crate::config::secret::redact_urls_in(&text)
}

impl Postgres {
    /// Connects, creates or migrates the schema, and starts the intake
    /// writers and the lease keeper.
    pub async fn open(cfg: &StoreConfig, dedup_window: Duration) -> Result<Postgres, OutboxError> {
        let shown = redact_url(cfg.url.expose());
        let bad = |message: String| OutboxError::Postgres {
            store: shown.clone(),
            message,
        };
        let (mut pg, tls) = super::postgres_tls::connect_config(cfg).map_err(bad)?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(CONNECT_TIMEOUT);
        }
        if pg.get_application_name().is_none() {
            pg.application_name(format!("lookout {}", cfg.replica));
        }
        // Keepalives find a server that vanished without a word (a node
        // lost), so a pooled connection is not trusted for hours.
        pg.keepalives_idle(Duration::from_secs(10));
        let manager = Manager::from_config(
            pg,
            tls,
            ManagerConfig {
                // Verified: a connection broken while pooled (the server
                // restarted) is found out and replaced before it is used.
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(cfg.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let owner = format!("{}/{:08x}", cfg.replica, rand::random::<u32>());
        let inner = Arc::new(Inner {
            pool,
            shown: shown.clone(),
            owner,
            lease: cfg.lease,
            window: dedup_window,
            held: Mutex::new(HashSet::new()),
        });
        migrate(&inner).await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        // Two writers (see [`WRITERS`]), so one batch fills while the other
        // commits; fewer than the pool, so the workers' claims always find
        // a connection.
        for _ in 0..(cfg.pool_size / 2).clamp(1, WRITERS) {
            tokio::spawn(writer(Arc::downgrade(&inner), rx.clone()));
        }
        tokio::spawn(keeper(Arc::downgrade(&inner)));
        Ok(Postgres { inner, tx })
    }

    /// The name this process's claims are leased in.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// The connection pool (the fallback leader's lock takes its own
    /// connection from it).
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }
}

/// Creates the schema or steps it up to [`SCHEMA_VERSION`], under an
/// advisory lock held for the transaction; refuses a newer one.
async fn migrate(inner: &Inner) -> Result<(), OutboxError> {
    let mut c = inner.client().await?;
    let tx = c.transaction().await.map_err(|e| inner.pg(e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await
        .map_err(|e| inner.pg(e))?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS lookout_schema (component text PRIMARY KEY, version integer NOT NULL)")
        .await
        .map_err(|e| inner.pg(e))?;
    let found: i32 = tx
        .query_opt("SELECT version FROM lookout_schema WHERE component = $1", &[&COMPONENT])
        .await
        .map_err(|e| inner.pg(e))?
        .map(|r| r.get(0))
        .unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(inner.err(format!(
            "written by a newer lookout (schema {found}; this one knows up to {SCHEMA_VERSION}); upgrade this replica"
        )));
    }
    if found < 1 {
        tx.batch_execute(SCHEMA_V1).await.map_err(|e| inner.pg(e))?;
    }
    if found < 2 {
        tx.batch_execute(SCHEMA_V2).await.map_err(|e| inner.pg(e))?;
    }
    if found < 3 {
        tx.batch_execute(SCHEMA_V3).await.map_err(|e| inner.pg(e))?;
    }
    tx.execute(
        "INSERT INTO lookout_schema (component, version) VALUES ($1, $2) ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version",
        &[&COMPONENT, &SCHEMA_VERSION],
    )
    .await
    .map_err(|e| inner.pg(e))?;
    tx.commit().await.map_err(|e| inner.pg(e))
}

/// One intake writer: takes what is queued, commits it in one transaction,
/// answers each webhook. Ends when the store is dropped.
async fn writer(inner: Weak<Inner>, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>) {
    let mut last = 1;
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut batch = vec![first];
            let drain = |rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>| {
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(j) => batch.push(j),
                        Err(_) => break,
                    }
                }
            };
            drain(&mut rx, &mut batch);
            // Held while gathering: the other writer is committing.
            if last >= GATHER_FROM {
                let until = tokio::time::Instant::now() + GATHER;
                while batch.len() < last.min(MAX_BATCH) {
                    match tokio::time::timeout_at(until, rx.recv()).await {
                        Ok(Some(j)) => {
                            batch.push(j);
                            drain(&mut rx, &mut batch);
                        }
                        // The wait is over, or the store is closing: commit what is here.
                        _ => break,
                    }
                }
            }
            batch
        };
        last = batch.len();
        let Some(inner) = inner.upgrade() else { return };
        let result = match tokio::time::timeout(BATCH_TIMEOUT, store_batch(&inner, &batch)).await {
            Ok(r) => r,
            Err(_) => Err(inner.err(format!("no commit within {BATCH_TIMEOUT:?}"))),
        };
        match result {
            Ok(outcomes) => {
                for (j, o) in batch.into_iter().zip(outcomes) {
                    let _ = j.reply.send(Ok(o));
                }
            }
            Err(e) => {
                metrics::counter!("lookout_relay_store_errors_total").increment(1);
                tracing::error!(store = %inner.shown, error = %e, "Cannot write the relay store; answering 503 so Alertmanager retries");
                let message = e.to_string();
                for j in batch {
                    let _ = j.reply.send(Err(OutboxError::Write { message: message.clone() }));
                }
            }
        }
    }
}

/// Commits a batch in one statement (so one round trip and one
/// transaction): the de-duplication keys first, sorted, then the
/// notifications whose keys were new, then their deliveries. Returns each
/// webhook's outcome.
async fn store_batch(inner: &Inner, batch: &[Job]) -> Result<Vec<Accepted>, OutboxError> {
    let t = crate::probe::unix_now();
    let mut out = vec![Accepted::Duplicate; batch.len()];
    // A copy within the same batch is a duplicate of the first.
    let mut first = std::collections::HashMap::new();
    for (i, j) in batch.iter().enumerate() {
        first.entry(j.n.dedup.as_str()).or_insert(i);
    }
    let mut order: Vec<usize> = first.values().copied().collect();
    order.sort_unstable_by_key(|&i| &batch[i].n.dedup);
    let (mut keys, mut groups, mut payloads) = (Vec::new(), Vec::new(), Vec::new());
    let (mut d_key, mut d_dest) = (Vec::new(), Vec::new());
    for &i in &order {
        let n = &batch[i].n;
        keys.push(n.dedup.as_str());
        groups.push(n.group_key.as_str());
        payloads.push(n.payload.as_str());
        for d in &n.destinations {
            d_key.push(n.dedup.as_str());
            d_dest.push(d.as_str());
        }
    }
    let c = inner.client().await?;
    let stmt = c.prepare_cached(INSERT_BATCH).await.map_err(|e| inner.pg(e))?;
    let fresh: HashSet<String> = c
        .query(
            &stmt,
            &[&keys, &groups, &payloads, &d_key, &d_dest, &t, &(t - inner.window.as_secs_f64())],
        )
        .await
        .map_err(|e| inner.pg(e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for &i in &order {
        if fresh.contains(&batch[i].n.dedup) {
            out[i] = Accepted::Stored;
        }
    }
    Ok(out)
}

/// A batch of webhooks as one statement: `$1` their de-duplication keys
/// (unique, sorted, so that two batches sharing keys lock them in the same
/// order and never deadlock), `$2` and `$3` their group keys and payloads
/// in the same order, `$4`/`$5` one (key, destination) pair per delivery,
/// `$6` now, `$7` the start of the window. A key seen within the window
/// stays as it is and its notification is not stored; one older than the
/// window is refreshed, and stored again. Returns the keys stored.
const INSERT_BATCH: &str = "
WITH fresh AS (
    INSERT INTO relay_dedup (key, received)
    SELECT k, $6::double precision FROM unnest($1::text[]) WITH ORDINALITY AS u(k, o) ORDER BY o
    ON CONFLICT (key) DO UPDATE SET received = EXCLUDED.received WHERE relay_dedup.received <= $7::double precision
    RETURNING key
), notes AS (
    INSERT INTO relay_notifications (received, group_key, dedup, payload)
    SELECT $6::double precision, g, k, p
    FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS u(k, g, p, o)
    WHERE k IN (SELECT key FROM fresh)
    ORDER BY o
    RETURNING id, dedup, group_key
), deliveries AS (
    INSERT INTO relay_deliveries (notification, destination, group_key, next_attempt, created)
    SELECT n.id, x.d, n.group_key, $6::double precision, $6::double precision
    FROM unnest($4::text[], $5::text[]) WITH ORDINALITY AS x(k, d, o) JOIN notes n ON n.dedup = x.k
    ORDER BY n.id, x.o
)
SELECT key FROM fresh";

/// Renews the leases of this process's claims every third of a lease, so
/// a send that takes long is not taken over while it is under way. Ends
/// when the store is dropped; a failed renewal is logged and the next one
/// tries again (if none succeeds within the lease, another replica may
/// send the same notification: a duplicate, never a loss).
async fn keeper(inner: Weak<Inner>) {
    let period = match inner.upgrade() {
        Some(i) => i.lease / 3,
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let ids: Vec<i64> = inner.held.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect();
        if ids.is_empty() {
            continue;
        }
        let renewed = async {
            inner
                .client()
                .await?
                .execute(
                    &format!("UPDATE relay_deliveries SET lease_until = {SERVER_NOW} + $3 WHERE id = ANY($1) AND lease_owner = $2 AND state = 'pending'"),
                    &[&ids, &inner.owner, &inner.lease.as_secs_f64()],
                )
                .await
                .map_err(|e| inner.pg(e))
        };
        if let Err(e) = renewed.await {
            tracing::warn!(store = %inner.shown, claims = ids.len(), error = %e, "Cannot renew the leases of this replica's claims");
        }
    }
}

#[async_trait::async_trait]
impl RelayStore for Postgres {
    fn describe(&self) -> String {
        format!("PostgreSQL {}", self.inner.shown)
    }

    async fn ingest(&self, n: NewNotification) -> Result<Accepted, OutboxError> {
        let (reply, rx) = oneshot::channel();
        self.tx.try_send(Job { n, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => OutboxError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => OutboxError::Stopped,
        })?;
        rx.await.map_err(|_| OutboxError::Stopped)?
    }

    async fn next_due(&self, destination: &str, limit: usize) -> Result<Vec<Pending>, OutboxError> {
        let i = &self.inner;
        let c = i.client().await?;
        let rows = c
            .query(
                &format!(
                    "WITH due AS (
                        SELECT d.id FROM relay_deliveries d
                        WHERE d.destination = $1 AND d.state = 'pending' AND d.next_attempt <= $2
                          AND (d.lease_until IS NULL OR d.lease_until < {SERVER_NOW})
                          AND NOT EXISTS (SELECT 1 FROM relay_deliveries e
                                          WHERE e.destination = d.destination AND e.group_key = d.group_key
                                            AND e.state = 'pending' AND e.id < d.id)
                        ORDER BY d.id LIMIT $3
                        FOR UPDATE OF d SKIP LOCKED)
                     UPDATE relay_deliveries d SET lease_owner = $4, lease_until = {SERVER_NOW} + $5
                     FROM due, relay_notifications n
                     WHERE d.id = due.id AND n.id = d.notification
                     RETURNING d.id, d.attempts, d.created, n.payload, d.group_key"
                ),
                &[
                    &destination,
                    &crate::probe::unix_now(),
                    &(limit as i64),
                    &i.owner,
                    &i.lease.as_secs_f64(),
                ],
            )
            .await
            .map_err(|e| i.pg(e))?;
        let mut due: Vec<Pending> = rows.iter().map(pending).collect();
        // RETURNING comes in no particular order.
        due.sort_by_key(|p| p.id);
        i.held.lock().unwrap_or_else(|p| p.into_inner()).extend(due.iter().map(|p| p.id));
        Ok(due)
    }

    async fn next_wakeup(&self, destination: &str) -> Result<Option<f64>, OutboxError> {
        // Only the head of each group counts, and not before its lease ends:
        // a delivery held by another replica is not due here.
        let i = &self.inner;
        let c = i.client().await?;
        let row = c
            .query_one(
                "SELECT MIN(GREATEST(d.next_attempt, COALESCE(d.lease_until, 0))) FROM relay_deliveries d
                 WHERE d.destination = $1 AND d.state = 'pending'
                   AND NOT EXISTS (SELECT 1 FROM relay_deliveries e
                                   WHERE e.destination = d.destination AND e.group_key = d.group_key
                                     AND e.state = 'pending' AND e.id < d.id)",
                &[&destination],
            )
            .await
            .map_err(|e| i.pg(e))?;
        Ok(row.get(0))
    }

    async fn mark(&self, op: Mark) -> Result<(), OutboxError> {
        let i = &self.inner;
        let c = i.client().await?;
        let n = mark_one(&c, &i.owner, &op).await.map_err(|e| i.pg(e))?;
        i.recorded(&op, n);
        Ok(())
    }

    async fn mark_all(&self, ops: Vec<Mark>) -> Result<(), OutboxError> {
        let i = &self.inner;
        let mut c = i.client().await?;
        let tx = c.transaction().await.map_err(|e| i.pg(e))?;
        // A digest's originals share one note: one statement for them all.
        let mut digested: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        let mut counts = Vec::new();
        for op in &ops {
            match op {
                Mark::Digested(id, note) => digested.entry(note.as_str()).or_default().push(*id),
                other => counts.push((other, mark_one(&tx, &i.owner, other).await.map_err(|e| i.pg(e))?)),
            }
        }
        for (note, ids) in &mut digested {
            // Sorted: two replicas marking the same rows lock them in the same order.
            ids.sort_unstable();
            let n = tx.execute(MARK_DIGESTED, &[ids, &i.owner, note]).await.map_err(|e| i.pg(e))?;
            if (n as usize) < ids.len() {
                tracing::debug!(store = %i.shown, marked = n, digested = ids.len(), "Some of a digest's notifications were held by another replica or no longer pending");
            }
        }
        tx.commit().await.map_err(|e| i.pg(e))?;
        {
            let mut held = i.held.lock().unwrap_or_else(|p| p.into_inner());
            for ids in digested.values() {
                for id in ids {
                    held.remove(id);
                }
            }
        }
        for (op, n) in counts {
            i.recorded(op, n);
        }
        Ok(())
    }

    async fn newer_in_group(&self, destination: &str, group: &str, than: i64) -> Result<Option<i64>, OutboxError> {
        let i = &self.inner;
        let row = i
            .client()
            .await?
            .query_one(
                "SELECT MAX(id) FROM relay_deliveries WHERE destination = $1 AND group_key = $2 AND state = 'pending' AND id > $3",
                &[&destination, &group, &than],
            )
            .await
            .map_err(|e| i.pg(e))?;
        Ok(row.get(0))
    }

    async fn queued(&self, destination: &str, limit: usize, max_bytes: usize) -> Result<Vec<Pending>, OutboxError> {
        let i = &self.inner;
        let rows = i
            .client()
            .await?
            .query(
                &format!(
                    "SELECT id, attempts, created, payload, group_key FROM (
                        SELECT q.*, row_number() OVER (ORDER BY q.id) AS nth,
                               sum(octet_length(q.payload)) OVER (ORDER BY q.id) AS upto
                        FROM (
                            SELECT d.id, d.attempts, d.created, n.payload, d.group_key
                            FROM relay_deliveries d JOIN relay_notifications n ON n.id = d.notification
                            WHERE d.destination = $1 AND d.state = 'pending'
                              AND NOT EXISTS (SELECT 1 FROM relay_deliveries e
                                              WHERE e.destination = d.destination AND e.group_key = d.group_key
                                                AND e.state = 'pending' AND e.lease_owner <> $4
                                                AND e.lease_until >= {SERVER_NOW})
                            ORDER BY d.id LIMIT $2) q) r
                     WHERE nth = 1 OR upto <= $3
                     ORDER BY id"
                ),
                &[
                    &destination,
                    &(limit as i64),
                    &i64::try_from(max_bytes).unwrap_or(i64::MAX),
                    &i.owner,
                ],
            )
            .await
            .map_err(|e| i.pg(e))?;
        Ok(rows.iter().map(pending).collect())
    }

    async fn dead_letter_unconfigured(&self, configured: &[String]) -> Result<Vec<(String, i64)>, OutboxError> {
        let i = &self.inner;
        let rows = i
            .client()
            .await?
            .query(
                &format!(
                    "UPDATE relay_deliveries
                     SET state = 'dead', last_error = 'destination `' || destination || '` is no longer configured',
                         lease_owner = NULL, lease_until = NULL
                     WHERE state = 'pending' AND destination <> ALL($1::text[])
                       AND (lease_until IS NULL OR lease_until < {SERVER_NOW} OR lease_owner = $2)
                     RETURNING id, destination"
                ),
                &[&configured, &i.owner],
            )
            .await
            .map_err(|e| i.pg(e))?;
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        let mut held = i.held.lock().unwrap_or_else(|p| p.into_inner());
        for r in &rows {
            held.remove(&r.get::<_, i64>(0));
            *counts.entry(r.get(1)).or_default() += 1;
        }
        Ok(counts.into_iter().collect())
    }

    async fn queue(&self) -> Result<Vec<(String, i64, Option<f64>)>, OutboxError> {
        let i = &self.inner;
        let rows = i
            .client()
            .await?
            .query(
                "SELECT destination, COUNT(*), MIN(created) FROM relay_deliveries WHERE state = 'pending' GROUP BY destination",
                &[],
            )
            .await
            .map_err(|e| i.pg(e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }

    async fn dlq(&self) -> Result<Vec<Dead>, OutboxError> {
        let i = &self.inner;
        let rows = i
            .client()
            .await?
            .query(
                "SELECT id, destination, group_key, attempts, created, COALESCE(last_error, '') FROM relay_deliveries WHERE state = 'dead' ORDER BY id",
                &[],
            )
            .await
            .map_err(|e| i.pg(e))?;
        Ok(rows
            .iter()
            .map(|r| Dead {
                id: r.get(0),
                destination: r.get(1),
                group_key: r.get(2),
                attempts: r.get(3),
                created: r.get(4),
                reason: r.get(5),
            })
            .collect())
    }

    async fn dlq_retry(&self, ids: &[i64]) -> Result<usize, OutboxError> {
        self.dlq_update(
            ids,
            "UPDATE relay_deliveries SET state = 'pending', next_attempt = $2::double precision, created = $2::double precision, attempts = 0, lease_owner = NULL, lease_until = NULL WHERE state = 'dead'",
        )
        .await
    }

    async fn dlq_drop(&self, ids: &[i64]) -> Result<usize, OutboxError> {
        // `$2` (now) is not needed here, but bound all the same: one helper.
        self.dlq_update(
            ids,
            "UPDATE relay_deliveries SET state = 'dropped' WHERE state = 'dead' AND $2::double precision IS NOT NULL",
        )
        .await
    }

    async fn release(&self, ids: &[i64]) -> Result<(), OutboxError> {
        let i = &self.inner;
        i.client()
            .await?
            .execute(
                "UPDATE relay_deliveries SET lease_owner = NULL, lease_until = NULL WHERE id = ANY($1) AND lease_owner = $2 AND state = 'pending'",
                &[&ids, &i.owner],
            )
            .await
            .map_err(|e| i.pg(e))?;
        let mut held = i.held.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            held.remove(id);
        }
        Ok(())
    }

    fn budget(&self, destination: &str, min_interval: Duration, burst: u32) -> Arc<dyn RateBudget> {
        if crate::relay::retry::limiter(min_interval, burst).is_none() {
            // Unlimited: nothing to share, and no round trip per send.
            return Arc::new(crate::relay::budget::Local::new(min_interval, burst));
        }
        Arc::new(SharedBudget {
            inner: self.inner.clone(),
            destination: destination.to_string(),
            spacing: min_interval.as_secs_f64(),
            tolerance: min_interval.as_secs_f64() * f64::from(burst.max(1) - 1),
            pause: Pause::default(),
        })
    }

    fn threads(&self) -> Arc<dyn ThreadStore> {
        Arc::new(Threads(self.inner.clone()))
    }

    async fn prune(&self, age: Duration) -> Result<usize, OutboxError> {
        let i = &self.inner;
        let now = crate::probe::unix_now();
        let cutoff = now - age.as_secs_f64();
        let mut c = i.client().await?;
        let tx = c.transaction().await.map_err(|e| i.pg(e))?;
        tx.execute(
            "DELETE FROM relay_deliveries WHERE state IN ('done', 'dropped', 'superseded', 'digested') AND created < $1",
            &[&cutoff],
        )
        .await
        .map_err(|e| i.pg(e))?;
        let n = tx
            .execute(
                "DELETE FROM relay_notifications n WHERE received < $1 AND NOT EXISTS (SELECT 1 FROM relay_deliveries d WHERE d.notification = n.id)",
                &[&cutoff],
            )
            .await
            .map_err(|e| i.pg(e))?;
        // Threads of groups with no delivery left (RelayStore::prune).
        tx.execute(
            "DELETE FROM relay_threads t WHERE NOT EXISTS
               (SELECT 1 FROM relay_deliveries d WHERE d.destination = t.destination AND d.group_key = t.group_key)",
            &[],
        )
        .await
        .map_err(|e| i.pg(e))?;
        // Identities past the window de-duplicate nothing any more.
        tx.execute("DELETE FROM relay_dedup WHERE received < $1", &[&(now - i.window.as_secs_f64())])
            .await
            .map_err(|e| i.pg(e))?;
        tx.commit().await.map_err(|e| i.pg(e))?;
        Ok(n as usize)
    }
}

impl Postgres {
    /// Runs a dead-letter update (`$2` is now) on `ids`, or on every dead
    /// delivery when `ids` is empty.
    async fn dlq_update(&self, ids: &[i64], sql: &str) -> Result<usize, OutboxError> {
        let i = &self.inner;
        let now = crate::probe::unix_now();
        let c = i.client().await?;
        let n = c
            .execute(&format!("{sql} AND (cardinality($1::bigint[]) = 0 OR id = ANY($1))"), &[&ids, &now])
            .await
            .map_err(|e| i.pg(e))?;
        Ok(n as usize)
    }
}

/// A rate-limited destination's budget, shared by every replica: its row
/// of `relay_rate`.
struct SharedBudget {
    inner: Arc<Inner>,
    destination: String,
    /// Seconds between sends.
    spacing: f64,
    /// How far ahead of the spacing a burst may go, in seconds.
    tolerance: f64,
    /// A pause this replica was told of, known without asking: no round
    /// trip while it lasts, and it holds even if recording it failed.
    pause: Pause,
}

#[async_trait::async_trait]
impl RateBudget for SharedBudget {
    async fn take(&self) -> Result<Take, OutboxError> {
        if let Some(d) = self.pause.remaining() {
            return Ok(Take::Wait(d));
        }
        let i = &self.inner;
        let c = i.client().await?;
        let stmt = c.prepare_cached("SELECT relay_rate_take($1, $2, $3)").await.map_err(|e| i.pg(e))?;
        let wait: f64 = c
            .query_one(&stmt, &[&self.destination, &self.spacing, &self.tolerance])
            .await
            .map_err(|e| i.pg(e))?
            .get(0);
        Ok(if wait > 0.0 {
            Take::Wait(Duration::try_from_secs_f64(wait).unwrap_or(Duration::from_secs(3600)))
        } else {
            Take::Go
        })
    }

    async fn pause(&self, d: Duration) -> Result<(), OutboxError> {
        self.pause.extend(d);
        let i = &self.inner;
        i.client()
            .await?
            .execute(
                "INSERT INTO relay_rate AS r (destination, paused_until) VALUES ($1, clock_timestamp() + make_interval(secs => $2))
                 ON CONFLICT (destination) DO UPDATE SET paused_until = greatest(r.paused_until, EXCLUDED.paused_until)",
                &[&self.destination, &d.as_secs_f64()],
            )
            .await
            .map_err(|e| i.pg(e))?;
        Ok(())
    }

    async fn give_back(&self) -> Result<(), OutboxError> {
        // Moving `tat` back one spacing undoes exactly one grant, whoever
        // took tokens since.
        let i = &self.inner;
        i.client()
            .await?
            .execute(
                "UPDATE relay_rate SET tat = tat - make_interval(secs => $2) WHERE destination = $1",
                &[&self.destination, &self.spacing],
            )
            .await
            .map_err(|e| i.pg(e))?;
        Ok(())
    }
}

/// Slack's threads in `relay_threads`, for every replica.
struct Threads(Arc<Inner>);

#[async_trait::async_trait]
impl ThreadStore for Threads {
    async fn get(&self, destination: &str, group: &str) -> Result<Option<(String, String)>, OutboxError> {
        let i = &self.0;
        let row = i
            .client()
            .await?
            .query_opt(
                "SELECT channel, ts FROM relay_threads WHERE destination = $1 AND group_key = $2",
                &[&destination, &group],
            )
            .await
            .map_err(|e| i.pg(e))?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    async fn set(&self, destination: &str, group: &str, channel: &str, ts: &str) -> Result<(), OutboxError> {
        let i = &self.0;
        i.client()
            .await?
            .execute(
                "INSERT INTO relay_threads (destination, group_key, channel, ts) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (destination, group_key) DO UPDATE SET channel = EXCLUDED.channel, ts = EXCLUDED.ts",
                &[&destination, &group, &channel, &ts],
            )
            .await
            .map_err(|e| i.pg(e))?;
        Ok(())
    }

    async fn clear(&self, destination: &str, group: &str) -> Result<(), OutboxError> {
        let i = &self.0;
        i.client()
            .await?
            .execute(
                "DELETE FROM relay_threads WHERE destination = $1 AND group_key = $2",
                &[&destination, &group],
            )
            .await
            .map_err(|e| i.pg(e))?;
        Ok(())
    }
}
