//! Three (and more) exchanges on loopback addresses (127.0.0.1, .2, .3: Linux routes all of
//! 127.0.0.0/8 to `lo`), gossiping for real over UDP. Every wait polls with a deadline.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossdock_catalog::{AgentVersion, ClusterKey, Exchange, ExchangeConfig, PeerAgent};
use crossdock_names::{Catalog, ContainerRecord, Expiry, HostId, Label};

const DEADLINE: Duration = Duration::from_secs(20);
const GRACE: Duration = Duration::from_secs(2);

/// A free UDP port on `ip` (bound, read, released).
fn addr(last: u8) -> SocketAddr {
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
    let s = std::net::UdpSocket::bind((ip, 0)).unwrap();
    s.local_addr().unwrap()
}

fn config(n: u8, listen: SocketAddr, members: &[SocketAddr]) -> ExchangeConfig {
    let mut c = ExchangeConfig::new(
        HostId(format!("i-{n}")),
        Label::new(&format!("h{n}")).unwrap(),
        listen,
        members.to_vec(),
    );
    c.gossip_interval = Duration::from_millis(100);
    c.sync_interval = Duration::from_millis(50);
    c.expiry = Expiry {
        silent_timeout: Duration::from_secs(1),
        member_grace: GRACE,
    };
    c.agent_version = AgentVersion::new(&format!("0.{n}.0")).ok();
    c
}

fn rec(c: &str, n: &str, ip: [u8; 4]) -> ContainerRecord {
    ContainerRecord {
        container: Label::new(c).unwrap(),
        name: Label::new(n).unwrap(),
        ip: ip.into(),
    }
}

fn id(n: u8) -> HostId {
    HostId(format!("i-{n}"))
}

fn records_of(c: &Catalog, n: u8) -> Option<Vec<ContainerRecord>> {
    c.get(&id(n)).map(|s| s.records.clone())
}

