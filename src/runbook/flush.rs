//! The controlled cache flush (deploy/runbooks/redis-controlled-flush.md):
//! count what a pattern matches, keep a way back, delete in small paced
//! batches while watching what other clients see, and write down what
//! happened.
//!
//! The operations guide's one-liner (`redis-cli --scan | xargs redis-cli
//! del`) sends DELs of thousands of keys at once with no pause, no progress,
//! no snapshot and nothing to tell the change ticket. Here every step is a
//! function the command line (and later the daemon) calls in order:
//! [`survey`], [`snapshot`], [`execute`], [`warm`], then [`Record::render`].
//! It only ever uses SCAN and UNLINK: never `KEYS` (one call walks the
//! whole keyspace while every client waits) and never `FLUSHDB`/`FLUSHALL`
//! (they take everything, not a pattern).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use crate::config::{redact_url, redact_urls_in};
use crate::probe::redis::parse_info;

/// How many matching keys [`survey`] asks `MEMORY USAGE` about: enough for
/// an average within a few percent on a cache of similar values, few enough
/// to cost Redis nothing measurable.
pub const MEMORY_SAMPLE: usize = 200;

/// Most matching keys [`survey`] keeps for [`execute`] (about 50 bytes
/// each for short names: 100 MB at most). SCAN is what a flush costs Redis
/// (measured: 0.8 ms per SCAN COUNT 1000 over 2,000,000 keys, against
/// 0.07 ms per UNLINK of 250), so deleting the keys the survey already
/// found walks the keyspace once instead of twice. Above this, [`execute`]
/// scans again.
pub const REMEMBER_KEYS: usize = 2_000_000;

/// How often the latency guard PINGs: the cadence `redis-cli --latency`
/// samples at, so the figures compare.
const GUARD_EVERY: Duration = Duration::from_millis(10);

/// How long the guard may hold the flush paused before it gives up: a
/// Redis slow for a minute has a problem a flush should not add to.
pub const MAX_PAUSE: Duration = Duration::from_secs(60);

/// Why a step failed, as a sentence without secrets.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FlushError(pub String);

impl FlushError {
    fn redis(what: &str, e: &redis::RedisError) -> Self {
        FlushError(format!("{what}: {}", redact_urls_in(&e.to_string())))
    }
}

/// The delete rate cap: a number of keys a second, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// As fast as Redis answers (the latency guard still applies).
    Unlimited,
    /// At most this many keys a second.
    PerSecond(u32),
}

impl FromStr for Rate {
    type Err = String;

    /// `5000/s`, `5000` or `unlimited`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("unlimited") {
            return Ok(Rate::Unlimited);
        }
        let n = s.strip_suffix("/s").unwrap_or(s);
        match n.parse::<u32>() {
            Ok(n) if n > 0 => Ok(Rate::PerSecond(n)),
            _ => Err(format!(
                "`{s}` is not a rate: expected keys a second such as `5000/s`, or `unlimited`"
            )),
        }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rate::Unlimited => f.write_str("unlimited"),
            Rate::PerSecond(n) => write!(f, "{n}/s"),
        }
    }
}

impl Rate {
    /// Keys per UNLINK: a tenth of a second's worth, so that the pace is
    /// smooth rather than one burst a second, and never more than a SCAN
    /// page, which keeps each command short for the clients queued behind it.
    pub fn batch(self, scan_count: u32) -> usize {
        let page = scan_count.max(1) as usize;
        match self {
            Rate::Unlimited => page,
            Rate::PerSecond(n) => (n as usize / 10).clamp(1, page),
        }
    }
}

/// Connects with timeouts, so that a Redis that does not answer is an
/// error rather than a hang. `display` is the redacted URL for messages.
pub async fn connect(client: &redis::Client, display: &str, timeout: Duration) -> Result<MultiplexedConnection, FlushError> {
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .map_err(|e| FlushError::redis(&format!("cannot connect to {display}"), &e))
}

