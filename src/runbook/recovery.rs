//! After a flush: the hit rate's recovery, watched for a while.
//!
//! The ratio since Redis started (what `INFO stats` gives and the health
//! endpoints report) hides a flush for days: a week of hits outweighs an
//! hour of misses. So the watch reads the counters at a fixed interval and
//! reports the ratio of each interval alone, against the ratio before the
//! flush; the cache counts as recovered at the first interval whose ratio
//! is back to [`RECOVERED`] of it.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use super::flush::{FlushError, Hits};

/// The share of the hit rate before the flush that counts as recovered.
pub const RECOVERED: f64 = 0.9;

/// The interval for a watch of `duration`: ten readings, between 1 s and
/// 30 s apart (a 5-minute watch reads every 30 s, as a dashboard refreshes).
pub fn interval(duration: Duration) -> Duration {
    (duration / 10).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// One interval's reading.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    /// Since the watch began, at the interval's end.
    pub after: Duration,
    /// Hits over lookups in the interval; `None` without lookups.
    pub ratio: Option<f64>,
    /// Lookups in the interval.
    pub lookups: u64,
}

/// What the watch saw.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// The hit rate before the flush (since Redis started).
    pub baseline: Option<f64>,
    /// Every interval, in order.
    pub points: Vec<Point>,
    /// When the first interval back at [`RECOVERED`] of the baseline ended.
    pub recovered_after: Option<Duration>,
    /// How long it watched.
    pub watched: Duration,
    /// Stopped early by Ctrl-C.
    pub interrupted: bool,
}

/// Reads the counters every [`interval`] for `duration` (or until `stop`),
/// calling `on_point` with each interval's ratio.
pub async fn watch(
    conn: &mut MultiplexedConnection,
    baseline: Option<f64>,
    duration: Duration,
    stop: &AtomicBool,
    mut on_point: impl FnMut(&Point, &Recovery),
) -> Result<Recovery, FlushError> {
    let every = interval(duration);
    let start = Instant::now();
    let mut last = Hits::read(conn).await?;
    let mut r = Recovery {
        baseline,
        ..Recovery::default()
    };
    while start.elapsed() < duration {
        let wake = Instant::now() + every.min(duration.saturating_sub(start.elapsed()));
        while Instant::now() < wake {
            if stop.load(Ordering::SeqCst) {
                r.interrupted = true;
                r.watched = start.elapsed();
                return Ok(r);
            }
            tokio::time::sleep(Duration::from_millis(100).min(wake.saturating_duration_since(Instant::now()))).await;
        }
        let now = Hits::read(conn).await?;
        let p = Point {
            after: start.elapsed(),
            ratio: last.ratio_until(now),
            lookups: (now.hits + now.misses).saturating_sub(last.hits + last.misses),
        };
        last = now;
        if r.recovered_after.is_none() && recovered(baseline, p.ratio) {
            r.recovered_after = Some(p.after);
        }
        r.points.push(p);
        on_point(&p, &r);
    }
    r.watched = start.elapsed();
    Ok(r)
}

/// Whether `ratio` is back to [`RECOVERED`] of `baseline` (any ratio is,
/// when there was no baseline to lose).
fn recovered(baseline: Option<f64>, ratio: Option<f64>) -> bool {
    match (baseline, ratio) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(b), Some(r)) => r >= RECOVERED * b,
    }
}

fn pct(r: Option<f64>) -> String {
    r.map(|r| format!("{:.1} %", r * 100.0))
        .unwrap_or_else(|| "n/a (no lookups)".into())
}

impl Recovery {
    /// One line for a person: the verdict so far.
    pub fn summary(&self) -> String {
        match self.recovered_after {
            Some(t) => format!(
                "hit rate recovered to {} of {} after {}",
                pct(self.points.last().and_then(|p| p.ratio)),
                pct(self.baseline),
                humantime::format_duration(Duration::from_secs(t.as_secs()))
            ),
            None => format!(
                "hit rate not back to {:.0} % of {} after {}{}",
                RECOVERED * 100.0,
                pct(self.baseline),
                humantime::format_duration(Duration::from_secs(self.watched.as_secs())),
                if self.interrupted { " (interrupted)" } else { "" }
            ),
        }
    }

    /// The watch as a Markdown section of the flush's record.
    pub fn render(&self) -> String {
        let mut s = String::from("\n## Hit rate after the flush\n\n");
        let _ = writeln!(s, "{}.\n", self.summary());
        s.push_str("| after | hit rate in the interval | lookups |\n|---:|---:|---:|\n");
        for p in &self.points {
            let _ = writeln!(s, "| {:.0} s | {} | {} |", p.after.as_secs_f64(), pct(p.ratio), p.lookups);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_a_tenth_between_one_and_thirty_seconds() {
        assert_eq!(interval(Duration::from_secs(3)), Duration::from_secs(1));
        assert_eq!(interval(Duration::from_secs(120)), Duration::from_secs(12));
        assert_eq!(interval(Duration::from_secs(3600)), Duration::from_secs(30));
    }

    #[test]
    fn recovered_is_nine_tenths_of_the_baseline() {
        assert!(recovered(Some(0.8), Some(0.73)));
        assert!(!recovered(Some(0.8), Some(0.71)));
        assert!(!recovered(Some(0.8), None));
        assert!(recovered(None, Some(0.1)));
    }
}
