//! Watches the local Docker daemon: the served network's subnet and bridge, events, restarts.
//!
//! The agent needs three things from Docker: which subnet and bridge device the served network has
//! (that is what gets routed to this host and what the firewall rules name), a signal whenever Docker
//! may have rebuilt its iptables chains or changed the network (network create/destroy/connect/
//! disconnect, container start: Docker 28 adds a raw-table DROP per container), and a signal when
//! the daemon comes back after a restart (the subnet may have changed with `bip`, and Docker has
//! rebuilt every chain). [`DockerSource`] is that seam; [`BollardDocker`] implements it with bollard
//! over the unix socket, and the agent's unit tests use an in-memory one.
//!
//! At boot the socket may not exist yet: [`BollardDocker::wait_ready`] and the event watcher retry
//! with capped exponential backoff until the socket exists and `/_ping` answers.
//!
//! Requests go unversioned (bollard joins absolute paths onto the base URL, dropping its `/v1.xx`
//! prefix), so the same client talks to Docker 20.10 (API 1.41) and 28.x (API 1.51).

// Runtime code reports errors instead of panicking (tests may unwrap: clippy.toml); casts that could
// truncate are written as checked conversions. Exceptions carry their reason where they stand.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

pub mod containers;

pub use containers::{ContainerLister, ContainerSummary};

use async_trait::async_trait;
use bollard::query_parameters::EventsOptions;
use crossdock_backoff::Exponential;
use futures_util::StreamExt;
use ipnet::Ipv4Net;
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The network the agent serves, as Docker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedNetwork {
    pub name: String,
    pub id: String,
    /// The network's IPv4 subnet (the first IPv4 IPAM config).
    pub subnet: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    /// The Linux bridge device: `docker0` for the default bridge, else the network's
    /// `com.docker.network.bridge.name` option, else `br-<first 12 characters of the id>`.
    pub bridge: String,
    /// The daemon's version string (`20.10.24+dfsg1`, `28.5.2+dfsg3`).
    pub docker_version: String,
}

/// The engine and the served network as a diagnosis shows them (`crossdock doctor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineReport {
    /// Engine version, `28.5.2`.
    pub version: String,
    /// API version, `1.51` (empty if the daemon did not say).
    pub api_version: String,
    /// The served network, or why it is unusable.
    pub network: Result<NetworkDetail, DockerError>,
}

/// The served network with what a diagnosis shows beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkDetail {
    pub served: ServedNetwork,
    /// Driver options (`com.docker.network.bridge.gateway_mode_ipv4`, ...).
    pub options: BTreeMap<String, String>,
    /// IPv4 addresses of the attached containers, sorted.
    pub containers: Vec<Ipv4Addr>,
}

/// Builds a [`NetworkDetail`] from Docker's network document.
pub fn network_detail(
    requested: &str,
    net: &bollard::models::Network,
    docker_version: &str,
) -> Result<NetworkDetail, DockerError> {
    let served = served_network(requested, net, docker_version)?;
    let options = net
        .options
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut containers: Vec<Ipv4Addr> = net
        .containers
        .iter()
        .flat_map(|c| c.values())
        .filter_map(|c| {
            let a = c.ipv4_address.as_deref()?;
            a.split('/').next()?.parse().ok()
        })
        .collect();
    containers.sort();
    Ok(NetworkDetail {
        served,
        options,
        containers,
    })
}

/// Something happened that may have changed the served network or Docker's iptables rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerEvent {
    NetworkCreate {
        network: String,
    },
    NetworkDestroy {
        network: String,
    },
    NetworkConnect {
        network: String,
        container: String,
    },
    NetworkDisconnect {
        network: String,
        container: String,
    },
    ContainerStart {
        container: String,
    },
    /// The watcher reached the daemon for the first time (at boot it may come up after the agent).
    Connected,
    /// The event stream ended (daemon stopped or restarting); the watcher is reconnecting.
    Disconnected {
        reason: String,
    },
    /// The daemon answers again after the stream ended: re-inspect and re-assert everything.
    Reconnected,
}

/// Why a Docker query failed. Every message names the thing and the fix: [`DockerError::problem`]
/// and [`DockerError::fix`] give them apart (the doctor shows them in two columns), `Display` joins
/// them as `<problem> (fix: <fix>)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerError {
    Unavailable { socket: String, message: String },
    NetworkNotFound { name: String },
    NotBridge { name: String, driver: String },
    NoIpv4Subnet { name: String },
    Api { call: String, message: String },
}

