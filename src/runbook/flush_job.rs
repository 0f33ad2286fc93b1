//! The controlled flush run by the daemon (`POST /api/v1/redis/flushes`),
//! so that its progress is on `/metrics` beside everything else the daemon
//! exports, and its record stays in the history instead of a file on
//! somebody's laptop.
//!
//! The steps are [`super::flush`]'s, in the command line's order (survey,
//! snapshot, execute, warm, [`Record::render`]); what this module adds is
//! what a daemon needs: a request checked whole before anything starts
//! ([`FlushRequest::validate`]), one flush at a time per Redis (a second
//! one is refused, not queued: two flushes of one Redis would race for the
//! same keys and halve each other's rate), progress readable while it runs
//! ([`Progress`]), a stop that ends it after the batch in flight (`DELETE`
//! on the API, or the daemon's shutdown, as Ctrl-C does on the command
//! line), and the record written to the history whatever the outcome.
//!
//! "Whatever the outcome" includes a daemon killed in the middle (SIGKILL,
//! the OOM killer, a lost node), which runs no code at all: so the row is
//! written when the flush starts and rewritten every [`PROGRESS_EVERY`]
//! while it runs, and the next daemon turns a row still running into an
//! `interrupted` one when it opens the history (`store`).
//!
//! "One Redis" is its address and database, not the probe that names it:
//! two probes may name the same server. A `redis` probe's URL says it when
//! the request is checked (a second flush is refused with 409); a cluster's
//! masters and the sentinels' master are known once they are asked, when
//! the flush starts, and a flush that finds another one already on one of
//! them ends `failed` before touching anything, naming it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::flush::{self, Hits, Plan, Rate, Record, Stopped, Survey};
use crate::config::{Secret, redact_url};
use crate::probe::{ProbeSpec, RedisSpec, unix_now};
use crate::relay::{Relay, RelaySlot};
use crate::store::{History, StoredFlush};
use crate::task::Tasks;

/// How long connecting and each command may take before it is an error.
const REDIS_TIMEOUT: Duration = Duration::from_secs(10);

/// Finished flushes kept in memory for `GET …/flushes/{id}` (older ones
/// are read from the history).
const KEEP: usize = 50;

/// Matching keys a dry run's record lists.
const SAMPLE: usize = 10;

/// How often a running flush's figures are written to the history: what a
/// kill loses of the count of keys deleted. At the default 5000 keys/s a
/// row a couple of seconds stale is 10,000 keys uncounted (a re-run finds
/// them gone, nothing else), and a row every 2 s is nothing to the writer,
/// which takes thousands a second.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// A flush as asked for over the API: the command line's flags as JSON.
/// Unknown fields are refused, so a misspelt `execute` is an error rather
/// than a silent dry run.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FlushRequest {
    /// The configured `redis`, `redis_cluster` or `redis_sentinel` probe
    /// whose Redis is flushed [default: the first `redis`, else
    /// `redis_cluster`, else `redis_sentinel` one].
    #[serde(default)]
    pub probe: Option<String>,
    /// The SCAN MATCH glob.
    #[serde(rename = "match")]
    pub pattern: String,
    /// Logical database (a `redis` probe only) [default: the probe URL's].
    #[serde(default)]
    pub db: Option<u32>,
    /// Most keys deleted a second: `5000/s` or `unlimited` [default `5000/s`].
    #[serde(default)]
    pub rate: Option<String>,
    /// Pause while Redis's round trip is above this [default `5ms`].
    #[serde(default)]
    pub max_latency: Option<String>,
    /// A snapshot first [default true].
    #[serde(default)]
    pub snapshot: Option<bool>,
    /// How long the snapshot may take [default `10m`].
    #[serde(default)]
    pub snapshot_timeout: Option<String>,
    /// SCAN's COUNT [default 500; 1 to 100000].
    #[serde(default)]
    pub scan_count: Option<u32>,
    /// Delete; without it only count (a dry run).
    #[serde(default)]
    pub execute: bool,
    /// URLs to GET after the flush.
    #[serde(default)]
    pub warm: Vec<String>,
    /// Who asks, for the record [default: the listener's basic-auth user, else `api`].
    #[serde(default)]
    pub user: Option<String>,
    /// Relay destinations (`relay.destinations`) the record is queued for
    /// once the flush has deleted, as the command line's `--notify`.
    #[serde(default)]
    pub notify: Vec<String>,
    /// After a complete flush, follow the hit rate's recovery this long
    /// (`5m`), then run `lookout verify --after flush`; both go into the
    /// record, as the command line's `--watch`.
    #[serde(default)]
    pub watch: Option<String>,
}

