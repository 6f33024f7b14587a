//! Container names across hosts (issue 12), beside Docker swarm's DNS in the same lab and run:
//!
//! - **N1** name propagation: a container started on h1 → its name resolvable from a container
//!   on h2. crossdock: `<name>.crossdock.internal` on the default bridge, asked at h2's bridge
//!   gateway; swarm: the container's name on an attachable overlay network, asked at Docker's
//!   embedded DNS (127.0.0.11) of a container on the overlay on h2. Trials alternate between the
//!   two; each asks from the client's network namespace every 20 ms from before `docker run`
//!   until the name answers (`crossdock-bench dns-query --wait`), and the time counts from
//!   `docker run -d` returning (the container is started) to the first answer.
//! - **N2** query latency: a fleet name (a container on h1) asked at crossdock's resolver from h2
//!   against a local name (a container on h2's overlay) asked at Docker's embedded DNS from h2;
//!   rounds alternate, the target is the median of the per-round ratios of the medians.
//! - **N3** (partial): the agents' RSS in this lab once the trials ran. The 20 peers × 100
//!   containers needs 20 Docker hosts or synthetic catalog members, which this part does not build
//!   yet: the figure has no target and says so.
//!
//! One lab (`bench-names`: 2 hosts, Docker 20.10, `lab up --names`, the swarm of
//! [`crate::swarm`]) for everything; about a minute and a half.

use crate::dnsq::{Latencies, Resolved};
use crate::report::{num, Figure, Target};
use crate::stats::{quantile, summarize};
use crate::{control::Bins, swarm};
use anyhow::{anyhow, bail, Context, Result};
use crossdock_lab::{dockerd::BUSYBOX_IMAGE, ContainerInfo, DockerVersion, Lab, LabOptions};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const LAB_NAME: &str = "bench-names";
/// How long one N1 trial waits for its name.
const N1_TIMEOUT: Duration = Duration::from_secs(10);

/// How much to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// N1 trials per system.
    pub trials: usize,
    /// N2 rounds (each system once per round).
    pub rounds: usize,
    /// N2 questions per round and system.
    pub queries: usize,
}

impl Config {
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                trials: 6,
                rounds: 3,
                queries: 100,
            }
        } else {
            Self {
                trials: 20,
                rounds: 5,
                queries: 300,
            }
        }
    }
}

/// One N1 trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct N1Trial {
    /// `crossdock` or `swarm`.
    pub system: String,
    /// Seconds from `docker run` returning to the first answer (`None`: not within the timeout).
    pub secs: Option<f64>,
    pub attempts: u64,
}

/// One N2 round: the median latency of each system, µs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct N2Round {
    pub crossdock_p50_us: Option<f64>,
    pub docker_p50_us: Option<f64>,
    pub crossdock_failed: u64,
    pub docker_failed: u64,
}

/// What the names part found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NamesResult {
    pub n1: Vec<N1Trial>,
    pub n2: Vec<N2Round>,
    /// The agents' RSS after the trials, MiB, by host.
    pub rss_mib: Vec<(String, f64)>,
    /// Containers running in the lab when the RSS was read.
    pub containers: usize,
    pub notes: Vec<String>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `crossdock-bench dns-query ...` in `c`'s network namespace.
fn dns_query(bins: &Bins, c: &ContainerInfo, args: &[&str]) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.args(["-t", &c.pid.to_string(), "-n", "--"])
        .arg(&bins.bench)
        .arg("dns-query")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn json_of<T: for<'de> Deserialize<'de>>(out: &std::process::Output, what: &str) -> Result<T> {
    if !out.status.success() {
        bail!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).with_context(|| format!("{what}: unreadable `{text}`"))
}

/// The lab's parts: clients on h2, the fleet name and the local name for N2.
struct Setup {
    /// h2, default bridge: asks crossdock's resolver at h2's gateway.
    nc_client: ContainerInfo,
    gateway: Ipv4Addr,
    /// h2, overlay: asks Docker's embedded DNS.
    sw_client: ContainerInfo,
}

fn setup(lab: &Lab, bins: &Bins) -> Result<Setup> {
    for i in 1..=2 {
        crate::datapath::wait_agent_ready(lab, i, Duration::from_secs(90))?;
    }
    swarm::setup(lab, 1, &[2]).context("the swarm")?;
    let nc_client = lab.run_container(2, "nc-client", &[BUSYBOX_IMAGE, "sleep", "1000000"])?;
    let sw_client = swarm::run_container(lab, 2, "sw-client")?;
    swarm::run_container(lab, 2, "sw-local")?;
    let web = lab.run_container(1, "n2-web", &[BUSYBOX_IMAGE, "sleep", "1000000"])?;
    let subnet: ipnet::Ipv4Net = lab
        .host(2)
        .subnet
        .parse()
        .map_err(|e| anyhow!("h2's subnet: {e}"))?;
    let gateway = Ipv4Addr::from(u32::from(subnet.network()) + 1);
    // The names work before anything is timed: the fleet name answers from h2.
    let out = dns_query(
        bins,
        &nc_client,
        &[
            "--server",
            &format!("{gateway}:53"),
            "--name",
            "n2-web.crossdock.internal",
            "--wait",
            "--expect",
            &web.ip,
            "--timeout-ms",
            "60000",
        ],
    )
    .output()
    .context("running dns-query")?;
    let r: Resolved = json_of(&out, "dns-query --wait")?;
    if r.resolved_unix_ms.is_none() {
        bail!("n2-web.crossdock.internal did not resolve to {} from h2 within 60 s: the names do not work in this lab", web.ip);
    }
    Ok(Setup {
        nc_client,
        gateway,
        sw_client,
    })
}

