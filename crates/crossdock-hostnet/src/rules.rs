//! The desired host state as plain data: which iptables rules and sysctls this host needs for a given
//! cluster range, local container subnet and bridge. Pure functions, no side effects, so the whole
//! policy is unit-tested without root and the executor only ever applies what is computed here.
//!
//! Rules are written in the exact token order `iptables -S` prints them back in (`-s`, `-d`, `-i`/`-o`,
//! matches, `-j`), so a rule read from the kernel compares equal, token for token, to the desired one.

use ipnet::Ipv4Net;
use std::fmt;
use std::net::SocketAddrV4;

/// Comment prefix carried by every rule crossdock writes; it is how `apply` and `cleanup` tell
/// crossdock's rules from everyone else's.
pub const TAG_PREFIX: &str = "crossdock:";
/// Prefix of the chains crossdock owns (all of their content is crossdock's).
pub const CHAIN_PREFIX: &str = "CROSSDOCK-";
/// filter chain holding the cluster → local-subnet ACCEPTs, jumped to from the top of `DOCKER-USER`.
pub const FORWARD_CHAIN: &str = "CROSSDOCK-FORWARD";
/// nat chain holding the local-subnet → cluster ACCEPTs (no NAT), jumped to from the top of `POSTROUTING`.
pub const POSTROUTING_CHAIN: &str = "CROSSDOCK-POSTROUTING";
/// raw chain holding the cluster → local-subnet ACCEPTs, jumped to from the top of raw `PREROUTING`.
pub const PREROUTING_CHAIN: &str = "CROSSDOCK-PREROUTING";
/// Docker's chain for third-party filter rules, jumped to first from `FORWARD`.
pub const DOCKER_USER: &str = "DOCKER-USER";
/// filter chain admitting the metrics scrapers to the agent's scrape port, jumped to from the top of
/// `INPUT` (only when the scrape endpoint listens on a non-loopback address).
pub const INPUT_CHAIN: &str = "CROSSDOCK-INPUT";

/// The iptables tables crossdock touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Filter,
    Nat,
    Raw,
}

impl Table {
    /// All tables crossdock writes to, in the order they are reconciled and cleaned.
    pub const ALL: [Table; 3] = [Table::Filter, Table::Nat, Table::Raw];

    /// The name iptables knows the table by.
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Filter => "filter",
            Table::Nat => "nat",
            Table::Raw => "raw",
        }
    }

    /// Whether `chain` is one of this table's built-in chains (never created or deleted by us).
    pub fn is_builtin(self, chain: &str) -> bool {
        let builtins: &[&str] = match self {
            Table::Filter => &["INPUT", "FORWARD", "OUTPUT"],
            Table::Nat => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
            Table::Raw => &["PREROUTING", "OUTPUT"],
        };
        builtins.contains(&chain)
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a rule goes in its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// At the head of a chain someone else owns (a jump into one of our chains). Kept first.
    Top,
    /// Anywhere in a chain crossdock owns (all rules there share one verdict, so order is moot).
    Append,
}

/// One iptables rule: table, chain and the rule specification as `iptables -S` prints it after
/// `-A <chain>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub table: Table,
    pub chain: String,
    pub args: Vec<String>,
    pub position: Position,
}

impl Rule {
    fn new(table: Table, chain: &str, position: Position, args: &[&str]) -> Self {
        Self {
            table,
            chain: chain.to_string(),
            args: args.iter().map(|s| s.to_string()).collect(),
            position,
        }
    }

    /// Whether the rule carries a `crossdock:` comment.
    pub fn is_tagged(&self) -> bool {
        is_tagged(&self.args)
    }
}

impl fmt::Display for Rule {
    /// `iptables -t <table> -A <chain> <args>`, quoting arguments with spaces; for logs and errors.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.position {
            Position::Top => "-I",
            Position::Append => "-A",
        };
        write!(f, "-t {} {verb} {}", self.table, self.chain)?;
        for a in &self.args {
            if a.contains(char::is_whitespace) || a.is_empty() {
                write!(f, " \"{a}\"")?;
            } else {
                write!(f, " {a}")?;
            }
        }
        Ok(())
    }
}

