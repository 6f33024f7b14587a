//! Variant (e): a kernel VXLAN overlay built the way flannel's `vxlan` backend builds it, for the same
//! two containers on Docker's bridge: a VTEP `flannel.1` (VNI 1, UDP 8472, no learning, MTU 1450) in each
//! host namespace holding the subnet's network address, and for every peer a route
//! `peer-subnet via peer-vtep dev flannel.1 onlink`, a permanent neighbour entry for the peer's VTEP MAC
//! and an FDB entry sending that MAC to the peer's host IP. flannel's firewall part comes along: FORWARD
//! accepts for the cluster range and a NAT `RETURN` so container sources are kept. flannel sets
//! Docker's MTU to 1450; the benchmark sets the containers' `eth0` to 1450 for this variant.
//!
//! The commands are data (tested without root); [`apply`] runs them in the lab's host namespaces.

use crate::proc::Ns;
use anyhow::{Context, Result};

pub const DEV: &str = "flannel.1";
pub const VNI: &str = "1";
pub const PORT: &str = "8472";
pub const MTU: u32 = 1450;
/// Comment on every firewall rule made here (what teardown removes).
pub const COMMENT: &str = "benchmark: flannel-like vxlan";

/// One host of the overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VtepHost {
    /// 1-based lab index (the MAC is derived from it).
    pub index: usize,
    pub host_ip: String,
    /// Its container subnet, e.g. `10.0.0.0/24`.
    pub subnet: String,
}

impl VtepHost {
    /// A locally administered unicast MAC of this host's VTEP (flannel publishes the kernel's random one
    /// in its lease; a fixed one saves reading it back).
    pub fn mac(&self) -> String {
        format!(
            "02:cd:00:00:{:02x}:{:02x}",
            self.index >> 8,
            self.index & 0xff
        )
    }

