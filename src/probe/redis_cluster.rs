//! `kind: redis_cluster`: a Redis Cluster, every shard and node of it.
//!
//! Each run asks one node (the one that answered last, else the seeds in
//! order, else any node seen before) for `CLUSTER INFO` (the state and the
//! slot counts as the cluster judges them) and the topology: `CLUSTER
//! SHARDS` on Redis 7.0 and later, `CLUSTER NODES` before. Every node is
//! then read by the `kind: redis` code (PING, INFO and `INFO replication`),
//! one kept connection each, all at once, so that a shard whose master the
//! cluster still lists but nobody can reach is seen too.
//!
//! Why not the redis crate's `ClusterClient`: it routes commands to slots
//! and hides the topology it learns, which is what this kind reports.
//!
//! A shard's master changing between two runs (the shard known by its
//! first slot) is a failover, reported as `redis_sentinel` reports one.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use redis::Value;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::nodes::{Access, Kept, NodePool, check_addresses};
use super::redis::{RedisSpec, parse_info};
use super::topology::{ClusterFacts, Failover, Node, Topology, fill_lag};
use super::{FailureReason, Probe, ProbeError, Reading, unix_now};
use crate::config::entry::Scope;
use crate::config::value::opt_duration;
use crate::config::{Env, Secret};

/// The kind's name in `kind:`.
pub const KIND: &str = "redis_cluster";

/// Slots of a Redis Cluster.
pub const SLOTS: u32 = 16_384;

/// The keys of a `kind: redis_cluster` probe, as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRedisCluster {
    /// Seed nodes, as `host:port`: the probe learns the rest from them.
    pub nodes: Vec<String>,
    /// ACL user of the nodes.
    pub username: Option<String>,
    /// Password of the nodes.
    pub password: Option<Secret>,
    /// File holding the password (its final newline is ignored).
    pub password_file: Option<PathBuf>,
    /// Connect with TLS (default false).
    pub tls: Option<bool>,
    /// PEM file of the CA certificates that sign the nodes' certificates.
    /// TLS only.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for nodes that require one; with
    /// `key_file`. TLS only.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`, read as a secret. TLS only.
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (default false): for a test setup only.
    /// TLS only.
    pub tls_skip_verify: Option<bool>,
    /// How often each node's INFO sections that rarely change are re-read
    /// (default 1m).
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub static_info_every: Option<Duration>,
}

/// Configuration of a `kind: redis_cluster` probe.
#[derive(Debug, Clone)]
pub struct RedisClusterSpec {
    /// The seeds, `host:port`.
    pub seeds: Vec<String>,
    /// How to reach a node (its host and port replaced per node).
    pub node: RedisSpec,
}

/// Validates a `kind: redis_cluster` probe's keys into its spec.
pub fn configure(p: RawRedisCluster, scope: &mut Scope<'_>, env: Env<'_>) -> Option<RedisClusterSpec> {
    let before = scope.count();
    check_addresses(&p.nodes, "nodes", "seed node", scope);
    let node = Access {
        username: p.username,
        password: p.password,
        password_file: p.password_file,
        tls: p.tls,
        ca_file: p.ca_file,
        cert_file: p.cert_file,
        key_file: p.key_file,
        tls_skip_verify: p.tls_skip_verify,
        static_info_every: p.static_info_every,
    }
    .template(scope, env);
    if scope.count() > before {
        return None;
    }
    Some(RedisClusterSpec {
        seeds: p.nodes,
        node: node?,
    })
}

