//! The derived-subnet mapping: a host's container subnet computed from its private IP alone.
//!
//! Why: in fleet mode every host boots from the same user data, so nothing per host may be written
//! down; yet every host needs a container subnet of its own, and every agent must be able to compute
//! any *other* member's subnet from the member's private IP (to write its route). A pure,
//! deterministic function of the IP gives both, and uniqueness follows from private IPs being unique
//! in a VPC.
//!
//! The rule: the IP's offset in the concatenation of the host ranges (in the configured order; every
//! address counts, network and broadcast addresses included) selects the offset-th block of
//! `/prefix_len` in the concatenation of the cluster ranges (in order). The mapping is built only if
//! it is injective and stays inside the cluster ranges: enough blocks for every host address, the
//! prefix no shorter than any cluster range's, host ranges disjoint from each other and from the
//! cluster ranges (a container subnet overlapping a vSwitch would shadow real hosts).
//!
//! ```
//! use crossdock_config::mapping::SubnetMapping;
//! let m = SubnetMapping::new(&["192.168.0.0/16".parse().unwrap()], &["10.0.0.0/8".parse().unwrap()], 24).unwrap();
//! assert_eq!(m.subnet_for("192.168.1.10".parse().unwrap()).unwrap().to_string(), "10.1.10.0/24");
//! ```

use ipnet::Ipv4Net;
use std::fmt;
use std::net::Ipv4Addr;

/// The longest per-host prefix the mapping accepts: a /31 or /32 leaves no room for containers.
pub const MAX_PREFIX_LEN: u8 = 30;

/// Why a mapping cannot be built, or an IP cannot be mapped. `Display` is one line:
/// `<field>: <what is wrong> (fix: <what to do>)`, like [`crate::ConfigError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingError {
    /// No host range given (and no VPC CIDR to fall back to).
    NoHostRanges,
    /// No cluster range given.
    NoClusterRanges,
    /// `prefix_len` is longer than [`MAX_PREFIX_LEN`].
    PrefixTooLong { prefix_len: u8 },
    /// `prefix_len` is shorter than a cluster range's own prefix, so not even one block fits in it.
    PrefixShorterThanCluster { prefix_len: u8, cluster: Ipv4Net },
    /// Two host ranges overlap: one IP would have two offsets.
    HostRangesOverlap { a: Ipv4Net, b: Ipv4Net },
    /// Two cluster ranges overlap: two offsets would give the same block.
    ClusterRangesOverlap { a: Ipv4Net, b: Ipv4Net },
    /// A host range overlaps a cluster range: container subnets would shadow hosts.
    HostOverlapsCluster { host: Ipv4Net, cluster: Ipv4Net },
    /// More host addresses than blocks of `prefix_len` in the cluster ranges.
    NotEnoughBlocks {
        addresses: u64,
        blocks: u64,
        prefix_len: u8,
        /// The longest prefix (≤ [`MAX_PREFIX_LEN`]) at which the blocks would suffice, if any.
        fitting_prefix: Option<u8>,
    },
    /// The IP lies in no host range.
    IpOutsideHostRanges { ip: Ipv4Addr, ranges: Vec<Ipv4Net> },
}

