//! Container names' checks (`[names]` on): the resolver answers the zone on the bridge gateway over
//! UDP and TCP and forwards other names, the catalog port is bound and admits members only, and
//! Docker points containers at the resolver.
//!
//! Why they hang off one root, `names.mode`: with `[names]` off none applies, and one skipped line
//! says so. The expected firewall rules are not restated here: they come from
//! `crossdock_hostnet::names_rules`, the data the agent applies, fed with what doctor knows (the
//! served subnet and gateway, and the fleet's members when the cloud was asked).

use crate::checks::RESTART_AGENT;
use crate::facts::Facts;
use crate::fleet_checks::listed;
use crate::model::{CheckDef, Outcome};
use crate::names::{ContainerDns, DnsReply, NamesFacts, Rcode, EMBEDDED_DNS};
use crossdock_hostnet::names_guard::{names_rules, NamesGuard};
use crossdock_hostnet::rules::{Rule, Table};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

/// The names checks, dependencies before dependents (they follow the other host checks).
pub fn defs() -> Vec<CheckDef<Facts>> {
    vec![
        CheckDef::new(
            "names.mode",
            "container names across hosts ([names])",
            &["config"],
            names_mode,
        ),
        CheckDef::new(
            "names.resolver",
            "the resolver answers the zone on the bridge gateway (UDP and TCP)",
            &["names.mode", "docker.network"],
            resolver,
        ),
        CheckDef::new(
            "names.forwarding",
            "the resolver forwards names outside the zone",
            &["names.resolver"],
            forwarding,
        ),
        CheckDef::new(
            "names.catalog-port",
            "the catalog exchange listens on its UDP port",
            &["names.mode"],
            catalog_port,
        ),
        CheckDef::new(
            "names.firewall",
            "resolver admitted from containers only, catalog port from members only",
            &["names.mode", "firewall.iptables", "docker.network"],
            firewall,
        ),
        CheckDef::new(
            "names.docker-dns",
            "Docker points containers at the resolver (daemon.json \"dns\", containers)",
            &["names.mode", "docker.network"],
            docker_dns,
        ),
    ]
}

fn names(f: &Facts) -> Result<&NamesFacts, Outcome> {
    f.names
        .as_ref()
        .ok_or_else(|| Outcome::skip("names facts were not gathered"))
}

fn names_mode(f: &Facts) -> Outcome {
    let Some(cfg) = f.cfg() else {
        return Outcome::skip("the configuration did not load");
    };
    let n = &cfg.names;
    if !n.enabled {
        return Outcome::skip("names.enabled is false");
    }
    Outcome::ok(format!(
        "zone {}, resolver on port {} (UDP/TCP) of the bridge gateway, catalog on UDP {}",
        n.zone, n.dns_port, n.catalog_port
    ))
}

fn dns_addr(n: &NamesFacts) -> Result<SocketAddrV4, Outcome> {
    n.dns.ok_or_else(|| {
        Outcome::fail(
            "the served network has no gateway address, so the resolver has nowhere to listen",
            "give the Docker network an IPv4 gateway (docker network inspect)",
        )
    })
}

/// `NOERROR, 1 answer, authoritative, 2 ms`.
fn reply_text(r: &DnsReply) -> String {
    format!(
        "{}, {} answer(s){}, {} ms",
        r.rcode,
        r.answers,
        if r.authoritative {
            ", authoritative"
        } else {
            ""
        },
        r.millis
    )
}

fn resolver(f: &Facts) -> Outcome {
    let n = match names(f) {
        Ok(n) => n,
        Err(o) => return o,
    };
    let server = match dns_addr(n) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let mut seen = Vec::new();
    for (t, reply) in [("UDP", &n.zone_udp), ("TCP", &n.zone_tcp)] {
        match reply {
            Err(u) => {
                return Outcome::fail(
                    format!("the resolver does not answer: {}", u.message),
                    u.fix.clone(),
                )
            }
            Ok(r) if r.rcode == Rcode::Refused => {
                return Outcome::fail(
                    format!(
                        "the resolver on {server} refused the question for {} over {t} from this host",
                        n.zone
                    ),
                    format!("the agent must allow the container subnet and loopback; {RESTART_AGENT}, then see the names line of `crossdock status`"),
                )
            }
            Ok(r) if r.rcode != Rcode::NoError || r.answers == 0 || !r.authoritative => {
                return Outcome::fail(
                    format!(
                        "{server} answers the SOA of {} over {t} with {}: not crossdock's resolver for the zone",
                        n.zone,
                        reply_text(r)
                    ),
                    format!("find what holds port {} on the gateway (ss -lunpt 'sport = :{}') and free it; {RESTART_AGENT}", server.port(), server.port()),
                )
            }
            Ok(r) => seen.push(format!("{t}: {}", reply_text(r))),
        }
    }
    Outcome::ok(format!(
        "SOA of {} from {server}: {}",
        n.zone,
        seen.join("; ")
    ))
}

