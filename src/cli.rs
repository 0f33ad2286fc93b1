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
    /// Cross-check the sources now (or, with --window, summarise the stored
    /// history) and print the result; exit 0 agree, 1 disagree, 2 incomplete.
    Report {
        /// Output format.
        #[arg(long, value_enum, default_value_t = crate::report::Format::Text)]
        format: crate::report::Format,
        /// Summarise this much stored history (e.g. `1h`, `24h`, `7d`) instead of running a round.
        #[arg(long, value_parser = parse_window, value_name = "DURATION")]
        window: Option<std::time::Duration>,
    },
    /// The webhook relay: dead-letter list and test notifications.
    Relay {
        #[command(subcommand)]
        command: RelayCommand,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum RelayCommand {
    /// The dead-letter list: notifications given up, with the reason.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Send a test notification to one destination now, to prove it works.
    SendTest {
        /// The destination's name.
        #[arg(long)]
        destination: String,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List dead-lettered deliveries.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = crate::check::Format::Text)]
        format: crate::check::Format,
    },
    /// Queue dead-lettered deliveries again (the given ids, or --all).
    Retry {
        /// Delivery ids.
        ids: Vec<i64>,
        /// Every dead-lettered delivery.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Drop dead-lettered deliveries for good (the given ids, or --all).
    Drop {
        /// Delivery ids.
        ids: Vec<i64>,
        /// Every dead-lettered delivery.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and every probe file without contacting anything; exit 78 if invalid.
    Check,
}

fn parse_window(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration `{s}`: {e}"))
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| {
        eprintln!("lookout: cannot start the runtime: {e}");
        ExitCode::FAILURE
    })
}

fn report(src: ConfigSource, format: crate::report::Format, window: Option<std::time::Duration>) -> ExitCode {
    use crate::report::{Doc, render};
    let cfg = match src.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let (text, code) = match window {
        Some(w) => {
            if !cfg.data_dir.join(crate::store::HISTORY_FILE).exists() {
                eprintln!(
                    "lookout: no history at {} (is `lookout run` using this data_dir?)",
                    cfg.data_dir.display()
                );
                return ExitCode::from(2);
            }
            let reader = match crate::store::HistoryReader::open(&cfg.data_dir) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("lookout: {e}");
                    return ExitCode::from(2);
                }
            };
            let until = crate::probe::unix_now();
            match crate::crosscheck::history::summarise(&reader, until - w.as_secs_f64(), until) {
                Ok(sum) => (render(&Doc::Window(&sum), format), sum.verdict().exit_code()),
                Err(e) => {
                    eprintln!("lookout: cannot read the history: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        None => {
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(c) => return c,
            };
            match rt.block_on(crate::crosscheck::run_now(&cfg)) {
                Ok(r) => (render(&Doc::Round(&r), format), r.verdict.exit_code()),
                Err(e) => {
                    eprintln!("lookout: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    };
    print!("{text}");
    ExitCode::from(code)
}

fn relay_command(src: ConfigSource, command: RelayCommand) -> ExitCode {
    let cfg = match src.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let Some(relay) = cfg.relay.clone() else {
        eprintln!("lookout: the relay is disabled in this configuration");
        return ExitCode::FAILURE;
    };
    match command {
        RelayCommand::Dlq { command } => {
            let outbox = match crate::relay::outbox::Outbox::open(&cfg.data_dir, relay.dedup_window) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("lookout: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = match command {
                DlqCommand::List { format } => outbox
                    .dlq()
                    .map(|list| match format {
                        crate::check::Format::Json => serde_json::to_string_pretty(&list).unwrap_or_default() + "\n",
                        crate::check::Format::Text => {
                            let mut out = format!(
                                "{:<8} {:<16} {:<9} {:<21} {:<40} REASON\n",
                                "ID", "DESTINATION", "ATTEMPTS", "RECEIVED", "GROUP"
                            );
                            for d in &list {
                                out.push_str(&format!(
                                    "{:<8} {:<16} {:<9} {:<21} {:<40} {}\n",
                                    d.id,
                                    d.destination,
                                    d.attempts,
                                    crate::report::time(d.created),
                                    d.group_key.chars().take(40).collect::<String>(),
                                    d.reason
                                ));
                            }
                            out
                        }
                    })
                    .map_err(|e| e.to_string()),
                DlqCommand::Retry { ids, all } if all || !ids.is_empty() => outbox
                    .dlq_retry(&ids)
                    .map(|n| format!("{n} deliveries queued again\n"))
                    .map_err(|e| e.to_string()),
                DlqCommand::Drop { ids, all } if all || !ids.is_empty() => outbox
                    .dlq_drop(&ids)
                    .map(|n| format!("{n} deliveries dropped\n"))
                    .map_err(|e| e.to_string()),
                _ => Err("give delivery ids, or --all".to_string()),
            };
            match result {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("lookout: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        RelayCommand::SendTest { destination } => {
            let Some(d) = relay.destinations.iter().find(|d| d.name == destination) else {
                let names: Vec<&str> = relay.destinations.iter().map(|d| d.name.as_str()).collect();
                eprintln!("lookout: no destination named `{destination}` (configured: {})", names.join(", "));
                return ExitCode::FAILURE;
            };
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(c) => return c,
            };
            let outcome = rt.block_on(async {
                let outbox =
                    std::sync::Arc::new(crate::relay::outbox::Outbox::open(&cfg.data_dir, relay.dedup_window).map_err(|e| e.to_string())?);
                let dest = crate::relay::destination::build(d, outbox)?;
                let p = crate::relay::template::test_notification();
                let raw = serde_json::to_string(&p).map_err(|e| e.to_string())?;
                let n = crate::relay::destination::Notification { payload: &p, raw: &raw };
                match tokio::time::timeout(d.delivery.timeout, dest.deliver(&n)).await {
                    Ok(r) => r.map_err(|e| e.message),
                    Err(_) => Err(format!("no answer within {:?}", d.delivery.timeout)),
                }
            });
            match outcome {
                Ok(()) => {
                    println!("test notification delivered to `{destination}` ({})", d.kind.type_name());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("lookout: test notification to `{destination}` failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
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
        Command::Report { format, window } => report(src, format, window),
        Command::Relay { command } => relay_command(src, command),
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
