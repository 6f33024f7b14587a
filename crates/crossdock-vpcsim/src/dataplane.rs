//! The data plane: what the route table and the ENI settings do to packets.
//!
//! The emulator runs inside the lab's vRouter namespace, where the vSwitch bridge `vsw` joins every host's
//! port. Two things make the lab behave like a VPC:
//! - the table's `Available` custom entries become kernel routes (`<dst> via <instance ip>`), marked with a
//!   dedicated routing protocol number ([`ROUTE_PROTO`]) so the emulator touches only the routes it made;
//! - the ENI source/destination check becomes an nftables `bridge` table filtering each instance's port:
//!   an IPv4 packet leaving the host whose source is not the host's IP, or entering it whose destination
//!   is not, is dropped. The bridge family is used because it sees bridged and routed traffic at one place
//!   (verified on this kernel: the `input` hook catches host→vRouter packets, `forward` host↔host, `output`
//!   vRouter→host), and it needs no `br_netfilter`.
//!
//! [`Dataplane::apply`] always receives the whole desired state and converges to it, so a restart, a
//! missed update or a hand edit is repaired by the next call.

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// The routing protocol number marking the emulator's kernel routes (`ip route ... proto 250`).
pub const ROUTE_PROTO: u8 = 250;
/// The nftables bridge table holding the source/destination check.
pub const NFT_TABLE: &str = "crossdock_vpcsim";

/// The check on one instance's bridge port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortPolicy {
    pub port: String,
    pub ip: Ipv4Addr,
    pub source_dest_check: bool,
}

/// Everything the data plane should look like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// destination -> next hop (instance private IP)
    pub routes: BTreeMap<Ipv4Net, Ipv4Addr>,
    pub ports: Vec<PortPolicy>,
}

/// Applies the desired state. Implementations are synchronous (they run on a blocking thread).
pub trait Dataplane: Send + Sync + std::fmt::Debug {
    fn kind(&self) -> &'static str;
    fn apply(&self, desired: &Desired) -> anyhow::Result<()>;
}

/// Remembers what it was told; for unit tests and for running the API without a vRouter.
#[derive(Debug, Default)]
pub struct MemoryDataplane {
    pub applied: Mutex<Desired>,
    pub calls: Mutex<u64>,
}

impl Dataplane for MemoryDataplane {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn apply(&self, desired: &Desired) -> anyhow::Result<()> {
        *self.applied.lock().expect("poisoned") = desired.clone();
        *self.calls.lock().expect("poisoned") += 1;
        Ok(())
    }
}

