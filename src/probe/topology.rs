//! What the topology kinds (`redis_sentinel`, `redis_cluster`) learn beside
//! the canonical metrics: the nodes with their roles, the master, the
//! replication links, and the master changes seen between runs.
//!
//! The record rides in [`super::Facts`], so it reaches `lookout check
//! --format json`, the history store and the status page the way every
//! other fact does, with no second path. The nodes are read by
//! [`super::nodes`].

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// A Redis topology as one run saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    /// The current master as `host:port` (sentinel: what the sentinels name;
    /// cluster: absent, each shard has its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// Every data node, masters first, then by address.
    pub nodes: Vec<Node>,
    /// Sentinel: what each configured sentinel said.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sentinels: Vec<SentinelView>,
    /// Sentinel: whether every reachable sentinel names the same master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinels_agree: Option<bool>,
    /// Sentinel: `SENTINEL CKQUORUM` succeeded (quorum and failover
    /// authorisation can be reached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_ok: Option<bool>,
    /// Sentinel: `SENTINEL CKQUORUM`'s own words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_message: Option<String>,
    /// Cluster: the state `CLUSTER INFO` reports and the slot counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterFacts>,
    /// The master change this run saw, if any: counted once, by the run
    /// that saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
    /// The last master change seen since lookout started probing, for the
    /// status page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<Failover>,
}

impl Topology {
    /// How many reachable nodes say of themselves `role:master` (sentinel:
    /// more than one is a split brain).
    pub fn claimed_masters(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.ok && n.reported_role.as_deref() == Some("master"))
            .count()
    }
}

/// One data node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// `host:port`.
    pub address: String,
    /// Its role in the topology: `master` or `replica` (what the sentinels
    /// or the cluster say).
    pub role: String,
    /// Whether lookout's PING + INFO succeeded.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The role the node reports of itself (`INFO replication`): a former
    /// master not yet converted still says `master`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_role: Option<String>,
    /// Its `run_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Median PING round trip, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_seconds: Option<f64>,
    /// Replica: `master_link_status` is `up`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_up: Option<bool>,
    /// Replica: bytes of the master's replication stream it has not
    /// processed (`master_repl_offset` of its master minus its own offset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<f64>,
    /// Replica: seconds since its master last heard from it (the master's
    /// `lag=`), else since it last heard from its master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// Flags the sentinels or the cluster give it (`s_down`, `o_down`,
    /// `fail`, `pfail`, `disconnected`…).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// Cluster: the node id of the shard's master (the node's own for a master).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
}

/// What one sentinel said.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SentinelView {
    /// `host:port`: as configured, or as announced for a sentinel found
    /// by `SENTINEL SENTINELS`.
    pub address: String,
    /// Whether it answered.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The master it names, `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
}

/// The cluster-wide state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterFacts {
    /// `cluster_state` is `ok`.
    pub state_ok: bool,
    /// Slots assigned to a shard (of 16,384).
    pub slots_assigned: u32,
    /// Slots served: assigned, and their shard's master is not failing.
    pub slots_ok: u32,
    /// Shards that own slots but have no reachable master.
    pub shards_without_master: u32,
    /// Nodes flagged `fail` or `pfail`.
    pub failing_nodes: u32,
}

/// A master change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failover {
    /// The former master, `host:port`.
    pub from: String,
    /// Its `run_id`, when it was read: what a source still reporting the
    /// former master reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_run_id: Option<String>,
    /// The new master, `host:port`.
    pub to: String,
    /// When lookout saw it, Unix seconds.
    pub at: f64,
}

/// Replication facts of one node, from `INFO replication` (read every run
/// by the topology kinds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Replication {
    /// `master` or `slave`.
    pub role: String,
    /// Replica: `master_link_status` is `up`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_up: Option<bool>,
    /// Replica: the master it follows, `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// `master_repl_offset`: on a master, the end of its stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_repl_offset: Option<f64>,
    /// Replica: `slave_repl_offset`, how far it has processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_offset: Option<f64>,
    /// Replica: `master_last_io_seconds_ago`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_io_seconds_ago: Option<f64>,
    /// Master: its replicas as it sees them (`slaveN:` lines), by `host:port`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replicas: BTreeMap<String, ReplicaLink>,
}

/// A master's view of one replica.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaLink {
    /// Offset the replica acknowledged.
    pub offset: f64,
    /// Seconds since its last acknowledgement.
    pub lag: f64,
}