/// A request checked against the configuration: everything the run needs.
#[derive(Debug, Clone)]
pub struct Order {
    /// The probe's name: what metrics are labelled with.
    pub probe: String,
    /// The Redis servers known from the configuration alone (see
    /// [`redis_key`]): what a second flush is refused on at once.
    redis: Vec<String>,
    /// The request with its defaults filled in, for the record.
    asked: serde_json::Value,
    /// Where the request came from, when known.
    origin: String,
    target: Target,
    plan: Plan,
    snapshot: bool,
    snapshot_timeout: Duration,
    execute: bool,
    warm: Vec<String>,
    user: String,
    notify: Vec<String>,
    watch: Option<Duration>,
    /// The configuration in force when it was asked: what the verify after
    /// the watch checks.
    config: Option<Arc<dyn super::verify::VerifyConfig>>,
}

#[derive(Debug, Clone)]
enum Target {
    One(RedisSpec),
    Cluster(crate::probe::RedisClusterSpec),
    Sentinel(crate::probe::RedisSentinelSpec),
}

fn duration(field: &str, v: Option<&str>, default: Duration) -> Result<Duration, String> {
    match v {
        None => Ok(default),
        Some(s) => humantime::parse_duration(s).map_err(|e| format!("`{field}`: `{s}` is not a duration ({e})")),
    }
}

impl FlushRequest {
    /// Checks the request against `probes` and `relay` (the configuration
    /// in force); the error is the reason a client gets with its 400.
    pub fn validate(
        self,
        probes: &[crate::probe::ProbeConfig],
        relay: Option<&crate::relay::config::RelayConfig>,
        auth_user: Option<String>,
    ) -> Result<Order, String> {
        if self.pattern.is_empty() {
            return Err("`match` needs a pattern (`*` for every key)".into());
        }
        // Checked before anything is deleted: a typo found after the flush
        // would leave the change unannounced.
        if !self.notify.is_empty() {
            let Some(relay) = relay else {
                return Err("`notify` needs the relay: the configuration has no `relay` section".into());
            };
            for name in &self.notify {
                if !relay.destinations.iter().any(|d| &d.name == name) {
                    let known: Vec<&str> = relay.destinations.iter().map(|d| d.name.as_str()).collect();
                    return Err(format!(
                        "`notify`: no destination named `{name}` (configured: {})",
                        if known.is_empty() { "none".to_string() } else { known.join(", ") }
                    ));
                }
            }
        }
        let named = || probes.iter().filter(|p| self.probe.as_deref().is_none_or(|n| p.name == n));
        let found = named()
            .find(|p| matches!(p.spec, ProbeSpec::Redis(_)))
            .or_else(|| named().find(|p| matches!(p.spec, ProbeSpec::RedisCluster(_))))
            .or_else(|| named().find(|p| matches!(p.spec, ProbeSpec::RedisSentinel(_))));
        let Some(p) = found else {
            return Err(match &self.probe {
                Some(n) if probes.iter().any(|p| &p.name == n) => {
                    format!("probe `{n}` is not a `redis`, `redis_cluster` or `redis_sentinel` probe")
                }
                Some(n) => format!("no probe named `{n}` in the configuration"),
                None => "no `redis`, `redis_cluster` or `redis_sentinel` probe in the configuration".into(),
            });
        };
        let target = match (&p.spec, self.db) {
            (ProbeSpec::Redis(r), db) => Target::One(with_db(r, db)?),
            (ProbeSpec::RedisCluster(c), None | Some(0)) => Target::Cluster(c.clone()),
            (ProbeSpec::RedisCluster(_), Some(_)) => return Err("`db`: a Redis Cluster has database 0 only".into()),
            (ProbeSpec::RedisSentinel(s), None) => Target::Sentinel(s.clone()),
            (ProbeSpec::RedisSentinel(_), Some(_)) => {
                return Err("`db` does not apply through sentinels: the probe's URL names the database".into());
            }
            _ => return Err("not a Redis probe".into()),
        };
        let redis = match &target {
            Target::One(spec) => vec![redis_key_of_url(spec.url.expose())?],
            Target::Cluster(c) => c.seeds.iter().map(|s| format!("{}/0", s.to_ascii_lowercase())).collect(),
            // The sentinels name the master when the flush starts.
            Target::Sentinel(_) => Vec::new(),
        };
        let rate: Rate = match &self.rate {
            None => Rate::PerSecond(5000),
            Some(r) => r.parse().map_err(|e| format!("`rate`: {e}"))?,
        };
        let scan_count = self.scan_count.unwrap_or(500);
        if !(1..=100_000).contains(&scan_count) {
            return Err(format!("`scan_count`: {scan_count} is not between 1 and 100000"));
        }
        for u in &self.warm {
            if !u.starts_with("http://") && !u.starts_with("https://") {
                return Err(format!("`warm`: `{}` is not an http(s) URL", redact_url(u)));
            }
        }
        let max_latency = duration("max_latency", self.max_latency.as_deref(), Duration::from_millis(5))?;
        let snapshot = self.snapshot.unwrap_or(true);
        let snapshot_timeout = duration("snapshot_timeout", self.snapshot_timeout.as_deref(), Duration::from_secs(600))?;
        let watch = match self.watch.as_deref() {
            None => None,
            Some(w) => Some(duration("watch", Some(w), Duration::ZERO)?).filter(|d| !d.is_zero()),
        };
        let asked = serde_json::json!({
            "probe": p.name,
            "match": self.pattern,
            "db": self.db,
            "rate": rate.to_string(),
            "max_latency": humantime::format_duration(max_latency).to_string(),
            "snapshot": snapshot,
            "snapshot_timeout": humantime::format_duration(snapshot_timeout).to_string(),
            "scan_count": scan_count,
            "execute": self.execute,
            "warm": self.warm.iter().map(|u| redact_url(u)).collect::<Vec<_>>(),
            "notify": self.notify,
            "watch": watch.map(|w| humantime::format_duration(w).to_string()),
        });
        Ok(Order {
            probe: p.name.clone(),
            redis,
            asked,
            origin: String::new(),
            target,
            plan: Plan {
                pattern: self.pattern,
                scan_count,
                rate,
                max_latency,
                expected: 0,
            },
            snapshot,
            snapshot_timeout,
            execute: self.execute,
            warm: self.warm,
            user: self.user.or(auth_user).unwrap_or_else(|| "api".into()),
            notify: self.notify,
            watch,
            config: None,
        })
    }
}

