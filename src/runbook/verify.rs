//! `lookout verify`: after a change, one complete look at everything lookout
//! reads, with a pass/fail answer for the change ticket.
//!
//! Three parts, each a suite of cases: every probe once (`probes`), one
//! complete cross-check round (`crosscheck`: the same round `lookout report`
//! runs, which waits for a Prometheus scrape newer than its first reading of
//! Redis, so a sample from before the change is never judged against Redis
//! after it), and the alert rules' current state in Prometheus (`rules`: the
//! guide's rules must be loaded and neither pending nor firing). After a
//! flush (`--after flush`), the dashboard's windowed hit rate is judged too:
//! it is the figure the flush's watch follows. After a failover (`--after
//! failover`), a fourth part (`failover`) reads the `redis_sentinel` probe's
//! topology: the master says `role:master`, its `run_id` is not the one
//! recorded before, every replica's link is up within [`MAX_LAG_SECONDS`];
//! and the round is told of the change, so a source still on the former
//! master is named by the cross-check's own rule.
//!
//! A case passes, fails, or could not be told (a source down, a rule not
//! loaded, a value stale): the run's verdict is the worst of them, so
//! "could not tell" is never read as "passed".

use std::time::Duration;

use serde::Serialize;

use super::doctor::{Api, GUIDE_RULES, Status};
use crate::config::Endpoint;
use crate::crosscheck::{Overall, Report, Setup, Verdict};
use crate::probe::topology::{Failover, Topology};
use crate::probe::{self, ProbeSpec, unix_now};

/// What change is being verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum After {
    /// A cache flush (`lookout redis flush`).
    Flush,
    /// A master change through Sentinel.
    Failover,
}

/// A replica further behind than this (seconds since its master last heard
/// from it) is not in sync: Redis's own `min-replicas-max-lag` defaults to
/// the same 10 s.
pub const MAX_LAG_SECONDS: f64 = 10.0;

/// How far back the history is read for the master recorded before a
/// failover: a day covers a change made and verified in one shift, and
/// bounds what is read from a large store.
const PREVIOUS_WINDOW: f64 = 24.0 * 3600.0;

/// One case of a suite. The JSON form is a stable interface.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    /// `probes`, `failover`, `crosscheck`, `dashboard` or `rules`.
    pub suite: &'static str,
    /// The probe, `metric/source`, or rule.
    pub name: String,
    /// `pass`, `fail`, `unknown` (could not tell) or `skipped` (not
    /// applicable: the dashboard's rate without five minutes of history).
    pub status: Status,
    /// What was seen, for a person.
    pub detail: String,
}

/// A whole run. The JSON form is a stable interface.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// When it started, Unix seconds.
    pub started: f64,
    /// How long it took.
    pub duration_seconds: f64,
    /// The change verified, if named.
    pub after: Option<After>,
    /// `pass`, `fail` or `unknown`: the worst case.
    pub verdict: Status,
    /// Every case, suite by suite.
    pub cases: Vec<Case>,
    /// The cross-check round, in full (as `lookout report --format json`).
    pub round: Option<Report>,
}

impl Outcome {
    /// The exit status: 0 passed, 1 failed, 2 could not tell.
    pub fn exit_code(&self) -> u8 {
        match self.verdict {
            Status::Pass | Status::Skipped => 0,
            Status::Fail => 1,
            Status::Unknown => 2,
        }
    }
}

/// The worst status of `cases` (no case: could not tell).
fn worst(cases: &[Case]) -> Status {
    if cases.iter().any(|c| c.status == Status::Fail) {
        Status::Fail
    } else if cases.is_empty() || cases.iter().any(|c| c.status == Status::Unknown) {
        Status::Unknown
    } else {
        Status::Pass
    }
}

/// Runs the three parts within `timeout`; past it, the run could not tell.
pub async fn run(cfg: &impl Setup, prometheus: Option<&Endpoint>, after: Option<After>, timeout: Duration) -> Outcome {
    run_after(cfg, prometheus, after, None, timeout).await
}

