//! The outbox: every accepted notification, durably, until each of its
//! destinations has it.
//!
//! SQLite in WAL mode with `synchronous = FULL`, so a commit is on disk
//! (fsync'd) before the webhook is answered 200. Concurrent requests are
//! batched by one writer thread into a single transaction — one fsync for
//! many notifications — which is what makes durable ingest fast. Deliveries
//! are rows: `pending` until sent, then `done`, `digested` (delivered inside
//! a digest), `superseded` (a newer notification of its group went instead),
//! or `dead` (the dead-letter list) with the reason. After a crash, whatever is still `pending` is sent.
//!
//! De-duplication (the same payload from two Alertmanager replicas) is
//! checked against identities the writer keeps in memory, reloaded from the
//! table at start. An index on the keys would be simpler, but they are
//! SHA-256 digests: every insert lands on a random page of the index, so each
//! commit wrote pages all over the file. Measured with `bench/relay.sh`:
//! 20.5k notifications/s with that index, 36.7k/s without.
//!
//! A group's order is kept the same way. A delivery waits while an older one
//! of its group is pending for the same destination, which needs an index by
//! group; but group keys are as random as digests, and in a storm of new
//! groups every insert again landed on a random page. Only deliveries of
//! groups with more than one pending are `grouped` and indexed: the writer
//! knows the *leads* (the one pending delivery of an otherwise idle group)
//! from memory, rebuilt from the table at start, and marks a lead grouped
//! when a second delivery of its group comes in (see [`Leads`]).
//!
//! Every method that reads or writes through the shared connection blocks
//! on SQLite: async code calls them on the blocking pool (the worker's
//! `blocking`). `ingest` and `mark` go through the writer thread and are
//! async. Failures are [`OutboxError`]s that say which file and why.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use tokio::sync::oneshot;

/// Name of the outbox file inside `data_dir`.
pub const OUTBOX_FILE: &str = "outbox.db";

/// The outbox file's layout, in `PRAGMA user_version`. Files written
/// before it was kept read 0 and have the same tables; a file from a newer
/// lookout is refused rather than written in a layout this one does not know.
/// 2: the queue's indexes hold pending deliveries only.
/// 3: only deliveries of groups with more than one pending are in the group
/// index (`grouped`), only deliveries waiting for a retry in the index by time.
pub const SCHEMA_VERSION: i64 = 3;

/// Most requests committed in one transaction.
const MAX_BATCH: usize = 512;

/// Most notification identities remembered for de-duplication. Replicas'
/// copies arrive within seconds of each other; under a flood of unique
/// notifications beyond this, the oldest are forgotten first, which keeps
/// memory bounded (about 60 bytes each).
const MAX_RECENT: usize = 200_000;

/// Most leads remembered (see [`Leads`]): about 9 MB of table at most,
/// whatever the backlog. A delivery queued while this many groups are led
/// is grouped instead, indexed as in layout 2: slower to write, as correct.
const MAX_LEADS: usize = 400_000;

/// Why the outbox could not do something.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// `data_dir` could not be created.
    #[error("cannot create {}: {source}", dir.display())]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// SQLite refused (a damaged, locked or unwritable file, a full disk).
    #[error("outbox {}: {source}", path.display())]
    Sqlite {
        /// The outbox file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// A batch's transaction failed: every request in it gets this (one
    /// SQLite error, which cannot be cloned, so its text).
    #[error("cannot store the notification: {message}")]
    Write {
        /// What SQLite said.
        message: String,
    },
    /// The writer thread could not be started.
    #[error("cannot start the outbox writer: {0}")]
    Thread(#[source] std::io::Error),
    /// The writer's queue is full: the disk cannot keep up (503, retry later).
    #[error("outbox writer is overloaded")]
    Overloaded,
    /// The writer thread is gone.
    #[error("outbox writer stopped")]
    Stopped,
    /// A call on the blocking pool panicked or was cancelled.
    #[error("outbox task did not complete: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The file was written by a newer lookout.
    #[error("outbox {}: written by a newer lookout (layout {found}; this one knows up to {supported}); upgrade lookout or move the file away", path.display())]
    Newer {
        /// The outbox file.
        path: PathBuf,
        /// The layout found.
        found: i64,
        /// The newest layout this build knows.
        supported: i64,
    },
    /// The PostgreSQL store failed (down, unreachable, refused): with the
    /// store named by its redacted URL, and URLs in the driver's words
    /// redacted too.
    #[error("relay store {store}: {message}")]
    Postgres {
        /// The store's URL, redacted.
        store: String,
        /// What PostgreSQL or the pool said.
        message: String,
    },
}

/// What happened to an accepted notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Stored, with its deliveries queued.
    Stored,
    /// The same payload arrived within the de-duplication window: nothing queued.
    Duplicate,
}

/// A notification to store.
pub struct NewNotification {
    /// The body as received.
    pub payload: String,
    /// Its group key.
    pub group_key: String,
    /// De-duplication identity: hex digest (see [`crate::relay::payload::Payload::dedup_key`]).
    pub dedup: String,
    /// Destinations it goes to.
    pub destinations: Vec<String>,
}

/// Identities of the notifications stored within the de-duplication window,
/// oldest first. Only the writer thread touches it.
struct Recent {
    window: f64,
    order: VecDeque<(f64, u128)>,
    keys: HashSet<u128>,
}

impl Recent {
    fn new(window: Duration) -> Recent {
        Recent {
            window: window.as_secs_f64(),
            order: VecDeque::new(),
            keys: HashSet::new(),
        }
    }

    /// The first 128 bits of a hex digest: as good an identity as the whole
    /// digest for de-duplication, at a quarter of the memory.
    fn key(dedup: &str) -> u128 {
        dedup.get(..32).and_then(|h| u128::from_str_radix(h, 16).ok()).unwrap_or_else(|| {
            // Not a digest (never produced by this program): hash it instead.
            use sha2::Digest;
            let d = sha2::Sha256::digest(dedup.as_bytes());
            let mut b = [0u8; 16];
            b.copy_from_slice(&d[..16]);
            u128::from_be_bytes(b)
        })
    }

