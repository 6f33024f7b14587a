//! Every check against canned facts: a healthy host where everything is `ok`, then one cause broken
//! at a time, asserting that exactly that check changes (plus the checks that depend on it, which
//! are held back as `skip`), with evidence and a fix.

use super::*;
use crate::facts::*;
use crate::iptables::{Ruleset, SavedRule};
use crate::model::{run_checks, validate_defs, Check, Status};
use chrono::{Duration, TimeZone, Utc};
use crossdock_alibaba::{NextHop, RouteEntry};
use crossdock_hostnet::rules::{desired_rules, Position};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

const D28_PLAIN: &str = include_str!("../tests/data/docker28-plain.iptables-save");
const D20_PLAIN: &str = include_str!("../tests/data/docker20-plain.iptables-save");

const CONFIG: &str = r#"
cluster_cidrs = ["10.0.0.0/8"]
[cloud]
provider = "alibaba"
"#;

fn ip(s: &str) -> std::net::Ipv4Addr {
    s.parse().unwrap()
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

/// A real Docker dump with crossdock's desired rules applied the way the agent applies them (chains'
/// content appended, jumps inserted at the top of their parent chains) and FORWARD's policy DROP,
/// as Docker leaves it when it turns forwarding on itself.
///
/// The nat exemption must end the nat table (ACCEPT): a RETURN inside CROSSDOCK-POSTROUTING resumes
/// POSTROUTING and meets Docker's MASQUERADE (shown on the kernel by tests/kernel_agreement.rs).
/// crossdock-hostnet first wrote a RETURN there; the baseline forces the working form so it stays a
/// host where traffic really works whatever that crate renders.
pub fn with_crossdock(dump: &str, subnet: &str, bridge: &str) -> Ruleset {
    let mut rs = Ruleset::parse(dump).unwrap();
    let input = DesiredInput {
        cluster_cidrs: vec![net("10.0.0.0/8")],
        local_subnet: net(subnet),
        bridge: Some(bridge.into()),
        scrape: None,
        names: None,
    };
    for r in desired_rules(&input) {
        let mut args = r.args.clone();
        if r.table == Table::Nat && r.chain == hrules::POSTROUTING_CHAIN {
            if let Some(last) = args.last_mut() {
                *last = "ACCEPT".into();
            }
        }
        let chain = rs
            .tables
            .entry(r.table.as_str().to_string())
            .or_default()
            .chains
            .entry(r.chain.clone())
            .or_default();
        if r.table.is_builtin(&r.chain) && chain.policy.is_none() {
            chain.policy = Some("ACCEPT".into());
        }
        let rule = SavedRule {
            args,
            counters: Some(Default::default()),
        };
        match r.position {
            Position::Top => chain.rules.insert(0, rule),
            Position::Append => chain.rules.push(rule),
        }
    }
    rs.tables
        .get_mut("filter")
        .unwrap()
        .chains
        .get_mut("FORWARD")
        .unwrap()
        .policy = Some("DROP".into());
    rs
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 10, 12, 0, 0).unwrap()
}

