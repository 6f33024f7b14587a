//! `route.tables`: this host's route in every route table on a path to it (issue 14, multi-zone VPCs).
//!
//! Why a check of its own: a VPC routes a packet by the table bound to the vSwitch the packet comes
//! *from*. With vSwitches bound to different tables (zones with custom tables, the rest on the system
//! table), this host's route must be in the table of every vSwitch a sender lives in; a table that
//! lacks it drops exactly the traffic from its vSwitches, while both agents say "ready". `cloud.route`
//! judges the table(s) doctor found to register in (`cloud.route-table`); this check walks the VPC's
//! layout — which table serves which vSwitch, as `crossdock_routes::tables` reads it for the agents —
//! and judges every *other* table on a path to this host, naming each one that lacks the route with
//! the vSwitches whose traffic it routes and the fix. (Judging only the others keeps one missing route
//! one failure: in a one-table VPC this check has nothing of its own to say.)
//!
//! Which tables count is the agents' rule ([`crossdock_routes::tables::TableLayout::tables_on_path`]):
//! `[cloud] route_table_ids` when set; in fleet mode the tables of the members' vSwitches; in per-host
//! mode every table bound to a vSwitch of the VPC.

use crate::checks::{cloud, my_instance, RESTART_AGENT};
use crate::facts::{Fact, Facts, Unavailable};
use crate::gather::cloud_unavailable;
use crate::model::{CheckDef, Outcome};
use crossdock_alibaba::{Client, RouteEntry, RouteEntryFilter, RouteTable, VSwitch};
use crossdock_routes::tables::{Senders, TableLayout};
use ipnet::Ipv4Net;
use std::collections::{BTreeMap, BTreeSet};

/// The VPC's layout and the entries of the tables on a path to this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFacts {
    /// vSwitch id -> the table routing its traffic.
    pub bound: BTreeMap<String, String>,
    /// The tables this host's route must be in.
    pub on_path: Vec<String>,
    /// Why those (`cloud.route_table_ids`, `fleet mode: ...`, `per-host mode: ...`).
    pub basis: String,
    /// Every custom entry of the tables on the path.
    pub entries: Fact<Vec<RouteEntry>>,
}

impl TableFacts {
    /// The vSwitches whose traffic `table` routes.
    pub fn vswitches_of(&self, table: &str) -> Vec<&str> {
        self.bound
            .iter()
            .filter(|(_, t)| *t == table)
            .map(|(v, _)| v.as_str())
            .collect()
    }
}

/// The checks of this module (after the per-host cloud checks).
pub fn defs() -> Vec<CheckDef<Facts>> {
    vec![CheckDef::new(
        "route.tables",
        "this host's route is in every route table on a path to it",
        &[
            "cloud.route-table",
            "cloud.permission.DescribeRouteEntryList",
            "docker.network",
        ],
        route_tables,
    )]
}

/// Reads the layout from the vSwitch and table listings doctor already made, chooses the tables on
/// the path (`members`: the vSwitches of fleet members, `None` in per-host mode) and lists their
/// entries. `None` when the layout cannot be known (the listings failed: `cloud.route-table` says why).
pub async fn gather(
    client: &Client,
    configured: &[String],
    own_vswitch: &str,
    vswitches: &Result<Vec<VSwitch>, crossdock_alibaba::Error>,
    tables: &Result<Vec<RouteTable>, crossdock_alibaba::Error>,
    members: Option<&BTreeSet<String>>,
) -> Option<TableFacts> {
    let (vswitches, tables) = (vswitches.as_ref().ok()?, tables.as_ref().ok()?);
    let layout = TableLayout::new(vswitches, tables).ok()?;
    let (senders, basis) = match members {
        _ if !configured.is_empty() => (Senders::Vpc, "cloud.route_table_ids".to_string()),
        Some(m) => (
            Senders::Members(m),
            format!(
                "fleet mode: the tables of the members' {} vSwitch(es)",
                m.len()
            ),
        ),
        None => (
            Senders::Vpc,
            "per-host mode: every table bound to a vSwitch of the VPC".to_string(),
        ),
    };
    let on_path = layout
        .tables_on_path(configured, senders, own_vswitch)
        .ok()?;
    let mut entries: Fact<Vec<RouteEntry>> = Ok(vec![]);
    for t in &on_path {
        let filter = RouteEntryFilter {
            route_entry_type: Some("Custom".into()),
            ..Default::default()
        };
        match client.describe_route_entry_list(t, &filter).await {
            Ok(mut e) => {
                if let Ok(all) = &mut entries {
                    all.append(&mut e);
                }
            }
            Err(e) => entries = Err(cloud_unavailable(&e)),
        }
    }
    let bound = vswitches
        .iter()
        .filter_map(|v| {
            Some((
                v.vswitch_id.clone(),
                layout.table_of(&v.vswitch_id)?.to_string(),
            ))
        })
        .collect();
    Some(TableFacts {
        bound,
        on_path,
        basis,
        entries,
    })
}