/// Polls `cond` on `ex`'s catalog until it holds or the deadline passes.
async fn until(ex: &Exchange, what: &str, cond: impl Fn(&Catalog) -> bool) {
    let start = Instant::now();
    let mut rx = ex.subscribe();
    loop {
        if cond(&rx.borrow_and_update()) {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for: {what}");
        let _ = tokio::time::timeout(Duration::from_millis(100), rx.changed()).await;
    }
}

/// Polls `ex`'s agent directory until `cond` holds or the deadline passes.
async fn until_agents(ex: &Exchange, what: &str, cond: impl Fn(&[PeerAgent]) -> bool) {
    let start = Instant::now();
    loop {
        let peers = ex.agents().peers();
        if cond(&peers) {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for: {what}: {peers:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn agent(peers: &[PeerAgent], n: u8) -> Option<&PeerAgent> {
    peers.iter().find(|p| p.id == id(n))
}

async fn three() -> (Vec<Exchange>, Vec<SocketAddr>) {
    let addrs = vec![addr(1), addr(2), addr(3)];
    let mut nodes = Vec::new();
    for (i, a) in addrs.iter().enumerate() {
        let n = u8::try_from(i + 1).unwrap();
        nodes.push(Exchange::start(config(n, *a, &addrs)).await.unwrap());
    }
    (nodes, addrs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_propagate_and_an_update_travels_as_one_key() {
    let (nodes, _) = three().await;
    let h1: Vec<_> = (0..10u8)
        .map(|i| rec(&format!("c{i}"), "web", [10, 1, 0, 10 + i]))
        .collect();
    nodes[0].publish(&h1).await;
    nodes[1].publish(&[rec("web", "web", [10, 2, 0, 2])]).await;
    for n in &nodes {
        until(n, "h1 and h2 everywhere", |c| {
            records_of(c, 1).is_some_and(|r| r.len() == 10)
                && records_of(c, 2).is_some_and(|r| r.len() == 1)
        })
        .await;
    }
    let v1 = nodes[2].catalog().get(&id(1)).unwrap().version;
    // One container recreated with a new address: one key changes.
    let mut updated = h1.clone();
    updated[3].ip = Ipv4Addr::new(10, 1, 0, 99);
    assert!(nodes[0].publish(&updated).await);
    assert!(
        !nodes[0].publish(&updated).await,
        "publishing the same set changes nothing"
    );
    until(&nodes[2], "the update on h3", |c| {
        records_of(c, 1).is_some_and(|r| r.iter().any(|r| r.ip == Ipv4Addr::new(10, 1, 0, 99)))
    })
    .await;
    let v2 = nodes[2].catalog().get(&id(1)).unwrap().version;
    assert_eq!(v2.incarnation, v1.incarnation);
    assert_eq!(
        v2.counter,
        v1.counter + 1,
        "only the changed key is newer than what peers hold"
    );
    // A removed container is gone from the whole set.
    nodes[0].publish(&updated[..9]).await;
    until(&nodes[1], "the removal on h2", |c| {
        records_of(c, 1).is_some_and(|r| r.len() == 9)
    })
    .await;
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_recovers_the_whole_catalog() {
    let (mut nodes, addrs) = three().await;
    nodes[0].publish(&[rec("web", "web", [10, 1, 0, 2])]).await;
    nodes[1].publish(&[rec("db", "db", [10, 2, 0, 3])]).await;
    nodes[2].publish(&[rec("api", "api", [10, 3, 0, 4])]).await;
    for n in &nodes {
        until(n, "all three sets", |c| {
            (1..=3).all(|h| records_of(c, h).is_some_and(|r| r.len() == 1))
        })
        .await;
    }
    let old = nodes[0].catalog().get(&id(3)).unwrap().version;
    let n3 = nodes.pop().unwrap();
    n3.shutdown().await.unwrap();
    // Same host, same address, new incarnation, empty catalog.
    let n3 = Exchange::start(config(3, addrs[2], &addrs)).await.unwrap();
    until(&n3, "h1 and h2 recovered", |c| {
        records_of(c, 1) == Some(vec![rec("web", "web", [10, 1, 0, 2])])
            && records_of(c, 2) == Some(vec![rec("db", "db", [10, 2, 0, 3])])
    })
    .await;
    n3.publish(&[rec("api", "api", [10, 3, 0, 5])]).await;
    until(&nodes[0], "h3's new incarnation on h1", |c| {
        c.get(&id(3)).is_some_and(|s| {
            s.version.incarnation > old.incarnation
                && s.records
                    .first()
                    .is_some_and(|r| r.ip == Ipv4Addr::new(10, 3, 0, 5))
        })
    })
    .await;
    for n in nodes.into_iter().chain([n3]) {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_records_are_withdrawn_after_the_grace_period() {
    let (mut nodes, _) = three().await;
    nodes[2].publish(&[rec("api", "api", [10, 3, 0, 4])]).await;
    for n in &nodes {
        until(n, "h3's set", |c| records_of(c, 3).is_some()).await;
    }
    // Every agent's version, and a heartbeat heard just now.
    let fresh = Duration::from_millis(800);
    until_agents(&nodes[0], "every agent heard at its version", |p| {
        (1..=3).all(|n| {
            agent(p, n).is_some_and(|a| {
                a.version.as_ref().map(AgentVersion::as_str) == Some(&format!("0.{n}.0"))
                    && a.heard_ago.is_some_and(|t| t < fresh)
                    && a.ip == IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
            })
        })
    })
    .await;
    let n3 = nodes.pop().unwrap();
    let killed = Instant::now();
    n3.shutdown().await.unwrap();
    // Its heartbeat stops: last heard ages while the others stay fresh (before the grace period).
    until_agents(&nodes[0], "h3 heard no more", |p| {
        agent(p, 3).is_some_and(|a| a.heard_ago.is_some_and(|t| t >= Duration::from_secs(1)))
            && agent(p, 2).is_some_and(|a| a.heard_ago.is_some_and(|t| t < fresh))
    })
    .await;
    // Still a member (its instance runs): kept for the grace period after it falls silent.
    for n in &nodes {
        until(n, "h3 withdrawn", |c| c.get(&id(3)).is_none()).await;
        assert!(
            killed.elapsed() >= GRACE,
            "withdrawn after {:?}, before the grace period",
            killed.elapsed()
        );
        assert!(n.catalog().get(&id(1)).is_some() && n.catalog().get(&id(2)).is_some());
        assert!(n.stats().hosts_withdrawn.load(Ordering::Relaxed) >= 1);
    }
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_and_wrong_keys_can_neither_read_nor_write() {
    let key = ClusterKey::new(b"fleet secret 0123456789").unwrap();
    let wrong = ClusterKey::new(b"another secret 01234567").unwrap();
    let (a1, a2, a3, outsider_addr) = (addr(1), addr(2), addr(3), addr(9));
    let members = [a1, a2, a3];
    let start = |n: u8, a: SocketAddr, members: &[SocketAddr], k: &ClusterKey| {
        let mut c = config(n, a, members);
        c.key = Some(k.clone());
        Exchange::start(c)
    };
    let n1 = start(1, a1, &members, &key).await.unwrap();
    let n2 = start(2, a2, &members, &key).await.unwrap();
    // A member address with the wrong key, and an outsider with the right key.
    let n3 = start(3, a3, &members, &wrong).await.unwrap();
    let outsider = start(9, outsider_addr, &[a1, a2, outsider_addr], &key)
        .await
        .unwrap();
    n1.publish(&[rec("web", "web", [10, 1, 0, 2])]).await;
    n3.publish(&[rec("evil", "web", [10, 3, 0, 66])]).await;
    outsider
        .publish(&[rec("evil", "web", [10, 9, 0, 66])])
        .await;
    until(&n2, "h1's set on h2", |c| records_of(c, 1).is_some()).await;
    let rejected = |n: &Exchange| {
        let w = &n.stats().wire;
        (
            w.rejected_peer.load(Ordering::Relaxed),
            w.rejected_tag.load(Ordering::Relaxed),
        )
    };
    let deadline = Instant::now() + DEADLINE;
    while rejected(&n1).0 == 0 || rejected(&n1).1 == 0 {
        assert!(
            Instant::now() < deadline,
            "no rejection counted: {:?}",
            rejected(&n1)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for n in [&n1, &n2] {
        let c = n.catalog();
        assert!(
            c.get(&id(3)).is_none() && c.get(&id(9)).is_none(),
            "{:?}",
            c.hosts()
        );
    }
    for n in [&n3, &outsider] {
        let c = n.catalog();
        assert!(
            c.get(&id(1)).is_none() && c.get(&id(2)).is_none(),
            "{:?}",
            c.hosts()
        );
    }
    for n in [n1, n2, n3, outsider] {
        n.shutdown().await.unwrap();
    }
}

/// A member that is not there yet is asked again by `reach_out` (chitchat retries only the seeds
/// it started with); once it answers and is live, nobody is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reach_out_asks_only_members_that_are_not_live() {
    let (a1, a2) = (addr(1), addr(2));
    let n1 = Exchange::start(config(1, a1, &[])).await.unwrap();
    n1.set_members(vec![a2]).await;
    assert_eq!(n1.reach_out().await, 1, "h2 is not there yet");
    let n2 = Exchange::start(config(2, a2, &[])).await.unwrap();
    n2.set_members(vec![a1]).await;
    n2.publish(&[rec("web", "web", [10, 2, 0, 2])]).await;
    until(&n1, "h2's records on h1", |c| records_of(c, 2).is_some()).await;
    let start = Instant::now();
    while n1.reach_out().await != 0 {
        assert!(start.elapsed() < DEADLINE, "h2 never became live on h1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    n1.shutdown().await.unwrap();
    n2.shutdown().await.unwrap();
}