    /// Loads the identities still within the window from the table.
    fn load(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let cutoff = now() - self.window;
        let mut stmt = conn.prepare("SELECT received, dedup FROM notifications ORDER BY id DESC LIMIT ?1")?;
        let mut rows = stmt.query(params![MAX_RECENT as i64])?;
        let mut found = Vec::new();
        while let Some(r) = rows.next()? {
            let received: f64 = r.get(0)?;
            if received < cutoff {
                break;
            }
            found.push((received, Recent::key(&r.get::<_, String>(1)?)));
        }
        for (t, k) in found.into_iter().rev() {
            self.insert(t, k);
        }
        Ok(())
    }

    fn expire(&mut self, t: f64) {
        while let Some(&(at, k)) = self.order.front() {
            if at >= t - self.window && self.order.len() <= MAX_RECENT {
                break;
            }
            self.order.pop_front();
            self.keys.remove(&k);
        }
    }

    fn contains(&self, k: u128) -> bool {
        self.keys.contains(&k)
    }

    fn insert(&mut self, t: f64, k: u128) {
        if self.keys.insert(k) {
            self.order.push_back((t, k));
        }
    }
}

/// The leads: for each (destination, group) whose only pending delivery is
/// known to the writer, that delivery's id. Only the writer thread touches
/// it. A lead is not in the group index (`grouped = 0`); a second delivery
/// of its group makes it grouped, so that everything older than a waiting
/// delivery is in the index when it is looked for.
///
/// The safe direction, everywhere: a lead remembered after it left the queue
/// (dead-lettered by a reload from another connection, a hash shared by two
/// groups) only puts the next delivery of the group in the index when it did
/// not need to be. A pending lead forgotten would let a younger delivery of
/// its group go first, so nothing is forgotten until committed, and
/// deliveries queued again from the dead-letter list are always grouped.
struct Leads {
    by_group: HashMap<u64, i64>,
    hasher: std::hash::RandomState,
    /// At most this many leads.
    cap: usize,
}

/// A change to the leads within the batch being written, undone when the
/// batch is rolled back.
enum LeadChange {
    Added(u64),
    Removed(u64, i64),
}

impl Leads {
    fn new() -> Leads {
        Leads::with_cap(MAX_LEADS)
    }

    fn with_cap(cap: usize) -> Leads {
        Leads {
            by_group: HashMap::new(),
            hasher: std::hash::RandomState::new(),
            cap,
        }
    }

    fn full(&self) -> bool {
        self.by_group.len() >= self.cap
    }

    /// 64 bits for (destination, group): two groups sharing them are only
    /// indexed when they need not be.
    fn key(&self, destination: &str, group: &str) -> u64 {
        self.hasher.hash_one((destination, group))
    }

    /// Loads the pending leads from the table. Two found under one key
    /// (two groups sharing it) are both made grouped, and so is every lead
    /// beyond the cap: none may be pending ungrouped and unknown.
    fn load(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let mut stmt = conn.prepare(
            "SELECT id, destination, group_key FROM deliveries INDEXED BY deliveries_queued WHERE state = 'pending' AND grouped = 0",
        )?;
        let mut rows = stmt.query([])?;
        let (mut to_group, mut keys) = (Vec::new(), HashSet::new());
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let k = self.key(r.get_ref(1)?.as_str()?, r.get_ref(2)?.as_str()?);
            if self.full() && !self.by_group.contains_key(&k) {
                to_group.push(id);
                continue;
            }
            if let Some(other) = self.by_group.insert(k, id) {
                to_group.extend([other, id]);
                keys.insert(k);
            }
        }
        let mut group = conn.prepare("UPDATE deliveries SET grouped = 1 WHERE id = ?1")?;
        for id in to_group {
            group.execute(params![id])?;
        }
        for k in keys {
            self.by_group.remove(&k);
        }
        Ok(())
    }

    fn undo(&mut self, changes: Vec<LeadChange>) {
        for c in changes.into_iter().rev() {
            match c {
                LeadChange::Added(k) => {
                    self.by_group.remove(&k);
                }
                LeadChange::Removed(k, id) => {
                    self.by_group.insert(k, id);
                }
            }
        }
    }
}

/// What the writer thread does. Everything that writes the outbox in the
/// hot path goes through this one thread: SQLite has one writer at a time,
/// and a second connection waiting on the lock (busy handler sleeps of up to
/// 100 ms) would throttle deliveries to a trickle under ingest load.
enum WriterCmd {
    Ingest {
        n: NewNotification,
        reply: oneshot::Sender<Result<Accepted, OutboxError>>,
    },
    Mark {
        op: Mark,
        reply: oneshot::Sender<Result<(), OutboxError>>,
    },
}

/// A delivery's outcome.
#[derive(Debug, Clone)]
pub enum Mark {
    /// Delivered.
    Done(i64),
    /// Failed; retry at the given Unix time.
    Retry(i64, f64, String),
    /// Given up, with the reason.
    Dead(i64, String),
    /// Not sent: a newer notification of its group (the second id) is
    /// queued for the same destination and says all it would have.
    Superseded(i64, i64),
    /// Delivered inside a digest (described by the text) rather than alone.
    Digested(i64, String),
}

/// A delivery waiting for its destination.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Delivery id.
    pub id: i64,
    /// Attempts so far.
    pub attempts: i64,
    /// When the notification was received, Unix seconds.
    pub created: f64,
    /// The payload as received.
    pub payload: String,
    /// The group key.
    pub group_key: String,
}

/// A dead-lettered delivery.
#[derive(Debug, Clone, Serialize)]
pub struct Dead {
    /// Delivery id (for `dlq retry|drop`).
    pub id: i64,
    /// Destination.
    pub destination: String,
    /// Group key.
    pub group_key: String,
    /// Attempts made.
    pub attempts: i64,
    /// Received, Unix seconds.
    pub created: f64,
    /// Why it was given up.
    pub reason: String,
}

