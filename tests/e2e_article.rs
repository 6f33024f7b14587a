//! End to end, the article's setup reproduced in the lab, on Docker 20.10 and on 28.x.
//!
//! VPC 192.168.0.0/16; two ECS hosts whose docker0 bips are 10.0.0.1/24 and 10.1.0.1/24; a container on
//! each (10.0.0.2, 10.1.0.2). Without agents the containers cannot reach each other (no VPC route, ENI
//! source/destination check on, FORWARD policy DROP). With the agents: ping and TCP both ways, the
//! receiver sees the sender's own container IP (no masquerade), both routes are in the emulated table
//! with crossdock's marker and `Available`, the ENI checks are off, and the FORWARD policy is still
//! DROP on both hosts — what the article did by hand, done by the agent and done narrowly.
//!
//! Root only (namespaces, real dockerds): reports a skip otherwise (`crossdock_lab::testing::skip`).

mod common;

use common::*;
use crossdock_lab::testing::root_or_skip;
use crossdock_lab::DockerVersion;

fn the_article(docker: DockerVersion, test: &'static str) {
    let _t = Timer::start(test);
    let mut lab = up(options(2, docker));

    let c1 = container(&lab, 1, "c1");
    let c2 = container(&lab, 2, "c2");
    assert_eq!(c1.ip, "10.0.0.2", "the article's first container");
    assert_eq!(c2.ip, "10.1.0.2", "the article's second container");

    // Without agents: nothing gets through (no route in the VPC table, hosts closed).
    assert!(
        custom_routes(&lab).is_empty(),
        "a fresh VPC has no custom routes"
    );
    assert_no_ping(&lab, 1, "c1", &c2.ip, "no agent runs");
    assert_no_ping(&lab, 2, "c2", &c1.ip, "no agent runs");
    assert_eq!(
        tcp(&lab, (1, "c1"), (2, "c2"), &c2.ip),
        None,
        "TCP without agents"
    );

    // With agents.
    start_agents(&mut lab, &["h1", "h2"]);
    let (_, took) = wait_table(&lab, &expected_table(&lab, &[1, 2]), &[], ROUTES_BOUND);
    eprintln!(
        "routes Available and applied {:.1} s after the agents started",
        took.as_secs_f64()
    );
    wait_ready(&lab, &[1, 2], ROUTES_BOUND);
    let took = assert_connected(&lab, (1, "c1", &c1), (2, "c2", &c2), TRAFFIC_BOUND);
    eprintln!("ping and TCP both ways in {:.1} s", took.as_secs_f64());

    // The receiver saw the sender's container IP (checked by assert_connected); the routes carry the
    // marker and are Available (wait_table); the hosts stay narrow.
    for i in [1, 2] {
        assert_narrow_firewall(&lab, i);
        assert!(
            has_crossdock_rules(&lab, i, &lab.host(i).subnet),
            "h{i}: crossdock's chains and jumps\n{}",
            iptables_save(&lab, i)
        );
        let s = status(&lab, i).expect("the agent answers /status");
        for c in [
            "docker",
            "subnet",
            "forwarding",
            "firewall",
            "route",
            "credentials",
        ] {
            assert_eq!(
                condition_state(&s, c),
                "ready",
                "h{i} condition {c}: {}",
                condition(&s, c)
            );
        }
        assert_eq!(
            s["subnet"],
            lab.host(i).subnet.as_str(),
            "h{i} /status subnet"
        );
        assert_eq!(s["instance_id"], lab.host(i).instance_id.as_str());
        let routes = s["routes"].as_array().cloned().unwrap_or_default();
        assert!(
            routes
                .iter()
                .any(|r| r["cidr"] == lab.host(i).subnet.as_str() && r["status"] == "Available"),
            "h{i} /status routes: {routes:?}"
        );
        assert_eq!(
            host_sh(&lab, i, &["sysctl", "-n", "net.ipv4.ip_forward"]).trim(),
            "1"
        );
    }
    // The agents turned the ENI source/destination check off (Alibaba's default is on).
    let instances = lab
        .admin_sync(|c| async move { c.instances().await })
        .expect("instances");
    for i in [1, 2] {
        let inst = instances
            .iter()
            .find(|x| x.instance_id == lab.host(i).instance_id)
            .expect("the host's instance");
        assert!(!inst.source_dest_check, "h{i}: the ENI check is still on");
    }
    // In sync means quiet: one more route resync makes no write.
    let seq = call_seq(&lab);
    wait_until(&lab, "a route resync of each agent", ROUTES_BOUND, || {
        let calls = calls_since(&lab, seq).calls;
        [1, 2]
            .iter()
            .all(|&i| {
                calls.iter().any(|c| {
                    c.instance_id.as_deref() == Some(lab.host(i).instance_id.as_str())
                        && c.action == "DescribeRouteEntryList"
                })
            })
            .then_some(())
    });
    let writes = writes_since(&lab, seq);
    assert!(
        writes.is_empty(),
        "writes in sync:\n{}",
        describe_calls(&writes)
    );
}

#[test]
fn e2e_article_docker_20() {
    if !root_or_skip() {
        return;
    }
    the_article(DockerVersion::V20, "e2e_article_docker_20");
}

#[test]
fn e2e_article_docker_28() {
    if !root_or_skip() {
        return;
    }
    the_article(DockerVersion::V28, "e2e_article_docker_28");
}