/// Whether a rule specification carries a `crossdock:` comment.
pub fn is_tagged(args: &[String]) -> bool {
    args.windows(2)
        .any(|w| w[0] == "--comment" && w[1].starts_with(TAG_PREFIX))
}

/// Whether `chain` is one of crossdock's own chains.
pub fn is_own_chain(chain: &str) -> bool {
    chain.starts_with(CHAIN_PREFIX)
}

/// What the host's firewall must let through: the whole input of a [`crate::Firewall`] driver, and
/// of [`desired_rules`] (the iptables rendering of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredInput {
    /// Every host's container subnet lies inside these.
    pub cluster_cidrs: Vec<Ipv4Net>,
    /// This host's container subnet (the served Docker network's subnet).
    pub local_subnet: Ipv4Net,
    /// The served network's bridge device (`docker0`, `br-<id12>`, ...); `None` on a host serving
    /// `[docker] static_subnet` without Docker, where nothing is opened for the cluster.
    pub bridge: Option<String>,
    /// The agent's metrics scrape port, when it listens beyond loopback (see [`scrape_rules`]).
    pub scrape: Option<ScrapeGuard>,
    /// The resolver and catalog ports of `[names]`, when enabled (see [`crate::names_rules`]).
    pub names: Option<crate::NamesGuard>,
}

/// The scrape port to guard and who may reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeGuard {
    pub listen: SocketAddrV4,
    pub scrapers: Vec<Ipv4Net>,
}

/// The rules for one host, in application order: chains' content, then the jumps into them.
///
/// - filter `CROSSDOCK-FORWARD`: `-s <cluster> -d <local> -o <bridge> -j ACCEPT` per cluster range,
///   jumped to from the top of `DOCKER-USER`, so cluster traffic is accepted before Docker's
///   per-network isolation and port filtering, and nothing else is opened.
/// - nat `CROSSDOCK-POSTROUTING`: `-s <local> -d <cluster> -j ACCEPT` per cluster range, jumped to from
///   the top of `POSTROUTING`, ahead of Docker's MASQUERADE, so peers see container IPs. ACCEPT, not
///   RETURN: a RETURN in a user chain only resumes `POSTROUTING`, where the MASQUERADE comes next;
///   ACCEPT ends the nat table for the connection.
/// - raw `CROSSDOCK-PREROUTING`: `-s <cluster> -d <local> ! -i <bridge> -j ACCEPT` per cluster range,
///   jumped to from the top of raw `PREROUTING`. Docker 28.2+ appends a per-container
///   `-d <container> ! -i <bridge> -j DROP` there; an ACCEPT ahead of it lets cluster sources through
///   and nothing else. On Docker 20.10 it is harmless (raw has nothing to skip).
///
/// Then, when `[metrics] listen` is exposed, the scrape port's rules ([`scrape_rules`]), and with
/// `[names]` the resolver's and catalog's ([`crate::names_rules`]).
pub fn desired_rules(input: &DesiredInput) -> Vec<Rule> {
    let mut rules = match &input.bridge {
        Some(bridge) => cluster_rules(input, bridge),
        None => Vec::new(),
    };
    if let Some(guard) = &input.scrape {
        rules.extend(scrape_rules(guard.listen, &guard.scrapers));
    }
    if let Some(guard) = &input.names {
        // Both guards jump into CROSSDOCK-INPUT: the jump is kept once, first.
        for r in crate::names_rules(guard) {
            if !rules.contains(&r) {
                rules.push(r);
            }
        }
    }
    rules
}

