//! Fleet mode's checks (`[fleet] tag` set): the tag on this instance, the derived-subnet mapping,
//! the members' routes, and the permissions only fleet mode needs.
//!
//! Why they hang off one root, `fleet.mode`: in per-host mode none of them applies, and six lines
//! saying so would hide the host's real state. `fleet.mode` is skipped with the one reason
//! ("fleet.tag is empty") and everything below it follows it, so a per-host table shows one line.
//!
//! The members' routes are judged by `crossdock_routes::fleet_plan::plan_fleet`, the planner the
//! agents run, fed with what doctor listed: doctor and the agents cannot disagree about which
//! member's route is missing, which destination is held by someone else, or which crossdock route
//! points at a released instance. Doctor knows no grace period, so it reports released instances'
//! routes as waiting and never as due.

use crate::checks::{cloud, my_instance, nets, permission};
use crate::facts::Facts;
use crate::fleet::FleetFacts;
use crate::model::{CheckDef, Outcome};
use crossdock_config::mapping::SubnetMapping;
use crossdock_config::{ClusterTag, Config, ConfigError};
use crossdock_routes::fleet_plan::{
    crossdock_hop, plan_fleet, release_candidates, FleetInput, FleetPlan, Member, ReleaseEvidence,
};
use crossdock_routes::plan::Observed;
use ipnet::Ipv4Net;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// The API actions only fleet mode calls: (check id, action).
pub const FLEET_ACTIONS: &[(&str, &str)] = &[
    ("cloud.permission.DescribeInstances", "DescribeInstances"),
    ("cloud.permission.CreateRouteEntries", "CreateRouteEntries"),
    ("cloud.permission.DeleteRouteEntries", "DeleteRouteEntries"),
];

/// How many entries of a list the evidence names before "and N more".
const SHOWN: usize = 5;

/// Fleet mode's checks, dependencies before dependents (they follow the per-host checks).
pub fn defs() -> Vec<CheckDef<Facts>> {
    let mut defs = vec![CheckDef::new(
        "fleet.mode",
        "fleet mode: cluster membership by an ECS tag, derived subnets",
        &["config", "cloud.metadata"],
        fleet_mode,
    )];
    for (id, action) in FLEET_ACTIONS {
        let action = *action;
        defs.push(CheckDef::new(
            id,
            "permission for an API action fleet mode uses",
            &["fleet.mode", "cloud.credentials"],
            move |f: &Facts| permission(f, action),
        ));
    }
    defs.extend([
        CheckDef::new(
            "fleet.tag",
            "this instance carries the cluster tag",
            &["fleet.mode", "cloud.credentials"],
            fleet_tag,
        ),
        CheckDef::new(
            "fleet.mapping",
            "derived subnet: the mapping, this host's subnet, the vSwitches",
            &["fleet.mode", "docker.network"],
            fleet_mapping,
        ),
        CheckDef::new(
            "fleet.members",
            "the members and their routes",
            &["fleet.tag", "fleet.mapping", "cloud.route-table"],
            fleet_members,
        ),
    ]);
    defs
}

/// The configuration and its cluster tag, when fleet mode is on.
fn fleet_cfg(f: &Facts) -> Option<(&Config, &ClusterTag)> {
    let cfg = f.cfg()?;
    Some((cfg, cfg.fleet.tag.as_ref()?))
}

fn fleet_facts(f: &Facts) -> Result<&FleetFacts, Outcome> {
    cloud(f)?
        .fleet
        .as_ref()
        .ok_or_else(|| Outcome::skip("fleet facts were not gathered"))
}

/// The VPC CIDR from the metadata service (`vpc-cidr-block`), the host range when
/// `subnet.host_ranges` is empty.
fn vpc_cidr(f: &Facts) -> Option<Ipv4Net> {
    cloud(f).ok()?.cidrs.as_ref().ok()?.vpc.first().copied()
}

/// The mapping as the agents build it.
fn mapping(f: &Facts, cfg: &Config) -> Result<SubnetMapping, ConfigError> {
    cfg.subnet_mapping(vpc_cidr(f))
}

fn host_ranges_text(cfg: &Config, vpc: Option<Ipv4Net>) -> String {
    if cfg.subnet.host_ranges.is_empty() {
        match vpc {
            Some(v) => format!("the VPC CIDR {v}"),
            None => "the VPC CIDR (unknown)".into(),
        }
    } else {
        format!("subnet.host_ranges {}", nets(&cfg.subnet.host_ranges))
    }
}