/// What a pattern matches, before anything is deleted.
#[derive(Debug, Clone, Default)]
pub struct Survey {
    /// Keys in the database (DBSIZE).
    pub total: u64,
    /// Keys SCAN returned for the pattern. SCAN may return a key twice
    /// while Redis resizes its table, so this is a close count, not an exact one.
    pub matched: u64,
    /// The first matching keys, for a person to read.
    pub sample: Vec<String>,
    /// `MEMORY USAGE` summed over `memory_keys` matching keys; `None` when
    /// the command is unavailable (renamed on managed Redis).
    pub memory_sampled: Option<u64>,
    /// How many keys `memory_sampled` covers.
    pub memory_keys: usize,
    /// Every matching key, when asked for and no more than
    /// [`REMEMBER_KEYS`]: what [`execute`] deletes without scanning again.
    pub keys: Option<Vec<Vec<u8>>>,
}

impl Survey {
    /// Several nodes' surveys as one (a cluster's masters): counts and
    /// memory summed, the sample taken from the first nodes. The keys are
    /// not kept: each node deletes its own.
    pub fn combine(parts: &[Survey], sample: usize) -> Survey {
        Survey {
            total: parts.iter().map(|s| s.total).sum(),
            matched: parts.iter().map(|s| s.matched).sum(),
            sample: parts.iter().flat_map(|s| s.sample.iter().cloned()).take(sample).collect(),
            memory_sampled: parts.iter().map(|s| s.memory_sampled).sum(),
            memory_keys: parts.iter().map(|s| s.memory_keys).sum(),
            keys: None,
        }
    }

    /// The sample's average size times the count: what the flush frees.
    pub fn estimated_bytes(&self) -> Option<u64> {
        let sampled = self.memory_sampled?;
        if self.memory_keys == 0 {
            return None;
        }
        Some((sampled as f64 / self.memory_keys as f64 * self.matched as f64).round() as u64)
    }
}

