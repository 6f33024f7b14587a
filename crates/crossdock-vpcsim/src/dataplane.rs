//! The data plane: what the route tables and the ENI settings do to packets.
//!
//! The emulator runs inside the lab's vRouter namespace, where each vSwitch is a bridge holding the
//! vSwitch's gateway address and joining the ports of the hosts in it. Two things make the lab behave
//! like a VPC:
//! - each route table bound to a vSwitch becomes a kernel routing table, selected by a policy rule on
//!   the bridge a packet comes in on (Alibaba routes a packet by the table bound to the vSwitch it comes
//!   from). The kernel table holds the system routes (every vSwitch CIDR on its bridge), the table's
//!   `Available` custom entries (`<dst> via <instance ip>`), and a blackhole default, so that a
//!   destination missing from that table is dropped as in a VPC, never found in another table. The
//!   rules and routes carry a dedicated protocol number ([`ROUTE_PROTO`]) so the emulator touches only
//!   what it made (see [`kernel`]);
//! - the ENI source/destination check becomes an nftables `bridge` table filtering each instance's port:
//!   an IPv4 packet leaving the host whose source is not the host's IP, or entering it whose destination
//!   is not, is dropped. The bridge family is used because it sees bridged and routed traffic at one place
//!   (verified on this kernel: the `input` hook catches host→vRouter packets, `forward` host↔host, `output`
//!   vRouter→host), and it needs no `br_netfilter`.
//!
//! [`Dataplane::apply`] always receives the whole desired state and converges to it, so a restart, a
//! missed update or a hand edit is repaired by the next call.

pub mod kernel;

pub use kernel::KernelDataplane;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Mutex;

/// The routing protocol number marking the emulator's kernel routes and rules (`proto 250`).
pub const ROUTE_PROTO: u8 = 250;
/// The nftables bridge table holding the source/destination check.
pub const NFT_TABLE: &str = "crossdock_vpcsim";
/// The kernel routing table of the VPC's n-th route table (in creation order) is `KERNEL_TABLE_BASE + n`.
pub const KERNEL_TABLE_BASE: u32 = 1000;

/// The check on one instance's bridge port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortPolicy {
    pub port: String,
    pub ip: Ipv4Addr,
    pub source_dest_check: bool,
}

/// One VPC route table that routes somebody's traffic (it is bound to at least one vSwitch).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TablePlane {
    pub route_table_id: String,
    /// Its kernel routing table.
    pub kernel_table: u32,
    /// The CIDRs of the vSwitches bound to it: traffic coming from them is routed by this table.
    pub vswitches: Vec<Ipv4Net>,
    /// Its `Available` custom entries whose next hop resolves: destination -> instance private IP.
    pub routes: BTreeMap<Ipv4Net, Ipv4Addr>,
}

/// Everything the data plane should look like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// Every vSwitch CIDR of the VPC: the system routes each table holds.
    pub vswitches: Vec<Ipv4Net>,
    /// The route tables bound to some vSwitch.
    pub tables: Vec<TablePlane>,
    pub ports: Vec<PortPolicy>,
}

impl Desired {
    /// The plane of a VPC route table, if it routes anybody's traffic.
    pub fn table(&self, route_table_id: &str) -> Option<&TablePlane> {
        self.tables
            .iter()
            .find(|t| t.route_table_id == route_table_id)
    }

    /// The custom routes of a VPC route table (empty when it routes nobody's traffic).
    pub fn routes_of(&self, route_table_id: &str) -> BTreeMap<Ipv4Net, Ipv4Addr> {
        self.table(route_table_id)
            .map(|t| t.routes.clone())
            .unwrap_or_default()
    }
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
}
