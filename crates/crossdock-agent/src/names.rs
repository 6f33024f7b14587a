//! Container names across hosts (`[names]`): the task that keeps this host's records published,
//! the fleet's catalog in the resolver, and the resolver on the bridge gateway.
//!
//! Why a task of its own, beside the host and route loops: names change with every container start
//! and stop, far more often than routes or rules, and must follow within a second; a slow resolver
//! start or a peer that does not answer must never hold up the firewall or the route. The pieces
//! are the workspace's: `crossdock-names` (records, catalog rules, zone answers, pure),
//! `crossdock-catalog` (the chitchat exchange between members), `crossdock-dns` (the hickory
//! resolver). This module only wires them to Docker, the fleet membership and `/status`:
//!
//! 1. who this host is ([`IdentitySource`]: instance id, hostname, private IP; metadata service on
//!    Alibaba) and where its containers live (the served network's subnet and gateway);
//! 2. the exchange on `<private IP>:<catalog_port>`, its allowed peers the fleet's members (the
//!    route side's last sweep, [`member_ips`]); in per-host mode the hosts behind crossdock's
//!    routes (`crossdock_routes::peers`, reported by every route pass);
//! 3. the resolver on `<gateway>:<dns_port>`, UDP and TCP, answering the container subnet and
//!    loopback only, forwarding other names to the resolvers of `resolv_conf`;
//! 4. then: every Docker event (and a resync timer) lists the running containers and publishes the
//!    records built from them; every catalog change becomes a new zone snapshot.
//!
//! The firewall's part (resolver and catalog ports admitted from the container subnet and the
//! members only) is data for the host pass: [`firewall_guard`].
//!
//! Nothing outside the process is reached except through [`NamesDeps`] and the sockets the
//! resolver and the exchange open, so the task runs in unit tests on loopback.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use ipnet::{IpNet, Ipv4Net};
use tokio::sync::{mpsc, watch, Notify};

use crossdock_catalog::{ClusterKey, Exchange, ExchangeConfig};
use crossdock_config::{Config, ConfigError};
use crossdock_dns::{upstreams_from_resolv_conf, DnsConfig, DnsServer, ZoneSlot};
use crossdock_docker::{ContainerLister, DockerEvent, DockerSource, ServedNetwork};
use crossdock_hostnet::NamesGuard;
use crossdock_names::{
    build_records, Catalog, CatalogLimits, ContainerMeta, Expiry, HostId, Label, ZoneName, ZoneTtls,
};

use crate::names_status::{NamesState, NamesStatus, PeerStatus};
use crate::state::AgentState;

/// What `[names]` and the rest of the file say the task must do (read once, at start).
#[derive(Debug, Clone)]
pub struct NamesSettings {
    /// The zone.
    pub zone: ZoneName,
    /// The configured host label, if any.
    pub host_name: Option<Label>,
    /// The served Docker network (containers on it are published).
    pub network: String,
    /// The resolver's port (0 in tests: any free one).
    pub dns_port: u16,
    /// The catalog exchange's port.
    pub catalog_port: u16,
    /// The fleet's key, if any.
    pub key: Option<ClusterKey>,
    /// When silent hosts are withdrawn.
    pub expiry: Expiry,
    /// Where the upstream resolvers are listed.
    pub resolv_conf: PathBuf,
    /// The cluster ranges: reverse names inside them are the zone's.
    pub reverse: Vec<Ipv4Net>,
    /// How often the containers are listed even without a Docker event.
    pub resync: Duration,
    /// chitchat's cluster id (separates fleets with different zones on one network).
    pub cluster_id: String,
}

/// `field: problem (fix: ...)` for the key file.
fn key_error(path: &std::path::Path, message: String) -> ConfigError {
    ConfigError::new(
        "names.cluster_key_file",
        format!("{}: {message}", path.display()),
        "write at least 16 random bytes into it (e.g. `openssl rand -hex 32 > FILE`, mode 0600), the same on every host, or set cluster_key_file = \"\"",
    )
}

