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
//! Prometheus holds the new master's `redis_instance_info` as master (an
//! exporter followed it) and no current series still has the former master
//! as master ([`exporter_cases`]); and the round is told of the change, so
//! a source still on the former master is named by the cross-check's own
//! rule.
//!
//! A case passes, fails, or could not be told (a source down, a rule not
//! loaded, a value stale): the run's verdict is the worst of them, so
//! "could not tell" is never read as "passed". A part whose source is not
//! configured at all (no Prometheus for the rules, nothing to cross-check)
//! is `skipped`, with why, and does not decide the verdict: an operator
//! without Prometheus still gets 0 or 1 from what can be checked, as
//! Gatus judges only the conditions an endpoint has and promtool checks
//! only the files it is given. Asking for a part (`--require rules`) turns
//! its skip back into "could not tell". A misconfigured or unreachable
//! source is never skipped: it was meant to be there.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::doctor::{Api, GUIDE_RULES, Status};
use crate::config::Endpoint;
use crate::crosscheck::{Overall, Report, Setup, Verdict};
use crate::probe::topology::{Failover, Topology};
use crate::probe::{self, ProbeSpec, unix_now};
use crate::report::{self, Doc, time};

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
    /// `pass`, `fail`, `unknown` (could not tell) or `skipped` (its source
    /// is not configured: the rules without Prometheus, the cross-check
    /// without a second source; or not applicable: the dashboard's rate
    /// without five minutes of history).
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
    /// One line: the verdict, what was verified, when, how long, and the count of each outcome.
    pub fn headline(&self) -> String {
        let count = |s: Status| self.cases.iter().filter(|c| c.status == s).count();
        format!(
            "Verify {}{} at {} in {:.1}s: {} passed, {} failed, {} could not tell, {} skipped",
            verdict_word(self.verdict),
            match self.after {
                Some(After::Flush) => " after a flush",
                Some(After::Failover) => " after a failover",
                None => "",
            },
            time(self.started),
            self.duration_seconds,
            count(Status::Pass),
            count(Status::Fail),
            count(Status::Unknown),
            count(Status::Skipped)
        )
    }

    /// Markdown for a change ticket: the headline, a table of the cases, then the round.
    pub fn markdown(&self) -> String {
        let mut out = format!("## {}\n\n| | Part | Check | Detail |\n|---|---|---|---|\n", self.headline());
        for c in &self.cases {
            let _ = writeln!(
                out,
                "| {} | {} | `{}` | {} |",
                c.status.mark(),
                c.suite,
                c.name.replace('|', "\\|"),
                c.detail.replace('|', "\\|").replace('\n', " ")
            );
        }
        if let Some(r) = &self.round {
            out.push('\n');
            out.push_str(&report::render(&Doc::Round(r), report::Format::Markdown));
        }
        out
    }

    /// The exit status: 0 passed, 1 failed, 2 could not tell.
    pub fn exit_code(&self) -> u8 {
        match self.verdict {
            Status::Pass | Status::Skipped => 0,
            Status::Fail => 1,
            Status::Unknown => 2,
        }
    }
}

/// The worst status of `cases`. Skipped cases do not count, but a run in
/// which nothing was judged (no case, or every one skipped) could not tell:
/// nothing checked is not "passed".
fn worst(cases: &[Case]) -> Status {
    if cases.iter().any(|c| c.status == Status::Fail) {
        Status::Fail
    } else if cases.iter().any(|c| c.status == Status::Unknown) || cases.iter().all(|c| c.status == Status::Skipped) {
        Status::Unknown
    } else {
        Status::Pass
    }
}

/// The parts `--require` accepts: the suites that can be skipped.
pub const REQUIRABLE: [&str; 3] = ["crosscheck", "rules", "dashboard"];

