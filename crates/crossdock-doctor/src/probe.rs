//! `crossdock doctor --probe IP`: send real traffic to a remote container (or a peer's gateway) and
//! say how far it got on this host.
//!
//! The traffic is sent from the served bridge's own address (e.g. 10.1.0.1) unless `--probe-source`
//! says otherwise: that address is in the local container subnet, so the packets meet the same NAT
//! exemption, the same VPC route back and the same checks on the peer as a container's packets do,
//! while doctor needs no container to run in. The report is built from three observations: the
//! kernel's route decision (`ip route get IP from SRC`), the traffic's own result (ping replies or a
//! TCP answer) and the iptables counters before and after (which rule counted the packets: crossdock's
//! NAT exemption or Docker's MASQUERADE, a DROP, a policy). Counters are per rule and shared with any
//! other traffic at the same moment, so the report names them as evidence, not proof.

use crate::facts::{Fact, RouteLookup, Unavailable};
use crate::iptables::{masquerades, Packet, Ruleset, Walk};
use async_trait::async_trait;
use ipnet::Ipv4Net;
use serde::Serialize;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// What to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRequest {
    pub target: Ipv4Addr,
    /// TCP port to connect to; `None` = ICMP echo.
    pub port: Option<u16>,
    /// Source address; `None` = the kernel's choice.
    pub source: Option<Ipv4Addr>,
    /// ICMP echo requests to send.
    pub count: u32,
}

/// What the traffic itself achieved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Traffic {
    Icmp {
        sent: u32,
        received: u32,
    },
    /// The TCP handshake completed.
    TcpConnected,
    /// A RST came back: the packets reached a host that has nothing listening on the port.
    TcpRefused,
    /// No answer within the timeout.
    TcpTimeout,
    /// The local stack refused to send (no route, bad source).
    TcpError {
        message: String,
    },
}

impl Traffic {
    /// Whether an answer came back from the far end.
    pub fn answered(&self) -> bool {
        match self {
            Traffic::Icmp { received, .. } => *received > 0,
            Traffic::TcpConnected | Traffic::TcpRefused => true,
            Traffic::TcpTimeout | Traffic::TcpError { .. } => false,
        }
    }
}

/// The side effects of a probe.
#[async_trait]
pub trait ProbeTools: Send + Sync {
    async fn route_get(&self, dst: Ipv4Addr, src: Option<Ipv4Addr>) -> Fact<RouteLookup>;
    async fn iptables_save(&self) -> Fact<String>;
    async fn send(&self, req: &ProbeRequest) -> Fact<Traffic>;
}

/// A rule (or chain policy) whose counters moved during the probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CounterDelta {
    pub table: String,
    pub chain: String,
    /// 1-based rule number; `None` for the chain policy.
    pub index: Option<usize>,
    pub rule: String,
    pub packets: u64,
    pub bytes: u64,
}

impl CounterDelta {
    fn target(&self) -> Option<String> {
        let args = crossdock_hostnet::split_save_line(&self.rule);
        args.windows(2)
            .rev()
            .find(|w| w[0] == "-j" || w[0] == "-g")
            .map(|w| w[1].clone())
    }

    fn place(&self) -> String {
        match self.index {
            Some(i) => format!("{} {} #{} `{}`", self.table, self.chain, i, self.rule),
            None => format!("{} {} policy {}", self.table, self.chain, self.rule),
        }
    }
}