fn cluster_rules(input: &DesiredInput, bridge: &str) -> Vec<Rule> {
    let local = input.local_subnet.to_string();
    let mut rules = Vec::new();
    for cluster in &input.cluster_cidrs {
        let cluster = cluster.to_string();
        rules.push(Rule::new(
            Table::Filter,
            FORWARD_CHAIN,
            Position::Append,
            &[
                "-s",
                &cluster,
                "-d",
                &local,
                "-o",
                bridge,
                "-m",
                "comment",
                "--comment",
                "crossdock:cluster-to-containers",
                "-j",
                "ACCEPT",
            ],
        ));
    }
    for cluster in &input.cluster_cidrs {
        let cluster = cluster.to_string();
        rules.push(Rule::new(
            Table::Nat,
            POSTROUTING_CHAIN,
            Position::Append,
            &[
                "-s",
                &local,
                "-d",
                &cluster,
                "-m",
                "comment",
                "--comment",
                "crossdock:keep-container-source",
                "-j",
                "ACCEPT",
            ],
        ));
    }
    for cluster in &input.cluster_cidrs {
        let cluster = cluster.to_string();
        rules.push(Rule::new(
            Table::Raw,
            PREROUTING_CHAIN,
            Position::Append,
            &[
                "-s",
                &cluster,
                "-d",
                &local,
                "!",
                "-i",
                bridge,
                "-m",
                "comment",
                "--comment",
                "crossdock:cluster-before-docker-raw-drop",
                "-j",
                "ACCEPT",
            ],
        ));
    }
    rules.extend(jump_rules());
    rules
}

/// The three jumps into crossdock's chains, each kept at the top of its parent chain.
pub fn jump_rules() -> Vec<Rule> {
    let jump = |table, parent: &str, target: &str| {
        Rule::new(
            table,
            parent,
            Position::Top,
            &["-m", "comment", "--comment", "crossdock:jump", "-j", target],
        )
    };
    vec![
        jump(Table::Filter, DOCKER_USER, FORWARD_CHAIN),
        jump(Table::Nat, "POSTROUTING", POSTROUTING_CHAIN),
        jump(Table::Raw, "PREROUTING", PREROUTING_CHAIN),
    ]
}

