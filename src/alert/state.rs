//! The life of one alert instance (a rule over one probe) as a pure state
//! machine: [`step`] takes the state, one input and the time, and returns
//! the next state with the effects the engine must carry out.
//!
//! Nothing here does I/O or reads a clock, so every timing rule — `for:`,
//! `fail_after`/`resolve_after` hysteresis, Alertmanager resends, relay
//! reminders, maintenance windows, the state a restart finds on disk — is
//! checked by table tests that pass the time in, instead of by tests that
//! wait for it.
//!
//! Phases follow Prometheus (inactive → pending → firing → resolved, with
//! `for:`), with Gatus's count-based hysteresis on top: pending only after
//! `fail_after` consecutive failing checks, resolved only after
//! `resolve_after` consecutive passing ones, so a flapping endpoint does not
//! page twice a minute. Deliveries follow Prometheus too: a firing alert is
//! resent every `resend_delay` with `endsAt` four resends ahead (so a stopped
//! lookout's alerts expire), a resolved one is resent for
//! [`RESOLVED_RETENTION`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::alerts::Rule;

/// How long a resolved alert keeps being resent to Alertmanager
/// (Prometheus: 15m), so that an Alertmanager that missed the first resolve
/// still closes the incident.
pub const RESOLVED_RETENTION: f64 = 15.0 * 60.0;

/// How often a firing alert is re-notified through the relay when its rule
/// is gone from the configuration (the built-in rules' default reminder).
const DEFAULT_REMINDER: Duration = Duration::from_secs(4 * 3600);

/// Where an instance is in its life.
///
/// Persisted in `alerts.json` as `inactive`, `pending` or `firing`: these
/// strings are the file format and must not change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The condition is false, or has not held for `fail_after` checks. A
    /// resolved alert is inactive again, with `resolved_at` set.
    #[default]
    Inactive,
    /// The condition holds; waiting for `for:` to run out.
    Pending,
    /// The condition held for `for:`: notified.
    Firing,
}

impl Phase {
    /// The persisted name, also the `state` label of `lookout_alerts`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Inactive => "inactive",
            Phase::Pending => "pending",
            Phase::Firing => "firing",
        }
    }
}

/// The whole state of one instance: a small `Copy` value, so that [`step`]
/// can take it and give back the next one.
///
/// The field names (and `state` for the phase) are those of `alerts.json`
/// and of `/api/v1/alerts`; times are Unix seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The phase.
    #[serde(rename = "state")]
    pub phase: Phase,
    /// Consecutive checks with the condition true.
    pub failing: u32,
    /// Consecutive checks with the condition false.
    pub passing: u32,
    /// When it became pending (`for:` counts from here).
    pub pending_since: Option<f64>,
    /// When it fired; kept after the resolve until the incident is closed.
    pub fired_at: Option<f64>,
    /// When it resolved (kept for resending).
    pub resolved_at: Option<f64>,
    /// Last push Alertmanager accepted.
    pub last_push: Option<f64>,
    /// Last notification the relay accepted.
    pub last_relay: Option<f64>,
    /// The time of the check last counted, so that a check seen again in a
    /// later round (probes run less often than rules) is not counted twice.
    pub last_check: f64,
}

/// A rule's timings, with the global resend delay: all [`step`] needs to
/// know about the configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Prometheus `for:`: how long pending lasts before firing.
    pub for_: Duration,
    /// Consecutive failing checks before pending.
    pub fail_after: u32,
    /// Consecutive passing checks before resolving.
    pub resolve_after: u32,
    /// Relay re-notification interval while firing.
    pub reminder: Duration,
    /// Alertmanager resend interval (`alerts.resend_delay`).
    pub resend: Duration,
}

