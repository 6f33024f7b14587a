//! Container names across hosts end to end (issue 12, "What it must show"), in a fleet lab of three
//! hosts with `[names]` on (`crossdock lab up --names`): every agent answers `crossdock.internal`
//! on its bridge gateway, the members exchange their records, `crossdock init` put the resolver
//! first in each host's daemon.json `dns`, and the VPC DNS stand-in in the vRouter answers
//! `example.test`.
//!
//! In the lab (root only; "skipped: needs root" otherwise), from a container on h2 (busybox's
//! resolver, i.e. what any container's libc does with the `dns` Docker gave it):
//! - `web.crossdock.internal` resolves to the container `web` on h1, and a TCP connection by that
//!   name reaches it (the receiver sees the client's own container IP);
//! - `web` recreated with a new IP: the name follows within 2 s of the container being up;
//! - a Compose-style service (`com.docker.compose.service=api`) with replicas on h1 and h3: both
//!   A records;
//! - a container on a user-defined network resolves it too (through Docker's embedded DNS);
//! - an external name resolves through the agent, forwarded to the upstream stand-in;
//! - with h2's agent stopped, the external name still resolves (the stand-in is second in the
//!   container's resolv.conf);
//! - an outsider namespace on the vSwitch (no instance, no agent, no member) can neither query a
//!   host's resolver (UDP and TCP refused by the firewall) nor reach the catalog port (its
//!   datagrams are dropped before the agent, which never counts them);
//! - `crossdock status --fleet --json` on h2 shows every member's agent at this binary's version,
//!   heard within seconds (the versions and heartbeats travel with the catalog);
//! - h1 released: once the fleet view shows it gone, its records go within seconds (it is no
//!   member any more); then h3's agent killed: h3 is still a member, its records stay for the grace
//!   period (`withdraw_after_secs`, shortened here) and go after it; meanwhile h2's fleet view marks
//!   h3's agent silent.

mod common;

use common::*;
use crossdock_lab::testing::root_or_skip;
use crossdock_lab::upstream_dns::{TEST_IP, TEST_NAME};
use crossdock_lab::{DockerVersion, Lab};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Output;
use std::time::{Duration, Instant};

/// From "should resolve" (agents up, container started) to the answer, with room for a loaded
/// 2-core machine: the catalog pushes a change at once, a gossip round is 0.5 s.
const NAMES_BOUND: Duration = Duration::from_secs(15);
/// The bound for a recreated container's name to follow.
const FOLLOW_BOUND: Duration = Duration::from_secs(2);
/// `[names] withdraw_after_secs` in this lab: a silent member keeps its records this long.
const GRACE_SECS: u64 = 25;
/// A non-member's records go 10 s after it was last heard; chitchat's failure detector takes a few
/// seconds more to stop hearing a dead host.
const RELEASED_BOUND: Duration = Duration::from_secs(20);
/// From a release to the route side's fleet view without it: a sweep every 5 s here (the route
/// side's passes can take longer on a loaded machine).
const RELEASE_SEEN_BOUND: Duration = Duration::from_secs(60);
/// "Heard recently" in the fleet view: a gossip round is 0.5 s; room for a loaded machine.
const RECENT_SECS: u64 = 5;
/// From an agent killed to the others' fleet view calling it silent: the silent timeout (the
/// non-member withdrawal, 10 s here) plus a status poll; well inside the grace period.
const SILENT_BOUND: Duration = Duration::from_secs(GRACE_SECS - 5);
/// The compose label.
const SERVICE: &str = "com.docker.compose.service=api";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The A records busybox's `nslookup` prints for `name` from container `c` on host `index`
/// (empty when it finds none or fails).
fn lookup(lab: &Lab, index: usize, c: &str, name: &str) -> BTreeSet<Ipv4Addr> {
    let host = lab.host(index).docker_host.clone().unwrap_or_default();
    let out = crossdock_lab::dockerd::docker_command(&host)
        .args(["exec", c, "nslookup", name])
        .output()
        .expect("docker exec runs");
    let answers = text(&out);
    answers
        .split_once("Name:")
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Address:"))
        .filter_map(|a| a.trim().parse().ok())
        .collect()
}

fn ips(list: &[&str]) -> BTreeSet<Ipv4Addr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