impl NamesSettings {
    /// The settings of `cfg` (`None` when `[names]` is off); the key file is read here, so an
    /// unreadable or short key stops the agent at start (exit 2) and fails `--check-config`.
    pub fn from_config(cfg: &Config) -> Result<Option<Self>, ConfigError> {
        let n = &cfg.names;
        if !n.enabled {
            return Ok(None);
        }
        let key = match &n.cluster_key_file {
            None => None,
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|e| key_error(path, e.to_string()))?;
                let trimmed = bytes.trim_ascii();
                Some(ClusterKey::new(trimmed).map_err(|e| key_error(path, e.to_string()))?)
            }
        };
        Ok(Some(Self {
            zone: n.zone.clone(),
            host_name: n.host_name.clone(),
            network: cfg.docker.network.clone(),
            dns_port: n.dns_port,
            catalog_port: n.catalog_port,
            key,
            expiry: Expiry {
                silent_timeout: Duration::from_secs(n.non_member_withdraw_secs()),
                member_grace: Duration::from_secs(n.withdraw_after_secs),
            },
            resolv_conf: n.resolv_conf.clone(),
            reverse: cfg.cluster_cidrs.clone(),
            resync: Duration::from_secs(cfg.resync_interval_secs),
            cluster_id: format!("crossdock:{}", n.zone),
        }))
    }
}

/// Who this host is, for the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamesIdentity {
    /// Stable across restarts, unique in the fleet (the instance id).
    pub host_id: HostId,
    /// The instance's (or system's) hostname, before sanitising.
    pub hostname: String,
    /// The address peers reach this host at.
    pub private_ip: Ipv4Addr,
}

/// Where the identity comes from (the metadata service on Alibaba).
#[async_trait]
pub trait IdentitySource: Send + Sync {
    /// This host's identity, or why it is not known yet.
    async fn identity(&self) -> Result<NamesIdentity, String>;
}

/// Everything the names task touches outside the process, besides its own sockets.
#[derive(Clone)]
pub struct NamesDeps {
    /// The served network (subnet, gateway) and the event stream.
    pub docker: Arc<dyn DockerSource>,
    /// The running containers.
    pub containers: Arc<dyn ContainerLister>,
    /// Who this host is.
    pub identity: Arc<dyn IdentitySource>,
}

impl std::fmt::Debug for NamesDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamesDeps").finish_non_exhaustive()
    }
}

/// This host's label: the configured one, else the hostname sanitised, else one from the IP.
// `host-<ip>` is lower-case letters, digits and dashes: `sanitize` always keeps it.
#[allow(clippy::expect_used)]
pub fn host_label(configured: Option<&Label>, id: &NamesIdentity) -> Label {
    configured
        .cloned()
        .or_else(|| Label::sanitize(&id.hostname))
        .or_else(|| Label::sanitize(&format!("host-{}", id.private_ip)))
        .expect("`host-<ip>` always leaves a label")
}

/// The member hosts' private IPs from the route side's last fleet sweep (any status: a stopped
/// member keeps its records for the grace period). Per-host mode's members come from the route
/// report's `peers` instead.
pub fn member_ips(fleet: Option<&crossdock_routes::FleetStatus>) -> Vec<Ipv4Addr> {
    let mut ips: Vec<Ipv4Addr> = fleet
        .map(|f| f.hosts.iter().filter_map(|h| h.private_ip).collect())
        .unwrap_or_default();
    ips.sort_unstable();
    ips.dedup();
    ips
}

/// The gateway Docker reports, else the subnet's first address (Docker's default).
pub fn gateway_of(subnet: Ipv4Net, gateway: Option<Ipv4Addr>) -> Ipv4Addr {
    gateway.unwrap_or_else(|| Ipv4Addr::from(u32::from(subnet.network()).saturating_add(1)))
}

