//! Every check doctor runs, as pure functions of [`Facts`], in the order they are reported.
//!
//! Each follows one step of the recipe (Docker → subnet → forwarding → firewall → MTU → cloud) and
//! says what was seen and the exact command that repairs it. The dependencies are chosen so that one
//! broken thing fails one check: for instance `net.ipv4.ip_forward=0` also zeroes every interface's
//! forwarding flag, so the per-interface checks depend on `forwarding.ip-forward` and are held back
//! rather than failing beside it. The expected iptables rules are not restated here: they come from
//! `crossdock_hostnet::rules::desired_rules`, the same data the agent applies.

use crate::facts::{sample_peer, Facts, PermissionFact, ProbeMethod};
use crate::iptables::{
    is_blanket_accept, is_docker_raw_drop, masquerades, Packet, Ruleset, SavedTable, Walk,
};
use crate::model::{CheckDef, Outcome, Status};
use crossdock_alibaba::RouteEntry;
use crossdock_config::{Provider, SourceDestCheck};
use crossdock_hostnet::rules::{self as hrules, DesiredInput, Rule, Table};
use crossdock_routes::plan::{
    check_overlap, plan, Action, Desired, Marker, NetworkCidrs, Observed,
};
use ipnet::Ipv4Net;

/// How to make the agent restore what it owns; part of most fix texts.
pub const RESTART_AGENT: &str = "systemctl restart crossdock-agent";

/// The API actions crossdock calls, and how doctor probes the permission for each.
pub const ACTIONS: &[(&str, &str, ProbeMethod)] = &[
    (
        "cloud.permission.DescribeRouteTableList",
        "DescribeRouteTableList",
        ProbeMethod::Read,
    ),
    (
        "cloud.permission.DescribeRouteEntryList",
        "DescribeRouteEntryList",
        ProbeMethod::Read,
    ),
    (
        "cloud.permission.DescribeVSwitches",
        "DescribeVSwitches",
        ProbeMethod::Read,
    ),
    (
        "cloud.permission.CreateRouteEntry",
        "CreateRouteEntry",
        ProbeMethod::DryRun,
    ),
    (
        "cloud.permission.DeleteRouteEntry",
        "DeleteRouteEntry",
        ProbeMethod::NotProbed,
    ),
    (
        "cloud.permission.DescribeNetworkInterfaces",
        "DescribeNetworkInterfaces",
        ProbeMethod::Read,
    ),
    (
        "cloud.permission.ModifyNetworkInterfaceAttribute",
        "ModifyNetworkInterfaceAttribute",
        ProbeMethod::DryRun,
    ),
];

/// All checks, dependencies before dependents.
pub fn all() -> Vec<CheckDef<Facts>> {
    let mut defs = vec![
        CheckDef::new(
            "config",
            "configuration file loads and validates",
            &[],
            config,
        ),
        CheckDef::new(
            "agent.status",
            "crossdock agent answers on its health socket",
            &[],
            agent_status,
        ),
        CheckDef::new(
            "docker.reachable",
            "Docker engine answers",
            &["config"],
            docker_reachable,
        ),
        CheckDef::new(
            "docker.version",
            "Docker version and what it implies",
            &["docker.reachable"],
            docker_version,
        ),
        CheckDef::new(
            "docker.network",
            "served Docker network, its subnet and bridge",
            &["docker.reachable"],
            docker_network,
        ),
        CheckDef::new(
            "subnet.cluster-range",
            "container subnet inside the cluster range",
            &["config", "docker.network"],
            subnet_cluster_range,
        ),
        CheckDef::new(
            "host.external-interface",
            "interface towards the VPC",
            &["config"],
            external_interface,
        ),
        CheckDef::new(
            "forwarding.ip-forward",
            "IPv4 forwarding (net.ipv4.ip_forward)",
            &[],
            ip_forward,
        ),
        CheckDef::new(
            "forwarding.external",
            "forwarding on the external interface",
            &["host.external-interface", "forwarding.ip-forward"],
            forwarding_external,
        ),
        CheckDef::new(
            "forwarding.bridge",
            "forwarding on the Docker bridge",
            &["docker.network", "forwarding.ip-forward"],
            forwarding_bridge,
        ),
        CheckDef::new(
            "forwarding.rp-filter",
            "reverse-path filter lets peers' traffic in",
            &["host.external-interface"],
            rp_filter,
        ),
        CheckDef::new(
            "mtu.bridge",
            "bridge MTU fits the external interface",
            &["docker.network", "host.external-interface"],
            mtu,
        ),
        CheckDef::new(
            "firewall.iptables",
            "iptables rules readable",
            &[],
            firewall_iptables,
        ),
        CheckDef::new(
            "firewall.forward-chain",
            "crossdock's filter rules (CROSSDOCK-FORWARD) present",
            &["config", "firewall.iptables", "docker.network"],
            forward_chain,
        ),
        CheckDef::new(
            "firewall.forward-jump",
            "CROSSDOCK-FORWARD reached from the top of DOCKER-USER",
            &["firewall.iptables", "docker.network"],
            forward_jump,
        ),
        CheckDef::new(
            "firewall.forward-path",
            "a peer's packet to a local container is accepted by FORWARD",
            &[
                "firewall.forward-chain",
                "firewall.forward-jump",
                "host.external-interface",
            ],
            forward_path,
        ),
        CheckDef::new(
            "firewall.nat-exemption",
            "cluster traffic exempt from Docker's MASQUERADE",
            &["config", "firewall.iptables", "docker.network"],
            nat_exemption,
        ),
        CheckDef::new(
            "firewall.raw-exemption",
            "Docker 28.2+ raw-table drop passes cluster sources",
            &[
                "config",
                "firewall.iptables",
                "docker.network",
                "docker.version",
            ],
            raw_exemption,
        ),
        CheckDef::new(
            "firewall.forward-policy",
            "FORWARD policy, and no blanket ACCEPT",
            &["firewall.iptables"],
            forward_policy,
        ),
        CheckDef::new(
            "cloud.metadata",
            "ECS metadata service reachable",
            &["config"],
            metadata,
        ),
        CheckDef::new(
            "cloud.credentials",
            "cloud credentials valid and not expiring",
            &["cloud.metadata"],
            credentials,
        ),
    ];
    for (id, action, _) in ACTIONS {
        let action = *action;
        defs.push(CheckDef::new(
            id,
            "permission for an API action crossdock uses",
            &["cloud.credentials"],
            move |f: &Facts| permission(f, action),
        ));
    }
    defs.extend([
        CheckDef::new(
            "cloud.route-table",
            "route table(s) to register in",
            &["cloud.credentials"],
            route_table,
        ),
        CheckDef::new(
            "cloud.route",
            "this host's VPC route",
            &["cloud.route-table", "docker.network"],
            cloud_route,
        ),
        CheckDef::new(
            "cloud.route-conflicts",
            "no duplicate or conflicting routes",
            &["cloud.route-table", "docker.network"],
            route_conflicts,
        ),
        CheckDef::new(
            "cloud.route-quota",
            "route table quota headroom",
            &["cloud.route-table"],
            route_quota,
        ),
        CheckDef::new(
            "cloud.source-dest-check",
            "ENI source/destination check off",
            &["cloud.credentials"],
            source_dest_check,
        ),
        CheckDef::new(
            "subnet.vpc-overlap",
            "container subnet clear of the VPC and its vSwitches",
            &["docker.network", "cloud.metadata"],
            vpc_overlap,
        ),
    ]);
    defs.extend(crate::fleet_checks::defs());
    defs.extend(crate::table_checks::defs());
    defs.extend(crate::names_checks::defs());
    defs
}

