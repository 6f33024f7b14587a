//! End to end: what the agents must never do, and what they must say.
//!
//! - Ownership: a route someone else made for another CIDR and a user route pointing at a crossdock
//!   host for another CIDR are never touched; a route for a host's own CIDR pointing elsewhere is a
//!   conflict, reported (`/status` `route` condition, `/metrics`) and never overwritten.
//! - Security: an outsider in the VPC (a host without agent, address outside the cluster range, routed
//!   to the container subnets by the vRouter) cannot open a TCP connection to any container port while
//!   a cluster peer can; no secret (AccessKeySecret, SecurityToken, as the emulator really issued them)
//!   appears in any agent log, `/status` or `/metrics`; the health socket is 0660; a credential whose
//!   RAM policy lacks CreateRouteEntry gives a failed condition naming the action, and no crash.
//! - The ENI source/destination check: with `source_dest_check = "report"` the agent reports it and
//!   traffic does not flow; switched to `disable` (the default), the agent turns it off and it flows.
//!
//! Root only: reports a skip otherwise (`crossdock_lab::testing::skip`).

mod common;

use common::*;
use crossdock_lab::dockerd::docker_command;
use crossdock_lab::testing::root_or_skip;
use crossdock_lab::{DockerVersion, Lab};
use crossdock_vpcsim::admin::{CreateAccessKey, CreateInstance, PutRoute};
use std::time::Duration;

/// An agent reports a conflict or a refused permission within one route pass after start.
const REPORT_BOUND: Duration = Duration::from_secs(60);

// ---- ownership ----------------------------------------------------------------------------------