impl Order {
    /// Where the request came from (the client's address), for the record.
    pub fn from(mut self, origin: Option<String>) -> Order {
        self.origin = origin.unwrap_or_default();
        self
    }

    /// The configuration the verify after a watch checks.
    pub fn checked_with(mut self, config: Arc<dyn super::verify::VerifyConfig>) -> Order {
        self.config = Some(config);
        self
    }
}

/// What identifies one Redis for the one-at-a-time rule: `host:port/db`
/// (the host lowercased; TLS or not, the same server), or the socket's path.
/// Names are compared as written: `localhost` and `127.0.0.1` are two.
fn redis_key(info: &redis::ConnectionInfo) -> String {
    let db = info.redis_settings().db();
    match info.addr() {
        redis::ConnectionAddr::Tcp(host, port) | redis::ConnectionAddr::TcpTls { host, port, .. } => {
            format!("{}:{port}/{db}", host.to_ascii_lowercase())
        }
        redis::ConnectionAddr::Unix(path) => format!("unix:{}/{db}", path.display()),
        other => format!("{other}/{db}"),
    }
}

/// [`redis_key`] of a Redis URL, without its credentials.
fn redis_key_of_url(url: &str) -> Result<String, String> {
    use redis::IntoConnectionInfo;
    url.into_connection_info()
        .map(|i| redis_key(&i))
        .map_err(|_| "the probe's Redis URL does not parse".to_string())
}

/// The probe's spec with its database set to `db`.
fn with_db(spec: &RedisSpec, db: Option<u32>) -> Result<RedisSpec, String> {
    let Some(db) = db else { return Ok(spec.clone()) };
    let mut u = url::Url::parse(spec.url.expose()).map_err(|_| "the probe's Redis URL does not parse".to_string())?;
    u.set_path(&format!("/{db}"));
    let url = u.to_string();
    Ok(RedisSpec {
        display_url: redact_url(&url),
        url: Secret::new(url),
        ..spec.clone()
    })
}

/// Where a flush stands. `surveying`, `snapshot`, `deleting`, `paused` and
/// `watching` are under way; the others are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Counting the matching keys.
    Surveying,
    /// Waiting for the snapshot.
    Snapshot,
    /// Deleting.
    Deleting,
    /// Held by the latency guard.
    Paused,
    /// Every matching key deleted; following the hit rate's recovery, then
    /// verifying (the request's `watch`).
    Watching,
    /// Every matching key deleted.
    Done,
    /// Counted only (no `execute`).
    DryRun,
    /// Stopped between batches (`DELETE`, or the daemon shut down).
    Interrupted,
    /// An error (the snapshot included: then nothing was deleted).
    Failed,
}

impl State {
    /// Whether the flush has ended.
    pub fn is_final(self) -> bool {
        matches!(self, State::Done | State::DryRun | State::Interrupted | State::Failed)
    }

    /// As in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Surveying => "surveying",
            State::Snapshot => "snapshot",
            State::Deleting => "deleting",
            State::Paused => "paused",
            State::Watching => "watching",
            State::Done => "done",
            State::DryRun => "dry_run",
            State::Interrupted => "interrupted",
            State::Failed => "failed",
        }
    }
}