fn fmt_nets(nets: &[Ipv4Net]) -> String {
    nets.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl MappingError {
    /// The configuration field to blame.
    pub fn field(&self) -> &'static str {
        match self {
            Self::NoHostRanges | Self::HostRangesOverlap { .. } => "subnet.host_ranges",
            Self::HostOverlapsCluster { .. } | Self::IpOutsideHostRanges { .. } => {
                "subnet.host_ranges"
            }
            Self::NoClusterRanges | Self::ClusterRangesOverlap { .. } => "cluster_cidrs",
            Self::PrefixTooLong { .. }
            | Self::PrefixShorterThanCluster { .. }
            | Self::NotEnoughBlocks { .. } => "subnet.prefix_len",
        }
    }

    /// What is wrong, naming the values.
    pub fn message(&self) -> String {
        match self {
            Self::NoHostRanges => "no host range to map private IPs from".into(),
            Self::NoClusterRanges => "no cluster range to take container subnets from".into(),
            Self::PrefixTooLong { prefix_len } => {
                format!("/{prefix_len} leaves no room for containers")
            }
            Self::PrefixShorterThanCluster { prefix_len, cluster } => {
                format!("a /{prefix_len} subnet does not fit in cluster range {cluster}")
            }
            Self::HostRangesOverlap { a, b } => format!("host ranges {a} and {b} overlap"),
            Self::ClusterRangesOverlap { a, b } => format!("cluster ranges {a} and {b} overlap"),
            Self::HostOverlapsCluster { host, cluster } => {
                format!("host range {host} overlaps cluster range {cluster}")
            }
            Self::NotEnoughBlocks {
                addresses,
                blocks,
                prefix_len,
                ..
            } => format!(
                "the host ranges hold {addresses} addresses but the cluster ranges only {blocks} subnets of /{prefix_len}"
            ),
            Self::IpOutsideHostRanges { ip, ranges } => {
                format!("private IP {ip} is in none of the host ranges {}", fmt_nets(ranges))
            }
        }
    }

    /// What the operator should do.
    pub fn fix(&self) -> String {
        match self {
            Self::NoHostRanges => "list the CIDRs holding the hosts' private IPs (the cluster's vSwitches) in subnet.host_ranges, or leave it empty to use the VPC CIDR".into(),
            Self::NoClusterRanges => "list the range for container subnets in cluster_cidrs, e.g. [\"10.0.0.0/8\"]".into(),
            Self::PrefixTooLong { .. } => format!("use a subnet.prefix_len of at most {MAX_PREFIX_LEN}, e.g. 24"),
            Self::PrefixShorterThanCluster { cluster, .. } => format!(
                "use a subnet.prefix_len of at least {} or a wider cluster range",
                cluster.prefix_len()
            ),
            Self::HostRangesOverlap { a, b } => {
                let inner = if a.prefix_len() >= b.prefix_len() { a } else { b };
                format!("list each range once: remove {inner} from subnet.host_ranges")
            }
            Self::ClusterRangesOverlap { .. } => "make the cluster_cidrs ranges disjoint".into(),
            Self::HostOverlapsCluster { .. } => "choose cluster_cidrs outside the VPC's vSwitches (e.g. 10.0.0.0/8 for a 192.168.0.0/16 VPC), or list only the vSwitches in subnet.host_ranges".into(),
            Self::NotEnoughBlocks { fitting_prefix, .. } => {
                let longer = fitting_prefix
                    .map(|p| format!("set subnet.prefix_len = {p}, "))
                    .unwrap_or_default();
                format!("{longer}list only the cluster's vSwitch CIDRs in subnet.host_ranges, or widen cluster_cidrs")
            }
            Self::IpOutsideHostRanges { ip, .. } => {
                format!("add the vSwitch holding {ip} to subnet.host_ranges")
            }
        }
    }
}

impl fmt::Display for MappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (fix: {})",
            self.field(),
            self.message(),
            self.fix()
        )
    }
}

impl std::error::Error for MappingError {}

/// A validated mapping from private IPs to container subnets. Build it with [`SubnetMapping::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetMapping {
    host_ranges: Vec<Ipv4Net>,
    cluster: Vec<Ipv4Net>,
    prefix_len: u8,
}

/// Number of addresses in a range.
fn size(net: &Ipv4Net) -> u64 {
    1u64 << (32 - u32::from(net.prefix_len()))
}

/// Number of `/prefix_len` blocks in the cluster ranges (every prefix already ≥ the ranges').
fn block_count(cluster: &[Ipv4Net], prefix_len: u8) -> u64 {
    cluster
        .iter()
        .map(|c| 1u64 << (prefix_len - c.prefix_len()))
        .sum()
}

