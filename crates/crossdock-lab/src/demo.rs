//! The demo (the README's main command): containers on different simulated hosts reach each other by
//! their own IPs, through the VPC route table the agents maintain, and the receiver sees the sender's
//! container IP (no NAT on the way).
//!
//! With names on (the default: a `--names` lab, fleet mode with `[names]` in every agent) a last
//! step shows container names across hosts: a service `web` on the first host is reached by
//! `web.crossdock.internal` from a container on the second, then recreated with a new IP and
//! reached by the same name again ([`names_step`]); each wait polls with a deadline.
//!
//! Every probe runs inside the lab's namespaces (`docker exec` in the hosts' containers); nothing touches
//! the root namespace's network. The checks are also exported ([`ping`], [`tcp_exchange`],
//! [`lookup`]) for tests.

use crate::dockerd::{ContainerInfo, BUSYBOX_IMAGE};
use crate::lab::{Lab, LabOptions, LabStatus};
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// The TCP port the demo's receivers listen on.
pub const DEMO_PORT: u16 = 7000;

/// The script a receiver runs for each connection (busybox `nc -e`): it records the peer address of the
/// connection as the receiver's kernel sees it (busybox nc listens on an IPv6 socket, so the address is
/// IPv4-mapped; the sender may already have half-closed, so any state but LISTEN counts), and the line the
/// sender sent; and answers.
const PEER_SCRIPT: &str = r#"#!/bin/sh
read -r line
peer=$(netstat -tn 2>/dev/null | awk '$4 ~ /:7000$/ && $6 != "LISTEN" { f = $5; sub(/:[0-9]+$/, "", f); sub(/^::ffff:/, "", f); print f; exit }')
echo "$peer $line" > /tmp/seen
echo "seen-from $peer"
"#;

/// The service the names step reaches by name.
pub const NAMES_SERVICE: &str = "web";
/// ... under this name (the lab's zone is the default).
pub const NAMES_FQDN: &str = "web.crossdock.internal";
/// How long the names step waits for a name to resolve to the service's address: the agents
/// may still be exchanging their first records when the routes are ready.
pub const NAMES_DEADLINE: Duration = Duration::from_secs(20);

/// One service address reached by name: when it answered, and what the receiver saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameReach {
    /// The service container's IP.
    pub ip: String,
    /// From the service listening to the name resolving to `ip` (`None`: not within the deadline).
    pub resolved_after: Option<Duration>,
    /// The source address the service saw for a TCP connection to the name (`None`: failed).
    pub seen: Option<String>,
}

/// What the names step found: the service before and after it was recreated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamesReport {
    /// The client container's IP (the source the service must see).
    pub client_ip: String,
    pub first: NameReach,
    pub recreated: NameReach,
}

impl NamesReport {
    pub fn passed(&self) -> bool {
        self.first.ip != self.recreated.ip
            && [&self.first, &self.recreated].iter().all(|r| {
                r.resolved_after.is_some() && r.seen.as_deref() == Some(self.client_ip.as_str())
            })
    }
}

/// What the demo found.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub containers: Vec<(String, ContainerInfo)>,
    /// (from host, to host, ok)
    pub pings: Vec<(String, String, bool)>,
    /// (from host, to host, the source IP the receiver saw)
    pub exchanges: Vec<(String, String, Option<String>)>,
    /// The names step (a lab with names on).
    pub names: Option<NamesReport>,
    pub status: LabStatus,
}

impl DemoReport {
    pub fn passed(&self) -> bool {
        self.names.as_ref().is_none_or(NamesReport::passed)
            && self.pings.iter().all(|p| p.2)
            && self
                .exchanges
                .iter()
                .zip(self.pairs_sources())
                .all(|(e, src)| e.2.as_deref() == Some(src))
    }

    fn pairs_sources(&self) -> Vec<&str> {
        self.exchanges
            .iter()
            .map(|(from, _, _)| {
                self.containers
                    .iter()
                    .find(|(h, _)| h == from)
                    .map(|(_, c)| c.ip.as_str())
                    .unwrap_or("")
            })
            .collect()
    }
}

