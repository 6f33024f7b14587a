//! Fleet mode's cloud facts (`[fleet] tag` set): the cluster's members, this instance and the
//! instances crossdock routes point at, and the permissions of the batch route writes.
//!
//! Why a module of its own: fleet mode adds three API actions and two instance listings to what
//! doctor asks, none of which per-host mode needs. Keeping them here leaves the per-host gathering
//! ([`crate::gather`]) as it was, apart from one call, and nothing here runs unless the tag is set.
//!
//! Nothing here writes. The instance listings are reads. `CreateRouteEntries` and
//! `DeleteRouteEntries` have no dry run (the SDK sends none), so their permissions are probed the
//! way an API checks a call: RAM first, the request after. The create names a next hop that does not
//! exist and a destination inside the reserved 100.64.0.0/10, the delete names an entry id that
//! does not exist; the VPC refuses both after the permission check, and a refusal past that point
//! counts as allowed ([`crate::gather::permission_from`]). A create the VPC accepted anyway is
//! reported with the entry to delete, never deleted by doctor.

use crate::facts::{Fact, PermissionFact, ProbeMethod, Unavailable};
use crate::gather::{cloud_unavailable, permission_from};
use crossdock_alibaba::{
    Client, Identity, Instance, InstanceQuery, NewRoute, RouteEntry, RouteToDelete, Tag,
};
use crossdock_config::Config;
use std::collections::BTreeSet;

/// The next hop the `CreateRouteEntries` probe names: no instance has this id.
pub const PROBE_NEXT_HOP: &str = "i-crossdock-doctor-probe";
/// The destination of the `CreateRouteEntries` probe: inside 100.64.0.0/10, which the VPC refuses.
pub const PROBE_DESTINATION: &str = "100.64.0.0/24";
/// The entry the `DeleteRouteEntries` probe names: no entry has this id.
pub const PROBE_ENTRY_ID: &str = "rte-crossdock-doctor-probe";

/// What fleet mode looked at in the cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetFacts {
    /// ECS `DescribeInstances` by instance id, without a tag filter: this instance, then the
    /// instances in `asked`.
    pub by_id: Fact<Vec<Instance>>,
    /// Besides this instance, the ids asked for in `by_id`: next hops of crossdock routes that are
    /// no members (empty when the members could not be listed).
    pub asked: Vec<String>,
    /// ECS `DescribeInstances` by the cluster tag in this VPC: the members, any status.
    pub members: Fact<Vec<Instance>>,
}

impl FleetFacts {
    /// This instance as `by_id` shows it.
    pub fn this_instance(&self, instance_id: &str) -> Option<&Instance> {
        self.by_id
            .as_ref()
            .ok()?
            .iter()
            .find(|i| i.instance_id == instance_id)
    }
}

/// The cluster tag as the API takes it.
pub fn api_tag(cfg: &Config) -> Option<Tag> {
    cfg.fleet.tag.as_ref().map(|t| Tag {
        key: t.key.clone(),
        value: t.value.clone(),
    })
}

/// Next hops of crossdock routes (marked with `route_name`) that are not among `members`.
pub fn non_member_hops(
    routes: &[RouteEntry],
    members: &[Instance],
    route_name: &str,
) -> BTreeSet<String> {
    let ids: BTreeSet<&str> = members.iter().map(|m| m.instance_id.as_str()).collect();
    routes
        .iter()
        .filter_map(|e| crossdock_routes::fleet_plan::crossdock_hop(e, route_name))
        .filter(|hop| !ids.contains(hop))
        .map(str::to_string)
        .collect()
}