impl Timing {
    /// The timings of `rule`, or, for an instance whose rule has been
    /// disabled since, the defaults that still let its resolve go out.
    pub fn of(rule: Option<&Rule>, resend: Duration) -> Timing {
        match rule {
            Some(r) => Timing {
                for_: r.for_,
                fail_after: r.fail_after,
                resolve_after: r.resolve_after,
                reminder: r.reminder,
                resend,
            },
            None => Timing {
                for_: Duration::ZERO,
                fail_after: 1,
                resolve_after: 1,
                reminder: DEFAULT_REMINDER,
                resend,
            },
        }
    }
}

/// What a notification says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The alert fires (or still does: a resend, a reminder).
    Firing,
    /// The alert has resolved.
    Resolved,
}

impl Status {
    /// The Alertmanager webhook `status` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// The two ways a notification leaves lookout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Pushed to Alertmanager's API, which groups, routes and repeats.
    Alertmanager,
    /// Straight into lookout's own relay: without an Alertmanager, or
    /// around one that cannot be reached.
    Relay,
}

/// One thing that happens to an instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Input {
    /// The rule's condition, as evaluated this round from the latest check
    /// made at `checked_at`.
    Check {
        /// Whether the condition holds.
        active: bool,
        /// When the check it comes from was made.
        checked_at: f64,
    },
    /// Asks what is due on one path now. Changes nothing: the state moves
    /// only when the delivery is confirmed by [`Input::Delivered`], so a
    /// failed delivery is simply due again next round.
    Due {
        /// The path asked about.
        via: Via,
        /// Inside a maintenance window nothing is due on any path.
        maintenance: bool,
        /// Whether an Alertmanager took this round's push or health check.
        /// The relay then stands aside: it owes only the resolves of the
        /// incidents it announced while Alertmanager was away (Alertmanager
        /// may never have notified their firing, and would then not notify
        /// their resolve either). Only the relay's share depends on it.
        alertmanager_up: bool,
    },
    /// A notification of [`Effect::Push`] or [`Effect::Relay`] was accepted.
    Delivered {
        /// The path that accepted it.
        via: Via,
        /// What it said.
        status: Status,
    },
}

/// What the engine must do after a step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Effect {
    /// The alert has just fired (worth a log line).
    Fired,
    /// The alert has just resolved (worth a log line).
    Resolved,
    /// Push this to Alertmanager, with this `endsAt`.
    Push {
        /// Firing or resolved.
        status: Status,
        /// `endsAt`: four resends ahead while firing, the resolve time after.
        ends_at: f64,
    },
    /// Hand this to the relay.
    Relay {
        /// Firing (first notice or reminder) or resolved.
        status: Status,
    },
}

/// One transition: the next state and its effects. Pure: `now` is passed
/// in, and nothing outside the arguments is read.
pub fn step(t: &Timing, s: State, input: Input, now: f64) -> (State, Vec<Effect>) {
    match input {
        Input::Check { active, checked_at } => check(t, s, active, checked_at, now),
        Input::Due { maintenance: true, .. } => (s, Vec::new()),
        Input::Due {
            via: Via::Alertmanager, ..
        } => (s, push_due(t, &s, now).into_iter().collect()),
        Input::Due {
            via: Via::Relay,
            alertmanager_up,
            ..
        } => (s, relay_due(t, &s, alertmanager_up, now).into_iter().collect()),
        Input::Delivered {
            via: Via::Alertmanager, ..
        } => (State { last_push: Some(now), ..s }, Vec::new()),
        Input::Delivered { via: Via::Relay, status } => {
            let mut next = State {
                last_relay: Some(now),
                ..s
            };
            if status == Status::Resolved {
                // The relay has closed the incident it announced.
                next.fired_at = None;
            }
            (next, Vec::new())
        }
    }
}

