//! Fleet mode's checks against canned facts: a healthy fleet member where everything is `ok`, then
//! one cause at a time, asserting that exactly that check changes (plus the checks that depend on
//! it, held back naming it), with evidence and a fix. Per-host mode shows them as one skip.
//!
//! The member is 192.168.1.11 in VPC 192.168.0.0/16, cluster 10.0.0.0/8 at /24: its derived subnet
//! is 10.1.11.0/24 (offset 267 in the VPC CIDR). Its peer 192.168.1.12 gets 10.1.12.0/24.

use super::*;
use crate::checks::tests::{cloud, dependents, get, healthy, route, run, with_crossdock};
use crate::facts::*;
use crate::model::{Check, Status};
use crossdock_alibaba::{Instance, InstanceStatus, Tag};
use crossdock_routes::plan::NetworkCidrs;

const D28_PLAIN: &str = include_str!("../tests/data/docker28-plain.iptables-save");

const FLEET_CONFIG: &str = r#"
cluster_cidrs = ["10.0.0.0/8"]
[cloud]
provider = "alibaba"
[subnet]
mode = "derived"
[fleet]
tag = "crossdock-cluster=prod"
release_grace_secs = 300
"#;

const MINE: &str = "10.1.11.0/24";

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn tag(key: &str, value: &str) -> Tag {
    Tag {
        key: key.into(),
        value: value.into(),
    }
}

fn instance(id: &str, addr: &str, status: InstanceStatus, tags: Vec<Tag>) -> Instance {
    Instance {
        instance_id: id.into(),
        hostname: id.trim_start_matches("i-").into(),
        status,
        vpc_id: "vpc-1".into(),
        vswitch_id: "vsw-1".into(),
        private_ip: addr.parse().ok(),
        eni_id: None,
        tags,
    }
}

fn member(id: &str, addr: &str, status: InstanceStatus) -> Instance {
    instance(id, addr, status, vec![tag("crossdock-cluster", "prod")])
}

fn marked(id: &str, cidr: &str, hop: &str) -> crossdock_alibaba::RouteEntry {
    route(
        id,
        cidr,
        hop,
        "crossdock",
        &format!("crossdock:{hop}"),
        "Available",
    )
}

/// The per-host healthy host turned into a healthy fleet member: fleet configuration, Docker
/// serving the derived subnet (rules and route for it), both members' routes in place, the fleet
/// permissions allowed.
fn fleet_healthy() -> Facts {
    let mut f = healthy();
    f.config.config = crossdock_config::parse(FLEET_CONFIG);
    if let Ok(d) = &mut f.docker {
        if let Ok(n) = &mut d.network {
            n.subnet = Some(net(MINE));
            n.gateway = Some(ip("10.1.11.1"));
            n.containers = vec![ip("10.1.11.2")];
        }
    }
    f.host.iptables = Ok(with_crossdock(D28_PLAIN, MINE, "docker0"));
    if let AgentState::Running(a) = &mut f.agent {
        a.subnet = Some(MINE.into());
    }
    let c = cloud(&mut f);
    if let Ok(r) = &mut c.routes {
        r.retain(|e| e.entry_type == "System");
        r.push(marked("rte-me", MINE, "i-me"));
        r.push(marked("rte-peer", "10.1.12.0/24", "i-peer"));
    }
    c.permissions
        .extend(FLEET_ACTIONS.iter().map(|(_, a)| PermissionFact {
            action: a.to_string(),
            method: if *a == "DescribeInstances" {
                ProbeMethod::Read
            } else {
                ProbeMethod::UnknownTarget
            },
            result: Ok(()),
        }));
    c.fleet = Some(FleetFacts {
        by_id: Ok(vec![member(
            "i-me",
            "192.168.1.11",
            InstanceStatus::Running,
        )]),
        asked: vec![],
        members: Ok(vec![
            member("i-me", "192.168.1.11", InstanceStatus::Running),
            member("i-peer", "192.168.1.12", InstanceStatus::Running),
        ]),
    });
    f
}

fn fleet(f: &mut Facts) -> &mut FleetFacts {
    cloud(f).fleet.as_mut().unwrap()
}

