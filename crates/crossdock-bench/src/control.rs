//! The control-plane benchmarks, against the emulator made as slow as the targets say (every API call
//! 200 ms, a new route `Pending` for 1 s, one route write at a time per VPC and none while an entry is
//! `Pending`, a per-account throttle of 20 calls/s):
//!
//! - C1: agents start on two hosts whose containers cannot reach each other yet; the time until the first
//!   request/response between the containers passes (a fresh lab each repetition: new instances have
//!   no route and the ENI source/destination check on, as on Alibaba);
//! - C2: N hosts without Docker (the agent's static-subnet mode, one namespace and private IP each, so
//!   the metadata service tells them apart as it does real instances) start their real agent processes
//!   at once; the time until every route is `Available` against the serial limit N × (write latency +
//!   Pending time), the API calls per host by action (failed calls and reads included), routes lost and
//!   duplicated;
//! - the C2 trade-off sweep: the same storm at one size under other settings of the agent's route-write
//!   backoff (`[cloud] write_backoff_ms` / `write_backoff_max_ms`), because the two C2 targets pull
//!   against each other: a short backoff fills the table sooner but spends more refused calls, a long
//!   one spends fewer calls but leaves the table idle between writes;
//! - C3: steady state: calls over a period once every route is in place.

use crate::calls::{control_plane_settings, CallStats, Collector};
use crate::proc::{run_checked, LineChild, Ns};
use crate::report::{num, Figure, Target};
use crate::rr::{unix_ms, ProbeResult};
use crate::stats::summarize;
use anyhow::{anyhow, bail, Context, Result};
use crossdock_lab::lab::AgentConfigHook;
use crossdock_lab::lab::{admin_call, LabState};
use crossdock_lab::{Lab, LabOptions};
use crossdock_vpcsim::admin::Faults;
use crossdock_vpcsim::model::{EntryType, RouteStatus};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The emulator's timings the targets are stated for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timings {
    pub api_latency_ms: u64,
    pub pending_ms: u64,
    pub account_qps: u32,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            api_latency_ms: 200,
            pending_ms: 1000,
            account_qps: 20,
        }
    }
}

impl Timings {
    /// N × (write latency + Pending time), in seconds.
    pub fn serial_limit_secs(&self, n: usize) -> f64 {
        n as f64 * (self.api_latency_ms + self.pending_ms) as f64 / 1000.0
    }

    fn faults(&self) -> Faults {
        Faults {
            latency_ms: BTreeMap::from([("*".to_string(), self.api_latency_ms)]),
            ..Faults::default()
        }
    }

    /// Applies the settings and the latency to a running emulator.
    pub fn apply(&self, admin_socket: &std::path::Path) -> Result<()> {
        let settings = control_plane_settings(self.pending_ms, self.account_qps);
        admin_call(admin_socket, move |c| async move {
            c.set_settings(&settings).await
        })?;
        let faults = self.faults();
        admin_call(
            admin_socket,
            move |c| async move { c.set_faults(&faults).await },
        )?;
        Ok(())
    }
}

/// Where the binaries are.
#[derive(Debug, Clone)]
pub struct Bins {
    pub crossdock: PathBuf,
    pub bench: PathBuf,
}

// ---------------------------------------------------------------- C1

/// One C1 repetition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct C1Sample {
    pub rep: usize,
    /// Agent start → first answered request between the containers, the receiver seeing the sender's
    /// container IP.
    pub seconds: Option<f64>,
    /// Agent start → the first answer of any kind (the sender's host may still masquerade it).
    pub first_answer_s: Option<f64>,
    /// Source addresses the receiver saw, in order.
    pub sources_seen: Vec<String>,
    /// Agent start → both routes `Available` in the emulator.
    pub routes_available_s: Option<f64>,
    pub probe_attempts: u64,
    /// Agent start → each API action's first call (seconds), where the start-up time goes.
    #[serde(default)]
    pub first_call_s: BTreeMap<String, f64>,
    /// Both agents' API calls until the first packet, by action.
    #[serde(default)]
    pub calls: BTreeMap<String, u64>,
    /// Every call until the first packet: `0.48 s h2 CreateRouteEntries Success`.
    #[serde(default)]
    pub timeline: Vec<String>,
    pub error: Option<String>,
}

/// Which agent configuration C1 runs: per-host mode (each host's own Docker subnet, its own route) or
/// fleet mode (subnets derived from the private IPs by `crossdock init`, every member's route kept
/// by every agent, written in batches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    PerHost,
    Fleet,
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Mode::PerHost => "per-host",
            Mode::Fleet => "fleet",
        }
    }
}

/// C1 over `reps` fresh labs, the agents in `mode`.
pub fn c1(
    reps: usize,
    mode: Mode,
    timings: &Timings,
    bins: &Bins,
    check: &dyn Fn() -> Result<()>,
) -> Vec<C1Sample> {
    (0..reps)
        .map(|rep| {
            if let Err(e) = check() {
                return C1Sample {
                    rep,
                    error: Some(format!("{e:#}")),
                    ..C1Sample::default()
                };
            }
            let s = c1_once(rep, mode, timings, bins).unwrap_or_else(|e| C1Sample {
                rep,
                error: Some(format!("{e:#}")),
                ..C1Sample::default()
            });
            eprintln!(
                "  C1 {} #{}: first packet after {} s (any source: {} s, seen {}), routes Available after {} s{}",
                mode.label(),
                rep + 1,
                s.seconds.map(num).unwrap_or("-".into()),
                s.first_answer_s.map(num).unwrap_or("-".into()),
                s.sources_seen.join(" then "),
                s.routes_available_s.map(num).unwrap_or("-".into()),
                s.error
                    .as_ref()
                    .map(|e| format!("  ERROR {e}"))
                    .unwrap_or_default()
            );
            s
        })
        .collect()
}