/// Every rule and policy whose packet counter grew between two dumps (rules are matched by table,
/// chain, position and text, so a rule inserted meanwhile is not mistaken for another).
pub fn counter_deltas(before: &Ruleset, after: &Ruleset) -> Vec<CounterDelta> {
    let mut out = Vec::new();
    for (tname, t) in &after.tables {
        let bt = before.table(tname);
        for (cname, c) in &t.chains {
            let bc = bt.chain(cname);
            if let (Some(pa), Some(policy)) = (c.policy_counters, &c.policy) {
                let pb = bc.and_then(|b| b.policy_counters).unwrap_or_default();
                if pa.packets > pb.packets {
                    out.push(CounterDelta {
                        table: tname.clone(),
                        chain: cname.clone(),
                        index: None,
                        rule: policy.clone(),
                        packets: pa.packets - pb.packets,
                        bytes: pa.bytes.saturating_sub(pb.bytes),
                    });
                }
            }
            for (i, r) in c.rules.iter().enumerate() {
                let Some(ca) = r.counters else { continue };
                let cb = bc
                    .and_then(|b| b.rules.get(i))
                    .filter(|b| b.args == r.args)
                    .and_then(|b| b.counters)
                    .unwrap_or_default();
                if ca.packets > cb.packets {
                    out.push(CounterDelta {
                        table: tname.clone(),
                        chain: cname.clone(),
                        index: Some(i + 1),
                        rule: r.text(),
                        packets: ca.packets - cb.packets,
                        bytes: ca.bytes.saturating_sub(cb.bytes),
                    });
                }
            }
        }
    }
    out
}

/// The probe's findings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeReport {
    pub target: Ipv4Addr,
    /// `icmp` or `tcp/PORT`.
    pub method: String,
    pub source: Option<Ipv4Addr>,
    /// The kernel's route decision, or why there is none (`route_error`).
    pub route: Option<RouteLookup>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_error: Option<Unavailable>,
    /// Whether the packets left with this host's address instead of the source (`None`: unknown).
    pub masqueraded: Option<bool>,
    pub masquerade_evidence: String,
    /// Rules that counted packets and drop them.
    pub drops: Vec<String>,
    pub counters: Vec<CounterDelta>,
    /// What the traffic achieved, or why it could not be sent (`traffic_error`).
    pub traffic: Option<Traffic>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic_error: Option<Unavailable>,
    /// Whether an answer came back.
    pub ok: bool,
    /// How far the traffic got, in one sentence.
    pub conclusion: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Pure analysis of one probe's observations. `local` is this host's container subnet.
