//! `kind: redis_sentinel`: a Redis master, its replicas and the sentinels
//! that watch them, followed through failovers.
//!
//! Each run asks every configured sentinel which master it names (`SENTINEL
//! MASTER`), takes the name most of them give, and asks a sentinel that
//! names it for the replicas (`SENTINEL REPLICAS`) and whether a failover
//! could be authorised (`SENTINEL CKQUORUM`). Every data node is then read
//! by the `kind: redis` code (three PINGs and INFO, plus `INFO replication`
//! for roles, links and offsets), one kept connection per node, all at
//! once. The probe's canonical metrics are the master's, so a cross-check
//! that takes this probe as its reference follows the master.
//!
//! Sentinels not in the configured list are found too: the sentinel asked
//! for the replicas is also asked `SENTINEL SENTINELS`, and every sentinel it
//! names that is not configured is asked `SENTINEL MASTER` in the same run
//! and kept for the next, so a sentinel added later counts toward the
//! sentinels up and their agreement without a configuration change. At most
//! [`MAX_DISCOVERED`] are kept; one no longer named is dropped. Addresses are
//! compared as the sentinels announce them (`ip:port`): list configured
//! sentinels by the address they announce, or each is counted twice.
//!
//! Why not the redis crate's `SentinelClient`: it answers "where is the
//! master" from the first sentinel that replies, and a disagreement between
//! sentinels (the fact a split brain starts with) is exactly what this kind
//! must see; it also gives no replica or quorum facts. The commands it would
//! send are sent here to every sentinel instead.
//!
//! A master change between two runs is a failover: the run that sees it
//! carries it in [`Topology::failover`] (counted and logged once by the
//! daemon), and every later run in [`Topology::last_failover`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;

use super::nodes::{Access, Kept, NodePool, check_addresses};
use super::redis::RedisSpec;
use super::topology::{Failover, Node, SentinelView, Topology, fill_lag};
use super::{FailureReason, Probe, ProbeError, Reading, unix_now};
use crate::config::entry::Scope;
use crate::config::value::opt_duration;
use crate::config::{Env, Secret};

/// The kind's name in `kind:`.
pub const KIND: &str = "redis_sentinel";

/// The most sentinels kept beside the configured ones: a deployment runs
/// three or five, so sixteen leaves room for growth while a wrong or
/// hostile answer cannot make each run open connections without bound.
pub const MAX_DISCOVERED: usize = 16;

/// The keys of a `kind: redis_sentinel` probe, as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRedisSentinel {
    /// The sentinels, as `host:port` (at least one; list them all, so that
    /// a disagreement between them is seen).
    pub sentinels: Vec<String>,
    /// The name the sentinels monitor the master under (`sentinel monitor
    /// <name> …`).
    pub master_name: String,
    /// ACL user of the data nodes (master and replicas).
    pub username: Option<String>,
    /// Password of the data nodes.
    pub password: Option<Secret>,
    /// File holding the data nodes' password (its final newline is ignored).
    pub password_file: Option<PathBuf>,
    /// ACL user of the sentinels, when they require one.
    pub sentinel_username: Option<String>,
    /// Password of the sentinels (`requirepass` in the sentinel's own
    /// configuration), when they require one.
    pub sentinel_password: Option<Secret>,
    /// Connect to sentinels and nodes with TLS (default false).
    pub tls: Option<bool>,
    /// PEM file of the CA certificates that sign the servers' certificates.
    /// TLS only.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for servers that require one; with
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

/// Configuration of a `kind: redis_sentinel` probe.
#[derive(Debug, Clone)]
pub struct RedisSentinelSpec {
    /// The sentinels, `host:port`.
    pub sentinels: Vec<String>,
    /// The monitored master's name.
    pub master_name: String,
    /// How to reach a data node (its host and port replaced per node).
    pub node: RedisSpec,
    /// How to reach a sentinel (its host and port replaced per sentinel).
    pub sentinel: RedisSpec,
}

