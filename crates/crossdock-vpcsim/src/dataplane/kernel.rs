//! The kernel side of the data plane: one kernel routing table per VPC route table, chosen by the
//! bridge (vSwitch) a packet comes in on.
//!
//! Why policy rules on the incoming bridge and not on the source address: routed container traffic
//! keeps the container's address as its source (that is the point of crossdock), so only the port a
//! packet arrives on tells which vSwitch it comes from, as in a VPC.
//!
//! Why each table ends in a blackhole default: without it a destination missing from one table would
//! fall through to the next rule (the main table, or another vSwitch's table) and the lab would forgive
//! exactly the mistake it must show — a route missing from the table of the sender's vSwitch.
//!
//! The work is split so the decisions are data: [`plan`] turns the desired state and the bridges found
//! in the namespace into the wanted [`KernelState`]; [`diff`] compares it with what the kernel holds
//! and yields [`Changes`], which [`Changes::commands`] spells as `ip` argument lists. Only rules and
//! routes marked `proto 250` ([`ROUTE_PROTO`]) are ever read, changed or removed.

use super::{nft_script, Dataplane, Desired, ROUTE_PROTO};
use ipnet::Ipv4Net;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// The priority of the emulator's policy rules (after `local`, before `main`).
pub const RULE_PRIORITY: u32 = 1000;
/// The kernel's main routing table.
pub const MAIN_TABLE: u32 = 254;

/// Where a kernel route sends packets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hop {
    /// To an instance's private IP (a custom entry).
    Via(Ipv4Addr),
    /// Onto a vSwitch's bridge (a system entry: the vSwitch CIDR).
    Link(String),
    /// Dropped (the end of every table).
    Blackhole,
}

/// A policy rule: traffic coming in on `iif` is routed by kernel table `table`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    pub priority: u32,
    pub iif: String,
    pub table: u32,
}

/// A route's identity: (kernel table, destination).
pub type RouteKey = (u32, Ipv4Net);

/// The emulator's rules and routes in a namespace (those marked `proto 250`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelState {
    pub rules: BTreeSet<Rule>,
    pub routes: BTreeMap<RouteKey, Hop>,
}

impl KernelState {
    /// The routes of one kernel table.
    pub fn table(&self, table: u32) -> BTreeMap<Ipv4Net, Hop> {
        self.routes
            .iter()
            .filter(|((t, _), _)| *t == table)
            .map(|((_, dst), hop)| (*dst, hop.clone()))
            .collect()
    }
}

/// What the kernel should hold for `desired`, given the bridge holding each vSwitch's gateway
/// (`devices`: vSwitch CIDR -> interface). A vSwitch without a bridge in this namespace gets neither a
/// rule nor a system route (nothing of it is wired here). Within a table the system routes win over
/// custom entries with the same destination (the API refuses those), and a custom default route
/// replaces the blackhole (a VPC may send its default to a NAT instance).
pub fn plan(desired: &Desired, devices: &BTreeMap<Ipv4Net, String>) -> KernelState {
    let mut want = KernelState::default();
    let any: Ipv4Net = Ipv4Net::default();
    for t in &desired.tables {
        let table = t.kernel_table;
        for src in &t.vswitches {
            if let Some(dev) = devices.get(src) {
                want.rules.insert(Rule {
                    priority: RULE_PRIORITY,
                    iif: dev.clone(),
                    table,
                });
            }
        }
        want.routes.insert((table, any), Hop::Blackhole);
        for (dst, via) in &t.routes {
            want.routes.insert((table, *dst), Hop::Via(*via));
        }
        for cidr in &desired.vswitches {
            if let Some(dev) = devices.get(cidr) {
                want.routes.insert((table, *cidr), Hop::Link(dev.clone()));
            }
        }
    }
    want
}

