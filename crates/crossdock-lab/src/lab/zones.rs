//! Zones: a lab with several vSwitches (one per zone, each its own L2 segment) and route tables bound
//! to them, as multi-zone production VPCs are built.
//!
//! Why: a VPC routes a packet by the table bound to the vSwitch the packet comes from, so a route that
//! is only in the destination's table is invisible to senders elsewhere. A lab with one vSwitch and
//! one table cannot show that; this module makes the shape where it shows: vSwitch `vsw<k>` is
//! `192.168.<k>.0/24` in its own zone, a bridge in the vRouter namespace (`vsw` for the first, as in
//! single-vSwitch labs, `vsw<k>` for the others) holding the gateway `192.168.<k>.253`; hosts are
//! spread over the vSwitches round-robin (`h<i>` on `vsw<((i-1) mod N)+1>`, IP `192.168.<k>.(10+i)`).
//! By default the first vSwitch uses the VPC's system table and every other one gets a custom table
//! of its own. The emulator's data plane then routes each vSwitch's traffic by its table (see
//! `crossdock_vpcsim::dataplane`), and `lab table ...` changes bindings while the lab runs.

use super::*;
use crossdock_vpcsim::admin::{CreateRouteTable, CreateVSwitch};
use crossdock_vpcsim::model::RouteTable;
use ipnet::Ipv4Net;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// The most vSwitches a lab has (one zone each).
pub const MAX_VSWITCHES: usize = 8;
/// Custom route tables per VPC (Alibaba's quota).
pub const MAX_CUSTOM_TABLES: usize = 9;
/// The zone letters of the lab's vSwitches, in order (the first is the emulator's default zone).
const ZONE_LETTERS: [char; MAX_VSWITCHES] = ['h', 'i', 'j', 'k', 'g', 'f', 'b', 'e'];

/// One vSwitch of the lab, as recorded in `lab.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VSwitchState {
    /// `vsw1`, `vsw2`, ...
    pub name: String,
    /// 1-based.
    pub number: usize,
    pub vswitch_id: String,
    pub cidr: String,
    pub zone_id: String,
    /// Its bridge in the vRouter namespace.
    pub bridge: String,
    /// The vRouter's address on it: the hosts' default gateway.
    pub gateway: String,
}

/// Which vSwitches get custom route tables at `up`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CustomTables {
    /// The first vSwitch uses the system table, each other one a custom table of its own.
    #[default]
    AllButFirst,
    /// Every vSwitch uses the system table.
    None,
    /// One custom table per group, bound to the vSwitches (1-based numbers) of the group.
    Groups(Vec<Vec<usize>>),
}

impl CustomTables {
    /// The groups for a lab of `vswitches` vSwitches; refused (bad input) when a number is outside
    /// the lab, a vSwitch is in two groups, a group is empty or there are more than 9 groups.
    pub fn groups(&self, vswitches: usize) -> Result<Vec<Vec<usize>>> {
        let groups = match self {
            CustomTables::AllButFirst => (2..=vswitches).map(|k| vec![k]).collect(),
            CustomTables::None => vec![],
            CustomTables::Groups(g) => g.clone(),
        };
        if groups.len() > MAX_CUSTOM_TABLES {
            return Err(InputError(format!(
                "a VPC has at most {MAX_CUSTOM_TABLES} custom route tables (asked for {})",
                groups.len()
            ))
            .into());
        }
        let mut seen = BTreeSet::new();
        for g in &groups {
            if g.is_empty() {
                return Err(InputError("a custom table needs at least one vSwitch".into()).into());
            }
            for &k in g {
                if k == 0 || k > vswitches {
                    return Err(InputError(format!(
                        "vSwitch {k} is not in the lab: it has vsw1 to vsw{vswitches} (set --vswitches)"
                    ))
                    .into());
                }
                if !seen.insert(k) {
                    return Err(InputError(format!(
                        "vsw{k} is given to two custom tables: a vSwitch is bound to one table"
                    ))
                    .into());
                }
            }
        }
        Ok(groups)
    }
}

impl std::str::FromStr for CustomTables {
    type Err = String;
    /// One group: vSwitches as `2`, `vsw2` or `2,3` (one table bound to both).
    fn from_str(s: &str) -> Result<CustomTables, String> {
        let group = s
            .split(',')
            .map(|p| {
                let p = p.trim();
                p.strip_prefix("vsw")
                    .unwrap_or(p)
                    .parse::<usize>()
                    .map_err(|_| {
                        format!("`{p}` is not a vSwitch: use its number (2) or name (vsw2)")
                    })
            })
            .collect::<Result<Vec<usize>, String>>()?;
        Ok(CustomTables::Groups(vec![group]))
    }
}

