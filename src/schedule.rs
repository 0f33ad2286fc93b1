//! The scheduler: runs each probe on its schedule, never two runs of the
//! same probe at once, each bounded by its timeout.
//!
//! `every:` probes run on a tokio interval of their own (one task per probe,
//! `MissedTickBehavior::Skip`): the loop awaits the run, so a run cannot
//! overlap the next, and a tick missed while a run was in flight is counted
//! in `lookout_probe_skipped_total`. tokio-cron-scheduler's own fixed-interval
//! jobs have been seen to stop firing under load, so they are not used.
//!
//! `schedule:` (cron) probes are driven by tokio-cron-scheduler, in UTC
//! unless the probe names a `timezone`. Two of its limits are handled here.
//! It has no overlap protection, so each run is guarded by an in-flight flag
//! (a tick that finds the previous run still going is skipped and counted).
//! And it fires from a loop that wakes every 500 ms, so a job starts up to
//! half a second after its time (measured: 330 ms late at the median). Each
//! firing therefore only *arms* a tokio timer for the following occurrence,
//! computed by croner (the parser tokio-cron-scheduler uses, with the same
//! settings) in the probe's time zone; the run starts on that timer, within
//! milliseconds of its time and on the right side of a DST change.
//!
//! Probes that share a period are spread over it (a stable offset derived
//! from the probe's name, like Prometheus's scrape offsets), so fifty probes
//! at 15 s do not all fire on the same instant.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Schedule;
use crate::probe::ProbeConfig;
use crate::probe::{self, Observation, ProbeHandle};

/// Receives every observation as soon as a run ends.
pub trait Sink: Send + Sync + 'static {
    /// Called once per run, from the probe's task.
    fn record(&self, config: &ProbeConfig, obs: Observation);
    /// Called for ticks skipped because a run was still in flight.
    fn skipped(&self, probe: &str, n: u64) {
        crate::telemetry::skipped(probe, n);
    }
}

/// Scheduling options.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Spread probes that share a period.
    pub spread: bool,
    /// Most probe runs at the same instant.
    pub max_concurrency: usize,
}

/// One set of running probes; replaced as a whole on reload.
pub struct Running {
    cancel: CancellationToken,
    tracker: TaskTracker,
    cron: Option<tokio_cron_scheduler::JobScheduler>,
}

/// Starts every probe. The first run of every probe starts at once (so that
/// readiness does not wait a whole period); later runs follow the schedule.
pub async fn start(handles: Vec<ProbeHandle>, opts: Options, sink: Arc<dyn Sink>) -> anyhow::Result<Running> {
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(opts.max_concurrency.max(1)));
    let mut cron_jobs = Vec::new();
    for h in handles {
        match h.config.schedule.clone() {
            Schedule::Every(period) => {
                let offset = if opts.spread {
                    spread_offset(&h.config.name, period)
                } else {
                    Duration::ZERO
                };
                tracker.spawn(interval_loop(h, period, offset, permits.clone(), sink.clone(), cancel.clone()));
            }
            Schedule::Cron { expr, timezone } => cron_jobs.push((h, expr, timezone)),
        }
    }
    let cron = if cron_jobs.is_empty() {
        None
    } else {
        let sched = tokio_cron_scheduler::JobScheduler::new().await?;
        for (h, expr, tz) in cron_jobs {
            let tz = tz.unwrap_or(chrono_tz::UTC);
            let cron = Arc::new(crate::config::parse_cron(&expr).map_err(|e| anyhow::anyhow!(e))?);
            let run = CronRun {
                h,
                cron,
                tz,
                in_flight: Arc::new(AtomicBool::new(false)),
                permits: permits.clone(),
                sink: sink.clone(),
            };
            // First run at once, as for interval probes; then the next occurrence.
            spawn_guarded(&tracker, &run);
            run.arm(&tracker, &cancel);
            let (tr, ca) = (tracker.clone(), cancel.clone());
            let job = tokio_cron_scheduler::Job::new_async_tz(expr.as_str(), tz, move |_id, _l| {
                run.arm(&tr, &ca);
                Box::pin(async {}) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
            })
            .map_err(|e| anyhow::anyhow!("cron expression `{expr}`: {e}"))?;
            sched.add(job).await?;
        }
        sched.start().await?;
        Some(sched)
    };
    Ok(Running { cancel, tracker, cron })
}