/// `a, b, c and N more`.
pub(crate) fn listed(items: &[String]) -> String {
    let mut s = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        s.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    s
}

// ---------------------------------------------------------------- fleet.mode

fn fleet_mode(f: &Facts) -> Outcome {
    let Some(cfg) = f.cfg() else {
        return Outcome::skip("no configuration");
    };
    let Some(tag) = &cfg.fleet.tag else {
        return Outcome::skip(
            "fleet.tag is empty: per-host mode (this host registers its own route only)",
        );
    };
    Outcome::ok(format!(
        "members: the instances tagged {tag}; subnets: /{} blocks of {} by the private IP's offset in {}; a released member's route is deleted {} s after its release, at most {} per pass",
        cfg.subnet.prefix_len,
        nets(&cfg.cluster_cidrs),
        host_ranges_text(cfg, vpc_cidr(f)),
        cfg.fleet.release_grace_secs,
        cfg.fleet.max_deletes_per_pass
    ))
}

// ---------------------------------------------------------------- fleet.tag

fn tag_fix(tag: &ClusterTag, me: &str, region: &str) -> String {
    format!(
        "tag the instance / launch template with {tag}: aliyun ecs TagResources{region} --ResourceType instance --ResourceId.1 {me} --Tag.1.Key {} --Tag.1.Value {}; for an Auto Scaling group, set the tag in its launch template or scaling configuration so that every new instance carries it",
        tag.key, tag.value
    )
}

/// What an instance without the cluster tag carries instead.
fn tags_instead(tags: &[crossdock_alibaba::Tag], tag: &ClusterTag) -> String {
    match tags.iter().find(|t| t.key == tag.key) {
        Some(t) => format!("carries {}={} instead of {tag}", t.key, t.value),
        None if tags.is_empty() => format!("has no tags, so not {tag}"),
        None => {
            let all: Vec<String> = tags
                .iter()
                .map(|t| format!("{}={}", t.key, t.value))
                .collect();
            format!("has tags {} but not {tag}", listed(&all))
        }
    }
}

fn fleet_tag(f: &Facts) -> Outcome {
    let Some((_, tag)) = fleet_cfg(f) else {
        return Outcome::skip("fleet mode is off");
    };
    let ff = match fleet_facts(f) {
        Ok(x) => x,
        Err(o) => return o,
    };
    let Some(me) = my_instance(f) else {
        return Outcome::skip("instance id unknown");
    };
    let instances = match &ff.by_id {
        Ok(i) => i,
        Err(u) => {
            return Outcome::fail(
                format!("ECS DescribeInstances of {me}: {}", u.message),
                u.fix.clone(),
            )
        }
    };
    let region = cloud(f)
        .ok()
        .and_then(|c| c.metadata.as_ref().ok())
        .map_or(String::new(), |m| format!(" --RegionId {}", m.region_id));
    let Some(i) = instances.iter().find(|i| i.instance_id == me) else {
        return Outcome::fail(
            format!("ECS DescribeInstances by id {me} listed no such instance"),
            "check that cloud.instance_id and cloud.region_id (or the metadata service) name the instance doctor runs on",
        );
    };
    let head = format!(
        "{me} ({}, {}, {})",
        i.hostname,
        i.status,
        i.private_ip
            .map_or("no private IP".into(), |ip| ip.to_string())
    );
    if i.tags
        .iter()
        .any(|t| t.key == tag.key && t.value == tag.value)
    {
        return Outcome::ok(format!("{head} carries {tag}"));
    }
    Outcome::fail(
        format!(
            "{head} {}: it is no member, so the other members do not route to its containers",
            tags_instead(&i.tags, tag)
        ),
        tag_fix(tag, &me, &region),
    )
}

// ---------------------------------------------------------------- fleet.mapping

fn bip(subnet: Ipv4Net) -> String {
    let gw = Ipv4Addr::from(u32::from(subnet.network()) + 1);
    format!("{gw}/{}", subnet.prefix_len())
}