/// Kernel routes and nftables rules in the current network namespace (or `netns`, through
/// `ip netns exec`, for tests that make their own namespace).
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

    /// The routes this emulator owns now: destination -> gateway.
    pub fn current_routes(&self) -> anyhow::Result<BTreeMap<Ipv4Net, Option<Ipv4Addr>>> {
        let proto = ROUTE_PROTO.to_string();
        let out = self.run(
            "ip",
            &[
                "-j", "-4", "route", "show", "table", "main", "proto", &proto,
            ],
            None,
        )?;
        parse_routes_json(&out)
    }

    fn sync_routes(&self, want: &BTreeMap<Ipv4Net, Ipv4Addr>) -> anyhow::Result<()> {
        let have = self.current_routes()?;
        let proto = ROUTE_PROTO.to_string();
        // one bad route (say, a next hop off the vSwitch) must not hold back the others
        let mut errors = vec![];
        for (dst, via) in want {
            if have.get(dst) == Some(&Some(*via)) {
                continue;
            }
            let (d, v) = (dst.to_string(), via.to_string());
            if let Err(e) = self.run(
                "ip",
                &["route", "replace", &d, "via", &v, "proto", &proto],
                None,
            ) {
                errors.push(format!("{e:#}"));
            }
        }
        for dst in have.keys() {
            if !want.contains_key(dst) {
                let d = dst.to_string();
                if let Err(e) = self.run("ip", &["route", "del", &d, "proto", &proto], None) {
                    errors.push(format!("{e:#}"));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{}", errors.join("; "))
        }
    }

    fn sync_filter(&self, ports: &[PortPolicy]) -> anyhow::Result<()> {
        let script = nft_script(ports);
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
        let routes = self.sync_routes(&desired.routes);
        self.sync_filter(&desired.ports)?;
        routes
    }
}

/// The nftables script that (re)creates the source/destination check table.
pub fn nft_script(ports: &[PortPolicy]) -> String {
    let mut input = String::new();
    let mut forward = String::new();
    let mut output = String::new();
    let checked: BTreeSet<&PortPolicy> = ports.iter().filter(|p| p.source_dest_check).collect();
    for p in checked {
        let port = p.port.replace('"', "");
        let ip = p.ip;
        let out_of_host =
            format!("    iifname \"{port}\" ether type ip ip saddr != {ip} counter drop\n");
        let into_host =
            format!("    oifname \"{port}\" ether type ip ip daddr != {ip} counter drop\n");
        input.push_str(&out_of_host);
        forward.push_str(&out_of_host);
        forward.push_str(&into_host);
        output.push_str(&into_host);
    }
    format!(
        "add table bridge {NFT_TABLE}\ndelete table bridge {NFT_TABLE}\ntable bridge {NFT_TABLE} {{\n\
  chain input {{\n    type filter hook input priority 0; policy accept;\n{input}  }}\n\
  chain forward {{\n    type filter hook forward priority 0; policy accept;\n{forward}  }}\n\
  chain output {{\n    type filter hook output priority 0; policy accept;\n{output}  }}\n}}\n"
    )
}

/// Reads `ip -j route show` output into destination -> gateway.
pub fn parse_routes_json(out: &str) -> anyhow::Result<BTreeMap<Ipv4Net, Option<Ipv4Addr>>> {
    let mut routes = BTreeMap::new();
    if out.trim().is_empty() {
        return Ok(routes);
    }
    let v: serde_json::Value = serde_json::from_str(out)
        .map_err(|e| anyhow::anyhow!("cannot read `ip -j route` output: {e}"))?;
    for r in v.as_array().into_iter().flatten() {
        let Some(dst) = r.get("dst").and_then(|d| d.as_str()) else {
            continue;
        };
        let net: Ipv4Net = if dst == "default" {
            "0.0.0.0/0".parse().expect("valid")
        } else if dst.contains('/') {
            dst.parse()?
        } else {
            Ipv4Net::new(dst.parse()?, 32)?
        };
        let gw = r
            .get("gateway")
            .and_then(|g| g.as_str())
            .and_then(|g| g.parse().ok());
        routes.insert(net, gw);
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nft_script_filters_only_checked_ports() {
        let s = nft_script(&[
            PortPolicy {
                port: "p-h1".into(),
                ip: "192.168.1.11".parse().unwrap(),
                source_dest_check: true,
            },
            PortPolicy {
                port: "p-h2".into(),
                ip: "192.168.1.12".parse().unwrap(),
                source_dest_check: false,
            },
        ]);
        assert!(s.contains("iifname \"p-h1\" ether type ip ip saddr != 192.168.1.11 counter drop"));
        assert!(s.contains("oifname \"p-h1\" ether type ip ip daddr != 192.168.1.11 counter drop"));
        assert!(!s.contains("p-h2"));
        assert_eq!(s.matches("p-h1").count(), 4);
        assert!(s.starts_with("add table bridge crossdock_vpcsim\ndelete table"));
    }

    #[test]
    fn route_json_is_read() {
        let out = r#"[{"dst":"10.1.0.0/24","gateway":"192.168.1.11","dev":"vsw","protocol":"250","flags":[]},
                      {"dst":"10.9.9.9","gateway":"192.168.1.12","dev":"vsw","flags":[]}]"#;
        let r = parse_routes_json(out).unwrap();
        assert_eq!(
            r.get(&"10.1.0.0/24".parse().unwrap()),
            Some(&Some("192.168.1.11".parse().unwrap()))
        );
        assert!(r.contains_key(&"10.9.9.9/32".parse().unwrap()));
        assert!(parse_routes_json("").unwrap().is_empty());
    }
}