/// Where the containers live: the served network's subnet and gateway (the resolver's address),
/// and every local bridge network's subnet (their containers ask through Docker's embedded DNS,
/// which forwards from their own addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// The served container subnet.
    pub subnet: Ipv4Net,
    /// The bridge's address.
    pub gateway: Ipv4Addr,
    /// The clients the resolver answers: the served subnet first, then the other bridge
    /// networks' subnets.
    pub clients: Vec<Ipv4Net>,
}

impl Site {
    /// The site of `net`, with the other bridge subnets `bridges`.
    pub fn new(net: &ServedNetwork, bridges: &[Ipv4Net]) -> Self {
        let mut clients = vec![net.subnet];
        clients.extend(bridges.iter().filter(|b| **b != net.subnet));
        Self {
            subnet: net.subnet,
            gateway: gateway_of(net.subnet, net.gateway),
            clients,
        }
    }
}

/// The firewall's part of `[names]` for the host pass: the resolver on the gateway for this
/// host's container subnets (as the names task found them; the served one until it reports),
/// the catalog port for the last known members (see `crossdock_hostnet::names_guard`).
pub fn firewall_guard(cfg: &Config, subnet: Ipv4Net, st: &AgentState) -> Option<NamesGuard> {
    if !cfg.names.enabled {
        return None;
    }
    let clients = st
        .names
        .as_ref()
        .map(|n| n.dns_clients.clone())
        .filter(|c| c.first() == Some(&subnet))
        .unwrap_or_else(|| vec![subnet]);
    Some(NamesGuard {
        dns: std::net::SocketAddrV4::new(gateway_of(subnet, st.gateway), cfg.names.dns_port),
        dns_clients: clients,
        catalog_port: cfg.names.catalog_port,
        members: st.members.clone(),
    })
}

/// Waits for a value, retrying `f` with a growing delay (1 s doubling to 30 s) and reporting each
/// failure in the status as `state` with the message `f` gives.
async fn until_ok<T, F, Fut>(status: &Reporter, state: NamesState, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut delays =
        crossdock_backoff::Exponential::new(Duration::from_secs(1), Duration::from_secs(30))
            .delays();
    loop {
        match f().await {
            Ok(v) => return v,
            Err(message) => {
                status.update(|s| s.set(state, message));
                tokio::time::sleep(delays.next_delay()).await;
            }
        }
    }
}

/// Writes the task's status into the shared agent state.
#[derive(Clone)]
struct Reporter(Arc<Mutex<AgentState>>);

impl Reporter {
    fn update(&self, f: impl FnOnce(&mut NamesStatus)) {
        let mut st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = st.names.as_mut() {
            f(n);
        }
    }
}

/// The running parts.
struct Running {
    settings: NamesSettings,
    deps: NamesDeps,
    status: Reporter,
    id: NamesIdentity,
    exchange: Exchange,
    slot: Arc<ZoneSlot>,
    site: Site,
    dns: Option<DnsServer>,
    /// Told when the resolver's clients change (the host pass re-applies the firewall).
    firewall: Arc<Notify>,
}

/// How often members that are not live are asked again.
const REACH_OUT: Duration = Duration::from_secs(2);