/// One N1 trial of `system` (`crossdock` or `swarm`).
fn n1_trial(lab: &Lab, bins: &Bins, s: &Setup, system: &str, k: usize) -> Result<N1Trial> {
    let name = format!("n1-{system}-{k}");
    let (client, server, query) = match system {
        "crossdock" => (
            &s.nc_client,
            format!("{}:53", s.gateway),
            format!("{name}.crossdock.internal"),
        ),
        _ => (&s.sw_client, "127.0.0.11:53".to_string(), name.clone()),
    };
    let timeout = N1_TIMEOUT.as_millis().to_string();
    let waiter = dns_query(
        bins,
        client,
        &[
            "--server",
            &server,
            "--name",
            &query,
            "--wait",
            "--timeout-ms",
            &timeout,
            "--interval-ms",
            "20",
        ],
    )
    .spawn()
    .context("starting the waiting client")?;
    let mut run = vec!["run", "-d", "--name", &name];
    if system == "swarm" {
        run.extend(["--network", swarm::NETWORK]);
    }
    run.extend([BUSYBOX_IMAGE, "sleep", "1000000"]);
    let started = lab.docker(1, &run);
    let t0 = unix_ms();
    let out = waiter
        .wait_with_output()
        .context("waiting for the client")?;
    started.with_context(|| format!("starting {name} on h1"))?;
    let r: Resolved = json_of(&out, "dns-query --wait")?;
    Ok(N1Trial {
        system: system.to_string(),
        secs: r
            .resolved_unix_ms
            .map(|t| t.saturating_sub(t0) as f64 / 1000.0),
        attempts: r.attempts,
    })
}

fn n2_latency(
    bins: &Bins,
    c: &ContainerInfo,
    server: &str,
    name: &str,
    n: usize,
) -> Result<Latencies> {
    let count = n.to_string();
    let out = dns_query(
        bins,
        c,
        &["--server", server, "--name", name, "--count", &count],
    )
    .output()
    .context("running dns-query")?;
    json_of(&out, "dns-query")
}

fn median(v: &[f64]) -> Option<f64> {
    summarize(v).map(|s| s.median)
}

/// Runs N1–N3 in a lab of their own (removed afterwards).
pub fn run(cfg: Config, bins: &Bins, check: &dyn Fn() -> Result<()>) -> Result<NamesResult> {
    crossdock_lab::down(LAB_NAME).context("removing a leftover names lab")?;
    let mut lab = Lab::up(LabOptions {
        name: LAB_NAME.into(),
        hosts: 2,
        docker: DockerVersion::V20,
        crossdock_bin: bins.crossdock.clone(),
        fleet: true,
        names: true,
        agent_wait: Duration::from_secs(60),
        ..LabOptions::default()
    })
    .context("building the names lab")?;
    let result = (|| -> Result<NamesResult> {
        let s = setup(&lab, bins)?;
        let mut r = NamesResult::default();
        for k in 0..cfg.trials {
            check()?;
            let order = if k % 2 == 0 {
                ["crossdock", "swarm"]
            } else {
                ["swarm", "crossdock"]
            };
            for system in order {
                match n1_trial(&lab, bins, &s, system, k) {
                    Ok(t) => r.n1.push(t),
                    Err(e) => r.notes.push(format!("N1 {system} trial {k}: {e:#}")),
                }
            }
        }
        let server = format!("{}:53", s.gateway);
        for round in 0..cfg.rounds {
            check()?;
            let mut nc = None;
            let mut dk = None;
            for first in [round % 2 == 0, round % 2 != 0] {
                if first {
                    nc = Some(n2_latency(
                        bins,
                        &s.nc_client,
                        &server,
                        "n2-web.crossdock.internal",
                        cfg.queries,
                    ));
                } else {
                    dk = Some(n2_latency(
                        bins,
                        &s.sw_client,
                        "127.0.0.11:53",
                        "sw-local",
                        cfg.queries,
                    ));
                }
            }
            let (nc, dk) = (
                nc.context("crossdock's round")??,
                dk.context("Docker's round")??,
            );
            r.n2.push(N2Round {
                crossdock_p50_us: median(&nc.micros),
                docker_p50_us: median(&dk.micros),
                crossdock_failed: nc.failed,
                docker_failed: dk.failed,
            });
        }
        for (host, pid) in crate::footprint::agent_pids(lab.state()) {
            if let Ok(reading) = crate::procstat::read(pid) {
                r.rss_mib.push((host, reading.rss_kib as f64 / 1024.0));
            }
        }
        r.containers = 2 * cfg.trials + 4;
        Ok(r)
    })();
    lab.down().context("removing the names lab")?;
    result
}

