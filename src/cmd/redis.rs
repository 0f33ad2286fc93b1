//! `lookout redis flush`: the controlled cache flush of
//! deploy/runbooks/redis-controlled-flush.md as one command. The steps are
//! in [`crate::runbook::flush`]; this module adds what only a command line
//! has: which Redis (`--url`, else the configured `redis` probe and its
//! `REDIS_*` convention), the dry run by default, the count typed back,
//! progress on stderr, Ctrl-C, the record file and the exit status.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use super::{EXIT_USAGE, block_on, confirm, fail, spawn_signal_watch, with_config};
use crate::config::{Secret, redact_url, redact_urls_in};
use crate::daemon::ConfigSource;
use crate::probe::ProbeSpec;
use crate::runbook::flush::{self, Hits, Plan, Rate, Record, Stopped, Survey, Tick};

pub use super::EXIT_INTERRUPTED;

/// How long connecting and each command may take before it is an error.
const REDIS_TIMEOUT: Duration = Duration::from_secs(10);

/// `lookout redis …`.
#[derive(Debug, Subcommand)]
pub enum RedisCommand {
    /// Delete the keys matching a pattern, the controlled way: dry run by
    /// default; with --execute, a snapshot first, then SCAN + UNLINK in paced
    /// batches, paused while Redis is slow; a Markdown record at the end.
    /// Exit 0 done (or dry run), 1 failed, 64 usage, 130 interrupted.
    Flush(Box<FlushArgs>),
}

/// `lookout redis flush`'s flags.
#[derive(Debug, Args)]
pub struct FlushArgs {
    /// The keys to delete, as a SCAN MATCH glob (`views.cache.*`).
    #[arg(long = "match", value_name = "PATTERN")]
    pattern: String,
    /// Logical database [default: the URL's, else 0].
    #[arg(long, value_name = "N")]
    db: Option<u32>,
    /// The Redis [default: the configured `redis` probe's, which follows REDIS_URL / REDIS_HOST…].
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Which configured `redis`, `redis_cluster` or `redis_sentinel` probe
    /// names the Redis (through sentinels: their master) [default: the
    /// first `redis` one, else `redis_cluster`, else `redis_sentinel`].
    #[arg(long, value_name = "NAME", conflicts_with = "url")]
    probe: Option<String>,
    /// A Redis Cluster's seed node, `host:port` or `redis://[user:password@]host:port`
    /// (repeatable): the flush runs on every master the cluster lists.
    #[arg(long = "cluster", value_name = "SEED", conflicts_with_all = ["url", "probe"])]
    cluster: Vec<String>,
    /// Delete; without it, only count and show what would be deleted.
    #[arg(long)]
    execute: bool,
    /// With --execute: do not ask for the count to be typed back (for scripts).
    #[arg(long)]
    yes: bool,
    /// Go on without a snapshot first.
    #[arg(long)]
    no_snapshot: bool,
    /// Most keys deleted a second: `5000/s`, or `unlimited`.
    #[arg(long, default_value = "5000/s", value_name = "N/s")]
    rate: Rate,
    /// Pause while Redis's round trip (PING) is above this.
    #[arg(long, default_value = "5ms", value_parser = humantime::parse_duration, value_name = "DURATION")]
    max_latency: Duration,
    /// How long the snapshot may take.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration, value_name = "DURATION")]
    snapshot_timeout: Duration,
    /// SCAN's COUNT: keys looked at per call (each call holds Redis up to a microsecond a key).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000), value_name = "N")]
    scan_count: u32,
    /// Matching keys shown by the dry run.
    #[arg(long, default_value_t = 10, value_name = "N")]
    sample: usize,
    /// A URL to GET after the flush, to warm the cache (repeatable).
    #[arg(long = "warm", value_name = "URL")]
    warm: Vec<String>,
    /// Where the Markdown record goes [default: flush-<timestamp>.md here].
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// After the flush, follow the hit rate's recovery this long (`5m`),
    /// then run `lookout verify --after flush` (with the configuration);
    /// both go into the record.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    watch: Option<Duration>,
    /// After the flush, send the record through this relay destination
    /// (`relay.destinations` in the configuration; repeatable), as an
    /// informational notice.
    #[arg(long = "notify", value_name = "DESTINATION")]
    notify: Vec<String>,
    /// Ask the running daemon at this URL (`http://[user:password@]host:port`,
    /// its `server.listen`; `server.enable_admin_api` on) to run the flush
    /// on its configured probe (`--probe`): its progress is then on the
    /// daemon's /metrics and its record in the daemon's history. This end
    /// follows it and prints the record; Ctrl-C asks the daemon to stop
    /// after the batch in flight. With --notify the daemon queues the
    /// record in its relay; with --watch it watches and verifies.
    #[arg(long, value_name = "URL", conflicts_with_all = ["url", "cluster"])]
    daemon: Option<String>,
}