pub fn analyse(
    req: &ProbeRequest,
    route: Fact<RouteLookup>,
    before: Option<&Ruleset>,
    after: Option<&Ruleset>,
    traffic: Fact<Traffic>,
    local: Option<Ipv4Net>,
) -> ProbeReport {
    let method = req
        .port
        .map_or_else(|| "icmp".to_string(), |p| format!("tcp/{p}"));
    let counters = match (before, after) {
        (Some(b), Some(a)) => counter_deltas(b, a),
        _ => Vec::new(),
    };
    let src = req
        .source
        .or_else(|| route.as_ref().ok().and_then(|r| r.src));

    // Masquerading: counters first, the walk of the nat table as a fallback.
    let nat_hits: Vec<&CounterDelta> = counters
        .iter()
        .filter(|d| d.table == "nat" && d.index.is_some())
        .collect();
    let masq_hit = nat_hits.iter().find(|d| {
        let args = crossdock_hostnet::split_save_line(&d.rule);
        src.is_some_and(|s| masquerades(&args, Ipv4Net::from(s)))
    });
    let exempt_hit = nat_hits.iter().find(|d| {
        let args = crossdock_hostnet::split_save_line(&d.rule);
        crossdock_hostnet::rules::is_tagged(&args)
            && matches!(d.target().as_deref(), Some("RETURN") | Some("ACCEPT"))
            && d.chain.starts_with(crossdock_hostnet::rules::CHAIN_PREFIX)
    });
    let (masqueraded, masquerade_evidence) = match (masq_hit, exempt_hit, src) {
        (Some(m), _, _) => (
            Some(true),
            format!("{} counted +{} packet(s)", m.place(), m.packets),
        ),
        (None, Some(e), _) => (
            Some(false),
            format!(
                "NAT exemption matched: {} counted +{} packet(s)",
                e.place(),
                e.packets
            ),
        ),
        (None, None, Some(s)) => match (after, route.as_ref().ok()) {
            (Some(rs), Some(r)) if !r.dev.is_empty() => {
                let t = rs.table("nat").trace(
                    "POSTROUTING",
                    &Packet::new(s, req.target).leaving_by(&r.dev),
                );
                let m = t.verdict == "MASQUERADE" || t.verdict == "SNAT";
                (
                    Some(m),
                    format!("no nat counter moved (an existing flow skips nat); the walk of POSTROUTING says: {}", t.describe()),
                )
            }
            _ => (None, "unknown (no iptables dump)".into()),
        },
        (None, None, None) => (None, "unknown (no source address)".into()),
    };

    let drops: Vec<String> = counters
        .iter()
        .filter(|d| match d.index {
            Some(_) => matches!(d.target().as_deref(), Some("DROP") | Some("REJECT")),
            None => d.rule == "DROP",
        })
        .map(|d| format!("{} (+{} packet(s))", d.place(), d.packets))
        .collect();

    let ok = traffic.as_ref().is_ok_and(Traffic::answered);
    let route_text = match &route {
        Ok(r) if r.kind == "unicast" || r.kind.is_empty() => format!(
            "the kernel sends it via {}{} from {}",
            r.dev,
            r.gateway.map_or(String::new(), |g| format!(" through {g}")),
            src.map_or("?".into(), |s| s.to_string())
        ),
        Ok(r) => format!("the kernel has a {} route for it", r.kind),
        Err(u) => format!("no route decision: {}", u.message),
    };
    let traffic_text = match &traffic {
        Ok(Traffic::Icmp { sent, received }) => format!("{received}/{sent} echo replies"),
        Ok(Traffic::TcpConnected) => "TCP connection established".into(),
        Ok(Traffic::TcpRefused) => "TCP refused (RST): the far host answered".into(),
        Ok(Traffic::TcpTimeout) => "no TCP answer".into(),
        Ok(Traffic::TcpError { message }) => format!("could not send: {message}"),
        Err(u) => format!("could not send: {}", u.message),
    };
    let route_ok = route
        .as_ref()
        .is_ok_and(|r| (r.kind == "unicast" || r.kind.is_empty()) && !r.dev.is_empty());
    let in_local = local.is_some_and(|l| l.contains(&req.target));
    let (conclusion, fix) = if ok {
        let m = match masqueraded {
            Some(true) => {
                " — but masqueraded: the peer saw this host's address, not the container's"
            }
            _ => "",
        };
        (
            format!(
                "reached {} and got answers ({traffic_text}); {route_text}{m}",
                req.target
            ),
            (masqueraded == Some(true)).then(|| {
                "the NAT exemption is not taking effect: see firewall.nat-exemption above"
                    .to_string()
            }),
        )
    } else if !route_ok {
        (
            format!("did not leave this host: {route_text}"),
            Some(format!(
                "add a route for {} (normally the default route via the vSwitch gateway covers it)",
                req.target
            )),
        )
    } else if in_local {
        (
            format!(
                "{} is in this host's own container subnet: {traffic_text}",
                req.target
            ),
            Some("probe a container on another host, or a peer's bridge address".into()),
        )
    } else if !drops.is_empty() {
        (
            format!("dropped on this host: {}; {traffic_text}", drops.join(", ")),
            Some("see the firewall checks above for the rule to change".into()),
        )
    } else {
        let m = match masqueraded {
            Some(true) => " masqueraded to this host's address (peers do not admit it)",
            Some(false) => " with its own source address",
            None => "",
        };
        (
            format!(
                "left this host{m}: {route_text}; {traffic_text}, and no rule here counted a drop: look at the VPC route for the peer's subnet and run doctor on the peer"
            ),
            Some(format!(
                "on the peer: crossdock doctor --probe {} ; in the VPC: is there a route for {}'s subnet to the peer?",
                src.map_or("<this host's bridge address>".into(), |s| s.to_string()),
                req.target
            )),
        )
    };
    ProbeReport {
        target: req.target,
        method,
        source: src,
        route_error: route.as_ref().err().cloned(),
        route: route.ok(),
        masqueraded,
        masquerade_evidence,
        drops,
        counters,
        traffic_error: traffic.as_ref().err().cloned(),
        traffic: traffic.ok(),
        ok,
        conclusion,
        fix,
    }
}