/// One shard as the cluster describes it.
#[derive(Debug, Clone, Default, PartialEq)]
struct Shard {
    /// Slot ranges, inclusive.
    slots: Vec<(u32, u32)>,
    nodes: Vec<ShardNode>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct ShardNode {
    id: String,
    address: String,
    /// `master` or `replica`.
    role: String,
    /// The cluster marks it failing (`fail`, or `fail?` in CLUSTER NODES).
    failing: bool,
    /// Flags for a person: `fail`, `pfail`, `loading`.
    flags: Vec<String>,
}

impl Shard {
    fn slot_count(&self) -> u32 {
        self.slots.iter().map(|(a, b)| b.saturating_sub(*a) + 1).sum()
    }
}

/// Text of a reply element.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// A map reply, RESP3 (`Map`) or RESP2 (a flat array of keys and values).
fn pairs(v: &Value) -> Vec<(String, &Value)> {
    match v {
        Value::Map(m) => m.iter().filter_map(|(k, v)| Some((text(k)?, v))).collect(),
        Value::Array(a) => a.chunks(2).filter_map(|c| Some((text(c.first()?)?, c.get(1)?))).collect(),
        _ => Vec::new(),
    }
}

/// Parses `CLUSTER SHARDS`.
fn parse_shards(v: &Value) -> Result<Vec<Shard>, String> {
    let Value::Array(list) = v else {
        return Err("CLUSTER SHARDS: not a list".into());
    };
    let mut shards = Vec::new();
    for s in list {
        let mut shard = Shard::default();
        for (k, v) in pairs(s) {
            match (k.as_str(), v) {
                ("slots", Value::Array(bounds)) => {
                    let n: Vec<u32> = bounds.iter().filter_map(|b| text(b)?.parse().ok()).collect();
                    shard.slots = n.chunks(2).filter(|c| c.len() == 2).map(|c| (c[0], c[1])).collect();
                }
                ("nodes", Value::Array(nodes)) => {
                    for n in nodes {
                        let f: HashMap<String, String> = pairs(n).into_iter().filter_map(|(k, v)| Some((k, text(v)?))).collect();
                        let port = f.get("port").or(f.get("tls-port"));
                        let (Some(ip), Some(port)) = (f.get("ip").or(f.get("endpoint")), port) else {
                            continue;
                        };
                        let health = f.get("health").cloned().unwrap_or_default();
                        shard.nodes.push(ShardNode {
                            id: f.get("id").cloned().unwrap_or_default(),
                            address: join(ip, port),
                            role: if f.get("role").is_some_and(|r| r == "master") {
                                "master"
                            } else {
                                "replica"
                            }
                            .into(),
                            failing: health == "fail",
                            flags: if health.is_empty() || health == "online" {
                                vec![]
                            } else {
                                vec![health]
                            },
                        });
                    }
                }
                _ => {}
            }
        }
        shards.push(shard);
    }
    Ok(shards)
}

/// Parses `CLUSTER NODES` (before Redis 7.0) into shards: each master with
/// its slots, and the replicas that name it.
fn parse_nodes(text: &str) -> Vec<Shard> {
    let mut by_master: BTreeMap<String, Shard> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (id, addr, flags, master) = (f[0], f[1], f[2], f[3]);
        // `ip:port@cport[,hostname]`.
        let address = addr.split(['@', ',']).next().unwrap_or(addr).to_string();
        let flags: Vec<&str> = flags.split(',').collect();
        let is_master = flags.contains(&"master");
        let node = ShardNode {
            id: id.to_string(),
            address,
            role: if is_master { "master" } else { "replica" }.into(),
            failing: flags.iter().any(|x| *x == "fail" || *x == "fail?"),
            flags: flags
                .iter()
                .filter_map(|x| match *x {
                    "fail" => Some("fail".to_string()),
                    "fail?" => Some("pfail".to_string()),
                    _ => None,
                })
                .collect(),
        };
        let key = if is_master { id.to_string() } else { master.to_string() };
        let shard = by_master.entry(key).or_default();
        if is_master {
            for s in &f[8..] {
                if s.starts_with('[') {
                    continue; // a slot being migrated or imported
                }
                let (a, b) = s.split_once('-').unwrap_or((s, s));
                if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                    shard.slots.push((a, b));
                }
            }
            shard.nodes.insert(0, node);
        } else {
            shard.nodes.push(node);
        }
    }
    by_master.into_values().collect()
}