/// The rules guarding the agent's scrape port `listen` (`[metrics] listen` on a non-loopback address):
///
/// - filter `CROSSDOCK-INPUT`: `-s <scraper> -d <ip>/32 -p tcp --dport <port> -j ACCEPT` per scraper
///   range, jumped to from the top of `INPUT`;
/// - right under that jump in `INPUT`: `-d <ip>/32 -p tcp --dport <port> -j REJECT --reject-with
///   tcp-reset` for everyone else.
///
/// Why the REJECT sits in `INPUT` and not in crossdock's chain: every chain crossdock owns holds rules
/// of one verdict, whose order is moot, and reconcile keeps it so; the head of a parent chain is kept
/// in order. Why REJECT and not DROP: a scraper listed by mistake fails at once ("connection
/// refused") instead of timing out, and the port is no secret. The agent checks every connection's
/// peer as well (403), which also covers the moment before the first pass writes these rules.
pub fn scrape_rules(listen: SocketAddrV4, scrapers: &[Ipv4Net]) -> Vec<Rule> {
    let dest = format!("{}/32", listen.ip());
    let port = listen.port().to_string();
    let mut rules: Vec<Rule> = scrapers
        .iter()
        .map(|s| {
            Rule::new(
                Table::Filter,
                INPUT_CHAIN,
                Position::Append,
                &[
                    "-s",
                    &s.to_string(),
                    "-d",
                    &dest,
                    "-p",
                    "tcp",
                    "-m",
                    "tcp",
                    "--dport",
                    &port,
                    "-m",
                    "comment",
                    "--comment",
                    "crossdock:metrics-scrapers",
                    "-j",
                    "ACCEPT",
                ],
            )
        })
        .collect();
    rules.push(Rule::new(
        Table::Filter,
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
    rules.push(Rule::new(
        Table::Filter,
        "INPUT",
        Position::Top,
        &[
            "-d",
            &dest,
            "-p",
            "tcp",
            "-m",
            "tcp",
            "--dport",
            &port,
            "-m",
            "comment",
            "--comment",
            "crossdock:metrics-others",
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ],
    ));
    rules
}

/// One sysctl, by its path under `/proc/sys` (`net/ipv4/ip_forward`), so interface names with dots
/// need no escaping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlSetting {
    pub path: String,
    pub value: String,
}

impl SysctlSetting {
    /// The dotted name `sysctl(8)` uses (`net.ipv4.conf.eth0/100.forwarding` for `eth0.100`).
    pub fn dotted(&self) -> String {
        self.path
            .split('/')
            .map(|seg| seg.replace('.', "/"))
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// The sysctls: global IPv4 forwarding and forwarding on the external interface.
pub fn desired_sysctls(external_interface: &str) -> Vec<SysctlSetting> {
    vec![
        SysctlSetting {
            path: "net/ipv4/ip_forward".into(),
            value: "1".into(),
        },
        SysctlSetting {
            path: format!("net/ipv4/conf/{external_interface}/forwarding"),
            value: "1".into(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> DesiredInput {
        DesiredInput {
            cluster_cidrs: vec![
                "10.0.0.0/16".parse().unwrap(),
                "10.8.0.0/16".parse().unwrap(),
            ],
            local_subnet: "10.0.3.0/24".parse().unwrap(),
            bridge: Some("docker0".into()),
            scrape: None,
            names: None,
        }
    }

    fn render(rules: &[Rule]) -> Vec<String> {
        rules.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn one_rule_per_cluster_range_per_table_plus_three_jumps() {
        let got = render(&desired_rules(&input()));
        let want = [
            "-t filter -A CROSSDOCK-FORWARD -s 10.0.0.0/16 -d 10.0.3.0/24 -o docker0 -m comment --comment crossdock:cluster-to-containers -j ACCEPT",
            "-t filter -A CROSSDOCK-FORWARD -s 10.8.0.0/16 -d 10.0.3.0/24 -o docker0 -m comment --comment crossdock:cluster-to-containers -j ACCEPT",
            "-t nat -A CROSSDOCK-POSTROUTING -s 10.0.3.0/24 -d 10.0.0.0/16 -m comment --comment crossdock:keep-container-source -j ACCEPT",
            "-t nat -A CROSSDOCK-POSTROUTING -s 10.0.3.0/24 -d 10.8.0.0/16 -m comment --comment crossdock:keep-container-source -j ACCEPT",
            "-t raw -A CROSSDOCK-PREROUTING -s 10.0.0.0/16 -d 10.0.3.0/24 ! -i docker0 -m comment --comment crossdock:cluster-before-docker-raw-drop -j ACCEPT",
            "-t raw -A CROSSDOCK-PREROUTING -s 10.8.0.0/16 -d 10.0.3.0/24 ! -i docker0 -m comment --comment crossdock:cluster-before-docker-raw-drop -j ACCEPT",
            "-t filter -I DOCKER-USER -m comment --comment crossdock:jump -j CROSSDOCK-FORWARD",
            "-t nat -I POSTROUTING -m comment --comment crossdock:jump -j CROSSDOCK-POSTROUTING",
            "-t raw -I PREROUTING -m comment --comment crossdock:jump -j CROSSDOCK-PREROUTING",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn every_rule_is_tagged_and_nothing_opens_forward_or_uses_a_policy() {
        for r in desired_rules(&input()) {
            assert!(r.is_tagged(), "{r}");
            assert_ne!(r.chain, "FORWARD", "never touch FORWARD itself: {r}");
            assert!(!r.args.iter().any(|a| a == "-P"), "{r}");
            // Every ACCEPT is bounded by a cluster source and the local destination; in nat (where
            // ACCEPT means "no NAT") by the local source and a cluster destination.
            if r.args.last().map(String::as_str) == Some("ACCEPT") {
                let s = r.args.iter().position(|a| a == "-s").unwrap();
                let d = r.args.iter().position(|a| a == "-d").unwrap();
                let (cluster, local) = if r.table == Table::Nat {
                    (d, s)
                } else {
                    (s, d)
                };
                assert!(input()
                    .cluster_cidrs
                    .iter()
                    .any(|c| c.to_string() == r.args[cluster + 1]));
                assert_eq!(r.args[local + 1], "10.0.3.0/24");
            }
        }
    }

    #[test]
    fn rules_follow_the_bridge_and_subnet() {
        let mut i = input();
        i.bridge = Some("br-0123456789ab".into());
        i.local_subnet = "10.8.7.0/24".parse().unwrap();
        let text = render(&desired_rules(&i)).join("\n");
        assert!(!text.contains("docker0"));
        assert!(!text.contains("10.0.3.0/24"));
        assert_eq!(text.matches("br-0123456789ab").count(), 4);
        assert_eq!(text.matches("10.8.7.0/24").count(), 6);
    }

    #[test]
    fn the_scrape_port_admits_the_scrapers_and_rejects_everyone_else() {
        let listen = "192.168.1.11:9464".parse().unwrap();
        let scrapers = [
            "192.168.1.12/32".parse().unwrap(),
            "10.9.0.0/16".parse().unwrap(),
        ];
        let got = render(&scrape_rules(listen, &scrapers));
        let want = [
            "-t filter -A CROSSDOCK-INPUT -s 192.168.1.12/32 -d 192.168.1.11/32 -p tcp -m tcp --dport 9464 -m comment --comment crossdock:metrics-scrapers -j ACCEPT",
            "-t filter -A CROSSDOCK-INPUT -s 10.9.0.0/16 -d 192.168.1.11/32 -p tcp -m tcp --dport 9464 -m comment --comment crossdock:metrics-scrapers -j ACCEPT",
            "-t filter -I INPUT -m comment --comment crossdock:jump -j CROSSDOCK-INPUT",
            "-t filter -I INPUT -d 192.168.1.11/32 -p tcp -m tcp --dport 9464 -m comment --comment crossdock:metrics-others -j REJECT --reject-with tcp-reset",
        ];
        assert_eq!(got, want);
        for r in scrape_rules(listen, &scrapers) {
            assert!(r.is_tagged(), "{r}");
            // One verdict per own chain: the REJECT stays out of CROSSDOCK-INPUT.
            if r.chain == INPUT_CHAIN {
                assert_eq!(r.args.last().map(String::as_str), Some("ACCEPT"), "{r}");
            }
        }
    }

    #[test]
    fn a_static_host_keeps_only_the_scrape_port_rules() {
        let mut i = input();
        i.bridge = None;
        assert!(desired_rules(&i).is_empty());
        i.scrape = Some(ScrapeGuard {
            listen: "192.168.1.11:9464".parse().unwrap(),
            scrapers: vec!["192.168.1.12/32".parse().unwrap()],
        });
        let got = desired_rules(&i);
        assert_eq!(got.len(), 3);
        assert!(got
            .iter()
            .all(|r| r.table == Table::Filter && r.is_tagged()));
    }

    #[test]
    fn sysctls_name_the_external_interface() {
        let s = desired_sysctls("eth0.100");
        assert_eq!(s[0].dotted(), "net.ipv4.ip_forward");
        assert_eq!(s[1].path, "net/ipv4/conf/eth0.100/forwarding");
        assert_eq!(s[1].dotted(), "net.ipv4.conf.eth0/100.forwarding");
        assert!(s.iter().all(|x| x.value == "1"));
    }

    #[test]
    fn builtin_chains_per_table() {
        assert!(Table::Raw.is_builtin("PREROUTING"));
        assert!(!Table::Raw.is_builtin("POSTROUTING"));
        assert!(!Table::Filter.is_builtin(DOCKER_USER));
        assert!(is_own_chain(FORWARD_CHAIN) && !is_own_chain(DOCKER_USER));
    }
}