/// Runs the names task until it is aborted (the daemon's stop). `members` are the fleet's
/// members' addresses; `firewall` is notified when the resolver's clients change.
pub async fn run(
    settings: NamesSettings,
    deps: NamesDeps,
    mut members: watch::Receiver<Vec<Ipv4Addr>>,
    state: Arc<Mutex<AgentState>>,
    firewall: Arc<Notify>,
) {
    state.lock().unwrap_or_else(|p| p.into_inner()).names =
        Some(NamesStatus::starting(settings.zone.as_str()));
    let status = Reporter(state);
    let (ev_tx, mut events) = mpsc::channel::<DockerEvent>(256);
    let watcher = deps.docker.watch(ev_tx);
    let mut r = start(settings, deps, status, &members, firewall).await;
    let mut catalog = r.exchange.subscribe();
    let mut resync = tokio::time::interval(r.settings.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Members not heard yet are asked again (their first datagrams may have met a firewall that
    // did not admit this host yet); live ones cost nothing.
    let mut reach = tokio::time::interval(REACH_OUT);
    reach.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    r.refresh(None).await;
    r.zone(&catalog.borrow_and_update().clone());
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => r.on_events(ev, &mut events).await,
                None => break,
            },
            _ = resync.tick() => {
                r.check_site().await;
                r.refresh(None).await;
            }
            _ = reach.tick() => {
                r.exchange.reach_out().await;
            }
            changed = members.changed() => {
                if changed.is_err() { break }
                let ips = members.borrow_and_update().clone();
                r.set_members(&ips).await;
            }
            changed = catalog.changed() => {
                if changed.is_err() { break }
                let c = catalog.borrow_and_update().clone();
                r.zone(&c);
            }
        }
    }
    watcher.abort();
}

/// Identity, site, exchange, resolver: each retried until it works, the status saying why not.
async fn start(
    settings: NamesSettings,
    deps: NamesDeps,
    status: Reporter,
    members: &watch::Receiver<Vec<Ipv4Addr>>,
    firewall: Arc<Notify>,
) -> Running {
    let id = until_ok(&status, NamesState::Pending, || {
        let source = deps.identity.clone();
        async move {
            source
                .identity()
                .await
                .map_err(|e| format!("waiting for this host's identity: {e}"))
        }
    })
    .await;
    let label = host_label(settings.host_name.as_ref(), &id);
    status.update(|s| {
        s.host = Some(label.to_string());
        s.host_id = Some(id.host_id.to_string());
    });
    let site = until_ok(&status, NamesState::Pending, || {
        let (deps, network) = (deps.clone(), settings.network.clone());
        async move {
            read_site(&deps, &network)
                .await
                .map_err(|e| format!("waiting for the served network: {e}"))
        }
    })
    .await;
    let initial = members.borrow().clone();
    let exchange = until_ok(&status, NamesState::Failed, || {
        start_exchange(&settings, &id, &label, &initial)
    })
    .await;
    status.update(|s| {
        s.catalog_listen =
            Some(SocketAddr::new(id.private_ip.into(), settings.catalog_port).to_string());
        s.members = initial.len();
        s.counters.exchange = Some(exchange.stats());
        s.agents = Some(crate::fleet_agents::AgentWatch {
            directory: exchange.agents(),
            silent_after: settings.expiry.silent_timeout,
        });
    });
    let mut r = Running {
        settings,
        deps,
        status,
        id,
        exchange,
        slot: Arc::new(ZoneSlot::default()),
        site,
        dns: None,
        firewall,
    };
    r.start_dns().await;
    r
}

/// The served network and the other bridge networks (only the served one when Docker does not
/// list them).
async fn read_site(deps: &NamesDeps, network: &str) -> Result<Site, crossdock_docker::DockerError> {
    let net = deps.docker.inspect_network(network).await?;
    let bridges = deps.containers.bridge_subnets().await.unwrap_or_default();
    Ok(Site::new(&net, &bridges))
}

fn peer_addrs(ips: &[Ipv4Addr], own: Ipv4Addr, port: u16) -> Vec<SocketAddr> {
    ips.iter()
        .filter(|ip| **ip != own)
        .map(|ip| SocketAddr::new(IpAddr::V4(*ip), port))
        .collect()
}

async fn start_exchange(
    settings: &NamesSettings,
    id: &NamesIdentity,
    label: &Label,
    members: &[Ipv4Addr],
) -> Result<Exchange, String> {
    let listen = SocketAddr::new(id.private_ip.into(), settings.catalog_port);
    let peers = peer_addrs(members, id.private_ip, settings.catalog_port);
    let mut config = ExchangeConfig::new(id.host_id.clone(), label.clone(), listen, peers);
    config.cluster_id = settings.cluster_id.clone();
    config.key = settings.key.clone();
    config.expiry = settings.expiry;
    config.limits = CatalogLimits::default();
    config.agent_version = crate::fleet_agents::this_version();
    Exchange::start(config).await.map_err(|e| e.to_string())
}

