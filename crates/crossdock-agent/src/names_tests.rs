//! The names task on loopback, with Docker and the identity as data: two "hosts" (127.0.0.11 and
//! 127.0.0.12, each with a resolver on a gateway of its own) exchange their records through the
//! real exchange, and one host's resolver answers the other's containers; a changed container
//! address follows; the pure pieces (labels, members, firewall guard, key file) on their own.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crossdock_docker::{
    ContainerLister, ContainerSummary, DockerError, DockerEvent, DockerSource, ServedNetwork,
};
use crossdock_names::{HostId, Label};

use crate::names::{self, IdentitySource, NamesDeps, NamesIdentity, NamesSettings};
use crate::names_status::NamesState;
use crate::state::AgentState;

/// Docker as data: the served network, the other bridge networks, the running containers, an
/// event feed.
struct FakeDocker {
    net: ServedNetwork,
    bridges: Vec<ipnet::Ipv4Net>,
    containers: Mutex<Vec<ContainerSummary>>,
    feed: Mutex<Option<mpsc::Receiver<DockerEvent>>>,
}

#[async_trait]
impl DockerSource for FakeDocker {
    async fn inspect_network(&self, _name: &str) -> Result<ServedNetwork, DockerError> {
        Ok(self.net.clone())
    }
    fn watch(&self, tx: mpsc::Sender<DockerEvent>) -> JoinHandle<()> {
        let feed = self.feed.lock().unwrap_or_else(|p| p.into_inner()).take();
        tokio::spawn(async move {
            let Some(mut feed) = feed else { return };
            while let Some(ev) = feed.recv().await {
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
        })
    }
}

#[async_trait]
impl ContainerLister for FakeDocker {
    async fn running_containers(&self) -> Result<Vec<ContainerSummary>, DockerError> {
        Ok(self
            .containers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone())
    }
    async fn bridge_subnets(&self) -> Result<Vec<ipnet::Ipv4Net>, DockerError> {
        Ok(self.bridges.clone())
    }
}

struct Fixed(NamesIdentity);

#[async_trait]
impl IdentitySource for Fixed {
    async fn identity(&self) -> Result<NamesIdentity, String> {
        Ok(self.0.clone())
    }
}

fn container(name: &str, labels: &[(&str, &str)], ip: [u8; 4]) -> ContainerSummary {
    ContainerSummary {
        id: format!("id-{name}"),
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        networks: BTreeMap::from([("bridge".to_string(), Ipv4Addr::from(ip))]),
    }
}

/// A free UDP port on `ip` (the exchange must advertise the port it binds).
fn free_udp_port(ip: Ipv4Addr) -> u16 {
    let s = std::net::UdpSocket::bind((ip, 0)).unwrap();
    s.local_addr().unwrap().port()
}

struct Host {
    docker: Arc<FakeDocker>,
    events: mpsc::Sender<DockerEvent>,
    state: Arc<Mutex<AgentState>>,
    task: JoinHandle<()>,
    _members: watch::Sender<Vec<Ipv4Addr>>,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Host `n` (1-based): private IP 127.0.0.1n, gateway 127.0.n.1, the given containers.
fn host(
    n: u8,
    port: u16,
    members: &[Ipv4Addr],
    resolv: &std::path::Path,
    containers: Vec<ContainerSummary>,
) -> Host {
    let ip = Ipv4Addr::new(127, 0, 0, 10 + n);
    let (events, rx) = mpsc::channel(16);
    let docker = Arc::new(FakeDocker {
        net: ServedNetwork {
            name: "bridge".into(),
            id: "x".into(),
            subnet: format!("127.0.{n}.0/24").parse().unwrap(),
            gateway: Some(Ipv4Addr::new(127, 0, n, 1)),
            bridge: "docker0".into(),
            docker_version: "28".into(),
        },
        bridges: vec![
            format!("127.0.{n}.0/24").parse().unwrap(),
            format!("127.{n}.0.0/16").parse().unwrap(),
        ],
        containers: Mutex::new(containers),
        feed: Mutex::new(Some(rx)),
    });
    let cfg = crossdock_config::parse(&format!(
        "cluster_cidrs = [\"10.0.0.0/8\"]\nresync_interval_secs = 3600\n[cloud]\nprivate_ip = \"{ip}\"\n[names]\nenabled = true\ncatalog_port = {port}\nresolv_conf = \"{}\"\n",
        resolv.display()
    ))
    .unwrap();
    let mut settings = NamesSettings::from_config(&cfg).unwrap().unwrap();
    settings.dns_port = 0;
    let deps = NamesDeps {
        docker: docker.clone(),
        containers: docker.clone(),
        identity: Arc::new(Fixed(NamesIdentity {
            host_id: HostId(format!("i-{n}")),
            hostname: format!("H{n}.example"),
            private_ip: ip,
        })),
    };
    let (members_tx, members_rx) = watch::channel(members.to_vec());
    let state = Arc::new(Mutex::new(AgentState::new("/x.toml".into())));
    let firewall = Arc::new(tokio::sync::Notify::new());
    let task = tokio::spawn(names::run(
        settings,
        deps,
        members_rx,
        state.clone(),
        firewall,
    ));
    Host {
        docker,
        events,
        state,
        task,
        _members: members_tx,
    }
}

impl Host {
    fn dns(&self) -> Option<SocketAddr> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let n = st.names.as_ref()?;
        (n.state == NamesState::Ready).then(|| n.dns_listen.as_ref()?.parse().ok())?
    }
}

/// The A records of `q` from the resolver at `server`.
async fn a(server: SocketAddr, q: &str) -> Vec<Ipv4Addr> {
    let mut msg = Message::query();
    msg.add_query(Query::query(Name::from_ascii(q).unwrap(), RecordType::A));
    let sock = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    sock.send_to(&msg.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await
    else {
        return Vec::new();
    };
    let mut ips: Vec<Ipv4Addr> = Message::from_vec(&buf[..n])
        .unwrap()
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    ips.sort();
    ips
}

/// Polls `f` every 20 ms until it is true or `bound` passed; how long it took.
async fn within<F, Fut>(bound: Duration, what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < bound {
        if f().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within {bound:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_on_one_host_is_answered_on_the_other_and_follows_a_new_address() {
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.1\n").unwrap();
    let port = free_udp_port(Ipv4Addr::new(127, 0, 0, 11));
    let members = [Ipv4Addr::new(127, 0, 0, 11), Ipv4Addr::new(127, 0, 0, 12)];
    let compose = [("com.docker.compose.service", "api")];
    let h1 = host(
        1,
        port,
        &members,
        &resolv,
        vec![
            container("web", &[], [10, 1, 11, 2]),
            container("proj-api-1", &compose, [10, 1, 11, 3]),
        ],
    );
    let h2 = host(
        2,
        port,
        &members,
        &resolv,
        vec![container("proj-api-1", &compose, [10, 1, 12, 3])],
    );
    within(Duration::from_secs(10), "both resolvers ready", || async {
        h1.dns().is_some() && h2.dns().is_some()
    })
    .await;
    let dns2 = h2.dns().unwrap();
    let web = [Ipv4Addr::new(10, 1, 11, 2)];
    within(
        Duration::from_secs(10),
        "h1's web answered by h2",
        || async { a(dns2, "web.crossdock.internal.").await == web },
    )
    .await;
    assert_eq!(a(dns2, "web.h1-example.crossdock.internal.").await, web);
    let api = [Ipv4Addr::new(10, 1, 11, 3), Ipv4Addr::new(10, 1, 12, 3)];
    within(
        Duration::from_secs(5),
        "the service on both hosts",
        || async { a(dns2, "api.crossdock.internal.").await == api },
    )
    .await;

    // web is recreated with a new address; Docker says so; h2 answers the new one.
    *h1.docker
        .containers
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = vec![container("web", &[], [10, 1, 11, 9])];
    h1.events
        .send(DockerEvent::NetworkConnect {
            network: "bridge".into(),
            container: "id-web".into(),
        })
        .await
        .unwrap();
    let took = within(Duration::from_secs(2), "the new address on h2", || async {
        a(dns2, "web.crossdock.internal.").await == [Ipv4Addr::new(10, 1, 11, 9)]
    })
    .await;
    eprintln!("a changed address reached the other host in {took:?}");
    // The service lost h1's replica with the listing.
    assert_eq!(
        a(dns2, "api.crossdock.internal.").await,
        [Ipv4Addr::new(10, 1, 12, 3)]
    );
    {
        let st = h2.state.lock().unwrap_or_else(|p| p.into_inner());
        let n = st.names.as_ref().unwrap();
        assert_eq!(n.host.as_deref(), Some("h2-example"));
        assert_eq!(n.peer_count(), 1);
        assert_eq!(n.members, 2);
        let clients: Vec<String> = n.dns_clients.iter().map(ToString::to_string).collect();
        assert_eq!(clients, ["127.0.2.0/24", "127.2.0.0/16"]);
        let doc = st.status_json();
        assert_eq!(doc["names"]["state"], "ready", "{doc}");
        assert_eq!(doc["names"]["local_records"], 1, "{doc}");
        drop(st);
        let st = h1.state.lock().unwrap_or_else(|p| p.into_inner());
        assert_eq!(st.names.as_ref().unwrap().counters.publish_count, 1);
    }
    assert_fleet_view_has_h1s_agent(&h2).await;
}

/// h2's fleet view (a sweep that lists both hosts) shows h1's agent, heard through the exchange,
/// at this version, matched by instance id; and h2 itself.
async fn assert_fleet_view_has_h1s_agent(h2: &Host) {
    let member = |id: &str, ip: [u8; 4]| crossdock_routes::FleetHost {
        instance_id: id.into(),
        status: "Running".into(),
        private_ip: Some(ip.into()),
        vswitch_id: "vsw-1".into(),
        subnet: None,
        routes: Vec::new(),
    };
    {
        let mut st = h2.state.lock().unwrap_or_else(|p| p.into_inner());
        st.instance_id = Some("i-2".into());
        st.fleet = Some(crossdock_routes::FleetStatus {
            hosts: vec![
                member("i-1", [127, 0, 0, 11]),
                member("i-2", [127, 0, 0, 12]),
            ],
            ..Default::default()
        });
    }
    let fleet = || {
        let st = h2.state.lock().unwrap_or_else(|p| p.into_inner());
        st.status_json()["fleet"]["hosts"].clone()
    };
    within(Duration::from_secs(5), "h1's agent heard by h2", || async {
        fleet()[0]["last_seen"]["secs_ago"]
            .as_u64()
            .is_some_and(|s| s <= 2)
    })
    .await;
    let hosts = fleet();
    for h in hosts.as_array().unwrap() {
        assert_eq!(h["agent_version"], env!("CARGO_PKG_VERSION"), "{hosts}");
        assert_eq!(h["agent_silent"], false, "{hosts}");
    }
    assert_eq!(hosts[1]["last_seen"]["secs_ago"], 0, "{hosts}");
}

#[test]
fn the_host_label_is_the_configured_one_else_the_hostname_else_the_ip() {
    let id = |hostname: &str| NamesIdentity {
        host_id: HostId("i-1".into()),
        hostname: hostname.into(),
        private_ip: Ipv4Addr::new(192, 168, 1, 11),
    };
    let web = Label::new("web-1").unwrap();
    assert_eq!(names::host_label(Some(&web), &id("x")), web);
    assert_eq!(
        names::host_label(None, &id("iZbp1_Host")).as_str(),
        "izbp1-host"
    );
    assert_eq!(
        names::host_label(None, &id("__")).as_str(),
        "host-192-168-1-11"
    );
}

#[test]
fn members_come_from_the_fleet_sweep_and_the_guard_from_config() {
    use crossdock_routes::fleet::FleetHost;
    let member = |ip: Option<[u8; 4]>| FleetHost {
        instance_id: "i".into(),
        status: "Running".into(),
        private_ip: ip.map(Ipv4Addr::from),
        vswitch_id: "vsw".into(),
        subnet: None,
        routes: Vec::new(),
    };
    let fleet = crossdock_routes::FleetStatus {
        hosts: vec![
            member(Some([192, 168, 1, 12])),
            member(None),
            member(Some([192, 168, 1, 11])),
        ],
        ..Default::default()
    };
    let ips = names::member_ips(Some(&fleet));
    assert_eq!(
        ips,
        [
            Ipv4Addr::new(192, 168, 1, 11),
            Ipv4Addr::new(192, 168, 1, 12)
        ]
    );
    assert!(names::member_ips(None).is_empty());
    let base = "cluster_cidrs = [\"10.0.0.0/8\"]\n[cloud]\nprivate_ip = \"192.168.1.11\"\n";
    let off = crossdock_config::parse(base).unwrap();
    let subnet = "10.1.11.0/24".parse().unwrap();
    let mut st = AgentState::new("/x.toml".into());
    st.members = ips.clone();
    assert_eq!(names::firewall_guard(&off, subnet, &st), None);
    let on = crossdock_config::parse(&format!("{base}[names]\nenabled = true\ndns_port = 5353"))
        .unwrap();
    let g = names::firewall_guard(&on, subnet, &st).unwrap();
    assert_eq!(g.dns, "10.1.11.1:5353".parse().unwrap());
    assert_eq!(g.dns_clients, vec![subnet]);
    assert_eq!((g.catalog_port, g.members), (7953, ips));
    // The names task found a user-defined network too: its containers may ask.
    let user: ipnet::Ipv4Net = "172.18.0.0/16".parse().unwrap();
    let mut n = crate::names_status::NamesStatus::starting("crossdock.internal");
    n.dns_clients = vec![subnet, user];
    st.names = Some(n);
    st.gateway = Some(Ipv4Addr::new(10, 1, 11, 254));
    let g = names::firewall_guard(&on, subnet, &st).unwrap();
    assert_eq!(g.dns_clients, vec![subnet, user]);
    assert_eq!(g.dns, "10.1.11.254:5353".parse().unwrap());
    // ... but not once the served subnet moved and the task has not caught up.
    let moved = "10.1.99.0/24".parse().unwrap();
    assert_eq!(
        names::firewall_guard(&on, moved, &st).unwrap().dns_clients,
        vec![moved]
    );
}

#[test]
fn an_unreadable_or_short_key_file_is_a_config_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    let cfg = |path: &std::path::Path| {
        crossdock_config::parse(&format!(
            "cluster_cidrs = [\"10.0.0.0/8\"]\n[cloud]\nprivate_ip = \"192.168.1.11\"\n[names]\nenabled = true\ncluster_key_file = \"{}\"\n",
            path.display()
        ))
        .unwrap()
    };
    let e = NamesSettings::from_config(&cfg(&key)).unwrap_err();
    assert_eq!(e.field, "names.cluster_key_file");
    assert!(e.message.contains("cluster.key"), "{e}");
    std::fs::write(&key, "short\n").unwrap();
    let e = NamesSettings::from_config(&cfg(&key)).unwrap_err();
    assert!(e.message.contains("fewer than 16"), "{e}");
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    let s = NamesSettings::from_config(&cfg(&key)).unwrap().unwrap();
    assert!(s.key.is_some());
    assert_eq!(s.expiry.member_grace, Duration::from_secs(300));
    assert_eq!(s.expiry.silent_timeout, Duration::from_secs(10));
}

/// The host pass with `[names]` on: the resolver's rules for the served subnet's gateway, and the
/// catalog port for exactly the last known members, which a new fleet view changes.
#[tokio::test]
async fn the_host_pass_guards_the_resolver_and_admits_the_members_to_the_catalog() {
    use crate::fakes::{served, FakeLinks, FakeSysctl, ScriptedDocker};
    use crate::host::{run_pass, HostDeps};
    use crossdock_hostnet::{MemoryFirewall, Table, DOCKER_USER};

    let cfg = crossdock_config::parse(
        "cluster_cidrs = [\"10.0.0.0/8\"]\n[cloud]\nprivate_ip = \"192.168.1.11\"\n[names]\nenabled = true\n",
    )
    .unwrap();
    let mut net = served("10.1.11.0/24");
    net.gateway = Some(Ipv4Addr::new(10, 1, 11, 1));
    let (docker, _events) = ScriptedDocker::new(Ok(net));
    let fw = Arc::new(MemoryFirewall::new());
    fw.seed(Table::Filter, DOCKER_USER, &["-j RETURN"]);
    let deps = HostDeps {
        docker: Some(docker),
        firewall: fw.clone(),
        sysctl: Arc::new(FakeSysctl(Mutex::new(
            [
                ("net/ipv4/ip_forward", "1"),
                ("net/ipv4/conf/eth0/forwarding", "1"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ))),
        links: Arc::new(FakeLinks(Some("eth0".into()))),
    };
    let state = Mutex::new(AgentState::new("/x.toml".into()));
    let members =
        |ips: &[[u8; 4]]| -> Vec<Ipv4Addr> { ips.iter().map(|ip| Ipv4Addr::from(*ip)).collect() };
    let input = |fw: &MemoryFirewall| -> Vec<String> {
        let t = fw.dump(Table::Filter);
        ["INPUT", "CROSSDOCK-INPUT"]
            .iter()
            .flat_map(|c| t.chain(c).map(|c| c.rules.clone()).unwrap_or_default())
            .map(|r| r.args.join(" "))
            .collect()
    };
    state.lock().unwrap_or_else(|p| p.into_inner()).members =
        members(&[[192, 168, 1, 11], [192, 168, 1, 12]]);
    assert!(run_pass(&cfg, &deps, &state, "start").await.ok);
    let rules = input(&fw);
    let has = |rules: &[String], needle: &str| rules.iter().any(|r| r.contains(needle));
    assert!(
        has(&rules, "-s 10.1.11.0/24 -d 10.1.11.1/32 -p udp"),
        "{rules:?}"
    );
    assert!(has(
        &rules,
        "-d 10.1.11.1/32 -p tcp -m tcp --dport 53 -m comment --comment crossdock:dns-others"
    ));
    assert!(
        has(&rules, "-s 192.168.1.12/32 -p udp -m udp --dport 7953"),
        "{rules:?}"
    );
    // A new sweep: h3 joined, h2 left.
    state.lock().unwrap_or_else(|p| p.into_inner()).members =
        members(&[[192, 168, 1, 11], [192, 168, 1, 13]]);
    assert!(run_pass(&cfg, &deps, &state, "members").await.ok);
    let rules = input(&fw);
    assert!(has(&rules, "-s 192.168.1.13/32"), "{rules:?}");
    assert!(!has(&rules, "-s 192.168.1.12/32"), "{rules:?}");
}