/// Step 1: counts the keys `pattern` matches with SCAN (`count` per call),
/// keeps the first `sample` of them, and extrapolates their memory from
/// `MEMORY USAGE` of up to [`MEMORY_SAMPLE`]; with `remember`, keeps the
/// keys (up to [`REMEMBER_KEYS`]) for [`execute`]. Deletes nothing.
pub async fn survey(
    conn: &mut MultiplexedConnection,
    pattern: &str,
    count: u32,
    sample: usize,
    remember: bool,
) -> Result<Survey, FlushError> {
    let total: u64 = redis::cmd("DBSIZE")
        .query_async(conn)
        .await
        .map_err(|e| FlushError::redis("DBSIZE", &e))?;
    let mut s = Survey {
        total,
        ..Survey::default()
    };
    let mut for_memory: Vec<Vec<u8>> = Vec::new();
    let mut kept: Option<Vec<Vec<u8>>> = remember.then(Vec::new);
    let mut cursor = 0u64;
    loop {
        let (next, keys) = scan(conn, cursor, pattern, count).await?;
        s.matched += keys.len() as u64;
        for k in keys {
            if s.sample.len() < sample {
                s.sample.push(String::from_utf8_lossy(&k).into_owned());
            }
            if for_memory.len() < MEMORY_SAMPLE {
                for_memory.push(k.clone());
            }
            if let Some(v) = kept.as_mut() {
                if v.len() < REMEMBER_KEYS {
                    v.push(k);
                } else {
                    kept = None;
                }
            }
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    s.keys = kept;
    if !for_memory.is_empty() {
        let mut p = redis::pipe();
        for k in &for_memory {
            p.cmd("MEMORY").arg("USAGE").arg(k);
        }
        // MEMORY may be renamed or disabled: the count still stands without it.
        if let Ok(sizes) = p.query_async::<Vec<Option<u64>>>(conn).await {
            let known: Vec<u64> = sizes.into_iter().flatten().collect();
            s.memory_keys = known.len();
            s.memory_sampled = Some(known.iter().sum());
        }
    }
    Ok(s)
}

async fn scan(conn: &mut MultiplexedConnection, cursor: u64, pattern: &str, count: u32) -> Result<(u64, Vec<Vec<u8>>), FlushError> {
    redis::cmd("SCAN")
        .arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await
        .map_err(|e| FlushError::redis("SCAN", &e))
}

/// A snapshot taken before the flush: the way back.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// `RDB (BGSAVE)` or `AOF rewrite (BGREWRITEAOF)`.
    pub kind: &'static str,
    /// When it completed, Unix seconds (LASTSAVE for an RDB; the clock when
    /// the rewrite was seen done for AOF).
    pub at: i64,
    /// How long it took.
    pub took: Duration,
}

/// Why [`snapshot`] or [`execute`] did not finish.
#[derive(Debug)]
pub enum Stopped {
    /// SIGINT or SIGTERM: stopped between batches.
    Interrupted,
    /// An error.
    Failed(FlushError),
}

async fn info(conn: &mut MultiplexedConnection, section: &str) -> Result<std::collections::HashMap<String, String>, FlushError> {
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query_async(conn)
        .await
        .map_err(|e| FlushError::redis("INFO", &e))?;
    Ok(parse_info(&text))
}

fn num(info: &std::collections::HashMap<String, String>, key: &str) -> i64 {
    info.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Step 2: a snapshot before anything is deleted. With AOF on, an AOF
/// rewrite (the file Redis reloads at start); otherwise `BGSAVE SCHEDULE`,
/// done when LASTSAVE (or `rdb_saves`, which moves within the same second)
/// moves with `rdb_last_bgsave_status:ok`. A save already running is waited
/// for: it forked before the flush, so it holds every key. Fails on a
/// failed save or after `timeout`; `stop` interrupts the wait.
pub async fn snapshot(conn: &mut MultiplexedConnection, timeout: Duration, stop: &AtomicBool) -> Result<Snapshot, Stopped> {
    let t0 = Instant::now();
    let before = info(conn, "persistence").await.map_err(Stopped::Failed)?;
    let aof = num(&before, "aof_enabled") == 1;
    let lastsave_before: i64 = lastsave(conn).await.map_err(Stopped::Failed)?;
    let (cmd, kind): (redis::Cmd, &'static str) = if aof {
        (redis::cmd("BGREWRITEAOF"), "AOF rewrite (BGREWRITEAOF)")
    } else {
        let mut c = redis::cmd("BGSAVE");
        c.arg("SCHEDULE");
        (c, "RDB (BGSAVE)")
    };
    if let Err(e) = cmd.query_async::<redis::Value>(conn).await
        && !e.to_string().contains("already in progress")
    {
        return Err(Stopped::Failed(FlushError::redis(kind, &e)));
    }
    let deadline = t0 + timeout;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Err(Stopped::Interrupted);
        }
        let now = info(conn, "persistence").await.map_err(Stopped::Failed)?;
        if aof {
            let idle = num(&now, "aof_rewrite_in_progress") == 0 && num(&now, "aof_rewrite_scheduled") == 0;
            let failures = num(&now, "aof_rewrites_consecutive_failures") > num(&before, "aof_rewrites_consecutive_failures");
            if idle && failures {
                return Err(Stopped::Failed(FlushError(
                    "the AOF rewrite failed (aof_last_bgrewrite_status:err); see Redis's log".into(),
                )));
            }
            if idle && num(&now, "aof_rewrites") > num(&before, "aof_rewrites") {
                let at = chrono::Utc::now().timestamp();
                return Ok(Snapshot {
                    kind,
                    at,
                    took: t0.elapsed(),
                });
            }
        } else if num(&now, "rdb_bgsave_in_progress") == 0 {
            let ok = now.get("rdb_last_bgsave_status").map(String::as_str) == Some("ok");
            let last = lastsave(conn).await.map_err(Stopped::Failed)?;
            let moved = last > lastsave_before || num(&now, "rdb_saves") > num(&before, "rdb_saves");
            if ok && moved {
                return Ok(Snapshot {
                    kind,
                    at: last,
                    took: t0.elapsed(),
                });
            }
            if !ok {
                return Err(Stopped::Failed(FlushError(
                    "BGSAVE failed (rdb_last_bgsave_status:err): is Redis's `dir` writable and is there disk space? See Redis's log".into(),
                )));
            }
        }
        if Instant::now() > deadline {
            return Err(Stopped::Failed(FlushError(format!(
                "the {kind} did not finish within {}",
                humantime::format_duration(timeout)
            ))));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn lastsave(conn: &mut MultiplexedConnection) -> Result<i64, FlushError> {
    redis::cmd("LASTSAVE")
        .query_async(conn)
        .await
        .map_err(|e| FlushError::redis("LASTSAVE", &e))
}

/// Keyspace hits and misses since Redis started (INFO stats).
#[derive(Debug, Clone, Copy, Default)]
pub struct Hits {
    /// `keyspace_hits`.
    pub hits: u64,
    /// `keyspace_misses`.
    pub misses: u64,
}

impl Hits {
    /// Reads them now.
    pub async fn read(conn: &mut MultiplexedConnection) -> Result<Hits, FlushError> {
        let i = info(conn, "stats").await?;
        Ok(Hits {
            hits: num(&i, "keyspace_hits").max(0) as u64,
            misses: num(&i, "keyspace_misses").max(0) as u64,
        })
    }

    /// Hits over lookups, when there were any.
    pub fn ratio(self) -> Option<f64> {
        let total = self.hits + self.misses;
        (total > 0).then(|| self.hits as f64 / total as f64)
    }

    /// The ratio between `self` and a later reading: what clients saw in
    /// between (the since-start ratio hides a flush's effect for days).
    pub fn ratio_until(self, later: Hits) -> Option<f64> {
        Hits {
            hits: later.hits.saturating_sub(self.hits),
            misses: later.misses.saturating_sub(self.misses),
        }
        .ratio()
    }
}

/// What [`execute`] does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The SCAN MATCH pattern.
    pub pattern: String,
    /// SCAN's COUNT.
    pub scan_count: u32,
    /// The cap on keys deleted a second.
    pub rate: Rate,
    /// Above this round trip (PING on a separate connection) the flush pauses.
    pub max_latency: Duration,
    /// How many keys the survey matched, for the ETA.
    pub expected: u64,
}

/// Where the flush stands, for progress output.
#[derive(Debug, Clone, Copy)]
pub struct Tick {
    /// Keys UNLINK removed so far.
    pub deleted: u64,
    /// Keys the survey matched.
    pub expected: u64,
    /// Since the flush began.
    pub elapsed: Duration,
    /// Set while paused by the latency guard: the round trip that paused it.
    pub paused_at: Option<Duration>,
}

impl Tick {
    /// Keys a second so far.
    pub fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 { self.deleted as f64 / s } else { 0.0 }
    }

    /// Time left at the rate so far, while keys remain, in whole seconds
    /// rounded up (a flush about to end says 1s, not 0s).
    pub fn eta(&self) -> Option<Duration> {
        let r = self.rate();
        let left = self.expected.saturating_sub(self.deleted);
        (r > 0.0 && left > 0).then(|| Duration::from_secs((left as f64 / r).ceil() as u64))
    }
}

/// Round trips the latency guard measured during the flush.
#[derive(Debug, Clone, Copy, Default)]
pub struct LatencyStats {
    /// PINGs measured.
    pub samples: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
}

impl LatencyStats {
    /// From raw samples (any order).
    pub fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let at = |q: f64| {
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples.get(i).copied().unwrap_or_default()
        };
        LatencyStats {
            samples: samples.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }
}

/// How the flush went.
#[derive(Debug)]
pub struct Outcome {
    /// Keys UNLINK removed.
    pub deleted: u64,
    /// From the first batch to the last.
    pub elapsed: Duration,
    /// What other clients saw meanwhile.
    pub latency: LatencyStats,
    /// How many times the guard paused it, and for how long in all.
    pub pauses: u32,
    /// Total time paused.
    pub paused_for: Duration,
    /// `None` when every matching key was deleted.
    pub stopped: Option<Stopped>,
}

impl Outcome {
    /// Several nodes' outcomes as one (a cluster's masters, flushed one
    /// after another): deletions, time and pauses summed, the worst of each
    /// latency figure, and the first node that stopped says why.
    pub fn combine(parts: Vec<Outcome>) -> Outcome {
        let mut all = Outcome {
            deleted: 0,
            elapsed: Duration::ZERO,
            latency: LatencyStats::default(),
            pauses: 0,
            paused_for: Duration::ZERO,
            stopped: None,
        };
        for o in parts {
            all.deleted += o.deleted;
            all.elapsed += o.elapsed;
            all.pauses += o.pauses;
            all.paused_for += o.paused_for;
            all.latency.samples += o.latency.samples;
            all.latency.p50 = all.latency.p50.max(o.latency.p50);
            all.latency.p99 = all.latency.p99.max(o.latency.p99);
            all.latency.max = all.latency.max.max(o.latency.max);
            if all.stopped.is_none() {
                all.stopped = o.stopped;
            }
        }
        all
    }
}

/// One master's share of a cluster flush: a row of the record's table.
#[derive(Debug, Clone)]
pub struct NodeRow {
    /// The master, redacted.
    pub node: String,
    /// Keys it held that matched, and keys it held.
    pub matched: u64,
    /// Keys it held.
    pub total: u64,
    /// Keys UNLINK removed there.
    pub deleted: u64,
    /// Its snapshot, or why there is none.
    pub snapshot: String,
    /// The 99th percentile round trip the guard saw there.
    pub p99: Duration,
    /// How it ended.
    pub outcome: String,
}

/// How a flush (or one node's share) ended, in words for the record.
pub fn outcome_text(stopped: &Option<Stopped>) -> String {
    match stopped {
        None => "every matching key deleted".into(),
        Some(Stopped::Interrupted) => "interrupted; run the same command again to continue".into(),
        Some(Stopped::Failed(e)) => format!("failed: {e}; run the same command again to continue"),
    }
}

/// A snapshot as the record says it.
pub fn snapshot_text(snapshot: Result<&Snapshot, &str>) -> String {
    match snapshot {
        Ok(snap) => format!(
            "{} completed at {} (took {:.1} s)",
            snap.kind,
            chrono::DateTime::from_timestamp(snap.at, 0)
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| snap.at.to_string()),
            snap.took.as_secs_f64()
        ),
        Err(why) => why.to_string(),
    }
}

