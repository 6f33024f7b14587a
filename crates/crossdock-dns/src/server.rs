//! The resolver's sockets: UDP and TCP on each listening address, hickory's server loop, access
//! control by client network.
//!
//! The resolver must never be an open resolver to the VPC: only the listed client networks (the
//! host's container subnets and loopback) get answers, every other client gets REFUSED (hickory's
//! access control, checked before the request is parsed). An empty list would make hickory allow
//! everyone, so it is refused at start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverOpts};
use hickory_server::store::forwarder::{ForwardConfig, ForwardZoneHandler};
use hickory_server::zone_handler::Catalog;
use hickory_server::Server;
use ipnet::IpNet;
use tokio::net::{TcpListener, UdpSocket};

use crate::handler::{DnsStats, NamesHandler, ZoneSlot};
use crate::DnsError;

/// How the resolver listens and forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Addresses to listen on, UDP and TCP each (the bridge gateway, `10.1.0.1:53`). Port 0 picks
    /// a free port, the same for UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// Client networks answered; every other client is REFUSED. Must not be empty.
    pub allowed: Vec<IpNet>,
    /// Upstream resolvers for every name outside the zone.
    pub upstreams: Vec<SocketAddr>,
    /// How long an idle TCP connection is kept.
    pub tcp_idle: Duration,
    /// How long one upstream is given to answer before the next is tried.
    pub upstream_timeout: Duration,
}

impl DnsConfig {
    /// A configuration with the usual timeouts (TCP idle 5 s, upstream 2 s).
    pub fn new(listen: Vec<SocketAddr>, allowed: Vec<IpNet>, upstreams: Vec<SocketAddr>) -> Self {
        Self {
            listen,
            allowed,
            upstreams,
            tcp_idle: Duration::from_secs(5),
            upstream_timeout: Duration::from_secs(2),
        }
    }
}

/// A running resolver.
pub struct DnsServer {
    server: Server<NamesHandler>,
    local: Vec<SocketAddr>,
    stats: Arc<DnsStats>,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl DnsServer {
    /// Binds every listening address (UDP and TCP) and starts answering from `zone`.
    pub async fn start(config: &DnsConfig, zone: Arc<ZoneSlot>) -> Result<Self, DnsError> {
        if config.allowed.is_empty() {
            return Err(DnsError::NoAllowedClients);
        }
        if config.upstreams.is_empty() {
            return Err(DnsError::NoUpstreams);
        }
        let stats = Arc::new(DnsStats::default());
        let handler = NamesHandler::new(zone, forwarder(config)?, stats.clone());
        let mut server = Server::with_access(handler, [], config.allowed.iter().copied());
        let mut local = Vec::new();
        for addr in &config.listen {
            let (udp, tcp) = bind_pair(*addr).await?;
            local.push(udp.local_addr().map_err(|e| DnsError::bind(*addr, &e))?);
            server.register_socket(udp);
            server.register_listener(tcp, config.tcp_idle, 64 * 1024);
        }
        Ok(Self {
            server,
            local,
            stats,
        })
    }

    /// The bound addresses (UDP and TCP share each), in `listen` order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    /// The query counters.
    pub fn stats(&self) -> Arc<DnsStats> {
        self.stats.clone()
    }

    /// Stops listening and waits for the sockets' tasks to end.
    pub async fn shutdown(mut self) -> Result<(), DnsError> {
        self.server
            .shutdown_gracefully()
            .await
            .map_err(|e| DnsError::Server(e.to_string()))
    }
}

/// UDP and TCP on the same address; with port 0, the TCP port follows the UDP one (retried a few
/// times if another program holds it).
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let mut last = None;
    for _ in 0..8 {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|e| DnsError::bind(addr, &e))?;
        let bound = udp.local_addr().map_err(|e| DnsError::bind(addr, &e))?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(DnsError::bind(addr, &e)),
        }
    }
    let e = last.unwrap_or_else(|| std::io::Error::other("no free port"));
    Err(DnsError::bind(addr, &e))
}

/// A catalog with one forwarding zone handler for the root, asking `config.upstreams` in order.
fn forwarder(config: &DnsConfig) -> Result<Catalog, DnsError> {
    let name_servers = config
        .upstreams
        .iter()
        .map(|u| {
            let mut udp = ConnectionConfig::udp();
            udp.port = u.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = u.port();
            let mut ns = NameServerConfig::udp_and_tcp(u.ip());
            ns.connections = vec![udp, tcp];
            ns
        })
        .collect();
    let mut options = ResolverOpts::default();
    options.timeout = config.upstream_timeout;
    options.attempts = 1;
    let handler = ForwardZoneHandler::builder_tokio(ForwardConfig {
        name_servers,
        options: Some(options),
    })
    .build()
    .map_err(DnsError::Forwarder)?;
    let mut catalog = Catalog::new();
    catalog.upsert(
        hickory_proto::rr::Name::root().into(),
        vec![Arc::new(handler)],
    );
    Ok(catalog)
}
