//! End to end: a multi-zone VPC (issue 14). Three hosts in two vSwitches — h1 and h3 in `vsw1`, routed
//! by the VPC's system table, h2 in `vsw2`, routed by a custom table — with the agents in per-host mode.
//!
//! - Every table on a path gets every host's route, so every container reaches every other, across the
//!   vSwitches and within one, both directions, with the sender's own container IP.
//! - A route deleted by hand from one table breaks exactly the traffic that table routes (vsw2 → h1's
//!   containers, and h1's answers to vsw2), nothing the other table routes, and the agent writes it
//!   back within a resync. Route writes are refused while the break is observed (an injected fault),
//!   so the observation cannot race the repair; the log shows the agent tried within a resync.
//!   `crossdock doctor` on h1 names the table that lacks its route.
//! - A new custom table bound to a vSwitch takes over that vSwitch's traffic and gets the routes
//!   within a resync.
//!
//! Root only: reports a skip otherwise (`crossdock_lab::testing::root_or_skip`).

mod common;

use common::*;
use crossdock_lab::testing::root_or_skip;
use crossdock_lab::{ContainerInfo, DockerVersion, Lab};
use crossdock_vpcsim::admin::{CallRecord, ErrorFault, Faults};
use crossdock_vpcsim::model::{now_ms, EntryType, RouteEntry};
use std::collections::BTreeMap;
use std::time::Duration;

/// How often the agents re-check their routes in this test (the route passes under test).
const RESYNC_SECS: u64 = 5;
/// One resync plus a pass's reads and the vRouter's apply, with room for a loaded machine.
const RESYNC_BOUND: Duration = Duration::from_secs(RESYNC_SECS * 2 + 5);
/// A refused write is retried within this (the agents' backoff ceiling here).
const BACKOFF_MAX_MS: u64 = 1000;
/// From the fault lifted to the route Available again: the backoff ceiling, the write, `Pending`.
const REPAIR_BOUND: Duration = Duration::from_secs(RESYNC_SECS * 2 + 10);

/// The custom entries of one table.
fn routes_in(lab: &Lab, table: &str) -> Vec<RouteEntry> {
    let table = table.to_string();
    lab.admin_sync(|c| async move { c.state().await })
        .unwrap_or_else(|e| panic!("reading the emulator's state: {e:#}"))
        .entries
        .into_iter()
        .filter(|e| e.route_table_id == table && e.entry_type == EntryType::Custom)
        .collect()
}

/// Whether `table` holds exactly `want` (crossdock's, Available) and nothing else.
fn table_is(lab: &Lab, table: &str, want: &[(String, String)]) -> bool {
    let have = routes_in(lab, table);
    have.len() == want.len()
        && want.iter().all(|(cidr, inst)| {
            have.iter()
                .any(|e| is_crossdock_route_of(e, cidr, inst) && e.status.as_str() == "Available")
        })
}

/// Waits until each of `tables` holds exactly `want` and the vRouter applied it; how long it took.
fn wait_tables(lab: &Lab, tables: &[&str], want: &[(String, String)], bound: Duration) -> Duration {
    let what = format!("tables {tables:?} to hold exactly {want:?} (Available, marked), applied");
    wait_until(lab, &what, bound, || {
        if !tables.iter().all(|t| table_is(lab, t, want)) {
            return None;
        }
        let dp = lab
            .admin_sync(|c| async move { c.dataplane().await })
            .ok()?;
        (dp.applied_generation >= dp.wanted_generation && dp.last_error.is_none()).then_some(())
    })
    .1
}

/// Waits until the vRouter applied the emulator's latest state.
fn wait_applied(lab: &Lab) {
    wait_until(lab, "the vRouter to apply the table", TRAFFIC_BOUND, || {
        let dp = lab
            .admin_sync(|c| async move { c.dataplane().await })
            .ok()?;
        (dp.applied_generation >= dp.wanted_generation && dp.last_error.is_none()).then_some(())
    });
}

/// A route write (single or batch) of `instance` naming `table` and `cidr`.
fn is_write_of(c: &CallRecord, instance: &str, table: &str, cidr: &str) -> bool {
    c.write
        && c.action.starts_with("CreateRouteEntr")
        && c.instance_id.as_deref() == Some(instance)
        && c.params.values().any(|v| v == table)
        && c.params.values().any(|v| v == cidr)
}

/// `crossdock doctor --json` on h1 fails a route check (`route.tables`, or `cloud.route` when it
/// judges that table itself) whose evidence names `table` and `subnet`, with a fix.
fn assert_doctor_names(lab: &Lab, table: &str, subnet: &str) {
    let out = lab
        .exec_unchecked(1, &[CROSSDOCK, "doctor", "--json"])
        .expect("run crossdock doctor in h1");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(out.status.code(), Some(2), "doctor must fail: {report:#}");
    let named = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .any(|c| {
            let evidence = c["evidence"].as_str().unwrap_or("");
            ["route.tables", "cloud.route"].contains(&c["id"].as_str().unwrap_or(""))
                && c["status"] == "fail"
                && evidence.contains(table)
                && evidence.contains(subnet)
                && c["fix"].as_str().is_some_and(|f| f.contains(table))
        });
    assert!(
        named,
        "doctor does not name {table} lacking {subnet}: {report:#}"
    );
}

/// Every pair of containers reaches each other both ways with its own source IP.
fn assert_all_connected(lab: &Lab, cs: &BTreeMap<usize, ContainerInfo>, bound: Duration) {
    for (a, b) in [(1, 2), (2, 3), (1, 3)] {
        let (na, nb) = (format!("c{a}"), format!("c{b}"));
        assert_connected(lab, (a, &na, &cs[&a]), (b, &nb, &cs[&b]), bound);
    }
}