/// This host's route in one table, judged.
#[derive(Debug, Clone, PartialEq, Eq)]
enum InTable {
    /// There and Available (crossdock's or not: it routes here).
    Here(String),
    /// Pointing here, not Available yet.
    Settling(String),
    /// The destination points elsewhere.
    Elsewhere(String),
    Missing,
}

fn in_table(entries: &[RouteEntry], table: &str, subnet: Ipv4Net, me: &str) -> InTable {
    let Some(e) = entries.iter().find(|e| {
        e.route_table_id == table
            && e.destination_cidr_block.parse::<Ipv4Net>().ok() == Some(subnet)
    }) else {
        return InTable::Missing;
    };
    let hop = e.instance_next_hop().unwrap_or("something else");
    let desc = format!("{} {subnet} -> {hop} {}", e.route_entry_id, e.status);
    match (hop == me, e.is_available()) {
        (true, true) => InTable::Here(desc),
        (true, false) => InTable::Settling(desc),
        (false, _) => InTable::Elsewhere(desc),
    }
}

/// Judges the tables on the path (pure: the check without the facts plumbing).
/// `judged` = the tables `cloud.route` judges already: listed, not judged again.
pub fn judge(
    tf: &TableFacts,
    judged: &[String],
    entries: &[RouteEntry],
    subnet: Ipv4Net,
    me: &str,
    region: &str,
) -> Outcome {
    let from = |t: &str| match tf.vswitches_of(t).as_slice() {
        [] => "no vSwitch (listed in cloud.route_table_ids)".to_string(),
        v => format!("traffic from {}", v.join(", ")),
    };
    let (mut lines, mut missing, mut elsewhere, mut settling) = (vec![], vec![], vec![], vec![]);
    for t in &tf.on_path {
        if judged.contains(t) {
            lines.push(format!("{t} ({}): see cloud.route", from(t)));
            continue;
        }
        let j = in_table(entries, t, subnet, me);
        lines.push(match &j {
            InTable::Here(d) => format!("{t} ({}): {d}", from(t)),
            InTable::Settling(d) => format!("{t} ({}): {d}", from(t)),
            InTable::Elsewhere(d) => format!("{t} ({}): {d}: not this host", from(t)),
            InTable::Missing => format!("{t} ({}): no route for {subnet}", from(t)),
        });
        match j {
            InTable::Missing => missing.push(t.clone()),
            InTable::Elsewhere(_) => elsewhere.push(t.clone()),
            InTable::Settling(_) => settling.push(t.clone()),
            InTable::Here(_) => {}
        }
    }
    let evidence = format!("{} ({}): {}", tf.on_path.len(), tf.basis, lines.join("; "));
    if !missing.is_empty() {
        let by_hand: Vec<String> = missing
            .iter()
            .map(|t| format!("aliyun vpc CreateRouteEntry{region} --RouteTableId {t} --DestinationCidrBlock {subnet} --NextHopType Instance --NextHopId {me}"))
            .collect();
        return Outcome::fail(
            format!("{evidence}; {} lack(s) this host's route: packets routed by it to {subnet} are dropped", missing.join(", ")),
            format!("{RESTART_AGENT} (an agent that routes every table on the path writes it within a resync; an older one only writes its own vSwitch's table: set cloud.route_table_ids to {}); by hand: {}", tf.on_path.join(", "), by_hand.join("; ")),
        );
    }
    if !elsewhere.is_empty() {
        return Outcome::fail(
            format!("{evidence}; in {} {subnet} points elsewhere: traffic routed by it does not reach this host", elsewhere.join(", ")),
            "see cloud.route-conflicts: delete the other holder's route if it no longer serves this subnet, or give this host another subnet",
        );
    }
    if !settling.is_empty() {
        return Outcome::warn(
            format!("{evidence}; not Available yet in {}", settling.join(", ")),
            "wait for the VPC to finish (normally seconds); if it stays so for minutes, check the entry in the VPC console",
        );
    }
    Outcome::ok(evidence)
}