/// Gathers fleet mode's facts and the permissions of the actions only fleet mode calls. `None` and
/// no permissions when fleet mode is off.
pub async fn gather(
    client: &Client,
    cfg: &Config,
    id: &Identity,
    tables: &Fact<Vec<String>>,
    routes: &Fact<Vec<RouteEntry>>,
) -> (Option<FleetFacts>, Vec<PermissionFact>) {
    let Some(tag) = api_tag(cfg) else {
        return (None, Vec::new());
    };
    let listed = client
        .describe_instances(&InstanceQuery {
            vpc_id: Some(id.vpc_id.clone()),
            tag: Some(tag),
            instance_ids: Vec::new(),
        })
        .await;
    let asked: Vec<String> = match (&listed, routes) {
        (Ok(m), Ok(r)) => non_member_hops(r, m, &cfg.cloud.route_name)
            .into_iter()
            .filter(|h| h != &id.instance_id)
            .collect(),
        _ => Vec::new(),
    };
    let by_id = client
        .describe_instances(&InstanceQuery {
            instance_ids: std::iter::once(id.instance_id.clone())
                .chain(asked.iter().cloned())
                .collect(),
            ..InstanceQuery::default()
        })
        .await;
    let table = tables.as_ref().ok().and_then(|t| t.first());
    let permissions = vec![
        PermissionFact {
            action: "DescribeInstances".into(),
            method: ProbeMethod::Read,
            result: permission_from(&by_id),
        },
        PermissionFact {
            action: "CreateRouteEntries".into(),
            method: ProbeMethod::UnknownTarget,
            result: probe_create(client, table).await,
        },
        PermissionFact {
            action: "DeleteRouteEntries".into(),
            method: ProbeMethod::UnknownTarget,
            result: probe_delete(client, table).await,
        },
    ];
    let facts = FleetFacts {
        by_id: by_id.map_err(|e| cloud_unavailable(&e)),
        asked,
        members: listed.map_err(|e| cloud_unavailable(&e)),
    };
    (Some(facts), permissions)
}

fn no_table() -> Unavailable {
    Unavailable::new("not probed: no route table known", "see cloud.route-table")
}

/// `CreateRouteEntries` of one entry the VPC must refuse after the permission check.
async fn probe_create(client: &Client, table: Option<&String>) -> Fact<()> {
    let Some(table) = table else {
        return Err(no_table());
    };
    let probe = NewRoute {
        route_table_id: table.clone(),
        destination_cidr_block: PROBE_DESTINATION.into(),
        next_hop_id: PROBE_NEXT_HOP.into(),
        name: "crossdock-doctor-probe".into(),
        description: "crossdock doctor permission probe (must be refused)".into(),
    };
    let r = client.create_route_entries_once(&[probe]).await;
    if let Ok(b) = &r {
        if !b.route_entry_ids.is_empty() || b.success_count > 0 {
            return Err(Unavailable::new(
                format!(
                    "the probe was accepted: {table} created {} for {PROBE_DESTINATION} via {PROBE_NEXT_HOP}, which the VPC should refuse",
                    b.route_entry_ids.join(", ")
                ),
                format!(
                    "delete the probe's entry: aliyun vpc DeleteRouteEntry --RouteEntryId {}; and report this (the API accepted a next hop that does not exist)",
                    b.route_entry_ids.first().map_or("<id>", String::as_str)
                ),
            ));
        }
    }
    permission_from(&r)
}

/// `DeleteRouteEntries` of an entry id that does not exist: nothing can be deleted.
async fn probe_delete(client: &Client, table: Option<&String>) -> Fact<()> {
    let Some(table) = table else {
        return Err(no_table());
    };
    let probe = RouteToDelete::ById {
        route_table_id: table.clone(),
        route_entry_id: PROBE_ENTRY_ID.into(),
    };
    permission_from(&client.delete_route_entries_once(&[probe]).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossdock_alibaba::{InstanceStatus, NextHop};

    fn inst(id: &str) -> Instance {
        Instance {
            instance_id: id.into(),
            hostname: id.into(),
            status: InstanceStatus::Running,
            vpc_id: "vpc-1".into(),
            vswitch_id: "vsw-1".into(),
            private_ip: None,
            eni_id: None,
            tags: vec![],
        }
    }

    fn entry(hop: &str, name: &str, desc: &str) -> RouteEntry {
        RouteEntry {
            route_entry_id: format!("rte-{hop}"),
            route_table_id: "vtb-1".into(),
            destination_cidr_block: "10.0.0.0/24".into(),
            name: name.into(),
            description: desc.into(),
            entry_type: "Custom".into(),
            status: "Available".into(),
            next_hops: vec![NextHop {
                next_hop_type: "Instance".into(),
                next_hop_id: hop.into(),
            }],
        }
    }

    #[test]
    fn only_marked_routes_of_non_members_are_asked_about() {
        let routes = vec![
            entry("i-a", "crossdock", "crossdock:i-a"),
            entry("i-gone", "crossdock", "crossdock:i-gone"),
            entry("i-user", "", ""),
            entry("i-other-tool", "crossdock", "someone else's"),
            entry("i-renamed", "kube", "crossdock:i-renamed"),
        ];
        let hops = non_member_hops(&routes, &[inst("i-a")], "crossdock");
        assert_eq!(hops.into_iter().collect::<Vec<_>>(), vec!["i-gone"]);
    }
}