fn add_route(f: &mut Facts, e: crossdock_alibaba::RouteEntry) {
    if let Ok(r) = &mut cloud(f).routes {
        r.push(e);
    }
}

fn denied(action: &str) -> Unavailable {
    Unavailable::new(
        format!("ECS {action}: Forbidden.RAM (User not authorized to operate on the specified resource)"),
        format!("the RAM policy of these credentials does not allow ecs:{action}: add it to the policy of the instance RAM role"),
    )
}

/// Runs the checks on `f` and asserts that, compared with the healthy fleet member, `id` has
/// `status` (evidence containing `evidence`, a fix for warn/fail), every other changed check is one
/// of `id`'s dependents held back naming it, and nothing else moved. Returns the check.
fn only(f: &Facts, id: &str, status: Status, evidence: &str) -> Check {
    let base = run(&fleet_healthy());
    let now = run(f);
    let c = get(&now, id).clone();
    assert_eq!(c.status, status, "{id}: {c:#?}");
    assert!(
        c.evidence.contains(evidence),
        "{id} evidence should mention `{evidence}`: {}",
        c.evidence
    );
    if matches!(status, Status::Warn | Status::Fail) {
        assert!(
            c.fix.as_deref().is_some_and(|f| !f.is_empty()),
            "{id} needs a fix text"
        );
    }
    let deps = dependents(id);
    for (b, n) in base.iter().zip(&now) {
        if n.id == id || b.status == n.status {
            continue;
        }
        assert!(
            deps.contains(&n.id),
            "{} changed {:?} -> {:?} but does not depend on {id}: {}",
            n.id,
            b.status,
            n.status,
            n.evidence
        );
        if status == Status::Fail {
            assert_eq!(n.status, Status::Skip, "{}", n.id);
            assert_eq!(n.blocked_by.as_deref(), Some(id), "{}", n.id);
        }
    }
    c
}

fn fleet_ids() -> Vec<&'static str> {
    defs().iter().map(|d| d.id).collect()
}

#[test]
fn a_healthy_fleet_member_is_all_ok() {
    let checks = run(&fleet_healthy());
    let not_ok: Vec<String> = checks
        .iter()
        .filter(|c| c.status != Status::Ok && !c.id.starts_with("names."))
        .map(|c| format!("{} {:?}: {}", c.id, c.status, c.evidence))
        .collect();
    assert_eq!(not_ok.len(), 1, "only DeleteRouteEntry's skip: {not_ok:#?}");
    assert!(not_ok[0].starts_with("cloud.permission.DeleteRouteEntry Skip"));
    let mode = get(&checks, "fleet.mode");
    assert!(
        mode.evidence.contains("tagged crossdock-cluster=prod")
            && mode.evidence.contains("/24 blocks of 10.0.0.0/8")
            && mode.evidence.contains("the VPC CIDR 192.168.0.0/16"),
        "{}",
        mode.evidence
    );
    assert!(get(&checks, "fleet.tag")
        .evidence
        .contains("i-me (me, Running, 192.168.1.11) carries crossdock-cluster=prod"));
    let mapping = &get(&checks, "fleet.mapping").evidence;
    assert!(
        mapping.contains("192.168.1.11 -> 10.1.11.0/24") && mapping.contains("served by Docker"),
        "{mapping}"
    );
    let members = &get(&checks, "fleet.members").evidence;
    assert!(
        members.contains("2 member(s) tagged crossdock-cluster=prod, 2 running")
            && members.contains("2 in place, 0 missing")
            && members.contains("no crossdock route points at a non-member"),
        "{members}"
    );
    for (id, _) in FLEET_ACTIONS {
        assert_eq!(get(&checks, id).status, Status::Ok, "{id}");
    }
    assert!(get(&checks, "cloud.permission.CreateRouteEntries")
        .evidence
        .contains("does not exist"));
    assert!(get(&checks, "cloud.route-quota")
        .evidence
        .contains("vtb-1: 2 of 200 custom entries, 0 member route(s) to add"));
}

