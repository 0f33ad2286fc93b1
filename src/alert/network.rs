//! Whether lookout itself has lost the network. When it has, every probe
//! fails and every alert would fire at once, about targets that are fine:
//! the engine holds synthetic alerts until the network is back.

use std::collections::HashSet;
use std::time::Duration;

use super::Inputs;
use crate::config::alerts::AlertsConfig;
use crate::probe::ProbeConfig;
use crate::probe::{FailureReason, Observation};

/// How long the connectivity target gets to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// True when `connectivity_target` cannot be reached or, without one, when
/// every probe (more than one, on more than one host) fails to connect at
/// once — which says more about lookout than about the targets.
pub async fn lost(cfg: &AlertsConfig, inputs: &Inputs<'_>) -> bool {
    if let Some(target) = &cfg.connectivity_target {
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(target.as_str())).await;
        return !matches!(conn, Ok(Ok(_)));
    }
    let obs: Vec<&Observation> = inputs.latest.values().collect();
    obs.len() > 1
        && obs
            .iter()
            .all(|o| !o.ok && matches!(o.reason, Some(FailureReason::Connect) | Some(FailureReason::Timeout)))
        && inputs.config.probes.iter().filter_map(host).collect::<HashSet<String>>().len() > 1
}

/// A probe's `host:port`.
fn host(p: &ProbeConfig) -> Option<String> {
    p.spec.target()
}