#[test]
fn e2e_policy_foreign_routes_are_never_touched_and_conflicts_are_reported() {
    if !root_or_skip() {
        return;
    }
    let _t = Timer::start("e2e_policy_foreign_routes_are_never_touched_and_conflicts_are_reported");
    // Routes are what is under test: hosts without dockerd serve a fixed subnet.
    let mut opts = options(0, DockerVersion::V20);
    opts.static_hosts = 2;
    let mut lab = up(opts);
    let h1 = lab.host(1).instance_id.clone();
    let other = lab
        .admin_sync(|c| async move {
            c.create_instance(&CreateInstance {
                hostname: "someone-elses-vm".into(),
                private_ip: Some("192.168.1.200".parse().unwrap()),
                ..Default::default()
            })
            .await
        })
        .expect("another instance")
        .instance_id;

    let put = |cidr: &str, hop: &str, name: &str, desc: &str| {
        let req = PutRoute {
            destination_cidr_block: Some(cidr.parse().unwrap()),
            next_hop_id: hop.to_string(),
            route_entry_name: name.to_string(),
            description: desc.to_string(),
            ..PutRoute::default()
        };
        lab.admin_sync(move |c| async move { c.put_route(&req).await })
            .expect("a route behind the API's back")
    };
    let someone_elses = put("172.16.5.0/24", &other, "team-b", "their VPN");
    let users_to_h1 = put("10.200.0.0/24", &h1, "manual", "added in the console");
    let conflicting = put(&lab.host(2).subnet, &other, "legacy", "an old host");
    let foreign = vec![
        someone_elses.route_entry_id.clone(),
        users_to_h1.route_entry_id.clone(),
        conflicting.route_entry_id.clone(),
    ];
    let seq = call_seq(&lab);
    start_agents(&mut lab, &["h1", "h2"]);

    // h1 gets its route; h2 reports the conflict and leaves the holder alone.
    wait_table(
        &lab,
        &[(lab.host(1).subnet.clone(), h1.clone())],
        &foreign,
        ROUTES_BOUND,
    );
    let s = wait_condition(&lab, 2, "route", REPORT_BOUND, |c| c["state"] == "failed");
    let route = condition(&s, "route");
    assert_eq!(route["reason"], "RouteConflict", "{route}");
    let message = route["message"].as_str().unwrap_or("");
    assert!(
        message.contains(&conflicting.route_entry_id) && message.contains(&lab.host(2).subnet),
        "the conflict names the route and the CIDR: {message}"
    );
    let routes = s["routes"].as_array().cloned().unwrap_or_default();
    assert!(
        routes
            .iter()
            .any(|r| r["entry_id"] == conflicting.route_entry_id.as_str() && r["owner"] != "self"),
        "/status routes show the conflicting entry as not ours: {routes:?}"
    );
    let m = metrics(&lab, 2).expect("/metrics");
    assert_eq!(
        metric_value(&m, "crossdock_route_conflicts"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value(&metrics(&lab, 1).unwrap(), "crossdock_route_conflicts"),
        Some(0.0)
    );

    // Two more route passes of each agent, then nothing foreign has changed or been written to.
    let syncs = |i: usize| {
        metrics(&lab, i)
            .and_then(|m| metric_value(&m, "crossdock_route_syncs_total"))
            .unwrap_or(0.0)
    };
    let start = [syncs(1), syncs(2)];
    wait_until(
        &lab,
        "two more route passes of each agent",
        REPORT_BOUND,
        || (syncs(1) >= start[0] + 2.0 && syncs(2) >= start[1] + 2.0).then_some(()),
    );
    let now = custom_routes(&lab);
    for before in [&someone_elses, &users_to_h1, &conflicting] {
        let after = now
            .iter()
            .find(|e| e.route_entry_id == before.route_entry_id)
            .unwrap_or_else(|| panic!("{} was deleted", before.route_entry_id));
        assert_eq!(
            (
                &after.destination_cidr_block,
                &after.next_hop_id,
                &after.route_entry_name,
                &after.description,
                after.status
            ),
            (
                &before.destination_cidr_block,
                &before.next_hop_id,
                &before.route_entry_name,
                &before.description,
                before.status
            ),
            "{} changed",
            before.route_entry_id
        );
    }
    let writes = writes_since(&lab, seq);
    let touching_foreign: Vec<_> = writes
        .iter()
        .filter(|c| {
            c.action == "DeleteRouteEntry"
                || (c.params.get("DestinationCidrBlock").map(String::as_str)
                    != Some(lab.host(1).subnet.as_str())
                    && c.action != "ModifyNetworkInterfaceAttribute")
        })
        .cloned()
        .collect();
    assert!(
        touching_foreign.is_empty(),
        "writes other than h1's own create and the ENI checks:\n{}",
        describe_calls(&touching_foreign)
    );
    assert_eq!(
        metric_value(&metrics(&lab, 2).unwrap(), "crossdock_route_conflicts"),
        Some(1.0),
        "still reported"
    );
}

// ---- security -----------------------------------------------------------------------------------

/// Starts a second listener (port 8080) in a container that already has the demo receiver's script.
fn second_listener(lab: &Lab, index: usize, name: &str) {
    lab.docker(
        index,
        &[
            "exec",
            "-d",
            name,
            "nc",
            "-ll",
            "-p",
            "8080",
            "-e",
            "/tmp/peer.sh",
        ],
    )
    .unwrap();
    wait_until(
        lab,
        &format!("{name} listening on 8080"),
        Duration::from_secs(10),
        || {
            lab.docker(index, &["exec", name, "netstat", "-ltn"])
                .ok()
                .filter(|o| String::from_utf8_lossy(&o.stdout).contains(":8080 "))
        },
    );
}

/// Whether a TCP connection from container `name` on host `index` to `ip:port` was answered.
fn container_connects(lab: &Lab, index: usize, name: &str, ip: &str, port: u16) -> bool {
    let out = docker_command(lab.host(index).docker_host.as_deref().unwrap())
        .args([
            "exec",
            name,
            "sh",
            "-c",
            &format!("echo probe | nc -w 3 {ip} {port}"),
        ])
        .output()
        .expect("docker exec");
    String::from_utf8_lossy(&out.stdout).contains("seen-from")
}

/// Whether a TCP connection from host `index`'s own namespace (its eth0 address) was answered.
fn host_connects(lab: &Lab, index: usize, ip: &str, port: u16) -> bool {
    let out = lab
        .exec_unchecked(
            index,
            &[
                "sh",
                "-c",
                &format!("echo probe | timeout 8 busybox nc -w 3 {ip} {port}"),
            ],
        )
        .expect("nc in the host");
    String::from_utf8_lossy(&out.stdout).contains("seen-from")
}

/// Packets dropped by the FORWARD chain's policy on host `index` so far.
fn forward_policy_drops(lab: &Lab, index: usize) -> i64 {
    let out = host_sh(
        lab,
        index,
        &["iptables", "-w", "-n", "-v", "-x", "-L", "FORWARD"],
    );
    let first = out.lines().next().unwrap_or("");
    first
        .split("policy DROP ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("h{index}: no DROP policy in {first:?}"))
}

#[test]
fn e2e_policy_outsiders_are_refused_secrets_stay_secret_and_missing_permissions_are_named() {
    if !root_or_skip() {
        return;
    }
    let _t = Timer::start(
        "e2e_policy_outsiders_are_refused_secrets_stay_secret_and_missing_permissions_are_named",
    );
    // h1, h2: cluster hosts with Docker. h3: an outsider (no agent, 192.168.1.13, outside 10.0.0.0/8).
    // h4: a host whose explicit AccessKey may do everything but CreateRouteEntry. Debug logs
    // everywhere: that is where secrets leak.
    let mut opts = options(2, DockerVersion::V20);
    opts.static_hosts = 2;
    opts.agent_config = Some(fast_resync(|_, c| c.log_level = "debug".into()));
    let mut lab = up(opts);
    let restricted = lab
        .admin_sync(|c| async move {
            c.create_access_key(&CreateAccessKey {
                allowed_actions: Some(
                    [
                        "vpc:DescribeRouteTableList",
                        "vpc:DescribeRouteEntryList",
                        "vpc:DeleteRouteEntry",
                        "vpc:DescribeVSwitches",
                        "vpc:DescribeVpcAttribute",
                        "ecs:DescribeNetworkInterfaces",
                        "ecs:ModifyNetworkInterfaceAttribute",
                    ]
                    .map(String::from)
                    .to_vec(),
                ),
                description: "a policy without CreateRouteEntry".into(),
                ..Default::default()
            })
            .await
        })
        .expect("a restricted AccessKey");
    edit_agent_config(&lab, 4, |c| {
        c.cloud.access_key_id = restricted.access_key_id.clone();
        c.cloud.access_key_secret =
            crossdock_config::Secret::new(restricted.access_key_secret.clone());
    });

    let c1 = container(&lab, 1, "c1");
    let c2 = container(&lab, 2, "c2");
    second_listener(&lab, 1, "c1");
    second_listener(&lab, 2, "c2");
    start_agents(&mut lab, &["h1", "h2", "h4"]);
    wait_table(&lab, &expected_table(&lab, &[1, 2]), &[], ROUTES_BOUND);
    assert_connected(&lab, (1, "c1", &c1), (2, "c2", &c2), TRAFFIC_BOUND);

    // The outsider reaches the hosts themselves (it is in the VPC, and the vRouter routes the container
    // subnets to them) but no container port; the cluster peer reaches every one of them.
    assert!(
        lab.exec_unchecked(
            3,
            &[
                "busybox",
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                &lab.host(1).private_ip
            ]
        )
        .unwrap()
        .status
        .success(),
        "the outsider is not even on the VPC: the test would prove nothing"
    );
    for (target, peer, peer_name, ip) in [(1, 2, "c2", &c1.ip), (2, 1, "c1", &c2.ip)] {
        let dropped_before = forward_policy_drops(&lab, target);
        for port in [crossdock_lab::demo::DEMO_PORT, 8080] {
            assert!(
                container_connects(&lab, peer, peer_name, ip, port),
                "the cluster peer {peer_name} cannot reach h{target}'s container at {ip}:{port}\n{}",
                diagnosis(&lab)
            );
            assert!(
                !host_connects(&lab, 3, ip, port),
                "the outsider h3 opened a TCP connection to h{target}'s container at {ip}:{port}\n{}",
                iptables_save(&lab, target)
            );
        }
        // The outsider's packets did reach the host and were dropped by its FORWARD policy (not lost
        // on the way, which would prove nothing about the host).
        let dropped = forward_policy_drops(&lab, target) - dropped_before;
        assert!(
            dropped >= 2,
            "h{target}'s FORWARD policy dropped {dropped} packets of the outsider's"
        );
    }

    // Forbidden.RAM: named, reported, survived.
    let pid4 = agent_pid_of(&lab, 4).expect("h4's agent runs");
    let s = wait_condition(&lab, 4, "route", REPORT_BOUND, |c| c["state"] == "failed");
    let route = condition(&s, "route");
    let text = format!("{} {}", route["reason"], route["message"]);
    assert!(
        text.contains("CreateRouteEntry")
            && (text.contains("Forbidden.RAM") || text.contains("PermissionDenied")),
        "the condition must name the refused action: {route}"
    );
    let refused = calls_since(&lab, 0).calls.into_iter().any(|c| {
        c.action == "CreateRouteEntry"
            && c.code == "Forbidden.RAM"
            && c.access_key_id.as_deref() == Some(restricted.access_key_id.as_str())
    });
    assert!(refused, "h4 never tried (and was refused) CreateRouteEntry");
    assert!(
        !custom_routes(&lab)
            .iter()
            .any(|e| e.destination_cidr_block.to_string() == lab.host(4).subnet),
        "h4's route exists although its policy forbids creating it"
    );
    assert_eq!(agent_pid_of(&lab, 4), Some(pid4), "h4's agent exited");
    assert!(status(&lab, 4).is_some(), "h4's agent stopped answering");

    // No secret in any agent log, /status or /metrics: the STS credentials the metadata service really
    // issued (secret and token) and the explicit AccessKey secret.
    let state = lab.admin_sync(|c| async move { c.state().await }).unwrap();
    let mut secrets: Vec<String> = vec![restricted.access_key_secret.clone()];
    for k in state.access_keys.iter().filter(|k| k.is_sts()) {
        secrets.push(k.access_key_secret.clone());
        secrets.extend(k.security_token.clone());
    }
    assert!(
        secrets.len() >= 3,
        "the agents never got an STS credential: {secrets:?}"
    );
    for i in [1, 2, 4] {
        let log = std::fs::read_to_string(lab.host(i).agent_log()).unwrap_or_default();
        assert!(
            log.lines().count() > 5,
            "h{i}'s log is too short to prove anything:\n{log}"
        );
        let exposed = format!(
            "{log}\n{}\n{}",
            status(&lab, i).map(|s| s.to_string()).unwrap_or_default(),
            metrics(&lab, i).unwrap_or_default()
        );
        for s in &secrets {
            assert!(
                s.len() >= 8 && !exposed.contains(s.as_str()),
                "h{i}: a secret value ({}…) appears in the agent's log or health endpoints",
                &s[..4.min(s.len())]
            );
        }
        // The health socket is 0660 (root and the crossdock group), and a socket.
        let sock = &lab.host(i).agent_socket;
        assert_eq!(mode(sock) & 0o777, 0o660, "{}", sock.display());
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::metadata(sock).unwrap().file_type().is_socket());
    }
}

// ---- the ENI source/destination check -------------------------------------------------------------

#[test]
fn e2e_policy_source_dest_check_report_only_blocks_traffic_disable_lets_it_flow() {
    if !root_or_skip() {
        return;
    }
    let _t = Timer::start(
        "e2e_policy_source_dest_check_report_only_blocks_traffic_disable_lets_it_flow",
    );
    let mut opts = options(2, DockerVersion::V20);
    opts.agent_config = Some(fast_resync(|_, c| {
        c.cloud.source_dest_check = crossdock_config::SourceDestCheck::Report;
    }));
    let mut lab = up(opts);
    let c1 = container(&lab, 1, "c1");
    let c2 = container(&lab, 2, "c2");
    let seq = call_seq(&lab);
    start_agents(&mut lab, &["h1", "h2"]);
    // The routes are made and the hosts opened: only the ENI check stands in the way.
    wait_table(&lab, &expected_table(&lab, &[1, 2]), &[], ROUTES_BOUND);
    for i in [1, 2] {
        let s = wait_until(
            &lab,
            &format!("h{i} reports the ENI check"),
            REPORT_BOUND,
            || {
                let s = status(&lab, i)?;
                let reported = s["conditions"].as_object()?.values().any(|c| {
                    c["state"] != "ready"
                        && format!("{} {}", c["reason"], c["message"])
                            .to_lowercase()
                            .contains("source")
                });
                reported.then_some(s)
            },
        )
        .0;
        assert_eq!(
            condition_state(&s, "firewall"),
            "ready",
            "h{i}: {}",
            s["conditions"]
        );
    }
    let instances = lab
        .admin_sync(|c| async move { c.instances().await })
        .unwrap();
    for i in [1, 2] {
        let inst = instances
            .iter()
            .find(|x| x.instance_id == lab.host(i).instance_id)
            .unwrap();
        assert!(
            inst.source_dest_check,
            "h{i}: report-only must not change the ENI"
        );
    }
    let modified: Vec<_> = writes_since(&lab, seq)
        .into_iter()
        .filter(|c| c.action == "ModifyNetworkInterfaceAttribute")
        .collect();
    assert!(
        modified.is_empty(),
        "report-only modified an ENI:\n{}",
        describe_calls(&modified)
    );
    assert_no_ping(&lab, 1, "c1", &c2.ip, "the ENI check is on");
    assert_eq!(
        tcp(&lab, (1, "c1"), (2, "c2"), &c2.ip),
        None,
        "TCP through the ENI check"
    );

    // The default (`disable`): the agent turns the check off and traffic flows.
    for i in [1, 2] {
        edit_agent_config(&lab, i, |c| {
            c.cloud.source_dest_check = crossdock_config::SourceDestCheck::Disable;
        });
        lab.agent_restart(&format!("h{i}")).unwrap();
    }
    let took = assert_connected(&lab, (1, "c1", &c1), (2, "c2", &c2), ROUTES_BOUND);
    eprintln!(
        "check disabled: connected after {:.1} s",
        took.as_secs_f64()
    );
    let instances = lab
        .admin_sync(|c| async move { c.instances().await })
        .unwrap();
    for i in [1, 2] {
        let inst = instances
            .iter()
            .find(|x| x.instance_id == lab.host(i).instance_id)
            .unwrap();
        assert!(
            !inst.source_dest_check,
            "h{i}: the agent did not turn the ENI check off"
        );
    }
}