impl Replication {
    /// Reads the `INFO replication` keys; `None` without `role`.
    pub fn from_info(info: &HashMap<String, String>) -> Option<Replication> {
        let role = info.get("role")?.clone();
        let num = |k: &str| info.get(k).and_then(|v| v.parse::<f64>().ok());
        let mut replicas = BTreeMap::new();
        for (k, v) in info {
            if !(k.starts_with("slave") && k[5..].chars().all(|c| c.is_ascii_digit()) && k.len() > 5) {
                continue;
            }
            let fields: HashMap<&str, &str> = v.split(',').filter_map(|kv| kv.split_once('=')).collect();
            if let (Some(ip), Some(port)) = (fields.get("ip"), fields.get("port")) {
                replicas.insert(
                    format!("{ip}:{port}"),
                    ReplicaLink {
                        offset: fields.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0.0),
                        lag: fields.get("lag").and_then(|v| v.parse().ok()).unwrap_or(0.0),
                    },
                );
            }
        }
        let is_replica = role == "slave";
        Some(Replication {
            link_up: is_replica.then(|| info.get("master_link_status").is_some_and(|s| s == "up")),
            master: match (is_replica, info.get("master_host"), info.get("master_port")) {
                (true, Some(h), Some(p)) => Some(format!("{h}:{p}")),
                _ => None,
            },
            master_repl_offset: num("master_repl_offset"),
            replica_offset: if is_replica { num("slave_repl_offset") } else { None },
            last_io_seconds_ago: if is_replica { num("master_last_io_seconds_ago") } else { None },
            replicas,
            role,
        })
    }
}

/// `host:port` (`[v6]:port` too) into its parts.
pub fn split_address(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then_some(())?;
    Some((host, port.parse().ok()?))
}

/// Fills each replica's lag from its master's reading and its own: bytes
/// as the master's `master_repl_offset` minus the replica's offset (never
/// below zero: the replica's INFO may be read a moment after the master's),
/// seconds as the master's `lag=` for it, else the replica's
/// `master_last_io_seconds_ago`.
pub fn fill_lag(nodes: &mut [Node], replication: &HashMap<String, Replication>) {
    for node in nodes.iter_mut() {
        let Some(own) = replication.get(&node.address) else { continue };
        if own.role != "slave" {
            continue;
        }
        node.link_up = own.link_up;
        let master = own.master.as_ref().and_then(|m| replication.get(m));
        let link = master.and_then(|m| m.replicas.get(&node.address));
        node.lag_bytes = match (
            master.and_then(|m| m.master_repl_offset),
            own.replica_offset.or(link.map(|l| l.offset)),
        ) {
            (Some(end), Some(at)) => Some((end - at).max(0.0)),
            _ => None,
        };
        node.lag_seconds = link.map(|l| l.lag).or(own.last_io_seconds_ago);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_replication_sections() {
        let info = super::super::redis::parse_info(
            "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=127.0.0.1,port=6380,state=online,offset=100,lag=1\r\nmaster_repl_offset:150\r\n",
        );
        let m = Replication::from_info(&info).unwrap();
        assert_eq!(m.role, "master");
        assert_eq!(m.replicas["127.0.0.1:6380"], ReplicaLink { offset: 100.0, lag: 1.0 });
        let info = super::super::redis::parse_info(
            "role:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:6379\r\nmaster_link_status:down\r\nslave_repl_offset:120\r\nmaster_repl_offset:120\r\n",
        );
        let r = Replication::from_info(&info).unwrap();
        assert_eq!(r.link_up, Some(false));
        assert_eq!(r.master.as_deref(), Some("127.0.0.1:6379"));
        let by_addr: HashMap<String, Replication> = [("127.0.0.1:6379".to_string(), m), ("127.0.0.1:6380".to_string(), r)]
            .into_iter()
            .collect();
        let mut nodes = vec![Node {
            address: "127.0.0.1:6380".into(),
            role: "replica".into(),
            ..Node::default()
        }];
        fill_lag(&mut nodes, &by_addr);
        assert_eq!(nodes[0].lag_bytes, Some(30.0));
        assert_eq!(nodes[0].lag_seconds, Some(1.0));
        assert_eq!(nodes[0].link_up, Some(false));
    }

    #[test]
    fn splits_addresses() {
        assert_eq!(split_address("127.0.0.1:6379"), Some(("127.0.0.1", 6379)));
        assert_eq!(split_address("[::1]:6379"), Some(("::1", 6379)));
        assert_eq!(split_address("host"), None);
    }
}
