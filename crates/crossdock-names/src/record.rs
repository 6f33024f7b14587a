//! A host's container records, built from the metadata Docker gives about its containers.
//!
//! The input is a small struct of our own ([`ContainerMeta`]), not Docker's API types, so the
//! rules are tested without Docker and the agent decides how to read Docker. Only what the zone
//! needs is kept: the container's name, the two labels that may name it, and its IPv4 address on
//! each network. [`ContainerMeta::from_labels`] copies exactly those two labels out of a
//! container's label map, so no other label (and no environment) ever reaches the catalog, and
//! only names and addresses leave the host.
//!
//! A container is published only when it has an IPv4 address on the routed network: an address
//! on any other network is not reachable from other hosts. Its fleet name (`<name>.<zone>`) is,
//! in order: the `crossdock.name` label (an explicit choice, so it wins, also inside Compose),
//! the `com.docker.compose.service` label, the container name.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::label::Label;

/// The Compose label naming a container's service.
pub const COMPOSE_SERVICE_LABEL: &str = "com.docker.compose.service";
/// crossdock's own label choosing a container's fleet name.
pub const NAME_LABEL: &str = "crossdock.name";

/// What the records need to know about one container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerMeta {
    /// Docker's container name, with or without the leading `/`.
    pub name: String,
    /// The `com.docker.compose.service` label, if set.
    pub compose_service: Option<String>,
    /// The `crossdock.name` label, if set.
    pub crossdock_name: Option<String>,
    /// The container's IPv4 address by network name.
    pub networks: BTreeMap<String, Ipv4Addr>,
}

impl ContainerMeta {
    /// Keeps only the two naming labels of `labels`.
    pub fn from_labels<'a>(
        name: &str,
        labels: impl IntoIterator<Item = (&'a String, &'a String)>,
        networks: BTreeMap<String, Ipv4Addr>,
    ) -> Self {
        let mut meta = Self {
            name: name.to_string(),
            networks,
            ..Self::default()
        };
        for (k, v) in labels {
            match k.as_str() {
                COMPOSE_SERVICE_LABEL => meta.compose_service = Some(v.clone()),
                NAME_LABEL => meta.crossdock_name = Some(v.clone()),
                _ => {}
            }
        }
        meta
    }

    fn bare_name(&self) -> &str {
        self.name.trim_start_matches('/')
    }

    /// The fleet name by the module's order, sanitised; `None` when no candidate is usable.
    pub fn fleet_name(&self) -> Option<Label> {
        [
            self.crossdock_name.as_deref(),
            self.compose_service.as_deref(),
            Some(self.bare_name()),
        ]
        .into_iter()
        .flatten()
        .find_map(Label::sanitize)
    }
}

/// One published container.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// `<container>` in `<container>.<host>.<zone>`: unique on its host.
    pub container: Label,
    /// `<name>` in `<name>.<zone>`: shared by every container of that name in the fleet.
    pub name: Label,
    /// Its address on the routed network.
    pub ip: Ipv4Addr,
}

/// Why a container was not published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// No IPv4 address on the routed network.
    NotOnRoutedNetwork,
    /// Neither its labels nor its name leave a DNS label.
    NoUsableName,
    /// The host already publishes the maximum number of records.
    OverCap,
}

/// A container left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Docker's container name.
    pub container: String,
    /// Why.
    pub reason: SkipReason,
}

/// The records of one host, and what was left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Built {
    /// Sorted by container label.
    pub records: Vec<ContainerRecord>,
    /// Containers not published.
    pub skipped: Vec<Skipped>,
}