pub(crate) fn route(
    id: &str,
    cidr: &str,
    hop: &str,
    name: &str,
    desc: &str,
    status: &str,
) -> RouteEntry {
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

fn ours(status: &str) -> RouteEntry {
    route(
        "rte-me",
        "10.1.0.0/24",
        "i-me",
        "crossdock",
        "crossdock:i-me",
        status,
    )
}

pub(crate) fn healthy() -> Facts {
    let sysctls: BTreeMap<String, Fact<String>> = [
        ("net/ipv4/ip_forward", "1"),
        ("net/ipv4/conf/all/rp_filter", "0"),
        ("net/ipv4/conf/eth0/forwarding", "1"),
        ("net/ipv4/conf/eth0/rp_filter", "2"),
        ("net/ipv4/conf/docker0/forwarding", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Ok(v.to_string())))
    .collect();
    let mut permissions: Vec<PermissionFact> = ACTIONS
        .iter()
        .map(|(_, a, m)| PermissionFact {
            action: a.to_string(),
            method: *m,
            result: Ok(()),
        })
        .collect();
    permissions.retain(|p| p.method != ProbeMethod::NotProbed || p.action == "DeleteRouteEntry");
    Facts {
        now: now(),
        config: ConfigFacts {
            path: PathBuf::from("/etc/crossdock/agent.toml"),
            config: crossdock_config::parse(CONFIG),
        },
        docker: Ok(DockerFacts {
            endpoint: "unix:///var/run/docker.sock".into(),
            version: "28.5.2".into(),
            api_version: "1.51".into(),
            network: Ok(NetworkFacts {
                name: "bridge".into(),
                id: "0123456789abcdef".into(),
                driver: "bridge".into(),
                subnet: Some(net("10.1.0.0/24")),
                gateway: Some(ip("10.1.0.1")),
                bridge: "docker0".into(),
                options: BTreeMap::new(),
                containers: vec![ip("10.1.0.2")],
            }),
        }),
        host: HostFacts {
            sysctls,
            external: Ok(ExternalFacts {
                link: LinkFacts {
                    name: "eth0".into(),
                    mtu: 1500,
                    up: true,
                },
                chosen_by: "holds the default route".into(),
                default_gateway: Some(ip("192.168.1.253")),
            }),
            bridge: Some(Ok(LinkFacts {
                name: "docker0".into(),
                mtu: 1500,
                up: true,
            })),
            peer_route: Some(Ok(RouteLookup {
                destination: ip("10.0.0.1"),
                dev: "eth0".into(),
                gateway: Some(ip("192.168.1.253")),
                src: Some(ip("192.168.1.11")),
                kind: "unicast".into(),
            })),
            iptables: Ok(with_crossdock(D28_PLAIN, "10.1.0.0/24", "docker0")),
        },
        agent: AgentState::Running(AgentFacts {
            socket: PathBuf::from("/run/crossdock/agent.sock"),
            version: Some("0.1.0".into()),
            pid: Some(42),
            subnet: Some("10.1.0.0/24".into()),
            conditions: [
                "docker",
                "subnet",
                "forwarding",
                "firewall",
                "route",
                "credentials",
            ]
            .into_iter()
            .map(|k| {
                (
                    k.to_string(),
                    AgentCondition {
                        state: crossdock_status::State::Ready,
                        reason: None,
                        message: None,
                    },
                )
            })
            .collect(),
            raw: serde_json::json!({}),
        }),
        cloud: Some(CloudFacts {
            metadata: Ok(MetadataFacts {
                url: "http://100.100.100.200".into(),
                token_mode: "token".into(),
                instance_id: "i-me".into(),
                region_id: "cn-hangzhou".into(),
                vpc_id: "vpc-1".into(),
                vswitch_id: "vsw-1".into(),
                private_ip: "192.168.1.11".into(),
                eni_id: "eni-me".into(),
            }),
            credentials: Ok(CredentialFacts {
                source: "ram role crossdock-node".into(),
                access_key_id: "STS.****abcd".into(),
                expiration: Some(now() + Duration::hours(6)),
                accepted: Ok(()),
            }),
            permissions,
            route_tables: Ok(vec!["vtb-1".into()]),
            routes: Ok(vec![
                ours("Available"),
                route(
                    "rte-peer",
                    "10.2.0.0/24",
                    "i-peer",
                    "crossdock",
                    "crossdock:i-peer",
                    "Available",
                ),
                RouteEntry {
                    entry_type: "System".into(),
                    next_hops: vec![],
                    ..route("rte-sys", "192.168.1.0/24", "", "", "", "Available")
                },
            ]),
            cidrs: Ok(NetworkCidrs {
                vpc: vec![net("192.168.0.0/16")],
                vswitches: vec![("vsw-1".into(), net("192.168.1.0/24"))],
            }),
            cidrs_source: "the API".into(),
            source_dest_check: Ok(false),
            route_quota: 200,
            fleet: None,
            // one vSwitch, one table: the path is the table cloud.route judges
            table_paths: Some(crate::table_checks::TableFacts {
                bound: [("vsw-1".to_string(), "vtb-1".to_string())].into(),
                on_path: vec!["vtb-1".into()],
                basis: "per-host mode: every table bound to a vSwitch of the VPC".into(),
                entries: Ok(vec![]),
            }),
        }),
        names: None,
    }
}

pub(crate) fn run(f: &Facts) -> Vec<Check> {
    run_checks(&all(), f)
}

pub(crate) fn get<'a>(checks: &'a [Check], id: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id}"))
}

/// Every check that depends on `id`, directly or not.
pub(crate) fn dependents(id: &str) -> BTreeSet<String> {
    let defs = all();
    let mut out: BTreeSet<String> = BTreeSet::new();
    let mut frontier = vec![id.to_string()];
    while let Some(cur) = frontier.pop() {
        for d in &defs {
            if d.depends_on.contains(&cur.as_str()) && out.insert(d.id.to_string()) {
                frontier.push(d.id.to_string());
            }
        }
    }
    out
}

