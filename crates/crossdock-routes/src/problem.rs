//! What keeps a route pass from being ready ([`Problem`]), how a cloud error becomes one (the one
//! place that classifies errors for the route condition), and what a pass collected ([`Outcome`]).

use std::time::Duration;

use crossdock_alibaba::{Error as CloudError, ErrorClass};
use crossdock_status::Reason;

use crate::report::{Condition, RouteStatus, State};

/// Retry delays asked of the agent, by situation.
pub(crate) const RETRY_PENDING: Duration = Duration::from_secs(5);
pub(crate) const RETRY_BUSY: Duration = Duration::from_secs(30);
pub(crate) const RETRY_PERMISSION: Duration = Duration::from_secs(300);
pub(crate) const RETRY_PERMANENT: Duration = Duration::from_secs(300);

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
    /// The refusals by API code (`TaskConflict`, `Throttling.User`, ...).
    pub(crate) refusal_codes: Vec<String>,
    /// Run again after at most this long (a released instance's grace period ends).
    pub(crate) next_pass: Option<Duration>,
    /// Routes of released instances deleted (fleet mode).
    pub(crate) fleet_deleted: u64,
    /// Batch write calls (fleet mode).
    pub(crate) batch_calls: u64,
    /// Per-host mode with names: the hosts behind crossdock's routes, if this pass read them.
    pub(crate) peers: Option<Vec<std::net::Ipv4Addr>>,
}

impl Outcome {
    /// Counts a route write the VPC refused for now.
    pub(crate) fn refused(&mut self, e: &CloudError) {
        self.write_refusals += 1;
        self.refusal_codes
            .push(e.code().unwrap_or("unreachable").to_string());
    }

    /// Adds what a part of the pass that ran alongside found.
    pub(crate) fn merge(&mut self, other: Outcome) {
        self.problems.extend(other.problems);
        self.routes.extend(other.routes);
        self.ready_tables.extend(other.ready_tables);
        self.notes.extend(other.notes);
        self.created += other.created;
        self.deleted += other.deleted;
        self.sdc_disabled += other.sdc_disabled;
        self.conflicts += other.conflicts;
        self.write_refusals += other.write_refusals;
        self.refusal_codes.extend(other.refusal_codes);
        self.fleet_deleted += other.fleet_deleted;
        self.batch_calls += other.batch_calls;
        self.next_pass = match (self.next_pass, other.next_pass) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}