/// The outbox.
pub struct Outbox {
    tx: mpsc::SyncSender<WriterCmd>,
    conn: Mutex<Connection>,
    path: PathBuf,
}

fn open_conn(path: &Path, synchronous: &str) -> Result<Connection, OutboxError> {
    let err = |source| OutboxError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open(path).map_err(err)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
    // Judged before anything is created or dropped: a newer layout is left
    // exactly as it is.
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(err)?;
    if found > SCHEMA_VERSION {
        return Err(OutboxError::Newer {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
    conn.pragma_update(None, "synchronous", synchronous).map_err(err)?;
    // `deliveries.notification REFERENCES notifications` says what the
    // column is; the writer keeps it true by construction (a notification
    // and its deliveries in one transaction; a notification pruned only
    // once no delivery names it). Enforced (this SQLite build's default),
    // every delivery stored looked its notification up, and every
    // notification pruned scanned all of `deliveries`, which has no index
    // on the column: 17 s to prune 10,000 of 20,000, hours for a week of a
    // busy relay, with the write lock held and webhooks answered 503.
    conn.pragma_update(None, "foreign_keys", false).map_err(err)?;
    // One writer at a time upgrades the layout: the daemon and a command
    // opening the file at once do not both add the column.
    conn.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS notifications (
            id INTEGER PRIMARY KEY,
            received REAL NOT NULL,
            group_key TEXT NOT NULL,
            dedup TEXT NOT NULL,
            payload TEXT NOT NULL
        );
        -- Older versions indexed the de-duplication keys; see the module docs.
        DROP INDEX IF EXISTS notifications_dedup;
        CREATE TABLE IF NOT EXISTS deliveries (
            id INTEGER PRIMARY KEY,
            notification INTEGER NOT NULL REFERENCES notifications(id),
            destination TEXT NOT NULL,
            group_key TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt REAL NOT NULL,
            created REAL NOT NULL,
            last_error TEXT,
            grouped INTEGER NOT NULL DEFAULT 1
        );",
    )
    .map_err(err)?;
    // Layouts before 3 had no `grouped`: every delivery they queued is
    // grouped (the default), as safe as the group index they had.
    let has_grouped = conn
        .prepare("SELECT 1 FROM pragma_table_info('deliveries') WHERE name = 'grouped'")
        .and_then(|mut s| s.exists([]))
        .map_err(err)?;
    if !has_grouped {
        conn.execute_batch("ALTER TABLE deliveries ADD COLUMN grouped INTEGER NOT NULL DEFAULT 1")
            .map_err(err)?;
    }
    conn.execute_batch(
        "-- Layout 1 indexed every delivery, the state in each key: a delivery
        -- leaving the queue moved within all three indexes. Partial indexes
        -- hold the queue alone, so they stay as small as it and a delivery
        -- leaving it is only removed (bench/relay-delivery.sh).
        DROP INDEX IF EXISTS deliveries_pending;
        DROP INDEX IF EXISTS deliveries_queue;
        DROP INDEX IF EXISTS deliveries_group;
        -- When the next retry of a destination is due. A delivery never
        -- tried is due when queued: indexing those too (layout 2) wrote one
        -- more page per commit for nothing the worker asks.
        DROP INDEX IF EXISTS deliveries_due;
        CREATE INDEX IF NOT EXISTS deliveries_retrying ON deliveries(destination, next_attempt) WHERE state = 'pending' AND attempts > 0;
        -- In queue order: the worker walks this from the oldest, so taking the
        -- next delivery does not sort the whole queue.
        CREATE INDEX IF NOT EXISTS deliveries_queued ON deliveries(destination, id) WHERE state = 'pending';
        -- A group's queue: what goes before and after a delivery, for the
        -- groups with more than one pending (layout 2 indexed every group).
        DROP INDEX IF EXISTS deliveries_group_queued;
        CREATE INDEX IF NOT EXISTS deliveries_group_waiting ON deliveries(destination, group_key, id) WHERE state = 'pending' AND grouped = 1;",
    )
    .map_err(err)?;
    if found < SCHEMA_VERSION {
        conn.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(err)?;
    }
    conn.execute_batch("COMMIT").map_err(err)?;
    Ok(conn)
}

fn now() -> f64 {
    crate::probe::unix_now()
}

impl Outbox {
    /// Opens (creating) the outbox under `data_dir` and starts its writer.
    /// Identical payloads within `dedup_window` of each other are stored once.
    /// Blocks on the disk: call it from the blocking pool.
    pub fn open(data_dir: &Path, dedup_window: Duration) -> Result<Outbox, OutboxError> {
        std::fs::create_dir_all(data_dir).map_err(|source| OutboxError::CreateDir {
            dir: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(OUTBOX_FILE);
        let err = |source| OutboxError::Sqlite {
            path: path.clone(),
            source,
        };
        let writer = open_conn(&path, "FULL")?;
        let mut recent = Recent::new(dedup_window);
        recent.load(&writer).map_err(err)?;
        let mut leads = Leads::new();
        leads.load(&writer).map_err(err)?;
        let conn = open_conn(&path, "NORMAL")?;
        let (tx, rx) = mpsc::sync_channel::<WriterCmd>(4096);
        let p = path.clone();
        std::thread::Builder::new()
            .name("outbox-writer".into())
            .spawn(move || ingest_loop(writer, rx, recent, leads, p))
            .map_err(OutboxError::Thread)?;
        Ok(Outbox {
            tx,
            conn: Mutex::new(conn),
            path,
        })
    }

    /// Where the outbox is: the Slack destination keeps its threads in the
    /// same file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores a notification durably. Resolves once it is on disk.
    pub async fn ingest(&self, n: NewNotification) -> Result<Accepted, OutboxError> {
        let (reply, rx) = oneshot::channel();
        // The queue is bounded; a full queue means the disk cannot keep up: say so (503).
        self.tx.try_send(WriterCmd::Ingest { n, reply }).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => OutboxError::Overloaded,
            mpsc::TrySendError::Disconnected(_) => OutboxError::Stopped,
        })?;
        rx.await.map_err(|_| OutboxError::Stopped)?
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, OutboxError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(|source| OutboxError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    /// Up to `limit` due deliveries of `destination`, oldest first, each the
    /// oldest pending of its group (so a group's firing and resolved go in
    /// order).
    pub fn next_due(&self, destination: &str, limit: usize) -> Result<Vec<Pending>, OutboxError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT d.id, d.attempts, d.created, n.payload, d.group_key FROM deliveries d INDEXED BY deliveries_queued JOIN notifications n ON n.id = d.notification
                 WHERE d.destination = ?1 AND d.state = 'pending' AND d.next_attempt <= ?2
                   AND (d.grouped = 0 OR NOT EXISTS (SELECT 1 FROM deliveries e INDEXED BY deliveries_group_waiting WHERE e.destination = d.destination AND e.group_key = d.group_key AND e.state = 'pending' AND e.grouped = 1 AND e.id < d.id))
                 ORDER BY d.id LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![destination, now(), limit as i64], |r| {
                Ok(Pending { id: r.get(0)?, attempts: r.get(1)?, created: r.get(2)?, payload: r.get(3)?, group_key: r.get(4)? })
            })?;
            rows.collect()
        })
    }

    /// `destination`'s pending deliveries, due or not, oldest first: at most
    /// `limit`, and no more once their payloads pass `max_bytes` (the first
    /// is always returned), so what a digest holds in memory is bounded.
    pub fn queued(&self, destination: &str, limit: usize, max_bytes: usize) -> Result<Vec<Pending>, OutboxError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT d.id, d.attempts, d.created, n.payload, d.group_key FROM deliveries d INDEXED BY deliveries_queued JOIN notifications n ON n.id = d.notification
                 WHERE d.destination = ?1 AND d.state = 'pending' ORDER BY d.id LIMIT ?2",
            )?;
            let mut rows = stmt.query(params![destination, limit as i64])?;
            let (mut out, mut bytes) = (Vec::new(), 0);
            while let Some(r) = rows.next()? {
                let p = Pending { id: r.get(0)?, attempts: r.get(1)?, created: r.get(2)?, payload: r.get(3)?, group_key: r.get(4)? };
                bytes += p.payload.len();
                if bytes > max_bytes && !out.is_empty() {
                    break;
                }
                out.push(p);
            }
            Ok(out)
        })
    }

    /// The newest pending delivery of `group` to `destination` queued after
    /// `than`: the one about to be sent, `than`, is then superseded. Only
    /// grouped deliveries are looked at: a group with more than one pending
    /// has them all grouped, and a group with one has nothing newer.
    pub fn newer_in_group(&self, destination: &str, group: &str, than: i64) -> Result<Option<i64>, OutboxError> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT MAX(id) FROM deliveries INDEXED BY deliveries_group_waiting WHERE destination = ?1 AND group_key = ?2 AND state = 'pending' AND grouped = 1 AND id > ?3",
            )?
            .query_row(params![destination, group, than], |r| r.get(0))
        })
    }

    /// When the next retry of `destination` comes due. Deliveries never
    /// tried (`attempts = 0`, `next_attempt = created`) are due once queued
    /// and not asked for here: the worker is woken when one is queued or
    /// one of its sends lands, and looks again every second regardless.
    pub fn next_wakeup(&self, destination: &str) -> Result<Option<f64>, OutboxError> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT MIN(next_attempt) FROM deliveries INDEXED BY deliveries_retrying WHERE destination = ?1 AND state = 'pending' AND attempts > 0",
            )?
                .query_row(params![destination], |r| r.get(0))
        })
    }

    /// Records a delivery's outcome (through the writer thread).
    pub async fn mark(&self, op: Mark) -> Result<(), OutboxError> {
        let (reply, rx) = oneshot::channel();
        self.send(WriterCmd::Mark { op, reply }).await?;
        rx.await.map_err(|_| OutboxError::Stopped)?
    }

    /// Queues `cmd` for the writer. The queue is bounded: when it is full,
    /// waits for room (on the blocking pool) rather than lose an outcome;
    /// otherwise it is queued at once, without a trip to another thread.
    async fn send(&self, cmd: WriterCmd) -> Result<(), OutboxError> {
        match self.tx.try_send(cmd) {
            Ok(()) => Ok(()),
            Err(mpsc::TrySendError::Disconnected(_)) => Err(OutboxError::Stopped),
            Err(mpsc::TrySendError::Full(cmd)) => {
                let tx = self.tx.clone();
                tokio::task::spawn_blocking(move || tx.send(cmd).map_err(|_| OutboxError::Stopped)).await?
            }
        }
    }

    /// Dead-letters every pending delivery to a destination not in
    /// `configured`, with that reason; returns how many per destination.
    pub fn dead_letter_unconfigured(&self, configured: &[String]) -> Result<Vec<(String, i64)>, OutboxError> {
        let names = serde_json::to_string(configured).unwrap_or_else(|_| "[]".into());
        self.with(|c| {
            let gone = "state = 'pending' AND destination NOT IN (SELECT value FROM json_each(?1))";
            let counts = c
                .prepare(&format!("SELECT destination, COUNT(*) FROM deliveries WHERE {gone} GROUP BY destination"))?
                .query_map(params![names], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            if !counts.is_empty() {
                c.execute(
                    &format!("UPDATE deliveries SET state = 'dead', last_error = 'destination `' || destination || '` is no longer configured' WHERE {gone}"),
                    params![names],
                )?;
            }
            Ok(counts)
        })
    }

    /// Records many outcomes at once: queued to the writer together, so they
    /// share its transactions rather than wait for one each.
    pub async fn mark_all(&self, ops: Vec<Mark>) -> Result<(), OutboxError> {
        let mut replies = Vec::with_capacity(ops.len());
        for op in ops {
            let (reply, rx) = oneshot::channel();
            self.send(WriterCmd::Mark { op, reply }).await?;
            replies.push(rx);
        }
        for rx in replies {
            rx.await.map_err(|_| OutboxError::Stopped)??;
        }
        Ok(())
    }

    /// Pending deliveries and the age of the oldest, per destination.
    pub fn queue(&self) -> Result<Vec<(String, i64, Option<f64>)>, OutboxError> {
        self.with(|c| {
            let mut s = c.prepare_cached(
                "SELECT destination, COUNT(*), MIN(created) FROM deliveries WHERE state = 'pending' GROUP BY destination",
            )?;
            let rows = s.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, Option<f64>>(2)?))
            })?;
            rows.collect()
        })
    }

    /// The dead-letter list.
    pub fn dlq(&self) -> Result<Vec<Dead>, OutboxError> {
        self.with(|c| {
            let mut s = c.prepare_cached(
                "SELECT id, destination, group_key, attempts, created, COALESCE(last_error, '') FROM deliveries WHERE state = 'dead' ORDER BY id",
            )?;
            let rows = s.query_map([], |r| {
                Ok(Dead { id: r.get(0)?, destination: r.get(1)?, group_key: r.get(2)?, attempts: r.get(3)?, created: r.get(4)?, reason: r.get(5)? })
            })?;
            rows.collect()
        })
    }

    /// Puts dead deliveries (all when `ids` is empty) back in the queue, due now.
    /// Their age restarts, so `max_age` does not kill them again at once.
    /// Grouped: the writer (perhaps another process's) does not learn of
    /// them, and the group index is where the next delivery of their group
    /// finds them.
    pub fn dlq_retry(&self, ids: &[i64]) -> Result<usize, OutboxError> {
        self.dlq_update(
            ids,
            "UPDATE deliveries SET state = 'pending', grouped = 1, next_attempt = ?2, created = ?2, attempts = 0 WHERE state = 'dead'",
        )
        .and_then(|n| {
            // A lead younger than a delivery queued again is no longer the
            // oldest of its group: grouped, it waits its turn.
            self.with(|c| {
                c.execute(
                    "UPDATE deliveries SET grouped = 1 WHERE state = 'pending' AND grouped = 0 AND EXISTS (
                       SELECT 1 FROM deliveries r INDEXED BY deliveries_group_waiting WHERE r.destination = deliveries.destination
                         AND r.group_key = deliveries.group_key AND r.state = 'pending' AND r.grouped = 1 AND r.id < deliveries.id)",
                    [],
                )
            })?;
            Ok(n)
        })
    }

    /// Removes dead deliveries (all when `ids` is empty).
    pub fn dlq_drop(&self, ids: &[i64]) -> Result<usize, OutboxError> {
        self.dlq_update(ids, "UPDATE deliveries SET state = 'dropped' WHERE state = 'dead'")
    }

    fn dlq_update(&self, ids: &[i64], sql: &str) -> Result<usize, OutboxError> {
        self.with(|c| {
            let t = now();
            if ids.is_empty() {
                let q = sql.replace("?2", &format!("{t}"));
                return c.execute(&q, []);
            }
            let mut n = 0;
            let q = format!("{sql} AND id = ?1").replace("?2", &format!("{t}"));
            for id in ids {
                n += c.execute(&q, params![id])?;
            }
            Ok(n)
        })
    }

    /// Deletes delivered notifications older than `age` (housekeeping),
    /// and the Slack threads of groups with no delivery left (see
    /// [`crate::relay::store::RelayStore::prune`]).
    pub fn prune(&self, age: Duration) -> Result<usize, OutboxError> {
        let cutoff = now() - age.as_secs_f64();
        self.with(|c| {
            c.execute(
                "DELETE FROM deliveries WHERE state IN ('done', 'dropped', 'superseded', 'digested') AND created < ?1",
                params![cutoff],
            )?;
            // NOT IN, not a correlated NOT EXISTS: SQLite lists the
            // notifications still named once for the statement; the
            // correlated form scanned `deliveries` once per notification.
            let n = c.execute(
                "DELETE FROM notifications WHERE received < ?1 AND id NOT IN (SELECT notification FROM deliveries)",
                params![cutoff],
            )?;
            // The table exists once a Slack bot has used it; with no
            // thread kept, the deliveries need not be read at all.
            let threads = c
                .prepare_cached("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'threads'")?
                .exists([])?
                && c.prepare_cached("SELECT 1 FROM threads LIMIT 1")?.exists([])?;
            if threads {
                // The groups to forget are found in one pass (EXCEPT sorts
                // both sides once). `(destination, group_key) NOT IN
                // (SELECT …)` reads the same but checked the whole list for
                // every thread: 23 s against 0.05 s for 4,000 threads over
                // 20,000 deliveries (debug build).
                c.execute(
                    "DELETE FROM threads WHERE (destination, group_key) IN
                       (SELECT destination, group_key FROM threads EXCEPT SELECT destination, group_key FROM deliveries)",
                    [],
                )?;
            }
            Ok(n)
        })
    }
}