/// Cluster ranges overlapping a vSwitch of the VPC, as evidence lines.
fn vswitch_overlaps(cfg: &Config, vswitches: &[(String, Ipv4Net)]) -> Vec<String> {
    let overlaps = |a: &Ipv4Net, b: &Ipv4Net| a.contains(&b.network()) || b.contains(&a.network());
    cfg.cluster_cidrs
        .iter()
        .flat_map(|c| {
            vswitches
                .iter()
                .filter(move |(_, v)| overlaps(c, v))
                .map(move |(id, v)| format!("cluster range {c} overlaps vSwitch {id} ({v})"))
        })
        .collect()
}

/// This host's derived subnet and how it was derived (`ip -> subnet (...)`), or the failure.
fn derive_own(f: &Facts, cfg: &Config) -> Result<(Ipv4Net, String), Outcome> {
    let c = cloud(f)?;
    let vpc = vpc_cidr(f);
    let m = mapping(f, cfg).map_err(|e| {
        let unknown = if cfg.subnet.host_ranges.is_empty() && vpc.is_none() {
            " (the VPC CIDR could not be read from the metadata service, vpc-cidr-block)"
        } else {
            ""
        };
        Outcome::fail(format!("{}: {}{unknown}", e.field, e.message), e.fix)
    })?;
    let ip = c
        .metadata
        .as_ref()
        .ok()
        .and_then(|m| m.private_ip.parse::<Ipv4Addr>().ok())
        .ok_or_else(|| Outcome::skip("this host's private IP is unknown (see cloud.metadata)"))?;
    let derived = m
        .subnet_for(ip)
        .map_err(|e| Outcome::fail(format!("{}: {}", e.field(), e.message()), e.fix()))?;
    let how = format!(
        "{ip} -> {derived} (/{} blocks of {} by the offset in {})",
        m.prefix_len(),
        nets(m.cluster_ranges()),
        host_ranges_text(cfg, vpc)
    );
    Ok((derived, how))
}

fn fleet_mapping(f: &Facts) -> Outcome {
    let Some((cfg, _)) = fleet_cfg(f) else {
        return Outcome::skip("fleet mode is off");
    };
    let c = match cloud(f) {
        Ok(c) => c,
        Err(o) => return o,
    };
    let (derived, mapped) = match derive_own(f, cfg) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let Some(served) = f.subnet() else {
        return Outcome::skip("no served subnet (see docker.network)");
    };
    if served != derived {
        return Outcome::fail(
            format!("{mapped}, but Docker serves {served}: the other members route {derived} here, so this host's containers are unreachable"),
            format!("run `crossdock init` (writes \"bip\": \"{}\" to /etc/docker/daemon.json), then restart Docker: systemctl restart docker", bip(derived)),
        );
    }
    let vswitches = match &c.cidrs {
        Ok(x) => x,
        Err(u) => {
            return Outcome::ok(format!(
                "{mapped}, served by Docker; vSwitches not checked: {}",
                u.message
            ))
        }
    };
    let hits = vswitch_overlaps(cfg, &vswitches.vswitches);
    if !hits.is_empty() {
        return Outcome::fail(
            format!("{mapped}; {}: members' subnets there cannot be routed (the VPC refuses a route inside a vSwitch)", hits.join("; ")),
            "choose cluster_cidrs outside every vSwitch of the VPC (e.g. 10.0.0.0/8 for a 192.168.0.0/16 VPC), the same on every host, then run `crossdock init` and restart Docker on each",
        );
    }
    Outcome::ok(format!(
        "{mapped}, served by Docker; cluster ranges clear of the VPC's {} vSwitch(es) (from {})",
        vswitches.vswitches.len(),
        c.cidrs_source
    ))
}

// ---------------------------------------------------------------- fleet.members

/// The members and what the agents' planner makes of their routes, from what doctor listed.
pub(crate) struct MembersView {
    pub members: Vec<Member>,
    pub plan: FleetPlan,
    pub tables: Vec<String>,
    /// Next hops of crossdock routes that are no members.
    pub non_members: BTreeSet<String>,
    /// How many crossdock routes point at them.
    pub non_member_routes: usize,
    /// Of those, absent from an instance listing by id that shows this host: released.
    pub released: BTreeSet<String>,
    /// Of those, listed by id: they exist (stopped, untagged); their routes are kept.
    pub existing: BTreeSet<String>,
}

impl MembersView {
    /// Members' routes missing, per table.
    pub fn missing_per_table(&self) -> BTreeMap<&str, usize> {
        let mut out = BTreeMap::new();
        for m in &self.plan.missing {
            *out.entry(m.table_id.as_str()).or_insert(0) += 1;
        }
        out
    }
}