/// `host:port`, bracketing an IPv6 address.
fn join(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The probe.
pub struct RedisClusterProbe {
    seeds: Vec<String>,
    template: RedisSpec,
    timeout: Duration,
    state: Mutex<State>,
}

struct State {
    pool: NodePool,
    /// Connections for topology questions, by address.
    asked: HashMap<String, Kept>,
    /// The node that answered last: asked first next time.
    last_good: Option<String>,
    /// Every node seen last run: asked when the seeds do not answer.
    known: Vec<String>,
    /// Each shard's master, by the shard's first slot.
    masters: BTreeMap<u32, (String, Option<String>)>,
    last_failover: Option<Failover>,
}

impl RedisClusterProbe {
    /// Prepares the clients; no connection is made until the first run.
    pub fn new(name: &str, spec: &RedisClusterSpec, timeout: Duration) -> Result<Self, String> {
        // The run's bound split between its steps, so that one hung server
        // fails alone and the run still reports the rest: a question to a
        // hung server costs a quarter, then the nodes (read at once) get
        // under half. A run with one server hung ends near 0.7 of its
        // timeout, with a reading.
        let (ask_timeout, node_timeout) = (timeout.mul_f64(0.25), timeout.mul_f64(0.45));
        // Every seed must make a client now: a bad one is a configuration error.
        for s in &spec.seeds {
            Kept::new(&spec.node, s)?;
        }
        Ok(RedisClusterProbe {
            seeds: spec.seeds.clone(),
            template: spec.node.clone(),
            timeout: ask_timeout,
            state: Mutex::new(State {
                pool: NodePool::new(name, spec.node.clone(), node_timeout),
                asked: HashMap::new(),
                last_good: None,
                known: Vec::new(),
                masters: BTreeMap::new(),
                last_failover: None,
            }),
        })
    }

    /// `CLUSTER INFO` and the shards from the first node that answers.
    async fn discover(&self, st: &mut State) -> Result<(HashMap<String, String>, Vec<Shard>), ProbeError> {
        let mut candidates: Vec<String> = st.last_good.iter().cloned().collect();
        for a in self.seeds.iter().chain(&st.known) {
            if !candidates.contains(a) {
                candidates.push(a.clone());
            }
        }
        let mut errors = Vec::new();
        for a in candidates {
            if !st.asked.contains_key(&a) {
                match Kept::new(&self.template, &a) {
                    Ok(k) => {
                        st.asked.insert(a.clone(), k);
                    }
                    Err(e) => {
                        errors.push(format!("{a}: {e}"));
                        continue;
                    }
                }
            }
            let Some(node) = st.asked.get(&a) else { continue };
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("INFO");
            let info = match node.query::<String>(&cmd, "CLUSTER INFO", self.timeout).await {
                Ok(i) => parse_info(&i),
                Err(e) => {
                    errors.push(format!("{a}: {}", e.message));
                    continue;
                }
            };
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("SHARDS");
            let shards = match node.query::<Value>(&cmd, "CLUSTER SHARDS", self.timeout).await {
                Ok(v) => parse_shards(&v).map_err(|e| ProbeError::new(FailureReason::Response, e)),
                // Before 7.0: no SHARDS.
                Err(e) if e.reason == FailureReason::Status => {
                    let mut cmd = redis::cmd("CLUSTER");
                    cmd.arg("NODES");
                    node.query::<String>(&cmd, "CLUSTER NODES", self.timeout)
                        .await
                        .map(|t| parse_nodes(&t))
                }
                Err(e) => Err(e),
            };
            match shards {
                Ok(s) => {
                    st.last_good = Some(a);
                    return Ok((info, s));
                }
                Err(e) => errors.push(format!("{a}: {}", e.message)),
            }
        }
        Err(ProbeError::new(
            FailureReason::Connect,
            format!("no cluster node answered: {}", errors.join("; ")),
        ))
    }
}

impl RedisClusterSpec {
    /// How to reach each master that serves slots now, asked of the first
    /// seed that answers (within `timeout` each): keys live on masters
    /// only, so a command acting on every key (`lookout redis flush`) goes
    /// to each of these. A shard whose master the cluster marks failing is
    /// an error: its keys could not be reached.
    pub async fn masters(&self, timeout: Duration) -> Result<Vec<RedisSpec>, String> {
        let probe = RedisClusterProbe::new(KIND, self, timeout.mul_f64(4.0))?;
        let mut st = probe.state.lock().await;
        let (_, shards) = probe.discover(&mut st).await.map_err(|e| e.message)?;
        let mut out = Vec::new();
        for shard in shards.iter().filter(|s| s.slot_count() > 0) {
            let Some(m) = shard.nodes.iter().find(|n| n.role == "master") else {
                return Err(format!("no master serves slots {:?}", shard.slots));
            };
            if m.failing {
                return Err(format!("the master {} of slots {:?} is failing", m.address, shard.slots));
            }
            let (host, port) = m
                .address
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.trim_start_matches('[').trim_end_matches(']'), p.parse::<u16>().ok()?)))
                .ok_or_else(|| format!("the cluster names a master `{}` that is not host:port", m.address))?;
            out.push(self.node.at(host, port)?);
        }
        if out.is_empty() {
            return Err("the cluster has no master serving slots".into());
        }
        Ok(out)
    }

    /// [`masters`](Self::masters) with a client for each, named by its
    /// redacted URL, and the name a flush gives the whole cluster.
    pub async fn master_clients(&self, timeout: Duration) -> Result<(String, Vec<(String, redis::Client)>), String> {
        let masters = self.masters(timeout).await?;
        let whole = format!("the cluster of {} masters (seeds {})", masters.len(), self.seeds.join(", "));
        let clients = masters
            .iter()
            .map(|m| Ok((m.display_url.clone(), super::redis::client_for(m)?)))
            .collect::<Result<_, String>>()?;
        Ok((whole, clients))
    }
}

