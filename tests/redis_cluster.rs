//! `kind: redis_cluster` against a real six-node cluster (three masters,
//! three replicas), through the loss of a master.

mod support;

use std::time::{Duration, Instant};

use lookout::probe::{self, topology::Topology};
use support::topology::Cluster;

fn topology(o: &probe::Observation) -> &Topology {
    o.facts.topology.as_deref().unwrap_or_else(|| panic!("no topology in {o:?}"))
}

/// Runs the probe until `f` holds of its observation, or panics.
async fn until(h: &probe::ProbeHandle, what: &str, within: Duration, f: impl Fn(&probe::Observation) -> bool) -> probe::Observation {
    let deadline = Instant::now() + within;
    loop {
        let o = probe::run(h).await;
        if f(&o) {
            return o;
        }
        assert!(Instant::now() < deadline, "{what} not seen within {within:?}; last: {o:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_a_lost_master_then_its_promoted_replica() {
    let mut c = Cluster::start(3, 1000);
    // Two seeds only: the probe learns the other four.
    let seeds = format!("[127.0.0.1:{}, 127.0.0.1:{}]", c.nodes[0].port, c.nodes[1].port);
    let h = support::build_probe(&format!(
        "  - name: shards\n    kind: redis_cluster\n    nodes: {seeds}\n    every: 1s\n    timeout: 2s\n"
    ));
    let o = probe::run(&h).await;
    assert!(o.ok, "{o:?}");
    let t = topology(&o);
    let cl = t.cluster.as_ref().unwrap();
    assert!(cl.state_ok);
    assert_eq!(
        (cl.slots_assigned, cl.slots_ok, cl.shards_without_master, cl.failing_nodes),
        (16384, 16384, 0, 0)
    );
    assert_eq!(t.nodes.len(), 6);
    assert_eq!(t.nodes.iter().filter(|n| n.role == "master").count(), 3);
    assert!(t.nodes.iter().all(|n| n.ok));
    for n in t.nodes.iter().filter(|n| n.role == "replica") {
        assert_eq!(n.link_up, Some(true), "{n:?}");
        assert!(n.lag_bytes.is_some(), "{n:?}");
    }

    let victim = c.master_of_slot_zero();
    let victim_addr = format!("127.0.0.1:{}", c.nodes[victim].port);
    c.nodes[victim].stop();
    let o = until(&h, "the master marked failing", Duration::from_secs(10), |o| {
        o.facts.topology.as_deref().is_some_and(|t| {
            t.nodes
                .iter()
                .any(|n| n.address == victim_addr && !n.ok && n.flags.iter().any(|f| f == "fail" || f == "pfail"))
        })
    })
    .await;
    println!("while failing: ok={} error={:?}", o.ok, o.error);
    let o = until(&h, "a replica promoted and the cluster ok", Duration::from_secs(15), |o| {
        o.ok && o.facts.topology.as_deref().is_some_and(|t| {
            t.nodes.iter().filter(|n| n.role == "master" && n.ok).count() == 3 && t.nodes.iter().any(|n| n.address == victim_addr && !n.ok)
        })
    })
    .await;
    let t = topology(&o);
    let cl = t.cluster.as_ref().unwrap();
    assert_eq!((cl.slots_ok, cl.shards_without_master), (16384, 0));
    assert!(cl.failing_nodes >= 1, "{cl:?}");
    let f = t.last_failover.as_ref().expect("the promotion is a failover");
    assert_eq!(f.from, victim_addr);

    // Back, it rejoins as a replica of the promoted node.
    c.nodes[victim].restart();
    until(&h, "the former master back as a replica", Duration::from_secs(15), |o| {
        o.ok && o.facts.topology.as_deref().is_some_and(|t| {
            t.nodes
                .iter()
                .any(|n| n.address == victim_addr && n.ok && n.role == "replica" && n.link_up == Some(true))
        })
    })
    .await;
}
