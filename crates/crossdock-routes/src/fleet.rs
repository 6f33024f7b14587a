//! Fleet mode's pass: read the cluster and the tables, plan ([`crate::fleet_plan`]), execute in
//! batches.
//!
//! A sweep reads the members (ECS `DescribeInstances` by the cluster tag) and every custom entry of
//! the tables, together (one after the other while the account throttles, so the table is not read
//! long before the members); when crossdock routes point at non-members it asks ECS about exactly
//! those instances (plus this host, whose presence makes the answer evidence, see [`crate::gc`]).
//! The plan is executed as it stands: replacements, creates (≤ 50 per `CreateRouteEntries`),
//! deletions (≤ 50 per `DeleteRouteEntries`). A throttled write is written again after the
//! reconciler's full-jitter backoff, as is a later batch refused while this host's earlier one is
//! `Pending`; a first batch the VPC refuses for now (another member's batch in flight) is waited
//! out and followed by a re-read: the other member has most likely just written the routes this
//! host wanted.
//!
//! Hosts of a fleet booting together do not all sweep: [`crate::boot`] draws a few sweepers and
//! gives the others a turn to look for their own route. Members that still sweep together write
//! their batches starting from their own ([`batches_from_own`]), so they do not write the same one
//! twice; a member whose first batch is refused because another one is writing waits for that
//! writer and looks for its own route instead of reading the fleet again. In a VPC of a few
//! instances every booting host sweeps and waits for its turn among the members missing a route
//! ([`turn_delay`]).
//!
//! A sweep runs when this host's own route is not known to be in place, every
//! [`own_sweep_interval`] (the configured interval, longer in a fleet of more than
//! [`SWEEPS_PER_INTERVAL`] members), and when a released instance's grace period ends.

use crossdock_status::{Reason, RouteState};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use serde::Serialize;

use crossdock_alibaba::{
    BatchResult, Error as CloudError, ErrorClass, Instance, InstanceQuery, NewRoute,
    RouteEntryFilter, RouteToDelete, Tag,
};
use crossdock_config::mapping::SubnetMapping;

use crate::boot::{BootPacing, BootRole, BOOT_GUESS};
use crate::calls::Calls;
use crate::discovery::Discovery;
use crate::fleet_plan::{
    plan_fleet, release_candidates, FleetConflict, FleetInput, FleetPlan, Member, Missing,
    ReleaseEvidence, StaleWait,
};
use crate::gc::ReleaseTracker;
use crate::plan::Observed;
use crate::problem::{Outcome, Problem, RETRY_PENDING};
use crate::reconciler::{RouteReconciler, SyncState};
use crate::tables::Senders;

/// Most entries one batch call takes.
pub const BATCH_MAX: usize = 50;

/// How long one boot writer's batch takes to be written and leave Pending, for a member whose first
/// batch was refused because another one was writing.
const BOOT_WRITER_SLOT: Duration = Duration::from_millis(1500);

/// The throttle gate's first window in fleet mode (per-host mode: 1 s). A throttled answer in fleet
/// mode almost always means the fleet is booting together: at 20 calls/s for the account, 50 hosts'
/// three boot calls take 7.5 s and 200 hosts' 30 s, so a gate that opens at 1 s and doubles per
/// throttled answer costs every host several refused calls before it spreads them enough; opening at
/// 8 s costs about one (measured with `scripts/bench --only fleet`, docs/performance.md). A host that
/// is never throttled never waits.
pub const FLEET_THROTTLE_WINDOW: Duration = Duration::from_secs(8);

/// The account's API rate the boot pacing assumes (calls per second): Alibaba's documented default
/// flow control for the VPC and ECS read actions is of this order, and the storm benchmark uses it.
pub const ACCOUNT_RATE: u32 = 20;

/// Fleet mode's settings (`[fleet]`, `[subnet]`, `cluster_cidrs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSettings {
    /// The cluster tag.
    pub tag: Tag,
    /// How long an instance must be seen released before its routes are deleted.
    pub grace: Duration,
    /// At most this many deletions per pass.
    pub max_deletes: usize,
    /// Full re-read of the cluster and its routes: this host every interval in a fleet of up to
    /// [`SWEEPS_PER_INTERVAL`] members, proportionally less often in a larger one
    /// ([`own_sweep_interval`]).
    pub sweep_interval: Duration,
    /// How long one batch takes to be written and settle, for the boot-time turns.
    pub batch_slot: Duration,
    /// `[subnet] host_ranges` (empty: the VPC's primary CIDR).
    pub host_ranges: Vec<Ipv4Net>,
    /// `cluster_cidrs`.
    pub cluster: Vec<Ipv4Net>,
    /// `[subnet] prefix_len`.
    pub prefix_len: u8,
    /// The account's API calls per second, for spreading a booting fleet's calls
    /// ([`crate::boot`]).
    pub account_rate: u32,
}

impl FleetSettings {
    /// From the configuration, when fleet mode is on (`[fleet] tag` set).
    pub fn from_config(c: &crossdock_config::Config) -> Option<Self> {
        let tag = c.fleet.tag.as_ref()?;
        Some(Self {
            tag: Tag {
                key: tag.key.clone(),
                value: tag.value.clone(),
            },
            grace: Duration::from_secs(c.fleet.release_grace_secs),
            max_deletes: c.fleet.max_deletes_per_pass as usize,
            sweep_interval: Duration::from_secs(c.fleet.sweep_interval_secs),
            batch_slot: Duration::from_millis(1500),
            host_ranges: c.subnet.host_ranges.clone(),
            cluster: c.cluster_cidrs.clone(),
            prefix_len: c.subnet.prefix_len,
            account_rate: ACCOUNT_RATE,
        })
    }