#[test]
fn per_host_mode_shows_the_fleet_checks_as_one_skip() {
    let checks = run(&healthy());
    let mode = get(&checks, "fleet.mode");
    assert_eq!(mode.status, Status::Skip);
    assert_eq!(
        mode.evidence,
        "fleet.tag is empty: per-host mode (this host registers its own route only)"
    );
    for id in fleet_ids().into_iter().filter(|id| *id != "fleet.mode") {
        let c = get(&checks, id);
        assert_eq!(c.status, Status::Skip, "{id}");
        assert_eq!(c.skipped_by.as_deref(), Some("fleet.mode"), "{id}");
        assert_eq!(c.blocked_by, None, "{id}");
    }
    assert_eq!(crate::model::Summary::of(&checks).exit_code(), 0);
    // In the table: one skip line, the others named on the line under it.
    let report = crate::render::Report::new(checks, None);
    let text = crate::render::table(&report, false, 0);
    let fleet_lines: Vec<&str> = text.lines().filter(|l| l.contains("fleet.")).collect();
    assert_eq!(fleet_lines.len(), 2, "{text}");
    assert!(fleet_lines[0].starts_with("skip") && fleet_lines[0].contains("per-host mode"));
    for id in ["fleet.tag", "fleet.mapping", "fleet.members"] {
        assert!(fleet_lines[1].contains(id), "{id} missing: {text}");
    }
}

#[test]
fn untagged_or_mistagged_instance() {
    let mut f = fleet_healthy();
    fleet(&mut f).by_id = Ok(vec![instance(
        "i-me",
        "192.168.1.11",
        InstanceStatus::Running,
        vec![tag("team", "web")],
    )]);
    let c = only(
        &f,
        "fleet.tag",
        Status::Fail,
        "has tags team=web but not crossdock-cluster=prod",
    );
    assert!(c.evidence.contains("no member"), "{}", c.evidence);
    let fix = c.fix.unwrap();
    assert!(
        fix.starts_with("tag the instance / launch template with crossdock-cluster=prod")
            && fix.contains("aliyun ecs TagResources --RegionId cn-hangzhou --ResourceType instance --ResourceId.1 i-me --Tag.1.Key crossdock-cluster --Tag.1.Value prod")
            && fix.contains("launch template or scaling configuration"),
        "{fix}"
    );
    assert_eq!(
        get(&run(&f), "fleet.members").blocked_by.as_deref(),
        Some("fleet.tag")
    );

    let mut f = fleet_healthy();
    fleet(&mut f).by_id = Ok(vec![instance(
        "i-me",
        "192.168.1.11",
        InstanceStatus::Running,
        vec![tag("crossdock-cluster", "staging")],
    )]);
    only(
        &f,
        "fleet.tag",
        Status::Fail,
        "carries crossdock-cluster=staging instead of crossdock-cluster=prod",
    );

    let mut f = fleet_healthy();
    fleet(&mut f).by_id = Ok(vec![instance(
        "i-me",
        "192.168.1.11",
        InstanceStatus::Running,
        vec![],
    )]);
    only(&f, "fleet.tag", Status::Fail, "has no tags");

    // An answer without this instance: wrong identity, not a missing tag.
    let mut f = fleet_healthy();
    fleet(&mut f).by_id = Ok(vec![]);
    let c = only(&f, "fleet.tag", Status::Fail, "listed no such instance");
    assert!(c.fix.unwrap().contains("cloud.instance_id"));
}