/// Runs the checks on `f` and asserts that, compared with the healthy baseline, `id` has `status`
/// (with evidence containing `evidence` and a fix), every other changed check is one of `id`'s
/// dependents held back naming `id`, and nothing else moved. Returns the check.
fn only(f: &Facts, id: &str, status: Status, evidence: &str) -> Check {
    let base = run(&healthy());
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

pub(crate) fn cloud(f: &mut Facts) -> &mut CloudFacts {
    f.cloud.as_mut().unwrap()
}

fn rules(f: &mut Facts) -> &mut Ruleset {
    f.host.iptables.as_mut().unwrap()
}

fn chain<'a>(f: &'a mut Facts, table: &str, chain: &str) -> &'a mut crate::iptables::Chain {
    rules(f)
        .tables
        .get_mut(table)
        .unwrap()
        .chains
        .get_mut(chain)
        .unwrap()
}

fn rule(text: &str) -> SavedRule {
    SavedRule {
        args: crossdock_hostnet::split_save_line(text),
        counters: None,
    }
}

fn set_sysctl(f: &mut Facts, path: &str, v: &str) {
    f.host.sysctls.insert(path.into(), Ok(v.into()));
}

#[test]
fn definitions_are_wired_dependencies_first() {
    assert_eq!(validate_defs(&all()), Vec::<String>::new());
}

#[test]
fn healthy_host_is_all_ok() {
    let checks = run(&healthy());
    // Per-host mode: the fleet checks follow `fleet.mode`, skipped once with its reason; `[names]`
    // is off (names_checks_tests.rs has it on).
    let not_ok: Vec<String> = checks
        .iter()
        .filter(|c| c.status != Status::Ok && c.skipped_by.as_deref() != Some("fleet.mode"))
        .filter(|c| !c.id.starts_with("names."))
        .map(|c| format!("{} {:?}: {}", c.id, c.status, c.evidence))
        .collect();
    // DeleteRouteEntry has no dry run: reported as not probed, by design.
    assert_eq!(
        not_ok.len(),
        2,
        "everything but DeleteRouteEntry and fleet mode should be ok: {not_ok:#?}"
    );
    assert!(not_ok[0].starts_with("cloud.permission.DeleteRouteEntry Skip"));
    assert!(not_ok[1].starts_with("fleet.mode Skip: fleet.tag is empty: per-host mode"));
    assert_eq!(crate::model::Summary::of(&checks).exit_code(), 0);
}

#[test]
fn config_error_holds_back_everything_that_needs_it() {
    let mut f = healthy();
    f.config.config = crossdock_config::parse("cluster_cidrs = []");
    let c = only(&f, "config", Status::Fail, "cluster_cidrs");
    assert!(c.fix.unwrap().contains("cluster_cidrs"));
}

#[test]
fn docker_unreachable() {
    let mut f = healthy();
    f.docker = Err(Unavailable::new(
        "cannot connect to /var/run/docker.sock: No such file",
        "start Docker",
    ));
    only(&f, "docker.reachable", Status::Fail, "cannot connect");
}

#[test]
fn docker_too_old() {
    let mut f = healthy();
    f.docker.as_mut().unwrap().version = "17.03.2-ce".into();
    only(&f, "docker.version", Status::Fail, "DOCKER-USER");
}

#[test]
fn docker_network_missing_or_without_subnet_or_unprotected() {
    let mut f = healthy();
    f.docker.as_mut().unwrap().network =
        Err(Unavailable::new("network crossdock not found", "create it"));
    only(&f, "docker.network", Status::Fail, "not found");

    let mut f = healthy();
    if let Ok(n) = &mut f.docker.as_mut().unwrap().network {
        n.subnet = None;
    }
    only(&f, "docker.network", Status::Fail, "no IPv4 subnet");

    let mut f = healthy();
    if let Ok(n) = &mut f.docker.as_mut().unwrap().network {
        n.options.insert(
            "com.docker.network.bridge.gateway_mode_ipv4".into(),
            "nat-unprotected".into(),
        );
    }
    only(&f, "docker.network", Status::Warn, "nat-unprotected");
}

#[test]
fn subnet_outside_the_cluster_range() {
    let mut f = healthy();
    f.config.config = crossdock_config::parse(
        "cluster_cidrs = [\"10.0.0.0/8\"]\n[cloud]\nprovider = \"alibaba\"\n",
    );
    if let Ok(c) = &mut f.config.config {
        c.cluster_cidrs = vec![net("10.0.0.0/8"), net("172.16.0.0/12")];
    }
    // Still inside: fine.
    assert_eq!(get(&run(&f), "subnet.cluster-range").status, Status::Ok);
    if let Ok(c) = &mut f.config.config {
        c.cluster_cidrs = vec![net("10.8.0.0/16")];
    }
    let checks = run(&f);
    let c = get(&checks, "subnet.cluster-range");
    assert_eq!(c.status, Status::Fail);
    assert!(c.evidence.contains("outside"), "{}", c.evidence);
}

