//! [`gather`] with canned sources: which questions it asks given the answers it already has, and how
//! it turns the answers (and their absence) into facts. No kernel, Docker, agent or cloud involved.

use super::*;
use crate::facts::{AgentState, LinkFacts, RouteLookup};
use std::sync::Mutex;

/// The host as data, recording every question.
struct FakeHost {
    default_route: Fact<Option<String>>,
    links: Vec<&'static str>,
    save: Fact<String>,
    route: RouteLookup,
    asked: Mutex<Vec<String>>,
}

impl FakeHost {
    fn new() -> Self {
        Self {
            default_route: Ok(Some("eth0".into())),
            links: vec!["eth0", "docker0"],
            save: Ok("*filter\n:FORWARD DROP [0:0]\nCOMMIT\n".into()),
            route: RouteLookup {
                destination: "10.0.0.1".parse().unwrap(),
                dev: "eth0".into(),
                gateway: Some("192.168.1.253".parse().unwrap()),
                src: None,
                kind: "unicast".into(),
            },
            asked: Mutex::new(Vec::new()),
        }
    }

    fn ask(&self, q: String) {
        self.asked.lock().unwrap().push(q);
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

#[async_trait]
impl HostProbe for FakeHost {
    async fn iptables_save(&self) -> Fact<String> {
        self.ask("iptables-save".into());
        self.save.clone()
    }
    fn sysctl(&self, path: &str) -> Fact<String> {
        self.ask(format!("sysctl {path}"));
        Ok("1".into())
    }
    async fn default_route_interface(&self) -> Fact<Option<String>> {
        self.ask("default route".into());
        self.default_route.clone()
    }
    async fn link(&self, name: &str) -> Fact<Option<LinkFacts>> {
        self.ask(format!("link {name}"));
        Ok(self.links.contains(&name).then(|| LinkFacts {
            name: name.into(),
            mtu: 1500,
            up: true,
        }))
    }
    async fn route_get(&self, dst: Ipv4Addr, src: Option<Ipv4Addr>) -> Fact<RouteLookup> {
        self.ask(format!("route {dst} from {src:?}"));
        Ok(RouteLookup {
            destination: dst,
            ..self.route.clone()
        })
    }
}

struct FakeDocker(Fact<DockerFacts>, Mutex<usize>);

#[async_trait]
impl DockerProbe for FakeDocker {
    async fn docker(&self, _cfg: &Config) -> Fact<DockerFacts> {
        *self.1.lock().unwrap() += 1;
        self.0.clone()
    }
}

/// The served network `bridge` on docker0, 10.1.0.0/24.
fn docker_answering() -> FakeDocker {
    let report = crossdock_docker::EngineReport {
        version: "28.5.2".into(),
        api_version: "1.51".into(),
        network: Ok(crossdock_docker::NetworkDetail {
            served: crossdock_docker::ServedNetwork {
                name: "bridge".into(),
                id: "abc".into(),
                subnet: "10.1.0.0/24".parse().unwrap(),
                gateway: Some("10.1.0.1".parse().unwrap()),
                bridge: "docker0".into(),
                docker_version: "28.5.2".into(),
            },
            options: BTreeMap::new(),
            containers: vec!["10.1.0.2".parse().unwrap()],
        }),
    };
    FakeDocker(
        docker_facts("unix:///var/run/docker.sock", Ok(report)),
        Mutex::new(0),
    )
}

#[derive(Default)]
struct FakeAgent(Mutex<Vec<PathBuf>>);

#[async_trait]
impl AgentProbe for FakeAgent {
    async fn status(&self, socket: &Path) -> AgentState {
        self.0.lock().unwrap().push(socket.to_path_buf());
        AgentState::NotRunning {
            socket: socket.to_path_buf(),
            message: "connection refused".into(),
        }
    }
}

#[derive(Default)]
struct FakeCloud(Mutex<Vec<Option<Ipv4Net>>>);

#[async_trait]
impl CloudProbe for FakeCloud {
    async fn cloud(&self, _cfg: &Config, subnet: Option<Ipv4Net>) -> CloudFacts {
        self.0.lock().unwrap().push(subnet);
        skipped_cloud(&Unavailable::new("canned", "none"), 200)
    }
}

/// The names side as data, recording every question.
#[derive(Default)]
struct FakeNames {
    asked: Mutex<Vec<String>>,
}

#[async_trait]
impl crate::names::NamesProbe for FakeNames {
    async fn query(
        &self,
        server: std::net::SocketAddrV4,
        name: &str,
        kind: crate::names::QueryKind,
        t: crate::names::Transport,
    ) -> Fact<crate::names::DnsReply> {
        self.asked
            .lock()
            .unwrap()
            .push(format!("{kind:?} {name} @{server} {}", t.as_str()));
        Ok(crate::names::DnsReply {
            rcode: crate::names::Rcode::NoError,
            answers: 1,
            authoritative: true,
            millis: 1,
        })
    }
    fn proc_net_udp(&self) -> Fact<String> {
        Ok("header\n 1: 0B01A8C0:1F11 00000000:0000 07\n".into())
    }
    fn read_file(&self, path: &Path) -> Fact<Option<String>> {
        self.asked
            .lock()
            .unwrap()
            .push(format!("read {}", path.display()));
        Ok(match path.to_str() {
            Some("/etc/docker/daemon.json") => Some(r#"{"dns":["10.1.0.1"]}"#.into()),
            Some("/rc/web") => Some("nameserver 10.1.0.1\n".into()),
            _ => None,
        })
    }
    async fn resolv_conf_paths(
        &self,
        _cfg: &Config,
        network: &str,
    ) -> Fact<Vec<(String, Option<String>)>> {
        self.asked
            .lock()
            .unwrap()
            .push(format!("containers on {network}"));
        Ok(vec![("web".into(), Some("/rc/web".into()))])
    }
    fn daemon_json(&self) -> &Path {
        Path::new("/etc/docker/daemon.json")
    }
    fn external_name(&self) -> &str {
        "www.example.test"
    }
}

fn config(text: &str) -> ConfigFacts {
    ConfigFacts {
        path: "/etc/crossdock/agent.toml".into(),
        config: crossdock_config::parse(text),
    }
}

const CLUSTER: &str = "cluster_cidrs = [\"10.0.0.0/8\"]\n";

struct Run {
    facts: Facts,
    host: FakeHost,
    docker_asked: usize,
    agent_sockets: Vec<PathBuf>,
    cloud_asked: Vec<Option<Ipv4Net>>,
    names_asked: Vec<String>,
}

async fn run_with(text: &str, host: FakeHost, docker: FakeDocker, env: Option<&str>) -> Run {
    let agent = FakeAgent::default();
    let cloud = FakeCloud::default();
    let names = FakeNames::default();
    let src = Sources {
        host: &host,
        docker: &docker,
        agent: &agent,
        cloud: &cloud,
        names: &names,
    };
    let facts = gather(config(text), src, env.map(PathBuf::from), Utc::now()).await;
    let docker_asked = *docker.1.lock().unwrap();
    let agent_sockets = agent.0.lock().unwrap().clone();
    let cloud_asked = cloud.0.lock().unwrap().clone();
    let names_asked = names.asked.lock().unwrap().clone();
    Run {
        facts,
        host,
        docker_asked,
        agent_sockets,
        cloud_asked,
        names_asked,
    }
}

#[tokio::test]
async fn auto_takes_the_default_route_interface_and_reads_its_sysctls_and_the_bridges() {
    let r = run_with(CLUSTER, FakeHost::new(), docker_answering(), None).await;
    let ext = r.facts.host.external.as_ref().unwrap();
    assert_eq!(
        (ext.link.name.as_str(), ext.chosen_by.as_str()),
        ("eth0", "holds the default route")
    );
    // The route to a peer leaves by eth0: its gateway is the external interface's gateway.
    assert_eq!(ext.default_gateway, Some("192.168.1.253".parse().unwrap()));
    let sysctls: Vec<&String> = r.facts.host.sysctls.keys().collect();
    assert_eq!(
        sysctls,
        [
            "net/ipv4/conf/all/rp_filter",
            "net/ipv4/conf/docker0/forwarding",
            "net/ipv4/conf/eth0/forwarding",
            "net/ipv4/conf/eth0/rp_filter",
            "net/ipv4/ip_forward",
        ]
    );
    assert_eq!(
        r.facts.host.bridge.as_ref().unwrap().as_ref().unwrap().name,
        "docker0"
    );
    assert!(r.facts.host.iptables.is_ok());
    assert_eq!(r.docker_asked, 1);
    assert!(
        r.cloud_asked.is_empty(),
        "provider none: the cloud is not asked"
    );
}

#[tokio::test]
async fn a_configured_interface_is_used_without_asking_for_the_default_route() {
    let mut host = FakeHost::new();
    host.links.push("eth1");
    let r = run_with(
        &format!("{CLUSTER}external_interface = \"eth1\"\n"),
        host,
        docker_answering(),
        None,
    )
    .await;
    let ext = r.facts.host.external.as_ref().unwrap();
    assert_eq!(
        (ext.link.name.as_str(), ext.chosen_by.as_str()),
        ("eth1", "configured")
    );
    assert_eq!(
        ext.default_gateway, None,
        "the peer route leaves by eth0, not eth1"
    );
    assert!(!r.host.asked().contains(&"default route".to_string()));
    assert!(r
        .facts
        .host
        .sysctls
        .contains_key("net/ipv4/conf/eth1/rp_filter"));
}

#[tokio::test]
async fn no_default_route_or_no_such_interface_is_a_fact_with_a_fix() {
    let mut host = FakeHost::new();
    host.default_route = Ok(None);
    let r = run_with(CLUSTER, host, docker_answering(), None).await;
    let u = r.facts.host.external.unwrap_err();
    assert!(u.message.contains("no IPv4 default route"), "{u:?}");
    assert!(!r.facts.host.sysctls.keys().any(|k| k.contains("eth0")));

    let r = run_with(
        &format!("{CLUSTER}external_interface = \"eth9\"\n"),
        FakeHost::new(),
        docker_answering(),
        None,
    )
    .await;
    let u = r.facts.host.external.unwrap_err();
    assert!(
        u.message.contains("eth9 (configured) does not exist"),
        "{u:?}"
    );
    assert!(u.fix.contains("external_interface"));
}

#[tokio::test]
async fn the_peer_stand_in_lies_outside_the_local_subnet() {
    let r = run_with(CLUSTER, FakeHost::new(), docker_answering(), None).await;
    // 10.0.0.1 is the first cluster address outside 10.1.0.0/24.
    assert!(r
        .host
        .asked()
        .contains(&"route 10.0.0.1 from None".to_string()));
    assert_eq!(
        r.facts.host.peer_route.unwrap().unwrap().destination,
        "10.0.0.1".parse::<Ipv4Addr>().unwrap()
    );
}

#[tokio::test]
async fn a_static_subnet_host_does_not_ask_docker_and_has_no_bridge() {
    let r = run_with(
        &format!("{CLUSTER}[docker]\nstatic_subnet = \"10.0.0.0/24\"\n"),
        FakeHost::new(),
        docker_answering(),
        None,
    )
    .await;
    assert_eq!(r.docker_asked, 0);
    assert!(r
        .facts
        .docker
        .unwrap_err()
        .message
        .contains("static_subnet"));
    assert!(r.facts.host.bridge.is_none());
    // The peer stand-in avoids the static subnet.
    assert!(r
        .host
        .asked()
        .contains(&"route 10.0.1.0 from None".to_string()));
}

#[tokio::test]
async fn a_missing_bridge_and_an_unreadable_dump_become_facts_with_fixes() {
    let mut host = FakeHost::new();
    host.links = vec!["eth0"];
    host.save = Ok("-A FORWARD -j ACCEPT\n".into());
    let r = run_with(CLUSTER, host, docker_answering(), None).await;
    let bridge = r.facts.host.bridge.unwrap().unwrap_err();
    assert!(bridge.message.contains("bridge docker0"), "{bridge:?}");
    let dump = r.facts.host.iptables.unwrap_err();
    assert!(dump.message.contains("line 1"), "{dump:?}");
    assert!(dump.fix.contains("iptables-save"));
}

#[tokio::test]
async fn a_configuration_that_did_not_load_asks_neither_docker_nor_the_cloud() {
    let r = run_with(
        "cluster_cidrs = \"nope\"\n[cloud]\nprovider = \"alibaba\"\n",
        FakeHost::new(),
        docker_answering(),
        None,
    )
    .await;
    assert!(r.facts.config.config.is_err());
    assert_eq!(r.docker_asked, 0);
    assert!(r.cloud_asked.is_empty());
    assert!(r.facts.host.external.is_err());
    // The agent is still looked for, at the default socket.
    assert_eq!(r.agent_sockets, [Config::default().health_socket]);
}

#[tokio::test]
async fn the_cloud_is_asked_for_alibaba_with_the_served_subnet() {
    let r = run_with(
        &format!("{CLUSTER}[cloud]\nprovider = \"alibaba\"\n"),
        FakeHost::new(),
        docker_answering(),
        None,
    )
    .await;
    assert_eq!(r.cloud_asked, [Some("10.1.0.0/24".parse().unwrap())]);
    assert!(r.facts.cloud.is_some());
}

#[tokio::test]
async fn crossdock_socket_wins_over_the_configured_socket() {
    let text = format!("{CLUSTER}health_socket = \"/run/x/agent.sock\"\n");
    let r = run_with(&text, FakeHost::new(), docker_answering(), None).await;
    assert_eq!(r.agent_sockets, [PathBuf::from("/run/x/agent.sock")]);
    let r = run_with(
        &text,
        FakeHost::new(),
        docker_answering(),
        Some("/tmp/a.sock"),
    )
    .await;
    assert_eq!(r.agent_sockets, [PathBuf::from("/tmp/a.sock")]);
}

#[test]
fn docker_errors_become_facts_with_crossdock_dockers_own_fix() {
    use crossdock_docker::{DockerError, EngineReport};
    let down = docker_facts(
        "unix:///var/run/docker.sock",
        Err(DockerError::Unavailable {
            socket: "/var/run/docker.sock".into(),
            message: "No such file or directory".into(),
        }),
    )
    .unwrap_err();
    assert_eq!(
        down.message,
        "Docker is not answering on /var/run/docker.sock: No such file or directory"
    );
    assert!(down.fix.starts_with("start Docker"), "{down:?}");
    let missing = docker_facts(
        "unix:///var/run/docker.sock",
        Ok(EngineReport {
            version: "20.10.24".into(),
            api_version: "1.41".into(),
            network: Err(DockerError::NetworkNotFound { name: "web".into() }),
        }),
    )
    .unwrap();
    assert_eq!(missing.version, "20.10.24");
    let u = missing.network.unwrap_err();
    assert_eq!(u.message, "Docker network `web` does not exist");
    assert!(u.fix.contains("docker network ls"), "{u:?}");
    let api = docker_unavailable(&DockerError::Api {
        call: "GET /networks/web".into(),
        message: "500".into(),
    });
    assert!(api.fix.contains("docker network inspect"), "{api:?}");
}

#[tokio::test]
async fn names_are_asked_at_the_gateway_only_with_names_on() {
    let off = run_with(CLUSTER, FakeHost::new(), docker_answering(), None).await;
    assert!(off.names_asked.is_empty(), "{:?}", off.names_asked);
    assert!(off.facts.names.is_none());

    let on = run_with(
        &format!("{CLUSTER}[cloud]\nprivate_ip = \"192.168.1.11\"\n[names]\nenabled = true\n"),
        FakeHost::new(),
        docker_answering(),
        None,
    )
    .await;
    assert_eq!(
        on.names_asked,
        [
            "Soa crossdock.internal @10.1.0.1:53 UDP",
            "Soa crossdock.internal @10.1.0.1:53 TCP",
            "A www.example.test @10.1.0.1:53 UDP",
            "read /etc/docker/daemon.json",
            "containers on bridge",
            "read /rc/web",
        ]
    );
    let n = on.facts.names.unwrap();
    assert_eq!(
        n.udp_sockets.unwrap(),
        ["192.168.1.11:7953".parse().unwrap()]
    );
    assert_eq!(
        n.daemon_dns.unwrap(),
        Some(vec!["10.1.0.1".parse().unwrap()])
    );
    assert_eq!(
        n.containers.unwrap()[0].nameservers,
        Ok(vec!["10.1.0.1".parse().unwrap()])
    );
}
