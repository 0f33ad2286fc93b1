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
//! it is the figure the flush's watch follows.
//!
//! A case passes, fails, or could not be told (a source down, a rule not
//! loaded, a value stale): the run's verdict is the worst of them, so
//! "could not tell" is never read as "passed".

use std::time::Duration;

use serde::Serialize;

use super::doctor::{Api, GUIDE_RULES, Status};
use crate::config::Endpoint;
use crate::crosscheck::{Overall, Report, Setup, Verdict};
use crate::probe::{self, unix_now};

/// What change is being verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum After {
    /// A cache flush (`lookout redis flush`).
    Flush,
}

/// One case of a suite. The JSON form is a stable interface.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    /// `probes`, `crosscheck`, `dashboard` or `rules`.
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
    let started = unix_now();
    let clock = std::time::Instant::now();
    let parts = async {
        let mut cases = probes(cfg).await;
        // The round's own wait for a fresh scrape stays inside the timeout.
        let round = crate::crosscheck::run_now(cfg, Some(timeout.mul_f64(0.8))).await;
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