impl DockerError {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            DockerError::Unavailable { .. } => "docker_unavailable",
            DockerError::NetworkNotFound { .. } => "docker_network_not_found",
            DockerError::NotBridge { .. } => "docker_network_not_bridge",
            DockerError::NoIpv4Subnet { .. } => "docker_network_no_subnet",
            DockerError::Api { .. } => "docker_api",
        }
    }

    /// What went wrong, naming the thing.
    pub fn problem(&self) -> String {
        match self {
            DockerError::Unavailable { socket, message } => {
                format!("Docker is not answering on {socket}: {message}")
            }
            DockerError::NetworkNotFound { name } => {
                format!("Docker network `{name}` does not exist")
            }
            DockerError::NotBridge { name, driver } => {
                format!("Docker network `{name}` uses the `{driver}` driver")
            }
            DockerError::NoIpv4Subnet { name } => {
                format!("Docker network `{name}` has no IPv4 subnet")
            }
            DockerError::Api { call, message } => {
                format!("Docker API call {call} failed: {message}")
            }
        }
    }

    /// How to repair it, when there is a known repair.
    pub fn fix(&self) -> Option<&'static str> {
        match self {
            DockerError::Unavailable { .. } => {
                Some("start Docker, or set [docker] host to its socket")
            }
            DockerError::NetworkNotFound { .. } => Some(
                "create it, or set [docker] network to an existing bridge network; `docker network ls` lists them",
            ),
            DockerError::NotBridge { .. } => {
                Some("crossdock serves bridge networks; name one in [docker] network")
            }
            DockerError::NoIpv4Subnet { .. } => Some(
                "give it one, e.g. `bip` in daemon.json for the default bridge or --subnet for a user-defined network",
            ),
            DockerError::Api { .. } => None,
        }
    }
}