/// PINGs Redis on its own connection while the flush runs and raises
/// `paused` while the round trip is above the limit: a separate connection
/// sees the queue other clients see, where our own would only time itself.
struct Guard {
    paused: Arc<AtomicBool>,
    last: Arc<Mutex<Duration>>,
    samples: Arc<Mutex<Vec<Duration>>>,
    done: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Guard {
    fn start(mut conn: MultiplexedConnection, max: Duration) -> Guard {
        let paused = Arc::new(AtomicBool::new(false));
        let last = Arc::new(Mutex::new(Duration::ZERO));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let (p, l, s, d) = (paused.clone(), last.clone(), samples.clone(), done.clone());
        let task = tokio::spawn(async move {
            while !d.load(Ordering::SeqCst) {
                let t0 = Instant::now();
                let r = tokio::time::timeout(Duration::from_secs(1), redis::cmd("PING").query_async::<String>(&mut conn)).await;
                let rtt = t0.elapsed();
                match r {
                    Ok(Ok(_)) => {
                        if let Ok(mut v) = s.lock() {
                            v.push(rtt);
                        }
                        if let Ok(mut v) = l.lock() {
                            *v = rtt;
                        }
                        p.store(rtt > max, Ordering::SeqCst);
                    }
                    // No answer in a second is as slow as it gets.
                    _ => {
                        if let Ok(mut v) = l.lock() {
                            *v = rtt;
                        }
                        p.store(true, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(GUARD_EVERY).await;
            }
        });
        Guard {
            paused,
            last,
            samples,
            done,
            task,
        }
    }

    fn last(&self) -> Duration {
        self.last.lock().map(|v| *v).unwrap_or_default()
    }

    async fn stop(self) -> LatencyStats {
        self.done.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        let samples = self.samples.lock().map(|v| v.clone()).unwrap_or_default();
        LatencyStats::of(samples)
    }
}

/// Step 3: UNLINK in batches the keys the survey found (`known`), or,
/// without them, SCAN and UNLINK until SCAN has walked the whole keyspace.
/// Keys written after the survey are then left: they were cached from the
/// database after the decision to flush, so they are fresh. Each round trip carries the UNLINK of one batch and, when the
/// keys in hand run low, the next SCAN, pipelined; the pace is held to
/// `plan.rate` by waiting after each batch until the keys deleted fit the
/// budget. The guard (on `guard_conn`) pauses it while Redis is slow,
/// [`MAX_PAUSE`] at most. `stop` ends it after the batch in flight; the
/// keys left are found by the next run's SCAN. `progress` is called after
/// every batch and every pause.
pub async fn execute(
    conn: &mut MultiplexedConnection,
    guard_conn: MultiplexedConnection,
    plan: &Plan,
    known: Option<Vec<Vec<u8>>>,
    stop: &AtomicBool,
    mut progress: impl FnMut(&Tick),
) -> Outcome {
    let guard = Guard::start(guard_conn, plan.max_latency);
    let batch = plan.rate.batch(plan.scan_count);
    let start = Instant::now();
    let mut budget_from = start;
    let mut budget_deleted = 0u64;
    let mut deleted = 0u64;
    let mut pauses = 0u32;
    let mut paused_for = Duration::ZERO;
    let mut scanned = known.is_some();
    let mut keys: VecDeque<Vec<u8>> = known.map(VecDeque::from).unwrap_or_default();
    let mut cursor = 0u64;
    let tick = |deleted: u64, paused_at: Option<Duration>| Tick {
        deleted,
        expected: plan.expected,
        elapsed: start.elapsed(),
        paused_at,
    };
    let stopped = loop {
        if stop.load(Ordering::SeqCst) {
            break Some(Stopped::Interrupted);
        }
        if guard.paused.load(Ordering::SeqCst) {
            pauses += 1;
            let since = Instant::now();
            progress(&tick(deleted, Some(guard.last())));
            while guard.paused.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) && since.elapsed() < MAX_PAUSE {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            paused_for += since.elapsed();
            if guard.paused.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
                break Some(Stopped::Failed(FlushError(format!(
                    "Redis's round trip stayed above {:?} for {}s; stopped (run again to continue)",
                    plan.max_latency,
                    MAX_PAUSE.as_secs()
                ))));
            }
            // No catching up after a pause: that burst is what the pause avoided.
            budget_from = Instant::now();
            budget_deleted = 0;
            continue;
        }
        let need_scan = !scanned && keys.len() < batch;
        let take: Vec<Vec<u8>> = keys.drain(..batch.min(keys.len())).collect();
        let result = match (take.is_empty(), need_scan) {
            (true, false) => break None,
            (false, false) => unlink(conn, &take).await.map(|n| (n, None)),
            (true, true) => scan(conn, cursor, &plan.pattern, plan.scan_count).await.map(|s| (0, Some(s))),
            (false, true) => redis::pipe()
                .cmd("UNLINK")
                .arg(&take)
                .cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&plan.pattern)
                .arg("COUNT")
                .arg(plan.scan_count)
                .query_async::<(u64, (u64, Vec<Vec<u8>>))>(conn)
                .await
                .map(|(n, s)| (n, Some(s)))
                .map_err(|e| FlushError::redis("UNLINK and SCAN", &e)),
        };
        let (n, scanned_now) = match result {
            Ok(r) => r,
            Err(e) => break Some(Stopped::Failed(e)),
        };
        deleted += n;
        budget_deleted += n;
        if let Some((next, found)) = scanned_now {
            keys.extend(found);
            cursor = next;
            scanned = next == 0;
        }
        if !take.is_empty() {
            if let Rate::PerSecond(r) = plan.rate {
                let due = budget_from + Duration::from_secs_f64(budget_deleted as f64 / f64::from(r));
                tokio::time::sleep_until(due.into()).await;
            }
            // After the wait: the rate shown is the rate kept.
            progress(&tick(deleted, None));
        }
    };
    let elapsed = start.elapsed();
    progress(&Tick {
        deleted,
        expected: plan.expected,
        elapsed,
        paused_at: None,
    });
    Outcome {
        deleted,
        elapsed,
        latency: guard.stop().await,
        pauses,
        paused_for,
        stopped,
    }
}

async fn unlink(conn: &mut MultiplexedConnection, keys: &[Vec<u8>]) -> Result<u64, FlushError> {
    redis::cmd("UNLINK")
        .arg(keys)
        .query_async(conn)
        .await
        .map_err(|e| FlushError::redis("UNLINK", &e))
}

/// One `--warm` URL's answer.
#[derive(Debug, Clone)]
pub struct Warmed {
    /// The URL, redacted.
    pub url: String,
    /// The HTTP status, or why there was none.
    pub result: Result<u16, String>,
}

impl Warmed {
    /// A 2xx answer.
    pub fn ok(&self) -> bool {
        matches!(self.result, Ok(s) if (200..300).contains(&s))
    }
}

/// Step 4: GETs each URL once, in order, so the pages users hit first are
/// cached again by the application before they arrive.
pub async fn warm(urls: &[String], timeout: Duration) -> Vec<Warmed> {
    let client = match crate::http::client_builder(timeout).build() {
        Ok(c) => c,
        Err(e) => {
            let why = crate::http::describe(&e);
            return urls
                .iter()
                .map(|u| Warmed {
                    url: redact_url(u),
                    result: Err(why.clone()),
                })
                .collect();
        }
    };
    let mut out = Vec::new();
    for u in urls {
        let result = match client.get(u).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                // Read the body: a page is only cached once it was rendered whole.
                let _ = r.bytes().await;
                Ok(status)
            }
            Err(e) => Err(crate::http::describe(&e)),
        };
        out.push(Warmed {
            url: redact_url(u),
            result,
        });
    }
    out
}

