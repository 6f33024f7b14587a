//! Each member's agent in the fleet view: its version and when it was last heard.
//!
//! Why a join here and not in the route side: the route side knows the members from ECS (which
//! instances carry the tag, their IPs and routes) and nothing of the agents on them; the names
//! exchange (`crossdock-catalog`) hears the agents and knows nothing of ECS. `crossdock-routes`
//! stays free of the catalog: the agent joins the two when `/status` is rendered, reading the
//! exchange's agent directory at that moment so "last seen" is current, not as of the last sweep.
//!
//! A peer is matched to a member by its catalog identity (the instance id on Alibaba) or else by
//! the address it gossips from (the member's private IP). This host is always known: its own
//! version, seen now. Without `[names]` nothing is heard from the others, so their fields are
//! `null`. A running member whose agent has not been heard for longer than the catalog's silent
//! timeout (the non-member withdrawal, 10 s), or not at all, is *silent*: `crossdock status --fleet`
//! lists it first after the unrouted ones.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

use crossdock_catalog::{AgentDirectory, AgentVersion, PeerAgent};
use crossdock_routes::{FleetHost, FleetStatus};

/// This binary's version, as every agent publishes it.
pub fn this_version() -> Option<AgentVersion> {
    AgentVersion::new(env!("CARGO_PKG_VERSION")).ok()
}

/// What the names task hands to `/status` for the join: the live directory and when a peer counts
/// as silent.
#[derive(Debug, Clone)]
pub struct AgentWatch {
    /// The exchange's agents, read live.
    pub directory: AgentDirectory,
    /// Not heard for longer than this: silent.
    pub silent_after: Duration,
}

/// When an agent was last heard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastSeen {
    /// Seconds before the view was rendered.
    pub secs_ago: u64,
    /// The same as a time (RFC 3339, seconds).
    #[serde(serialize_with = "ser_time")]
    pub at: DateTime<Utc>,
}

fn ser_time<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

impl LastSeen {
    /// Heard `ago` before `now`.
    pub fn ago(ago: Duration, now: DateTime<Utc>) -> Self {
        let at = chrono::Duration::from_std(ago)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .unwrap_or(now);
        Self {
            secs_ago: ago.as_secs(),
            at,
        }
    }
}

/// One member's agent, as the fleet view shows it beside the member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AgentSeen {
    /// The version its agent publishes; `None` when names are off or it is not known.
    pub agent_version: Option<AgentVersion>,
    /// When its agent was last heard; `None` when names are off or it was not heard.
    pub last_seen: Option<LastSeen>,
    /// A running member whose agent was not heard within the silent timeout (names on only).
    pub agent_silent: bool,
}

/// What the exchange knows, for [`join`]: every peer and the silent timeout.
#[derive(Debug, Clone, Copy)]
pub struct Heard<'a> {
    /// The exchange's agents.
    pub peers: &'a [PeerAgent],
    /// Not heard for longer than this: silent.
    pub silent_after: Duration,
}

/// The agent beside each of `hosts` (same order): this host (`own`, its instance id) is seen now
/// with this binary's version; the others as `heard` has them (`None`: names off).
pub fn join(
    hosts: &[FleetHost],
    own: Option<&str>,
    heard: Option<Heard<'_>>,
    now: DateTime<Utc>,
) -> Vec<AgentSeen> {
    hosts
        .iter()
        .map(|h| {
            if own == Some(h.instance_id.as_str()) {
                return AgentSeen {
                    agent_version: this_version(),
                    last_seen: Some(LastSeen::ago(Duration::ZERO, now)),
                    agent_silent: false,
                };
            }
            heard.map_or_else(AgentSeen::default, |k| seen_from(h, k, now))
        })
        .collect()
}

fn seen_from(h: &FleetHost, heard: Heard<'_>, now: DateTime<Utc>) -> AgentSeen {
    let peer = peer_of(h, heard.peers);
    let ago = peer.and_then(|p| p.heard_ago);
    let running = h.status == "Running";
    AgentSeen {
        agent_version: peer.and_then(|p| p.version.clone()),
        last_seen: ago.map(|a| LastSeen::ago(a, now)),
        agent_silent: running && ago.is_none_or(|a| a > heard.silent_after),
    }
}

/// The peer that is member `h`: by identity, else by address.
fn peer_of<'a>(h: &FleetHost, peers: &'a [PeerAgent]) -> Option<&'a PeerAgent> {
    peers.iter().find(|p| p.id.0 == h.instance_id).or_else(|| {
        let ip = h.private_ip?;
        peers.iter().find(|p| p.ip == std::net::IpAddr::V4(ip))
    })
}

/// One member with its agent, as `/status` lists it.
#[derive(Serialize)]
struct HostView<'a> {
    #[serde(flatten)]
    host: &'a FleetHost,
    #[serde(flatten)]
    agent: &'a AgentSeen,
}