#[test]
fn external_interface_missing_or_down() {
    let mut f = healthy();
    f.host.external = Err(Unavailable::new(
        "external_interface = \"auto\" but there is no IPv4 default route",
        "add a default route",
    ));
    only(
        &f,
        "host.external-interface",
        Status::Fail,
        "no IPv4 default route",
    );
    let mut f = healthy();
    f.host.external.as_mut().unwrap().link.up = false;
    only(&f, "host.external-interface", Status::Fail, "down");
}

#[test]
fn forwarding_off_names_ip_forward_only() {
    let mut f = healthy();
    // The kernel zeroes every interface's forwarding flag with ip_forward.
    set_sysctl(&mut f, "net/ipv4/ip_forward", "0");
    set_sysctl(&mut f, "net/ipv4/conf/eth0/forwarding", "0");
    set_sysctl(&mut f, "net/ipv4/conf/docker0/forwarding", "0");
    let c = only(&f, "forwarding.ip-forward", Status::Fail, "ip_forward = 0");
    assert!(c.fix.unwrap().contains("sysctl -w net.ipv4.ip_forward=1"));
}

#[test]
fn forwarding_off_on_one_interface() {
    let mut f = healthy();
    set_sysctl(&mut f, "net/ipv4/conf/eth0/forwarding", "0");
    let c = only(
        &f,
        "forwarding.external",
        Status::Fail,
        "eth0.forwarding = 0",
    );
    assert!(c
        .fix
        .unwrap()
        .contains("sysctl -w net.ipv4.conf.eth0.forwarding=1"));
    let mut f = healthy();
    set_sysctl(&mut f, "net/ipv4/conf/docker0/forwarding", "0");
    only(
        &f,
        "forwarding.bridge",
        Status::Fail,
        "docker0.forwarding = 0",
    );
}

#[test]
fn strict_rp_filter_fails_only_when_the_way_back_is_elsewhere() {
    let mut f = healthy();
    set_sysctl(&mut f, "net/ipv4/conf/eth0/rp_filter", "1");
    let c = get(&run(&f), "forwarding.rp-filter").clone();
    assert_eq!(c.status, Status::Ok, "{}", c.evidence);
    assert!(c.evidence.contains("strict, but"));
    f.host.peer_route = Some(Ok(RouteLookup {
        destination: ip("10.0.0.1"),
        dev: "wg0".into(),
        gateway: None,
        src: None,
        kind: "unicast".into(),
    }));
    let c = only(&f, "forwarding.rp-filter", Status::Fail, "dev wg0");
    assert!(c.fix.unwrap().contains("rp_filter=2"));
    // The larger of all and the interface applies.
    let mut f = healthy();
    set_sysctl(&mut f, "net/ipv4/conf/all/rp_filter", "1");
    set_sysctl(&mut f, "net/ipv4/conf/eth0/rp_filter", "0");
    f.host.peer_route = Some(Err(Unavailable::new("Network is unreachable", "x")));
    only(
        &f,
        "forwarding.rp-filter",
        Status::Fail,
        "no route back to the peers",
    );
}

#[test]
fn bridge_mtu_larger_than_the_link_warns() {
    let mut f = healthy();
    if let Some(Ok(b)) = &mut f.host.bridge {
        b.mtu = 9000;
    }
    let c = only(
        &f,
        "mtu.bridge",
        Status::Warn,
        "docker0 MTU 9000, eth0 MTU 1500",
    );
    assert!(c.fix.unwrap().contains("\"mtu\": 1500"));
    let mut f = healthy();
    if let Some(Ok(b)) = &mut f.host.bridge {
        b.mtu = 1450;
    }
    assert_eq!(get(&run(&f), "mtu.bridge").status, Status::Ok);
}

#[test]
fn iptables_unreadable() {
    let mut f = healthy();
    f.host.iptables = Err(Unavailable::new(
        "`iptables-save -c` failed: Permission denied (you must be root)",
        "run doctor as root",
    ));
    only(&f, "firewall.iptables", Status::Fail, "Permission denied");
}

#[test]
fn legacy_tables_beside_nft_warn() {
    let mut f = healthy();
    rules(&mut f).warnings.push(
        "Warning: iptables-legacy tables present, use iptables-legacy-save to see them".into(),
    );
    only(&f, "firewall.iptables", Status::Warn, "iptables-legacy");
}

#[test]
fn crossdock_chain_flushed() {
    let mut f = healthy();
    chain(&mut f, "filter", "CROSSDOCK-FORWARD").rules.clear();
    let c = only(
        &f,
        "firewall.forward-chain",
        Status::Fail,
        "1 of the 1 expected missing",
    );
    assert!(c.fix.unwrap().contains(
        "iptables -t filter -A CROSSDOCK-FORWARD -s 10.0.0.0/8 -d 10.1.0.0/24 -o docker0"
    ));
}