#[test]
fn describe_instances_denied_fails_the_tag_with_the_permission_fix() {
    let mut f = fleet_healthy();
    fleet(&mut f).by_id = Err(denied("DescribeInstances"));
    fleet(&mut f).members = Err(denied("DescribeInstances"));
    cloud(&mut f)
        .permissions
        .iter_mut()
        .find(|p| p.action == "DescribeInstances")
        .unwrap()
        .result = Err(denied("DescribeInstances"));
    let base = run(&fleet_healthy());
    let now = run(&f);
    for id in ["fleet.tag", "cloud.permission.DescribeInstances"] {
        let c = get(&now, id);
        assert_eq!(c.status, Status::Fail, "{id}: {c:#?}");
        assert!(c.evidence.contains("Forbidden.RAM"), "{id}: {}", c.evidence);
        assert!(
            c.fix.as_deref().unwrap().contains("ecs:DescribeInstances"),
            "{id}"
        );
    }
    let members = get(&now, "fleet.members");
    assert_eq!(members.blocked_by.as_deref(), Some("fleet.tag"));
    let moved: Vec<&str> = base
        .iter()
        .zip(&now)
        .filter(|(b, n)| b.status != n.status)
        .map(|(_, n)| n.id.as_str())
        .collect();
    assert_eq!(
        moved,
        vec![
            "cloud.permission.DescribeInstances",
            "fleet.tag",
            "fleet.members"
        ]
    );
}

#[test]
fn batch_write_permission_denied_names_that_action() {
    for action in ["CreateRouteEntries", "DeleteRouteEntries"] {
        let mut f = fleet_healthy();
        cloud(&mut f)
            .permissions
            .iter_mut()
            .find(|p| p.action == action)
            .unwrap()
            .result = Err(Unavailable::new(
            "Forbidden.RAM: User not authorized to operate on the specified resource",
            format!("grant vpc:{action}"),
        ));
        let id = format!("cloud.permission.{action}");
        let c = only(&f, &id, Status::Fail, "does not exist");
        assert!(c.fix.unwrap().contains(&format!("vpc:{action}")));
    }
}

#[test]
fn docker_serving_another_subnet_than_the_derived_one() {
    // Docker keeps serving 10.1.11.0/24, but this host's private IP now maps to 10.1.12.0/24.
    let mut f = fleet_healthy();
    if let Ok(m) = &mut cloud(&mut f).metadata {
        m.private_ip = "192.168.1.12".into();
    }
    let c = only(
        &f,
        "fleet.mapping",
        Status::Fail,
        "192.168.1.12 -> 10.1.12.0/24",
    );
    assert!(
        c.evidence.contains("Docker serves 10.1.11.0/24"),
        "{}",
        c.evidence
    );
    let fix = c.fix.unwrap();
    assert!(
        fix.contains("run `crossdock init`")
            && fix.contains("\"bip\": \"10.1.12.1/24\"")
            && fix.contains("systemctl restart docker"),
        "{fix}"
    );
}

#[test]
fn mapping_that_cannot_be_built_or_does_not_hold_this_host() {
    // No host ranges configured and no VPC CIDR known.
    let mut f = fleet_healthy();
    if let Ok(c) = &mut cloud(&mut f).cidrs {
        c.vpc.clear();
    }
    let c = only(
        &f,
        "fleet.mapping",
        Status::Fail,
        "subnet.host_ranges: no host range",
    );
    assert!(c.evidence.contains("vpc-cidr-block"), "{}", c.evidence);

    // A 172.16.0.0/12 VPC holds more addresses than 10.0.0.0/8 has /24 subnets.
    let mut f = fleet_healthy();
    cloud(&mut f).cidrs = Ok(NetworkCidrs {
        vpc: vec![net("172.16.0.0/12")],
        vswitches: vec![("vsw-1".into(), net("172.16.1.0/24"))],
    });
    let c = only(
        &f,
        "fleet.mapping",
        Status::Fail,
        "subnet.prefix_len: the host ranges hold 1048576 addresses",
    );
    assert!(c.fix.unwrap().contains("host_ranges"));

    // This host's IP outside the configured host ranges.
    let mut f = fleet_healthy();
    f.config.config = crossdock_config::parse(&FLEET_CONFIG.replace(
        "mode = \"derived\"",
        "mode = \"derived\"\nhost_ranges = [\"192.168.2.0/24\"]",
    ));
    let c = only(
        &f,
        "fleet.mapping",
        Status::Fail,
        "192.168.1.11 is in none of the host ranges",
    );
    assert!(c
        .fix
        .unwrap()
        .contains("add the vSwitch holding 192.168.1.11"));
}

