//! Fleet mode's benchmarks, beside per-host mode's in the same run and against the same slow VPC API
//! (every call 200 ms, a new route `Pending` for 1 s, one route write at a time per VPC, 20 calls/s
//! per account: [`Timings`]):
//!
//! - fleet storms ("C2 fleet"): N hosts without Docker boot together as in C2, but every agent runs
//!   the lab's one fleet configuration (`subnet.mode = "derived"`, `fleet.tag` = the lab's cluster tag)
//!   plus `[docker] static_subnet` = its derived subnet, so it keeps the routes of *all* members and
//!   writes them in batches of up to 50. Measured: the time until every route is `Available`, the
//!   API calls per host (all actions, failed ones included, from the emulator's call log), routes lost
//!   and duplicated, each time next to its two lower bounds: the serial batches, ceil(N / 50) ×
//!   (latency + Pending), since the table takes one write at a time; and the calls the account
//!   admitted until then ÷ its rate, since no storm can be faster than its calls are let through;
//! - scale-in ("C4"): after a fleet storm, some hosts are released the way ECS releases an instance
//!   (agent killed, instance gone from every answer, its route left behind); the survivors must delete
//!   exactly those routes after the grace period, and write nothing to their own;
//! - C1 in fleet mode ("C1 fleet"): two Docker hosts whose bridges `crossdock init` derived.
//!
//! Why a module of its own: the figures compare two modes of the same agent, so they are computed
//! from both modes' results (the per-host storm of the same N is C2's), and the scale-in needs a lab
//! that outlives its storm.

use crate::calls::{control_plane_settings, CallStats, Collector};
use crate::control::{run_storm, Bins, C1Sample, C2Result, StormRun, Timings};
use crate::report::{num, Figure, Target};
use crate::rr::unix_ms;
use crate::stats::summarize;
use anyhow::{anyhow, bail, Context, Result};
use crossdock_lab::lab::{admin_call, fleet_host_config, AgentConfigHook};
use crossdock_lab::{Lab, LabOptions};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The fleet storms' and the scale-in's lab.
pub const LAB_NAME: &str = "bench-fleet";
/// Routes per `CreateRouteEntries` call.
pub const BATCH: usize = 50;
/// Time target of a fleet storm (the issue's, at N = 200; a smaller fleet must not be slower).
pub const STORM_TARGET_S: f64 = 60.0;
/// API calls per host, on average.
pub const CALLS_TARGET: f64 = 4.0;
/// C1 in fleet mode.
pub const C1_TARGET_S: f64 = 2.0;
/// Scale-in: every released route gone within the grace period plus this.
pub const SCALE_IN_SLACK_S: f64 = 60.0;
/// How long a fleet storm is waited for: past it the target is missed by far, and the run has to
/// end in its time.
pub const STORM_DEADLINE_S: f64 = 2.0 * STORM_TARGET_S + 20.0;
/// After the last released route is gone, calls are still counted this long (a late write to a
/// survivor's route would show).
pub const SCALE_IN_SETTLE: Duration = Duration::from_secs(5);

/// The agents' `[fleet]` settings in the fleet labs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetAgents {
    /// `release_grace_secs`.
    pub grace_secs: u64,
    /// `sweep_interval_secs`.
    pub sweep_secs: u64,
}

impl Default for FleetAgents {
    /// A shortened grace period (so the scale-in fits the run), the agent's own sweep interval.
    fn default() -> Self {
        FleetAgents {
            grace_secs: 10,
            sweep_secs: crossdock_config::FleetConfig::default().sweep_interval_secs,
        }
    }
}

impl FleetAgents {
    /// Checks the settings with the agent's own configuration rules, before any lab is built.
    pub fn check(&self) -> Result<()> {
        let mut c = crossdock_lab::lab::default_fleet_config("bench-fleet");
        self.apply(&mut c);
        c.validate()
            .map_err(|e| anyhow!("the agent would refuse the fleet settings: {e}"))
    }

    fn apply(&self, c: &mut crossdock_config::Config) {
        c.fleet.release_grace_secs = self.grace_secs;
        c.fleet.sweep_interval_secs = self.sweep_secs;
    }
}

/// Which storm the scale-in follows, and how many of its hosts are released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleInSpec {
    pub hosts: usize,
    pub release: usize,
}

impl ScaleInSpec {
    /// `HOSTS:RELEASED` (`200:50`); `none` or `""`: no scale-in.
    pub fn parse(text: &str) -> Result<Option<ScaleInSpec>> {
        let t = text.trim();
        if t.is_empty() || t.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        let (h, r) = t
            .split_once(':')
            .ok_or_else(|| anyhow!("{t:?} is not HOSTS:RELEASED (e.g. 200:50)"))?;
        let n = |v: &str, what: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| anyhow!("{t:?}: {what} {v:?} is not a whole number (e.g. 200:50)"))
        };
        let spec = ScaleInSpec {
            hosts: n(h, "HOSTS")?,
            release: n(r, "RELEASED")?,
        };
        if spec.hosts < 2 || spec.hosts > crossdock_lab::lab::MAX_HOSTS {
            bail!(
                "{t:?}: HOSTS must be 2..={} (the lab's limit)",
                crossdock_lab::lab::MAX_HOSTS
            );
        }
        if spec.release == 0 || spec.release >= spec.hosts {
            bail!(
                "{t:?}: RELEASED must be 1..{} (some hosts must survive)",
                spec.hosts
            );
        }
        Ok(Some(spec))
    }
}

/// The hosts a scale-in releases: `release` of `n`, spread evenly (0-based indices), as an Auto
/// Scaling group picks instances across zones and ages rather than the newest block.
pub fn victims(n: usize, release: usize) -> Vec<usize> {
    (0..release)
        .map(|j| ((2 * j + 1) * n) / (2 * release))
        .collect()
}