#[test]
fn crossdock_chain_deleted() {
    let mut f = healthy();
    rules(&mut f)
        .tables
        .get_mut("filter")
        .unwrap()
        .chains
        .remove("CROSSDOCK-FORWARD");
    chain(&mut f, "filter", "DOCKER-USER").rules.remove(0);
    let base = run(&healthy());
    let now = run(&f);
    assert_eq!(get(&now, "firewall.forward-chain").status, Status::Fail);
    assert!(get(&now, "firewall.forward-chain")
        .evidence
        .contains("does not exist"));
    // Deleting the chain takes its jump with it: both are named, nothing else.
    assert_eq!(get(&now, "firewall.forward-jump").status, Status::Fail);
    let changed: Vec<&str> = base
        .iter()
        .zip(&now)
        .filter(|(b, n)| b.status != n.status)
        .map(|(_, n)| n.id.as_str())
        .collect();
    assert_eq!(
        changed,
        vec![
            "firewall.forward-chain",
            "firewall.forward-jump",
            "firewall.forward-path"
        ]
    );
}

#[test]
fn jump_from_docker_user_missing_or_displaced() {
    let mut f = healthy();
    chain(&mut f, "filter", "DOCKER-USER").rules.remove(0);
    let c = only(
        &f,
        "firewall.forward-jump",
        Status::Fail,
        "jump from DOCKER-USER to CROSSDOCK-FORWARD is missing",
    );
    assert!(c.evidence.contains("DROP by DOCKER #1"), "{}", c.evidence);
    assert!(c
        .fix
        .unwrap()
        .contains("iptables -t filter -I DOCKER-USER 1 -m comment --comment crossdock:jump -j CROSSDOCK-FORWARD"));

    let mut f = healthy();
    chain(&mut f, "filter", "DOCKER-USER")
        .rules
        .insert(0, rule("-s 192.168.9.0/24 -j DROP"));
    only(&f, "firewall.forward-jump", Status::Warn, "DOCKER-USER #2");

    // Accepted before DOCKER-USER: the jump is not the problem (forward-policy judges the width).
    let mut f = healthy();
    chain(&mut f, "filter", "FORWARD")
        .rules
        .insert(0, rule("-s 10.0.0.0/8 -j ACCEPT"));
    let c = get(&run(&f), "firewall.forward-jump").clone();
    assert_eq!(c.status, Status::Ok, "{}", c.evidence);
    assert!(c.evidence.contains("accepted before it"));
}

#[test]
fn a_drop_ahead_of_crossdocks_accept_fails_the_path() {
    let mut f = healthy();
    chain(&mut f, "filter", "FORWARD")
        .rules
        .insert(0, rule("-s 10.0.0.0/8 -j DROP"));
    let checks = run(&f);
    // The packet never reaches DOCKER-USER: the jump check says so, the path check is held back.
    assert_eq!(get(&checks, "firewall.forward-jump").status, Status::Fail);
    assert!(get(&checks, "firewall.forward-jump")
        .evidence
        .contains("DROP by FORWARD #1"));
    assert_eq!(get(&checks, "firewall.forward-path").status, Status::Skip);

    let mut f = healthy();
    chain(&mut f, "filter", "CROSSDOCK-FORWARD")
        .rules
        .insert(0, rule("-s 10.0.0.0/8 -j DROP"));
    let checks = run(&f);
    assert_eq!(get(&checks, "firewall.forward-chain").status, Status::Warn);
    let p = get(&checks, "firewall.forward-path");
    assert_eq!(p.status, Status::Fail, "{}", p.evidence);
    assert!(
        p.evidence.contains("CROSSDOCK-FORWARD #1"),
        "{}",
        p.evidence
    );
}

#[test]
fn nat_exemption_removed() {
    let mut f = healthy();
    chain(&mut f, "nat", "CROSSDOCK-POSTROUTING").rules.clear();
    let c = only(&f, "firewall.nat-exemption", Status::Fail, "MASQUERADE");
    assert!(c.evidence.contains("this host's address"), "{}", c.evidence);
    assert!(c
        .fix
        .unwrap()
        .contains("iptables -t nat -A CROSSDOCK-POSTROUTING -s 10.1.0.0/24 -d 10.0.0.0/8"));
}

#[test]
fn nat_jump_missing_or_behind_masquerade() {
    let mut f = healthy();
    chain(&mut f, "nat", "POSTROUTING").rules.remove(0);
    only(
        &f,
        "firewall.nat-exemption",
        Status::Fail,
        "jump from POSTROUTING",
    );
    let mut f = healthy();
    let post = chain(&mut f, "nat", "POSTROUTING");
    let jump = post.rules.remove(0);
    post.rules.push(jump);
    only(
        &f,
        "firewall.nat-exemption",
        Status::Fail,
        "behind Docker's MASQUERADE at #1",
    );
}

