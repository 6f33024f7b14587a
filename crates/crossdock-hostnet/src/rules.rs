//! The desired host state as plain data: which iptables rules and sysctls this host needs for a given
//! cluster range, local container subnet and bridge. Pure functions, no side effects, so the whole
//! policy is unit-tested without root and the executor only ever applies what is computed here.
//!
//! Rules are written in the exact token order `iptables -S` prints them back in (`-s`, `-d`, `-i`/`-o`,
//! matches, `-j`), so a rule read from the kernel compares equal, token for token, to the desired one.

use ipnet::Ipv4Net;
use std::fmt;

/// Comment prefix carried by every rule crossdock writes; it is how `cleanup` and `reconcile` tell
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

/// What the host rules are computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredInput {
    /// Every host's container subnet lies inside these.
    pub cluster_cidrs: Vec<Ipv4Net>,
    /// This host's container subnet (the served Docker network's subnet).
    pub local_subnet: Ipv4Net,
    /// The served network's bridge device (`docker0`, `br-<id12>`, ...).
    pub bridge: String,
    /// The interface towards the VPC, whose forwarding sysctl must be on.
    pub external_interface: String,
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
pub fn desired_rules(input: &DesiredInput) -> Vec<Rule> {
    let local = input.local_subnet.to_string();
    let bridge = input.bridge.as_str();
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

/// Splits one line of `iptables -S` output into arguments, honouring double quotes and backslash
/// escapes (comments are printed quoted).
pub fn split_save_line(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
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
            bridge: "docker0".into(),
            external_interface: "eth0".into(),
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
        i.bridge = "br-0123456789ab".into();
        i.local_subnet = "10.8.7.0/24".parse().unwrap();
        let text = render(&desired_rules(&i)).join("\n");
        assert!(!text.contains("docker0"));
        assert!(!text.contains("10.0.3.0/24"));
        assert_eq!(text.matches("br-0123456789ab").count(), 4);
        assert_eq!(text.matches("10.8.7.0/24").count(), 6);
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
    fn save_lines_split_like_iptables_prints_them() {
        let line = r#"-A CROSSDOCK-FORWARD -s 10.0.0.0/8 -d 10.1.0.0/24 -o docker0 -m comment --comment "crossdock:cluster-to-containers" -j ACCEPT"#;
        let got = split_save_line(line);
        assert_eq!(got[0], "-A");
        assert_eq!(got[11], "crossdock:cluster-to-containers");
        assert!(is_tagged(&got));
        let spaced = split_save_line(r#"-A X -m comment --comment "a \"quoted\" word" -j DROP"#);
        assert_eq!(spaced[5], "a \"quoted\" word");
        assert_eq!(spaced.len(), 8);
        assert!(!is_tagged(&spaced));
        assert_eq!(split_save_line(r#"-A X --comment """#)[3], "");
    }

    #[test]
    fn builtin_chains_per_table() {
        assert!(Table::Raw.is_builtin("PREROUTING"));
        assert!(!Table::Raw.is_builtin("POSTROUTING"));
        assert!(!Table::Filter.is_builtin(DOCKER_USER));
        assert!(is_own_chain(FORWARD_CHAIN) && !is_own_chain(DOCKER_USER));
    }
}
