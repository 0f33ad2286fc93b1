//! `lookout relay routes show|test`: the route table as lookout reads it,
//! and which destinations a notification with given common labels reaches
//! (Alertmanager's `amtool config routes test`), so a routing change can be
//! proved before a reload.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Subcommand;

use super::super::{fail, print_out};
use super::Context;
use crate::relay::route;

/// Exit status for a label that is not `NAME=VALUE` (sysexits' EX_USAGE).
const USAGE: u8 = 64;

/// `lookout relay routes …`.
#[derive(Debug, Subcommand)]
pub enum RoutesCommand {
    /// Print the route table: order, matchers, destinations, continue.
    Show,
    /// Print the destinations a notification with these common labels reaches;
    /// exit 1 when no route matches.
    Test {
        /// The notification's common labels.
        #[arg(value_name = "LABEL=VALUE", required = true)]
        labels: Vec<String>,
    },
}

impl RoutesCommand {
    /// Runs it on the configured relay.
    pub fn execute(self, relay: &Context<'_>) -> ExitCode {
        match self {
            RoutesCommand::Show => print_out(&show(relay), 0),
            RoutesCommand::Test { labels } => {
                let mut set = BTreeMap::new();
                for l in &labels {
                    match l.split_once('=') {
                        Some((k, v)) if !k.trim().is_empty() => {
                            set.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
                        }
                        _ => return fail(USAGE, format_args!("`{l}` is not LABEL=VALUE")),
                    }
                }
                let reached = route::destinations(&relay.config.routes, &set);
                if reached.is_empty() {
                    return fail(
                        1,
                        "no route matches: such a notification is counted as unrouted and delivered nowhere",
                    );
                }
                print_out(&(reached.join("\n") + "\n"), 0)
            }
        }
    }
}

/// The route table as a plain-text table.
fn show(relay: &Context<'_>) -> String {
    let rows: Vec<Vec<String>> = relay
        .config
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let matchers = if r.matchers.is_empty() {
                "(every notification)".to_string()
            } else {
                r.matchers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            };
            vec![
                i.to_string(),
                matchers,
                r.destinations.join(", "),
                if r.continue_ { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    crate::table::render(&["ROUTE", "MATCHERS", "DESTINATIONS", "CONTINUE"], &rows)
}