/// A flush as `GET /api/v1/redis/flushes/{id}` shows it. The JSON form is
/// a stable interface.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// Its id.
    pub id: String,
    /// The probe that names the Redis.
    pub probe: String,
    /// The Redis, redacted (a cluster's or the sentinels' master once known).
    pub target: String,
    /// The pattern.
    pub pattern: String,
    /// Whether it deletes (false: a dry run).
    pub execute: bool,
    /// Where it stands.
    pub state: State,
    /// Keys the survey matched.
    pub matched: u64,
    /// Keys in the database(s).
    pub total: u64,
    /// Keys deleted so far.
    pub deleted: u64,
    /// Keys a second so far.
    pub keys_per_second: f64,
    /// While paused: the round trip that paused it, in seconds.
    pub paused_at_seconds: Option<f64>,
    /// Who asked.
    pub user: String,
    /// Where the request came from (the client's address), when known.
    pub origin: String,
    /// What was asked: the request with its defaults filled in.
    pub request: serde_json::Value,
    /// When it started, Unix seconds.
    pub started: f64,
    /// When it ended.
    pub finished: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Whether a stop was asked for.
    pub stop_requested: bool,
    /// The Markdown record, once it ended.
    pub record: Option<String>,
}

impl Progress {
    /// As the history keeps it, as of now.
    pub fn stored(&self) -> StoredFlush {
        StoredFlush {
            id: self.id.clone(),
            probe: self.probe.clone(),
            target: self.target.clone(),
            pattern: self.pattern.clone(),
            state: self.state.as_str().to_string(),
            user: self.user.clone(),
            origin: self.origin.clone(),
            request: self.request.clone(),
            started: self.started,
            finished: self.finished.unwrap_or(self.started),
            updated: self.finished.unwrap_or_else(unix_now),
            error: self.error.clone(),
            matched: self.matched,
            deleted: self.deleted,
            record: self.record.clone().unwrap_or_default(),
        }
    }
}

/// One flush the daemon runs or ran.
struct Job {
    progress: Mutex<Progress>,
    stop: AtomicBool,
    /// The Redis servers it acts on ([`redis_key`]): those the
    /// configuration names at once, the resolved ones when it starts.
    redis: Mutex<Vec<String>>,
}

impl Job {
    fn update(&self, f: impl FnOnce(&mut Progress)) {
        f(&mut self.progress.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn snapshot(&self) -> Progress {
        self.progress.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn redis(&self) -> Vec<String> {
        self.redis.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The flushes in memory, oldest first.
type Jobs = Arc<Mutex<VecDeque<Arc<Job>>>>;

/// A running flush other than `me` on one of the servers `redis`: its id
/// and the server.
fn busy_on(jobs: &VecDeque<Arc<Job>>, me: Option<&Arc<Job>>, redis: &[String]) -> Option<(String, String)> {
    jobs.iter()
        .filter(|j| me.is_none_or(|m| !Arc::ptr_eq(j, m)))
        .filter(|j| !j.snapshot().state.is_final())
        .find_map(|j| {
            let theirs = j.redis();
            redis.iter().find(|k| theirs.contains(k)).map(|k| (j.snapshot().id, k.clone()))
        })
}

/// Why a flush was not started.
#[derive(Debug)]
pub enum Refused {
    /// One is already running on the same Redis: its id, and the Redis
    /// (`host:port/db`).
    Busy(String, String),
}

/// The daemon's flushes: the one running per Redis, and the last
/// [`KEEP`] finished ones. A std mutex: held for a lookup or a push, never
/// across an await.
pub struct FlushJobs {
    jobs: Jobs,
    history: History,
    tasks: Tasks,
    relay: Option<Arc<RelaySlot>>,
}

impl FlushJobs {
    /// Flushes run as `tasks` (shutdown stops them after the batch in
    /// flight and waits), are recorded in `history`, and their records
    /// queued through `relay` for a request's `notify`.
    pub fn new(history: History, tasks: Tasks, relay: Option<Arc<RelaySlot>>) -> FlushJobs {
        FlushJobs {
            jobs: Arc::new(Mutex::new(VecDeque::new())),
            history,
            tasks,
            relay,
        }
    }

    /// Starts `order`, unless a flush of the same Redis is under way, and
    /// writes its row to the history at once.
    pub fn start(&self, order: Order) -> Result<Progress, Refused> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((id, redis)) = busy_on(&jobs, None, &order.redis) {
            return Err(Refused::Busy(id, redis));
        }
        let started = unix_now();
        let progress = Progress {
            id: new_id(started),
            probe: order.probe.clone(),
            target: String::new(),
            pattern: order.plan.pattern.clone(),
            execute: order.execute,
            state: State::Surveying,
            matched: 0,
            total: 0,
            deleted: 0,
            keys_per_second: 0.0,
            paused_at_seconds: None,
            user: order.user.clone(),
            origin: order.origin.clone(),
            request: order.asked.clone(),
            started,
            finished: None,
            error: None,
            stop_requested: false,
            record: None,
        };
        let job = Arc::new(Job {
            progress: Mutex::new(progress.clone()),
            stop: AtomicBool::new(false),
            redis: Mutex::new(order.redis.clone()),
        });
        self.history.record_flush(progress.stored());
        jobs.push_back(job.clone());
        while jobs.len() > KEEP {
            match jobs.iter().position(|j| j.snapshot().state.is_final()) {
                Some(i) => {
                    jobs.remove(i);
                }
                None => break,
            }
        }
        let (history, stopping, all, relay) = (self.history.clone(), self.tasks.stopping(), self.jobs.clone(), self.relay.clone());
        self.tasks.spawn(async move {
            // The daemon's shutdown is a stop like any other.
            let watch_job = job.clone();
            let watch = tokio::spawn(async move {
                stopping.cancelled().await;
                watch_job.stop.store(true, Ordering::SeqCst);
                watch_job.update(|p| p.stop_requested = true);
            });
            // The relay as it is when the flush is done: its store may open late.
            run(&job, order, &all, &history, relay.as_deref()).await;
            watch.abort();
            history.record_flush(job.snapshot().stored());
        });
        Ok(progress)
    }

    /// The flush `id` when it is in memory.
    pub fn get(&self, id: &str) -> Option<Progress> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.iter().map(|j| j.snapshot()).find(|p| p.id == id)
    }

    /// Every flush in memory, newest first.
    pub fn list(&self) -> Vec<Progress> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.iter().rev().map(|j| j.snapshot()).collect()
    }

    /// Asks the flush `id` to stop after the batch in flight; `None` when
    /// no such flush is in memory.
    pub fn stop(&self, id: &str) -> Option<Progress> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let job = jobs.iter().find(|j| j.snapshot().id == id)?;
        if !job.snapshot().state.is_final() {
            job.stop.store(true, Ordering::SeqCst);
            job.update(|p| p.stop_requested = true);
        }
        Some(job.snapshot())
    }
}

/// `YYYYMMDDTHHMMSSZ-` and 8 hex digits: sorts by time, and two flushes in
/// one second differ.
fn new_id(now: f64) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now.to_bits());
    let when = chrono::DateTime::from_timestamp(now as i64, 0).unwrap_or_default();
    format!("{}-{:08x}", when.format("%Y%m%dT%H%M%SZ"), h.finish() as u32)
}

