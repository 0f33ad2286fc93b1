//! `lookout report`: a cross-check round now, or a summary of the stored
//! history with `--window`, in any of the report formats; the exit status is
//! the verdict, so a CI job or a change ticket can act on it.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::{block_on, existing, fail, print_out};
use crate::report::{Doc, Format, render};
use crate::settings::Config;

/// Exit status when there is nothing to judge: the round could not run (no
/// cross-check configured), or — the verdict's own — sources could not be
/// judged. The same as [`crate::crosscheck::Overall::Incomplete`]'s.
const INCOMPLETE: u8 = 2;

/// Exit status when the history exists but cannot be read (sysexits'
/// EX_IOERR).
const UNREADABLE: u8 = 74;

/// `lookout report`'s flags.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Summarise this much stored history (e.g. `1h`, `24h`, `7d`) instead of running a round.
    #[arg(long, value_parser = parse_window, value_name = "DURATION")]
    window: Option<Duration>,
    /// How long a round may wait for Prometheus to scrape after its first
    /// reading of Redis, so the sample can be judged (default: the exporter
    /// target's scrape interval from Prometheus's targets API, 15 s if it
    /// cannot be read, and the probe's timeout).
    #[arg(long, value_parser = parse_window, value_name = "DURATION")]
    wait: Option<Duration>,
}

impl ReportArgs {
    /// Prints the report; exit 0 agree, 1 disagree, 2 incomplete or nothing
    /// to judge, 66 no history (`--window`), 74 history unreadable.
    pub fn execute(self, cfg: &Config) -> ExitCode {
        let rendered = match self.window {
            Some(w) => window(cfg, w, self.format),
            None => round(cfg, self.format, self.wait),
        };
        match rendered {
            Ok((text, verdict)) => print_out(&text, verdict),
            Err(status) => status,
        }
    }
}

/// `--window`'s value: a humantime duration.
fn parse_window(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration `{s}`: {e}"))
}

/// The last `w` of the daemon's history, rendered, with its verdict's exit
/// status. A `data_dir` without history is an error (66), never an empty
/// store made on the spot.
fn window(cfg: &Config, w: Duration, format: Format) -> Result<(String, u8), ExitCode> {
    existing(&cfg.data_dir, crate::store::HISTORY_FILE, "history")?;
    let reader = crate::store::HistoryReader::open(&cfg.data_dir).map_err(|e| fail(UNREADABLE, e))?;
    let until = crate::probe::unix_now();
    let sum = crate::crosscheck::history::summarise(&reader, until - w.as_secs_f64(), until)
        .map_err(|e| fail(UNREADABLE, format_args!("cannot read the history: {e}")))?;
    Ok((render(&Doc::Window(&sum), format), sum.verdict().exit_code()))
}

/// One round run now, rendered, with its verdict's exit status.
fn round(cfg: &Config, format: Format, wait: Option<Duration>) -> Result<(String, u8), ExitCode> {
    let r = block_on(crate::crosscheck::run_now(cfg, wait))?.map_err(|e| fail(INCOMPLETE, e))?;
    Ok((render(&Doc::Round(&r), format), r.verdict.exit_code()))
}