#[test]
fn a_return_inside_crossdocks_nat_chain_is_masqueraded_anyway() {
    let mut f = healthy();
    for r in &mut chain(&mut f, "nat", "CROSSDOCK-POSTROUTING").rules {
        *r.args.last_mut().unwrap() = "RETURN".into();
    }
    let c = only(
        &f,
        "firewall.nat-exemption",
        Status::Fail,
        "resumes POSTROUTING",
    );
    assert!(c.fix.unwrap().contains("-j ACCEPT"));
}

#[test]
fn docker28_raw_drop_uncovered() {
    let mut f = healthy();
    chain(&mut f, "raw", "PREROUTING").rules.remove(0);
    let c = only(
        &f,
        "firewall.raw-exemption",
        Status::Fail,
        "dies in raw PREROUTING",
    );
    assert!(c.evidence.contains("1 Docker raw DROP"), "{}", c.evidence);
    assert!(c
        .fix
        .unwrap()
        .contains("iptables -t raw -I PREROUTING 1 -m comment --comment crossdock:jump -j CROSSDOCK-PREROUTING"));
    let mut f = healthy();
    chain(&mut f, "raw", "CROSSDOCK-PREROUTING").rules.clear();
    only(
        &f,
        "firewall.raw-exemption",
        Status::Fail,
        "1 of the 1 expected missing",
    );
}

#[test]
fn docker20_needs_no_raw_exemption() {
    let mut f = healthy();
    f.docker.as_mut().unwrap().version = "20.10.24+dfsg1".into();
    let mut rs = with_crossdock(D20_PLAIN, "10.1.0.0/24", "docker0");
    rs.tables.get_mut("raw").unwrap().chains.clear();
    f.host.iptables = Ok(rs);
    let checks = run(&f);
    let c = get(&checks, "firewall.raw-exemption");
    assert_eq!(c.status, Status::Ok, "{}", c.evidence);
    assert!(c.evidence.contains("adds no raw-table drop"));
    assert_eq!(get(&checks, "firewall.forward-path").status, Status::Ok);
}

#[test]
fn forward_opened_wide_is_a_security_warning() {
    let mut f = healthy();
    chain(&mut f, "filter", "FORWARD").policy = Some("ACCEPT".into());
    let c = only(&f, "firewall.forward-policy", Status::Warn, "policy ACCEPT");
    assert!(c.fix.unwrap().contains("iptables -P FORWARD DROP"));

    let mut f = healthy();
    chain(&mut f, "filter", "FORWARD")
        .rules
        .push(rule("-j ACCEPT"));
    let c = only(
        &f,
        "firewall.forward-policy",
        Status::Warn,
        "unconditional ACCEPT",
    );
    assert!(c
        .fix
        .unwrap()
        .contains("iptables -t filter -D FORWARD -j ACCEPT"));
}

#[test]
fn metadata_down_holds_back_the_cloud() {
    let mut f = healthy();
    cloud(&mut f).metadata = Err(Unavailable::new(
        "GET /latest/meta-data/instance-id: connection refused",
        "check the metadata service",
    ));
    only(&f, "cloud.metadata", Status::Fail, "connection refused");
}

#[test]
fn sts_credentials_expired() {
    let mut f = healthy();
    if let Ok(c) = &mut cloud(&mut f).credentials {
        c.expiration = Some(now() - Duration::minutes(3));
    }
    let c = only(&f, "cloud.credentials", Status::Fail, "expired");
    assert!(c.evidence.contains("3m 00s ago"), "{}", c.evidence);
}

#[test]
fn credentials_rejected_or_expiring() {
    let mut f = healthy();
    if let Ok(c) = &mut cloud(&mut f).credentials {
        c.accepted = Err(Unavailable::new(
            "InvalidAccessKeyId.NotFound",
            "check the key",
        ));
    }
    only(&f, "cloud.credentials", Status::Fail, "rejected by the API");
    let mut f = healthy();
    if let Ok(c) = &mut cloud(&mut f).credentials {
        c.expiration = Some(now() + Duration::seconds(90));
    }
    only(&f, "cloud.credentials", Status::Warn, "about to expire");
}

#[test]
fn one_missing_permission_names_that_action() {
    let mut f = healthy();
    let p = cloud(&mut f)
        .permissions
        .iter_mut()
        .find(|p| p.action == "CreateRouteEntry")
        .unwrap();
    p.result = Err(Unavailable::new(
        "Forbidden.RAM: User not authorized to operate on the specified resource",
        "grant vpc:CreateRouteEntry",
    ));
    let c = only(
        &f,
        "cloud.permission.CreateRouteEntry",
        Status::Fail,
        "dry run",
    );
    assert!(c.fix.unwrap().contains("vpc:CreateRouteEntry"));
}

