//! `crossdock deregister`, end to end in the lab: decommissioning a host deletes exactly that host's own
//! routes (crossdock's marker, next hop = this instance) and nothing else — not the other hosts' routes,
//! not a user's route that points at this same instance — and leaves traffic between the remaining hosts
//! alone. A second run finds nothing to do.
//!
//! Root only (namespaces, real dockerds): reports a skip otherwise (`crossdock_lab::testing::skip`).

mod common;

use common::*;
use crossdock_lab::testing::root_or_skip;
use crossdock_lab::DockerVersion;
use crossdock_vpcsim::admin::PutRoute;

#[test]
fn deregister_deletes_only_this_hosts_own_routes() {
    if !root_or_skip() {
        return;
    }
    let _t = Timer::start("deregister_deletes_only_this_hosts_own_routes");
    let mut lab = up(options(3, DockerVersion::V20));
    let h1 = lab.host(1).instance_id.clone();

    // A route a user added by hand that points at h1's instance: it is not crossdock's.
    let req = PutRoute {
        destination_cidr_block: Some("10.200.0.0/24".parse().unwrap()),
        next_hop_id: h1.clone(),
        route_entry_name: "manual".into(),
        description: "added in the console".into(),
        ..PutRoute::default()
    };
    let users = lab
        .admin_sync(move |c| async move { c.put_route(&req).await })
        .expect("a user's route");

    start_agents(&mut lab, &["h1", "h2", "h3"]);
    let foreign = [users.route_entry_id.clone()];
    wait_table(
        &lab,
        &expected_table(&lab, &[1, 2, 3]),
        &foreign,
        ROUTES_BOUND,
    );
    wait_ready(&lab, &[2, 3], ROUTES_BOUND);
    let c2 = container(&lab, 2, "c2");
    let c3 = container(&lab, 3, "c3");
    wait_ping(&lab, 2, "c2", &c3.ip, TRAFFIC_BOUND);

    // Decommission h1: stop its agent (or it would register again), then deregister.
    lab.agent_stop("h1").expect("stop h1's agent");
    let bin = env!("CARGO_BIN_EXE_crossdock");
    let out = lab
        .exec_unchecked(1, &[bin, "deregister", "--json"])
        .expect("run crossdock deregister in h1");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "deregister failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("deregister --json");
    let deleted: Vec<&str> = report["routes"]
        .as_array()
        .expect("the report lists the deleted routes")
        .iter()
        .filter_map(|r| r["cidr"].as_str())
        .collect();
    assert_eq!(deleted, vec![lab.host(1).subnet.as_str()], "{report}");

    // The table now holds h2's and h3's routes and the user's route, exactly.
    wait_table(&lab, &expected_table(&lab, &[2, 3]), &foreign, ROUTES_BOUND);
    let routes = custom_routes(&lab);
    assert!(
        routes
            .iter()
            .any(|e| e.route_entry_id == users.route_entry_id && e.next_hop_id == h1),
        "the user's route to h1 must survive: {routes:?}"
    );
    assert!(
        !routes
            .iter()
            .any(|e| is_crossdock_route_of(e, &lab.host(1).subnet, &h1)),
        "h1's own route must be gone: {routes:?}"
    );
    // The others keep talking.
    assert!(pings(&lab, 2, "c2", &c3.ip), "h2 → h3 after h1 left");
    assert!(pings(&lab, 3, "c3", &c2.ip), "h3 → h2 after h1 left");

    // Idempotent: a second run deletes nothing and succeeds.
    let seq = call_seq(&lab);
    let again = lab
        .exec_unchecked(1, &[bin, "deregister", "--json"])
        .expect("run crossdock deregister again");
    assert!(again.status.success(), "{again:?}");
    let writes = writes_since(&lab, seq);
    assert!(
        writes.is_empty(),
        "a second deregister must write nothing: {}",
        describe_calls(&writes)
    );

    // A configuration without a cloud provider has nothing of crossdock's to delete: exit 2.
    let cfg = lab.host(1).agent_config.clone();
    let text = std::fs::read_to_string(&cfg).expect("h1's agent config");
    let none = cfg.with_file_name("agent-none.toml");
    std::fs::write(
        &none,
        text.replace("provider = \"alibaba\"", "provider = \"none\""),
    )
    .unwrap();
    let refused = lab
        .exec_unchecked(1, &[bin, "deregister", "-c", none.to_str().unwrap()])
        .expect("run deregister with provider none");
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("provider"));
}
