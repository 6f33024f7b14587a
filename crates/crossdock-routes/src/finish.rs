//! The end of a pass: the conditions the agent shows (the worst problem first, or ready with what is
//! in place), the credentials' state, the counters, the log line.

use std::time::Instant;

use ipnet::Ipv4Net;

use crossdock_alibaba::Error as CloudError;
use crossdock_status::Reason;

use crate::calls::Calls;
use crate::problem::{Outcome, Problem, RETRY_BUSY, RETRY_PENDING};
use crate::reconciler::{RouteReconciler, SyncState};
use crate::report::{Condition, RouteReport, SourceDestCheck, State};

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
            peers: None,
        }
    }
}

impl RouteReconciler {
    pub(crate) fn finish(
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
            peers: out.peers.clone(),
        }
    }

    pub(crate) fn record(
        &self,
        report: &RouteReport,
        out: &Outcome,
        started: Instant,
        deregister: bool,
    ) {
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
            m.last_pass_millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            m.observe_pass(started.elapsed());
            for code in &out.refusal_codes {
                *m.write_refusals_by_code.entry(code.clone()).or_default() += 1;
            }
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