fn forwarding(f: &Facts) -> Outcome {
    let n = match names(f) {
        Ok(n) => n,
        Err(o) => return o,
    };
    let upstreams = f
        .cfg()
        .map(|c| c.names.resolv_conf.display().to_string())
        .unwrap_or_default();
    let fix = format!(
        "make the upstreams in {upstreams} answer from this host (the VPC resolvers 100.100.2.136, 100.100.2.138; check with dig @<upstream> {name}), or give doctor a name they know: --names-external NAME",
        name = n.external_name
    );
    match &n.external {
        Err(u) => Outcome::fail(
            format!(
                "the question for {} (outside the zone) got no answer: {}",
                n.external_name, u.message
            ),
            fix,
        ),
        Ok(r) if matches!(r.rcode, Rcode::NoError | Rcode::NxDomain) => Outcome::ok(format!(
            "{} forwarded upstream: {}",
            n.external_name,
            reply_text(r)
        )),
        Ok(r) => Outcome::fail(
            format!(
                "the question for {} (outside the zone) was answered {}: forwarding to the upstreams fails",
                n.external_name,
                reply_text(r)
            ),
            fix,
        ),
    }
}

fn catalog_port(f: &Facts) -> Outcome {
    let n = match names(f) {
        Ok(n) => n,
        Err(o) => return o,
    };
    let sockets = match &n.udp_sockets {
        Err(u) => return Outcome::fail(u.message.clone(), u.fix.clone()),
        Ok(s) => s,
    };
    let bound: Vec<String> = sockets
        .iter()
        .filter(|s| s.port() == n.catalog_port)
        .map(ToString::to_string)
        .collect();
    if bound.is_empty() {
        return Outcome::fail(
            format!(
                "nothing listens on UDP port {}: the catalog exchange is not running, so no other host's names arrive",
                n.catalog_port
            ),
            format!("see the names line of `crossdock status` for why; {RESTART_AGENT}"),
        );
    }
    Outcome::ok(format!("bound on {}", bound.join(", ")))
}

/// The fleet's members' private IPs, when the cloud was asked for them.
fn members(f: &Facts) -> Option<Vec<Ipv4Addr>> {
    let fleet = f.cloud.as_ref()?.fleet.as_ref()?;
    let list = fleet.members.as_ref().ok()?;
    Some(list.iter().filter_map(|i| i.private_ip).collect())
}

/// The source of a catalog ACCEPT rule (`-s a.b.c.d/32 ... --comment crossdock:catalog-members`).
fn catalog_member(args: &[String]) -> Option<Ipv4Addr> {
    if !args.iter().any(|a| a == "crossdock:catalog-members") {
        return None;
    }
    let i = args.iter().position(|a| a == "-s")?;
    let src = args.get(i + 1)?;
    src.trim_end_matches("/32").parse().ok()
}

fn firewall(f: &Facts) -> Outcome {
    let n = match names(f) {
        Ok(n) => n,
        Err(o) => return o,
    };
    let (Ok(rs), Some(net)) = (&f.host.iptables, f.network()) else {
        return Outcome::skip("iptables or network unknown");
    };
    let (Some(subnet), Ok(dns)) = (net.subnet, dns_addr(n)) else {
        return Outcome::skip("the served network has no subnet or gateway");
    };
    let known = members(f);
    // The rules the agent writes for the known members (or for none: then members are judged
    // by what is there).
    let guard = NamesGuard {
        dns,
        dns_clients: vec![subnet],
        catalog_port: n.catalog_port,
        members: known.clone().unwrap_or_default(),
    };
    let want = names_rules(&guard);
    let filter = rs.table(Table::Filter.as_str());
    let missing: Vec<&Rule> = want
        .iter()
        .filter(|r| {
            filter
                .chain(&r.chain)
                .and_then(|c| c.position(&r.args))
                .is_none()
        })
        .collect();
    let admitted: BTreeSet<Ipv4Addr> = filter
        .chain(crossdock_hostnet::rules::INPUT_CHAIN)
        .map(|c| {
            c.rules
                .iter()
                .filter_map(|r| catalog_member(&r.args))
                .collect()
        })
        .unwrap_or_default();
    if !missing.is_empty() {
        let shown: Vec<String> = missing
            .iter()
            .map(|r| format!("`{} {}`", r.chain, crate::iptables::shell_join(&r.args)))
            .collect();
        return Outcome::fail(
            format!(
                "{} of the {} firewall rule(s) of the resolver and the catalog port missing: {}",
                missing.len(),
                want.len(),
                listed(&shown)
            ),
            format!(
                "{RESTART_AGENT} (the agent's next host pass restores them); if they vanish again, find what flushes INPUT"
            ),
        );
    }
    // The catch-all drop must come after the jump into CROSSDOCK-INPUT, or members are dropped too.
    let input = filter.chain("INPUT");
    let position = |comment: &str| {
        input.and_then(|c| {
            c.rules
                .iter()
                .position(|r| r.args.iter().any(|a| a == comment))
        })
    };
    if let (Some(jump), Some(drop)) = (
        position("crossdock:jump"),
        position("crossdock:catalog-others"),
    ) {
        if drop < jump {
            return Outcome::fail(
                format!("INPUT drops UDP {} (rule {}) before it jumps to CROSSDOCK-INPUT (rule {}): members are dropped too", n.catalog_port, drop + 1, jump + 1),
                format!("{RESTART_AGENT} (it puts the jump back on top)"),
            );
        }
    }
    let admitted_text: Vec<String> = admitted.iter().map(ToString::to_string).collect();
    let ev = format!(
        "resolver {dns} admitted from {subnet} only; UDP {} admitted from {} member(s){}, dropped for everyone else",
        n.catalog_port,
        admitted.len(),
        if admitted.is_empty() {
            String::new()
        } else {
            format!(" ({})", listed(&admitted_text))
        }
    );
    if let Some(members) = known {
        let members: BTreeSet<Ipv4Addr> = members.into_iter().collect();
        let strangers: Vec<String> = admitted
            .difference(&members)
            .map(ToString::to_string)
            .collect();
        if !strangers.is_empty() {
            return Outcome::warn(
                format!(
                    "{ev}; admitted but no member of the fleet: {}",
                    listed(&strangers)
                ),
                format!("{RESTART_AGENT} (the agent admits the members of its last fleet sweep)"),
            );
        }
    }
    Outcome::ok(ev)
}

