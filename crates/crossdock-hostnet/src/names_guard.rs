//! The firewall of container names (`[names]`): who may reach the resolver and the catalog port.
//!
//! The resolver listens on the bridge gateway, an address of the container subnet, which the VPC
//! routes to this host: without a rule any host of the VPC could use it (an open resolver) and any
//! host could talk to the catalog exchange. The agent checks both in the handlers too (hickory's
//! access control answers REFUSED; the catalog transport drops non-members' datagrams); these rules
//! keep outsiders' packets from reaching the process at all, like the scrape port's
//! ([`crate::scrape_rules`]), in the same chain:
//!
//! - filter `CROSSDOCK-INPUT`: `-s <container subnet> -d <gateway>/32 -p udp|tcp --dport <dns>
//!   -j ACCEPT` (the host's containers, and the host itself, whose packets to the gateway carry the
//!   gateway as source), and `-s <member>/32 -p udp --dport <catalog> -j ACCEPT` per member host;
//! - at the head of `INPUT`, under the jump: `-d <gateway>/32 -p udp|tcp --dport <dns> -j REJECT`
//!   and `-p udp --dport <catalog> -j DROP` for everyone else. DROP for the catalog: an outsider
//!   learns nothing, not even that the port is there; REJECT for DNS, so a misconfigured client
//!   fails at once instead of timing out.

use crate::rules::{Position, Rule, Table, INPUT_CHAIN};
use ipnet::Ipv4Net;
use std::net::{Ipv4Addr, SocketAddrV4};

/// The resolver and catalog ports to guard, and who may reach them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamesGuard {
    /// The resolver's address (the bridge gateway) and port.
    pub dns: SocketAddrV4,
    /// The networks allowed to query it (this host's container subnet).
    pub dns_clients: Vec<Ipv4Net>,
    /// The catalog exchange's UDP port.
    pub catalog_port: u16,
    /// The member hosts' addresses allowed to talk to it.
    pub members: Vec<Ipv4Addr>,
}

fn rule(chain: &str, position: Position, args: &[&str]) -> Rule {
    Rule {
        table: Table::Filter,
        chain: chain.to_string(),
        args: args.iter().map(|s| s.to_string()).collect(),
        position,
    }
}

