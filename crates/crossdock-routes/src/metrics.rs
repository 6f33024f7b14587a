//! Counters of the route reconciler and the cloud client, as Prometheus text for the agent's `/metrics`.

use std::fmt::Write as _;

use serde::Serialize;

use crossdock_alibaba::CallCounts;

/// Counters of the reconciler since start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RouteMetrics {
    /// Sync passes.
    pub syncs: u64,
    /// Deregister passes.
    pub deregisters: u64,
    /// Passes that ended with the route condition failed.
    pub failed_passes: u64,
    /// Cloud reads made by passes.
    pub reads: u64,
    /// Cloud writes made by passes.
    pub writes: u64,
    /// Routes created.
    pub routes_created: u64,
    /// Routes deleted (old subnets, deregister).
    pub routes_deleted: u64,
    /// Times the ENI's source/destination check was switched off.
    pub source_dest_check_disabled: u64,
    /// Route writes the VPC refused for now (busy table, throttling) and the agent retried later.
    pub write_refusals: u64,
    /// Conflicting routes seen by the last pass (gauge).
    pub conflicts: u64,
    /// Whether the last sync pass ended ready (gauge).
    pub ready: bool,
    /// Duration of the last pass, milliseconds.
    pub last_pass_millis: u64,
    /// Route writes refused for now, by API code.
    pub write_refusals_by_code: std::collections::BTreeMap<String, u64>,
    /// Passes in the histogram.
    pub syncs_observed: u64,
    /// Pass durations: counts per bucket of [`PASS_BUCKETS`] (not cumulative), sum, count.
    pub pass_buckets: [u64; PASS_BUCKETS.len()],
    /// Sum of pass durations, milliseconds.
    pub pass_millis_sum: u64,
    /// Fleet mode: routes of released instances deleted.
    pub fleet_routes_deleted: u64,
    /// Fleet mode: `CreateRouteEntries` / `DeleteRouteEntries` calls made.
    pub fleet_batch_writes: u64,
    /// Fleet mode: what the last sweep saw (`None` in per-host mode: no fleet metrics).
    pub fleet: Option<FleetGauges>,
}

/// Upper bounds (seconds) of the route-pass duration histogram: a pass in sync takes one API round
/// trip; one that creates a route waits for `Available` (seconds); a busy table, minutes.
pub const PASS_BUCKETS: [f64; 8] = [0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0];

impl RouteMetrics {
    /// Records one pass's duration in the histogram.
    pub fn observe_pass(&mut self, took: std::time::Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = PASS_BUCKETS.iter().position(|b| secs <= *b) {
            self.pass_buckets[i] += 1;
        }
        self.pass_millis_sum += u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        self.syncs_observed += 1;
    }
}

/// Gauges of the last fleet sweep.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FleetGauges {
    /// Members by the cluster tag.
    pub members: u64,
    /// Members running.
    pub running: u64,
    /// Members' routes missing.
    pub routes_missing: u64,
    /// Crossdock routes of released instances not deleted yet.
    pub stale_routes: u64,
    /// Members' destinations held by routes crossdock may not replace.
    pub conflicts: u64,
    /// Custom entries per route table.
    pub table_entries: Vec<(String, u64)>,
}