/// Counts a flush of `probe` in or out of `lookout_flush_running`: a count
/// rather than a 1/0, since one probe may flush two databases at once (its
/// own and another `db`), and the first to end must not say the other
/// stopped. Ending also clears `lookout_flush_paused`.
fn running(probe: &str, starts: bool) {
    let g = metrics::gauge!("lookout_flush_running", "probe" => probe.to_string());
    if starts {
        g.increment(1.0);
    } else {
        g.decrement(1.0);
        metrics::gauge!("lookout_flush_paused", "probe" => probe.to_string()).set(0.0);
    }
}

/// Ends the job as `state` with `error`, counts it, and clears the gauges.
fn finish(job: &Job, probe: &str, state: State, error: Option<String>, record: String) {
    let now = unix_now();
    job.update(|p| {
        p.state = state;
        p.error = error;
        p.finished = Some(now);
        p.paused_at_seconds = None;
        p.record = Some(record);
    });
    running(probe, false);
    metrics::counter!("lookout_flush_runs_total", "probe" => probe.to_string(), "outcome" => state.as_str()).increment(1);
    if state == State::Done {
        metrics::gauge!("lookout_flush_last_success_timestamp_seconds", "probe" => probe.to_string()).set(now);
    }
    match state {
        State::Done | State::DryRun => tracing::info!(probe, state = state.as_str(), "Redis flush finished"),
        _ => tracing::warn!(probe, state = state.as_str(), "Redis flush did not finish"),
    }
}

