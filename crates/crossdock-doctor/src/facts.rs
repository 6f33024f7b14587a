//! Everything the checks look at, as plain data.
//!
//! Why a separate layer: gathering touches the kernel, Docker, the agent and the cloud, and needs root
//! or a lab; judging is pure. The checks ([`crate::checks`]) read only a [`Facts`] value, so each of
//! them is unit-tested with canned facts, and the gatherers ([`crate::gather`]) are small adapters over
//! the crates that own each side effect. A fact that could not be gathered is an [`Unavailable`]
//! naming why and what to do, which the check that needs it reports as its failure.

use crate::iptables::Ruleset;
use chrono::{DateTime, Utc};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Why a fact could not be gathered, and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unavailable {
    pub message: String,
    pub fix: String,
}

impl Unavailable {
    pub fn new(message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// A gathered fact, or why not.
pub type Fact<T> = Result<T, Unavailable>;

/// The configuration as doctor found it.
#[derive(Debug, Clone)]
pub struct ConfigFacts {
    pub path: PathBuf,
    /// The parsed, validated file, or the one-line error naming the field and the fix.
    pub config: Result<crossdock_config::Config, crossdock_config::ConfigError>,
}

/// The Docker engine and the served network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DockerFacts {
    /// The endpoint asked, `unix:///var/run/docker.sock`.
    pub endpoint: String,
    /// Engine version, `28.5.2`.
    pub version: String,
    pub api_version: String,
    /// The served network, or why it could not be read.
    pub network: Fact<NetworkFacts>,
}

/// The Docker network whose subnet this host serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkFacts {
    pub name: String,
    pub id: String,
    pub driver: String,
    /// The IPv4 subnet (`None` if the network has none).
    pub subnet: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    /// The bridge device (`docker0`, `br-<id12>`).
    pub bridge: String,
    /// Driver options (`com.docker.network.bridge.gateway_mode_ipv4`, ...).
    pub options: BTreeMap<String, String>,
    /// IPv4 addresses of the containers attached, to aim the walk of the raw table at a real one.
    pub containers: Vec<Ipv4Addr>,
}

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkFacts {
    pub name: String,
    pub mtu: u32,
    pub up: bool,
}

/// The interface towards the VPC and how it was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExternalFacts {
    pub link: LinkFacts,
    /// `configured` (external_interface in the file) or `default route`.
    pub chosen_by: String,
    /// The gateway towards the peers, when the route to them leaves by this interface.
    pub default_gateway: Option<Ipv4Addr>,
}

/// What `ip route get` says about one destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteLookup {
    pub destination: Ipv4Addr,
    pub dev: String,
    pub gateway: Option<Ipv4Addr>,
    pub src: Option<Ipv4Addr>,
    /// `unicast`, `unreachable`, `blackhole`, `prohibit`, `local`.
    pub kind: String,
}

/// Host-side facts.
#[derive(Debug, Clone)]
pub struct HostFacts {
    /// sysctl values by `/proc/sys` path (`net/ipv4/ip_forward`).
    pub sysctls: BTreeMap<String, Fact<String>>,
    pub external: Fact<ExternalFacts>,
    /// The bridge of the served network, when Docker said which it is.
    pub bridge: Option<Fact<LinkFacts>>,
    /// Route back to a sample peer address in the cluster range (outside the local subnet): where
    /// strict reverse-path filtering would look.
    pub peer_route: Option<Fact<RouteLookup>>,
    /// `iptables-save -c` of every table.
    pub iptables: Fact<Ruleset>,
}

/// One condition of the agent's `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCondition {
    /// The agent's state vocabulary (a reason may be newer than this doctor, so it stays text).
    pub state: crossdock_status::State,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// The parts of the agent's `/status` doctor uses (the full JSON is kept for `--json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentFacts {
    pub socket: PathBuf,
    pub version: Option<String>,
    pub pid: Option<u64>,
    pub subnet: Option<String>,
    pub conditions: BTreeMap<String, AgentCondition>,
    pub raw: serde_json::Value,
}

/// Whether the agent answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AgentState {
    Running(AgentFacts),
    /// Nothing listens on the socket (or it does not exist).
    NotRunning {
        socket: PathBuf,
        message: String,
    },
}

/// The ECS instance as the metadata service describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetadataFacts {
    pub url: String,
    /// The session-token mode in force (`used if offered`, `required`, `not used`).
    pub token_mode: String,
    pub instance_id: String,
    pub region_id: String,
    pub vpc_id: String,
    pub vswitch_id: String,
    pub private_ip: String,
    pub eni_id: String,
}

/// The credentials doctor would sign with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialFacts {
    /// `ram role <name>`, `environment`, `config file`.
    pub source: String,
    /// The AccessKey id with all but its first and last four characters masked.
    pub access_key_id: String,
    pub expiration: Option<DateTime<Utc>>,
    /// Whether a signed read call was accepted (the keys and token are valid).
    pub accepted: Fact<()>,
}

