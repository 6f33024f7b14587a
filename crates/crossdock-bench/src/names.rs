//! Container names across hosts (issue 12), beside Docker swarm's DNS in the same lab and run:
//!
//! - **N1** name propagation: a container started on h1 → its name resolvable from a container
//!   on h2. crossdock: `<name>.crossdock.internal` on the default bridge, asked at h2's bridge
//!   gateway; swarm: the container's name on an attachable overlay network, asked at Docker's
//!   embedded DNS (127.0.0.11) of a container on the overlay on h2. Trials alternate between the
//!   two; each asks from the client's network namespace every 20 ms from before `docker run`
//!   until the name answers (`crossdock-bench dns-query --wait`). The targets count from
//!   `docker run -d` returning (the container is started) to the first answer; swarm names a
//!   container when it attaches it to the overlay, before it starts, so on that clock its times
//!   are negative, and "faster than swarm" compares the two from invoking `docker run -d`.
//! - **N2** query latency: a fleet name (a container on h1) asked at crossdock's resolver from h2
//!   against a local name (a container on h2's overlay) asked at Docker's embedded DNS from h2;
//!   rounds alternate, the target is the median of the per-round ratios of the medians.
//! - **N3** agent RSS with 20 hosts × 100 containers in its catalog: a lab of its own
//!   (`bench-names-rss`) with one Docker host running the measured agent and 100 containers, and
//!   19 hosts without dockerd or agent (instances tagged into the fleet, so the agent admits their
//!   addresses as members), each running a synthetic member ([`crate::catalog_peer`]: the
//!   agents' exchange, publishing 100 records). The RSS is sampled once the agent's `/status`
//!   shows 2000 records from 20 hosts.
//!
//! N1 and N2 in one lab (`bench-names`: 2 hosts, Docker 20.10, `lab up --names`, the swarm of
//! [`crate::swarm`]), N3 in the next; about a minute and a half.

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
/// N3's lab: one Docker host with the measured agent, the synthetic members in hosts without one.
pub const RSS_LAB_NAME: &str = "bench-names-rss";
/// N3's fleet: hosts (the measured one included) and containers per host.
pub const N3_HOSTS: usize = 20;
pub const N3_CONTAINERS: usize = 100;
/// How long N3 samples the agent's RSS once its catalog is full, and how often.
const N3_SAMPLE: Duration = Duration::from_secs(5);
const N3_SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// How long N3 waits for the full catalog.
const N3_FILL_TIMEOUT: Duration = Duration::from_secs(120);
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
    /// Seconds from `docker run -d` returning (the container started) to the first answer
    /// (`None`: not within the timeout); negative when the name answered before `docker run`
    /// returned (swarm registers a container's name when it attaches it to the network).
    pub secs: Option<f64>,
    pub attempts: u64,
    /// How long `docker run -d` took, s: `run_secs + secs` is the time from invoking it.
    #[serde(default)]
    pub run_secs: Option<f64>,
}

impl N1Trial {
    /// Seconds from invoking `docker run -d` to the first answer.
    pub fn since_invoked(&self) -> Option<f64> {
        Some(self.run_secs? + self.secs?)
    }
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
    /// N3 at the target's size.
    #[serde(default)]
    pub n3: Option<N3Result>,
    pub notes: Vec<String>,
}

/// N3: one agent holding a fleet's catalog.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct N3Result {
    /// Hosts in the agent's catalog (its own included) when it was full.
    pub hosts: usize,
    /// Records in the agent's catalog when it was full.
    pub records: usize,
    /// Seconds from the synthetic members' start to the full catalog.
    pub secs_to_full: f64,
    /// The agent's `VmRSS`, MiB, sampled over [`N3_SAMPLE`] once the catalog was full.
    pub rss_mib: Vec<f64>,
    /// Its `VmHWM` (peak RSS since it started), MiB, after the samples.
    pub hwm_mib: Option<f64>,
    /// The agent binary (a debug build is no verdict).
    pub agent_bin: String,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `to - from` (unix ms) in seconds, negative when `to` came first.
