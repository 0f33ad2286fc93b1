//! `lookout config check`: validates the configuration and every probe
//! file without contacting anything, so a change can be proved before a
//! reload or a deploy. `lookout config schema`: the configuration's JSON
//! Schema, for editors (a YAML language server reads a
//! `# yaml-language-server: $schema=…` line) and CI linters.

use std::process::ExitCode;

use clap::Subcommand;

use crate::settings::Config;

/// `lookout config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and every probe file without contacting anything; exit 78 if invalid.
    Check,
    /// Print the JSON Schema of lookout.yaml (no configuration is read).
    Schema,
}

/// Prints the JSON Schema of `lookout.yaml`.
pub fn schema() -> ExitCode {
    match serde_json::to_string_pretty(&crate::settings::schema()) {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(1, e),
    }
}

impl ConfigCommand {
    /// Prints where the valid configuration came from and one line per
    /// probe; exit 0. (An invalid one never gets here: it exits 78 with the
    /// problems on stderr, as for every command.)
    pub fn execute(self, cfg: &Config) -> ExitCode {
        match self {
            ConfigCommand::Check => {
                print!("{}", summary(cfg));
                ExitCode::SUCCESS
            }
            ConfigCommand::Schema => schema(),
        }
    }
}

/// `PATH: valid (N probes)` and each probe's kind, schedule, timeout and
/// where it is defined.
fn summary(cfg: &Config) -> String {
    let from = cfg
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "<embedded default>".into());
    let n = cfg.probes.len();
    let mut out = format!("{from}: valid ({n} probe{})\n", if n == 1 { "" } else { "s" });
    for p in &cfg.probes {
        out.push_str(&format!(
            "  {:<24} {:<12} {}  (timeout {})  {}:{}\n",
            p.name,
            p.spec.kind(),
            p.schedule,
            humantime::format_duration(p.timeout),
            p.origin.file.display(),
            p.origin.line
        ));
    }
    out
}