/// Turns the skipped cases of the `required` suites into "could not tell",
/// and adds one for a required suite that has no case at all: the user
/// asked for it, so its absence is not a pass.
fn require(cases: &mut Vec<Case>, required: &[&str]) {
    for part in required {
        let mut seen = false;
        for c in cases.iter_mut().filter(|c| c.suite == *part) {
            seen = true;
            if c.status == Status::Skipped {
                c.status = Status::Unknown;
                c.detail = format!("required (--require {part}) but skipped: {}", c.detail);
            }
        }
        if !seen && let Some(suite) = REQUIRABLE.iter().find(|s| *s == part) {
            cases.push(Case {
                suite,
                name: (*suite).into(),
                status: Status::Unknown,
                detail: format!(
                    "required (--require {part}) but not run{}",
                    if *part == "dashboard" {
                        ": it is judged with --after flush"
                    } else {
                        ""
                    }
                ),
            });
        }
    }
}

/// What a verify run reads of the configuration: the probes, the
/// cross-check's setup and Prometheus. A trait, so that a flush the daemon
/// runs can keep the configuration it was asked under without the runbooks
/// depending on the whole settings module.
pub trait VerifyConfig: Setup + Send + Sync + std::fmt::Debug {
    /// Prometheus, when configured.
    fn prometheus(&self) -> Option<&Endpoint>;
}

/// Runs the three parts within `timeout`; past it, the run could not tell.
pub async fn run(cfg: &(impl Setup + ?Sized), prometheus: Option<&Endpoint>, after: Option<After>, timeout: Duration) -> Outcome {
    run_after(cfg, prometheus, after, None, &[], timeout).await
}