impl FleetGauges {
    /// The gauges of a sweep's status.
    pub fn of(f: &crate::fleet::FleetStatus) -> Self {
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        Self {
            members: n(f.members),
            running: n(f.running),
            routes_missing: n(f.routes_missing.len()),
            stale_routes: n(f.stale_routes.len()),
            conflicts: n(f.conflicts.len()),
            table_entries: f
                .table_entries
                .iter()
                .map(|(t, c)| (t.clone(), n(*c)))
                .collect(),
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Appends the reconciler's and (if given) the cloud client's counters in Prometheus text format.
pub fn write_prometheus(out: &mut String, m: &RouteMetrics, calls: Option<&CallCounts>) {
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "crossdock_route_syncs_total",
        "counter",
        "Route reconciliation passes.",
        m.syncs,
    );
    metric(
        "crossdock_route_failed_passes_total",
        "counter",
        "Route passes that ended failed.",
        m.failed_passes,
    );
    metric(
        "crossdock_route_reads_total",
        "counter",
        "Cloud API reads by the route reconciler.",
        m.reads,
    );
    metric(
        "crossdock_route_writes_total",
        "counter",
        "Cloud API writes by the route reconciler.",
        m.writes,
    );
    metric(
        "crossdock_route_created_total",
        "counter",
        "VPC routes created.",
        m.routes_created,
    );
    metric(
        "crossdock_route_deleted_total",
        "counter",
        "VPC routes deleted.",
        m.routes_deleted,
    );
    metric(
        "crossdock_route_source_dest_check_disabled_total",
        "counter",
        "Times the ENI source/destination check was switched off.",
        m.source_dest_check_disabled,
    );
    metric(
        "crossdock_route_write_refusals_total",
        "counter",
        "Route writes refused for now (busy table, throttling) and retried after a backoff.",
        m.write_refusals,
    );
    metric(
        "crossdock_route_conflicts",
        "gauge",
        "Routes holding this host's destination that are not ours (last pass).",
        m.conflicts,
    );
    metric(
        "crossdock_route_ready",
        "gauge",
        "1 if the last route pass ended ready.",
        u64::from(m.ready),
    );
    write_pass_histogram(out, m);
    if !m.write_refusals_by_code.is_empty() {
        let _ = writeln!(
            out,
            "# HELP crossdock_route_write_refusals_by_code_total Route writes the VPC refused for now, by API code.\n\
             # TYPE crossdock_route_write_refusals_by_code_total counter"
        );
        for (code, n) in &m.write_refusals_by_code {
            let _ = writeln!(
                out,
                "crossdock_route_write_refusals_by_code_total{{code=\"{}\"}} {n}",
                escape(code)
            );
        }
    }
    if let Some(f) = &m.fleet {
        write_fleet(out, m, f);
    }
    let Some(c) = calls else {
        return;
    };
    let _ = writeln!(
        out,
        "# HELP crossdock_cloud_api_calls_total Cloud API and metadata attempts by action and outcome.\n\
         # TYPE crossdock_cloud_api_calls_total counter"
    );
    for ((action, outcome), n) in &c.calls {
        let _ = writeln!(
            out,
            "crossdock_cloud_api_calls_total{{action=\"{}\",outcome=\"{}\"}} {n}",
            escape(action),
            escape(outcome)
        );
    }
    let _ = writeln!(
        out,
        "# HELP crossdock_cloud_api_host_calls_total Cloud API and metadata attempts by endpoint host.\n\
         # TYPE crossdock_cloud_api_host_calls_total counter"
    );
    for (host, n) in &c.by_host {
        let _ = writeln!(
            out,
            "crossdock_cloud_api_host_calls_total{{host=\"{}\"}} {n}",
            escape(host)
        );
    }
    let mut metric = |name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    };
    metric(
        "crossdock_cloud_api_retries_total",
        "Retried cloud API attempts.",
        c.retries,
    );
    metric(
        "crossdock_cloud_api_throttled_total",
        "Throttled cloud API answers.",
        c.throttled,
    );
    metric(
        "crossdock_cloud_api_retry_budget_exhausted_total",
        "Retries refused because the retry budget was empty.",
        c.budget_exhausted,
    );
}

/// `crossdock_route_pass_duration_seconds`: how long route passes take.
fn write_pass_histogram(out: &mut String, m: &RouteMetrics) {
    let name = "crossdock_route_pass_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Duration of route reconciliation passes (sync and deregister).\n# TYPE {name} histogram"
    );
    let mut cumulative = 0;
    for (bound, n) in PASS_BUCKETS.iter().zip(m.pass_buckets) {
        cumulative += n;
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", m.syncs_observed);
    // The sum in seconds, from whole milliseconds (exact, no float rounding).
    let _ = writeln!(
        out,
        "{name}_sum {}.{:03}",
        m.pass_millis_sum / 1000,
        m.pass_millis_sum % 1000
    );
    let _ = writeln!(out, "{name}_count {}", m.syncs_observed);
}

/// Fleet mode's metrics (only in fleet mode).
fn write_fleet(out: &mut String, m: &RouteMetrics, f: &FleetGauges) {
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "crossdock_fleet_members",
        "gauge",
        "Instances carrying the cluster tag (last sweep).",
        f.members,
    );
    metric(
        "crossdock_fleet_members_running",
        "gauge",
        "Members running (last sweep).",
        f.running,
    );
    metric(
        "crossdock_fleet_routes_missing",
        "gauge",
        "Members' routes missing from a route table (last sweep).",
        f.routes_missing,
    );
    metric(
        "crossdock_fleet_stale_routes",
        "gauge",
        "Crossdock routes of released instances not deleted yet (last sweep).",
        f.stale_routes,
    );
    metric(
        "crossdock_fleet_conflicts",
        "gauge",
        "Members' destinations held by routes crossdock may not replace (last sweep).",
        f.conflicts,
    );
    metric(
        "crossdock_fleet_routes_deleted_total",
        "counter",
        "Routes of released instances deleted.",
        m.fleet_routes_deleted,
    );
    metric(
        "crossdock_fleet_batch_writes_total",
        "counter",
        "CreateRouteEntries / DeleteRouteEntries calls.",
        m.fleet_batch_writes,
    );
    let _ = writeln!(
        out,
        "# HELP crossdock_route_table_custom_entries Custom entries in a route table (last sweep; the default quota is 200).\n\
         # TYPE crossdock_route_table_custom_entries gauge"
    );
    for (table, n) in &f.table_entries {
        let _ = writeln!(
            out,
            "crossdock_route_table_custom_entries{{table_id=\"{}\"}} {n}",
            escape(table)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_durations_and_refusal_codes_are_exported() {
        let mut m = RouteMetrics::default();
        m.observe_pass(std::time::Duration::from_millis(80));
        m.observe_pass(std::time::Duration::from_millis(1500));
        m.observe_pass(std::time::Duration::from_secs(600));
        m.write_refusals_by_code.insert("TaskConflict".into(), 3);
        let mut out = String::new();
        write_prometheus(&mut out, &m, None);
        for line in [
            "crossdock_route_pass_duration_seconds_bucket{le=\"0.1\"} 1",
            "crossdock_route_pass_duration_seconds_bucket{le=\"2.5\"} 2",
            "crossdock_route_pass_duration_seconds_bucket{le=\"120\"} 2",
            "crossdock_route_pass_duration_seconds_bucket{le=\"+Inf\"} 3",
            "crossdock_route_pass_duration_seconds_sum 601.580",
            "crossdock_route_pass_duration_seconds_count 3",
            "crossdock_route_write_refusals_by_code_total{code=\"TaskConflict\"} 3",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line}:\n{out}");
        }
    }

    #[test]
    fn renders_prometheus_text() {
        let mut c = CallCounts::default();
        c.calls.insert(("CreateRouteEntry".into(), "ok".into()), 2);
        c.by_host.insert("vpc.cn-x.aliyuncs.com".into(), 5);
        let m = RouteMetrics {
            syncs: 3,
            ready: true,
            ..Default::default()
        };
        let mut out = String::new();
        write_prometheus(&mut out, &m, Some(&c));
        assert!(out.contains("crossdock_route_syncs_total 3\n"));
        assert!(out.contains("crossdock_route_ready 1\n"));
        assert!(out.contains(
            "crossdock_cloud_api_calls_total{action=\"CreateRouteEntry\",outcome=\"ok\"} 2\n"
        ));
        assert!(out
            .contains("crossdock_cloud_api_host_calls_total{host=\"vpc.cn-x.aliyuncs.com\"} 5\n"));
        // Every sample line belongs to a declared metric.
        for line in out.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| out.contains(&format!("# TYPE {b} histogram")))
                .unwrap_or(name);
            assert!(out.contains(&format!("# TYPE {base} ")), "{line}");
        }
    }
}