/// ceil(n / 50) serial batches × (latency + Pending), in seconds: no fleet storm can be faster, as
/// the table takes one write at a time.
pub fn batch_bound_s(n: usize, t: &Timings) -> f64 {
    n.div_ceil(BATCH) as f64 * (t.api_latency_ms + t.pending_ms) as f64 / 1000.0
}

/// Calls the account admitted (not throttled) among `calls`.
pub fn admitted(calls: &CallStats) -> u64 {
    let throttled: u64 = calls
        .by_code
        .iter()
        .filter(|(code, _)| crossdock_alibaba::is_throttling_code(code))
        .map(|(_, k)| *k)
        .sum();
    calls.total.saturating_sub(throttled)
}

/// (Admitted calls − the bucket's one-second burst) ÷ the account's rate, in seconds: the storm's
/// calls cannot all have been let through sooner. Throttled calls do not count: they take nothing
/// from the account's budget.
pub fn throttle_bound_s(calls: &CallStats, qps: u32) -> f64 {
    let q = f64::from(qps.max(1));
    (admitted(calls) as f64 - q).max(0.0) / q
}

/// One fleet storm.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetStorm {
    pub hosts: usize,
    #[serde(flatten)]
    pub run: StormRun,
    /// When the wait for convergence stopped ([`STORM_DEADLINE_S`]).
    pub deadline_s: f64,
    /// [`batch_bound_s`].
    pub batch_bound_s: f64,
    /// [`throttle_bound_s`] of the calls until the last route was `Available` (`None`: not converged).
    pub throttle_bound_s: Option<f64>,
    /// The account's rate the bound divides by.
    pub account_qps: u32,
    /// The agents' `[fleet]` settings.
    pub agents: Option<FleetAgents>,
    pub error: Option<String>,
}

impl FleetStorm {
    /// Not converged by the deadline (every agent started, nothing failed in the harness).
    pub fn timed_out(&self) -> bool {
        self.run.converged_s.is_none() && self.error.is_none() && self.run.agents_started > 0
    }

    /// The convergence time, or the deadline as a lower bound.
    fn time(&self) -> Option<f64> {
        if self.timed_out() {
            Some(self.deadline_s)
        } else {
            self.run.converged_s
        }
    }
}

/// What a scale-in measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScaleIn {
    pub hosts: usize,
    pub released: usize,
    pub agents: Option<FleetAgents>,
    /// The released instances.
    pub released_instances: Vec<String>,
    /// First agent killed → the last instance released, seconds.
    pub release_s: f64,
    /// First agent killed → the last released route gone; `None` if some were left at the deadline.
    pub removed_s: Option<f64>,
    /// First agent killed → the first released route gone.
    pub first_removed_s: Option<f64>,
    /// Released routes still in the table at the end.
    pub left: usize,
    /// When the wait stopped: the target plus [`SCALE_IN_SLACK_S`].
    pub deadline_s: f64,
    pub survivors: usize,
    /// Survivors whose route is not the same entry, `Available`, after the scale-in.
    pub survivors_changed: usize,
    /// Write calls that named a survivor's destination or entry.
    pub survivor_write_calls: u64,
    /// Every call from the first kill until [`SCALE_IN_SETTLE`] after the end, by survivor.
    pub calls: CallStats,
    /// Released routes still in the table over time: (seconds since the first kill, count).
    pub progress: Vec<(f64, usize)>,
    pub error: Option<String>,
}

impl ScaleIn {
    pub fn target_s(&self) -> f64 {
        self.agents.map_or(0, |a| a.grace_secs) as f64 + SCALE_IN_SLACK_S
    }

    fn timed_out(&self) -> bool {
        self.removed_s.is_none() && self.error.is_none() && !self.released_instances.is_empty()
    }
}

/// The fleet storms of `sizes`, and the scale-in after the storm of `scale_in.hosts` (run as a
/// storm of its own first when that size is not in `sizes`).
pub fn storms(
    sizes: &[usize],
    scale_in: Option<ScaleInSpec>,
    agents: FleetAgents,
    timings: &Timings,
    bins: &Bins,
    check: &dyn Fn() -> Result<()>,
) -> (Vec<FleetStorm>, Option<ScaleIn>) {
    let mut out = Vec::new();
    let mut scaled = None;
    for n in storm_sizes(sizes, scale_in) {
        let spec = scale_in.filter(|s| s.hosts == n);
        let mut r = FleetStorm {
            hosts: n,
            deadline_s: STORM_DEADLINE_S,
            batch_bound_s: batch_bound_s(n, timings),
            account_qps: timings.account_qps,
            agents: Some(agents),
            ..FleetStorm::default()
        };
        let mut s = spec.map(|spec| ScaleIn {
            hosts: spec.hosts,
            released: spec.release,
            agents: Some(agents),
            ..ScaleIn::default()
        });
        if let Err(e) =
            check().and_then(|()| storm_once(&mut r, s.as_mut(), agents, timings, bins, check))
        {
            let e = format!("{e:#}");
            match s.as_mut() {
                // The storm was measured; what failed was the scale-in after it.
                Some(s) if r.run.converged_s.is_some() => s.error = Some(e),
                Some(s) => {
                    s.error = Some(format!("the storm before it did not converge: {e}"));
                    r.error = Some(e);
                }
                None => r.error = Some(e),
            }
        }
        eprintln!("  {}", storm_line(&r));
        if let Some(s) = &s {
            eprintln!("  {}", scale_in_line(s));
        }
        out.push(r);
        scaled = scaled.or(s);
    }
    (out, scaled)
}