/// Counts a new check, then moves through the phases.
fn check(t: &Timing, mut s: State, active: bool, checked_at: f64, now: f64) -> (State, Vec<Effect>) {
    let mut effects = Vec::new();
    if checked_at > s.last_check {
        s.last_check = checked_at;
        if active {
            s.failing += 1;
            s.passing = 0;
        } else {
            s.passing += 1;
            s.failing = 0;
        }
    }
    match s.phase {
        Phase::Inactive if active && s.failing >= t.fail_after => {
            s.phase = Phase::Pending;
            s.pending_since = Some(now);
        }
        // Pending has no hysteresis: one good check and it is over.
        Phase::Pending if !active => {
            s.phase = Phase::Inactive;
            s.pending_since = None;
        }
        Phase::Firing if !active && s.passing >= t.resolve_after => {
            s.phase = Phase::Inactive;
            s.resolved_at = Some(now);
            s.pending_since = None;
            effects.push(Effect::Resolved);
        }
        _ => {}
    }
    // Checked after the move to pending, so that `for: 0s` fires at once.
    if s.phase == Phase::Pending && s.pending_since.is_some_and(|p| now - p >= t.for_.as_secs_f64()) {
        s.phase = Phase::Firing;
        s.fired_at = Some(now);
        s.resolved_at = None;
        s.last_push = None;
        s.last_relay = None;
        effects.push(Effect::Fired);
    }
    (s, effects)
}

/// Alertmanager's share: a firing alert every `resend_delay`; a resolved one
/// at once, then every `resend_delay` for [`RESOLVED_RETENTION`].
fn push_due(t: &Timing, s: &State, now: f64) -> Option<Effect> {
    let resend = t.resend.as_secs_f64();
    let due = s.last_push.is_none_or(|p| now - p >= resend);
    match s.phase {
        Phase::Firing if due => Some(Effect::Push {
            status: Status::Firing,
            ends_at: now + 4.0 * resend,
        }),
        Phase::Inactive if s.fired_at.is_some() => {
            let resolved = s.resolved_at.filter(|r| now - r <= RESOLVED_RETENTION)?;
            (due || s.last_push < Some(resolved)).then_some(Effect::Push {
                status: Status::Resolved,
                ends_at: resolved,
            })
        }
        _ => None,
    }
}

/// The relay's share: while Alertmanager is absent or away, the first
/// notice and a reminder every `reminder` while firing; in any case, the
/// resolve of an incident it announced, once — the relay closes what it
/// opened.
fn relay_due(t: &Timing, s: &State, alertmanager_up: bool, now: f64) -> Option<Effect> {
    let status = match s.phase {
        Phase::Firing if !alertmanager_up && s.last_relay.is_none_or(|r| now - r >= t.reminder.as_secs_f64()) => Status::Firing,
        Phase::Inactive if s.relay_owes_resolve() => Status::Resolved,
        _ => return None,
    };
    Some(Effect::Relay { status })
}

impl State {
    /// Whether the relay announced this incident's firing and not yet its
    /// resolve. The relay resolves only what it announced: an incident that
    /// Alertmanager carried is not resolved a second time around it when
    /// Alertmanager later goes down; and one it announced is resolved
    /// through it even once Alertmanager is back.
    pub fn relay_owes_resolve(&self) -> bool {
        let announced = self.fired_at.is_some_and(|f| self.last_relay.is_some_and(|r| r >= f));
        announced && self.resolved_at.is_some() && self.last_relay < self.resolved_at
    }