fn secs_of(r: &NamesResult, system: &str) -> (Vec<f64>, usize) {
    let mut v: Vec<f64> =
        r.n1.iter()
            .filter(|t| t.system == system)
            .filter_map(|t| t.secs)
            .collect();
    let missed =
        r.n1.iter()
            .filter(|t| t.system == system && t.secs.is_none())
            .count();
    v.sort_by(f64::total_cmp);
    (v, missed)
}

fn figure(
    id: &str,
    name: &str,
    value: Option<f64>,
    unit: &str,
    target: Target,
    detail: String,
) -> Figure {
    Figure {
        id: id.into(),
        name: name.into(),
        value,
        unit: unit.into(),
        target,
        lower_bound: false,
        detail,
        also: None,
    }
}

/// N1–N3 with their targets.
pub fn figures(r: &NamesResult) -> Vec<Figure> {
    let mut f = Vec::new();
    let (cd, cd_missed) = secs_of(r, "crossdock");
    let (sw, sw_missed) = secs_of(r, "swarm");
    let q = |v: &[f64], p: f64| (!v.is_empty()).then(|| quantile(v, p));
    let spread = |v: &[f64], missed: usize| {
        format!(
            "{} trials, min {} s, max {} s{}",
            v.len() + missed,
            v.first().map_or("n/a".into(), |x| num(*x)),
            v.last().map_or("n/a".into(), |x| num(*x)),
            if missed > 0 {
                format!(", {missed} not within {} s", N1_TIMEOUT.as_secs())
            } else {
                String::new()
            }
        )
    };
    let sw_detail = format!(
        "swarm in this run: p50 {} s, p99 {} s",
        q(&sw, 0.5).map_or("n/a".into(), num),
        q(&sw, 0.99).map_or("n/a".into(), num)
    );
    let n1 = |v: Option<f64>, missed: usize| if missed > 0 { None } else { v };
    f.push(figure(
        "N1",
        "name propagation h1 → h2, crossdock p50",
        n1(q(&cd, 0.5), cd_missed),
        "s",
        Target::AtMost(0.5),
        format!("{}; {sw_detail}", spread(&cd, cd_missed)),
    ));
    f.push(figure(
        "N1",
        "name propagation h1 → h2, crossdock p99",
        n1(q(&cd, 0.99), cd_missed),
        "s",
        Target::AtMost(2.0),
        spread(&cd, cd_missed),
    ));
    f.push(figure(
        "N1",
        "name propagation, swarm overlay DNS p50 (same run)",
        n1(q(&sw, 0.5), sw_missed),
        "s",
        Target::None,
        format!(
            "{}; p99 {} s",
            spread(&sw, sw_missed),
            q(&sw, 0.99).map_or("n/a".into(), num)
        ),
    ));
    let ratio = match (q(&cd, 0.5), q(&sw, 0.5)) {
        (Some(c), Some(s)) if s > 0.0 && cd_missed == 0 => Some(c / s),
        _ => None,
    };
    f.push(figure(
        "N1",
        "crossdock p50 / swarm p50 (faster than swarm)",
        ratio,
        "",
        Target::Below(1.0),
        "medians of the interleaved trials".into(),
    ));
    let ratios: Vec<f64> =
        r.n2.iter()
            .filter_map(|x| Some(x.crossdock_p50_us? / x.docker_p50_us?))
            .collect();
    let cd_us: Vec<f64> = r.n2.iter().filter_map(|x| x.crossdock_p50_us).collect();
    let dk_us: Vec<f64> = r.n2.iter().filter_map(|x| x.docker_p50_us).collect();
    let failed: u64 =
        r.n2.iter()
            .map(|x| x.crossdock_failed + x.docker_failed)
            .sum();
    f.push(figure(
        "N2",
        "query latency: fleet name at crossdock's resolver / local name at Docker's embedded DNS",
        median(&ratios),
        "×",
        Target::AtMost(1.2),
        format!(
            "median of {} per-round ratios{}; crossdock p50 {} µs, Docker p50 {} µs (medians over rounds); {failed} questions unanswered",
            ratios.len(),
            summarize(&ratios).map_or(String::new(), |s| format!(" [{}–{}]", num(s.min), num(s.max))),
            median(&cd_us).map_or("n/a".into(), num),
            median(&dk_us).map_or("n/a".into(), num),
        ),
    ));
    let rss_max = r
        .rss_mib
        .iter()
        .map(|x| x.1)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    f.push(figure(
        "N3",
        "agent RSS with names on, 2 hosts (not the 20 peers × 100 containers of the target)",
        rss_max,
        "MiB",
        Target::None,
        format!(
            "{} ({} containers in the lab); the target (≤ 30 MB at 20 peers × 100 containers) needs synthetic catalog members, not built yet",
            r.rss_mib
                .iter()
                .map(|(h, v)| format!("{h} {} MiB", num(*v)))
                .collect::<Vec<_>>()
                .join(", "),
            r.containers
        ),
    ));
    f
}
