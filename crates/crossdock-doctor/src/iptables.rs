//! `iptables-save -c` output as data, and a walk of a packet through a chain.
//!
//! Why doctor reads the save format instead of asking `iptables -C` rule by rule: one dump of all
//! tables is a consistent snapshot with counters (which the probe compares before and after sending
//! traffic), it shows rule *positions* (a rule that exists but sits behind Docker's MASQUERADE or
//! raw DROP is the commonest breakage), and it is the same text an operator pastes into a bug report,
//! so the unit tests run on real dumps captured from Docker 20.10 and 28 (`tests/data/`). The parser
//! and the data types are `crossdock_hostnet::save`, the one the agent's firewall driver reads with.
//!
//! The walk ([`Walk::trace`]) answers "what happens to a packet from A to B arriving on X" by
//! following jumps and returns the way the kernel does, for the matches crossdock and Docker use
//! (addresses, interfaces with `+` wildcards, protocol, ports, conntrack state, address type,
//! comments). A rule with a match it cannot evaluate is assumed not to match and is listed as
//! uncertain, so the evidence says when the answer is a guess.

use crossdock_hostnet::save::{jump_target, split_save_line};
use ipnet::Ipv4Net;
use serde::Serialize;
use std::fmt;
use std::net::Ipv4Addr;

pub use crossdock_hostnet::command::join_quoted as shell_join;
pub use crossdock_hostnet::save::{Chain, Counters, ParseError, Ruleset, SavedRule, SavedTable};

/// The packet walk over one table of a dump.
pub trait Walk {
    /// Walks `packet` through `chain` (a built-in chain, normally) and reports the verdict.
    fn trace(&self, chain: &str, packet: &Packet) -> Trace;
}

impl Walk for SavedTable {
    fn trace(&self, chain: &str, packet: &Packet) -> Trace {
        let mut trace = Trace {
            verdict: String::new(),
            decided_at: None,
            by_policy: false,
            visited: Vec::new(),
            uncertain: Vec::new(),
        };
        if !self.chains.contains_key(chain) {
            // A built-in chain of a table that was never loaded: no rules, policy ACCEPT.
            trace.verdict = "ACCEPT".into();
            trace.by_policy = true;
            return trace;
        }
        match walk(self, chain, packet, &mut trace, 0) {
            Step::Verdict(v, at) => {
                trace.verdict = v;
                trace.decided_at = Some(at);
            }
            Step::FellOff => {
                let policy = self
                    .chains
                    .get(chain)
                    .and_then(|c| c.policy.clone())
                    .unwrap_or_else(|| "ACCEPT".into());
                trace.verdict = policy;
                trace.by_policy = true;
            }
            Step::Error(e) => trace.verdict = format!("unknown ({e})"),
        }
        trace
    }
}

fn walk(table: &SavedTable, chain: &str, packet: &Packet, trace: &mut Trace, depth: usize) -> Step {
    if depth > 32 {
        return Step::Error(format!("jumps nest deeper than 32 levels at {chain}"));
    }
    let Some(c) = table.chains.get(chain) else {
        return Step::Error(format!("chain {chain} does not exist"));
    };
    for (i, rule) in c.rules.iter().enumerate() {
        let at = RuleRef {
            chain: chain.to_string(),
            index: i + 1,
            rule: rule.text(),
        };
        let spec = RuleSpec::parse(&rule.args);
        match spec.matches(packet) {
            Tri::No => continue,
            Tri::Unknown => {
                trace.uncertain.push(at);
                continue;
            }
            Tri::Yes => {}
        }
        let Some(target) = spec.target.as_ref() else {
            continue;
        };
        match target.name.as_str() {
            "RETURN" => {
                trace.visited.push(at);
                return Step::FellOff;
            }
            t if TERMINAL.contains(&t) => return Step::Verdict(t.to_string(), at),
            t if table.chains.contains_key(t) => {
                trace.visited.push(at.clone());
                match walk(table, t, packet, trace, depth + 1) {
                    Step::FellOff if target.goto => return Step::FellOff,
                    Step::FellOff => {}
                    other => return other,
                }
            }
            // LOG, MARK, CT, TRACE, ...: non-terminating, the walk goes on.
            _ => {}
        }
    }
    Step::FellOff
}