    fn mapping(&self, d: &Discovery) -> Result<SubnetMapping, String> {
        let hosts = if self.host_ranges.is_empty() {
            d.cidrs.vpc.first().copied().into_iter().collect()
        } else {
            self.host_ranges.clone()
        };
        SubnetMapping::new(&hosts, &self.cluster, self.prefix_len).map_err(|e| e.to_string())
    }
}

/// A stale route as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleStatus {
    /// Table.
    pub table_id: String,
    /// Destination.
    pub cidr: String,
    /// The entry.
    pub entry_id: String,
    /// The released instance it points at.
    pub instance_id: String,
    /// `grace_period`, `over_cap`, `not_available` or `deleting`.
    pub waiting_for: &'static str,
    /// Seconds until the grace period ends (0 when due).
    pub due_in_secs: u64,
}

/// One member's route in one table, for the fleet view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostRoute {
    /// Table.
    pub table_id: String,
    /// The entry (empty when missing).
    pub entry_id: String,
    /// `Available`, `Pending`, ... or `Missing`.
    pub status: RouteState,
}

/// One member as the last sweep saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetHost {
    /// `i-...`.
    pub instance_id: String,
    /// ECS status.
    pub status: String,
    /// Primary private IP.
    pub private_ip: Option<std::net::Ipv4Addr>,
    /// Its vSwitch.
    pub vswitch_id: String,
    /// Its container subnet by the mapping.
    pub subnet: Option<Ipv4Net>,
    /// Its route per table on the members' paths.
    pub routes: Vec<HostRoute>,
}

fn hosts_of(members: &[Member], plan: &FleetPlan) -> Vec<FleetHost> {
    let mut hosts: Vec<FleetHost> = members
        .iter()
        .map(|m| {
            let placed = plan
                .placed
                .iter()
                .filter(|p| p.instance_id == m.instance_id)
                .map(|p| HostRoute {
                    table_id: p.table_id.clone(),
                    entry_id: p.entry_id.clone(),
                    status: RouteState::from_vpc(&p.status),
                });
            let missing = plan
                .missing
                .iter()
                .filter(|p| p.instance_id == m.instance_id)
                .map(|p| HostRoute {
                    table_id: p.table_id.clone(),
                    entry_id: String::new(),
                    status: RouteState::Missing,
                });
            FleetHost {
                instance_id: m.instance_id.clone(),
                status: m.status.to_string(),
                private_ip: m.private_ip,
                vswitch_id: m.vswitch_id.clone(),
                subnet: m.subnet,
                routes: placed.chain(missing).collect(),
            }
        })
        .collect();
    hosts.sort_by(|a, b| (a.private_ip, &a.instance_id).cmp(&(b.private_ip, &b.instance_id)));
    hosts
}

/// The cluster as the last sweep saw it, for `/status` and `crossdock status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FleetStatus {
    /// `key=value`.
    pub tag: String,
    /// Members by the tag, any status.
    pub members: usize,
    /// Of those, running (or starting).
    pub running: usize,
    /// Members' routes missing.
    pub routes_missing: Vec<Missing>,
    /// Crossdock routes of released instances, waiting or being deleted.
    pub stale_routes: Vec<StaleStatus>,
    /// Members' destinations held by routes crossdock may not replace.
    pub conflicts: Vec<FleetConflict>,
    /// Members whose subnet cannot be computed.
    pub unmapped: Vec<String>,
    /// Custom entries per table (quota use), as listed.
    pub table_entries: Vec<(String, usize)>,
    /// Every member with its subnet and its route per table (`crossdock status --fleet`).
    pub hosts: Vec<FleetHost>,
    /// Routes were written after this view was read; the next pass reads again.
    pub written_since: bool,
    /// Seconds since the last sweep finished.
    #[serde(skip)]
    pub swept_at: Option<Instant>,
}

/// What one sweep works with.
#[derive(Clone, Copy)]
struct Sweep<'a> {
    fleet: &'a FleetSettings,
    mapping: &'a SubnetMapping,
    /// Write without waiting for a turn among the members missing routes (a boot sweeper).
    at_once: bool,
}

/// How a fleet member's first read went at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BootStart {
    /// Answered (or not a boot): the boot turn decides.
    Called,
    /// Throttled: this host waited its turn, and only looks.
    Waited,
    /// Throttled and drawn to sweep: it sweeps at once.
    Drawn,
}

/// What the boot turn decided.
enum BootTurn {
    /// Sweep now; `at_once`: write without waiting for a turn among the members missing routes.
    Sweep { at_once: bool },
    /// Nothing more this pass (this host's route is in place, or a problem was reported).
    Done,
}

/// Fleet mode's memory between passes.
#[derive(Debug, Default)]
pub struct FleetState {
    pub(crate) tracker: ReleaseTracker,
    pub(crate) last_sweep: Option<Instant>,
    pub(crate) status: Option<FleetStatus>,
    /// Since when each listed table has been off every member's path.
    pub(crate) off_path_since: std::collections::BTreeMap<String, Duration>,
    /// The tables on the members' paths, from the last sweep (this host's route goes there too).
    pub(crate) path: Option<Vec<String>>,
    /// Listings this pass already made and nothing has written since, by table: the check of this
    /// host's own route uses them instead of reading again.
    pub(crate) fresh: std::collections::HashMap<String, Vec<crossdock_alibaba::RouteEntry>>,
    /// This host's own route per table as the last pass found it in place: between sweeps the
    /// check of this host's route uses it, so an idle pass makes no call (the next sweep reads the
    /// whole table again, this host's route included).
    pub(crate) own_listed: std::collections::HashMap<String, Vec<crossdock_alibaba::RouteEntry>>,
    /// The boot turn ([`crate::boot`]) is behind this host: later sweeps run when due.
    pub(crate) booted: bool,
    /// How this host's first read went ([`BootStart`]).
    pub(crate) boot_start: Option<BootStart>,
    /// Members at the last sweep (before one: the addresses in use at boot; 0: unknown), for this
    /// host's own sweep interval ([`own_sweep_interval`]).
    pub(crate) members_hint: usize,
}

