//! `lookout run`: the daemon (scheduler, probes, HTTP server, relay) until
//! SIGTERM or SIGINT.
//!
//! The daemon loads its configuration itself (it reloads it on SIGHUP too);
//! an invalid one at start is reported like every other command's and exits
//! 78, which the systemd unit treats as "do not restart".

use std::process::ExitCode;

use super::{block_on, fail, invalid_config};
use crate::config::ConfigError;
use crate::daemon::ConfigSource;

/// Runs the daemon; exit 0 after a clean stop, 78 on an invalid
/// configuration, 1 on any other failure.
pub fn execute(src: ConfigSource) -> ExitCode {
    match block_on(crate::daemon::run(src)) {
        Err(status) => status,
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => match e.downcast_ref::<ConfigError>() {
            Some(problems) => invalid_config(problems),
            None => {
                tracing::error!("{e:#}");
                fail(1, format_args!("{e:#}"))
            }
        },
    }
}
