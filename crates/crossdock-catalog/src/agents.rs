//! What the exchange knows about each peer's agent: the version it publishes and when it was last
//! heard from. For the fleet view (`crossdock status --fleet`), which shows both per member.
//!
//! Why here: the exchange is the only place that hears from the other agents at all. Every agent
//! publishes its version as one more key beside its host label ([`crate::encode::AGENT_KEY`]); no
//! other fact about the host leaves it. "Heard" is chitchat's own liveness signal, the heartbeat:
//! a node increments it every gossip round and it spreads with the gossip (directly or through a
//! third member), so a heartbeat that moved since the last read means the agent ran a moment ago.
//! This is sharper than the failure detector's verdict, which keeps holding a host live for a few
//! seconds after it stopped, and it needs nothing of chitchat beyond its public node states.
//!
//! The first sighting of a host counts as heard only when chitchat holds it live: a restarted agent
//! learns the states of dead peers from live ones, with heartbeats that will never move again.
//! Entries follow chitchat's node states: a host chitchat forgot (dead past its grace period) is
//! forgotten here too, so the book is bounded like the catalog (only members can write).
//!
//! Time is an offset from the exchange's origin, as in the catalog, so the rules are tested without
//! waiting.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};

use crossdock_names::HostId;

/// Longest version string taken from a peer.
const VERSION_MAX: usize = 64;

/// An agent's version as published (`0.1.0`, `1.2.0-rc.1+abc`): 1 to 64 characters of letters,
/// digits, `.`, `-` and `+`, so a peer cannot put anything else into `/status` or a terminal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentVersion(String);

/// Why a version string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("agent version {0:?} is not 1 to 64 characters of letters, digits, '.', '-' and '+'")]
pub struct BadVersion(pub String);

impl AgentVersion {
    /// A version, checked.
    pub fn new(s: &str) -> Result<Self, BadVersion> {
        let ok = !s.is_empty()
            && s.len() <= VERSION_MAX
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(BadVersion(s.chars().take(VERSION_MAX).collect()))
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for AgentVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for AgentVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// One peer's agent as the exchange knows it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAgent {
    /// Its identity in the catalog (the instance id on Alibaba, else its private IP).
    pub id: HostId,
    /// The address it gossips from (its private IP).
    pub ip: IpAddr,
    /// The version it publishes (`None`: an agent that publishes none, or a malformed one).
    pub version: Option<AgentVersion>,
    /// How long ago it was last heard (`None`: not since this agent started).
    pub heard_ago: Option<Duration>,
}

/// One read of a host's chitchat state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sighting {
    pub ip: IpAddr,
    pub generation: u64,
    pub heartbeat: u64,
    pub live: bool,
    /// The raw value of its version key.
    pub version: Option<String>,
}

#[derive(Debug, Clone)]
struct Entry {
    ip: IpAddr,
    /// (generation, heartbeat) of the last read.
    beat: (u64, u64),
    raw_version: Option<String>,
    version: Option<AgentVersion>,
    heard_at: Option<Duration>,
}

/// Every peer's agent, updated by the exchange's sync task.
#[derive(Debug, Default)]
pub(crate) struct AgentBook {
    hosts: BTreeMap<HostId, Entry>,
}

impl AgentBook {
    /// Takes one read of `host` at `now`; returns true when it brought a new malformed version.
    pub fn observe(&mut self, host: &HostId, s: Sighting, now: Duration) -> bool {
        let beat = (s.generation, s.heartbeat);
        let changed_raw = self
            .hosts
            .get(host)
            .is_none_or(|e| e.raw_version != s.version);
        let version = s.version.as_deref().and_then(|v| AgentVersion::new(v).ok());
        let malformed = changed_raw && s.version.is_some() && version.is_none();
        match self.hosts.get_mut(host) {
            Some(e) => {
                if beat > e.beat {
                    e.heard_at = Some(now);
                }
                e.beat = e.beat.max(beat);
                e.ip = s.ip;
                e.raw_version = s.version;
                e.version = version;
            }
            None => {
                let entry = Entry {
                    ip: s.ip,
                    beat,
                    raw_version: s.version,
                    version,
                    heard_at: s.live.then_some(now),
                };
                self.hosts.insert(host.clone(), entry);
            }
        }
        malformed
    }