const TERMINAL: &[&str] = &[
    "ACCEPT",
    "DROP",
    "REJECT",
    "MASQUERADE",
    "SNAT",
    "DNAT",
    "REDIRECT",
    "QUEUE",
    "NFQUEUE",
];

enum Step {
    Verdict(String, RuleRef),
    FellOff,
    Error(String),
}

/// A rule by position: chain and 1-based index (as `iptables -L --line-numbers` counts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleRef {
    pub chain: String,
    pub index: usize,
    pub rule: String,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} #{} `{}`", self.chain, self.index, self.rule)
    }
}

/// Where a packet ended up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trace {
    /// `ACCEPT`, `DROP`, `MASQUERADE`, ... or the policy when no rule decided.
    pub verdict: String,
    /// The rule that decided, unless the chain's policy did.
    pub decided_at: Option<RuleRef>,
    pub by_policy: bool,
    /// Jumps and returns taken, in order.
    pub visited: Vec<RuleRef>,
    /// Rules with matches this walk cannot evaluate, assumed not to match.
    pub uncertain: Vec<RuleRef>,
}

impl Trace {
    /// Whether the walk passed through (jumped into) `chain`.
    pub fn entered(&self, chain: &str) -> bool {
        self.visited
            .iter()
            .any(|r| jump_target(&split_save_line(&r.rule)) == Some(chain))
            || self.decided_at.as_ref().is_some_and(|d| d.chain == chain)
    }

    /// One line: verdict and where.
    pub fn describe(&self) -> String {
        let mut s = match (&self.decided_at, self.by_policy) {
            (Some(at), _) => format!("{} by {at}", self.verdict),
            (None, true) => format!("{} by the chain policy", self.verdict),
            (None, false) => self.verdict.clone(),
        };
        if !self.uncertain.is_empty() {
            s.push_str(&format!(
                " ({} rule(s) with matches doctor cannot evaluate assumed not to match, first {})",
                self.uncertain.len(),
                self.uncertain[0]
            ));
        }
        s
    }
}

/// The packet a walk follows. Fields left `None` match any rule condition on them as unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub in_if: Option<String>,
    pub out_if: Option<String>,
    /// `icmp`, `tcp`, `udp`.
    pub proto: String,
    pub dport: Option<u16>,
    /// Conntrack state: `NEW` for the first packet of a flow.
    pub ct_state: String,
    /// Whether the destination is an address of this host (`-m addrtype --dst-type LOCAL`).
    pub dst_local: bool,
    pub src_local: bool,
}

