//! The data-path benchmark: TCP throughput (iperf3, 1 and 4 streams) and request/response latency
//! between a container on lab host h1 and one on h2, for five ways of connecting them:
//!
//! - (a) host↔host: the hosts' own addresses, the floor every container path pays on top of;
//! - (a2) host↔host forced through the vRouter (a /32 route via the gateway on each side): in the lab
//!   the routed variants cross the vRouter namespace, one more software forwarding step on the same
//!   CPUs, while (a), (d) and (e) are only switched by the vSwitch bridge; (a2) shows what that step
//!   costs by itself (context, no target);
//! - (b) crossdock: containers on Docker's bridge, routed through the VPC route table by the agents;
//! - (c) the same route with crossdock's rules removed (agents stopped, `crossdock agent --cleanup`)
//!   and the firewall opened as the manual recipe does (`iptables -P FORWARD ACCEPT`, Docker's NAT kept);
//! - (d) Docker's swarm overlay network (`--attachable`) across the lab's dockerds;
//! - (e) a kernel VXLAN overlay as flannel builds it ([`crate::vxlan`]).
//!
//! The machine is shared and noisy, so the variants are interleaved: every round measures all five,
//! in an order that alternates between rounds (and keeps the agent start/stop to one per round), and
//! the targets are ratios of the same round's measurements, reported as the median of the per-round
//! ratios with their range. Every variant also records the source address the receiver saw (the
//! sender's container IP when the path keeps it, the host IP under Docker's NAT), which shows that a
//! variant is what it claims to be.

use crate::iperf::{self, IperfResult};
use crate::proc::{poll, run_checked, LineChild, Ns};
use crate::report::{num, Figure, Target};
use crate::rr::{RrResult, ServerEvent};
use crate::stats::{paired_ratios, summarize, Summary};
use crate::{swarm, vxlan};
use anyhow::{anyhow, bail, Context, Result};
use crossdock_lab::{ContainerInfo, Lab};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The cluster range of the lab's agents.
pub const CLUSTER: &str = "10.0.0.0/8";
const IPERF_PORT: u16 = 5201;
const RR_PORT: u16 = 7001;
const PROBE_PORT: u16 = 7002;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    HostToHost,
    HostViaRouter,
    Crossdock,
    OpenFirewall,
    SwarmOverlay,
    Vxlan,
}

impl Variant {
    pub const ALL: [Variant; 6] = [
        Variant::HostToHost,
        Variant::HostViaRouter,
        Variant::Crossdock,
        Variant::OpenFirewall,
        Variant::SwarmOverlay,
        Variant::Vxlan,
    ];

    pub fn letter(self) -> &'static str {
        match self {
            Variant::HostToHost => "a",
            Variant::HostViaRouter => "a2",
            Variant::Crossdock => "b",
            Variant::OpenFirewall => "c",
            Variant::SwarmOverlay => "d",
            Variant::Vxlan => "e",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Variant::HostToHost => "host↔host",
            Variant::HostViaRouter => "host↔host through the vRouter",
            Variant::Crossdock => "crossdock routed",
            Variant::OpenFirewall => "routed, crossdock rules removed, FORWARD ACCEPT",
            Variant::SwarmOverlay => "Docker swarm overlay",
            Variant::Vxlan => "kernel VXLAN (flannel-like)",
        }
    }

    /// `(b) crossdock routed`
    pub fn title(self) -> String {
        format!("({}) {}", self.letter(), self.label())
    }

    /// The order of round `r`: a, a2, b, d, c, e then e, c, d, a2, a, b, ... (one agent stop and one
    /// start per two rounds; every variant moves between early and late in a round).
    pub fn order(round: usize) -> [Variant; 6] {
        use Variant::*;
        if round % 2 == 0 {
            [
                HostToHost,
                HostViaRouter,
                Crossdock,
                SwarmOverlay,
                OpenFirewall,
                Vxlan,
            ]
        } else {
            [
                Vxlan,
                OpenFirewall,
                SwarmOverlay,
                HostViaRouter,
                HostToHost,
                Crossdock,
            ]
        }
    }
}