/// [`run`], with the former master's `run_id` given for `--after failover`
/// (else it is read from the history), and the parts that must not be
/// skipped (`required`, of [`REQUIRABLE`]).
pub async fn run_after(
    cfg: &(impl Setup + ?Sized),
    prometheus: Option<&Endpoint>,
    after: Option<After>,
    previous_run_id: Option<String>,
    required: &[&str],
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
            let api = super::doctor::prometheus_api(cfg.probes(), prometheus);
            let (found, failover_cases) = failover(cfg, p, previous_run_id, api.as_ref(), started).await;
            change = found;
            cases.extend(failover_cases);
        }
        // The round's own wait for a fresh scrape stays inside the timeout.
        let round = if cfg.crosscheck().is_none() {
            cases.push(Case {
                suite: "crosscheck",
                name: "round".into(),
                status: Status::Skipped,
                detail: "nothing to cross-check: no source besides the reference (a `kind: redis` probe) is configured".into(),
            });
            None
        } else {
            let round = crate::crosscheck::run_now_after(cfg, Some(timeout.mul_f64(0.8)), change.as_ref()).await;
            match round {
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
            }
        };
        cases.extend(rules(super::doctor::prometheus_api(cfg.probes(), prometheus)).await);
        (cases, round)
    };
    let (mut cases, round) = match tokio::time::timeout(timeout, parts).await {
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
    require(&mut cases, required);
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
async fn probes(cfg: &(impl Setup + ?Sized)) -> Vec<Case> {
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
async fn recorded(cfg: &(impl Setup + ?Sized), name: &str) -> Option<Failover> {
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
    cfg: &(impl Setup + ?Sized),
    p: &probe::ProbeConfig,
    previous_run_id: Option<String>,
    api: Option<&Api>,
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

    // The exporter and Prometheus: whose run_id their series carry now.
    let former = before.as_ref().and_then(|b| b.from_run_id.clone().map(|id| (id, b.from.clone())));
    let known: Vec<String> = t.nodes.iter().filter_map(|n| n.run_id.clone()).collect();
    match (api, &now_id) {
        (None, _) => {
            let why = "no Prometheus configured (`prometheus.url` or a `kind: prometheus` probe): whether the exporter and Prometheus followed cannot be read";
            cases.push(case("exporter on the new master", Status::Unknown, why.into()));
            cases.push(case("no stale master series", Status::Unknown, why.into()));
        }
        (Some(_), None) => {
            let why = format!("{master} gave no run_id to look for in Prometheus");
            cases.push(case("exporter on the new master", Status::Unknown, why.clone()));
            cases.push(case("no stale master series", Status::Unknown, why));
        }
        (Some(api), Some(id)) => match api.query(INFO_QUERY).await {
            Ok(samples) => {
                let series: Vec<InfoSeries> = samples.iter().map(InfoSeries::of).collect();
                cases.extend(exporter_cases(&series, (id, &master), former.as_ref(), &known));
            }
            Err(e) => {
                let why = format!("Prometheus did not answer `{INFO_QUERY}`: {e}");
                cases.push(case("exporter on the new master", Status::Unknown, why.clone()));
                cases.push(case("no stale master series", Status::Unknown, why));
            }
        },
    }

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

/// What is asked of Prometheus after a failover: every `redis_instance_info`
/// series it holds now, with the time of its last scrape as the value
/// (`timestamp()` keeps the labels). Only series not yet marked stale are
/// returned: a series the exporter stopped reporting (its `role` label
/// changed, its target went down) is gone from an instant query at the next
/// scrape, so what comes back is what Prometheus believes now.
const INFO_QUERY: &str = "timestamp(redis_instance_info)";

/// One `redis_instance_info` series as Prometheus holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct InfoSeries {
    /// The scrape target (`instance`) and job, for a person.
    pub target: String,
    /// The Redis the exporter read: its `run_id` label.
    pub run_id: String,
    /// Its `role` label: `master` or `slave`.
    pub role: String,
    /// Seconds since its last scrape, on Prometheus's clock.
    pub age: f64,
}

impl InfoSeries {
    fn of(s: &super::doctor::Sample) -> InfoSeries {
        let label = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
        InfoSeries {
            target: format!("{} (job {})", label("instance"), label("job")),
            run_id: label("run_id"),
            role: label("role"),
            age: (s.at - s.value).max(0.0),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} reads run_id {} as role {}, scraped {:.0} s ago",
            self.target, self.run_id, self.role, self.age
        )
    }
}

/// The exporter and Prometheus after a failover, judged on `series`: the
/// new master (`run_id`, address) must be in a series with `role="master"`
/// (an exporter reaches it, and Prometheus scrapes that exporter); no
/// series may still show the former master (`run_id`, address) as master.
/// Series of other Redis servers in the same Prometheus are left out: only
/// run_ids of the topology (`known`) and the former master's count.
pub fn exporter_cases(series: &[InfoSeries], new: (&str, &str), former: Option<&(String, String)>, known: &[String]) -> Vec<Case> {
    let case = |name: &str, status, detail: String| Case {
        suite: "failover",
        name: name.to_string(),
        status,
        detail,
    };
    let (new_id, new_addr) = new;
    let ours: Vec<&InfoSeries> = series
        .iter()
        .filter(|s| s.run_id == new_id || known.contains(&s.run_id) || former.is_some_and(|(f, _)| *f == s.run_id))
        .collect();
    let seen = |list: &[&InfoSeries]| list.iter().map(|s| s.describe()).collect::<Vec<_>>().join("; ");
    let mut out = Vec::new();
    let on_new: Vec<&InfoSeries> = ours.iter().copied().filter(|s| s.run_id == new_id).collect();
    out.push(if ours.is_empty() {
        case(
            "exporter on the new master",
            Status::Unknown,
            "Prometheus holds no current `redis_instance_info` series of these nodes: is the exporter scraped (`lookout doctor`)?".into(),
        )
    } else if on_new.iter().any(|s| s.role == "master") {
        case(
            "exporter on the new master",
            Status::Pass,
            format!("the new master {new_addr} (run_id {new_id}) is read: {}", seen(&on_new)),
        )
    } else {
        case(
            "exporter on the new master",
            Status::Fail,
            format!(
                "no exporter reads the new master {new_addr} (run_id {new_id}) as master; Prometheus has: {}. Point the exporter at the new master (or at an address that follows it)",
                seen(&ours)
            ),
        )
    });
    out.push(match former {
        None => case(
            "no stale master series",
            Status::Unknown,
            "the former master's run_id is not known: give --previous-run-id".into(),
        ),
        Some((id, addr)) => {
            let stale: Vec<&InfoSeries> = ours.iter().copied().filter(|s| &s.run_id == id && s.role == "master").collect();
            if stale.is_empty() {
                let now: Vec<&InfoSeries> = ours.iter().copied().filter(|s| &s.run_id == id).collect();
                case(
                    "no stale master series",
                    Status::Pass,
                    if now.is_empty() {
                        format!("no current series of the former master {addr} (run_id {id})")
                    } else {
                        format!("the former master {addr} is no longer master: {}", seen(&now))
                    },
                )
            } else {
                case(
                    "no stale master series",
                    Status::Fail,
                    format!(
                        "Prometheus still has the former master {addr} (run_id {id}) as master, fresh: {}; dashboards and rules read two masters",
                        seen(&stale)
                    ),
                )
            }
        }
    });
    out
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
            Status::Skipped,
            "no Prometheus configured (`prometheus.url` or a `kind: prometheus` probe): the alert rules were not read".into(),
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

/// The verdict in capitals, as the headline says it.
pub(crate) fn verdict_word(s: Status) -> &'static str {
    match s {
        Status::Pass | Status::Skipped => "PASSED",
        Status::Fail => "FAILED",
        Status::Unknown => "COULD NOT TELL",
    }
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
        assert_eq!(worst(&[c(Status::Pass), c(Status::Skipped)]), Status::Pass);
        assert_eq!(worst(&[c(Status::Skipped)]), Status::Unknown, "nothing judged");
    }

    #[test]
    fn a_required_part_that_was_skipped_could_not_tell() {
        let mut cases = vec![
            c(Status::Pass),
            Case {
                suite: "rules",
                name: "rules".into(),
                status: Status::Skipped,
                detail: "no Prometheus".into(),
            },
        ];
        assert_eq!(worst(&cases), Status::Pass);
        require(&mut cases, &["rules", "dashboard"]);
        assert_eq!(cases[1].status, Status::Unknown);
        assert!(cases[1].detail.starts_with("required (--require rules)"), "{}", cases[1].detail);
        assert!(cases.iter().any(|c| c.suite == "dashboard" && c.status == Status::Unknown));
        assert_eq!(worst(&cases), Status::Unknown);
    }

    fn series(run_id: &str, role: &str) -> InfoSeries {
        InfoSeries {
            target: "127.0.0.1:9121 (job redis)".into(),
            run_id: run_id.into(),
            role: role.into(),
            age: 1.0,
        }
    }

    /// Every shape of what Prometheus can hold after a failover, and the verdicts.
    #[test]
    fn the_exporter_and_prometheus_after_a_failover() {
        let former = Some(("old".to_string(), "127.0.0.1:1".to_string()));
        let known = vec!["new".to_string(), "old".to_string()];
        let judge = |s: &[InfoSeries], former: Option<&(String, String)>| {
            exporter_cases(s, ("new", "127.0.0.1:2"), former, &known)
                .into_iter()
                .map(|c| c.status)
                .collect::<Vec<_>>()
        };
        use Status::*;
        type Row<'a> = (Vec<InfoSeries>, Option<&'a (String, String)>, Vec<Status>);
        let table: Vec<Row> = vec![
            // Exporters on every node: followed, the former one now a replica.
            (
                vec![series("new", "master"), series("old", "slave")],
                former.as_ref(),
                vec![Pass, Pass],
            ),
            // One exporter on the former master's address: it did not follow.
            (vec![series("old", "slave")], former.as_ref(), vec![Fail, Pass]),
            // The former master still scraped as master: two masters.
            (
                vec![series("new", "master"), series("old", "master")],
                former.as_ref(),
                vec![Pass, Fail],
            ),
            // Nothing of these nodes (another Redis only): could not tell.
            (vec![series("other", "master")], former.as_ref(), vec![Unknown, Pass]),
            // The new master read, but still as a replica.
            (vec![series("new", "slave")], former.as_ref(), vec![Fail, Pass]),
            // The former run_id not known.
            (vec![series("new", "master")], None, vec![Pass, Unknown]),
        ];
        for (s, f, want) in table {
            assert_eq!(judge(&s, f), want, "{s:?}");
        }
    }
}