fn ingest_loop(mut conn: Connection, rx: mpsc::Receiver<WriterCmd>, mut recent: Recent, mut leads: Leads, path: PathBuf) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        // Forget what left the window before judging this batch by it.
        let t = now();
        recent.expire(t);
        let mut changes = Vec::new();
        match store_batch(&mut conn, &batch, &recent, &mut leads, &mut changes, t) {
            Ok((outcomes, stored)) => {
                // Remembered only once committed: a failed batch is stored
                // by Alertmanager's retry, which must not count as a duplicate.
                for k in stored {
                    recent.insert(t, k);
                }
                for (cmd, outcome) in batch.into_iter().zip(outcomes) {
                    match cmd {
                        WriterCmd::Ingest { reply, .. } => {
                            let _ = reply.send(Ok(outcome.unwrap_or(Accepted::Stored)));
                        }
                        WriterCmd::Mark { reply, .. } => {
                            let _ = reply.send(Ok(()));
                        }
                    }
                }
            }
            Err(e) => {
                leads.undo(changes);
                metrics::counter!("lookout_relay_store_errors_total").increment(1);
                tracing::error!(path = %path.display(), error = %e, "Cannot write the outbox; answering 503 so Alertmanager retries");
                for cmd in batch {
                    let failed = OutboxError::Write { message: e.to_string() };
                    match cmd {
                        WriterCmd::Ingest { reply, .. } => {
                            let _ = reply.send(Err(failed));
                        }
                        WriterCmd::Mark { reply, .. } => {
                            let _ = reply.send(Err(failed));
                        }
                    }
                }
            }
        }
    }
}