/// How to get from what the kernel holds to what it should hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Routes to add or replace.
    pub put_routes: Vec<(RouteKey, Hop)>,
    pub add_rules: Vec<Rule>,
    pub del_rules: Vec<Rule>,
    pub del_routes: Vec<RouteKey>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.put_routes.is_empty()
            && self.add_rules.is_empty()
            && self.del_rules.is_empty()
            && self.del_routes.is_empty()
    }

    /// The `ip` argument lists, in the order they must run: tables filled before a rule points at
    /// them, a vSwitch's new rule before its old one goes (no moment without a table), routes of a
    /// table no longer used removed last.
    pub fn commands(&self) -> Vec<Vec<String>> {
        let mut cmds: Vec<Vec<String>> = vec![];
        for (key, hop) in &self.put_routes {
            cmds.push(put_route_args(*key, hop));
        }
        for r in &self.add_rules {
            cmds.push(rule_args("add", r));
        }
        for r in &self.del_rules {
            cmds.push(rule_args("del", r));
        }
        for (table, dst) in &self.del_routes {
            cmds.push(strings(&[
                "route",
                "del",
                &dst.to_string(),
                "table",
                &table.to_string(),
                "proto",
                &ROUTE_PROTO.to_string(),
            ]));
        }
        cmds
    }
}

