//! `lookout doctor`: the guide's troubleshooting checklist, run. Each check
//! (in [`crate::runbook::doctor`]) prints ✔, ✘, ? or – with what it found
//! and, when it did not pass, the one thing to do; `--format json` gives the
//! same as an array of objects (`name`, `subject`, `status`, `found`,
//! `fix`).

use std::process::ExitCode;

use clap::Args;

use super::{Format, block_on, fail, print_out};
use crate::runbook::doctor::{self, Inputs};
use crate::settings::Config;

/// `lookout doctor`'s flags.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

impl DoctorArgs {
    /// Runs every check; exit 0 all passed, 1 one failed, 2 none failed but
    /// one could not tell.
    pub fn execute(self, cfg: &Config) -> ExitCode {
        let workdir = std::env::current_dir().unwrap_or_default();
        let checks = match block_on(async { doctor::run(&inputs(cfg, &workdir)).await }) {
            Ok(c) => c,
            Err(status) => return status,
        };
        let text = match self.format {
            Format::Text => doctor::render_text(&checks),
            Format::Json => match super::json(&checks) {
                Ok(t) => t,
                Err(e) => return fail(1, e),
            },
        };
        print_out(&text, doctor::exit_code(&checks))
    }
}

/// What the checks read of the configuration, and where compose files are
/// looked for.
pub fn inputs<'a>(cfg: &'a Config, workdir: &'a std::path::Path) -> Inputs<'a> {
    Inputs {
        probes: &cfg.probes,
        reference: cfg.crosscheck.as_ref().map(|c| c.reference.as_str()),
        prometheus: cfg.prometheus.as_ref(),
        alertmanager: cfg.alertmanager.as_ref(),
        relay_on: cfg.relay.is_some(),
        listen: cfg.listen,
        data_dir: &cfg.data_dir,
        dedup_window: cfg.relay.as_ref().map(|r| r.dedup_window).unwrap_or_default(),
        grafana: cfg.grafana.as_ref(),
        workdir,
    }
}
