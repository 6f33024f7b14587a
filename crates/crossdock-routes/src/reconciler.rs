//! The route reconciler: keeps "container subnet → this instance" in the chosen route tables.
//!
//! One pass ([`RouteReconciler::sync`]) reads, plans ([`crate::plan`]) and executes, one write at a
//! time (the VPC serialises route writes anyway and answers `TaskConflict` to concurrent ones). Reads
//! are kept to what a steady state needs: one filtered `DescribeRouteEntryList` per table (entries
//! whose next hop is this instance); the VPC/vSwitch CIDRs, table choice and the ENI's
//! source/destination check are re-read on the first pass, on a subnet change and every
//! `rediscover_every` passes. In sync means zero writes.
//!
//! A created route is polled with backoff until `Available` before the condition turns ready; if it
//! is not within `wait_available`, the pass reports pending and asks to be run again soon. Errors
//! become conditions, never panics or exits: a missing RAM permission names the denied action and
//! asks for a slow retry; throttling asks for a retry after the backoff; conflicts and quota are
//! reported and left to a human. Stopping the agent does nothing to routes (restarts must not cut
//! traffic); [`RouteReconciler::deregister`] removes this host's own routes for decommissioning.
//!
//! The pass is split by job: this file runs it (per table: observe, plan, execute); `discovery`
//! reads the VPC's layout and the ENI check, `wait` polls for `Available`, `problem` turns cloud
//! errors into conditions, `finish` builds the report, `deregister` decommissions, `fleet` adds
//! fleet mode's sweep, and every call goes through `calls` to be counted.

use crossdock_status::{Owner, Reason, RouteState};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;

use crossdock_alibaba::{
    client_token, CreateRouteEntry, ErrorClass, Identity, RetryPolicy, RouteEntry,
    RouteEntryFilter, Sleeper,
};
use crossdock_config::SourceDestCheck as SdcMode;

use crate::calls::Calls;
use crate::cloud::RouteCloud;
use crate::discovery::Discovery;
use crate::metrics::RouteMetrics;
use crate::plan::{check_overlap, plan, Action, Desired, Marker, NetworkCidrs, Observed};
use crate::problem::{Outcome, Problem, RETRY_PENDING};
use crate::report::{RouteReport, RouteStatus, SourceDestCheck};
use crate::wait::WaitError;

/// Settings of the reconciler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutesConfig {
    /// `RouteEntryName` of our routes.
    pub route_name: String,
    /// Tables to use; empty = the vSwitch's table, else the VPC's system table.
    pub route_table_ids: Vec<String>,
    /// Switch the ENI's source/destination check off, or only report it.
    pub source_dest_check: SdcMode,
    /// How long one pass waits for a created route to become `Available`.
    pub wait_available: Duration,
    /// First poll interval while waiting (doubles up to `poll_max`).
    pub poll_initial: Duration,
    /// Largest poll interval.
    pub poll_max: Duration,
    /// Re-read CIDRs, table choice and the source/destination check every this many passes.
    pub rediscover_every: u32,
    /// Re-read the vSwitches' table bindings every this many passes between full discoveries (1:
    /// every pass, so a table bound later gets the route within one resync, for one more read).
    pub layout_check_every: u32,
    /// First backoff window after a refused route write (busy table, throttling): the next attempt
    /// comes after a random time in [0, window]; the window doubles per refusal.
    pub write_backoff: Duration,
    /// Largest backoff window between refused route writes.
    pub write_backoff_max: Duration,
    /// How long one pass keeps retrying a refused route write before it reports and yields.
    pub write_patience: Duration,
    /// Fleet mode: keep every member's route, clean up released ones (`None`: per-host mode).
    pub fleet: Option<crate::fleet::FleetSettings>,
    /// The VPC's primary CIDR as the metadata service gave it at connect time, if it did.
    pub known_vpc_cidr: Option<Ipv4Net>,
    /// Per-host mode with names: report the hosts behind crossdock's routes ([`crate::peers`]).
    pub route_peers: bool,
}

