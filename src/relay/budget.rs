//! A destination's send budget: its `rate_limit` and the pauses its
//! provider asks for (`Retry-After`), taken before every send.
//!
//! Two kinds, chosen by the store ([`super::store::RelayStore::budget`]),
//! so the dispatcher does not care which it has:
//!
//! - [`Local`]: a token bucket in the process (`governor`) and an
//!   in-process pause. Right for one process (the SQLite outbox), and for a
//!   destination without a rate limit whatever the store: nothing to share,
//!   so no round trip per send.
//! - The PostgreSQL store's shared budget (one row per destination, taken
//!   in one statement on the server's clock): replicas sharing a queue
//!   share its limit too, so three replicas do not post at three times
//!   Slack's limit, and a 429 one of them gets pauses them all.
//!
//! Taking is a question, not a wait: [`RateBudget::take`] answers "go" or
//! "ask again in this long", and [`ready`] does the waiting, so a stop is
//! noticed while waiting and a budget that cannot answer (the database
//! unreachable) is asked again after a second rather than sending without
//! a limit.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::Clock;
use tokio_util::sync::CancellationToken;

use super::outbox::OutboxError;

/// A budget's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// A token was taken: send now.
    Go,
    /// Nothing to take yet (spent, or paused): ask again after this long.
    Wait(Duration),
}

/// What a destination may send, and when.
#[async_trait::async_trait]
pub trait RateBudget: Send + Sync {
    /// Takes one send's token if there is one now.
    async fn take(&self) -> Result<Take, OutboxError>;

    /// Nothing more is sent to the destination for `d` (its `Retry-After`):
    /// the next send would only get the same answer.
    async fn pause(&self, d: Duration) -> Result<(), OutboxError>;

    /// Returns a token taken for a send that then did not go out (the
    /// notification was superseded meanwhile), so that it is not lost to
    /// every sender of the destination.
    async fn give_back(&self) -> Result<(), OutboxError>;
}

/// Until when a destination said to wait (`Retry-After`), for every send of
/// this process. A std mutex: held for a comparison, never across an await.
#[derive(Default)]
pub struct Pause(Mutex<Option<Instant>>);

impl Pause {
    /// Pauses until `d` from now, unless already paused longer.
    pub fn extend(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut p = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if p.is_none_or(|t| t < until) {
            *p = Some(until);
        }
    }

    /// What is left of the pause.
    pub fn remaining(&self) -> Option<Duration> {
        let p = self.0.lock().unwrap_or_else(|p| p.into_inner());
        p.and_then(|t| t.checked_duration_since(Instant::now())).filter(|d| !d.is_zero())
    }
}

/// The budget of one process: a token bucket ([`super::retry::limiter`];
/// none when unlimited) and a pause.
pub struct Local {
    limiter: Option<governor::DefaultDirectRateLimiter>,
    pause: Pause,
    /// A token given back, and when. A governor bucket cannot be refilled
    /// by hand, so the next take uses this one first; only within one
    /// `min_interval` of its return, since a token kept longer would let a
    /// send through beside the bucket's own refill (over the limit).
    spare: Mutex<Option<Instant>>,
    min_interval: Duration,
}

impl Local {
    /// Uses the token given back, if it is still fresh.
    fn take_spare(&self) -> bool {
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        spare.take().is_some_and(|t| t.elapsed() < self.min_interval)
    }

    /// `min_interval` between sends, `burst` at once after a quiet spell.
    pub fn new(min_interval: Duration, burst: u32) -> Local {
        Local {
            limiter: super::retry::limiter(min_interval, burst),
            pause: Pause::default(),
            spare: Mutex::new(None),
            min_interval,
        }
    }
}

