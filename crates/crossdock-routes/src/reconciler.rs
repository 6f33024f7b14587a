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

use crossdock_status::{Owner, Reason, RouteState};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;

use crossdock_alibaba::{
    client_token, CreateRouteEntry, Error as CloudError, ErrorClass, Identity, RetryPolicy,
    RouteEntry, RouteEntryFilter, Sleeper,
};
use crossdock_backoff::Exponential;
use crossdock_config::SourceDestCheck as SdcMode;

use crate::cloud::RouteCloud;
use crate::metrics::RouteMetrics;
use crate::plan::{check_overlap, plan, Action, Desired, Marker, NetworkCidrs, Observed};
use crate::report::{Condition, RouteReport, RouteStatus, SourceDestCheck, State};
use crate::tables::{Senders, TableLayout};

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
    /// First backoff window after a refused route write (busy table, throttling): the next attempt
    /// comes after a random time in [0, window]; the window doubles per refusal.
    pub write_backoff: Duration,
    /// Largest backoff window between refused route writes.
    pub write_backoff_max: Duration,
    /// How long one pass keeps retrying a refused route write before it reports and yields.
    pub write_patience: Duration,
    /// Fleet mode: keep every member's route, clean up released ones (`None`: per-host mode).
    pub fleet: Option<crate::fleet::FleetSettings>,
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
            write_backoff: Duration::from_millis(500),
            write_backoff_max: Duration::from_secs(8),
            write_patience: Duration::from_secs(120),
            fleet: None,
        }
    }
}

/// Retry delays asked of the agent, by situation.
pub(crate) const RETRY_PENDING: Duration = Duration::from_secs(5);
pub(crate) const RETRY_BUSY: Duration = Duration::from_secs(30);
pub(crate) const RETRY_PERMISSION: Duration = Duration::from_secs(300);
pub(crate) const RETRY_PERMANENT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub(crate) struct Discovery {
    /// The tables this host's route must be in (every table on a path from a sender).
    pub(crate) tables: Vec<String>,
    pub(crate) cidrs: NetworkCidrs,
    /// Which table each vSwitch uses.
    pub(crate) layout: TableLayout,
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
}

/// Something that keeps the route condition from being ready.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub(crate) state: State,
    pub(crate) reason: Reason,
    pub(crate) message: String,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) credentials: Option<Condition>,
}

impl Problem {
    pub(crate) fn pending(reason: Reason, message: impl Into<String>, retry: Duration) -> Self {
        Self {
            state: State::Pending,
            reason,
            message: message.into(),
            retry_after: Some(retry),
            credentials: None,
        }
    }

    pub(crate) fn failed(
        reason: Reason,
        message: impl Into<String>,
        retry: Option<Duration>,
    ) -> Self {
        Self {
            state: State::Failed,
            reason,
            message: message.into(),
            retry_after: retry,
            credentials: None,
        }
    }