/// The changes that turn `have` into `want`.
pub fn diff(have: &KernelState, want: &KernelState) -> Changes {
    Changes {
        put_routes: want
            .routes
            .iter()
            .filter(|(k, hop)| have.routes.get(*k) != Some(*hop))
            .map(|(k, hop)| (*k, hop.clone()))
            .collect(),
        add_rules: want.rules.difference(&have.rules).cloned().collect(),
        del_rules: have.rules.difference(&want.rules).cloned().collect(),
        del_routes: have
            .routes
            .keys()
            .filter(|k| !want.routes.contains_key(*k))
            .copied()
            .collect(),
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn put_route_args((table, dst): RouteKey, hop: &Hop) -> Vec<String> {
    let dst = dst.to_string();
    let mut args = match hop {
        Hop::Via(ip) => strings(&["route", "replace", &dst, "via", &ip.to_string()]),
        Hop::Link(dev) => strings(&["route", "replace", &dst, "dev", dev, "scope", "link"]),
        Hop::Blackhole => strings(&["route", "replace", "blackhole", &dst]),
    };
    args.extend(strings(&[
        "proto",
        &ROUTE_PROTO.to_string(),
        "table",
        &table.to_string(),
    ]));
    args
}

fn rule_args(verb: &str, r: &Rule) -> Vec<String> {
    strings(&[
        "rule",
        verb,
        "iif",
        &r.iif,
        "lookup",
        &r.table.to_string(),
        "priority",
        &r.priority.to_string(),
        "proto",
        &ROUTE_PROTO.to_string(),
    ])
}

fn table_number(name: Option<&str>) -> anyhow::Result<u32> {
    match name {
        None | Some("main") => Ok(MAIN_TABLE),
        Some("local") => Ok(255),
        Some("default") => Ok(253),
        Some(n) => n
            .parse()
            .map_err(|_| anyhow::anyhow!("unknown routing table `{n}` in `ip -j` output")),
    }
}

fn json_array(out: &str, what: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    if out.trim().is_empty() {
        return Ok(vec![]);
    }
    let v: serde_json::Value = serde_json::from_str(out)
        .map_err(|e| anyhow::anyhow!("cannot read `ip -j {what}` output: {e}"))?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

fn dst_of(r: &serde_json::Value) -> anyhow::Result<Option<Ipv4Net>> {
    let Some(dst) = r.get("dst").and_then(|d| d.as_str()) else {
        return Ok(None);
    };
    Ok(Some(if dst == "default" {
        Ipv4Net::default()
    } else if dst.contains('/') {
        dst.parse()?
    } else {
        Ipv4Net::new(dst.parse()?, 32)?
    }))
}

/// Reads `ip -j -4 route show table all proto 250` output.
pub fn parse_routes_json(out: &str) -> anyhow::Result<BTreeMap<RouteKey, Hop>> {
    let mut routes = BTreeMap::new();
    for r in json_array(out, "route")? {
        let Some(dst) = dst_of(&r)? else { continue };
        let table = table_number(r.get("table").and_then(|t| t.as_str()))?;
        let gateway = r.get("gateway").and_then(|g| g.as_str());
        let hop = if r.get("type").and_then(|t| t.as_str()) == Some("blackhole") {
            Hop::Blackhole
        } else if let Some(gw) = gateway.and_then(|g| g.parse().ok()) {
            Hop::Via(gw)
        } else {
            Hop::Link(
                r.get("dev")
                    .and_then(|d| d.as_str())
                    .unwrap_or_default()
                    .to_string(),
            )
        };
        routes.insert((table, dst), hop);
    }
    Ok(routes)
}

/// Reads `ip -j -4 rule show` output: the rules marked `proto 250` that select a table by interface.
pub fn parse_rules_json(out: &str) -> anyhow::Result<BTreeSet<Rule>> {
    let mut rules = BTreeSet::new();
    for r in json_array(out, "rule")? {
        if r.get("protocol").and_then(|p| p.as_str()) != Some(&ROUTE_PROTO.to_string()) {
            continue;
        }
        let Some(iif) = r.get("iif").and_then(|i| i.as_str()) else {
            continue;
        };
        rules.insert(Rule {
            priority: r.get("priority").and_then(|p| p.as_u64()).unwrap_or(0) as u32,
            iif: iif.to_string(),
            table: table_number(r.get("table").and_then(|t| t.as_str()))?,
        });
    }
    Ok(rules)
}

/// Reads `ip -j -4 route show table main proto kernel scope link` output: which interface holds each
/// connected network (a vSwitch CIDR -> its bridge).
pub fn parse_devices_json(out: &str) -> anyhow::Result<BTreeMap<Ipv4Net, String>> {
    let mut devices = BTreeMap::new();
    for r in json_array(out, "route")? {
        let (Some(dst), Some(dev)) = (dst_of(&r)?, r.get("dev").and_then(|d| d.as_str())) else {
            continue;
        };
        devices.insert(dst, dev.to_string());
    }
    Ok(devices)
}

/// Policy rules, kernel tables and nftables rules in the current network namespace (or `netns`,
/// through `ip netns exec`, for tests that make their own namespace).
#[derive(Debug, Clone, Default)]
pub struct KernelDataplane {
    pub netns: Option<String>,
}

impl KernelDataplane {
    pub fn new(netns: Option<String>) -> Self {
        KernelDataplane { netns }
    }

    fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        }
    }

    fn run(&self, program: &str, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        let mut cmd = self.command(program);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            anyhow::anyhow!("cannot run `{program}`: {e} (install iproute2 and nftables)")
        })?;
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("piped")
                .write_all(input.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            anyhow::bail!(
                "`{program} {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The emulator's rules and routes in the namespace now.
    pub fn current(&self) -> anyhow::Result<KernelState> {
        let proto = ROUTE_PROTO.to_string();
        let routes = self.run(
            "ip",
            &["-j", "-4", "route", "show", "table", "all", "proto", &proto],
            None,
        )?;
        let rules = self.run("ip", &["-j", "-4", "rule", "show"], None)?;
        Ok(KernelState {
            rules: parse_rules_json(&rules)?,
            routes: parse_routes_json(&routes)?,
        })
    }

    /// The connected networks of the namespace and their interfaces (where each vSwitch is wired).
    pub fn devices(&self) -> anyhow::Result<BTreeMap<Ipv4Net, String>> {
        let out = self.run(
            "ip",
            &[
                "-j", "-4", "route", "show", "table", "main", "proto", "kernel", "scope", "link",
            ],
            None,
        )?;
        parse_devices_json(&out)
    }

    /// Converges rules and routes; one bad route (say, a next hop off every vSwitch) does not hold
    /// back the others.
    fn sync_routing(&self, desired: &Desired) -> anyhow::Result<()> {
        let want = plan(desired, &self.devices()?);
        let changes = diff(&self.current()?, &want);
        let errors: Vec<String> = changes
            .commands()
            .iter()
            .filter_map(|args| {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                self.run("ip", &args, None).err().map(|e| format!("{e:#}"))
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{}", errors.join("; "))
        }
    }

    fn sync_filter(&self, desired: &Desired) -> anyhow::Result<()> {
        let script = nft_script(&desired.ports);
        // `add table` + `delete table` makes the delete safe when the table does not exist yet; the
        // whole file is one transaction, so there is no moment without the rules.
        self.run("nft", &["-f", "-"], Some(&script))?;
        Ok(())
    }
}

impl Dataplane for KernelDataplane {
    fn kind(&self) -> &'static str {
        "kernel"
    }

    fn apply(&self, desired: &Desired) -> anyhow::Result<()> {
        let routing = self.sync_routing(desired);
        self.sync_filter(desired)?;
        routing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::TablePlane;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// Two vSwitches: vsw (192.168.1.0/24) on the system table, vsw2 (192.168.2.0/24) on a custom one.
    fn two_zones() -> (Desired, BTreeMap<Ipv4Net, String>) {
        let desired = Desired {
            vswitches: vec![net("192.168.1.0/24"), net("192.168.2.0/24")],
            tables: vec![
                TablePlane {
                    route_table_id: "vtb-sys".into(),
                    kernel_table: 1000,
                    vswitches: vec![net("192.168.1.0/24")],
                    routes: BTreeMap::from([
                        (net("10.0.0.0/24"), ip("192.168.1.11")),
                        (net("10.1.0.0/24"), ip("192.168.2.12")),
                    ]),
                },
                TablePlane {
                    route_table_id: "vtb-b".into(),
                    kernel_table: 1002,
                    vswitches: vec![net("192.168.2.0/24")],
                    routes: BTreeMap::from([(net("10.1.0.0/24"), ip("192.168.2.12"))]),
                },
            ],
            ports: vec![],
        };
        let devices = BTreeMap::from([
            (net("192.168.1.0/24"), "vsw".to_string()),
            (net("192.168.2.0/24"), "vsw2".to_string()),
        ]);
        (desired, devices)
    }

    fn rule(iif: &str, table: u32) -> Rule {
        Rule {
            priority: RULE_PRIORITY,
            iif: iif.into(),
            table,
        }
    }

    #[test]
    fn each_vswitch_is_routed_by_its_own_table_which_ends_in_a_blackhole() {
        let (desired, devices) = two_zones();
        let want = plan(&desired, &devices);
        assert_eq!(
            want.rules,
            BTreeSet::from([rule("vsw", 1000), rule("vsw2", 1002)])
        );
        let link = |d: &str| Hop::Link(d.into());
        assert_eq!(
            want.table(1000),
            BTreeMap::from([
                (Ipv4Net::default(), Hop::Blackhole),
                (net("10.0.0.0/24"), Hop::Via(ip("192.168.1.11"))),
                (net("10.1.0.0/24"), Hop::Via(ip("192.168.2.12"))),
                (net("192.168.1.0/24"), link("vsw")),
                (net("192.168.2.0/24"), link("vsw2")),
            ])
        );
        // the custom table lacks h1's subnet: traffic from vsw2 to it ends in the blackhole
        assert_eq!(
            want.table(1002),
            BTreeMap::from([
                (Ipv4Net::default(), Hop::Blackhole),
                (net("10.1.0.0/24"), Hop::Via(ip("192.168.2.12"))),
                (net("192.168.1.0/24"), link("vsw")),
                (net("192.168.2.0/24"), link("vsw2")),
            ])
        );
        assert!(want.routes.keys().all(|(t, _)| *t != MAIN_TABLE));
    }

    #[test]
    fn unwired_vswitches_get_nothing_and_custom_defaults_replace_the_blackhole() {
        let (mut desired, mut devices) = two_zones();
        devices.remove(&net("192.168.2.0/24"));
        desired.tables[0]
            .routes
            .insert(Ipv4Net::default(), ip("192.168.1.11"));
        // an entry behind the API's back equal to a vSwitch CIDR: the system route wins
        desired.tables[0]
            .routes
            .insert(net("192.168.1.0/24"), ip("192.168.1.12"));
        let want = plan(&desired, &devices);
        assert_eq!(want.rules, BTreeSet::from([rule("vsw", 1000)]));
        let t = want.table(1000);
        assert_eq!(t[&Ipv4Net::default()], Hop::Via(ip("192.168.1.11")));
        assert_eq!(t[&net("192.168.1.0/24")], Hop::Link("vsw".into()));
        assert!(!t.contains_key(&net("192.168.2.0/24")));
    }

    #[test]
    fn diff_touches_only_what_differs_in_a_safe_order() {
        let (desired, devices) = two_zones();
        let want = plan(&desired, &devices);
        assert!(diff(&want, &want).is_empty());
        // the kernel has an old binding (vsw2 on table 1001), a stale route and a changed next hop
        let mut have = want.clone();
        have.rules.remove(&rule("vsw2", 1002));
        have.rules.insert(rule("vsw2", 1001));
        have.routes
            .insert((1001, Ipv4Net::default()), Hop::Blackhole);
        have.routes
            .insert((1000, net("10.1.0.0/24")), Hop::Via(ip("192.168.2.99")));
        have.routes.remove(&(1002, net("10.1.0.0/24")));
        let c = diff(&have, &want);
        assert_eq!(
            c.put_routes,
            vec![
                ((1000, net("10.1.0.0/24")), Hop::Via(ip("192.168.2.12"))),
                ((1002, net("10.1.0.0/24")), Hop::Via(ip("192.168.2.12"))),
            ]
        );
        assert_eq!(c.add_rules, vec![rule("vsw2", 1002)]);
        assert_eq!(c.del_rules, vec![rule("vsw2", 1001)]);
        assert_eq!(c.del_routes, vec![(1001, Ipv4Net::default())]);
        let cmds: Vec<String> = c.commands().iter().map(|a| a.join(" ")).collect();
        assert_eq!(
            cmds,
            vec![
                "route replace 10.1.0.0/24 via 192.168.2.12 proto 250 table 1000",
                "route replace 10.1.0.0/24 via 192.168.2.12 proto 250 table 1002",
                "rule add iif vsw2 lookup 1002 priority 1000 proto 250",
                "rule del iif vsw2 lookup 1001 priority 1000 proto 250",
                "route del 0.0.0.0/0 table 1001 proto 250",
            ]
        );
        let first = diff(&KernelState::default(), &want).commands();
        assert!(first
            .iter()
            .any(|a| a.join(" ") == "route replace blackhole 0.0.0.0/0 proto 250 table 1002"));
        assert!(first.iter().any(|a| a.join(" ")
            == "route replace 192.168.2.0/24 dev vsw2 scope link proto 250 table 1000"));
    }

    #[test]
    fn ip_json_is_read() {
        let routes = r#"[{"type":"blackhole","dst":"default","table":"1000","flags":[]},
            {"dst":"10.1.0.0/24","gateway":"192.168.2.12","dev":"vsw2","table":"1000","flags":[]},
            {"dst":"192.168.1.0/24","dev":"vsw","table":"1000","scope":"link","flags":[]},
            {"dst":"10.9.9.9","gateway":"192.168.1.12","dev":"vsw","flags":[]}]"#;
        let r = parse_routes_json(routes).unwrap();
        assert_eq!(r[&(1000, Ipv4Net::default())], Hop::Blackhole);
        assert_eq!(r[&(1000, net("10.1.0.0/24"))], Hop::Via(ip("192.168.2.12")));
        assert_eq!(r[&(1000, net("192.168.1.0/24"))], Hop::Link("vsw".into()));
        assert_eq!(
            r[&(MAIN_TABLE, net("10.9.9.9/32"))],
            Hop::Via(ip("192.168.1.12"))
        );
        let rules = r#"[{"priority":0,"src":"all","table":"local"},
            {"priority":1000,"src":"all","iif":"vsw","table":"1000","protocol":"250"},
            {"priority":900,"src":"all","iif":"eth9","table":"7"},
            {"priority":32766,"src":"all","table":"main"}]"#;
        assert_eq!(
            parse_rules_json(rules).unwrap(),
            BTreeSet::from([rule("vsw", 1000)])
        );
        let devices = r#"[{"dst":"192.168.1.0/24","dev":"vsw","scope":"link","prefsrc":"192.168.1.253","flags":[]}]"#;
        assert_eq!(
            parse_devices_json(devices).unwrap(),
            BTreeMap::from([(net("192.168.1.0/24"), "vsw".to_string())])
        );
        assert!(parse_routes_json("").unwrap().is_empty());
        assert!(parse_routes_json(r#"[{"dst":"1.0.0.0/8","table":"x"}]"#).is_err());
    }
}