fn c1_once(rep: usize, mode: Mode, timings: &Timings, bins: &Bins) -> Result<C1Sample> {
    let mut lab = Lab::up(LabOptions {
        name: "bench-c1".into(),
        hosts: 2,
        agents: false,
        crossdock_bin: bins.crossdock.clone(),
        source_dest_check: true,
        emulator_settings: Some(control_plane_settings(
            timings.pending_ms,
            timings.account_qps,
        )),
        fleet: mode == Mode::Fleet,
        ..LabOptions::default()
    })
    .with_context(|| format!("building the C1 lab ({} mode)", mode.label()))?;
    timings.apply(&lab.state().admin_socket)?;
    let image = crossdock_lab::dockerd::BUSYBOX_IMAGE;
    let c1 = lab.run_container(1, "c1-a", &[image, "sleep", "1000000"])?;
    let c2 = lab.run_container(2, "c1-b", &[image, "sleep", "1000000"])?;
    let bench = bins.bench.display().to_string();
    let server = LineChild::spawn(
        Ns::Pid(c2.pid).command(&[&bench, "rr-server", "--port", "7003", "--tell-peer"]),
        "rr-server",
    )?;
    server.next_line(Duration::from_secs(10))?;
    let probe = LineChild::spawn(
        Ns::Pid(c1.pid).command(&[
            &bench,
            "probe",
            "--to",
            &format!("{}:7003", c2.ip),
            "--timeout-ms",
            "60000",
            "--interval-ms",
            "20",
            "--expect-source",
            &c1.ip,
        ]),
        "probe",
    )?;
    // The probe says when it starts probing; only then do the agents start.
    probe.next_line(Duration::from_secs(10))?;
    let mut collector = Collector::from_now(&lab.state().admin_socket)?;
    let t0 = unix_ms();
    lab.agent_start("h1")?;
    lab.agent_start("h2")?;
    let deadline = Instant::now() + Duration::from_secs(65);
    let line = loop {
        if let Some(l) = probe.try_line(Duration::from_secs(1))? {
            break l;
        }
        if Instant::now() >= deadline {
            bail!("the probe did not finish within 65 s");
        }
        if let Some(dead) = lab
            .hosts()
            .iter()
            .find(|h| crossdock_lab::lab::agent_pid(h).is_none())
        {
            bail!("{}", agent_exited(dead));
        }
    };
    let result: ProbeResult = serde_json::from_str(&line)
        .map_err(|e| anyhow!("the probe's answer {line:?} is not a result: {e}"))?;
    let expected: Vec<(String, String)> = lab
        .hosts()
        .iter()
        .map(|h| (h.subnet.clone(), h.instance_id.clone()))
        .collect();
    // Both routes are normally Available by now; give a lagging one a bounded moment.
    let last_available =
        crate::proc::poll(Duration::from_secs(15), Duration::from_millis(200), || {
            let state = lab.admin_sync(|c| async move { c.state().await }).ok()?;
            check_table(&state.entries, &expected).last_available_ms
        });
    collector.poll()?;
    let mut first_call_s = BTreeMap::new();
    let mut calls = BTreeMap::new();
    let mut timeline = Vec::new();
    let host_of: HashMap<&str, &str> = lab
        .hosts()
        .iter()
        .map(|h| (h.instance_id.as_str(), h.name.as_str()))
        .collect();
    for c in collector
        .records
        .iter()
        .filter(|c| c.time_ms <= result.success_unix_ms)
    {
        let t = (c.time_ms - t0) as f64 / 1000.0;
        first_call_s.entry(c.action.clone()).or_insert(t);
        *calls.entry(c.action.clone()).or_insert(0) += 1;
        timeline.push(format!(
            "{} s {} {} {}",
            num(t),
            c.instance_id
                .as_deref()
                .and_then(|i| host_of.get(i).copied())
                .unwrap_or("-"),
            c.action,
            c.code
        ));
    }
    lab.down()?;
    Ok(C1Sample {
        first_call_s,
        calls,
        timeline,
        rep,
        seconds: Some((result.success_unix_ms - t0) as f64 / 1000.0),
        first_answer_s: Some((result.first_answer_unix_ms - t0) as f64 / 1000.0),
        sources_seen: result.sources_seen,
        routes_available_s: last_available.map(|t| (t - t0) as f64 / 1000.0),
        probe_attempts: result.attempts,
        error: None,
    })
}

pub fn c1_figures(samples: &[C1Sample]) -> Vec<Figure> {
    vec![c1_figure(
        samples,
        "C1",
        "agent start → first packet between containers on two hosts",
        Target::AtMost(2.5),
    )]
}

/// The C1 row of `samples`: their median, with the range and the routes' time in the detail.
pub fn c1_figure(samples: &[C1Sample], id: &str, name: &str, target: Target) -> Figure {
    let v: Vec<f64> = samples.iter().filter_map(|s| s.seconds).collect();
    let s = summarize(&v);
    let failed = samples.iter().filter(|s| s.seconds.is_none()).count();
    let routes: Vec<f64> = samples
        .iter()
        .filter_map(|s| s.routes_available_s)
        .collect();
    let detail =
        match s {
            Some(s) => format!(
            "median of {} fresh labs, range {}–{} s; both routes Available after {} s (median){}",
            s.n,
            num(s.min),
            num(s.max),
            summarize(&routes).map(|r| num(r.median)).unwrap_or("n/a".into()),
            if failed > 0 { format!("; {failed} repetitions failed") } else { String::new() }
        ),
            None => samples
                .iter()
                .find_map(|s| s.error.clone())
                .unwrap_or_else(|| "not run".into()),
        };
    Figure::new(id, name, s.map(|s| s.median), "s", target).detail(detail)
}

// ---------------------------------------------------------------- C2

/// The agent's route-write backoff a storm runs with: after a refused write the agent waits a random
/// time in [0, window]; the window starts at `write_backoff_ms` and doubles per refusal up to
/// `write_backoff_max_ms` (`[cloud]` in its configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    pub write_backoff_ms: u64,
    pub write_backoff_max_ms: u64,
}

impl Default for Backoff {
    /// The agent's own defaults.
    fn default() -> Self {
        let c = crossdock_config::CloudConfig::default();
        Backoff {
            write_backoff_ms: c.write_backoff_ms,
            write_backoff_max_ms: c.write_backoff_max_ms,
        }
    }
}

impl Backoff {
    pub fn is_agent_default(&self) -> bool {
        *self == Backoff::default()
    }

    /// `500–8000 ms`.
    pub fn label(&self) -> String {
        format!("{}–{} ms", self.write_backoff_ms, self.write_backoff_max_ms)
    }

    /// Parses `write_backoff_ms:write_backoff_max_ms` (`100:2000`) and checks it with the agent's own
    /// configuration rules, so a setting the agent would refuse is refused here, before any lab exists.
    pub fn parse(item: &str) -> Result<Backoff> {
        let item = item.trim();
        let (a, b) = item.split_once(':').ok_or_else(|| {
            anyhow!(
                "{item:?} is not FIRST:MAX (write_backoff_ms:write_backoff_max_ms, e.g. 100:2000)"
            )
        })?;
        let ms = |v: &str, what: &str| {
            v.trim().parse::<u64>().map_err(|_| {
                anyhow!(
                    "{item:?}: {what} {v:?} is not a whole number of milliseconds (e.g. 100:2000)"
                )
            })
        };
        let b = Backoff {
            write_backoff_ms: ms(a, "write_backoff_ms")?,
            write_backoff_max_ms: ms(b, "write_backoff_max_ms")?,
        };
        let mut config = crossdock_config::Config {
            cluster_cidrs: vec!["10.0.0.0/8".parse().expect("a valid range")],
            ..crossdock_config::Config::default()
        };
        // The cloud table is checked only when the agent registers routes.
        config.cloud.provider = crossdock_config::Provider::Alibaba;
        b.apply(&mut config);
        config
            .validate()
            .map_err(|e| anyhow!("{item:?}: the agent would refuse it: {e}"))?;
        Ok(b)
    }

    fn apply(&self, config: &mut crossdock_config::Config) {
        config.cloud.write_backoff_ms = self.write_backoff_ms;
        config.cloud.write_backoff_max_ms = self.write_backoff_max_ms;
    }