/// Waits until `name` resolves to exactly `want` from `c` on `index`; how long it took.
fn wait_lookup(
    lab: &Lab,
    (index, c): (usize, &str),
    name: &str,
    want: &BTreeSet<Ipv4Addr>,
    bound: Duration,
) -> Duration {
    let what = format!("{name} from {c}@h{index} resolving to {want:?}");
    let mut last = BTreeSet::new();
    let started = Instant::now();
    let ok = crossdock_lab::lab::wait_for(bound, || {
        last = lookup(lab, index, c, name);
        (last == *want).then_some(())
    });
    if ok.is_none() {
        let st = status(lab, index).unwrap_or_default();
        let members: Vec<String> = st["fleet"]["hosts"]
            .as_array()
            .map(|h| {
                h.iter()
                    .map(|m| format!("{} {}", m["private_ip"], m["status"]))
                    .collect()
            })
            .unwrap_or_default();
        panic!(
            "{what}: not within {bound:?} (last answer {last:?})\nh{index}'s names: {}\nh{index}'s fleet members: {members:?}\n{}",
            st["names"],
            diagnosis(lab)
        );
    }
    started.elapsed()
}

/// A busybox container on host `index` named `name`, with `labels`; its IP.
fn plain_container(lab: &Lab, index: usize, name: &str, labels: &[&str]) -> String {
    let mut args: Vec<&str> = Vec::new();
    for l in labels {
        args.extend(["--label", l]);
    }
    args.extend([crossdock_lab::dockerd::BUSYBOX_IMAGE, "sleep", "86400"]);
    lab.run_container(index, name, &args)
        .unwrap_or_else(|e| panic!("container {name} on h{index}: {e:#}"))
        .ip
}

/// A busybox container on host `index` named `name` on the user-defined network `network`.
fn plain_container_on(lab: &Lab, index: usize, name: &str, network: &str) {
    let image = crossdock_lab::dockerd::BUSYBOX_IMAGE;
    lab.run_container(
        index,
        name,
        &["--network", network, image, "sleep", "86400"],
    )
    .unwrap_or_else(|e| panic!("container {name} on h{index}: {e:#}"));
}

/// Packets counted by the rules of host `index`'s INPUT chain carrying `comment` (all of them).
fn input_rule_packets(lab: &Lab, index: usize, comment: &str) -> u64 {
    let listing = host_sh(
        lab,
        index,
        &["iptables", "-w", "-L", "INPUT", "-v", "-n", "-x"],
    );
    let counts: Vec<u64> = listing
        .lines()
        .filter(|l| l.contains(comment))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(
        !counts.is_empty(),
        "h{index} has no INPUT rule {comment}:\n{listing}"
    );
    counts.iter().sum()
}

/// A metric of host `index`'s agent (0 when absent).
fn metric(lab: &Lab, index: usize, name: &str) -> f64 {
    metrics(lab, index)
        .and_then(|t| metric_value(&t, name))
        .unwrap_or(0.0)
}