impl RoutesConfig {
    /// From the `[cloud]` table, with default timings.
    pub fn from_cloud_config(c: &crossdock_config::CloudConfig) -> Self {
        Self {
            route_name: c.route_name.clone(),
            route_table_ids: c.route_table_ids.clone(),
            source_dest_check: c.source_dest_check,
            write_backoff: Duration::from_millis(c.write_backoff_ms),
            write_backoff_max: Duration::from_millis(c.write_backoff_max_ms),
            ..Self::default()
        }
    }
}

impl Default for RoutesConfig {
    fn default() -> Self {
        Self {
            route_name: "crossdock".into(),
            route_table_ids: Vec::new(),
            source_dest_check: SdcMode::Disable,
            wait_available: Duration::from_secs(120),
            poll_initial: Duration::from_secs(1),
            poll_max: Duration::from_secs(10),
            rediscover_every: 10,
            layout_check_every: 1,
            write_backoff: Duration::from_millis(500),
            write_backoff_max: Duration::from_secs(8),
            write_patience: Duration::from_secs(120),
            fleet: None,
            known_vpc_cidr: None,
            route_peers: false,
        }
    }
}

#[derive(Debug)]
pub(crate) struct SyncState {
    pub(crate) discovery: Option<Discovery>,
    pub(crate) passes_since_discovery: u32,
    pub(crate) sdc: SourceDestCheck,
    pub(crate) sdc_checked: bool,
    pub(crate) token_generation: HashMap<(String, Ipv4Net), u32>,
    pub(crate) last_subnet: Option<Ipv4Net>,
    /// (table, subnet) pairs that were in place at the end of the last pass: their next read is
    /// expected to find our route, so the read for other holders of the subnet waits until it
    /// does not.
    pub(crate) in_place: HashSet<(String, Ipv4Net)>,
    /// Fleet mode's memory (release evidence, last sweep).
    pub(crate) fleet: crate::fleet::FleetState,
    /// Per-host mode's names peers met so far.
    pub(crate) peers: crate::peers::PeerBook,
}

enum CreateError {
    Duplicate,
    Wait(WaitError),
    Problem(Problem),
}

/// Keeps this host's route(s) in the VPC. All methods take `&self`; passes are serialised.
pub struct RouteReconciler {
    pub(crate) cloud: Arc<dyn RouteCloud>,
    pub(crate) cfg: RoutesConfig,
    pub(crate) identity: Identity,
    pub(crate) marker: Marker,
    pub(crate) sleeper: Sleeper,
    /// Uniform draws in `[0, 1)` for the boot turn ([`crate::boot`]).
    pub(crate) draw: Draw,
    pub(crate) state: tokio::sync::Mutex<SyncState>,
    pub(crate) metrics: Mutex<RouteMetrics>,
    pub(crate) last: Mutex<Option<RouteReport>>,
    /// Origin of the release tracker's clock.
    pub(crate) started: Instant,
}

impl std::fmt::Debug for RouteReconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteReconciler")
            .field("cfg", &self.cfg)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// `entry` as last seen, in place of what the listing showed of it (the route remembered between
/// fleet sweeps is the Available one, not the Pending one listed before the wait).
fn remember(observed: &mut Observed, entry: RouteEntry) {
    observed
        .entries
        .retain(|e| e.route_entry_id != entry.route_entry_id);
    observed.entries.push(entry);
}

/// Uniform draws in `[0, 1)`.
pub type Draw = Arc<dyn Fn() -> f64 + Send + Sync>;

pub(crate) fn status_of(e: &RouteEntry, owner: Owner) -> RouteStatus {
    RouteStatus {
        table_id: e.route_table_id.clone(),
        cidr: e.destination_cidr_block.clone(),
        entry_id: e.route_entry_id.clone(),
        status: RouteState::from_vpc(&e.status),
        owner,
    }
}

impl RouteReconciler {
    /// A reconciler for this host. `identity` needs `instance_id`, `vpc_id`, `vswitch_id` and
    /// `eni_id`.
    pub fn new(cloud: Arc<dyn RouteCloud>, cfg: RoutesConfig, identity: Identity) -> Self {
        let marker = Marker {
            route_name: cfg.route_name.clone(),
            instance_id: identity.instance_id.clone(),
        };
        Self {
            cloud,
            cfg,
            identity,
            marker,
            sleeper: crossdock_alibaba::tokio_sleeper(),
            draw: Arc::new(crossdock_backoff::unit_draw),
            state: tokio::sync::Mutex::new(SyncState {
                discovery: None,
                passes_since_discovery: 0,
                sdc: SourceDestCheck::Unknown,
                sdc_checked: false,
                token_generation: HashMap::new(),
                last_subnet: None,
                in_place: HashSet::new(),
                fleet: crate::fleet::FleetState::default(),
                peers: crate::peers::PeerBook::default(),
            }),
            started: Instant::now(),
            metrics: Mutex::new(RouteMetrics::default()),
            last: Mutex::new(None),
        }
    }