    /// Whether the instance can be forgotten: inactive with no failing
    /// streak (a streak is its hysteresis), no resolve still resent to
    /// Alertmanager, and none owed by the relay.
    pub fn finished(&self, now: f64) -> bool {
        self.phase == Phase::Inactive
            && self.failing == 0
            && !self.relay_owes_resolve()
            && self.resolved_at.is_none_or(|r| now - r > RESOLVED_RETENTION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AM: Via = Via::Alertmanager;
    const RELAY: Via = Via::Relay;

    fn timing(for_s: u64, fail_after: u32, resolve_after: u32) -> Timing {
        Timing {
            for_: Duration::from_secs(for_s),
            fail_after,
            resolve_after,
            reminder: Duration::from_secs(3600),
            resend: Duration::from_secs(60),
        }
    }

    /// Checks are stamped by the probe that made them; a fresh state has
    /// counted none (`last_check` 0), so the tables' check times start here.
    const PROBE_CLOCK: f64 = 1_000.0;

    fn fail(at: f64) -> Input {
        Input::Check {
            active: true,
            checked_at: PROBE_CLOCK + at,
        }
    }

    fn pass(at: f64) -> Input {
        Input::Check {
            active: false,
            checked_at: PROBE_CLOCK + at,
        }
    }

    /// Asks `via` what is due, out of maintenance, with Alertmanager away
    /// (when asking the relay; Alertmanager's share does not depend on it).
    fn due(via: Via) -> Input {
        Input::Due {
            via,
            maintenance: false,
            alertmanager_up: false,
        }
    }

    /// Asks the relay what is due beside a healthy Alertmanager.
    const BESIDE_AM: Input = Input::Due {
        via: Via::Relay,
        maintenance: false,
        alertmanager_up: true,
    };

    fn delivered(via: Via, status: Status) -> Input {
        Input::Delivered { via, status }
    }

    fn push(status: Status, ends_at: f64) -> Vec<Effect> {
        vec![Effect::Push { status, ends_at }]
    }

    fn relay(status: Status) -> Vec<Effect> {
        vec![Effect::Relay { status }]
    }

    /// Runs `rows` of (time, input, expected phase, expected effects) from
    /// `start`, naming the table and row of any mismatch; returns the end state.
    fn run(name: &str, t: &Timing, start: State, rows: &[(f64, Input, Phase, Vec<Effect>)]) -> State {
        rows.iter().enumerate().fold(start, |s, (n, (now, input, phase, effects))| {
            let (next, got) = step(t, s, *input, *now);
            assert_eq!(
                (next.phase, &got),
                (*phase, effects),
                "{name}, row {n}: {input:?} at {now} from {s:?}"
            );
            next
        })
    }

    /// An instance that fired at 0 (`t` with `for: 0s` and `fail_after: 1`).
    fn fired(t: &Timing) -> State {
        run("fire", t, State::default(), &[(0.0, fail(0.0), Phase::Firing, vec![Effect::Fired])])
    }

    use Phase::{Firing, Inactive, Pending};
    use Status::{Firing as F, Resolved as R};

    #[test]
    fn pending_then_firing_after_for_then_resolved() {
        let t = timing(60, 1, 1);
        let end = run(
            "for: 60s",
            &t,
            State::default(),
            &[
                (10.0, fail(10.0), Pending, vec![]),
                (40.0, fail(40.0), Pending, vec![]),
                // Not before `for:`, even a hair short of it.
                (69.9, fail(69.9), Pending, vec![]),
                (70.0, fail(70.0), Firing, vec![Effect::Fired]),
                (75.0, due(AM), Firing, push(F, 75.0 + 240.0)),
                (75.0, delivered(AM, F), Firing, vec![]),
                (80.0, pass(80.0), Inactive, vec![Effect::Resolved]),
                (80.0, due(AM), Inactive, push(R, 80.0)),
            ],
        );
        assert_eq!((end.pending_since, end.fired_at, end.resolved_at), (None, Some(70.0), Some(80.0)));
    }

    #[test]
    fn pending_ends_at_the_first_good_check() {
        run(
            "pending → inactive",
            &timing(60, 1, 3),
            State::default(),
            &[
                (0.0, fail(0.0), Pending, vec![]),
                (30.0, pass(30.0), Inactive, vec![]),
                // `for:` counts again from the next pending.
                (40.0, fail(40.0), Pending, vec![]),
                (90.0, fail(90.0), Pending, vec![]),
                (100.0, fail(100.0), Firing, vec![Effect::Fired]),
            ],
        );
    }

    #[test]
    fn for_zero_fires_on_the_check_that_makes_it_pending() {
        run(
            "for: 0s",
            &timing(0, 2, 1),
            State::default(),
            &[(1.0, fail(1.0), Inactive, vec![]), (2.0, fail(2.0), Firing, vec![Effect::Fired])],
        );
    }

    #[test]
    fn fail_after_and_resolve_after_keep_a_flapping_condition_quiet() {
        let t = timing(0, 3, 3);
        let flapping: Vec<_> = (0..10)
            .map(|n| {
                let at = n as f64;
                (at, if n % 2 == 0 { fail(at) } else { pass(at) }, Inactive, vec![])
            })
            .collect();
        let s = run("flapping", &t, State::default(), &flapping);
        let s = run(
            "three in a row",
            &t,
            s,
            &[
                (10.0, fail(10.0), Inactive, vec![]),
                (11.0, fail(11.0), Inactive, vec![]),
                (12.0, fail(12.0), Firing, vec![Effect::Fired]),
                // Firing: two good checks are not enough to resolve…
                (13.0, pass(13.0), Firing, vec![]),
                (14.0, pass(14.0), Firing, vec![]),
                (15.0, fail(15.0), Firing, vec![]),
                (16.0, pass(16.0), Firing, vec![]),
                (17.0, pass(17.0), Firing, vec![]),
                // …three are.
                (18.0, pass(18.0), Inactive, vec![Effect::Resolved]),
            ],
        );
        assert_eq!(s.resolved_at, Some(18.0));
    }

    #[test]
    fn a_check_is_counted_once_however_many_rounds_see_it() {
        let t = timing(60, 3, 1);
        let s = run(
            "same check",
            &t,
            State::default(),
            &[
                (1.0, fail(1.0), Inactive, vec![]),
                (1.5, fail(1.0), Inactive, vec![]),
                (2.0, fail(1.0), Inactive, vec![]),
            ],
        );
        assert_eq!(s.failing, 1);
        // Yet `for:` runs on rounds, not checks: a stale check still fires.
        let s = run(
            "stale check",
            &timing(60, 1, 1),
            s,
            &[(2.0, fail(1.0), Pending, vec![]), (62.0, fail(1.0), Firing, vec![Effect::Fired])],
        );
        assert_eq!(s.fired_at, Some(62.0));
    }

    #[test]
    fn alertmanager_resends_while_firing_and_for_a_while_after_the_resolve() {
        let t = timing(0, 1, 1);
        let resolved = run(
            "resends",
            &t,
            fired(&t),
            &[
                (0.0, due(AM), Firing, push(F, 240.0)),
                (0.0, delivered(AM, F), Firing, vec![]),
                // Nothing due between resends.
                (30.0, due(AM), Firing, vec![]),
                (59.0, due(AM), Firing, vec![]),
                (60.0, due(AM), Firing, push(F, 300.0)),
                // Not accepted: due again next round.
                (61.0, due(AM), Firing, push(F, 301.0)),
                (61.0, delivered(AM, F), Firing, vec![]),
                (62.0, due(AM), Firing, vec![]),
                // The resolve goes at once, without waiting for the resend.
                (70.0, pass(70.0), Inactive, vec![Effect::Resolved]),
                (70.0, due(AM), Inactive, push(R, 70.0)),
                (70.0, delivered(AM, R), Inactive, vec![]),
                (100.0, due(AM), Inactive, vec![]),
                (130.0, due(AM), Inactive, push(R, 70.0)),
                (130.0, delivered(AM, R), Inactive, vec![]),
            ],
        );
        // Until the retention runs out; then the instance can go.
        let end = 70.0 + RESOLVED_RETENTION;
        run("retention", &t, resolved, &[(end + 1.0, due(AM), Inactive, vec![])]);
        assert!(!resolved.finished(end) && resolved.finished(end + 1.0));
    }

    #[test]
    fn the_relay_notifies_once_reminds_and_resolves_what_it_announced() {
        let t = timing(0, 1, 1);
        let end = run(
            "relay",
            &t,
            fired(&t),
            &[
                (0.0, due(RELAY), Firing, relay(F)),
                (0.0, delivered(RELAY, F), Firing, vec![]),
                (1.0, due(RELAY), Firing, vec![]),
                (3599.0, due(RELAY), Firing, vec![]),
                // `reminder` (1h here) later, once more.
                (3600.0, due(RELAY), Firing, relay(F)),
                (3600.0, delivered(RELAY, F), Firing, vec![]),
                (3700.0, pass(3700.0), Inactive, vec![Effect::Resolved]),
                (3700.0, due(RELAY), Inactive, relay(R)),
                // A failed hand-over stays due.
                (3701.0, due(RELAY), Inactive, relay(R)),
                (3701.0, delivered(RELAY, R), Inactive, vec![]),
                (3702.0, due(RELAY), Inactive, vec![]),
            ],
        );
        // The incident is closed; no resolve is resent to Alertmanager either.
        assert_eq!(end.fired_at, None);
        assert!(end.finished(3700.0 + RESOLVED_RETENTION + 1.0));
    }

    #[test]
    fn the_relay_does_not_resolve_what_alertmanager_carried() {
        let t = timing(0, 1, 1);
        let s = run(
            "carried by Alertmanager",
            &t,
            fired(&t),
            &[
                (0.0, due(AM), Firing, push(F, 240.0)),
                (0.0, delivered(AM, F), Firing, vec![]),
                // Beside a healthy Alertmanager the relay stays quiet…
                (0.0, BESIDE_AM, Firing, vec![]),
                (5.0, BESIDE_AM, Firing, vec![]),
                (10.0, pass(10.0), Inactive, vec![Effect::Resolved]),
                (10.0, due(AM), Inactive, push(R, 10.0)),
                (10.0, delivered(AM, R), Inactive, vec![]),
                // …for the resolve too…
                (10.0, BESIDE_AM, Inactive, vec![]),
                // …and with Alertmanager down now, it owes nothing for this incident.
                (20.0, due(RELAY), Inactive, vec![]),
            ],
        );
        assert!(!s.relay_owes_resolve());
        assert!(s.finished(10.0 + RESOLVED_RETENTION + 1.0), "forgotten once the resends stop");
    }

    #[test]
    fn an_alert_firing_around_a_down_alertmanager_is_resolved_the_same_way() {
        let t = timing(0, 1, 1);
        run(
            "around Alertmanager",
            &t,
            fired(&t),
            &[
                // The push fails (no Delivered), so the relay carries it.
                (0.0, due(AM), Firing, push(F, 240.0)),
                (0.0, due(RELAY), Firing, relay(F)),
                (0.0, delivered(RELAY, F), Firing, vec![]),
                (5.0, pass(5.0), Inactive, vec![Effect::Resolved]),
                (5.0, due(AM), Inactive, push(R, 5.0)),
                (5.0, due(RELAY), Inactive, relay(R)),
            ],
        );
    }

    #[test]
    fn the_relay_closes_what_it_opened_once_alertmanager_is_back() {
        let t = timing(0, 1, 1);
        run(
            "Alertmanager back",
            &t,
            fired(&t),
            &[
                // Alertmanager away: the relay announces the firing.
                (0.0, due(AM), Firing, push(F, 240.0)),
                (0.0, due(RELAY), Firing, relay(F)),
                (0.0, delivered(RELAY, F), Firing, vec![]),
                // Alertmanager back: it takes the resends, the relay no reminders.
                (10.0, due(AM), Firing, push(F, 250.0)),
                (10.0, delivered(AM, F), Firing, vec![]),
                (3600.0, BESIDE_AM, Firing, vec![]),
                (3700.0, pass(3700.0), Inactive, vec![Effect::Resolved]),
                // Both resolve: Alertmanager may never have notified the
                // firing (it arrived within its group_wait), and would then
                // stay silent about the resolve.
                (3700.0, due(AM), Inactive, push(R, 3700.0)),
                (3700.0, BESIDE_AM, Inactive, relay(R)),
                (3700.0, delivered(RELAY, R), Inactive, vec![]),
                (3701.0, BESIDE_AM, Inactive, vec![]),
            ],
        );
    }

    #[test]
    fn nothing_is_due_inside_a_maintenance_window_and_all_of_it_after() {
        let t = timing(0, 1, 1);
        let in_window = |via| Input::Due {
            via,
            maintenance: true,
            alertmanager_up: false,
        };
        let s = run(
            "maintenance",
            &t,
            fired(&t),
            &[
                // The state moved, but nothing goes out, on either path…
                (0.0, in_window(AM), Firing, vec![]),
                (0.0, in_window(RELAY), Firing, vec![]),
                (500.0, in_window(AM), Firing, vec![]),
                // Window over: the alert goes out, first time.
                (600.0, due(AM), Firing, push(F, 840.0)),
                (600.0, due(RELAY), Firing, relay(F)),
            ],
        );
        assert_eq!(s.last_push, None, "asking changes nothing");
    }

    #[test]
    fn a_resolve_inside_a_window_reaches_alertmanager_after_it() {
        let t = timing(0, 1, 1);
        run(
            "resolved in maintenance",
            &t,
            fired(&t),
            &[
                (0.0, due(AM), Firing, push(F, 240.0)),
                (0.0, delivered(AM, F), Firing, vec![]),
                (10.0, pass(10.0), Inactive, vec![Effect::Resolved]),
                (
                    10.0,
                    Input::Due {
                        via: AM,
                        maintenance: true,
                        alertmanager_up: true,
                    },
                    Inactive,
                    vec![],
                ),
                (20.0, due(AM), Inactive, push(R, 10.0)),
            ],
        );
    }

    #[test]
    fn a_restart_resumes_from_the_persisted_state() {
        let t = timing(0, 1, 2);
        let before = run(
            "before the restart",
            &t,
            fired(&t),
            &[
                (0.0, due(RELAY), Firing, relay(F)),
                (0.0, delivered(RELAY, F), Firing, vec![]),
                (1.0, pass(1.0), Firing, vec![]),
            ],
        );
        // What `alerts.json` holds, read back by the next lookout.
        let json = serde_json::to_string(&before).expect("a state serialises");
        let after: State = serde_json::from_str(&json).expect("and reads back");
        assert_eq!(after, before);
        run(
            "after the restart",
            &t,
            after,
            &[
                // The same check, seen again, is not counted twice…
                (30.0, pass(1.0), Firing, vec![]),
                // …a new one is, and completes `resolve_after`.
                (31.0, pass(31.0), Inactive, vec![Effect::Resolved]),
                // The resolve still reaches whoever was told of the firing.
                (31.0, due(RELAY), Inactive, relay(R)),
                // No reminder for a firing already announced before the restart.
            ],
        );
        run("no re-notice", &t, after, &[(30.0, due(RELAY), Firing, vec![])]);
    }

    #[test]
    fn a_new_incident_starts_clean() {
        let t = timing(0, 1, 1);
        let s = run(
            "two incidents",
            &t,
            fired(&t),
            &[
                (0.0, delivered(AM, F), Firing, vec![]),
                (0.0, delivered(RELAY, F), Firing, vec![]),
                (5.0, pass(5.0), Inactive, vec![Effect::Resolved]),
                (9.0, fail(9.0), Firing, vec![Effect::Fired]),
                // Both paths hear of the new incident at once.
                (9.0, due(AM), Firing, push(F, 249.0)),
                (9.0, due(RELAY), Firing, relay(F)),
            ],
        );
        assert_eq!(
            (s.fired_at, s.resolved_at, s.last_push, s.last_relay),
            (Some(9.0), None, None, None)
        );
    }

    #[test]
    fn phases_keep_their_persisted_names() {
        for (phase, name) in [(Inactive, "inactive"), (Pending, "pending"), (Firing, "firing")] {
            assert_eq!(serde_json::to_string(&phase).ok(), Some(format!("\"{name}\"")));
            assert_eq!(phase.as_str(), name);
        }
    }
}