/// Runs a probe: counters, route, traffic, counters.
pub async fn run(
    tools: &dyn ProbeTools,
    req: &ProbeRequest,
    local: Option<Ipv4Net>,
) -> ProbeReport {
    let before = tools
        .iptables_save()
        .await
        .ok()
        .and_then(|t| Ruleset::parse(&t).ok());
    let route = tools.route_get(req.target, req.source).await;
    let traffic = tools.send(req).await;
    let after = tools
        .iptables_save()
        .await
        .ok()
        .and_then(|t| Ruleset::parse(&t).ok());
    analyse(req, route, before.as_ref(), after.as_ref(), traffic, local)
}

impl ProbeReport {
    /// The human rendering.
    pub fn render(&self, colour: bool) -> String {
        let mut out = String::new();
        let head = format!(
            "probe {} ({}{}): {}",
            self.target,
            self.method,
            self.source.map_or(String::new(), |s| format!(" from {s}")),
            if self.ok { "ANSWERED" } else { "NO ANSWER" }
        );
        let code = if self.ok { "32;1" } else { "31;1" };
        let _ = writeln!(
            out,
            "{}",
            if colour {
                format!("\x1b[{code}m{head}\x1b[0m")
            } else {
                head
            }
        );
        let _ = writeln!(out, "  {}", self.conclusion);
        let _ = writeln!(
            out,
            "  source kept: {}",
            match self.masqueraded {
                Some(true) => format!("no, masqueraded ({})", self.masquerade_evidence),
                Some(false) => format!("yes ({})", self.masquerade_evidence),
                None => format!("unknown ({})", self.masquerade_evidence),
            }
        );
        if !self.counters.is_empty() {
            let _ = writeln!(out, "  counters that moved:");
            for d in &self.counters {
                let _ = writeln!(out, "    +{:<4} {}", d.packets, d.place());
            }
        }
        if let Some(f) = &self.fix {
            let _ = writeln!(out, "  fix: {f}");
        }
        out
    }
}

/// Parses the summary line of iputils or busybox ping:
/// `3 packets transmitted, 3 received, ...` / `1 packets transmitted, 1 packets received, ...`.
pub fn parse_ping(output: &str) -> Option<(u32, u32)> {
    let line = output.lines().find(|l| l.contains("transmitted"))?;
    let mut parts = line.split(',');
    let num = |s: Option<&str>| -> Option<u32> { s?.split_whitespace().next()?.parse().ok() };
    let sent = num(parts.next())?;
    let received = num(parts.next())?;
    Some((sent, received))
}

/// The real tools: [`crate::gather::RealHost`] for route and counters, `ping` (or `busybox ping`)
/// and a TCP connect for the traffic.
#[derive(Debug, Clone, Default)]
pub struct RealProbe {
    pub host: crate::gather::RealHost,
}

fn find_on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

#[async_trait]
impl ProbeTools for RealProbe {
    async fn route_get(&self, dst: Ipv4Addr, src: Option<Ipv4Addr>) -> Fact<RouteLookup> {
        crate::gather::HostProbe::route_get(&self.host, dst, src).await
    }

    async fn iptables_save(&self) -> Fact<String> {
        crate::gather::HostProbe::iptables_save(&self.host).await
    }

