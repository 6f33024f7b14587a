//! Property tests of the derived-subnet mapping: for any host and cluster ranges the mapping accepts,
//! distinct private IPs get disjoint subnets, every subnet lies inside a cluster range and outside
//! every host range; and whatever it refuses is refused for one of the documented reasons.
//!
//! Uniqueness is the whole point of fleet mode: two hosts with one subnet would steal each other's
//! traffic, and nobody wrote either subnet down to notice.

use crossdock_config::mapping::{MappingError, SubnetMapping};
use ipnet::Ipv4Net;
use proptest::prelude::*;
use std::net::Ipv4Addr;

/// A network of prefix 8..=30 at a random address, truncated.
fn net(min_prefix: u8) -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), min_prefix..=30u8)
        .prop_map(|(a, p)| Ipv4Net::new(Ipv4Addr::from(a), p).unwrap().trunc())
}

/// Usual shapes: vSwitches of /20../28 inside 192.168/16, 172.16/12 or 10/8; cluster ranges elsewhere.
fn layout() -> impl Strategy<Value = (Vec<Ipv4Net>, Vec<Ipv4Net>, u8)> {
    let vpc = prop::sample::select(vec!["192.168.0.0/16", "172.16.0.0/12", "10.0.0.0/8"]);
    (
        vpc,
        prop::collection::vec((any::<u32>(), 20u8..=28), 1..5),
        16u8..=30,
    )
        .prop_map(|(vpc, switches, prefix)| {
            let vpc: Ipv4Net = vpc.parse().unwrap();
            let hosts = switches
                .into_iter()
                .map(|(a, p)| {
                    let inside = u32::from(vpc.network()) | (a & !u32::from(vpc.netmask()));
                    Ipv4Net::new(inside.into(), p).unwrap().trunc()
                })
                .collect();
            let cluster = if vpc.network().octets()[0] == 10 {
                vec![
                    "172.16.0.0/12".parse().unwrap(),
                    "100.64.0.0/10".parse().unwrap(),
                ]
            } else {
                vec!["10.0.0.0/8".parse().unwrap()]
            };
            (hosts, cluster, prefix)
        })
}

fn host_ip(hosts: &[Ipv4Net], pick: (usize, u32)) -> Ipv4Addr {
    let r = hosts[pick.0 % hosts.len()];
    let offset = pick.1 & !u32::from(r.netmask());
    Ipv4Addr::from(u32::from(r.network()) | offset)
}

fn overlap(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The refusal the rules predict, or `None` when the mapping must be built.
fn expected_refusal(hosts: &[Ipv4Net], cluster: &[Ipv4Net], p: u8) -> Option<&'static str> {
    let pairs = |v: &[Ipv4Net]| (0..v.len()).any(|i| v[i + 1..].iter().any(|b| overlap(&v[i], b)));
    let addresses: u64 = hosts.iter().map(|h| 1u64 << (32 - h.prefix_len())).sum();
    if hosts.is_empty() || cluster.is_empty() {
        Some("empty")
    } else if p > 30 || cluster.iter().any(|c| c.prefix_len() > p) {
        Some("prefix")
    } else if pairs(hosts)
        || pairs(cluster)
        || hosts.iter().any(|h| cluster.iter().any(|c| overlap(h, c)))
    {
        Some("overlap")
    } else if addresses
        > cluster
            .iter()
            .map(|c| 1u64 << (p - c.prefix_len()))
            .sum::<u64>()
    {
        Some("blocks")
    } else {
        None
    }
}

fn kind(e: &MappingError) -> &'static str {
    match e {
        MappingError::NoHostRanges | MappingError::NoClusterRanges => "empty",
        MappingError::PrefixTooLong { .. } | MappingError::PrefixShorterThanCluster { .. } => {
            "prefix"
        }
        MappingError::HostRangesOverlap { .. }
        | MappingError::ClusterRangesOverlap { .. }
        | MappingError::HostOverlapsCluster { .. } => "overlap",
        MappingError::NotEnoughBlocks { .. } => "blocks",
        MappingError::IpOutsideHostRanges { .. } => "ip",
    }
}

