//! The data nodes of a topology, each read by the `kind: redis` code: one
//! kept connection per node, made on first sight and dropped when the node
//! leaves the topology.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use super::redis::{RawRedis, RedisProbe, RedisSpec, client_for, connect, redis_error};
use super::topology::split_address;
use super::{FailureReason, Probe, ProbeError, Reading};
use crate::config::entry::Scope;
use crate::config::{Env, Secret};

/// The connection keys the topology kinds share with `kind: redis`.
pub struct Access {
    /// ACL user.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Secret>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// Connect with TLS.
    pub tls: Option<bool>,
    /// PEM CA certificates trusted instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate.
    pub cert_file: Option<PathBuf>,
    /// Its key.
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate.
    pub tls_skip_verify: Option<bool>,
    /// How often each node's rarely changing INFO sections are re-read.
    pub static_info_every: Option<Duration>,
}

impl Access {
    /// Checks the keys as `kind: redis` does (the same messages, TLS files
    /// read once) into a spec whose host and port [`RedisSpec::at`]
    /// replaces per node. A host is always given, so the `REDIS_*`
    /// environment convention never applies here.
    pub fn template(self, scope: &mut Scope<'_>, env: Env<'_>) -> Option<RedisSpec> {
        let raw = RawRedis {
            url: None,
            host: Some("127.0.0.1".into()),
            port: None,
            username: self.username,
            password: self.password,
            password_file: self.password_file,
            db: None,
            tls: self.tls,
            ca_file: self.ca_file,
            cert_file: self.cert_file,
            key_file: self.key_file,
            tls_skip_verify: self.tls_skip_verify,
            roundtrip: None,
            static_info_every: self.static_info_every,
        };
        super::redis::configure(raw, scope, env)
    }
}

/// Checks a non-empty list of `host:port` under `key`.
pub fn check_addresses(list: &[String], key: &str, what: &str, scope: &mut Scope<'_>) {
    if list.is_empty() {
        scope.error(key, format!("list at least one {what}, as host:port"));
    }
    for (i, s) in list.iter().enumerate() {
        if split_address(s).is_none() {
            scope.error(&format!("{key}[{i}]"), format!("`{s}` is not host:port"));
        }
    }
}

/// A server asked for topology (a sentinel, a cluster node) over one kept
/// connection.
pub struct Kept {
    /// `host:port`.
    pub address: String,
    display_url: String,
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl Kept {
    /// A server at `address`, reached like `template`.
    pub fn new(template: &RedisSpec, address: &str) -> Result<Kept, String> {
        let (host, port) = split_address(address).ok_or_else(|| format!("`{address}` is not host:port"))?;
        let spec = template.at(host, port)?;
        Ok(Kept {
            address: address.to_string(),
            display_url: spec.display_url.clone(),
            client: client_for(&spec)?,
            conn: Mutex::new(None),
        })
    }

    /// Sends `cmd`, connecting first if needed; the connection is dropped
    /// after an error so the next run starts afresh.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd, what: &str, timeout: Duration) -> Result<T, ProbeError> {
        let mut slot = self.conn.lock().await;
        if slot.is_none() {
            *slot = Some(connect(&self.client, &self.display_url, timeout).await?);
        }
        let Some(conn) = slot.as_mut() else {
            return Err(ProbeError::new(FailureReason::Connect, "no connection"));
        };
        let r = cmd.query_async(conn).await;
        r.map_err(|e| {
            // A Redis error reply (an unknown master name) leaves the
            // connection sound; anything else may not.
            if !matches!(e.kind(), redis::ErrorKind::Server(_)) {
                *slot = None;
            }
            redis_error(&e, what, FailureReason::Status)
        })
    }
}

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