    /// Writes these settings into every agent's configuration of a lab.
    pub fn hook(self) -> AgentConfigHook {
        AgentConfigHook::new(move |_, config| self.apply(config))
    }
}

/// One C2 storm.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct C2Result {
    pub hosts: usize,
    /// The agents' route-write backoff in this storm.
    #[serde(flatten)]
    pub backoff: Backoff,
    /// Agent processes actually started.
    pub agents_started: usize,
    /// Seconds to start them all (their clock starts with the first).
    pub spawn_s: f64,
    pub serial_limit_s: f64,
    /// Start → the last route `Available`; `None` if not every route got there by the deadline.
    pub converged_s: Option<f64>,
    /// When the wait for convergence stops: [`C2_DEADLINE_FACTOR`] × the serial limit + 20 s.
    pub deadline_s: f64,
    /// Start → every agent reports its route condition ready.
    pub agents_ready_s: Option<f64>,
    pub available: usize,
    /// Hosts whose route is not there (or not theirs) at the end.
    pub lost: usize,
    /// Extra entries: more than one per destination or per host.
    pub duplicates: usize,
    /// Calls from start until every agent was ready (or the deadline).
    pub calls: CallStats,
    /// Agent processes' resident memory at convergence, summed, MiB.
    pub agents_rss_mib: f64,
    /// Routes Available over time: (seconds since start, count).
    pub progress: Vec<(f64, usize)>,
    /// Start → the last host's ENI source/destination check turned off ([`StormRun::eni_off_s`]).
    #[serde(default)]
    pub eni_off_s: Option<f64>,
    pub error: Option<String>,
}

impl C2Result {
    pub fn ratio(&self) -> Option<f64> {
        self.converged_s.map(|c| c / self.serial_limit_s)
    }

    /// Not converged by the deadline (every agent started, nothing failed in the harness).
    pub fn timed_out(&self) -> bool {
        self.converged_s.is_none() && self.error.is_none() && self.agents_started > 0
    }
}

/// How long C2 waits, in serial limits (plus 20 s), before it reports the convergence time as a lower
/// bound: past 1.3 × the target is missed anyway, and the full run has to end in 20 minutes.
pub const C2_DEADLINE_FACTOR: f64 = 1.5;

/// C2 for each size, the agents with `backoff`.
pub fn c2(
    sizes: &[usize],
    backoff: Backoff,
    timings: &Timings,
    bins: &Bins,
    check: &dyn Fn() -> Result<()>,
) -> Vec<C2Result> {
    sizes
        .iter()
        .map(|&n| c2_storm(n, backoff, timings, bins, check))
        .collect()
}

/// The C2 trade-off sweep: a storm of `hosts` for each backoff setting.
pub fn c2_sweep(
    hosts: usize,
    settings: &[Backoff],
    timings: &Timings,
    bins: &Bins,
    check: &dyn Fn() -> Result<()>,
) -> Vec<C2Result> {
    settings
        .iter()
        .map(|&b| c2_storm(hosts, b, timings, bins, check))
        .collect()
}

/// One storm, its failure recorded in the result.
fn c2_storm(
    n: usize,
    backoff: Backoff,
    timings: &Timings,
    bins: &Bins,
    check: &dyn Fn() -> Result<()>,
) -> C2Result {
    let mut r = C2Result {
        hosts: n,
        backoff,
        serial_limit_s: timings.serial_limit_secs(n),
        ..C2Result::default()
    };
    if let Err(e) = check().and_then(|()| c2_once(n, timings, bins, &mut r, check)) {
        r.error = Some(format!("{e:#}"));
    }
    eprintln!(
        "  C2 N={n}, backoff {}{}: all Available after {} s (serial limit {} s, ratio {}), {} calls/host (max {}), {} available, {} lost, {} duplicates{}",
        backoff.label(),
        if backoff.is_agent_default() { " (agent default)" } else { "" },
        r.converged_s.map(num).unwrap_or("-".into()),
        num(r.serial_limit_s),
        r.ratio().map(num).unwrap_or("-".into()),
        num(r.calls.per_host_mean()),
        r.calls.per_host_max(),
        r.available,
        r.lost,
        r.duplicates,
        r.error.as_ref().map(|e| format!("  ERROR {e}")).unwrap_or_default()
    );
    r
}

/// What the table says about the storm's routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableCheck {
    pub available: usize,
    pub lost: usize,
    pub duplicates: usize,
    /// When the last expected route became Available (ms since the epoch), if all are.
    pub last_available_ms: Option<i64>,
}

/// Compares the table's custom entries with the expected `(subnet, instance)` pairs.
pub fn check_table(
    entries: &[crossdock_vpcsim::model::RouteEntry],
    expected: &[(String, String)],
) -> TableCheck {
    let custom: Vec<_> = entries
        .iter()
        .filter(|e| e.entry_type == EntryType::Custom)
        .collect();
    let mut by_dst: HashMap<String, usize> = HashMap::new();
    let mut by_hop: HashMap<&str, usize> = HashMap::new();
    for e in &custom {
        *by_dst
            .entry(e.destination_cidr_block.to_string())
            .or_default() += 1;
        *by_hop.entry(e.next_hop_id.as_str()).or_default() += 1;
    }
    let duplicates = by_dst.values().map(|c| c - 1).sum::<usize>()
        + by_hop.values().map(|c| c - 1).sum::<usize>();
    let mut t = TableCheck {
        duplicates,
        ..TableCheck::default()
    };
    let mut last = Some(0i64);
    for (subnet, instance) in expected {
        match custom
            .iter()
            .find(|e| e.destination_cidr_block.to_string() == *subnet && e.next_hop_id == *instance)
        {
            Some(e) if e.status == RouteStatus::Available => {
                t.available += 1;
                last = last.map(|l| l.max(e.modified_at_ms));
            }
            Some(_) => last = None,
            None => {
                t.lost += 1;
                last = None;
            }
        }
    }
    t.last_available_ms = last.filter(|_| !expected.is_empty());
    t
}

/// "the agent of h3 exited; its log ends: ..."
pub fn agent_exited(host: &crossdock_lab::HostState) -> String {
    let log = std::fs::read_to_string(host.agent_log()).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(3).collect();
    format!(
        "the agent of {} exited; the end of {}: {}",
        host.name,
        host.agent_log().display(),
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    )
}

/// The route condition of an agent, from its health socket's `/status`.
fn agent_route_ready(socket: &std::path::Path) -> bool {
    crossdock_lab::http::get(socket, "/status", Duration::from_secs(2))
        .ok()
        .filter(|r| r.is_success())
        .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
        .is_some_and(|v| v["conditions"]["route"]["state"] == "ready")
}