/// How a permission was probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeMethod {
    /// `DryRun=true`: the API checks the permission and the parameters without acting.
    DryRun,
    /// A read call of the action itself.
    Read,
    /// The action has no dry run and is not read-only: not probed.
    NotProbed,
    /// A write naming an entry or next hop that does not exist: the API checks the permission,
    /// then refuses the request, so nothing changes (`CreateRouteEntries`, `DeleteRouteEntries`).
    UnknownTarget,
}

/// One API action crossdock uses, and whether this identity may call it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PermissionFact {
    pub action: String,
    pub method: ProbeMethod,
    /// Ok, or the API's refusal (`Forbidden.RAM: ...`).
    pub result: Fact<()>,
}

/// The cloud side, gathered only for `provider = "alibaba"`.
#[derive(Debug, Clone)]
pub struct CloudFacts {
    pub metadata: Fact<MetadataFacts>,
    pub credentials: Fact<CredentialFacts>,
    pub permissions: Vec<PermissionFact>,
    /// The route tables crossdock registers in.
    pub route_tables: Fact<Vec<String>>,
    /// Every entry of those tables.
    pub routes: Fact<Vec<crossdock_alibaba::RouteEntry>>,
    /// The VPC's and the vSwitches' CIDRs a container subnet must stay clear of.
    pub cidrs: Fact<crossdock_routes::plan::NetworkCidrs>,
    /// Where `cidrs` came from (`the API`, or `the metadata service` when DescribeVSwitches failed).
    pub cidrs_source: String,
    /// The ENI's source/destination check (true = on = routed traffic dropped).
    pub source_dest_check: Fact<bool>,
    /// Custom route entries allowed per table (the account's quota).
    pub route_quota: u32,
    /// Fleet mode's members and instances (`None` in per-host mode; see [`crate::fleet`]).
    pub fleet: Option<crate::fleet::FleetFacts>,
    /// The VPC's table layout and the tables on a path to this host (`None` when the listings
    /// failed; see [`crate::table_checks`]).
    pub table_paths: Option<crate::table_checks::TableFacts>,
}

/// Everything one doctor run looked at.
#[derive(Debug, Clone)]
pub struct Facts {
    pub now: DateTime<Utc>,
    pub config: ConfigFacts,
    pub docker: Fact<DockerFacts>,
    pub host: HostFacts,
    pub agent: AgentState,
    /// `None` when `cloud.provider = "none"`.
    pub cloud: Option<CloudFacts>,
    /// Container names' facts; `None` with `[names]` off (see [`crate::names`]).
    pub names: Option<crate::names::NamesFacts>,
}

impl Facts {
    /// The configuration, if it loaded.
    pub fn cfg(&self) -> Option<&crossdock_config::Config> {
        self.config.config.as_ref().ok()
    }

    /// The served network, if Docker answered and has it.
    pub fn network(&self) -> Option<&NetworkFacts> {
        self.docker.as_ref().ok()?.network.as_ref().ok()
    }

    /// The served subnet: the Docker network's, or `docker.static_subnet`.
    pub fn subnet(&self) -> Option<Ipv4Net> {
        self.network()
            .and_then(|n| n.subnet)
            .or_else(|| self.static_subnet())
    }

    /// `docker.static_subnet`, when the host serves a fixed subnet without Docker.
    pub fn static_subnet(&self) -> Option<Ipv4Net> {
        self.cfg()?.docker.static_subnet
    }

    /// A sysctl value by `/proc/sys` path.
    pub fn sysctl(&self, path: &str) -> Option<&Fact<String>> {
        self.host.sysctls.get(path)
    }

    /// The external interface's name, if found.
    pub fn external_name(&self) -> Option<&str> {
        self.host
            .external
            .as_ref()
            .ok()
            .map(|e| e.link.name.as_str())
    }
}

/// The first address of the cluster ranges that lies outside `local`: a stand-in for "a peer".
pub fn sample_peer(cluster: &[Ipv4Net], local: Option<Ipv4Net>) -> Option<Ipv4Addr> {
    for c in cluster {
        for host in c.hosts().take(1 << 16) {
            if local.is_none_or(|l| !l.contains(&host)) && host != c.network() {
                return Some(host);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_peer_avoids_the_local_subnet() {
        let c: Vec<Ipv4Net> = vec!["10.0.0.0/8".parse().unwrap()];
        let p = sample_peer(&c, Some("10.0.0.0/24".parse().unwrap())).unwrap();
        assert_eq!(p, "10.0.1.0".parse::<Ipv4Addr>().unwrap());
        let p = sample_peer(&c, Some("10.1.0.0/24".parse().unwrap())).unwrap();
        assert_eq!(p, "10.0.0.1".parse::<Ipv4Addr>().unwrap());
        let only: Vec<Ipv4Net> = vec!["10.1.0.0/24".parse().unwrap()];
        assert_eq!(
            sample_peer(&only, Some("10.1.0.0/24".parse().unwrap())),
            None
        );
    }
}
