//! Container names' facts (`[names]` on): what the resolver answers on the bridge gateway, whether
//! the catalog port is bound, and which resolvers Docker hands to containers.
//!
//! Why these three: a name that does not resolve in a container has exactly three places to break
//! on this host. The resolver may not answer (the agent's names task failed, port 53 on the bridge
//! address taken), or answer the zone but not forward the rest (upstreams unreachable); the catalog
//! exchange may not listen (no fleet names arrive); or the containers may not ask it at all
//! (daemon.json without `"dns"`, containers created before it). The firewall half of the port
//! check reads the same `iptables-save` snapshot as the other firewall checks.
//!
//! Everything here is gathered through [`NamesProbe`], so the checks
//! ([`crate::names_checks`]) run on canned facts; the real probe asks the resolver with
//! hickory-proto messages (no DNS wire handling of our own), reads `/proc/net/udp` and the files
//! Docker names. Nothing here writes.

use crate::facts::{Fact, Unavailable};
use async_trait::async_trait;
use crossdock_config::Config;
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long one DNS question may take before doctor calls it unanswered.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// At most this many containers' resolv.conf files are read.
pub const CONTAINER_LIMIT: usize = 200;
/// Where Docker's embedded DNS answers in containers on user-defined networks.
pub const EMBEDDED_DNS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// How a question travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

/// What is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum QueryKind {
    /// The zone's SOA (the apex always has one).
    Soa,
    /// An IPv4 address.
    A,
}

/// A DNS response code, the ones the checks tell apart by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Rcode {
    NoError,
    NxDomain,
    ServFail,
    Refused,
    Other(u16),
}

impl std::fmt::Display for Rcode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rcode::NoError => f.write_str("NOERROR"),
            Rcode::NxDomain => f.write_str("NXDOMAIN"),
            Rcode::ServFail => f.write_str("SERVFAIL"),
            Rcode::Refused => f.write_str("REFUSED"),
            Rcode::Other(n) => write!(f, "RCODE {n}"),
        }
    }
}

impl From<hickory_proto::op::ResponseCode> for Rcode {
    fn from(c: hickory_proto::op::ResponseCode) -> Self {
        use hickory_proto::op::ResponseCode as R;
        match c {
            R::NoError => Rcode::NoError,
            R::NXDomain => Rcode::NxDomain,
            R::ServFail => Rcode::ServFail,
            R::Refused => Rcode::Refused,
            other => Rcode::Other(u16::from(other)),
        }
    }
}

/// A DNS answer, as far as the checks need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsReply {
    pub rcode: Rcode,
    /// Records in the answer section.
    pub answers: usize,
    /// The AA bit.
    pub authoritative: bool,
    /// How long the answer took, in milliseconds.
    pub millis: u64,
}

/// One container's resolvers, from the resolv.conf Docker wrote for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerDns {
    pub name: String,
    /// Its `nameserver` lines, or why they could not be read.
    pub nameservers: Fact<Vec<IpAddr>>,
}

/// Everything the names checks look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamesFacts {
    /// The zone (`crossdock.internal`).
    pub zone: String,
    /// Where the resolver should answer: the served network's gateway and `dns_port` (`None`
    /// when Docker did not say which gateway).
    pub dns: Option<SocketAddrV4>,
    /// The zone's SOA asked over UDP and over TCP.
    pub zone_udp: Fact<DnsReply>,
    pub zone_tcp: Fact<DnsReply>,
    /// The name outside the zone asked to see forwarding, and the answer (over UDP).
    pub external_name: String,
    pub external: Fact<DnsReply>,
    /// The catalog exchange's UDP port.
    pub catalog_port: u16,
    /// Every bound UDP socket's local address (IPv4).
    pub udp_sockets: Fact<Vec<SocketAddrV4>>,
    /// The daemon.json looked at.
    pub daemon_json: PathBuf,
    /// Its `"dns"` list: `None` when the file or the key is missing.
    pub daemon_dns: Fact<Option<Vec<IpAddr>>>,
    /// The served network's containers and their resolvers.
    pub containers: Fact<Vec<ContainerDns>>,
}