/// Validates a `kind: redis_sentinel` probe's keys into its spec.
pub fn configure(p: RawRedisSentinel, scope: &mut Scope<'_>, env: Env<'_>) -> Option<RedisSentinelSpec> {
    let before = scope.count();
    check_addresses(&p.sentinels, "sentinels", "sentinel", scope);
    if p.master_name.trim().is_empty() {
        scope.error("master_name", "must not be empty");
    }
    let access = |username: &Option<String>, password: &Option<Secret>, password_file: &Option<PathBuf>| Access {
        username: username.clone(),
        password: password.clone(),
        password_file: password_file.clone(),
        tls: p.tls,
        ca_file: p.ca_file.clone(),
        cert_file: p.cert_file.clone(),
        key_file: p.key_file.clone(),
        tls_skip_verify: p.tls_skip_verify,
        static_info_every: p.static_info_every,
    };
    let node = access(&p.username, &p.password, &p.password_file).template(scope, env);
    // The TLS keys were checked once with the nodes: a second failure would
    // only repeat the same message.
    let sentinel = match node {
        Some(_) => access(&p.sentinel_username, &p.sentinel_password, &None).template(scope, env),
        None => None,
    };
    if scope.count() > before {
        return None;
    }
    Some(RedisSentinelSpec {
        sentinels: p.sentinels,
        master_name: p.master_name,
        node: node?,
        sentinel: sentinel?,
    })
}

/// The probe.
pub struct RedisSentinelProbe {
    master_name: String,
    sentinels: Vec<Kept>,
    /// How to reach a sentinel found by `SENTINEL SENTINELS`.
    sentinel_template: RedisSpec,
    timeout: Duration,
    state: Mutex<State>,
}

struct State {
    pool: NodePool,
    /// The master the last run saw, and its `run_id` when read.
    master: Option<(String, Option<String>)>,
    last_failover: Option<Failover>,
    /// Sentinels found by `SENTINEL SENTINELS`, not configured.
    discovered: Vec<Kept>,
}

impl RedisSentinelProbe {
    /// Prepares the clients; no connection is made until the first run.
    pub fn new(name: &str, spec: &RedisSentinelSpec, timeout: Duration) -> Result<Self, String> {
        let sentinels = spec
            .sentinels
            .iter()
            .map(|a| Kept::new(&spec.sentinel, a))
            .collect::<Result<Vec<_>, String>>()?;
        // The run's bound split between its steps, so that one hung server
        // fails alone and the run still reports the rest: a question to a
        // hung server costs a quarter, then the nodes (read at once) get
        // under half. A run with one server hung ends near 0.7 of its
        // timeout, with a reading.
        let (ask_timeout, node_timeout) = (timeout.mul_f64(0.25), timeout.mul_f64(0.45));
        Ok(RedisSentinelProbe {
            master_name: spec.master_name.clone(),
            sentinels,
            sentinel_template: spec.sentinel.clone(),
            timeout: ask_timeout,
            state: Mutex::new(State {
                pool: NodePool::new(name, spec.node.clone(), node_timeout),
                master: None,
                last_failover: None,
                discovered: Vec::new(),
            }),
        })
    }

    /// What each of `sentinels` says of the master.
    async fn ask_sentinels(&self, sentinels: &[&Kept]) -> Vec<(SentinelView, Option<HashMap<String, String>>)> {
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("MASTER").arg(&self.master_name);
        let asks = sentinels.iter().map(|s| {
            let cmd = &cmd;
            async move {
                match s.query::<HashMap<String, String>>(cmd, "SENTINEL MASTER", self.timeout).await {
                    Ok(m) => {
                        let master = match (m.get("ip"), m.get("port")) {
                            (Some(ip), Some(port)) => Some(join(ip, port)),
                            _ => None,
                        };
                        let view = SentinelView {
                            address: s.address.clone(),
                            ok: master.is_some(),
                            error: master.is_none().then(|| "SENTINEL MASTER gave no ip/port".to_string()),
                            master,
                        };
                        (view, Some(m))
                    }
                    Err(e) => (
                        SentinelView {
                            address: s.address.clone(),
                            ok: false,
                            error: Some(format!("{}: {}", s.address, e.message)),
                            master: None,
                        },
                        None,
                    ),
                }
            }
        });
        futures::future::join_all(asks).await
    }
}