/// The name of vSwitch `k`.
pub fn vswitch_name(k: usize) -> String {
    format!("vsw{k}")
}

/// The CIDR of vSwitch `k` (`192.168.<k>.0/24`).
pub fn vswitch_cidr(k: usize) -> String {
    format!("192.168.{k}.0/24")
}

/// The gateway of vSwitch `k` (`192.168.<k>.253`).
pub fn vswitch_gateway(k: usize) -> String {
    format!("192.168.{k}.253")
}

/// The bridge of vSwitch `k`: `vsw` for the first (as in every single-vSwitch lab), else `vsw<k>`.
pub fn vswitch_bridge(k: usize) -> String {
    if k == 1 {
        BRIDGE.to_string()
    } else {
        vswitch_name(k)
    }
}

/// The zone of vSwitch `k` in `region`.
pub fn zone_id(region: &str, k: usize) -> String {
    format!("{region}-{}", ZONE_LETTERS[(k - 1) % MAX_VSWITCHES])
}

/// The vSwitch (1-based) of host `index` in a lab of `vswitches`: round-robin.
pub fn host_vswitch(index: usize, vswitches: usize) -> usize {
    (index - 1) % vswitches.max(1) + 1
}

/// The private IP of host `index` on vSwitch `k` (`192.168.<k>.(10+index)`).
pub fn host_ip_in(k: usize, index: usize) -> String {
    format!("192.168.{k}.{}", 10 + index)
}

/// The lab's record of vSwitch `k` before the emulator gave it an id.
pub fn planned_vswitch(k: usize) -> VSwitchState {
    VSwitchState {
        name: vswitch_name(k),
        number: k,
        vswitch_id: String::new(),
        cidr: vswitch_cidr(k),
        zone_id: String::new(),
        bridge: vswitch_bridge(k),
        gateway: vswitch_gateway(k),
    }
}

/// A vSwitch as `lab status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VSwitchStatus {
    pub name: String,
    pub vswitch_id: String,
    pub cidr: String,
    pub zone_id: String,
    pub bridge: String,
    pub gateway: String,
    /// The table routing its traffic (`""` when the emulator is down).
    pub route_table_id: String,
    /// `System` or `Custom` (`""` when the emulator is down).
    pub route_table_type: String,
}

/// A route table as `lab status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableStatus {
    pub route_table_id: String,
    /// `System` or `Custom`.
    pub route_table_type: String,
    /// The lab names of the vSwitches it routes (for the system table: those bound to no custom one).
    pub vswitches: Vec<String>,
    /// Its custom entries (all statuses).
    pub custom_entries: usize,
}

/// The lab's vSwitches from its state (a `lab.json` from before zones: the one vSwitch it had).
pub fn vswitches_of(state: &LabState) -> Vec<VSwitchState> {
    if !state.vswitches.is_empty() {
        return state.vswitches.clone();
    }
    vec![VSwitchState {
        vswitch_id: state.vswitch_id.clone(),
        ..planned_vswitch(1)
    }]
}

/// A lab vSwitch by name (`vsw2`), number (`2`) or id.
pub fn find_vswitch(state: &LabState, name: &str) -> Result<VSwitchState> {
    let all = vswitches_of(state);
    all.iter()
        .find(|v| v.name == name || v.vswitch_id == name || v.number.to_string() == name)
        .cloned()
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|v| v.name.as_str()).collect();
            InputError(format!(
                "lab {} has no vSwitch {name} (it has {})",
                state.name,
                names.join(", ")
            ))
            .into()
        })
}

/// The lab name of a vSwitch id (the id itself when the lab does not know it).
fn lab_name_of(state: &LabState, vswitch_id: &str) -> String {
    vswitches_of(state)
        .into_iter()
        .find(|v| v.vswitch_id == vswitch_id)
        .map(|v| v.name)
        .unwrap_or_else(|| vswitch_id.to_string())
}

