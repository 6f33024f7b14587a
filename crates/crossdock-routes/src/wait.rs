//! Waiting for a created route to become `Available`: polled with doubling intervals, and what a
//! wait that ends otherwise (still pending, vanished, a failed read) means for the pass.

use std::time::Duration;

use ipnet::Ipv4Net;

use crossdock_alibaba::{RouteEntry, RouteEntryFilter};
use crossdock_backoff::Exponential;
use crossdock_status::{Owner, Reason};

use crate::calls::Calls;
use crate::problem::{Outcome, Problem, RETRY_PENDING};
use crate::reconciler::{status_of, RouteReconciler, SyncState};

pub(crate) enum WaitError {
    /// Not `Available` within the wait; the last state seen.
    StillPending(Option<RouteEntry>),
    /// The entry is not listed at all (created with a replayed client token after a delete).
    Vanished,
    /// A read failed.
    Problem(Problem),
}

impl RouteReconciler {
    pub(crate) fn wait_failed(
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
}