impl Packet {
    /// A new ICMP flow from `src` to `dst`.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        Self {
            src,
            dst,
            in_if: None,
            out_if: None,
            proto: "icmp".into(),
            dport: None,
            ct_state: "NEW".into(),
            dst_local: false,
            src_local: false,
        }
    }
    pub fn arriving_on(mut self, dev: &str) -> Self {
        self.in_if = Some(dev.into());
        self
    }
    pub fn leaving_by(mut self, dev: &str) -> Self {
        self.out_if = Some(dev.into());
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tri {
    Yes,
    No,
    Unknown,
}

impl Tri {
    fn from(b: bool) -> Tri {
        if b {
            Tri::Yes
        } else {
            Tri::No
        }
    }
    fn negate_if(self, neg: bool) -> Tri {
        match (self, neg) {
            (Tri::Yes, true) => Tri::No,
            (Tri::No, true) => Tri::Yes,
            (t, _) => t,
        }
    }
    fn and(self, other: Tri) -> Tri {
        match (self, other) {
            (Tri::No, _) | (_, Tri::No) => Tri::No,
            (Tri::Unknown, _) | (_, Tri::Unknown) => Tri::Unknown,
            _ => Tri::Yes,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Cond<T> {
    negated: bool,
    value: T,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    name: String,
    goto: bool,
}

/// A module option: `--ctstate NEW,ESTABLISHED` under `-m conntrack`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModOpt {
    module: String,
    name: String,
    negated: bool,
    values: Vec<String>,
}

/// A rule's conditions and target, as far as the walk understands them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RuleSpec {
    src: Option<Cond<Option<Ipv4Net>>>,
    dst: Option<Cond<Option<Ipv4Net>>>,
    in_if: Option<Cond<String>>,
    out_if: Option<Cond<String>>,
    proto: Option<Cond<String>>,
    opts: Vec<ModOpt>,
    /// Conditions not understood at all (`-f`, unknown short options).
    unknown: bool,
    target: Option<Target>,
}

fn parse_net(s: &str) -> Option<Ipv4Net> {
    s.parse::<Ipv4Net>()
        .ok()
        .or_else(|| s.parse::<Ipv4Addr>().ok().map(Ipv4Net::from))
        .or_else(|| {
            let (a, m) = s.split_once('/')?;
            let addr: Ipv4Addr = a.parse().ok()?;
            let mask: Ipv4Addr = m.parse().ok()?;
            Ipv4Net::with_netmask(addr, mask).ok()
        })
}

impl RuleSpec {
    fn parse(args: &[String]) -> RuleSpec {
        let mut spec = RuleSpec::default();
        let mut module = String::new();
        let mut negated = false;
        let mut i = 0;
        let value = |i: usize| args.get(i + 1).cloned().unwrap_or_default();
        while i < args.len() {
            let a = args[i].as_str();
            match a {
                "!" => {
                    negated = true;
                    i += 1;
                    continue;
                }
                "-s" | "--source" | "-d" | "--destination" => {
                    let cond = Cond {
                        negated,
                        value: parse_net(&value(i)),
                    };
                    if a.starts_with("-s") || a == "--source" {
                        spec.src = Some(cond);
                    } else {
                        spec.dst = Some(cond);
                    }
                    i += 2;
                }
                "-i" | "--in-interface" => {
                    spec.in_if = Some(Cond {
                        negated,
                        value: value(i),
                    });
                    i += 2;
                }
                "-o" | "--out-interface" => {
                    spec.out_if = Some(Cond {
                        negated,
                        value: value(i),
                    });
                    i += 2;
                }
                "-p" | "--protocol" => {
                    spec.proto = Some(Cond {
                        negated,
                        value: value(i).to_ascii_lowercase(),
                    });
                    i += 2;
                }
                "-m" | "--match" => {
                    module = value(i);
                    i += 2;
                }
                "-j" | "--jump" | "-g" | "--goto" => {
                    spec.target = Some(Target {
                        name: value(i),
                        goto: a == "-g" || a == "--goto",
                    });
                    // Target options follow; none of them affects matching.
                    break;
                }
                _ if a.starts_with("--") => {
                    let mut values = Vec::new();
                    let mut j = i + 1;
                    while j < args.len() && !args[j].starts_with('-') && args[j] != "!" {
                        values.push(args[j].clone());
                        j += 1;
                    }
                    spec.opts.push(ModOpt {
                        module: module.clone(),
                        name: a.trim_start_matches('-').to_string(),
                        negated,
                        values,
                    });
                    i = j;
                }
                _ => {
                    spec.unknown = true;
                    i += 1;
                }
            }
            negated = false;
        }
        spec
    }

    fn matches(&self, p: &Packet) -> Tri {
        let mut t = Tri::Yes;
        let net = |c: &Cond<Option<Ipv4Net>>, addr: Ipv4Addr| match c.value {
            Some(n) => Tri::from(n.contains(&addr)).negate_if(c.negated),
            None => Tri::Unknown,
        };
        if let Some(c) = &self.src {
            t = t.and(net(c, p.src));
        }
        if let Some(c) = &self.dst {
            t = t.and(net(c, p.dst));
        }
        let iface = |c: &Cond<String>, dev: &Option<String>| match dev {
            Some(d) => Tri::from(iface_matches(&c.value, d)).negate_if(c.negated),
            None => Tri::Unknown,
        };
        if let Some(c) = &self.in_if {
            t = t.and(iface(c, &p.in_if));
        }
        if let Some(c) = &self.out_if {
            t = t.and(iface(c, &p.out_if));
        }
        if let Some(c) = &self.proto {
            let m = c.value == "all" || c.value == p.proto || (c.value == "1" && p.proto == "icmp");
            t = t.and(Tri::from(m).negate_if(c.negated));
        }
        if self.unknown {
            t = t.and(Tri::Unknown);
        }
        for o in &self.opts {
            t = t.and(o.matches(p).negate_if(o.negated));
            if t == Tri::No {
                break;
            }
        }
        t
    }
}

impl ModOpt {
    fn matches(&self, p: &Packet) -> Tri {
        let first = self.values.first().map(String::as_str).unwrap_or("");
        match (self.module.as_str(), self.name.as_str()) {
            ("comment", _) => Tri::Yes,
            ("conntrack", "ctstate") | ("state", "state") => {
                Tri::from(first.split(',').any(|s| s == p.ct_state))
            }
            ("addrtype", "dst-type") if first == "LOCAL" => Tri::from(p.dst_local),
            ("addrtype", "src-type") if first == "LOCAL" => Tri::from(p.src_local),
            ("tcp" | "udp", "dport" | "destination-port") => match p.dport {
                Some(port) if p.proto == self.module => Tri::from(port_in(first, port)),
                Some(_) => Tri::No,
                None => Tri::Unknown,
            },
            _ => Tri::Unknown,
        }
    }
}

fn port_in(spec: &str, port: u16) -> bool {
    match spec.split_once(':') {
        Some((lo, hi)) => {
            let lo = lo.parse().unwrap_or(0);
            let hi = hi.parse().unwrap_or(u16::MAX);
            (lo..=hi).contains(&port)
        }
        None => spec.parse() == Ok(port),
    }
}

/// iptables interface matching: exact, or a prefix when the pattern ends in `+`.
pub fn iface_matches(pattern: &str, dev: &str) -> bool {
    match pattern.strip_suffix('+') {
        Some(prefix) => dev.starts_with(prefix),
        None => pattern == dev,
    }
}

/// Whether a rule is an unconditional ACCEPT (no address, interface, protocol or module condition
/// other than a comment): the blanket `FORWARD ACCEPT` the article's recipe adds.
pub fn is_blanket_accept(args: &[String]) -> bool {
    let spec = RuleSpec::parse(args);
    spec.target.as_ref().is_some_and(|t| t.name == "ACCEPT")
        && spec.src.is_none()
        && spec.dst.is_none()
        && spec.in_if.is_none()
        && spec.out_if.is_none()
        && spec
            .proto
            .as_ref()
            .is_none_or(|p| p.value == "all" && !p.negated)
        && !spec.unknown
        && spec.opts.iter().all(|o| o.module == "comment")
}

/// Whether a rule is Docker's MASQUERADE for traffic from `subnet` (`-s <subnet> ! -o <bridge> -j
/// MASQUERADE`), or any MASQUERADE/SNAT whose source condition covers part of `subnet`.
pub fn masquerades(args: &[String], subnet: Ipv4Net) -> bool {
    let spec = RuleSpec::parse(args);
    let nat = spec
        .target
        .as_ref()
        .is_some_and(|t| t.name == "MASQUERADE" || t.name == "SNAT");
    nat && match &spec.src {
        None => true,
        Some(Cond {
            negated: false,
            value: Some(n),
        }) => n.contains(&subnet.network()) || subnet.contains(&n.network()),
        Some(_) => true,
    }
}

/// Whether a raw-table rule is one of Docker 28.2+'s per-container drops for an address in `subnet`
/// (`-d <container>/32 ! -i <bridge> -j DROP`).
pub fn is_docker_raw_drop(args: &[String], subnet: Ipv4Net) -> bool {
    let spec = RuleSpec::parse(args);
    spec.target.as_ref().is_some_and(|t| t.name == "DROP")
        && spec.in_if.as_ref().is_some_and(|c| c.negated)
        && matches!(&spec.dst, Some(Cond { negated: false, value: Some(n) }) if subnet.contains(n))
}

/// The destination of a rule's `-d` condition, when it is a plain (not negated) address or network.
pub fn rule_destination(args: &[String]) -> Option<Ipv4Net> {
    match RuleSpec::parse(args).dst {
        Some(Cond {
            negated: false,
            value: Some(n),
        }) => Some(n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D20_PLAIN: &str = include_str!("../tests/data/docker20-plain.iptables-save");
    const D20_CD: &str = include_str!("../tests/data/docker20-crossdock.iptables-save");
    const D28_PLAIN: &str = include_str!("../tests/data/docker28-plain.iptables-save");
    const D28_CD: &str = include_str!("../tests/data/docker28-crossdock.iptables-save");

    fn a(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }
    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn parses_real_docker20_dump_with_counters() {
        let rs = Ruleset::parse(D20_CD).unwrap();
        assert_eq!(rs.backend(), Some("nf_tables"));
        assert_eq!(
            rs.tables.keys().collect::<Vec<_>>(),
            vec!["filter", "nat", "raw"]
        );
        let filter = rs.table("filter");
        let fwd = filter.chain("FORWARD").unwrap();
        assert!(fwd.is_builtin());
        assert_eq!(fwd.rules.len(), 6);
        assert_eq!(fwd.rules[0].args, ["-j", "DOCKER-USER"]);
        let user = filter.chain("DOCKER-USER").unwrap();
        assert_eq!(user.policy, None);
        assert_eq!(
            user.rules[0].target_name().as_deref(),
            Some("CROSSDOCK-FORWARD")
        );
        assert_eq!(
            user.rules[0].args[3], "crossdock:jump",
            "quoted comment unquoted"
        );
        let nat = rs.table("nat");
        let post = nat.chain("POSTROUTING").unwrap();
        assert_eq!(
            post.rules[0].counters,
            Some(Counters {
                packets: 1,
                bytes: 84
            })
        );
        assert_eq!(
            post.rules[1].text(),
            "-s 10.1.0.0/24 ! -o docker0 -j MASQUERADE"
        );
        assert!(masquerades(&post.rules[1].args, net("10.1.0.0/24")));
        assert!(!masquerades(&post.rules[0].args, net("10.1.0.0/24")));
    }

    #[test]
    fn parses_real_docker28_dump_and_finds_the_raw_drop() {
        let rs = Ruleset::parse(D28_PLAIN).unwrap();
        let raw = rs.table("raw").chain("PREROUTING").unwrap();
        assert_eq!(raw.policy.as_deref(), Some("ACCEPT"));
        assert_eq!(raw.rules.len(), 1);
        assert_eq!(raw.rules[0].text(), "-d 10.1.0.2/32 ! -i docker0 -j DROP");
        assert!(is_docker_raw_drop(&raw.rules[0].args, net("10.1.0.0/24")));
        assert!(!is_docker_raw_drop(&raw.rules[0].args, net("10.2.0.0/24")));
        let filter = rs.table("filter");
        assert!(filter.chain("DOCKER-FORWARD").is_some());
        assert!(filter.chain("CROSSDOCK-FORWARD").is_none());
        // Docker 20.10 never touches the raw table, so iptables-save leaves it out; it reads as empty
        // and lets everything through.
        let rs20 = Ruleset::parse(D20_PLAIN).unwrap();
        assert!(!rs20.tables.contains_key("raw"));
        let t = rs20
            .table("raw")
            .trace("PREROUTING", &Packet::new(a("10.2.0.5"), a("10.1.0.2")));
        assert_eq!((t.verdict.as_str(), t.by_policy), ("ACCEPT", true));
    }

    #[test]
    fn docker28_raw_drop_kills_cluster_traffic_until_crossdock_accepts_it_first() {
        let pkt = Packet::new(a("10.2.0.5"), a("10.1.0.2")).arriving_on("eth0");
        let plain = Ruleset::parse(D28_PLAIN).unwrap();
        let t = plain.table("raw").trace("PREROUTING", &pkt);
        assert_eq!(t.verdict, "DROP");
        assert_eq!(t.decided_at.as_ref().unwrap().index, 1);
        let fixed = Ruleset::parse(D28_CD).unwrap();
        let t = fixed.table("raw").trace("PREROUTING", &pkt);
        assert_eq!(t.verdict, "ACCEPT", "{t:?}");
        assert_eq!(t.decided_at.as_ref().unwrap().chain, "CROSSDOCK-PREROUTING");
        assert!(t.entered("CROSSDOCK-PREROUTING"));
        // A source outside the cluster range still hits Docker's drop.
        let outsider = Packet::new(a("192.168.1.99"), a("10.1.0.2")).arriving_on("eth0");
        let t = fixed.table("raw").trace("PREROUTING", &outsider);
        assert_eq!(t.verdict, "DROP");
        assert_eq!(t.decided_at.unwrap().chain, "PREROUTING");
    }

    #[test]
    fn nat_exemption_keeps_the_container_source_only_if_it_ends_the_table() {
        let pkt = Packet::new(a("10.1.0.2"), a("10.2.0.5"))
            .arriving_on("docker0")
            .leaving_by("eth0");
        // The captured dumps carry the exemption as an ACCEPT inside CROSSDOCK-POSTROUTING: it ends
        // the nat table for the flow, so Docker's MASQUERADE after the jump never sees it.
        for (dump, want) in [
            (D20_PLAIN, "MASQUERADE"),
            (D28_PLAIN, "MASQUERADE"),
            (D20_CD, "ACCEPT"),
            (D28_CD, "ACCEPT"),
        ] {
            let rs = Ruleset::parse(dump).unwrap();
            let t = rs.table("nat").trace("POSTROUTING", &pkt);
            assert_eq!(t.verdict, want, "{}", t.describe());
        }
        // The same rule as a RETURN resumes POSTROUTING, where the MASQUERADE is next (checked on the
        // kernel: tests/kernel_agreement.rs).
        for dump in [D20_CD, D28_CD] {
            let returning = dump.replace(
                "crossdock:keep-container-source\" -j ACCEPT",
                "crossdock:keep-container-source\" -j RETURN",
            );
            assert_ne!(returning, dump);
            let rs = Ruleset::parse(&returning).unwrap();
            let t = rs.table("nat").trace("POSTROUTING", &pkt);
            assert_eq!(t.verdict, "MASQUERADE", "{}", t.describe());
            assert!(t.entered("CROSSDOCK-POSTROUTING"));
        }
        // Traffic to the internet is still masqueraded with the exemption in place.
        let out = Packet::new(a("10.1.0.2"), a("8.8.8.8")).leaving_by("eth0");
        let rs = Ruleset::parse(D28_PLAIN).unwrap();
        assert_eq!(
            rs.table("nat").trace("POSTROUTING", &out).verdict,
            "MASQUERADE"
        );
    }

    #[test]
    fn forward_walk_through_docker_chains() {
        let inbound = Packet::new(a("10.2.0.5"), a("10.1.0.2"))
            .arriving_on("eth0")
            .leaving_by("docker0");
        // Docker 28 drops unpublished traffic in its DOCKER chain whatever the policy.
        let plain = Ruleset::parse(D28_PLAIN).unwrap();
        let t = plain.table("filter").trace("FORWARD", &inbound);
        assert_eq!(t.verdict, "DROP");
        assert_eq!(t.decided_at.as_ref().unwrap().chain, "DOCKER");
        assert!(t.entered("DOCKER-FORWARD"));
        let fixed = Ruleset::parse(D28_CD).unwrap();
        let t = fixed.table("filter").trace("FORWARD", &inbound);
        assert_eq!(t.verdict, "ACCEPT");
        assert!(t.entered("CROSSDOCK-FORWARD"));
        // Docker 20.10 in this namespace left FORWARD's policy ACCEPT, so even without crossdock the
        // packet is accepted, by the policy.
        let d20 = Ruleset::parse(D20_PLAIN).unwrap();
        let t = d20.table("filter").trace("FORWARD", &inbound);
        assert_eq!((t.verdict.as_str(), t.by_policy), ("ACCEPT", true), "{t:?}");
        // A reply on an established flow is accepted by Docker's conntrack rule.
        let mut reply = inbound.clone();
        reply.ct_state = "ESTABLISHED".into();
        let t = d20.table("filter").trace("FORWARD", &reply);
        assert_eq!(t.decided_at.unwrap().index, 3);
    }

    #[test]
    fn uncertain_matches_are_reported() {
        let text = "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -m set --match-set peers src -j ACCEPT\n-A FORWARD -f -j ACCEPT\nCOMMIT\n";
        let rs = Ruleset::parse(text).unwrap();
        let t = rs
            .table("filter")
            .trace("FORWARD", &Packet::new(a("10.2.0.5"), a("10.1.0.2")));
        assert_eq!(t.verdict, "DROP");
        assert!(t.by_policy);
        assert_eq!(t.uncertain.len(), 2);
        assert!(t.describe().contains("cannot evaluate"), "{}", t.describe());
    }

    #[test]
    fn goto_returns_past_the_caller_and_absent_chains_accept() {
        let text = "*filter\n:FORWARD DROP [0:0]\n:A - [0:0]\n:B - [0:0]\n-A FORWARD -j A\n-A FORWARD -j ACCEPT\n-A A -g B\n-A A -j REJECT\n-A B -j RETURN\n-A B -j DROP\nCOMMIT\n";
        let rs = Ruleset::parse(text).unwrap();
        let f = rs.table("filter");
        let t = f.trace("FORWARD", &Packet::new(a("1.1.1.1"), a("2.2.2.2")));
        // B returns; since A went to B with -g, control returns to FORWARD, not to A's REJECT.
        assert_eq!(t.verdict, "ACCEPT");
        assert_eq!(t.decided_at.unwrap().index, 2);
        // A built-in chain absent from the dump has no rules and the default policy.
        let t = f.trace("NOPE", &Packet::new(a("1.1.1.1"), a("2.2.2.2")));
        assert_eq!((t.verdict.as_str(), t.by_policy), ("ACCEPT", true));
    }

    #[test]
    fn interface_wildcards_negations_ports_and_masks() {
        assert!(iface_matches("veth+", "veth12ab"));
        assert!(!iface_matches("veth+", "eth0"));
        assert!(iface_matches("eth0", "eth0"));
        let text = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 10.0.0.0/255.0.0.0 ! -i br+ -p tcp -m tcp --dport 8000:8080 -j DROP\nCOMMIT\n";
        let rs = Ruleset::parse(text).unwrap();
        let f = rs.table("filter");
        let mut p = Packet::new(a("10.9.9.9"), a("10.1.0.2")).arriving_on("eth0");
        p.proto = "tcp".into();
        p.dport = Some(8001);
        assert_eq!(f.trace("INPUT", &p).verdict, "DROP");
        p.dport = Some(9000);
        assert_eq!(f.trace("INPUT", &p).verdict, "ACCEPT");
        p.dport = Some(8001);
        p.in_if = Some("br-abc".into());
        assert_eq!(f.trace("INPUT", &p).verdict, "ACCEPT");
    }

    #[test]
    fn blanket_accept_is_recognised_and_narrow_ones_are_not() {
        let w = |s: &str| split_save_line(s);
        assert!(is_blanket_accept(&w("-j ACCEPT")));
        assert!(is_blanket_accept(&w(
            "-m comment --comment \"open up\" -j ACCEPT"
        )));
        assert!(!is_blanket_accept(&w("-s 10.0.0.0/8 -j ACCEPT")));
        assert!(!is_blanket_accept(&w(
            "-o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        )));
        assert!(!is_blanket_accept(&w("-j DROP")));
        assert!(!is_blanket_accept(&w("-j DOCKER-USER")));
    }
}