/// Writes a batch in one transaction, received at `t`. Returns each
/// command's outcome and the identities of the notifications it stored;
/// what it changed in `leads` is in `changes`, to be undone if it fails.
fn store_batch(
    conn: &mut Connection,
    batch: &[WriterCmd],
    recent: &Recent,
    leads: &mut Leads,
    changes: &mut Vec<LeadChange>,
    t: f64,
) -> rusqlite::Result<(Vec<Option<Accepted>>, HashSet<u128>)> {
    // IMMEDIATE: take the write lock up front. A deferred transaction that
    // reads (the de-duplication check) and then writes fails at once with
    // "database is locked" if another connection wrote in between; the busy
    // timeout does not cover that upgrade.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut out = Vec::with_capacity(batch.len());
    let mut in_batch = HashSet::new();
    {
        let mut note = tx.prepare_cached("INSERT INTO notifications (received, group_key, dedup, payload) VALUES (?1, ?2, ?3, ?4)")?;
        let mut deliv = tx.prepare_cached(
            "INSERT INTO deliveries (notification, destination, group_key, next_attempt, created, grouped) VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
        )?;
        let mut waiting = tx.prepare_cached(
            "SELECT 1 FROM deliveries INDEXED BY deliveries_group_waiting WHERE destination = ?1 AND group_key = ?2 AND state = 'pending' AND grouped = 1",
        )?;
        let mut group = tx.prepare_cached("UPDATE deliveries SET grouped = 1 WHERE id = ?1")?;
        for cmd in batch {
            match cmd {
                WriterCmd::Ingest { n, .. } => {
                    let key = Recent::key(&n.dedup);
                    if recent.contains(key) || !in_batch.insert(key) {
                        out.push(Some(Accepted::Duplicate));
                        continue;
                    }
                    note.execute(params![t, n.group_key, n.dedup, n.payload])?;
                    let id = tx.last_insert_rowid();
                    for d in &n.destinations {
                        let k = leads.key(d, &n.group_key);
                        // Behind a lead: both grouped. Behind grouped ones:
                        // grouped. Alone: the group's lead, unless there
                        // are as many leads as are kept.
                        let grouped = match leads.by_group.remove(&k) {
                            Some(lead) => {
                                changes.push(LeadChange::Removed(k, lead));
                                group.execute(params![lead])?;
                                true
                            }
                            None => leads.full() || waiting.exists(params![d, n.group_key])?,
                        };
                        deliv.execute(params![id, d, n.group_key, t, grouped])?;
                        if !grouped {
                            leads.by_group.insert(k, tx.last_insert_rowid());
                            changes.push(LeadChange::Added(k));
                        }
                    }
                    out.push(Some(Accepted::Stored));
                }
                WriterCmd::Mark { op, .. } => {
                    use std::borrow::Cow;
                    // A delivery leaving the queue: its new state, and what
                    // `last_error` says of it.
                    let (id, leaving, note): (i64, &str, Option<Cow<str>>) = match op {
                        Mark::Retry(id, next, err) => {
                            tx.prepare_cached(
                                "UPDATE deliveries SET attempts = attempts + 1, next_attempt = ?2, last_error = ?3 WHERE id = ?1",
                            )?
                            .execute(params![id, next, err])?;
                            out.push(None);
                            continue;
                        }
                        Mark::Done(id) => (
                            *id,
                            "UPDATE deliveries SET state = 'done', attempts = attempts + 1, last_error = ?2 WHERE id = ?1
                             RETURNING destination, group_key, grouped",
                            None,
                        ),
                        Mark::Dead(id, reason) => (
                            *id,
                            "UPDATE deliveries SET state = 'dead', attempts = attempts + 1, last_error = ?2 WHERE id = ?1
                             RETURNING destination, group_key, grouped",
                            Some(Cow::Borrowed(reason.as_str())),
                        ),
                        Mark::Superseded(id, by) => (
                            *id,
                            "UPDATE deliveries SET state = 'superseded', last_error = ?2 WHERE id = ?1 AND state = 'pending'
                             RETURNING destination, group_key, grouped",
                            Some(Cow::Owned(format!("superseded by delivery {by} of its group"))),
                        ),
                        Mark::Digested(id, digest) => (
                            *id,
                            "UPDATE deliveries SET state = 'digested', attempts = attempts + 1, last_error = ?2 WHERE id = ?1 AND state = 'pending'
                             RETURNING destination, group_key, grouped",
                            Some(Cow::Borrowed(digest.as_str())),
                        ),
                    };
                    // When it led its group, the group is idle again (the
                    // row says whether it did).
                    let row = tx
                        .prepare_cached(leaving)?
                        .query_row(params![id, note.as_deref()], |r| {
                            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)? == 0))
                        })
                        .optional()?;
                    if let Some((destination, group, true)) = row {
                        let k = leads.key(&destination, &group);
                        if leads.by_group.get(&k) == Some(&id) {
                            leads.by_group.remove(&k);
                            changes.push(LeadChange::Removed(k, id));
                        }
                    }
                    out.push(None);
                }
            }
        }
    }
    tx.commit()?;
    Ok((out, in_batch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_forgets_what_left_the_window_and_stays_bounded() {
        let mut r = Recent::new(Duration::from_secs(300));
        let a = Recent::key(&"ab".repeat(32));
        r.insert(1000.0, a);
        r.expire(1299.0);
        assert!(r.contains(a), "still within the window");
        r.expire(1301.0);
        assert!(!r.contains(a), "out of the window");
        for i in 0..MAX_RECENT as u128 + 10 {
            r.insert(2000.0, i);
        }
        r.expire(2000.0);
        assert_eq!((r.order.len(), r.keys.len()), (MAX_RECENT, MAX_RECENT));
        assert!(!r.contains(0) && r.contains(MAX_RECENT as u128 + 9), "the oldest go first");
    }

    #[test]
    fn keys_are_the_digest_prefix_or_a_hash_of_anything_else() {
        assert_eq!(Recent::key(&format!("{}{}", "0".repeat(31), "f".repeat(33))), 15);
        assert_eq!(Recent::key("not hex"), Recent::key("not hex"));
        assert_ne!(Recent::key("not hex"), Recent::key("not hex!"));
    }

    #[test]
    fn duplicates_are_known_after_a_restart_and_within_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        let n = |dedup: &str| NewNotification {
            payload: "{}".into(),
            group_key: "g".into(),
            dedup: dedup.into(),
            destinations: vec![],
        };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let window = Duration::from_secs(300);
        let a = "a".repeat(64);
        {
            let o = Outbox::open(dir.path(), window).unwrap();
            assert_eq!(rt.block_on(o.ingest(n(&a))).unwrap(), Accepted::Stored);
            assert_eq!(rt.block_on(o.ingest(n(&a))).unwrap(), Accepted::Duplicate);
        }
        let o = Outbox::open(dir.path(), window).unwrap();
        assert_eq!(
            rt.block_on(o.ingest(n(&a))).unwrap(),
            Accepted::Duplicate,
            "reloaded from the table"
        );
        // Two copies committed in the same transaction: the second is the duplicate.
        let b = "b".repeat(64);
        let batch: Vec<WriterCmd> = (0..2)
            .map(|_| WriterCmd::Ingest {
                n: n(&b),
                reply: oneshot::channel().0,
            })
            .collect();
        let mut conn = open_conn(&dir.path().join(OUTBOX_FILE), "FULL").unwrap();
        let (out, stored) = store_batch(&mut conn, &batch, &Recent::new(window), &mut Leads::new(), &mut Vec::new(), now()).unwrap();
        assert_eq!(out, vec![Some(Accepted::Stored), Some(Accepted::Duplicate)]);
        assert_eq!(stored, HashSet::from([Recent::key(&b)]));
    }

    #[test]
    fn a_file_from_a_newer_lookout_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        drop(Outbox::open(dir.path(), Duration::ZERO).unwrap());
        let path = dir.path().join(OUTBOX_FILE);
        let c = Connection::open(&path).unwrap();
        let v: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION, "a new file is stamped");
        c.execute_batch("PRAGMA user_version = 99; CREATE INDEX later ON deliveries(state);")
            .unwrap();
        drop(c);
        let e = Outbox::open(dir.path(), Duration::ZERO).err().expect("refused");
        assert!(e.to_string().contains("newer lookout"), "{e}");
        let c = Connection::open(&path).unwrap();
        let v: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v, 99, "left as it was");
    }

    #[test]
    fn a_layout_1_file_keeps_its_queue_and_its_groups_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(OUTBOX_FILE);
        {
            // What layout 1 created: every delivery indexed, state in each key.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "PRAGMA journal_mode = WAL;
                 CREATE TABLE notifications (id INTEGER PRIMARY KEY, received REAL NOT NULL, group_key TEXT NOT NULL, dedup TEXT NOT NULL, payload TEXT NOT NULL);
                 CREATE TABLE deliveries (id INTEGER PRIMARY KEY, notification INTEGER NOT NULL REFERENCES notifications(id), destination TEXT NOT NULL, group_key TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL, created REAL NOT NULL, last_error TEXT);
                 CREATE INDEX deliveries_pending ON deliveries(destination, state, next_attempt);
                 CREATE INDEX deliveries_queue ON deliveries(destination, state, id);
                 CREATE INDEX deliveries_group ON deliveries(destination, group_key, state, id);
                 INSERT INTO notifications VALUES (1, 1.0, 'g', 'd1', '{}'), (2, 2.0, 'g', 'd2', '{}'), (3, 3.0, 'h', 'd3', '{}');
                 INSERT INTO deliveries (notification, destination, group_key, state, next_attempt, created) VALUES
                   (1, 'hook', 'g', 'done', 1.0, 1.0), (2, 'hook', 'g', 'pending', 2.0, 2.0), (3, 'hook', 'h', 'pending', 3.0, 3.0);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let o = Outbox::open(dir.path(), Duration::ZERO).unwrap();
        let c = Connection::open(&path).unwrap();
        let v: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let mut indexes: Vec<String> = column(
            &c,
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'deliveries' ORDER BY name",
        );
        indexes.sort();
        assert_eq!(indexes, ["deliveries_group_waiting", "deliveries_queued", "deliveries_retrying"]);
        let due: Vec<(i64, String)> = o.next_due("hook", 10).unwrap().into_iter().map(|p| (p.id, p.group_key)).collect();
        assert_eq!(due, [(2, "g".to_string()), (3, "h".to_string())], "the queue as it was");
        assert_eq!(o.newer_in_group("hook", "g", 0).unwrap(), Some(2));
        assert_eq!(o.next_wakeup("hook").unwrap(), None, "never tried: due now, no retry waiting");
        // What was queued before the upgrade still goes first in its group.
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(o.ingest(note("g", 'a', &["hook"]))).unwrap();
        assert_eq!(due_ids(&o), [2, 3]);
        assert_eq!(o.newer_in_group("hook", "g", 2).unwrap(), Some(4));
    }

    fn note(group: &str, dedup: char, destinations: &[&str]) -> NewNotification {
        NewNotification {
            payload: "{}".into(),
            group_key: group.into(),
            dedup: dedup.to_string().repeat(64),
            destinations: destinations.iter().map(|d| d.to_string()).collect(),
        }
    }

    /// The first column of every row `sql` returns.
    fn column<T: rusqlite::types::FromSql>(c: &Connection, sql: &str) -> Vec<T> {
        c.prepare(sql)
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    fn due_ids(o: &Outbox) -> Vec<i64> {
        o.next_due("hook", 10).unwrap().into_iter().map(|p| p.id).collect()
    }

    #[test]
    fn a_group_keeps_its_order_whether_its_first_is_alone_or_not_and_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let o = Outbox::open(dir.path(), Duration::ZERO).unwrap();
        // 1 leads g, 2 leads h (another destination's delivery of h is its
        // own group), 3 waits behind 1.
        for (g, k, d) in [
            ("g", 'a', &["hook"][..]),
            ("h", 'b', &["hook", "mail"][..]),
            ("g", 'c', &["hook"][..]),
        ] {
            rt.block_on(o.ingest(note(g, k, d))).unwrap();
        }
        assert_eq!(due_ids(&o), [1, 2]);
        assert_eq!(o.newer_in_group("hook", "g", 1).unwrap(), Some(4));
        assert_eq!(o.newer_in_group("hook", "h", 2).unwrap(), None, "alone in its group: nothing newer");
        rt.block_on(o.mark(Mark::Done(1))).unwrap();
        assert_eq!(due_ids(&o), [2, 4]);
        drop(o);
        // The leads come back from the table: 2 still leads h.
        let o = Outbox::open(dir.path(), Duration::ZERO).unwrap();
        rt.block_on(o.ingest(note("h", 'd', &["hook"]))).unwrap();
        assert_eq!(due_ids(&o), [2, 4], "5 waits behind 2");
        assert_eq!(o.newer_in_group("hook", "h", 2).unwrap(), Some(5));
        rt.block_on(o.mark(Mark::Retry(2, 0.0, "503".into()))).unwrap();
        assert_eq!(due_ids(&o), [2, 4], "a retry keeps its place");
        assert_eq!(o.next_wakeup("hook").unwrap(), Some(0.0));
        rt.block_on(o.mark(Mark::Done(2))).unwrap();
        rt.block_on(o.mark(Mark::Done(4))).unwrap();
        assert_eq!(due_ids(&o), [5]);
        // g is idle again: its next delivery leads it.
        rt.block_on(o.ingest(note("g", 'e', &["hook"]))).unwrap();
        assert_eq!(due_ids(&o), [5, 6]);
    }

    #[test]
    fn past_the_leads_kept_a_group_is_indexed_and_keeps_its_order() {
        let dir = tempfile::tempdir().unwrap();
        // The reader, and the file's tables.
        let o = Outbox::open(dir.path(), Duration::ZERO).unwrap();
        let mut conn = open_conn(&dir.path().join(OUTBOX_FILE), "FULL").unwrap();
        let mut leads = Leads::with_cap(1);
        let batch: Vec<WriterCmd> = [("a", 'a'), ("b", 'b'), ("a", 'c')]
            .into_iter()
            .map(|(g, k)| WriterCmd::Ingest {
                n: note(g, k, &["hook"]),
                reply: oneshot::channel().0,
            })
            .collect();
        // One at a time: each its own commit, as they would come in.
        for cmd in &batch {
            store_batch(
                &mut conn,
                std::slice::from_ref(cmd),
                &Recent::new(Duration::ZERO),
                &mut leads,
                &mut Vec::new(),
                now(),
            )
            .unwrap();
        }
        let grouped: Vec<i64> = column(&conn, "SELECT grouped FROM deliveries ORDER BY id");
        // a's first led it until a's second came; b's, alone, was grouped
        // at once, a lead being all that is kept.
        assert_eq!(grouped, [1, 1, 1]);
        assert_eq!(due_ids(&o), [1, 2]);
        assert_eq!(o.newer_in_group("hook", "a", 1).unwrap(), Some(3));
        // At start, a lead beyond the cap is made grouped.
        conn.execute_batch("UPDATE deliveries SET state = 'done' WHERE id IN (1, 2, 3)")
            .unwrap();
        for cmd in &batch[..2] {
            store_batch(
                &mut conn,
                std::slice::from_ref(cmd),
                &Recent::new(Duration::ZERO),
                &mut Leads::new(),
                &mut Vec::new(),
                now(),
            )
            .unwrap();
        }
        let mut leads = Leads::with_cap(1);
        leads.load(&conn).unwrap();
        assert_eq!(leads.by_group.len(), 1);
        let ungrouped: i64 = conn
            .query_row("SELECT COUNT(*) FROM deliveries WHERE state = 'pending' AND grouped = 0", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(ungrouped, 1, "the one lead kept");
        assert_eq!(due_ids(&o), [4, 5]);
    }

    #[test]
    fn a_dead_letter_queued_again_goes_before_its_groups_younger_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let o = Outbox::open(dir.path(), Duration::ZERO).unwrap();
        rt.block_on(o.ingest(note("g", 'a', &["hook"]))).unwrap();
        rt.block_on(o.mark(Mark::Dead(1, "410".into()))).unwrap();
        // g is idle: 2 leads it, ungrouped.
        rt.block_on(o.ingest(note("g", 'b', &["hook"]))).unwrap();
        assert_eq!(due_ids(&o), [2]);
        // Queued again from another connection (the `dlq retry` command):
        // the writer does not hear of it, and 2 must still wait.
        let other = Outbox::open(dir.path(), Duration::ZERO).unwrap();
        assert_eq!(other.dlq_retry(&[1]).unwrap(), 1);
        assert_eq!(due_ids(&o), [1]);
        rt.block_on(o.ingest(note("g", 'c', &["hook"]))).unwrap();
        rt.block_on(o.mark(Mark::Done(1))).unwrap();
        assert_eq!(due_ids(&o), [2]);
        assert_eq!(o.newer_in_group("hook", "g", 2).unwrap(), Some(3));
    }

    #[test]
    fn a_copy_outside_the_window_is_stored_again() {
        // With no window, a copy is never a duplicate, even when it is the
        // first request after a quiet spell (nothing expired in between).
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let o = Outbox::open(dir.path(), Duration::ZERO).unwrap();
        let n = || NewNotification {
            payload: "{}".into(),
            group_key: "g".into(),
            dedup: "c".repeat(64),
            destinations: vec![],
        };
        assert_eq!(rt.block_on(o.ingest(n())).unwrap(), Accepted::Stored);
        assert_eq!(rt.block_on(o.ingest(n())).unwrap(), Accepted::Stored);
    }
}
