//! The pure part of route reconciliation: which routes are ours, which tables to use, and what to do.
//!
//! Desired state is data ([`Desired`]), observed state is data ([`Observed`]), and [`plan`] is a pure
//! function from the two to a list of [`Action`]s, so every rule below is a row of a table test rather
//! than a scenario against a cloud:
//!
//! - Ownership is explicit: an entry is ours only if its `RouteEntryName` is the configured route name,
//!   its `Description` is `crossdock:<this instance id>` and its single next hop is this instance.
//!   Only such entries are ever deleted. (Flannel's `ali-vpc` deleted every custom route pointing at its
//!   instance; users' routes went with them.)
//! - The destination exists but is not ours → [`Action::Conflict`], never overwritten.
//! - The destination exists, points at this instance, but carries no marker (someone followed the
//!   manual recipe) → [`Action::Unowned`]: traffic works, and crossdock leaves it alone.
//! - Our entry for an old subnet is deleted only once the new one is `Available`
//!   ([`Action::DeferDelete`] until then), so a subnet change never leaves a gap.
//! - A subnet overlapping a VPC or vSwitch CIDR is [`Action::Refused`] before any write.

use ipnet::Ipv4Net;
use serde::Serialize;

use crossdock_alibaba::{RouteEntry, RouteTable, VSwitch};
use crossdock_status::Owner;

/// The ownership marker crossdock puts on its routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// `RouteEntryName` (config `route_name`, default `crossdock`).
    pub route_name: String,
    /// This ECS instance (next hop, and part of the description).
    pub instance_id: String,
}

impl Marker {
    /// The `Description` of our routes: `crossdock:<instance-id>`.
    pub fn description(&self) -> String {
        format!("crossdock:{}", self.instance_id)
    }

    /// Whether the entry is ours: marked with our name and description, single next hop = us.
    pub fn owns(&self, e: &RouteEntry) -> bool {
        e.name == self.route_name
            && e.description == self.description()
            && e.instance_next_hop() == Some(self.instance_id.as_str())
    }

    /// Whether the entry's single next hop is this instance (marked or not).
    pub fn points_here(&self, e: &RouteEntry) -> bool {
        e.instance_next_hop() == Some(self.instance_id.as_str())
    }

    /// Who holds an entry, for reports: us, a user (points here, unmarked), another crossdock host
    /// (its description names the instance it points at), or the next hop(s).
    pub fn holder(&self, e: &RouteEntry) -> Owner {
        if self.owns(e) {
            return Owner::Us;
        }
        if self.points_here(e) {
            return Owner::User;
        }
        holder_of(e)
    }
}

/// Who holds an entry that is not this host's: another crossdock host (marked for the instance it
/// points at), else its next hop(s).
pub fn holder_of(e: &RouteEntry) -> Owner {
    if let Some(hop) = e.instance_next_hop() {
        if e.description == format!("crossdock:{hop}") {
            return Owner::Crossdock(hop.to_string());
        }
    }
    let hops: Vec<String> = e
        .next_hops
        .iter()
        .map(|h| format!("{} {}", h.next_hop_type, h.next_hop_id))
        .collect();
    Owner::NextHops(if hops.is_empty() {
        "unknown next hop".into()
    } else {
        hops.join(", ")
    })
}

/// What this host wants in the VPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The container subnet to route here.
    pub subnet: Ipv4Net,
    /// Our marker.
    pub marker: Marker,
    /// The tables to have it in.
    pub tables: Vec<String>,
}

/// Entries seen in one table: everything pointing at this instance plus whatever holds the desired
/// destination (the listing may contain more; [`plan`] does its own filtering).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The table.
    pub table_id: String,
    /// Its entries as listed.
    pub entries: Vec<RouteEntry>,
}

/// CIDRs a container subnet must not overlap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkCidrs {
    /// The VPC's primary and secondary CIDRs.
    pub vpc: Vec<Ipv4Net>,
    /// Every vSwitch of the VPC with its CIDR.
    pub vswitches: Vec<(String, Ipv4Net)>,
}