/// Step 5: the change ticket's record.
#[derive(Debug)]
pub struct Record<'a> {
    /// The Redis, redacted, with its database.
    pub target: &'a str,
    /// The pattern.
    pub pattern: &'a str,
    /// Who ran it (`$USER`).
    pub user: &'a str,
    /// When it started and ended.
    pub started: chrono::DateTime<chrono::Utc>,
    /// When it ended.
    pub finished: chrono::DateTime<chrono::Utc>,
    /// Step 1's count.
    pub survey: &'a Survey,
    /// Step 2's snapshot, or why there is none.
    pub snapshot: Result<&'a Snapshot, &'a str>,
    /// The rate cap and latency limit used.
    pub rate: Rate,
    /// The latency limit.
    pub max_latency: Duration,
    /// Step 3.
    pub outcome: &'a Outcome,
    /// Hits and misses before and after.
    pub hits_before: Option<Hits>,
    /// After the flush (and the warming).
    pub hits_after: Option<Hits>,
    /// Step 4.
    pub warmed: &'a [Warmed],
    /// Per master, for a cluster (empty for one Redis).
    pub nodes: &'a [NodeRow],
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn pct(r: Option<f64>) -> String {
    r.map(|r| format!("{:.1} %", r * 100.0))
        .unwrap_or_else(|| "n/a (no lookups)".into())
}