/// The sentinels in `found` that are neither configured nor already kept
/// (`known`), as many as fit beside the `kept` ones under
/// [`MAX_DISCOVERED`].
fn newcomers(found: &[String], known: &[&str], kept: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in found {
        if !known.contains(&a.as_str()) && !out.contains(a) {
            out.push(a.clone());
        }
    }
    out.truncate(MAX_DISCOVERED.saturating_sub(kept));
    out
}

impl RedisSentinelSpec {
    /// How to reach the master most sentinels name now (within `timeout`
    /// per sentinel): for commands that write, such as `lookout redis
    /// flush`, which must act on the master and nowhere else.
    pub async fn master(&self, timeout: Duration) -> Result<RedisSpec, String> {
        let probe = RedisSentinelProbe::new(KIND, self, timeout.mul_f64(4.0))?;
        let configured: Vec<&Kept> = probe.sentinels.iter().collect();
        let views: Vec<SentinelView> = probe.ask_sentinels(&configured).await.into_iter().map(|(v, _)| v).collect();
        let Some(master) = consensus(&views) else {
            let errors: Vec<String> = views.iter().filter_map(|v| v.error.clone()).collect();
            return Err(format!(
                "no sentinel names a master for `{}`: {}",
                self.master_name,
                errors.join("; ")
            ));
        };
        let (host, port) = master
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_start_matches('[').trim_end_matches(']'), p.parse::<u16>().ok()?)))
            .ok_or_else(|| format!("the sentinels name a master `{master}` that is not host:port"))?;
        self.node.at(host, port)
    }
}