impl RedisCommand {
    /// Runs the subcommand; the configuration is read only when no `--url`
    /// names the Redis, so an unrelated problem in it does not block a flush.
    pub fn execute(self, src: impl FnOnce() -> ConfigSource) -> ExitCode {
        match self {
            RedisCommand::Flush(args) if args.daemon.is_some() => args.remote().run(),
            RedisCommand::Flush(args) => {
                let given = args.url.is_some() || !args.cluster.is_empty();
                if given && args.notify.is_empty() {
                    args.execute(None, None)
                } else if given {
                    // --notify names the relay's destinations: the configuration is needed.
                    with_config(&src(), |cfg| args.execute(None, Some(cfg)))
                } else {
                    with_config(&src(), |cfg| match pick_probe(cfg, args.probe.as_deref()) {
                        Ok(url) => args.execute(Some(url), Some(cfg)),
                        Err(e) => fail(1, e),
                    })
                }
            }
        }
    }
}

/// The configured `redis`, `redis_cluster` or `redis_sentinel` probe named
/// `name`; without a name the first `redis` probe, else the first
/// `redis_cluster`, else the first `redis_sentinel` one.
fn pick_probe(cfg: &crate::settings::Config, name: Option<&str>) -> Result<Source, String> {
    let named = || cfg.probes.iter().filter(|p| name.is_none_or(|n| p.name == n));
    let redis = named().find_map(|p| match &p.spec {
        ProbeSpec::Redis(r) => Some(Source::Url(r.url.clone())),
        _ => None,
    });
    let cluster = || {
        named().find_map(|p| match &p.spec {
            ProbeSpec::RedisCluster(c) => Some(Source::Cluster(c.clone())),
            _ => None,
        })
    };
    let sentinel = || {
        named().find_map(|p| match &p.spec {
            ProbeSpec::RedisSentinel(s) => Some(Source::Sentinel(s.clone())),
            _ => None,
        })
    };
    redis.or_else(cluster).or_else(sentinel).ok_or_else(|| match name {
        Some(n) => format!("no Redis probe named `{n}` in the configuration; give --url or --cluster"),
        None => "no `redis`, `redis_cluster` or `redis_sentinel` probe in the configuration; give --url or --cluster".into(),
    })
}

/// `url` with its database set to `db`.
fn with_db(url: &str, db: Option<u32>) -> Result<String, String> {
    let mut u = url::Url::parse(url).map_err(|_| "invalid Redis URL".to_string())?;
    if !matches!(u.scheme(), "redis" | "rediss") || u.host_str().is_none_or(str::is_empty) {
        return Err("invalid Redis URL: expected redis://[user:password@]host[:port][/db]".into());
    }
    if let Some(db) = db {
        u.set_path(&format!("/{db}"));
    }
    Ok(u.to_string())
}

/// Which Redis the flush acts on.
enum Source {
    /// One Redis, by URL.
    Url(Secret),
    /// Every master of a Redis Cluster.
    Cluster(crate::probe::RedisClusterSpec),
    /// The master the sentinels name.
    Sentinel(crate::probe::RedisSentinelSpec),
}