/// A byte count in binary units: `1.5 MiB`.
pub fn bytes(v: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = v as f64;
    let mut i = 0;
    while x >= 1024.0 && i < UNITS.len() - 1 {
        x /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{v} B") } else { format!("{x:.1} {}", UNITS[i]) }
}

impl Record<'_> {
    /// The outcome in one word, as the title says it.
    pub fn status(&self) -> &'static str {
        match &self.outcome.stopped {
            None => "done",
            Some(Stopped::Interrupted) => "interrupted",
            Some(Stopped::Failed(_)) => "failed",
        }
    }

    /// The record as Markdown, for pasting into the change ticket.
    pub fn render(&self) -> String {
        let o = self.outcome;
        let mut s = String::new();
        let _ = writeln!(s, "# Redis controlled flush: {}\n", self.status());
        let _ = writeln!(s, "| | |\n|---|---|");
        let mut row = |k: &str, v: String| {
            let _ = writeln!(s, "| {k} | {} |", v.replace('|', "\\|"));
        };
        row("what", format!("UNLINK of the keys matching `{}` on {}", self.pattern, self.target));
        row(
            "when",
            format!("{} to {} (UTC)", self.started.to_rfc3339(), self.finished.to_rfc3339()),
        );
        row("by", self.user.to_string());
        row("pattern", format!("`{}`", self.pattern));
        row(
            "keys matched",
            format!("{} of {} in the database", self.survey.matched, self.survey.total),
        );
        row(
            "estimated memory",
            self.survey
                .estimated_bytes()
                .map(|b| format!("{} (MEMORY USAGE of {} keys, extrapolated)", bytes(b), self.survey.memory_keys))
                .unwrap_or_else(|| "unknown (MEMORY USAGE unavailable)".into()),
        );
        row("keys deleted", o.deleted.to_string());
        row("snapshot", snapshot_text(self.snapshot));
        row(
            "duration",
            format!(
                "{:.1} s at {:.0} keys/s (cap {})",
                o.elapsed.as_secs_f64(),
                if o.elapsed.as_secs_f64() > 0.0 {
                    o.deleted as f64 / o.elapsed.as_secs_f64()
                } else {
                    0.0
                },
                self.rate
            ),
        );
        row(
            "latency during the flush",
            format!(
                "p50 {}, p99 {}, max {} ({} PINGs on a separate connection)",
                ms(o.latency.p50),
                ms(o.latency.p99),
                ms(o.latency.max),
                o.latency.samples
            ),
        );
        row(
            "latency pauses",
            format!(
                "{} (above {}), {:.1} s in all",
                o.pauses,
                ms(self.max_latency),
                o.paused_for.as_secs_f64()
            ),
        );
        row("hit rate before (since Redis started)", pct(self.hits_before.and_then(Hits::ratio)));
        row("hit rate after (since Redis started)", pct(self.hits_after.and_then(Hits::ratio)));
        if let (Some(b), Some(a)) = (self.hits_before, self.hits_after) {
            row("hit rate during the flush", pct(b.ratio_until(a)));
        }
        for w in self.warmed {
            row(
                "warmed",
                match &w.result {
                    Ok(st) => format!("{} → {st}", w.url),
                    Err(e) => format!("{} → failed: {e}", w.url),
                },
            );
        }
        row("outcome", outcome_text(&o.stopped));
        if !self.nodes.is_empty() {
            let _ = writeln!(
                s,
                "\n## Per master\n\n| master | keys matched | keys deleted | snapshot | latency p99 | outcome |\n|---|---|---|---|---|---|"
            );
            for n in self.nodes {
                let cells = [
                    n.node.clone(),
                    format!("{} of {}", n.matched, n.total),
                    n.deleted.to_string(),
                    n.snapshot.clone(),
                    ms(n.p99),
                    n.outcome.clone(),
                ];
                let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
                let _ = writeln!(s, "| {} |", cells.join(" | "));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!("5000/s".parse::<Rate>(), Ok(Rate::PerSecond(5000)));
        assert_eq!("250".parse::<Rate>(), Ok(Rate::PerSecond(250)));
        assert_eq!("unlimited".parse::<Rate>(), Ok(Rate::Unlimited));
        assert!("0/s".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
        assert_eq!(Rate::PerSecond(1000).batch(1000), 100);
        assert_eq!(Rate::PerSecond(5).batch(1000), 1);
        assert_eq!(Rate::Unlimited.batch(500), 500);
    }

    #[test]
    fn percentiles() {
        let s = LatencyStats::of((1..=100).map(Duration::from_millis).collect());
        assert_eq!(s.p50, Duration::from_millis(51));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.max, Duration::from_millis(100));
        assert_eq!(LatencyStats::of(Vec::new()).samples, 0);
    }
}
