//! What one reconciliation pass found, in the shape the agent puts into `/status`, logs and metrics.
//!
//! The agent owns the conditions' `last_change`/`last_error` bookkeeping; this module only says, for
//! the `route` and `credentials` conditions, the state, a machine-readable reason and a one-line
//! message that ends with the fix.

use std::time::Duration;

use serde::Serialize;

pub use crossdock_status::{Owner, Reason, RouteState, State};

/// One condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    /// Ready, pending or failed (`disabled` when routes are not crossdock's job).
    pub state: State,
    /// Why: stable for alerts (`RouteAvailable`, `RoutePending`, `RouteConflict`, ...).
    pub reason: Reason,
    /// One line for humans, ending in the fix when there is something to fix.
    pub message: String,
}

impl Condition {
    /// Builds a condition.
    pub fn new(state: State, reason: Reason, message: impl Into<String>) -> Self {
        Self {
            state,
            reason,
            message: message.into(),
        }
    }
}

/// A route crossdock knows about, for `/status` `routes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteStatus {
    /// The route table.
    pub table_id: String,
    /// Destination.
    pub cidr: String,
    /// `rte-...` (empty when not created).
    pub entry_id: String,
    /// `Available`, `Pending`, ... or `Missing` / `Refused` when there is no entry.
    pub status: RouteState,
    /// `self` (ours), `user` (unmarked, points here), `crossdock:<i-...>` (another crossdock host), or
    /// the next hop of a conflicting route.
    pub owner: Owner,
}

/// Whether the primary ENI's source/destination check is in the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceDestCheck {
    /// Not known (not checked yet, or the check failed).
    Unknown,
    /// Off: routed container traffic passes.
    Disabled,
    /// On: the ENI drops routed container traffic.
    Enabled,
}

/// The result of [`crate::RouteReconciler::sync`] or [`crate::RouteReconciler::deregister`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteReport {
    /// → the agent's `route` condition.
    pub route: Condition,
    /// → the agent's `credentials` condition.
    pub credentials: Condition,
    /// The routes for this host (ours, and any route holding our destination).
    pub routes: Vec<RouteStatus>,
    /// The ENI's source/destination check.
    pub source_dest_check: SourceDestCheck,
    /// API reads made by this pass.
    pub reads: u32,
    /// API writes made by this pass.
    pub writes: u32,
    /// When to run again: `None` = at the regular resync interval; `Some(d)` = sooner (pending) or
    /// later (permission missing: retry slowly).
    #[serde(skip)]
    pub retry_after: Option<Duration>,
    /// This ECS instance, once known (not in the JSON: the agent reports it on its own).
    #[serde(skip)]
    pub instance_id: Option<String>,
    /// Fleet mode: the cluster as the last sweep saw it (`None` in per-host mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<crate::fleet::FleetStatus>,
    /// Per-host mode with names: the private IPs of the hosts behind crossdock's routes, when this
    /// pass read them (`None`: not asked, or a read failed; keep the last ones). Not in the JSON:
    /// `/status` shows the names catalog's peers.
    #[serde(skip)]
    pub peers: Option<Vec<std::net::Ipv4Addr>>,
}

impl RouteReport {
    /// Whether the route condition is ready.
    pub fn is_ready(&self) -> bool {
        self.route.state == State::Ready
    }
}