/// One step of reconciliation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Create our route for the subnet in this table.
    Create {
        /// Table.
        table_id: String,
        /// Destination.
        cidr: Ipv4Net,
    },
    /// Our route exists but is not `Available` yet: wait for it.
    Await {
        /// Table.
        table_id: String,
        /// Entry.
        entry_id: String,
        /// Destination.
        cidr: Ipv4Net,
        /// Its current status.
        status: String,
    },
    /// Delete our route for an old subnet (the new one is `Available` in this table).
    Delete {
        /// Table.
        table_id: String,
        /// Entry.
        entry_id: String,
        /// Its (old) destination.
        cidr: String,
    },
    /// Our route for an old subnet, kept until the new one is `Available`.
    DeferDelete {
        /// Table.
        table_id: String,
        /// Entry.
        entry_id: String,
        /// Its (old) destination.
        cidr: String,
    },
    /// The destination is held by a route that is not ours: report, never overwrite.
    Conflict {
        /// Table.
        table_id: String,
        /// Destination.
        cidr: Ipv4Net,
        /// The other entry.
        entry_id: String,
        /// Who holds it ([`Marker::holder`]).
        holder: Owner,
    },
    /// The destination points at this instance through an unmarked route: it works; left alone.
    Unowned {
        /// Table.
        table_id: String,
        /// Destination.
        cidr: Ipv4Net,
        /// The entry.
        entry_id: String,
    },
    /// The destination is held by another route that is being deleted: create ours once it is gone.
    Vacating {
        /// Table.
        table_id: String,
        /// Destination.
        cidr: Ipv4Net,
        /// The entry on its way out.
        entry_id: String,
    },
    /// The subnet overlaps a VPC or vSwitch CIDR: no route is created.
    Refused {
        /// Destination.
        cidr: Ipv4Net,
        /// What it overlaps, e.g. `vSwitch vsw-1 (192.168.1.0/24)`.
        overlaps: String,
        /// What to do.
        fix: String,
    },
}

