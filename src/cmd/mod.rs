//! The command line: the clap definitions, the dispatch to one module per
//! command, and what every command shares.
//!
//! Each command's flags and body live together in its own module (`run`,
//! `check`, `report`, `relay`, `config`); this one only routes to them. What
//! they have in common is here once, so it behaves the same everywhere:
//! where the configuration comes from ([`source`]), loading it with its
//! problems printed once and exit 78 (in [`Cli::execute`], for every
//! command but `run`, whose daemon loads and reloads it), the command line's
//! own errors (exit 64, in [`parse`]), the daemon's files that must already
//! exist ([`existing`]), the async runtime ([`block_on`]), and the
//! text-or-JSON output choice ([`Format`]).

pub mod check;
pub mod config;
pub mod doctor;
pub mod redis;
mod redis_remote;
pub mod relay;
pub mod report;
pub mod run;
pub mod verify;

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::ConfigError;
use crate::daemon::ConfigSource;
use crate::settings::Config;
use crate::telemetry::LogFormat;

/// Exit status for an invalid configuration (sysexits' EX_CONFIG): service
/// managers are told not to restart on it, since a restart will not fix it.
pub const EXIT_CONFIG: u8 = 78;

/// Exit status for a command line that cannot be parsed (sysexits'
/// EX_USAGE): an unknown flag, a missing or malformed argument. Kept apart
/// from every command's own answers (clap's default, 2, is `report`'s
/// "incomplete").
pub const EXIT_USAGE: u8 = 64;

/// Exit status when a file the command reads, and that the daemon writes,
/// does not exist (sysexits' EX_NOINPUT): a `data_dir` without history or
/// outbox. The command says which path it looked for and creates nothing.
pub const EXIT_NO_INPUT: u8 = 66;

/// Exit status when the command cannot start its own machinery (sysexits'
/// EX_SOFTWARE): the async runtime, for one.
pub const EXIT_SOFTWARE: u8 = 70;

/// Exit status after SIGINT/SIGTERM (128 + SIGINT, as a shell reports it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Where the configuration is looked for without `-c`, in this order:
/// relative paths from the working directory, then the system-wide one.
pub const CONFIG_SEARCH: [&str; 3] = ["config/lookout.yaml", "lookout.yaml", "/etc/lookout/lookout.yaml"];

/// Parses the process's command line. Help and `--version` are printed and
/// give 0; any other problem is printed with clap's usage hint and gives
/// [`EXIT_USAGE`].
pub fn parse() -> Result<Cli, ExitCode> {
    Cli::try_parse().map_err(|e| {
        // Printing to a closed stdout or stderr leaves nothing to report to.
        let _ = e.print();
        if e.use_stderr() {
            ExitCode::from(EXIT_USAGE)
        } else {
            ExitCode::SUCCESS
        }
    })
}

/// The whole command line; `main.rs` parses it and calls [`Cli::execute`].
#[derive(Debug, Parser)]
#[command(
    name = "lookout",
    version,
    about = "Synthetic monitoring for a Redis cache: probes health endpoints, Redis and Prometheus, and checks that they agree."
)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options accepted before or after the subcommand.
#[derive(Debug, Args)]
struct Global {
    /// Configuration file [default: the first of config/lookout.yaml, ./lookout.yaml, /etc/lookout/lookout.yaml; without any, an embedded default probing REDIS_URL]
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
    Check(check::CheckArgs),
    /// Cross-check the sources now (or, with --window, summarise the stored
    /// history) and print the result; exit 0 agree, 1 disagree, 2 incomplete
    /// or nothing to judge, 66 no history, 74 history unreadable.
    Report(report::ReportArgs),
    /// The webhook relay: dead-letter list and test notifications.
    Relay {
        #[command(subcommand)]
        command: relay::RelayCommand,
    },
    /// Redis runbooks: `flush`, the controlled cache flush.
    Redis {
        #[command(subcommand)]
        command: redis::RedisCommand,
    },
    /// The troubleshooting checklist: Prometheus, the exporter, the alert
    /// rules, Alertmanager, clocks, lookout's own stores and Grafana, each
    /// ✔/✘/? with the fix; exit 0 all passed, 1 a check failed, 2 could not tell.
    Doctor(doctor::DoctorArgs),
    /// After a change: every probe once, a complete cross-check round and
    /// the alert rules' state; exit 0 passed, 1 failed, 2 could not tell.
    Verify(verify::VerifyArgs),
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: config::ConfigCommand,
    },
}