/// The Redis servers themselves: one, or a cluster's masters found when
/// the flush starts.
enum Targets {
    One(String, redis::Client),
    Cluster(crate::probe::RedisClusterSpec),
    Sentinel(crate::probe::RedisSentinelSpec),
}

impl Targets {
    /// The name the output and the record give the whole, and each
    /// server with its client.
    async fn resolve(self) -> Result<(String, Vec<(String, redis::Client)>), String> {
        match self {
            Targets::One(display, client) => Ok((display.clone(), vec![(display, client)])),
            Targets::Cluster(spec) => spec.master_clients(REDIS_TIMEOUT).await,
            Targets::Sentinel(spec) => {
                let m = spec.master(REDIS_TIMEOUT).await?;
                eprintln!("sentinels: the master of `{}` is {}", spec.master_name, m.display_url);
                let client = crate::probe::redis::client_for(&m)?;
                Ok((m.display_url.clone(), vec![(m.display_url, client)]))
            }
        }
    }
}

/// A cluster's spec from `--cluster` seeds: `host:port`, or a
/// `redis://[user:password@]host:port` URL whose credentials reach every node.
fn cluster_from_seeds(seeds: &[String]) -> Result<crate::probe::RedisClusterSpec, String> {
    let mut addresses = Vec::new();
    let mut template = None;
    for seed in seeds {
        let url = if seed.contains("://") {
            seed.clone()
        } else {
            format!("redis://{seed}")
        };
        let u = url::Url::parse(&url).map_err(|_| format!("--cluster: `{}` is not host:port or a Redis URL", redact_url(seed)))?;
        let (Some(host), Some(port)) = (u.host_str(), u.port()) else {
            return Err(format!("--cluster: `{}` needs a host and a port", redact_url(seed)));
        };
        addresses.push(format!("{host}:{port}"));
        if template.is_none() {
            template = Some(url);
        }
    }
    let url = template.ok_or("--cluster needs at least one seed node")?;
    Ok(crate::probe::RedisClusterSpec {
        seeds: addresses,
        node: crate::probe::RedisSpec {
            display_url: redact_url(&url),
            url: Secret::new(url),
            tls: None,
            roundtrip: false,
            static_info_every: Duration::from_secs(60),
        },
    })
}

impl FlushArgs {
    /// The request for the daemon: the same flags as JSON.
    fn remote(self) -> super::redis_remote::Remote {
        let body = serde_json::json!({
            "probe": self.probe,
            "match": self.pattern,
            "db": self.db,
            "rate": self.rate.to_string(),
            "max_latency": humantime::format_duration(self.max_latency).to_string(),
            "snapshot": !self.no_snapshot,
            "snapshot_timeout": humantime::format_duration(self.snapshot_timeout).to_string(),
            "scan_count": self.scan_count,
            "warm": self.warm,
            "user": std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
            "notify": self.notify,
            "watch": self.watch.map(|w| humantime::format_duration(w).to_string()),
        });
        super::redis_remote::Remote {
            daemon: self.daemon.unwrap_or_default(),
            body,
            execute: self.execute,
            yes: self.yes,
            record: self.record,
        }
    }