#[test]
fn e2e_names_resolve_follow_forward_stay_private_and_withdraw() {
    if !root_or_skip() {
        return;
    }
    let timer = Timer::start("e2e_names_resolve_follow_forward_stay_private_and_withdraw");
    let mut opts = options(3, DockerVersion::V20);
    opts.fleet = true;
    opts.names = true;
    opts.agents = true;
    opts.agent_config = Some(fast_resync(|_, c| {
        c.fleet.sweep_interval_secs = 5;
        c.names.withdraw_after_secs = GRACE_SECS;
    }));
    let mut lab = up(opts);
    wait_ready(&lab, &[1, 2, 3], ROUTES_BOUND);
    let up_at = timer.elapsed();

    // A name across hosts, and TCP by name.
    let web = container(&lab, 1, "web");
    let client = container(&lab, 2, "client");
    let took = wait_lookup(
        &lab,
        (2, "client"),
        "web.crossdock.internal",
        &ips(&[&web.ip]),
        NAMES_BOUND,
    );
    eprintln!("web.crossdock.internal resolved from h2 {took:?} after web started");
    let ids: Vec<String> = (1..=3).map(|i| lab.host(i).instance_id.clone()).collect();
    let took = wait_fleet_agents(&lab, 2, "every member's agent heard at this version", |v| {
        ids.iter().all(|id| {
            member(v, id).is_some_and(|h| {
                h["agent_version"] == env!("CARGO_PKG_VERSION")
                    && h["last_seen"]["secs_ago"]
                        .as_u64()
                        .is_some_and(|s| s <= RECENT_SECS)
                    && h["agent_silent"] == false
            })
        })
    });
    eprintln!("h2's fleet view showed every member's agent version and last-seen after {took:?}");
    wait_tcp_from(
        &lab,
        (2, "client"),
        (1, "web"),
        "web.crossdock.internal",
        &client.ip,
        TRAFFIC_BOUND,
    );

    // Recreated with a new address (a holder takes the old one): the name follows within 2 s.
    lab.docker(1, &["rm", "-f", "web"]).expect("docker rm web");
    plain_container(&lab, 1, "holder", &[]);
    let web2 = plain_container(&lab, 1, "web", &[]);
    assert_ne!(web2, web.ip, "the recreated web kept its address");
    let took = wait_lookup(
        &lab,
        (2, "client"),
        "web.crossdock.internal",
        &ips(&[&web2]),
        FOLLOW_BOUND,
    );
    eprintln!("the recreated web's new address was answered on h2 after {took:?}");

    // A Compose-style service with replicas on h1 and h3: both.
    let api1 = plain_container(&lab, 1, "proj-api-1", &[SERVICE]);
    let api3 = plain_container(&lab, 3, "proj-api-2", &[SERVICE]);
    let both = ips(&[&api1, &api3]);
    wait_lookup(
        &lab,
        (2, "client"),
        "api.crossdock.internal",
        &both,
        NAMES_BOUND,
    );

    // A container on a user-defined network asks through Docker's embedded DNS, which forwards
    // from the container's own address: the resolver (and its firewall) take that network in.
    lab.docker(2, &["network", "create", "appnet"])
        .expect("docker network create");
    plain_container_on(&lab, 2, "u1", "appnet");
    wait_lookup(
        &lab,
        (2, "u1"),
        "web.crossdock.internal",
        &ips(&[&web2]),
        NAMES_BOUND,
    );

    // An external name, forwarded to the upstream stand-in.
    let external = BTreeSet::from([TEST_IP]);
    wait_lookup(&lab, (2, "client"), TEST_NAME, &external, NAMES_BOUND);
    assert!(
        metric(
            &lab,
            2,
            "crossdock_names_dns_queries_total{answer=\"forwarded\"}"
        ) >= 1.0
    );

    assert_outsider_shut_out(&mut lab);

    // h2's agent stopped: external names still resolve (the stand-in is next in resolv.conf).
    lab.agent_stop("h2").expect("stopping h2's agent");
    wait_lookup(&lab, (2, "client"), TEST_NAME, &external, NAMES_BOUND);
    lab.agent_start("h2").expect("starting h2's agent");
    wait_lookup(
        &lab,
        (2, "client"),
        "api.crossdock.internal",
        &both,
        NAMES_BOUND,
    );

    assert_released_withdrawn_killed_kept(&mut lab, &api3);
    eprintln!(
        "lab up and agents ready in {up_at:?}; whole test {:?}",
        timer.elapsed()
    );
}

/// An outsider on the vSwitch: h1's resolver refuses it (UDP and TCP, by the firewall), its
/// datagrams to the catalog port are dropped before the agent, and it hears nothing back.
fn assert_outsider_shut_out(lab: &mut Lab) {
    let outsider = lab
        .outsider("192.168.1.200".parse().unwrap())
        .expect("an outsider namespace");
    let h1 = lab.host(1).clone();
    let gateway = h1
        .bip
        .as_deref()
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(
        outsider
            .exec_unchecked(&["busybox", "ping", "-c", "1", "-W", "2", &h1.private_ip])
            .unwrap()
            .status
            .success(),
        "the outsider does not even reach h1: the test would prove nothing"
    );
    let rejected = input_rule_packets(lab, 1, "crossdock:dns-others");
    let udp = outsider
        .exec_unchecked(&[
            "timeout",
            "5",
            "busybox",
            "nslookup",
            "web.crossdock.internal",
            &gateway,
        ])
        .unwrap();
    assert!(
        !udp.status.success() && !text(&udp).contains("Name:"),
        "the outsider got an answer from h1's resolver:\n{}",
        text(&udp)
    );
    let tcp = outsider
        .exec_unchecked(&["timeout", "5", "busybox", "nc", "-w", "2", &gateway, "53"])
        .unwrap();
    assert!(
        !tcp.status.success(),
        "the outsider connected to h1's resolver over TCP"
    );
    assert!(
        input_rule_packets(lab, 1, "crossdock:dns-others") >= rejected + 2,
        "h1's firewall did not turn the outsider's DNS packets away"
    );

    let dropped = input_rule_packets(lab, 1, "crossdock:catalog-others");
    let seen = metric(
        lab,
        1,
        "crossdock_names_catalog_events_total{kind=\"rejected_peer\"}",
    );
    let catalog = lab
        .fleet_config()
        .expect("the fleet configuration")
        .names
        .catalog_port;
    // One datagram, then two seconds listening for anything coming back (busybox's nc has no UDP).
    let send_and_listen = "import socket, sys\n\
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
s.settimeout(2)\n\
s.sendto(b'probe', (sys.argv[1], int(sys.argv[2])))\n\
print(s.recv(65535))\n";
    let probe = outsider
        .exec_unchecked(&[
            "python3",
            "-c",
            send_and_listen,
            &h1.private_ip,
            &catalog.to_string(),
        ])
        .unwrap();
    assert!(
        probe.stdout.is_empty(),
        "the outsider read something from the catalog port: {}",
        text(&probe)
    );
    assert!(
        input_rule_packets(lab, 1, "crossdock:catalog-others") > dropped,
        "h1's firewall did not drop the outsider's catalog datagram"
    );
    assert_eq!(
        metric(
            lab,
            1,
            "crossdock_names_catalog_events_total{kind=\"rejected_peer\"}"
        ),
        seen,
        "the outsider's datagram reached the agent"
    );
}

