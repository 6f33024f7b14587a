//! The fleet planner as a decision table: one row per rule of `fleet_plan`'s module doc.

use std::collections::BTreeSet;

use crossdock_alibaba::{InstanceStatus, NextHop, RouteEntry, RouteToDelete};

use crate::fleet_plan::{
    plan_fleet, release_candidates, FleetInput, FleetPlan, Member, ReleaseEvidence, StaleWait,
};
use crate::plan::Observed;

const TABLE: &str = "vtb-1";
const ME: &str = "i-me";

fn member(id: &str, status: InstanceStatus, cidr: Option<&str>) -> Member {
    Member {
        instance_id: id.into(),
        status,
        vswitch_id: "vsw-1".into(),
        private_ip: None,
        subnet: cidr.map(|c| c.parse().unwrap()),
    }
}

fn running(id: &str, cidr: &str) -> Member {
    member(id, InstanceStatus::Running, Some(cidr))
}

fn entry(
    id: &str,
    cidr: &str,
    hop: &str,
    name: &str,
    description: &str,
    status: &str,
) -> RouteEntry {
    RouteEntry {
        route_entry_id: id.into(),
        route_table_id: TABLE.into(),
        destination_cidr_block: cidr.into(),
        name: name.into(),
        description: description.into(),
        entry_type: "Custom".into(),
        status: status.into(),
        next_hops: vec![NextHop {
            next_hop_type: "Instance".into(),
            next_hop_id: hop.into(),
        }],
    }
}

/// A crossdock route: marked for its next hop.
fn ours(id: &str, cidr: &str, hop: &str) -> RouteEntry {
    entry(
        id,
        cidr,
        hop,
        "crossdock",
        &format!("crossdock:{hop}"),
        "Available",
    )
}

