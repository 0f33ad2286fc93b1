//! `lookout verify`: every probe once, a complete cross-check round and the
//! alert rules' state (in [`crate::runbook::verify`]), as text, JSON,
//! Markdown for the change ticket or JUnit for CI; the exit status is the
//! verdict.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::{block_on, print_out};
use crate::report::{self, Doc, time, xml};
use crate::runbook::doctor::Status;
use crate::runbook::verify::{self, After, Case, Outcome};
use crate::settings::Config;

/// What `--after` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AfterArg {
    /// A cache flush: the dashboard's windowed hit rate is judged too.
    Flush,
    /// A master change through Sentinel: needs a `kind: redis_sentinel`
    /// probe (without one, exit 2). The master must report role:master
    /// with a run_id other than the one recorded before, the endpoints,
    /// the exporter and Prometheus must follow it (without Prometheus,
    /// exit 2), the replicas be in sync.
    Failover,
}

/// Output formats of `lookout verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyFormat {
    /// A table for a terminal, then the round.
    Text,
    /// The stable JSON interface.
    Json,
    /// Markdown for a change ticket.
    Markdown,
    /// JUnit XML: one test suite per part.
    Junit,
}

/// `lookout verify`'s flags.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The change being verified.
    #[arg(long, value_enum)]
    after: Option<AfterArg>,
    /// With `--after failover`: the former master's run_id (`INFO server`),
    /// as noted before the change. Without it, the former master is the
    /// last one the daemon recorded in the history under `data_dir` (in the
    /// last day); with neither, the run_id check could not tell (exit 2).
    #[arg(long, value_name = "RUN_ID")]
    previous_run_id: Option<String>,
    /// The longest the whole run may take; past it, it could not tell (exit 2).
    #[arg(long, default_value = "2m", value_parser = parse_timeout, value_name = "DURATION")]
    timeout: Duration,
    /// Output format.
    #[arg(long, value_enum, default_value_t = VerifyFormat::Text)]
    format: VerifyFormat,
    /// A part that must be checked (repeatable): without it, a part whose
    /// source is not configured (the rules without Prometheus, the
    /// cross-check without a second source, the dashboard without five
    /// minutes of history) is skipped and the verdict comes from the rest;
    /// with it, that part's skip is "could not tell" (exit 2).
    #[arg(long = "require", value_enum, value_name = "PART")]
    require: Vec<RequireArg>,
}

/// What `--require` accepts: the parts that can be skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RequireArg {
    /// One complete cross-check round.
    Crosscheck,
    /// The alert rules' state in Prometheus.
    Rules,
    /// The dashboard's windowed hit rate (`--after flush`).
    Dashboard,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d >= Duration::from_secs(1) => Ok(d),
        Ok(_) => Err("must be at least 1s".into()),
        Err(e) => Err(format!("invalid duration `{s}`: {e}")),
    }
}

impl VerifyArgs {
    /// Runs and prints; exit 0 passed, 1 failed, 2 could not tell.
    pub fn execute(self, cfg: &Config) -> ExitCode {
        let after = self.after.map(|a| match a {
            AfterArg::Flush => After::Flush,
            AfterArg::Failover => After::Failover,
        });
        let required: Vec<&str> = self
            .require
            .iter()
            .map(|r| match r {
                RequireArg::Crosscheck => "crosscheck",
                RequireArg::Rules => "rules",
                RequireArg::Dashboard => "dashboard",
            })
            .collect();
        let run = verify::run_after(cfg, cfg.prometheus.as_ref(), after, self.previous_run_id, &required, self.timeout);
        let outcome = match block_on(run) {
            Ok(o) => o,
            Err(status) => return status,
        };
        print_out(&render(&outcome, self.format), outcome.exit_code())
    }
}

/// Renders an outcome in `format`.
pub fn render(o: &Outcome, format: VerifyFormat) -> String {
    match format {
        VerifyFormat::Text => text(o),
        VerifyFormat::Json => super::json(o).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}\n")),
        VerifyFormat::Markdown => o.markdown(),
        VerifyFormat::Junit => junit(o),
    }
}

fn text(o: &Outcome) -> String {
    let mut out = o.headline();
    out.push_str("\n\n");
    let rows: Vec<Vec<String>> = o
        .cases
        .iter()
        .map(|c| vec![c.status.mark().to_string(), c.suite.to_string(), c.name.clone(), c.detail.clone()])
        .collect();
    out.push_str(&crate::table::render(&["", "PART", "CHECK", "DETAIL"], &rows));
    if let Some(r) = &o.round {
        out.push('\n');
        out.push_str(&report::render(&Doc::Round(r), report::Format::Text));
    }
    out
}

fn junit(o: &Outcome) -> String {
    let count = |cases: &[&Case], s: Status| cases.iter().filter(|c| c.status == s).count();
    let all: Vec<&Case> = o.cases.iter().collect();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"lookout verify\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{:.3}\">",
        all.len(),
        count(&all, Status::Fail),
        count(&all, Status::Unknown),
        o.duration_seconds
    );
    let mut suites: Vec<&str> = Vec::new();
    for c in &o.cases {
        if !suites.contains(&c.suite) {
            suites.push(c.suite);
        }
    }
    for suite in suites {
        let cases: Vec<&Case> = o.cases.iter().filter(|c| c.suite == suite).collect();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{suite}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" timestamp=\"{}\">",
            cases.len(),
            count(&cases, Status::Fail),
            count(&cases, Status::Unknown),
            time(o.started)
        );
        for c in cases {
            let _ = write!(out, "    <testcase classname=\"{suite}\" name=\"{}\"", xml(&c.name));
            match c.status {
                Status::Pass => out.push_str("/>\n"),
                Status::Skipped => {
                    let _ = writeln!(out, ">\n      <skipped message=\"{}\"/>\n    </testcase>", xml(&c.detail));
                }
                Status::Fail => {
                    let _ = writeln!(out, ">\n      <failure message=\"{}\"/>\n    </testcase>", xml(&c.detail));
                }
                Status::Unknown => {
                    let _ = writeln!(
                        out,
                        ">\n      <error message=\"could not tell: {}\"/>\n    </testcase>",
                        xml(&c.detail)
                    );
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
