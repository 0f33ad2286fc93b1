//! `lookout report`: a cross-check round now, or a summary of the stored
//! history with `--window`, in any of the report formats; the exit status is
//! the verdict, so a CI job or a change ticket can act on it.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::{block_on, fail, print_out};
use crate::report::{Doc, Format, render};
use crate::settings::Config;

/// Exit status when there is nothing to judge: no history, or a round that
/// could not run.
const INCOMPLETE: u8 = 2;

/// `lookout report`'s flags.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Summarise this much stored history (e.g. `1h`, `24h`, `7d`) instead of running a round.
    #[arg(long, value_parser = parse_window, value_name = "DURATION")]
    window: Option<Duration>,
}

impl ReportArgs {
    /// Prints the report; exit 0 agree, 1 disagree, 2 incomplete.
    pub fn execute(self, cfg: &Config) -> ExitCode {
        let rendered = match self.window {
            Some(w) => window(cfg, w, self.format),
            None => round(cfg, self.format),
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
/// status.
fn window(cfg: &Config, w: Duration, format: Format) -> Result<(String, u8), ExitCode> {
    if !cfg.data_dir.join(crate::store::HISTORY_FILE).exists() {
        return Err(fail(
            INCOMPLETE,
            format_args!("no history at {} (is `lookout run` using this data_dir?)", cfg.data_dir.display()),
        ));
    }
    let reader = crate::store::HistoryReader::open(&cfg.data_dir).map_err(|e| fail(INCOMPLETE, e))?;
    let until = crate::probe::unix_now();
    let sum = crate::crosscheck::history::summarise(&reader, until - w.as_secs_f64(), until)
        .map_err(|e| fail(INCOMPLETE, format_args!("cannot read the history: {e}")))?;
    Ok((render(&Doc::Window(&sum), format), sum.verdict().exit_code()))
}

/// One round run now, rendered, with its verdict's exit status.
fn round(cfg: &Config, format: Format) -> Result<(String, u8), ExitCode> {
    let r = block_on(crate::crosscheck::run_now(cfg))?.map_err(|e| fail(INCOMPLETE, e))?;
    Ok((render(&Doc::Round(&r), format), r.verdict.exit_code()))
}