    fn execute(self, configured: Option<Source>, cfg: Option<&crate::settings::Config>) -> ExitCode {
        let source = if !self.cluster.is_empty() {
            match cluster_from_seeds(&self.cluster) {
                Ok(c) => Source::Cluster(c),
                Err(e) => return fail(EXIT_USAGE, e),
            }
        } else {
            match (&self.url, configured) {
                (Some(u), _) => Source::Url(Secret::new(u.clone())),
                (None, Some(s)) => s,
                (None, None) => return fail(EXIT_USAGE, "no Redis: give --url"),
            }
        };
        let targets = match source {
            Source::Url(raw) => {
                let url = match with_db(raw.expose(), self.db) {
                    Ok(u) => Secret::new(u),
                    Err(e) => return fail(EXIT_USAGE, format_args!("{e} ({})", redact_url(raw.expose()))),
                };
                let display = redact_url(url.expose());
                match redis::Client::open(url.expose()) {
                    Ok(c) => Targets::One(display, c),
                    Err(e) => return fail(EXIT_USAGE, format_args!("{display}: {}", redact_urls_in(&e.to_string()))),
                }
            }
            Source::Cluster(_) if self.db.is_some_and(|d| d != 0) => {
                return fail(EXIT_USAGE, "a Redis Cluster has database 0 only: drop --db");
            }
            Source::Cluster(spec) => Targets::Cluster(spec),
            Source::Sentinel(_) if self.db.is_some() => {
                return fail(
                    EXIT_USAGE,
                    "--db does not apply through sentinels: the probe's URL names the database",
                );
            }
            Source::Sentinel(spec) => Targets::Sentinel(spec),
        };
        if self.execute && !self.yes && !std::io::stdin().is_terminal() {
            return fail(
                EXIT_USAGE,
                "--execute without a terminal needs --yes: there is nobody to type the count back",
            );
        }
        if self.pattern.is_empty() {
            return fail(EXIT_USAGE, "--match needs a pattern (`*` for every key)");
        }
        // Every --notify name is checked before anything is deleted: a typo
        // found after the flush would leave the change unannounced.
        let notify = match notify_targets(&self.notify, cfg) {
            Ok(n) => n,
            Err(code) => return code,
        };
        match block_on(self.run(targets, cfg, notify)) {
            Ok(code) => code,
            Err(code) => code,
        }
    }