    /// Turns a cloud error during `doing` (e.g. "create route 10.1.0.0/24 in vtb-1") into a problem.
    pub(crate) fn from_error(doing: &str, e: &CloudError) -> Self {
        if let Some(action) = e.denied_action() {
            let message = format!(
                "permission denied ({}): the RAM policy does not allow {action} (needed to {doing}); fix: {}",
                e.code().unwrap_or("no code"),
                e.fix()
            );
            return Self {
                credentials: Some(Condition::new(
                    State::Failed,
                    Reason::PermissionDenied,
                    message.clone(),
                )),
                ..Self::failed(Reason::PermissionDenied, message, Some(RETRY_PERMISSION))
            };
        }
        if e.is_credentials_problem() {
            let message = format!("cannot {doing}: {e}");
            return Self {
                credentials: Some(Condition::new(
                    State::Failed,
                    Reason::CredentialsUnavailable,
                    message.clone(),
                )),
                ..Self::failed(Reason::CredentialsUnavailable, message, Some(RETRY_BUSY))
            };
        }
        let message = format!("cannot {doing}: {e}");
        let code = e.code().unwrap_or("");
        match e.class() {
            ErrorClass::Retryable => {
                let retry = e.retry_hint().unwrap_or(RETRY_BUSY).max(RETRY_PENDING);
                let reason = if e.is_throttling() {
                    Reason::Throttled
                } else if code.is_empty() {
                    Reason::CloudUnreachable
                } else {
                    Reason::CloudBusy
                };
                Self::pending(reason, message, retry)
            }
            _ if code.to_ascii_lowercase().contains("quota") => {
                Self::failed(Reason::QuotaExceeded, message, Some(RETRY_PERMANENT))
            }
            _ if code.to_ascii_lowercase().starts_with("invalidcidrblock") => {
                Self::failed(Reason::CidrRejected, message, Some(RETRY_PERMANENT))
            }
            _ => Self::failed(Reason::CloudError, message, Some(RETRY_PERMANENT)),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) problems: Vec<Problem>,
    pub(crate) routes: Vec<RouteStatus>,
    pub(crate) ready_tables: Vec<String>,
    pub(crate) notes: Vec<String>,
    pub(crate) created: u64,
    pub(crate) deleted: u64,
    pub(crate) sdc_disabled: u64,
    pub(crate) conflicts: u64,
    pub(crate) write_refusals: u64,
    /// Run again after at most this long (a released instance's grace period ends).
    pub(crate) next_pass: Option<Duration>,
    /// Routes of released instances deleted (fleet mode).
    pub(crate) fleet_deleted: u64,
    /// Batch write calls (fleet mode).
    pub(crate) batch_calls: u64,
}

impl Outcome {
    /// Adds what a part of the pass that ran alongside found.
    fn merge(&mut self, other: Outcome) {
        self.problems.extend(other.problems);
        self.routes.extend(other.routes);
        self.ready_tables.extend(other.ready_tables);
        self.notes.extend(other.notes);
        self.created += other.created;
        self.deleted += other.deleted;
        self.sdc_disabled += other.sdc_disabled;
        self.conflicts += other.conflicts;
        self.write_refusals += other.write_refusals;
        self.fleet_deleted += other.fleet_deleted;
        self.batch_calls += other.batch_calls;
        self.next_pass = match (self.next_pass, other.next_pass) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Counts the calls of one pass. Shared (`&self`) so that independent reads can run concurrently.
pub(crate) struct Calls<'a> {
    cloud: &'a dyn RouteCloud,
    reads: AtomicU32,
    writes: AtomicU32,
}

impl<'a> Calls<'a> {
    pub(crate) fn new(cloud: &'a dyn RouteCloud) -> Self {
        Self {
            cloud,
            reads: AtomicU32::new(0),
            writes: AtomicU32::new(0),
        }
    }
    pub(crate) fn read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn write(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn reads(&self) -> u32 {
        self.reads.load(Ordering::Relaxed)
    }
    pub(crate) fn writes(&self) -> u32 {
        self.writes.load(Ordering::Relaxed)
    }
    pub(crate) async fn route_tables(
        &self,
        vpc: &str,
    ) -> Result<Vec<crossdock_alibaba::RouteTable>, CloudError> {
        self.read();
        self.cloud.route_tables(vpc).await
    }
    pub(crate) async fn route_entries(
        &self,
        table: &str,
        f: &RouteEntryFilter,
    ) -> Result<Vec<RouteEntry>, CloudError> {
        self.read();
        self.cloud.route_entries(table, f).await
    }
    pub(crate) async fn create_route(&self, req: &CreateRouteEntry) -> Result<String, CloudError> {
        self.write();
        self.cloud.create_route(req).await
    }
    pub(crate) async fn delete_route(&self, table: &str, id: &str) -> Result<(), CloudError> {
        self.write();
        self.cloud.delete_route(table, id).await
    }
    pub(crate) async fn vpc_cidrs(&self, vpc: &str) -> Result<Vec<Ipv4Net>, CloudError> {
        self.read();
        self.cloud.vpc_cidrs(vpc).await
    }
    pub(crate) async fn vswitches(
        &self,
        vpc: &str,
    ) -> Result<Vec<crossdock_alibaba::VSwitch>, CloudError> {
        self.read();
        self.cloud.vswitches(vpc).await
    }
    pub(crate) async fn source_dest_check(&self, eni: &str) -> Result<Option<bool>, CloudError> {
        self.read();
        self.cloud.source_dest_check(eni).await
    }
    pub(crate) async fn instances(
        &self,
        q: &crossdock_alibaba::InstanceQuery,
    ) -> Result<Vec<crossdock_alibaba::Instance>, CloudError> {
        self.read();
        self.cloud.instances(q).await
    }
    pub(crate) async fn create_routes(
        &self,
        routes: &[crossdock_alibaba::NewRoute],
    ) -> Result<crossdock_alibaba::BatchResult, CloudError> {
        self.write();
        self.cloud.create_routes(routes).await
    }
    pub(crate) async fn delete_routes(
        &self,
        entries: &[crossdock_alibaba::RouteToDelete],
    ) -> Result<crossdock_alibaba::BatchResult, CloudError> {
        self.write();
        self.cloud.delete_routes(entries).await
    }
    pub(crate) async fn set_source_dest_check(
        &self,
        eni: &str,
        on: bool,
    ) -> Result<(), CloudError> {
        self.write();
        self.cloud.set_source_dest_check(eni, on).await
    }
}

pub(crate) enum WaitError {
    /// Not `Available` within the wait; the last state seen.
    StillPending(Option<RouteEntry>),
    /// The entry is not listed at all (created with a replayed client token after a delete).
    Vanished,
    /// A read failed.
    Problem(Problem),
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

impl RouteReport {
    /// The report to show while [`crate::connect`] fails (metadata service not up yet, unusable
    /// configuration): the route condition says why and what to do, and asks for a retry.
    pub fn connect_failed(e: &CloudError) -> RouteReport {
        let mut p = Problem::from_error("resolve this instance's identity and credentials", e);
        if let CloudError::Metadata {
            transient: true, ..
        } = e
        {
            p = Problem::pending(Reason::MetadataUnavailable, p.message, RETRY_PENDING);
        } else if let CloudError::Config { .. } = e {
            p.reason = Reason::ConfigInvalid;
        }
        let credentials = p.credentials.clone().unwrap_or_else(|| {
            Condition::new(
                State::Pending,
                Reason::NotFetchedYet,
                "no cloud connection yet",
            )
        });
        RouteReport {
            route: Condition::new(p.state, p.reason, p.message),
            credentials,
            routes: Vec::new(),
            source_dest_check: SourceDestCheck::Unknown,
            reads: 0,
            writes: 0,
            retry_after: Some(p.retry_after.unwrap_or(RETRY_BUSY).min(RETRY_BUSY)),
            instance_id: None,
            fleet: None,
        }
    }
}

fn status_of(e: &RouteEntry, owner: Owner) -> RouteStatus {
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
            state: tokio::sync::Mutex::new(SyncState {
                discovery: None,
                passes_since_discovery: 0,
                sdc: SourceDestCheck::Unknown,
                sdc_checked: false,
                token_generation: HashMap::new(),
                last_subnet: None,
                in_place: HashSet::new(),
                fleet: crate::fleet::FleetState::default(),
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

    /// Switches fleet mode on (`Some`) or off.
    pub fn with_fleet(mut self, fleet: Option<crate::fleet::FleetSettings>) -> Self {
        self.cfg.fleet = fleet;
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
        let sdc_due = due || !st.sdc_checked || st.sdc == SourceDestCheck::Enabled;
        let eni = self.identity.eni_id.clone();
        let read_sdc = async {
            if sdc_due {
                Some(calls.source_dest_check(&eni).await)
            } else {
                None
            }
        };
        let (discovered, sdc_read) = if due {
            let (d, r) = tokio::join!(self.discover(calls), read_sdc);
            (Some(d), r)
        } else {
            (None, read_sdc.await)
        };
        let sdc_write_needed = match sdc_read {
            Some(r) => self.note_source_dest(st, out, r),
            None => false,
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
        // Fleet mode: every member's route, in batches, before this host's own route is checked.
        if !self.fleet_pass(st, calls, out, &d, subnet).await {
            return;
        }
        // Switching the check off (ECS) and the route work (VPC) do not wait for each other.
        let write_sdc = async {
            if sdc_write_needed {
                Some(calls.set_source_dest_check(&eni, false).await)
            } else {
                None
            }
        };
        // Fleet mode: this host's route goes into every table on a member's path.
        let tables = st.fleet.path.clone().unwrap_or_else(|| d.tables.clone());
        let mut table_out = Outcome::default();
        let sync_tables = async {
            for table in &tables {
                self.sync_table(st, calls, &mut table_out, table, subnet, &d.cidrs)
                    .await;
            }
        };
        let (sdc_written, ()) = tokio::join!(write_sdc, sync_tables);
        out.merge(table_out);
        if let Some(r) = sdc_written {
            self.note_source_dest_write(st, out, r);
        }
    }

    async fn discover(&self, calls: &Calls<'_>) -> Result<Discovery, Problem> {
        let vpc = &self.identity.vpc_id;
        let (vswitches, vpc_cidrs) = tokio::join!(calls.vswitches(vpc), calls.vpc_cidrs(vpc));
        let vswitches = vswitches
            .map_err(|e| Problem::from_error(&format!("list the vSwitches of {vpc}"), &e))?;
        let vpc_cidrs =
            vpc_cidrs.map_err(|e| Problem::from_error(&format!("read the CIDRs of {vpc}"), &e))?;
        let listing =
            if self.cfg.route_table_ids.is_empty() && !TableLayout::complete_from(&vswitches) {
                calls.route_tables(vpc).await.map_err(|e| {
                    Problem::from_error(&format!("list the route tables of {vpc}"), &e)
                })?
            } else {
                Vec::new()
            };
        let no_table = |m: String| {
            Problem::failed(
                Reason::NoRouteTable,
                format!("{m}; fix: set cloud.route_table_ids"),
                Some(RETRY_PERMANENT),
            )
        };
        let layout = if self.cfg.route_table_ids.is_empty() {
            TableLayout::new(&vswitches, &listing).map_err(no_table)?
        } else {
            TableLayout::default()
        };
        let tables = layout
            .tables_on_path(
                &self.cfg.route_table_ids,
                Senders::Vpc,
                &self.identity.vswitch_id,
            )
            .map_err(no_table)?;
        let cidrs = NetworkCidrs {
            vpc: vpc_cidrs,
            vswitches: vswitches
                .iter()
                .filter_map(|v| Some((v.vswitch_id.clone(), v.cidr_block.trim().parse().ok()?)))
                .collect(),
        };
        tracing::debug!(?tables, ?cidrs, "VPC layout");
        Ok(Discovery {
            tables,
            cidrs,
            layout,
        })
    }

    fn sdc_problem(&self) -> Problem {
        Problem::failed(
            Reason::SourceDestCheckEnabled,
            format!(
                "the source/destination check of {} is on, so the ENI drops routed container traffic; fix: \
                 switch it off (ECS ModifyNetworkInterfaceAttribute SourceDestCheck=false, or the console), \
                 or set cloud.source_dest_check = \"disable\" to let crossdock do it",
                self.identity.eni_id
            ),
            None,
        )
    }

    /// Takes in a read of the ENI's source/destination check; true when it must be switched off.
    fn note_source_dest(
        &self,
        st: &mut SyncState,
        out: &mut Outcome,
        read: Result<Option<bool>, CloudError>,
    ) -> bool {
        let eni = &self.identity.eni_id;
        st.sdc_checked = true;
        match read {
            Ok(Some(false)) => st.sdc = SourceDestCheck::Disabled,
            Ok(None) => st.sdc = SourceDestCheck::Unknown,
            Ok(Some(true)) => {
                st.sdc = SourceDestCheck::Enabled;
                match self.cfg.source_dest_check {
                    SdcMode::Report => out.problems.push(self.sdc_problem()),
                    SdcMode::Disable => return true,
                }
            }
            Err(e) => {
                st.sdc_checked = false;
                st.sdc = SourceDestCheck::Unknown;
                out.problems.push(Problem::from_error(
                    &format!("read the source/destination check of {eni}"),
                    &e,
                ));
            }
        }
        false
    }

    /// Takes in the answer to switching the ENI's source/destination check off.
    fn note_source_dest_write(
        &self,
        st: &mut SyncState,
        out: &mut Outcome,
        written: Result<(), CloudError>,
    ) {
        let eni = &self.identity.eni_id;
        match written {
            Ok(()) => {
                tracing::info!(eni = %eni, "switched off the ENI's source/destination check");
                st.sdc = SourceDestCheck::Disabled;
                out.sdc_disabled += 1;
            }
            Err(e) => {
                st.sdc_checked = false;
                out.problems.push(Problem::from_error(
                    &format!("switch off the source/destination check of {eni}"),
                    &e,
                ));
            }
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
            }
            break;
        }
    }

    fn wait_failed(
        &self,
        st: &mut SyncState,
        out: &mut Outcome,
        table: &str,
        subnet: Ipv4Net,
        w: WaitError,
    ) {
        match w {
            WaitError::StillPending(last) => {
                let status = last
                    .as_ref()
                    .map(|e| e.status.clone())
                    .unwrap_or_else(|| "Pending".into());
                if let Some(e) = &last {
                    out.routes.push(status_of(e, Owner::Us));
                }
                out.problems.push(Problem::pending(
                    Reason::RoutePending,
                    format!(
                        "the route {subnet} → {} in {table} is {status} after {:?}; still waiting",
                        self.identity.instance_id, self.cfg.wait_available
                    ),
                    RETRY_PENDING,
                ));
            }
            WaitError::Vanished => {
                *st.token_generation
                    .entry((table.to_string(), subnet))
                    .or_default() += 1;
                out.problems.push(Problem::pending(
                    Reason::RoutePending,
                    format!(
                        "the route {subnet} in {table} was reported created but is not listed; creating it \
                         again with a fresh client token"
                    ),
                    RETRY_PENDING,
                ));
            }
            WaitError::Problem(p) => out.problems.push(p),
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
                    out.write_refusals += 1;
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

    /// Polls (with doubling intervals) until our entry for `cidr` in `table` is `Available`.
    pub(crate) async fn wait_available(
        &self,
        calls: &Calls<'_>,
        table: &str,
        cidr: &str,
        entry_id: Option<&str>,
    ) -> Result<RouteEntry, WaitError> {
        let filter = RouteEntryFilter {
            destination_cidr_block: Some(cidr.to_string()),
            next_hop_id: Some(self.identity.instance_id.clone()),
            ..Default::default()
        };
        let mut delays = Exponential::new(self.cfg.poll_initial, self.cfg.poll_max).delays();
        let mut delay = delays.next_delay();
        let mut waited = Duration::ZERO;
        let mut missing = 0;
        let mut last = None;
        loop {
            (self.sleeper)(delay).await;
            waited += delay;
            let entries = calls.route_entries(table, &filter).await.map_err(|e| {
                WaitError::Problem(Problem::from_error(
                    &format!("list the routes of {table}"),
                    &e,
                ))
            })?;
            let found = entries.into_iter().find(|e| match entry_id {
                Some(id) if !id.is_empty() => e.route_entry_id == id,
                _ => self.marker.owns(e) && e.destination_cidr_block == cidr,
            });
            match found {
                Some(mut e) if e.is_available() => {
                    if e.route_table_id.is_empty() {
                        e.route_table_id = table.to_string();
                    }
                    return Ok(e);
                }
                Some(mut e) => {
                    if e.route_table_id.is_empty() {
                        e.route_table_id = table.to_string();
                    }
                    missing = 0;
                    last = Some(e);
                }
                None => {
                    missing += 1;
                    if missing >= 3 {
                        return Err(WaitError::Vanished);
                    }
                }
            }
            delay = delays.next_delay();
            if waited + delay > self.cfg.wait_available {
                return Err(WaitError::StillPending(last));
            }
        }
    }

    async fn delete_stale(
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

    /// Deletes every route of this host (marked as ours, pointing here) from every table of the VPC
    /// (plus configured ones), waiting for pending ones to settle first. Unmarked routes are left.
    pub async fn deregister(&self) -> RouteReport {
        let started = Instant::now();
        let mut st = self.state.lock().await;
        let calls = Calls::new(&*self.cloud);
        let mut out = Outcome::default();
        let mut tables: Vec<String> = self.cfg.route_table_ids.clone();
        match calls.route_tables(&self.identity.vpc_id).await {
            Ok(all) => tables.extend(all.into_iter().map(|t| t.route_table_id)),
            Err(e) => {
                // Fall back to the tables we would use.
                tracing::warn!(error = %e, "cannot list the VPC's route tables; using the configured/associated ones");
                match self.discover(&calls).await {
                    Ok(d) => tables.extend(d.tables),
                    Err(p) => out.problems.push(p),
                }
            }
        }
        tables.sort();
        tables.dedup();
        for table in &tables {
            let entries = match calls
                .route_entries(
                    table,
                    &RouteEntryFilter {
                        next_hop_id: Some(self.identity.instance_id.clone()),
                        route_entry_type: Some("Custom".into()),
                        ..Default::default()
                    },
                )
                .await
            {
                Ok(v) => v,
                Err(e) => {
                    out.problems.push(Problem::from_error(
                        &format!("list the routes of {table}"),
                        &e,
                    ));
                    continue;
                }
            };
            for e in entries
                .into_iter()
                .filter(|e| self.marker.owns(e) && !e.status.eq_ignore_ascii_case("Deleting"))
            {
                let mut entry = e;
                if !entry.is_available() {
                    match self
                        .wait_available(
                            &calls,
                            table,
                            &entry.destination_cidr_block,
                            Some(&entry.route_entry_id),
                        )
                        .await
                    {
                        Ok(ready) => entry = ready,
                        Err(WaitError::Vanished) => continue,
                        Err(WaitError::StillPending(_)) => {
                            out.problems.push(Problem::pending(
                                Reason::RoutePending,
                                format!(
                                    "route {} in {table} is still {}; run deregister again",
                                    entry.route_entry_id, entry.status
                                ),
                                RETRY_PENDING,
                            ));
                            continue;
                        }
                        Err(WaitError::Problem(p)) => {
                            out.problems.push(p);
                            continue;
                        }
                    }
                }
                match calls.delete_route(table, &entry.route_entry_id).await {
                    Ok(()) => {}
                    Err(err) if err.class() == ErrorClass::NotFound => {}
                    Err(err) => {
                        out.problems.push(Problem::from_error(
                            &format!(
                                "delete route {} ({}) in {table}",
                                entry.route_entry_id, entry.destination_cidr_block
                            ),
                            &err,
                        ));
                        continue;
                    }
                }
                out.deleted += 1;
                tracing::info!(table, entry = %entry.route_entry_id, cidr = %entry.destination_cidr_block, "deregistered route");
                out.routes.push(RouteStatus {
                    table_id: table.clone(),
                    cidr: entry.destination_cidr_block.clone(),
                    entry_id: entry.route_entry_id.clone(),
                    status: RouteState::Deleted,
                    owner: Owner::Us,
                });
            }
        }
        st.discovery = None;
        st.last_subnet = None;
        let report = self.finish(&calls, &out, &st, None, Reason::Deregistered);
        self.record(&report, &out, started, true);
        report
    }

    fn finish(
        &self,
        calls: &Calls<'_>,
        out: &Outcome,
        st: &SyncState,
        subnet: Option<Ipv4Net>,
        ready_reason: Reason,
    ) -> RouteReport {
        let worst = out
            .problems
            .iter()
            .find(|p| p.state == State::Failed)
            .or_else(|| out.problems.first());
        let route = match worst {
            Some(p) => {
                let more = out.problems.len() - 1;
                let mut message = p.message.clone();
                if more > 0 {
                    let others: Vec<&str> = out
                        .problems
                        .iter()
                        .filter(|q| !std::ptr::eq(*q, p))
                        .map(|q| q.reason.as_str())
                        .collect();
                    message.push_str(&format!(" (also: {})", others.join(", ")));
                }
                Condition::new(p.state, p.reason, message)
            }
            None => {
                let mut message = if ready_reason == Reason::Deregistered {
                    format!(
                        "deleted {} route(s) of {}",
                        out.deleted, self.identity.instance_id
                    )
                } else {
                    format!(
                        "{} → {} is Available in {}",
                        subnet.map(|s| s.to_string()).unwrap_or_default(),
                        self.identity.instance_id,
                        out.ready_tables.join(", ")
                    )
                };
                for n in &out.notes {
                    message.push_str("; ");
                    message.push_str(n);
                }
                Condition::new(State::Ready, ready_reason, message)
            }
        };
        let credentials = match out.problems.iter().find_map(|p| p.credentials.clone()) {
            Some(c) => c,
            None => match self.cloud.credentials_status() {
                Some(s) if s.valid => Condition::new(
                    State::Ready,
                    Reason::Valid,
                    match s.expiration {
                        Some(exp) => format!(
                            "{}, valid until {}",
                            s.source,
                            exp.format("%Y-%m-%dT%H:%M:%SZ")
                        ),
                        None => s.source,
                    },
                ),
                Some(s) if s.last_error.is_some() => Condition::new(
                    State::Failed,
                    Reason::CredentialsUnavailable,
                    s.last_error.unwrap_or_default(),
                ),
                Some(s) => Condition::new(State::Pending, Reason::NotFetchedYet, s.source),
                None => Condition::new(
                    State::Ready,
                    Reason::Valid,
                    "the cloud accepted the credentials",
                ),
            },
        };
        let retry_after = out
            .problems
            .iter()
            .filter_map(|p| p.retry_after)
            .chain(out.next_pass)
            .min();
        RouteReport {
            route,
            credentials,
            routes: out.routes.clone(),
            source_dest_check: st.sdc,
            reads: calls.reads(),
            writes: calls.writes(),
            retry_after,
            instance_id: Some(self.identity.instance_id.clone()),
            fleet: st.fleet.status.clone(),
        }
    }

    fn record(&self, report: &RouteReport, out: &Outcome, started: Instant, deregister: bool) {
        {
            let mut m = self.metrics.lock().unwrap_or_else(|p| p.into_inner());
            if deregister {
                m.deregisters += 1;
            } else {
                m.syncs += 1;
                m.conflicts = out.conflicts;
                m.ready = report.is_ready();
            }
            if report.route.state == State::Failed {
                m.failed_passes += 1;
            }
            m.reads += u64::from(report.reads);
            m.writes += u64::from(report.writes);
            m.routes_created += out.created;
            m.routes_deleted += out.deleted;
            m.source_dest_check_disabled += out.sdc_disabled;
            m.write_refusals += out.write_refusals;
            m.fleet_routes_deleted += out.fleet_deleted;
            m.fleet_batch_writes += out.batch_calls;
            if let Some(f) = &report.fleet {
                m.fleet = Some(crate::metrics::FleetGauges::of(f));
            }
            m.last_pass_millis = started.elapsed().as_millis() as u64;
        }
        match report.route.state {
            State::Ready => {
                tracing::debug!(reads = report.reads, writes = report.writes, reason = %report.route.reason, "route pass: {}", report.route.message)
            }
            State::Pending => {
                tracing::info!(reason = %report.route.reason, "route pending: {}", report.route.message)
            }
            State::Failed => {
                tracing::warn!(reason = %report.route.reason, "route failed: {}", report.route.message)
            }
            State::Disabled => {}
        }
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(report.clone());
    }
}
