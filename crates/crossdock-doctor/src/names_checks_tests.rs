//! The names checks against canned facts: a healthy host with `[names]` on where every names check
//! is `ok`, then one cause at a time, asserting that exactly that check changes (its dependents held
//! back naming it), with evidence and a fix. With `[names]` off they are one skip.
//!
//! The host serves 10.1.0.0/24 (gateway 10.1.0.1), as in `checks_tests.rs`.

use super::*;
use crate::checks::tests::{dependents, get, healthy, run, with_crossdock};
use crate::facts::*;
use crate::model::Status;
use crate::names::{DnsReply, Rcode};
use crossdock_alibaba::{Instance, InstanceStatus};
use crossdock_hostnet::rules::Position;
use std::path::PathBuf;

const D28_PLAIN: &str = include_str!("../tests/data/docker28-plain.iptables-save");

const NAMES_CONFIG: &str = r#"
cluster_cidrs = ["10.0.0.0/8"]
[cloud]
provider = "alibaba"
[names]
enabled = true
"#;

const IDS: [&str; 6] = [
    "names.mode",
    "names.resolver",
    "names.forwarding",
    "names.catalog-port",
    "names.firewall",
    "names.docker-dns",
];

fn reply(rcode: Rcode, answers: usize) -> Fact<DnsReply> {
    Ok(DnsReply {
        rcode,
        answers,
        authoritative: rcode == Rcode::NoError && answers > 0,
        millis: 1,
    })
}

fn member(ip: &str) -> Instance {
    Instance {
        instance_id: format!("i-{ip}"),
        hostname: String::new(),
        status: InstanceStatus::Running,
        vpc_id: "vpc-1".into(),
        vswitch_id: "vsw-1".into(),
        private_ip: Some(ip.parse().unwrap()),
        eni_id: None,
        tags: vec![],
    }
}

/// `rules` applied as the agent applies them: appended to its chain, or kept at the head of a
/// chain of others in the order given.
fn apply(rs: &mut crate::iptables::Ruleset, rules: &[Rule]) {
    let mut heads: std::collections::BTreeMap<String, usize> = Default::default();
    for r in rules {
        let chain = rs
            .tables
            .entry(r.table.as_str().to_string())
            .or_default()
            .chains
            .entry(r.chain.clone())
            .or_default();
        let rule = crate::iptables::SavedRule {
            args: r.args.clone(),
            counters: Some(Default::default()),
        };
        match r.position {
            Position::Append => chain.rules.push(rule),
            Position::Top => {
                let at = heads.entry(r.chain.clone()).or_default();
                chain.rules.insert(*at, rule);
                *at += 1;
            }
        }
    }
}

fn guard(members: &[&str]) -> NamesGuard {
    NamesGuard {
        dns: "10.1.0.1:53".parse().unwrap(),
        dns_clients: vec!["10.1.0.0/24".parse().unwrap()],
        catalog_port: 7953,
        members: members.iter().map(|m| m.parse().unwrap()).collect(),
    }
}

fn names_healthy() -> Facts {
    let mut f = healthy();
    f.config.config = crossdock_config::parse(NAMES_CONFIG);
    let mut rs = with_crossdock(D28_PLAIN, "10.1.0.0/24", "docker0");
    apply(
        &mut rs,
        &names_rules(&guard(&["192.168.1.11", "192.168.1.12"])),
    );
    f.host.iptables = Ok(rs);
    f.names = Some(NamesFacts {
        zone: "crossdock.internal".into(),
        dns: Some("10.1.0.1:53".parse().unwrap()),
        zone_udp: reply(Rcode::NoError, 1),
        zone_tcp: reply(Rcode::NoError, 1),
        external_name: "aliyun.com".into(),
        external: reply(Rcode::NoError, 2),
        catalog_port: 7953,
        udp_sockets: Ok(vec![
            "192.168.1.11:7953".parse().unwrap(),
            "10.1.0.1:53".parse().unwrap(),
        ]),
        daemon_json: PathBuf::from("/etc/docker/daemon.json"),
        daemon_dns: Ok(Some(vec![
            "10.1.0.1".parse().unwrap(),
            "100.100.2.136".parse().unwrap(),
        ])),
        containers: Ok(vec![ContainerDns {
            name: "web".into(),
            nameservers: Ok(vec!["10.1.0.1".parse().unwrap()]),
        }]),
    });
    f
}

fn names_of(f: &mut Facts) -> &mut NamesFacts {
    f.names.as_mut().unwrap()
}

/// Runs the checks and asserts that among the names checks only `id` is `want` and its dependents
/// are held back naming it; returns that check's evidence and fix.
fn only(f: &Facts, id: &str, want: Status) -> (String, String) {
    let checks = run(f);
    let held = dependents(id);
    for other in IDS {
        let c = get(&checks, other);
        if other == id {
            assert_eq!(c.status, want, "{c:?}");
        } else if held.contains(other) {
            assert_eq!(c.status, Status::Skip, "{c:?}");
            assert_eq!(c.blocked_by.as_deref(), Some(id), "{c:?}");
        } else {
            assert_eq!(c.status, Status::Ok, "{other} changed too: {c:?}");
        }
    }
    let c = get(&checks, id);
    (c.evidence.clone(), c.fix.clone().unwrap_or_default())
}

#[test]
fn a_healthy_host_passes_every_names_check() {
    let checks = run(&names_healthy());
    for id in IDS {
        let c = get(&checks, id);
        assert_eq!(c.status, Status::Ok, "{c:?}");
    }
    let fw = get(&checks, "names.firewall");
    assert!(fw.evidence.contains("2 member(s)"), "{}", fw.evidence);
}

