//! The command line. `main.rs` only calls [`main`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::daemon::ConfigSource;
use crate::telemetry::LogFormat;

/// Exit status for an invalid configuration (sysexits' EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

/// Default configuration path, relative to the working directory.
pub const DEFAULT_CONFIG: &str = "config/lookout.yaml";

#[derive(Debug, Parser)]
#[command(
    name = "lookout",
    version,
    about = "Synthetic monitoring for a Redis cache: probes health endpoints, Redis and Prometheus, and checks that they agree."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options accepted before or after the subcommand.
#[derive(Debug, Args)]
struct Global {
    /// Configuration file [default: config/lookout.yaml; without it, an embedded default probing REDIS_URL]
    #[arg(short = 'c', long = "config", env = "LOOKOUT_CONFIG", global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Log level or filter (e.g. `info`, `debug`, `lookout=debug`).
    #[arg(long, default_value = "info", global = true, value_name = "FILTER")]
    log_level: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: scheduler, probes and HTTP server.
    Run,
    /// Run every probe once and print the results; exit 1 if any failed.
    Check {
        /// Output format.
        #[arg(long, value_enum, default_value_t = crate::check::Format::Text)]
        format: crate::check::Format,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and every probe file without contacting anything; exit 78 if invalid.
    Check,
}

fn source(explicit: Option<PathBuf>) -> ConfigSource {
    match explicit {
        Some(p) => ConfigSource::File(p),
        None => {
            let p = PathBuf::from(DEFAULT_CONFIG);
            if p.exists() {
                ConfigSource::File(p)
            } else {
                ConfigSource::Embedded
            }
        }
    }
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = crate::telemetry::init_logging(cli.global.log_format, &cli.global.log_level) {
        eprintln!("lookout: {e}");
        return ExitCode::from(2);
    }
    crate::http::install_crypto_provider();
    let src = source(cli.global.config);
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check,
        } => match src.load() {
            Ok(cfg) => {
                let from = cfg
                    .source
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "<embedded default>".into());
                println!(
                    "{from}: valid ({} probe{})",
                    cfg.probes.len(),
                    if cfg.probes.len() == 1 { "" } else { "s" }
                );
                for p in &cfg.probes {
                    println!(
                        "  {:<24} {:<12} {}  (timeout {})  {}:{}",
                        p.name,
                        p.spec.kind(),
                        p.schedule,
                        humantime::format_duration(p.timeout),
                        p.origin.file.display(),
                        p.origin.line
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Check { format } => {
            let cfg = match src.load() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("lookout: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let results = match rt.block_on(crate::check::run_all(&cfg)) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("lookout: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match crate::check::print(&results, format, &mut std::io::stdout().lock()) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("lookout: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run => {
            let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("lookout: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(crate::daemon::run(src)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    let config_error = e.downcast_ref::<crate::config::ConfigError>().is_some();
                    tracing::error!("{e:#}");
                    eprintln!("lookout: {e:#}");
                    ExitCode::from(if config_error { EXIT_CONFIG } else { 1 })
                }
            }
        }
    }
}
