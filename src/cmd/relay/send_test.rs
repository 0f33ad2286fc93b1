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

/// Delivers the test notification once, as the daemon would.
async fn send(relay: &Context<'_>, d: &DestinationConfig) -> Result<(), String> {
    crate::relay::worker::deliver_now(d, relay.data_dir, &crate::relay::template::test_notification()).await
}