/// The storm sizes in order, the scale-in's added when it is not one of them.
pub fn storm_sizes(sizes: &[usize], scale_in: Option<ScaleInSpec>) -> Vec<usize> {
    let mut v = sizes.to_vec();
    if let Some(s) = scale_in.filter(|s| !sizes.contains(&s.hosts)) {
        v.push(s.hosts);
    }
    v
}

fn storm_line(r: &FleetStorm) -> String {
    format!(
        "fleet N={}: all Available after {} s (bounds: batches {} s, throttle {} s), {} calls/host (max {}), {} available, {} lost, {} duplicates{}",
        r.hosts,
        r.run.converged_s.map(num).unwrap_or("-".into()),
        num(r.batch_bound_s),
        r.throttle_bound_s.map(num).unwrap_or("-".into()),
        num(r.run.calls.per_host_mean()),
        r.run.calls.per_host_max(),
        r.run.available,
        r.run.lost,
        r.run.duplicates,
        r.error.as_ref().map(|e| format!("  ERROR {e}")).unwrap_or_default()
    )
}

fn scale_in_line(s: &ScaleIn) -> String {
    format!(
        "fleet scale-in {} of {}: routes gone after {} s (target {} s), {} left, {} of {} survivors' routes changed, {} write calls naming them{}",
        s.released,
        s.hosts,
        s.removed_s.map(num).unwrap_or("-".into()),
        num(s.target_s()),
        s.left,
        s.survivors_changed,
        s.survivors,
        s.survivor_write_calls,
        s.error.as_ref().map(|e| format!("  ERROR {e}")).unwrap_or_default()
    )
}

/// Builds a fleet lab of `n` hosts without Docker whose agents run the fleet configuration, each
/// serving its derived subnet; returns it with the expected `(subnet, instance)` routes.
fn fleet_lab(
    n: usize,
    agents: FleetAgents,
    timings: &Timings,
    bins: &Bins,
) -> Result<(Lab, Vec<(String, String)>)> {
    let lab = Lab::up(LabOptions {
        name: LAB_NAME.into(),
        hosts: 0,
        static_hosts: n,
        agents: false,
        crossdock_bin: bins.crossdock.clone(),
        source_dest_check: true,
        emulator_settings: Some(control_plane_settings(
            timings.pending_ms,
            timings.account_qps,
        )),
        agent_config: Some(AgentConfigHook::new(move |_, c| agents.apply(c))),
        fleet: true,
        ..LabOptions::default()
    })
    .with_context(|| format!("building the fleet lab with {n} hosts"))?;
    timings.apply(&lab.state().admin_socket)?;
    let info = lab.admin_sync(|c| async move { c.info().await })?;
    let shared = lab.fleet_config()?;
    let mut expected = Vec::new();
    for h in lab.hosts() {
        let ip = h.private_ip.parse().context("host IP")?;
        let subnet = shared
            .derived_subnet(ip, Some(info.vpc_cidr))
            .map_err(|e| anyhow!("host {} ({ip}): {e}", h.name))?;
        // The shared configuration, the host's sockets, and the derived subnet served without Docker.
        let mut c = fleet_host_config(&shared, h);
        c.docker.static_subnet = Some(subnet);
        c.validate()
            .map_err(|e| anyhow!("the fleet configuration of {}: {e}", h.name))?;
        std::fs::write(&h.agent_config, c.to_toml())
            .with_context(|| format!("cannot write {}", h.agent_config.display()))?;
        expected.push((subnet.to_string(), h.instance_id.clone()));
    }
    Ok((lab, expected))
}

fn storm_once(
    r: &mut FleetStorm,
    scale_in: Option<&mut ScaleIn>,
    agents: FleetAgents,
    timings: &Timings,
    bins: &Bins,
    check: &dyn Fn() -> Result<()>,
) -> Result<()> {
    let (mut lab, expected) = fleet_lab(r.hosts, agents, timings, bins)?;
    let mut run = StormRun::default();
    let deadline = Duration::from_secs_f64(r.deadline_s);
    let result = run_storm(&mut lab, &expected, deadline, check, &mut run);
    r.throttle_bound_s = run
        .calls_to_converge
        .as_ref()
        .map(|c| throttle_bound_s(c, timings.account_qps));
    r.run = run;
    result?;
    if let Some(s) = scale_in {
        if r.run.converged_s.is_none() {
            bail!("not every route was Available when the storm's wait ended");
        }
        scale_in_on(&mut lab, &expected, s, check)?;
    }
    lab.down()?;
    Ok(())
}

/// Survivors' routes as the table lists them: instance → (entry id, Available).
fn survivor_entries(
    entries: &[crossdock_vpcsim::model::RouteEntry],
    survivors: &[(String, String)],
) -> BTreeMap<String, (String, bool)> {
    survivors
        .iter()
        .filter_map(|(subnet, inst)| {
            entries
                .iter()
                .find(|e| e.destination_cidr_block.to_string() == *subnet && e.next_hop_id == *inst)
                .map(|e| {
                    (
                        inst.clone(),
                        (
                            e.route_entry_id.clone(),
                            e.status == crossdock_vpcsim::model::RouteStatus::Available,
                        ),
                    )
                })
        })
        .collect()
}

/// Routes in `entries` whose next hop is one of `released`.
fn released_left(
    entries: &[crossdock_vpcsim::model::RouteEntry],
    released: &BTreeSet<String>,
) -> usize {
    entries
        .iter()
        .filter(|e| released.contains(&e.next_hop_id))
        .count()
}

/// Write calls whose parameters name one of `names` (survivors' destinations and entry ids).
pub fn writes_naming(
    calls: &[crossdock_vpcsim::admin::CallRecord],
    names: &BTreeSet<String>,
) -> u64 {
    calls
        .iter()
        .filter(|c| c.write && c.params.values().any(|v| names.contains(v)))
        .count() as u64
}