fn signed_secs(from: u64, to: u64) -> f64 {
    if to >= from {
        (to - from) as f64 / 1000.0
    } else {
        -((from - to) as f64 / 1000.0)
    }
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
    let invoked = unix_ms();
    let started = lab.docker(1, &run);
    let t0 = unix_ms();
    let out = waiter
        .wait_with_output()
        .context("waiting for the client")?;
    started.with_context(|| format!("starting {name} on h1"))?;
    let r: Resolved = json_of(&out, "dns-query --wait")?;
    Ok(N1Trial {
        system: system.to_string(),
        secs: r.resolved_unix_ms.map(|t| signed_secs(t0, t)),
        attempts: r.attempts,
        run_secs: Some(signed_secs(invoked, t0)),
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
    let mut result = result?;
    check()?;
    match n3(bins, check) {
        Ok(x) => result.n3 = Some(x),
        Err(e) => result.notes.push(format!("N3: {e:#}")),
    }
    Ok(result)
}

/// Records and hosts in the agent's catalog, from its `/status` (`names.records`, `names.peers`).
pub fn catalog_fill(status: &serde_json::Value) -> Option<(usize, usize)> {
    let names = status.get("names")?;
    let records = usize::try_from(names.get("records")?.as_u64()?).ok()?;
    let hosts = names.get("peers")?.as_array()?.len();
    Some((records, hosts))
}

/// A child process ended by PID when dropped (the synthetic members).
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `n` containers `n3-<k>` on host 1, four `docker run` at a time.
fn start_containers(lab: &Lab, n: usize) -> Result<()> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if k >= n {
                            return Ok(());
                        }
                        let name = format!("n3-{k}");
                        lab.docker(
                            1,
                            &[
                                "run",
                                "-d",
                                "--name",
                                &name,
                                BUSYBOX_IMAGE,
                                "sleep",
                                "1000000",
                            ],
                        )
                        .with_context(|| format!("starting {name} on h1"))?;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| anyhow!("a worker panicked"))?)
    })
}