/// The `fleet` section of `/status`: the route side's view with each host's agent beside it.
pub fn fleet_json(fleet: &FleetStatus, seen: &[AgentSeen]) -> serde_json::Value {
    let mut doc = serde_json::to_value(fleet).unwrap_or_default();
    let hosts: Vec<HostView<'_>> = fleet
        .hosts
        .iter()
        .zip(seen)
        .map(|(host, agent)| HostView { host, agent })
        .collect();
    doc["hosts"] = serde_json::to_value(hosts).unwrap_or_default();
    doc
}

/// The `fleet` section for `/status` from the agent's state: joins at `now`.
pub fn render(
    fleet: &FleetStatus,
    own: Option<&str>,
    watch: Option<&AgentWatch>,
    now: DateTime<Utc>,
) -> serde_json::Value {
    let peers = watch.map(|w| w.directory.peers()).unwrap_or_default();
    let heard = watch.map(|w| Heard {
        peers: &peers,
        silent_after: w.silent_after,
    });
    fleet_json(fleet, &join(&fleet.hosts, own, heard, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use crossdock_names::HostId;

    fn host(id: &str, ip: &str, status: &str) -> FleetHost {
        FleetHost {
            instance_id: id.into(),
            status: status.into(),
            private_ip: Some(ip.parse().unwrap()),
            vswitch_id: "vsw-1".into(),
            subnet: None,
            routes: Vec::new(),
        }
    }

    fn peer(id: &str, ip: &str, version: &str, ago: Option<u64>) -> PeerAgent {
        PeerAgent {
            id: HostId(id.into()),
            ip: ip.parse().unwrap(),
            version: AgentVersion::new(version).ok(),
            heard_ago: ago.map(Duration::from_secs),
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn members_are_joined_by_instance_id_or_by_address_and_this_host_is_seen_now() {
        let hosts = vec![
            host("i-a", "192.168.1.11", "Running"),
            host("i-b", "192.168.1.12", "Running"),
            host("i-c", "192.168.1.13", "Running"),
            host("i-d", "192.168.1.14", "Stopped"),
            host("i-e", "192.168.1.15", "Running"),
        ];
        let peers = vec![
            peer("i-b", "192.168.1.12", "0.1.0", Some(2)),
            // A host whose catalog identity is its IP (no metadata service).
            peer("192.168.1.13", "192.168.1.13", "0.2.0", Some(45)),
            peer("i-e", "192.168.1.15", "0.1.0", None),
        ];
        let heard = Heard {
            peers: &peers,
            silent_after: Duration::from_secs(10),
        };
        let seen = join(&hosts, Some("i-a"), Some(heard), now());
        let own = &seen[0];
        assert_eq!(own.agent_version, this_version());
        assert!(own.agent_version.is_some());
        assert_eq!(own.last_seen.as_ref().map(|l| l.secs_ago), Some(0));
        let b = &seen[1];
        assert_eq!(
            b.agent_version.as_ref().map(AgentVersion::as_str),
            Some("0.1.0")
        );
        assert_eq!(
            b.last_seen,
            Some(LastSeen {
                secs_ago: 2,
                at: Utc.with_ymd_and_hms(2025, 6, 1, 11, 59, 58).unwrap()
            })
        );
        assert!(!b.agent_silent);
        // Heard 45 s ago: silent.
        assert_eq!(
            seen[2].agent_version.as_ref().map(AgentVersion::as_str),
            Some("0.2.0")
        );
        assert!(seen[2].agent_silent);
        // Stopped and unknown: nothing known, nothing expected.
        assert_eq!(seen[3], AgentSeen::default());
        // Known but never heard while running: silent, version still shown.
        assert!(seen[4].agent_silent && seen[4].last_seen.is_none());
        assert!(seen[4].agent_version.is_some());
    }

    #[test]
    fn without_names_only_this_host_is_known() {
        let hosts = vec![
            host("i-a", "192.168.1.11", "Running"),
            host("i-b", "192.168.1.12", "Running"),
        ];
        let seen = join(&hosts, Some("i-a"), None, now());
        assert!(seen[0].agent_version.is_some());
        assert_eq!(seen[1], AgentSeen::default());
    }

    #[test]
    fn status_json_carries_the_agent_fields_beside_each_member() {
        let fleet = FleetStatus {
            tag: "crossdock-cluster=prod".into(),
            hosts: vec![
                host("i-a", "192.168.1.11", "Running"),
                host("i-b", "192.168.1.12", "Running"),
            ],
            ..FleetStatus::default()
        };
        let v = fleet_json(&fleet, &join(&fleet.hosts, Some("i-a"), None, now()));
        assert_eq!(v["tag"], "crossdock-cluster=prod");
        let a = &v["hosts"][0];
        assert_eq!(a["instance_id"], "i-a");
        assert_eq!(a["private_ip"], "192.168.1.11");
        assert_eq!(a["agent_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(a["last_seen"]["secs_ago"], 0);
        assert_eq!(a["last_seen"]["at"], "2025-06-01T12:00:00Z");
        assert_eq!(a["agent_silent"], false);
        let b = &v["hosts"][1];
        assert!(
            b["agent_version"].is_null() && b["last_seen"].is_null(),
            "{b}"
        );
    }
}