/// Who a scale-in releases and who survives, with the survivors' routes before it.
struct ScaleInPlan {
    /// Host names of the released.
    names: Vec<String>,
    /// Their instances.
    released: BTreeSet<String>,
    /// `(subnet, instance)` of the survivors.
    survivors: Vec<(String, String)>,
    /// The survivors' routes before the release.
    kept: BTreeMap<String, (String, bool)>,
}

impl ScaleInPlan {
    /// Picks the victims ([`victims`]) and checks that the table is complete before anything happens.
    fn new(lab: &Lab, expected: &[(String, String)], release: usize) -> Result<ScaleInPlan> {
        let chosen = victims(expected.len(), release);
        let released: BTreeSet<String> = chosen.iter().map(|i| expected[*i].1.clone()).collect();
        let survivors: Vec<(String, String)> = expected
            .iter()
            .filter(|e| !released.contains(&e.1))
            .cloned()
            .collect();
        let before = lab.admin_sync(|c| async move { c.state().await })?;
        let kept = survivor_entries(&before.entries, &survivors);
        if kept.len() != survivors.len()
            || released_left(&before.entries, &released) != released.len()
        {
            bail!("the table is not complete before the scale-in");
        }
        Ok(ScaleInPlan {
            names: chosen
                .iter()
                .map(|i| lab.hosts()[*i].name.clone())
                .collect(),
            released,
            survivors,
            kept,
        })
    }

    /// The survivors' destinations and entry ids, as the call log's parameters would name them.
    fn survivor_names(&self) -> BTreeSet<String> {
        self.kept
            .values()
            .map(|(id, _)| id.clone())
            .chain(self.survivors.iter().map(|(subnet, _)| subnet.clone()))
            .collect()
    }
}

/// Releases `s.released` hosts of a converged fleet lab (agent killed, then the instance released
/// through the admin API), measures until their routes are gone, then what the survivors' routes and
/// calls went through.
fn scale_in_on(
    lab: &mut Lab,
    expected: &[(String, String)],
    s: &mut ScaleIn,
    check: &dyn Fn() -> Result<()>,
) -> Result<()> {
    let plan = ScaleInPlan::new(lab, expected, s.released)?;
    s.survivors = plan.survivors.len();
    s.released_instances = plan.released.iter().cloned().collect();
    s.deadline_s = s.target_s() + SCALE_IN_SLACK_S;
    let admin = lab.state().admin_socket.clone();
    let mut collector = Collector::from_now(&admin)?;
    let t0 = unix_ms();
    release(lab, &plan)?;
    s.release_s = (unix_ms() - t0) as f64 / 1000.0;
    wait_removed(lab, &plan.released, t0, check, &mut collector, s)?;
    std::thread::sleep(SCALE_IN_SETTLE);
    collector.poll()?;
    let end = unix_ms();
    let after = lab.admin_sync(|c| async move { c.state().await })?;
    let now = survivor_entries(&after.entries, &plan.survivors);
    s.survivors_changed = plan
        .kept
        .iter()
        .filter(|(inst, (id, _))| now.get(*inst).is_none_or(|(id2, ok)| id2 != id || !ok))
        .count();
    let window: Vec<_> = collector
        .records
        .iter()
        .filter(|c| c.time_ms >= t0 && c.time_ms <= end)
        .cloned()
        .collect();
    s.survivor_write_calls = writes_naming(&window, &plan.survivor_names());
    let ids: Vec<String> = plan.survivors.iter().map(|e| e.1.clone()).collect();
    s.calls = CallStats::of(&collector.records, &ids, t0, end + 1);
    Ok(())
}

/// As ECS releases instances: every victim's agent killed first (its processes die with the
/// instance), then each instance released through the emulator's admin API.
fn release(lab: &mut Lab, plan: &ScaleInPlan) -> Result<()> {
    for name in &plan.names {
        lab.agent_kill(name)?;
    }
    let admin = lab.state().admin_socket.clone();
    for id in &plan.released {
        let id = id.clone();
        admin_call(
            &admin,
            move |c| async move { c.release_instance(&id).await },
        )
        .with_context(|| "releasing an instance through the admin API")?;
    }
    Ok(())
}