fn members_of(ff: &FleetFacts, m: &SubnetMapping, vpc_id: &str) -> Result<Vec<Member>, Outcome> {
    let instances = ff
        .members
        .as_ref()
        .map_err(|u| Outcome::fail(u.message.clone(), u.fix.clone()))?;
    Ok(instances
        .iter()
        .filter(|i| i.vpc_id.is_empty() || vpc_id.is_empty() || i.vpc_id == vpc_id)
        .map(|i| Member {
            instance_id: i.instance_id.clone(),
            status: i.status.clone(),
            vswitch_id: i.vswitch_id.clone(),
            private_ip: i.private_ip,
            subnet: i.private_ip.and_then(|ip| m.subnet_for(ip).ok()),
        })
        .collect())
}

/// Each table's custom entries, as the agents observe them.
fn observed_of(tables: &[String], routes: &[crossdock_alibaba::RouteEntry]) -> Vec<Observed> {
    tables
        .iter()
        .map(|t| Observed {
            table_id: t.clone(),
            entries: routes
                .iter()
                .filter(|r| &r.route_table_id == t && r.entry_type.eq_ignore_ascii_case("Custom"))
                .cloned()
                .collect(),
        })
        .collect()
}

/// Non-members split into (released, still existing) by the listing by id, which must show this
/// host to prove anything (the agents' rule, `crossdock_routes::gc`); unverified ones are in neither.
fn split_non_members(
    ff: &FleetFacts,
    me: &str,
    non_members: &BTreeSet<String>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    match ff.by_id.as_ref() {
        Ok(listed) if listed.iter().any(|i| i.instance_id == me) => {
            let seen: BTreeSet<&str> = listed.iter().map(|i| i.instance_id.as_str()).collect();
            non_members
                .iter()
                .filter(|h| ff.asked.contains(h))
                .cloned()
                .partition(|h| !seen.contains(h.as_str()))
        }
        _ => (BTreeSet::new(), BTreeSet::new()),
    }
}

/// Everything `fleet.members` (and the quota check, in fleet mode) judges; an outcome when a fact
/// it needs is missing.
pub(crate) fn members_view(f: &Facts) -> Result<MembersView, Outcome> {
    let (cfg, _) = fleet_cfg(f).ok_or_else(|| Outcome::skip("fleet mode is off"))?;
    let c = cloud(f)?;
    let ff = fleet_facts(f)?;
    let m = mapping(f, cfg).map_err(|_| Outcome::skip("no mapping (see fleet.mapping)"))?;
    let me = my_instance(f).ok_or_else(|| Outcome::skip("instance id unknown"))?;
    let vpc_id = c.metadata.as_ref().map_or("", |m| m.vpc_id.as_str());
    let members = members_of(ff, &m, vpc_id)?;
    let tables = c
        .route_tables
        .as_ref()
        .map_err(|_| Outcome::skip("no route table (see cloud.route-table)"))?;
    let routes = c
        .routes
        .as_ref()
        .map_err(|u| Outcome::fail(u.message.clone(), u.fix.clone()))?;
    let observed = observed_of(tables, routes);
    let route_name = &cfg.cloud.route_name;
    let non_members = release_candidates(&members, &observed, route_name);
    let non_member_routes = observed
        .iter()
        .flat_map(|o| &o.entries)
        .filter_map(|e| crossdock_hop(e, route_name))
        .filter(|h| non_members.contains(*h))
        .count();
    let (released, existing) = split_non_members(ff, &me, &non_members);
    let evidence = ReleaseEvidence {
        released: released.clone(),
        due: BTreeSet::new(),
    };
    let plan = plan_fleet(&FleetInput {
        self_id: &me,
        route_name,
        members: &members,
        tables,
        observed: &observed,
        evidence: &evidence,
        max_deletes: cfg.fleet.max_deletes_per_pass as usize,
        // Tables off every member's path are the agents' business over a grace period doctor
        // does not see.
        off_path: &[],
    });
    Ok(MembersView {
        members,
        plan,
        tables: tables.clone(),
        non_members,
        non_member_routes,
        released,
        existing,
    })
}