/// Pings `ip` from inside `container` on host `index` (3 probes, 2 s each); true if any answer came.
pub fn ping(lab: &Lab, index: usize, container: &str, ip: &str) -> Result<bool> {
    ping_n(lab, index, container, ip, 3)
}

/// One probe (2 s): for checks that expect no answer.
pub fn ping_once(lab: &Lab, index: usize, container: &str, ip: &str) -> Result<bool> {
    ping_n(lab, index, container, ip, 1)
}

fn ping_n(lab: &Lab, index: usize, container: &str, ip: &str, count: u32) -> Result<bool> {
    let host = lab.host(index);
    let out = crate::dockerd::docker_command(host.docker_host.as_deref().unwrap_or_default())
        .args([
            "exec",
            container,
            "ping",
            "-c",
            &count.to_string(),
            "-W",
            "2",
            ip,
        ])
        .output()
        .context("cannot run docker exec")?;
    Ok(out.status.success())
}

/// Prepares `container` on host `index` to receive: a busybox `nc` listener on [`DEMO_PORT`] that records
/// each sender's address. Waits (bounded) until it listens.
pub fn start_receiver(lab: &Lab, index: usize, container: &str) -> Result<()> {
    lab.docker(
        index,
        &[
            "exec",
            container,
            "sh",
            "-c",
            &format!("cat > /tmp/peer.sh <<'EOF'\n{PEER_SCRIPT}EOF\nchmod +x /tmp/peer.sh; rm -f /tmp/seen"),
        ],
    )?;
    lab.docker(
        index,
        &[
            "exec",
            "-d",
            container,
            "nc",
            "-ll",
            "-p",
            &DEMO_PORT.to_string(),
            "-e",
            "/tmp/peer.sh",
        ],
    )?;
    let listening = crate::lab::wait_for(Duration::from_secs(10), || {
        lab.docker(index, &["exec", container, "netstat", "-ltn"])
            .ok()
            .filter(|o| String::from_utf8_lossy(&o.stdout).contains(&format!(":{DEMO_PORT} ")))
    });
    if listening.is_none() {
        bail!("the receiver in {container} on host h{index} did not start listening on port {DEMO_PORT}");
    }
    Ok(())
}

/// Sends one line from `from_container` on host `from` to `to_ip`; returns the source address the
/// receiver (`to_container` on host `to`) recorded, or `None` if the exchange failed.
pub fn tcp_exchange(
    lab: &Lab,
    from: usize,
    from_container: &str,
    to: usize,
    to_container: &str,
    to_ip: &str,
) -> Result<Option<String>> {
    let _ = lab.docker(to, &["exec", to_container, "rm", "-f", "/tmp/seen"]);
    let out =
        crate::dockerd::docker_command(lab.host(from).docker_host.as_deref().unwrap_or_default())
            .args([
                "exec",
                from_container,
                "sh",
                "-c",
                &format!("echo hello-from-{from_container} | nc -w 5 {to_ip} {DEMO_PORT}"),
            ])
            .output()
            .context("cannot run docker exec")?;
    let answer = String::from_utf8_lossy(&out.stdout).to_string();
    if !answer.contains("seen-from") {
        return Ok(None);
    }
    let seen = crate::lab::wait_for(Duration::from_secs(5), || {
        lab.docker(to, &["exec", to_container, "cat", "/tmp/seen"])
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    });
    Ok(seen.and_then(|s| s.split_whitespace().next().map(str::to_string)))
}

/// The A records busybox's `nslookup` prints for `name` from `container` on host `index` (empty
/// when it finds none or fails).
pub fn lookup(lab: &Lab, index: usize, container: &str, name: &str) -> BTreeSet<Ipv4Addr> {
    match lab.docker(index, &["exec", container, "nslookup", name]) {
        Ok(out) => nslookup_addresses(&String::from_utf8_lossy(&out.stdout)),
        Err(_) => BTreeSet::new(),
    }
}

