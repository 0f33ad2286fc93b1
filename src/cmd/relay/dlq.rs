//! `lookout relay dlq list|retry|drop`: the notifications the relay gave up
//! on, with the reason, and the operator's two answers: queue them again
//! once the destination is fixed, or drop them for good.

use std::process::ExitCode;

use clap::Subcommand;

use super::Context;
use crate::cmd::{Format, fail, json, print_out};
use crate::relay::outbox::Dead;

/// `lookout relay dlq …`.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead-lettered deliveries.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
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

impl DlqCommand {
    /// Runs it on the daemon's outbox; exit 0, or 1 on an error (no ids
    /// and no `--all` is one: nothing is changed by accident).
    pub fn execute(self, relay: &Context<'_>) -> ExitCode {
        let outbox = match relay.outbox() {
            Ok(o) => o,
            Err(e) => return fail(1, e),
        };
        let result = match self {
            DlqCommand::List { format } => outbox.dlq().map_err(|e| e.to_string()).and_then(|list| match format {
                Format::Json => json(&list),
                Format::Text => Ok(table(&list)),
            }),
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
            Ok(text) => print_out(&text, 0),
            Err(e) => fail(1, e),
        }
    }
}

/// How much of a group key the table shows: enough to tell groups apart
/// without one long key widening every line.
const GROUP_CHARS: usize = 40;

/// The dead letters as a table for a terminal.
fn table(list: &[Dead]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|d| {
            vec![
                d.id.to_string(),
                d.destination.clone(),
                d.attempts.to_string(),
                crate::report::time(d.created),
                d.group_key.chars().take(GROUP_CHARS).collect(),
                d.reason.clone(),
            ]
        })
        .collect();
    crate::table::render(&["ID", "DESTINATION", "ATTEMPTS", "RECEIVED", "GROUP", "REASON"], &rows)
}