fn members_line(v: &MembersView, tag: &ClusterTag) -> String {
    let running = v.members.iter().filter(|m| m.wants_route()).count();
    let mut others: BTreeMap<&str, usize> = BTreeMap::new();
    for m in v.members.iter().filter(|m| !m.wants_route()) {
        *others.entry(m.status.as_str()).or_insert(0) += 1;
    }
    let others: Vec<String> = others.iter().map(|(s, n)| format!("{n} {s}")).collect();
    format!(
        "{} member(s) tagged {tag}, {running} running{}",
        v.members.len(),
        if others.is_empty() {
            String::new()
        } else {
            format!(" ({})", others.join(", "))
        }
    )
}

fn routes_line(v: &MembersView) -> String {
    let pending = v
        .plan
        .placed
        .iter()
        .filter(|p| !p.status.eq_ignore_ascii_case("Available"))
        .count();
    let missing: Vec<String> = v
        .plan
        .missing
        .iter()
        .map(|m| format!("{} {} in {}", m.instance_id, m.cidr, m.table_id))
        .collect();
    format!(
        "members' routes in {}: {} in place{}, {} missing{}",
        v.tables.join(", "),
        v.plan.placed.len(),
        if pending > 0 {
            format!(" ({pending} not yet Available)")
        } else {
            String::new()
        },
        missing.len(),
        if missing.is_empty() {
            String::new()
        } else {
            format!(" ({})", listed(&missing))
        }
    )
}

fn stale_line(v: &MembersView, grace: u64) -> String {
    if v.non_members.is_empty() {
        return "no crossdock route points at a non-member".into();
    }
    let ids = |s: &BTreeSet<String>| listed(&s.iter().cloned().collect::<Vec<_>>());
    let unverified = v.non_members.len() - v.released.len() - v.existing.len();
    let mut parts = Vec::new();
    if !v.released.is_empty() {
        parts.push(format!(
            "{} released ({}): its routes are stale, the agents delete them {grace} s after the release",
            v.released.len(),
            ids(&v.released)
        ));
    }
    if !v.existing.is_empty() {
        parts.push(format!(
            "{} still exist, stopped or untagged ({}): their routes are kept",
            v.existing.len(),
            ids(&v.existing)
        ));
    }
    if unverified > 0 {
        parts.push(format!(
            "{unverified} not verified (no listing by id that shows this host)"
        ));
    }
    format!(
        "{} crossdock route(s) point at {} non-member instance(s): {}",
        v.non_member_routes,
        v.non_members.len(),
        parts.join("; ")
    )
}

fn fleet_members(f: &Facts) -> Outcome {
    let Some((cfg, tag)) = fleet_cfg(f) else {
        return Outcome::skip("fleet mode is off");
    };
    let v = match members_view(f) {
        Ok(v) => v,
        Err(o) => return o,
    };
    let evidence = format!(
        "{}; {}; {}",
        members_line(&v, tag),
        routes_line(&v),
        stale_line(&v, cfg.fleet.release_grace_secs)
    );
    if !v.plan.conflicts.is_empty() {
        let held: Vec<String> = v
            .plan
            .conflicts
            .iter()
            .map(|c| {
                format!(
                    "{} of {} held by {} ({})",
                    c.cidr, c.instance_id, c.entry_id, c.holder
                )
            })
            .collect();
        return Outcome::warn(
            format!("{evidence}; destinations held by routes crossdock does not replace: {}", listed(&held)),
            "those members' containers are unreachable: delete the route holding each destination if it is stale (aliyun vpc DeleteRouteEntry --RouteEntryId <id>), or move the member; crossdock never replaces a route it does not own",
        );
    }
    if !v.plan.unmapped.is_empty() {
        return Outcome::warn(
            format!("{evidence}; member(s) whose subnet cannot be computed (no private IP, or outside the host ranges): {}", listed(&v.plan.unmapped)),
            "append the vSwitch CIDR holding their IPs to subnet.host_ranges on every host (append, do not insert: the existing hosts keep their subnets), or remove the cluster tag from instances outside the cluster's vSwitches",
        );
    }
    if !v.plan.missing.is_empty() {
        return Outcome::warn(
            evidence,
            format!(
                "the agents write the members' routes within fleet.sweep_interval_secs ({} s) of a member's start (a fleet booting together: within its boot turns, at most 90 s); if they stay missing, see `crossdock status` on a member (its route condition), cloud.permission.CreateRouteEntries and cloud.route-quota",
                cfg.fleet.sweep_interval_secs
            ),
        );
    }
    Outcome::ok(evidence)
}

#[cfg(test)]
#[path = "fleet_checks_tests.rs"]
mod tests;
