//! Redis topologies made of real processes: a master with replicas and
//! sentinels (`redis-server --sentinel`), each on a free loopback port.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Proc, Redis, require, start_on_free_port, wait_for};

/// The name the sentinels monitor the master under.
pub const MASTER_NAME: &str = "mymaster";

/// A `redis-server --sentinel` with its own writable configuration.
pub struct Sentinel {
    pub port: u16,
    pub dir: tempfile::TempDir,
    proc: Proc,
}

impl Sentinel {
    /// A sentinel monitoring the master on `master_port` with quorum 2,
    /// calling it down after `down_after_ms`.
    pub fn start(master_port: u16, down_after_ms: u64) -> Sentinel {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let (port, proc) = start_on_free_port(
            "redis sentinel",
            Duration::from_secs(10),
            |port| {
                let conf = path.join("sentinel.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\ndir {dir}\nsentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\nsentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}\nsentinel failover-timeout {MASTER_NAME} 10000\n",
                        dir = path.display()
                    ),
                )
                .unwrap();
                let mut cmd = Command::new(require("redis-server"));
                cmd.arg(&conf).arg("--sentinel").stdout(Stdio::null()).stderr(Stdio::null());
                Proc::spawn("redis sentinel", &mut cmd)
            },
            |port, proc| {
                let info = cli(port, &["INFO", "server"]);
                info.lines()
                    .find_map(|l| l.trim().strip_prefix("process_id:"))
                    .and_then(|p| p.parse::<u32>().ok())
                    == Some(proc.pid())
            },
        );
        Sentinel { port, dir, proc }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A command through redis-cli.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }

    /// The master's port this sentinel names now.
    pub fn master_port(&self) -> Option<u16> {
        let out = self.cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME]);
        out.lines().nth(1).and_then(|p| p.trim().parse().ok())
    }

    pub fn stop(&mut self) {
        self.proc.kill();
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new(require("redis-cli"))
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A master, `replicas` replicas and `sentinels` sentinels, ready: the
/// replicas in sync, every sentinel knowing every replica and every other
/// sentinel (so that a failover can be authorised at once).
pub struct SentinelSetup {
    pub master: Redis,
    pub replicas: Vec<Redis>,
    pub sentinels: Vec<Sentinel>,
}

impl SentinelSetup {
    pub fn start(replicas: usize, sentinels: usize, down_after_ms: u64) -> SentinelSetup {
        let master = Redis::start(&[]);
        let port = master.port.to_string();
        let replicas: Vec<Redis> = (0..replicas).map(|_| Redis::start(&["--replicaof", "127.0.0.1", &port])).collect();
        for r in &replicas {
            wait_for("the replica to sync", Duration::from_secs(10), || {
                r.cli(&["INFO", "replication"]).contains("master_link_status:up").then_some(())
            });
        }
        let sentinels: Vec<Sentinel> = (0..sentinels).map(|_| Sentinel::start(master.port, down_after_ms)).collect();
        let want_replicas = replicas.len().to_string();
        let want_sentinels = (sentinels.len() - 1).to_string();
        for s in &sentinels {
            wait_for("the sentinels to know the topology", Duration::from_secs(15), || {
                let m = s.cli(&["SENTINEL", "MASTER", MASTER_NAME]);
                let lines: Vec<&str> = m.lines().collect();
                let field = |k: &str| lines.iter().position(|l| *l == k).and_then(|i| lines.get(i + 1)).copied();
                (field("num-slaves") == Some(want_replicas.as_str()) && field("num-other-sentinels") == Some(want_sentinels.as_str()))
                    .then_some(())
            });
        }
        SentinelSetup {
            master,
            replicas,
            sentinels,
        }
    }

    /// The sentinels' addresses as a YAML flow list.
    pub fn sentinel_list(&self) -> String {
        let list: Vec<String> = self.sentinels.iter().map(Sentinel::address).collect();
        format!("[{}]", list.join(", "))
    }
}

/// A Redis Cluster of `masters` masters with one replica each, made by
/// `redis-cli --cluster create`, every node agreeing that it is ok.
pub struct Cluster {
    pub nodes: Vec<Redis>,
}

impl Cluster {
    pub fn start(masters: usize, node_timeout_ms: u64) -> Cluster {
        let timeout = node_timeout_ms.to_string();
        let nodes: Vec<Redis> = (0..masters * 2)
            .map(|_| {
                Redis::start(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    &timeout,
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new(require("redis-cli"))
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
        let c = Cluster { nodes };
        c.wait_ok(Duration::from_secs(20));
        c
    }

    /// Waits until every node says `cluster_state:ok` and knows every
    /// node, and every replica is in sync.
    pub fn wait_ok(&self, timeout: Duration) {
        let known = format!("cluster_known_nodes:{}", self.nodes.len());
        for n in &self.nodes {
            wait_for("cluster_state:ok, replicas in sync", timeout, || {
                let info = n.cli(&["CLUSTER", "INFO"]);
                let rep = n.cli(&["INFO", "replication"]);
                let synced = rep.contains("role:master") || rep.contains("master_link_status:up");
                (info.contains("cluster_state:ok") && info.contains(&known) && synced).then_some(())
            });
        }
    }

    /// The node that is a master of the slot 0 now.
    pub fn master_of_slot_zero(&self) -> usize {
        self.nodes
            .iter()
            .position(|n| {
                let own = n.cli(&["CLUSTER", "NODES"]);
                own.lines()
                    .find(|l| l.contains("myself"))
                    .is_some_and(|l| l.contains("master") && l.split_whitespace().skip(8).any(|s| s.starts_with("0-")))
            })
            .expect("a master of slot 0")
    }

    pub fn seed_list(&self) -> String {
        let list: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        format!("[{}]", list.join(", "))
    }
}