/// The vSwitches and tables of `vpc` as `lab status` shows them (`vpc` = `None`: emulator down).
pub fn zone_statuses(
    state: &LabState,
    vpc: Option<&crossdock_vpcsim::model::State>,
) -> (Vec<VSwitchStatus>, Vec<TableStatus>) {
    let vswitches = vswitches_of(state)
        .into_iter()
        .map(|v| {
            let table = vpc.map(|s| s.table_of_vswitch(&v.vswitch_id).to_string());
            let table_type = vpc
                .zip(table.as_deref())
                .and_then(|(s, t)| s.table(t))
                .map(|t| t.route_table_type.clone());
            VSwitchStatus {
                route_table_id: table.unwrap_or_default(),
                route_table_type: table_type.unwrap_or_default(),
                name: v.name,
                vswitch_id: v.vswitch_id,
                cidr: v.cidr,
                zone_id: v.zone_id,
                bridge: v.bridge,
                gateway: v.gateway,
            }
        })
        .collect();
    let tables = vpc
        .map(|s| {
            s.route_tables
                .iter()
                .map(|t| TableStatus {
                    route_table_id: t.route_table_id.clone(),
                    route_table_type: t.route_table_type.clone(),
                    vswitches: s
                        .vswitches_of_table(t)
                        .iter()
                        .map(|id| lab_name_of(state, id))
                        .collect(),
                    custom_entries: s
                        .entries
                        .iter()
                        .filter(|e| {
                            e.route_table_id == t.route_table_id
                                && e.entry_type == crossdock_vpcsim::model::EntryType::Custom
                        })
                        .count(),
                })
                .collect()
        })
        .unwrap_or_default();
    (vswitches, tables)
}

/// The IPs a host on vSwitch `cidr` may get: `.11` to `.250` (below: reserved as Alibaba reserves a
/// vSwitch's first addresses; above: the gateway `.253` and broadcast).
pub fn usable_host_ip(cidr: &str, ip: Ipv4Addr) -> bool {
    let vswitch: Ipv4Net = cidr.parse().expect("the lab's vSwitch CIDRs are valid");
    vswitch.contains(&ip) && (11..=250).contains(&ip.octets()[3])
}

impl Lab {
    /// The lab's vSwitches.
    pub fn vswitches(&self) -> Vec<VSwitchState> {
        vswitches_of(&self.state)
    }

    /// A vSwitch by name (`vsw2`), number or id.
    pub fn vswitch(&self, name: &str) -> Result<VSwitchState> {
        find_vswitch(&self.state, name)
    }

    /// The vSwitch of a host.
    pub fn vswitch_of_host(&self, host: &HostState) -> Result<VSwitchState> {
        self.vswitch(&host.vswitch)
    }

    /// The bridges of vSwitches 2..=n in the vRouter (the first one is made with the vRouter).
    pub(super) fn build_vswitch_bridges(&mut self, vr: &Netns, n: usize) -> Result<()> {
        self.state.vswitches = (1..=n).map(planned_vswitch).collect();
        for (k, v) in self.state.vswitches.iter().enumerate().skip(1) {
            // A fixed MAC, as for the first vSwitch (see `build_vrouter`).
            let mac = super::bridge_mac(k + 1);
            vr.ip(&["link", "add", &v.bridge, "address", &mac, "type", "bridge"])?;
            vr.addr_add(&v.bridge, &format!("{}/24", v.gateway))?;
            vr.link_up(&v.bridge)?;
            vr.sysctl(&format!("net.ipv4.conf.{}.send_redirects", v.bridge), "0")?;
        }
        self.save()
    }

    /// In the emulator: vSwitch 1 is the one it bootstrapped; 2..=n are created in their zones; then
    /// one custom table per group, bound to its vSwitches.
    pub(super) fn create_vswitches(&mut self, info: &Info, groups: &[Vec<usize>]) -> Result<()> {
        for v in self.state.vswitches.iter_mut() {
            if v.number == 1 {
                v.vswitch_id = info.vswitch_id.clone();
                v.zone_id = info.zone_id.clone();
                continue;
            }
            let req = CreateVSwitch {
                cidr_block: Some(v.cidr.parse().context("vSwitch CIDR")?),
                zone_id: Some(zone_id(&info.region_id, v.number)),
                vswitch_name: format!("{}-{}", self.state.name, v.name),
            };
            let made = admin_call(&self.state.admin_socket, move |c| async move {
                c.create_vswitch(&req).await
            })?;
            v.vswitch_id = made.vswitch_id;
            v.zone_id = made.zone_id;
        }
        self.save()?;
        for group in groups {
            let names: Vec<String> = group.iter().map(|k| vswitch_name(*k)).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            self.table_create(&refs)?;
        }
        Ok(())
    }

