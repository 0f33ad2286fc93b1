//! `lookout relay send-test --destination NAME`: sends a test notification
//! to one destination now, without the queue, to prove its address,
//! credentials and templates work.
//!
//! It delivers through the workers' own [`crate::relay::worker::deliver`]:
//! the same timeout and the same verdict a real notification would get.

use std::process::ExitCode;

use clap::Args;

use super::Context;
use crate::cmd::{block_on, fail};
use crate::relay::destination::DestinationConfig;
use crate::relay::destination::{self, Notification};

/// `lookout relay send-test`'s flags.
#[derive(Debug, Args)]
pub struct SendTestArgs {
    /// The destination's name.
    #[arg(long)]
    destination: String,
}

impl SendTestArgs {
    /// Sends it; exit 0 delivered, 1 not (unknown destination included).
    pub fn execute(self, relay: &Context<'_>) -> ExitCode {
        let name = self.destination;
        let Some(d) = relay.config.destinations.iter().find(|d| d.name == name) else {
            let names: Vec<&str> = relay.config.destinations.iter().map(|d| d.name.as_str()).collect();
            return fail(1, format_args!("no destination named `{name}` (configured: {})", names.join(", ")));
        };
        match block_on(send(relay, d)) {
            Ok(Ok(())) => {
                println!("test notification delivered to `{name}` ({})", d.kind.type_name());
                ExitCode::SUCCESS
            }
            Ok(Err(e)) => fail(1, format_args!("test notification to `{name}` failed: {e}")),
            Err(status) => status,
        }
    }
}

/// Builds the destination as the daemon does (with the outbox, where a
/// Slack bot keeps its threads) and delivers the test notification once.
async fn send(relay: &Context<'_>, d: &DestinationConfig) -> Result<(), String> {
    let dest = destination::build(d, &relay.data_dir.join(crate::relay::outbox::OUTBOX_FILE))?;
    let p = crate::relay::template::test_notification();
    let raw = serde_json::to_string(&p).map_err(|e| e.to_string())?;
    let n = Notification { payload: &p, raw: &raw };
    crate::relay::worker::deliver(dest.as_ref(), &d.delivery, &n)
        .await
        .map_err(|e| e.message)
}
