//! The pure part of fleet mode: given the cluster's members and the route tables as listed, which
//! routes to create, which stale routes to delete, and which to leave alone.
//!
//! In fleet mode every agent keeps the routes of *all* running members of its cluster (each member's
//! container subnet is a function of its private IP, so any agent can compute it), so a fleet that
//! boots together needs a few batched writes instead of one write per host. The rules, each a row of
//! the decision-table tests:
//!
//! - A route is crossdock's when its `RouteEntryName` is the configured name and its `Description`
//!   is `crossdock:<next hop>` for its single instance next hop ([`crossdock_hop`]). Only such
//!   routes are ever deleted; unmarked routes and other tools' routes are never touched.
//! - A running member whose subnet is not routed in a table gets a route there. Creates are planned
//!   only when *this* host's own route is missing: a host whose route exists makes no writes, and
//!   whoever is missing one writes the whole batch (own route first), so the fleet converges in a
//!   few batches instead of racing one write per host.
//! - A destination held by a crossdock route whose next hop is verifiably released (absent from an
//!   instance listing that does show this host) is replaced at once. Held by anything else, it is a
//!   conflict: reported, never overwritten.
//! - A crossdock route whose next hop is no member: kept while the instance exists (stopped,
//!   untagged); deleted only after the instance has been seen released for the whole grace period
//!   ([`crate::gc::ReleaseTracker`] says which), at most `max_deletes` per pass, and only once the
//!   entry is `Available` (the VPC refuses to delete a `Pending` entry).
//! - A table no member's vSwitch has been bound to for the whole grace period routes nobody's
//!   traffic: crossdock's routes there are deleted (within the same cap).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use crossdock_alibaba::{InstanceStatus, NewRoute, RouteEntry, RouteToDelete};

use crate::plan::{holder_of, Observed};
use crossdock_status::Owner;

/// A member of the cluster as the planner needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// `i-...`.
    pub instance_id: String,
    /// ECS status.
    pub status: InstanceStatus,
    /// The member's vSwitch.
    pub vswitch_id: String,
    /// Its primary private IP, when the listing shows one.
    pub private_ip: Option<Ipv4Addr>,
    /// Its container subnet by the fleet mapping (`None`: no IP, or the IP is outside the mapping).
    pub subnet: Option<Ipv4Net>,
}

impl Member {
    /// Whether the member should have its route: running (or on its way there).
    pub fn wants_route(&self) -> bool {
        matches!(
            self.status,
            InstanceStatus::Running | InstanceStatus::Starting | InstanceStatus::Pending
        )
    }
}

/// The instance a crossdock route points at, if the entry is crossdock's: marked with
/// `route_name` and `crossdock:<hop>`, single instance next hop `hop`.
pub fn crossdock_hop<'e>(entry: &'e RouteEntry, route_name: &str) -> Option<&'e str> {
    let hop = entry.instance_next_hop()?;
    let marked = entry.name == route_name
        && entry
            .description
            .strip_prefix("crossdock:")
            .is_some_and(|d| d == hop);
    marked.then_some(hop)
}

/// The instances whose release must be checked: next hops of crossdock routes that are not members.
pub fn release_candidates(
    members: &[Member],
    observed: &[Observed],
    route_name: &str,
) -> BTreeSet<String> {
    let member_ids: BTreeSet<&str> = members.iter().map(|m| m.instance_id.as_str()).collect();
    observed
        .iter()
        .flat_map(|o| o.entries.iter())
        .filter_map(|e| crossdock_hop(e, route_name))
        .filter(|hop| !member_ids.contains(hop))
        .map(str::to_string)
        .collect()
}

/// What the release check found, as [`crate::gc::ReleaseTracker`] keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseEvidence {
    /// Instances verifiably released now (absent from a listing that shows this host).
    pub released: BTreeSet<String>,
    /// Of those, the ones seen released for the whole grace period: their routes may go.
    pub due: BTreeSet<String>,
}

/// Everything [`plan_fleet`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct FleetInput<'a> {
    /// This host's instance.
    pub self_id: &'a str,
    /// `RouteEntryName` of crossdock's routes.
    pub route_name: &'a str,
    /// The cluster's members (tag listing), any status.
    pub members: &'a [Member],
    /// The tables that must route the members' subnets.
    pub tables: &'a [String],
    /// Each table's custom entries, as listed.
    pub observed: &'a [Observed],
    /// Which non-member next hops are released, and which for long enough.
    pub evidence: &'a ReleaseEvidence,
    /// At most this many stale routes deleted by one pass.
    pub max_deletes: usize,
    /// Tables no member's vSwitch is bound to any more (for the whole grace period): crossdock's
    /// routes there route nobody's traffic and are removed (marked ones only, within the cap).
    pub off_path: &'a [Observed],
}