/// N3: one real agent (h1, `N3_CONTAINERS` containers) whose fleet is `N3_HOSTS - 1` synthetic
/// members (hosts without dockerd or agent, tagged into the fleet, each running
/// `crossdock-bench catalog-peer` with `N3_CONTAINERS` records); its RSS once its catalog holds
/// every record.
fn n3(bins: &Bins, check: &dyn Fn() -> Result<()>) -> Result<N3Result> {
    crossdock_lab::down(RSS_LAB_NAME).context("removing a leftover N3 lab")?;
    let mut lab = Lab::up(LabOptions {
        name: RSS_LAB_NAME.into(),
        hosts: 1,
        static_hosts: N3_HOSTS - 1,
        docker: DockerVersion::V20,
        crossdock_bin: bins.crossdock.clone(),
        fleet: true,
        names: true,
        agents: false,
        ..LabOptions::default()
    })
    .context("building the N3 lab")?;
    let result = (|| -> Result<N3Result> {
        let h1 = lab.host(1).clone();
        let text = std::fs::read_to_string(&h1.agent_config)
            .with_context(|| format!("reading {}", h1.agent_config.display()))?;
        let cfg = crossdock_config::parse(&text).map_err(|e| anyhow!("h1's configuration: {e}"))?;
        let port = cfg.names.catalog_port;
        let members: Vec<String> = lab
            .hosts()
            .iter()
            .map(|h| format!("{}:{port}", h.private_ip))
            .collect();
        start_containers(&lab, N3_CONTAINERS)?;
        check()?;
        let pid = lab.agent_start("h1")?;
        crate::datapath::wait_agent_ready(&lab, 1, Duration::from_secs(90))?;
        let t0 = std::time::Instant::now();
        let mut peers = Vec::new();
        for h in lab.hosts().iter().skip(1) {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &h.netns])
                .arg(&bins.bench)
                .arg("catalog-peer")
                .args(["--listen", &format!("{}:{port}", h.private_ip)])
                .args(["--host-id", &h.instance_id, "--label", &h.name])
                .args(["--members", &members.join(",")])
                .args(["--cluster-id", &format!("crossdock:{}", cfg.names.zone)])
                .args(["--subnet", &h.subnet])
                .args(["--records", &N3_CONTAINERS.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Some(k) = &cfg.names.cluster_key_file {
                cmd.arg("--key-file").arg(k);
            }
            peers.push(Reaped(cmd.spawn().context("starting a catalog member")?));
        }
        let want_records = N3_HOSTS * N3_CONTAINERS;
        let mut last = None;
        let full = crate::proc::poll(N3_FILL_TIMEOUT, Duration::from_millis(250), || {
            let v = crossdock_lab::http::get(&h1.agent_socket, "/status", Duration::from_secs(2))
                .ok()
                .filter(|r| r.is_success())
                .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())?;
            last = catalog_fill(&v);
            let (records, hosts) = last?;
            (records >= want_records && hosts >= N3_HOSTS).then_some((records, hosts))
        });
        let Some((records, hosts)) = full else {
            let exited = peers
                .iter_mut()
                .map(|p| p.0.try_wait())
                .filter(|w| matches!(w, Ok(Some(_))))
                .count();
            bail!(
                "h1's catalog did not reach {want_records} records from {N3_HOSTS} hosts within {N3_FILL_TIMEOUT:?} (last seen: {last:?} (records, hosts); {exited} synthetic members exited)"
            );
        };
        let secs_to_full = t0.elapsed().as_secs_f64();
        let mut rss_mib = Vec::new();
        let end = std::time::Instant::now() + N3_SAMPLE;
        while std::time::Instant::now() < end {
            rss_mib.push(crate::procstat::read(pid)?.rss_kib as f64 / 1024.0);
            std::thread::sleep(N3_SAMPLE_EVERY);
        }
        let hwm_mib = crate::procstat::read_hwm_kib(pid)
            .ok()
            .map(|k| k as f64 / 1024.0);
        drop(peers);
        Ok(N3Result {
            hosts,
            records,
            secs_to_full,
            rss_mib,
            hwm_mib,
            agent_bin: bins.crossdock.display().to_string(),
        })
    })();
    lab.down().context("removing the N3 lab")?;
    result
}

