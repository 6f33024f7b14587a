//! Decommissioning: every route of this host (crossdock's marker, next hop = this instance) deleted
//! from every table of the VPC, pending ones waited for first; unmarked routes left alone.

use std::time::Instant;

use crossdock_alibaba::{ErrorClass, RouteEntryFilter};
use crossdock_status::{Owner, Reason, RouteState};

use crate::calls::Calls;
use crate::problem::{Outcome, Problem, RETRY_PENDING};
use crate::reconciler::RouteReconciler;
use crate::report::{RouteReport, RouteStatus};
use crate::wait::WaitError;

impl RouteReconciler {
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
                match self.discover(&calls, false, false).await {
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
}