/// A route of a member that is in place (any status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placed {
    /// Table.
    pub table_id: String,
    /// The member's subnet.
    pub cidr: Ipv4Net,
    /// The member.
    pub instance_id: String,
    /// The entry.
    pub entry_id: String,
    /// Its status (`Available`, `Pending`, ...).
    pub status: String,
    /// Whether it carries crossdock's marker (unmarked: a hand-made route that works; left alone).
    pub marked: bool,
}

/// A route of a member that is missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    /// Table.
    pub table_id: String,
    /// The member's subnet.
    pub cidr: Ipv4Net,
    /// The member.
    pub instance_id: String,
}

/// A crossdock route whose next hop is no member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stale {
    /// Table.
    pub table_id: String,
    /// Destination.
    pub cidr: String,
    /// The entry.
    pub entry_id: String,
    /// The instance it points at.
    pub instance_id: String,
    /// Why it is (still) there: `Released` (waiting for the grace period), `OverCap` (due, but the
    /// pass's deletion cap is used up), `NotAvailable` (due, entry not `Available` yet).
    pub waiting_for: StaleWait,
}

/// Why a stale route is not deleted by this pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StaleWait {
    /// Released, but not yet for the whole grace period.
    GracePeriod,
    /// Due, but this pass already deletes `max_deletes` routes.
    OverCap,
    /// Due, but the entry is not `Available` (the VPC cannot delete it now).
    NotAvailable,
    /// Deleted by this pass.
    Deleting,
}

/// Crossdock's routes in tables off every member's path: deleted within the cap.
fn plan_off_path(input: &FleetInput<'_>, plan: &mut FleetPlan) {
    for o in input.off_path {
        for e in &o.entries {
            let Some(hop) = crossdock_hop(e, input.route_name) else {
                continue;
            };
            let waiting_for = if !e.is_available() {
                StaleWait::NotAvailable
            } else if plan.delete.len() >= input.max_deletes {
                StaleWait::OverCap
            } else {
                plan.delete.push(delete_by_id(e, &o.table_id));
                StaleWait::Deleting
            };
            plan.stale.push(Stale {
                table_id: o.table_id.clone(),
                cidr: e.destination_cidr_block.clone(),
                entry_id: e.route_entry_id.clone(),
                instance_id: hop.to_string(),
                waiting_for,
            });
        }
    }
}

/// A member's destination held by a route crossdock may not replace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetConflict {
    /// Table.
    pub table_id: String,
    /// The member's subnet.
    pub cidr: Ipv4Net,
    /// The member.
    pub instance_id: String,
    /// The entry holding it.
    pub entry_id: String,
    /// Its next hop(s) or marker.
    pub holder: Owner,
}

/// What one fleet pass does, and what it leaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetPlan {
    /// Deletions before the creates: crossdock routes of released instances whose destination a
    /// member needs now.
    pub replace: Vec<RouteToDelete>,
    /// Routes to create, this host's first (empty unless this host's own route is missing).
    pub create: Vec<NewRoute>,
    /// Stale routes to delete (released past the grace period, `Available`, within the cap).
    pub delete: Vec<RouteToDelete>,
    /// Members' routes in place.
    pub placed: Vec<Placed>,
    /// Members' routes missing (whether or not this pass creates them).
    pub missing: Vec<Missing>,
    /// Crossdock routes of non-members: waiting, or deleted by this pass.
    pub stale: Vec<Stale>,
    /// Destinations crossdock must not take.
    pub conflicts: Vec<FleetConflict>,
    /// Members whose subnet cannot be computed (no IP, IP outside the mapping).
    pub unmapped: Vec<String>,
    /// Whether this host's own route is missing in some table.
    pub own_missing: bool,
    /// Some member's destination is held by a route being deleted: a later pass creates it.
    pub vacating: bool,
}

impl FleetPlan {
    /// Whether the plan writes anything.
    pub fn writes(&self) -> bool {
        !(self.replace.is_empty() && self.create.is_empty() && self.delete.is_empty())
    }
}

fn entries_of<'a>(observed: &'a [Observed], table_id: &str) -> &'a [RouteEntry] {
    observed
        .iter()
        .find(|o| o.table_id == table_id)
        .map(|o| o.entries.as_slice())
        .unwrap_or(&[])
}

fn new_route(table_id: &str, cidr: Ipv4Net, instance_id: &str, route_name: &str) -> NewRoute {
    NewRoute {
        route_table_id: table_id.to_string(),
        destination_cidr_block: cidr.to_string(),
        next_hop_id: instance_id.to_string(),
        name: route_name.to_string(),
        description: format!("crossdock:{instance_id}"),
    }
}

fn delete_by_id(e: &RouteEntry, table_id: &str) -> RouteToDelete {
    RouteToDelete::ById {
        route_table_id: table_id.to_string(),
        route_entry_id: e.route_entry_id.clone(),
    }
}