impl Running {
    /// (Re)starts the resolver on the current site's gateway; on failure the status says why and
    /// the next resync tries again.
    async fn start_dns(&mut self) {
        if let Some(old) = self.dns.take() {
            let _ = old.shutdown().await;
        }
        let listen = SocketAddr::new(self.site.gateway.into(), self.settings.dns_port);
        let upstreams = match upstreams_from_resolv_conf(&self.settings.resolv_conf, &[listen]) {
            Ok(u) => u,
            Err(e) => {
                return self
                    .status
                    .update(|s| s.set(NamesState::Failed, e.to_string()))
            }
        };
        // 127.0.0.0/8 with a valid prefix: `new` cannot refuse it, and `ok()` adds nothing if it did.
        let loopback = Ipv4Net::new(Ipv4Addr::new(127, 0, 0, 0), 8).ok();
        let allowed: Vec<IpNet> = self
            .site
            .clients
            .iter()
            .chain(loopback.as_ref())
            .map(|n| IpNet::V4(*n))
            .collect();
        let config = DnsConfig::new(vec![listen], allowed, upstreams.clone());
        match DnsServer::start(&config, self.slot.clone()).await {
            Ok(server) => {
                let bound = server.local_addrs().first().copied().unwrap_or(listen);
                self.status.update(|s| {
                    s.dns_listen = Some(bound.to_string());
                    s.dns_clients = self.site.clients.clone();
                    s.upstreams = upstreams.iter().map(ToString::to_string).collect();
                    s.counters.dns = Some(server.stats());
                    s.set(
                        NamesState::Ready,
                        format!("answering {} on {bound}", self.settings.zone),
                    );
                });
                self.dns = Some(server);
            }
            Err(e) => self
                .status
                .update(|s| s.set(NamesState::Failed, e.to_string())),
        }
    }

    /// The networks again: a new subnet, gateway or set of bridge networks restarts the resolver
    /// (and has the firewall follow); a resolver that failed to start is tried again.
    async fn check_site(&mut self) {
        let Ok(site) = read_site(&self.deps, &self.settings.network).await else {
            return;
        };
        if site != self.site || self.dns.is_none() {
            let clients_changed = site.clients != self.site.clients;
            self.site = site;
            self.start_dns().await;
            if clients_changed {
                self.firewall.notify_one();
            }
        }
    }

    /// A batch of Docker events: one listing for all of them.
    async fn on_events(&mut self, first: DockerEvent, events: &mut mpsc::Receiver<DockerEvent>) {
        let started = Instant::now();
        let mut batch = vec![first];
        while let Ok(more) = events.try_recv() {
            batch.push(more);
        }
        let networks_may_have_changed = batch.iter().any(|e| {
            matches!(
                e,
                DockerEvent::Connected
                    | DockerEvent::Reconnected
                    | DockerEvent::NetworkCreate { .. }
                    | DockerEvent::NetworkDestroy { .. }
            )
        });
        if networks_may_have_changed {
            self.check_site().await;
        }
        let relevant = batch
            .iter()
            .any(|e| !matches!(e, DockerEvent::Disconnected { .. }));
        if relevant {
            self.refresh(Some(started)).await;
        }
    }