fn check_mapping(
    m: &SubnetMapping,
    hosts: &[Ipv4Net],
    cluster: &[Ipv4Net],
    a: Ipv4Addr,
    b: Ipv4Addr,
) -> Result<(), TestCaseError> {
    let sa = m
        .subnet_for(a)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let sb = m
        .subnet_for(b)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    for s in [sa, sb] {
        prop_assert_eq!(s.prefix_len(), m.prefix_len());
        prop_assert!(
            cluster.iter().any(|c| c.contains(&s)),
            "{} outside {:?}",
            s,
            cluster
        );
        prop_assert!(
            !hosts.iter().any(|h| overlap(h, &s)),
            "{} overlaps a host range",
            s
        );
    }
    if a == b {
        prop_assert_eq!(sa, sb);
    } else {
        prop_assert!(!overlap(&sa, &sb), "{} → {} and {} → {}", a, sa, b, sb);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn usual_layouts_map_distinct_ips_to_disjoint_subnets(
        (hosts, cluster, p) in layout(),
        pa in (any::<usize>(), any::<u32>()),
        pb in (any::<usize>(), any::<u32>()),
    ) {
        match SubnetMapping::new(&hosts, &cluster, p) {
            Ok(m) => check_mapping(&m, &hosts, &cluster, host_ip(&hosts, pa), host_ip(&hosts, pb))?,
            Err(e) => prop_assert_eq!(Some(kind(&e)), expected_refusal(&hosts, &cluster, p), "{}", e),
        }
    }

    #[test]
    fn any_ranges_are_mapped_or_refused_for_a_documented_reason(
        hosts in prop::collection::vec(net(8), 0..4),
        cluster in prop::collection::vec(net(4), 0..3),
        p in 0u8..=32,
        pa in (any::<usize>(), any::<u32>()),
        pb in (any::<usize>(), any::<u32>()),
        stray in any::<u32>(),
    ) {
        let want = expected_refusal(&hosts, &cluster, p);
        match SubnetMapping::new(&hosts, &cluster, p) {
            Ok(m) => {
                prop_assert_eq!(want, None);
                check_mapping(&m, &hosts, &cluster, host_ip(&hosts, pa), host_ip(&hosts, pb))?;
                let stray = Ipv4Addr::from(stray);
                let inside = hosts.iter().any(|h| h.contains(&stray));
                match m.subnet_for(stray) {
                    Ok(_) => prop_assert!(inside),
                    Err(e) => {
                        prop_assert!(!inside && kind(&e) == "ip", "{}", e);
                        prop_assert!(e.to_string().contains(&stray.to_string()));
                    }
                }
            }
            Err(e) => {
                prop_assert_eq!(Some(kind(&e)), want, "{}", e);
                let line = e.to_string();
                prop_assert!(line.contains("(fix: ") && !line.contains('\n'), "{}", line);
            }
        }
    }

    /// Consecutive IPs get consecutive blocks: the mapping is the documented offset rule, not merely
    /// some injective function.
    #[test]
    fn consecutive_ips_get_consecutive_blocks((hosts, cluster, p) in layout(), pick in (any::<usize>(), any::<u32>())) {
        if let Ok(m) = SubnetMapping::new(&hosts, &cluster, p) {
            let a = host_ip(&hosts, pick);
            let b = Ipv4Addr::from(u32::from(a).wrapping_add(1));
            if let (Ok(sa), Ok(sb)) = (m.subnet_for(a), m.subnet_for(b)) {
                if hosts.iter().any(|h| h.contains(&a) && h.contains(&b)) {
                    let step = 1u64 << (32 - p);
                    let (na, nb) = (u64::from(u32::from(sa.network())), u64::from(u32::from(sb.network())));
                    // Same cluster range → the next block; across a cluster range boundary → its first.
                    prop_assert!(nb == na + step || cluster.iter().any(|c| c.network() == sb.network()), "{} {} → {} {}", a, b, sa, sb);
                }
            }
        }
    }
}