#[async_trait::async_trait]
impl Probe for RedisClusterProbe {
    async fn check(&self) -> Result<Reading, ProbeError> {
        let mut st = self.state.lock().await;
        let (info, shards) = self.discover(&mut st).await?;
        let mut addresses: Vec<String> = Vec::new();
        for n in shards.iter().flat_map(|s| &s.nodes) {
            if !addresses.contains(&n.address) {
                addresses.push(n.address.clone());
            }
        }
        st.asked.retain(|a, _| addresses.contains(a) || self.seeds.contains(a));
        st.known = addresses.clone();
        let readings = st.pool.probe(&addresses).await;
        let by_address: HashMap<&str, &Result<Reading, ProbeError>> = readings.iter().map(|r| (r.address.as_str(), &r.result)).collect();

        let mut nodes = Vec::new();
        let mut replication = HashMap::new();
        let mut shards_without_master = 0;
        let mut failing_nodes = 0;
        let mut uncovered = Vec::new();
        let mut masters_now = BTreeMap::new();
        for shard in &shards {
            let shard_id = shard
                .nodes
                .iter()
                .find(|n| n.role == "master")
                .or(shard.nodes.first())
                .map(|n| n.id.clone());
            let mut reachable_master = false;
            for sn in &shard.nodes {
                let mut node = Node {
                    address: sn.address.clone(),
                    role: sn.role.clone(),
                    flags: sn.flags.clone(),
                    shard: shard_id.clone(),
                    ..Node::default()
                };
                failing_nodes += u32::from(sn.failing);
                match by_address.get(sn.address.as_str()) {
                    Some(Ok(reading)) => {
                        node.ok = true;
                        node.reported_role = reading.facts.role.clone();
                        node.run_id = reading.facts.run_id.clone();
                        node.latency_seconds = reading.values.get(&crate::metric::Metric::LatencySeconds).copied();
                        if let Some(rep) = &reading.facts.replication {
                            replication.insert(sn.address.clone(), (**rep).clone());
                        }
                        if sn.role == "master" && !sn.failing {
                            reachable_master = true;
                        }
                    }
                    Some(Err(e)) => node.error = Some(e.message.clone()),
                    None => {}
                }
                nodes.push(node);
            }
            if shard.slot_count() > 0 {
                if !reachable_master {
                    shards_without_master += 1;
                    let ranges: Vec<String> = shard.slots.iter().map(|(a, b)| format!("{a}-{b}")).collect();
                    uncovered.push(ranges.join(","));
                }
                if let (Some(first), Some(m)) = (
                    shard.slots.iter().map(|(a, _)| *a).min(),
                    shard.nodes.iter().find(|n| n.role == "master"),
                ) {
                    let run_id = nodes.iter().find(|n| n.address == m.address).and_then(|n| n.run_id.clone());
                    masters_now.insert(first, (m.address.clone(), run_id));
                }
            }
        }
        fill_lag(&mut nodes, &replication);

        // A shard's master changed: a failover (the first one seen, when
        // several shards changed at once).
        let mut failover = None;
        for (slot, (now, run_id)) in &masters_now {
            if let Some((before, before_id)) = st.masters.get(slot)
                && before != now
                && failover.is_none()
            {
                failover = Some(Failover {
                    from: before.clone(),
                    from_run_id: before_id.clone(),
                    to: now.clone(),
                    at: unix_now(),
                });
            }
            let keep = match st.masters.get(slot) {
                Some((b, id)) if b == now => run_id.clone().or(id.clone()),
                _ => run_id.clone(),
            };
            st.masters.insert(*slot, (now.clone(), keep));
        }
        if failover.is_some() {
            st.last_failover = failover.clone();
        }

        let num = |k: &str| info.get(k).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
        let cluster = ClusterFacts {
            state_ok: info.get("cluster_state").is_some_and(|s| s == "ok"),
            slots_assigned: num("cluster_slots_assigned"),
            slots_ok: num("cluster_slots_ok"),
            shards_without_master,
            failing_nodes,
        };
        let mut problems = Vec::new();
        if !cluster.state_ok {
            problems.push(format!(
                "cluster_state {}",
                info.get("cluster_state").map(String::as_str).unwrap_or("unknown")
            ));
        }
        if cluster.slots_ok < SLOTS {
            problems.push(format!("{} of {SLOTS} slots not served", SLOTS - cluster.slots_ok));
        }
        if !uncovered.is_empty() {
            problems.push(format!("no reachable master for slots {}", uncovered.join(" ")));
        }
        let failing: Vec<&str> = nodes
            .iter()
            .filter(|n| n.flags.iter().any(|f| f == "fail" || f == "pfail"))
            .map(|n| n.address.as_str())
            .collect();
        if !failing.is_empty() {
            problems.push(format!("failing: {}", failing.join(", ")));
        }
        // Masters first, then by address.
        nodes.sort_by(|a, b| (a.role != "master", &a.address).cmp(&(b.role != "master", &b.address)));
        let topology = Topology {
            nodes,
            cluster: Some(cluster.clone()),
            failover,
            last_failover: st.last_failover.clone(),
            ..Topology::default()
        };
        let mut reading = Reading::default();
        reading.facts.topology = Some(Box::new(topology));
        // A replica down or a node marked failing after its replica took
        // over is a fact; the run fails when the cluster does not serve.
        if cluster.state_ok && cluster.slots_ok == SLOTS && shards_without_master == 0 {
            Ok(reading)
        } else {
            Err(ProbeError::new(FailureReason::Status, problems.join("; ")).with_partial(reading))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cluster_nodes() {
        let text = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
b1 127.0.0.1:7001@17001 master,fail - 0 0 2 connected\n\
c1 127.0.0.1:7003@17003 slave a1 0 0 1 connected\n\
d1 127.0.0.1:7004@17004 master - 0 0 4 connected 5461-10922 [5461->-b1]\n";
        let shards = parse_nodes(text);
        assert_eq!(shards.len(), 3);
        let a = shards.iter().find(|s| s.nodes[0].id == "a1").unwrap();
        assert_eq!(a.slots, vec![(0, 5460)]);
        assert_eq!(a.slot_count(), 5461);
        assert_eq!(a.nodes[1].address, "127.0.0.1:7003");
        assert_eq!(a.nodes[1].role, "replica");
        let b = shards.iter().find(|s| s.nodes[0].id == "b1").unwrap();
        assert!(b.nodes[0].failing);
        assert_eq!(b.slot_count(), 0);
    }

    #[test]
    fn reads_cluster_shards_in_resp2() {
        let s = |x: &str| Value::BulkString(x.as_bytes().to_vec());
        let reply = Value::Array(vec![Value::Array(vec![
            s("slots"),
            Value::Array(vec![Value::Int(0), Value::Int(5460)]),
            s("nodes"),
            Value::Array(vec![Value::Array(vec![
                s("id"),
                s("a1"),
                s("port"),
                Value::Int(7000),
                s("ip"),
                s("127.0.0.1"),
                s("role"),
                s("master"),
                s("health"),
                s("fail"),
            ])]),
        ])]);
        let shards = parse_shards(&reply).unwrap();
        assert_eq!(shards[0].slots, vec![(0, 5460)]);
        assert_eq!(shards[0].nodes[0].address, "127.0.0.1:7000");
        assert!(shards[0].nodes[0].failing);
        assert_eq!(shards[0].nodes[0].flags, vec!["fail"]);
    }
}