fn ids(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

struct Row {
    members: Vec<Member>,
    entries: Vec<RouteEntry>,
    released: Vec<&'static str>,
    due: Vec<&'static str>,
    max_deletes: usize,
    off_path: Vec<Observed>,
}

impl Row {
    fn new(members: Vec<Member>, entries: Vec<RouteEntry>) -> Self {
        Row {
            members,
            entries,
            released: vec![],
            due: vec![],
            max_deletes: 20,
            off_path: vec![],
        }
    }
    fn released(mut self, r: &[&'static str], due: &[&'static str]) -> Self {
        self.released = r.to_vec();
        self.due = due.to_vec();
        self
    }
    fn cap(mut self, n: usize) -> Self {
        self.max_deletes = n;
        self
    }
    fn plan(&self) -> FleetPlan {
        let observed = vec![Observed {
            table_id: TABLE.into(),
            entries: self.entries.clone(),
        }];
        let evidence = ReleaseEvidence {
            released: ids(&self.released),
            due: ids(&self.due),
        };
        let tables = vec![TABLE.to_string()];
        plan_fleet(&FleetInput {
            self_id: ME,
            route_name: "crossdock",
            members: &self.members,
            tables: &tables,
            observed: &observed,
            evidence: &evidence,
            max_deletes: self.max_deletes,
            off_path: &self.off_path,
        })
    }
}

fn created(plan: &FleetPlan) -> Vec<(String, String)> {
    plan.create
        .iter()
        .map(|r| (r.next_hop_id.clone(), r.destination_cidr_block.clone()))
        .collect()
}

fn deleted_ids(list: &[RouteToDelete]) -> Vec<String> {
    list.iter()
        .map(|d| match d {
            RouteToDelete::ById { route_entry_id, .. } => route_entry_id.clone(),
            RouteToDelete::ByDestination {
                destination_cidr_block,
                ..
            } => destination_cidr_block.clone(),
        })
        .collect()
}

#[test]
fn in_sync_fleet_plans_no_write() {
    let plan = Row::new(
        vec![running(ME, "10.1.10.0/24"), running("i-b", "10.1.11.0/24")],
        vec![
            ours("rte-1", "10.1.10.0/24", ME),
            ours("rte-2", "10.1.11.0/24", "i-b"),
        ],
    )
    .plan();
    assert!(!plan.writes(), "{plan:?}");
    assert_eq!(plan.placed.len(), 2);
    assert!(plan.missing.is_empty() && plan.conflicts.is_empty());
}

#[test]
fn own_route_missing_writes_the_whole_batch_own_first() {
    let plan = Row::new(
        vec![
            running("i-a", "10.1.9.0/24"),
            running(ME, "10.1.10.0/24"),
            running("i-c", "10.1.12.0/24"),
        ],
        vec![],
    )
    .plan();
    assert!(plan.own_missing);
    assert_eq!(
        created(&plan),
        vec![
            (ME.to_string(), "10.1.10.0/24".to_string()),
            ("i-a".to_string(), "10.1.9.0/24".to_string()),
            ("i-c".to_string(), "10.1.12.0/24".to_string()),
        ]
    );
    let marker = &plan.create[1];
    assert_eq!(
        (marker.name.as_str(), marker.description.as_str()),
        ("crossdock", "crossdock:i-a")
    );
}

#[test]
fn own_route_in_place_makes_no_write_even_when_others_are_missing() {
    let plan = Row::new(
        vec![running(ME, "10.1.10.0/24"), running("i-b", "10.1.11.0/24")],
        vec![ours("rte-1", "10.1.10.0/24", ME)],
    )
    .plan();
    assert!(!plan.writes());
    assert_eq!(plan.missing.len(), 1, "the missing route is still reported");
    assert_eq!(plan.missing[0].instance_id, "i-b");
}

#[test]
fn stopped_and_unmapped_members_get_no_new_route() {
    let plan = Row::new(
        vec![
            running(ME, "10.1.10.0/24"),
            member("i-stopped", InstanceStatus::Stopped, Some("10.1.11.0/24")),
            member("i-noip", InstanceStatus::Running, None),
        ],
        vec![],
    )
    .plan();
    assert_eq!(created(&plan), vec![(ME.into(), "10.1.10.0/24".into())]);
    assert_eq!(plan.unmapped, vec!["i-noip".to_string()]);
}

#[test]
fn stopped_member_keeps_its_route() {
    let plan = Row::new(
        vec![
            running(ME, "10.1.10.0/24"),
            member("i-s", InstanceStatus::Stopped, Some("10.1.11.0/24")),
        ],
        vec![
            ours("rte-1", "10.1.10.0/24", ME),
            ours("rte-2", "10.1.11.0/24", "i-s"),
        ],
    )
    .plan();
    assert!(!plan.writes());
    assert!(plan.stale.is_empty());
}

#[test]
fn unmarked_and_foreign_routes_are_never_touched() {
    let user = entry("rte-u", "10.1.11.0/24", "i-b", "", "hand-made", "Available");
    let foreign = entry(
        "rte-f",
        "10.9.0.0/16",
        "i-gone",
        "terraform",
        "tf",
        "Available",
    );
    let plan = Row::new(
        vec![running(ME, "10.1.10.0/24"), running("i-b", "10.1.11.0/24")],
        vec![ours("rte-1", "10.1.10.0/24", ME), user, foreign],
    )
    .released(&["i-gone"], &["i-gone"])
    .plan();
    assert!(!plan.writes(), "{plan:?}");
    assert!(plan
        .placed
        .iter()
        .any(|p| p.entry_id == "rte-u" && !p.marked));
    assert!(plan.stale.is_empty());
}

#[test]
fn a_destination_held_by_another_tool_is_a_conflict() {
    let held = entry("rte-x", "10.1.10.0/24", "i-other", "", "", "Available");
    let plan = Row::new(vec![running(ME, "10.1.10.0/24")], vec![held]).plan();
    assert!(plan.create.is_empty() && plan.replace.is_empty());
    assert_eq!(plan.conflicts.len(), 1);
    assert_eq!(plan.conflicts[0].entry_id, "rte-x");
    assert_eq!(plan.conflicts[0].holder.to_string(), "Instance i-other");
}

#[test]
fn a_crossdock_route_of_a_live_instance_is_a_conflict_not_a_replacement() {
    // i-old is not released (absent from the evidence): it may be a stopped or untagged instance.
    let plan = Row::new(
        vec![running(ME, "10.1.10.0/24")],
        vec![ours("rte-old", "10.1.10.0/24", "i-old")],
    )
    .plan();
    assert!(!plan.writes());
    assert_eq!(plan.conflicts[0].holder.to_string(), "crossdock:i-old");
}

#[test]
fn a_released_hosts_route_on_my_subnet_is_replaced_at_once() {
    let plan = Row::new(
        vec![running(ME, "10.1.10.0/24")],
        vec![ours("rte-old", "10.1.10.0/24", "i-old")],
    )
    .released(&["i-old"], &[])
    .plan();
    assert_eq!(deleted_ids(&plan.replace), vec!["rte-old"]);
    assert_eq!(created(&plan), vec![(ME.into(), "10.1.10.0/24".into())]);
    assert!(plan.delete.is_empty() && plan.stale.is_empty());
}

#[test]
fn released_routes_wait_for_the_grace_period_then_go_within_the_cap() {
    let members = vec![running(ME, "10.1.10.0/24")];
    let entries = vec![
        ours("rte-1", "10.1.10.0/24", ME),
        ours("rte-a", "10.1.20.0/24", "i-a"),
        ours("rte-b", "10.1.21.0/24", "i-b"),
        ours("rte-c", "10.1.22.0/24", "i-c"),
        entry(
            "rte-d",
            "10.1.23.0/24",
            "i-d",
            "crossdock",
            "crossdock:i-d",
            "Pending",
        ),
    ];
    let plan = Row::new(members.clone(), entries.clone())
        .released(&["i-a", "i-b", "i-c", "i-d"], &[])
        .plan();
    assert!(!plan.writes());
    assert!(plan
        .stale
        .iter()
        .all(|s| s.waiting_for == StaleWait::GracePeriod));
    let plan = Row::new(members, entries)
        .released(&["i-a", "i-b", "i-c", "i-d"], &["i-a", "i-b", "i-c", "i-d"])
        .cap(2)
        .plan();
    assert_eq!(deleted_ids(&plan.delete), vec!["rte-a", "rte-b"]);
    let wait = |id: &str| {
        plan.stale
            .iter()
            .find(|s| s.entry_id == id)
            .unwrap()
            .waiting_for
    };
    assert_eq!(wait("rte-c"), StaleWait::OverCap);
    assert_eq!(wait("rte-d"), StaleWait::NotAvailable);
}

#[test]
fn a_non_member_that_is_not_released_keeps_its_route() {
    // Untagged or stopped outside the tag listing: not in the evidence's released set.
    let plan = Row::new(
        vec![running(ME, "10.1.10.0/24")],
        vec![
            ours("rte-1", "10.1.10.0/24", ME),
            ours("rte-u", "10.1.30.0/24", "i-untagged"),
        ],
    )
    .plan();
    assert!(!plan.writes());
    assert!(plan.stale.is_empty());
}

#[test]
fn release_candidates_are_the_non_member_hops_of_crossdock_routes_only() {
    let observed = vec![Observed {
        table_id: TABLE.into(),
        entries: vec![
            ours("rte-1", "10.1.10.0/24", ME),
            ours("rte-2", "10.1.11.0/24", "i-gone"),
            entry("rte-3", "10.1.12.0/24", "i-user", "", "", "Available"),
            // Marked with another instance's description: not crossdock's shape, never a candidate.
            entry(
                "rte-4",
                "10.1.13.0/24",
                "i-x",
                "crossdock",
                "crossdock:i-y",
                "Available",
            ),
        ],
    }];
    let members = vec![running(ME, "10.1.10.0/24")];
    assert_eq!(
        release_candidates(&members, &observed, "crossdock"),
        ids(&["i-gone"])
    );
}

#[test]
fn crossdock_routes_in_a_table_off_every_members_path_are_removed_marked_only() {
    let mut row = Row::new(
        vec![running(ME, "10.1.10.0/24")],
        vec![ours("rte-1", "10.1.10.0/24", ME)],
    );
    row.off_path = vec![Observed {
        table_id: "vtb-old".into(),
        entries: vec![
            ours("rte-o1", "10.1.10.0/24", ME),
            entry("rte-u", "10.9.0.0/16", "i-x", "", "hand-made", "Available"),
        ],
    }];
    let plan = row.plan();
    assert_eq!(deleted_ids(&plan.delete), vec!["rte-o1"]);
    assert!(plan.create.is_empty());
}

#[test]
fn a_destination_being_deleted_is_neither_created_nor_a_conflict() {
    let going = entry(
        "rte-old",
        "10.1.10.0/24",
        "i-old",
        "crossdock",
        "crossdock:i-old",
        "Deleting",
    );
    let plan = Row::new(vec![running(ME, "10.1.10.0/24")], vec![going]).plan();
    assert!(plan.own_missing && plan.vacating, "{plan:?}");
    assert!(plan.create.is_empty() && plan.conflicts.is_empty() && plan.replace.is_empty());
}