fn c2_once(
    n: usize,
    timings: &Timings,
    bins: &Bins,
    r: &mut C2Result,
    check: &dyn Fn() -> Result<()>,
) -> Result<()> {
    let mut lab = Lab::up(LabOptions {
        name: "bench-c2".into(),
        hosts: 0,
        static_hosts: n,
        agents: false,
        crossdock_bin: bins.crossdock.clone(),
        source_dest_check: true,
        emulator_settings: Some(control_plane_settings(
            timings.pending_ms,
            timings.account_qps,
        )),
        agent_config: Some(r.backoff.hook()),
        ..LabOptions::default()
    })
    .with_context(|| format!("building the C2 lab with {n} hosts"))?;
    timings.apply(&lab.state().admin_socket)?;
    let expected: Vec<(String, String)> = lab
        .hosts()
        .iter()
        .map(|h| (h.subnet.clone(), h.instance_id.clone()))
        .collect();
    let deadline = Duration::from_secs_f64(C2_DEADLINE_FACTOR * r.serial_limit_s + 20.0);
    r.deadline_s = deadline.as_secs_f64();
    let mut run = StormRun::default();
    let result = run_storm(&mut lab, &expected, deadline, check, &mut run);
    r.take(run);
    result?;
    lab.down()?;
    Ok(())
}

impl C2Result {
    /// Takes what [`run_storm`] measured.
    fn take(&mut self, run: StormRun) {
        self.agents_started = run.agents_started;
        self.spawn_s = run.spawn_s;
        self.converged_s = run.converged_s;
        self.agents_ready_s = run.agents_ready_s;
        self.available = run.available;
        self.lost = run.lost;
        self.duplicates = run.duplicates;
        self.calls = run.calls;
        self.agents_rss_mib = run.agents_rss_mib;
        self.progress = run.progress;
        self.eni_off_s = run.eni_off_s;
    }
}

/// What one storm of real agents measured, whatever mode they run in (per-host C2, fleet).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StormRun {
    /// Agent processes actually started.
    pub agents_started: usize,
    /// Seconds to start them all (their clock starts with the first).
    pub spawn_s: f64,
    /// Start → the last expected route `Available`; `None` if not every route got there by the
    /// deadline.
    pub converged_s: Option<f64>,
    /// Start → every agent reports its route condition ready.
    pub agents_ready_s: Option<f64>,
    pub available: usize,
    /// Hosts whose route is not there (or not theirs) at the end.
    pub lost: usize,
    /// Extra entries: more than one per destination or per host.
    pub duplicates: usize,
    /// Calls from start until every agent was ready (or the deadline).
    pub calls: CallStats,
    /// Calls from start until the last route turned `Available` (`None`: not converged).
    #[serde(default)]
    pub calls_to_converge: Option<CallStats>,
    /// Agent processes' resident memory at convergence, summed, MiB.
    pub agents_rss_mib: f64,
    /// Routes Available over time: (seconds since start, count).
    pub progress: Vec<(f64, usize)>,
    /// Start → the last host's ENI source/destination check turned off (its first successful
    /// `ModifyNetworkInterfaceAttribute`): until then that host cannot forward its containers'
    /// traffic, whatever the table says. `None` when some host made no such call in the window.
    #[serde(default)]
    pub eni_off_s: Option<f64>,
}

/// Start → the moment every one of `hosts` had made a successful `ModifyNetworkInterfaceAttribute`
/// (the agent turning its ENI's source/destination check off), seconds; `None` if one had not.
pub fn eni_off_s(
    calls: &[crossdock_vpcsim::admin::CallRecord],
    hosts: &[String],
    t0: i64,
) -> Option<f64> {
    let mut first: HashMap<&str, i64> = HashMap::new();
    for c in calls
        .iter()
        .filter(|c| c.action == "ModifyNetworkInterfaceAttribute" && c.code == "Success")
    {
        if let Some(i) = c.instance_id.as_deref() {
            let t = first.entry(i).or_insert(c.time_ms);
            *t = (*t).min(c.time_ms);
        }
    }
    hosts
        .iter()
        .map(|h| first.get(h.as_str()).copied())
        .collect::<Option<Vec<i64>>>()?
        .into_iter()
        .max()
        .map(|t| (t - t0) as f64 / 1000.0)
}

/// Starts every agent of `lab` at once and measures until each `(subnet, instance)` route of
/// `expected` is `Available` (or `deadline` passes), then until every agent reports its route ready.
/// The lab stays up (the caller may go on with it, and takes it down).
pub fn run_storm(
    lab: &mut Lab,
    expected: &[(String, String)],
    deadline: Duration,
    check: &dyn Fn() -> Result<()>,
    r: &mut StormRun,
) -> Result<()> {
    let admin = lab.state().admin_socket.clone();
    let instances: Vec<String> = expected.iter().map(|e| e.1.clone()).collect();
    let mut collector = Collector::from_now(&admin)?;
    let names: Vec<String> = lab.hosts().iter().map(|h| h.name.clone()).collect();
    let t0 = unix_ms();
    let started = Instant::now();
    for name in &names {
        lab.agent_start(name)?;
        r.agents_started += 1;
    }
    r.spawn_s = started.elapsed().as_secs_f64();
    let converged = wait_converged(
        lab,
        expected,
        t0,
        started,
        deadline,
        check,
        &mut collector,
        r,
    )?;
    r.converged_s = converged.map(|t| (t - t0) as f64 / 1000.0);
    r.agents_rss_mib = lab
        .hosts()
        .iter()
        .filter_map(crossdock_lab::lab::agent_pid)
        .filter_map(|pid| crate::procstat::read(pid).ok())
        .map(|x| x.rss_kib as f64 / 1024.0)
        .sum();
    // Every agent's own view: its route condition turns ready once it saw the route Available.
    let sockets: Vec<PathBuf> = lab.hosts().iter().map(|h| h.agent_socket.clone()).collect();
    let mut ready = vec![false; sockets.len()];
    let ready_deadline =
        Instant::now() + Duration::from_secs(if converged.is_some() { 90 } else { 5 });
    while Instant::now() < ready_deadline {
        check()?;
        for (i, s) in sockets.iter().enumerate() {
            if !ready[i] {
                ready[i] = agent_route_ready(s);
            }
        }
        if ready.iter().all(|x| *x) {
            r.agents_ready_s = Some((unix_ms() - t0) as f64 / 1000.0);
            break;
        }
        collector.poll()?;
        std::thread::sleep(Duration::from_millis(500));
    }
    collector.poll()?;
    let end = unix_ms();
    let state = lab.admin_sync(|c| async move { c.state().await })?;
    let final_check = check_table(&state.entries, expected);
    r.available = final_check.available;
    r.lost = final_check.lost;
    r.duplicates = final_check.duplicates;
    r.calls = CallStats::of(&collector.records, &instances, t0, end + 1);
    r.calls_to_converge =
        converged.map(|t| CallStats::of(&collector.records, &instances, t0, t + 1));
    r.eni_off_s = eni_off_s(&collector.records, &instances, t0);
    dump_calls(&collector.records, expected.len(), t0)?;
    Ok(())
}