/// The survey, snapshot, deletion and record of one order: the command
/// line's steps, with the job's progress and the metrics kept current.
async fn run(job: &Arc<Job>, order: Order, all: &Jobs, history: &History, relay: Option<&RelaySlot>) {
    let probe = order.probe.as_str();
    // Written at each change of state and every PROGRESS_EVERY while deleting.
    let save = || history.record_flush(job.snapshot().stored());
    let started = chrono::Utc::now();
    running(probe, true);
    let failed = |e: String| {
        let record = format!("# Redis controlled flush: failed\n\nnothing deleted: {e}\n");
        finish(job, probe, State::Failed, Some(e), record);
    };
    let (display, nodes) = match resolve(&order.target).await {
        Ok(t) => t,
        Err(e) => return failed(e),
    };
    job.update(|p| p.target = display.clone());
    // The servers as resolved: a cluster's masters, the sentinels' master.
    let resolved: Vec<String> = nodes.iter().map(|(_, c)| redis_key(c.get_connection_info())).collect();
    {
        let jobs = all.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((id, redis)) = busy_on(&jobs, Some(job), &resolved) {
            drop(jobs);
            return failed(format!(
                "another flush runs on the same Redis ({redis}): {id}; stop it with DELETE /api/v1/redis/flushes/{id}, or wait"
            ));
        }
        let mut mine = job.redis.lock().unwrap_or_else(|p| p.into_inner());
        for k in resolved {
            if !mine.contains(&k) {
                mine.push(k);
            }
        }
    }
    save();

    // 1. Survey every server.
    let mut conns = Vec::new();
    let mut surveys = Vec::new();
    for (d, client) in &nodes {
        let mut conn = match flush::connect(client, d, REDIS_TIMEOUT).await {
            Ok(c) => c,
            Err(e) => return failed(e.to_string()),
        };
        match flush::survey(&mut conn, &order.plan.pattern, order.plan.scan_count, SAMPLE, order.execute).await {
            Ok(s) => surveys.push(s),
            Err(e) => return failed(e.to_string()),
        }
        conns.push(conn);
    }
    let cluster = nodes.len() > 1;
    let survey = if cluster {
        Survey::combine(&surveys, SAMPLE)
    } else {
        surveys.first().cloned().unwrap_or_default()
    };
    metrics::gauge!("lookout_flush_keys_matched", "probe" => probe.to_string()).set(survey.matched as f64);
    job.update(|p| {
        p.matched = survey.matched;
        p.total = survey.total;
    });
    save();
    if !order.execute {
        let record = dry_run_record(&display, &order, &survey, started);
        return finish(job, probe, State::DryRun, None, record);
    }
    if survey.matched == 0 {
        let record = format!(
            "# Redis controlled flush: done\n\nnothing matched `{}` on {display}: nothing deleted\n",
            order.plan.pattern
        );
        return finish(job, probe, State::Done, None, record);
    }

    // 2. Snapshot every server before deleting on any.
    let no_snapshot = "skipped (the request's `snapshot: false`)";
    let mut snapshots = Vec::new();
    if order.snapshot {
        job.update(|p| p.state = State::Snapshot);
        save();
        for ((d, _), conn) in nodes.iter().zip(&mut conns) {
            match flush::snapshot(conn, order.snapshot_timeout, &job.stop).await {
                Ok(s) => snapshots.push(Some(s)),
                Err(stopped) => {
                    let (state, why) = match stopped {
                        Stopped::Interrupted => (State::Interrupted, "interrupted during the snapshot".to_string()),
                        Stopped::Failed(e) => (State::Failed, format!("the snapshot of {d} failed: {e}")),
                    };
                    let record = format!(
                        "# Redis controlled flush: {}\n\nnothing deleted on {display}: {why}\n",
                        state.as_str()
                    );
                    let error = (state == State::Failed).then_some(why);
                    return finish(job, probe, state, error, record);
                }
            }
        }
    } else {
        snapshots.resize(nodes.len(), None);
    }
    let mut hits_before = Vec::new();
    for conn in &mut conns {
        hits_before.push(Hits::read(conn).await.ok());
    }

    // 3. Execute, one server after another.
    job.update(|p| p.state = State::Deleting);
    save();
    let mut last_save = std::time::Instant::now();
    let mut outcomes: Vec<flush::Outcome> = Vec::new();
    let mut rows = Vec::new();
    let mut deleted_before = 0u64;
    for (i, ((d, client), conn)) in nodes.iter().zip(&mut conns).enumerate() {
        if job.stop.load(Ordering::SeqCst) || outcomes.iter().any(|o| o.stopped.is_some()) {
            break;
        }
        let guard_conn = match flush::connect(client, d, REDIS_TIMEOUT).await {
            Ok(c) => c,
            Err(e) => {
                outcomes.push(flush::Outcome::combine(Vec::new()));
                if let Some(last) = outcomes.last_mut() {
                    last.stopped = Some(Stopped::Failed(e));
                }
                break;
            }
        };
        let plan = Plan {
            expected: surveys[i].matched,
            ..order.plan.clone()
        };
        let known = surveys[i].keys.take();
        let mut counted = 0u64;
        let outcome = flush::execute(conn, guard_conn, &plan, known, &job.stop, |t| {
            let delta = t.deleted.saturating_sub(counted);
            counted = t.deleted;
            metrics::counter!("lookout_flush_keys_deleted_total", "probe" => probe.to_string()).increment(delta);
            metrics::gauge!("lookout_flush_paused", "probe" => probe.to_string()).set(if t.paused_at.is_some() { 1.0 } else { 0.0 });
            job.update(|p| {
                p.deleted = deleted_before + t.deleted;
                p.keys_per_second = t.rate();
                p.paused_at_seconds = t.paused_at.map(|d| d.as_secs_f64());
                p.state = if t.paused_at.is_some() { State::Paused } else { State::Deleting };
            });
            if last_save.elapsed() >= PROGRESS_EVERY {
                last_save = std::time::Instant::now();
                save();
            }
        })
        .await;
        deleted_before += outcome.deleted;
        rows.push(flush::NodeRow {
            node: d.clone(),
            matched: surveys[i].matched,
            total: surveys[i].total,
            deleted: outcome.deleted,
            snapshot: flush::snapshot_text(snapshots[i].as_ref().ok_or(no_snapshot)),
            p99: outcome.latency.p99,
            outcome: flush::outcome_text(&outcome.stopped),
        });
        outcomes.push(outcome);
    }
    if outcomes.len() < nodes.len() && outcomes.iter().all(|o| o.stopped.is_none()) {
        // Stopped between two servers: an interruption.
        outcomes.push(flush::Outcome::combine(Vec::new()));
        if let Some(last) = outcomes.last_mut() {
            last.stopped = Some(Stopped::Interrupted);
        }
    }
    let outcome = flush::Outcome::combine(outcomes);

    // 4. Warm, once every matching key is gone.
    let warmed = if outcome.stopped.is_none() && !order.warm.is_empty() {
        flush::warm(&order.warm, REDIS_TIMEOUT).await
    } else {
        Vec::new()
    };
    let mut hits_after = Vec::new();
    for conn in &mut conns {
        hits_after.push(Hits::read(conn).await.ok());
    }
    let hits_sum = |all: &[Option<Hits>]| -> Option<Hits> {
        all.iter().try_fold(Hits::default(), |acc, h| {
            h.map(|h| Hits {
                hits: acc.hits + h.hits,
                misses: acc.misses + h.misses,
            })
        })
    };
    let snapshot = snapshots
        .iter()
        .all(Option::is_some)
        .then(|| snapshots.iter().flatten().cloned().min_by_key(|s| s.at))
        .flatten();
    let stop_note = match (&outcome.stopped, job.snapshot().stop_requested) {
        (Some(Stopped::Interrupted), true) => "stopped on request (API `DELETE`, or the daemon shutting down) after the batch in flight",
        _ => "",
    };
    let record = Record {
        target: &display,
        pattern: &order.plan.pattern,
        user: &order.user,
        started,
        finished: chrono::Utc::now(),
        survey: &survey,
        snapshot: snapshot
            .as_ref()
            .ok_or(if order.snapshot { "per master, below" } else { no_snapshot }),
        rate: order.plan.rate,
        max_latency: order.plan.max_latency,
        outcome: &outcome,
        hits_before: hits_sum(&hits_before),
        hits_after: hits_sum(&hits_after),
        warmed: &warmed,
        nodes: if cluster { &rows } else { &[] },
    };
    let mut text = record.render();
    if !stop_note.is_empty() {
        text.push_str(&format!("\n{stop_note}; run the same flush again to continue.\n"));
    }
    text.push_str(&format!("\nRun by the lookout daemon (probe `{probe}`).\n"));
    let (state, error) = match &outcome.stopped {
        None if warmed.iter().any(|w| !w.ok()) => (State::Failed, Some("flushed, but warming failed".to_string())),
        None => (State::Done, None),
        Some(Stopped::Interrupted) => (State::Interrupted, None),
        Some(Stopped::Failed(e)) => (State::Failed, Some(e.to_string())),
    };
    // 5. Communicate: the record as it stands, queued in the relay's outbox
    // (durable and retried as an alert is) before the flush reads as ended,
    // so whoever follows it sees where the notice went.
    let (state, error) = match notify(
        relay.and_then(RelaySlot::get).map(Arc::as_ref),
        &order.notify,
        &display,
        outcome.deleted,
        &text,
    )
    .await
    {
        Ok(None) => (state, error),
        Ok(Some(line)) => {
            text.push_str(&line);
            (state, error)
        }
        Err(e) => {
            text.push_str(&format!("\nNotice: not queued: {e}\n"));
            match state {
                State::Done => (
                    State::Failed,
                    Some(format!("flushed and recorded, but the notice was not queued: {e}")),
                ),
                _ => (state, error),
            }
        }
    };
    job.update(|p| p.deleted = outcome.deleted);
    // 6. Watch the recovery (on the first server), then verify.
    let (state, error) = match (order.watch, conns.first_mut()) {
        (Some(d), Some(conn)) if state == State::Done => {
            job.update(|p| p.state = State::Watching);
            save();
            let baseline = hits_before.first().copied().flatten().and_then(Hits::ratio);
            let (section, verified) = watch(conn, baseline, d, &job.stop, order.config.as_deref()).await;
            text.push_str(&section);
            if verified {
                (state, error)
            } else {
                (
                    State::Failed,
                    Some("flushed, but `lookout verify --after flush` failed".to_string()),
                )
            }
        }
        _ => (state, error),
    };
    finish(job, probe, state, error, text);
}