#[test]
fn e2e_zones_every_table_on_the_path_gets_the_route() {
    if !root_or_skip() {
        return;
    }
    let _t = Timer::start("e2e_zones_every_table_on_the_path_gets_the_route");
    let mut opts = options(3, DockerVersion::V20);
    opts.vswitches = 2; // vsw1: system table; vsw2: a custom table of its own
    opts.agent_config = Some(fast_resync(|_, c| {
        c.cloud.resync_interval_secs = RESYNC_SECS;
        c.cloud.write_backoff_max_ms = BACKOFF_MAX_MS;
    }));
    let mut lab = up(opts);
    let system = lab.state().route_table_id.clone();
    let custom = lab.table_of_vswitch("vsw2").expect("vsw2's table");
    assert_ne!(system, custom, "vsw2 is bound to a custom table");
    assert_eq!(
        lab.hosts()
            .iter()
            .map(|h| h.vswitch.as_str())
            .collect::<Vec<_>>(),
        ["vsw1", "vsw2", "vsw1"]
    );

    // 1. Every host's route in both tables; every container reaches every other.
    start_agents(&mut lab, &["h1", "h2", "h3"]);
    let want = expected_table(&lab, &[1, 2, 3]);
    let took = wait_tables(&lab, &[&system, &custom], &want, ROUTES_BOUND);
    eprintln!(
        "both tables complete {:.1} s after the agents started",
        took.as_secs_f64()
    );
    wait_ready(&lab, &[1, 2, 3], ROUTES_BOUND);
    let cs: BTreeMap<usize, ContainerInfo> = (1..=3)
        .map(|i| (i, container(&lab, i, &format!("c{i}"))))
        .collect();
    assert_all_connected(&lab, &cs, TRAFFIC_BOUND);

    // 2. h1's route deleted by hand from the custom table, while route writes are refused.
    let h1 = lab.host(1).instance_id.clone();
    let h1_subnet = lab.host(1).subnet.clone();
    let refused = ErrorFault {
        rate: 1.0,
        code: "ServiceUnavailable".into(),
        after_commit: false,
    };
    let faults = Faults {
        errors: BTreeMap::from([
            ("CreateRouteEntry".to_string(), refused.clone()),
            ("CreateRouteEntries".to_string(), refused),
        ]),
        ..Faults::default()
    };
    lab.admin_sync(move |c| async move { c.set_faults(&faults).await })
        .expect("refuse route writes");
    let seq = call_seq(&lab);
    let entry = routes_in(&lab, &custom)
        .into_iter()
        .find(|e| is_crossdock_route_of(e, &h1_subnet, &h1))
        .expect("h1's route in the custom table");
    let deleted_ms = now_ms();
    let id = entry.route_entry_id.clone();
    lab.admin_sync(move |c| async move { c.delete_route(&id).await })
        .expect("delete h1's route from the custom table");
    wait_applied(&lab);
    // What the custom table routes breaks: vsw2 → c1, and c1's answers to c2.
    assert_no_ping(&lab, 2, "c2", &cs[&1].ip, "vsw2's table lacks h1's route");
    assert_no_ping(&lab, 1, "c1", &cs[&2].ip, "c2's answers go by vsw2's table");
    // What the system table routes does not: c1 ↔ c3 (vsw1), and vsw2 ↔ h3.
    for (from, to) in [(1, 3), (3, 1), (2, 3), (3, 2)] {
        let (name, ip) = (format!("c{from}"), cs[&to].ip.clone());
        wait_ping(&lab, from, &name, &ip, TRAFFIC_BOUND);
    }
    // Doctor on h1 names the table that lacks the route.
    assert_doctor_names(&lab, &custom, &h1_subnet);
    // The agent noticed within a resync: it tried to write the route back into the custom table.
    let (first_try_ms, _) = wait_until(
        &lab,
        "h1's agent to try to restore its route",
        RESYNC_BOUND,
        || {
            calls_since(&lab, seq)
                .calls
                .iter()
                .find(|c| is_write_of(c, &h1, &custom, &h1_subnet))
                .map(|c| c.time_ms)
        },
    );
    let noticed = Duration::from_millis((first_try_ms - deleted_ms).max(0) as u64);
    eprintln!(
        "h1's agent tried to restore its route {:.1} s after the delete",
        noticed.as_secs_f64()
    );
    assert!(
        noticed <= RESYNC_BOUND,
        "h1's agent noticed its missing route after {noticed:?}, more than a resync ({RESYNC_SECS} s)"
    );
    lab.admin_sync(|c| async move { c.reset_faults().await })
        .expect("lift the fault");
    let took = wait_tables(&lab, &[&system, &custom], &want, REPAIR_BOUND);
    eprintln!(
        "restored {:.1} s after the fault was lifted",
        took.as_secs_f64()
    );
    assert_connected(&lab, (1, "c1", &cs[&1]), (2, "c2", &cs[&2]), TRAFFIC_BOUND);

    // 3. A new custom table bound to vsw1 takes over its traffic and gets every route within a resync.
    let t3 = lab
        .table_create(&[])
        .expect("a new custom table")
        .route_table_id;
    lab.table_bind(&t3, "vsw1").expect("bind vsw1 to it");
    let took = wait_tables(&lab, &[&t3, &custom], &want, RESYNC_BOUND);
    eprintln!(
        "the new table got every route {:.1} s after it was bound",
        took.as_secs_f64()
    );
    assert_all_connected(&lab, &cs, TRAFFIC_BOUND);
}