fn route_tables(f: &Facts) -> Outcome {
    let c = match cloud(f) {
        Ok(c) => c,
        Err(o) => return o,
    };
    let Some(tf) = &c.table_paths else {
        return Outcome::skip("the VPC's table layout is unknown (see cloud.route-table)");
    };
    let entries = match &tf.entries {
        Ok(e) => e,
        Err(Unavailable { message, fix }) => return Outcome::fail(message.clone(), fix.clone()),
    };
    let Some(subnet) = f.subnet() else {
        return Outcome::skip("no served subnet (see docker.network)");
    };
    let Some(me) = my_instance(f) else {
        return Outcome::skip("instance id unknown");
    };
    let judged = c.route_tables.as_deref().unwrap_or_default();
    let region = c
        .metadata
        .as_ref()
        .map_or(String::new(), |m| format!(" --RegionId {}", m.region_id));
    judge(tf, judged, entries, subnet, &me, &region)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Status;
    use crossdock_alibaba::NextHop;

    fn entry(table: &str, dst: &str, hop: &str, status: &str) -> RouteEntry {
        RouteEntry {
            route_entry_id: format!("rte-{table}-{hop}"),
            route_table_id: table.into(),
            destination_cidr_block: dst.into(),
            name: "crossdock".into(),
            description: format!("crossdock:{hop}"),
            entry_type: "Custom".into(),
            status: status.into(),
            next_hops: vec![NextHop {
                next_hop_type: "Instance".into(),
                next_hop_id: hop.into(),
            }],
        }
    }

    /// vsw-a on the system table, vsw-b and vsw-c on custom vtb-b; both tables on the path.
    fn zones() -> TableFacts {
        TableFacts {
            bound: BTreeMap::from([
                ("vsw-a".into(), "vtb-sys".into()),
                ("vsw-b".into(), "vtb-b".into()),
                ("vsw-c".into(), "vtb-b".into()),
            ]),
            on_path: vec!["vtb-b".into(), "vtb-sys".into()],
            basis: "per-host mode".into(),
            entries: Ok(vec![]),
        }
    }

    #[test]
    fn each_table_on_the_path_must_route_here() {
        let subnet: Ipv4Net = "10.0.0.0/24".parse().unwrap();
        let tf = zones();
        let both = [
            entry("vtb-sys", "10.0.0.0/24", "i-me", "Available"),
            entry("vtb-b", "10.0.0.0/24", "i-me", "Available"),
        ];
        // name, entries, status, words the evidence or fix must carry
        let rows: Vec<(&str, Vec<RouteEntry>, Status, Vec<&str>)> = vec![
            (
                "in both",
                both.to_vec(),
                Status::Ok,
                vec!["2 (per-host mode)"],
            ),
            (
                "missing from the custom table",
                vec![both[0].clone()],
                Status::Fail,
                vec![
                    "vtb-b lack(s) this host's route",
                    "traffic from vsw-b, vsw-c",
                    "--RouteTableId vtb-b",
                    "--RegionId cn-hangzhou",
                ],
            ),
            (
                "another host's route in the system table",
                vec![
                    both[1].clone(),
                    entry("vtb-sys", "10.0.0.0/24", "i-other", "Available"),
                ],
                Status::Fail,
                vec!["points elsewhere", "i-other"],
            ),
            (
                "pending in one",
                vec![
                    both[0].clone(),
                    entry("vtb-b", "10.0.0.0/24", "i-me", "Pending"),
                ],
                Status::Warn,
                vec!["not Available yet in vtb-b"],
            ),
            (
                "another subnet only",
                vec![entry("vtb-b", "10.9.0.0/24", "i-me", "Available")],
                Status::Fail,
                vec!["vtb-b, vtb-sys lack(s)"],
            ),
        ];
        for (name, entries, status, words) in rows {
            let o = judge(
                &tf,
                &[],
                &entries,
                subnet,
                "i-me",
                " --RegionId cn-hangzhou",
            );
            assert_eq!(o.status, status, "{name}: {o:?}");
            let text = format!("{} {}", o.evidence, o.fix.clone().unwrap_or_default());
            for w in words {
                assert!(text.contains(w), "{name}: {w:?} not in {text}");
            }
        }
    }

    #[test]
    fn a_configured_table_bound_to_nothing_is_named_so() {
        let mut tf = zones();
        tf.on_path = vec!["vtb-extra".into()];
        let o = judge(&tf, &[], &[], "10.0.0.0/24".parse().unwrap(), "i-me", "");
        assert_eq!(o.status, Status::Fail);
        assert!(
            o.evidence.contains("vtb-extra (no vSwitch"),
            "{}",
            o.evidence
        );
    }

    #[test]
    fn tables_cloud_route_judges_are_not_judged_twice() {
        let tf = zones();
        let subnet: Ipv4Net = "10.0.0.0/24".parse().unwrap();
        // the route is missing from the system table, which cloud.route judges (and fails)
        let only_b = [entry("vtb-b", "10.0.0.0/24", "i-me", "Available")];
        let o = judge(&tf, &["vtb-sys".into()], &only_b, subnet, "i-me", "");
        assert_eq!(o.status, Status::Ok, "{o:?}");
        assert!(o
            .evidence
            .contains("vtb-sys (traffic from vsw-a): see cloud.route"));
        // ... and from the custom table, which only this check judges
        let o = judge(&tf, &["vtb-sys".into()], &[], subnet, "i-me", "");
        assert_eq!(o.status, Status::Fail);
        assert!(o.evidence.contains("vtb-b lack(s)"), "{}", o.evidence);
        // one table, judged by cloud.route: nothing of its own to say
        let one = TableFacts {
            bound: BTreeMap::from([("vsw-a".into(), "vtb-sys".into())]),
            on_path: vec!["vtb-sys".into()],
            basis: "per-host mode".into(),
            entries: Ok(vec![]),
        };
        assert_eq!(
            judge(&one, &["vtb-sys".into()], &[], subnet, "i-me", "").status,
            Status::Ok
        );
    }
}