/// The side effects of gathering [`NamesFacts`].
#[async_trait]
pub trait NamesProbe: Send + Sync {
    /// Asks `server` about `name` once.
    async fn query(
        &self,
        server: SocketAddrV4,
        name: &str,
        kind: QueryKind,
        transport: Transport,
    ) -> Fact<DnsReply>;
    /// The text of `/proc/net/udp` (this network namespace's UDP sockets).
    fn proc_net_udp(&self) -> Fact<String>;
    /// A file's text, `None` when it does not exist.
    fn read_file(&self, path: &Path) -> Fact<Option<String>>;
    /// The running containers attached to `network`, with the path of their resolv.conf.
    async fn resolv_conf_paths(
        &self,
        cfg: &Config,
        network: &str,
    ) -> Fact<Vec<(String, Option<String>)>>;
    /// The daemon.json to look at.
    fn daemon_json(&self) -> &Path;
    /// The name outside the zone to ask for.
    fn external_name(&self) -> &str;
}

/// Gathers the names facts for the served network `network` with gateway `gateway`.
pub async fn gather(
    cfg: &Config,
    network: Option<(&str, Option<Ipv4Addr>)>,
    probe: &dyn NamesProbe,
) -> NamesFacts {
    let n = &cfg.names;
    let zone = n.zone.to_string();
    let dns = network
        .and_then(|(_, g)| g)
        .map(|g| SocketAddrV4::new(g, n.dns_port));
    let no_gateway = || {
        Err(Unavailable::new(
            "the served network's gateway is unknown, so is the resolver's address",
            "check docker.network above",
        ))
    };
    let (zone_udp, zone_tcp, external) = match dns {
        Some(server) => (
            probe
                .query(server, &zone, QueryKind::Soa, Transport::Udp)
                .await,
            probe
                .query(server, &zone, QueryKind::Soa, Transport::Tcp)
                .await,
            probe
                .query(server, probe.external_name(), QueryKind::A, Transport::Udp)
                .await,
        ),
        None => (no_gateway(), no_gateway(), no_gateway()),
    };
    let udp_sockets = probe.proc_net_udp().and_then(|t| {
        parse_proc_net_udp(&t).map_err(|e| {
            Unavailable::new(e, "report this with the content of /proc/net/udp attached")
        })
    });
    let daemon_json = probe.daemon_json().to_path_buf();
    let daemon_dns = probe.read_file(&daemon_json).and_then(|t| match t {
        None => Ok(None),
        Some(t) => daemon_dns(&t).map_err(|e| {
            Unavailable::new(
                format!("{} is not valid: {e}", daemon_json.display()),
                format!(
                    "repair {} (Docker will not start with it either)",
                    daemon_json.display()
                ),
            )
        }),
    });
    let containers = match network {
        None => Err(Unavailable::new(
            "the served network is unknown",
            "check docker.network above",
        )),
        Some((name, _)) => match probe.resolv_conf_paths(cfg, name).await {
            Err(u) => Err(u),
            Ok(list) => Ok(list
                .into_iter()
                .map(|(name, path)| ContainerDns {
                    nameservers: match path.filter(|p| !p.is_empty()) {
                        None => Err(Unavailable::new(
                            "Docker names no resolv.conf for it",
                            "inspect it: docker inspect -f '{{.ResolvConfPath}}' <container>",
                        )),
                        Some(p) => probe
                            .read_file(Path::new(&p))
                            .and_then(|t| {
                                t.ok_or_else(|| {
                                    Unavailable::new(
                                        format!("{p} does not exist"),
                                        "restart the container",
                                    )
                                })
                            })
                            .map(|t| nameservers(&t)),
                    },
                    name,
                })
                .collect()),
        },
    };
    NamesFacts {
        zone,
        dns,
        zone_udp,
        zone_tcp,
        external_name: probe.external_name().to_string(),
        external,
        catalog_port: n.catalog_port,
        udp_sockets,
        daemon_json,
        daemon_dns,
        containers,
    }
}

