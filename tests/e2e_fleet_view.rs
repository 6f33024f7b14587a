//! `crossdock status --fleet` in a 3-host fleet lab: every member is listed with its subnet and its
//! route per table; a member whose route was deleted by hand (its own agent stopped, so nothing puts
//! it back) stands out as missing, and the command's exit status says something needs a look.
//!
//! Root only (namespaces, real dockerds); skipped with the standard marker otherwise.

mod common;

use std::time::Duration;

use common::*;
use crossdock_lab::testing::root_or_skip;
use crossdock_lab::DockerVersion;

/// `crossdock status --fleet --json` run in host `index`: (exit status, the fleet view).
fn fleet_view(lab: &crossdock_lab::Lab, index: usize) -> (i32, serde_json::Value) {
    let out = lab
        .exec_unchecked(index, &[CROSSDOCK, "status", "--fleet", "--json"])
        .expect("run crossdock status --fleet");
    let view = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), view)
}

fn route_status_of(view: &serde_json::Value, instance: &str) -> Vec<String> {
    view["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["instance_id"] == instance)
        .flat_map(|h| h["routes"].as_array().cloned().unwrap_or_default())
        .map(|r| r["status"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn status_fleet_lists_every_member_and_marks_a_route_deleted_by_hand() {
    if !root_or_skip() {
        return;
    }
    let _t = Timer::start("status_fleet_lists_every_member_and_marks_a_route_deleted_by_hand");
    let mut opts = options(3, DockerVersion::V20);
    opts.fleet = true;
    opts.agent_config = Some(fast_resync(|_, c| c.fleet.sweep_interval_secs = 5));
    let mut lab = up(opts);
    start_agents(&mut lab, &["h1", "h2", "h3"]);
    wait_table(&lab, &expected_table(&lab, &[1, 2, 3]), &[], ROUTES_BOUND);
    wait_ready(&lab, &[1, 2, 3], ROUTES_BOUND);

    // All three members, each routed (the view is h1's last sweep: poll until it shows them all).
    let ids: Vec<String> = (1..=3).map(|i| lab.host(i).instance_id.clone()).collect();
    let ((code, view), _) = wait_until(
        &lab,
        "h1's fleet view to show three routed members",
        ROUTES_BOUND,
        || {
            let (code, view) = fleet_view(&lab, 1);
            ids.iter()
                .all(|id| route_status_of(&view, id) == ["Available"])
                .then_some((code, view))
        },
    );
    assert_eq!(code, 0, "{view}");
    for (i, id) in ids.iter().enumerate() {
        let host = view["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["instance_id"] == *id)
            .unwrap_or_else(|| panic!("{id} not listed: {view}"));
        assert_eq!(host["subnet"], lab.host(i + 1).subnet.as_str(), "{view}");
        assert_eq!(host["status"], "Running");
    }

    // h3's agent stops (it would put its route back), then its route is deleted by hand.
    lab.agent_stop("h3").expect("stop h3's agent");
    let h3_route = custom_routes(&lab)
        .into_iter()
        .find(|e| e.next_hop_id == ids[2])
        .expect("h3's route");
    lab.admin_sync(move |c| async move { c.delete_route(&h3_route.route_entry_id).await })
        .expect("delete h3's route by hand");
    let ((code, view), _) = wait_until(
        &lab,
        "h1's view to mark h3's route missing",
        Duration::from_secs(60),
        || {
            let (code, view) = fleet_view(&lab, 1);
            (route_status_of(&view, &ids[2]) == ["Missing"]).then_some((code, view))
        },
    );
    assert_eq!(code, 1, "a missing route makes the view exit 1: {view}");
    assert!(
        view["routes_missing"]
            .as_array()
            .is_some_and(|m| m.iter().any(|r| r["instance_id"] == ids[2].as_str())),
        "{view}"
    );
    // h1 and h2 still routed, and h1's agent did not write h3's route (its own route is in place).
    assert_eq!(route_status_of(&view, &ids[0]), ["Available"]);
    assert_eq!(route_status_of(&view, &ids[1]), ["Available"]);
    let human = lab
        .exec_unchecked(1, &[CROSSDOCK, "status", "--fleet"])
        .expect("human fleet view");
    let text = String::from_utf8_lossy(&human.stdout);
    let first_member = text.lines().nth(1).unwrap_or_default();
    assert!(
        first_member.starts_with(&ids[2]) && first_member.contains("MISSING"),
        "the unrouted member is listed first:\n{text}"
    );
}

/// With `[subnet] host_ranges` empty the VPC CIDR is the host range, known only from the metadata
/// service: an agent whose cluster range cannot give every address of the lab's VPC (192.168.0.0/16)
/// a /24 refuses to start (exit 2, naming the fields), before any rule is written.
#[test]
fn an_agent_whose_mapping_cannot_fit_the_vpc_refuses_to_start() {
    if !root_or_skip() {
        return;
    }
    let _t = Timer::start("an_agent_whose_mapping_cannot_fit_the_vpc_refuses_to_start");
    let mut opts = options(1, DockerVersion::V20);
    opts.fleet = true;
    let lab = up(opts);
    let mut cfg = lab.fleet_config().expect("the lab's shared configuration");
    // 10.0.0.0/9 holds 32768 /24s; the VPC has 65536 addresses.
    cfg.cluster_cidrs = vec!["10.0.0.0/9".parse().unwrap()];
    cfg.health_socket = lab.host(1).dir.join("too-small.sock");
    cfg.docker.host = format!("unix://{}/docker.sock", lab.host(1).dir.display());
    let path = lab.host(1).dir.join("too-small.toml");
    std::fs::write(&path, cfg.to_toml()).expect("write the config");
    let before = iptables_save(&lab, 1);
    let out = lab
        .exec_unchecked(1, &[CROSSDOCK, "agent", "--config", path.to_str().unwrap()])
        .expect("run the agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cluster_cidrs") || stderr.contains("prefix"),
        "{stderr}"
    );
    assert!(
        !cfg.health_socket.exists(),
        "the agent stopped before binding its socket"
    );
    assert_eq!(iptables_save(&lab, 1), before, "nothing was applied");
}