/// [`run`], with the former master's `run_id` given for `--after failover`
/// (else it is read from the history).
pub async fn run_after(
    cfg: &impl Setup,
    prometheus: Option<&Endpoint>,
    after: Option<After>,
    previous_run_id: Option<String>,
    timeout: Duration,
) -> Outcome {
    let started = unix_now();
    let clock = std::time::Instant::now();
    let sentinel = cfg.probes().iter().find(|p| matches!(p.spec, ProbeSpec::RedisSentinel(_)));
    if after == Some(After::Failover) && sentinel.is_none() {
        let cases = vec![Case {
            suite: "failover",
            name: "topology".into(),
            status: Status::Unknown,
            detail: "no `kind: redis_sentinel` probe is configured: which node is the master, and whether it changed, cannot be read"
                .into(),
        }];
        return Outcome {
            started,
            duration_seconds: clock.elapsed().as_secs_f64(),
            after,
            verdict: worst(&cases),
            cases,
            round: None,
        };
    }
    let parts = async {
        let mut cases = probes(cfg).await;
        let mut change = None;
        if let (Some(After::Failover), Some(p)) = (after, sentinel) {
            let (found, failover_cases) = failover(cfg, p, previous_run_id, started).await;
            change = found;
            cases.extend(failover_cases);
        }
        // The round's own wait for a fresh scrape stays inside the timeout.
        let round = crate::crosscheck::run_now_after(cfg, Some(timeout.mul_f64(0.8)), change.as_ref()).await;
        let round = match round {
            Ok(r) => {
                cases.extend(round_cases(&r, after));
                Some(r)
            }
            Err(e) => {
                cases.push(Case {
                    suite: "crosscheck",
                    name: "round".into(),
                    status: Status::Unknown,
                    detail: e.to_string(),
                });
                None
            }
        };
        cases.extend(rules(super::doctor::prometheus_api(cfg.probes(), prometheus)).await);
        (cases, round)
    };
    let (cases, round) = match tokio::time::timeout(timeout, parts).await {
        Ok(v) => v,
        Err(_) => (
            vec![Case {
                suite: "verify",
                name: "timeout".into(),
                status: Status::Unknown,
                detail: format!("not finished within {}", humantime::format_duration(timeout)),
            }],
            None,
        ),
    };
    Outcome {
        started,
        duration_seconds: clock.elapsed().as_secs_f64(),
        after,
        verdict: worst(&cases),
        cases,
        round,
    }
}

/// Every probe once, at the same time.
async fn probes(cfg: &impl Setup) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut handles = Vec::new();
    for p in cfg.probes() {
        match probe::build(p) {
            Ok(h) => handles.push(h),
            Err(e) => cases.push(Case {
                suite: "probes",
                name: p.name.clone(),
                status: Status::Unknown,
                detail: e,
            }),
        }
    }
    for o in futures::future::join_all(handles.iter().map(probe::run)).await {
        cases.push(Case {
            suite: "probes",
            name: o.name.clone(),
            status: if o.ok { Status::Pass } else { Status::Fail },
            detail: match &o.error {
                Some(e) => e.clone(),
                None => format!("{} ok in {:.1} ms", o.kind, o.duration_seconds * 1000.0),
            },
        });
    }
    cases
}

/// The master recorded before the change, from the history of the probe
/// `name`: the change the daemon saw itself when it saw one, else the
/// newest master it recorded (with its `run_id` and when).
async fn recorded(cfg: &impl Setup, name: &str) -> Option<Failover> {
    let name = name.to_string();
    let since = unix_now() - PREVIOUS_WINDOW;
    let stored = crate::store::read_existing(cfg.data_dir(), move |r| r.since(Some(&name), since))
        .await
        .ok()
        .flatten()?;
    let (o, t) = stored
        .iter()
        .rev()
        .find_map(|o| o.facts.topology.as_deref().filter(|t| t.master.is_some()).map(|t| (o, t)))?;
    if let Some(f) = &t.last_failover {
        return Some(f.clone());
    }
    Some(Failover {
        from: t.master.clone()?,
        from_run_id: t.nodes.first().and_then(|n| n.run_id.clone()).or(o.facts.run_id.clone()),
        to: String::new(),
        at: o.timestamp,
    })
}