/// Builds a host's records: containers on `routed_network` only, at most `max_records` of them
/// (in byte order of the container names), container labels made unique by
/// [`Label::disambiguated`].
pub fn build_records(
    routed_network: &str,
    containers: &[ContainerMeta],
    max_records: usize,
) -> Built {
    let mut built = Built::default();
    let mut candidates: Vec<(&ContainerMeta, Ipv4Addr)> = Vec::new();
    for c in containers {
        let skip = |reason| Skipped {
            container: c.bare_name().to_string(),
            reason,
        };
        match c.networks.get(routed_network) {
            None => built.skipped.push(skip(SkipReason::NotOnRoutedNetwork)),
            Some(ip) if c.fleet_name().is_some() && Label::sanitize(c.bare_name()).is_some() => {
                candidates.push((c, *ip))
            }
            Some(_) => built.skipped.push(skip(SkipReason::NoUsableName)),
        }
    }
    candidates.sort_by(|a, b| a.0.bare_name().cmp(b.0.bare_name()));
    let mut taken: BTreeSet<Label> = BTreeSet::new();
    for (c, ip) in candidates {
        if built.records.len() >= max_records {
            built.skipped.push(Skipped {
                container: c.bare_name().to_string(),
                reason: SkipReason::OverCap,
            });
            continue;
        }
        let (Some(base), Some(name)) = (Label::sanitize(c.bare_name()), c.fleet_name()) else {
            continue;
        };
        let container = if taken.contains(&base) {
            base.disambiguated(c.bare_name())
        } else {
            base
        };
        taken.insert(container.clone());
        built.records.push(ContainerRecord {
            container,
            name,
            ip,
        });
    }
    built.records.sort();
    built
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, nets: &[(&str, [u8; 4])]) -> ContainerMeta {
        ContainerMeta {
            name: format!("/{name}"),
            networks: nets
                .iter()
                .map(|(n, ip)| (n.to_string(), Ipv4Addr::from(*ip)))
                .collect(),
            ..ContainerMeta::default()
        }
    }

    fn labels(recs: &[ContainerRecord]) -> Vec<(String, String)> {
        recs.iter()
            .map(|r| (r.container.to_string(), r.name.to_string()))
            .collect()
    }

    #[test]
    fn only_the_naming_labels_are_kept() {
        let labels: BTreeMap<String, String> = [
            (COMPOSE_SERVICE_LABEL, "api"),
            (NAME_LABEL, "public-api"),
            ("com.example.secret", "hunter2"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let m = ContainerMeta::from_labels("/proj-api-1", &labels, BTreeMap::new());
        assert_eq!(m.compose_service.as_deref(), Some("api"));
        assert_eq!(m.crossdock_name.as_deref(), Some("public-api"));
        assert!(!format!("{m:?}").contains("hunter2"));
    }

    #[test]
    fn the_fleet_name_is_crossdock_name_then_compose_service_then_container_name() {
        let mut m = meta("proj_web_1", &[]);
        assert_eq!(m.fleet_name().unwrap().as_str(), "proj-web-1");
        m.compose_service = Some("Web".into());
        assert_eq!(m.fleet_name().unwrap().as_str(), "web");
        m.crossdock_name = Some("frontend".into());
        assert_eq!(m.fleet_name().unwrap().as_str(), "frontend");
        // An unusable label falls through to the next candidate.
        m.crossdock_name = Some("___".into());
        assert_eq!(m.fleet_name().unwrap().as_str(), "web");
    }

    #[test]
    fn only_containers_on_the_routed_network_are_published() {
        let cs = [
            meta("web", &[("bridge", [10, 1, 0, 2])]),
            meta("db", &[("backend", [172, 18, 0, 2])]),
            meta(
                "both",
                &[("bridge", [10, 1, 0, 3]), ("backend", [172, 18, 0, 3])],
            ),
        ];
        let b = build_records("bridge", &cs, 100);
        assert_eq!(
            b.records,
            vec![
                ContainerRecord {
                    container: Label::new("both").unwrap(),
                    name: Label::new("both").unwrap(),
                    ip: Ipv4Addr::new(10, 1, 0, 3)
                },
                ContainerRecord {
                    container: Label::new("web").unwrap(),
                    name: Label::new("web").unwrap(),
                    ip: Ipv4Addr::new(10, 1, 0, 2)
                },
            ]
        );
        assert_eq!(
            b.skipped,
            vec![Skipped {
                container: "db".into(),
                reason: SkipReason::NotOnRoutedNetwork
            }]
        );
    }

    #[test]
    fn colliding_container_labels_are_disambiguated_deterministically() {
        let cs = [
            meta("web_1", &[("bridge", [10, 1, 0, 3])]),
            meta("Web-1", &[("bridge", [10, 1, 0, 2])]),
        ];
        let b = build_records("bridge", &cs, 100);
        // "Web-1" < "web_1" in byte order: it keeps the plain label.
        let suffixed = Label::new("web-1").unwrap().disambiguated("web_1");
        assert_eq!(
            labels(&b.records),
            vec![
                ("web-1".to_string(), "web-1".to_string()),
                (suffixed.to_string(), "web-1".to_string())
            ]
        );
        // The same input in another order gives the same records.
        let rev: Vec<_> = cs.iter().rev().cloned().collect();
        assert_eq!(build_records("bridge", &rev, 100), b);
    }

    #[test]
    fn records_beyond_the_cap_are_skipped_and_said_so() {
        let cs: Vec<_> = (0..5u8)
            .map(|i| meta(&format!("c{i}"), &[("bridge", [10, 1, 0, 10 + i])]))
            .collect();
        let b = build_records("bridge", &cs, 3);
        assert_eq!(b.records.len(), 3);
        assert_eq!(
            b.skipped.iter().map(|s| s.reason).collect::<Vec<_>>(),
            vec![SkipReason::OverCap; 2]
        );
        assert_eq!(b.skipped[0].container, "c3");
    }

    #[test]
    fn a_container_without_a_usable_name_is_skipped() {
        let b = build_records("bridge", &[meta("___", &[("bridge", [10, 1, 0, 2])])], 10);
        assert!(b.records.is_empty());
        assert_eq!(b.skipped[0].reason, SkipReason::NoUsableName);
    }
}