pub(crate) fn nets(v: &[Ipv4Net]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------- config, agent, Docker

fn config(f: &Facts) -> Outcome {
    match &f.config.config {
        Ok(c) => Outcome::ok(format!(
            "{}: cluster {}, Docker network {}, cloud provider {}",
            f.config.path.display(),
            nets(&c.cluster_cidrs),
            c.docker.network,
            match c.cloud.provider {
                Provider::Alibaba => "alibaba",
                Provider::None => "none",
            }
        )),
        Err(e) => Outcome::fail(
            format!("{}: {}: {}", f.config.path.display(), e.field, e.message),
            e.fix.clone(),
        ),
    }
}

fn agent_status(f: &Facts) -> Outcome {
    use crate::facts::AgentState;
    match &f.agent {
        AgentState::NotRunning { socket, message } => Outcome::warn(
            format!("no agent answers on {}: {message}", socket.display()),
            "start the agent so that rules, forwarding and the route are kept in place: systemctl enable --now crossdock-agent (or set CROSSDOCK_SOCKET if it listens elsewhere)",
        ),
        AgentState::Running(a) => {
            let failed: Vec<String> = a
                .conditions
                .iter()
                .filter(|(_, c)| c.state == crossdock_status::State::Failed)
                .map(|(k, c)| {
                    format!(
                        "{k}: {}",
                        c.message
                            .clone()
                            .or_else(|| c.reason.clone())
                            .unwrap_or_else(|| "failed".into())
                    )
                })
                .collect();
            let head = format!(
                "agent {} (pid {}) on {}, subnet {}",
                a.version.as_deref().unwrap_or("?"),
                a.pid.map_or("?".into(), |p| p.to_string()),
                a.socket.display(),
                a.subnet.as_deref().unwrap_or("-")
            );
            if failed.is_empty() {
                let states: Vec<String> = a
                    .conditions
                    .iter()
                    .map(|(k, c)| format!("{k}={}", c.state))
                    .collect();
                Outcome::ok(format!("{head}; {}", states.join(" ")))
            } else {
                Outcome::warn(
                    format!("{head}; failed conditions: {}", failed.join("; ")),
                    "see the matching checks below for the cause; `crossdock status` and the agent log (journalctl -u crossdock-agent) show the agent's view",
                )
            }
        }
    }
}

fn docker_reachable(f: &Facts) -> Outcome {
    if let Some(s) = f.static_subnet() {
        return Outcome::ok(format!(
            "not used: docker.static_subnet = {s} is served without Docker"
        ));
    }
    match &f.docker {
        Ok(d) => Outcome::ok(format!(
            "Docker {} (API {}) at {}",
            d.version, d.api_version, d.endpoint
        )),
        Err(u) => Outcome::fail(u.message.clone(), u.fix.clone()),
    }
}

/// `(major, minor)` of a Docker version string (`28.5.2+dfsg4`, `20.10.24`).
pub fn docker_major_minor(v: &str) -> Option<(u32, u32)> {
    let mut it = v.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

fn docker_version(f: &Facts) -> Outcome {
    if f.static_subnet().is_some() {
        return Outcome::skip("no Docker (docker.static_subnet)");
    }
    let Ok(d) = &f.docker else {
        return Outcome::skip("Docker not reachable");
    };
    match docker_major_minor(&d.version) {
        None => Outcome::warn(
            format!("cannot read Docker's version from `{}`", d.version),
            "check `docker version`; doctor assumes a current release",
        ),
        Some((maj, min)) if (maj, min) < (17, 6) => Outcome::fail(
            format!(
                "Docker {} predates the DOCKER-USER chain (17.06)",
                d.version
            ),
            "upgrade Docker to a supported release (20.10 or later)",
        ),
        Some((maj, min)) => {
            let note = if (maj, min) >= (28, 2) {
                "adds a raw-table DROP per container for traffic from other interfaces (28.2+): crossdock's raw ACCEPT for cluster sources must sit ahead of it"
            } else if maj >= 28 {
                "drops unpublished ports in its DOCKER chain whatever the FORWARD policy (28.0+): crossdock's DOCKER-USER rules admit cluster traffic"
            } else {
                "no raw-table drop; FORWARD filtering through DOCKER-USER"
            };
            Outcome::ok(format!("Docker {}: {note}", d.version))
        }
    }
}

fn docker_network(f: &Facts) -> Outcome {
    if let Some(s) = f.static_subnet() {
        return Outcome::ok(format!(
            "static subnet {s} (docker.static_subnet): no bridge, so no firewall rules are kept"
        ));
    }
    let Ok(d) = &f.docker else {
        return Outcome::skip("Docker not reachable");
    };
    let n = match &d.network {
        Ok(n) => n,
        Err(u) => return Outcome::fail(u.message.clone(), u.fix.clone()),
    };
    let Some(subnet) = n.subnet else {
        return Outcome::fail(
            format!("network {} has no IPv4 subnet", n.name),
            "serve a bridge network with an IPv4 subnet: set \"bip\" in /etc/docker/daemon.json for docker0, or create the network with --subnet",
        );
    };
    let mode = n
        .options
        .get("com.docker.network.bridge.gateway_mode_ipv4")
        .map(String::as_str)
        .unwrap_or("nat");
    let evidence = format!(
        "network {} ({} driver, id {}): subnet {subnet}, gateway {}, bridge {}, gateway mode {mode}, {} container(s)",
        n.name,
        n.driver,
        n.id.chars().take(12).collect::<String>(),
        n.gateway.map_or("-".into(), |g| g.to_string()),
        n.bridge,
        n.containers.len()
    );
    if n.driver != "bridge" {
        return Outcome::fail(
            evidence,
            format!("crossdock routes a bridge network; set [docker] network to a bridge network (not {} driver)", n.driver),
        );
    }
    if mode == "nat-unprotected" {
        return Outcome::warn(
            evidence,
            "gateway mode nat-unprotected opens every container port to anyone who can route here; recreate the network without com.docker.network.bridge.gateway_mode_ipv4 (crossdock admits cluster traffic itself)",
        );
    }
    Outcome::ok(evidence)
}

fn subnet_cluster_range(f: &Facts) -> Outcome {
    let (Some(cfg), Some(subnet)) = (f.cfg(), f.subnet()) else {
        return Outcome::skip("no configuration or subnet");
    };
    match crossdock_config::check_subnet(subnet, cfg) {
        Ok(()) => Outcome::ok(format!("{subnet} lies inside {}", nets(&cfg.cluster_cidrs))),
        Err(e) => Outcome::fail(e.message, e.fix),
    }
}

// ---------------------------------------------------------------- host

fn external_interface(f: &Facts) -> Outcome {
    match &f.host.external {
        Err(u) => Outcome::fail(u.message.clone(), u.fix.clone()),
        Ok(e) => {
            let ev = format!(
                "{} ({}{}), MTU {}",
                e.link.name,
                e.chosen_by,
                e.default_gateway
                    .map_or(String::new(), |g| format!(", peers via {g}")),
                e.link.mtu,
            );
            if !e.link.up {
                Outcome::fail(
                    format!("{ev}; the link is down"),
                    format!("bring it up: ip link set {} up", e.link.name),
                )
            } else {
                Outcome::ok(ev)
            }
        }
    }
}

fn sysctl_is(f: &Facts, path: &str, want: &str) -> Result<(bool, String), Outcome> {
    match f.sysctl(path) {
        None => Err(Outcome::skip(format!("{path} not gathered"))),
        Some(Err(u)) => Err(Outcome::fail(u.message.clone(), u.fix.clone())),
        Some(Ok(v)) => Ok((v.trim() == want, v.trim().to_string())),
    }
}

fn dotted(path: &str) -> String {
    hrules::SysctlSetting {
        path: path.to_string(),
        value: String::new(),
    }
    .dotted()
}

fn sysctl_check(f: &Facts, path: &str, why: &str) -> Outcome {
    let name = dotted(path);
    match sysctl_is(f, path, "1") {
        Err(o) => o,
        Ok((true, _)) => Outcome::ok(format!("{name} = 1")),
        Ok((false, v)) => Outcome::fail(
            format!("{name} = {v}: {why}"),
            format!("sysctl -w {name}=1 (the agent keeps it on; {RESTART_AGENT} re-applies it)"),
        ),
    }
}

fn ip_forward(f: &Facts) -> Outcome {
    sysctl_check(
        f,
        "net/ipv4/ip_forward",
        "this host does not route packets between its containers and the VPC",
    )
}

fn forwarding_external(f: &Facts) -> Outcome {
    let Some(ext) = f.external_name() else {
        return Outcome::skip("external interface unknown");
    };
    sysctl_check(
        f,
        &format!("net/ipv4/conf/{ext}/forwarding"),
        "packets arriving from the VPC are not forwarded to containers",
    )
}

fn forwarding_bridge(f: &Facts) -> Outcome {
    let Some(n) = f.network() else {
        return Outcome::skip("no network");
    };
    sysctl_check(
        f,
        &format!("net/ipv4/conf/{}/forwarding", n.bridge),
        "packets from containers are not forwarded towards the VPC",
    )
}

fn rp_filter(f: &Facts) -> Outcome {
    let Some(ext) = f.external_name() else {
        return Outcome::skip("external interface unknown");
    };
    let read = |p: &str| -> Option<u32> {
        f.sysctl(p)
            .and_then(|r| r.as_ref().ok())
            .and_then(|v| v.trim().parse().ok())
    };
    let all = read("net/ipv4/conf/all/rp_filter");
    let dev = read(&format!("net/ipv4/conf/{ext}/rp_filter"));
    let (Some(all), Some(dev)) = (all, dev) else {
        return Outcome::warn(
            format!("cannot read net.ipv4.conf.all.rp_filter / net.ipv4.conf.{ext}.rp_filter"),
            "run doctor as root, or check them with sysctl",
        );
    };
    // The kernel applies the larger of the two values.
    let effective = all.max(dev);
    let head = format!("rp_filter all={all} {ext}={dev} (effective {effective})");
    if effective != 1 {
        let mode = if effective == 0 { "off" } else { "loose" };
        return Outcome::ok(format!("{head}: {mode}, peers' packets pass"));
    }
    match &f.host.peer_route {
        Some(Ok(r)) if r.dev == ext && r.kind == "unicast" => Outcome::ok(format!(
            "{head}: strict, but the route back to peers ({} via {}) leaves by {ext}, so their packets pass",
            r.destination,
            r.gateway.map_or("direct".into(), |g| g.to_string())
        )),
        Some(Ok(r)) => Outcome::fail(
            format!(
                "{head}: strict, and the route back to a peer ({}) is {} dev {}: packets from other hosts' containers arriving on {ext} are dropped",
                r.destination, r.kind, r.dev
            ),
            format!(
                "sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.{ext}.rp_filter=2 (loose), or route the cluster range via {ext}"
            ),
        ),
        Some(Err(u)) => Outcome::fail(
            format!("{head}: strict, and there is no route back to the peers: {}", u.message),
            format!(
                "sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.{ext}.rp_filter=2, or add a route for the cluster range via {ext}"
            ),
        ),
        None => Outcome::warn(
            format!("{head}: strict; the route back to peers was not looked up"),
            format!("check `ip route get <peer container ip>` leaves by {ext}, or set rp_filter to 2 (loose)"),
        ),
    }
}

fn mtu(f: &Facts) -> Outcome {
    let ext = match &f.host.external {
        Ok(e) => &e.link,
        Err(_) => return Outcome::skip("external interface unknown"),
    };
    let br = match &f.host.bridge {
        Some(Ok(b)) => b,
        Some(Err(u)) => return Outcome::fail(u.message.clone(), u.fix.clone()),
        None => return Outcome::skip("bridge not looked up"),
    };
    let ev = format!("{} MTU {}, {} MTU {}", br.name, br.mtu, ext.name, ext.mtu);
    if br.mtu > ext.mtu {
        Outcome::warn(
            format!("{ev}: containers send packets larger than the VPC link carries (fragmented, or lost where ICMP is filtered)"),
            format!("set the bridge MTU to {}: \"mtu\": {} in /etc/docker/daemon.json for docker0, or the network option com.docker.network.driver.mtu", ext.mtu, ext.mtu),
        )
    } else if br.mtu < ext.mtu {
        Outcome::ok(format!(
            "{ev}: smaller than the link, no fragmentation (full-size frames would use {})",
            ext.mtu
        ))
    } else {
        Outcome::ok(ev)
    }
}

// ---------------------------------------------------------------- firewall

fn firewall_iptables(f: &Facts) -> Outcome {
    match &f.host.iptables {
        Err(u) => Outcome::fail(u.message.clone(), u.fix.clone()),
        Ok(rs) => {
            let ev = format!(
                "{}; tables {}",
                rs.generator.as_deref().unwrap_or("iptables-save"),
                rs.tables.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            if let Some(w) = rs.warnings.first() {
                return Outcome::warn(
                    format!("{ev}; {w}"),
                    "rules live in both the legacy and the nf_tables backend; make Docker and crossdock use the same one (update-alternatives --config iptables) and remove the other's rules",
                );
            }
            Outcome::ok(ev)
        }
    }
}

/// The inputs of `desired_rules` from the facts.
fn desired(f: &Facts) -> Option<(DesiredInput, Vec<Rule>)> {
    let cfg = f.cfg()?;
    let n = f.network()?;
    let input = DesiredInput {
        cluster_cidrs: cfg.cluster_cidrs.clone(),
        local_subnet: n.subnet?,
        bridge: Some(n.bridge.clone()),
        scrape: None,
        names: None,
    };
    let rules = hrules::desired_rules(&input);
    Some((input, rules))
}

fn table_of(rs: &Ruleset, t: Table) -> Option<&SavedTable> {
    Some(rs.table(t.as_str()))
}

fn commands(rules: &[&Rule]) -> String {
    rules
        .iter()
        .map(|r| format!("iptables {r}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The content rules of one of crossdock's chains: which are missing.
fn chain_content(f: &Facts, table: Table, chain: &str, what: &str) -> Outcome {
    chain_content_with(f, table, chain, what, false)
}

/// The rule without its `-j TARGET` (the last two arguments).
fn without_target(args: &[String]) -> &[String] {
    match args.len().checked_sub(2) {
        Some(n) if args[n] == "-j" => &args[..n],
        _ => args,
    }
}

/// [`chain_content`], optionally comparing rules without their targets.
fn chain_content_with(
    f: &Facts,
    table: Table,
    chain: &str,
    what: &str,
    ignore_target: bool,
) -> Outcome {
    let (Ok(rs), Some((_, rules))) = (&f.host.iptables, desired(f)) else {
        return Outcome::skip("iptables or network unknown");
    };
    let want: Vec<&Rule> = rules
        .iter()
        .filter(|r| r.table == table && r.chain == chain)
        .collect();
    let Some(t) = table_of(rs, table) else {
        return Outcome::fail(format!("no {} table", table), "check the iptables backend");
    };
    let Some(c) = t.chain(chain) else {
        return Outcome::fail(
            format!("chain {chain} does not exist in the {table} table: {what} is missing"),
            format!(
                "{RESTART_AGENT} (the agent creates it at once); by hand: iptables -t {table} -N {chain}; {}",
                commands(&want)
            ),
        );
    };
    let missing: Vec<&Rule> = want
        .iter()
        .copied()
        .filter(|r| {
            if ignore_target {
                !c.rules
                    .iter()
                    .any(|have| without_target(&have.args) == without_target(&r.args))
            } else {
                c.position(&r.args).is_none()
            }
        })
        .collect();
    let foreign: Vec<String> = c
        .rules
        .iter()
        .filter(|r| !hrules::is_tagged(&r.args))
        .map(|r| r.text())
        .collect();
    if !missing.is_empty() {
        return Outcome::fail(
            format!(
                "{chain} has {} rule(s), {} of the {} expected missing: {}",
                c.rules.len(),
                missing.len(),
                want.len(),
                missing
                    .iter()
                    .map(|r| format!("`{}`", crate::iptables::shell_join(&r.args)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!(
                "{RESTART_AGENT} (the agent restores them at once); by hand: {}",
                commands(&missing)
            ),
        );
    }
    let ev = format!(
        "{chain}: all {} expected rule(s) present ({})",
        want.len(),
        want.iter()
            .map(|r| crate::iptables::shell_join(&r.args))
            .collect::<Vec<_>>()
            .join("; ")
    );
    if !foreign.is_empty() {
        return Outcome::warn(
            format!("{ev}; rules not written by crossdock in its chain: {}", foreign.join("; ")),
            format!("remove them (iptables -t {table} -D {chain} <rule>); crossdock's chains are its own and rewritten on every resync"),
        );
    }
    Outcome::ok(ev)
}

fn forward_chain(f: &Facts) -> Outcome {
    chain_content(
        f,
        Table::Filter,
        hrules::FORWARD_CHAIN,
        "the ACCEPT for cluster traffic to local containers",
    )
}

// `jump_rules` has one rule per table of `Table` (its unit tests say so): the expect cannot fire.
#[allow(clippy::expect_used)]
fn jump_rule(t: Table) -> Rule {
    hrules::jump_rules()
        .into_iter()
        .find(|r| r.table == t)
        .expect("one jump per table")
}

/// A peer's new packet to a local container, as it crosses this host.
fn inbound_packet(f: &Facts) -> Option<Packet> {
    let cfg = f.cfg()?;
    let n = f.network()?;
    let subnet = n.subnet?;
    let peer = sample_peer(&cfg.cluster_cidrs, Some(subnet))?;
    let dst = n
        .containers
        .first()
        .copied()
        .or_else(|| subnet.hosts().nth(1))?;
    let ext = f.external_name().unwrap_or("eth0");
    Some(
        Packet::new(peer, dst)
            .arriving_on(ext)
            .leaving_by(&n.bridge),
    )
}

fn forward_jump(f: &Facts) -> Outcome {
    let Ok(rs) = &f.host.iptables else {
        return Outcome::skip("iptables unknown");
    };
    let jump = jump_rule(Table::Filter);
    let Some(filter) = table_of(rs, Table::Filter) else {
        return Outcome::skip("no filter table");
    };
    let fix = format!(
        "{RESTART_AGENT} (it re-inserts the jump at the top); by hand: iptables -t filter -I {} 1 {}",
        hrules::DOCKER_USER,
        crate::iptables::shell_join(&jump.args)
    );
    let Some(user) = filter.chain(hrules::DOCKER_USER) else {
        return Outcome::fail(
            "chain DOCKER-USER does not exist: Docker is not managing iptables, or runs the nftables firewall backend",
            "let Docker manage iptables (daemon.json \"iptables\": true, \"firewall-backend\": \"iptables\") and restart Docker, then the agent",
        );
    };
    let pos = user.position(&jump.args);
    let Some(pkt) = inbound_packet(f) else {
        return Outcome::skip("no sample packet (configuration or subnet unknown)");
    };
    let trace = filter.trace("FORWARD", &pkt);
    let reached = trace.entered(hrules::FORWARD_CHAIN);
    let path = format!(
        "a packet {} -> {} (in {}, out {})",
        pkt.src,
        pkt.dst,
        pkt.in_if.as_deref().unwrap_or("?"),
        pkt.out_if.as_deref().unwrap_or("?"),
    );
    match (pos, reached) {
        (None, _) => Outcome::fail(
            format!(
                "the jump from DOCKER-USER to {} is missing; {path} ends: {}",
                hrules::FORWARD_CHAIN,
                trace.describe()
            ),
            fix,
        ),
        (Some(0), true) => Outcome::ok(format!(
            "DOCKER-USER #1 jumps to {} and FORWARD reaches it",
            hrules::FORWARD_CHAIN
        )),
        (Some(p), true) => Outcome::warn(
            format!(
                "FORWARD reaches {} but the jump is DOCKER-USER #{} (rules above it decide first)",
                hrules::FORWARD_CHAIN,
                p + 1
            ),
            fix,
        ),
        // Decided before DOCKER-USER: harmless if accepted (firewall.forward-policy judges how wide).
        (Some(_), false) if trace.verdict == "ACCEPT" => Outcome::ok(format!(
            "the jump is in place, but {path} is accepted before it: {}",
            trace.describe()
        )),
        (Some(_), false) => Outcome::fail(
            format!(
                "{path} never reaches {}: {}",
                hrules::FORWARD_CHAIN,
                trace.describe()
            ),
            "remove or narrow the rule named above: it decides before DOCKER-USER, where crossdock admits cluster traffic",
        ),
    }
}

fn forward_path(f: &Facts) -> Outcome {
    let (Ok(rs), Some(pkt)) = (&f.host.iptables, inbound_packet(f)) else {
        return Outcome::skip("iptables or network unknown");
    };
    let Some(filter) = table_of(rs, Table::Filter) else {
        return Outcome::skip("no filter table");
    };
    let trace = filter.trace("FORWARD", &pkt);
    let ev = format!(
        "new ICMP {} -> {} (in {}, out {}): {}",
        pkt.src,
        pkt.dst,
        pkt.in_if.as_deref().unwrap_or("?"),
        pkt.out_if.as_deref().unwrap_or("?"),
        trace.describe()
    );
    if trace.verdict == "ACCEPT" {
        Outcome::ok(ev)
    } else {
        Outcome::fail(
            ev,
            "remove or narrow the rule named above (it sits before crossdock's ACCEPT), then re-run doctor",
        )
    }
}

fn nat_exemption(f: &Facts) -> Outcome {
    let (Ok(rs), Some(cfg), Some(n)) = (&f.host.iptables, f.cfg(), f.network()) else {
        return Outcome::skip("iptables or network unknown");
    };
    let Some(subnet) = n.subnet else {
        return Outcome::skip("no subnet");
    };
    let Some(nat) = table_of(rs, Table::Nat) else {
        return Outcome::skip("no nat table");
    };
    // Which target the exemption uses is judged by the walk below, not by comparing texts: what
    // matters is whether the packet escapes Docker's MASQUERADE.
    let content = chain_content_with(
        f,
        Table::Nat,
        hrules::POSTROUTING_CHAIN,
        "the exemption of cluster traffic from MASQUERADE",
        true,
    );
    let jump = jump_rule(Table::Nat);
    let post = nat.chain("POSTROUTING");
    let jump_pos = post.and_then(|c| c.position(&jump.args));
    let masq_pos = post.and_then(|c| c.rules.iter().position(|r| masquerades(&r.args, subnet)));
    let jump_fix = format!(
        "{RESTART_AGENT} (it re-inserts the jump at the top); by hand: iptables -t nat -I POSTROUTING 1 {}",
        crate::iptables::shell_join(&jump.args)
    );
    let Some(peer) = sample_peer(&cfg.cluster_cidrs, Some(subnet)) else {
        return Outcome::skip("no peer address outside the local subnet in the cluster range");
    };
    let Some(src) = n
        .containers
        .first()
        .copied()
        .or_else(|| subnet.hosts().nth(1))
    else {
        return Outcome::skip("subnet too small");
    };
    let ext = f.external_name().unwrap_or("eth0");
    let pkt = Packet::new(src, peer)
        .arriving_on(&n.bridge)
        .leaving_by(ext);
    let trace = nat.trace("POSTROUTING", &pkt);
    let masqueraded = trace.verdict == "MASQUERADE" || trace.verdict == "SNAT";
    let where_ = match (jump_pos, masq_pos) {
        (None, _) => "the jump from POSTROUTING to CROSSDOCK-POSTROUTING is missing".to_string(),
        (Some(j), Some(m)) if j > m => format!(
            "the jump is POSTROUTING #{} behind Docker's MASQUERADE at #{}",
            j + 1,
            m + 1
        ),
        (Some(j), _) => format!("the jump is POSTROUTING #{}", j + 1),
    };
    let ev = format!("{where_}; {src} -> {peer} out {ext}: {}", trace.describe());
    if masqueraded {
        let ev = format!("{ev}: peers would see this host's address instead of the container's");
        if content.status == Status::Fail {
            return Outcome::fail(
                format!("{}; {ev}", content.evidence),
                content.fix.unwrap_or_default(),
            );
        }
        if jump_pos.is_none() || jump_pos > masq_pos {
            return Outcome::fail(ev, jump_fix);
        }
        // Reached, rules present, and still masqueraded: the exemption hands the packet back.
        let returns: Vec<(usize, String)> = nat
            .chain(hrules::POSTROUTING_CHAIN)
            .map(|c| {
                c.rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.target_name().as_deref() == Some("RETURN"))
                    .map(|(i, r)| (i + 1, r.text()))
                    .collect()
            })
            .unwrap_or_default();
        if let Some((i, text)) = returns.first() {
            let accept = text.replacen("-j RETURN", "-j ACCEPT", 1);
            return Outcome::fail(
                format!(
                    "{ev}; {} #{i} `{text}` is a RETURN inside a chain jumped to from POSTROUTING: it resumes POSTROUTING, where Docker's MASQUERADE comes next",
                    hrules::POSTROUTING_CHAIN
                ),
                format!(
                    "the exemption must end the nat table: iptables -t nat -R {} {i} {accept} (if the agent wrote the RETURN, it will write it back: report it as a crossdock bug)",
                    hrules::POSTROUTING_CHAIN
                ),
            );
        }
        return Outcome::fail(
            ev,
            "find the rule named above that masquerades cluster traffic ahead of crossdock's exemption and remove it",
        );
    }
    if jump_pos != Some(0) {
        return Outcome::warn(ev, jump_fix);
    }
    if content.status != Status::Ok {
        return Outcome::warn(
            format!("{ev}; {}", content.evidence),
            content.fix.unwrap_or_default(),
        );
    }
    Outcome::ok(format!("{ev} (container source kept)"))
}

fn raw_exemption(f: &Facts) -> Outcome {
    let (Ok(rs), Some(n), Ok(d)) = (&f.host.iptables, f.network(), &f.docker) else {
        return Outcome::skip("iptables, Docker or network unknown");
    };
    let Some(subnet) = n.subnet else {
        return Outcome::skip("no subnet");
    };
    let Some(raw) = table_of(rs, Table::Raw) else {
        return Outcome::skip("no raw table");
    };
    let prerouting = raw.chain("PREROUTING");
    let drops: Vec<usize> = prerouting
        .map(|c| {
            c.rules
                .iter()
                .enumerate()
                .filter(|(_, r)| is_docker_raw_drop(&r.args, subnet))
                .map(|(i, _)| i)
                .collect()
        })
        .unwrap_or_default();
    let has_raw_drop = docker_major_minor(&d.version).is_some_and(|v| v >= (28, 2));
    let content = chain_content(
        f,
        Table::Raw,
        hrules::PREROUTING_CHAIN,
        "the ACCEPT of cluster sources ahead of Docker's raw DROP",
    );
    let jump = jump_rule(Table::Raw);
    let jump_pos = prerouting.and_then(|c| c.position(&jump.args));
    let fix = format!(
        "{RESTART_AGENT} (it re-inserts the jump at the top); by hand: iptables -t raw -I PREROUTING 1 {}",
        crate::iptables::shell_join(&jump.args)
    );
    if drops.is_empty() && !has_raw_drop {
        return Outcome::ok(format!(
            "Docker {} adds no raw-table drop; nothing to cover{}",
            d.version,
            if content.status == Status::Ok {
                " (crossdock's raw rules are in place anyway)"
            } else {
                ""
            }
        ));
    }
    if content.status == Status::Fail {
        let mut o = content;
        o.evidence = format!(
            "{} Docker raw DROP rule(s) for {subnet}: {}",
            drops.len(),
            o.evidence
        );
        return o;
    }
    let Some(pkt) = inbound_packet(f) else {
        return Outcome::skip("no sample packet");
    };
    let trace = raw.trace("PREROUTING", &pkt);
    let ev = format!(
        "{} Docker raw DROP rule(s) for {subnet}{}; {} -> {} in {}: {}",
        drops.len(),
        match (jump_pos, drops.first()) {
            (Some(j), Some(&d0)) => format!(
                ", crossdock's jump at #{} and the first DROP at #{}",
                j + 1,
                d0 + 1
            ),
            (Some(j), None) => format!(", crossdock's jump at #{}", j + 1),
            (None, _) => ", crossdock's jump missing".to_string(),
        },
        pkt.src,
        pkt.dst,
        pkt.in_if.as_deref().unwrap_or("?"),
        trace.describe()
    );
    if trace.verdict == "DROP" {
        return Outcome::fail(
            format!("{ev}: cluster traffic to containers dies in raw PREROUTING"),
            fix,
        );
    }
    match jump_pos {
        Some(0) => Outcome::ok(ev),
        None if trace.verdict == "ACCEPT" => Outcome::ok(format!(
            "{ev} (passed by a rule other than crossdock's; crossdock's jump is missing)"
        )),
        _ => Outcome::warn(ev, fix),
    }
}

fn forward_policy(f: &Facts) -> Outcome {
    let Ok(rs) = &f.host.iptables else {
        return Outcome::skip("iptables unknown");
    };
    let Some(filter) = table_of(rs, Table::Filter) else {
        return Outcome::skip("no filter table");
    };
    let policy = filter
        .chain("FORWARD")
        .and_then(|c| c.policy.clone())
        .unwrap_or_else(|| "?".into());
    let mut wide: Vec<String> = Vec::new();
    for chain in ["FORWARD", hrules::DOCKER_USER, hrules::FORWARD_CHAIN] {
        if let Some(c) = filter.chain(chain) {
            for (i, r) in c.rules.iter().enumerate() {
                if is_blanket_accept(&r.args) {
                    wide.push(format!("{chain} #{} `{}`", i + 1, r.text()));
                }
            }
        }
    }
    let ev = format!("FORWARD policy {policy}");
    if !wide.is_empty() {
        let first = &wide[0];
        let (chain, rest) = first.split_once(" #").unwrap_or(("FORWARD", ""));
        let rule = rest
            .split_once('`')
            .map_or("", |(_, r)| r.trim_end_matches('`'));
        return Outcome::warn(
            format!("{ev}; unconditional ACCEPT: {}: every host that can route here reaches every container port", wide.join(", ")),
            format!("remove it: iptables -t filter -D {chain} {rule} (crossdock admits cluster traffic with narrow rules; a blanket ACCEPT is not needed)"),
        );
    }
    if policy == "ACCEPT" {
        return Outcome::warn(
            format!("{ev}: forwarded traffic not matched by any rule is let through"),
            "iptables -P FORWARD DROP (crossdock admits cluster traffic in DOCKER-USER; Docker sets DROP itself when it turns on forwarding)",
        );
    }
    Outcome::ok(format!(
        "{ev} (expected: only crossdock's and Docker's rules admit traffic)"
    ))
}

// ---------------------------------------------------------------- cloud

pub(crate) fn cloud(f: &Facts) -> Result<&crate::facts::CloudFacts, Outcome> {
    f.cloud.as_ref().ok_or_else(|| {
        Outcome::skip("cloud.provider = \"none\": the VPC route is managed outside crossdock")
    })
}

fn metadata(f: &Facts) -> Outcome {
    let c = match cloud(f) {
        Ok(c) => c,
        Err(o) => return o,
    };
    match &c.metadata {
        Err(u) => Outcome::fail(u.message.clone(), u.fix.clone()),
        Ok(m) => Outcome::ok(format!(
            "{} (session token: {}): instance {}, region {}, VPC {}, vSwitch {}, private IP {}, ENI {}",
            m.url,
            m.token_mode,
            m.instance_id,
            m.region_id,
            m.vpc_id,
            m.vswitch_id,
            m.private_ip,
            if m.eni_id.is_empty() { "-" } else { &m.eni_id }
        )),
    }
}

/// "in 5h 59m" / "3m ago".
fn relative(secs: i64) -> String {
    let a = secs.unsigned_abs();
    let text = if a >= 3600 {
        format!("{}h {:02}m", a / 3600, (a % 3600) / 60)
    } else if a >= 60 {
        format!("{}m {:02}s", a / 60, a % 60)
    } else {
        format!("{a}s")
    };
    if secs >= 0 {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// Credentials with less than this left are reported as a warning.
pub const EXPIRY_WARN_SECS: i64 = 300;

fn credentials(f: &Facts) -> Outcome {
    let c = match cloud(f) {
        Ok(c) => c,
        Err(o) => return o,
    };
    let cr = match &c.credentials {
        Err(u) => return Outcome::fail(u.message.clone(), u.fix.clone()),
        Ok(cr) => cr,
    };
    let expiry = cr.expiration.map(|e| (e, (e - f.now).num_seconds()));
    let ev = format!(
        "{} from {}{}",
        cr.access_key_id,
        cr.source,
        expiry.map_or(", no expiry".into(), |(e, s)| format!(
            ", expires {} ({})",
            e.format("%Y-%m-%dT%H:%M:%SZ"),
            relative(s)
        ))
    );
    let refresh = if cr.source.starts_with("ram role") {
        "the metadata service issued expired STS credentials: check the instance's clock (chronyc tracking) and the RAM role binding (ECS console > instance > RAM role); the agent refreshes them before expiry"
    } else {
        "replace the credentials: refresh ALIBABA_CLOUD_SECURITY_TOKEN or the configured keys, or attach a RAM role to the instance and leave the keys empty"
    };
    if let Some((_, s)) = expiry {
        if s <= 0 {
            return Outcome::fail(format!("{ev}: expired"), refresh);
        }
    }
    if let Err(u) = &cr.accepted {
        return Outcome::fail(
            format!("{ev}; rejected by the API: {}", u.message),
            u.fix.clone(),
        );
    }
    match expiry {
        Some((_, s)) if s < EXPIRY_WARN_SECS => Outcome::warn(
            format!("{ev}: about to expire"),
            "nothing to do if the agent runs (it refreshes STS credentials before expiry); otherwise check the metadata service hands out fresh ones",
        ),
        _ => Outcome::ok(format!("{ev}; accepted by the API")),
    }
}

pub(crate) fn permission(f: &Facts, action: &str) -> Outcome {
    let c = match cloud(f) {
        Ok(c) => c,
        Err(o) => return o,
    };
    let Some(p): Option<&PermissionFact> = c.permissions.iter().find(|p| p.action == action) else {
        return Outcome::skip(format!("{action} was not probed"));
    };
    let how = match p.method {
        ProbeMethod::DryRun => "dry run",
        ProbeMethod::Read => "read call",
        ProbeMethod::UnknownTarget => {
            "write naming a route entry or next hop that does not exist: refused after the permission check, nothing changed"
        }
        ProbeMethod::NotProbed => {
            return Outcome::skip(format!(
                "{action} has no dry run and is not read-only; grant it with the same policy statement as CreateRouteEntry"
            ))
        }
    };
    match &p.result {
        Ok(()) => Outcome::ok(format!("{action}: allowed ({how})")),
        Err(u) => Outcome::fail(format!("{action} ({how}): {}", u.message), u.fix.clone()),
    }
}

fn route_table(f: &Facts) -> Outcome {
    let c = match cloud(f) {
        Ok(c) => c,
        Err(o) => return o,
    };
    match &c.route_tables {
        Err(u) => Outcome::fail(u.message.clone(), u.fix.clone()),
        Ok(t) if t.is_empty() => Outcome::fail(
            "no route table found for this VPC/vSwitch",
            "set cloud.route_table_ids in the configuration",
        ),
        Ok(t) => {
            let configured = f.cfg().is_some_and(|c| !c.cloud.route_table_ids.is_empty());
            Outcome::ok(format!(
                "{} ({})",
                t.join(", "),
                if configured {
                    "configured"
                } else {
                    "the vSwitch's table, else the VPC's system table"
                }
            ))
        }
    }
}

/// Instance id doctor expects as next hop: configuration, else metadata.
pub(crate) fn my_instance(f: &Facts) -> Option<String> {
    let cfg = f.cfg()?;
    if !cfg.cloud.instance_id.is_empty() {
        return Some(cfg.cloud.instance_id.clone());
    }
    f.cloud
        .as_ref()?
        .metadata
        .as_ref()
        .ok()
        .map(|m| m.instance_id.clone())
}

fn route_desc(marker: &Marker, r: &RouteEntry) -> String {
    let hops: Vec<String> = r
        .next_hops
        .iter()
        .map(|h| format!("{} {}", h.next_hop_type, h.next_hop_id))
        .collect();
    format!(
        "{} {} -> {} [{}, held by {}]",
        r.route_entry_id,
        r.destination_cidr_block,
        if hops.is_empty() {
            "no next hop".into()
        } else {
            hops.join(", ")
        },
        r.status,
        marker.holder(r)
    )
}

struct RouteView<'a> {
    tables: &'a [String],
    routes: &'a [RouteEntry],
    subnet: Ipv4Net,
    marker: Marker,
    region: String,
}

impl RouteView<'_> {
    fn in_tables(&self) -> impl Iterator<Item = &RouteEntry> {
        self.routes
            .iter()
            .filter(|r| self.tables.contains(&r.route_table_id))
    }

    /// crossdock-routes' plan for this host, with overlap refusal left to `subnet.vpc-overlap`.
    fn plan(&self) -> Vec<Action> {
        let desired = Desired {
            subnet: self.subnet,
            marker: self.marker.clone(),
            tables: self.tables.to_vec(),
        };
        let observed: Vec<Observed> = self
            .tables
            .iter()
            .map(|t| Observed {
                table_id: t.clone(),
                entries: self
                    .routes
                    .iter()
                    .filter(|r| &r.route_table_id == t)
                    .cloned()
                    .collect(),
            })
            .collect();
        plan(&desired, &NetworkCidrs::default(), &observed)
    }

    fn entry(&self, id: &str) -> Option<&RouteEntry> {
        self.routes.iter().find(|r| r.route_entry_id == id)
    }
}

fn route_view(f: &Facts) -> Result<RouteView<'_>, Outcome> {
    let c = cloud(f)?;
    let tables = c
        .route_tables
        .as_ref()
        .map_err(|_| Outcome::skip("no route table"))?;
    let routes = c
        .routes
        .as_ref()
        .map_err(|u| Outcome::fail(u.message.clone(), u.fix.clone()))?;
    let subnet = f.subnet().ok_or_else(|| Outcome::skip("no subnet"))?;
    let me = my_instance(f).ok_or_else(|| Outcome::skip("instance id unknown"))?;
    let route_name = f
        .cfg()
        .map_or_else(|| "crossdock".to_string(), |c| c.cloud.route_name.clone());
    let region = c
        .metadata
        .as_ref()
        .ok()
        .map_or(String::new(), |m| format!(" --RegionId {}", m.region_id));
    Ok(RouteView {
        tables,
        routes,
        subnet,
        marker: Marker {
            route_name,
            instance_id: me,
        },
        region,
    })
}

fn cloud_route(f: &Facts) -> Outcome {
    let v = match route_view(f) {
        Ok(v) => v,
        Err(o) => return o,
    };
    let actions = v.plan();
    let (subnet, me, region) = (v.subnet, &v.marker.instance_id, &v.region);
    let mut worst: Option<Outcome> = None;
    let mut lines = Vec::new();
    for t in v.tables {
        let action = actions.iter().find(|a| match a {
            Action::Create { table_id, .. }
            | Action::Await { table_id, .. }
            | Action::Conflict { table_id, .. }
            | Action::Unowned { table_id, .. } => table_id == t,
            _ => false,
        });
        let outcome = match action {
            Some(Action::Create { .. }) => Outcome::fail(
                format!("{t}: no route for {subnet}: traffic to this host's containers has nowhere to go"),
                format!(
                    "{RESTART_AGENT} (the agent registers it); by hand: aliyun vpc CreateRouteEntry{region} --RouteTableId {t} --DestinationCidrBlock {subnet} --NextHopType Instance --NextHopId {me} --RouteEntryName {} --Description {}",
                    v.marker.route_name,
                    v.marker.description()
                ),
            ),
            Some(Action::Await { entry_id, status, .. }) => Outcome::fail(
                format!(
                    "{t}: {} is {status}: the route is not in effect until it is Available",
                    v.entry(entry_id).map_or(entry_id.clone(), |e| route_desc(&v.marker, e))
                ),
                "wait for the VPC to finish (normally seconds); if it stays Pending for minutes, check the route table in the VPC console and open a ticket with the entry id",
            ),
            Some(Action::Conflict { entry_id, holder, .. }) => Outcome::fail(
                format!(
                    "{t}: {subnet} points elsewhere: {}: this host's containers are unreachable",
                    v.entry(entry_id).map_or(entry_id.clone(), |e| route_desc(&v.marker, e))
                ),
                format!(
                    "if {holder} no longer serves {subnet}, delete its route (aliyun vpc DeleteRouteEntry{region} --RouteEntryId {entry_id}) and {RESTART_AGENT}; if it does, give this host's Docker another subnet (\"bip\" in /etc/docker/daemon.json)"
                ),
            ),
            Some(Action::Unowned { entry_id, .. }) => {
                let e = v.entry(entry_id);
                let desc = e.map_or(entry_id.clone(), |e| route_desc(&v.marker, e));
                if e.is_some_and(|e| e.is_available()) {
                    Outcome::ok(format!("{t}: {desc} (points here without crossdock's marker: it works, crossdock leaves it alone)"))
                } else {
                    Outcome::fail(
                        format!("{t}: {desc}: not Available"),
                        "wait for the VPC to finish; if it stays so, check the entry in the VPC console",
                    )
                }
            }
            _ => match v
                .in_tables()
                .find(|r| &r.route_table_id == t && r.destination_cidr_block.parse::<Ipv4Net>().ok() == Some(subnet))
            {
                Some(e) => Outcome::ok(format!("{t}: {}", route_desc(&v.marker, e))),
                None => Outcome::skip(format!("{t}: not evaluated")),
            },
        };
        lines.push(outcome.evidence.clone());
        if worst
            .as_ref()
            .is_none_or(|w| outcome.status > w.status && outcome.status != Status::Skip)
        {
            worst = Some(outcome);
        }
    }
    let mut o = worst.unwrap_or_else(|| Outcome::skip("no route tables"));
    o.evidence = lines.join("; ");
    o
}

fn route_conflicts(f: &Facts) -> Outcome {
    let v = match route_view(f) {
        Ok(v) => v,
        Err(o) => return o,
    };
    let subnet = v.subnet;
    let region = &v.region;
    let mut fails = Vec::new();
    let mut warns = Vec::new();
    let mut notes = Vec::new();
    for r in v.in_tables() {
        let Ok(cidr) = r.destination_cidr_block.parse::<Ipv4Net>() else {
            continue;
        };
        if cidr == subnet || v.marker.owns(r) {
            continue;
        }
        if subnet.contains(&cidr.network()) && cidr.prefix_len() > subnet.prefix_len() {
            fails.push(format!(
                "{} (more specific: takes part of {subnet} away from this host)",
                route_desc(&v.marker, r)
            ));
        } else if cidr.contains(&subnet.network()) {
            notes.push(format!(
                "{} covers {subnet} (less specific: this host's route wins)",
                route_desc(&v.marker, r)
            ));
        } else if v.marker.points_here(r) && r.entry_type.eq_ignore_ascii_case("Custom") {
            warns.push(format!(
                "{} (unmarked, also points at this instance)",
                route_desc(&v.marker, r)
            ));
        }
    }
    for a in v.plan() {
        if let Action::Delete { entry_id, .. } | Action::DeferDelete { entry_id, .. } = &a {
            if let Some(e) = v.entry(entry_id) {
                warns.push(format!(
                    "{} (crossdock's route for a subnet this host no longer serves; the agent deletes it once the current one is Available)",
                    route_desc(&v.marker, e)
                ));
            }
        }
    }
    if !fails.is_empty() {
        return Outcome::fail(
            format!("conflicting route(s): {}", fails.join("; ")),
            format!("delete the conflicting route (aliyun vpc DeleteRouteEntry{region} --RouteEntryId <id>) or move that host to a subnet outside {subnet}"),
        );
    }
    if !warns.is_empty() {
        return Outcome::warn(
            format!("other route(s) to this instance: {}", warns.join("; ")),
            format!("if this host no longer serves them, delete them (aliyun vpc DeleteRouteEntry{region} --RouteEntryId <id>); `crossdock deregister` removes all of crossdock's routes of this host"),
        );
    }
    Outcome::ok(format!(
        "{} entr(y/ies) in {}: none conflicts with {subnet}{}",
        v.in_tables().count(),
        v.tables.join(", "),
        if notes.is_empty() {
            String::new()
        } else {
            format!("; {}", notes.join("; "))
        }
    ))
}

/// A table filled to this share of its quota, or more, is reported as a warning.
pub const QUOTA_WARN_PERCENT: u32 = 80;

const QUOTA_FIX: &str = "raise the route-entry quota before adding hosts (Quota Center: VPC route entries per route table), or delete unused custom routes";

/// One table's verdict: `custom` entries in it, `wanted` members' routes still to add (fleet mode).
/// Per-host mode fails only when a full table lacks this host's route; fleet mode, where every
/// agent writes every member's route, fails once the members' routes do not fit or the table is
/// full (the next member to start would get none).
fn quota_outcome(
    t: &str,
    custom: u32,
    wanted: u32,
    quota: u32,
    fleet: bool,
    has_mine: bool,
) -> Outcome {
    let need = custom + wanted;
    if fleet && need > quota {
        Outcome::fail(
            format!("{t} cannot hold the members' routes: {custom} custom entries + {wanted} missing > quota {quota}"),
            QUOTA_FIX,
        )
    } else if fleet && need >= quota {
        Outcome::fail(
            format!("{t} is full ({need}/{quota}): the next member to start gets no route"),
            QUOTA_FIX,
        )
    } else if !fleet && custom >= quota && !has_mine {
        Outcome::fail(
            format!("{t} is full ({custom}/{quota}) and this host's route is not in it"),
            "delete unused custom routes or raise the quota (Quota Center: VPC route entries per route table)",
        )
    } else if need * 100 >= quota * QUOTA_WARN_PERCENT {
        Outcome::warn(
            format!("{t} is at {need}/{quota} (warning from {QUOTA_WARN_PERCENT} %)"),
            QUOTA_FIX,
        )
    } else {
        Outcome::ok("")
    }
}

fn route_quota(f: &Facts) -> Outcome {
    let c = match cloud(f) {
        Ok(c) => c,
        Err(o) => return o,
    };
    let (Ok(tables), Ok(routes)) = (&c.route_tables, &c.routes) else {
        return Outcome::skip("routes not listed");
    };
    let quota = c.route_quota.max(1);
    let mine = f.subnet().map(|s| s.to_string());
    let fleet = f.cfg().is_some_and(|c| c.fleet.tag.is_some());
    // Fleet mode: the members' routes not written yet count too.
    let view = crate::fleet_checks::members_view(f).ok();
    let missing = view.as_ref().map(|v| v.missing_per_table());
    let mut worst = Outcome::ok(String::new());
    let mut parts = Vec::new();
    for t in tables {
        let custom = routes
            .iter()
            .filter(|r| &r.route_table_id == t && r.entry_type.eq_ignore_ascii_case("Custom"))
            .count();
        let custom = u32::try_from(custom).unwrap_or(u32::MAX);
        let has_mine = routes
            .iter()
            .any(|r| &r.route_table_id == t && Some(&r.destination_cidr_block) == mine.as_ref());
        let wanted = missing
            .as_ref()
            .and_then(|m| m.get(t.as_str()))
            .map_or(0, |n| u32::try_from(*n).unwrap_or(u32::MAX));
        parts.push(match &missing {
            Some(_) => {
                format!("{t}: {custom} of {quota} custom entries, {wanted} member route(s) to add")
            }
            None => format!("{t}: {custom} of {quota} custom entries"),
        });
        let o = quota_outcome(t, custom, wanted, quota, fleet, has_mine);
        if o.status > worst.status {
            worst = o;
        }
    }
    let ev = parts.join("; ");
    worst.evidence = if worst.evidence.is_empty() {
        ev
    } else {
        format!("{}; {ev}", worst.evidence)
    };
    worst
}

fn source_dest_check(f: &Facts) -> Outcome {
    let c = match cloud(f) {
        Ok(c) => c,
        Err(o) => return o,
    };
    let eni = c
        .metadata
        .as_ref()
        .ok()
        .map(|m| m.eni_id.clone())
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "<eni-id>".into());
    match &c.source_dest_check {
        Err(u) => Outcome::fail(u.message.clone(), u.fix.clone()),
        Ok(false) => Outcome::ok(format!("{eni}: source/destination check off")),
        Ok(true) => {
            let mode = f.cfg().map(|c| c.cloud.source_dest_check);
            let by_hand = format!("aliyun ecs ModifyNetworkInterfaceAttribute --NetworkInterfaceId {eni} --SourceDestCheck false");
            Outcome::fail(
                format!("{eni}: source/destination check ON: the ENI drops packets to and from container addresses"),
                match mode {
                    Some(SourceDestCheck::Report) => format!("cloud.source_dest_check = \"report\", so crossdock leaves it to you: {by_hand}"),
                    _ => format!("{RESTART_AGENT} (with cloud.source_dest_check = \"disable\" it switches it off), or: {by_hand}"),
                },
            )
        }
    }
}

fn vpc_overlap(f: &Facts) -> Outcome {
    let c = match cloud(f) {
        Ok(c) => c,
        Err(o) => return o,
    };
    let Some(subnet) = f.subnet() else {
        return Outcome::skip("no subnet");
    };
    let cidrs = match &c.cidrs {
        Ok(x) => x,
        Err(u) => return Outcome::fail(u.message.clone(), u.fix.clone()),
    };
    let all: Vec<String> = cidrs
        .vpc
        .iter()
        .map(|n| format!("VPC {n}"))
        .chain(
            cidrs
                .vswitches
                .iter()
                .map(|(id, n)| format!("vSwitch {id} {n}")),
        )
        .collect();
    match check_overlap(subnet, cidrs) {
        Some(Action::Refused { overlaps, fix, .. }) => Outcome::fail(
            format!("{subnet} overlaps {overlaps}: the VPC does not route it to this host (crossdock refuses to register it)"),
            fix,
        ),
        _ => Outcome::ok(format!(
            "{subnet} is clear of {} (from {})",
            if all.is_empty() { "nothing known".into() } else { all.join(", ") },
            c.cidrs_source
        )),
    }
}

#[cfg(test)]
#[path = "checks_tests.rs"]
pub(crate) mod tests;