impl Action {
    /// Whether the action writes to the cloud.
    pub fn is_write(&self) -> bool {
        matches!(self, Action::Create { .. } | Action::Delete { .. })
    }
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Checks the subnet against the VPC and vSwitch CIDRs.
pub fn check_overlap(subnet: Ipv4Net, cidrs: &NetworkCidrs) -> Option<Action> {
    let hit = cidrs
        .vswitches
        .iter()
        .find(|(_, c)| overlaps(&subnet, c))
        .map(|(id, c)| format!("vSwitch {id} ({c})"))
        .or_else(|| {
            cidrs
                .vpc
                .iter()
                .find(|c| overlaps(&subnet, c))
                .map(|c| format!("the VPC CIDR {c}"))
        })?;
    let vpc: Vec<String> = cidrs.vpc.iter().map(|c| c.to_string()).collect();
    Some(Action::Refused {
        cidr: subnet,
        fix: format!(
            "give Docker a bridge subnet (bip / the network's subnet) inside cluster_cidrs and outside the \
             VPC's CIDRs ({}), e.g. from 10.0.0.0/8 or 172.16.0.0/12 when the VPC uses 192.168.0.0/16",
            if vpc.is_empty() { "none known".into() } else { vpc.join(", ") }
        ),
        overlaps: hit,
    })
}

/// The tables to register in: the configured ones; else the table associated with the host's
/// vSwitch (from the vSwitch listing or the tables' vSwitch lists); else the VPC's system table.
pub fn choose_tables(
    configured: &[String],
    vswitch_id: &str,
    vswitches: &[VSwitch],
    tables: &[RouteTable],
) -> Result<Vec<String>, String> {
    if !configured.is_empty() {
        return Ok(configured.to_vec());
    }
    if let Some(t) = vswitches
        .iter()
        .find(|v| v.vswitch_id == vswitch_id)
        .and_then(|v| v.route_table_id.clone())
    {
        return Ok(vec![t]);
    }
    if let Some(t) = tables
        .iter()
        .find(|t| t.vswitch_ids.iter().any(|v| v == vswitch_id))
    {
        return Ok(vec![t.route_table_id.clone()]);
    }
    tables
        .iter()
        .find(|t| t.is_system())
        .map(|t| vec![t.route_table_id.clone()])
        .ok_or_else(|| {
            format!(
                "no route table is associated with vSwitch {vswitch_id} and the VPC has no system route table"
            )
        })
}

/// What to do, given what we want and what is there. Empty means in sync.
pub fn plan(desired: &Desired, cidrs: &NetworkCidrs, observed: &[Observed]) -> Vec<Action> {
    let mut actions = Vec::new();
    let subnet = desired.subnet;
    let refused = check_overlap(subnet, cidrs);
    for table_id in &desired.tables {
        let entries: &[RouteEntry] = observed
            .iter()
            .find(|o| &o.table_id == table_id)
            .map(|o| o.entries.as_slice())
            .unwrap_or(&[]);
        let holder = entries
            .iter()
            .find(|e| e.destination_cidr_block.parse::<Ipv4Net>().ok() == Some(subnet));
        let mut desired_available = false;
        if refused.is_none() {
            match holder {
                None => actions.push(Action::Create {
                    table_id: table_id.clone(),
                    cidr: subnet,
                }),
                Some(e) if desired.marker.owns(e) => {
                    if e.is_available() {
                        desired_available = true;
                    } else {
                        actions.push(Action::Await {
                            table_id: table_id.clone(),
                            entry_id: e.route_entry_id.clone(),
                            cidr: subnet,
                            status: e.status.clone(),
                        });
                    }
                }
                Some(e) if desired.marker.points_here(e) => {
                    desired_available = e.is_available();
                    actions.push(Action::Unowned {
                        table_id: table_id.clone(),
                        cidr: subnet,
                        entry_id: e.route_entry_id.clone(),
                    });
                }
                // Another route on its way out (a released host's, replaced by fleet mode; or one
                // deleted by hand): ours follows once it is gone, not a conflict.
                Some(e) if e.status.eq_ignore_ascii_case("Deleting") => {
                    actions.push(Action::Vacating {
                        table_id: table_id.clone(),
                        cidr: subnet,
                        entry_id: e.route_entry_id.clone(),
                    })
                }
                Some(e) => actions.push(Action::Conflict {
                    table_id: table_id.clone(),
                    cidr: subnet,
                    entry_id: e.route_entry_id.clone(),
                    holder: desired.marker.holder(e),
                }),
            }
        }
        for e in entries {
            let same = e.destination_cidr_block.parse::<Ipv4Net>().ok() == Some(subnet);
            // Not ours, the desired one, or already on its way out: nothing to do.
            if same || !desired.marker.owns(e) || e.status.eq_ignore_ascii_case("Deleting") {
                continue;
            }
            let (table_id, entry_id, cidr) = (
                table_id.clone(),
                e.route_entry_id.clone(),
                e.destination_cidr_block.clone(),
            );
            actions.push(if desired_available && e.is_available() {
                Action::Delete {
                    table_id,
                    entry_id,
                    cidr,
                }
            } else {
                Action::DeferDelete {
                    table_id,
                    entry_id,
                    cidr,
                }
            });
        }
    }
    if let Some(r) = refused {
        actions.insert(0, r);
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossdock_alibaba::NextHop;

    const ME: &str = "i-me";

    fn marker() -> Marker {
        Marker {
            route_name: "crossdock".into(),
            instance_id: ME.into(),
        }
    }

    fn entry(id: &str, cidr: &str, hop: &str, name: &str, desc: &str, status: &str) -> RouteEntry {
        RouteEntry {
            route_entry_id: id.into(),
            route_table_id: "vtb-1".into(),
            destination_cidr_block: cidr.into(),
            name: name.into(),
            description: desc.into(),
            entry_type: "Custom".into(),
            status: status.into(),
            next_hops: vec![NextHop {
                next_hop_type: "Instance".into(),
                next_hop_id: hop.into(),
            }],
        }
    }

    fn ours(id: &str, cidr: &str, status: &str) -> RouteEntry {
        entry(id, cidr, ME, "crossdock", "crossdock:i-me", status)
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn cidrs() -> NetworkCidrs {
        NetworkCidrs {
            vpc: vec![net("192.168.0.0/16")],
            vswitches: vec![("vsw-1".into(), net("192.168.1.0/24"))],
        }
    }

    fn desired(subnet: &str) -> Desired {
        Desired {
            subnet: net(subnet),
            marker: marker(),
            tables: vec!["vtb-1".into()],
        }
    }

    fn observed(entries: Vec<RouteEntry>) -> Vec<Observed> {
        vec![Observed {
            table_id: "vtb-1".into(),
            entries,
        }]
    }

    /// The decision table: (case, subnet, entries in vtb-1, expected actions).
    #[test]
    fn decision_table() {
        let s = net("10.1.0.0/24");
        let cases: Vec<(&str, &str, Vec<RouteEntry>, Vec<Action>)> = vec![
            (
                "in sync",
                "10.1.0.0/24",
                vec![ours("rte-1", "10.1.0.0/24", "Available")],
                vec![],
            ),
            (
                "missing",
                "10.1.0.0/24",
                vec![],
                vec![Action::Create {
                    table_id: "vtb-1".into(),
                    cidr: s,
                }],
            ),
            (
                "ours, pending",
                "10.1.0.0/24",
                vec![ours("rte-1", "10.1.0.0/24", "Pending")],
                vec![Action::Await {
                    table_id: "vtb-1".into(),
                    entry_id: "rte-1".into(),
                    cidr: s,
                    status: "Pending".into(),
                }],
            ),
            (
                "old subnet, new missing: create, keep old",
                "10.1.0.0/24",
                vec![ours("rte-old", "10.9.0.0/24", "Available")],
                vec![
                    Action::Create {
                        table_id: "vtb-1".into(),
                        cidr: s,
                    },
                    Action::DeferDelete {
                        table_id: "vtb-1".into(),
                        entry_id: "rte-old".into(),
                        cidr: "10.9.0.0/24".into(),
                    },
                ],
            ),
            (
                "old subnet, new pending: wait, keep old",
                "10.1.0.0/24",
                vec![
                    ours("rte-old", "10.9.0.0/24", "Available"),
                    ours("rte-new", "10.1.0.0/24", "Pending"),
                ],
                vec![
                    Action::Await {
                        table_id: "vtb-1".into(),
                        entry_id: "rte-new".into(),
                        cidr: s,
                        status: "Pending".into(),
                    },
                    Action::DeferDelete {
                        table_id: "vtb-1".into(),
                        entry_id: "rte-old".into(),
                        cidr: "10.9.0.0/24".into(),
                    },
                ],
            ),
            (
                "old subnet, new available: delete old",
                "10.1.0.0/24",
                vec![
                    ours("rte-old", "10.9.0.0/24", "Available"),
                    ours("rte-new", "10.1.0.0/24", "Available"),
                ],
                vec![Action::Delete {
                    table_id: "vtb-1".into(),
                    entry_id: "rte-old".into(),
                    cidr: "10.9.0.0/24".into(),
                }],
            ),
            (
                "our old route already being deleted: nothing",
                "10.1.0.0/24",
                vec![
                    ours("rte-old", "10.9.0.0/24", "Deleting"),
                    ours("rte-new", "10.1.0.0/24", "Available"),
                ],
                vec![],
            ),
            (
                "same CIDR pointing elsewhere: conflict",
                "10.1.0.0/24",
                vec![entry(
                    "rte-x",
                    "10.1.0.0/24",
                    "i-other",
                    "",
                    "",
                    "Available",
                )],
                vec![Action::Conflict {
                    table_id: "vtb-1".into(),
                    cidr: s,
                    entry_id: "rte-x".into(),
                    holder: Owner::NextHops("Instance i-other".into()),
                }],
            ),
            (
                "same CIDR, another crossdock host: conflict",
                "10.1.0.0/24",
                vec![entry(
                    "rte-x",
                    "10.1.0.0/24",
                    "i-other",
                    "crossdock",
                    "crossdock:i-other",
                    "Available",
                )],
                vec![Action::Conflict {
                    table_id: "vtb-1".into(),
                    cidr: s,
                    entry_id: "rte-x".into(),
                    holder: Owner::Crossdock("i-other".into()),
                }],
            ),
            (
                "our marker but another next hop: not ours, conflict",
                "10.1.0.0/24",
                vec![entry(
                    "rte-x",
                    "10.1.0.0/24",
                    "i-other",
                    "crossdock",
                    "crossdock:i-me",
                    "Available",
                )],
                vec![Action::Conflict {
                    table_id: "vtb-1".into(),
                    cidr: s,
                    entry_id: "rte-x".into(),
                    holder: Owner::NextHops("Instance i-other".into()),
                }],
            ),
            (
                "unmarked route to us for our CIDR: left alone",
                "10.1.0.0/24",
                vec![entry("rte-u", "10.1.0.0/24", ME, "manual", "", "Available")],
                vec![Action::Unowned {
                    table_id: "vtb-1".into(),
                    cidr: s,
                    entry_id: "rte-u".into(),
                }],
            ),
            (
                "user route to our instance for another CIDR: untouched",
                "10.1.0.0/24",
                vec![
                    ours("rte-1", "10.1.0.0/24", "Available"),
                    entry(
                        "rte-u",
                        "172.30.0.0/16",
                        ME,
                        "vpn",
                        "users vpn",
                        "Available",
                    ),
                ],
                vec![],
            ),
            (
                "overlaps a vSwitch: refused, no create",
                "192.168.1.0/25",
                vec![],
                vec![Action::Refused {
                    cidr: net("192.168.1.0/25"),
                    overlaps: "vSwitch vsw-1 (192.168.1.0/24)".into(),
                    fix: String::new(),
                }],
            ),
            (
                "inside the VPC CIDR: refused",
                "192.168.50.0/24",
                vec![ours("rte-old", "10.9.0.0/24", "Available")],
                vec![
                    Action::Refused {
                        cidr: net("192.168.50.0/24"),
                        overlaps: "the VPC CIDR 192.168.0.0/16".into(),
                        fix: String::new(),
                    },
                    Action::DeferDelete {
                        table_id: "vtb-1".into(),
                        entry_id: "rte-old".into(),
                        cidr: "10.9.0.0/24".into(),
                    },
                ],
            ),
        ];
        for (case, subnet, entries, want) in cases {
            let mut got = plan(&desired(subnet), &cidrs(), &observed(entries));
            // Fix texts are checked separately; blank them for the comparison.
            for a in got.iter_mut() {
                if let Action::Refused { fix, .. } = a {
                    assert!(
                        fix.contains("bip") && fix.contains("192.168.0.0/16"),
                        "{case}: {fix}"
                    );
                    fix.clear();
                }
            }
            assert_eq!(got, want, "case: {case}");
        }
    }

    #[test]
    fn several_tables_are_planned_independently() {
        let d = Desired {
            tables: vec!["vtb-1".into(), "vtb-2".into()],
            ..desired("10.1.0.0/24")
        };
        let obs = vec![
            Observed {
                table_id: "vtb-1".into(),
                entries: vec![ours("rte-1", "10.1.0.0/24", "Available")],
            },
            Observed {
                table_id: "vtb-2".into(),
                entries: vec![],
            },
        ];
        assert_eq!(
            plan(&d, &cidrs(), &obs),
            vec![Action::Create {
                table_id: "vtb-2".into(),
                cidr: net("10.1.0.0/24")
            }]
        );
    }

    #[test]
    fn table_choice() {
        let t = |id: &str, ty: &str, vsws: &[&str]| RouteTable {
            route_table_id: id.into(),
            route_table_type: ty.into(),
            vpc_id: "vpc-1".into(),
            router_id: "vrt-1".into(),
            status: "Available".into(),
            vswitch_ids: vsws.iter().map(|s| s.to_string()).collect(),
        };
        let vsw = |id: &str, table: Option<&str>| VSwitch {
            vswitch_id: id.into(),
            vpc_id: "vpc-1".into(),
            cidr_block: "192.168.1.0/24".into(),
            route_table_id: table.map(str::to_string),
            available_ip_count: None,
        };
        let tables = vec![
            t("vtb-sys", "System", &["vsw-a"]),
            t("vtb-c", "Custom", &["vsw-b"]),
        ];
        // Configured wins.
        assert_eq!(
            choose_tables(&["vtb-x".into()], "vsw-b", &[], &tables).unwrap(),
            ["vtb-x"]
        );
        // The vSwitch listing names its table.
        assert_eq!(
            choose_tables(&[], "vsw-b", &[vsw("vsw-b", Some("vtb-c"))], &tables).unwrap(),
            ["vtb-c"]
        );
        // Else the table listing's vSwitch association.
        assert_eq!(
            choose_tables(&[], "vsw-b", &[vsw("vsw-b", None)], &tables).unwrap(),
            ["vtb-c"]
        );
        // Else the system table.
        assert_eq!(
            choose_tables(&[], "vsw-z", &[], &tables).unwrap(),
            ["vtb-sys"]
        );
        assert!(choose_tables(&[], "vsw-z", &[], &[t("vtb-c", "Custom", &[])]).is_err());
    }

    #[test]
    fn ecmp_and_non_instance_hops_are_never_ours() {
        let mut e = ours("rte-1", "10.1.0.0/24", "Available");
        e.next_hops.push(NextHop {
            next_hop_type: "Instance".into(),
            next_hop_id: "i-other".into(),
        });
        assert!(!marker().owns(&e));
        let mut e = ours("rte-1", "10.1.0.0/24", "Available");
        e.next_hops[0].next_hop_type = "HaVip".into();
        assert!(!marker().owns(&e));
    }
}