#[test]
fn cluster_range_overlapping_a_vswitch() {
    let mut f = fleet_healthy();
    if let Ok(c) = &mut cloud(&mut f).cidrs {
        c.vswitches.push(("vsw-9".into(), net("10.200.0.0/20")));
    }
    let c = only(
        &f,
        "fleet.mapping",
        Status::Fail,
        "cluster range 10.0.0.0/8 overlaps vSwitch vsw-9 (10.200.0.0/20)",
    );
    assert!(c.fix.unwrap().contains("outside every vSwitch"));
}

#[test]
fn members_routes_missing_or_waiting() {
    // A running member without a route: warned, named, and counted against the quota.
    let mut f = fleet_healthy();
    fleet(&mut f).members.as_mut().unwrap().push(member(
        "i-new",
        "192.168.1.13",
        InstanceStatus::Running,
    ));
    let c = only(
        &f,
        "fleet.members",
        Status::Warn,
        "1 missing (i-new 10.1.13.0/24 in vtb-1)",
    );
    assert!(c.evidence.contains("3 member(s)") && c.evidence.contains("3 running"));
    assert!(c.fix.unwrap().contains("fleet.sweep_interval_secs (60 s)"));
    assert!(get(&run(&f), "cloud.route-quota")
        .evidence
        .contains("2 of 200 custom entries, 1 member route(s) to add"));

    // A stopped member keeps no claim to a new route; a Pending route is in place, not yet Available.
    let mut f = fleet_healthy();
    fleet(&mut f).members.as_mut().unwrap().push(member(
        "i-off",
        "192.168.1.14",
        InstanceStatus::Stopped,
    ));
    if let Ok(r) = &mut cloud(&mut f).routes {
        r.iter_mut()
            .find(|e| e.route_entry_id == "rte-peer")
            .unwrap()
            .status = "Pending".into();
    }
    let c = only(
        &f,
        "fleet.members",
        Status::Ok,
        "3 member(s) tagged crossdock-cluster=prod, 2 running (1 Stopped)",
    );
    assert!(
        c.evidence
            .contains("2 in place (1 not yet Available), 0 missing"),
        "{}",
        c.evidence
    );
}

#[test]
fn routes_of_non_members_released_kept_or_unverified() {
    let mut f = fleet_healthy();
    add_route(&mut f, marked("rte-gone", "10.1.20.0/24", "i-gone"));
    add_route(&mut f, marked("rte-off", "10.1.21.0/24", "i-untagged"));
    // Someone's own route to an instance is never crossdock's business.
    add_route(
        &mut f,
        route("rte-user", "10.1.22.0/24", "i-vpn", "", "", "Available"),
    );
    let ff = fleet(&mut f);
    ff.asked = vec!["i-gone".into(), "i-untagged".into()];
    ff.by_id = Ok(vec![
        member("i-me", "192.168.1.11", InstanceStatus::Running),
        instance(
            "i-untagged",
            "192.168.1.30",
            InstanceStatus::Stopped,
            vec![],
        ),
    ]);
    let c = only(
        &f,
        "fleet.members",
        Status::Ok,
        "2 crossdock route(s) point at 2 non-member instance(s)",
    );
    assert!(
        c.evidence.contains(
            "1 released (i-gone): its routes are stale, the agents delete them 300 s after the release"
        ) && c
            .evidence
            .contains("1 still exist, stopped or untagged (i-untagged): their routes are kept"),
        "{}",
        c.evidence
    );

    // A listing by id that does not show this host proves nothing: not verified.
    fleet(&mut f).by_id = Ok(vec![]);
    let checks = run(&f);
    let c = get(&checks, "fleet.members");
    assert_eq!(c.status, Status::Skip, "held back by fleet.tag");
    assert_eq!(c.blocked_by.as_deref(), Some("fleet.tag"));
    let v = members_view(&f).ok().unwrap();
    assert!(v.released.is_empty() && v.existing.is_empty());
    assert!(
        stale_line(&v, 300).contains("2 not verified"),
        "{}",
        stale_line(&v, 300)
    );
}

