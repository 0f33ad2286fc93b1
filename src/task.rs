//! The daemon's background tasks, stopped together and waited for.
//!
//! Every loop (the cross-check rounds, the alert rules, the gauges, the
//! relay's workers) is spawned on one [`Tasks`]: a `TaskTracker` that knows
//! what still runs and a `CancellationToken` that tells it to stop. Shutdown
//! cancels, then waits: a round or a delivery that had started finishes
//! (each is bounded by its own timeout) and writes its outcome, instead of
//! being dropped half-way with the runtime. The scheduler drains its probe
//! runs itself (`schedule::Running::stop`).

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Work done every so often until shutdown.
pub trait Periodic: Send + 'static {
    /// How long to wait before the next tick. Asked before every wait, so a
    /// period read from the configuration follows a reload.
    fn period(&mut self) -> Duration;

    /// Whether the first tick runs at once rather than after one period
    /// (gauges that should be there from the start).
    fn ticks_at_start(&self) -> bool {
        false
    }

    /// One tick. Shutdown does not interrupt it: a tick that started
    /// finishes, so what it writes is written whole.
    fn tick(&mut self) -> impl Future<Output = ()> + Send;
}

/// The daemon's background tasks. Cloning shares them.
#[derive(Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Tasks {
    /// No tasks yet.
    pub fn new() -> Tasks {
        Tasks::default()
    }

    /// The signal a task that is not [`Periodic`] watches to stop.
    pub fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Runs `fut` as one of the tasks shutdown waits for. It must return
    /// soon after [`Tasks::stopping`] fires.
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(fut);
    }

    /// Runs `task` every period until shutdown.
    pub fn every<P: Periodic>(&self, mut task: P) {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            let mut wait = !task.ticks_at_start();
            loop {
                if wait {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(task.period()) => {}
                    }
                }
                if stop.is_cancelled() {
                    return;
                }
                task.tick().await;
                wait = true;
            }
        });
    }

    /// Tells every task to stop and waits for them, at most `grace`.
    /// Returns whether they all finished in time.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.stop.cancel();
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait()).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    struct Count {
        ticks: Arc<AtomicU32>,
        at_start: bool,
        slow: Duration,
    }

    impl Periodic for Count {
        fn period(&mut self) -> Duration {
            Duration::from_secs(10)
        }

        fn ticks_at_start(&self) -> bool {
            self.at_start
        }

        async fn tick(&mut self) {
            tokio::time::sleep(self.slow).await;
            self.ticks.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn count(at_start: bool, slow: Duration) -> (Count, Arc<AtomicU32>) {
        let ticks = Arc::new(AtomicU32::new(0));
        (
            Count {
                ticks: ticks.clone(),
                at_start,
                slow,
            },
            ticks,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_every_period_and_drains_at_once_when_idle() {
        let tasks = Tasks::new();
        let (task, ticks) = count(false, Duration::ZERO);
        tasks.every(task);
        tokio::time::sleep(Duration::from_secs(35)).await;
        assert_eq!(ticks.load(Ordering::SeqCst), 3);
        assert!(tasks.drain(Duration::from_millis(1)).await, "an idle loop stops at once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_tick_under_way_finishes_before_the_drain_returns() {
        let tasks = Tasks::new();
        let (task, ticks) = count(true, Duration::from_secs(3));
        tasks.every(task);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(tasks.drain(Duration::from_secs(5)).await);
        assert_eq!(ticks.load(Ordering::SeqCst), 1, "the tick that had started was completed");
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_gives_up_after_its_grace() {
        let tasks = Tasks::new();
        let (task, _) = count(true, Duration::from_secs(60));
        tasks.every(task);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!tasks.drain(Duration::from_secs(2)).await);
    }
}