    /// The VTEP's address: the subnet's network address (flannel's convention).
    pub fn vtep_ip(&self) -> String {
        self.subnet
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string()
    }
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn forward_rules(cluster: &str) -> [Vec<String>; 2] {
    [
        argv(&[
            "FORWARD",
            "-s",
            cluster,
            "-m",
            "comment",
            "--comment",
            COMMENT,
            "-j",
            "ACCEPT",
        ]),
        argv(&[
            "FORWARD",
            "-d",
            cluster,
            "-m",
            "comment",
            "--comment",
            COMMENT,
            "-j",
            "ACCEPT",
        ]),
    ]
}

fn nat_rule(me: &VtepHost, cluster: &str) -> Vec<String> {
    argv(&[
        "POSTROUTING",
        "-s",
        &me.subnet,
        "-d",
        cluster,
        "-m",
        "comment",
        "--comment",
        COMMENT,
        "-j",
        "RETURN",
    ])
}

/// The commands that build `me`'s part of the overlay with peers `all` (which may include `me`).
pub fn setup_commands(me: &VtepHost, all: &[VtepHost], cluster: &str) -> Vec<Vec<String>> {
    let mut cmds = vec![
        argv(&[
            "ip",
            "link",
            "add",
            DEV,
            "address",
            &me.mac(),
            "type",
            "vxlan",
            "id",
            VNI,
            "local",
            &me.host_ip,
            "dev",
            "eth0",
            "dstport",
            PORT,
            "nolearning",
        ]),
        argv(&["ip", "link", "set", DEV, "mtu", &MTU.to_string(), "up"]),
        argv(&[
            "ip",
            "addr",
            "add",
            &format!("{}/32", me.vtep_ip()),
            "dev",
            DEV,
        ]),
    ];
    for p in all.iter().filter(|p| p.index != me.index) {
        cmds.push(argv(&[
            "ip",
            "route",
            "replace",
            &p.subnet,
            "via",
            &p.vtep_ip(),
            "dev",
            DEV,
            "onlink",
        ]));
        cmds.push(argv(&[
            "ip",
            "neigh",
            "replace",
            &p.vtep_ip(),
            "lladdr",
            &p.mac(),
            "dev",
            DEV,
            "nud",
            "permanent",
        ]));
        cmds.push(argv(&[
            "bridge",
            "fdb",
            "replace",
            &p.mac(),
            "dev",
            DEV,
            "dst",
            &p.host_ip,
            "self",
            "permanent",
        ]));
    }
    for rule in forward_rules(cluster) {
        let mut c = argv(&["iptables", "-w", "5", "-I"]);
        c.push(rule[0].clone());
        c.push("1".into());
        c.extend(rule[1..].iter().cloned());
        cmds.push(c);
    }
    let nat = nat_rule(me, cluster);
    let mut c = argv(&["iptables", "-w", "5", "-t", "nat", "-I", &nat[0], "1"]);
    c.extend(nat[1..].iter().cloned());
    cmds.push(c);
    cmds
}

/// The commands that remove it again (deleting the device takes its routes, neighbours and FDB).
pub fn teardown_commands(me: &VtepHost, cluster: &str) -> Vec<Vec<String>> {
    let mut cmds = vec![argv(&["ip", "link", "del", DEV])];
    for rule in forward_rules(cluster) {
        let mut c = argv(&["iptables", "-w", "5", "-D"]);
        c.extend(rule);
        cmds.push(c);
    }
    let mut c = argv(&["iptables", "-w", "5", "-t", "nat", "-D"]);
    c.extend(nat_rule(me, cluster));
    cmds.push(c);
    cmds
}

/// Runs commands in a namespace, stopping at the first failure.
pub fn apply(ns: &Ns, cmds: &[Vec<String>]) -> Result<()> {
    for c in cmds {
        let a: Vec<&str> = c.iter().map(String::as_str).collect();
        ns.run(&a)
            .with_context(|| format!("building the VXLAN overlay in {}", ns.describe()))?;
    }
    Ok(())
}

/// Runs every command, whatever fails (teardown must go as far as it can); returns the failures.
pub fn apply_all(ns: &Ns, cmds: &[Vec<String>]) -> Vec<String> {
    cmds.iter()
        .filter_map(|c| {
            let a: Vec<&str> = c.iter().map(String::as_str).collect();
            ns.run(&a).err().map(|e| format!("{e:#}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<VtepHost> {
        vec![
            VtepHost {
                index: 1,
                host_ip: "192.168.1.11".into(),
                subnet: "10.0.0.0/24".into(),
            },
            VtepHost {
                index: 2,
                host_ip: "192.168.1.12".into(),
                subnet: "10.1.0.0/24".into(),
            },
        ]
    }

    #[test]
    fn vtep_identity_follows_the_host() {
        let h = &hosts()[1];
        assert_eq!(h.mac(), "02:cd:00:00:00:02");
        assert_eq!(h.vtep_ip(), "10.1.0.0");
        let big = VtepHost {
            index: 300,
            host_ip: String::new(),
            subnet: String::new(),
        };
        assert_eq!(big.mac(), "02:cd:00:00:01:2c");
    }

    #[test]
    fn setup_points_each_peer_subnet_at_its_vtep_and_host() {
        let all = hosts();
        let cmds: Vec<String> = setup_commands(&all[0], &all, "10.0.0.0/8")
            .iter()
            .map(|c| c.join(" "))
            .collect();
        assert_eq!(cmds[0], "ip link add flannel.1 address 02:cd:00:00:00:01 type vxlan id 1 local 192.168.1.11 dev eth0 dstport 8472 nolearning");
        assert!(cmds.contains(&"ip addr add 10.0.0.0/32 dev flannel.1".to_string()));
        assert!(cmds.contains(
            &"ip route replace 10.1.0.0/24 via 10.1.0.0 dev flannel.1 onlink".to_string()
        ));
        assert!(cmds.contains(
            &"ip neigh replace 10.1.0.0 lladdr 02:cd:00:00:00:02 dev flannel.1 nud permanent"
                .to_string()
        ));
        assert!(cmds.contains(
            &"bridge fdb replace 02:cd:00:00:00:02 dev flannel.1 dst 192.168.1.12 self permanent"
                .to_string()
        ));
        assert!(
            !cmds.iter().any(|c| c.contains("10.0.0.0/24 via")),
            "no route to its own subnet"
        );
        assert!(cmds.iter().any(
            |c| c.starts_with("iptables -w 5 -t nat -I POSTROUTING 1 -s 10.0.0.0/24 -d 10.0.0.0/8")
        ));
    }

    #[test]
    fn teardown_deletes_exactly_the_rules_setup_inserted() {
        let all = hosts();
        let me = &all[1];
        let setup = setup_commands(me, &all, "10.0.0.0/8");
        let teardown = teardown_commands(me, "10.0.0.0/8");
        let inserted: Vec<String> = setup
            .iter()
            .filter(|c| c[0] == "iptables")
            .map(|c| {
                let s = c.join(" ");
                // "-I CHAIN 1 rest" -> "CHAIN rest"
                let s = s.replacen(" -I ", " ", 1);
                s.replacen(" 1 -", " -", 1)
            })
            .collect();
        let deleted: Vec<String> = teardown
            .iter()
            .filter(|c| c[0] == "iptables")
            .map(|c| c.join(" ").replacen(" -D ", " ", 1))
            .collect();
        assert_eq!(inserted, deleted);
        assert_eq!(teardown[0].join(" "), "ip link del flannel.1");
    }
}