/// Sizes of what one read found, for `/status`.
struct ViewCounts {
    members: usize,
    running: usize,
    table_entries: Vec<(String, usize)>,
    hosts: Vec<Member>,
    observed: Vec<Observed>,
}

/// What one read of the fleet found.
struct FleetView {
    members: Vec<Member>,
    observed: Vec<Observed>,
}

fn member_of(i: &Instance, mapping: &SubnetMapping) -> Member {
    Member {
        instance_id: i.instance_id.clone(),
        status: i.status.clone(),
        vswitch_id: i.vswitch_id.clone(),
        private_ip: i.private_ip,
        subnet: i.private_ip.and_then(|ip| mapping.subnet_for(ip).ok()),
    }
}

/// The creates in batches of [`BATCH_MAX`], starting with the batch that holds this host's own
/// route and going round from there: this host's route is written first, and members that sweep
/// together (each from its own batch) write different batches instead of the same one twice.
pub fn batches_from_own<'a>(create: &'a [NewRoute], self_id: &str) -> Vec<&'a [NewRoute]> {
    let mut batches: Vec<&[NewRoute]> = create.chunks(BATCH_MAX).collect();
    if let Some(own) = batches
        .iter()
        .position(|b| b.iter().any(|r| r.next_hop_id == self_id))
    {
        batches.rotate_left(own);
    }
    batches
}

/// The fleet sweeps about this many times per `sweep_interval` in all, however many members it has.
pub const SWEEPS_PER_INTERVAL: usize = 8;

/// How often this host sweeps: every `interval` in a fleet of up to [`SWEEPS_PER_INTERVAL`]
/// members, and proportionally less often in a larger one, so the fleet as a whole sweeps about
/// [`SWEEPS_PER_INTERVAL`] times per interval. Every sweep writes any member's missing route and
/// notices any released instance, so a fleet of 200 that swept 200 times a minute would spend the
/// account's whole rate limit on reading the same answer.
pub fn own_sweep_interval(interval: Duration, members: usize) -> Duration {
    let share = members.div_ceil(SWEEPS_PER_INTERVAL).max(1);
    interval * u32::try_from(share).unwrap_or(u32::MAX)
}

/// The time a covered booting host counts its first sweep from, so that its first sweep comes
/// `interval` after its turn plus a random share (`draw` in `[0, 1)`) of what its own interval
/// (`own`, see [`own_sweep_interval`]) adds: the hosts of a fleet that booted together then sweep
/// spread over their own interval from one interval on, instead of in step with their turns, and
/// one of them notices a released instance soon after it is gone.
pub fn first_sweep_phase(interval: Duration, own: Duration, draw: f64) -> Instant {
    let now = Instant::now();
    let extra = own.saturating_sub(interval);
    now.checked_sub(extra.mul_f64(1.0 - draw.clamp(0.0, 1.0)))
        .unwrap_or(now)
}

