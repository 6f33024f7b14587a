//! The running containers with their names, labels and IPv4 addresses per network: what container
//! names across hosts (`[names]`) are built from; and the subnets of this host's bridge networks,
//! whose containers may use the resolver (Docker's embedded DNS forwards their questions from their
//! own addresses).
//!
//! One `GET /containers/json` lists them all, with the addresses, so keeping the names current
//! costs one call per burst of Docker events. The answer is turned into [`ContainerSummary`], a
//! struct of our own, by a pure function ([`summary_of`]), tested on Docker's documents; which
//! labels may leave the host is decided by the caller (`crossdock-names` keeps only the two
//! naming labels).

use crate::{BollardDocker, DockerError};
use async_trait::async_trait;
use ipnet::Ipv4Net;
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

/// Lists the running containers and the local bridge networks.
#[async_trait]
pub trait ContainerLister: Send + Sync {
    /// Every running container with its names, labels and addresses.
    async fn running_containers(&self) -> Result<Vec<ContainerSummary>, DockerError>;
    /// The IPv4 subnets of every `bridge`-driver network of this host.
    async fn bridge_subnets(&self) -> Result<Vec<Ipv4Net>, DockerError>;
}

/// The IPv4 subnets of the `bridge`-driver networks among `nets`, sorted, once each.
pub fn bridge_subnets_of(nets: &[bollard::models::Network]) -> Vec<Ipv4Net> {
    let mut out: Vec<Ipv4Net> = nets
        .iter()
        .filter(|n| n.driver.as_deref() == Some("bridge"))
        .flat_map(|n| {
            n.ipam
                .as_ref()
                .and_then(|i| i.config.clone())
                .unwrap_or_default()
        })
        .filter_map(|c| c.subnet?.parse::<Ipv4Net>().ok().map(|s| s.trunc()))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
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

    async fn bridge_subnets(&self) -> Result<Vec<Ipv4Net>, DockerError> {
        let (docker, _) = self.client().await?;
        let opts = bollard::query_parameters::ListNetworksOptions::default();
        match docker.list_networks(Some(opts)).await {
            Ok(nets) => Ok(bridge_subnets_of(&nets)),
            Err(e) => {
                self.forget_client();
                Err(DockerError::Api {
                    call: "GET /networks".into(),
                    message: e.to_string(),
                })
            }
        }
    }
}

impl BollardDocker {
    /// Where Docker keeps the resolv.conf of each running container attached to `network` (its
    /// name with the file's path; `None` when Docker does not say): what `crossdock doctor` reads
    /// to see which resolvers the containers really ask. One inspect per container, at most
    /// `limit` of them.
    pub async fn resolv_conf_paths(
        &self,
        network: &str,
        limit: usize,
    ) -> Result<Vec<(String, Option<String>)>, DockerError> {
        let attached: Vec<ContainerSummary> = self
            .running_containers()
            .await?
            .into_iter()
            .filter(|c| c.networks.contains_key(network))
            .take(limit)
            .collect();
        let (docker, _) = self.client().await?;
        let mut out = Vec::with_capacity(attached.len());
        for c in attached {
            match docker
                .inspect_container(
                    &c.id,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
            {
                Ok(i) => out.push((c.name, i.resolv_conf_path)),
                // Removed between the listing and the inspect: not a problem of the resolvers.
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                Err(e) => {
                    self.forget_client();
                    return Err(DockerError::Api {
                        call: format!("GET /containers/{}/json", c.id),
                        message: e.to_string(),
                    });
                }
            }
        }
        Ok(out)
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
    fn bridge_subnets_are_the_ipv4_ones_of_bridge_networks() {
        use bollard::models::{Ipam, IpamConfig, Network};
        let net = |driver: &str, subnets: &[&str]| Network {
            driver: Some(driver.into()),
            ipam: Some(Ipam {
                config: Some(
                    subnets
                        .iter()
                        .map(|s| IpamConfig {
                            subnet: Some(s.to_string()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        let got = bridge_subnets_of(&[
            net("bridge", &["10.1.11.0/24"]),
            net("bridge", &["172.18.0.0/16", "fd00::/64"]),
            net("host", &[]),
            net("overlay", &["10.0.9.0/24"]),
            net("bridge", &["10.1.11.0/24"]),
        ]);
        let want: Vec<Ipv4Net> = vec![
            "10.1.11.0/24".parse().unwrap(),
            "172.18.0.0/16".parse().unwrap(),
        ];
        assert_eq!(got, want);
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