    async fn send(&self, req: &ProbeRequest) -> Fact<Traffic> {
        match req.port {
            None => {
                let program: Vec<String> = if find_on_path("ping").is_some() {
                    vec!["ping".into()]
                } else if find_on_path("busybox").is_some() {
                    vec!["busybox".into(), "ping".into()]
                } else {
                    return Err(Unavailable::new(
                        "no ping binary (neither ping nor busybox on PATH)",
                        "install iputils-ping, or probe a TCP port with --probe-port",
                    ));
                };
                let count = req.count.max(1).to_string();
                let target = req.target.to_string();
                let source = req.source.map(|s| s.to_string());
                let mut args = vec!["-c", count.as_str(), "-W", "1"];
                if let Some(s) = &source {
                    args.extend(["-I", s.as_str()]);
                }
                args.push(target.as_str());
                let mut cmd = tokio::process::Command::new(&program[0]);
                cmd.args(&program[1..])
                    .args(&args)
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true);
                let limit = Duration::from_secs(u64::from(req.count.max(1)) + 5);
                let out = match tokio::time::timeout(limit, cmd.output()).await {
                    Err(_) => {
                        return Ok(Traffic::Icmp {
                            sent: req.count,
                            received: 0,
                        })
                    }
                    Ok(Err(e)) => {
                        return Err(Unavailable::new(
                            format!("cannot run ping: {e}"),
                            "install iputils-ping",
                        ))
                    }
                    Ok(Ok(o)) => o,
                };
                let text = format!(
                    "{}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                match parse_ping(&text) {
                    Some((sent, received)) => Ok(Traffic::Icmp { sent, received }),
                    None => Err(Unavailable::new(
                        format!(
                            "ping gave no summary: {}",
                            text.split_whitespace().collect::<Vec<_>>().join(" ")
                        ),
                        "check the source address (--probe-source) is an address of this host",
                    )),
                }
            }
            Some(port) => {
                let socket = tokio::net::TcpSocket::new_v4().map_err(|e| {
                    Unavailable::new(
                        format!("cannot open a TCP socket: {e}"),
                        "check resource limits",
                    )
                })?;
                if let Some(s) = req.source {
                    if let Err(e) = socket.bind(SocketAddr::from((s, 0))) {
                        return Ok(Traffic::TcpError {
                            message: format!("cannot bind {s}: {e}"),
                        });
                    }
                }
                let addr = SocketAddr::from((req.target, port));
                match tokio::time::timeout(Duration::from_secs(3), socket.connect(addr)).await {
                    Err(_) => Ok(Traffic::TcpTimeout),
                    Ok(Ok(_)) => Ok(Traffic::TcpConnected),
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        Ok(Traffic::TcpRefused)
                    }
                    Ok(Err(e)) => Ok(Traffic::TcpError {
                        message: e.to_string(),
                    }),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D28_CD: &str = include_str!("../tests/data/docker28-crossdock.iptables-save");

    fn a(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn bump(dump: &str, needle: &str, by: u64) -> String {
        dump.lines()
            .map(|l| {
                if l.contains(needle) {
                    let end = l.find(']').unwrap();
                    let (p, b) = l[1..end].split_once(':').unwrap();
                    let p: u64 = p.parse().unwrap();
                    let b: u64 = b.parse().unwrap();
                    format!("[{}:{}]{}", p + by, b + 84 * by, &l[end + 1..])
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn route() -> Fact<RouteLookup> {
        Ok(RouteLookup {
            destination: a("10.2.0.5"),
            dev: "eth0".into(),
            gateway: Some(a("192.168.1.253")),
            src: Some(a("10.1.0.1")),
            kind: "unicast".into(),
        })
    }

    fn req() -> ProbeRequest {
        ProbeRequest {
            target: a("10.2.0.5"),
            port: None,
            source: Some(a("10.1.0.1")),
            count: 3,
        }
    }

    #[test]
    fn counters_show_masquerading_by_docker() {
        let before = Ruleset::parse(D28_CD).unwrap();
        let after = Ruleset::parse(&bump(D28_CD, "! -o docker0 -j MASQUERADE", 1)).unwrap();
        let r = analyse(
            &req(),
            route(),
            Some(&before),
            Some(&after),
            Ok(Traffic::Icmp {
                sent: 3,
                received: 0,
            }),
            Some("10.1.0.0/24".parse().unwrap()),
        );
        assert_eq!(r.counters.len(), 1);
        assert_eq!(r.counters[0].index, Some(2));
        assert_eq!(r.masqueraded, Some(true));
        assert!(
            r.masquerade_evidence.contains("POSTROUTING #2"),
            "{}",
            r.masquerade_evidence
        );
        assert!(!r.ok);
        assert!(
            r.conclusion.starts_with("left this host masqueraded"),
            "{}",
            r.conclusion
        );
    }

    #[test]
    fn exemption_counter_means_source_kept_and_answers_mean_ok() {
        let before = Ruleset::parse(D28_CD).unwrap();
        let after = Ruleset::parse(&bump(D28_CD, "crossdock:keep-container-source", 1)).unwrap();
        let r = analyse(
            &req(),
            route(),
            Some(&before),
            Some(&after),
            Ok(Traffic::Icmp {
                sent: 3,
                received: 3,
            }),
            None,
        );
        assert_eq!(r.masqueraded, Some(false));
        assert!(r.ok);
        assert!(r.conclusion.contains("3/3 echo replies"));
        assert_eq!(r.fix, None);
    }

    #[test]
    fn drops_counted_here_are_named() {
        let before = Ruleset::parse(D28_CD).unwrap();
        let after =
            Ruleset::parse(&bump(D28_CD, "-d 10.1.0.2/32 ! -i docker0 -j DROP", 2)).unwrap();
        let r = analyse(
            &req(),
            route(),
            Some(&before),
            Some(&after),
            Ok(Traffic::Icmp {
                sent: 3,
                received: 0,
            }),
            None,
        );
        assert_eq!(r.drops.len(), 1);
        assert!(r.drops[0].contains("raw PREROUTING #2"), "{:?}", r.drops);
        assert!(r.conclusion.starts_with("dropped on this host"));
    }

    #[test]
    fn no_route_stops_before_leaving() {
        let r = analyse(
            &req(),
            Ok(RouteLookup {
                destination: a("10.2.0.5"),
                dev: String::new(),
                gateway: None,
                src: None,
                kind: "unreachable".into(),
            }),
            None,
            None,
            Ok(Traffic::Icmp {
                sent: 3,
                received: 0,
            }),
            None,
        );
        assert!(
            r.conclusion.starts_with("did not leave this host"),
            "{}",
            r.conclusion
        );
        assert_eq!(r.masqueraded, None);
    }

    #[test]
    fn without_counters_the_walk_decides_masquerading() {
        let rs = Ruleset::parse(D28_CD).unwrap();
        let r = analyse(
            &req(),
            route(),
            Some(&rs),
            Some(&rs),
            Ok(Traffic::TcpTimeout),
            None,
        );
        assert_eq!(r.masqueraded, Some(false), "{}", r.masquerade_evidence);
        let returning = D28_CD.replace(
            "keep-container-source\" -j ACCEPT",
            "keep-container-source\" -j RETURN",
        );
        let rs = Ruleset::parse(&returning).unwrap();
        let r = analyse(
            &req(),
            route(),
            Some(&rs),
            Some(&rs),
            Ok(Traffic::TcpTimeout),
            None,
        );
        // A RETURN inside crossdock's chain hands the packet back to Docker's MASQUERADE.
        assert_eq!(r.masqueraded, Some(true), "{}", r.masquerade_evidence);
        assert!(r.masquerade_evidence.contains("walk"));
    }

    #[test]
    fn ping_summaries_of_both_implementations() {
        assert_eq!(
            parse_ping(
                "--- x ---\n3 packets transmitted, 2 received, 33% packet loss, time 2003ms\n"
            ),
            Some((3, 2))
        );
        assert_eq!(
            parse_ping("--- 10.2.0.5 ping statistics ---\n1 packets transmitted, 0 packets received, 100% packet loss\n"),
            Some((1, 0))
        );
        assert_eq!(parse_ping("ping: bad address"), None);
    }

    #[test]
    fn policy_counters_are_deltas_too() {
        let before = Ruleset::parse("*filter\n:FORWARD DROP [5:420]\nCOMMIT\n").unwrap();
        let after = Ruleset::parse("*filter\n:FORWARD DROP [8:672]\nCOMMIT\n").unwrap();
        let d = counter_deltas(&before, &after);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].index, d[0].packets, d[0].bytes), (None, 3, 252));
        let r = analyse(
            &req(),
            route(),
            Some(&before),
            Some(&after),
            Ok(Traffic::TcpTimeout),
            None,
        );
        assert_eq!(
            r.drops,
            vec!["filter FORWARD policy DROP (+3 packet(s))".to_string()]
        );
    }
}