impl Cli {
    /// Sets up logging and TLS, then runs the command; returns the process's
    /// exit status (the README's Commands table lists each command's).
    pub fn execute(self) -> ExitCode {
        if let Err(e) = crate::telemetry::init_logging(self.global.log_format, &self.global.log_level) {
            return fail(EXIT_USAGE, e);
        }
        crate::http::install_crypto_provider();
        // Looked for only by the commands that read it: `redis flush --url`
        // needs none, and would only print that none was found.
        let config = self.global.config;
        let src = move || source(config);
        match self.command {
            Command::Run => run::execute(src()),
            Command::Check(args) => with_config(&src(), |cfg| args.execute(cfg)),
            Command::Report(args) => with_config(&src(), |cfg| args.execute(cfg)),
            Command::Relay { command } => with_config(&src(), |cfg| command.execute(cfg)),
            Command::Redis { command } => command.execute(src),
            Command::Doctor(args) => with_config(&src(), |cfg| args.execute(cfg)),
            Command::Verify(args) => with_config(&src(), |cfg| args.execute(cfg)),
            Command::Config {
                command: config::ConfigCommand::Schema,
            } => config::schema(),
            Command::Config { command } => with_config(&src(), |cfg| command.execute(cfg)),
        }
    }
}

/// Output of the commands that print either a table or JSON (`check`,
/// `relay dlq list`): one choice, spelt the same for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for a terminal.
    Text,
    /// JSON for machines.
    Json,
}

/// Where the configuration comes from: the file given, else the first of
/// [`CONFIG_SEARCH`] that exists, else the embedded default (so `lookout
/// check` works with nothing but `REDIS_URL`) — said on stderr with the
/// paths tried, so a file in the wrong place is not silently ignored.
pub fn source(explicit: Option<PathBuf>) -> ConfigSource {
    if let Some(p) = explicit {
        return ConfigSource::File(p);
    }
    match CONFIG_SEARCH.iter().map(PathBuf::from).find(|p| p.is_file()) {
        Some(p) => ConfigSource::File(p),
        None => {
            eprintln!(
                "lookout: no configuration file found (tried {}); using the embedded default: one redis probe of REDIS_URL",
                CONFIG_SEARCH.join(", ")
            );
            ConfigSource::Embedded
        }
    }
}

/// `data_dir/file`, when both exist; otherwise says which is missing and
/// gives [`EXIT_NO_INPUT`]. Commands that read what the daemon writes check
/// this first, so that a mistyped `data_dir` is an error rather than a new,
/// empty store that answers "nothing there".
pub fn existing(data_dir: &Path, file: &str, what: &str) -> Result<PathBuf, ExitCode> {
    if !data_dir.is_dir() {
        return Err(fail(
            EXIT_NO_INPUT,
            format_args!(
                "the data directory {} does not exist (is `lookout run` using this data_dir?)",
                data_dir.display()
            ),
        ));
    }
    let path = data_dir.join(file);
    if !path.is_file() {
        return Err(fail(
            EXIT_NO_INPUT,
            format_args!("no {what} at {} (is `lookout run` using this data_dir?)", path.display()),
        ));
    }
    Ok(path)
}

/// Loads and validates the configuration, then runs `command` with it. On
/// problems, prints them once (each naming its file, line and field) and
/// exits 78 without running anything.
fn with_config(src: &ConfigSource, command: impl FnOnce(&Config) -> ExitCode) -> ExitCode {
    match src.load() {
        Ok(cfg) => {
            for w in &cfg.warnings {
                eprintln!("warning: {w}");
            }
            command(&cfg)
        }
        Err(e) => invalid_config(&e),
    }
}

/// Prints a configuration's problems to stderr and gives [`EXIT_CONFIG`]:
/// the one way every command, the daemon included, reports them.
pub fn invalid_config(e: &ConfigError) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(EXIT_CONFIG)
}

/// Runs `f` to completion on a multi-threaded runtime built for it, so
/// that a command which needs async I/O starts it the same way as the
/// daemon. A runtime that cannot start is reported and gives
/// [`EXIT_SOFTWARE`].
pub fn block_on<F: Future>(f: F) -> Result<F::Output, ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(EXIT_SOFTWARE, format_args!("cannot start the runtime: {e}")))?;
    Ok(rt.block_on(f))
}

/// Prints `lookout: {message}` to stderr and gives `status`: how a command
/// reports an error that is not the configuration's.
pub fn fail(status: u8, message: impl Display) -> ExitCode {
    eprintln!("lookout: {message}");
    ExitCode::from(status)
}

/// Prints a command's output to stdout as is and gives `status`.
pub fn print_out(text: &str, status: u8) -> ExitCode {
    print!("{text}");
    ExitCode::from(status)
}

/// `value` as indented JSON with a final newline: the JSON form of the
/// commands' output.
pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, String> {
    serde_json::to_string_pretty(value).map(|s| s + "\n").map_err(|e| e.to_string())
}

/// Asks for the count on the terminal; true when typed back exactly.
pub(crate) fn confirm(matched: u64) -> bool {
    use std::io::{BufRead, Write};
    eprint!("This deletes {matched} keys. Type {matched} to go on: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    line.trim().replace([',', '_'], "") == matched.to_string()
}

/// Sets `stop` on SIGINT or SIGTERM. A second signal is not special: the
/// batch in flight is short, and killing mid-batch gains nothing.
pub(crate) fn spawn_signal_watch(stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    });
}