    async fn run(self, targets: Targets, cfg: Option<&crate::settings::Config>, notify: Option<Notify<'_>>) -> ExitCode {
        let started = chrono::Utc::now();
        let (display, nodes) = match targets.resolve().await {
            Ok(t) => t,
            Err(e) => return fail(1, e),
        };
        let cluster = nodes.len() > 1;

        // 1. Validate the risk, on every server.
        let mut conns = Vec::new();
        let mut surveys = Vec::new();
        for (d, client) in &nodes {
            let mut conn = match flush::connect(client, d, REDIS_TIMEOUT).await {
                Ok(c) => c,
                Err(e) => return fail(1, e),
            };
            let s = match flush::survey(&mut conn, &self.pattern, self.scan_count, self.sample, self.execute).await {
                Ok(s) => s,
                Err(e) => return fail(1, e),
            };
            if cluster {
                println!("{d}: {} of {} keys match `{}`", s.matched, s.total, self.pattern);
            }
            conns.push(conn);
            surveys.push(s);
        }
        let survey = if cluster {
            Survey::combine(&surveys, self.sample)
        } else {
            surveys.first().cloned().unwrap_or_default()
        };
        print_survey(&display, &self.pattern, &survey);
        if !self.execute {
            if notify.is_some() {
                println!("notify: nothing sent (dry run)");
            }
            println!("dry run: nothing deleted; add --execute to delete them");
            return ExitCode::SUCCESS;
        }
        if survey.matched == 0 {
            println!("nothing to delete");
            return ExitCode::SUCCESS;
        }
        if !self.yes && !confirm(survey.matched) {
            return fail(1, "not confirmed: nothing deleted");
        }

        // The record's file is created before anything changes, so a
        // flush never ends without the place to say what it did.
        let record_path = self
            .record
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("flush-{}.md", started.format("%Y%m%dT%H%M%SZ"))));
        let mut record_file = match std::fs::OpenOptions::new().write(true).create_new(true).open(&record_path) {
            Ok(f) => f,
            Err(e) => {
                return fail(
                    1,
                    format_args!("cannot create the record {}: {e}; nothing deleted", record_path.display()),
                );
            }
        };

        // From here on Ctrl-C stops between batches instead of killing.
        let stop = Arc::new(AtomicBool::new(false));
        spawn_signal_watch(stop.clone());
        let mut hits_before = Vec::new();
        for conn in &mut conns {
            hits_before.push(Hits::read(conn).await.ok());
        }

        // 2. Snapshot every server before deleting on any.
        let mut snapshots = Vec::new();
        for ((d, _), conn) in nodes.iter().zip(&mut conns) {
            if self.no_snapshot {
                snapshots.push(None);
                continue;
            }
            let on = if cluster { format!(" of {d}") } else { String::new() };
            eprintln!(
                "snapshot{on}: starting (wait up to {})",
                humantime::format_duration(self.snapshot_timeout)
            );
            match flush::snapshot(conn, self.snapshot_timeout, &stop).await {
                Ok(s) => {
                    eprintln!("snapshot{on}: {} done in {:.1}s", s.kind, s.took.as_secs_f64());
                    snapshots.push(Some(s));
                }
                Err(Stopped::Interrupted) => {
                    let _ = std::fs::remove_file(&record_path);
                    return fail(EXIT_INTERRUPTED, "interrupted during the snapshot: nothing deleted");
                }
                Err(Stopped::Failed(e)) => {
                    let _ = std::fs::remove_file(&record_path);
                    return fail(
                        1,
                        format_args!("snapshot{on} failed: {e}; nothing deleted (--no-snapshot to go on without one)"),
                    );
                }
            }
        }

        // 3. Execute, one server after another.
        let mut outcomes = Vec::new();
        let mut rows = Vec::new();
        for (i, ((d, client), conn)) in nodes.iter().zip(&mut conns).enumerate() {
            let s = &mut surveys[i];
            if stop.load(Ordering::SeqCst) || outcomes.iter().any(|o: &flush::Outcome| o.stopped.is_some()) {
                break;
            }
            let guard_conn = match flush::connect(client, d, REDIS_TIMEOUT).await {
                Ok(c) => c,
                Err(e) if outcomes.is_empty() => {
                    let _ = std::fs::remove_file(&record_path);
                    return fail(1, format_args!("{e}; nothing deleted"));
                }
                Err(e) => {
                    eprintln!("lookout: {e}");
                    break;
                }
            };
            if cluster {
                eprintln!("flush: {d}");
            }
            let plan = Plan {
                pattern: self.pattern.clone(),
                scan_count: self.scan_count,
                rate: self.rate,
                max_latency: self.max_latency,
                expected: s.matched,
            };
            let mut printer = Printer::new(self.max_latency, s.matched);
            let known = s.keys.take();
            let outcome = flush::execute(conn, guard_conn, &plan, known, &stop, |t| printer.show(t)).await;
            printer.finish();
            rows.push(flush::NodeRow {
                node: d.clone(),
                matched: s.matched,
                total: s.total,
                deleted: outcome.deleted,
                snapshot: flush::snapshot_text(snapshots[i].as_ref().ok_or("skipped (--no-snapshot)")),
                p99: outcome.latency.p99,
                outcome: flush::outcome_text(&outcome.stopped),
            });
            outcomes.push(outcome);
        }
        if outcomes.len() < nodes.len() && outcomes.iter().all(|o| o.stopped.is_none()) {
            // Stopped between two servers: as an interruption within one.
            outcomes.push(flush::Outcome::combine(Vec::new()));
            if let Some(last) = outcomes.last_mut() {
                last.stopped = Some(if stop.load(Ordering::SeqCst) {
                    Stopped::Interrupted
                } else {
                    Stopped::Failed(flush::FlushError("a master could not be reached".into()))
                });
            }
        }
        let outcome = flush::Outcome::combine(outcomes);

        // 4. Warm, only once every matching key is gone.
        let warmed = if outcome.stopped.is_none() && !self.warm.is_empty() {
            let w = flush::warm(&self.warm, REDIS_TIMEOUT).await;
            for x in &w {
                match &x.result {
                    Ok(s) => eprintln!("warm: {} → {s}", x.url),
                    Err(e) => eprintln!("warm: {} → failed: {e}", x.url),
                }
            }
            w
        } else {
            Vec::new()
        };
        let mut hits_after = Vec::new();
        for conn in &mut conns {
            hits_after.push(Hits::read(conn).await.ok());
        }

        // 5. Communicate.
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        let snapshot = if cluster {
            snapshots
                .iter()
                .all(Option::is_some)
                .then(|| snapshots.iter().flatten().cloned().min_by_key(|s| s.at))
                .flatten()
        } else {
            snapshots.first().cloned().flatten()
        };
        let hits_sum = |all: &[Option<Hits>]| -> Option<Hits> {
            all.iter().try_fold(Hits::default(), |acc, h| {
                h.map(|h| Hits {
                    hits: acc.hits + h.hits,
                    misses: acc.misses + h.misses,
                })
            })
        };
        // The watch reads the first server only: its own baseline.
        let first_before = hits_before.first().copied().flatten();
        let (hits_before, hits_after) = (hits_sum(&hits_before), hits_sum(&hits_after));
        let no_snapshot = if self.no_snapshot {
            "skipped (--no-snapshot)"
        } else {
            "per master, below"
        };
        let record = Record {
            target: &display,
            pattern: &self.pattern,
            user: &user,
            started,
            finished: chrono::Utc::now(),
            survey: &survey,
            snapshot: snapshot.as_ref().ok_or(no_snapshot),
            rate: self.rate,
            max_latency: self.max_latency,
            outcome: &outcome,
            hits_before,
            hits_after,
            warmed: &warmed,
            nodes: if cluster { &rows } else { &[] },
        };
        let text = record.render();
        let written = record_file.write_all(text.as_bytes()).and_then(|()| record_file.flush());
        match &written {
            Ok(()) => println!("record: {}", record_path.display()),
            Err(e) => {
                eprintln!("lookout: cannot write the record {}: {e}; here it is:", record_path.display());
                print!("{text}");
            }
        }
        if cluster {
            for r in &rows {
                println!("{}: {} keys deleted", r.node, r.deleted);
            }
        }
        println!(
            "{}: {} keys deleted in {:.1}s; latency p50 {:.2}ms p99 {:.2}ms max {:.2}ms",
            record.status(),
            outcome.deleted,
            outcome.elapsed.as_secs_f64(),
            outcome.latency.p50.as_secs_f64() * 1000.0,
            outcome.latency.p99.as_secs_f64() * 1000.0,
            outcome.latency.max.as_secs_f64() * 1000.0,
        );
        // The notice goes out now, with what the record says so far: the
        // people waiting on the change hear of it without waiting the watch.
        let notified = match &notify {
            Some(n) => {
                let title = format!("Redis controlled flush on {display}: {} keys deleted", outcome.deleted);
                n.send(&title, &text).await
            }
            None => true,
        };
        // 6. Watch the recovery (on the first server), then verify.
        let verified = match (
            self.watch.filter(|_| outcome.stopped.is_none() && written.is_ok()),
            conns.first_mut(),
        ) {
            (Some(d), Some(conn)) => follow(conn, first_before, d, &stop, cfg, &mut record_file).await,
            _ => true,
        };
        match &outcome.stopped {
            Some(Stopped::Interrupted) => fail(
                EXIT_INTERRUPTED,
                format_args!("interrupted after {} keys; run the same command again to continue", outcome.deleted),
            ),
            Some(Stopped::Failed(e)) => fail(1, format_args!("{e} ({} keys deleted)", outcome.deleted)),
            None if written.is_err() => ExitCode::FAILURE,
            None if warmed.iter().any(|w| !w.ok()) => fail(1, "flushed, but warming failed"),
            None if !verified => fail(1, "flushed, but `lookout verify --after flush` failed"),
            None if !notified => fail(1, "flushed and recorded, but a notification failed"),
            None => ExitCode::SUCCESS,
        }
    }
}