/// Polls the table until no route of `released` is left or the scale-in's deadline passes.
fn wait_removed(
    lab: &Lab,
    released: &BTreeSet<String>,
    t0: i64,
    check: &dyn Fn() -> Result<()>,
    collector: &mut Collector,
    s: &mut ScaleIn,
) -> Result<()> {
    let deadline = t0 + (s.deadline_s * 1000.0) as i64;
    let mut last_poll = Instant::now();
    loop {
        check()?;
        let state = lab.admin_sync(|c| async move { c.state().await })?;
        let left = released_left(&state.entries, released);
        let now = unix_ms();
        let t = (now - t0) as f64 / 1000.0;
        s.progress.push((t, left));
        s.left = left;
        if left < released.len() && s.first_removed_s.is_none() {
            s.first_removed_s = Some(t);
        }
        if left == 0 {
            s.removed_s = Some(t);
            return Ok(());
        }
        if now > deadline {
            return Ok(());
        }
        if last_poll.elapsed() > Duration::from_secs(5) {
            collector.poll()?;
            last_poll = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

// ---------------------------------------------------------------- figures

fn by_code(c: &CallStats) -> String {
    if c.by_code.is_empty() {
        return "none".into();
    }
    c.by_code
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn by_action_per_host(c: &CallStats) -> String {
    let v: Vec<String> = c
        .by_action_per_host()
        .iter()
        .map(|(a, k)| format!("{a} {}", num(*k)))
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The per-host storm of the same size in this run, as "per-host mode in this run: ...".
fn per_host_note(
    per_host: &[C2Result],
    n: usize,
    what: impl Fn(&C2Result) -> Option<String>,
) -> String {
    per_host
        .iter()
        .find(|c| c.hosts == n && c.backoff.is_agent_default())
        .and_then(what)
        .map(|t| format!("; per-host mode in this run: {t}"))
        .unwrap_or_default()
}

/// The id of the fleet storms' rows.
const STORM_ID: &str = "C2 fleet";

/// The rows of the fleet storms, each beside its lower bounds and the per-host storm of its size.
pub fn storm_figures(fleet: &[FleetStorm], per_host: &[C2Result], t: &Timings) -> Vec<Figure> {
    fleet
        .iter()
        .flat_map(|r| {
            let mut rows = vec![time_row(r, per_host)];
            rows.extend(bound_rows(r, t));
            rows.push(calls_row(r, per_host));
            rows.extend(table_rows(r));
            rows
        })
        .collect()
}

/// The time to every route `Available`, against 60 s.
fn time_row(r: &FleetStorm, per_host: &[C2Result]) -> Figure {
    let n = r.hosts;
    Figure::new(
        STORM_ID,
        &format!("N={n}: time to all routes Available"),
        r.time(),
        "s",
        Target::AtMost(STORM_TARGET_S),
    )
    .lower_bound(r.timed_out())
    .detail(match (&r.run.converged_s, &r.error) {
        (Some(_), _) => format!(
            "lower bounds {} s (batches) and {} s (throttle), below; all agents ready after {} s; the last ENI source/destination check off after {} s{}",
            num(r.batch_bound_s),
            r.throttle_bound_s.map(num).unwrap_or("n/a".into()),
            r.run.agents_ready_s.map(num).unwrap_or("n/a".into()),
            r.run.eni_off_s.map(num).unwrap_or("n/a".into()),
            per_host_note(per_host, n, |p| p.converged_s.map(|v| format!("{} s", num(v))))
        ),
        (None, Some(e)) => e.clone(),
        (None, None) => format!(
            "not converged: {} of {n} routes Available when the wait ended at {} s",
            r.run.available,
            num(r.deadline_s)
        ),
    })
}

/// The two lower bounds of the time, as context rows.
fn bound_rows(r: &FleetStorm, t: &Timings) -> [Figure; 2] {
    let n = r.hosts;
    let batches = Figure::new(
        STORM_ID,
        &format!(
            "N={n}: lower bound, {} serial batch(es) × ({} ms + {} s Pending)",
            n.div_ceil(BATCH),
            t.api_latency_ms,
            num(t.pending_ms as f64 / 1000.0)
        ),
        Some(r.batch_bound_s),
        "s",
        Target::None,
    )
    .detail(format!(
        "ceil({n} / {BATCH}): the table takes one write at a time, at most {BATCH} routes each"
    ));
    let throttle = Figure::new(
        STORM_ID,
        &format!("N={n}: lower bound, calls admitted ÷ {} calls/s", r.account_qps),
        r.throttle_bound_s,
        "s",
        Target::None,
    )
    .detail(match r.run.calls_to_converge.as_ref() {
        Some(c) => format!(
            "{} calls until the last route was Available, {} admitted by the account's throttle ({} throttled); (admitted − the {}-call burst) ÷ {}/s",
            c.total,
            admitted(c),
            c.total - admitted(c),
            r.account_qps,
            r.account_qps
        ),
        None => "not converged".into(),
    });
    [batches, throttle]
}

/// The API calls per host, against 4.
fn calls_row(r: &FleetStorm, per_host: &[C2Result]) -> Figure {
    let c = &r.run.calls;
    Figure::new(
        STORM_ID,
        &format!("N={}: API calls per host (mean)", r.hosts),
        (c.total > 0).then(|| c.per_host_mean()),
        "",
        Target::AtMost(CALLS_TARGET),
    )
    .lower_bound(r.timed_out())
    .detail(format!(
        "max {} per host; by action per host: {}; failed calls: {}{}",
        c.per_host_max(),
        by_action_per_host(c),
        by_code(c),
        per_host_note(per_host, r.hosts, |p| (p.calls.total > 0)
            .then(|| format!("{} calls/host", num(p.calls.per_host_mean()))))
    ))
}

/// Routes lost (not known for a storm stopped at its deadline) and duplicated.
fn table_rows(r: &FleetStorm) -> [Figure; 2] {
    let n = r.hosts;
    let started = r.run.agents_started > 0;
    [
        Figure::new(
            STORM_ID,
            &format!("N={n}: routes lost"),
            (started && !r.timed_out()).then_some(r.run.lost as f64),
            "",
            Target::AtMost(0.0),
        )
        .detail(format!("{} of {n} Available at the end", r.run.available)),
        Figure::new(
            STORM_ID,
            &format!("N={n}: duplicate routes"),
            started.then_some(r.run.duplicates as f64),
            "",
            Target::AtMost(0.0),
        ),
    ]
}

/// The scale-in's rows: how long the released routes stayed, and what happened to the survivors'.
pub fn scale_in_figures(s: &ScaleIn) -> Vec<Figure> {
    let settings = s
        .agents
        .map(|a| {
            format!(
                "release_grace_secs {}, sweep_interval_secs {}",
                a.grace_secs, a.sweep_secs
            )
        })
        .unwrap_or_default();
    let time = if s.timed_out() {
        Some(s.deadline_s)
    } else {
        s.removed_s
    };
    vec![
        Figure::new(
            "C4",
            &format!(
                "fleet scale-in, {} of {} released: until their routes are gone",
                s.released, s.hosts
            ),
            time,
            "s",
            Target::AtMost(s.target_s()),
        )
        .lower_bound(s.timed_out())
        .detail(match &s.error {
            Some(e) => e.clone(),
            None => format!(
                "grace + {} s; {settings}; first route gone after {} s, {} left at the end; agents killed and instances released in {} s; delete calls: {}",
                num(SCALE_IN_SLACK_S),
                s.first_removed_s.map(num).unwrap_or("n/a".into()),
                s.left,
                num(s.release_s),
                s.calls
                    .by_action
                    .iter()
                    .filter(|(a, _)| a.starts_with("Delete"))
                    .map(|(a, k)| format!("{a} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
        Figure::new(
            "C4",
            "fleet scale-in: survivors' routes changed",
            (s.error.is_none() && !s.released_instances.is_empty())
                .then_some(s.survivors_changed as f64),
            "",
            Target::AtMost(0.0),
        )
        .detail(format!(
            "{} survivors, same entry ids before and after: {}; write calls naming a survivor's route: {}; calls per survivor from the release until {} s after: {} ({}; failed: {})",
            s.survivors,
            s.survivors - s.survivors_changed.min(s.survivors),
            s.survivor_write_calls,
            SCALE_IN_SETTLE.as_secs(),
            num(s.calls.per_host_mean()),
            by_action_per_host(&s.calls),
            by_code(&s.calls)
        )),
    ]
}

/// C1 in fleet mode, beside per-host mode's median in this run.
pub fn c1_figures(fleet: &[C1Sample], per_host: &[C1Sample]) -> Vec<Figure> {
    let mut f = crate::control::c1_figure(
        fleet,
        "C1 fleet",
        "agent start → first packet between containers on two hosts, fleet mode",
        Target::AtMost(C1_TARGET_S),
    );
    let ph: Vec<f64> = per_host.iter().filter_map(|s| s.seconds).collect();
    if let Some(p) = summarize(&ph) {
        f.detail.push_str(&format!(
            "; per-host mode in this run: {} s (median)",
            num(p.median)
        ));
    }
    vec![f]
}

/// The markdown section: the storms beside per-host mode's, the scale-in, C1.
pub fn markdown(
    fleet: &[FleetStorm],
    per_host: &[C2Result],
    scale_in: Option<&ScaleIn>,
    c1: &[C1Sample],
) -> String {
    let mut m = String::new();
    if !fleet.is_empty() {
        m.push_str(&storms_markdown(fleet, per_host));
    }
    if let Some(s) = scale_in {
        m.push_str(&format!(
            "\n## Fleet mode: scale-in\n\n{}\n\nReleased routes left over time (s since the first agent was killed: routes): {}.\n",
            scale_in_line(s),
            s.progress
                .iter()
                .step_by((s.progress.len() / 20).max(1))
                .map(|(t, n)| format!("{}: {n}", num(*t)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !c1.is_empty() {
        m.push_str(&c1_markdown(c1));
    }
    m
}

/// Each fleet storm under the per-host storm of its size.
fn storms_markdown(fleet: &[FleetStorm], per_host: &[C2Result]) -> String {
    let mut m = String::from("\n## Fleet mode: boot storms beside per-host mode\n\n| N | mode | all Available s | lower bounds s (batches, throttle) | last ENI check off s | agents ready s | calls/host mean (max) | reads | writes | failed by code | lost | duplicates | agents' RSS total MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in fleet {
        if let Some(p) = per_host
            .iter()
            .find(|c| c.hosts == r.hosts && c.backoff.is_agent_default())
        {
            m.push_str(&format!(
                "| {} | per-host | {} | — | {} |\n",
                p.hosts,
                time_cell(p.converged_s, p.timed_out(), p.deadline_s),
                storm_cells(
                    p.eni_off_s,
                    p.agents_ready_s,
                    &p.calls,
                    p.lost,
                    p.duplicates,
                    p.agents_rss_mib
                )
            ));
        }
        let run = &r.run;
        m.push_str(&format!(
            "| {} | fleet | {} | {}, {} | {} |\n",
            r.hosts,
            time_cell(run.converged_s, r.timed_out(), r.deadline_s),
            num(r.batch_bound_s),
            r.throttle_bound_s.map(num).unwrap_or("n/a".into()),
            storm_cells(
                run.eni_off_s,
                run.agents_ready_s,
                &run.calls,
                run.lost,
                run.duplicates,
                run.agents_rss_mib
            )
        ));
    }
    for r in fleet {
        m.push_str(&format!(
            "\nFleet N={}: calls per host by action: {}{}\n",
            r.hosts,
            by_action_per_host(&r.run.calls),
            r.error
                .as_ref()
                .map(|e| format!("; ERROR {e}"))
                .unwrap_or_default()
        ));
    }
    m
}

/// The cells after the bounds, the same for both modes.
fn storm_cells(
    eni_off_s: Option<f64>,
    ready_s: Option<f64>,
    c: &CallStats,
    lost: usize,
    duplicates: usize,
    rss_mib: f64,
) -> String {
    format!(
        "{} | {} | {} ({}) | {} | {} | {} | {lost} | {duplicates} | {}",
        eni_off_s.map(num).unwrap_or("n/a".into()),
        ready_s.map(num).unwrap_or("n/a".into()),
        num(c.per_host_mean()),
        c.per_host_max(),
        c.reads,
        c.writes,
        by_code(c),
        num(rss_mib)
    )
}

/// C1 in fleet mode: each repetition, then every call of one until its first packet.
fn c1_markdown(c1: &[C1Sample]) -> String {
    let mut m = String::from("\n## C1 in fleet mode\n\n| rep | first packet, container source kept, s | both routes Available s | calls until then | error |\n|---|---|---|---|---|\n");
    for c in c1 {
        m.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            c.rep + 1,
            c.seconds.map(num).unwrap_or("n/a".into()),
            c.routes_available_s.map(num).unwrap_or("n/a".into()),
            c.calls
                .iter()
                .map(|(a, n)| format!("{a} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            c.error.clone().unwrap_or_default().replace('|', "\\|")
        ));
    }
    if let Some(c) = c1.iter().find(|c| !c.timeline.is_empty()) {
        m.push_str(&format!(
            "\nWhere the time goes in fleet mode (repetition {}, first packet after {} s): every call of both agents until then, seconds after they started: {}.\n",
            c.rep + 1,
            c.seconds.map(num).unwrap_or("n/a".into()),
            c.timeline.join("; ")
        ));
    }
    m
}

fn time_cell(v: Option<f64>, timed_out: bool, deadline: f64) -> String {
    match v {
        Some(v) => num(v),
        None if timed_out => format!("> {} (deadline)", num(deadline)),
        None => "n/a".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossdock_vpcsim::admin::CallRecord;

    fn calls(total: u64, throttled: u64, hosts: usize) -> CallStats {
        CallStats {
            total,
            reads: total / 2,
            writes: total - total / 2,
            by_code: if throttled > 0 {
                BTreeMap::from([("Throttling.User".to_string(), throttled)])
            } else {
                BTreeMap::new()
            },
            by_action: BTreeMap::from([
                ("CreateRouteEntries".to_string(), 8),
                ("DescribeInstances".to_string(), total - 8),
            ]),
            per_host: (0..hosts)
                .map(|i| (format!("i-{i}"), total / hosts as u64))
                .collect(),
            ..CallStats::default()
        }
    }

    #[test]
    fn the_batch_bound_counts_serial_batches_of_fifty() {
        let t = Timings::default();
        assert_eq!(batch_bound_s(1, &t), 1.2);
        assert_eq!(batch_bound_s(50, &t), 1.2);
        assert_eq!(batch_bound_s(51, &t), 2.4);
        assert!((batch_bound_s(200, &t) - 4.8).abs() < 1e-9);
    }

    #[test]
    fn the_throttle_bound_counts_admitted_calls_past_the_burst() {
        // 820 calls, 20 throttled: 800 admitted; the first 20 ride the full bucket.
        let c = calls(820, 20, 200);
        assert_eq!(admitted(&c), 800);
        assert!((throttle_bound_s(&c, 20) - 39.0).abs() < 1e-9);
        assert_eq!(throttle_bound_s(&calls(10, 0, 2), 20), 0.0);
    }

    #[test]
    fn victims_are_spread_over_the_fleet() {
        assert_eq!(victims(200, 50)[..3], [2, 6, 10]);
        assert_eq!(*victims(200, 50).last().unwrap(), 198);
        let v: BTreeSet<usize> = victims(200, 50).into_iter().collect();
        assert_eq!(v.len(), 50, "distinct");
        assert_eq!(victims(20, 5), vec![2, 6, 10, 14, 18]);
        assert_eq!(victims(3, 2), vec![0, 2]);
    }

    #[test]
    fn scale_in_specs_parse_and_refuse_with_the_fix() {
        assert_eq!(
            ScaleInSpec::parse(" 200 : 50 ").unwrap(),
            Some(ScaleInSpec {
                hosts: 200,
                release: 50
            })
        );
        assert_eq!(ScaleInSpec::parse("none").unwrap(), None);
        assert_eq!(ScaleInSpec::parse("").unwrap(), None);
        for (bad, says) in [
            ("200", "HOSTS:RELEASED"),
            ("200:x", "not a whole number"),
            ("1:1", "HOSTS must be 2..=200"),
            ("201:5", "HOSTS must be 2..=200"),
            ("20:20", "some hosts must survive"),
            ("20:0", "RELEASED must be"),
        ] {
            let e = format!("{:#}", ScaleInSpec::parse(bad).unwrap_err());
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn fleet_agent_settings_are_checked_with_the_agents_rules() {
        assert!(FleetAgents::default().check().is_ok());
        assert_eq!(FleetAgents::default().grace_secs, 10);
        let e = FleetAgents {
            grace_secs: 10,
            sweep_secs: 1,
        }
        .check()
        .unwrap_err();
        assert!(format!("{e}").contains("fleet.sweep_interval_secs"), "{e}");
    }

    #[test]
    fn the_scale_in_size_is_stormed_even_when_not_asked_for() {
        let s = Some(ScaleInSpec {
            hosts: 200,
            release: 50,
        });
        assert_eq!(storm_sizes(&[50, 100, 200], s), vec![50, 100, 200]);
        assert_eq!(storm_sizes(&[50], s), vec![50, 200]);
        assert_eq!(storm_sizes(&[50], None), vec![50]);
    }

    fn record(write: bool, params: &[(&str, &str)]) -> CallRecord {
        CallRecord {
            seq: 0,
            time: String::new(),
            time_ms: 0,
            action: "DeleteRouteEntries".into(),
            write,
            access_key_id: None,
            instance_id: None,
            code: "Success".into(),
            http_status: 200,
            request_id: String::new(),
            transport: String::new(),
            duration_ms: 0,
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn writes_naming_a_survivor_are_counted_reads_and_others_not() {
        let names: BTreeSet<String> = ["rte-keep".to_string(), "10.1.12.0/24".to_string()].into();
        let calls = vec![
            record(true, &[("RouteEntries.1.RouteEntryId", "rte-gone")]),
            record(true, &[("RouteEntries.2.RouteEntryId", "rte-keep")]),
            record(true, &[("RouteEntries.1.DstCidrBlock", "10.1.12.0/24")]),
            record(false, &[("DestinationCidrBlock", "10.1.12.0/24")]),
        ];
        assert_eq!(writes_naming(&calls, &names), 2);
    }

    fn storm(n: usize, converged: Option<f64>) -> FleetStorm {
        let t = Timings::default();
        let c = calls(3 * n as u64, 0, n);
        FleetStorm {
            hosts: n,
            run: StormRun {
                agents_started: n,
                converged_s: converged,
                agents_ready_s: converged.map(|c| c + 1.0),
                available: if converged.is_some() { n } else { n / 2 },
                lost: if converged.is_some() { 0 } else { n - n / 2 },
                calls: c.clone(),
                calls_to_converge: converged.map(|_| c.clone()),
                ..StormRun::default()
            },
            deadline_s: STORM_DEADLINE_S,
            batch_bound_s: batch_bound_s(n, &t),
            throttle_bound_s: converged.map(|_| throttle_bound_s(&c, 20)),
            account_qps: 20,
            agents: Some(FleetAgents::default()),
            error: None,
        }
    }

    #[test]
    fn storm_rows_show_time_bounds_calls_and_the_per_host_storm() {
        let per_host = vec![C2Result {
            hosts: 200,
            agents_started: 200,
            converged_s: Some(266.0),
            calls: calls(8000, 0, 200),
            ..C2Result::default()
        }];
        let f = storm_figures(&[storm(200, Some(45.0))], &per_host, &Timings::default());
        assert_eq!(f.len(), 6);
        assert!(f.iter().all(|x| x.id == "C2 fleet"));
        assert_eq!(f[0].value, Some(45.0));
        assert_eq!(f[0].verdict(), "met");
        assert!(
            f[0].detail.contains("per-host mode in this run: 266 s"),
            "{}",
            f[0].detail
        );
        assert!(f[1].name.contains("4 serial batch(es)"), "{}", f[1].name);
        assert!((f[1].value.unwrap() - 4.8).abs() < 1e-9);
        assert_eq!(f[1].verdict(), "", "a bound is context");
        assert_eq!(f[2].value, Some(29.0), "(600 − 20) ÷ 20");
        assert_eq!(f[3].value, Some(3.0));
        assert_eq!(f[3].verdict(), "met");
        assert!(
            f[3].detail
                .contains("per-host mode in this run: 40.0 calls/host"),
            "{}",
            f[3].detail
        );
        assert!(
            f[3].detail.contains("CreateRouteEntries 0.040"),
            "{}",
            f[3].detail
        );
        assert_eq!((f[4].value, f[5].value), (Some(0.0), Some(0.0)));

        let slow = storm_figures(&[storm(100, None)], &[], &Timings::default());
        assert!(slow[0].lower_bound);
        assert_eq!(slow[0].value_text(), "> 140 s");
        assert_eq!(slow[0].verdict(), "NOT MET");
        assert_eq!(slow[2].value, None);
        assert_eq!(slow[4].value, None, "a late route is not counted as lost");
    }

    #[test]
    fn scale_in_rows_judge_the_time_against_grace_plus_a_minute_and_the_survivors() {
        let s = ScaleIn {
            hosts: 200,
            released: 50,
            agents: Some(FleetAgents::default()),
            released_instances: (0..50).map(|i| format!("i-{i}")).collect(),
            removed_s: Some(31.0),
            first_removed_s: Some(20.0),
            survivors: 150,
            calls: calls(300, 0, 150),
            ..ScaleIn::default()
        };
        let f = scale_in_figures(&s);
        assert_eq!(f[0].target, Target::AtMost(70.0));
        assert_eq!(f[0].verdict(), "met");
        assert_eq!(f[1].value, Some(0.0));
        assert!(
            f[1].detail.contains("same entry ids before and after: 150"),
            "{}",
            f[1].detail
        );
        let late = ScaleIn {
            removed_s: None,
            left: 3,
            deadline_s: 130.0,
            survivors_changed: 2,
            ..s
        };
        let f = scale_in_figures(&late);
        assert!(f[0].lower_bound);
        assert_eq!(f[0].value_text(), "> 130 s");
        assert_eq!(f[0].verdict(), "NOT MET");
        assert_eq!(f[1].verdict(), "NOT MET");
    }

    #[test]
    fn the_markdown_puts_each_fleet_storm_under_its_per_host_storm() {
        let per_host = vec![C2Result {
            hosts: 50,
            agents_started: 50,
            converged_s: Some(64.5),
            calls: calls(1000, 0, 50),
            ..C2Result::default()
        }];
        let m = markdown(&[storm(50, Some(12.0))], &per_host, None, &[]);
        let ph = m.find("| 50 | per-host | 64.5 |").expect(&m);
        let fl = m.find("| 50 | fleet | 12.0 | 1.20, ").expect(&m);
        assert!(ph < fl, "{m}");
        assert!(
            !m.contains("scale-in") && !m.contains("C1 in fleet mode"),
            "{m}"
        );
    }

    #[test]
    fn the_markdown_shows_the_scale_in_and_where_c1_fleet_spends_its_time() {
        let s = ScaleIn {
            hosts: 200,
            released: 50,
            agents: Some(FleetAgents::default()),
            released_instances: vec!["i-1".into()],
            removed_s: Some(19.0),
            survivors: 150,
            progress: vec![(1.0, 50), (15.0, 30), (19.0, 0)],
            ..ScaleIn::default()
        };
        let c1 = C1Sample {
            seconds: Some(2.5),
            routes_available_s: Some(1.65),
            timeline: vec!["0.27 s h1 DescribeVSwitches Success".into()],
            ..C1Sample::default()
        };
        let m = markdown(&[], &[], Some(&s), &[c1]);
        assert!(
            m.contains("routes gone after 19.0 s (target 70.0 s)"),
            "{m}"
        );
        assert!(m.contains("1.00: 50, 15.0: 30, 19.0: 0"), "{m}");
        assert!(m.contains("| 1 | 2.50 | 1.65 |"), "{m}");
        assert!(
            m.contains("first packet after 2.50 s): every call of both agents until then, seconds after they started: 0.27 s h1 DescribeVSwitches Success."),
            "{m}"
        );
    }
}
