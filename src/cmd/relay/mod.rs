//! `lookout relay …`: the relay's operator commands, run beside the daemon
//! on the same data directory: the dead-letter list ([`dlq`]), test
//! notifications ([`send_test`]) and the route table ([`routes`]).

pub mod dlq;
pub mod routes;
pub mod send_test;

use std::process::ExitCode;

use clap::Subcommand;

use super::fail;
use crate::relay::config::RelayConfig;
use crate::settings::Config;

/// `lookout relay …`.
#[derive(Debug, Subcommand)]
pub enum RelayCommand {
    /// The dead-letter list: notifications given up, with the reason.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// Send a test notification to one destination now, to prove it works.
    SendTest(send_test::SendTestArgs),
    /// The route table, and which destinations given labels reach.
    Routes {
        #[command(subcommand)]
        command: routes::RoutesCommand,
    },
}

impl RelayCommand {
    /// Runs the command against the configured relay; exit 1 when the
    /// relay is disabled or the command fails.
    pub fn execute(self, cfg: &Config) -> ExitCode {
        let Some(config) = &cfg.relay else {
            return fail(1, "the relay is disabled in this configuration");
        };
        let relay = Context {
            data_dir: &cfg.data_dir,
            config,
        };
        match self {
            RelayCommand::Dlq { command } => command.execute(&relay),
            RelayCommand::SendTest(args) => args.execute(&relay),
            RelayCommand::Routes { command } => command.execute(&relay),
        }
    }
}

/// The configured relay, as the subcommands need it.
pub struct Context<'a> {
    /// The daemon's data directory, which holds the outbox.
    pub data_dir: &'a std::path::Path,
    /// The relay's configuration.
    pub config: &'a RelayConfig,
}