#[test]
fn members_destination_held_by_another_route_or_unmappable() {
    let mut f = fleet_healthy();
    fleet(&mut f).members.as_mut().unwrap().push(member(
        "i-new",
        "192.168.1.13",
        InstanceStatus::Running,
    ));
    add_route(
        &mut f,
        route("rte-vpn", "10.1.13.0/24", "i-vpn", "", "", "Available"),
    );
    let c = only(
        &f,
        "fleet.members",
        Status::Warn,
        "10.1.13.0/24 of i-new held by rte-vpn (Instance i-vpn)",
    );
    assert!(c
        .fix
        .unwrap()
        .contains("never replaces a route it does not own"));

    // A member whose IP lies outside the host ranges (another VPC range) has no computable subnet.
    let mut f = fleet_healthy();
    fleet(&mut f).members.as_mut().unwrap().push(member(
        "i-far",
        "172.16.0.5",
        InstanceStatus::Running,
    ));
    let c = only(&f, "fleet.members", Status::Warn, "cannot be computed");
    assert!(c.evidence.contains("i-far"), "{}", c.evidence);
    assert!(c.fix.unwrap().contains("append the vSwitch CIDR"));
}

#[test]
fn members_listing_failed() {
    let mut f = fleet_healthy();
    fleet(&mut f).members = Err(Unavailable::new(
        "ECS DescribeInstances: ServiceUnavailable (try later)",
        "crossdock retries; if it persists, check the ECS endpoint",
    ));
    only(&f, "fleet.members", Status::Fail, "ServiceUnavailable");
}

#[test]
fn route_quota_headroom_in_fleet_mode() {
    let members_plus_one = |quota: u32| {
        let mut f = fleet_healthy();
        cloud(&mut f).route_quota = quota;
        fleet(&mut f).members.as_mut().unwrap().push(member(
            "i-new",
            "192.168.1.13",
            InstanceStatus::Running,
        ));
        get(&run(&f), "cloud.route-quota").clone()
    };
    // 2 custom entries + 1 member's route to add, against the quota.
    let c = members_plus_one(4);
    assert_eq!(c.status, Status::Ok, "75 %: {}", c.evidence);
    let c = members_plus_one(3);
    assert_eq!(c.status, Status::Fail, "{}", c.evidence);
    assert!(c
        .evidence
        .contains("vtb-1 is full (3/3): the next member to start gets no route"));
    let c = members_plus_one(2);
    assert_eq!(c.status, Status::Fail, "{}", c.evidence);
    assert!(c
        .evidence
        .contains("cannot hold the members' routes: 2 custom entries + 1 missing > quota 2"));
    assert!(c.fix.unwrap().contains("Quota Center"));

    // Warn from 80 %: 4 of 5 with every route in place.
    let mut f = fleet_healthy();
    cloud(&mut f).route_quota = 5;
    add_route(
        &mut f,
        route("rte-a", "172.20.0.0/24", "i-vpn", "", "", "Available"),
    );
    add_route(
        &mut f,
        route("rte-b", "172.20.1.0/24", "i-vpn", "", "", "Available"),
    );
    only(
        &f,
        "cloud.route-quota",
        Status::Warn,
        "vtb-1 is at 4/5 (warning from 80 %)",
    );
}

#[test]
fn route_quota_warns_from_80_percent_in_per_host_mode_too() {
    let mut f = healthy();
    add_route(
        &mut f,
        route("rte-a", "172.20.0.0/24", "i-vpn", "", "", "Available"),
    );
    add_route(
        &mut f,
        route("rte-b", "172.20.1.0/24", "i-vpn", "", "", "Available"),
    );
    cloud(&mut f).route_quota = 6;
    assert_eq!(
        get(&run(&f), "cloud.route-quota").status,
        Status::Ok,
        "4 of 6"
    );
    cloud(&mut f).route_quota = 5;
    let c = get(&run(&f), "cloud.route-quota").clone();
    assert_eq!(c.status, Status::Warn, "{}", c.evidence);
    assert!(c.evidence.contains("is at 4/5"));
    // Full with this host's route in it: a warning in per-host mode (this host works).
    cloud(&mut f).route_quota = 4;
    assert_eq!(get(&run(&f), "cloud.route-quota").status, Status::Warn);
}