fn overlap(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn first_overlap(nets: &[Ipv4Net]) -> Option<(Ipv4Net, Ipv4Net)> {
    nets.iter().enumerate().find_map(|(i, a)| {
        nets[i + 1..]
            .iter()
            .find(|b| overlap(a, b))
            .map(|b| (a.trunc(), b.trunc()))
    })
}

impl SubnetMapping {
    /// Checks that the mapping is injective and stays inside `cluster`, and builds it. Ranges are
    /// truncated to their network address.
    pub fn new(
        host_ranges: &[Ipv4Net],
        cluster: &[Ipv4Net],
        prefix_len: u8,
    ) -> Result<Self, MappingError> {
        let host_ranges: Vec<Ipv4Net> = host_ranges.iter().map(Ipv4Net::trunc).collect();
        let cluster: Vec<Ipv4Net> = cluster.iter().map(Ipv4Net::trunc).collect();
        if host_ranges.is_empty() {
            return Err(MappingError::NoHostRanges);
        }
        if cluster.is_empty() {
            return Err(MappingError::NoClusterRanges);
        }
        if prefix_len > MAX_PREFIX_LEN {
            return Err(MappingError::PrefixTooLong { prefix_len });
        }
        if let Some(c) = cluster.iter().find(|c| c.prefix_len() > prefix_len) {
            return Err(MappingError::PrefixShorterThanCluster {
                prefix_len,
                cluster: *c,
            });
        }
        if let Some((a, b)) = first_overlap(&host_ranges) {
            return Err(MappingError::HostRangesOverlap { a, b });
        }
        if let Some((a, b)) = first_overlap(&cluster) {
            return Err(MappingError::ClusterRangesOverlap { a, b });
        }
        for host in &host_ranges {
            if let Some(c) = cluster.iter().find(|c| overlap(host, c)) {
                return Err(MappingError::HostOverlapsCluster {
                    host: *host,
                    cluster: *c,
                });
            }
        }
        let addresses: u64 = host_ranges.iter().map(size).sum();
        let blocks = block_count(&cluster, prefix_len);
        if addresses > blocks {
            let fitting_prefix =
                (prefix_len..=MAX_PREFIX_LEN).find(|p| block_count(&cluster, *p) >= addresses);
            return Err(MappingError::NotEnoughBlocks {
                addresses,
                blocks,
                prefix_len,
                fitting_prefix,
            });
        }
        Ok(Self {
            host_ranges,
            cluster,
            prefix_len,
        })
    }

    /// The container subnet of the host with private IP `ip`.
    pub fn subnet_for(&self, ip: Ipv4Addr) -> Result<Ipv4Net, MappingError> {
        let mut offset = 0u64;
        let mut found = false;
        for r in &self.host_ranges {
            if r.contains(&ip) {
                offset += u64::from(u32::from(ip) - u32::from(r.network()));
                found = true;
                break;
            }
            offset += size(r);
        }
        if !found {
            return Err(MappingError::IpOutsideHostRanges {
                ip,
                ranges: self.host_ranges.clone(),
            });
        }
        self.block(offset)
    }

    /// The `index`-th `/prefix_len` block of the concatenated cluster ranges.
    fn block(&self, mut index: u64) -> Result<Ipv4Net, MappingError> {
        let shift = 32 - u32::from(self.prefix_len);
        for c in &self.cluster {
            let n = 1u64 << (self.prefix_len - c.prefix_len());
            if index < n {
                let base = u64::from(u32::from(c.network())) + (index << shift);
                // Inside the cluster range and a prefix `new` accepted: neither can fail.
                let block = u32::try_from(base)
                    .ok()
                    .and_then(|b| Ipv4Net::new(Ipv4Addr::from(b), self.prefix_len).ok());
                if let Some(block) = block {
                    return Ok(block);
                }
                break;
            }
            index -= n;
        }
        // Unreachable: `new` checked that every host address has a block.
        Err(MappingError::NotEnoughBlocks {
            addresses: self.host_ranges.iter().map(size).sum(),
            blocks: block_count(&self.cluster, self.prefix_len),
            prefix_len: self.prefix_len,
            fitting_prefix: None,
        })
    }

    /// The host ranges, in order.
    pub fn host_ranges(&self) -> &[Ipv4Net] {
        &self.host_ranges
    }

    /// The cluster ranges, in order.
    pub fn cluster_ranges(&self) -> &[Ipv4Net] {
        &self.cluster
    }

    /// The prefix length of every host's subnet.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<Ipv4Net> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn contract_example() {
        let m = SubnetMapping::new(&nets(&["192.168.0.0/16"]), &nets(&["10.0.0.0/8"]), 24).unwrap();
        assert_eq!(
            m.subnet_for(ip("192.168.1.10")).unwrap(),
            "10.1.10.0/24".parse::<Ipv4Net>().unwrap()
        );
        assert_eq!(
            m.subnet_for(ip("192.168.0.0")).unwrap().to_string(),
            "10.0.0.0/24"
        );
        assert_eq!(
            m.subnet_for(ip("192.168.255.255")).unwrap().to_string(),
            "10.255.255.0/24"
        );
    }

    #[test]
    fn ranges_are_concatenated_in_order() {
        // Three vSwitches of a 172.16.0.0/12 VPC in three zones, cluster split over two ranges.
        let m = SubnetMapping::new(
            &nets(&["172.16.32.0/20", "172.16.0.0/24", "172.20.0.0/22"]),
            &nets(&["10.0.0.0/12", "10.64.0.0/16"]),
            26,
        )
        .unwrap();
        // Offsets: the first range 0..4096, the second 4096..4352, the third from 4352; /26 = 64 addresses.
        assert_eq!(
            m.subnet_for(ip("172.16.32.0")).unwrap().to_string(),
            "10.0.0.0/26"
        );
        assert_eq!(
            m.subnet_for(ip("172.16.47.255")).unwrap().to_string(),
            "10.3.255.192/26"
        );
        assert_eq!(
            m.subnet_for(ip("172.16.0.0")).unwrap().to_string(),
            "10.4.0.0/26"
        );
        assert_eq!(
            m.subnet_for(ip("172.20.0.1")).unwrap().to_string(),
            "10.4.64.64/26"
        );
        // The second cluster range starts after 2^(26-12) = 16384 blocks of the first.
        let big = SubnetMapping::new(
            &nets(&["172.16.0.0/18", "172.17.0.0/24"]),
            &nets(&["10.0.0.0/12", "10.64.0.0/16"]),
            26,
        )
        .unwrap();
        assert_eq!(
            big.subnet_for(ip("172.17.0.0")).unwrap().to_string(),
            "10.64.0.0/26"
        );
    }

    #[test]
    fn usual_layouts_fit() {
        let cases: &[(&[&str], &[&str], u8)] = &[
            // 192.168.0.0/16 VPC, the whole VPC as host range.
            (&["192.168.0.0/16"], &["10.0.0.0/8"], 24),
            // 172.16.0.0/12 VPC with /20 vSwitches in three zones.
            (
                &["172.16.0.0/20", "172.17.0.0/20", "172.18.0.0/20"],
                &["10.0.0.0/8"],
                24,
            ),
            // 10.0.0.0/8 VPC: vSwitches inside it, cluster elsewhere.
            (
                &["10.0.0.0/20", "10.1.0.0/21", "10.2.0.0/24"],
                &["172.16.0.0/12"],
                25,
            ),
            (&["10.0.0.0/20", "10.0.16.0/20"], &["100.64.0.0/10"], 26),
        ];
        for (hosts, cluster, p) in cases {
            let m = SubnetMapping::new(&nets(hosts), &nets(cluster), *p)
                .unwrap_or_else(|e| panic!("{hosts:?} → {cluster:?}/{p}: {e}"));
            let first = m.host_ranges()[0].network();
            assert!(cluster.iter().any(|c| c
                .parse::<Ipv4Net>()
                .unwrap()
                .contains(&m.subnet_for(first).unwrap())));
        }
    }

    #[test]
    fn refusals() {
        let cases: Vec<(Vec<Ipv4Net>, Vec<Ipv4Net>, u8, MappingError)> = vec![
            (
                vec![],
                nets(&["10.0.0.0/8"]),
                24,
                MappingError::NoHostRanges,
            ),
            (
                nets(&["192.168.0.0/16"]),
                vec![],
                24,
                MappingError::NoClusterRanges,
            ),
            (
                nets(&["192.168.0.0/16"]),
                nets(&["10.0.0.0/8"]),
                31,
                MappingError::PrefixTooLong { prefix_len: 31 },
            ),
            (
                nets(&["192.168.0.0/24"]),
                nets(&["10.0.0.0/8", "172.16.0.0/20"]),
                16,
                MappingError::PrefixShorterThanCluster {
                    prefix_len: 16,
                    cluster: "172.16.0.0/20".parse().unwrap(),
                },
            ),
            (
                nets(&["192.168.0.0/20", "192.168.8.0/24"]),
                nets(&["10.0.0.0/8"]),
                24,
                MappingError::HostRangesOverlap {
                    a: "192.168.0.0/20".parse().unwrap(),
                    b: "192.168.8.0/24".parse().unwrap(),
                },
            ),
            (
                nets(&["192.168.0.0/24"]),
                nets(&["10.0.0.0/8", "10.1.0.0/16"]),
                24,
                MappingError::ClusterRangesOverlap {
                    a: "10.0.0.0/8".parse().unwrap(),
                    b: "10.1.0.0/16".parse().unwrap(),
                },
            ),
            (
                nets(&["10.0.0.0/20"]),
                nets(&["10.0.0.0/8"]),
                24,
                MappingError::HostOverlapsCluster {
                    host: "10.0.0.0/20".parse().unwrap(),
                    cluster: "10.0.0.0/8".parse().unwrap(),
                },
            ),
            (
                nets(&["172.16.0.0/12"]),
                nets(&["10.0.0.0/8"]),
                24,
                MappingError::NotEnoughBlocks {
                    addresses: 1 << 20,
                    blocks: 1 << 16,
                    prefix_len: 24,
                    fitting_prefix: Some(28),
                },
            ),
            (
                nets(&["10.0.0.0/8"]),
                nets(&["172.16.0.0/16"]),
                24,
                MappingError::NotEnoughBlocks {
                    addresses: 1 << 24,
                    blocks: 256,
                    prefix_len: 24,
                    fitting_prefix: None,
                },
            ),
        ];
        for (hosts, cluster, p, want) in cases {
            let got = SubnetMapping::new(&hosts, &cluster, p).unwrap_err();
            assert_eq!(got, want, "{hosts:?} {cluster:?} /{p}");
            let line = got.to_string();
            assert!(
                line.starts_with(got.field()) && line.contains("(fix: ") && !line.contains('\n'),
                "{line}"
            );
        }
    }

    #[test]
    fn ip_outside_every_host_range_is_named() {
        let m = SubnetMapping::new(
            &nets(&["192.168.1.0/24", "192.168.3.0/24"]),
            &nets(&["10.0.0.0/8"]),
            24,
        )
        .unwrap();
        let e = m.subnet_for(ip("192.168.2.7")).unwrap_err();
        let line = e.to_string();
        assert!(
            line.contains("192.168.2.7") && line.contains("192.168.1.0/24, 192.168.3.0/24"),
            "{line}"
        );
        assert_eq!(e.field(), "subnet.host_ranges");
    }

    #[test]
    fn not_enough_blocks_suggests_a_prefix_that_fits() {
        let e =
            SubnetMapping::new(&nets(&["172.16.0.0/12"]), &nets(&["10.0.0.0/8"]), 24).unwrap_err();
        assert!(e.fix().contains("prefix_len = 28"), "{e}");
        assert!(SubnetMapping::new(&nets(&["172.16.0.0/12"]), &nets(&["10.0.0.0/8"]), 28).is_ok());
    }
}