/// When this host's turn to write comes: its position among the members missing a route (in id
/// order) selects a batch; batch `n` waits `n` slots. The first of each batch writes at once.
pub fn turn_delay(missing: &[Missing], self_id: &str, slot: Duration) -> Duration {
    let mut ids: Vec<&str> = missing.iter().map(|m| m.instance_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    match ids.iter().position(|id| *id == self_id) {
        Some(pos) => {
            let batch = u32::try_from(pos / BATCH_MAX).unwrap_or(u32::MAX);
            let in_batch = pos % BATCH_MAX;
            // Members inside a batch other than its first wait one more slot: the first one's
            // batch covers them, so they normally only need to look.
            slot * batch + if in_batch == 0 { Duration::ZERO } else { slot }
        }
        None => Duration::ZERO,
    }
}

impl RouteReconciler {
    /// The fleet part of a pass, run after discovery and before this host's own route is checked.
    /// Returns false when this host's own route must not be touched (its subnet is not the one the
    /// fleet mapping gives it).
    pub(crate) async fn fleet_pass(
        &self,
        st: &mut SyncState,
        calls: &Calls<'_>,
        out: &mut Outcome,
        d: &Discovery,
        subnet: Ipv4Net,
    ) -> bool {
        st.fleet.fresh.clear();
        let Some(fleet) = self.cfg.fleet.clone() else {
            return true;
        };
        let mapping = match fleet.mapping(d) {
            Ok(m) => m,
            Err(e) => {
                out.problems.push(Problem::failed(
                    Reason::MappingInvalid,
                    format!("fleet mode cannot map members to subnets: {e}"),
                    None,
                ));
                return false;
            }
        };
        if let Err(p) = self.check_own_subnet(&mapping, subnet) {
            out.problems.push(p);
            return false;
        }
        if self.sweep_due(st, &d.tables, subnet, &fleet) {
            match self.boot_turn(st, calls, out, d, subnet, &fleet).await {
                BootTurn::Done => return true,
                BootTurn::Sweep { at_once } => {
                    let how = Sweep {
                        fleet: &fleet,
                        mapping: &mapping,
                        at_once,
                    };
                    self.sweep(st, calls, out, d, how).await;
                }
            }
        } else {
            // Between sweeps this host's route is taken as the last pass found it: no call.
            st.fleet.fresh = st.fleet.own_listed.clone();
        }
        // The route loop wakes at `[cloud] resync_interval_secs`; the next sweep may be due sooner.
        let interval = own_sweep_interval(fleet.sweep_interval, st.fleet.members_hint);
        let next_sweep = st
            .fleet
            .last_sweep
            .map_or(Duration::ZERO, |t| interval.saturating_sub(t.elapsed()));
        let next_sweep = next_sweep.max(Duration::from_secs(1));
        out.next_pass = Some(out.next_pass.map_or(next_sweep, |n| n.min(next_sweep)));
        true
    }

    /// Fleet mode: whether this pass sweeps (`None`: per-host mode). A sweep runs when this host's
    /// own route is not known to be in place, when a released instance's grace period has ended,
    /// and every `sweep_interval`; in between a pass makes no call at all.
    pub(crate) fn fleet_sweep_due(&self, st: &SyncState, subnet: Ipv4Net) -> Option<bool> {
        let fleet = self.cfg.fleet.as_ref()?;
        let tables = st.discovery.as_ref().map(|d| d.tables.as_slice())?;
        Some(self.sweep_due(st, tables, subnet, fleet))
    }

    fn sweep_due(
        &self,
        st: &SyncState,
        tables: &[String],
        subnet: Ipv4Net,
        fleet: &FleetSettings,
    ) -> bool {
        // The tables on the members' paths once a sweep has found them (this host's route goes
        // there), every table on a sender's path before.
        let path = st.fleet.path.as_deref().unwrap_or(tables);
        let own_in_place = path
            .iter()
            .all(|t| st.in_place.contains(&(t.clone(), subnet)));
        let gc_due = st
            .fleet
            .tracker
            .next_due(fleet.grace)
            .is_some_and(|t| t <= self.clock_offset());
        let sweep_due = st.fleet.last_sweep.is_none_or(|t| {
            t.elapsed() >= own_sweep_interval(fleet.sweep_interval, st.fleet.members_hint)
        });
        !own_in_place || gc_due || sweep_due
    }

    /// This host's served subnet must be the one the mapping gives its private IP: every other
    /// member computes this host's route from the IP alone.
    fn check_own_subnet(&self, mapping: &SubnetMapping, subnet: Ipv4Net) -> Result<(), Problem> {
        let ip = &self.identity.private_ip;
        let derived = ip
            .parse()
            .map_err(|_| format!("this host's private IP {ip:?} is not an IPv4 address"))
            .and_then(|ip| mapping.subnet_for(ip).map_err(|e| e.to_string()));
        match derived {
            Ok(d) if d == subnet => Ok(()),
            Ok(d) => Err(Problem::failed(
                Reason::SubnetMismatch,
                format!(
                    "Docker serves {subnet}, but the fleet mapping gives this host ({ip}) {d}; other members \
                     route {d} here; fix: run `crossdock init` and restart Docker (bip {d})"
                ),
                None,
            )),
            Err(e) => Err(Problem::failed(Reason::MappingInvalid, e, None)),
        }
    }

    /// Offset of now from the reconciler's start (the release tracker's clock).
    fn clock_offset(&self) -> Duration {
        self.started.elapsed()
    }

    async fn sweep(
        &self,
        st: &mut SyncState,
        calls: &Calls<'_>,
        out: &mut Outcome,
        d: &Discovery,
        how: Sweep<'_>,
    ) {
        let Sweep {
            fleet,
            mapping,
            at_once,
        } = how;
        let started = Instant::now();
        let mut refusals = 0u32;
        let mut first_round = true;
        // Whether the view in the status is still true: false once anything was written after it.
        let mut verified = false;
        // This host's route was written by another member's batch while it waited for its turn.
        let mut covered = false;
        // This host wrote every missing route and nothing was refused.
        let mut written_cleanly = false;
        loop {
            let (plan, counts) = match self.read_and_plan(st, calls, d, fleet, mapping).await {
                Ok(p) => p,
                Err(p) => {
                    out.problems.push(p);
                    return;
                }
            };
            self.note_plan(st, out, &plan, &counts, fleet);
            if !plan.writes() {
                st.fleet.fresh = counts
                    .observed
                    .into_iter()
                    .map(|o| (o.table_id, o.entries))
                    .collect();
                verified = true;
                break;
            }
            if first_round && !at_once && !plan.create.is_empty() {
                first_round = false;
                let wait = turn_delay(&plan.missing, &self.identity.instance_id, fleet.batch_slot);
                if !wait.is_zero() {
                    if let Some(fresh) = self.own_route_after(calls, &plan, wait).await {
                        st.fleet.fresh = fresh;
                        covered = true;
                        break;
                    }
                    continue;
                }
            }
            first_round = false;
            if !plan.replace.is_empty() {
                // Released hosts' routes on members' destinations go first; the destinations are
                // free only once the VPC has removed them, so the creates follow a re-read.
                match self.replace(calls, out, &plan).await {
                    Ok(()) => {
                        (self.sleeper)(self.cfg.poll_initial).await;
                        continue;
                    }
                    Err(e) => {
                        out.problems
                            .push(Problem::from_error("replace released hosts' routes", &e));
                        break;
                    }
                }
            }
            let refused_before = out.problems.len() + out.notes.len();
            match self.execute(calls, out, &plan).await {
                Ok(()) => {
                    // Only creates, none refused: the writes are known, so reading the whole
                    // fleet again at once would only cost every writer its listings again; the
                    // view is marked as older than the writes until the next sweep.
                    written_cleanly = plan.delete.is_empty()
                        && plan.replace.is_empty()
                        && out.problems.len() + out.notes.len() == refused_before;
                    break;
                }
                Err(e)
                    if e.class() == ErrorClass::Retryable
                        && started.elapsed() < self.cfg.write_patience =>
                {
                    refusals += 1;
                    out.refused(&e);
                    if at_once && refusals == 1 && !plan.create.is_empty() {
                        // Another member drawn to sweep at boot got there first and is writing
                        // every batch: give it the time they take, then look for this host's route
                        // only, instead of reading the whole fleet again.
                        let batches = plan.create.len().div_ceil(BATCH_MAX);
                        let wait = BOOT_WRITER_SLOT * u32::try_from(batches).unwrap_or(u32::MAX)
                            + crossdock_alibaba::full_jitter(BOOT_WRITER_SLOT);
                        if let Some(fresh) = self.own_route_after(calls, &plan, wait).await {
                            st.fleet.fresh = fresh;
                            covered = true;
                            break;
                        }
                        continue;
                    }
                    let delay = self.write_delay(refusals, e.retry_hint());
                    tracing::debug!(refusals, ?delay, error = %e, "fleet batch refused for now; backing off, then re-reading");
                    (self.sleeper)(delay).await;
                }
                Err(e) => {
                    out.problems
                        .push(Problem::from_error("write the fleet's routes", &e));
                    break;
                }
            }
        }
        if verified {
            st.fleet.last_sweep = Some(Instant::now());
        } else if covered || written_cleanly {
            // The view predates the batch that covered this host; the next sweep, an interval
            // later, shows it (sweeping again now would cost every waiting host two more calls).
            st.fleet.last_sweep = Some(Instant::now());
            if let Some(status) = st.fleet.status.as_mut() {
                status.written_since = true;
            }
        } else {
            // Routes were written after the view in the status (by this host or the one whose
            // batch covered it): the next pass sweeps again and shows what is there.
            st.fleet.last_sweep = None;
            if let Some(status) = st.fleet.status.as_mut() {
                status.written_since = true;
            }
        }
        if let Some(due) = st.fleet.tracker.next_due(fleet.grace) {
            let wait = due.saturating_sub(self.clock_offset()) + Duration::from_secs(1);
            out.next_pass = Some(out.next_pass.map_or(wait, |n| n.min(wait)));
        }
    }

    /// After waiting `wait` for another member's batches: this host's route as now listed in each
    /// table where it was missing, if every one of them has it now (written by that member's
    /// batch); `None` when some table still lacks it.
    async fn own_route_after(
        &self,
        calls: &Calls<'_>,
        plan: &FleetPlan,
        wait: Duration,
    ) -> Option<std::collections::HashMap<String, Vec<crossdock_alibaba::RouteEntry>>> {
        (self.sleeper)(wait).await;
        let mut listed = std::collections::HashMap::new();
        for m in plan
            .missing
            .iter()
            .filter(|m| m.instance_id == self.identity.instance_id)
        {
            let filter = RouteEntryFilter {
                destination_cidr_block: Some(m.cidr.to_string()),
                ..Default::default()
            };
            match calls.route_entries(&m.table_id, &filter).await {
                Ok(entries) if entries.iter().any(|e| self.marker.points_here(e)) => {
                    listed.insert(m.table_id.clone(), entries);
                }
                _ => return None,
            }
        }
        Some(listed)
    }

    /// The boot turn ([`crate::boot`]): whether this host sweeps now, or its own route was found
    /// in place (written by a sweeper) so the first full sweep waits for the sweep interval.
    async fn boot_turn(
        &self,
        st: &mut SyncState,
        calls: &Calls<'_>,
        out: &mut Outcome,
        d: &Discovery,
        subnet: Ipv4Net,
        fleet: &FleetSettings,
    ) -> BootTurn {
        if std::mem::replace(&mut st.fleet.booted, true) {
            return BootTurn::Sweep { at_once: false };
        }
        let pacing = self.boot_pacing(d, fleet);
        if pacing.sweep_chance() >= 1.0 {
            return BootTurn::Sweep { at_once: false };
        }
        if st.fleet.boot_start == Some(BootStart::Drawn) {
            return BootTurn::Sweep { at_once: true };
        }
        if st.fleet.boot_start != Some(BootStart::Waited) {
            if pacing.role((self.draw)()) == BootRole::Sweep {
                tracing::info!(
                    addresses_in_use = pacing.addresses_in_use,
                    "drawn to sweep the booting fleet's routes"
                );
                return BootTurn::Sweep { at_once: true };
            }
            let wait = pacing.turn_in(self.clock_offset(), (self.draw)());
            tracing::info!(
                ?wait,
                addresses_in_use = pacing.addresses_in_use,
                "waiting for the fleet's sweepers before looking for this host's route"
            );
            (self.sleeper)(wait).await;
        }
        match self.own_route_everywhere(calls, d, subnet).await {
            Ok(Some(observed)) => {
                tracing::info!(
                    "this host's route is in place: the first full sweep of the fleet waits for the sweep interval"
                );
                st.fleet.fresh = observed
                    .into_iter()
                    .map(|o| (o.table_id, o.entries))
                    .collect();
                st.fleet.members_hint =
                    usize::try_from(pacing.addresses_in_use).unwrap_or(usize::MAX);
                let own = own_sweep_interval(fleet.sweep_interval, st.fleet.members_hint);
                st.fleet.last_sweep =
                    Some(first_sweep_phase(fleet.sweep_interval, own, (self.draw)()));
                BootTurn::Done
            }
            // Still missing after its turn: no sweeper got to it, so this host sweeps itself.
            Ok(None) => BootTurn::Sweep { at_once: true },
            Err(p) => {
                out.problems.push(p);
                BootTurn::Done
            }
        }
    }

    /// The boot pacing from the addresses in use in the host ranges' vSwitches.
    pub(crate) fn boot_pacing(&self, d: &Discovery, fleet: &FleetSettings) -> BootPacing {
        BootPacing {
            addresses_in_use: d.addresses_in_use(&fleet.host_ranges),
            account_rate: f64::from(fleet.account_rate),
        }
    }

    /// Discovery; at a fleet member's boot (`boot`) the vSwitches are read with one attempt, and a
    /// throttled answer (a fleet booting together) makes this host wait its turn
    /// ([`BootPacing::turn_in`] for [`BOOT_GUESS`] addresses, the VPC's size being unknown yet)
    /// before reading again, instead of retrying at once against a spent rate limit (unless it is
    /// drawn to sweep, with the chance for that many addresses). Also returns how it went.
    pub(crate) async fn discover_or_wait_turn(
        &self,
        calls: &Calls<'_>,
        first: bool,
        boot: bool,
    ) -> (Result<Discovery, Problem>, BootStart) {
        let Some(fleet) = self.cfg.fleet.as_ref().filter(|_| boot) else {
            return (self.discover(calls, first, false).await, BootStart::Called);
        };
        match self.discover(calls, first, true).await {
            Err(p) if self.cloud.recently_throttled() => {
                let pacing = BootPacing {
                    addresses_in_use: BOOT_GUESS,
                    account_rate: f64::from(fleet.account_rate),
                };
                if pacing.role((self.draw)()) == BootRole::Sweep {
                    // Drawn: read again behind the client's throttle gate, then sweep.
                    tracing::info!(
                        "first call throttled; drawn to sweep the booting fleet's routes"
                    );
                    return (self.discover(calls, first, false).await, BootStart::Drawn);
                }
                let wait = pacing.turn_in(self.clock_offset(), (self.draw)());
                tracing::info!(
                    ?wait,
                    refused = %p.message,
                    "this host's first call was throttled (a fleet booting together): waiting its turn"
                );
                (self.sleeper)(wait).await;
                (self.discover(calls, first, false).await, BootStart::Waited)
            }
            other => (other, BootStart::Called),
        }
    }

    /// This host's route, one read per table filtered to its destination: the listings when every
    /// table has it (pointing here), `None` when one lacks it.
    async fn own_route_everywhere(
        &self,
        calls: &Calls<'_>,
        d: &Discovery,
        subnet: Ipv4Net,
    ) -> Result<Option<Vec<Observed>>, Problem> {
        let cidr = subnet.to_string();
        let own = RouteEntryFilter {
            destination_cidr_block: Some(cidr.clone()),
            ..Default::default()
        };
        let listed =
            futures_util::future::join_all(d.tables.iter().map(|t| calls.route_entries(t, &own)))
                .await;
        let mut observed = Vec::new();
        for (table_id, entries) in d.tables.iter().zip(listed) {
            let entries = entries.map_err(|e| {
                Problem::from_error(&format!("look for this host's route in {table_id}"), &e)
            })?;
            let here = entries
                .iter()
                .any(|e| e.destination_cidr_block == cidr && self.marker.points_here(e));
            if !here {
                return Ok(None);
            }
            observed.push(Observed {
                table_id: table_id.clone(),
                entries,
            });
        }
        Ok(Some(observed))
    }

    async fn read_and_plan(
        &self,
        st: &mut SyncState,
        calls: &Calls<'_>,
        d: &Discovery,
        fleet: &FleetSettings,
        mapping: &SubnetMapping,
    ) -> Result<(FleetPlan, ViewCounts), Problem> {
        let view = self.read_fleet(calls, d, fleet, mapping).await?;
        let evidence = self.release_evidence(st, calls, &view, fleet).await?;
        let member_vswitches: BTreeSet<String> =
            view.members.iter().map(|m| m.vswitch_id.clone()).collect();
        let path = d
            .layout
            .tables_on_path(
                &self.cfg.route_table_ids,
                Senders::Members(&member_vswitches),
                &self.identity.vswitch_id,
            )
            .map_err(|m| Problem::failed(Reason::NoRouteTable, m, Some(RETRY_PENDING)))?;
        let off_path = self.tables_off_path(st, &view.observed, &path, fleet.grace);
        st.fleet.path = Some(path.clone());
        let counts = ViewCounts {
            members: view.members.len(),
            running: view.members.iter().filter(|m| m.wants_route()).count(),
            table_entries: view
                .observed
                .iter()
                .map(|o| (o.table_id.clone(), o.entries.len()))
                .collect(),
            hosts: view.members.clone(),
            observed: view.observed.clone(),
        };
        let plan = plan_fleet(&FleetInput {
            self_id: &self.identity.instance_id,
            route_name: &self.cfg.route_name,
            members: &view.members,
            tables: &path,
            observed: &view.observed,
            evidence: &evidence,
            max_deletes: fleet.max_deletes,
            off_path: &off_path,
        });
        Ok((plan, counts))
    }

    /// The listed tables off every member's path for the whole grace period (a table just left,
    /// or one a partial member listing seems to leave, waits).
    fn tables_off_path(
        &self,
        st: &mut SyncState,
        observed: &[Observed],
        path: &[String],
        grace: Duration,
    ) -> Vec<Observed> {
        let now = self.clock_offset();
        let off: Vec<&Observed> = observed
            .iter()
            .filter(|o| !path.contains(&o.table_id))
            .collect();
        st.fleet
            .off_path_since
            .retain(|t, _| off.iter().any(|o| &o.table_id == t));
        off.into_iter()
            .filter(|o| {
                let since = *st
                    .fleet
                    .off_path_since
                    .entry(o.table_id.clone())
                    .or_insert(now);
                now.saturating_sub(since) >= grace
            })
            .cloned()
            .collect()
    }

    /// Every custom entry of each table on a sender's path.
    async fn read_tables(
        &self,
        calls: &Calls<'_>,
        d: &Discovery,
    ) -> Result<Vec<Observed>, Problem> {
        let custom = RouteEntryFilter {
            route_entry_type: Some("Custom".into()),
            ..Default::default()
        };
        let tables = futures_util::future::join_all(
            d.tables.iter().map(|t| calls.route_entries(t, &custom)),
        )
        .await;
        let mut observed = Vec::new();
        for (table_id, listed) in d.tables.iter().zip(tables) {
            let mut entries = listed
                .map_err(|e| Problem::from_error(&format!("list the routes of {table_id}"), &e))?;
            for e in entries.iter_mut().filter(|e| e.route_table_id.is_empty()) {
                e.route_table_id = table_id.clone();
            }
            observed.push(Observed {
                table_id: table_id.clone(),
                entries,
            });
        }
        Ok(observed)
    }

    /// The members and the tables, read together.
    async fn read_fleet(
        &self,
        calls: &Calls<'_>,
        d: &Discovery,
        fleet: &FleetSettings,
        mapping: &SubnetMapping,
    ) -> Result<FleetView, Problem> {
        let query = InstanceQuery {
            vpc_id: Some(self.identity.vpc_id.clone()),
            tag: Some(fleet.tag.clone()),
            instance_ids: Vec::new(),
        };
        // Under throttling the member listing can take seconds, and a table read before it would
        // miss what other members wrote meanwhile: then the members first, then the tables.
        let (instances, observed) = if self.cloud.recently_throttled() {
            let instances = calls.instances(&query).await;
            (instances, None)
        } else {
            let (i, o) = tokio::join!(calls.instances(&query), self.read_tables(calls, d));
            (i, Some(o))
        };
        let instances = instances.map_err(|e| {
            Problem::from_error(
                &format!(
                    "list the members tagged {}={}",
                    fleet.tag.key, fleet.tag.value
                ),
                &e,
            )
        })?;
        let observed = match observed {
            Some(o) => o?,
            None => self.read_tables(calls, d).await?,
        };
        let members = instances
            .iter()
            .filter(|i| i.vpc_id.is_empty() || i.vpc_id == self.identity.vpc_id)
            .map(|i| member_of(i, mapping))
            .collect();
        Ok(FleetView { members, observed })
    }

    /// Asks ECS about the next hops of crossdock routes that are not members, with this host in
    /// the same question; an answer that does not show this host proves nothing.
    async fn release_evidence(
        &self,
        st: &mut SyncState,
        calls: &Calls<'_>,
        view: &FleetView,
        fleet: &FleetSettings,
    ) -> Result<ReleaseEvidence, Problem> {
        let me = &self.identity.instance_id;
        let asked = release_candidates(&view.members, &view.observed, &self.cfg.route_name);
        if asked.is_empty() {
            st.fleet.tracker = ReleaseTracker::default();
            return Ok(ReleaseEvidence::default());
        }
        let query = InstanceQuery {
            vpc_id: None,
            tag: None,
            instance_ids: asked.iter().cloned().chain([me.clone()]).collect(),
        };
        let listed = calls.instances(&query).await.map_err(|e| {
            Problem::from_error("look up the instances behind crossdock's routes", &e)
        })?;
        let answered: BTreeSet<String> = listed.into_iter().map(|i| i.instance_id).collect();
        match st
            .fleet
            .tracker
            .observe(me, &asked, &answered, self.clock_offset(), fleet.grace)
        {
            Ok(ev) => Ok(ev),
            Err(odd) => {
                tracing::warn!(%odd, "instance listing is no evidence; deleting nothing");
                Ok(ReleaseEvidence::default())
            }
        }
    }

    fn note_plan(
        &self,
        st: &mut SyncState,
        out: &mut Outcome,
        plan: &FleetPlan,
        counts: &ViewCounts,
        fleet: &FleetSettings,
    ) {
        st.fleet.members_hint = counts.members;
        let now = self.clock_offset();
        let waiting = st.fleet.tracker.waiting();
        let stale_routes = plan
            .stale
            .iter()
            .map(|s| StaleStatus {
                table_id: s.table_id.clone(),
                cidr: s.cidr.clone(),
                entry_id: s.entry_id.clone(),
                instance_id: s.instance_id.clone(),
                waiting_for: match s.waiting_for {
                    StaleWait::GracePeriod => "grace_period",
                    StaleWait::OverCap => "over_cap",
                    StaleWait::NotAvailable => "not_available",
                    StaleWait::Deleting => "deleting",
                },
                due_in_secs: waiting
                    .get(&s.instance_id)
                    .map(|first| (*first + fleet.grace).saturating_sub(now).as_secs())
                    .unwrap_or(0),
            })
            .collect();
        for c in &plan.conflicts {
            if c.instance_id == self.identity.instance_id {
                // This host's own destination: reported by the per-table check with its fix.
                continue;
            }
            out.notes.push(format!(
                "{}: member {}'s subnet {} is held by {} ({}); crossdock does not overwrite it",
                c.table_id, c.instance_id, c.cidr, c.entry_id, c.holder
            ));
        }
        st.fleet.status = Some(FleetStatus {
            tag: format!("{}={}", fleet.tag.key, fleet.tag.value),
            members: counts.members,
            running: counts.running,
            routes_missing: plan.missing.clone(),
            stale_routes,
            conflicts: plan.conflicts.clone(),
            unmapped: plan.unmapped.clone(),
            table_entries: counts.table_entries.clone(),
            hosts: hosts_of(&counts.hosts, plan),
            written_since: false,
            swept_at: Some(Instant::now()),
        });
    }

    /// Deletes the routes of released hosts whose destinations members need now.
    async fn replace(
        &self,
        calls: &Calls<'_>,
        out: &mut Outcome,
        plan: &FleetPlan,
    ) -> Result<(), CloudError> {
        for chunk in plan.replace.chunks(BATCH_MAX) {
            let r = calls.delete_routes(chunk).await?;
            out.batch_calls += 1;
            self.log_deletions(
                chunk,
                &r,
                "replaced: its instance is released and a member needs the subnet",
            );
            out.deleted += u64::from(r.success_count);
        }
        Ok(())
    }

    /// Executes a plan without replacements: creates, then deletions, in batches. Stops at the
    /// first refused call (the caller backs off and re-reads); per-entry failures are reported.
    async fn execute(
        &self,
        calls: &Calls<'_>,
        out: &mut Outcome,
        plan: &FleetPlan,
    ) -> Result<(), CloudError> {
        let batches = batches_from_own(&plan.create, &self.identity.instance_id);
        for (i, chunk) in batches.into_iter().enumerate() {
            if i > 0 {
                // The previous batch is Pending for about this long; writing before it settles
                // only earns a refusal.
                (self.sleeper)(self.cfg.poll_initial).await;
            }
            let r = self.write_batch(calls, out, chunk, i > 0).await?;
            out.batch_calls += 1;
            self.note_created(out, chunk, &r);
        }
        for s in plan
            .stale
            .iter()
            .filter(|s| s.waiting_for == StaleWait::Deleting)
        {
            tracing::warn!(
                table = %s.table_id,
                entry = %s.entry_id,
                cidr = %s.cidr,
                instance = %s.instance_id,
                "deleting a crossdock route: its instance is absent from DescribeInstances by id (in answers \
                 that list this host) for the whole grace period"
            );
        }
        for chunk in plan.delete.chunks(BATCH_MAX) {
            let r = calls.delete_routes(chunk).await?;
            out.batch_calls += 1;
            self.log_deletions(chunk, &r, "released for the whole grace period");
            out.deleted += u64::from(r.success_count);
            out.fleet_deleted += u64::from(r.success_count);
        }
        Ok(())
    }

    /// One `CreateRouteEntries`. A throttled answer says nothing about the table, so the same batch
    /// is written again after the backoff. `after_own`: this host wrote a batch before, so a refusal
    /// for now (its own entries still Pending, most likely) is treated the same way, without reading
    /// the fleet again; the first batch's other refusals go back to the sweep, which re-reads
    /// (another member is probably writing).
    async fn write_batch(
        &self,
        calls: &Calls<'_>,
        out: &mut Outcome,
        chunk: &[NewRoute],
        after_own: bool,
    ) -> Result<BatchResult, CloudError> {
        let started = Instant::now();
        let mut refusals = 0u32;
        loop {
            match calls.create_routes(chunk).await {
                Err(e)
                    if (after_own || e.is_throttling())
                        && e.class() == ErrorClass::Retryable
                        && started.elapsed() < self.cfg.write_patience =>
                {
                    refusals += 1;
                    out.refused(&e);
                    (self.sleeper)(self.write_delay(refusals, e.retry_hint())).await;
                }
                other => return other,
            }
        }
    }

    fn note_created(&self, out: &mut Outcome, chunk: &[NewRoute], r: &BatchResult) {
        out.created += u64::from(r.success_count);
        for f in &r.failed {
            if f.is_duplicate() {
                continue;
            }
            let own = f.next_hop == self.identity.instance_id;
            let message = format!(
                "creating the route {} → {} was refused ({}): {}",
                f.destination_cidr_block, f.next_hop, f.code, f.message
            );
            if own {
                out.problems
                    .push(Problem::pending(Reason::CloudBusy, message, RETRY_PENDING));
            } else {
                out.notes.push(message);
            }
        }
        tracing::info!(
            asked = chunk.len(),
            created = r.success_count,
            failed = r.failed_count,
            "fleet batch of routes written"
        );
    }

    fn log_deletions(&self, chunk: &[RouteToDelete], r: &BatchResult, evidence: &str) {
        for d in chunk {
            if let RouteToDelete::ById {
                route_table_id,
                route_entry_id,
            } = d
            {
                tracing::info!(
                    table = %route_table_id,
                    entry = %route_entry_id,
                    evidence,
                    "route deletion sent"
                );
            }
        }
        for f in &r.failed {
            tracing::warn!(cidr = %f.destination_cidr_block, code = %f.code, "route deletion refused: {}", f.message);
        }
    }
}