/// The addresses busybox's `nslookup` prints after the `Name:` line (the server's own address,
/// printed before it, is not an answer).
pub fn nslookup_addresses(text: &str) -> BTreeSet<Ipv4Addr> {
    text.split_once("Name:")
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Address:"))
        .filter_map(|a| a.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Waits (polling, up to `deadline`) until `name` resolves to exactly `ip` from `container` on
/// host `index`; how long it took.
fn wait_resolves(
    lab: &Lab,
    (index, container): (usize, &str),
    name: &str,
    ip: &str,
    deadline: Duration,
) -> Option<Duration> {
    let want: BTreeSet<Ipv4Addr> = ip.parse().ok().into_iter().collect();
    let started = Instant::now();
    crate::lab::wait_for(deadline, || {
        (lookup(lab, index, container, name) == want).then(|| started.elapsed())
    })
}

/// Starts the service container [`NAMES_SERVICE`] on host `index` with a receiver; its info.
fn start_service(lab: &Lab, index: usize) -> Result<ContainerInfo> {
    let c = lab.run_container(index, NAMES_SERVICE, &[BUSYBOX_IMAGE, "sleep", "86400"])?;
    start_receiver(lab, index, NAMES_SERVICE)?;
    Ok(c)
}

/// Resolves [`NAMES_FQDN`] to `service` from the client, then connects by name.
fn reach_by_name(
    lab: &Lab,
    (server, service): (usize, &ContainerInfo),
    (client, client_container): (usize, &str),
    out: &mut dyn Write,
) -> Result<NameReach> {
    let resolved_after = wait_resolves(
        lab,
        (client, client_container),
        NAMES_FQDN,
        &service.ip,
        NAMES_DEADLINE,
    );
    let seen = match resolved_after {
        None => {
            let got = lookup(lab, client, client_container, NAMES_FQDN);
            writeln!(
                out,
                "name {NAMES_FQDN} from {client_container} on h{client}: FAILED, not {} within {NAMES_DEADLINE:?} (last answer {got:?})",
                service.ip
            )?;
            None
        }
        Some(after) => {
            let seen = tcp_exchange(
                lab,
                client,
                client_container,
                server,
                NAMES_SERVICE,
                NAMES_FQDN,
            )?;
            writeln!(
                out,
                "name {NAMES_FQDN} from {client_container} on h{client} -> {} after {:.1} s; tcp by name: {}",
                service.ip,
                after.as_secs_f64(),
                match &seen {
                    Some(ip) => format!("ok, the receiver saw {ip}"),
                    None => "FAILED".to_string(),
                }
            )?;
            seen
        }
    };
    Ok(NameReach {
        ip: service.ip.clone(),
        resolved_after,
        seen,
    })
}

/// The names step: [`NAMES_SERVICE`] on host `server` reached by name from `client_container` on
/// host `client`, then recreated with a new IP (a placeholder takes the old one, as another
/// container would) and reached by the same name again.
pub fn names_step(
    lab: &Lab,
    server: usize,
    (client, client_container, client_ip): (usize, &str, &str),
    out: &mut dyn Write,
) -> Result<NamesReport> {
    writeln!(out, "\ncontainer names across hosts:")?;
    let first = start_service(lab, server)?;
    writeln!(out, "container {NAMES_SERVICE} on h{server}: {}", first.ip)?;
    let first = reach_by_name(lab, (server, &first), (client, client_container), out)?;
    lab.docker(server, &["rm", "-f", NAMES_SERVICE])?;
    lab.run_container(server, "web-old-ip", &[BUSYBOX_IMAGE, "sleep", "86400"])?;
    let recreated = start_service(lab, server)?;
    writeln!(
        out,
        "container {NAMES_SERVICE} recreated on h{server}: {} (was {})",
        recreated.ip, first.ip
    )?;
    let recreated = reach_by_name(lab, (server, &recreated), (client, client_container), out)?;
    Ok(NamesReport {
        client_ip: client_ip.to_string(),
        first,
        recreated,
    })
}

/// Waits until every Docker host's subnet has an `Available` route to that host and the vRouter applied
/// it; prints progress. Returns the last status either way.
pub fn wait_routes(lab: &Lab, timeout: Duration, out: &mut dyn Write) -> (bool, LabStatus) {
    let deadline = Instant::now() + timeout;
    let mut last_line = String::new();
    loop {
        let status = lab.status();
        let wanted: Vec<_> = lab
            .hosts()
            .iter()
            .filter(|h| h.docker_host.is_some())
            .collect();
        let ready: Vec<&str> = wanted
            .iter()
            .filter(|h| {
                status.routes.iter().any(|r| {
                    r.destination == h.subnet
                        && r.next_hop_host == h.name
                        && r.status == "Available"
                })
            })
            .map(|h| h.name.as_str())
            .collect();
        let applied = lab
            .admin_sync(|c| async move { c.dataplane().await })
            .is_ok_and(|d| d.applied_generation >= d.wanted_generation && d.last_error.is_none());
        let line = format!(
            "  routes Available: {}/{} ({}), agents: {}",
            ready.len(),
            wanted.len(),
            if ready.is_empty() {
                "-".to_string()
            } else {
                ready.join(", ")
            },
            status
                .hosts
                .iter()
                .map(|h| format!("{} {}", h.name, h.agent))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if line != last_line {
            let _ = writeln!(out, "{line}");
            last_line = line;
        }
        if ready.len() == wanted.len() && applied {
            return (true, status);
        }
        if Instant::now() >= deadline {
            return (false, status);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A table of hosts, subnets, routes and agents.
pub fn table(status: &LabStatus) -> String {
    let mut s = format!(
        "{:<4} {:<15} {:<24} {:<14} {:<10} {:<10}\n",
        "HOST", "PRIVATE IP", "INSTANCE", "SUBNET", "ROUTE", "AGENT"
    );
    for h in &status.hosts {
        let route = route_cell(status, h);
        s.push_str(&format!(
            "{:<4} {:<15} {:<24} {:<14} {:<10} {:<10}\n",
            h.name, h.private_ip, h.instance_id, h.subnet, route, h.agent
        ));
    }
    s
}

/// The ROUTE cell of a host: the status of the entry for its subnet (`Available`, `Pending`, `none`;
/// `→hN` when it points at another host), with `×N` when N tables hold it alike (a lab with zones).
fn route_cell(status: &LabStatus, h: &crate::lab::HostStatus) -> String {
    let cells: Vec<String> = status
        .routes
        .iter()
        .filter(|r| r.destination == h.subnet)
        .map(|r| {
            if r.next_hop_host == h.name {
                r.status.clone()
            } else {
                format!("{}→{}", r.status, r.next_hop_host)
            }
        })
        .collect();
    match cells.as_slice() {
        [] => "none".into(),
        [one] => one.clone(),
        [first, rest @ ..] if rest.iter().all(|c| c == first) => format!("{first}×{}", cells.len()),
        all => all.join(","),
    }
}

/// Runs the demo on a new lab. With `keep` the lab stays up afterwards.
pub fn run(
    opts: LabOptions,
    keep: bool,
    route_timeout: Duration,
    out: &mut dyn Write,
) -> Result<DemoReport> {
    let started = Instant::now();
    writeln!(
        out,
        "crossdock demo: {} hosts on Docker {}, lab {:?}",
        opts.hosts, opts.docker, opts.name
    )?;
    let lab = Lab::up(opts)?;
    writeln!(out, "lab up in {:.1} s", started.elapsed().as_secs_f64())?;
    let result = run_on(&lab, route_timeout, out);
    if keep {
        let name = lab.keep().name;
        writeln!(
            out,
            "\nthe lab stays up: `crossdock lab status --name {name}`, `crossdock lab exec --name {name} h1 -- docker ps`, `crossdock lab down --name {name}`"
        )?;
    } else {
        if result.is_err() {
            // The lab (and its logs) is about to go: show what the agents said.
            for h in lab.hosts() {
                let log = std::fs::read_to_string(h.agent_log()).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                writeln!(
                    out,
                    "--- {} agent log ({}), last lines:",
                    h.name,
                    h.agent_log().display()
                )?;
                for l in &lines[lines.len().saturating_sub(8)..] {
                    writeln!(out, "    {l}")?;
                }
            }
            writeln!(
                out,
                "(run with --keep to leave the lab up for a closer look)"
            )?;
        }
        drop(lab);
        writeln!(out, "lab removed")?;
    }
    writeln!(out, "demo took {:.1} s", started.elapsed().as_secs_f64())?;
    result
}

/// The demo's steps on an existing lab.
pub fn run_on(lab: &Lab, route_timeout: Duration, out: &mut dyn Write) -> Result<DemoReport> {
    let hosts: Vec<usize> = lab
        .hosts()
        .iter()
        .filter(|h| h.docker_host.is_some())
        .map(|h| h.index)
        .collect();
    if hosts.len() < 2 {
        bail!("the demo needs at least two hosts with Docker");
    }
    let mut containers = Vec::new();
    for &i in &hosts {
        let name = format!("demo{i}");
        let c = lab.run_container(i, &name, &[BUSYBOX_IMAGE, "sleep", "86400"])?;
        writeln!(out, "container {name} on h{i}: {}", c.ip)?;
        start_receiver(lab, i, &name)?;
        containers.push((format!("h{i}"), c));
    }
    writeln!(out, "waiting for the agents to register the routes ...")?;
    let (routes_ok, _) = wait_routes(lab, route_timeout, out);
    if !routes_ok {
        writeln!(
            out,
            "  not every route became Available within {route_timeout:?}: the probes below will show what works (agent logs: {}/hosts/<h>/agent.log)",
            lab.state().dir.display()
        )?;
    }
    let mut pings = Vec::new();
    let mut exchanges = Vec::new();
    for (k, &from) in hosts.iter().enumerate() {
        let to = hosts[(k + 1) % hosts.len()];
        let (from_name, from_c) = &containers[k];
        let (to_name, to_c) = &containers[(k + 1) % hosts.len()];
        let ok = ping(lab, from, &format!("demo{from}"), &to_c.ip)?;
        writeln!(
            out,
            "ping {from_name} {} -> {to_name} {}: {}",
            from_c.ip,
            to_c.ip,
            if ok { "ok" } else { "FAILED" }
        )?;
        pings.push((from_name.clone(), to_name.clone(), ok));
        let seen = tcp_exchange(
            lab,
            from,
            &format!("demo{from}"),
            to,
            &format!("demo{to}"),
            &to_c.ip,
        )?;
        match &seen {
            Some(ip) if *ip == from_c.ip => writeln!(
                out,
                "tcp  {from_name} {} -> {to_name} {}:{DEMO_PORT}: ok, the receiver saw the sender's container IP {ip}",
                from_c.ip, to_c.ip
            )?,
            Some(ip) => writeln!(
                out,
                "tcp  {from_name} {} -> {to_name} {}:{DEMO_PORT}: connected, but the receiver saw {ip} (NATed), not {}",
                from_c.ip, to_c.ip, from_c.ip
            )?,
            None => writeln!(out, "tcp  {from_name} {} -> {to_name} {}:{DEMO_PORT}: FAILED", from_c.ip, to_c.ip)?,
        }
        exchanges.push((from_name.clone(), to_name.clone(), seen));
    }
    let names = if lab.state().names {
        let (_, client) = &containers[1];
        Some(names_step(
            lab,
            hosts[0],
            (hosts[1], &format!("demo{}", hosts[1]), &client.ip),
            out,
        )?)
    } else {
        None
    };
    let status = lab.status();
    writeln!(out, "\n{}", table(&status))?;
    let report = DemoReport {
        containers,
        pings,
        exchanges,
        names,
        status,
    };
    if report.passed() {
        writeln!(
            out,
            "demo passed: containers on different hosts talk by their own IPs{}",
            if report.names.is_some() {
                ", and by name"
            } else {
                ""
            }
        )?;
        Ok(report)
    } else {
        bail!(
            "demo failed: see above (agent logs under {}/hosts/)",
            lab.state().dir.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nslookup_answers_are_the_addresses_after_the_name() {
        let out = "Server:\t\t10.1.12.1\nAddress:\t10.1.12.1:53\n\nName:\tweb.crossdock.internal\nAddress: 10.1.11.3\nAddress: 10.1.13.2\n\n";
        let want: BTreeSet<Ipv4Addr> =
            ["10.1.11.3".parse().unwrap(), "10.1.13.2".parse().unwrap()].into();
        assert_eq!(nslookup_addresses(out), want);
        assert!(nslookup_addresses("Server: 10.1.12.1\nAddress: 10.1.12.1:53\n** server can't find web.crossdock.internal: NXDOMAIN\n").is_empty());
    }

    fn reach(ip: &str, seen: Option<&str>) -> NameReach {
        NameReach {
            ip: ip.into(),
            resolved_after: Some(Duration::from_millis(300)),
            seen: seen.map(str::to_string),
        }
    }

    #[test]
    fn the_names_step_passes_only_with_a_new_ip_both_times_reached_from_the_client() {
        let ok = NamesReport {
            client_ip: "10.1.12.2".into(),
            first: reach("10.1.11.3", Some("10.1.12.2")),
            recreated: reach("10.1.11.5", Some("10.1.12.2")),
        };
        assert!(ok.passed());
        let same_ip = NamesReport {
            recreated: reach("10.1.11.3", Some("10.1.12.2")),
            ..ok.clone()
        };
        assert!(!same_ip.passed());
        let natted = NamesReport {
            recreated: reach("10.1.11.5", Some("192.168.1.12")),
            ..ok.clone()
        };
        assert!(!natted.passed());
        let unresolved = NamesReport {
            first: NameReach {
                resolved_after: None,
                ..reach("10.1.11.3", None)
            },
            ..ok
        };
        assert!(!unresolved.passed());
    }
    use crate::lab::{HostStatus, RouteStatus};

    fn host(name: &str, subnet: &str, agent: &str) -> HostStatus {
        HostStatus {
            name: name.into(),
            netns: format!("cdl-x-{name}"),
            private_ip: "192.168.1.11".into(),
            instance_id: format!("i-{name}"),
            eni_id: String::new(),
            docker_host: String::new(),
            subnet: subnet.into(),
            agent: agent.into(),
            agent_detail: String::new(),
            agent_socket: Default::default(),
            agent_config: Default::default(),
            dockerd: "running".into(),
            instance_status: "Running".into(),
            tags: vec![],
            vswitch: "vsw1".into(),
            route_table_id: String::new(),
        }
    }

    fn route(table: &str, dst: &str, host: &str, status: &str) -> RouteStatus {
        RouteStatus {
            route_table_id: table.into(),
            route_entry_id: "rte-1".into(),
            destination: dst.into(),
            next_hop_id: format!("i-{host}"),
            next_hop_host: host.into(),
            status: status.into(),
            route_entry_name: "crossdock".into(),
        }
    }

    #[test]
    fn the_table_shows_route_states_per_host() {
        let status = LabStatus {
            name: "x".into(),
            api_endpoint: String::new(),
            metadata_endpoint: String::new(),
            region_id: String::new(),
            vpc_id: String::new(),
            vswitch_id: String::new(),
            route_table_id: String::new(),
            admin_access_key_id: String::new(),
            admin_access_key_secret: String::new(),
            api_socket: Default::default(),
            admin_socket: Default::default(),
            docker_version: "20".into(),
            emulator: "running".into(),
            hosts: vec![
                host("h1", "10.0.0.0/24", "ready"),
                host("h2", "10.1.0.0/24", "stopped"),
                host("h3", "10.2.0.0/24", "ready"),
                host("h4", "10.3.0.0/24", "ready"),
            ],
            routes: vec![
                route("vtb-a", "10.0.0.0/24", "h1", "Pending"),
                route("vtb-a", "10.2.0.0/24", "h3", "Available"),
                route("vtb-b", "10.2.0.0/24", "h3", "Available"),
                route("vtb-a", "10.3.0.0/24", "h4", "Available"),
                route("vtb-b", "10.3.0.0/24", "h4", "Pending"),
            ],
            vswitches: vec![],
            route_tables: vec![],
        };
        let t = table(&status);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("HOST"));
        assert!(
            lines[1].contains("10.0.0.0/24")
                && lines[1].contains("Pending")
                && lines[1].contains("ready")
        );
        assert!(lines[2].contains("none") && lines[2].contains("stopped"));
        assert!(lines[3].contains("Available×2"), "{}", lines[3]);
        assert!(lines[4].contains("Available,Pending"), "{}", lines[4]);
    }
}
