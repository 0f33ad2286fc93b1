//! `lookout relay dlq list|retry|drop`: the notifications the relay gave up
//! on, with the reason, and the operator's two answers: queue them again
//! once the destination is fixed, or drop them for good.

use std::collections::HashSet;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::Context;
use crate::cmd::{Format, existing, fail, json, print_out};
use crate::relay::outbox::{Dead, OUTBOX_FILE};
use crate::relay::store::RelayStore;

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
    Retry(Selection),
    /// Drop dead-lettered deliveries for good (the given ids, or --all).
    Drop(Selection),
}

/// Which dead letters `retry` and `drop` act on: ids, or `--all`. One of
/// the two is required (a usage error otherwise), so nothing is changed by
/// accident.
#[derive(Debug, Args)]
pub struct Selection {
    /// Delivery ids, as `dlq list` shows them.
    #[arg(required_unless_present = "all")]
    ids: Vec<i64>,
    /// Every dead-lettered delivery.
    #[arg(long, conflicts_with = "ids")]
    all: bool,
}

impl DlqCommand {
    /// Runs it on the daemon's store (the outbox in `data_dir`, or the
    /// shared PostgreSQL store of `relay.store`); exit 0, 1 on an error (an
    /// id that is not in the dead-letter list is one: nothing is changed),
    /// 66 when the `data_dir` holds no outbox.
    pub fn execute(self, relay: &Context<'_>) -> ExitCode {
        if relay.config.store.is_none()
            && let Err(status) = existing(relay.data_dir, OUTBOX_FILE, "outbox")
        {
            return status;
        }
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return fail(1, format!("cannot start the runtime: {e}")),
        };
        let result = rt.block_on(async {
            let store = crate::relay::store::open(relay.config, relay.data_dir)
                .await
                .map_err(|e| e.to_string())?;
            let store = store.as_ref();
            match self {
                DlqCommand::List { format } => store.dlq().await.map_err(|e| e.to_string()).and_then(|list| match format {
                    Format::Json => json(&list),
                    Format::Text => Ok(table(&list)),
                }),
                DlqCommand::Retry(sel) => {
                    let ids = selected(store, &sel).await?;
                    let n = store.dlq_retry(&ids).await.map_err(|e| e.to_string())?;
                    Ok(format!("{n} deliveries queued again\n"))
                }
                DlqCommand::Drop(sel) => {
                    let ids = selected(store, &sel).await?;
                    let n = store.dlq_drop(&ids).await.map_err(|e| e.to_string())?;
                    Ok(format!("{n} deliveries dropped\n"))
                }
            }
        });
        match result {
            Ok(text) => print_out(&text, 0),
            Err(e) => fail(1, e),
        }
    }
}

/// The ids to act on (empty for `--all`, as the outbox takes it), once each
/// given id is known to be dead-lettered: an id that is not (a typo, or
/// already retried) is an error naming it, and nothing is changed.
async fn selected(store: &dyn RelayStore, sel: &Selection) -> Result<Vec<i64>, String> {
    if sel.all {
        return Ok(Vec::new());
    }
    let dead: HashSet<i64> = store.dlq().await.map_err(|e| e.to_string())?.iter().map(|d| d.id).collect();
    let unknown: Vec<String> = sel.ids.iter().filter(|id| !dead.contains(id)).map(i64::to_string).collect();
    if unknown.is_empty() {
        Ok(sel.ids.clone())
    } else {
        Err(format!(
            "no dead-lettered delivery with id {} (see `lookout relay dlq list`); nothing changed",
            unknown.join(", ")
        ))
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