#[test]
fn route_deleted_pending_or_pointing_elsewhere() {
    let mut f = healthy();
    if let Ok(r) = &mut cloud(&mut f).routes {
        r.retain(|e| e.route_entry_id != "rte-me");
    }
    let c = only(&f, "cloud.route", Status::Fail, "no route for 10.1.0.0/24");
    assert!(c.fix.unwrap().contains(
        "CreateRouteEntry --RegionId cn-hangzhou --RouteTableId vtb-1 --DestinationCidrBlock 10.1.0.0/24 --NextHopType Instance --NextHopId i-me"
    ));

    let mut f = healthy();
    if let Ok(r) = &mut cloud(&mut f).routes {
        r[0] = ours("Pending");
    }
    only(&f, "cloud.route", Status::Fail, "is Pending");

    let mut f = healthy();
    if let Ok(r) = &mut cloud(&mut f).routes {
        r[0] = route(
            "rte-x",
            "10.1.0.0/24",
            "i-other",
            "crossdock",
            "crossdock:i-other",
            "Available",
        );
    }
    let c = only(&f, "cloud.route", Status::Fail, "points elsewhere");
    assert!(c.evidence.contains("crossdock:i-other"), "{}", c.evidence);

    // Someone followed the manual recipe: it points here without the marker. It works.
    let mut f = healthy();
    if let Ok(r) = &mut cloud(&mut f).routes {
        r[0] = route("rte-manual", "10.1.0.0/24", "i-me", "", "", "Available");
    }
    let c = get(&run(&f), "cloud.route").clone();
    assert_eq!(c.status, Status::Ok, "{}", c.evidence);
    assert!(c.evidence.contains("without crossdock's marker"));
}

#[test]
fn conflicting_or_stale_routes() {
    let mut f = healthy();
    if let Ok(r) = &mut cloud(&mut f).routes {
        r.push(route(
            "rte-steal",
            "10.1.0.128/25",
            "i-peer",
            "",
            "",
            "Available",
        ));
    }
    let c = only(&f, "cloud.route-conflicts", Status::Fail, "10.1.0.128/25");
    assert!(c.evidence.contains("more specific"));

    let mut f = healthy();
    if let Ok(r) = &mut cloud(&mut f).routes {
        r.push(route(
            "rte-old",
            "10.1.9.0/24",
            "i-me",
            "crossdock",
            "crossdock:i-me",
            "Available",
        ));
    }
    only(&f, "cloud.route-conflicts", Status::Warn, "rte-old");

    // A less specific route elsewhere does not take traffic away.
    let mut f = healthy();
    if let Ok(r) = &mut cloud(&mut f).routes {
        r.push(route(
            "rte-wide",
            "10.0.0.0/8",
            "i-vpn",
            "",
            "",
            "Available",
        ));
    }
    assert_eq!(get(&run(&f), "cloud.route-conflicts").status, Status::Ok);
}

#[test]
fn route_table_quota() {
    let mut f = healthy();
    cloud(&mut f).route_quota = 2;
    only(&f, "cloud.route-quota", Status::Warn, "is at 2/2");
    let mut f = healthy();
    cloud(&mut f).route_quota = 1;
    if let Ok(r) = &mut cloud(&mut f).routes {
        r.retain(|e| e.route_entry_id != "rte-me");
    }
    let checks = run(&f);
    assert_eq!(get(&checks, "cloud.route-quota").status, Status::Fail);
    assert!(get(&checks, "cloud.route-quota")
        .evidence
        .contains("is full"));
    assert_eq!(get(&checks, "cloud.route").status, Status::Fail);
}

#[test]
fn source_destination_check_on() {
    let mut f = healthy();
    cloud(&mut f).source_dest_check = Ok(true);
    let c = only(&f, "cloud.source-dest-check", Status::Fail, "eni-me");
    assert!(c.fix.unwrap().contains(
        "ModifyNetworkInterfaceAttribute --NetworkInterfaceId eni-me --SourceDestCheck false"
    ));
}

#[test]
fn subnet_overlapping_a_vswitch() {
    let mut f = healthy();
    cloud(&mut f).cidrs = Ok(NetworkCidrs {
        vpc: vec![net("192.168.0.0/16")],
        vswitches: vec![("vsw-2".into(), net("10.1.0.0/16"))],
    });
    only(&f, "subnet.vpc-overlap", Status::Fail, "vSwitch vsw-2");
}