/// With `CROSSDOCK_BENCH_CALL_LOG=<dir>`, a storm's call log is written there as
/// `storm-<hosts>-<start ms>.jsonl` (one emulator call record per line, `t_ms` since the storm's
/// start added), for looking at a storm call by call.
fn dump_calls(
    records: &[crossdock_vpcsim::admin::CallRecord],
    hosts: usize,
    t0: i64,
) -> Result<()> {
    let Some(dir) = std::env::var_os("CROSSDOCK_BENCH_CALL_LOG") else {
        return Ok(());
    };
    let path = PathBuf::from(dir).join(format!("storm-{hosts}-{t0}.jsonl"));
    let mut out = String::new();
    for c in records.iter().filter(|c| c.time_ms >= t0) {
        let mut v = serde_json::to_value(c)?;
        v["t_ms"] = serde_json::json!(c.time_ms - t0);
        out.push_str(&v.to_string());
        out.push('\n');
    }
    std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))
}

/// Polls the table until every expected route is `Available` or `deadline` passes; returns when the
/// last one turned `Available` (ms since the epoch). Records the progress; stops when every agent
/// died.
#[allow(clippy::too_many_arguments)]
fn wait_converged(
    lab: &Lab,
    expected: &[(String, String)],
    t0: i64,
    started: Instant,
    deadline: Duration,
    check: &dyn Fn() -> Result<()>,
    collector: &mut Collector,
    r: &mut StormRun,
) -> Result<Option<i64>> {
    let mut last_poll = Instant::now();
    loop {
        check()?;
        let state = lab.admin_sync(|c| async move { c.state().await })?;
        let table = check_table(&state.entries, expected);
        r.progress
            .push(((unix_ms() - t0) as f64 / 1000.0, table.available));
        if table.last_available_ms.is_some() || started.elapsed() > deadline {
            return Ok(table.last_available_ms);
        }
        if last_poll.elapsed() > Duration::from_secs(2) {
            collector.poll()?;
            last_poll = Instant::now();
            let alive = lab
                .hosts()
                .iter()
                .filter(|h| crossdock_lab::lab::agent_pid(h).is_some())
                .count();
            if alive == 0 {
                bail!("every agent exited; {}", agent_exited(&lab.hosts()[0]));
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn c2_figures(results: &[C2Result]) -> Vec<Figure> {
    let mut out = Vec::new();
    for r in results {
        let id = "C2";
        out.push(
            Figure::new(
                id,
                &format!("N={}: time to all routes Available / serial limit", r.hosts),
                if r.timed_out() { Some(r.deadline_s / r.serial_limit_s) } else { r.ratio() },
                "×",
                Target::AtMost(1.3),
            )
            .lower_bound(r.timed_out())
            .detail(match (&r.converged_s, &r.error) {
                (Some(c), _) => format!(
                    "{} s against {} s = {} × (200 ms + 1 s); all agents ready after {} s",
                    num(*c),
                    num(r.serial_limit_s),
                    r.hosts,
                    r.agents_ready_s.map(num).unwrap_or("n/a".into())
                ),
                (None, Some(e)) => e.clone(),
                (None, None) => format!(
                    "not converged: {} of {} routes Available when the wait ended at the deadline, {} s (serial limit {} s); the calls are counted up to there",
                    r.available,
                    r.hosts,
                    num(r.deadline_s),
                    num(r.serial_limit_s)
                ),
            }),
        );
        let by_action: Vec<String> = r
            .calls
            .by_action_per_host()
            .iter()
            .map(|(a, c)| format!("{a} {}", num(*c)))
            .collect();
        let codes: Vec<String> = r
            .calls
            .by_code
            .iter()
            .map(|(c, k)| format!("{c} {k}"))
            .collect();
        out.push(
            Figure::new(
                id,
                &format!("N={}: API calls per host (mean)", r.hosts),
                (r.calls.total > 0).then(|| r.calls.per_host_mean()),
                "",
                Target::AtMost(4.0),
            )
            .lower_bound(r.timed_out())
            .detail(format!(
                "max {} per host; by action per host: {}; failed calls: {}",
                r.calls.per_host_max(),
                if by_action.is_empty() {
                    "none".into()
                } else {
                    by_action.join(", ")
                },
                if codes.is_empty() {
                    "none".into()
                } else {
                    codes.join(", ")
                }
            )),
        );
        // A storm that did not converge by the deadline cannot tell a lost route from a late one.
        out.push(
            Figure::new(
                id,
                &format!("N={}: routes lost", r.hosts),
                (r.agents_started > 0 && !r.timed_out()).then_some(r.lost as f64),
                "",
                Target::AtMost(0.0),
            )
            .detail(if r.timed_out() {
                format!(
                    "{} of {} Available when the wait ended; the other {} were late, maybe lost",
                    r.available, r.hosts, r.lost
                )
            } else {
                format!("{} of {} Available at the end", r.available, r.hosts)
            }),
        );
        out.push(Figure::new(
            id,
            &format!("N={}: duplicate routes", r.hosts),
            (r.agents_started > 0).then_some(r.duplicates as f64),
            "",
            Target::AtMost(0.0),
        ));
    }
    out
}

/// The storms of the trade-off curve at `hosts`: the sweep's and the main run's storm at that size with
/// the agent's defaults (not run twice), ordered by backoff; empty without a sweep.
pub fn c2_curve<'a>(
    main: &'a [C2Result],
    sweep: &'a [C2Result],
    hosts: usize,
) -> Vec<&'a C2Result> {
    if sweep.is_empty() {
        return Vec::new();
    }
    let mut runs: Vec<&C2Result> = sweep.iter().filter(|r| r.hosts == hosts).collect();
    if !runs.iter().any(|r| r.backoff.is_agent_default()) {
        runs.extend(
            main.iter()
                .find(|r| r.hosts == hosts && r.backoff.is_agent_default()),
        );
    }
    runs.sort_by_key(|r| (r.backoff.write_backoff_ms, r.backoff.write_backoff_max_ms));
    runs
}

/// A storm's convergence time / serial limit; a storm stopped at the deadline gives the deadline's
/// ratio (a lower bound, as [`C2Result::timed_out`] says).
fn curve_ratio(r: &C2Result) -> Option<f64> {
    if r.timed_out() {
        Some(r.deadline_s / r.serial_limit_s)
    } else {
        r.ratio()
    }
    .filter(|v| v.is_finite())
}

/// A storm's API calls per host (mean), counted until every agent was ready or the deadline.
fn curve_calls(r: &C2Result) -> Option<f64> {
    (r.calls.total > 0)
        .then(|| r.calls.per_host_mean())
        .filter(|v| v.is_finite())
}

/// Where a storm sits on the curve: (calls per host, convergence / serial limit, lower bound); `None`
/// when it did not measure both. A storm stopped at the deadline gives the deadline's ratio and the
/// calls counted until then, both lower bounds.
pub fn c2_curve_position(r: &C2Result) -> Option<(f64, f64, bool)> {
    Some((curve_calls(r)?, curve_ratio(r)?, r.timed_out()))
}

fn curve_label(r: &C2Result) -> String {
    format!(
        "{}{}",
        r.backoff.label(),
        if r.backoff.is_agent_default() {
            " (agent default)"
        } else {
            ""
        }
    )
}

/// The trade-off chart's points: one per storm that measured something, the default highlighted.
pub fn c2_curve_points(runs: &[&C2Result]) -> Vec<crate::plot::Point> {
    runs.iter()
        .filter_map(|r| {
            let (x, y, lower_bound) = c2_curve_position(r)?;
            Some(crate::plot::Point {
                label: format!(
                    "{}: {}{} ×, {}{} calls/host{}",
                    curve_label(r),
                    if lower_bound { "> " } else { "" },
                    num(y),
                    if lower_bound { "> " } else { "" },
                    num(x),
                    if lower_bound { " (not converged)" } else { "" }
                ),
                x,
                y,
                lower_bound,
                highlight: r.backoff.is_agent_default(),
            })
        })
        .collect()
}

/// One "C2 curve" row per storm of the curve: the ratio to the serial limit and the calls per host,
/// judged against both C2 targets at once.
pub fn c2_curve_figures(runs: &[&C2Result]) -> Vec<Figure> {
    let both = runs
        .iter()
        .filter_map(|r| c2_curve_position(r))
        .filter(|(x, y, lb)| !lb && *x <= 4.0 && *y <= 1.3)
        .count();
    let verdict = |v: Option<f64>, target: f64| match v {
        None => "not measured",
        Some(v) if v <= target => "met",
        Some(_) => "not met",
    };
    runs.iter()
        .map(|r| {
            let (ratio, calls) = (curve_ratio(r), curve_calls(r));
            let name = format!("N={}, write backoff {}", r.hosts, curve_label(r));
            let detail = match &r.error {
                Some(e) => e.clone(),
                None => format!(
                    "{}; time {}, calls {}; {} calls in all, failed: {}{}",
                    if r.timed_out() {
                        format!(
                            "not converged: {} of {} routes Available when the wait ended at {} s (serial limit {} s); both values are lower bounds",
                            r.available,
                            r.hosts,
                            num(r.deadline_s),
                            num(r.serial_limit_s)
                        )
                    } else {
                        format!(
                            "all Available after {} s against {} s",
                            r.converged_s.map(num).unwrap_or("n/a".into()),
                            num(r.serial_limit_s)
                        )
                    },
                    verdict(ratio, 1.3),
                    verdict(calls, 4.0),
                    r.calls.total,
                    if r.calls.by_code.is_empty() {
                        "none".into()
                    } else {
                        r.calls
                            .by_code
                            .iter()
                            .map(|(c, k)| format!("{c} {k}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                    if r.backoff.is_agent_default() {
                        format!(
                            "; {both} of the {} settings tried meet both targets",
                            runs.len()
                        )
                    } else {
                        String::new()
                    }
                ),
            };
            Figure::new("C2 curve", &name, ratio, "×", Target::AtMost(1.3))
                .also(calls, "calls/host", Target::AtMost(4.0))
                .lower_bound(r.timed_out())
                .detail(detail)
        })
        .collect()
}

// ---------------------------------------------------------------- C3

/// Steady state over a period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct C3Result {
    pub seconds: f64,
    pub hosts: usize,
    /// The agents' `[cloud] resync_interval_secs`.
    pub resync_secs: u64,
    pub calls: CallStats,
    pub reads_per_host_per_resync: f64,
    pub error: Option<String>,
}

/// The `[cloud] resync_interval_secs` of a host's agent configuration.
pub fn cloud_resync_secs(state: &LabState) -> Result<u64> {
    let h = state
        .hosts
        .first()
        .ok_or_else(|| anyhow!("the lab has no hosts"))?;
    let cfg = crossdock_config::load(&h.agent_config)
        .map_err(|e| anyhow!("{}: {e}", h.agent_config.display()))?;
    Ok(cfg.cloud.resync_interval_secs)
}

/// Counts the calls of `state`'s agents over `period` (they must be running and in sync).
pub fn c3(
    state: &LabState,
    timings: &Timings,
    period: Duration,
    check: &dyn Fn() -> Result<()>,
) -> C3Result {
    let mut r = C3Result {
        hosts: state.hosts.len(),
        ..C3Result::default()
    };
    if let Err(e) = c3_inner(state, timings, period, check, &mut r) {
        r.error = Some(format!("{e:#}"));
    }
    r
}

fn c3_inner(
    state: &LabState,
    timings: &Timings,
    period: Duration,
    check: &dyn Fn() -> Result<()>,
    r: &mut C3Result,
) -> Result<()> {
    r.resync_secs = cloud_resync_secs(state)?;
    timings.apply(&state.admin_socket)?;
    let instances: Vec<String> = state.hosts.iter().map(|h| h.instance_id.clone()).collect();
    let mut collector = Collector::from_now(&state.admin_socket)?;
    let t0 = unix_ms();
    let started = Instant::now();
    let mut last_poll = Instant::now();
    while started.elapsed() < period {
        check()?;
        std::thread::sleep(
            Duration::from_millis(500).min(period.saturating_sub(started.elapsed())),
        );
        if last_poll.elapsed() >= Duration::from_secs(10) {
            collector.poll()?;
            last_poll = Instant::now();
        }
    }
    collector.poll()?;
    let end = unix_ms();
    r.seconds = (end - t0) as f64 / 1000.0;
    r.calls = CallStats::of(&collector.records, &instances, t0, end + 1);
    let periods = r.seconds / r.resync_secs.max(1) as f64;
    r.reads_per_host_per_resync = r.calls.reads as f64 / r.hosts.max(1) as f64 / periods;
    Ok(())
}

pub fn c3_figures(r: &C3Result) -> Vec<Figure> {
    let by_action: Vec<String> = r
        .calls
        .by_action
        .iter()
        .map(|(a, c)| format!("{a} {c}"))
        .collect();
    let ok = r.error.is_none();
    vec![
        Figure::new(
            "C3",
            "steady state: write calls",
            ok.then_some(r.calls.writes as f64),
            "",
            Target::AtMost(0.0),
        )
        .detail(format!(
            "{} hosts over {} s{}",
            r.hosts,
            num(r.seconds),
            r.error
                .as_ref()
                .map(|e| format!("; ERROR {e}"))
                .unwrap_or_default()
        )),
        Figure::new(
            "C3",
            "steady state: read calls per host per resync period",
            ok.then_some(r.reads_per_host_per_resync),
            "",
            Target::AtMost(1.0),
        )
        .detail(format!(
            "{} reads, resync period {} s; calls by action: {}",
            r.calls.reads,
            r.resync_secs,
            if by_action.is_empty() {
                "none".into()
            } else {
                by_action.join(", ")
            }
        )),
    ]
}

/// Runs `crossdock --version`, to name the build measured.
pub fn crossdock_version(bin: &std::path::Path) -> String {
    let mut c = std::process::Command::new(bin);
    c.arg("--version");
    run_checked(c, "crossdock --version")
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("unknown ({e:#})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossdock_vpcsim::model::RouteEntry;

    fn entry(dst: &str, hop: &str, status: RouteStatus, at: i64) -> RouteEntry {
        RouteEntry {
            route_entry_id: format!("rte-{dst}-{hop}"),
            route_table_id: "vtb-1".into(),
            destination_cidr_block: dst.parse().unwrap(),
            entry_type: EntryType::Custom,
            status,
            next_hop_type: "Instance".into(),
            next_hop_id: hop.into(),
            route_entry_name: "crossdock".into(),
            description: String::new(),
            status_until_ms: None,
            seq: 0,
            created_at_ms: at - 1000,
            modified_at_ms: at,
        }
    }

    fn expected() -> Vec<(String, String)> {
        vec![
            ("10.0.0.0/24".into(), "i-1".into()),
            ("10.1.0.0/24".into(), "i-2".into()),
        ]
    }

    fn modify(t: i64, inst: &str, code: &str) -> crossdock_vpcsim::admin::CallRecord {
        crossdock_vpcsim::admin::CallRecord {
            seq: 0,
            time: String::new(),
            time_ms: t,
            action: "ModifyNetworkInterfaceAttribute".into(),
            write: true,
            access_key_id: None,
            instance_id: Some(inst.into()),
            code: code.into(),
            http_status: 200,
            request_id: String::new(),
            transport: String::new(),
            duration_ms: 0,
            params: BTreeMap::new(),
        }
    }

    #[test]
    fn eni_checks_are_off_when_the_last_host_first_succeeded() {
        let hosts = vec!["i-1".to_string(), "i-2".to_string()];
        let calls = vec![
            modify(1_500, "i-1", "Success"),
            modify(1_700, "i-2", "Throttling.User"),
            modify(2_000, "i-1", "Success"),
            modify(3_000, "i-2", "Success"),
        ];
        assert_eq!(eni_off_s(&calls, &hosts, 1_000), Some(2.0));
        assert_eq!(
            eni_off_s(&calls[..3], &hosts, 1_000),
            None,
            "i-2 never succeeded"
        );
    }

    #[test]
    fn the_serial_limit_is_n_times_write_latency_plus_pending() {
        let t = Timings::default();
        assert_eq!(t.serial_limit_secs(50), 60.0);
        assert_eq!(t.serial_limit_secs(200), 240.0);
    }

    #[test]
    fn a_complete_table_converges_at_its_last_available_route() {
        let entries = vec![
            entry("10.0.0.0/24", "i-1", RouteStatus::Available, 5_000),
            entry("10.1.0.0/24", "i-2", RouteStatus::Available, 7_000),
        ];
        let c = check_table(&entries, &expected());
        assert_eq!((c.available, c.lost, c.duplicates), (2, 0, 0));
        assert_eq!(c.last_available_ms, Some(7_000));
    }

    #[test]
    fn pending_lost_and_duplicate_routes_are_told_apart() {
        let entries = vec![
            entry("10.0.0.0/24", "i-1", RouteStatus::Pending, 5_000),
            entry("10.5.0.0/24", "i-1", RouteStatus::Available, 5_000),
        ];
        let c = check_table(&entries, &expected());
        assert_eq!(c.available, 0);
        assert_eq!(c.lost, 1, "i-2 has no route");
        assert_eq!(c.duplicates, 1, "i-1 has two");
        assert_eq!(c.last_available_ms, None);
        // A route to the right subnet but another instance does not count as the host's.
        let entries = vec![
            entry("10.0.0.0/24", "i-1", RouteStatus::Available, 1),
            entry("10.1.0.0/24", "i-9", RouteStatus::Available, 1),
        ];
        let c = check_table(&entries, &expected());
        assert_eq!((c.available, c.lost), (1, 1));
    }

    #[test]
    fn c2_figures_report_ratio_calls_lost_and_duplicates() {
        let r = C2Result {
            hosts: 50,
            agents_started: 50,
            serial_limit_s: 60.0,
            converged_s: Some(72.0),
            available: 50,
            calls: CallStats {
                total: 150,
                reads: 100,
                writes: 50,
                per_host: (0..50).map(|i| (format!("i-{i}"), 3)).collect(),
                by_action: BTreeMap::from([
                    ("CreateRouteEntry".to_string(), 50),
                    ("DescribeRouteEntryList".to_string(), 100),
                ]),
                ..CallStats::default()
            },
            ..C2Result::default()
        };
        let f = c2_figures(&[r]);
        assert_eq!(f.len(), 4);
        assert!((f[0].value.unwrap() - 1.2).abs() < 1e-9);
        assert_eq!(f[0].met(), Some(true));
        assert_eq!(f[1].value, Some(3.0));
        assert!(
            f[1].detail.contains("CreateRouteEntry 1.00"),
            "{}",
            f[1].detail
        );
        assert_eq!(f[2].value, Some(0.0));
        assert_eq!(f[2].met(), Some(true));
        let slow = C2Result {
            hosts: 100,
            agents_started: 100,
            serial_limit_s: 120.0,
            deadline_s: 200.0,
            available: 61,
            lost: 39,
            ..C2Result::default()
        };
        let f = c2_figures(&[slow]);
        assert!(f[0].lower_bound);
        assert_eq!(f[0].value_text(), "> 1.67 ×");
        assert_eq!(f[0].verdict(), "NOT MET");
        assert!(f[0].detail.contains("61 of 100"), "{}", f[0].detail);
        assert_eq!(f[2].value, None, "a late route is not counted as lost");
        let failed = C2Result {
            hosts: 200,
            serial_limit_s: 240.0,
            error: Some("boom".into()),
            ..C2Result::default()
        };
        let f = c2_figures(&[failed]);
        assert_eq!(f[0].verdict(), "NOT MEASURED");
        assert_eq!(f[0].detail, "boom");
        assert_eq!(
            f[2].value, None,
            "no agents started: nothing is known about lost routes"
        );
    }

    #[test]
    fn backoff_settings_parse_and_default_to_the_agents() {
        let d = Backoff::default();
        let c = crossdock_config::CloudConfig::default();
        assert_eq!(
            (d.write_backoff_ms, d.write_backoff_max_ms),
            (c.write_backoff_ms, c.write_backoff_max_ms)
        );
        assert!(d.is_agent_default());
        assert_eq!(C2Result::default().backoff, d);
        let b = Backoff::parse(" 100 : 2000 ").unwrap();
        assert_eq!((b.write_backoff_ms, b.write_backoff_max_ms), (100, 2000));
        assert_eq!(b.label(), "100–2000 ms");
        assert!(!b.is_agent_default());
        assert!(Backoff::parse("100").is_err());
        assert!(Backoff::parse("100:x").is_err());
        assert!(Backoff::parse("0:100").is_err(), "below the agent's range");
        // The hook writes both settings into an agent's configuration.
        let mut config = crossdock_config::Config::default();
        (b.hook().0)(1, &mut config);
        assert_eq!(
            (
                config.cloud.write_backoff_ms,
                config.cloud.write_backoff_max_ms
            ),
            (100, 2000)
        );
    }

    fn storm(first: u64, max: u64, converged: Option<f64>, calls_per_host: u64) -> C2Result {
        C2Result {
            hosts: 50,
            backoff: Backoff {
                write_backoff_ms: first,
                write_backoff_max_ms: max,
            },
            agents_started: 50,
            serial_limit_s: 60.0,
            deadline_s: 110.0,
            converged_s: converged,
            available: if converged.is_some() { 50 } else { 40 },
            lost: if converged.is_some() { 0 } else { 10 },
            calls: CallStats {
                total: 50 * calls_per_host,
                per_host: (0..50)
                    .map(|i| (format!("i-{i}"), calls_per_host))
                    .collect(),
                by_code: BTreeMap::from([("Throttling.User".to_string(), 7)]),
                ..CallStats::default()
            },
            ..C2Result::default()
        }
    }

    #[test]
    fn the_curve_is_the_sweep_plus_the_main_default_storm_in_backoff_order() {
        let main = vec![
            storm(500, 8000, Some(72.0), 6),
            C2Result {
                hosts: 100,
                ..storm(500, 8000, Some(150.0), 9)
            },
        ];
        let sweep = vec![
            storm(2000, 30000, None, 3),
            storm(100, 2000, Some(66.0), 20),
        ];
        let curve = c2_curve(&main, &sweep, 50);
        let order: Vec<u64> = curve.iter().map(|r| r.backoff.write_backoff_ms).collect();
        assert_eq!(order, vec![100, 500, 2000]);
        assert_eq!(
            curve[1], &main[0],
            "the default point is the main storm of that size"
        );
        // The sweep ran the default itself (no main storm of its size): taken once, from the sweep.
        let own = vec![
            storm(500, 8000, Some(70.0), 5),
            storm(100, 2000, Some(66.0), 20),
        ];
        let curve = c2_curve(&main[1..], &own, 50);
        assert_eq!(curve.len(), 2);
        assert_eq!(curve[1].converged_s, Some(70.0));
        // No sweep, no curve.
        assert!(c2_curve(&main, &[], 50).is_empty());
    }

    #[test]
    fn curve_points_and_rows_judge_both_targets_and_mark_the_default_and_bounds() {
        let main = vec![storm(500, 8000, Some(72.0), 6)];
        let failed = C2Result {
            error: Some("lab down".into()),
            agents_started: 0,
            converged_s: None,
            calls: CallStats::default(),
            ..storm(50, 500, None, 0)
        };
        let sweep = vec![
            storm(100, 2000, Some(66.0), 20),
            storm(2000, 30000, None, 3),
            storm(1000, 4000, Some(75.0), 4),
            failed,
        ];
        let curve = c2_curve(&main, &sweep, 50);
        let points = c2_curve_points(&curve);
        assert_eq!(points.len(), 4, "the failed storm has no point");
        let by_first = |ms: &str| points.iter().find(|p| p.label.starts_with(ms)).unwrap();
        let fast = by_first("100–2000 ms");
        assert_eq!(
            (fast.x, fast.y, fast.lower_bound, fast.highlight),
            (20.0, 1.1, false, false)
        );
        let default = by_first("500–8000 ms");
        assert!(default.highlight && !default.lower_bound);
        assert!(
            default.label.contains("(agent default)"),
            "{}",
            default.label
        );
        assert_eq!((default.x, default.y), (6.0, 1.2));
        let slow = by_first("2000–30000 ms");
        assert!(slow.lower_bound && !slow.highlight);
        assert!((slow.y - 110.0 / 60.0).abs() < 1e-9, "the deadline's ratio");
        assert_eq!(slow.x, 3.0);
        assert!(slow.label.contains("not converged"), "{}", slow.label);

        let rows = c2_curve_figures(&curve);
        assert_eq!(
            rows.len(),
            5,
            "one row per setting, the failed one included"
        );
        assert!(rows.iter().all(|f| f.id == "C2 curve"));
        let row = |ms: &str| rows.iter().find(|f| f.name.contains(ms)).unwrap();
        // Fast: time met, calls not: not met.
        let f = row("100–2000 ms");
        assert_eq!(f.verdict(), "NOT MET");
        assert!(f.detail.contains("time met, calls not met"), "{}", f.detail);
        // The default, with how many settings meet both.
        let f = row("500–8000 ms (agent default)");
        assert_eq!(f.value_text(), "1.20 ×, 6.00 calls/host");
        assert_eq!(f.verdict(), "NOT MET");
        assert!(
            f.detail
                .contains("1 of the 5 settings tried meet both targets"),
            "{}",
            f.detail
        );
        // Both met at once.
        let f = row("1000–4000 ms");
        assert_eq!(f.value_text(), "1.25 ×, 4.00 calls/host");
        assert_eq!(f.verdict(), "met");
        // Not converged: lower bounds, not met.
        let f = row("2000–30000 ms");
        assert!(f.lower_bound);
        assert_eq!(f.value_text(), "> 1.83 ×, > 3.00 calls/host");
        assert_eq!(f.verdict(), "NOT MET");
        assert!(
            f.detail.contains("40 of 50 routes Available"),
            "{}",
            f.detail
        );
        // A failed storm: not measured, its error shown.
        let f = row("50–500 ms");
        assert_eq!(f.verdict(), "NOT MEASURED");
        assert_eq!(f.detail, "lab down");
    }

    #[test]
    fn a_storms_backoff_is_in_its_json_at_the_top_level() {
        let r = storm(100, 2000, Some(66.0), 20);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["write_backoff_ms"], 100);
        assert_eq!(v["write_backoff_max_ms"], 2000);
        let back: C2Result = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn c1_figure_is_the_median_with_failures_named() {
        let s = |rep, v: Option<f64>| C1Sample {
            rep,
            seconds: v,
            first_answer_s: v,
            sources_seen: vec![],
            routes_available_s: v.map(|x| x - 0.5),
            probe_attempts: 10,
            first_call_s: BTreeMap::new(),
            calls: BTreeMap::new(),
            timeline: Vec::new(),
            error: v.is_none().then(|| "x".to_string()),
        };
        let f = c1_figures(&[
            s(0, Some(2.0)),
            s(1, Some(3.0)),
            s(2, Some(2.2)),
            s(3, None),
        ]);
        assert_eq!(f[0].value, Some(2.2));
        assert_eq!(f[0].met(), Some(true));
        assert!(
            f[0].detail.contains("1 repetitions failed"),
            "{}",
            f[0].detail
        );
        let f = c1_figures(&[s(0, None)]);
        assert_eq!(f[0].verdict(), "NOT MEASURED");
    }

    #[test]
    fn c3_figures_divide_reads_by_hosts_and_periods() {
        let r = C3Result {
            seconds: 600.0,
            hosts: 2,
            resync_secs: 60,
            calls: CallStats {
                reads: 20,
                ..CallStats::default()
            },
            reads_per_host_per_resync: 1.0,
            error: None,
        };
        let f = c3_figures(&r);
        assert_eq!(f[0].value, Some(0.0));
        assert_eq!(f[0].met(), Some(true));
        assert_eq!(f[1].value, Some(1.0));
        assert_eq!(f[1].met(), Some(true));
    }
}