#[test]
fn with_names_off_they_are_one_skip() {
    let checks = run(&healthy());
    let mode = get(&checks, "names.mode");
    assert_eq!(
        (mode.status, mode.evidence.as_str()),
        (Status::Skip, "names.enabled is false")
    );
    for id in &IDS[1..] {
        assert_eq!(get(&checks, id).skipped_by.as_deref(), Some("names.mode"));
    }
}

#[test]
fn a_resolver_that_does_not_answer_over_tcp_names_the_transport_and_the_fix() {
    let mut f = names_healthy();
    names_of(&mut f).zone_tcp = Err(Unavailable::new(
        "no answer from 10.1.0.1:53 over TCP: Connection refused",
        "see the names line of `crossdock status`",
    ));
    let (ev, fix) = only(&f, "names.resolver", Status::Fail);
    assert!(ev.contains("over TCP") && ev.contains("refused"), "{ev}");
    assert!(fix.contains("crossdock status"), "{fix}");
}

#[test]
fn something_else_answering_the_zone_is_not_crossdocks_resolver() {
    let mut f = names_healthy();
    names_of(&mut f).zone_udp = reply(Rcode::NxDomain, 0);
    let (ev, fix) = only(&f, "names.resolver", Status::Fail);
    assert!(ev.contains("NXDOMAIN") && ev.contains("UDP"), "{ev}");
    assert!(fix.contains("sport = :53"), "{fix}");
    names_of(&mut f).zone_udp = reply(Rcode::Refused, 0);
    let (ev, _) = only(&f, "names.resolver", Status::Fail);
    assert!(ev.contains("refused"), "{ev}");
}

#[test]
fn forwarding_fails_on_servfail_and_passes_on_nxdomain() {
    let mut f = names_healthy();
    names_of(&mut f).external = reply(Rcode::NxDomain, 0);
    only(&f, "names.forwarding", Status::Ok);
    names_of(&mut f).external = reply(Rcode::ServFail, 0);
    let (ev, fix) = only(&f, "names.forwarding", Status::Fail);
    assert!(ev.contains("aliyun.com") && ev.contains("SERVFAIL"), "{ev}");
    assert!(
        fix.contains("/etc/resolv.conf") && fix.contains("--names-external"),
        "{fix}"
    );
}

#[test]
fn an_unbound_catalog_port_fails() {
    let mut f = names_healthy();
    names_of(&mut f).udp_sockets = Ok(vec!["10.1.0.1:53".parse().unwrap()]);
    let (ev, fix) = only(&f, "names.catalog-port", Status::Fail);
    assert!(ev.contains("UDP port 7953"), "{ev}");
    assert!(fix.contains("systemctl restart crossdock-agent"), "{fix}");
}

#[test]
fn a_missing_catalog_drop_fails_naming_the_rule() {
    let mut f = names_healthy();
    let input = f
        .host
        .iptables
        .as_mut()
        .unwrap()
        .tables
        .get_mut("filter")
        .unwrap()
        .chains
        .get_mut("INPUT")
        .unwrap();
    input
        .rules
        .retain(|r| !r.args.iter().any(|a| a == "crossdock:catalog-others"));
    let (ev, fix) = only(&f, "names.firewall", Status::Fail);
    assert!(ev.contains("INPUT") && ev.contains("DROP"), "{ev}");
    assert!(fix.contains("systemctl restart crossdock-agent"), "{fix}");
}

#[test]
fn members_missing_from_the_rules_fail_and_strangers_warn() {
    let mut f = names_healthy();
    let fleet = crate::fleet::FleetFacts {
        by_id: Ok(vec![]),
        asked: vec![],
        members: Ok(vec![
            member("192.168.1.11"),
            member("192.168.1.12"),
            member("192.168.1.13"),
        ]),
    };
    f.cloud.as_mut().unwrap().fleet = Some(fleet.clone());
    let (ev, _) = only(&f, "names.firewall", Status::Fail);
    assert!(ev.contains("192.168.1.13/32"), "{ev}");

    let mut f = names_healthy();
    let mut fleet = fleet;
    fleet.members = Ok(vec![member("192.168.1.11")]);
    f.cloud.as_mut().unwrap().fleet = Some(fleet);
    let (ev, _) = only(&f, "names.firewall", Status::Warn);
    assert!(ev.contains("no member of the fleet: 192.168.1.12"), "{ev}");
}

#[test]
fn daemon_json_without_the_resolver_first_fails_with_crossdock_init() {
    let mut f = names_healthy();
    names_of(&mut f).daemon_dns = Ok(None);
    let (ev, fix) = only(&f, "names.docker-dns", Status::Fail);
    assert!(ev.contains("sets no \"dns\""), "{ev}");
    assert!(fix.starts_with("crossdock init"), "{fix}");
    names_of(&mut f).daemon_dns = Ok(Some(vec!["100.100.2.136".parse().unwrap()]));
    let (ev, _) = only(&f, "names.docker-dns", Status::Fail);
    assert!(ev.contains("10.1.0.1 is not first"), "{ev}");
}

#[test]
fn containers_created_before_the_resolver_warn_and_embedded_dns_counts_as_asking_it() {
    let mut f = names_healthy();
    names_of(&mut f).containers = Ok(vec![
        ContainerDns {
            name: "old".into(),
            nameservers: Ok(vec!["100.100.2.136".parse().unwrap()]),
        },
        ContainerDns {
            name: "compose-app".into(),
            nameservers: Ok(vec!["127.0.0.11".parse().unwrap()]),
        },
    ]);
    let (ev, fix) = only(&f, "names.docker-dns", Status::Warn);
    assert!(
        ev.contains("1 of 2 container(s)") && ev.contains("old (nameserver 100.100.2.136)"),
        "{ev}"
    );
    assert!(fix.contains("recreate"), "{fix}");
}