#[async_trait::async_trait]
impl RateBudget for Local {
    async fn take(&self) -> Result<Take, OutboxError> {
        if let Some(d) = self.pause.remaining() {
            return Ok(Take::Wait(d));
        }
        match &self.limiter {
            None => Ok(Take::Go),
            Some(_) if self.take_spare() => Ok(Take::Go),
            Some(l) => match l.check() {
                Ok(()) => Ok(Take::Go),
                Err(not_until) => Ok(Take::Wait(not_until.wait_time_from(l.clock().now()))),
            },
        }
    }

    async fn pause(&self, d: Duration) -> Result<(), OutboxError> {
        self.pause.extend(d);
        Ok(())
    }

    async fn give_back(&self) -> Result<(), OutboxError> {
        if self.limiter.is_some() {
            *self.spare.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        }
        Ok(())
    }
}

/// How long to wait before asking a budget that could not answer again.
const RETRY_UNANSWERED: Duration = Duration::from_secs(1);

/// Waits until a send to `destination` may go out, and takes its token.
/// False when stopped first. A budget that cannot answer is asked again
/// every second: sending without it would break the limit it keeps (for a
/// shared one, the whole fleet's); each failure logs and counts.
pub async fn ready(budget: &dyn RateBudget, stop: &CancellationToken, destination: &str) -> bool {
    let started = Instant::now();
    loop {
        if stop.is_cancelled() {
            return false;
        }
        let wait = match budget.take().await {
            Ok(Take::Go) => {
                metrics::histogram!("lookout_relay_rate_wait_seconds", "destination" => destination.to_string())
                    .record(started.elapsed().as_secs_f64());
                return !stop.is_cancelled();
            }
            Ok(Take::Wait(d)) => d.max(Duration::from_millis(1)),
            Err(e) => {
                metrics::counter!("lookout_relay_rate_budget_errors_total", "destination" => destination.to_string()).increment(1);
                tracing::warn!(destination = %destination, error = %e, retry_in = ?RETRY_UNANSWERED, "Cannot take a token from the destination's shared rate budget; not sending until it answers");
                RETRY_UNANSWERED
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return false,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_only_grows() {
        let p = Pause::default();
        assert_eq!(p.remaining(), None);
        p.extend(Duration::from_secs(30));
        p.extend(Duration::from_secs(1));
        assert!(p.remaining().is_some_and(|r| r > Duration::from_secs(20)), "the longer pause holds");
    }

    #[tokio::test]
    async fn a_token_given_back_is_taken_once_and_only_while_fresh() {
        let b = Local::new(Duration::from_secs(60), 1);
        assert_eq!(b.take().await.unwrap(), Take::Go);
        b.give_back().await.unwrap();
        assert_eq!(b.take().await.unwrap(), Take::Go, "the token given back");
        assert!(matches!(b.take().await.unwrap(), Take::Wait(_)), "used once");
        let quick = Local::new(Duration::from_millis(1), 1);
        assert_eq!(quick.take().await.unwrap(), Take::Go);
        quick.give_back().await.unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(!quick.take_spare(), "older than one interval: dropped");
    }

    #[tokio::test]
    async fn a_local_budget_lets_a_burst_through_then_says_how_long_to_wait() {
        let b = Local::new(Duration::from_secs(60), 2);
        assert_eq!(b.take().await.unwrap(), Take::Go);
        assert_eq!(b.take().await.unwrap(), Take::Go);
        match b.take().await.unwrap() {
            Take::Wait(d) => assert!(d > Duration::from_secs(50) && d <= Duration::from_secs(60), "{d:?}"),
            Take::Go => panic!("the burst is spent"),
        }
        let unlimited = Local::new(Duration::ZERO, 1);
        for _ in 0..1000 {
            assert_eq!(unlimited.take().await.unwrap(), Take::Go, "unlimited");
        }
        unlimited.pause(Duration::from_secs(30)).await.unwrap();
        assert!(
            matches!(unlimited.take().await.unwrap(), Take::Wait(d) if d > Duration::from_secs(20)),
            "paused"
        );
    }
}