/// The failover part: the master's role, a new `run_id` against the one
/// recorded before, the replicas in sync. Gives the change (for the round)
/// when the former master is known.
async fn failover(
    cfg: &impl Setup,
    p: &probe::ProbeConfig,
    previous_run_id: Option<String>,
    started: f64,
) -> (Option<Failover>, Vec<Case>) {
    let case = |name: &str, status, detail: String| Case {
        suite: "failover",
        name: name.to_string(),
        status,
        detail,
    };
    let o = match probe::build(p) {
        Ok(h) => probe::run(&h).await,
        Err(e) => return (None, vec![case("topology", Status::Unknown, e)]),
    };
    let Some(t) = o.facts.topology.as_deref().filter(|t| t.master.is_some()) else {
        let why = o.error.unwrap_or_else(|| "no master named".into());
        return (None, vec![case("topology", Status::Unknown, format!("`{}`: {why}", p.name))]);
    };
    let master = t.master.clone().unwrap_or_default();
    let node = t.nodes.iter().find(|n| n.address == master);
    let mut cases = vec![match node {
        Some(n) if n.reported_role.as_deref() == Some("master") => {
            case("master role", Status::Pass, format!("{master} reports role:master"))
        }
        Some(n) if n.ok => case(
            "master role",
            Status::Fail,
            format!(
                "{master}, named by the sentinels, reports role:{}",
                n.reported_role.as_deref().unwrap_or("?")
            ),
        ),
        _ => case(
            "master role",
            Status::Unknown,
            format!(
                "{master} did not answer: {}",
                node.and_then(|n| n.error.as_deref()).unwrap_or("no reading")
            ),
        ),
    }];

    // The former master: the flag, else the history.
    let before = match previous_run_id {
        Some(id) => Some(Failover {
            from: former_address(t, &id),
            from_run_id: Some(id),
            to: String::new(),
            at: started,
        }),
        None => recorded(cfg, &p.name).await,
    };
    let now_id = node.and_then(|n| n.run_id.clone());
    let change = match (&before, &now_id) {
        (None, _) => {
            cases.push(case(
                "new run_id",
                Status::Unknown,
                format!(
                    "no master of `{}` recorded in the history under {} in the last day: give --previous-run-id",
                    p.name,
                    cfg.data_dir().display()
                ),
            ));
            None
        }
        (Some(_), None) => {
            cases.push(case("new run_id", Status::Unknown, format!("{master} gave no run_id")));
            None
        }
        (Some(b), Some(id)) if b.from_run_id.as_deref() == Some(id.as_str()) => {
            cases.push(case(
                "new run_id",
                Status::Fail,
                format!("{master} still has run_id {id}, the one recorded before: the master did not change"),
            ));
            None
        }
        (Some(b), Some(id)) => {
            cases.push(case(
                "new run_id",
                Status::Pass,
                format!(
                    "new master {master} (run_id {id}); before: {} (run_id {})",
                    b.from,
                    b.from_run_id.as_deref().unwrap_or("?")
                ),
            ));
            let mut f = b.clone();
            f.to = master.clone();
            Some(f)
        }
    };

    for n in t.nodes.iter().filter(|n| n.role == "replica") {
        let lag = n.lag_seconds.map(|s| format!("{s:.0} s")).unwrap_or_else(|| "?".into());
        let bytes = n.lag_bytes.map(|b| format!("{b:.0} bytes")).unwrap_or_else(|| "? bytes".into());
        cases.push(match (n.ok, n.link_up, n.lag_seconds) {
            (false, _, _) => case(
                &format!("replica {}", n.address),
                Status::Fail,
                format!("not answering: {}", n.error.as_deref().unwrap_or("no reading")),
            ),
            (true, Some(true), Some(s)) if s <= MAX_LAG_SECONDS => case(
                &format!("replica {}", n.address),
                Status::Pass,
                format!("link up, lag {lag}, {bytes}"),
            ),
            (true, Some(true), _) => case(
                &format!("replica {}", n.address),
                Status::Fail,
                format!("link up but lag {lag} (at most {MAX_LAG_SECONDS:.0} s), {bytes}"),
            ),
            (true, _, _) => case(
                &format!("replica {}", n.address),
                Status::Fail,
                "master_link_status is not up: not in sync with the new master".into(),
            ),
        });
    }
    (change, cases)
}

/// The address of the node whose `run_id` is `id` (the former master, now a
/// replica), or words saying it is not in the topology.
fn former_address(t: &Topology, id: &str) -> String {
    t.nodes
        .iter()
        .find(|n| n.run_id.as_deref() == Some(id))
        .map(|n| n.address.clone())
        .unwrap_or_else(|| "(not in the topology now)".into())
}