/// Step 6: the hit rate every interval for `duration` (progress on
/// stderr), then `lookout verify --after flush` when the configuration is
/// at hand; both appended to the record. False only when verify failed.
async fn follow(
    conn: &mut redis::aio::MultiplexedConnection,
    before: Option<Hits>,
    duration: Duration,
    stop: &AtomicBool,
    cfg: Option<&crate::settings::Config>,
    record: &mut std::fs::File,
) -> bool {
    use crate::runbook::recovery;
    let baseline = before.and_then(Hits::ratio);
    eprintln!(
        "watch: the hit rate every {} for {} (before the flush: {})",
        humantime::format_duration(recovery::interval(duration)),
        humantime::format_duration(duration),
        baseline
            .map(|r| format!("{:.1} %", r * 100.0))
            .unwrap_or_else(|| "no lookups".into())
    );
    let watched = recovery::watch(conn, baseline, duration, stop, |p, _| {
        eprintln!(
            "watch: +{:.0}s hit rate {} over {} lookups",
            p.after.as_secs_f64(),
            p.ratio.map(|r| format!("{:.1} %", r * 100.0)).unwrap_or_else(|| "n/a".into()),
            p.lookups
        );
    })
    .await;
    let mut section = match watched {
        Ok(r) => {
            println!("{}", r.summary());
            r.render()
        }
        Err(e) => {
            eprintln!("lookout: watch stopped: {e}");
            format!("\n## Hit rate after the flush\n\nnot watched: {e}\n")
        }
    };
    let mut ok = true;
    match cfg {
        Some(cfg) if !stop.load(Ordering::SeqCst) => {
            let o = crate::runbook::verify::run(
                cfg,
                cfg.prometheus.as_ref(),
                Some(crate::runbook::verify::After::Flush),
                Duration::from_secs(120),
            )
            .await;
            print!("{}", super::verify::render(&o, super::verify::VerifyFormat::Text));
            section.push('\n');
            section.push_str(&super::verify::render(&o, super::verify::VerifyFormat::Markdown));
            ok = o.exit_code() != 1;
        }
        Some(_) => section.push_str("\nverify: not run (interrupted)\n"),
        None => {
            eprintln!("verify: not run: the Redis was given by --url; run `lookout verify --after flush` with the configuration");
            section.push_str("\nverify: not run (the Redis was given by --url, without the configuration)\n");
        }
    }
    if let Err(e) = record.write_all(section.as_bytes()).and_then(|()| record.flush()) {
        eprintln!("lookout: cannot add the watch to the record: {e}; here it is:");
        print!("{section}");
    }
    ok
}