/// What one variant measured in one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub round: usize,
    pub variant: Variant,
    pub tcp1: Option<IperfResult>,
    pub tcp4: Option<IperfResult>,
    pub rr: Option<RrResult>,
    /// The source address the receiver saw.
    pub source_seen: Option<String>,
    pub errors: Vec<String>,
}

/// The metrics compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Tcp1,
    Tcp4,
    RrRate,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::Tcp1, Metric::Tcp4, Metric::RrRate];

    pub fn label(self) -> &'static str {
        match self {
            Metric::Tcp1 => "TCP 1 stream",
            Metric::Tcp4 => "TCP 4 streams",
            Metric::RrRate => "TCP RR rate",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Metric::Tcp1 => "tcp1",
            Metric::Tcp4 => "tcp4",
            Metric::RrRate => "rr",
        }
    }

    /// Gbit/s for throughput, transactions/s for RR.
    pub fn of(self, s: &Sample) -> Option<f64> {
        match self {
            Metric::Tcp1 => s.tcp1.as_ref().map(IperfResult::gbps),
            Metric::Tcp4 => s.tcp4.as_ref().map(IperfResult::gbps),
            Metric::RrRate => s.rr.as_ref().map(|r| r.rate),
        }
    }
}

/// Settings of the data-path benchmark.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub rounds: usize,
    pub iperf_secs: u64,
    pub rr_secs: u64,
    pub rr_size: usize,
    /// This benchmark's own binary (runs the RR server, client and probe inside namespaces).
    #[serde(skip)]
    pub bench_exe: PathBuf,
}

/// Everything the data-path benchmark found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Results {
    pub samples: Vec<Sample>,
    /// Why (d) could not run, if it could not.
    pub swarm_error: Option<String>,
    /// What was done or seen along the way that a reader of the figures should know.
    pub notes: Vec<String>,
    /// FORWARD policy of h1 and h2 as Docker left it.
    pub forward_policy: Vec<String>,
    /// Lines of `iptables-save` naming crossdock in h1, by mode (`agents`, `cleaned`).
    pub crossdock_rule_lines: BTreeMap<String, usize>,
}

/// Endpoints of one variant.
#[derive(Debug, Clone)]
struct Path {
    client: Ns,
    server: Ns,
    server_ip: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mode {
    agents: bool,
    vxlan: bool,
    host_routes: bool,
}

/// Runs the data-path benchmark in `lab` (two hosts with Docker, agents running).
pub fn run(lab: &mut Lab, cfg: &Config, check: &dyn Fn() -> Result<()>) -> Result<Results> {
    let mut bench = Bench::new(lab, cfg)?;
    let result = bench.rounds(check);
    bench.restore();
    result?;
    Ok(bench.results)
}

struct Bench<'a> {
    lab: &'a mut Lab,
    cfg: Config,
    c: [ContainerInfo; 2],
    o: Option<[ContainerInfo; 2]>,
    mode: Mode,
    /// Routes this benchmark put into the table (only if the agents had not).
    manual_routes: Vec<String>,
    results: Results,
}