/// The round's entries as cases: agree passes, disagree fails, anything
/// else (stale, a source down, a reset) could not be judged.
fn round_cases(r: &Report, after: Option<After>) -> Vec<Case> {
    let case = |suite: &'static str, e: &crate::crosscheck::Entry| Case {
        suite,
        name: format!("{}/{}", e.metric, e.source),
        status: match e.verdict {
            Verdict::Agree => Status::Pass,
            Verdict::Disagree => Status::Fail,
            _ => Status::Unknown,
        },
        detail: format!("{}: {}", e.verdict, e.reason),
    };
    let mut out: Vec<Case> = r.entries.iter().map(|e| case("crosscheck", e)).collect();
    if out.is_empty() {
        out.push(Case {
            suite: "crosscheck",
            name: "round".into(),
            status: match r.verdict {
                Overall::Disagree => Status::Fail,
                _ => Status::Unknown,
            },
            detail: format!("the round judged nothing ({})", r.verdict.as_str()),
        });
    }
    if after == Some(After::Flush) {
        // The windowed rate needs five minutes of the reference's readings,
        // which only a daemon's history (same `data_dir`) holds: without
        // them it is not applicable, not unknown.
        out.extend(r.dashboard.iter().map(|e| {
            let mut c = case("dashboard", e);
            if c.status == Status::Unknown {
                c.status = Status::Skipped;
            }
            c
        }));
    }
    out
}

/// The alert rules' state: the guide's must be loaded and inactive; any
/// other rule on Redis that is pending or firing fails too.
async fn rules(api: Option<Api>) -> Vec<Case> {
    let case = |name: &str, status, detail: String| Case {
        suite: "rules",
        name: name.to_string(),
        status,
        detail,
    };
    let Some(api) = api else {
        return vec![case(
            "rules",
            Status::Unknown,
            "no Prometheus configured: the alert rules cannot be read".into(),
        )];
    };
    let groups = match api.data("api/v1/rules", &[("type", "alert")]).await {
        Ok(d) => d["groups"].as_array().cloned().unwrap_or_default(),
        Err(e) => return vec![case("rules", Status::Unknown, format!("the rules API failed: {e}"))],
    };
    let all: Vec<serde_json::Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect();
    let mut names: Vec<String> = GUIDE_RULES.iter().map(|s| s.to_string()).collect();
    for r in &all {
        if let Some(n) = r["name"]
            .as_str()
            .filter(|n| n.starts_with("Redis") && !names.iter().any(|m| m == n))
        {
            names.push(n.to_string());
        }
    }
    names
        .iter()
        .map(|name| {
            let Some(r) = all.iter().find(|r| r["name"] == name.as_str()) else {
                return case(name, Status::Unknown, "not loaded in Prometheus (`lookout doctor` says why)".into());
            };
            if r["health"] != "ok" {
                return case(
                    name,
                    Status::Unknown,
                    format!("unhealthy: {}", r["lastError"].as_str().unwrap_or("")),
                );
            }
            let state = r["state"].as_str().unwrap_or("unknown");
            let active: Vec<String> = r["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    format!(
                        "{} {}",
                        a["labels"]["instance"].as_str().unwrap_or(""),
                        a["state"].as_str().unwrap_or("")
                    )
                    .trim()
                    .to_string()
                })
                .collect();
            match state {
                "inactive" => case(name, Status::Pass, "inactive".into()),
                s => case(name, Status::Fail, format!("{s}: {}", active.join(", "))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(status: Status) -> Case {
        Case {
            suite: "probes",
            name: "x".into(),
            status,
            detail: String::new(),
        }
    }

    #[test]
    fn the_verdict_is_the_worst_case_and_nothing_is_could_not_tell() {
        assert_eq!(worst(&[c(Status::Pass), c(Status::Pass)]), Status::Pass);
        assert_eq!(worst(&[c(Status::Pass), c(Status::Unknown)]), Status::Unknown);
        assert_eq!(worst(&[c(Status::Unknown), c(Status::Fail)]), Status::Fail);
        assert_eq!(worst(&[]), Status::Unknown);
    }
}