impl std::fmt::Display for DockerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.problem())?;
        match self.fix() {
            Some(fix) => write!(f, " (fix: {fix})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for DockerError {}

/// What the agent needs from Docker.
#[async_trait]
pub trait DockerSource: Send + Sync {
    /// The served network's subnet, bridge and the daemon version.
    async fn inspect_network(&self, name: &str) -> Result<ServedNetwork, DockerError>;
    /// Starts a task sending [`DockerEvent`]s on `tx` until the receiver is dropped, reconnecting
    /// across daemon restarts.
    fn watch(&self, tx: mpsc::Sender<DockerEvent>) -> JoinHandle<()>;
}

/// Picks the bridge device for a network (see [`ServedNetwork::bridge`]).
pub fn bridge_name(name: &str, id: &str, options: &HashMap<String, String>) -> String {
    if let Some(b) = options
        .get("com.docker.network.bridge.name")
        .filter(|b| !b.is_empty())
    {
        return b.clone();
    }
    if name == "bridge" {
        return "docker0".into();
    }
    format!("br-{}", id.get(..12).unwrap_or(id))
}

/// Builds a [`ServedNetwork`] from Docker's network document.
pub fn served_network(
    requested: &str,
    net: &bollard::models::Network,
    docker_version: &str,
) -> Result<ServedNetwork, DockerError> {
    let name = net.name.clone().unwrap_or_else(|| requested.to_string());
    let id = net.id.clone().unwrap_or_default();
    let driver = net.driver.clone().unwrap_or_default();
    if driver != "bridge" {
        return Err(DockerError::NotBridge { name, driver });
    }
    let configs = net
        .ipam
        .as_ref()
        .and_then(|i| i.config.clone())
        .unwrap_or_default();
    let (subnet, gateway) = configs
        .iter()
        .find_map(|c| {
            let subnet: Ipv4Net = c.subnet.as_deref()?.parse().ok()?;
            let gateway = c.gateway.as_deref().and_then(|g| g.parse().ok());
            Some((subnet.trunc(), gateway))
        })
        .ok_or_else(|| DockerError::NoIpv4Subnet { name: name.clone() })?;
    let options = net.options.clone().unwrap_or_default();
    Ok(ServedNetwork {
        bridge: bridge_name(&name, &id, &options),
        name,
        id,
        subnet,
        gateway,
        docker_version: docker_version.to_string(),
    })
}

/// Maps one Docker event to ours; `None` for events that cannot change the host state.
pub fn map_event(ev: &bollard::models::EventMessage) -> Option<DockerEvent> {
    use bollard::models::EventMessageTypeEnum as T;
    let action = ev.action.as_deref().unwrap_or_default();
    let actor = ev.actor.as_ref();
    let id = actor.and_then(|a| a.id.clone()).unwrap_or_default();
    let attr = |k: &str| {
        actor
            .and_then(|a| a.attributes.as_ref())
            .and_then(|m| m.get(k).cloned())
            .unwrap_or_default()
    };
    match (ev.typ?, action) {
        (T::NETWORK, "create") => Some(DockerEvent::NetworkCreate {
            network: attr("name"),
        }),
        (T::NETWORK, "destroy") => Some(DockerEvent::NetworkDestroy {
            network: attr("name"),
        }),
        (T::NETWORK, "connect") => Some(DockerEvent::NetworkConnect {
            network: attr("name"),
            container: attr("container"),
        }),
        (T::NETWORK, "disconnect") => Some(DockerEvent::NetworkDisconnect {
            network: attr("name"),
            container: attr("container"),
        }),
        (T::CONTAINER, "start") => Some(DockerEvent::ContainerStart { container: id }),
        _ => None,
    }
}

/// Waits between attempts to reach the daemon: 200 ms, 400 ms, ... up to 5 s.
pub const RECONNECT_BACKOFF: Exponential =
    Exponential::new(Duration::from_millis(200), Duration::from_secs(5));

/// Docker over its unix socket, through bollard.
#[derive(Debug)]
pub struct BollardDocker {
    socket: PathBuf,
    client: Mutex<Option<(bollard::Docker, String)>>,
}

impl BollardDocker {
    /// A client for the daemon at `socket` (a path, or `unix://<path>`). Nothing is contacted yet.
    pub fn new(socket: impl AsRef<Path>) -> Self {
        let s = socket.as_ref().to_string_lossy();
        let path = s.strip_prefix("unix://").unwrap_or(&s).to_string();
        Self {
            socket: PathBuf::from(path),
            client: Mutex::new(None),
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn unavailable(&self, message: impl std::fmt::Display) -> DockerError {
        DockerError::Unavailable {
            socket: self.socket.display().to_string(),
            message: message.to_string(),
        }
    }

    /// One attempt: the socket exists, `/_ping` answers, `/version` is read.
    pub async fn connect_once(&self) -> Result<(bollard::Docker, String), DockerError> {
        connect_once(&self.socket).await
    }

    /// Retries [`BollardDocker::connect_once`] with backoff until it works; returns the version.
    pub async fn wait_ready(&self) -> String {
        let mut backoff = RECONNECT_BACKOFF.delays();
        let mut attempts = 0u32;
        loop {
            match self.client().await {
                Ok((_, version)) => return version,
                Err(e) => {
                    attempts += 1;
                    if attempts == 1 || attempts % 10 == 0 {
                        tracing::warn!(error = %e, attempts, "waiting for Docker");
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    /// The cached client, connecting if there is none.
    async fn client(&self) -> Result<(bollard::Docker, String), DockerError> {
        if let Some(c) = self
            .client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(c);
        }
        let c = self.connect_once().await?;
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    fn forget_client(&self) {
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// How many containers the daemon has, running or stopped (`GET /info`). `crossdock init` asks
    /// before changing the bridge subnet under a running Docker.
    pub async fn container_count(&self) -> Result<u64, DockerError> {
        let (docker, _) = self.client().await?;
        match docker.info().await {
            Ok(info) => Ok(info.containers.unwrap_or(0).max(0).unsigned_abs()),
            Err(e) => {
                self.forget_client();
                Err(DockerError::Api {
                    call: "GET /info".into(),
                    message: e.to_string(),
                })
            }
        }
    }
}

async fn connect_once(socket: &Path) -> Result<(bollard::Docker, String), DockerError> {
    let unavailable = |m: String| DockerError::Unavailable {
        socket: socket.display().to_string(),
        message: m,
    };
    let path = socket.to_string_lossy();
    let docker = bollard::Docker::connect_with_unix(&path, 30, bollard::API_DEFAULT_VERSION)
        .map_err(|e| unavailable(e.to_string()))?;
    docker
        .ping()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let version = docker
        .version()
        .await
        .map_err(|e| unavailable(e.to_string()))?
        .version
        .unwrap_or_default();
    Ok((docker, version))
}

fn is_connection_error(e: &bollard::errors::Error) -> bool {
    use bollard::errors::Error as E;
    matches!(
        e,
        E::SocketNotFoundError(_)
            | E::HyperResponseError { .. }
            | E::RequestTimeoutError
            | E::IOError { .. }
    )
}

#[async_trait]
impl DockerSource for BollardDocker {
    async fn inspect_network(&self, name: &str) -> Result<ServedNetwork, DockerError> {
        let (docker, version) = self.client().await?;
        match docker
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            Ok(net) => served_network(name, &net, &version),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(DockerError::NetworkNotFound { name: name.into() }),
            Err(e) if is_connection_error(&e) => {
                self.forget_client();
                Err(self.unavailable(e))
            }
            Err(e) => {
                // A restarted daemon can answer with a server error on a stale connection: reconnect
                // next time.
                self.forget_client();
                Err(DockerError::Api {
                    call: format!("GET /networks/{name}"),
                    message: e.to_string(),
                })
            }
        }
    }

    fn watch(&self, tx: mpsc::Sender<DockerEvent>) -> JoinHandle<()> {
        let socket = self.socket.clone();
        tokio::spawn(watch_events(socket, tx))
    }
}

impl BollardDocker {
    /// One fresh look for a diagnosis: the engine's versions and the network `name` with its
    /// options and containers. Only an unreachable daemon is an error; a network problem is
    /// reported inside the report.
    pub async fn engine_report(&self, name: &str) -> Result<EngineReport, DockerError> {
        let (docker, version) = self.connect_once().await?;
        let api_version = docker
            .version()
            .await
            .ok()
            .and_then(|v| v.api_version)
            .unwrap_or_default();
        let network = match docker
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            Ok(net) => network_detail(name, &net, &version),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(DockerError::NetworkNotFound { name: name.into() }),
            Err(e) => Err(DockerError::Api {
                call: format!("GET /networks/{name}"),
                message: e.to_string(),
            }),
        };
        Ok(EngineReport {
            version,
            api_version,
            network,
        })
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The watcher loop: connect (with backoff), subscribe, send [`DockerEvent::Connected`], forward
/// events; when the stream ends, say so, reconnect, and send [`DockerEvent::Reconnected`]. Subscriptions start `since` the moment just
/// before the daemon was found answering, so an event racing the subscription is replayed, not lost.
async fn watch_events(socket: PathBuf, tx: mpsc::Sender<DockerEvent>) {
    let mut first = true;
    loop {
        let mut backoff = RECONNECT_BACKOFF.delays();
        let (docker, since) = loop {
            let since = unix_now() - 1;
            match connect_once(&socket).await {
                Ok((d, _)) => break (d, since),
                Err(e) => {
                    tracing::debug!(error = %e, "event watcher: Docker not answering yet");
                    if tx.is_closed() {
                        return;
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        };
        let filters = HashMap::from([
            (
                "type".to_string(),
                vec!["network".into(), "container".into()],
            ),
            (
                "event".to_string(),
                vec![
                    "create".into(),
                    "destroy".into(),
                    "connect".into(),
                    "disconnect".into(),
                    "start".into(),
                ],
            ),
        ]);
        let mut stream = docker.events(Some(EventsOptions {
            since: Some(since.to_string()),
            until: None,
            filters: Some(filters),
        }));
        let hello = if first {
            DockerEvent::Connected
        } else {
            DockerEvent::Reconnected
        };
        if tx.send(hello).await.is_err() {
            return;
        }
        first = false;
        let reason = loop {
            match stream.next().await {
                Some(Ok(ev)) => {
                    if let Some(mapped) = map_event(&ev) {
                        tracing::debug!(event = ?mapped, "Docker event");
                        if tx.send(mapped).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Err(e)) => break e.to_string(),
                None => break "the event stream ended".to_string(),
            }
        };
        tracing::info!(reason, "Docker event stream lost; reconnecting");
        if tx.send(DockerEvent::Disconnected { reason }).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{
        EventActor, EventMessage, EventMessageTypeEnum, Ipam, IpamConfig, Network,
    };

    fn network(name: &str, driver: &str, subnets: &[&str], opts: &[(&str, &str)]) -> Network {
        Network {
            name: Some(name.into()),
            id: Some("0123456789abcdef0123".into()),
            driver: Some(driver.into()),
            ipam: Some(Ipam {
                config: Some(
                    subnets
                        .iter()
                        .map(|s| IpamConfig {
                            subnet: Some(s.to_string()),
                            gateway: Some("10.1.0.1".into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            options: Some(
                opts.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn default_bridge_is_docker0_and_user_networks_br_id() {
        let n = served_network(
            "bridge",
            &network("bridge", "bridge", &["10.1.0.0/24"], &[]),
            "20.10.24",
        )
        .unwrap();
        assert_eq!(n.bridge, "docker0");
        assert_eq!(n.subnet, "10.1.0.0/24".parse::<Ipv4Net>().unwrap());
        assert_eq!(n.gateway, Some("10.1.0.1".parse().unwrap()));
        assert_eq!(n.docker_version, "20.10.24");
        let n = served_network("x", &network("x", "bridge", &["10.1.0.0/24"], &[]), "28").unwrap();
        assert_eq!(n.bridge, "br-0123456789ab");
        let n = served_network(
            "x",
            &network(
                "x",
                "bridge",
                &["10.1.0.0/24"],
                &[("com.docker.network.bridge.name", "cd0")],
            ),
            "28",
        )
        .unwrap();
        assert_eq!(n.bridge, "cd0");
    }

    #[test]
    fn ipv6_first_and_host_bits_are_handled() {
        let n = served_network(
            "x",
            &network("x", "bridge", &["fd00::/64", "10.1.0.1/24"], &[]),
            "28",
        )
        .unwrap();
        assert_eq!(n.subnet.to_string(), "10.1.0.0/24");
    }

    #[test]
    fn non_bridge_and_subnetless_networks_are_refused() {
        let e =
            served_network("o", &network("o", "overlay", &["10.1.0.0/24"], &[]), "28").unwrap_err();
        assert_eq!(e.kind(), "docker_network_not_bridge");
        let e =
            served_network("x", &network("x", "bridge", &["fd00::/64"], &[]), "28").unwrap_err();
        assert!(e.to_string().contains("no IPv4 subnet"), "{e}");
    }

    #[test]
    fn errors_give_problem_and_fix_apart_and_together() {
        let e = DockerError::NetworkNotFound { name: "web".into() };
        assert_eq!(e.problem(), "Docker network `web` does not exist");
        assert_eq!(
            e.to_string(),
            format!("{} (fix: {})", e.problem(), e.fix().unwrap())
        );
        let e = DockerError::Api {
            call: "GET /networks/web".into(),
            message: "500 Internal Server Error".into(),
        };
        assert_eq!(e.fix(), None);
        assert_eq!(
            e.to_string(),
            "Docker API call GET /networks/web failed: 500 Internal Server Error"
        );
    }

    #[test]
    fn network_detail_lists_options_and_container_addresses() {
        use bollard::models::NetworkContainer;
        let mut n = network("bridge", "bridge", &["10.1.0.0/24"], &[("k", "v")]);
        n.containers = Some(
            [("b", "10.1.0.3/24"), ("a", "10.1.0.2/24"), ("c", "")]
                .iter()
                .map(|(id, ip)| {
                    (
                        id.to_string(),
                        NetworkContainer {
                            ipv4_address: Some(ip.to_string()),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
        );
        let d = network_detail("bridge", &n, "28.5.2").unwrap();
        assert_eq!(d.served.bridge, "docker0");
        assert_eq!(d.options["k"], "v");
        assert_eq!(
            d.containers,
            vec![
                "10.1.0.2".parse::<Ipv4Addr>().unwrap(),
                "10.1.0.3".parse().unwrap()
            ]
        );
        let overlay = network("o", "overlay", &["10.1.0.0/24"], &[]);
        assert_eq!(
            network_detail("o", &overlay, "28").unwrap_err().kind(),
            "docker_network_not_bridge"
        );
    }

    fn event(typ: EventMessageTypeEnum, action: &str, attrs: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            typ: Some(typ),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some("abc".into()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn events_map_to_ours() {
        use EventMessageTypeEnum as T;
        assert_eq!(
            map_event(&event(
                T::NETWORK,
                "connect",
                &[("name", "bridge"), ("container", "c1")]
            )),
            Some(DockerEvent::NetworkConnect {
                network: "bridge".into(),
                container: "c1".into()
            })
        );
        assert_eq!(
            map_event(&event(T::CONTAINER, "start", &[])),
            Some(DockerEvent::ContainerStart {
                container: "abc".into()
            })
        );
        assert_eq!(
            map_event(&event(T::NETWORK, "destroy", &[("name", "n")])),
            Some(DockerEvent::NetworkDestroy {
                network: "n".into()
            })
        );
        assert_eq!(map_event(&event(T::CONTAINER, "die", &[])), None);
        assert_eq!(map_event(&event(T::IMAGE, "pull", &[])), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = RECONNECT_BACKOFF.delays();
        let seq: Vec<u128> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(seq, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }

    #[tokio::test]
    async fn a_missing_socket_is_unavailable_naming_it() {
        let d = BollardDocker::new("unix:///nonexistent/crossdock-test/docker.sock");
        assert_eq!(
            d.socket(),
            Path::new("/nonexistent/crossdock-test/docker.sock")
        );
        let e = d.inspect_network("bridge").await.unwrap_err();
        assert_eq!(e.kind(), "docker_unavailable");
        assert!(
            e.to_string()
                .contains("/nonexistent/crossdock-test/docker.sock"),
            "{e}"
        );
    }
}