/// `host:port`, bracketing an IPv6 address.
fn join(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The flags worth showing: the role words are the node's role already.
fn flags(raw: Option<&String>) -> Vec<String> {
    raw.map(|f| {
        f.split(',')
            .filter(|x| !x.is_empty() && !matches!(*x, "master" | "slave"))
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

/// The address most sentinels name; a tie goes to the one named first in
/// configuration order.
fn consensus(views: &[SentinelView]) -> Option<String> {
    let named: Vec<&String> = views.iter().filter_map(|v| v.master.as_ref()).collect();
    let mut best: Option<(&String, usize)> = None;
    for m in &named {
        let n = named.iter().filter(|x| *x == m).count();
        if best.is_none_or(|(_, b)| n > b) {
            best = Some((m, n));
        }
    }
    best.map(|(m, _)| m.clone())
}

#[async_trait::async_trait]
impl Probe for RedisSentinelProbe {
    async fn check(&self) -> Result<Reading, ProbeError> {
        let mut guard = self.state.lock().await;
        // Fields borrowed apart: the kept sentinels while the pool runs.
        let st = &mut *guard;
        let all: Vec<&Kept> = self.sentinels.iter().chain(st.discovered.iter()).collect();
        let answers = self.ask_sentinels(&all).await;
        let mut views: Vec<SentinelView> = answers.iter().map(|(v, _)| v.clone()).collect();
        let Some(master) = consensus(&views) else {
            let why: Vec<String> = views.iter().filter_map(|v| v.error.clone()).collect();
            let reason = if views
                .iter()
                .all(|v| v.error.as_deref().is_some_and(|e| e.contains("No such master")))
            {
                FailureReason::Status
            } else {
                FailureReason::Connect
            };
            let topology = Topology {
                sentinels: views,
                last_failover: st.last_failover.clone(),
                ..Topology::default()
            };
            let mut partial = Reading::default();
            partial.facts.topology = Some(Box::new(topology));
            return Err(ProbeError::new(
                reason,
                format!("no sentinel named master `{}`: {}", self.master_name, why.join("; ")),
            )
            .with_partial(partial));
        };
        let master_flags = answers
            .iter()
            .find(|(v, _)| v.master.as_ref() == Some(&master))
            .and_then(|(_, m)| m.as_ref())
            .map(|m| flags(m.get("flags")))
            .unwrap_or_default();

        // Replicas and quorum, from the first sentinel naming that master.
        let asked = answers.iter().position(|(v, _)| v.master.as_ref() == Some(&master)).map(|i| all[i]);
        let mut replicas: Vec<(String, Vec<String>)> = Vec::new();
        let (mut quorum_ok, mut quorum_message) = (None, None);
        let mut found: Option<Vec<String>> = None;
        if let Some(s) = asked {
            let mut cmd = redis::cmd("SENTINEL");
            cmd.arg("REPLICAS").arg(&self.master_name);
            if let Ok(list) = s
                .query::<Vec<HashMap<String, String>>>(&cmd, "SENTINEL REPLICAS", self.timeout)
                .await
            {
                for r in list {
                    if let (Some(ip), Some(port)) = (r.get("ip"), r.get("port")) {
                        replicas.push((join(ip, port), flags(r.get("flags"))));
                    }
                }
            }
            let mut cmd = redis::cmd("SENTINEL");
            cmd.arg("CKQUORUM").arg(&self.master_name);
            match s.query::<String>(&cmd, "SENTINEL CKQUORUM", self.timeout).await {
                Ok(m) => (quorum_ok, quorum_message) = (Some(true), Some(m)),
                Err(e) if e.reason == FailureReason::Status => (quorum_ok, quorum_message) = (Some(false), Some(e.message)),
                Err(_) => {}
            }
            let mut cmd = redis::cmd("SENTINEL");
            cmd.arg("SENTINELS").arg(&self.master_name);
            if let Ok(list) = s
                .query::<Vec<HashMap<String, String>>>(&cmd, "SENTINEL SENTINELS", self.timeout)
                .await
            {
                let mut named: Vec<String> = list.iter().filter_map(|r| Some(join(r.get("ip")?, r.get("port")?))).collect();
                // The sentinel asked does not name itself.
                named.push(s.address.clone());
                found = Some(named);
            }
        }
        drop(all);
        if let Some(named) = &found {
            // Keep the discovered sentinels still named, then ask the new
            // ones at once, so they count in this run already.
            st.discovered.retain(|k| named.contains(&k.address));
            let known: Vec<&str> = self
                .sentinels
                .iter()
                .chain(st.discovered.iter())
                .map(|k| k.address.as_str())
                .collect();
            let fresh: Vec<Kept> = newcomers(named, &known, st.discovered.len())
                .iter()
                .filter_map(|a| Kept::new(&self.sentinel_template, a).ok())
                .collect();
            if !fresh.is_empty() {
                let refs: Vec<&Kept> = fresh.iter().collect();
                let asked = self.ask_sentinels(&refs).await;
                views.extend(asked.into_iter().map(|(v, _)| v));
                st.discovered.extend(fresh);
            }
        }
        let agree = views.iter().filter(|v| v.ok).all(|v| v.master.as_ref() == Some(&master));
        replicas.retain(|(a, _)| *a != master);
        replicas.sort();

        let mut addresses = vec![master.clone()];
        addresses.extend(replicas.iter().map(|(a, _)| a.clone()));
        let readings = st.pool.probe(&addresses).await;
        let mut nodes = Vec::new();
        let mut replication = HashMap::new();
        let mut master_reading = None;
        for (i, r) in readings.into_iter().enumerate() {
            let role = if i == 0 { "master" } else { "replica" };
            let node_flags = if i == 0 { master_flags.clone() } else { replicas[i - 1].1.clone() };
            let mut node = Node {
                address: r.address.clone(),
                role: role.into(),
                flags: node_flags,
                ..Node::default()
            };
            match &r.result {
                Ok(reading) => {
                    node.ok = true;
                    node.reported_role = reading.facts.role.clone();
                    node.run_id = reading.facts.run_id.clone();
                    node.latency_seconds = reading.values.get(&crate::metric::Metric::LatencySeconds).copied();
                    if let Some(rep) = &reading.facts.replication {
                        replication.insert(r.address.clone(), (**rep).clone());
                    }
                }
                Err(e) => node.error = Some(e.message.clone()),
            }
            nodes.push(node);
            if i == 0 {
                master_reading = Some(r.result);
            }
        }
        fill_lag(&mut nodes, &replication);

        let master_run_id = nodes.first().and_then(|n| n.run_id.clone());
        let failover = match &st.master {
            Some((before, run_id)) if *before != master => Some(Failover {
                from: before.clone(),
                from_run_id: run_id.clone(),
                to: master.clone(),
                at: unix_now(),
            }),
            _ => None,
        };
        if failover.is_some() {
            st.last_failover = failover.clone();
        }
        // Keep the former run_id while the new master has not answered yet.
        let known_run_id = match &st.master {
            Some((m, id)) if *m == master => master_run_id.clone().or(id.clone()),
            _ => master_run_id.clone(),
        };
        st.master = Some((master.clone(), known_run_id));

        let topology = Topology {
            master: Some(master.clone()),
            nodes,
            sentinels: views,
            sentinels_agree: Some(agree),
            quorum_ok,
            quorum_message,
            cluster: None,
            failover,
            last_failover: st.last_failover.clone(),
        };
        match master_reading {
            Some(Ok(mut reading)) => {
                reading.facts.replication = None;
                reading.facts.topology = Some(Box::new(topology));
                Ok(reading)
            }
            Some(Err(e)) => {
                let mut partial = Reading::default();
                partial.facts.topology = Some(Box::new(topology));
                Err(ProbeError::new(e.reason, format!("master {master}: {}", e.message)).with_partial(partial))
            }
            None => Err(ProbeError::new(FailureReason::Connect, "no master to probe")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(master: Option<&str>) -> SentinelView {
        SentinelView {
            address: "s".into(),
            ok: master.is_some(),
            error: None,
            master: master.map(str::to_string),
        }
    }

    #[test]
    fn the_master_most_sentinels_name_wins() {
        assert_eq!(
            consensus(&[view(Some("a:1")), view(Some("b:1")), view(Some("b:1"))]).as_deref(),
            Some("b:1")
        );
        assert_eq!(
            consensus(&[view(Some("a:1")), view(None), view(Some("b:1"))]).as_deref(),
            Some("a:1")
        );
        assert_eq!(consensus(&[view(None)]), None);
    }

    #[test]
    fn newcomers_are_the_unknown_sentinels_under_the_bound() {
        let found: Vec<String> = ["a:1", "b:1", "c:1", "c:1"].iter().map(|s| s.to_string()).collect();
        assert_eq!(newcomers(&found, &["a:1"], 0), vec!["b:1", "c:1"]);
        assert_eq!(newcomers(&found, &["a:1", "b:1", "c:1"], 0), Vec::<String>::new());
        assert_eq!(newcomers(&found, &["a:1"], MAX_DISCOVERED - 1), vec!["b:1"]);
        assert_eq!(newcomers(&found, &[], MAX_DISCOVERED), Vec::<String>::new());
        let many: Vec<String> = (0..40).map(|i| format!("10.0.0.{i}:26379")).collect();
        assert_eq!(newcomers(&many, &[], 0).len(), MAX_DISCOVERED);
    }

    #[test]
    fn role_words_are_not_flags() {
        assert_eq!(
            flags(Some(&"slave,s_down,disconnected".to_string())),
            vec!["s_down", "disconnected"]
        );
    }
}