/// Members' destinations in one table: placed, missing (→ create candidates), replaced, conflicts.
fn plan_members(input: &FleetInput<'_>, table_id: &str, plan: &mut FleetPlan) -> Vec<NewRoute> {
    let entries = entries_of(input.observed, table_id);
    let mut creates = Vec::new();
    for m in input.members.iter().filter(|m| m.wants_route()) {
        let Some(cidr) = m.subnet else { continue };
        let cidr_text = cidr.to_string();
        let Some(e) = entries
            .iter()
            .find(|e| e.destination_cidr_block == cidr_text)
        else {
            plan.missing.push(Missing {
                table_id: table_id.to_string(),
                cidr,
                instance_id: m.instance_id.clone(),
            });
            creates.push(new_route(table_id, cidr, &m.instance_id, input.route_name));
            continue;
        };
        let hop = crossdock_hop(e, input.route_name);
        if e.status.eq_ignore_ascii_case("Deleting")
            && e.instance_next_hop() != Some(m.instance_id.as_str())
        {
            // The destination frees up: the member's route is created by a later pass.
            plan.missing.push(Missing {
                table_id: table_id.to_string(),
                cidr,
                instance_id: m.instance_id.clone(),
            });
            plan.vacating = true;
        } else if e.instance_next_hop() == Some(m.instance_id.as_str()) {
            plan.placed.push(Placed {
                table_id: table_id.to_string(),
                cidr,
                instance_id: m.instance_id.clone(),
                entry_id: e.route_entry_id.clone(),
                status: e.status.clone(),
                marked: hop.is_some(),
            });
        } else if hop.is_some_and(|h| input.evidence.released.contains(h)) && e.is_available() {
            plan.replace.push(delete_by_id(e, table_id));
            plan.missing.push(Missing {
                table_id: table_id.to_string(),
                cidr,
                instance_id: m.instance_id.clone(),
            });
            creates.push(new_route(table_id, cidr, &m.instance_id, input.route_name));
        } else {
            plan.conflicts.push(FleetConflict {
                table_id: table_id.to_string(),
                cidr,
                instance_id: m.instance_id.clone(),
                entry_id: e.route_entry_id.clone(),
                holder: holder_of(e),
            });
        }
    }
    creates
}

/// Crossdock routes of non-members in one table: kept, waiting, or deleted (within the cap).
fn plan_stale(input: &FleetInput<'_>, table_id: &str, plan: &mut FleetPlan) {
    let members: BTreeSet<&str> = input
        .members
        .iter()
        .map(|m| m.instance_id.as_str())
        .collect();
    let replaced: BTreeSet<String> = plan
        .replace
        .iter()
        .filter_map(|d| match d {
            RouteToDelete::ById { route_entry_id, .. } => Some(route_entry_id.clone()),
            RouteToDelete::ByDestination { .. } => None,
        })
        .collect();
    for e in entries_of(input.observed, table_id) {
        let Some(hop) = crossdock_hop(e, input.route_name) else {
            continue;
        };
        if members.contains(hop)
            || !input.evidence.released.contains(hop)
            || replaced.contains(&e.route_entry_id)
        {
            continue;
        }
        let waiting_for = if !input.evidence.due.contains(hop) {
            StaleWait::GracePeriod
        } else if !e.is_available() {
            StaleWait::NotAvailable
        } else if plan.delete.len() >= input.max_deletes {
            StaleWait::OverCap
        } else {
            plan.delete.push(delete_by_id(e, table_id));
            StaleWait::Deleting
        };
        plan.stale.push(Stale {
            table_id: table_id.to_string(),
            cidr: e.destination_cidr_block.clone(),
            entry_id: e.route_entry_id.clone(),
            instance_id: hop.to_string(),
            waiting_for,
        });
    }
}

/// Plans one fleet pass. Pure: every rule of the module doc is a row of its tests.
pub fn plan_fleet(input: &FleetInput<'_>) -> FleetPlan {
    let mut plan = FleetPlan {
        unmapped: input
            .members
            .iter()
            .filter(|m| m.wants_route() && m.subnet.is_none())
            .map(|m| m.instance_id.clone())
            .collect(),
        ..FleetPlan::default()
    };
    let mut creates = Vec::new();
    for table_id in input.tables {
        creates.extend(plan_members(input, table_id, &mut plan));
    }
    plan.own_missing = plan.missing.iter().any(|m| m.instance_id == input.self_id);
    if plan.own_missing {
        // This host's own route first, then the others in a stable order.
        creates.sort_by(|a, b| {
            (
                a.next_hop_id != input.self_id,
                &a.next_hop_id,
                &a.route_table_id,
            )
                .cmp(&(
                    b.next_hop_id != input.self_id,
                    &b.next_hop_id,
                    &b.route_table_id,
                ))
        });
        plan.create = creates;
    } else {
        // Replacements only serve creates; without creates, a released next hop's route waits
        // for its grace period like any other stale route.
        plan.replace.clear();
    }
    for table_id in input.tables {
        plan_stale(input, table_id, &mut plan);
    }
    plan_off_path(input, &mut plan);
    plan
}