impl<'a> Bench<'a> {
    fn new(lab: &'a mut Lab, cfg: &Config) -> Result<Bench<'a>> {
        let image = crossdock_lab::dockerd::BUSYBOX_IMAGE;
        let c1 = lab.run_container(1, "bench-c1", &[image, "sleep", "1000000"])?;
        let c2 = lab.run_container(2, "bench-c2", &[image, "sleep", "1000000"])?;
        let mut results = Results::default();
        let o = match swarm::setup(lab, 1, &[2]).and_then(|()| {
            Ok([
                swarm::run_container(lab, 1, "bench-o1")?,
                swarm::run_container(lab, 2, "bench-o2")?,
            ])
        }) {
            Ok(o) => Some(o),
            Err(e) => {
                results.swarm_error = Some(format!("{e:#}"));
                None
            }
        };
        for i in 1..=2 {
            let out = lab.exec(i, &["iptables", "-w", "5", "-S", "FORWARD"])?;
            let policy = String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            results.forward_policy.push(format!("h{i}: {policy}"));
        }
        let agents = ["h1", "h2"]
            .iter()
            .all(|h| lab.agent_health(h).0 != "stopped");
        Ok(Bench {
            lab,
            cfg: cfg.clone(),
            c: [c1, c2],
            o,
            mode: Mode {
                agents,
                vxlan: false,
                host_routes: false,
            },
            manual_routes: Vec::new(),
            results,
        })
    }

    fn note(&mut self, n: impl Into<String>) {
        let n = n.into().split_whitespace().collect::<Vec<_>>().join(" ");
        eprintln!("  note: {n}");
        self.results.notes.push(n);
    }

    fn rounds(&mut self, check: &dyn Fn() -> Result<()>) -> Result<()> {
        for round in 0..self.cfg.rounds {
            for variant in Variant::order(round) {
                check()?;
                let sample = self.measure(round, variant);
                eprintln!(
                    "  round {} {:<52} tcp1 {:>6} Gbit/s  tcp4 {:>6} Gbit/s  rr {:>7}/s p50 {:>6} µs  src {}{}",
                    round + 1,
                    variant.title(),
                    sample.tcp1.as_ref().map(|r| num(r.gbps())).unwrap_or("-".into()),
                    sample.tcp4.as_ref().map(|r| num(r.gbps())).unwrap_or("-".into()),
                    sample.rr.as_ref().map(|r| num(r.rate)).unwrap_or("-".into()),
                    sample.rr.as_ref().map(|r| num(r.p50_us)).unwrap_or("-".into()),
                    sample.source_seen.as_deref().unwrap_or("-"),
                    if sample.errors.is_empty() { String::new() } else { format!("  ERROR {}", sample.errors.join("; ")) }
                );
                self.results.samples.push(sample);
            }
        }
        Ok(())
    }

    fn measure(&mut self, round: usize, variant: Variant) -> Sample {
        let mut s = Sample {
            round,
            variant,
            tcp1: None,
            tcp4: None,
            rr: None,
            source_seen: None,
            errors: Vec::new(),
        };
        let path = match self.prepare(variant) {
            Ok(p) => p,
            Err(e) => {
                s.errors.push(format!("{e:#}"));
                return s;
            }
        };
        match iperf_run(&path, 1, self.cfg.iperf_secs) {
            Ok(r) => s.tcp1 = Some(r),
            Err(e) => s.errors.push(format!("tcp1: {e:#}")),
        }
        match iperf_run(&path, 4, self.cfg.iperf_secs) {
            Ok(r) => s.tcp4 = Some(r),
            Err(e) => s.errors.push(format!("tcp4: {e:#}")),
        }
        match rr_run(&path, &self.cfg) {
            Ok((r, src)) => {
                s.rr = Some(r);
                s.source_seen = src;
            }
            Err(e) => s.errors.push(format!("rr: {e:#}")),
        }
        s
    }

    /// Puts the lab into the state `variant` needs and returns its endpoints.
    fn prepare(&mut self, variant: Variant) -> Result<Path> {
        if variant != Variant::HostViaRouter {
            self.set_host_routes(false)?;
        }
        let containers = Path {
            client: Ns::Pid(self.c[0].pid),
            server: Ns::Pid(self.c[1].pid),
            server_ip: self.c[1].ip.clone(),
        };
        match variant {
            Variant::HostToHost | Variant::HostViaRouter => {
                self.set_vxlan(false)?;
                self.set_host_routes(variant == Variant::HostViaRouter)?;
                Ok(Path {
                    client: Ns::Path(self.lab.host(1).netns_path()),
                    server: Ns::Path(self.lab.host(2).netns_path()),
                    server_ip: self.lab.host(2).private_ip.clone(),
                })
            }
            Variant::SwarmOverlay => {
                self.set_vxlan(false)?;
                let o = self.o.as_ref().ok_or_else(|| {
                    anyhow!(
                        "no swarm overlay: {}",
                        self.results.swarm_error.clone().unwrap_or_default()
                    )
                })?;
                Ok(Path {
                    client: Ns::Pid(o[0].pid),
                    server: Ns::Pid(o[1].pid),
                    server_ip: o[1].ip.clone(),
                })
            }
            Variant::Crossdock => {
                self.set_vxlan(false)?;
                self.set_agents(true)?;
                self.check_path(&containers)?;
                Ok(containers)
            }
            Variant::OpenFirewall => {
                self.set_vxlan(false)?;
                self.set_agents(false)?;
                self.check_path(&containers)?;
                Ok(containers)
            }
            Variant::Vxlan => {
                self.set_agents(false)?;
                self.set_vxlan(true)?;
                self.check_path(&containers)?;
                Ok(containers)
            }
        }
    }

    /// Data passes from c1 to c2 (bounded wait: routes may take a moment to reach the vRouter).
    fn check_path(&self, p: &Path) -> Result<()> {
        let server = LineChild::spawn(
            p.server.command(&[
                &self.cfg.bench_exe.display().to_string(),
                "rr-server",
                "--port",
                &PROBE_PORT.to_string(),
            ]),
            "rr-server (probe)",
        )?;
        server.next_line(Duration::from_secs(10))?;
        run_checked(
            p.client.command(&[
                &self.cfg.bench_exe.display().to_string(),
                "probe",
                "--to",
                &format!("{}:{PROBE_PORT}", p.server_ip),
                "--timeout-ms",
                "30000",
            ]),
            "probe",
        )
        .context("the containers cannot reach each other in this variant")?;
        Ok(())
    }

    fn crossdock_lines(&self, index: usize) -> usize {
        self.lab
            .exec(index, &["iptables-save"])
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| l.to_ascii_lowercase().contains("crossdock"))
                    .count()
            })
            .unwrap_or(0)
    }

    fn set_agents(&mut self, on: bool) -> Result<()> {
        if self.mode.agents == on {
            return Ok(());
        }
        let bin = self.lab.state().crossdock_bin.display().to_string();
        if on {
            self.remove_manual_routes()?;
            for i in 1..=2 {
                let policy = if self.results.forward_policy[i - 1].contains("DROP") {
                    "DROP"
                } else {
                    "ACCEPT"
                };
                self.lab
                    .exec(i, &["iptables", "-w", "5", "-P", "FORWARD", policy])?;
            }
            self.lab.agent_start("h1")?;
            self.lab.agent_start("h2")?;
            self.mode.agents = true;
            for i in 1..=2 {
                wait_agent_ready(self.lab, i, Duration::from_secs(90))?;
            }
            let n = self.crossdock_lines(1);
            self.results
                .crossdock_rule_lines
                .entry("agents".into())
                .or_insert(n);
        } else {
            for h in ["h1", "h2"] {
                self.lab.agent_stop(h)?;
            }
            self.mode.agents = false;
            for i in 1..=2 {
                let config = self.lab.host(i).agent_config.display().to_string();
                // What matters is that none of crossdock's rules are left (checked below); a failing
                // clean-up is reported but only fatal if it leaves rules behind.
                if let Err(e) = self
                    .lab
                    .exec(i, &[&bin, "agent", "--cleanup", "--config", &config])
                {
                    self.note(format!("`crossdock agent --cleanup` on h{i}: {e:#}"));
                }
                self.lab
                    .exec(i, &["iptables", "-w", "5", "-P", "FORWARD", "ACCEPT"])?;
            }
            let n = self.crossdock_lines(1);
            self.results
                .crossdock_rule_lines
                .entry("cleaned".into())
                .or_insert(n);
            if n > 0 {
                bail!("crossdock's rules are still in h1 after `crossdock agent --cleanup` ({n} iptables-save lines)");
            }
            self.ensure_routes()?;
        }
        Ok(())
    }

    /// The VPC routes of both hosts' subnets exist (the agents made them; if they did not, a hand-made
    /// route as in the manual recipe, removed again before the agents start).
    fn ensure_routes(&mut self) -> Result<()> {
        let state = self.lab.admin_sync(|c| async move { c.state().await })?;
        for i in 1..=2 {
            let h = self.lab.host(i).clone();
            let subnet: ipnet::Ipv4Net = h.subnet.parse()?;
            let present = state
                .entries
                .iter()
                .any(|e| e.destination_cidr_block == subnet && e.next_hop_id == h.instance_id);
            if !present {
                let req = crossdock_vpcsim::admin::PutRoute {
                    destination_cidr_block: Some(subnet),
                    next_hop_id: h.instance_id.clone(),
                    route_entry_name: "manual".into(),
                    ..Default::default()
                };
                let e = self
                    .lab
                    .admin_sync(move |c| async move { c.put_route(&req).await })?;
                self.note(format!(
                    "the route of h{i}'s subnet was missing with the agents stopped; a hand-made one was put in for (c)/(e)"
                ));
                self.manual_routes.push(e.route_entry_id);
            }
        }
        Ok(())
    }

    fn remove_manual_routes(&mut self) -> Result<()> {
        for id in std::mem::take(&mut self.manual_routes) {
            self.lab
                .admin_sync(move |c| async move { c.delete_route(&id).await })?;
        }
        Ok(())
    }

    /// /32 routes between the hosts via the vRouter (variant a2), or not.
    fn set_host_routes(&mut self, on: bool) -> Result<()> {
        if self.mode.host_routes == on {
            return Ok(());
        }
        self.mode.host_routes = on;
        let gateway = crossdock_lab::lab::GATEWAY;
        for (me, peer) in [(1, 2), (2, 1)] {
            let dst = format!("{}/32", self.lab.host(peer).private_ip);
            let ns = Ns::Path(self.lab.host(me).netns_path());
            if on {
                ns.run(&["ip", "route", "replace", &dst, "via", gateway])?;
            } else {
                ns.run(&["ip", "route", "del", &dst, "via", gateway])?;
            }
        }
        Ok(())
    }

    fn vtep_hosts(&self) -> Vec<vxlan::VtepHost> {
        (1..=2)
            .map(|i| {
                let h = self.lab.host(i);
                vxlan::VtepHost {
                    index: i,
                    host_ip: h.private_ip.clone(),
                    subnet: h.subnet.clone(),
                }
            })
            .collect()
    }

    fn set_vxlan(&mut self, on: bool) -> Result<()> {
        if self.mode.vxlan == on {
            return Ok(());
        }
        let all = self.vtep_hosts();
        if on {
            self.mode.vxlan = true;
            for h in &all {
                let ns = Ns::Path(self.lab.host(h.index).netns_path());
                vxlan::apply(&ns, &vxlan::setup_commands(h, &all, CLUSTER))?;
            }
            for c in &self.c {
                Ns::Pid(c.pid).run(&[
                    "ip",
                    "link",
                    "set",
                    "eth0",
                    "mtu",
                    &vxlan::MTU.to_string(),
                ])?;
            }
        } else {
            let mut errors = Vec::new();
            for h in &all {
                let ns = Ns::Path(self.lab.host(h.index).netns_path());
                errors.extend(vxlan::apply_all(&ns, &vxlan::teardown_commands(h, CLUSTER)));
            }
            for c in &self.c {
                if let Err(e) = Ns::Pid(c.pid).run(&["ip", "link", "set", "eth0", "mtu", "1500"]) {
                    errors.push(format!("{e:#}"));
                }
            }
            self.mode.vxlan = false;
            if !errors.is_empty() {
                bail!("removing the VXLAN overlay: {}", errors.join("; "));
            }
        }
        Ok(())
    }

    /// Leaves the lab as the agents expect it (agents running, no overlay, no hand-made routes).
    fn restore(&mut self) {
        if let Err(e) = self.set_host_routes(false) {
            self.note(format!("{e:#}"));
        }
        if let Err(e) = self.set_vxlan(false) {
            self.note(format!("{e:#}"));
        }
        if let Err(e) = self.set_agents(true) {
            self.note(format!(
                "restarting the agents after the data-path benchmark: {e:#}"
            ));
        }
    }
}