    /// Lists the running containers and publishes their records; `cause` is when the event that
    /// asked for it arrived (for the publish-latency histogram).
    async fn refresh(&mut self, cause: Option<Instant>) {
        let list = match self.deps.containers.running_containers().await {
            Ok(l) => l,
            Err(e) => {
                // The last records stay published: Docker restarting does not stop containers
                // elsewhere from resolving ours (they are still routed).
                tracing::debug!(error = %e, "names: containers not listed");
                return;
            }
        };
        let metas: Vec<ContainerMeta> = list
            .iter()
            .map(|c| ContainerMeta::from_labels(&c.name, &c.labels, c.networks.clone()))
            .collect();
        let built = build_records(
            &self.settings.network,
            &metas,
            CatalogLimits::default().max_records_per_host,
        );
        let changed = self.exchange.publish(&built.records).await;
        self.status.update(|s| {
            s.local_records = built.records.len();
            s.skipped = built.skipped.clone();
            if changed {
                s.last_publish = Some(Utc::now());
                if let Some(t) = cause {
                    s.counters.record_publish(t.elapsed());
                }
            }
        });
        if changed {
            tracing::debug!(records = built.records.len(), "names: published");
        }
    }

    async fn set_members(&mut self, ips: &[Ipv4Addr]) {
        let peers = peer_addrs(ips, self.id.private_ip, self.settings.catalog_port);
        self.exchange.set_members(peers).await;
        self.status.update(|s| s.members = ips.len());
    }

    /// A new catalog snapshot: the resolver answers from it at once.
    fn zone(&mut self, catalog: &Catalog) {
        let view = catalog.view(
            &self.settings.zone,
            &self.settings.reverse,
            ZoneTtls::default(),
        );
        let names = view.name_count();
        self.slot.set(view);
        let now = self.exchange.now();
        self.status.update(|s| {
            s.records = catalog.record_count();
            s.names = names;
            s.peers = catalog
                .hosts()
                .iter()
                .map(|h| PeerStatus::of(h, now))
                .collect();
            s.last_update = Some(Utc::now());
            s.counters.zone_updates += 1;
        });
    }
}

/// The real identity: on Alibaba the metadata service (instance id, hostname, private IP, a
/// configured `cloud.private_ip` winning); otherwise the configured private IP and the system
/// hostname, the IP standing in for the instance id.
#[derive(Debug, Clone)]
pub struct HostIdentity {
    cloud: crossdock_config::CloudConfig,
}

impl HostIdentity {
    /// The identity source for `cloud`.
    pub fn new(cloud: crossdock_config::CloudConfig) -> Self {
        Self { cloud }
    }

    async fn read_metadata(&self) -> Result<NamesIdentity, String> {
        use crossdock_alibaba::{system_clock, CallCounters, EnvVars, MetadataClient};
        let settings = crossdock_routes::cloud_settings(&self.cloud);
        let mode = settings
            .metadata_token
            .tightened(EnvVars::from_process().imdsv1_disabled());
        let md = MetadataClient::new(
            &settings.metadata_url,
            mode,
            system_clock(),
            Arc::new(CallCounters::default()),
        )
        .map_err(|e| e.to_string())?;
        let get = |item: &'static str| {
            let md = &md;
            async move { md.get(item, "names").await.map_err(|e| e.to_string()) }
        };
        let instance_id = get("instance-id").await?;
        let hostname = get("hostname").await?;
        let ip_text = match self.cloud.private_ip.trim() {
            "" => get("private-ipv4").await?,
            configured => configured.to_string(),
        };
        Ok(NamesIdentity {
            host_id: HostId(instance_id),
            hostname,
            private_ip: parse_ip(&ip_text)?,
        })
    }
}

fn parse_ip(text: &str) -> Result<Ipv4Addr, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("`{text}` is not an IPv4 address (fix: set [cloud] private_ip)"))
}

#[async_trait]
impl IdentitySource for HostIdentity {
    async fn identity(&self) -> Result<NamesIdentity, String> {
        if self.cloud.provider == crossdock_config::Provider::Alibaba {
            return self.read_metadata().await;
        }
        let private_ip = parse_ip(&self.cloud.private_ip)?;
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        Ok(NamesIdentity {
            host_id: HostId(private_ip.to_string()),
            hostname,
            private_ip,
        })
    }
}