    /// Creates a custom route table bound to the given vSwitches (names, numbers or ids).
    pub fn table_create(&self, bind: &[&str]) -> Result<RouteTable> {
        let vswitches: Vec<VSwitchState> = bind
            .iter()
            .map(|v| self.vswitch(v))
            .collect::<Result<_>>()?;
        let label: Vec<&str> = vswitches.iter().map(|v| v.name.as_str()).collect();
        let req = CreateRouteTable {
            route_table_name: format!("{}-{}", self.state.name, label.join("-")),
            vswitch_ids: vswitches.iter().map(|v| v.vswitch_id.clone()).collect(),
        };
        self.admin_sync(move |c| async move { c.create_route_table(&req).await })
            .map_err(as_input_error)
    }

    /// Binds a vSwitch to a custom table: its traffic is routed by that table from now on.
    pub fn table_bind(&self, route_table_id: &str, vswitch: &str) -> Result<RouteTable> {
        let (table, vsw) = (
            route_table_id.to_string(),
            self.vswitch(vswitch)?.vswitch_id,
        );
        self.admin_sync(move |c| async move { c.bind_vswitch(&table, &vsw).await })
            .map_err(as_input_error)
    }

    /// Unbinds a vSwitch from a custom table: the system table routes its traffic again.
    pub fn table_unbind(&self, route_table_id: &str, vswitch: &str) -> Result<RouteTable> {
        let (table, vsw) = (
            route_table_id.to_string(),
            self.vswitch(vswitch)?.vswitch_id,
        );
        self.admin_sync(move |c| async move { c.unbind_vswitch(&table, &vsw).await })
            .map_err(as_input_error)
    }

    /// The table routing a vSwitch's traffic now (asked of the emulator).
    pub fn table_of_vswitch(&self, vswitch: &str) -> Result<String> {
        let id = self.vswitch(vswitch)?.vswitch_id;
        let vpc = self.admin_sync(|c| async move { c.state().await })?;
        Ok(vpc.table_of_vswitch(&id).to_string())
    }
}