/// The rules of [`NamesGuard`] (see the module documentation), with the jump into
/// `CROSSDOCK-INPUT` (which [`crate::desired_rules`] keeps once when the scrape port has it too).
pub fn names_rules(g: &NamesGuard) -> Vec<Rule> {
    let gateway = format!("{}/32", g.dns.ip());
    let dns_port = g.dns.port().to_string();
    let catalog_port = g.catalog_port.to_string();
    let mut rules = Vec::new();
    for client in &g.dns_clients {
        let client = client.to_string();
        for proto in ["udp", "tcp"] {
            rules.push(rule(
                INPUT_CHAIN,
                Position::Append,
                &[
                    "-s",
                    &client,
                    "-d",
                    &gateway,
                    "-p",
                    proto,
                    "-m",
                    proto,
                    "--dport",
                    &dns_port,
                    "-m",
                    "comment",
                    "--comment",
                    "crossdock:dns-clients",
                    "-j",
                    "ACCEPT",
                ],
            ));
        }
    }
    let mut members = g.members.clone();
    members.sort_unstable();
    members.dedup();
    for m in members {
        let member = format!("{m}/32");
        rules.push(rule(
            INPUT_CHAIN,
            Position::Append,
            &[
                "-s",
                &member,
                "-p",
                "udp",
                "-m",
                "udp",
                "--dport",
                &catalog_port,
                "-m",
                "comment",
                "--comment",
                "crossdock:catalog-members",
                "-j",
                "ACCEPT",
            ],
        ));
    }
    rules.push(rule(
        "INPUT",
        Position::Top,
        &[
            "-m",
            "comment",
            "--comment",
            "crossdock:jump",
            "-j",
            INPUT_CHAIN,
        ],
    ));
    rules.push(rule(
        "INPUT",
        Position::Top,
        &[
            "-d",
            &gateway,
            "-p",
            "udp",
            "-m",
            "udp",
            "--dport",
            &dns_port,
            "-m",
            "comment",
            "--comment",
            "crossdock:dns-others",
            "-j",
            "REJECT",
            "--reject-with",
            "icmp-port-unreachable",
        ],
    ));
    rules.push(rule(
        "INPUT",
        Position::Top,
        &[
            "-d",
            &gateway,
            "-p",
            "tcp",
            "-m",
            "tcp",
            "--dport",
            &dns_port,
            "-m",
            "comment",
            "--comment",
            "crossdock:dns-others",
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ],
    ));
    rules.push(rule(
        "INPUT",
        Position::Top,
        &[
            "-p",
            "udp",
            "-m",
            "udp",
            "--dport",
            &catalog_port,
            "-m",
            "comment",
            "--comment",
            "crossdock:catalog-others",
            "-j",
            "DROP",
        ],
    ));
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> NamesGuard {
        NamesGuard {
            dns: "10.1.11.1:53".parse().unwrap(),
            dns_clients: vec!["10.1.11.0/24".parse().unwrap()],
            catalog_port: 7953,
            members: vec![
                "192.168.1.12".parse().unwrap(),
                "192.168.1.11".parse().unwrap(),
                "192.168.1.12".parse().unwrap(),
            ],
        }
    }

    #[test]
    fn containers_reach_the_resolver_members_the_catalog_and_nobody_else() {
        let got: Vec<String> = names_rules(&guard())
            .iter()
            .map(ToString::to_string)
            .collect();
        let want = [
            "-t filter -A CROSSDOCK-INPUT -s 10.1.11.0/24 -d 10.1.11.1/32 -p udp -m udp --dport 53 -m comment --comment crossdock:dns-clients -j ACCEPT",
            "-t filter -A CROSSDOCK-INPUT -s 10.1.11.0/24 -d 10.1.11.1/32 -p tcp -m tcp --dport 53 -m comment --comment crossdock:dns-clients -j ACCEPT",
            "-t filter -A CROSSDOCK-INPUT -s 192.168.1.11/32 -p udp -m udp --dport 7953 -m comment --comment crossdock:catalog-members -j ACCEPT",
            "-t filter -A CROSSDOCK-INPUT -s 192.168.1.12/32 -p udp -m udp --dport 7953 -m comment --comment crossdock:catalog-members -j ACCEPT",
            "-t filter -I INPUT -m comment --comment crossdock:jump -j CROSSDOCK-INPUT",
            "-t filter -I INPUT -d 10.1.11.1/32 -p udp -m udp --dport 53 -m comment --comment crossdock:dns-others -j REJECT --reject-with icmp-port-unreachable",
            "-t filter -I INPUT -d 10.1.11.1/32 -p tcp -m tcp --dport 53 -m comment --comment crossdock:dns-others -j REJECT --reject-with tcp-reset",
            "-t filter -I INPUT -p udp -m udp --dport 7953 -m comment --comment crossdock:catalog-others -j DROP",
        ];
        assert_eq!(got, want);
        for r in names_rules(&guard()) {
            assert!(r.is_tagged(), "{r}");
            if r.chain == INPUT_CHAIN {
                assert_eq!(r.args.last().map(String::as_str), Some("ACCEPT"), "{r}");
            }
        }
    }

    #[test]
    fn without_members_only_the_drop_guards_the_catalog() {
        let mut g = guard();
        g.members.clear();
        let rules = names_rules(&g);
        assert!(!rules
            .iter()
            .any(|r| r.to_string().contains("catalog-members")));
        assert!(rules
            .iter()
            .any(|r| r.to_string().contains("catalog-others")));
    }

    #[test]
    fn with_the_scrape_port_both_share_one_jump_at_the_head_of_input() {
        let input = crate::DesiredInput {
            cluster_cidrs: vec!["10.0.0.0/8".parse().unwrap()],
            local_subnet: "10.1.11.0/24".parse().unwrap(),
            bridge: Some("docker0".into()),
            scrape: Some(crate::ScrapeGuard {
                listen: "192.168.1.11:9464".parse().unwrap(),
                scrapers: vec!["192.168.1.5/32".parse().unwrap()],
            }),
            names: Some(guard()),
        };
        let head: Vec<String> = crate::desired_rules(&input)
            .iter()
            .filter(|r| r.chain == "INPUT")
            .map(|r| r.args.join(" "))
            .collect();
        assert_eq!(head.len(), 5, "{head:?}");
        assert!(head[0].ends_with("-j CROSSDOCK-INPUT"), "{head:?}");
        assert!(head[1].contains("metrics-others"), "{head:?}");
        assert_eq!(
            head.iter().filter(|r| r.contains("crossdock:jump")).count(),
            1
        );
    }
}