/// The answered trials' times of `system` (sorted) by `time`, and how many trials did not answer.
fn secs_of(
    r: &NamesResult,
    system: &str,
    time: impl Fn(&N1Trial) -> Option<f64>,
) -> (Vec<f64>, usize) {
    let trials = r.n1.iter().filter(|t| t.system == system);
    let mut v: Vec<f64> = trials.clone().filter_map(&time).collect();
    let missed = trials.filter(|t| t.secs.is_none()).count();
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
    let after_run = |t: &N1Trial| t.secs;
    let (cd, cd_missed) = secs_of(r, "crossdock", after_run);
    let (sw, sw_missed) = secs_of(r, "swarm", after_run);
    let (cd_inv, _) = secs_of(r, "crossdock", N1Trial::since_invoked);
    let (sw_inv, _) = secs_of(r, "swarm", N1Trial::since_invoked);
    let q = |v: &[f64], p: f64| (!v.is_empty()).then(|| quantile(v, p));
    let qs = |v: &[f64], p: f64| q(v, p).map_or("n/a".into(), num);
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
    let early = sw.iter().filter(|x| **x <= 0.0).count();
    let n1 = |v: Option<f64>, missed: usize| if missed > 0 { None } else { v };
    f.push(figure(
        "N1",
        "name propagation h1 → h2 after `docker run -d` returns, crossdock p50",
        n1(q(&cd, 0.5), cd_missed),
        "s",
        Target::AtMost(0.5),
        spread(&cd, cd_missed),
    ));
    f.push(figure(
        "N1",
        "name propagation h1 → h2 after `docker run -d` returns, crossdock p99",
        n1(q(&cd, 0.99), cd_missed),
        "s",
        Target::AtMost(2.0),
        spread(&cd, cd_missed),
    ));
    f.push(figure(
        "N1",
        "the same for swarm's overlay DNS (same run), p50",
        n1(q(&sw, 0.5), sw_missed),
        "s",
        Target::None,
        format!(
            "{}; p99 {} s; {early} answered before `docker run` returned (swarm names a container when it attaches it to the network, before its process starts)",
            spread(&sw, sw_missed),
            qs(&sw, 0.99),
        ),
    ));
    f.push(figure(
        "N1",
        "the same for swarm's overlay DNS (same run), p99",
        n1(q(&sw, 0.99), sw_missed),
        "s",
        Target::None,
        spread(&sw, sw_missed),
    ));
    let ratio = match (q(&cd_inv, 0.5), q(&sw_inv, 0.5)) {
        (Some(c), Some(s)) if s > 0.0 && cd_missed == 0 && sw_missed == 0 => Some(c / s),
        _ => None,
    };
    let run_p50 = |system: &str| {
        let (v, _) = secs_of(r, system, |t| t.run_secs);
        qs(&v, 0.5)
    };
    f.push(figure(
        "N1",
        "faster than swarm: crossdock p50 / swarm p50, from invoking `docker run -d`",
        ratio,
        "",
        Target::Below(1.0),
        format!(
            "from invoking `docker run -d` (both include Docker's own work): crossdock p50 {} s, p99 {} s; swarm p50 {} s, p99 {} s; `docker run -d` took p50 {} s (crossdock's trials), {} s (swarm's)",
            qs(&cd_inv, 0.5),
            qs(&cd_inv, 0.99),
            qs(&sw_inv, 0.5),
            qs(&sw_inv, 0.99),
            run_p50("crossdock"),
            run_p50("swarm"),
        ),
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
    let context = format!(
        "the 2-host lab after the trials ({} containers): {}",
        r.containers,
        r.rss_mib
            .iter()
            .map(|(h, v)| format!("{h} {} MiB", num(*v)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    f.push(match &r.n3 {
        Some(n3) => {
            let max = n3.rss_mib.iter().copied().fold(None, |m: Option<f64>, v| {
                Some(m.map_or(v, |m| m.max(v)))
            });
            let debug = n3.agent_bin.contains("/debug/");
            figure(
                "N3",
                &format!("agent RSS, {N3_HOSTS} hosts × {N3_CONTAINERS} containers in its catalog"),
                max,
                "MiB",
                // 30 MB read as MiB: the stricter reading of the target.
                if debug { Target::None } else { Target::AtMost(30.0) },
                format!(
                    "max VmRSS of {} samples over {} s once the catalog held {} records from {} hosts ({} s after the {} synthetic members started); VmHWM {} MiB{}; {context}",
                    n3.rss_mib.len(),
                    N3_SAMPLE.as_secs(),
                    n3.records,
                    n3.hosts,
                    num(n3.secs_to_full),
                    N3_HOSTS - 1,
                    n3.hwm_mib.map_or("n/a".into(), num),
                    if debug { "; a debug build of the agent: no verdict" } else { "" },
                ),
            )
        }
        None => figure(
            "N3",
            &format!("agent RSS, {N3_HOSTS} hosts × {N3_CONTAINERS} containers in its catalog"),
            None,
            "MiB",
            Target::AtMost(30.0),
            format!("not measured (see the notes); {context}"),
        ),
    });
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(system: &str, secs: Option<f64>, run_secs: f64) -> N1Trial {
        N1Trial {
            system: system.into(),
            secs,
            attempts: 1,
            run_secs: Some(run_secs),
        }
    }

    fn value(f: &[Figure], name_part: &str) -> Option<f64> {
        f.iter()
            .find(|x| x.name.contains(name_part))
            .unwrap_or_else(|| panic!("no figure `{name_part}`"))
            .value
    }

    #[test]
    fn signed_secs_go_negative_when_the_answer_came_first() {
        assert_eq!(signed_secs(1_000, 1_250), 0.25);
        assert_eq!(signed_secs(1_250, 1_000), -0.25);
        assert_eq!(signed_secs(5, 5), 0.0);
    }

    #[test]
    fn the_swarm_comparison_counts_from_invoking_docker_run() {
        // crossdock answers 10 ms after `docker run` returns (0.4 s), swarm 0.1 s before it
        // returns (0.5 s): from invocation 0.41 s against 0.4 s.
        let mut r = NamesResult::default();
        for _ in 0..4 {
            r.n1.push(trial("crossdock", Some(0.01), 0.4));
            r.n1.push(trial("swarm", Some(-0.1), 0.5));
        }
        let f = figures(&r);
        assert_eq!(value(&f, "returns, crossdock p50"), Some(0.01));
        assert_eq!(value(&f, "swarm's overlay DNS (same run), p50"), Some(-0.1));
        let ratio = value(&f, "faster than swarm").unwrap();
        assert!((ratio - 0.41 / 0.4).abs() < 1e-9, "{ratio}");
        let detail = &f
            .iter()
            .find(|x| x.name.contains("(same run), p50"))
            .unwrap()
            .detail;
        assert!(detail.contains("4 answered before"), "{detail}");
    }

    #[test]
    fn a_trial_without_an_answer_leaves_the_percentiles_and_the_ratio_unmeasured() {
        let mut r = NamesResult::default();
        r.n1.push(trial("crossdock", Some(0.01), 0.4));
        r.n1.push(trial("swarm", None, 0.5));
        r.n1.push(trial("swarm", Some(0.2), 0.5));
        let f = figures(&r);
        assert_eq!(value(&f, "returns, crossdock p50"), Some(0.01));
        assert_eq!(value(&f, "swarm's overlay DNS (same run), p99"), None);
        assert_eq!(value(&f, "faster than swarm"), None);
    }

    #[test]
    fn old_results_without_run_times_still_read() {
        let t: N1Trial =
            serde_json::from_str(r#"{"system":"swarm","secs":0.2,"attempts":3}"#).unwrap();
        assert_eq!((t.run_secs, t.since_invoked()), (None, None));
    }

    #[test]
    fn the_catalog_fill_is_read_from_status() {
        let v =
            serde_json::json!({"names": {"records": 2000, "peers": [{"id": "a"}, {"id": "b"}]}});
        assert_eq!(catalog_fill(&v), Some((2000, 2)));
        assert_eq!(catalog_fill(&serde_json::json!({"conditions": {}})), None);
        assert_eq!(
            catalog_fill(&serde_json::json!({"names": {"records": 3}})),
            None
        );
    }

    #[test]
    fn n3_is_judged_on_the_largest_sample_and_a_debug_build_gets_no_verdict() {
        let mut r = NamesResult {
            n3: Some(N3Result {
                hosts: 20,
                records: 2000,
                secs_to_full: 3.0,
                rss_mib: vec![19.0, 21.5, 20.0],
                hwm_mib: Some(22.0),
                agent_bin: "/x/target/release/crossdock".into(),
            }),
            ..NamesResult::default()
        };
        let n3 = |r: &NamesResult| figures(r).into_iter().find(|x| x.id == "N3").unwrap();
        let f = n3(&r);
        assert_eq!((f.value, f.target), (Some(21.5), Target::AtMost(30.0)));
        if let Some(x) = r.n3.as_mut() {
            x.agent_bin = "/x/target/debug/crossdock".into();
        }
        assert_eq!(n3(&r).target, Target::None);
        r.n3 = None;
        let f = n3(&r);
        assert_eq!((f.value, f.target), (None, Target::AtMost(30.0)));
    }
}