fn is_gateway(ip: &IpAddr, gateway: Ipv4Addr) -> bool {
    *ip == IpAddr::V4(gateway)
}

fn docker_dns(f: &Facts) -> Outcome {
    let n = match names(f) {
        Ok(n) => n,
        Err(o) => return o,
    };
    let gateway = match dns_addr(n) {
        Ok(s) => *s.ip(),
        Err(o) => return o,
    };
    let path = n.daemon_json.display();
    let init_fix = format!(
        "crossdock init (writes \"dns\": [\"{gateway}\", <the upstreams>] into {path}), then restart Docker and recreate the containers"
    );
    let list = match &n.daemon_dns {
        Err(u) => return Outcome::fail(u.message.clone(), u.fix.clone()),
        Ok(None) => {
            return Outcome::fail(
                format!("{path} sets no \"dns\": containers ask Docker's default resolvers, not crossdock's"),
                init_fix,
            )
        }
        Ok(Some(list)) => list,
    };
    let shown = list
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if !list.first().is_some_and(|ip| is_gateway(ip, gateway)) {
        return Outcome::fail(
            format!("{path} \"dns\" is [{shown}]: the resolver {gateway} is not first"),
            init_fix,
        );
    }
    let ev = format!("{path} \"dns\": [{shown}]");
    let containers = match &n.containers {
        Err(u) => {
            return Outcome::warn(
                format!(
                    "{ev}; the containers' resolvers could not be read: {}",
                    u.message
                ),
                u.fix.clone(),
            )
        }
        Ok(c) => c,
    };
    let stale: Vec<String> = containers
        .iter()
        .filter_map(|c| stale_container(c, gateway))
        .collect();
    if !stale.is_empty() {
        return Outcome::warn(
            format!(
                "{ev}; {} of {} container(s) do not ask {gateway}: {}",
                stale.len(),
                containers.len(),
                listed(&stale)
            ),
            "recreate them (containers keep the resolvers they were created with): docker compose up -d --force-recreate, or docker rm -f + docker run".to_string(),
        );
    }
    Outcome::ok(format!(
        "{ev}; all {} container(s) on the served network ask {gateway}",
        containers.len()
    ))
}

/// `name (nameservers ...)` for a container whose resolv.conf does not name the resolver first
/// (Docker's embedded DNS, which forwards to daemon.json's list, counts as asking it).
fn stale_container(c: &ContainerDns, gateway: Ipv4Addr) -> Option<String> {
    match &c.nameservers {
        Err(u) => Some(format!("{} ({})", c.name, u.message)),
        Ok(ns) => match ns.first() {
            Some(ip) if is_gateway(ip, gateway) || *ip == IpAddr::V4(EMBEDDED_DNS) => None,
            _ => Some(format!(
                "{} (nameserver {})",
                c.name,
                if ns.is_empty() {
                    "none".to_string()
                } else {
                    ns.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )),
        },
    }
}

#[cfg(test)]
#[path = "names_checks_tests.rs"]
mod tests;