/// Member `id` in a fleet view.
fn member<'a>(view: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    view["hosts"]
        .as_array()?
        .iter()
        .find(|h| h["instance_id"] == id)
}

/// Polls `crossdock status --fleet --json` on host `index` until `ok` holds (bound `SILENT_BOUND`
/// or `NAMES_BOUND`, the larger); how long it took. Panics with the last view.
fn wait_fleet_agents(
    lab: &Lab,
    index: usize,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> Duration {
    let bound = NAMES_BOUND.max(SILENT_BOUND);
    let started = Instant::now();
    let mut last = serde_json::Value::Null;
    let found = crossdock_lab::lab::wait_for(bound, || {
        let out = lab
            .exec_unchecked(index, &[CROSSDOCK, "status", "--fleet", "--json"])
            .ok()?;
        last = serde_json::from_slice(&out.stdout).unwrap_or_default();
        ok(&last).then_some(())
    });
    if found.is_none() {
        panic!(
            "h{index}'s fleet view: {what}: not within {bound:?}; last view:\n{last:#}\n{}",
            diagnosis(lab)
        );
    }
    started.elapsed()
}

/// Waits until host `index`'s fleet view no longer lists `ip` (the route side's sweep saw the
/// instance released); how long it took.
fn wait_not_member(lab: &Lab, index: usize, ip: &str) -> Duration {
    let what = format!("h{index}'s fleet view dropping the released {ip}");
    wait_until(lab, &what, RELEASE_SEEN_BOUND, || {
        let st = status(lab, index)?;
        let hosts = st["fleet"]["hosts"].as_array()?.clone();
        (!hosts.iter().any(|h| h["private_ip"] == ip)).then_some(())
    })
    .1
}

/// h1 released: once the fleet knows (its instance is gone), its names go within the non-member
/// withdrawal (10 s) plus failure detection. Then h3's agent killed: h3 is still a member, so its
/// names stay for the whole grace period and go after it.
fn assert_released_withdrawn_killed_kept(lab: &mut Lab, api3: &str) {
    let h1_ip = lab.host(1).private_ip.clone();
    lab.host_release("h1").expect("releasing h1");
    let seen = wait_not_member(lab, 2, &h1_ip);
    let gone = BTreeSet::new();
    let took = wait_lookup(
        lab,
        (2, "client"),
        "web.crossdock.internal",
        &gone,
        RELEASED_BOUND,
    );
    eprintln!("the released h1 left the fleet view after {seen:?}, its records {took:?} later");
    assert_eq!(
        lookup(lab, 2, "client", "api.crossdock.internal"),
        ips(&[api3]),
        "h3's replica (alive) went with h1's"
    );

    let killed = Instant::now();
    lab.agent_kill("h3").expect("killing h3's agent");
    // Still a member, its agent gone: h2's fleet view calls it silent (within the grace period,
    // so this costs the test no time).
    let h3 = lab.host(3).instance_id.clone();
    wait_fleet_agents(lab, 2, "h3's killed agent marked silent", |v| {
        member(v, &h3).is_some_and(|h| h["agent_silent"] == true)
    });
    let human = lab
        .exec_unchecked(2, &[CROSSDOCK, "status", "--fleet"])
        .expect("h2's human fleet view");
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with(h3.as_str()) && l.contains("SILENT")),
        "h3's silent agent does not stand out:\n{text}"
    );
    eprintln!(
        "h2 called h3's killed agent silent after {:?}",
        killed.elapsed()
    );
    let bound = Duration::from_secs(GRACE_SECS) + RELEASED_BOUND;
    wait_lookup(lab, (2, "client"), "api.crossdock.internal", &gone, bound);
    let after = killed.elapsed();
    eprintln!("h3's records (agent killed, still a member) were withdrawn after {after:?}");
    assert!(
        after >= Duration::from_secs(GRACE_SECS),
        "h3's records went after {after:?}, before the {GRACE_SECS} s grace period"
    );
}