    /// Replaces how the reconciler waits between polls (tests record instead of waiting).
    pub fn with_sleeper(mut self, sleeper: Sleeper) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// Replaces the random draws of the boot turn (tests fix them).
    pub fn with_draw(mut self, draw: Draw) -> Self {
        self.draw = draw;
        self
    }

    /// Switches fleet mode on (`Some`) or off.
    pub fn with_fleet(mut self, fleet: Option<crate::fleet::FleetSettings>) -> Self {
        self.cfg.fleet = fleet;
        self
    }

    /// Per-host mode with names: report the hosts behind crossdock's routes with every pass.
    pub fn with_route_peers(mut self, on: bool) -> Self {
        self.cfg.route_peers = on;
        self
    }

    /// The identity in use.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The report of the last pass, if any.
    pub fn last_report(&self) -> Option<RouteReport> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Counters of the reconciler.
    pub fn metrics(&self) -> RouteMetrics {
        self.metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Prometheus text of the reconciler's and the cloud client's counters.
    pub fn write_prometheus(&self, out: &mut String) {
        crate::metrics::write_prometheus(out, &self.metrics(), self.cloud.call_counts().as_ref());
    }

    /// One reconciliation pass for `subnet` (`None`: the subnet is not known yet; nothing is
    /// touched). Never fails: problems are in the report's conditions.
    pub async fn sync(&self, subnet: Option<Ipv4Net>) -> RouteReport {
        let started = Instant::now();
        let mut st = self.state.lock().await;
        let calls = Calls::new(&*self.cloud);
        let mut out = Outcome::default();
        match subnet {
            None => out.problems.push(Problem::pending(
                Reason::NoSubnet,
                "waiting for this host's container subnet before registering a route",
                RETRY_PENDING,
            )),
            Some(subnet) => self.sync_subnet(&mut st, &calls, &mut out, subnet).await,
        }
        let report = self.finish(&calls, &out, &st, subnet, Reason::RouteAvailable);
        self.record(&report, &out, started, false);
        report
    }

    async fn sync_subnet(
        &self,
        st: &mut SyncState,
        calls: &Calls<'_>,
        out: &mut Outcome,
        subnet: Ipv4Net,
    ) {
        let changed = st.last_subnet != Some(subnet);
        st.last_subnet = Some(subnet);
        let due = st.discovery.is_none()
            || changed
            || st.passes_since_discovery + 1 >= self.cfg.rediscover_every;
        // Re-read the ENI while its check is on (report mode): the operator's fix shows up at the
        // next pass. The reads of one round are independent, so they go out together: at boot they
        // are the whole wait before this host's first route write.
        // Fleet mode's first pass with "disable": the check is switched off without reading it first
        // (the write is idempotent): one ECS call per booting host instead of two.
        let blind_sdc = self.cfg.fleet.is_some()
            && st.discovery.is_none()
            && !st.sdc_checked
            && self.cfg.source_dest_check == SdcMode::Disable;
        let sdc_due = !blind_sdc && (due || !st.sdc_checked || st.sdc == SourceDestCheck::Enabled);
        let eni = self.identity.eni_id.clone();
        let read_sdc = async {
            if sdc_due {
                Some(calls.source_dest_check(&eni).await)
            } else {
                None
            }
        };
        let (discovered, sdc_read) = if due {
            let boot = self.cfg.fleet.is_some() && st.discovery.is_none() && !st.fleet.booted;
            let ((d, start), r) = tokio::join!(
                self.discover_or_wait_turn(calls, st.discovery.is_none(), boot),
                read_sdc
            );
            if boot {
                st.fleet.boot_start = Some(start);
            }
            (Some(d), r)
        } else {
            // Between full discoveries, only the vSwitches' table bindings are re-read, so a table
            // bound (or unbound) later is followed within one pass.
            // Fleet mode reads the layout with each sweep and makes no call between sweeps.
            let layout_due = match self.fleet_sweep_due(st, subnet) {
                Some(sweep_due) => sweep_due,
                None => (st.passes_since_discovery + 1) % self.cfg.layout_check_every.max(1) == 0,
            };
            let read_layout = async {
                if layout_due {
                    self.read_layout(calls).await
                } else {
                    None
                }
            };
            let (layout, r) = tokio::join!(read_layout, read_sdc);
            if let (Some(layout), Some(d)) = (layout, st.discovery.as_mut()) {
                let left = self.follow_layout(d, layout);
                if self.cfg.fleet.is_none() && !left.is_empty() {
                    self.retire_tables(calls, out, &left).await;
                }
            }
            (None, r)
        };
        let sdc_write_needed = match sdc_read {
            Some(r) => self.note_source_dest(st, out, r),
            None => blind_sdc,
        };
        if let Some(discovered) = discovered {
            match discovered {
                Ok(d) => st.discovery = Some(d),
                Err(p) if st.discovery.is_some() && !changed => {
                    tracing::warn!(problem = %p.message, "re-reading the VPC layout failed; using the previous one");
                }
                Err(p) => {
                    out.problems.push(p);
                    return;
                }
            }
            st.passes_since_discovery = 0;
        } else {
            st.passes_since_discovery += 1;
        }
        let Some(d) = st.discovery.clone() else {
            return;
        };
        if let Some(Action::Refused {
            cidr,
            overlaps,
            fix,
        }) = check_overlap(subnet, &d.cidrs)
        {
            out.problems.push(Problem::failed(
                Reason::SubnetOverlapsVpc,
                format!("refusing to route {cidr}: it overlaps {overlaps}; fix: {fix}"),
                None,
            ));
            out.routes.push(RouteStatus {
                table_id: d.tables.join(","),
                cidr: cidr.to_string(),
                entry_id: String::new(),
                status: RouteState::Refused,
                owner: Owner::Us,
            });
            return;
        }
        // Switching the check off (ECS) and the route work (VPC) do not wait for each other: a host
        // waiting its turn in a fleet boot still switches its ENI's check off at once.
        let write_sdc = async {
            if sdc_write_needed {
                Some(calls.set_source_dest_check(&eni, false).await)
            } else {
                None
            }
        };
        let routes_first = match self.cfg.fleet.as_ref() {
            Some(fleet) => {
                self.cloud.recently_throttled()
                    || (!st.fleet.booted && self.boot_pacing(&d, fleet).sweep_chance() < 1.0)
            }
            None => false,
        };
        let mut table_out = Outcome::default();
        let sync_tables = async {
            // Fleet mode: every member's route, in batches, before this host's own route is checked.
            if !self.fleet_pass(st, calls, &mut table_out, &d, subnet).await {
                return;
            }
            // Fleet mode: this host's route goes into every table on a member's path.
            let tables = st.fleet.path.clone().unwrap_or_else(|| d.tables.clone());
            for table in &tables {
                self.sync_table(st, calls, &mut table_out, table, subnet, &d.cidrs)
                    .await;
            }
        };
        // Unless the account is throttling us (a fleet booting at once): then the routes go first,
        // since every host's route waits for the few members writing batches, and the ENI writes of
        // all the others would only take the account's calls from them.
        // So do they at a fleet member's boot turn in a large VPC ([`crate::boot`]): the ENI write
        // waits for this host's turn instead of meeting the whole fleet's first calls.
        let sdc_written = if routes_first {
            sync_tables.await;
            write_sdc.await
        } else {
            tokio::join!(write_sdc, sync_tables).0
        };
        out.merge(table_out);
        if let Some(r) = sdc_written {
            self.note_source_dest_write(st, out, r);
        }
        if self.cfg.route_peers && self.cfg.fleet.is_none() {
            out.peers = self.route_peers(&mut st.peers, calls, &d.tables).await;
        }
    }

    /// Entries of `table` pointing here, plus whatever holds `cidr` if none of those does.
    ///
    /// `expect_ours`: our route was in place at the last pass, so the holders are read only if it is
    /// gone (one read in a steady state); otherwise both reads go out together (one round trip at
    /// boot, before the first write).
    async fn observe(
        &self,
        calls: &Calls<'_>,
        table: &str,
        cidr: &str,
        expect_ours: bool,
    ) -> Result<Observed, Problem> {
        let doing = format!("list the routes of {table}");
        let pointing_here = RouteEntryFilter {
            next_hop_id: Some(self.identity.instance_id.clone()),
            route_entry_type: Some("Custom".into()),
            ..Default::default()
        };
        let holding_cidr = RouteEntryFilter {
            destination_cidr_block: Some(cidr.to_string()),
            ..Default::default()
        };
        let (entries, holders) = if expect_ours {
            (calls.route_entries(table, &pointing_here).await, None)
        } else {
            let (e, h) = tokio::join!(
                calls.route_entries(table, &pointing_here),
                calls.route_entries(table, &holding_cidr)
            );
            (e, Some(h))
        };
        let mut entries = entries.map_err(|e| Problem::from_error(&doing, &e))?;
        let holders = match holders {
            Some(h) => Some(h),
            None if !entries.iter().any(|e| e.destination_cidr_block == cidr) => {
                Some(calls.route_entries(table, &holding_cidr).await)
            }
            None => None,
        };
        if let Some(holders) = holders {
            let holders = holders.map_err(|e| Problem::from_error(&doing, &e))?;
            for h in holders {
                if !entries.iter().any(|e| e.route_entry_id == h.route_entry_id) {
                    entries.push(h);
                }
            }
        }
        for e in entries.iter_mut() {
            if e.route_table_id.is_empty() {
                e.route_table_id = table.to_string();
            }
        }
        Ok(Observed {
            table_id: table.to_string(),
            entries,
        })
    }

    async fn sync_table(
        &self,
        st: &mut SyncState,
        calls: &Calls<'_>,
        out: &mut Outcome,
        table: &str,
        subnet: Ipv4Net,
        cidrs: &NetworkCidrs,
    ) {
        let cidr = subnet.to_string();
        let desired = Desired {
            subnet,
            marker: self.marker.clone(),
            tables: vec![table.to_string()],
        };
        let key = (table.to_string(), subnet);
        let expect_ours = st.in_place.remove(&key);
        let fresh = st.fleet.fresh.remove(table).map(|entries| Observed {
            table_id: table.to_string(),
            entries: entries
                .into_iter()
                .filter(|e| self.marker.points_here(e) || e.destination_cidr_block == cidr)
                .collect(),
        });
        let observed = match fresh {
            Some(o) => Ok(o),
            None => self.observe(calls, table, &cidr, expect_ours).await,
        };
        let mut observed = match observed {
            Ok(o) => o,
            Err(p) => {
                out.problems.push(p);
                return;
            }
        };
        if expect_ours
            && !observed
                .entries
                .iter()
                .any(|e| e.destination_cidr_block == cidr)
        {
            // Our route was in place and is gone (deleted by hand): a fresh client token, or the
            // VPC would answer the create from its record of the first one, whose entry is gone.
            *st.token_generation.entry(key.clone()).or_default() += 1;
        }
        for round in 0..2 {
            let actions = plan(&desired, cidrs, std::slice::from_ref(&observed));
            let holder = observed
                .entries
                .iter()
                .find(|e| e.destination_cidr_block.parse::<Ipv4Net>().ok() == Some(subnet));
            let mut desired_ok =
                holder.is_some_and(|e| e.is_available() && self.marker.points_here(e));
            if let Some(e) = holder.filter(|e| self.marker.owns(e) && e.is_available()) {
                out.routes.push(status_of(e, Owner::Us));
            }
            let mut deferred: Vec<(String, String)> = Vec::new();
            let mut replan = false;
            for action in actions {
                match action {
                    Action::Create { .. } => {
                        match self.create_and_wait(st, calls, out, table, subnet).await {
                            Ok(e) => {
                                out.created += 1;
                                desired_ok = true;
                                out.routes.push(status_of(&e, Owner::Us));
                                remember(&mut observed, e);
                            }
                            Err(CreateError::Duplicate) if round == 0 => {
                                // Someone created the destination between our read and our write.
                                match self.observe(calls, table, &cidr, false).await {
                                    Ok(o) => {
                                        observed = o;
                                        replan = true;
                                        break;
                                    }
                                    Err(p) => out.problems.push(p),
                                }
                            }
                            Err(CreateError::Duplicate) => out.problems.push(Problem::pending(
                                Reason::CloudBusy,
                                format!(
                                "{table} reports {cidr} as existing but does not list it; retrying"
                            ),
                                RETRY_PENDING,
                            )),
                            Err(CreateError::Problem(p)) => {
                                out.routes.push(RouteStatus {
                                    table_id: table.to_string(),
                                    cidr: cidr.clone(),
                                    entry_id: String::new(),
                                    status: RouteState::Missing,
                                    owner: Owner::Us,
                                });
                                out.problems.push(p);
                            }
                            Err(CreateError::Wait(w)) => {
                                out.created += 1;
                                self.wait_failed(st, out, table, subnet, w);
                            }
                        }
                    }
                    Action::Await { entry_id, .. } => {
                        match self
                            .wait_available(calls, table, &cidr, Some(&entry_id))
                            .await
                        {
                            Ok(e) => {
                                desired_ok = true;
                                out.routes.push(status_of(&e, Owner::Us));
                                remember(&mut observed, e);
                            }
                            Err(w) => self.wait_failed(st, out, table, subnet, w),
                        }
                    }
                    Action::Delete {
                        entry_id,
                        cidr: old,
                        ..
                    } => self.delete_stale(calls, out, table, &entry_id, &old).await,
                    Action::DeferDelete {
                        entry_id,
                        cidr: old,
                        ..
                    } => deferred.push((entry_id, old)),
                    Action::Conflict {
                        entry_id, holder, ..
                    } => {
                        out.conflicts += 1;
                        out.routes.push(RouteStatus {
                            table_id: table.to_string(),
                            cidr: cidr.clone(),
                            entry_id: entry_id.clone(),
                            status: observed
                                .entries
                                .iter()
                                .find(|e| e.route_entry_id == entry_id)
                                .map(|e| RouteState::from_vpc(&e.status))
                                .unwrap_or(RouteState::Missing),
                            owner: holder.clone(),
                        });
                        out.problems.push(Problem::failed(
                            Reason::RouteConflict,
                            format!(
                                "{table} already routes {cidr} elsewhere (route {entry_id}, held by {holder}); \
                                 crossdock never overwrites a route it does not own; fix: give this host \
                                 another container subnet, or delete {entry_id} if it is stale"
                            ),
                            None,
                        ));
                    }
                    Action::Unowned { entry_id, .. } => {
                        if let Some(e) = observed
                            .entries
                            .iter()
                            .find(|e| e.route_entry_id == entry_id)
                        {
                            out.routes.push(status_of(e, Owner::User));
                            if !e.is_available() {
                                out.problems.push(Problem::pending(
                                    Reason::RoutePending,
                                    format!(
                                        "the route {entry_id} for {cidr} in {table} is {}",
                                        e.status
                                    ),
                                    RETRY_PENDING,
                                ));
                            }
                        }
                        out.notes.push(format!(
                            "{table}: {cidr} is routed here by {entry_id}, which has no crossdock marker; \
                             crossdock leaves it alone and will not delete it"
                        ));
                    }
                    Action::Vacating { entry_id, .. } => {
                        out.problems.push(Problem::pending(
                            Reason::RoutePending,
                            format!(
                                "{table}: the route {entry_id} for {cidr} is being deleted; this host's route \
                                 follows once it is gone"
                            ),
                            self.cfg.poll_initial.max(Duration::from_secs(1)),
                        ));
                    }
                    Action::Refused { .. } => {}
                }
            }
            if replan {
                continue;
            }
            for (entry_id, old) in deferred {
                let entry = observed
                    .entries
                    .iter()
                    .find(|e| e.route_entry_id == entry_id);
                // Only Available entries can be deleted; a pending old route waits for a later pass.
                if desired_ok && entry.is_some_and(|e| e.is_available()) {
                    self.delete_stale(calls, out, table, &entry_id, &old).await;
                } else if let Some(e) = entry {
                    out.routes.push(status_of(e, Owner::Us));
                }
            }
            if desired_ok {
                out.ready_tables.push(table.to_string());
                st.in_place.insert(key.clone());
                if self.cfg.fleet.is_some() {
                    st.fleet
                        .own_listed
                        .insert(table.to_string(), observed.entries);
                }
            } else {
                st.fleet.own_listed.remove(table);
            }
            break;
        }
    }

    /// The wait after the `refusals`-th refused route write: uniform in [0, window] ("full
    /// jitter", so hosts refused together do not come back together), the window doubling per
    /// refusal from `write_backoff` up to `write_backoff_max`; at least the server's hint.
    pub(crate) fn write_delay(&self, refusals: u32, hint: Option<Duration>) -> Duration {
        RetryPolicy {
            initial_backoff: self.cfg.write_backoff,
            max_backoff: self.cfg.write_backoff_max,
            max_hint: self.cfg.write_backoff_max,
            ..RetryPolicy::default()
        }
        .full_jitter_delay(refusals, hint)
    }

    async fn create_and_wait(
        &self,
        st: &mut SyncState,
        calls: &Calls<'_>,
        out: &mut Outcome,
        table: &str,
        subnet: Ipv4Net,
    ) -> Result<RouteEntry, CreateError> {
        let cidr = subnet.to_string();
        let generation = st
            .token_generation
            .get(&(table.to_string(), subnet))
            .copied()
            .unwrap_or(0);
        let req = CreateRouteEntry {
            route_table_id: table.to_string(),
            destination_cidr_block: cidr.clone(),
            next_hop_id: self.identity.instance_id.clone(),
            name: self.marker.route_name.clone(),
            description: self.marker.description(),
            client_token: client_token(&self.identity.instance_id, &cidr, table, generation),
        };
        // One write per attempt, nothing re-read in between: a table that refuses a write (one
        // write at a time, none while an entry is Pending) or an account that is throttled is
        // waited out here, paced by our own backoff. The same client token makes a retry of a
        // write that did commit answer with the same entry instead of a second one.
        let mut refusals = 0u32;
        let mut waited = Duration::ZERO;
        let id = loop {
            match calls.create_route(&req).await {
                Ok(id) => break id,
                Err(e) if e.class() == ErrorClass::Duplicate => return Err(CreateError::Duplicate),
                Err(e)
                    if e.class() == ErrorClass::Retryable && waited < self.cfg.write_patience =>
                {
                    refusals += 1;
                    out.refused(&e);
                    let delay = self.write_delay(refusals, e.retry_hint());
                    tracing::debug!(table, cidr = %cidr, refusals, ?delay, error = %e, "route write refused for now; backing off");
                    (self.sleeper)(delay).await;
                    waited += delay;
                }
                Err(e) => {
                    return Err(CreateError::Problem(Problem::from_error(
                        &format!(
                            "create the route {cidr} → {} in {table}",
                            self.identity.instance_id
                        ),
                        &e,
                    )))
                }
            }
        };
        tracing::info!(table, cidr = %cidr, entry = %id, "created route; waiting for it to become Available");
        self.wait_available(calls, table, &cidr, Some(&id))
            .await
            .map_err(CreateError::Wait)
    }

    pub(crate) async fn delete_stale(
        &self,
        calls: &Calls<'_>,
        out: &mut Outcome,
        table: &str,
        entry_id: &str,
        cidr: &str,
    ) {
        match calls.delete_route(table, entry_id).await {
            Ok(()) => {
                tracing::info!(
                    table,
                    entry = entry_id,
                    cidr,
                    "deleted our route for an old subnet"
                );
                out.deleted += 1;
            }
            Err(e) if e.class() == ErrorClass::NotFound => out.deleted += 1,
            Err(e) => {
                // The new route carries the traffic; the old one is retried on the next pass.
                out.notes.push(format!(
                    "could not delete our old route {entry_id} ({cidr}) in {table} yet: {e}"
                ));
                out.routes.push(RouteStatus {
                    table_id: table.to_string(),
                    cidr: cidr.to_string(),
                    entry_id: entry_id.to_string(),
                    status: RouteState::Available,
                    owner: Owner::Us,
                });
            }
        }
    }
}