/// The relay destinations `--notify` names, checked and ready to build.
struct Notify<'a> {
    /// The daemon's data directory, whose outbox a Slack bot keeps its threads in.
    data_dir: &'a std::path::Path,
    destinations: Vec<&'a crate::relay::destination::DestinationConfig>,
}

/// The destinations named by `--notify`, or the exit status when one is
/// unknown (64, with the configured names) or the relay is off (78).
fn notify_targets<'a>(names: &[String], cfg: Option<&'a crate::settings::Config>) -> Result<Option<Notify<'a>>, ExitCode> {
    if names.is_empty() {
        return Ok(None);
    }
    let Some((cfg, relay)) = cfg.and_then(|c| c.relay.as_ref().map(|r| (c, r))) else {
        return Err(fail(
            super::EXIT_CONFIG,
            "--notify needs the relay: this configuration has no `relay` section; nothing deleted",
        ));
    };
    let mut destinations = Vec::new();
    for name in names {
        match relay.destinations.iter().find(|d| &d.name == name) {
            Some(d) => destinations.push(d),
            None => {
                let known: Vec<&str> = relay.destinations.iter().map(|d| d.name.as_str()).collect();
                return Err(fail(
                    EXIT_USAGE,
                    format_args!(
                        "--notify: no destination named `{name}` (configured: {}); nothing deleted",
                        if known.is_empty() { "none".to_string() } else { known.join(", ") }
                    ),
                ));
            }
        }
    }
    Ok(Some(Notify {
        data_dir: &cfg.data_dir,
        destinations,
    }))
}