/// Waits until host `index`'s agent reports ready; fails at once if the agent process exits, quoting the
/// end of its log.
pub fn wait_agent_ready(lab: &Lab, index: usize, timeout: Duration) -> Result<()> {
    let host = lab.host(index).clone();
    let mut last = (String::new(), String::new());
    let outcome = poll(timeout, Duration::from_millis(200), || {
        last = crossdock_lab::lab::agent_health(&host);
        if last.0 == "ready" {
            return Some(Ok(()));
        }
        if crossdock_lab::lab::agent_pid(&host).is_none() {
            let log = std::fs::read_to_string(host.agent_log()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            return Some(Err(anyhow!(
                "the agent of {} exited; the end of {}: {}",
                host.name,
                host.agent_log().display(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )));
        }
        None
    });
    match outcome {
        Some(r) => r,
        None => bail!(
            "the agent of {} is not ready after {timeout:?}: {} {}",
            host.name,
            last.0,
            last.1
        ),
    }
}

/// Waits until something listens on `port` in `ns` (iperf3 says nothing useful when it is ready).
fn wait_listening(ns: &Ns, port: u16, timeout: Duration) -> Result<()> {
    let filter = format!("sport = :{port}");
    poll(timeout, Duration::from_millis(20), || {
        let out = ns.command(&["ss", "-Hltn", &filter]).output().ok()?;
        (!String::from_utf8_lossy(&out.stdout).trim().is_empty()).then_some(())
    })
    .ok_or_else(|| {
        anyhow!(
            "nothing listens on port {port} in {} after {timeout:?}",
            ns.describe()
        )
    })
}

fn iperf_run(p: &Path, streams: usize, secs: u64) -> Result<IperfResult> {
    let port = IPERF_PORT.to_string();
    let mut server = crate::proc::ChildGuard::new(
        p.server
            .command(&["iperf3", "-s", "-1", "-p", &port])
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("cannot start the iperf3 server")?,
    );
    wait_listening(&p.server, IPERF_PORT, Duration::from_secs(10))?;
    let out = p
        .client
        .command(&[
            "iperf3",
            "-c",
            &p.server_ip,
            "-p",
            &port,
            "-t",
            &secs.to_string(),
            "-P",
            &streams.to_string(),
            "-J",
            "--connect-timeout",
            "3000",
        ])
        .output()
        .context("cannot run the iperf3 client")?;
    let result = iperf::parse(&String::from_utf8_lossy(&out.stdout));
    server.wait_or_kill(Duration::from_secs(5));
    result
}

fn rr_run(p: &Path, cfg: &Config) -> Result<(RrResult, Option<String>)> {
    let exe = cfg.bench_exe.display().to_string();
    let server = LineChild::spawn(
        p.server.command(&[
            &exe,
            "rr-server",
            "--port",
            &RR_PORT.to_string(),
            "--max-conns",
            "1",
        ]),
        "rr-server",
    )?;
    server.next_line(Duration::from_secs(10))?;
    let out = run_checked(
        p.client.command(&[
            &exe,
            "rr-client",
            "--to",
            &format!("{}:{RR_PORT}", p.server_ip),
            "--seconds",
            &cfg.rr_secs.to_string(),
            "--size",
            &cfg.rr_size.to_string(),
        ]),
        "rr-client",
    )?;
    let result: RrResult =
        serde_json::from_slice(&out.stdout).context("rr-client printed no result")?;
    let peer = server
        .rest(Duration::from_secs(5))
        .iter()
        .filter_map(|l| serde_json::from_str::<ServerEvent>(l).ok())
        .find_map(|e| match e {
            ServerEvent::Peer { addr } => Some(addr),
            ServerEvent::Ready { .. } => None,
        });
    Ok((result, peer))
}

/// Per-variant summaries of one metric.
pub fn variant_summary(samples: &[Sample], variant: Variant, metric: Metric) -> Option<Summary> {
    let v: Vec<f64> = samples
        .iter()
        .filter(|s| s.variant == variant)
        .filter_map(|s| metric.of(s))
        .collect();
    summarize(&v)
}

/// The values of `variant` by round (`None` where it failed).
fn by_round(
    samples: &[Sample],
    variant: Variant,
    metric: Metric,
    rounds: usize,
) -> Vec<Option<f64>> {
    (0..rounds)
        .map(|r| {
            samples
                .iter()
                .find(|s| s.round == r && s.variant == variant)
                .and_then(|s| metric.of(s))
        })
        .collect()
}

/// Median of the per-round ratios `num / den` of a metric, with its summary.
pub fn ratio(samples: &[Sample], num: Variant, den: Variant, metric: Metric) -> Option<Summary> {
    let rounds = samples.iter().map(|s| s.round + 1).max().unwrap_or(0);
    summarize(&paired_ratios(
        &by_round(samples, num, metric, rounds),
        &by_round(samples, den, metric, rounds),
    ))
}

/// D1–D3 for every metric.
pub fn figures(results: &Results) -> Vec<Figure> {
    let targets = [
        (
            "D1",
            Variant::OpenFirewall,
            0.97,
            "crossdock's rules cost ≤ 3 %",
        ),
        (
            "D2",
            Variant::SwarmOverlay,
            1.15,
            "≥ 15 % over Docker's overlay",
        ),
        (
            "D3",
            Variant::HostToHost,
            0.75,
            "≥ 75 % of the hosts' own path",
        ),
    ];
    let mut out = Vec::new();
    for (id, den, target, why) in targets {
        for m in Metric::ALL {
            let s = ratio(&results.samples, Variant::Crossdock, den, m);
            let name = format!("(b)/({}) {}", den.letter(), m.label());
            let of_medians = match (
                variant_summary(&results.samples, Variant::Crossdock, m),
                variant_summary(&results.samples, den, m),
            ) {
                (Some(a), Some(b)) if b.median > 0.0 => num(a.median / b.median),
                _ => "n/a".into(),
            };
            let detail = match (&s, den) {
                (Some(s), _) => format!(
                    "median of {} per-round ratios, range {}–{}, quartiles {}–{}; ratio of the medians {of_medians}; {why}",
                    s.n,
                    num(s.min),
                    num(s.max),
                    num(s.p25),
                    num(s.p75)
                ),
                (None, Variant::SwarmOverlay) if results.swarm_error.is_some() => format!(
                    "swarm overlay unavailable: {}",
                    results.swarm_error.clone().unwrap_or_default()
                ),
                (None, _) => "no round measured both variants (see the errors in the JSON)".into(),
            };
            out.push(
                Figure::new(id, &name, s.map(|s| s.median), "", Target::AtLeast(target))
                    .detail(detail),
            );
        }
    }
    // Context for D3: both sides of this ratio cross the vRouter namespace.
    for m in Metric::ALL {
        let s = ratio(
            &results.samples,
            Variant::Crossdock,
            Variant::HostViaRouter,
            m,
        );
        out.push(
            Figure::new(
                "D3'",
                &format!("(b)/(a2) {} (context)", m.label()),
                s.map(|s| s.median),
                "",
                Target::None,
            )
            .detail(match s {
                Some(s) => format!(
                    "median of {} per-round ratios, range {}–{}; host↔host through the same vRouter hop",
                    s.n,
                    num(s.min),
                    num(s.max)
                ),
                None => "not measured".into(),
            }),
        );
    }
    out
}

/// A markdown table of the variants' medians and ranges.
pub fn variant_table(results: &Results) -> String {
    let mut s = String::from(
        "| variant | TCP 1 stream Gbit/s | TCP 4 streams Gbit/s | RR transactions/s | RR p50 µs | RR p99 µs | source seen by the receiver |\n|---|---|---|---|---|---|---|\n",
    );
    for v in Variant::ALL {
        let show = |m: Metric, d: usize| {
            variant_summary(&results.samples, v, m)
                .map(|x| x.show(d))
                .unwrap_or_else(|| "n/a".into())
        };
        let lat = |f: fn(&RrResult) -> f64| {
            let vals: Vec<f64> = results
                .samples
                .iter()
                .filter(|s| s.variant == v)
                .filter_map(|s| s.rr.as_ref().map(f))
                .collect();
            summarize(&vals)
                .map(|x| x.show(0))
                .unwrap_or_else(|| "n/a".into())
        };
        let mut sources: Vec<String> = results
            .samples
            .iter()
            .filter(|s| s.variant == v)
            .filter_map(|s| s.source_seen.clone())
            .collect();
        sources.sort();
        sources.dedup();
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            v.title(),
            show(Metric::Tcp1, 2),
            show(Metric::Tcp4, 2),
            show(Metric::RrRate, 0),
            lat(|r| r.p50_us),
            lat(|r| r.p99_us),
            if sources.is_empty() {
                "n/a".into()
            } else {
                sources.join(", ")
            }
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iperf(gbps: f64) -> IperfResult {
        IperfResult {
            received_bps: gbps * 1e9,
            sent_bps: gbps * 1e9,
            retransmits: 0,
            streams: 1,
            seconds: 3.0,
        }
    }

    fn sample(round: usize, variant: Variant, tcp1: Option<f64>) -> Sample {
        Sample {
            round,
            variant,
            tcp1: tcp1.map(iperf),
            tcp4: tcp1.map(|g| iperf(g * 2.0)),
            rr: Some(crate::rr::summarize_latencies(vec![50_000; 100], 1.0, 1)),
            source_seen: Some("10.0.0.2".into()),
            errors: vec![],
        }
    }

    #[test]
    fn every_round_measures_every_variant_in_alternating_order() {
        for r in 0..4 {
            let mut o = Variant::order(r).to_vec();
            o.sort();
            assert_eq!(o, Variant::ALL.to_vec());
        }
        assert_ne!(Variant::order(0), Variant::order(1));
        assert_eq!(Variant::order(0), Variant::order(2));
        // The routed variants that need the agents off sit next to each other: one stop per round.
        for r in 0..2 {
            let o = Variant::order(r);
            let c = o.iter().position(|v| *v == Variant::OpenFirewall).unwrap();
            let e = o.iter().position(|v| *v == Variant::Vxlan).unwrap();
            assert_eq!(c.abs_diff(e), 1);
        }
    }

    #[test]
    fn ratios_pair_the_same_round_and_skip_failed_rounds() {
        let samples = vec![
            sample(0, Variant::Crossdock, Some(9.0)),
            sample(0, Variant::OpenFirewall, Some(10.0)),
            sample(1, Variant::Crossdock, Some(5.0)),
            sample(1, Variant::OpenFirewall, Some(5.0)),
            sample(2, Variant::Crossdock, Some(8.0)),
            sample(2, Variant::OpenFirewall, None),
        ];
        let r = ratio(
            &samples,
            Variant::Crossdock,
            Variant::OpenFirewall,
            Metric::Tcp1,
        )
        .unwrap();
        assert_eq!(r.n, 2);
        assert!((r.median - 0.95).abs() < 1e-9);
        assert!((r.min - 0.9).abs() < 1e-9 && (r.max - 1.0).abs() < 1e-9);
    }

    #[test]
    fn figures_cover_three_targets_for_three_metrics_and_name_a_missing_swarm() {
        let results = Results {
            samples: vec![
                sample(0, Variant::Crossdock, Some(9.0)),
                sample(0, Variant::OpenFirewall, Some(10.0)),
                sample(0, Variant::HostToHost, Some(10.0)),
            ],
            swarm_error: Some("docker swarm init: boom".into()),
            ..Default::default()
        };
        let f = figures(&results);
        assert_eq!(f.len(), 12);
        assert!(f[9..].iter().all(|f| f.id == "D3'" && f.met().is_none()));
        let d1 = f
            .iter()
            .find(|f| f.id == "D1" && f.name.contains("1 stream"))
            .unwrap();
        assert!((d1.value.unwrap() - 0.9).abs() < 1e-9);
        assert_eq!(d1.met(), Some(false));
        let d2 = f.iter().find(|f| f.id == "D2").unwrap();
        assert_eq!(d2.value, None);
        assert!(d2.detail.contains("boom"), "{}", d2.detail);
        let d3 = f
            .iter()
            .find(|f| f.id == "D3" && f.name.contains("4 streams"))
            .unwrap();
        assert!((d3.value.unwrap() - 0.9).abs() < 1e-9);
        assert_eq!(d3.met(), Some(true));
        let table = variant_table(&results);
        assert!(
            table.contains("| (b) crossdock routed | 9.00 [9.00–9.00] | 18.00 [18.00–18.00] |"),
            "{table}"
        );
        assert!(
            table.contains("| (d) Docker swarm overlay | n/a |"),
            "{table}"
        );
    }
}