/// The hit rate every interval for `duration`, then `lookout verify
/// --after flush` against `config`: the record's sections, and false only
/// when verify failed. The command line's `--watch`, run by the daemon.
async fn watch(
    conn: &mut redis::aio::MultiplexedConnection,
    baseline: Option<f64>,
    duration: Duration,
    stop: &AtomicBool,
    config: Option<&dyn super::verify::VerifyConfig>,
) -> (String, bool) {
    let mut section = match super::recovery::watch(conn, baseline, duration, stop, |_, _| {}).await {
        Ok(r) => r.render(),
        Err(e) => format!("\n## Hit rate after the flush\n\nnot watched: {e}\n"),
    };
    let mut ok = true;
    match config {
        Some(cfg) if !stop.load(Ordering::SeqCst) => {
            let o = super::verify::run(cfg, cfg.prometheus(), Some(super::verify::After::Flush), Duration::from_secs(120)).await;
            section.push('\n');
            section.push_str(&o.markdown());
            ok = o.exit_code() != 1;
        }
        Some(_) => section.push_str("\nverify: not run (stopped)\n"),
        None => section.push_str("\nverify: not run (no configuration)\n"),
    }
    (section, ok)
}

/// Queues the record for the destinations `to`; the line the record gains
/// (none when nothing was asked), or why it could not be queued.
async fn notify(relay: Option<&Relay>, to: &[String], display: &str, deleted: u64, record: &str) -> Result<Option<String>, String> {
    if to.is_empty() {
        return Ok(None);
    }
    let relay = relay.ok_or(
        "the relay is not running in this daemon (its store has not opened yet, or its `relay` section was added after it started: restart it)",
    )?;
    let title = format!("Redis controlled flush on {display}: {deleted} keys deleted");
    let p = crate::relay::template::informational(&title, record);
    relay.send_to(&p, to.to_vec()).await.map_err(|e| e.to_string())?;
    let names: Vec<String> = to.iter().map(|n| format!("`{n}`")).collect();
    tracing::info!(destinations = %to.join(","), "Redis flush record queued for the relay");
    Ok(Some(format!("\nNotice: queued in the relay's outbox for {}.\n", names.join(", "))))
}