impl Notify<'_> {
    /// Delivers the record to each destination once, through the relay
    /// workers' own `deliver` (same timeout, same verdict), and says on
    /// stdout/stderr how each went. True when every one took it.
    async fn send(&self, title: &str, record: &str) -> bool {
        let p = crate::relay::template::informational(title, record);
        let mut ok = true;
        for d in &self.destinations {
            let sent = crate::relay::worker::deliver_now(d, self.data_dir, &p).await;
            match sent {
                Ok(()) => println!("notify: the record was sent to `{}` ({})", d.name, d.kind.type_name()),
                Err(e) => {
                    ok = false;
                    eprintln!("lookout: notify: sending the record to `{}` failed: {e}", d.name);
                }
            }
        }
        ok
    }
}

/// Step 1's answer on stdout: the count, the memory, a sample.
fn print_survey(display: &str, pattern: &str, s: &Survey) {
    let memory = if s.matched == 0 {
        "nothing to free".to_string()
    } else {
        s.estimated_bytes()
            .map(|b| format!("about {} (MEMORY USAGE of {} keys, extrapolated)", flush::bytes(b), s.memory_keys))
            .unwrap_or_else(|| "memory unknown (MEMORY USAGE unavailable)".into())
    };
    println!("{display}: {} of {} keys match `{pattern}`, {memory}", s.matched, s.total);
    if !s.sample.is_empty() {
        println!("sample:");
        for k in &s.sample {
            println!("  {k}");
        }
    }
}

/// Progress on stderr: an `indicatif` bar on a terminal (keys deleted of
/// those counted, keys/s, ETA, or why it is paused), a plain line a second
/// otherwise, so logs and CI keep every line and no escape codes.
struct Printer {
    bar: Option<indicatif::ProgressBar>,
    last: Option<Instant>,
    max_latency: Duration,
}

/// The bar's layout: a spinner shows it is alive while paused.
const BAR_TEMPLATE: &str = "{spinner} flush [{bar:30}] {pos}/{len} keys, {msg}";

impl Printer {
    fn new(max_latency: Duration, expected: u64) -> Self {
        // indicatif draws on stderr and hides itself when it is not a
        // terminal; asked first so that the plain lines take over then.
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(expected);
            if let Ok(style) = indicatif::ProgressStyle::with_template(BAR_TEMPLATE) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Printer {
            bar,
            last: None,
            max_latency,
        }
    }

    fn show(&mut self, t: &Tick) {
        let state = match t.paused_at {
            Some(rtt) => format!(
                "paused: round trip {:.2}ms > {:.2}ms",
                rtt.as_secs_f64() * 1000.0,
                self.max_latency.as_secs_f64() * 1000.0
            ),
            None => format!(
                "{:.0} keys/s, ETA {}",
                t.rate(),
                t.eta()
                    .map(|d| humantime::format_duration(d).to_string())
                    .unwrap_or_else(|| "-".into())
            ),
        };
        if let Some(bar) = &self.bar {
            // indicatif limits its own redraws; every tick may update it.
            bar.set_length(t.expected.max(t.deleted));
            bar.set_position(t.deleted);
            bar.set_message(state);
            return;
        }
        let paused = t.paused_at.is_some();
        if !paused && self.last.is_some_and(|l| l.elapsed() < Duration::from_secs(1)) {
            return;
        }
        self.last = Some(Instant::now());
        let line = match t.paused_at {
            Some(_) => format!("flush: {state}; {}/{} keys deleted", t.deleted, t.expected),
            None => format!("flush: {}/{} keys deleted, {state}", t.deleted, t.expected),
        };
        eprintln!("{line}");
    }

    fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