/// The local addresses of the IPv4 UDP sockets in `/proc/net/udp` (addresses in the kernel's
/// byte order: the address as a little-endian hex word, the port big-endian).
pub fn parse_proc_net_udp(text: &str) -> Result<Vec<SocketAddrV4>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let Some(local) = line.split_whitespace().nth(1) else {
            continue;
        };
        let bad = || format!("/proc/net/udp line {}: unreadable address `{local}`", i + 1);
        let (ip, port) = local.split_once(':').ok_or_else(bad)?;
        let ip = u32::from_str_radix(ip, 16).map_err(|_| bad())?;
        let port = u16::from_str_radix(port, 16).map_err(|_| bad())?;
        // The kernel prints the address as the u32 in memory, in the host's byte order.
        out.push(SocketAddrV4::new(Ipv4Addr::from(ip.to_ne_bytes()), port));
    }
    Ok(out)
}

/// The `nameserver` addresses of a resolv.conf, in order.
pub fn nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "nameserver").then_some(())?;
            w.next()?.parse().ok()
        })
        .collect()
}

/// daemon.json's `"dns"` list (`None` without the key).
pub fn daemon_dns(text: &str) -> Result<Option<Vec<IpAddr>>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let Some(dns) = v.get("dns") else {
        return Ok(None);
    };
    let list = dns
        .as_array()
        .ok_or_else(|| "\"dns\" is not a list".to_string())?;
    list.iter()
        .map(|s| {
            s.as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("\"dns\" holds {s}, not an IP address"))
        })
        .collect::<Result<Vec<IpAddr>, String>>()
        .map(Some)
}

// ---------------------------------------------------------------- the real probe

/// The real sources: the resolver over the network, `/proc/net/udp`, files, Docker.
#[derive(Debug, Clone)]
pub struct RealNames {
    pub daemon_json: PathBuf,
    pub external_name: String,
}

/// doctor's default daemon.json.
pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";
/// A name every recursive resolver in an Alibaba VPC answers.
pub const EXTERNAL_NAME: &str = "aliyun.com";

fn dns_unavailable(
    server: SocketAddrV4,
    t: Transport,
    what: impl std::fmt::Display,
) -> Unavailable {
    Unavailable::new(
        format!("no answer from {server} over {}: {what}", t.as_str()),
        "see the names line of `crossdock status` for why the resolver is not running (e.g. port 53 on the bridge address held by another program: ss -lunpt 'sport = :53'); then systemctl restart crossdock-agent",
    )
}

async fn exchange(server: SocketAddrV4, wire: &[u8], t: Transport) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = SocketAddr::V4(server);
    match t {
        Transport::Udp => {
            let sock = tokio::net::UdpSocket::bind("0.0.0.0:0").await?;
            sock.connect(server).await?;
            sock.send(wire).await?;
            let mut buf = vec![0u8; 4096];
            let n = sock.recv(&mut buf).await?;
            buf.truncate(n);
            Ok(buf)
        }
        Transport::Tcp => {
            let mut s = tokio::net::TcpStream::connect(server).await?;
            let len = u16::try_from(wire.len())
                .map_err(|_| std::io::Error::other("question too long"))?;
            s.write_all(&len.to_be_bytes()).await?;
            s.write_all(wire).await?;
            let n = s.read_u16().await?;
            let mut buf = vec![0u8; usize::from(n)];
            s.read_exact(&mut buf).await?;
            Ok(buf)
        }
    }
}