/// The emulator refusing a table or binding request is bad input (the request named something that
/// does not exist or is not allowed), exit 2.
fn as_input_error(e: anyhow::Error) -> anyhow::Error {
    let text = format!("{e:#}");
    if text.contains("HTTP 4") {
        InputError(text).into()
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_go_round_robin_over_the_vswitches() {
        let placed: Vec<(usize, String)> = (1..=5)
            .map(|i| {
                let k = host_vswitch(i, 2);
                (k, host_ip_in(k, i))
            })
            .collect();
        assert_eq!(
            placed,
            vec![
                (1, "192.168.1.11".to_string()),
                (2, "192.168.2.12".to_string()),
                (1, "192.168.1.13".to_string()),
                (2, "192.168.2.14".to_string()),
                (1, "192.168.1.15".to_string()),
            ]
        );
        assert_eq!(host_vswitch(3, 1), 1, "one vSwitch: everything on it");
        assert_eq!(host_ip_in(1, 2), host_ip(2), "as single-vSwitch labs");
    }

    #[test]
    fn vswitches_are_named_addressed_and_zoned_by_number() {
        let v = planned_vswitch(1);
        assert_eq!(
            (
                v.name.as_str(),
                v.cidr.as_str(),
                v.bridge.as_str(),
                v.gateway.as_str()
            ),
            ("vsw1", VSWITCH_CIDR, BRIDGE, GATEWAY),
            "the first vSwitch is the single-vSwitch lab's"
        );
        let v = planned_vswitch(3);
        assert_eq!(
            (
                v.name.as_str(),
                v.cidr.as_str(),
                v.bridge.as_str(),
                v.gateway.as_str()
            ),
            ("vsw3", "192.168.3.0/24", "vsw3", "192.168.3.253")
        );
        assert_eq!(zone_id("cn-hangzhou", 1), "cn-hangzhou-h");
        assert_eq!(zone_id("cn-hangzhou", 2), "cn-hangzhou-i");
        let zones: BTreeSet<String> = (1..=MAX_VSWITCHES).map(|k| zone_id("r", k)).collect();
        assert_eq!(zones.len(), MAX_VSWITCHES, "one zone per vSwitch");
        assert!(usable_host_ip(
            "192.168.2.0/24",
            "192.168.2.11".parse().unwrap()
        ));
        assert!(!usable_host_ip(
            "192.168.2.0/24",
            "192.168.1.11".parse().unwrap()
        ));
        assert!(!usable_host_ip(
            "192.168.2.0/24",
            "192.168.2.253".parse().unwrap()
        ));
    }

    #[test]
    fn custom_tables_default_to_one_per_vswitch_but_the_first() {
        assert_eq!(
            CustomTables::AllButFirst.groups(3).unwrap(),
            vec![vec![2], vec![3]]
        );
        assert!(CustomTables::AllButFirst.groups(1).unwrap().is_empty());
        assert!(CustomTables::None.groups(3).unwrap().is_empty());
        let g: CustomTables = "vsw2,3".parse().unwrap();
        assert_eq!(g, CustomTables::Groups(vec![vec![2, 3]]));
        assert_eq!(g.groups(3).unwrap(), vec![vec![2, 3]]);
        assert!("x2".parse::<CustomTables>().is_err());
        for (bad, why) in [
            (CustomTables::Groups(vec![vec![4]]), "not in the lab"),
            (
                CustomTables::Groups(vec![vec![2], vec![2]]),
                "two custom tables",
            ),
            (CustomTables::Groups(vec![vec![]]), "at least one vSwitch"),
            (CustomTables::Groups(vec![vec![1]; 10]), "at most 9"),
        ] {
            let e = bad.groups(3).unwrap_err();
            assert!(e.chain().any(|c| c.is::<InputError>()), "{e:#}");
            assert!(e.to_string().contains(why), "{e:#}");
        }
    }

    fn state_with_zones() -> LabState {
        let mut s: LabState = serde_json::from_value(serde_json::json!({
            "name": "x", "dir": "/var/lib/crossdock-lab/x", "vr_netns": "cdl-x-vr",
            "docker_version": "20", "crossdock_bin": "/bin/true", "agents": true,
            "phase": "up", "created_at": 0, "region_id": "cn-hangzhou", "vpc_id": "vpc-1",
            "vswitch_id": "vsw-a", "route_table_id": "vtb-sys", "admin_access_key_id": "k",
            "admin_access_key_secret": "s", "api_endpoint": "", "metadata_endpoint": "",
            "api_socket": "/nonexistent/api.sock", "admin_socket": "/nonexistent/admin.sock",
            "hosts": []
        }))
        .expect("a lab.json from before zones loads");
        assert_eq!(
            vswitches_of(&s).len(),
            1,
            "older labs have their one vSwitch"
        );
        assert_eq!(vswitches_of(&s)[0].vswitch_id, "vsw-a");
        s.vswitches = vec![
            VSwitchState {
                vswitch_id: "vsw-a".into(),
                ..planned_vswitch(1)
            },
            VSwitchState {
                vswitch_id: "vsw-b".into(),
                ..planned_vswitch(2)
            },
        ];
        s
    }

    #[test]
    fn vswitches_are_found_by_name_number_or_id() {
        let s = state_with_zones();
        for name in ["vsw2", "2", "vsw-b"] {
            assert_eq!(find_vswitch(&s, name).unwrap().vswitch_id, "vsw-b");
        }
        let e = find_vswitch(&s, "vsw3").unwrap_err();
        assert!(e.chain().any(|c| c.is::<InputError>()), "{e:#}");
        assert!(e.to_string().contains("it has vsw1, vsw2"), "{e:#}");
    }

    #[test]
    fn zone_status_names_each_vswitchs_table() {
        use crossdock_vpcsim::model::{Bootstrap, State};
        let s = state_with_zones();
        let mut vpc = State::bootstrap(&Bootstrap::default());
        vpc.vswitches[0].vswitch_id = "vsw-a".into();
        let mut b = vpc.vswitches[0].clone();
        b.vswitch_id = "vsw-b".into();
        b.cidr_block = "192.168.2.0/24".parse().unwrap();
        vpc.vswitches.push(b);
        vpc.route_tables.push(RouteTable {
            route_table_id: "vtb-b".into(),
            route_table_name: String::new(),
            route_table_type: "Custom".into(),
            vswitch_ids: vec!["vsw-b".into()],
            created_at_ms: 0,
        });
        let system = vpc.system_table_id().to_string();
        let (vsws, tables) = zone_statuses(&s, Some(&vpc));
        let bound: Vec<(&str, &str, &str)> = vsws
            .iter()
            .map(|v| {
                (
                    v.name.as_str(),
                    v.route_table_id.as_str(),
                    v.route_table_type.as_str(),
                )
            })
            .collect();
        assert_eq!(
            bound,
            vec![
                ("vsw1", system.as_str(), "System"),
                ("vsw2", "vtb-b", "Custom")
            ]
        );
        assert_eq!(tables.len(), 2);
        assert_eq!(tables[0].vswitches, vec!["vsw1"]);
        assert_eq!(tables[1].vswitches, vec!["vsw2"]);
        let (down, none) = zone_statuses(&s, None);
        assert!(none.is_empty() && down[1].route_table_id.is_empty());
    }
}