#[test]
fn agent_not_running_or_reporting_failures() {
    let mut f = healthy();
    f.agent = AgentState::NotRunning {
        socket: PathBuf::from("/run/crossdock/agent.sock"),
        message: "connection refused".into(),
    };
    only(&f, "agent.status", Status::Warn, "no agent answers");
    let mut f = healthy();
    if let AgentState::Running(a) = &mut f.agent {
        a.conditions.insert(
            "route".into(),
            AgentCondition {
                state: crossdock_status::State::Failed,
                reason: Some("Conflict".into()),
                message: Some("10.1.0.0/24 is held by crossdock:i-other".into()),
            },
        );
    }
    only(
        &f,
        "agent.status",
        Status::Warn,
        "route: 10.1.0.0/24 is held",
    );
}

#[test]
fn without_a_cloud_provider_the_cloud_checks_are_skipped_without_blame() {
    let mut f = healthy();
    f.cloud = None;
    let checks = run(&f);
    for c in checks
        .iter()
        .filter(|c| c.id.starts_with("cloud.") || c.id == "subnet.vpc-overlap")
    {
        assert_eq!(c.status, Status::Skip, "{}", c.id);
        assert_eq!(c.blocked_by, None, "{}", c.id);
    }
    assert_eq!(crate::model::Summary::of(&checks).exit_code(), 0);

    // The table: one skipped line per group, naming the root cause once, no nested reasons.
    let report = crate::render::Report::new(checks, None);
    let text = crate::render::table(&report, false, 0);
    let (names_lines, skip_lines): (Vec<&str>, Vec<&str>) = text
        .lines()
        .filter(|l| l.starts_with("skip"))
        .partition(|l| l.contains("names."));
    assert_eq!(names_lines.len(), 1, "[names] off: one line: {text}");
    assert_eq!(skip_lines.len(), 1, "{text}");
    assert!(
        skip_lines[0].contains("cloud.metadata") && skip_lines[0].contains("provider = \"none\""),
        "{text}"
    );
    let group = text
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with("not checked for the same reason")
        })
        .unwrap_or_else(|| panic!("no group line:\n{text}"));
    for id in [
        "cloud.credentials",
        "cloud.route-quota",
        "cloud.source-dest-check",
    ] {
        assert!(group.contains(id), "{id} missing from {group}");
    }
    assert!(!text.contains("was skipped"), "{text}");
}

#[test]
fn a_static_subnet_host_is_checked_without_docker() {
    let mut f = healthy();
    f.config.config = crossdock_config::parse(
        "cluster_cidrs = [\"10.0.0.0/8\"]\n[docker]\nstatic_subnet = \"10.1.0.0/24\"\n[cloud]\nprovider = \"alibaba\"\n",
    );
    f.docker = Err(Unavailable::new("not asked: docker.static_subnet", "-"));
    f.host.bridge = None;
    f.host.sysctls.remove("net/ipv4/conf/docker0/forwarding");
    let checks = run(&f);
    for id in [
        "docker.reachable",
        "docker.network",
        "subnet.cluster-range",
        "forwarding.ip-forward",
        "cloud.route",
        "cloud.route-conflicts",
        "subnet.vpc-overlap",
    ] {
        let c = get(&checks, id);
        assert_eq!(c.status, Status::Ok, "{id}: {}", c.evidence);
    }
    for c in &checks {
        assert_ne!(c.status, Status::Fail, "{}: {}", c.id, c.evidence);
        assert_eq!(c.blocked_by, None, "{}", c.id);
    }
    assert!(get(&checks, "docker.network")
        .evidence
        .contains("static subnet 10.1.0.0/24"));
    assert_eq!(get(&checks, "firewall.forward-chain").status, Status::Skip);
}

#[test]
fn route_tables_unknown_or_none() {
    let mut f = healthy();
    cloud(&mut f).route_tables = Err(Unavailable::new(
        "no route table is associated with vSwitch vsw-1 and the VPC has no system route table",
        "set cloud.route_table_ids",
    ));
    only(&f, "cloud.route-table", Status::Fail, "no route table");
    let mut f = healthy();
    cloud(&mut f).route_tables = Ok(vec![]);
    only(
        &f,
        "cloud.route-table",
        Status::Fail,
        "no route table found",
    );
}

#[test]
fn a_refused_read_names_its_action() {
    let mut f = healthy();
    let p = cloud(&mut f)
        .permissions
        .iter_mut()
        .find(|p| p.action == "DescribeNetworkInterfaces")
        .unwrap();
    p.result = Err(Unavailable::new(
        "ECS DescribeNetworkInterfaces: Forbidden.RAM (not authorized)",
        "grant ecs:DescribeNetworkInterfaces",
    ));
    only(
        &f,
        "cloud.permission.DescribeNetworkInterfaces",
        Status::Fail,
        "read call",
    );
}

#[test]
fn unreadable_docker_version_warns() {
    let mut f = healthy();
    f.docker.as_mut().unwrap().version = "dev".into();
    only(
        &f,
        "docker.version",
        Status::Warn,
        "cannot read Docker's version",
    );
}