/// Asks `server` once; the reply as [`DnsReply`].
pub async fn ask(
    server: SocketAddrV4,
    name: &str,
    kind: QueryKind,
    t: Transport,
) -> Fact<DnsReply> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RecordType};
    let mut fqdn = Name::from_ascii(name).map_err(|e| {
        Unavailable::new(
            format!("`{name}` is not a DNS name: {e}"),
            "give a valid name",
        )
    })?;
    fqdn.set_fqdn(true);
    let rtype = match kind {
        QueryKind::Soa => RecordType::SOA,
        QueryKind::A => RecordType::A,
    };
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(fqdn, rtype));
    let wire = msg
        .to_vec()
        .map_err(|e| dns_unavailable(server, t, format!("cannot encode the question: {e}")))?;
    let started = Instant::now();
    let bytes = match tokio::time::timeout(QUERY_TIMEOUT, exchange(server, &wire, t)).await {
        Err(_) => {
            return Err(dns_unavailable(
                server,
                t,
                format!("nothing within {} s", QUERY_TIMEOUT.as_secs()),
            ))
        }
        Ok(Err(e)) => return Err(dns_unavailable(server, t, e)),
        Ok(Ok(b)) => b,
    };
    let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let reply = Message::from_vec(&bytes)
        .map_err(|e| dns_unavailable(server, t, format!("unreadable answer: {e}")))?;
    Ok(DnsReply {
        rcode: reply.metadata.response_code.into(),
        answers: reply.answers.len(),
        authoritative: reply.metadata.authoritative,
        millis,
    })
}

#[async_trait]
impl NamesProbe for RealNames {
    async fn query(
        &self,
        server: SocketAddrV4,
        name: &str,
        kind: QueryKind,
        transport: Transport,
    ) -> Fact<DnsReply> {
        ask(server, name, kind, transport).await
    }

    fn proc_net_udp(&self) -> Fact<String> {
        std::fs::read_to_string("/proc/net/udp").map_err(|e| {
            Unavailable::new(
                format!("cannot read /proc/net/udp: {e}"),
                "check that /proc is mounted",
            )
        })
    }

    fn read_file(&self, path: &Path) -> Fact<Option<String>> {
        match std::fs::read_to_string(path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Unavailable::new(
                format!("cannot read {}: {e}", path.display()),
                "run doctor as root (sudo crossdock doctor)",
            )),
        }
    }

    async fn resolv_conf_paths(
        &self,
        cfg: &Config,
        network: &str,
    ) -> Fact<Vec<(String, Option<String>)>> {
        crossdock_docker::BollardDocker::new(cfg.docker_socket())
            .resolv_conf_paths(network, CONTAINER_LIMIT)
            .await
            .map_err(|e| crate::gather::docker_unavailable(&e))
    }

    fn daemon_json(&self) -> &Path {
        &self.daemon_json
    }

    fn external_name(&self) -> &str {
        &self.external_name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_udp_local_addresses() {
        let text = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 0B01A8C0:1F11 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 0
  124: 010B010A:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 0
  125: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 0
";
        assert_eq!(
            parse_proc_net_udp(text).unwrap(),
            vec![
                "192.168.1.11:7953".parse::<SocketAddrV4>().unwrap(),
                "10.1.11.1:53".parse().unwrap(),
                "0.0.0.0:68".parse().unwrap(),
            ]
        );
        assert!(parse_proc_net_udp("header\n 1: zz:1 x\n").is_err());
        assert_eq!(parse_proc_net_udp("header only\n").unwrap(), vec![]);
    }

    #[test]
    fn nameservers_in_order_and_daemon_json_dns() {
        let rc = "# Generated by Docker\nsearch x\nnameserver 10.1.11.1\nnameserver 100.100.2.136\noptions ndots:0\n";
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(nameservers(rc), vec![ip("10.1.11.1"), ip("100.100.2.136")]);
        assert_eq!(
            daemon_dns(r#"{"bip":"10.1.11.1/24","dns":["10.1.11.1","100.100.2.136"]}"#).unwrap(),
            Some(vec![ip("10.1.11.1"), ip("100.100.2.136")])
        );
        assert_eq!(daemon_dns(r#"{"bip":"10.1.11.1/24"}"#).unwrap(), None);
        assert!(daemon_dns(r#"{"dns":"10.1.11.1"}"#).is_err());
        assert!(daemon_dns(r#"{"dns":["nope"]}"#).is_err());
        assert!(daemon_dns("{").is_err());
    }
}