    /// Forgets the hosts chitchat no longer holds.
    pub fn retain(&mut self, held: impl Fn(&HostId) -> bool) {
        self.hosts.retain(|h, _| held(h));
    }

    /// Every host as of `now`.
    pub fn peers(&self, now: Duration) -> Vec<PeerAgent> {
        self.hosts
            .iter()
            .map(|(id, e)| PeerAgent {
                id: id.clone(),
                ip: e.ip,
                version: e.version.clone(),
                heard_ago: e.heard_at.map(|t| now.saturating_sub(t)),
            })
            .collect()
    }
}

/// A handle on the book, cheap to clone, readable at any time without waking the exchange (the
/// agent reads it whenever `/status` is asked for).
#[derive(Debug, Clone)]
pub struct AgentDirectory {
    pub(crate) origin: Instant,
    pub(crate) book: Arc<Mutex<AgentBook>>,
}

impl AgentDirectory {
    /// Every host's agent (this one included) as the exchange knows it now.
    pub fn peers(&self) -> Vec<PeerAgent> {
        let now = self.origin.elapsed();
        self.book
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .peers(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sighting(generation: u64, heartbeat: u64, live: bool, version: &str) -> Sighting {
        Sighting {
            ip: "192.168.1.12".parse().unwrap(),
            generation,
            heartbeat,
            live,
            version: Some(version.to_string()),
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn versions_are_checked() {
        for good in ["0.1.0", "1.2.0-rc.1+abc", "7"] {
            assert_eq!(AgentVersion::new(good).unwrap().as_str(), good);
        }
        let long = "1".repeat(65);
        for bad in ["", "0.1.0 evil", "0.1\n", "\u{1b}[31m", long.as_str()] {
            assert!(AgentVersion::new(bad).is_err(), "{bad:?} taken");
        }
    }

    #[test]
    fn a_moving_heartbeat_is_heard_a_still_one_ages() {
        let h = HostId("i-2".into());
        let mut book = AgentBook::default();
        assert!(!book.observe(&h, sighting(1, 5, true, "0.1.0"), secs(10)));
        book.observe(&h, sighting(1, 6, true, "0.1.0"), secs(12));
        // The failure detector still says live, but the heartbeat stopped.
        book.observe(&h, sighting(1, 6, true, "0.1.0"), secs(20));
        let p = &book.peers(secs(21))[0];
        assert_eq!(p.id, h);
        assert_eq!(p.version.as_ref().map(AgentVersion::as_str), Some("0.1.0"));
        assert_eq!(p.heard_ago, Some(secs(9)));
        assert_eq!(p.ip.to_string(), "192.168.1.12");
    }

    #[test]
    fn a_dead_peer_first_seen_through_others_is_not_heard_and_a_restart_is() {
        let h = HostId("i-3".into());
        let mut book = AgentBook::default();
        book.observe(&h, sighting(1, 40, false, "0.1.0"), secs(3));
        book.observe(&h, sighting(1, 40, false, "0.1.0"), secs(8));
        assert_eq!(book.peers(secs(9))[0].heard_ago, None);
        // Restarted (a new generation) with a new version: heard, and the version follows.
        book.observe(&h, sighting(2, 1, false, "0.2.0"), secs(9));
        let p = &book.peers(secs(10))[0];
        assert_eq!(p.heard_ago, Some(secs(1)));
        assert_eq!(p.version.as_ref().map(AgentVersion::as_str), Some("0.2.0"));
    }

    #[test]
    fn a_malformed_version_is_no_version_and_counted_once() {
        let h = HostId("i-4".into());
        let mut book = AgentBook::default();
        assert!(book.observe(&h, sighting(1, 1, true, "bad version"), secs(1)));
        assert!(!book.observe(&h, sighting(1, 2, true, "bad version"), secs(2)));
        assert_eq!(book.peers(secs(2))[0].version, None);
        book.retain(|id| id.0 != "i-4");
        assert!(book.peers(secs(3)).is_empty());
    }
}
