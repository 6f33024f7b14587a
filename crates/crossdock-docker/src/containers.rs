//! The running containers with their names, labels and IPv4 addresses per network: what container
//! names across hosts (`[names]`) are built from.
//!
//! One `GET /containers/json` lists them all, with the addresses, so keeping the names current
//! costs one call per burst of Docker events. The answer is turned into [`ContainerSummary`], a
//! struct of our own, by a pure function ([`summary_of`]), tested on Docker's documents; which
//! labels may leave the host is decided by the caller (`crossdock-names` keeps only the two
//! naming labels).

use crate::{BollardDocker, DockerError};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// One running container as the names need it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerSummary {
    /// The container id.
    pub id: String,
    /// Its name without the leading `/`.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its IPv4 address on each network it is attached to with one.
    pub networks: BTreeMap<String, Ipv4Addr>,
}

/// Lists the running containers.
#[async_trait]
pub trait ContainerLister: Send + Sync {
    /// Every running container with its names, labels and addresses.
    async fn running_containers(&self) -> Result<Vec<ContainerSummary>, DockerError>;
}

/// One entry of `GET /containers/json` as a [`ContainerSummary`]; `None` without a name.
pub fn summary_of(c: &bollard::models::ContainerSummary) -> Option<ContainerSummary> {
    let name = c
        .names
        .as_ref()?
        .first()?
        .trim_start_matches('/')
        .to_string();
    if name.is_empty() {
        return None;
    }
    let networks = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|nets| {
            nets.iter()
                .filter_map(|(net, ep)| {
                    let ip = ep.ip_address.as_deref()?.parse::<Ipv4Addr>().ok()?;
                    Some((net.clone(), ip))
                })
                .collect()
        })
        .unwrap_or_default();
    Some(ContainerSummary {
        id: c.id.clone().unwrap_or_default(),
        name,
        labels: c
            .labels
            .as_ref()
            .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        networks,
    })
}

#[async_trait]
impl ContainerLister for BollardDocker {
    async fn running_containers(&self) -> Result<Vec<ContainerSummary>, DockerError> {
        let (docker, _) = self.client().await?;
        let opts = bollard::query_parameters::ListContainersOptions::default();
        match docker.list_containers(Some(opts)).await {
            Ok(list) => Ok(list.iter().filter_map(summary_of).collect()),
            Err(e) => {
                self.forget_client();
                Err(DockerError::Api {
                    call: "GET /containers/json".into(),
                    message: e.to_string(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerSummaryNetworkSettings, EndpointSettings};
    use std::collections::HashMap;

    fn endpoint(ip: &str) -> EndpointSettings {
        EndpointSettings {
            ip_address: Some(ip.into()),
            ..Default::default()
        }
    }

    #[test]
    fn names_labels_and_ipv4_addresses_per_network() {
        let c = bollard::models::ContainerSummary {
            id: Some("abc".into()),
            names: Some(vec!["/proj-web-1".into()]),
            labels: Some(HashMap::from([(
                "com.docker.compose.service".to_string(),
                "web".to_string(),
            )])),
            network_settings: Some(ContainerSummaryNetworkSettings {
                networks: Some(HashMap::from([
                    ("bridge".to_string(), endpoint("10.1.11.2")),
                    ("backend".to_string(), endpoint("")),
                    ("v6".to_string(), endpoint("fd00::2")),
                ])),
            }),
            ..Default::default()
        };
        let s = summary_of(&c).unwrap();
        assert_eq!((s.id.as_str(), s.name.as_str()), ("abc", "proj-web-1"));
        assert_eq!(s.labels["com.docker.compose.service"], "web");
        assert_eq!(
            s.networks,
            BTreeMap::from([("bridge".to_string(), Ipv4Addr::new(10, 1, 11, 2))])
        );
    }

    #[test]
    fn a_container_without_a_name_is_left_out() {
        assert_eq!(
            summary_of(&bollard::models::ContainerSummary::default()),
            None
        );
        let unnamed = bollard::models::ContainerSummary {
            names: Some(vec!["/".into()]),
            ..Default::default()
        };
        assert_eq!(summary_of(&unnamed), None);
    }
}