/// The record of a dry run: what would be deleted.
fn dry_run_record(display: &str, order: &Order, s: &Survey, started: chrono::DateTime<chrono::Utc>) -> String {
    let memory = s
        .estimated_bytes()
        .map(|b| format!("about {} (MEMORY USAGE of {} keys, extrapolated)", flush::bytes(b), s.memory_keys))
        .unwrap_or_else(|| "unknown".into());
    let mut out = format!(
        "# Redis controlled flush: dry run\n\n| | |\n|---|---|\n| what | the keys matching `{}` on {display} |\n| when | {} (UTC) |\n| by | {} |\n| keys matched | {} of {} in the database |\n| estimated memory | {memory} |\n| keys deleted | 0 (dry run) |\n",
        order.plan.pattern.replace('|', "\\|"),
        started.to_rfc3339(),
        order.user.replace('|', "\\|"),
        s.matched,
        s.total
    );
    if !s.sample.is_empty() {
        out.push_str("\nSample:\n\n");
        for k in &s.sample {
            out.push_str(&format!("- `{k}`\n"));
        }
    }
    out
}

/// The servers: one, a cluster's masters, or the sentinels' master, each
/// reached through the probe's own client (TLS and credentials included).
async fn resolve(target: &Target) -> Result<(String, Vec<(String, redis::Client)>), String> {
    match target {
        Target::One(spec) => {
            let client = crate::probe::redis::client_for(spec)?;
            Ok((spec.display_url.clone(), vec![(spec.display_url.clone(), client)]))
        }
        Target::Cluster(spec) => spec.master_clients(REDIS_TIMEOUT).await,
        Target::Sentinel(spec) => {
            let m = spec.master(REDIS_TIMEOUT).await?;
            let client = crate::probe::redis::client_for(&m)?;
            Ok((m.display_url.clone(), vec![(m.display_url, client)]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> Result<FlushRequest, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn requests_are_checked_whole() {
        assert!(request(r#"{"match": "a:*", "exectue": true}"#).unwrap_err().contains("exectue"));
        assert!(request(r#"{"execute": true}"#).unwrap_err().contains("match"));
        let r = request(r#"{"match": "a:*", "rate": "fast"}"#).unwrap();
        assert!(r.validate(&[], None, None).unwrap_err().contains("no `redis`"));
        let r = request(r#"{"match": "a:*", "notify": ["ops"]}"#).unwrap();
        assert!(r.validate(&[], None, None).unwrap_err().contains("`notify` needs the relay"));
    }

    #[test]
    fn ids_sort_by_time_and_differ() {
        let a = new_id(1_700_000_000.0);
        let b = new_id(1_700_000_000.5);
        assert!(a.starts_with("20231114T221320Z-"), "{a}");
        assert_ne!(a, b);
    }
}