impl Running {
    /// Stops scheduling, then waits for runs in flight (each is bounded by its
    /// timeout, so this ends; `grace` caps it all the same).
    pub async fn stop(mut self, grace: Duration) {
        self.cancel.cancel();
        if let Some(mut s) = self.cron.take() {
            let _ = s.shutdown().await;
        }
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_err() {
            tracing::warn!("Probe runs still in flight after {grace:?}; abandoning them");
        }
    }
}

/// A cron probe and what its runs need.
#[derive(Clone)]
struct CronRun {
    h: ProbeHandle,
    cron: Arc<croner::Cron>,
    tz: chrono_tz::Tz,
    in_flight: Arc<AtomicBool>,
    permits: Arc<Semaphore>,
    sink: Arc<dyn Sink>,
}

impl CronRun {
    /// Arms a timer for the next occurrence after now.
    fn arm(&self, tracker: &TaskTracker, cancel: &CancellationToken) {
        use chrono::Timelike;
        // Whole seconds: croner keeps the sub-second part of its start time.
        let now = chrono::Utc::now().with_timezone(&self.tz);
        let now = now.with_nanosecond(0).unwrap_or(now);
        let Ok(next) = self.cron.find_next_occurrence(&now, false) else {
            tracing::warn!(probe = %self.h.config.name, "Cron schedule has no next occurrence");
            return;
        };
        let wait = (next.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().unwrap_or_default();
        let (run, tr, cancel) = (self.clone(), tracker.clone(), cancel.clone());
        tracker.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(wait) => spawn_guarded(&tr, &run),
            }
        });
    }
}

fn spawn_guarded(tracker: &TaskTracker, run: &CronRun) {
    if run.in_flight.swap(true, Ordering::AcqRel) {
        run.sink.skipped(&run.h.config.name, 1);
        return;
    }
    let run = run.clone();
    tracker.spawn(async move {
        let obs = {
            let _permit = run.permits.acquire().await;
            probe::run(&run.h).await
        };
        run.sink.record(&run.h.config, obs);
        run.in_flight.store(false, Ordering::Release);
    });
}

async fn interval_loop(
    h: ProbeHandle,
    period: Duration,
    offset: Duration,
    permits: Arc<Semaphore>,
    sink: Arc<dyn Sink>,
    cancel: CancellationToken,
) {
    let first = Instant::now() + delay_to_phase(period, offset);
    let mut ticks = tokio::time::interval_at(first, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    // The index of the last tick due at `t` (ticks are `first + k·period`).
    let tick_index = |t: Instant| -> i128 {
        let nanos = if t >= first {
            (t - first).as_nanos() as i128
        } else {
            -((first - t).as_nanos() as i128)
        };
        nanos.div_euclid(period.as_nanos().max(1) as i128)
    };
    let mut started = Instant::now();
    loop {
        let obs = {
            let _permit = permits.acquire().await;
            probe::run(&h).await
        };
        sink.record(&h.config, obs);
        // Ticks that fell due while this run waited and ran: the first of them
        // starts the next run at once (late), the others are skipped, and
        // counted. Counting from the instant the run began, never from the
        // late tick's own deadline, counts each skipped tick once.
        let due = tick_index(Instant::now()) - tick_index(started);
        if due > 1 {
            sink.skipped(&h.config.name, (due - 1) as u64);
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = ticks.tick() => started = Instant::now(),
        }
    }
}

/// A stable offset in `[0, period)` from the probe's name (FNV-1a), so a
/// probe keeps its phase across restarts and reloads.
pub fn spread_offset(name: &str, period: Duration) -> Duration {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    let ms = period.as_millis().max(1) as u64;
    Duration::from_millis(h % ms)
}

/// Time from now until the next wall-clock instant `t` with
/// `(t - offset) mod period == 0`: phases are tied to the clock, not to
/// start-up, so they do not depend on when lookout started.
fn delay_to_phase(period: Duration, offset: Duration) -> Duration {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let p = period.as_nanos().max(1);
    let pos = (now.as_nanos() + p - offset.as_nanos() % p) % p;
    let wait = if pos == 0 { 0 } else { p - pos };
    Duration::from_nanos(wait as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_stable_and_bounded() {
        let p = Duration::from_secs(15);
        assert_eq!(spread_offset("django", p), spread_offset("django", p));
        assert_ne!(spread_offset("django", p), spread_offset("fastapi", p));
        for n in 0..200 {
            assert!(spread_offset(&format!("p{n}"), p) < p);
        }
        assert!(delay_to_phase(p, Duration::from_secs(3)) < p);
    }
}
