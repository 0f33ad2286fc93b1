//! The data nodes of a topology, each read by the `kind: redis` code: one
//! kept connection per node, made on first sight and dropped when the node
//! leaves the topology.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::redis::{RedisProbe, RedisSpec};
use super::topology::split_address;
use super::{FailureReason, Probe, ProbeError, Reading};

/// One kept `kind: redis` probe per data node, made on first sight and
/// dropped when the node leaves the topology.
pub struct NodePool {
    template: RedisSpec,
    name: String,
    timeout: Duration,
    nodes: HashMap<String, Arc<RedisProbe>>,
}

/// What probing one node gave.
pub struct NodeReading {
    /// `host:port`.
    pub address: String,
    /// The reading, or why there is none.
    pub result: Result<Reading, ProbeError>,
}

impl NodePool {
    /// A pool whose nodes are reached like `template` (credentials, TLS),
    /// each run bounded by `timeout`.
    pub fn new(name: &str, template: RedisSpec, timeout: Duration) -> Self {
        NodePool {
            template,
            name: name.to_string(),
            timeout,
            nodes: HashMap::new(),
        }
    }

    /// Probes every address in `addresses` at once; forgets the nodes not
    /// in it.
    pub async fn probe(&mut self, addresses: &[String]) -> Vec<NodeReading> {
        self.nodes.retain(|a, _| addresses.contains(a));
        let mut probes = Vec::new();
        for a in addresses {
            let probe = match self.nodes.get(a) {
                Some(p) => Ok(p.clone()),
                None => self.make(a).inspect(|p| {
                    self.nodes.insert(a.clone(), p.clone());
                }),
            };
            probes.push((a.clone(), probe));
        }
        let runs = probes.into_iter().map(|(address, probe)| async move {
            let result = match probe {
                Ok(p) => p.check().await,
                Err(e) => Err(ProbeError::new(FailureReason::Connect, e)),
            };
            NodeReading { address, result }
        });
        futures::future::join_all(runs).await
    }

    fn make(&self, address: &str) -> Result<Arc<RedisProbe>, String> {
        let (host, port) = split_address(address).ok_or_else(|| format!("`{address}` is not host:port"))?;
        let spec = self.template.at(host, port)?;
        RedisProbe::new(&self.name, &spec, self.timeout).map(|p| Arc::new(p.with_replication()))
    }
}
